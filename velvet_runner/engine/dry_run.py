"""The testing flow: verify the current value and every consumer; change nothing anywhere but
the job record."""

from __future__ import annotations

from typing import Any

from velvet_runner.checks import CheckResult
from velvet_runner.errors import InputError, VendorError
from velvet_runner.machine import Action, Outcome, State
from velvet_runner.manifest import Consumer
from velvet_runner.records import Job, RowStatus

from .context import Args, Run
from .fanout import fan_out


def dry_run(run: Run, act: Action, args: Args) -> Job:
    j = run.journal
    if run.job.status != State.VERIFYING:
        j.move(Action.VERIFY, "dry run: checking the current value and every consumer")
    try:
        current = run.current()
        identity = run.call(lambda: run.vendor.verify(current))
    except (VendorError, InputError) as exc:
        return j.move(Outcome.FAILED, f"verify failed: {exc}")
    report: dict[str, Any] = {"vendor": f"current value accepted for {identity.subject}",
                              "consumers": {}}
    todo = run.rows(lambda r: r.distribute_status != RowStatus.SKIPPED)
    checker = run.wiring.checker()

    def probe(consumer: Consumer) -> tuple[str, CheckResult]:
        target = run.target(consumer)
        try:
            where = target.probe()
        except VendorError as exc:
            return f"target: {exc}", CheckResult(RowStatus.FAILED, f"target: {exc}")
        return where, checker.check_once(consumer, target, current, "live")

    def done(consumer: Consumer, result: tuple[str, CheckResult]) -> None:
        where, check = result
        j.set_row(consumer.consumer_id, validate_status=check.status, detail=check.detail)
        report["consumers"][consumer.consumer_id] = {"target": where,
                                                     "check": str(check.status),
                                                     "detail": check.detail}

    fan_out(run, [c for _, c in todo], probe, done,
            lambda reason: (reason, CheckResult(RowStatus.FAILED, reason)))
    failed = sorted(cid for cid, r in report["consumers"].items()
                    if r["check"] == RowStatus.FAILED)

    def record(job: Job) -> None:
        job.report["dry_run"] = report

    if failed:
        return j.move(Outcome.PARTIAL, "dry run: failing consumers: " + ", ".join(failed),
                      mutate=record)
    return j.move(Outcome.OK, "dry run passed; nothing was changed", mutate=record)

"""Consumer validation: does each consumer work with the value it should now hold?

    http      GET the consumer's health URL: `expect_status` (200) with the new value; 401
              after a revocation (anything else means the consumer still accepts a dead value)
    readback  the target's stored value has the new value's fingerprint
    none      an operator confirms by hand (manual_required until manual_confirm)

Live checks are retried inside a settle window, since a Heroku config change restarts dynos.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from pydantic import SecretStr

from velvet_runner.errors import VendorError
from velvet_runner.manifest import Consumer, HttpCheck, ReadbackCheck
from velvet_runner.records import RowStatus, fingerprint
from velvet_runner.targets.base import Target

if TYPE_CHECKING:
    import httpx

Expect = Literal["live", "revoked"]


@dataclass(frozen=True)
class CheckResult:
    status: RowStatus
    detail: str


@dataclass
class Checker:
    http: httpx.Client
    settle_seconds: float = 30.0
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic

    def check(self, consumer: Consumer, target: Target, value: SecretStr | None,
              expect: Expect = "live") -> CheckResult:
        deadline = self.clock() + self.settle_seconds
        interval = max(0.05, min(1.0, self.settle_seconds / 10))
        while True:
            result = self._once(consumer, target, value, expect)
            if result.status != RowStatus.FAILED or self.clock() + interval > deadline:
                return result
            self.sleep(interval)

    def check_once(self, consumer: Consumer, target: Target, value: SecretStr | None,
                   expect: Expect = "live") -> CheckResult:
        return self._once(consumer, target, value, expect)

    def _once(self, consumer: Consumer, target: Target, value: SecretStr | None,
              expect: Expect) -> CheckResult:
        check = consumer.healthcheck
        if isinstance(check, HttpCheck):
            return self._http(check, expect)
        if isinstance(check, ReadbackCheck):
            if expect == "revoked":
                return CheckResult(RowStatus.SKIPPED,
                                   "readback cannot show lock-out; verify by hand")
            try:
                stored = target.fingerprint()
            except VendorError as exc:
                return CheckResult(RowStatus.FAILED, f"readback failed: {exc}")
            if value is not None and stored == fingerprint(value):
                return CheckResult(RowStatus.SUCCEEDED, "readback matches")
            return CheckResult(RowStatus.FAILED, "readback: stored value is not the expected one")
        return CheckResult(RowStatus.MANUAL_REQUIRED, "no healthcheck: confirm by hand")

    def _http(self, check: HttpCheck, expect: Expect) -> CheckResult:
        import httpx

        url = str(check.url)
        try:
            response = self.http.get(url, timeout=check.timeout_seconds)
        except httpx.HTTPError as exc:
            return CheckResult(RowStatus.FAILED, f"healthcheck unreachable: {type(exc).__name__}")
        status = response.status_code
        if expect == "revoked":
            if status == 401:
                return CheckResult(RowStatus.SUCCEEDED, "HTTP 401: locked out")
            return CheckResult(RowStatus.FAILED, f"HTTP {status}: still accepts the revoked value")
        if status == check.expect_status:
            return CheckResult(RowStatus.SUCCEEDED, f"HTTP {status}")
        return CheckResult(RowStatus.FAILED, f"healthcheck HTTP {status}, "
                                             f"expected {check.expect_status}")

"""Every `velvet` call in every workflow and in action.yml parses with the real click CLI.

Renaming a command, an option or a choice in cli.py (the Actions-flavoured `approve` and
`dispatch` included) fails here, not in a workflow run at 3 a.m. Each call is checked twice:
with every optional `${VAR:+--flag "$VAR"}` present, and with all of them absent.
"""

from __future__ import annotations

import click
import pytest

from velvet_runner import cli as cli_mod
from velvet_runner.cli import cli
from velvet_runner.github.dispatch import dispatch_due

from .workflows import WORKFLOW_DIR, Call, dispatch_inputs, load, velvet_calls

CALLS = [*velvet_calls(optional_set=True), *velvet_calls(optional_set=False)]


def _parse(argv: list[str]) -> click.Context:
    """Parse argv down to the leaf command, as `velvet` would, without running anything."""
    ctx = cli.make_context("velvet", list(argv), resilient_parsing=False)
    command: click.Command = cli
    while isinstance(command, click.Group):
        rest = [*ctx._protected_args, *ctx.args]
        name, sub, rest = command.resolve_command(ctx, rest)
        assert sub is not None, f"no command {name!r}"
        ctx = sub.make_context(name, rest, parent=ctx, resilient_parsing=False)
        command = sub
    return ctx


def _id(call: Call) -> str:
    return f"{call.where}: velvet {' '.join(call.argv)}"


def test_the_workflows_call_velvet_at_all():
    commands = {call.argv[0] for call in CALLS}
    assert {"rotate", "stage", "approve", "dispatch", "due", "stuck", "manifest",
            "status"} <= commands


@pytest.mark.parametrize("call", CALLS, ids=_id)
def test_every_velvet_call_parses(call: Call):
    try:
        ctx = _parse(call.argv)
    except click.UsageError as exc:
        pytest.fail(f"{call.where}: `velvet {' '.join(call.argv)}` does not parse with the "
                    f"real CLI: {exc.format_message()}\n(line: {call.line})")
    assert ctx.command.callback is not None


def test_a_renamed_flag_would_be_caught():
    """The checker itself: a flag the CLI does not have is an error, not a pass."""
    with pytest.raises(click.UsageError, match="--tickets"):
        _parse(["stage", "01900000-0000-7000-8000-000000000000", "proceed_revoke",
                "--tickets", "T"])
    with pytest.raises(click.UsageError):
        _parse(["rotate", "X", "--flow", "sideways"])


@pytest.mark.parametrize("name", ["approve", "dispatch"])
def test_the_actions_commands_are_mounted_on_velvet(name: str):
    """`velvet approve` and `velvet dispatch` are cli.py's commands, like every other."""
    command = cli.commands.get(name)
    assert command is not None, f"cli.py has no `velvet {name}`"
    assert command is getattr(cli_mod, name), f"`velvet {name}` is not cli.{name}"


def _dispatches() -> list[tuple[Call, str, dict[str, str]]]:
    out = []
    for call in CALLS:
        if call.argv[:1] != ["dispatch"]:
            continue
        ctx = cli_mod.dispatch.make_context("dispatch", call.argv[1:])
        inputs = dict(pair.split("=", 1) for pair in ctx.params["pairs"])
        if ctx.params["due_file"]:
            inputs = {k: "x" for k in ("credential", "flow", "env", "idempotency_key",
                                       "force_revoke")}
            # dispatch_due's inputs; kept in step with the code by the test below
        out.append((call, ctx.params["workflow"], inputs))
    return out


@pytest.mark.parametrize(("call", "workflow", "inputs"), _dispatches(),
                         ids=lambda v: v.where if isinstance(v, Call) else None)
def test_dispatched_inputs_are_the_target_workflows_inputs(call, workflow, inputs):
    target = WORKFLOW_DIR / workflow
    assert target.exists(), f"{call.where} dispatches {workflow}, which does not exist"
    declared = dispatch_inputs(load(target))
    unknown = set(inputs) - set(declared)
    assert not unknown, f"{call.where}: {workflow} has no inputs {sorted(unknown)}"
    missing = {name for name, spec in declared.items()
               if (spec or {}).get("required") and "default" not in (spec or {})} - set(inputs)
    assert not missing, f"{call.where}: {workflow} requires {sorted(missing)}"


def test_dispatch_due_sends_what_stage_1_declares(gh_github):
    from .conftest import REPO

    sent = dispatch_due(gh_github.api(), REPO, "velvet-stage-1-verify.yml", "main",
                                [{"credential": "HK_PLATFORM_FULL", "due_at": "T"}], env="prod",
                                stagger_seconds=0, sleep=lambda s: None)
    assert sent
    declared = dispatch_inputs(load(WORKFLOW_DIR / "velvet-stage-1-verify.yml"))
    [dispatch] = gh_github.state.dispatches(REPO)
    assert set(dispatch["inputs"]) <= set(declared)
    flow = declared["flow"]
    assert dispatch["inputs"]["flow"] in flow["options"]
    assert dispatch["inputs"]["env"] in declared["env"]["options"]

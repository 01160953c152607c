"""Which workflow runs which action: the one table of the workflow topology.

The status page links the next run from it, the job summary names it, and `velvet rehearse`
dispatches from it. The files are the callers `velvet init` writes (workflows/ of this repo).
"""

from __future__ import annotations

from dataclasses import dataclass

from velvet_runner.machine import OPERATOR_STATES, Action, Flow, State
from velvet_runner.records import Job


@dataclass(frozen=True)
class Workflow:
    file: str
    label: str


STAGE1 = Workflow("velvet-stage-1-verify.yml", "Stage 1 — verify")
STAGE2 = Workflow("velvet-stage-2-mint.yml", "Stage 2 — mint + distribute")
STAGE3 = Workflow("velvet-stage-3-revoke.yml", "Stage 3 — validate + revoke")
RECOVERY = Workflow("velvet-recovery.yml", "Recovery")
REVOCATION = Workflow("velvet-revocation.yml", "Emergency revocation")
# The stage that moves a rotation on, by the action it is dispatched for (the rest: RECOVERY).
STAGES: dict[Action, Workflow] = {Action.PROCEED_REVOKE: STAGE3, Action.PROCEED_MINT: STAGE2,
                                  Action.VERIFY: STAGE1}


def next_workflow(job: Job) -> tuple[Workflow, list[Action]] | None:
    """The workflow that runs the job next, with the actions it may run; None when finished."""
    actions = job.next_actions()
    if not actions:
        return None
    if State(job.status) in OPERATOR_STATES:
        return RECOVERY, actions
    if job.flow_type == Flow.REVOCATION:
        return REVOCATION, actions
    stage = next((STAGES[a] for a in STAGES if a in actions), RECOVERY)
    return stage, actions

"""Proof of death, taken when it is claimed.

A token is dead when the vendor refuses its value now (refused twice, a moment apart: a single
401 can be a blip), when the vendor says its id is gone, or when the vendor has since given its
id a new value (a roll or regeneration kills the value before it). Nothing else settles it: a
refusal seen earlier (at verify, before a retry) is an observation on the entry, and a stored
`proven_dead` is not evidence. `prove` asks the vendor; `confirm` is what every terminal claim
(`done`, `rev_done`, a settled debt, a finished rollback or abort) calls, and lets a stored
proof stand only where nothing Velvet holds carries the value any more and the vendor cannot be
asked again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from pydantic import SecretStr

from velvet_runner.errors import AuthRejected
from velvet_runner.records import Life, Token, fingerprint

if TYPE_CHECKING:
    from .context import Run

Verdict = Literal["dead", "live", "unknown"]


@dataclass(frozen=True)
class Proof:
    """What the vendor said of a token just now, and the evidence (never a value)."""

    verdict: Verdict
    evidence: str
    probed: bool = True  # False: the vendor offers no probe (a person's word is the evidence)

    @property
    def dead(self) -> bool:
        return self.verdict == "dead"


def prove(run: Run, token: Token, value: SecretStr | None = None, *,
          using: SecretStr | None = None) -> Proof:
    """Ask the vendor now whether `token` is dead. `value` is the token's value where the caller
    holds it; otherwise it is looked up in the vault's slots by fingerprint. `using` is a live
    value to ask about an id with. Vendor outages propagate as VendorError."""
    vendor = run.vendor
    if not vendor.CAN_PROBE:
        return Proof("unknown", f"{run.cred.vendor} offers no probe: nothing can prove the "
                     "token dead but a person", probed=False)
    if value is None:
        value = run.value_of(token)
    if value is not None:
        if run.call(lambda: vendor.is_live(value)):
            return Proof("live", f"the vendor still accepts {name(token)}")
        run.wiring.sleep(REPROBE_SECONDS)
        if run.call(lambda: vendor.is_live(value)):
            return Proof("live", f"the vendor refused {name(token)} once, then accepted it "
                         "again (a blip is not a proof)")
        return Proof("dead", f"{name(token)} is refused by the vendor")
    if token.auth_id is not None:
        replaced = _replaced_in_place(run, token)
        if replaced is not None:
            return replaced
        if using is None:
            using = run.read_current()
        if using is not None:
            auth_id, key = token.auth_id, using
            try:
                held = run.call(lambda: vendor.exists(auth_id, using=key))
            except AuthRejected:
                # The value asked with is refused: no answer about the id, only about the key.
                return Proof("unknown", f"could not ask about auth id {auth_id}: the vendor "
                             "refuses the vault's current value, which Velvet asks with (put a "
                             "working value in the vault)")
            if held is False:
                return Proof("dead", f"the vendor no longer has auth id {auth_id}, and no "
                             "one holds its value")
            if held:
                # Where an id carries one value for life (an AWS key), the id is the value; a
                # vendor that regenerates in place may hold a newer value under it.
                regenerates = vendor.CAN_ROLL or vendor.CAN_REGENERATE
                return Proof("unknown" if regenerates else "live",
                             f"the vendor still has auth id {auth_id}")
    return Proof("unknown", f"{name(token)} cannot be probed: its value is in no vault slot "
                 "and the vendor cannot say whether its id still exists")


# A second look after a refusal: long enough for a flapping edge to settle, short enough to be
# lost in a stage's run time.
REPROBE_SECONDS = 1.0


def _replaced_in_place(run: Run, token: Token) -> Proof | None:
    """The vault's current value is a newer value of the same vendor id, and the vendor accepts
    it: the id was rolled or regenerated since, which killed this token's value. Only where
    this job's ledger shows it rolling or regenerating that id: a vault whose __AUTH_ID is
    merely stale (a value replaced by hand) proves nothing."""
    if not (run.vendor.CAN_ROLL or run.vendor.CAN_REGENERATE):
        return None
    if not any(t.auth_id == token.auth_id and t is not token
               and (t.role == "rolled" or t.intent in ("roll", "regenerate"))
               for t in run.job.ledger):
        return None
    current = run.read_current()
    if current is None or fingerprint(current) == token.fingerprint:
        return None
    if token.fingerprint is None:
        # A value never seen (a roll whose answer was lost): the vault's value must be one this
        # job's ledger shows made after it, or it may be the very value the token replaced.
        later = run.job.ledger[run.job.ledger.index(token) + 1:]
        if not any(t.fingerprint == fingerprint(current) and t.auth_id == token.auth_id
                   for t in later):
            return None
    if run.vault_auth_id() != token.auth_id:
        return None
    if not run.call(lambda: run.vendor.is_live(current)):
        return None
    return Proof("dead", f"replaced in place: auth id {token.auth_id} now carries the vault's "
                 "current value, which the vendor accepts")


def confirm(run: Run, token: Token, value: SecretStr | None = None, *,
            using: SecretStr | None = None, holders: list[str] | None = None) -> Proof:
    """The proof a terminal state needs, taken now.

    A stored `proven_dead` stands only when the vendor cannot be asked again and nothing Velvet
    holds carries the value: no vault slot (prove looked) and no consumer (`holders`: by
    default the rows holding the token's role; a revocation passes none, its lockout checks
    having just shown each consumer refused).
    """
    proof = prove(run, token, value, using=using)
    if proof.verdict != "unknown" or token.life != Life.PROVEN_DEAD:
        return proof
    if holders is None:
        holders = [r.consumer_id for r in run.job.consumers if r.holds == token.role
                   and token.role in ("old", "new")]
    if holders:
        return Proof("unknown", f"{proof.evidence}; consumers {', '.join(holders)} may still "
                     "hold it", probed=proof.probed)
    return Proof("dead", f"{token.evidence or 'proven dead'} (proven "
                 f"{token.dead_at:%Y-%m-%dT%H:%M:%SZ}; its value is in no vault slot or "
                 "consumer, and the vendor cannot be asked again)" if token.dead_at else
                 f"{token.evidence or 'proven dead'} (its value is in no vault slot or "
                 "consumer, and the vendor cannot be asked again)")


def name(token: Token) -> str:
    what = {"old": "the old value", "new": "the new value", "rolled": "the rolled value",
            "preempted": f"the value job {token.from_job} minted"}
    ident = f" (auth id {token.auth_id})" if token.auth_id else ""
    return f"{what[token.role]}{ident}"

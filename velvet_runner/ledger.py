"""The token ledger: every token a job knows, where it is held and how far it is from dead.

Pure: no I/O. The engine's journal is the only writer; it commits an intent (`intend`, `kill`)
before each side effect that can create or kill a token and the outcome right after, so a
resumed stage reads what was about to happen and asks the vendor instead of guessing.

    intended -> minted -> held -> current -> revoking -> proven_dead
                   \\        \\        \\          \\
                    +--------+--------+----------+--> debt (live, or not proven dead, and not
                                                       the vault's current value)
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from velvet_runner.errors import LedgerError
from velvet_runner.records import Job, Life, Role, Token

# Which life may follow which. Debt is left only by proof (proven_dead) or by becoming the
# vault's current value again; proven_dead is left only when a proof taken now contradicts it.
MOVES: dict[Life, frozenset[Life]] = {
    # A roll's value goes straight to the vault's current slot.
    Life.INTENDED: frozenset({Life.MINTED, Life.HELD, Life.CURRENT, Life.REVOKING,
                              Life.PROVEN_DEAD, Life.DEBT}),
    Life.MINTED: frozenset({Life.HELD, Life.CURRENT, Life.REVOKING, Life.PROVEN_DEAD,
                            Life.DEBT}),
    Life.HELD: frozenset({Life.CURRENT, Life.REVOKING, Life.PROVEN_DEAD, Life.DEBT}),
    Life.CURRENT: frozenset({Life.REVOKING, Life.DEBT, Life.PROVEN_DEAD}),
    Life.REVOKING: frozenset({Life.REVOKING, Life.PROVEN_DEAD, Life.DEBT, Life.CURRENT,
                              Life.HELD}),
    Life.DEBT: frozenset({Life.REVOKING, Life.PROVEN_DEAD, Life.CURRENT}),
    # Only a proof taken later that contradicts the record reopens it (proof.py).
    Life.PROVEN_DEAD: frozenset({Life.REVOKING, Life.CURRENT, Life.DEBT}),
}

# Not yet known dead: Velvet must keep these in view until the vendor refuses them.
LIVE = frozenset({Life.INTENDED, Life.MINTED, Life.HELD, Life.CURRENT, Life.REVOKING,
                  Life.DEBT})

VAULT_CURRENT = "vault:current"
VAULT_PENDING = "vault:pending"


def set_life(token: Token, life: Life, at: datetime, *, evidence: str | None = None) -> None:
    if life != token.life and life not in MOVES[token.life]:
        raise LedgerError(f"token {token.token_id}: {token.life} -> {life} is not allowed")
    if token.life == Life.PROVEN_DEAD and life != Life.PROVEN_DEAD:
        token.dead_at = None
    token.life = life
    token.updated_at = at
    if evidence is not None:
        token.evidence = evidence
    if life == Life.PROVEN_DEAD:
        token.dead_at = at
        token.intent = None
        token.held_by = []
    elif life == Life.DEBT:
        token.intent = None
        if token.debt_since is None:
            token.debt_since = at
    elif life == Life.CURRENT:
        token.debt_since = None
        token.intent = None


def next_id(job: Job, role: str) -> str:
    taken = {t.token_id for t in job.ledger}
    if role not in taken:
        return role
    n = 2
    while f"{role}-{n}" in taken:
        n += 1
    return f"{role}-{n}"


def add(job: Job, role: Role, life: Life, at: datetime, *, auth_id: str | None = None,
        fingerprint: str | None = None, label: str | None = None, intent: str | None = None,
        held_by: Iterable[str] = ()) -> Token:
    token = Token(token_id=next_id(job, role), role=role, life=life, auth_id=auth_id,
                  fingerprint=fingerprint, label=label, intent=intent, held_by=list(held_by),
                  updated_at=at)
    job.ledger.append(token)
    return token


def hold(token: Token, *places: str) -> None:
    for place in places:
        if place not in token.held_by:
            token.held_by.append(place)


def release(token: Token, *places: str) -> None:
    token.held_by = [p for p in token.held_by if p not in places]


def live(job: Job) -> list[Token]:
    return [t for t in job.ledger if t.life in LIVE]


def debt(job: Job) -> list[Token]:
    """Tokens recorded as debt and not yet proven dead."""
    return [t for t in job.ledger if t.life == Life.DEBT]


def unaccounted(job: Job) -> list[Token]:
    """Live tokens that are neither the vault's current value nor listed as debt.

    At rest (a job not running a stage) this must be empty except for the token a stage is
    still working with (held in the pending slot): the crash matrix checks exactly that.
    """
    return [t for t in job.ledger if t.life in LIVE - {Life.CURRENT, Life.DEBT, Life.HELD}]


def fingerprints(tokens: Iterable[Token]) -> set[str]:
    return {t.fingerprint for t in tokens if t.fingerprint is not None}


def sync_holders(job: Job) -> None:
    """Keep each live entry's consumers in step with the rows (the vault slots are set by the
    stage that writes them). A trailing `?` marks a consumer that may hold the value: a write
    whose outcome is unknown."""
    roles: tuple[Role, ...] = ("old", "new")
    for role in roles:
        token = job.newest(role)
        if token is None or token.life not in LIVE:
            continue
        vault = [p for p in token.held_by if p.startswith("vault:")]
        consumers = [r.consumer_id for r in job.consumers if r.holds == role]
        if role == "new":
            consumers += [f"{r.consumer_id}?" for r in job.consumers if r.holds == "unknown"]
        token.held_by = vault + consumers

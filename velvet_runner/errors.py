"""Every error Velvet raises on purpose, with the exit code the CLI maps it to.

    VelvetError                       1
    ├── InputError                    2   bad input: usage, manifest, action not allowed now
    │   ├── ManifestError                 holds "file:line: field: message" reasons
    │   ├── SettingsError                 holds one "VARIABLE=value is refused: ..." per setting
    │   ├── ActionNotAllowed              names the state and the allowed actions
    │   ├── BadArgument
    │   ├── NotFoundError                 unknown credential or job
    │   ├── CorruptRecord                 a file on the state branch does not parse (named)
    │   ├── OrphanedPending               the vault's pending slot names a job the branch lacks
    │   ├── GateRefused                   approval missing or not allowed (Actions gates)
    │   ├── StillLive                     mark_manually_revoked: the vendor still accepts it
    │   └── LeakStillOpen             1   confirm_leak_resolved: a consumer still accepts it
    ├── ConflictError                 3
    │   ├── RotationInFlight              names the job holding the credential's lock
    │   ├── StateWriteLost                compare-and-swap lost too many times
    │   └── StateHistoryLost              the state branch lost commits this cache had seen
    ├── FeatureDisabled               4   says why the flag reads as off
    ├── Interrupted                 130   Ctrl-C at a safe point; names the resuming command
    ├── LocalFileError                1   a file on this machine could not be used (names it)
    ├── GitError                      1   a git command failed (not a lost race)
    │   └── StateWriteRefused             the remote refused the push; git's reason quoted
    ├── DeployFailed                  1   the status app's build or release failed
    ├── SmokeFailed                   1   a probe of the deployed status app failed
    ├── SetupError                    1   GitHub refused a change `velvet setup github` made
    ├── InternalError                 1   a bug in Velvet, reported as one
    │   └── LedgerError                   a token move the ledger does not allow
    ├── WebError                          the status app's non-200 answers (`status`)
    │   ├── WebNotFound                   404
    │   │   └── PageNotFound              404 for an HTML page
    │   ├── WebBadRequest                 400
    │   └── WebUnavailable                503
    └── VendorError                       caught by the engine; becomes a failed/partial state
        ├── AuthRejected                  401/403: the value is not (or no longer) accepted
        ├── NotFound                      404
        ├── RateLimited                   429, or GitHub's rate-limit 403: wait, never "refused"
        ├── VendorRejected                other 4xx: the request itself is wrong
        ├── VendorUnavailable             5xx, timeouts, connection errors (retryable)
        └── NotifyError                   a notification channel failed (caught by the notifier)

The command line prints `lines()`, each after `prefix`, and exits with `exit_code`. Messages
name the object and where it came from; they never carry a secret value.
"""

from __future__ import annotations

import errno
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from velvet_runner.records import Job


class VelvetError(Exception):
    """Root of Velvet's errors."""

    exit_code = 1
    prefix = "velvet: "  # what the command line puts before each of `lines()`

    def lines(self) -> list[str]:
        """What the command line prints for this error, one line each."""
        return [str(self)]


class InputError(VelvetError):
    """The input is wrong; nothing was changed."""

    exit_code = 2


class ManifestError(InputError):
    """The manifest is invalid; `reasons` holds one "file:line: field: message" per problem."""

    prefix = ""  # each reason starts with the file it names

    def __init__(self, reasons: list[str]) -> None:
        self.reasons = reasons
        super().__init__("\n".join(reasons))

    def lines(self) -> list[str]:
        return self.reasons


class SettingsError(InputError):
    """Settings in the environment break their rules; `reasons` holds one line per variable."""

    def __init__(self, reasons: list[str]) -> None:
        self.reasons = reasons
        super().__init__("\n".join(reasons))

    def lines(self) -> list[str]:
        return self.reasons


class ActionNotAllowed(InputError):
    """The action is not allowed in the job's current state."""

    def __init__(self, action: str, state: str, allowed: list[str]) -> None:
        self.action, self.state, self.allowed = action, state, allowed
        listed = ", ".join(allowed) if allowed else "none (terminal state)"
        super().__init__(f"can't {action} when in {state}; allowed: {listed}")


class BadArgument(InputError):
    """A command-line argument or option is wrong."""


class NotFoundError(InputError):
    """An unknown credential, consumer or job."""


class CorruptRecord(InputError, ValueError):
    """A job, lock or idempotency file on the state branch does not parse; names the file.

    Also a ValueError, which is what a record that does not validate has always raised.
    """

    def __init__(self, path: str, where: str, reason: str) -> None:
        self.path, self.where, self.reason = path, where, reason
        super().__init__(f"{path} on {where} is not a valid record ({reason}); fix or remove "
                         "it on the state branch by hand")



class OrphanedPending(InputError):
    """The vault's pending slot holds a value minted by a job the state branch does not know
    (the branch was rewritten): minting would overwrite that token's only hold."""


class GateRefused(InputError):
    """An operator gate (approval, ticket, typed-back name) is not satisfied."""


class StillLive(InputError):
    """mark_manually_revoked refused: the vendor still accepts the value (exit 2)."""


class LeakStillOpen(InputError):
    """confirm_leak_resolved refused: some consumer still accepts the revoked value."""

    exit_code = 1

    def __init__(self, job: Job, leaking: list[str]) -> None:
        self.job = job
        super().__init__("confirm_leak_resolved refused: still accepting the revoked value: "
                         + ", ".join(leaking))


class ConflictError(VelvetError):
    """Someone else holds or changed what this command needed."""

    exit_code = 3


class RotationInFlight(ConflictError):
    """The credential already has a job in flight."""

    def __init__(self, credential: str, job_id: str, hint: str = "") -> None:
        self.credential, self.job_id = credential, job_id
        super().__init__(f"active rotation already in progress for {credential}: job {job_id}"
                         + hint)


class StateWriteLost(ConflictError):
    """The state branch moved under us more times than we retry."""


class StateHistoryLost(ConflictError):
    """The state branch no longer contains a commit this cache saw (force-pushed or deleted)."""


class FeatureDisabled(VelvetError):
    """The velvet_v2_rotation flag is off; `explanation` says why it reads as off."""

    exit_code = 4

    def __init__(self, message: str, explanation: str | None = None) -> None:
        self.explanation = explanation
        super().__init__(message)

    def lines(self) -> list[str]:
        return [str(self)] + ([self.explanation] if self.explanation else [])


class Interrupted(VelvetError):
    """The operator stopped the stage (Ctrl-C); it can be resumed by running it again."""

    exit_code = 130


class LocalFileError(VelvetError):
    """The disk, the cache or a local repository failed (full, a size limit, permissions);
    names the path and what to do."""

    @classmethod
    def from_os(cls, exc: OSError, what: str, path: object = None) -> LocalFileError:
        """"cannot <what> <path>: <the system's reason>; <what to do>" for an OSError."""
        named = isinstance(exc.filename, str | bytes)  # not an fd number
        where = os.fsdecode(exc.filename) if named else path
        reason = exc.strerror or type(exc).__name__
        advice = _OS_ADVICE.get(exc.errno or 0, "fix that and run the command again")
        return cls(f"cannot {what} {where}: {reason}; {advice}")


_OS_ADVICE = {
    errno.ENOSPC: "the disk is full: free space on it and run the command again",
    errno.EDQUOT: "the disk quota is used up: free space and run the command again",
    errno.EFBIG: "a file grew past this process's file-size limit (ulimit -f): raise the "
                 "limit and run the command again",
    errno.EACCES: "make it writable by this user (or point the setting elsewhere) and run "
                  "the command again",
    errno.EPERM: "make it writable by this user (or point the setting elsewhere) and run "
                 "the command again",
    errno.EROFS: "it is on a read-only file system: point the setting at a writable place",
    errno.ENOENT: "a folder on the way does not exist or cannot hold files: point the "
                  "setting at a real directory",
    errno.ENOTDIR: "a part of the path is a file, not a directory: point the setting at a "
                   "directory",
    errno.EEXIST: "a file is in the way of a directory: move it, or point the setting "
                  "elsewhere",
    errno.EMFILE: "too many open files: raise the limit (ulimit -n) and run the command again",
    errno.EIO: "the disk reported an I/O error: check it before running again",
}


class GitError(VelvetError):
    """A git command failed for a reason other than a lost race."""


class StateWriteRefused(GitError):
    """The remote refused the push for a reason other than a lost race; git's reason quoted."""


class DeployFailed(VelvetError):
    """The build failed, or the release never came up; the message says which and why."""


class SmokeFailed(VelvetError):
    """One or more probes of the smoke check failed; the message names each."""


class SetupError(VelvetError):
    """A change GitHub refused while applying (the message names it; never a value)."""


class InternalError(VelvetError):
    """A bug in Velvet, never an operator's mistake: reported as one."""

    def lines(self) -> list[str]:
        return [f"internal error ({type(self).__name__}): {self}"]


class LedgerError(InternalError, ValueError):
    """A move the ledger does not allow (a bug in the engine, never an operator error)."""


class WebError(VelvetError):
    """A status-app answer other than 200; `message` is safe to show (it never echoes odd
    input)."""

    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class WebNotFound(WebError):
    status = 404


class PageNotFound(WebNotFound):
    """A 404 for an HTML page: answered with HTML, not JSON."""


class WebBadRequest(WebError):
    status = 400


class WebUnavailable(WebError):
    status = 503


class VendorError(VelvetError):
    """A vendor or target call failed; `retryable` says whether trying again may help, and
    `retry_after` (seconds) how long the vendor asked us to wait first, when it said."""

    retryable = False
    retry_after: float | None = None

    def __init__(self, message: str, *, status: int | None = None) -> None:
        self.status = status
        super().__init__(message)


class AuthRejected(VendorError):
    """The vendor refused the credential (401/403)."""


class NotFound(VendorError):
    """The vendor has no such object (404)."""


class VendorRejected(VendorError):
    """The vendor refused the request as invalid (4xx other than auth/404/429)."""


class RateLimited(VendorError):
    """The vendor asked us to back off (429)."""

    retryable = True

    def __init__(
        self, message: str, *, status: int | None = 429, retry_after: float | None = None,
        paused: bool = False, refill: tuple[float, str] | None = None,
    ) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after
        self.paused = paused  # the account's rate budget already holds callers back
        # (seconds, words): how long the vendor's published refill takes to admit another
        # request, for an answer without Retry-After (client.make_client tags it)
        self.refill = refill


class VendorUnavailable(VendorError):
    """5xx, timeout or connection failure."""

    retryable = True


class NotifyError(VendorError):
    """A notification channel (Slack, email) failed; the notifier retries the retryable."""

    def __init__(self, message: str, *, retryable: bool,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after

"""Every error Velvet raises, with the exit code the CLI maps it to.

    VelvetError                       1
    ├── InputError                    2   bad input: usage, manifest, action not allowed now
    │   ├── ManifestError                 holds "file:line: field: message" reasons
    │   ├── SettingsError                 holds one "VARIABLE=value is refused: ..." per setting
    │   ├── ActionNotAllowed              names the state and the allowed actions
    │   ├── BadArgument
    │   ├── NotFoundError                 unknown credential or job
    │   ├── CorruptRecord                 a file on the state branch does not parse (named)
    │   └── OrphanedPending               the vault's pending slot names a job the branch lacks
    ├── ConflictError                 3
    │   ├── RotationInFlight              names the job holding the credential's lock
    │   ├── StateWriteLost                compare-and-swap lost too many times
    │   └── StateHistoryLost              the state branch lost commits this cache had seen
    ├── FeatureDisabled               4
    ├── LocalFileError                1   a file on this machine could not be used (names it)
    ├── GateRefused                   2   approval missing or not allowed (Actions gates)
    └── VendorError                       caught by the engine; becomes a failed/partial state
        ├── AuthRejected                  401/403: the value is not (or no longer) accepted
        ├── NotFound                      404
        ├── RateLimited                   429, or GitHub's rate-limit 403: wait, never "refused"
        ├── VendorRejected                other 4xx: the request itself is wrong
        └── VendorUnavailable             5xx, timeouts, connection errors (retryable)

Messages name the object and where it came from; they never carry a secret value.
"""

from __future__ import annotations

import errno
import os


class VelvetError(Exception):
    """Root of Velvet's errors."""

    exit_code = 1


class InputError(VelvetError):
    """The input is wrong; nothing was changed."""

    exit_code = 2


class ManifestError(InputError):
    """The manifest is invalid; `reasons` holds one "file:line: field: message" per problem."""

    def __init__(self, reasons: list[str]) -> None:
        self.reasons = reasons
        super().__init__("\n".join(reasons))


class SettingsError(InputError):
    """Settings in the environment break their rules; `reasons` holds one line per variable."""

    def __init__(self, reasons: list[str]) -> None:
        self.reasons = reasons
        super().__init__("\n".join(reasons))


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
    """The velvet_v2_rotation flag is off."""

    exit_code = 4


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


class VendorError(VelvetError):
    """A vendor or target call failed; `retryable` says whether trying again may help."""

    retryable = False

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

"""The error tree. Every failure the operator can see is one of these.

    OnlineDDLError                 exit 1   (root; the CLI catches only this)
    +-- UsageError                 exit 2   bad flags or configuration
    +-- ConnectionFailed           exit 3   cannot reach / log in to the server
    +-- PreflightFailed            exit 4   server or table not suitable (binlog, PK, ...)
    |   +-- TableNotFound
    |   +-- UnsupportedTable
    |   +-- RevertRefused                   `revert` cannot bring the old table back
    +-- MissingPrivilege           exit 4   the user lacks a privilege the run needs
    +-- InvalidAlter               exit 5   the ALTER does not parse or is refused
    +-- LockHeld                   exit 6   another runner owns the table
    +-- ChecksumMismatch           exit 7   the copy does not match the source
    +-- CutoverFailed              exit 8   the swap did not happen; T is unchanged
    +-- ResumeRefused              exit 9   --resume cannot continue safely
    +-- DataError                  exit 10  the new schema cannot hold the data
    |   +-- UniqueViolation                 (e.g. a new UNIQUE key over duplicates)
    +-- Aborted                    exit 11  stopped on request; resumable
    +-- WaitTimeout                exit 12  a bounded wait expired
    +-- ReplicationError           exit 13  the binlog stream failed or fell behind
    |   +-- TableVanished                   T was renamed or dropped during the run
    |   +-- TableChanged                    another session's DDL on the table (not resumable)
    +-- ArtifactsExist             exit 14  an earlier run left artifacts behind
    +-- DatabaseError              exit 15  an unexpected server error (retryable flag)

Exit codes are part of the CLI contract (README, "Exit codes"); never renumber them.
"""

from __future__ import annotations


class OnlineDDLError(Exception):
    """Root of every error onlineddl raises on purpose."""

    exit_code = 1
    retryable = False

    def __init__(self, message: str, *, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\n  what to do: {self.hint}"
        return self.message


class UsageError(OnlineDDLError):
    exit_code = 2


class ConnectionFailed(OnlineDDLError):
    exit_code = 3
    retryable = True


class PreflightFailed(OnlineDDLError):
    exit_code = 4


class TableNotFound(PreflightFailed):
    pass


class UnsupportedTable(PreflightFailed):
    pass


class RevertRefused(PreflightFailed):
    """`revert` found no old table it can bring back, or bringing it back would lose
    or alter values; nothing was changed."""


class MissingPrivilege(OnlineDDLError):
    """Found up front by preflight, or when the server refuses a statement (1044, 1142,
    1227) mid-run: not a PreflightFailed, because mid-run the work done so far is kept
    (grant the privilege and resume)."""

    exit_code = 4


class InvalidAlter(OnlineDDLError):
    exit_code = 5


class LockHeld(OnlineDDLError):
    exit_code = 6


class ChecksumMismatch(OnlineDDLError):
    exit_code = 7


class CutoverFailed(OnlineDDLError):
    exit_code = 8
    retryable = True


class ResumeRefused(OnlineDDLError):
    exit_code = 9


class DataError(OnlineDDLError):
    exit_code = 10


class UniqueViolation(DataError):
    pass


class Aborted(OnlineDDLError):
    exit_code = 11


class WaitTimeout(OnlineDDLError):
    exit_code = 12
    retryable = True


class ReplicationError(OnlineDDLError):
    exit_code = 13


class TableVanished(ReplicationError):
    """T was renamed or dropped by another session during the run: DDL on the table,
    like a DDL event the applier reads in the binlog."""


class TableChanged(ReplicationError):
    """Another session changed the table, a table it relates to, or the run's own
    tables during the run (e.g. an ALTER queued behind the cutover's lock). The hint
    says how to go on: `--resume` where it checks the change again (triggers, foreign
    keys), else `cleanup` and a new run (the shadow no longer matches T); the failure
    note never adds "resumable" on its own."""


class StreamReconnected(ReplicationError):
    """The binlog connection dropped or went silent: the applier restarts the reader
    from its last commit (never from inside a transaction)."""


class ArtifactsExist(OnlineDDLError):
    exit_code = 14


class DatabaseError(OnlineDDLError):
    """A server error we did not expect; `errno` is the server's error number."""

    exit_code = 15

    def __init__(self, message: str, *, errno: int = 0, retryable: bool = False,
                 hint: str = "") -> None:
        super().__init__(message, hint=hint)
        self.errno = errno
        self.retryable = retryable


EXIT_CODES: dict[int, str] = {
    0: "success: the table has the new schema and its data checked out",
    1: "internal error (a bug: please report it with the log)",
    2: "usage error: bad flags or configuration",
    3: "cannot connect or log in to the server",
    4: "preflight refused: server settings, table or privileges not suitable",
    5: "the ALTER is invalid or not supported",
    6: "another onlineddl run holds the table",
    7: "checksum mismatch: the copy does not match the source",
    8: "cutover failed: the table was left unchanged",
    9: "--resume refused",
    10: "the data does not fit the new schema (e.g. duplicates for a new UNIQUE key)",
    11: "aborted on request; resumable",
    12: "a bounded wait expired",
    13: "binlog replication failed, or DDL on the table during the run",
    14: "tables in the way: an earlier run's (--resume or `onlineddl cleanup`), or a "
        "user's table with an artifact's name",
    15: "unexpected database error",
}

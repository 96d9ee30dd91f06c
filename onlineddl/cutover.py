"""The cutover: block writes, drain every change, swap the tables atomically, release.

T is never missing and no write lands in the old table after the drain. Each attempt
is bounded (lock wait, drain, rename wait); a failed attempt leaves T as it was; a
bounded number of attempts with backoff and jitter.

Two protocols, chosen by the flavor:

- MySQL 8.0.13+ renames under LOCK TABLES: lock T and the shadow on one connection,
  drain through it, RENAME, UNLOCK. Writers queued on T open the new T afterwards.

- MariaDB refuses RENAME under LOCK TABLES (error 1192), so two connections are used.
  The queued RENAME must win the race against queued writers when the lock goes, and
  it only does if it is waiting for T itself: the server takes a statement's metadata
  locks one at a time in name order, so a RENAME stuck on an earlier name (for a
  lowercase T, `_t_new` and `_t_old` sort before `t`) lets writers into the OLD table
  first. We saw exactly that on MariaDB 10.11: writes landed in `_t_old` after the
  drain. So the lock connection holds only T (READ: writers wait, the applier can still
  read T) and a sentry whose name sorts AFTER T; the drain goes through the applier's
  own connection; only then is `RENAME TABLE T TO _T_old, _T_new TO T, _T_swap TO
  <sentry>` issued, which takes the free `_T_*` locks and queues on T. The lock side
  drops the sentry and unlocks; the RENAME goes first. If the lock connection dies
  before dropping the sentry, the RENAME fails on the existing sentry: T is untouched.

After either protocol the binlog is read up to the RENAME itself: a row change for T
between the drain position and the RENAME would be a write that reached the old
table, and is reported as such instead of passing silently.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from onlineddl import faults, sql
from onlineddl.applier import Applier
from onlineddl.config import Dsn, Tuning
from onlineddl.db import Session, retry
from onlineddl.errors import CutoverFailed, OnlineDDLError, ReplicationError
from onlineddl.flavor import BinlogPosition, MySQL
from onlineddl.table import Artifacts, present_artifacts

log = logging.getLogger(__name__)

SENTRY_COMMENT = "onlineddl cutover sentry"


@dataclass(frozen=True)
class SwapState:
    swapped: bool      # T is the former shadow; _T_old is the original
    shadow_exists: bool
    old_exists: bool


def swap_state(session: Session, database: str, artifacts: Artifacts) -> SwapState:
    """Ask the server whether the swap happened (never guess, never blindly retry)."""
    names = present_artifacts(session, database, artifacts)
    shadow = artifacts.shadow in names
    old = artifacts.old in names
    return SwapState(swapped=old and not shadow and artifacts.table in names,
                     shadow_exists=shadow, old_exists=old)


def drop_guards(session: Session, database: str, artifacts: Artifacts) -> None:
    """Remove cutover guard tables (only ones carrying the sentry comment)."""
    names = present_artifacts(session, database, artifacts)
    for name in (artifacts.sentry, artifacts.swap):
        if names.get(name) == SENTRY_COMMENT:
            session.execute(f"DROP TABLE IF EXISTS {sql.qualified(database, name)}")


class Cutover:
    def __init__(self, *, dsn: Dsn, flavor: MySQL, control: Session, database: str,
                 artifacts: Artifacts, applier: Applier, tuning: Tuning,
                 on_block: Callable[[BinlogPosition], None],
                 is_owner: Callable[[], None],
                 before_swap: Callable[[Session], None] = lambda session: None) -> None:
        self.dsn = dsn
        self.flavor = flavor
        self.control = control
        self.database = database
        self.a = artifacts
        self.applier = applier
        self.tuning = tuning
        self.on_block = on_block      # records cutover_started + drain position
        self.is_owner = is_owner      # raises if we lost the runner lock
        # Runs after the drain under the write block, on a session that may change the
        # shadow (the lock session where it holds the shadow, else the control session).
        self.before_swap = before_swap
        self.attempts = 0
        self.block_seconds = 0.0
        self.drained_changes = 0

    def run(self) -> None:
        last: OnlineDDLError | None = None
        for attempt in range(1, self.tuning.cutover_attempts + 1):
            self.attempts = attempt
            self.is_owner()
            try:
                self._attempt()
                break
            except OnlineDDLError as err:
                if self._swapped():
                    log.info("cutover: the swap happened despite %s", err.message)
                    break
                last = err
                retry(lambda: drop_guards(self.control, self.database, self.a),
                      what="removing cutover guards")
                self._backoff(attempt, err)
        else:
            raise CutoverFailed(
                f"cutover failed {self.tuning.cutover_attempts} times; last error: "
                f"{last.message if last else 'unknown'}",
                hint="the table is unchanged and the run is resumable with --resume. Long "
                     "transactions on the table block the write lock: find them in "
                     "information_schema.INNODB_TRX, or raise --cutover-lock-timeout")
        self._verify_no_late_writes()

    def _swapped(self) -> bool:
        """Ask the server, retrying: the control connection may be what just failed."""
        return retry(lambda: swap_state(self.control, self.database, self.a),
                     what="checking whether the swap happened").swapped

    def _backoff(self, attempt: int, err: OnlineDDLError) -> None:
        delay = min(10.0, 0.5 * 2 ** (attempt - 1)) * random.uniform(0.5, 1.5)
        level = logging.INFO if attempt == 1 else logging.WARNING
        log.log(level, "cutover attempt %d/%d failed: %s; table unchanged; retrying in %.1fs",
                attempt, self.tuning.cutover_attempts, err.message, delay)
        time.sleep(delay)

    def _attempt(self) -> None:
        faults.point("cutover_attempt")
        if self.flavor.rename_under_lock:
            self._attempt_single()
        else:
            self._attempt_two_connections()

    def _session(self, name: str, lock_wait: int) -> Session:
        return Session(self.dsn, name=name, database=self.database, lock_wait_timeout=lock_wait)

    def _block_and_drain(self, lock: Session, lock_sql: str, drain_via: Session | None
                         ) -> float:
        lock.execute(lock_sql)
        blocked_at = time.monotonic()
        target = self.flavor.current_position(self.control)
        self.on_block(target)
        faults.point("cutover_started")
        self.applier.drain(target, self.tuning.block_timeout, session=drain_via)
        self.drained_changes = self.applier.delta.received
        self.before_swap(drain_via or self.control)
        faults.point("before_swap")
        return blocked_at

    def _rename_sql(self, guard: bool) -> str:
        t, s, o = sql.ident(self.a.table), sql.ident(self.a.shadow), sql.ident(self.a.old)
        text = f"RENAME TABLE {t} TO {o}, {s} TO {t}"
        if guard:
            text += f", {sql.ident(self.a.swap)} TO {sql.ident(self.a.sentry)}"
        return text

    def _attempt_single(self) -> None:
        lock = self._session("cutover", self.tuning.cutover_lock_timeout)
        try:
            with self.applier.paused():
                t, s = sql.ident(self.a.table), sql.ident(self.a.shadow)
                blocked_at = self._block_and_drain(
                    lock, f"LOCK TABLES {t} WRITE, {s} WRITE", drain_via=lock)
                lock.execute(self._rename_sql(guard=False))
                faults.point("after_swap")
                lock.execute("UNLOCK TABLES")
                self.block_seconds = time.monotonic() - blocked_at
        finally:
            lock.close()

    def _attempt_two_connections(self) -> None:
        lock = self._session("cutover-lock", self.tuning.cutover_lock_timeout)
        wait = int(self.tuning.cutover_lock_timeout + self.tuning.block_timeout) + 5
        renamer = self._session("cutover-rename", wait)
        outcome: dict[str, BaseException | None] = {}
        try:
            with self.applier.paused():
                self._create_guards(lock)
                t, sentry = sql.ident(self.a.table), sql.ident(self.a.sentry)
                blocked_at = self._block_and_drain(
                    lock, f"LOCK TABLES {t} READ, {sentry} WRITE", drain_via=None)
                thread = threading.Thread(target=self._rename, args=(renamer, outcome),
                                          name="cutover-rename", daemon=True)
                thread.start()
                self._wait_rename_queued(renamer, outcome)
                lock.execute(f"DROP TABLE {sentry}")
                lock.execute("UNLOCK TABLES")
                thread.join(timeout=wait + 5)
                self.block_seconds = time.monotonic() - blocked_at
                faults.point("after_swap")
            self._rename_result(thread, outcome)
            drop_guards(self.control, self.database, self.a)
        finally:
            lock.close()
            renamer.close()

    def _create_guards(self, lock: Session) -> None:
        for name in (self.a.sentry, self.a.swap):
            lock.execute(f"CREATE TABLE {sql.ident(name)} (id INT PRIMARY KEY) "
                         f"COMMENT='{SENTRY_COMMENT}'")

    def _rename(self, renamer: Session, outcome: dict[str, BaseException | None]) -> None:
        try:
            renamer.execute(self._rename_sql(guard=True))
            outcome["error"] = None
        except BaseException as exc:  # reported to the lock side through `outcome`
            outcome["error"] = exc

    def _wait_rename_queued(self, renamer: Session, outcome: dict[str, BaseException | None]
                            ) -> None:
        """Only drop the sentry once the RENAME is seen waiting for a metadata lock."""
        deadline = time.monotonic() + self.tuning.block_timeout
        while time.monotonic() < deadline:
            if "error" in outcome:
                raise CutoverFailed(f"the RENAME failed before the swap: {outcome['error']}")
            state = self.control.scalar(
                "SELECT STATE FROM information_schema.PROCESSLIST WHERE ID = %s",
                (renamer.thread_id,))
            if state and "metadata lock" in str(state).lower():
                return
            time.sleep(0.002)
        raise CutoverFailed("the RENAME was not seen waiting for the table lock in time")

    def _rename_result(self, thread: threading.Thread,
                       outcome: dict[str, BaseException | None]) -> None:
        if thread.is_alive():
            raise CutoverFailed("the RENAME did not finish in time")
        error = outcome.get("error")
        if error is not None:
            raise CutoverFailed(f"the RENAME failed: {error}")

    def _verify_no_late_writes(self) -> None:
        """Read the binlog up to our RENAME: no row change for T may sit between the
        drain and the swap. This is a tripwire for the protocol, not a repair."""
        ddl = self.applier.wait_for_ddl(timeout=self.tuning.drain_timeout)
        if ddl is None:
            log.warning("cutover: could not confirm from the binlog that no write reached "
                        "the old table after the drain (the RENAME was not seen in time)")
            return
        late = self.applier.delta.received - self.drained_changes
        if late:
            keys = [k for k, _ in self.applier.delta.snapshot()][:20]
            raise ReplicationError(
                f"{late} row change(s) reached {self.a.old} after the drain and before the "
                f"swap; they are missing from the new {self.a.table}. Keys: {keys}",
                hint=f"copy those rows from {self.a.old} by hand after checking them; "
                     "please report this with the log")

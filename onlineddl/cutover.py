"""The cutover: block writes, drain every change, swap the tables atomically, release.

T is never missing and no write lands in the old table after the drain. Each attempt
is bounded (lock wait, drain, rename wait); a failed attempt leaves T as it was; a
bounded number of attempts with backoff and jitter.

Two protocols, chosen by the flavor:
- MySQL 8.0.13+ renames under LOCK TABLES: lock T and the shadow on one connection,
  drain through it, RENAME, UNLOCK.
- MariaDB refuses that (error 1192), so it uses two connections (gh-ost's design): the
  lock connection creates a sentry table under the old name `_T_old` and locks T, the
  shadow and the sentry; a second connection issues `RENAME TABLE T TO _T_old, _T_new
  TO T`, which queues behind the lock. The lock connection drains, drops the sentry and
  unlocks; the queued RENAME has priority over queued writes and wins. If anything goes
  wrong before the sentry is dropped, the RENAME fails on the existing sentry and T is
  untouched.
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
from onlineddl.db import Session
from onlineddl.errors import CutoverFailed, OnlineDDLError
from onlineddl.flavor import BinlogPosition, MySQL
from onlineddl.table import Artifacts

log = logging.getLogger(__name__)

SENTRY_COMMENT = "onlineddl cutover sentry"


@dataclass(frozen=True)
class SwapState:
    swapped: bool      # T is the former shadow; _T_old is the original
    shadow_exists: bool
    old_exists: bool


def swap_state(session: Session, database: str, artifacts: Artifacts) -> SwapState:
    """Ask the server whether the swap happened (never guess, never blindly retry)."""
    rows = session.query(
        "SELECT TABLE_NAME, TABLE_COMMENT FROM information_schema.TABLES "
        "WHERE TABLE_SCHEMA = %s AND TABLE_NAME IN (%s, %s, %s)",
        (database, artifacts.table, artifacts.shadow, artifacts.old))
    names = {str(r[0]): str(r[1] or "") for r in rows}
    old_is_table = artifacts.old in names and names[artifacts.old] != SENTRY_COMMENT
    shadow = artifacts.shadow in names
    return SwapState(swapped=old_is_table and not shadow and artifacts.table in names,
                     shadow_exists=shadow, old_exists=artifacts.old in names)


class Cutover:
    def __init__(self, *, dsn: Dsn, flavor: MySQL, control: Session, database: str,
                 artifacts: Artifacts, applier: Applier, tuning: Tuning,
                 on_block: Callable[[BinlogPosition], None],
                 is_owner: Callable[[], None]) -> None:
        self.dsn = dsn
        self.flavor = flavor
        self.control = control
        self.database = database
        self.a = artifacts
        self.applier = applier
        self.tuning = tuning
        self.on_block = on_block      # records cutover_started + drain position
        self.is_owner = is_owner      # raises if we lost the runner lock
        self.attempts = 0
        self.block_seconds = 0.0

    def run(self) -> None:
        last: OnlineDDLError | None = None
        for attempt in range(1, self.tuning.cutover_attempts + 1):
            self.attempts = attempt
            self.is_owner()
            try:
                self._attempt()
                return
            except OnlineDDLError as err:
                if swap_state(self.control, self.database, self.a).swapped:
                    log.info("cutover: the swap happened despite %s", err.message)
                    return
                last = err
                self._drop_sentry()
                delay = min(10.0, 0.5 * 2 ** (attempt - 1)) * random.uniform(0.5, 1.5)
                level = logging.INFO if attempt == 1 else logging.WARNING
                log.log(level, "cutover attempt %d/%d failed: %s; table unchanged; "
                        "retrying in %.1fs", attempt, self.tuning.cutover_attempts,
                        err.message, delay)
                time.sleep(delay)
        raise CutoverFailed(
            f"cutover failed {self.tuning.cutover_attempts} times; last error: "
            f"{last.message if last else 'unknown'}",
            hint="the table is unchanged and the run is resumable with --resume. Long "
                 "transactions on the table block the write lock: find them in "
                 "information_schema.INNODB_TRX, or raise --cutover-lock-timeout")

    def _attempt(self) -> None:
        if self.flavor.rename_under_lock:
            self._attempt_single()
        else:
            self._attempt_two_connections()

    def _session(self, name: str, lock_wait: int) -> Session:
        return Session(self.dsn, name=name, database=self.database, lock_wait_timeout=lock_wait)

    def _lock_and_drain(self, lock: Session, tables: list[str]) -> float:
        listed = ", ".join(f"{sql.ident(t)} WRITE" for t in tables)
        lock.execute(f"LOCK TABLES {listed}")
        blocked_at = time.monotonic()
        target = self.flavor.current_position(self.control)
        self.on_block(target)
        faults.point("cutover_started")
        self.applier.drain(lock, target, self.tuning.block_timeout, atomic=False)
        faults.point("before_swap")
        return blocked_at

    def _attempt_single(self) -> None:
        lock = self._session("cutover", self.tuning.cutover_lock_timeout)
        try:
            with self.applier.paused():
                blocked_at = self._lock_and_drain(lock, [self.a.table, self.a.shadow])
                lock.execute(self._rename_sql())
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
                lock.execute(f"CREATE TABLE {sql.ident(self.a.old)} (id INT PRIMARY KEY) "
                             f"COMMENT='{SENTRY_COMMENT}'")
                blocked_at = self._lock_and_drain(
                    lock, [self.a.table, self.a.shadow, self.a.old])
                thread = threading.Thread(target=self._rename, args=(renamer, outcome),
                                          name="cutover-rename", daemon=True)
                thread.start()
                self._wait_rename_queued(renamer, outcome)
                lock.execute(f"DROP TABLE {sql.ident(self.a.old)}")
                lock.execute("UNLOCK TABLES")
                thread.join(timeout=wait + 5)
                self.block_seconds = time.monotonic() - blocked_at
                faults.point("after_swap")
            self._rename_result(thread, outcome)
        finally:
            lock.close()
            renamer.close()

    def _rename_sql(self) -> str:
        t, s, o = sql.ident(self.a.table), sql.ident(self.a.shadow), sql.ident(self.a.old)
        return f"RENAME TABLE {t} TO {o}, {s} TO {t}"

    def _rename(self, renamer: Session, outcome: dict[str, BaseException | None]) -> None:
        try:
            renamer.execute(self._rename_sql())
            outcome["error"] = None
        except BaseException as exc:  # reported to the lock side through `outcome`
            outcome["error"] = exc

    def _wait_rename_queued(self, renamer: Session, outcome: dict[str, BaseException | None]
                            ) -> None:
        """Only drop the sentry once the RENAME is seen waiting for our lock."""
        deadline = time.monotonic() + self.tuning.block_timeout
        while time.monotonic() < deadline:
            if "error" in outcome:
                raise CutoverFailed(f"the RENAME failed before the swap: {outcome['error']}")
            state = self.control.scalar(
                "SELECT STATE FROM information_schema.PROCESSLIST WHERE ID = %s",
                (renamer.thread_id,))
            if state and "metadata lock" in str(state).lower():
                return
            time.sleep(0.005)
        raise CutoverFailed("the RENAME was not seen waiting for the table lock in time")

    def _rename_result(self, thread: threading.Thread,
                       outcome: dict[str, BaseException | None]) -> None:
        if thread.is_alive():
            raise CutoverFailed("the RENAME did not finish in time")
        error = outcome.get("error")
        if error is not None:
            raise CutoverFailed(f"the RENAME failed: {error}")

    def _drop_sentry(self) -> None:
        """Remove a sentry left by a failed attempt (never a real table)."""
        comment = self.control.scalar(
            "SELECT TABLE_COMMENT FROM information_schema.TABLES "
            "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s", (self.database, self.a.old))
        if comment == SENTRY_COMMENT:
            self.control.execute(f"DROP TABLE IF EXISTS {sql.qualified(self.database, self.a.old)}")

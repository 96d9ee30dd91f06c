"""The cutover: block writes, drain every change, swap the tables atomically, release.

T is never missing and no write lands in the old table after the drain. Each attempt
is bounded (lock wait, drain, rename wait); a failed attempt leaves T as it was; a
bounded number of attempts with backoff and jitter.

Two protocols, chosen by the flavor:

- MySQL 8.0.13+ renames under LOCK TABLES: check the shadow free (as in step 1
  below), lock T and the shadow on one connection, drain through it, RENAME, UNLOCK.
  Writers queued on T open the new T afterwards, and so does another session's DDL
  on T queued meanwhile.

- MariaDB refuses RENAME under LOCK TABLES (error 1192), so two connections are used.
  The queued RENAME must win the race against queued writers when the lock goes, and
  it only does if it is waiting for T itself: the server takes a statement's metadata
  locks one at a time in name order, so a RENAME stuck on an earlier name (for a
  lowercase T, `_t_new`, `_t_old_<stamp>` and `_t_swap` sort before `t`) lets writers into the
  OLD table first. We saw exactly that on MariaDB 10.11, twice: with the classic
  protocol (our own lock on the shadow), and with another session's open transaction
  that had read `_t_new`. So:

  1. Before blocking anything, a guard connection takes `LOCK TABLES _T_new WRITE,
     _T_swap WRITE` and lets go: another session holding those names (an open
     transaction that read `_T_new`, a HANDLER) fails the attempt here, T unblocked.
  2. The lock connection holds T (READ: writers wait, the applier can still read T)
     and a sentry whose name sorts AFTER T; the drain goes through the applier's own
     connections, bounded inside a statement too (applier.drain).
  3. `RENAME TABLE T TO _T_old_<stamp>, _T_new TO T, _T_swap TO <sentry>` is issued from a
     second connection. Before the lock goes, the RENAME must be seen holding the
     exclusive lock on every name that sorts before T (a probe asks for a shared
     high-priority lock on each without waiting: only a granted exclusive lock refuses
     it; information_schema.METADATA_LOCK_INFO must agree where that plugin is
     loaded), with no other session's statement naming those tables. Else the RENAME
     is killed and the lock released: T unchanged, writes blocked at most
     Tuning.block_timeout.
  4. No other session may have DDL queued on T: a statement holding or waiting for T
     before our RENAME queued would run on the OLD table right after the unlock. A
     watcher polls PROCESSLIST while T is blocked; such a statement ends the attempt at
     once (the drain's statements are killed) and the run with TableChanged: the DDL
     then runs on T as its author meant, and the shadow is stale.
  5. The lock side drops the sentry and unlocks; the RENAME goes first. If the lock
     connection dies before dropping the sentry, the RENAME fails on the existing
     sentry: T is untouched.

Triggers (triggers.py; marked "triggers:" below): after the drain, under the block, T's
triggers move to the shadow (a guard on T first, then DROP on T, CREATE on the shadow)
so the RENAME gives the new T the same triggers. MySQL's lock connection does it; on
MariaDB DROP TRIGGER needs T write-locked, so a second lock connection queues `LOCK
TABLES T WRITE, <sentry> WRITE` and the READ lock goes once it is seen waiting for T
(a waiting write lock is served before waiting writers); steps 3-5 run from it.

Every lock session tells the server to drop it after a few idle seconds (db.Session
idle_limit), so a frozen tool host cannot keep T blocked.

After either protocol the binlog is read up to the RENAME itself, and the run only
succeeds if that is confirmed: the first statement on T after the drain position must
be our RENAME, with no row change for T before it (a write that reached the old table),
and the old table must have the shape T had under the block. Anything else, or no answer
in time, fails the run with a message saying what to check.

The old table's name `_T_old_<stamp>` is the run's own (Artifacts.old, recorded in the
checkpoint before the copy): it does not exist before the swap, so no session can hold
it and the pre-lock of step 1 has nothing to take there; where it sorts before T the
probe of step 3 still requires the RENAME's exclusive lock on it (a missing name the
RENAME does not hold answers "no such table", which calls the attempt off).
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from onlineddl import faults, fkparents, foreignkeys, ledger, sql, triggers
from onlineddl.applier import Applier
from onlineddl.config import Dsn, Tuning
from onlineddl.db import ER_LOCK_WAIT_TIMEOUT, Session, retry
from onlineddl.errors import (
    CutoverFailed,
    DatabaseError,
    DataError,
    OnlineDDLError,
    ReplicationError,
    TableChanged,
    TableNotFound,
)
from onlineddl.flavor import BinlogPosition, MySQL
from onlineddl.othersessions import (
    Watcher,
    foreign_ddl,
    lock_info,
    lock_source,
    mdl_key,
    others_name,
)
from onlineddl.table import Artifacts, present_artifacts

log = logging.getLogger(__name__)

SENTRY_COMMENT = "onlineddl cutover sentry"
RENAME_JOIN = 10.0       # seconds to wait for the RENAME once the lock is gone


@dataclass(frozen=True)
class SwapState:
    swapped: bool      # T is the former shadow; the run's old table is the original
    shadow_exists: bool
    old_exists: bool


def swap_state(session: Session, database: str, artifacts: Artifacts) -> SwapState:
    """Ask the server whether the swap happened (never guess, never blindly retry),
    from the run's own old-table name (the checkpoint's): another run's old table of T
    says nothing about this one."""
    if not artifacts.old:
        raise ValueError("swap_state needs the run's old-table name")
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
            ledger.drop(session, database, name)


def rename_sql(artifacts: Artifacts, guard: bool) -> str:
    """The swap statement (`guard`: the MariaDB form that renames _T_swap onto the
    sentry's name, so it fails while the sentry exists)."""
    a = artifacts
    if not a.old:
        raise ValueError("the swap needs the run's old-table name")
    t, s, o = sql.ident(a.table), sql.ident(a.shadow), sql.ident(a.old)
    text = f"RENAME TABLE {t} TO {o}, {s} TO {t}"
    if guard:
        text += f", {sql.ident(a.swap)} TO {sql.ident(a.sentry)}"
    return text


def is_our_rename(statement: str, artifacts: Artifacts) -> bool:
    """Is this binlogged statement one of our swap statements (either form)?"""
    text = " ".join(statement.split()).rstrip(";")
    return any(text == rename_sql(artifacts, guard) for guard in (False, True))


def normalized_shape(create_sql: str) -> str:
    """SHOW CREATE TABLE text without the table's own name and AUTO_INCREMENT counter."""
    body = create_sql.split("\n", 1)[1] if "\n" in create_sql else create_sql
    return re.sub(r"\s+AUTO_INCREMENT=\d+", "", body)


def table_shape(session: Session, database: str, table: str) -> str:
    """The table's definition as compared across the run (normalized_shape)."""
    row = session.query_one(f"SHOW CREATE TABLE {sql.qualified(database, table)}")
    # [foreign keys] constraint names the RENAME changes with the table's are not shape
    return foreignkeys.same_across_rename(normalized_shape(str(row[1])), table) \
        if row else ""


class Cutover:
    def __init__(self, *, dsn: Dsn, flavor: MySQL, control: Session, database: str,
                 artifacts: Artifacts, applier: Applier, tuning: Tuning,
                 on_block: Callable[[BinlogPosition], None],
                 is_owner: Callable[[], None],
                 before_swap: Callable[[Session], None] = lambda session: None,
                 carry: triggers.Carry | None = None,
                 after_failed_attempt: Callable[[Session], None] = lambda session: None,
                 undo_under_block: Callable[[Session], None] = lambda session: None,
                 children_lock: Callable[[], str] = lambda: "") -> None:
        self.dsn = dsn
        self.flavor = flavor
        self.control = control
        self.database = database
        if not artifacts.old:
            raise ValueError("the cutover needs the run's old-table name")
        self.a = artifacts
        self.applier = applier
        self.tuning = tuning
        self.on_block = on_block      # records cutover_started + drain position
        self.is_owner = is_owner      # raises if we lost the runner lock
        # Runs after the drain under the write block, on a session that may change the
        # shadow (the lock session where it holds the shadow, else the control session).
        self.before_swap = before_swap
        self.carry = carry            # T's triggers (triggers.py): moved under the block
        # [foreign keys] After an attempt that did not swap, on the control session:
        # undoes what before_swap did to the shadow that must not stay meanwhile.
        self.after_failed_attempt = after_failed_attempt
        # [fk parents] An attempt that did not swap, on the control session, before the
        # applier resumes (T still blocked where it can be): the children back to T.
        self.undo_under_block = undo_under_block
        # [fk parents] LOCK TABLES text for the tables referencing T ("" for none): held
        # from after before_swap until the RENAME is done (see _lock_children).
        self.children_lock = children_lock
        self.attempts = 0
        self.block_seconds = 0.0
        self.drained_changes = 0
        self.drain_position: BinlogPosition | None = None
        self.shape_under_block = ""   # SHOW CREATE TABLE of T while writes were blocked
        self._locks_from: str | None = None   # see othersessions.lock_source

    # --- attempts --------------------------------------------------------------------

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
                    with self.applier.paused():
                        self.applier.swapped()
                    break
                retry(lambda: drop_guards(self.control, self.database, self.a),
                      what="removing cutover guards")
                # The flusher stays paused until the shadow has neither T's triggers (a
                # flush would fire them) nor its constraints: also before a final error.
                with self.applier.paused():
                    retry(self._undo_shadow_changes, what="undoing the pre-swap changes")
                self._stop_if_final(err)
                last = err
                self._backoff(attempt, err)
        else:
            raise CutoverFailed(
                f"cutover failed {self.tuning.cutover_attempts} times; last error: "
                f"{last.message if last else 'unknown'}",
                hint=(last.hint if last and last.hint else
                      "long transactions on the table block the write lock: find them in "
                      "information_schema.INNODB_TRX (a prepared XA transaction, which "
                      "holds its locks until XA COMMIT or XA ROLLBACK, in XA RECOVER), or "
                      "raise --cutover-lock-timeout")
                + f"; {self.a.table} is unchanged and the run is resumable with --resume")
        self._verify_swap()

    def _undo_shadow_changes(self) -> None:
        """After an attempt that did not swap: T's triggers back on T (guard dropped),
        then what before_swap did to the shadow ([foreign keys] its constraints)."""
        if self.carry is not None:
            self.carry.repair(swapped=False)
        self.after_failed_attempt(self.control)

    def _stop_if_final(self, err: OnlineDDLError) -> None:
        """Another session's DDL on T, a dead binlog stream, or data the new table cannot
        hold (a duplicate for a new UNIQUE key drained under the block) end the run at
        once: retrying cannot help (the applier stops on any DDL it reads for T)."""
        if isinstance(err, TableChanged | DataError):
            raise err
        if isinstance(err, ReplicationError) or self.applier.ddl is not None:
            ddl = self.applier.ddl
            if ddl is not None:
                raise foreign_ddl(self.a.table, f"the binlog shows: {ddl[:300]}",
                                  before_swap=True) from err
            raise err

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

    # --- sessions and bounds -----------------------------------------------------------

    def _queue_wait(self) -> float:
        """Of the write block's bound, what seeing the RENAME queued may take."""
        return min(1.0, self.tuning.block_timeout / 5)

    def _drain_budget(self) -> float:
        return max(0.5, self.tuning.block_timeout - self._queue_wait())

    def _lock_session(self, name: str) -> Session:
        """A session that blocks T: the server drops it (and its locks) once it has been
        silent a little longer than the block may last."""
        return Session(self.dsn, name=name, database=self.database,
                       lock_wait_timeout=self.tuning.cutover_lock_timeout,
                       read_timeout=self.tuning.cutover_lock_timeout + 10,
                       idle_limit=int(self.tuning.block_timeout) + 2)

    def _rename_wait(self) -> int:
        return int(self.tuning.cutover_lock_timeout + self.tuning.block_timeout) + 5

    def _block(self, lock: Session, lock_sql: str) -> float:
        lock.execute(lock_sql)
        blocked_at = time.monotonic()
        faults.point("cutover_locked")
        target = self.flavor.current_position(self.control)
        self.shape_under_block = self._shape(self.a.table)
        if self.carry is not None:   # triggers: record them while no DDL can change them
            self.carry.snapshot()
        self.drain_position = target
        self.on_block(target)
        faults.point("cutover_started")
        return blocked_at

    def _drain(self, drain_via: Session | None, watcher: Watcher | None) -> None:
        try:
            self.applier.drain(self._target(), self._drain_budget(), session=drain_via)
        except OnlineDDLError:
            if watcher is not None:
                watcher.raise_if_found()
            raise
        self.drained_changes = self.applier.delta.received
        self.before_swap(drain_via or self.control)
        faults.point("before_swap")

    def _target(self) -> BinlogPosition:
        assert self.drain_position is not None
        return self.drain_position

    def _shape(self, table: str) -> str:
        return table_shape(self.control, self.database, table)

    # --- MySQL: one connection -----------------------------------------------------------

    def _attempt_single(self) -> None:
        lock = self._lock_session("cutover")
        try:
            with self.applier.paused():
                faults.point("cutover_paused")
                # The lock below waits for _T_new before T only where `_T_new` sorts
                # first (lowercase names): check it free before T is blocked either way.
                self._check_names_free(lock, (self.a.shadow,))
                t, s = sql.ident(self.a.table), sql.ident(self.a.shadow)
                blocked_at = self._block(lock, f"LOCK TABLES {t} WRITE, {s} WRITE")
                self._drain(lock, None)
                if self.carry is not None:   # triggers: T and the shadow are ours
                    self.carry.carry(lock, lock)
                try:
                    lock.execute(rename_sql(self.a, guard=False))
                except OnlineDDLError:
                    if self.carry is not None:   # triggers: back on T under the lock
                        self.carry.undo(lock, lock)
                    raise
                self.applier.swapped()
                faults.point("after_swap")
                lock.execute("UNLOCK TABLES")
                self.block_seconds = time.monotonic() - blocked_at
        finally:
            lock.close()

    # --- MariaDB: two connections ----------------------------------------------------------

    def _attempt_two_connections(self) -> None:
        wait = self._rename_wait()
        lock = self._lock_session("cutover-lock")
        sessions = [lock]
        try:
            # Holds locks only while its RENAME runs: no idle limit needed.
            renamer = Session(self.dsn, name="cutover-rename", database=self.database,
                              lock_wait_timeout=wait, read_timeout=wait + 10)
            sessions.append(renamer)
            # [fk parents] Once T's lock is its own, a parent's RENAME also waits (InnoDB,
            # "checking permissions") for transactions open on the child tables, with T
            # blocked meanwhile (MariaDB 10.11): that wait fails the attempt (error 1205,
            # nothing renamed) after the cutover lock timeout.
            renamer.execute("SET SESSION innodb_lock_wait_timeout = %s",
                            (self.tuning.cutover_lock_timeout,))
            # lock_wait_timeout 0: the probe never waits (MariaDB; see _rename_holds).
            probe = Session(self.dsn, name="cutover-probe", database=self.database,
                            lock_wait_timeout=0, read_timeout=30)
            sessions.append(probe)
            watch = Session(self.dsn, name="cutover-watch", read_timeout=30)
            sessions.append(watch)
            kids = None
            if self.children_lock():   # [fk parents] see _lock_children
                kids = self._lock_session("cutover-children")
                sessions.append(kids)
            relock = None
            if self.carry is not None and self.carry.recorded:   # triggers: see _relock
                relock = self._lock_session("cutover-relock")
                sessions.append(relock)
            ours = {s.thread_id for s in sessions} | {self.control.thread_id} | \
                self.applier.thread_ids()
            before_t = self._names_before_table()
            self._locks_from = lock_source(self.control)
            with self.applier.paused():
                faults.point("cutover_paused")
                self._create_guards(lock)
                self._check_names_free(lock, (self.a.shadow, self.a.swap))
                watcher = Watcher(watch, self.database, self.a.table, ours,
                                  self.applier.interrupt_drain)
                try:
                    self._swap_under_lock(lock, renamer, probe, watcher, before_t, relock,
                                          kids)
                except OnlineDDLError:
                    if not self._swapped():   # [fk parents] before the applier resumes
                        self.undo_under_block(self.control)
                    raise
            drop_guards(self.control, self.database, self.a)
        finally:
            for session in sessions:
                session.close()

    def _swap_under_lock(self, lock: Session, renamer: Session, probe: Session,
                         watcher: Watcher, before_t: list[str],
                         relock: Session | None = None, kids: Session | None = None) -> None:
        t, sentry = sql.ident(self.a.table), sql.ident(self.a.sentry)
        outcome: dict[str, BaseException | None] = {}
        thread = threading.Thread(target=self._rename, args=(renamer, outcome),
                                  name="cutover-rename", daemon=True)
        blocked_at = self._block(lock, f"LOCK TABLES {t} READ, {sentry} WRITE")
        watcher.start()
        released = False
        try:
            watcher.raise_if_found()
            self._drain(None, watcher)
            lock = self._relock(lock, relock, watcher)
            self._lock_children(kids)
            thread.start()
            self._wait_rename_queued(renamer, probe, outcome, watcher, before_t)
            faults.point("rename_queued")
            watcher.stop()
            # A last look, in this thread: DDL that arrives from now on queues behind
            # the RENAME, which waits for T already.
            found = watcher.look()
            if found:
                raise foreign_ddl(self.a.table, found, before_swap=True)
            lock.execute(f"DROP TABLE {sentry}")
            lock.execute("UNLOCK TABLES")
            released = True
            thread.join(timeout=RENAME_JOIN)
            # Writers wait for the RENAME too: the block ends when it does.
            self.block_seconds = time.monotonic() - blocked_at
            self._unlock_children(kids)
            self._rename_result(renamer, thread, outcome)
            self.applier.swapped()
            faults.point("after_swap")
        finally:
            watcher.stop()
            if not released:
                self._call_off(renamer, thread)
                self._unlock_children(kids)   # [fk parents] the undo ALTERs them
                self._undo_quietly(blocked_at)   # [fk parents] while T is still blocked
                if self.carry is not None:   # triggers: back on T while it is still locked
                    self.carry.undo(lock, self.control)
            self._unlock_children(kids)

    def _lock_children(self, kids: Session | None) -> None:
        """[fk parents] After the children were re-pointed, hold them (LOCK TABLES ...
        WRITE) until the RENAME is done. A parent's RENAME takes InnoDB locks on its
        child tables and waits, T blocked, for any transaction open on them (MariaDB
        10.11); held here, none can be: one that started after the children's ALTERs
        makes this lock wait (at most the cutover lock timeout) and then fail the
        attempt while T is still blocked. The RENAME itself does not wait for this lock
        (checked: it takes no metadata lock on the children)."""
        if kids is None:
            return
        statement = self.children_lock()
        if not statement:
            return
        try:
            kids.execute(statement)
        except DatabaseError as err:
            if err.errno != ER_LOCK_WAIT_TIMEOUT:
                raise
            raise CutoverFailed(
                f"the tables that reference {self.a.table} could not be locked within "
                f"{self.tuning.cutover_lock_timeout}s under the write block (a transaction "
                "open on one of them, or a trigger of theirs that uses the table); the "
                "swap was called off", hint="find long transactions in "
                "information_schema.INNODB_TRX") from err
        faults.point("children_locked")

    def _unlock_children(self, kids: Session | None) -> None:
        if kids is None:
            return
        try:
            kids.execute("UNLOCK TABLES")
        except OnlineDDLError as err:   # the session's end releases them as well
            log.warning("could not unlock the referencing tables: %s", err.message)
            kids.close()

    def _undo_quietly(self, blocked_at: float) -> None:
        """[fk parents] Re-point the children back while T is still blocked, each ALTER
        waiting at most what is left of the block's bound (an application transaction
        open on a child holds it meanwhile). A failure here is retried once T is
        unblocked (the caller); until then T's guard makes its UPDATEs and DELETEs fail
        loudly."""
        left = self.tuning.block_timeout - (time.monotonic() - blocked_at)
        try:
            with fkparents.lock_wait(self.control, int(left)):   # [fk parents]
                self.undo_under_block(self.control)
        except OnlineDDLError as err:
            log.warning("could not re-point the children back under the block: %s",
                        err.message)

    # --- triggers (triggers.py): T's triggers move to the shadow under the block --------

    def _relock(self, lock: Session, relock: Session | None, watcher: Watcher) -> Session:
        """With triggers to carry: trade the drain's `T READ` for `T WRITE` (DROP
        TRIGGER needs it) on `relock`, writers kept out (triggers.hand_over), carry the
        triggers, and return the session that now blocks T."""
        if self.carry is None or not self.carry.recorded:
            return lock
        # Set up whenever there are triggers to carry (the snapshot under the block
        # refuses a list that changed since).
        assert relock is not None
        t, sentry = sql.ident(self.a.table), sql.ident(self.a.sentry)
        def no_foreign_ddl() -> None:   # DDL queued on T first would run on it now
            watcher.raise_if_found()
            # Asked on the control session: the watcher's own is busy in its thread.
            found = Watcher(self.control, self.database, self.a.table, watcher.ours,
                            lambda: None).look()
            if found:
                raise foreign_ddl(self.a.table, found, before_swap=True)

        triggers.hand_over(lock, relock, self.control, f"LOCK TABLES {t} WRITE, {sentry} WRITE",
                           self._queue_wait(), no_foreign_ddl)
        self.carry.carry(relock, self.control)
        return relock

    def _create_guards(self, lock: Session) -> None:
        for name in (self.a.sentry, self.a.swap):
            lock.execute(f"CREATE TABLE {sql.ident(name)} (id INT PRIMARY KEY) "
                         f"COMMENT='{SENTRY_COMMENT}'")

    def _check_names_free(self, guard: Session, names: tuple[str, ...]) -> None:
        """Take the names the RENAME needs besides T, and let go, before T is blocked:
        another session holding `_T_new` (an open transaction that read it, a HANDLER)
        fails the attempt here, with writes never blocked. (LOCK TABLES WRITE waits for
        every lock but the shared ones that statements such as SHOW CREATE TABLE hold
        for a moment; the probe in _rename_holds covers those.)"""
        try:
            guard.execute("LOCK TABLES " + ", ".join(f"{sql.ident(n)} WRITE" for n in names))
        except DatabaseError as err:
            if err.errno != ER_LOCK_WAIT_TIMEOUT:
                raise
            raise CutoverFailed(
                f"another session holds a metadata lock on {self.a.shadow} (waited "
                f"{self.tuning.cutover_lock_timeout}s); writes were not blocked",
                hint=f"an open transaction that read {self.a.shadow}, a HANDLER or a GUI "
                     f"browsing it: find it in information_schema.PROCESSLIST and "
                     "INNODB_TRX and end it") from err
        guard.execute("UNLOCK TABLES")

    def _rename(self, renamer: Session, outcome: dict[str, BaseException | None]) -> None:
        try:
            renamer.execute(rename_sql(self.a, guard=True))
            outcome["error"] = None
        except BaseException as exc:  # reported to the lock side through `outcome`
            outcome["error"] = exc

    def _wait_rename_queued(self, renamer: Session, probe: Session,
                            outcome: dict[str, BaseException | None], watcher: Watcher,
                            before_t: list[str]) -> None:
        """Return once the RENAME waits for T itself; raise (the caller calls the swap
        off) if it is not seen there within the rest of the block's bound."""
        deadline = time.monotonic() + self._queue_wait()
        while True:
            watcher.raise_if_found()
            if "error" in outcome:
                raise CutoverFailed(f"the RENAME failed before the swap: {outcome['error']}")
            state = self.control.scalar(
                "SELECT STATE FROM information_schema.PROCESSLIST WHERE ID = %s",
                (renamer.thread_id,))
            # Exactly this state: not "schema metadata lock", nor the backup lock.
            if state == "Waiting for table metadata lock" and \
                    self._rename_holds(probe, renamer, before_t):
                return
            if time.monotonic() > deadline:
                raise CutoverFailed(
                    f"the RENAME was not seen waiting for {self.a.table} itself within "
                    f"{self._queue_wait():.1f}s (it waits for {', '.join(before_t)}: "
                    "another session holds one of them); the swap was called off",
                    hint=f"another session uses {self.a.shadow} (a transaction that read "
                         "it, a HANDLER, DDL): find it in information_schema.PROCESSLIST "
                         "and INNODB_TRX and end it")
            time.sleep(0.002)

    def _names_before_table(self) -> list[str]:
        """The RENAME's names the server locks before T (it takes them in name order)."""
        lower = bool(int(self.control.scalar("SELECT @@lower_case_table_names") or 0))
        key = mdl_key(self.a.table, lower)
        return [n for n in (self.a.shadow, self.a.old, self.a.swap)
                if mdl_key(n, lower) < key]

    def _rename_holds(self, probe: Session, renamer: Session, names: list[str]) -> bool:
        """Does the RENAME hold the exclusive lock on every one of `names`?

        The probe asks for each name's shared high-priority lock (SHOW CREATE TABLE)
        without waiting (lock_wait_timeout 0): only a granted exclusive lock refuses
        it, a queued one does not. Whose lock it is, the probe cannot tell: no other
        session's statement may name these tables, and where the metadata_lock_info
        plugin is loaded, or performance_schema with its MDL instrument, they must list
        them as the RENAME's (and T as the only lock it waits for, where shown)."""
        for name in names:
            try:
                probe.execute(f"SHOW CREATE TABLE {sql.ident(name)}")
                return False  # granted to us: nobody holds it exclusively
            except TableNotFound:
                return False  # a missing name (the old table) not locked: the same
            except DatabaseError as err:
                if err.errno != ER_LOCK_WAIT_TIMEOUT:
                    raise
        if names and others_name(self.control, names, renamer.thread_id):
            return False
        locks = lock_info(self.control, self._locks_from, self.database, renamer.thread_id)
        if locks is None:
            return True
        granted = all(locks.get(n.lower()) == "GRANTED" for n in names)
        pending = {n for n, status in locks.items() if status != "GRANTED"}
        if self._locks_from == "performance_schema":  # it lists what the RENAME waits for
            return granted and pending == {self.a.table.lower()}
        return granted

    def _call_off(self, renamer: Session, thread: threading.Thread) -> None:
        """The swap is off: stop a RENAME still waiting, so it can never run later. (Even
        if this fails, the sentry still exists and a late RENAME fails on it.)"""
        if not thread.is_alive():
            return
        try:
            self.control.execute(f"KILL QUERY {int(renamer.thread_id)}")
        except OnlineDDLError as err:
            log.warning("could not stop the queued RENAME: %s", err.message)
        thread.join(timeout=RENAME_JOIN)

    def _rename_result(self, renamer: Session, thread: threading.Thread,
                       outcome: dict[str, BaseException | None]) -> None:
        if thread.is_alive():
            self._call_off(renamer, thread)
            raise CutoverFailed("the RENAME did not finish in time")
        error = outcome.get("error")
        if error is not None:
            raise CutoverFailed(f"the RENAME failed: {error}")

    # --- after the swap -----------------------------------------------------------------

    def _verify_swap(self) -> None:
        """The tripwire: read the binlog up to our RENAME. The first statement on T after
        the drain must be that RENAME, with no row change for T before it, and the old
        table must have the shape T had under the block. Never passes when unsure."""
        # As long as a RENAME may wait for its locks, and then some for the reader.
        wait = max(self.tuning.rename_seen_timeout, self._rename_wait() + 10.0)
        ddl = self.applier.wait_for_ddl(timeout=wait)
        if ddl is None:
            try:
                self.applier.check()
                why = f"did not reach the RENAME within {wait:.0f}s"
            except OnlineDDLError as err:
                why = f"stopped before the RENAME ({err.message})"
            raise ReplicationError(
                f"the swap happened ({self.a.table} is the new table, the original is "
                f"{self.a.old}), but the binlog reader {why}, so it is not confirmed that "
                f"no write reached {self.a.old} after the drain position "
                f"{self.drain_position}",
                hint="run the same command with --resume: it reads the binlog from the "
                     "drain position to the RENAME and confirms (or names the keys). By "
                     f"hand: mysqlbinlog from {self.drain_position} must show no row event "
                     f"for {self.database}.{self.a.table} before the RENAME")
        if not is_our_rename(ddl, self.a):
            raise foreign_ddl(self.a.table, f"the binlog shows: {ddl[:300]}",
                              before_swap=False, old=self.a.old)
        late = self.applier.delta.received - self.drained_changes
        if late:
            keys = [k for k, _ in self.applier.delta.snapshot()][:20]
            raise ReplicationError(
                f"{late} row change(s) reached {self.a.old} after the drain and before the "
                f"swap; they are missing from the new {self.a.table}. Keys: {keys}",
                hint=f"copy those rows from {self.a.old} by hand after checking them; "
                     "please report this with the log")
        if self.shape_under_block and self._shape(self.a.old) != self.shape_under_block:
            raise foreign_ddl(self.a.table, f"SHOW CREATE TABLE {self.a.old} differs from "
                              f"{self.a.table}'s while writes were blocked",
                              before_swap=False, old=self.a.old)

"""The binlog applier: a delta map of changed keys, the watermark filter, and flushes.

Every change is reduced to "this key changed", plus what its latest change did to the
row. Flushing a key makes the shadow table's row for it equal the source's current row:
re-read it from the source with a locking read and write it back (REPLACE, or an
UPDATE joined to the source where that is exact: see sync_keys), and, for a
key whose latest change was a delete, remove the shadow's row if the source has none
(an anti-join DELETE). That is idempotent, so replays after a resume are harmless, and
it needs no decoding of column values.

Running only the operation the latest change calls for is exact at every point that
matters: once the binlog is drained to a position with the source's writes blocked, a
key whose latest change was an insert or update has its row in the source, and one
whose latest change was a delete has none. (Between drains the shadow may be briefly
stale; the next change to the key marks it again.) Updates that move rows to other
keys run both operations for their keys. The delete of a 1000-key batch cost about 40%
of a flush here.

The watermark filter: a key is flushed only once it is at or below the copier's low
watermark (its chunk is copied). A key above it is deferred, never dropped: the binlog
event can arrive before its transaction is visible to the copier's read, so "the copier
will see it later" is not something we can prove. Deferred keys are flushed once the
watermark passes them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

from onlineddl import faults, sql
from onlineddl.binlog import (
    GONE,
    UPSERT,
    BinlogReader,
    Commit,
    Keys,
    SchemaChange,
    StreamReconnected,
)
from onlineddl.chunker import KeyOrder, Watermark, WatermarkState
from onlineddl.config import Dsn, Tuning
from onlineddl.db import ER_DUP_ENTRY, Session, retry, rows_matched
from onlineddl.errors import (
    DatabaseError,
    OnlineDDLError,
    ReplicationError,
    UniqueViolation,
    WaitTimeout,
)
from onlineddl.flavor import BinlogPosition, MySQL
from onlineddl.sql import Key
from onlineddl.uniques import UniqueCheck, check_key_collisions, guarded, violation_hint

log = logging.getLogger(__name__)


class DeltaMap:
    """Keys changed since they were last flushed; each remembers its latest change as
    one int: a sequence number (to tell a later change apart) and the flush operations
    that change calls for (binlog.UPSERT / GONE bits, in the low two bits). GONE stays
    set once any change since the last flush took the key's row away: a row there now
    is then a new row (sync_keys resets what a revert's target keeps for old rows)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._keys: dict[Key, int] = {}
        self._seq = 0
        self.received = 0  # changes seen in total (for progress)

    def add(self, events: list[Keys]) -> None:
        """One transaction's row events, in binlog order (the latest change wins)."""
        with self._lock:
            for event in events:
                for key in event.keys:
                    self._seq += 4
                    # Re-inserted: dict order = order of the last change.
                    before = self._keys.pop(key, 0)
                    self._keys[key] = self._seq | event.kind | (before & GONE)
                self.received += len(event.keys)

    def snapshot(self) -> list[tuple[Key, int]]:
        with self._lock:
            return list(self._keys.items())

    def discard(self, flushed: list[tuple[Key, int]]) -> None:
        """Forget flushed keys, unless they changed again after the snapshot."""
        with self._lock:
            for key, seq in flushed:
                if self._keys.get(key) == seq:
                    del self._keys[key]

    def __len__(self) -> int:
        with self._lock:
            return len(self._keys)


@dataclass(frozen=True)
class SafePoint:
    """A pair the checkpoint may record: every change before `position` to a key at or
    below `watermark` is in the shadow table. Keys above it are re-copied on resume."""

    watermark: WatermarkState
    position: BinlogPosition


@dataclass(frozen=True)
class FlushTarget:
    database: str
    source: str
    target: str
    source_exprs: tuple[str, ...]
    target_cols: tuple[str, ...]
    # The run's key (keys.py: the primary key, or the unique key both tables share when
    # the ALTER changes it): the target's columns, and the source's when renamed.
    pk: tuple[str, ...]
    source_pk: tuple[str, ...] = ()
    # The target has a UNIQUE key besides the run's key: rows are then never updated
    # in place, but written by REPLACE, which deletes a stale holder of a unique value,
    # or by write_guarded (see sync_keys).
    other_unique: bool = True
    # Both tables' key columns are integers, so a row found by the key holds exactly
    # the source's key. A text key can match in another letter case or with other
    # trailing spaces; rewriting it in place costs as much as REPLACE.
    integer_key: bool = False
    # The target's UNIQUE keys (besides the run's key). When the source does not
    # enforce one of them, rows are written without REPLACE (see write_guarded).
    unique_checks: tuple[UniqueCheck, ...] = ()
    # A revert's target (the old table) has columns the source does not feed (ones the
    # migration dropped): rows are upserted so those keep their values (sql.upsert_keys).
    # (Every session is strict, sql.SESSION_SQL_MODE: a value the old type cannot hold
    # fails the flush instead of being truncated.)
    keep_unfed: bool = False
    # The run's key as the target compares it, when that differs from the
    # source (uniques.key_as_compared): every write is checked for keys it would merge.
    key_as_compared: tuple[str, ...] = ()
    # The target has columns the source does not feed (ones the ALTER adds, not
    # generated): a changed row must get them as a fresh INSERT gives them, as a plain
    # ALTER run after the write would: a DEFAULT (expr) over the row's current values
    # (DEFAULT (price * 2)), not the value computed when the row was first copied. An
    # UPDATE in place would keep that stale value (or fire ON UPDATE), so such rows are
    # written whole (REPLACE). table.unfed_columns finds them.
    unfed: bool = False

    @property
    def updates_in_place(self) -> bool:
        return self.integer_key and not self.other_unique and not self.unfed and \
            len(self.target_cols) > len(self.pk)

    @property
    def guarded(self) -> bool:
        return guarded(self.unique_checks)


def sync_keys(session: Session, t: FlushTarget, keys: list[Key], *, atomic: bool,
              gone: list[Key] | None = None, in_place: bool = False) -> None:
    """Make the target's rows for `keys` equal the source's current rows: re-read and
    write the rows that exist, then delete the ones that no longer do (among `gone`
    when given, else among `keys`).

    Rows are written by REPLACE (not INSERT) also because a transaction that moves a
    unique value from one row to another can leave the target briefly holding the old
    owner; that owner is dirty too and is re-synced in turn. That holds only for UNIQUE
    keys the source enforces too; with one it does not (`t.guarded`), REPLACE could
    delete a row that really holds the value, so write_guarded writes instead.

    Without another UNIQUE key at all,
    rows the target has can be updated in place (`in_place`), which costs the server
    about a third less, and only a batch with rows the target lacks also runs the
    REPLACE (for those). Not while writes are blocked by LOCK TABLES, ours or another
    connection's: a multi-table UPDATE waits for a write lock on every table it names.
    Under LOCK TABLES held by `session`, `atomic` must be False: BEGIN would release them.
    """
    src_pk = t.source_pk or t.pk
    gone_before = set(gone or ())
    renewed = [k for k in keys if k in gone_before]
    gone = keys if gone is None else gone
    args = (t.database, t.source, t.target, t.source_exprs, t.target_cols)

    def run() -> None:
        if t.key_as_compared:
            check_key_collisions(session, t.database, t.source, t.target, t.key_as_compared,
                                 src_pk, t.pk, keys)
        if renewed and t.keep_unfed:
            # A key whose row was taken away since the last flush (deleted, or moved to
            # another key) and is there again is a new row: the columns the source
            # does not feed get their defaults, not the old row's values.
            session.execute(*sql.delete_keys(t.database, t.target, t.pk, renewed))
        if keys and in_place and t.updates_in_place:
            _, info = session.execute_info(*sql.update_keys(*args, src_pk, t.pk, keys))
            if rows_matched(info) < len(keys):
                session.execute(*sql.replace_missing(*args, src_pk, t.pk, keys))
        elif keys and t.keep_unfed:
            session.execute(*sql.upsert_keys(*args, src_pk, keys))
        elif keys and t.guarded:
            write_guarded(session, t, keys)
        elif keys:
            session.execute(*sql.replace_keys(*args, src_pk, keys))
        if gone:
            session.execute(*sql.delete_missing(t.database, t.source, t.target, src_pk,
                                                t.pk, gone))

    if not atomic:
        run()
        return
    if keys and (t.guarded or t.key_as_compared):
        # write_guarded deletes before it inserts (check_key_collisions reads under a
        # lock first): under REPEATABLE READ the delete (read) of a key the target
        # lacks locks the gap, and two flushers inserting new keys into one gap (rows
        # appended at the end of the table) deadlock every time. Its reads are all
        # locking reads, which see the latest rows at any isolation level.
        session.execute(sql.NEXT_TRANSACTION_READ_COMMITTED)
    with session.transaction():
        run()


SETTLE_ROUNDS = 4  # duplicate-key errors one write_guarded looks into before it gives up


def write_guarded(session: Session, t: FlushTarget, keys: list[Key]) -> None:
    """Write the source's current rows for `keys` to a target with a UNIQUE key the source
    does not enforce: delete the target's rows for `keys`, then INSERT (never REPLACE)
    the source's. A duplicate-key error is looked into (settle_duplicate) and the INSERT
    tried again; what cannot be settled stops the run (UniqueViolation) and, in a
    transaction, rolls the whole batch back. No row is ever deleted for a duplicate
    unless it is proven stale."""
    session.execute(*sql.delete_keys(t.database, t.target, t.pk, keys))
    text, params = sql.insert_keys(t.database, t.source, t.target, t.source_exprs,
                                   t.target_cols, t.source_pk or t.pk, keys)
    message = ""
    for _ in range(SETTLE_ROUNDS):
        try:
            session.execute(text, params)
            return
        except DatabaseError as err:
            if err.errno != ER_DUP_ENTRY:
                raise
            message = err.message
        settle_duplicate(session, t, keys)
    raise UniqueViolation(
        f"a row of {t.source} changed during the run meets a value another row holds under "
        f"a UNIQUE key of the new table, and onlineddl cannot tell whether that row still "
        f"holds it ({message})", hint=violation_hint(t.source))


def settle_duplicate(session: Session, t: FlushTarget, keys: list[Key]) -> None:
    """The INSERT of the rows for `keys` met a unique value another row of the target
    holds. For each UNIQUE key compared exactly, with every row read under a shared lock
    (none changes until the transaction ends): two rows among `keys` holding one value
    are a duplicate; so is a holder whose own source row holds one of their values now.
    A holder whose source row does not (or is gone) is stale, which proves a later
    change of that row is still to be flushed: it is deleted, and that flush re-syncs
    it (what REPLACE did, now only when proven). Keys not compared exactly are left
    alone: write_guarded gives up on a duplicate nothing here settles."""
    src_pk = t.source_pk or t.pk
    for check in t.unique_checks:
        if not check.exact:
            continue
        counts = session.query(*sql.key_values(t.database, t.source, check.values, src_pk,
                                               keys))
        for *value, rows in counts:
            if rows > 1:
                raise _violation(session, t, check, tuple(value), [], keys)
        values = [tuple(r[:-1]) for r in counts]
        if not values:
            continue
        found = session.query(*sql.rows_holding(t.database, t.target, check.stored, t.pk,
                                                values))
        holders = [tuple(r[:len(t.pk)]) for r in found]
        if not holders:
            continue
        holding = session.query(*sql.rows_holding(t.database, t.source, check.values, src_pk,
                                                  values, holders))
        if holding:
            first = holding[0]
            raise _violation(session, t, check, tuple(first[len(src_pk):]),
                             [tuple(first[:len(src_pk)])], keys)
        removed = session.execute(*sql.delete_keys(t.database, t.target, t.pk, holders))
        log.debug("%s: removed %d stale holder(s) of %s values", t.target, removed,
                  check.name)


def _violation(session: Session, t: FlushTarget, check: UniqueCheck, value: Key,
               rows: list[Key], keys: list[Key]) -> UniqueViolation:
    """The error naming the key, the value and the source rows holding it."""
    src_pk = t.source_pk or t.pk
    mates = session.query(*sql.rows_holding(t.database, t.source, check.values, src_pk,
                                            [value], keys))
    rows = rows + [tuple(m[:len(src_pk)]) for m in mates]
    shown = ", ".join(repr(r[0] if len(r) == 1 else r) for r in rows[:10])
    return UniqueViolation(
        f"the new {check.label} cannot hold the rows "
        f"of {t.source}: the rows with {'/'.join(src_pk)} {shown} all hold "
        f"{value[0] if len(value) == 1 else value!r} (a write made while onlineddl ran)",
        hint=violation_hint(t.source))


class Applier:
    """Runs the binlog reader and the flusher in two threads."""

    def __init__(self, *, dsn: Dsn, flavor: MySQL, reader_factory: Callable[
                 [BinlogPosition], BinlogReader], target: FlushTarget, key_order: KeyOrder,
                 watermark: Watermark, tuning: Tuning, start: BinlogPosition) -> None:
        self.dsn = dsn
        self.flavor = flavor
        self.reader_factory = reader_factory
        self.target = target
        self.key_order = key_order
        self.watermark = watermark
        self.tuning = tuning
        self.delta = DeltaMap()
        self.received = start          # position after the last transaction read
        self.safe = SafePoint(watermark.get(), start)
        self.flushed_rows = 0
        self._pos_lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._error: OnlineDDLError | None = None
        self._threads: list[threading.Thread] = []
        self._reader: BinlogReader | None = None
        self._session: Session | None = None
        self._extra_sessions: list[Session] = []
        self._pool: ThreadPoolExecutor | None = None
        self.ddl: str | None = None
        self._ddl_seen = threading.Event()
        # A drain under a write block: its sessions, and the event that cancels it
        # (set at its deadline or by interrupt_drain()).
        self._drain_sessions: list[Session] = []
        self._drain_cancel = threading.Event()
        self._swapped = False

    # --- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        self._extra_sessions = [
            Session(self.dsn, name="applier", isolation="REPEATABLE READ",
                    lock_wait_timeout=self.tuning.lock_wait_timeout, reconnect=True)
            for _ in range(max(1, self.tuning.flush_workers))]
        self._session = self._extra_sessions[0]
        if len(self._extra_sessions) > 1:
            self._pool = ThreadPoolExecutor(len(self._extra_sessions),
                                            thread_name_prefix="flusher")
        for name, fn in (("binlog-reader", self._read_loop), ("flusher", self._flush_loop)):
            thread = threading.Thread(target=self._guard(fn), name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self.wake_reader()
        for thread in self._threads:
            thread.join(timeout=10)
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        for session in self._extra_sessions:
            session.close()

    def thread_ids(self) -> set[int]:
        """The server's ids of the applier's own connections (not the binlog stream's)."""
        return {s.thread_id for s in self._extra_sessions}

    def check(self) -> None:
        """Raise in the caller's thread whatever stopped a background thread."""
        if self._error is not None:
            raise self._error

    def _guard(self, fn: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                fn()
            except OnlineDDLError as err:
                self._fail(err)
            except Exception as exc:  # a bug: surface it instead of dying silently
                log.exception("applier thread crashed")
                self._fail(ReplicationError(f"applier thread crashed: {exc!r}"))
        return run

    def _fail(self, err: OnlineDDLError) -> None:
        if self._error is None:
            self._error = err
        self._stop.set()
        self._wake.set()

    # --- reading ---------------------------------------------------------------------

    def _read_loop(self) -> None:
        restarts = 0
        while not self._stop.is_set():
            before = self.received_position()
            reader = self._reader = self.reader_factory(before)
            try:
                self._consume(reader)
                return
            except StreamReconnected:
                # Ten failures in a row end the run; one that read on counts as the first.
                restarts = 1 if self.received_position() != before else restarts + 1
                if restarts > 10:
                    raise
                log.warning("binlog connection lost; reconnecting from %s", self.received)
                self._stop.wait(min(5.0, 0.2 * 2 ** restarts))
            finally:
                self._reader = None
                reader.close()

    def wake_reader(self) -> None:
        """Someone waits for a position: the polling reader reads now, not at its
        next interval."""
        reader = self._reader
        if reader is not None:
            reader.wake()

    def _consume(self, reader: BinlogReader) -> None:
        pending: list[Keys] = []
        for item in reader.items(self._stop):
            if isinstance(item, Keys):
                pending.append(item)
            elif isinstance(item, Commit):
                if pending:
                    self._wait_for_room()
                    self.delta.add(pending)
                    pending = []
                with self._pos_lock:
                    self.received = item.position
            elif isinstance(item, SchemaChange):
                self.ddl = item.query
                self._ddl_seen.set()
                raise ReplicationError(
                    "the table was changed by a statement the applier cannot replay "
                    f"(DDL, or a write logged in STATEMENT format): {item.query[:200]}",
                    hint="no DDL on the table while onlineddl runs, and every writer must "
                         "use binlog_format=ROW; run `onlineddl cleanup` and start again")

    def _wait_for_room(self) -> None:
        """Backpressure: stop reading while the delta map is full, so memory stays
        bounded whatever the write rate. The binlog waits on the server meanwhile; the
        map drains as the flusher applies keys and the copier passes deferred ones."""
        if len(self.delta) < self.tuning.max_backlog:
            return
        # Flush now rather than at the next interval, once: keys held back above the
        # watermark cannot be flushed, and waking the flusher again every few ms would
        # only re-sort the whole map; its own interval brings the next round.
        self._wake.set()
        while len(self.delta) >= self.tuning.max_backlog and not self._stop.is_set():
            self._stop.wait(0.005)

    # --- flushing --------------------------------------------------------------------

    def _flush_loop(self) -> None:
        flushed = 0
        while not self._stop.is_set():
            if flushed < self.tuning.flush_batch:  # a backlog: go on without a pause
                self._wake.wait(self.tuning.flush_interval)
                self._wake.clear()
            if self._stop.is_set():
                return
            with self._flush_lock:
                if self._swapped:
                    return   # the shadow is T now: nothing more to flush into it
                assert self._session is not None
                flushed = self._flush_round(self._session, atomic=True)

    def _flush_round(self, session: Session, *, atomic: bool, blocked: bool = False) -> int:
        """Flush every dirty key at or below the watermark; update the safe point.
        `blocked`: the source's writes are blocked by LOCK TABLES (see sync_keys)."""
        wm = self.watermark.get()
        with self._pos_lock:
            position = self.received
            snapshot = self.delta.snapshot()  # taken together with `position`
        if not snapshot:
            self.safe = SafePoint(wm, position)
            return 0
        keys = [k for k, _ in snapshot]
        below = self.key_order.below(session, keys, wm)
        ready = [item for item, ok in zip(snapshot, below, strict=True) if ok]
        # Catching up on a backlog, batches grow (up to 4x): per-statement costs shrink,
        # and a long catch-up holds no writer anyway. Under a steady load the flusher
        # wakes every flush_interval with a few batches' worth, which keeps the row locks
        # of each batch's locking read short.
        workers = max(1, len(self._extra_sessions))
        size = max(self.tuning.flush_batch,
                   min(len(ready) // workers, 4 * self.tuning.flush_batch))
        batches = [ready[i:i + size] for i in range(0, len(ready), size)]
        if session is self._session and len(batches) > 1 and self._pool is not None:
            # Batches hold distinct keys, so they can be applied side by side.
            sessions = self._extra_sessions
            groups = [batches[i::len(sessions)] for i in range(len(sessions))]
            list(self._pool.map(self._flush_batches, sessions, groups,
                                [atomic] * len(sessions), [blocked] * len(sessions)))
        else:
            self._flush_batches(session, batches, atomic, blocked)
        faults.point("after_flush")
        self.safe = SafePoint(wm, position)
        return len(ready)

    def _flush_batches(self, session: Session, batches: list[list[tuple[Key, int]]],
                       atomic: bool, blocked: bool) -> None:
        for batch in batches:
            keys = [k for k, latest in batch if latest & UPSERT]
            gone = [k for k, latest in batch if latest & GONE]

            def apply(keys: list[Key] = keys, gone: list[Key] = gone) -> None:
                sync_keys(session, self.target, keys, atomic=atomic, gone=gone,
                          in_place=not blocked)

            # Under a write block, retries end when the drain is cancelled.
            stop = self._drain_cancel if blocked else self._stop
            retry(apply, what="applying binlog changes", attempts=8, stop=stop)
            self.delta.discard(batch)
            with self._pos_lock:
                self.flushed_rows += len(batch)

    def swapped(self) -> None:
        """The cutover swapped the tables (call while paused): the background flusher
        stops for good, so late changes stay counted in the delta map for the tripwire
        instead of failing a flush into a table that is gone."""
        self._swapped = True

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Hold the background flusher (e.g. while another session holds table locks)."""
        with self._flush_lock:
            yield

    def flush_now(self, session: Session | None = None, *, atomic: bool = True) -> int:
        """One flush round from the caller's thread; the background flusher must be paused
        when `session` is given."""
        if session is None:
            with self._flush_lock:
                assert self._session is not None
                return self._flush_round(self._session, atomic=True)
        return self._flush_round(session, atomic=atomic)

    # --- waiting ---------------------------------------------------------------------

    def received_position(self) -> BinlogPosition:
        with self._pos_lock:
            return self.received

    def wait_for(self, target: BinlogPosition, timeout: float, what: str) -> None:
        """Wait, bounded, until the reader has read past `target`."""
        deadline = time.monotonic() + timeout
        while not self.received_position().reached(target):
            self.wake_reader()
            self.check()
            if time.monotonic() > deadline:
                raise WaitTimeout(
                    f"{what}: the binlog reader did not reach {target} within {timeout:.0f}s "
                    f"(it is at {self.received_position()})",
                    hint="the server may be writing faster than onlineddl can read; retry "
                         "at a quieter time")
            time.sleep(0.01)

    def drain(self, target: BinlogPosition, timeout: float, session: Session | None = None,
              label: str = "cutover") -> None:
        """Read up to `target`, then flush every dirty key.

        The caller holds the write block and has paused the background flusher. With
        `session` (a connection holding LOCK TABLES) the flush runs through it, without
        BEGIN, which would release its table locks; else through the applier's own.

        `timeout` bounds the whole drain, inside a flush statement too: at the deadline
        a watchdog KILLs the drain's running statements (one waiting for a row lock, or
        for a metadata lock behind another session's DDL) and the drain raises
        WaitTimeout, so the caller releases the block with the table unchanged.
        """
        deadline = time.monotonic() + timeout
        self._drain_sessions = [session] if session is not None else list(self._extra_sessions)
        self._drain_cancel.clear()
        timer = threading.Timer(timeout, self.interrupt_drain)
        timer.daemon = True
        timer.start()
        try:
            self._drain(target, timeout, deadline, session, label)
        except OnlineDDLError as err:
            if self._drain_cancel.is_set() and not isinstance(err, WaitTimeout):
                raise self._drain_expired(target, timeout) from err
            raise
        finally:
            timer.cancel()
            self._drain_sessions = []

    def _drain(self, target: BinlogPosition, timeout: float, deadline: float,
               session: Session | None, label: str) -> None:
        flushed_once = False
        while True:
            reached = self.received_position().reached(target)
            if reached and not flushed_once:
                faults.point(f"during_{label}_drain")
                flushed_once = True
            if reached and not len(self.delta):
                return
            if not reached:
                self.wake_reader()
            self.check()
            if time.monotonic() > deadline or self._drain_cancel.is_set():
                raise self._drain_expired(target, timeout)
            # Flushing while waiting also makes room for a reader held by backpressure.
            if len(self.delta):
                if session is None:
                    assert self._session is not None
                    self._flush_round(self._session, atomic=True, blocked=True)
                else:
                    self._flush_round(session, atomic=False, blocked=True)
            else:
                time.sleep(0.002)

    def _drain_expired(self, target: BinlogPosition, timeout: float) -> WaitTimeout:
        return WaitTimeout(
            f"draining: not done within {timeout:.0f}s, so the write block was given up "
            f"(reader at {self.received_position()}, target {target}, {len(self.delta)} "
            "changes pending)",
            hint="retry at a quieter time; a transaction holding row locks on the "
                 "table or its shadow, or another session's DDL on it, also stalls the "
                 "drain (see information_schema.INNODB_TRX and PROCESSLIST)")

    def interrupt_drain(self) -> None:
        """Cancel a drain under way from another thread: KILL QUERY its statements from
        a connection of our own (each may be waiting inside the server)."""
        self._drain_cancel.set()
        victims = [s.thread_id for s in self._drain_sessions]
        if not victims:
            return
        try:
            killer = Session(self.dsn, name="drain-watchdog", read_timeout=10)
        except OnlineDDLError as err:
            log.warning("could not connect to stop the drain's statements: %s", err.message)
            return
        try:
            for thread_id in victims:
                try:
                    killer.execute(f"KILL QUERY {int(thread_id)}")
                except OnlineDDLError as err:  # it may have ended meanwhile
                    log.debug("KILL QUERY %d: %s", thread_id, err.message)
        finally:
            killer.close()

    def wait_for_ddl(self, timeout: float) -> str | None:
        """Wait, bounded, until the reader reaches a DDL statement on the table (after a
        swap: our own RENAME). Returns its text, or None on timeout."""
        if self._ddl_seen.wait(timeout):
            return self.ddl
        return None

    def backlog(self) -> int:
        return len(self.delta)

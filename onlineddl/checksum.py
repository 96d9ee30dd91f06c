"""Compare the source and the shadow table chunk by chunk under one consistent view.

Briefly block writes to the source, drain every pending change into the shadow, open a
consistent-snapshot transaction, release the block: from then on the snapshot shows
both tables at the same instant while writers carry on. Each chunk compares a row
count and a SUM of per-row CRC32s; a differing chunk is compared row by row to
name the keys. Repair (on by default) re-syncs those keys and verifies again from
scratch; it is a safety net, never what makes the copy correct.
"""

from __future__ import annotations

import logging
import queue
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from onlineddl import conversion, faults, sql, zones
from onlineddl.applier import Applier, FlushTarget, sync_keys
from onlineddl.chunker import Chunk
from onlineddl.config import Dsn, Tuning
from onlineddl.copier import check_unique_violations
from onlineddl.db import Session, UtcSession, retry
from onlineddl.errors import ChecksumMismatch
from onlineddl.flavor import MySQL
from onlineddl.sql import Key
from onlineddl.table import ColumnMapping, TableInfo
from onlineddl.uniques import run_key_checks

log = logging.getLogger(__name__)


@dataclass
class ChecksumResult:
    chunks: int = 0
    rows: int = 0
    differing: list[Key] | None = None


def compare_exprs(source: TableInfo, shadow: TableInfo, mapping: ColumnMapping
                  ) -> tuple[list[str], list[str]]:
    """Per mapped column, what the source side and the shadow side hash: the same bare
    columns where the type is unchanged, else the server's conversion spelled out
    (conversion.checksum_pair). For sessions in '+00:00' (UtcSession)."""
    src_exprs, dst_exprs = [], []
    for s_name, t_name in zip(mapping.source, mapping.target, strict=True):
        src, dst = conversion.checksum_pair(source.column(s_name), shadow.column(t_name))
        src_exprs.append(src)
        dst_exprs.append(dst)
    return src_exprs, dst_exprs


class Checksum:
    def __init__(self, *, dsn: Dsn, flavor: MySQL, control: Session, source: TableInfo,
                 shadow: TableInfo, mapping: ColumnMapping, target: FlushTarget,
                 applier: Applier, tuning: Tuning) -> None:
        self.dsn = dsn
        self.flavor = flavor
        self.control = control
        self.source = source
        self.shadow = shadow
        self.target = target
        self.applier = applier
        self.tuning = tuning
        self.mapping = mapping
        self.src_exprs, self.dst_exprs = compare_exprs(source, shadow, mapping)

    def run(self, repair: bool, tick: Callable[[], None]) -> ChecksumResult:
        """Compare; with repair, re-sync the differing rows and compare again, up to
        `repair_attempts` repairs, each one verified (a difference left after the last
        verified repair stops the run)."""
        repairs = self.tuning.repair_attempts if repair else 0
        for attempt in range(repairs + 1):
            result = self._verify_once(tick)
            if not result.differing:
                return result
            keys = result.differing
            self._explain_by_duplicates()
            shown = ", ".join(repr(k if len(k) > 1 else k[0]) for k in keys[:10])
            if not repair:
                raise ChecksumMismatch(
                    f"checksum mismatch: {len(keys)} row(s) differ between "
                    f"{self.source.name} and {self.target.target}; keys: {shown}",
                    hint="the original table is unchanged. This is a bug in onlineddl "
                         "or a write it could not see (a session with sql_log_bin=0 "
                         "writes rows the binlog never shows); report it with the log, then run "
                         "`onlineddl cleanup` and try again (with --repair to re-copy).")
            if attempt == repairs:
                break
            log.warning("checksum attempt %d found %d differing row(s) (%s); repairing",
                        attempt + 1, len(keys), shown)
            self._repair(keys)
        raise ChecksumMismatch(
            f"checksum still differs after {repairs} repair attempts",
            hint="the original table is unchanged; check for writes that bypass the "
                 "binlog (e.g. sql_log_bin=0) and report it")

    def _explain_by_duplicates(self) -> None:
        """A difference caused by duplicates under a UNIQUE key of the new table is bad
        input, not a copy bug: say so (UniqueViolation) instead of "checksum mismatch"."""
        check_unique_violations(self.control, self.source, self.target.unique_checks +
                                run_key_checks(self.source, self.shadow))

    def _repair(self, keys: list[Key]) -> None:
        # Keys read in '+00:00'; the repair session runs in the server's zone.
        shift = zones.key_shift(self.control, self.source)
        keys = shift.keys(keys) if shift else keys
        with self.applier.paused():
            session = Session(self.dsn, name="repair", isolation="REPEATABLE READ")
            try:
                for start in range(0, len(keys), 500):
                    # Writes are not blocked any more: rows may be updated in place.
                    sync_keys(session, self.target, keys[start:start + 500], atomic=True,
                              in_place=True)
            finally:
                session.close()

    def _verify_once(self, tick: Callable[[], None]) -> ChecksumResult:
        workers = max(1, self.tuning.checksum_workers)
        # One more snapshot than workers when parallel: it finds the chunk bounds.
        count = workers + 1 if workers > 1 else 1
        # A drain that does not finish within the write block's limit releases the block
        # (WaitTimeout, retryable): writers go on, the applier catches up, and we try again.
        snaps = retry(lambda: self._open_snapshots(count), what="opening the checksum snapshot",
                      attempts=self.tuning.cutover_attempts, base_delay=1.0)
        try:
            return self._compare_all(snaps, tick)
        finally:
            for snap in snaps:
                snap.rollback_quietly()
                snap.close()

    def _open_snapshots(self, count: int) -> list[Session]:
        """Block writes, drain, open `count` snapshots of the same instant, unblock
        (bounded at every step). Several snapshots let chunks be compared side by side."""
        lock = Session(self.dsn, name="checksum-lock", database=self.source.database,
                       lock_wait_timeout=self.tuning.cutover_lock_timeout,
                       read_timeout=self.tuning.cutover_lock_timeout + 10,
                       idle_limit=int(self.tuning.block_timeout) + 2)
        snaps: list[Session] = [
            UtcSession(self.dsn, name="checksum", isolation="REPEATABLE READ")
            for _ in range(count)]
        try:
            with self.applier.paused():
                # READ: writers wait, while the applier can still read T to drain.
                lock.execute(f"LOCK TABLES {sql.ident(self.source.name)} READ")
                target = self.flavor.current_position(self.control)
                self.applier.drain(target, self.tuning.block_timeout, label="checksum")
                for snap in snaps:
                    snap.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
                lock.execute("UNLOCK TABLES")
        except BaseException:
            for snap in snaps:
                snap.close()
            raise
        finally:
            lock.close()
        return snaps

    def _compare_all(self, snaps: list[Session], tick: Callable[[], None]) -> ChecksumResult:
        """Bounds are found in order on the first snapshot; chunks are compared on all of
        them; results are taken in order, so ticks and fault points stay in order."""
        result = ChecksumResult(differing=[])
        if len(snaps) == 1:  # one connection: bounds and compares take turns
            for chunk in self._chunks(snaps[0]):
                result.rows += self._compare_chunk(snaps[0], chunk, result)
                result.chunks += 1
                faults.point("checksum_chunk")
                tick()
            return result
        free: queue.Queue[Session] = queue.Queue()
        for snap in snaps[1:]:
            free.put(snap)
        pending: deque[tuple[Chunk, Future[tuple[int, list[Key]]]]] = deque()
        chunks = self._chunks(snaps[0])
        workers = len(snaps) - 1
        with ThreadPoolExecutor(workers, thread_name_prefix="checksum") as pool:
            while True:
                while len(pending) < 2 * workers:
                    upcoming = next(chunks, None)
                    if upcoming is None:
                        break
                    pending.append((upcoming, pool.submit(self._compare_on, free, upcoming)))
                if not pending:
                    return result
                _, future = pending.popleft()
                count, differing = future.result()
                assert result.differing is not None
                result.differing.extend(differing)
                result.chunks += 1
                result.rows += count
                faults.point("checksum_chunk")
                tick()

    def _chunks(self, snap: Session) -> Iterator[Chunk]:
        lower: Key | None = None
        while True:
            text, params = sql.next_chunk_bound(self.source.database, self.source.name,
                                                self.source.key, lower,
                                                self.tuning.checksum_chunk_rows)
            row = snap.query_one(text, params)
            chunk = Chunk(lower, tuple(row) if row else None)
            yield chunk
            if chunk.final:
                return
            lower = chunk.upper

    def _compare_on(self, free: queue.Queue[Session], chunk: Chunk) -> tuple[int, list[Key]]:
        snap = free.get()
        try:
            result = ChecksumResult(differing=[])
            count = self._compare_chunk(snap, chunk, result)
            return count, result.differing or []
        finally:
            free.put(snap)

    def _compare_chunk(self, snap: Session, chunk: Chunk, result: ChecksumResult) -> int:
        db, pk = self.source.database, self.source.key
        a_sql, a_params = sql.checksum_chunk(db, self.source.name, self.src_exprs, pk,
                                             chunk.lower, chunk.upper)
        b_sql, b_params = sql.checksum_chunk(db, self.target.target, self.dst_exprs,
                                             self.target.pk, chunk.lower, chunk.upper)
        a, b = snap.query_one(a_sql, a_params), snap.query_one(b_sql, b_params)
        if a == b:
            return int(a[0]) if a else 0
        assert result.differing is not None
        result.differing.extend(self._differing_keys(snap, chunk))
        return int(a[0]) if a else 0

    def _differing_keys(self, snap: Session, chunk: Chunk) -> list[Key]:
        db, pk = self.source.database, self.source.key
        a_sql, a_params = sql.checksum_rows(db, self.source.name, self.src_exprs, pk,
                                            chunk.lower, chunk.upper)
        b_sql, b_params = sql.checksum_rows(db, self.target.target, self.dst_exprs,
                                            self.target.pk, chunk.lower, chunk.upper)
        n = len(pk)
        a = {tuple(r[:n]): r[n] for r in snap.query(a_sql, a_params)}
        b = {tuple(r[:n]): r[n] for r in snap.query(b_sql, b_params)}
        return sorted((k for k in a.keys() | b.keys() if a.get(k) != b.get(k)), key=repr)

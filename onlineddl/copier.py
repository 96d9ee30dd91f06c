"""The chunk copier: copies the table into the shadow table, chunk by chunk, server-side.

Each chunk is one `INSERT INTO _T_new ... SELECT ... FROM T WHERE <key range>` in READ
COMMITTED, so the read takes no shared locks on the source and writers are not blocked.
The price is that a chunk's read can miss a write that commits during it; the applier
covers that, because it holds every key above the low watermark until the chunk
containing it has completed.

Chunks are copied by `copy_workers` workers (one by default), each on its own
connection. Bounds are found in
order by one session; the watermark only advances over the contiguous prefix of
completed chunks, so a fast worker finishing chunk 5 before chunk 4 moves nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass

from onlineddl import faults, sql
from onlineddl.chunker import Chunk, Chunker, Watermark
from onlineddl.config import Dsn, Tuning
from onlineddl.db import Session, retry, skipped_rows
from onlineddl.errors import UniqueViolation
from onlineddl.table import ColumnMapping, TableInfo
from onlineddl.uniques import UniqueCheck, run_key_checks, violation_hint

log = logging.getLogger(__name__)


@dataclass
class CopyStats:
    rows: int = 0
    chunks: int = 0
    seconds: float = 0.0


class Copier:
    def __init__(self, *, dsn: Dsn, tuning: Tuning, source: TableInfo, shadow: TableInfo,
                 mapping: ColumnMapping, chunker: Chunker, watermark: Watermark,
                 unique_checks: tuple[UniqueCheck, ...]) -> None:
        self.dsn = dsn
        self.tuning = tuning
        self.source = source
        self.shadow = shadow
        self.mapping = mapping
        self.chunker = chunker
        self.watermark = watermark
        self.unique_checks = unique_checks
        self.stats = CopyStats()
        self._local = threading.local()
        self._sessions: list[Session] = []
        self._sessions_lock = threading.Lock()

    def run(self, between_chunks: Callable[[float], None]) -> None:
        """Copy every chunk; `between_chunks(seconds the chunk took)` runs in this thread
        after each completed chunk (progress, checkpoint, throttling, pacing, health)."""
        faults.point("copy_start")
        workers = max(1, self.tuning.copy_workers)
        pending: deque[tuple[Chunk, Future[float]]] = deque()
        try:
            with ThreadPoolExecutor(workers, thread_name_prefix="copier") as pool:
                while True:
                    # No queue beyond the workers: a pause or throttle decided between
                    # chunks then holds every chunk not already being copied.
                    self._fill(pool, pending, workers)
                    if not pending:
                        return
                    wait([pending[0][1]], return_when=FIRST_COMPLETED)
                    while pending and pending[0][1].done():
                        chunk, future = pending.popleft()
                        seconds = future.result()  # re-raises a worker's error here
                        self.watermark.completed(chunk)
                        faults.point("after_chunk")
                        between_chunks(seconds)
        finally:
            for session in self._sessions:
                session.close()

    def _fill(self, pool: ThreadPoolExecutor, pending: deque[tuple[Chunk, Future[float]]],
              depth: int) -> None:
        while len(pending) < depth:
            chunk = retry(self.chunker.next, what="finding the next chunk")
            if chunk is None:
                return
            pending.append((chunk, pool.submit(self.copy_chunk, chunk)))

    def _session(self) -> Session:
        session: Session | None = getattr(self._local, "session", None)
        if session is None:
            session = Session(self.dsn, name="copier", isolation="READ COMMITTED",
                              lock_wait_timeout=self.tuning.lock_wait_timeout, reconnect=True)
            self._local.session = session
            with self._sessions_lock:
                self._sessions.append(session)
        return session

    def copy_chunk(self, chunk: Chunk) -> float:
        """Copy one chunk; returns the seconds it took."""
        session = self._session()
        started = time.monotonic()
        text, params = sql.copy_range(
            self.source.database, self.source.name, self.shadow.name,
            self.mapping.source_exprs(), self.mapping.target_cols(), self.source.key,
            chunk.lower, chunk.upper, target_pk=self.shadow.key)
        rows, info = retry(lambda: session.execute_info(text, params),
                           what="copying a chunk", attempts=6)
        if skipped_rows(info, rows):
            self._check_unique_violations(session)
        elapsed = time.monotonic() - started
        with self._sessions_lock:
            self.chunker.feedback(elapsed)
            self.stats.rows += rows
            self.stats.chunks += 1
            self.stats.seconds += elapsed
        return elapsed

    def _check_unique_violations(self, session: Session) -> None:
        check_unique_violations(session, self.source, self.unique_checks +
                                run_key_checks(self.source, self.shadow))


def check_unique_violations(session: Session, source: TableInfo,
                            checks: tuple[UniqueCheck, ...]) -> None:
    """A row was skipped because a UNIQUE key of the new table already held its value.
    That is harmless when a concurrent update moved the value (the applier re-syncs both
    rows), but it is data loss if the source really has duplicates for a key the ALTER
    makes unique: find out, and stop before cutover if so. Keys the old table enforces
    itself cannot have duplicates and are not searched."""
    for check in checks:
        if check.enforced:
            continue
        found = find_duplicates(session, source, check)
        if found:
            raise UniqueViolation(
                f"the new {check.label} would drop "
                f"rows: the table has duplicate values, e.g. {found}",
                hint=violation_hint(source.name))


def find_duplicates(session: Session, source: TableInfo, check: UniqueCheck, limit: int = 5
                    ) -> list[tuple[object, ...]]:
    """Duplicate value groups in the source for a unique key of the new table, compared
    as the new key will compare them (its charset, collation and prefix lengths: 'abc'
    and 'ABC' are one value under a case-insensitive collation)."""
    if not check.values:
        return []  # the key includes a new column: its values are defaults, not ours
    # Rows with a NULL in the key never collide under a UNIQUE key.
    not_null = " AND ".join(f"{e} IS NOT NULL" for e in check.values)
    listed = ", ".join(check.values)
    rows = session.query(
        f"SELECT {listed}, COUNT(*) FROM {sql.qualified(source.database, source.name)} "
        f"WHERE {not_null} GROUP BY {listed} HAVING COUNT(*) > 1 LIMIT {int(limit)}")
    return [tuple(r) for r in rows]

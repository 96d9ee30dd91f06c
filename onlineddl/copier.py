"""The chunk copier: copies the table into the shadow table, chunk by chunk, server-side.

The copy session reads in READ COMMITTED, so `INSERT ... SELECT` takes no shared locks
on the source and writers are not blocked. The price is that a chunk's read can miss
a write that commits during it; the applier covers that, because it holds every key
above the watermark until the chunk containing it has completed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from onlineddl import faults, sql
from onlineddl.chunker import Chunk, Chunker, Watermark
from onlineddl.db import Session, duplicates_in_info, retry
from onlineddl.errors import UniqueViolation
from onlineddl.table import ColumnMapping, TableInfo

log = logging.getLogger(__name__)


@dataclass
class CopyStats:
    rows: int = 0
    chunks: int = 0
    seconds: float = 0.0


class Copier:
    def __init__(self, session: Session, source: TableInfo, shadow: TableInfo,
                 mapping: ColumnMapping, chunker: Chunker, watermark: Watermark,
                 unique_keys: tuple[tuple[str, ...], ...]) -> None:
        self.session = session
        self.source = source
        self.shadow = shadow
        self.mapping = mapping
        self.chunker = chunker
        self.watermark = watermark
        self.unique_keys = unique_keys
        self.stats = CopyStats()

    def run(self, between_chunks: Callable[[], None]) -> None:
        """Copy every chunk; `between_chunks` runs after each (progress, checkpoint,
        throttling, health checks)."""
        faults.point("copy_start")
        while (chunk := retry(self.chunker.next, what="finding the next chunk")) is not None:
            self.copy_chunk(chunk)
            between_chunks()

    def copy_chunk(self, chunk: Chunk) -> None:
        started = time.monotonic()
        text, params = sql.copy_range(
            self.source.database, self.source.name, self.shadow.name,
            self.mapping.source_exprs(), self.mapping.target, self.source.pk,
            chunk.lower, chunk.upper)
        rows, info = retry(lambda: self.session.execute_info(text, params),
                           what="copying a chunk", attempts=6)
        if duplicates_in_info(info):
            self._check_unique_violations()
        elapsed = time.monotonic() - started
        self.chunker.feedback(elapsed)
        self.watermark.completed(chunk)
        self.stats.rows += rows
        self.stats.chunks += 1
        self.stats.seconds += elapsed
        faults.point("after_chunk")

    def _check_unique_violations(self) -> None:
        """A chunk row was skipped because a UNIQUE key of the new table already held its
        value. That is harmless when a concurrent update moved the value (the applier
        re-syncs both rows), but it is data loss if the source really has duplicates for
        a key the ALTER makes unique: find out, and stop before cutover if so."""
        for cols in self.unique_keys:
            found = find_duplicates(self.session, self.source, self.mapping, cols)
            if found:
                raise UniqueViolation(
                    f"the new UNIQUE key ({', '.join(cols)}) would drop rows: the table has "
                    f"duplicate values, e.g. {found}",
                    hint="remove the duplicates first, or leave UNIQUE out of the ALTER; "
                         "the original table is unchanged")


def find_duplicates(session: Session, source: TableInfo, mapping: ColumnMapping,
                    new_cols: tuple[str, ...], limit: int = 5) -> list[tuple[object, ...]]:
    """Duplicate value groups in the source for a unique key of the new table."""
    to_source = {t.lower(): s for s, t in zip(mapping.source, mapping.target, strict=True)}
    if any(c.lower() not in to_source for c in new_cols):
        return []  # the key includes a new column: its values are defaults, not ours
    cols = [to_source[c.lower()] for c in new_cols]
    # Rows with a NULL in the key never collide under a UNIQUE key.
    not_null = " AND ".join(f"{sql.ident(c)} IS NOT NULL" for c in cols)
    rows = session.query(
        f"SELECT {sql.column_list(cols)}, COUNT(*) FROM "
        f"{sql.qualified(source.database, source.name)} WHERE {not_null} "
        f"GROUP BY {sql.column_list(cols)} HAVING COUNT(*) > 1 LIMIT {int(limit)}")
    return [tuple(r) for r in rows]

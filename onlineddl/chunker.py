"""Chunks of the primary key, their adaptive size, the low watermark and key order.

A chunk is the key range lower < key <= upper (upper None: to the end of the table).
The low watermark is the upper bound of the contiguous prefix of completed chunks: a
key at or below it has been copied and will never be copied again, so a binlog change
for it can be applied at once. Before the first chunk completes there is NO watermark:
"the copier has not started" must never read as "every key is above it" (a watermark
filter that did so dropped the writes committed after the first chunk's snapshot and
before the copier moved: runs of fresh auto-increment keys lost).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from onlineddl import sql
from onlineddl.config import Tuning
from onlineddl.db import Session
from onlineddl.sql import Key
from onlineddl.table import Column, TableInfo


@dataclass(frozen=True)
class Chunk:
    lower: Key | None   # exclusive; None: from the first key
    upper: Key | None   # inclusive; None: to the last key (the final chunk)

    @property
    def final(self) -> bool:
        return self.upper is None


@dataclass(frozen=True)
class WatermarkState:
    bound: Key | None   # highest key of the completed prefix; None: nothing completed
    complete: bool      # every key is copied (the final chunk completed)


class Watermark:
    """The copier's low watermark, shared with the applier (thread-safe)."""

    def __init__(self, bound: Key | None = None, complete: bool = False) -> None:
        self._lock = threading.Lock()
        self._state = WatermarkState(bound, complete)

    def get(self) -> WatermarkState:
        with self._lock:
            return self._state

    def completed(self, chunk: Chunk) -> None:
        """Record that `chunk` (the next one of the prefix) is copied."""
        with self._lock:
            self._state = WatermarkState(chunk.upper, chunk.final)


class KeyOrder:
    """Compares binlog keys with the watermark in the server's own order.

    Integer keys compare in Python. Any other key type is compared by the server with
    each literal cast to the column's type and collation: Python's string order is not
    a collation's order, and a wrong answer here would apply a change too early.
    """

    def __init__(self, pk: Sequence[Column]) -> None:
        self.pk = tuple(pk)
        self.integer = all(c.data_type in INTEGER_TYPES for c in self.pk)

    def below(self, session: Session | None, keys: Sequence[Key], wm: WatermarkState
              ) -> list[bool]:
        """For each key: is it at or below the watermark (already copied)?"""
        if wm.complete:
            return [True] * len(keys)
        if wm.bound is None:
            return [False] * len(keys)
        if self.integer:
            return [tuple(k) <= tuple(wm.bound) for k in keys]
        if session is None:
            raise RuntimeError("server-side key comparison needs a session")
        return self._below_on_server(session, keys, wm.bound)

    def _below_on_server(self, session: Session, keys: Sequence[Key], bound: Key
                         ) -> list[bool]:
        out: list[bool] = []
        for start in range(0, len(keys), 200):
            batch = keys[start:start + 200]
            exprs, params = [], []
            for key in batch:
                text, p = self._le(key, bound)
                exprs.append(text)
                params.extend(p)
            row = session.query_one("SELECT " + ", ".join(exprs), params)
            out.extend(bool(v) for v in (row or ()))
        return out

    def _le(self, key: Key, bound: Key) -> tuple[str, list[Any]]:
        terms, params = [], []
        for i, col in enumerate(self.pk):
            lit = typed_literal(col)
            eqs = [f"{typed_literal(c)} = {typed_literal(c)}" for c in self.pk[:i]]
            op = "<=" if i == len(self.pk) - 1 else "<"
            terms.append("(" + " AND ".join([*eqs, f"{lit} {op} {lit}"]) + ")")
            for j in range(i):
                params.extend([key[j], bound[j]])
            params.extend([key[i], bound[i]])
        return "(" + " OR ".join(terms) + ")", params


INTEGER_TYPES = {"tinyint", "smallint", "mediumint", "int", "bigint", "year"}


def typed_literal(col: Column) -> str:
    """A `%s` placeholder cast to the column's type, so literals compare like column values."""
    if col.data_type in ("char", "varchar"):
        return f"CONVERT(%s USING {col.charset}) COLLATE {col.collation}"
    if col.data_type in ("datetime", "timestamp"):
        return "CAST(%s AS DATETIME(6))"
    if col.data_type == "date":
        return "CAST(%s AS DATE)"
    if col.data_type == "time":
        return "CAST(%s AS TIME(6))"
    if col.data_type in ("binary", "varbinary"):
        return "CAST(%s AS BINARY)"
    return "%s"


class Chunker:
    """Walks the run's key (keys.py; usually the primary key) in chunks whose size
    adapts to a target time per chunk."""

    def __init__(self, session: Session, info: TableInfo, tuning: Tuning,
                 start: Key | None = None) -> None:
        self.session = session
        self.info = info
        self.tuning = tuning
        self.lower = start
        self.size = tuning.chunk_rows_initial
        self.done = False

    def next(self) -> Chunk | None:
        """The next chunk, or None when the final chunk was handed out."""
        if self.done:
            return None
        text, params = sql.next_chunk_bound(self.info.database, self.info.name,
                                            self.info.key, self.lower, self.size)
        row = self.session.query_one(text, params)
        chunk = Chunk(self.lower, tuple(row) if row else None)
        self.lower = chunk.upper
        self.done = chunk.final
        return chunk

    def feedback(self, seconds: float) -> None:
        """Shrink fast when a chunk took too long; grow gently when it was quick."""
        target = self.tuning.chunk_time
        ideal = self.size * 2 if seconds <= 0 else int(self.size * target / seconds)
        if ideal < self.size:
            self.size = max(self.tuning.chunk_rows_min, ideal)
        else:
            self.size = min(self.tuning.chunk_rows_max, int(self.size * 1.25) + 1, max(ideal, 1))

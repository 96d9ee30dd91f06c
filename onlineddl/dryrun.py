"""--dry-run: what a run would do, from the server's own verdicts, changing nothing.

The dry run makes every check a real run makes, builds the new table for real (the
server is the authority on what the ALTER means, and whether it can do it INSTANTly),
copies one sample chunk into it to measure the copy rate, then drops it again: net,
the database is as it was (the CREATE/INSERT/DROP of `_T_new` do reach the binlog).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from onlineddl import keys, sql
from onlineddl.chunker import Chunker
from onlineddl.config import MigrationConfig, Tuning
from onlineddl.db import Session
from onlineddl.table import ColumnMapping, TableInfo
from onlineddl.triggers import Trigger


@dataclass(frozen=True)
class Sample:
    rows: int
    seconds: float

    @property
    def rows_per_second(self) -> float | None:
        return self.rows / self.seconds if self.rows and self.seconds > 0 else None


@dataclass(frozen=True)
class DryRun:
    """What --dry-run reports (render() prints it)."""

    database: str
    table: str
    alter: str
    server: str
    source: TableInfo
    shadow: TableInfo
    mapping: ColumnMapping
    instant: bool
    allow_instant: bool
    tuning: Tuning
    sample: Sample
    chunks: int
    copy_seconds: float | None
    triggers: tuple[Trigger, ...] = ()
    related: tuple[str, ...] = ()   # foreign keys: what happens to each related table


def build(config: MigrationConfig, server: str, source: TableInfo, shadow: TableInfo,
          mapping: ColumnMapping, instant: bool, *,
          triggers: tuple[Trigger, ...] = (), related: tuple[str, ...] = ()) -> DryRun:
    """The report, with a sample chunk copied (READ COMMITTED, like the copier) to time."""
    tuning = config.tuning
    session = Session(config.dsn, name="sample", isolation="READ COMMITTED",
                      lock_wait_timeout=tuning.lock_wait_timeout)
    try:
        sample = copy_sample(session, source, shadow, mapping, tuning)
        chunks = chunk_count(Chunker(session, source, tuning), source.rows_estimate,
                             sample.rows_per_second)
    finally:
        session.close()
    rate = sample.rows_per_second
    return DryRun(config.database, config.table, config.alter, server, source, shadow,
                mapping, instant, config.allow_instant, tuning, sample, chunks,
                # --nice-ratio rests R times each chunk's copy time after it.
                source.rows_estimate / rate * (1 + tuning.nice_ratio) if rate else None,
                triggers, related)


def copy_sample(session: Session, source: TableInfo, shadow: TableInfo,
                mapping: ColumnMapping, tuning: Tuning) -> Sample:
    """Copy the first chunk (--chunk-size rows) into the shadow, timed."""
    text, params = sql.next_chunk_bound(source.database, source.name, source.key, None,
                                        tuning.chunk_rows_initial)
    row = session.query_one(text, params)
    text, params = sql.copy_range(source.database, source.name, shadow.name,
                                  mapping.source_exprs(), mapping.target_cols(), source.key,
                                  None, tuple(row) if row else None, target_pk=shadow.key)
    started = time.monotonic()
    rows = session.execute(text, params)
    return Sample(rows, time.monotonic() - started)


def chunk_count(chunker: Chunker, rows: int, rows_per_second: float | None) -> int:
    """How many chunks the copy takes when every chunk runs at `rows_per_second`, with the
    chunker's own sizing rule (a scratch Chunker: only its size and feedback are used)."""
    if rows <= 0:
        return 1
    if not rows_per_second:
        return math.ceil(rows / chunker.size)
    chunks, remaining = 0, rows
    while remaining > 0:
        size = chunker.size
        chunks += 1
        remaining -= size
        chunker.feedback(size / rows_per_second)
        if chunker.size == size:  # settled: the rest are the same size
            return chunks + max(0, math.ceil(remaining / size))
    return chunks


def render(report: DryRun) -> str:
    t = report.tuning
    lines = [
        f"Dry run for {report.database}.{report.table} on {report.server}: nothing was changed.",
        "",
        "Checks passed: server settings, privileges, table, ALTER (the server built the "
        "new table).",
        f"ALTER: {report.alter}",
        "",
        _instant_line(report),
        "",
        f"New table (SHOW CREATE TABLE of {report.shadow.name}, renamed to {report.table} at "
        "cutover):",
        report.shadow.create_sql,
        "",
        *trigger_lines(report),
        "",
        "Column mapping (old -> new):",
        *mapping_lines(report.source, report.shadow, report.mapping),
        "",
        "Key (the copy chunks, changes are applied and the checksum compares by it):",
        f"  {keys.describe(report.source, report.shadow)}",
        "",
        "Related tables (foreign keys):",
        *report.related,
        "",
        "Chunk plan:",
        f"  rows (estimate from statistics): ~{report.source.rows_estimate}",
        f"  first chunk: {t.chunk_rows_initial} rows; then sized to take --chunk-time "
        f"{t.chunk_time:g}s ({t.chunk_rows_min}..{t.chunk_rows_max} rows)",
        f"  chunks: about {report.chunks}",
        "",
        "Estimate:",
        *_estimate_lines(report),
    ]
    return "\n".join(lines)


def trigger_lines(report: DryRun) -> list[str]:
    if not report.triggers:
        return [f"Triggers: none on {report.table}."]
    lines = [f"Triggers: {len(report.triggers)} on {report.table}, carried to the new "
             "table with the same names, definers, sql_mode and order. They stay on "
             f"{report.table} during the copy (the tool's own writes never fire them) and "
             "move to the new table under the cutover's write block; killed in between, a "
             f"guard trigger makes writes to {report.table} fail until --resume or cleanup:"]
    lines += [f"  {t.name}: {t.timing} {t.event} (order {t.order}, definer {t.definer})"
              for t in report.triggers]
    return lines


def _instant_line(report: DryRun) -> str:
    if not report.instant:
        return ("Instant: no, the server cannot do this ALTER with ALGORITHM=INSTANT; "
                "it is done online by copying.")
    if report.allow_instant:
        return ("Instant: yes. With --allow-instant the run applies it to "
                f"{report.table} itself with ALGORITHM=INSTANT, without a copy.")
    return ("Instant: yes, the server can do this ALTER with ALGORITHM=INSTANT; add "
            "--allow-instant to apply it in place, without a copy.")


def _estimate_lines(report: DryRun) -> list[str]:
    sample = report.sample
    if not sample.rows:
        return ["  the table is empty: the copy takes no time"]
    rate = sample.rows_per_second or 0.0
    out = [f"  sample: copied {sample.rows} rows in {sample.seconds:.3f}s "
           f"({rate:.0f} rows/s on one connection, without concurrent load)"]
    if report.copy_seconds is not None:
        rests = (f" (with the rests of --nice-ratio {report.tuning.nice_ratio:g})"
                 if report.tuning.nice_ratio else "")
        out.append(f"  copy: about {_duration(report.copy_seconds)}{rests}, then catch-up, a "
                   "checksum pass over both tables, and the cutover")
    return out


def _duration(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.1f}s"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def mapping_lines(source: TableInfo, shadow: TableInfo, mapping: ColumnMapping) -> list[str]:
    lines = []
    for old, new in zip(mapping.source, mapping.target, strict=True):
        a, b = source.column(old).column_type, shadow.column(new).column_type
        notes = []
        if old != new:
            notes.append("renamed")
        if a != b:
            notes.append(f"{a} -> {b}")
        lines.append(f"  {old} -> {new}" + (f"  ({', '.join(notes)})" if notes else ""))
    lines += [f"  {name} -> (dropped)" for name in mapping.dropped]
    filled = dict(mapping.fills)
    lines += [f"  (new) -> {name}  (takes the implicit value {filled[name]}, as ALTER does)"
              if name in filled else f"  (new) -> {name}  (takes its default)"
              for name in mapping.added]
    return lines

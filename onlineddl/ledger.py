"""The ledger of a run's artifacts: what this run created, and the one way tables are dropped.

Every table onlineddl drops goes through `drop()`: the checkpoint, the shadow and the
cutover guards (by the run, by `cleanup` and by --resume), and old tables (by
retention, --drop-old and `cleanup --old`); only the cutover's sentry is dropped by
its lock connection itself, under LOCK TABLES, as a step of the swap. Which tables are
onlineddl's to drop is decided elsewhere (leftovers.py, oldtables.py,
cutover.drop_guards); this module keeps the run's record and issues the statement.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from onlineddl import sql
from onlineddl.db import Session

log = logging.getLogger(__name__)


def add_missing_columns(session: Session, database: str, table: str,
                        columns: Sequence[tuple[str, str]]) -> list[str]:
    """Upgrade one of onlineddl's own tables written by an earlier version: add those of
    `columns` ((name, type and options)) it lacks, in one ALTER. Returns their names."""
    present = {str(r[0]).lower() for r in session.query(
        "SELECT COLUMN_NAME FROM information_schema.COLUMNS "
        "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s", (database, table))}
    missing = [(name, kind) for name, kind in columns if name.lower() not in present]
    if missing:
        session.execute(f"ALTER TABLE {sql.qualified(database, table)} "
                        + ", ".join(f"ADD COLUMN {sql.ident(n)} {k}" for n, k in missing))
    return [name for name, _ in missing]


def drop(session: Session, database: str, table: str, *, must_exist: bool = False) -> None:
    """Drop one table. `must_exist`: a missing table is an error (the caller has just
    seen it and dropping nothing would hide that someone else did)."""
    session.execute(sql.drop_table(database, table, if_exists=not must_exist))


class Ledger:
    """The tables this run created, oldest first: what a run that cannot be resumed
    removes again (newest first), so nothing is left behind."""

    def __init__(self) -> None:
        self._names: list[str] = []

    def record(self, name: str) -> None:
        self._names.append(name)

    def __contains__(self, name: object) -> bool:
        return name in self._names

    def __bool__(self) -> bool:
        return bool(self._names)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._names)

    def drop(self, session: Session, database: str, name: str) -> None:
        """Drop one of this run's tables and forget it."""
        drop(session, database, name)
        self._names.remove(name)

    def discard(self, session: Session, database: str) -> None:
        """Drop every table this run created, newest first (the record is kept: a
        second call is harmless, each drop being IF EXISTS)."""
        for name in reversed(self._names):
            drop(session, database, name)

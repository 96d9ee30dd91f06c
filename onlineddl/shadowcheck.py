"""Are T and the new table still the ones the run read and built? Asked under the
cutover's write block.

T: the applier stops on DDL on T it reads in the binlog, from the position setup takes
after creating the shadow. DDL on T between preflight (which read T's columns, the
mapping's source) and that position is in no binlog the run reads: a column another
session added to T then was missing from the new table, with exit 0 (seen on MariaDB
10.11, ADD COLUMN at the fault point shadow_created). So T's SHOW CREATE TABLE must equal
preflight's (TableInfo.create_sql of the run's source), its AUTO_INCREMENT counter aside.

The new table: another session's DDL on `_T_new` itself (a UNIQUE key added, a column
changed) is no DDL on T, and the swap would install a table that differs from what the
ALTER gives T. So the shadow's SHOW CREATE TABLE must equal the text recorded when setup
finished (TableInfo.create_sql of the run's shadow; a resumed run records it again when
it continues, after checking the shadow's columns against the checkpoint's identity).
Left out of both: the AUTO_INCREMENT counter (the cutover carries it) and the
constraints the run itself puts on and takes off (foreignkeys.attach / release).

Two SHOW CREATE TABLE, well under a millisecond.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from onlineddl import sql
from onlineddl.cutover import normalized_shape
from onlineddl.db import Session
from onlineddl.errors import TableChanged
from onlineddl.table import TableInfo


def check_unchanged(session: Session, database: str, source: TableInfo,
                    shadow: TableInfo, carried: Iterable[str]) -> None:
    """Raise TableChanged when T's definition is no longer `source`'s, or the shadow's
    no longer `shadow`'s. `carried`: names of the constraints the run adds to the shadow
    under the block (and takes off between attempts), left out of both sides."""
    check_source(session, database, source)
    gone, new = _differences(session, database, shadow.name, shadow.create_sql,
                             set(carried))
    if gone or new:
        raise TableChanged(
            f"another session changed the new table {database}.{shadow.name} during the "
            f"run ({_lines(gone, new)}); the swap would install a table that differs from "
            "what the ALTER gives, so it was called off, the original table unchanged",
            hint="find out who changes the new table; run `onlineddl cleanup` for this "
                 f"table (it leaves {shadow.name} alone when its columns changed: drop it "
                 "yourself then) and start again")


def check_source(session: Session, database: str, source: TableInfo) -> None:
    """Raise TableChanged when T's definition is no longer `source`'s: DDL the binlog
    the run reads never showed (before its start position, or run by a session with
    sql_log_bin=0, as DBAs do on replicas)."""
    gone, new = _differences(session, database, source.name, source.create_sql, set())
    if gone or new:
        raise TableChanged(
            f"another session changed {database}.{source.name} after the run read it, "
            f"in no binlog the run reads (before its start, or with sql_log_bin=0) "
            f"({_lines(gone, new)}); the new table was built from the definition read "
            f"then, so the swap was called off, {source.name} as that session left it",
            hint="run `onlineddl cleanup` for this table and start again (with an ALTER "
                 "that takes the new definition into account)")


def _differences(session: Session, database: str, table: str, recorded: str,
                 carried: set[str]) -> tuple[list[str], list[str]]:
    """The recorded definition's lines the table no longer has, and its new ones."""
    row = session.query_one(f"SHOW CREATE TABLE {sql.qualified(database, table)}")
    now = _shape(str(row[1]) if row else "", carried).splitlines()
    before = _shape(recorded, carried).splitlines()
    if now == before:
        return [], []
    return ([line for line in before if line not in now] or ["(their order)"],
            [line for line in now if line not in before])


def _lines(gone: list[str], new: list[str]) -> str:
    return (f"no longer: {'; '.join(x.strip() for x in gone) or 'nothing'}; "
            f"now: {'; '.join(x.strip() for x in new) or 'nothing'}")


def _shape(create_sql: str, carried: set[str]) -> str:
    """SHOW CREATE TABLE text without the table's name, its AUTO_INCREMENT counter, the
    `carried` constraints and the trailing commas (which depend on the lines after)."""
    lines = normalized_shape(create_sql).splitlines()
    return "\n".join(line.rstrip(",") for line in lines if _constraint(line) not in carried)


def _constraint(line: str) -> str:
    m = re.match(r"\s*CONSTRAINT `((?:[^`]|``)*)` FOREIGN KEY ", line)
    return m.group(1).replace("``", "`") if m else ""

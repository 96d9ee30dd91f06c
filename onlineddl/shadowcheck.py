"""Is the new table still the one setup built? Asked under the cutover's write block.

The applier watches the binlog for DDL on T only. Another session's DDL on `_T_new`
itself (a UNIQUE key added, a column changed) goes unseen, and the swap would install
a table that differs from what the ALTER gives T. So, before the swap, the shadow's
SHOW CREATE TABLE must equal the text recorded when setup finished (TableInfo.create_sql
of the run's shadow; a resumed run records it again when it continues, after checking
the shadow's columns against the checkpoint's identity), the AUTO_INCREMENT counter
aside (the cutover carries it), and so are the constraints the run itself puts on and
takes off (foreignkeys.attach / release). One SHOW CREATE TABLE, well under a
millisecond.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from onlineddl import sql
from onlineddl.cutover import normalized_shape
from onlineddl.db import Session
from onlineddl.errors import TableChanged
from onlineddl.table import TableInfo


def check_unchanged(session: Session, database: str, shadow: TableInfo,
                    carried: Iterable[str]) -> None:
    """Raise TableChanged when the shadow's definition is no longer the one recorded in
    `shadow`. `carried`: names of the constraints the run adds under the block (and
    takes off between attempts), left out of both sides."""
    row = session.query_one(f"SHOW CREATE TABLE {sql.qualified(database, shadow.name)}")
    now = _shape(str(row[1]) if row else "", set(carried))
    recorded = _shape(shadow.create_sql, set(carried))
    if now == recorded:
        return
    gone = [line for line in recorded.splitlines() if line not in now.splitlines()]
    new = [line for line in now.splitlines() if line not in recorded.splitlines()]
    raise TableChanged(
        f"another session changed the new table {database}.{shadow.name} during the run "
        f"(no longer: {'; '.join(gone) or 'nothing'}; now: {'; '.join(new) or 'nothing'}); "
        "the swap would install a table that differs from what the ALTER gives, so it was "
        f"called off, the original table unchanged",
        hint="find out who changes the new table; run `onlineddl cleanup` for this table "
             f"(it leaves {shadow.name} alone when its columns changed: drop it yourself "
             "then) and start again")


def _shape(create_sql: str, carried: set[str]) -> str:
    """SHOW CREATE TABLE text without the table's name, its AUTO_INCREMENT counter, the
    `carried` constraints and the trailing commas (which depend on the lines after)."""
    lines = normalized_shape(create_sql).splitlines()
    return "\n".join(line.rstrip(",") for line in lines if _constraint(line) not in carried)


def _constraint(line: str) -> str:
    m = re.match(r"\s*CONSTRAINT `((?:[^`]|``)*)` FOREIGN KEY ", line)
    return m.group(1).replace("``", "`") if m else ""

"""The AUTO_INCREMENT counter and the table's engine come out as a plain ALTER leaves them.

Each test builds `t` and a twin `n` with the same rows, runs the ALTER natively on `n`
and with onlineddl on `t` (checksum repair off), and compares SHOW CREATE TABLE, whose
AUTO_INCREMENT= option is the counter.
"""

from __future__ import annotations

import re
from typing import Any, TypeAlias

import pymysql.connections
import pytest
from helpers import connect, scalar, tables

from onlineddl import faults
from onlineddl.config import Dsn, MigrationConfig, Tuning
from onlineddl.errors import InvalidAlter
from onlineddl.migration import migrate

Conn: TypeAlias = pymysql.connections.Connection
TUNING = Tuning(chunk_rows_initial=100, chunk_rows_min=50, chunk_rows_max=200)
ROWS, KEPT = 1200, 1160


def run(conn: Conn, sql: str, params: Any = None) -> None:
    with conn.cursor() as cur:
        cur.execute(sql, params)


def make_twins(conn: Conn) -> None:
    """`t` and `n`: ids 1..1160 of 1200 (the last 40 deleted), so the counter is 1201."""
    for name in ("t", "n"):
        run(conn, f"CREATE TABLE {name} (id INT NOT NULL AUTO_INCREMENT PRIMARY KEY, "
                  "v INT NOT NULL) ENGINE=InnoDB")
        with conn.cursor() as cur:
            cur.executemany(f"INSERT INTO {name} (v) VALUES (%s)", [(i,) for i in range(ROWS)])
        run(conn, f"DELETE FROM {name} WHERE id > {KEPT}")


def create_options(conn: Conn, table: str) -> str:
    with conn.cursor() as cur:
        cur.execute(f"SHOW CREATE TABLE {table}")
        text = str(cur.fetchone()[1])
    return text.split(f"`{table}`", 1)[1]


def counter(conn: Conn, table: str) -> int | None:
    match = re.search(r"AUTO_INCREMENT=(\d+)", create_options(conn, table).rsplit(")", 1)[1])
    return int(match.group(1)) if match else None


def config(server: Dsn, db: str, alter: str, **kw: Any) -> MigrationConfig:
    return MigrationConfig(dsn=server, database=db, table="t", alter=alter, repair=False,
                           tuning=TUNING, **kw)


@pytest.mark.parametrize("alter", [
    "ADD COLUMN c INT NULL",
    "MODIFY v BIGINT NOT NULL",
    "MODIFY id BIGINT NOT NULL AUTO_INCREMENT",
    "ADD COLUMN c INT NULL, AUTO_INCREMENT=5",        # below the largest id: largest + 1
    "ADD COLUMN c INT NULL, AUTO_INCREMENT=1180",     # between the largest id and the counter
    "ENGINE=InnoDB AUTO_INCREMENT=5000",              # above the counter
    "MODIFY id BIGINT NOT NULL",                      # no longer AUTO_INCREMENT: no counter
])
def test_counter_as_a_plain_alter_leaves_it(server: Dsn, db: str, conn: Conn, alter: str
                                            ) -> None:
    make_twins(conn)
    run(conn, f"ALTER TABLE n {alter}")
    migrate(config(server, db, alter))
    assert create_options(conn, "t") == create_options(conn, "n")
    if "AUTO_INCREMENT=" not in alter and alter != "MODIFY id BIGINT NOT NULL":
        assert counter(conn, "t") == ROWS + 1   # the deleted ids are not handed out again


def test_counter_moved_during_the_copy_and_just_before_the_block(server: Dsn, db: str,
                                                                  conn: Conn) -> None:
    """Ids consumed without a surviving row (a rolled-back insert, an insert deleted
    again) after the copy started, and again between the counter's first carry and the
    write block: the new table continues after all of them."""
    make_twins(conn)
    run(conn, "DROP TABLE n")
    other: list[Conn] = []

    def consume_ids() -> None:
        writer = other[0]
        run(writer, "BEGIN")
        run(writer, "INSERT INTO t (v) VALUES (1), (2), (3)")
        run(writer, "ROLLBACK")
        run(writer, "INSERT INTO t (v) VALUES (4)")
        run(writer, "DELETE FROM t WHERE id = LAST_INSERT_ID()")

    other.append(connect(server, db))
    try:
        faults.register("copy_start", consume_ids)
        faults.register("cutover_attempt", consume_ids)
        migrate(config(server, db, "ADD COLUMN c INT NULL"))
    finally:
        other[0].close()
    # 1200 seeded, then two rounds of 4 ids each.
    assert counter(conn, "t") == ROWS + 8 + 1
    run(conn, "INSERT INTO t (v) VALUES (9)")
    assert scalar(conn, "SELECT MAX(id) FROM t") == ROWS + 9


ENGINES = ["MyISAM", "MEMORY", pytest.param("Aria", marks=pytest.mark.mariadb_only)]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("instant", [False, True])
def test_a_non_innodb_target_is_refused_up_front(server: Dsn, db: str, conn: Conn,
                                                 engine: str, instant: bool) -> None:
    # MyISAM and MEMORY are in every MySQL and MariaDB build this project supports.
    assert engine.upper() in {str(r).upper() for r in _engines(conn)}
    make_twins(conn)
    run(conn, "DROP TABLE n")
    before = create_options(conn, "t")
    with pytest.raises(InvalidAlter) as info:
        migrate(config(server, db, f"ENGINE={engine}", allow_instant=instant))
    assert info.value.exit_code == 5
    assert engine.lower() in info.value.message.lower()
    assert tables(conn) == {"t"}
    assert create_options(conn, "t") == before
    assert scalar(conn, "SELECT COUNT(*) FROM t") == KEPT


def _engines(conn: Conn) -> list[Any]:
    with conn.cursor() as cur:
        cur.execute("SELECT ENGINE FROM information_schema.ENGINES "
                    "WHERE SUPPORT IN ('YES', 'DEFAULT')")
        return [r[0] for r in cur.fetchall()]


@pytest.mark.parametrize("alter", [
    "MODIFY id INT NOT NULL, ADD COLUMN n INT NOT NULL AUTO_INCREMENT UNIQUE",
    "MODIFY id INT NOT NULL, MODIFY v INT NOT NULL AUTO_INCREMENT, ADD UNIQUE (v)",
])
def test_a_new_auto_increment_column_is_refused_up_front(server: Dsn, db: str, conn: Conn,
                                                         alter: str) -> None:
    """The plain ALTER numbers such a column in one pass over the table; a chunked copy
    with flushes re-inserting changed rows would number it otherwise."""
    make_twins(conn)
    run(conn, "DROP TABLE n")
    before = create_options(conn, "t")
    with pytest.raises(InvalidAlter, match="new AUTO_INCREMENT column") as info:
        migrate(config(server, db, alter))
    assert info.value.exit_code == 5
    assert tables(conn) == {"t"}
    assert create_options(conn, "t") == before

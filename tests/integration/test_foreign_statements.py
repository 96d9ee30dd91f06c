"""Other sessions' statements in the binlog, on a real server.

Statements that only share the table's name (a table `orders_archive LIKE orders`, a view,
a user, a column, another database's `orders`) and the tool's own statements must not
stop a run, whatever the table is called (`phase`, `key`, `user`). A change to the table
outside row events (a TRUNCATE behind a comment, a DELETE or UPDATE logged as a
statement) after the checksum must stop it before the cutover: exit 13, no swap.

Savepoints inside row transactions are not commits: with the binlog dump connection
killed again and again, no write is lost. Repair is off throughout.
"""

from __future__ import annotations

import dataclasses
import random
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pymysql
import pytest
from helpers import Conn, Cursor, connect, old_tables
from workload import IntModel, Op, Writers, assert_same_rows, q

from onlineddl import faults
from onlineddl.binlog import UPSERT, Commit, Item, Keys, SchemaChange, TableShape, open_reader
from onlineddl.binlog.wire import WireReader
from onlineddl.config import Dsn, MigrationConfig, Tuning
from onlineddl.db import Session
from onlineddl.errors import ReplicationError
from onlineddl.flavor import BinlogPosition, MySQL, detect
from onlineddl.migration import migrate
from onlineddl.table import load_table

ROWS = 600
COLUMNS = ["id", "name", "v", "data", "note"]
TUNING = Tuning(chunk_rows_initial=100, chunk_rows_max=200, checkpoint_interval=0.3)


def seed(conn: Conn, table: str, mirror: str, rows: int = ROWS) -> IntModel:
    """The table and its mirror with the same rows (executemany: MySQL and MariaDB)."""
    model = IntModel(id_max=rows + 100)
    values = [(i, f"n{i}", i, bytes([i % 256]) * 3, None if i % 7 else "x") for i in
              range(1, rows + 1)]
    with conn.cursor() as cur:
        for name in (table, mirror):
            cur.execute(model.create_sql(name))
            cur.executemany(f"INSERT INTO {q(name)} (id, name, v, data, note) "
                            "VALUES (%s, %s, %s, %s, %s)", values)
    return model


def config(server: Dsn, db: str, table: str, **kw: Any) -> MigrationConfig:
    return MigrationConfig(dsn=server, database=db, table=table, repair=False, tuning=TUNING,
                           alter="ADD COLUMN added INT NULL", **kw)


def at_chunks(writers: Writers, first: Callable[[], None] | None = None) -> None:
    """At every chunk a burst of writes; before the first burst, `first`."""
    count = {"n": 0}

    def hook() -> None:
        count["n"] += 1
        if count["n"] == 1 and first is not None:
            first()
        writers.burst(5, seed=count["n"])

    faults.register("after_chunk", hook)


def run(conn: Conn, *statements: str) -> None:
    with conn.cursor() as cur:
        for text in statements:
            cur.execute(text)


@pytest.mark.parametrize("table", ["phase", "key", "user"])
def test_tables_named_like_the_tools_own_words_migrate(server: Dsn, db: str, conn: Conn,
                                                       table: str) -> None:
    """The checkpoint's CREATE TABLE has columns `phase` and `key`; CREATE USER has `user`."""
    model = seed(conn, table, "mirror")
    writers = Writers(server, db, table, "mirror", model)
    user = f"u{db[-8:]}"
    at_chunks(writers, lambda: run(conn, f"CREATE USER '{user}'@'localhost'",
                                   f"DROP USER '{user}'@'localhost'"))
    migrate(config(server, db, table))
    assert "added" in column_names(conn, table)
    assert_same_rows(conn, table, "mirror", COLUMNS, ["id"])


def column_names(conn: Conn, table: str) -> list[str]:
    with conn.cursor() as cur:
        cur.execute(f"SHOW COLUMNS FROM {q(table)}")
        return [r[0] for r in cur.fetchall()]


@pytest.fixture
def other_db(server: Dsn, db: str) -> Iterator[str]:
    """A second database with a table of the same name."""
    name = db[:40] + "_other"
    admin = connect(server)
    run(admin, f"CREATE DATABASE {q(name)}",
        f"CREATE TABLE {q(name)}.orders (id INT PRIMARY KEY, v INT)",
        f"INSERT INTO {q(name)}.orders VALUES (1, 1), (2, 2)")
    yield name
    run(admin, f"DROP DATABASE IF EXISTS {q(name)}")
    admin.close()


def test_statements_that_only_share_the_name_do_not_stop_the_run(
        server: Dsn, db: str, conn: Conn, other_db: str) -> None:
    model = seed(conn, "orders", "mirror")
    writers = Writers(server, db, "orders", "mirror", model)
    user = f"orders{db[-8:]}"
    elsewhere = connect(server, other_db)

    def foreign(suffix: str) -> None:
        run(conn, f"CREATE TABLE orders_archive{suffix} LIKE orders",
            f"CREATE VIEW v_orders{suffix} AS SELECT id FROM orders",
            f"CREATE TABLE x{suffix} (orders INT)",
            f"INSERT INTO x{suffix} (orders) SELECT id FROM orders WHERE id < 5",
            f"CREATE USER '{user}{suffix}'@'localhost'",
            f"DROP USER '{user}{suffix}'@'localhost'")
        run(elsewhere, "/* app */ TRUNCATE TABLE orders", "DELETE FROM orders")

    at_chunks(writers, lambda: foreign("1"))
    faults.register("after_checksum", lambda: foreign("2"))
    migrate(config(server, db, "orders"))
    assert "added" in column_names(conn, "orders")
    assert_same_rows(conn, "orders", "mirror", COLUMNS, ["id"])
    elsewhere.close()


def statement_format(conn: Conn) -> None:
    run(conn, "SET SESSION binlog_format = 'STATEMENT'")


CHANGES = {
    "comment-truncate": (None, "/* app */ TRUNCATE TABLE t"),
    "hash-comment-truncate": (None, "# app\nTRUNCATE TABLE t"),
    "executable-comment-truncate": (None, "/*!50000 TRUNCATE TABLE t */"),
    "statement-delete": (statement_format, "/* x */ DELETE FROM t WHERE id < 100"),
    "statement-update": (statement_format, "/* x */ UPDATE t SET v = v + 1000 WHERE id < 100"),
    "statement-multi-delete": (
        statement_format, "DELETE a FROM t AS a JOIN mirror AS b USING (id) WHERE a.id < 9"),
    "qualified-alter": (None, "ALTER TABLE `{db}`.`t` COMMENT 'changed'"),
}


@pytest.mark.parametrize("case", list(CHANGES))
def test_a_change_after_the_checksum_stops_before_the_cutover(server: Dsn, db: str,
                                                              conn: Conn, case: str) -> None:
    seed(conn, "t", "mirror")
    prepare, text = CHANGES[case]
    other = connect(server, db)
    if prepare is not None:
        prepare(other)

    def change() -> None:
        run(other, text.format(db=db))

    faults.register("after_checksum", change)
    with pytest.raises(ReplicationError, match="cannot replay") as err:
        migrate(config(server, db, "t"))
    assert err.value.exit_code == 13
    assert "added" not in column_names(conn, "t")          # no swap happened
    assert old_tables(conn) == []
    other.close()


@pytest.mark.mariadb_only  # ALTER TABLE IF EXISTS is MariaDB syntax
def test_mariadb_alter_table_if_exists_stops_the_run(server: Dsn, db: str, conn: Conn) -> None:
    seed(conn, "t", "mirror")
    faults.register("after_checksum",
                    lambda: run(conn, "/* dba */ ALTER TABLE IF EXISTS t COMMENT 'x'"))
    with pytest.raises(ReplicationError, match="cannot replay"):
        migrate(config(server, db, "t"))
    assert "added" not in column_names(conn, "t")


# --- savepoints: positions only at real commits -------------------------------------------


@dataclasses.dataclass
class SavepointModel(IntModel):
    """Each transaction writes, sets savepoints, rolls back to one and writes again, on
    the table and its mirror alike."""

    def ops(self) -> list[Op]:
        return [self.with_savepoints]

    def with_savepoints(self, cur: Cursor, rng: random.Random, table: str
                        ) -> list[tuple[str, list[Any]]]:
        mirror: list[tuple[str, list[Any]]] = []
        for step in range(3):
            cur.execute(f"SAVEPOINT s{step}")
            mirror += [(f"SAVEPOINT m{step}", [])]
            mirror += self.update(cur, rng, table) + self.insert(cur, rng, table)
            if rng.random() < 0.5:
                cur.execute(f"ROLLBACK TO SAVEPOINT s{step}")
                mirror = mirror[:mirror.index((f"SAVEPOINT m{step}", []))]
            else:
                cur.execute(f"RELEASE SAVEPOINT s{step}")
            mirror += self.update(cur, rng, table)
        return [(s, p) for s, p in mirror if not s.startswith("SAVEPOINT")]


def kill_dump_connections(server: Dsn, wait: float) -> int:
    """KILL the binlog dump connections as soon as there are some (the wire reader polls:
    between polls there may be none), looking for `wait` seconds at most (0: once);
    returns how many it killed."""
    killer = connect(server)
    killed = 0
    deadline = time.monotonic() + wait
    try:
        with killer.cursor() as cur:
            while True:
                cur.execute("SELECT ID FROM information_schema.PROCESSLIST "
                            "WHERE COMMAND LIKE 'Binlog Dump%%'")
                for (conn_id,) in cur.fetchall():
                    try:
                        cur.execute(f"KILL {int(conn_id)}")
                        killed += 1
                    except pymysql.err.MySQLError:  # it ended on its own meanwhile
                        pass
                if killed or time.monotonic() >= deadline:
                    return killed
    finally:
        killer.close()
    return killed


KILLS = 4


@pytest.mark.parametrize("reader", ["wire", "library"])
def test_savepoint_writers_lose_nothing_when_the_dump_is_killed(
        server: Dsn, db: str, conn: Conn, reader: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Writers use savepoints throughout. The cutover is postponed (flag file) until,
    four times one after the other, a large transaction with savepoints has changed
    copied rows and the dump connection has been killed: the library's reader (one
    blocking dump, a position per event) when it reads that transaction's first
    savepoint; the wire reader's (a position per socket read, a dump per poll) as soon
    as one is open after the commit."""
    if reader == "library":
        of = TableShape.of
        monkeypatch.setattr(TableShape, "of", lambda *a, **k: dataclasses.replace(
            of(*a, **k), key_kinds=None))
    seed(conn, "t", "mirror", rows=3000)
    writers = Writers(server, db, "t", "mirror", SavepointModel(id_max=3100), threads=3,
                      pause=0.001)
    flag = tmp_path / "postpone"
    flag.write_text("")
    armed, done, killed = threading.Event(), threading.Event(), []

    def kill(wait: float = 0) -> None:
        # The library's reader may still be reading what it received before the last
        # kill, with no dump on the server: then the next savepoint kills.
        if armed.is_set():
            found = kill_dump_connections(server, wait)
            if found:
                armed.clear()
                killed.append(found)
                done.set()

    def drive() -> None:
        try:
            for n in range(1, KILLS + 1):
                done.clear()
                armed.set()
                large_savepoint_transaction(server, db, n)
                for _ in range(6 if reader == "wire" else 0):
                    kill(wait=5)
                done.wait(60)                  # the library's reader kills on its own
        finally:
            flag.unlink()

    driver = threading.Thread(target=drive)

    def start_driver() -> None:                # once the applier reads the binlog
        if not driver.is_alive() and not killed:
            driver.start()

    if reader == "library":
        faults.register("binlog_savepoint", kill)
    faults.register("after_chunk", start_driver)
    writers.start()
    try:
        migrate(config(server, db, "t", postpone_flag_file=str(flag)))
    finally:
        writers.stop()
        if driver.is_alive():
            driver.join()
    assert killed == [1] * KILLS
    assert not writers.errors, writers.errors[:3]
    assert_same_rows(conn, "t", "mirror", COLUMNS, ["id"])


def large_savepoint_transaction(server: Dsn, db: str, n: int) -> None:
    """Changes to rows 1..300 (copied by now) on both tables, around savepoints."""
    writer = connect(server, db, autocommit=False)
    rows = "WHERE id BETWEEN 1 AND 300"
    try:
        run(writer, *[f"UPDATE {t} SET v = v + {n} {rows}" for t in ("t", "mirror")],
            "SAVEPOINT a",
            *[f"UPDATE {t} SET note = 'sp{n}' {rows}" for t in ("t", "mirror")],
            "SAVEPOINT b",
            *[f"UPDATE {t} SET v = v + 1000 {rows}" for t in ("t", "mirror")],
            "ROLLBACK TO SAVEPOINT b", "RELEASE SAVEPOINT a",
            *[f"UPDATE {t} SET name = 'after{n}' {rows}" for t in ("t", "mirror")])
        writer.commit()
    finally:
        writer.close()


SAVEPOINT_TXN = [
    "BEGIN", "INSERT INTO t VALUES (1, 1)", "SAVEPOINT a", "INSERT INTO t VALUES (2, 2)",
    "SAVEPOINT b", "INSERT INTO t VALUES (3, 3)", "ROLLBACK TO SAVEPOINT b",
    "INSERT INTO t VALUES (4, 4)", "RELEASE SAVEPOINT a", "UPDATE t SET v = 5 WHERE id = 1",
    "COMMIT", "INSERT INTO t VALUES (6, 6)",
]


@pytest.mark.parametrize("reader", ["wire", "library"])
def test_no_position_inside_a_transaction_with_savepoints(server: Dsn, db: str, conn: Conn,
                                                          reader: str) -> None:
    """Read event by event; reading on from every position handed out must give exactly
    the changes not read yet (a position inside the transaction, with its GTID counted,
    would skip the rest of it)."""
    run(conn, "CREATE TABLE t (id INT PRIMARY KEY, v INT)")
    control = Session(server, name="test", database=db)
    flavor = detect(str(control.scalar("SELECT VERSION()")))
    start = flavor.current_position(control)
    run(conn, "SET SESSION binlog_format = 'ROW'", *SAVEPOINT_TXN)
    end = flavor.current_position(control)
    shape = TableShape.of(load_table(control, db, "t"))
    if reader == "library":
        shape = dataclasses.replace(shape, key_kinds=None)
    items = read_until(server, flavor, shape, start, end)
    keys = [k for i in items if isinstance(i, Keys) for k in i.keys]
    assert keys == [(1,), (2,), (4,), (1,), (6,)]
    commits = [n for n, i in enumerate(items) if isinstance(i, Commit)]
    assert commits, "no position handed out"
    for n in commits:
        commit = items[n]
        assert isinstance(commit, Commit)
        position = commit.position
        if position.reached(end):
            continue
        before = [k for i in items[:n] if isinstance(i, Keys) for k in i.keys]
        after = [k for i in read_until(server, flavor, shape, position, end)
                 if isinstance(i, Keys) for k in i.keys]
        assert before + after == keys, f"resuming from {position} read {after}"
    control.close()


def read_until(server: Dsn, flavor: MySQL, shape: TableShape, start: BinlogPosition,
               end: BinlogPosition) -> list[Item]:
    """Items from `start` until a Commit reaches `end`; the wire reader gets one byte per
    socket read, so it hands out positions after every event it may."""
    reader = open_reader(server, flavor, shape, start, random.randint(1 << 30, 1 << 31))
    if isinstance(reader, WireReader):
        byte_by_byte(reader)
    items: list[Item] = []
    stop = threading.Event()
    timer = threading.Timer(30, stop.set)
    timer.start()
    try:
        for item in reader.items(stop):
            items.append(item)
            if isinstance(item, Commit) and item.position.reached(end):
                return items
    finally:
        timer.cancel()
        reader.close()
    raise AssertionError(f"the reader did not reach {end}: {items}")


def byte_by_byte(reader: WireReader) -> None:
    def small(conn: Any) -> Any:  # a DumpConnection whose read_chunk is patched
        read = conn.read_chunk
        conn.read_chunk = lambda size: read(1)
        return conn

    small(reader._conn)
    reopen = reader._reopen
    assert reopen is not None
    reader._reopen = lambda pos, crc: (lambda c: (small(c[0]), c[1]))(reopen(pos, crc))


@pytest.mark.parametrize("reader", ["wire", "library"])
def test_both_readers_report_the_swap_rename_by_the_default_database(
        server: Dsn, db: str, conn: Conn, reader: str) -> None:
    """The cutover's tripwire waits for the RENAME of the table, which the tool runs
    unqualified in the table's database; another database's RENAME is not it."""
    run(conn, "CREATE TABLE t (id INT PRIMARY KEY, v INT)", "CREATE TABLE n LIKE t")
    control = Session(server, name="test", database=db)
    flavor = detect(str(control.scalar("SELECT VERSION()")))
    shape = TableShape.of(load_table(control, db, "t"))
    if reader == "library":
        shape = dataclasses.replace(shape, key_kinds=None)
    start = flavor.current_position(control)
    run(conn, f"CREATE DATABASE IF NOT EXISTS `{db[:40]}_x`")
    elsewhere = connect(server, f"{db[:40]}_x")
    try:
        run(elsewhere, "CREATE TABLE t (id INT PRIMARY KEY)", "RENAME TABLE t TO t2")
        run(conn, "INSERT INTO t VALUES (1, 1)", "RENAME TABLE t TO t_old, n TO t")
        end = flavor.current_position(control)
        items = read_until(server, flavor, shape, start, end)
    finally:
        run(elsewhere, f"DROP DATABASE `{db[:40]}_x`")
        elsewhere.close()
        control.close()
    changes = [i for i in items if isinstance(i, SchemaChange)]
    assert changes == [SchemaChange("RENAME TABLE t TO t_old, n TO t")]
    assert Keys([(1,)], UPSERT) in items or Keys(((1,),), UPSERT) in items

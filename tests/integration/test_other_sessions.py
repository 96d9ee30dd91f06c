"""Ordinary things other sessions do on a busy server, during a migration.

Each test runs a migration with checksum repair off while another session does one thing
at a named fault point, and the same writes go to a mirror table (or the expected rows
are known): the run exits 0 with the table equal to its mirror, or stops with a typed
error and the table unchanged. Nothing here is done by the tool's own writers.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pymysql
import pytest
from helpers import Conn, connect, external_server_lacks, old_tables, scalar, tables
from workload import assert_same_rows, q

from onlineddl import faults
from onlineddl.config import Dsn, MigrationConfig, Tuning
from onlineddl.errors import (
    ChecksumMismatch,
    DatabaseError,
    PreflightFailed,
    ReplicationError,
    TableChanged,
)
from onlineddl.migration import migrate
from onlineddl.revert import revert

ROWS = 400
TUNING = Tuning(chunk_rows_initial=100, chunk_rows_min=100, chunk_rows_max=100,
                checkpoint_interval=0.3, flush_interval=0.05, lock_wait_timeout=1,
                cutover_lock_timeout=1, cutover_attempts=2, block_timeout=3.0,
                checksum_chunk_rows=100)
COLUMNS = ["id", "v", "note", "body"]


def make(conn: Conn, key: str = "INT") -> None:
    """`t` and its mirror `m` with the same rows."""
    rows = [(i, i, f"n{i}", "b" * (i % 5)) for i in range(1, ROWS + 1)]
    with conn.cursor() as cur:
        for name in ("t", "m"):
            cur.execute(f"CREATE TABLE {name} (id {key} NOT NULL PRIMARY KEY, v INT NOT NULL, "
                        "note VARCHAR(40) NULL, body TEXT NULL, KEY (v))")
            cur.executemany(f"INSERT INTO {name} VALUES (%s, %s, %s, %s)", rows)


def config(server: Dsn, db: str, **kw: Any) -> MigrationConfig:
    kw.setdefault("alter", "ADD COLUMN added INT NULL")
    return MigrationConfig(dsn=server, database=db, table="t", repair=False, tuning=TUNING,
                           **kw)


def run(conn: Conn, *statements: str) -> None:
    with conn.cursor() as cur:
        for text in statements:
            cur.execute(text)


def both(conn: Conn, *statements: str) -> None:
    """Each statement on `t`, then on the mirror (`{t}` names the table)."""
    for name in ("t", "m"):
        run(conn, *(s.format(t=name) for s in statements))


def at(point: str, action: Callable[[int], None]) -> None:
    """`action(n)` the n-th time the run reaches `point`."""
    count = {"n": 0}

    def hook() -> None:
        count["n"] += 1
        action(count["n"])

    faults.register(point, hook)


def rows_of(conn: Conn, table: str) -> list[tuple[Any, ...]]:
    with conn.cursor() as cur:
        cur.execute(f"SELECT {', '.join(COLUMNS)} FROM {q(table)} ORDER BY id")
        return list(cur.fetchall())


def same(conn: Conn) -> None:
    assert_same_rows(conn, "t", "m", COLUMNS, ["id"])


# --- XA transactions -----------------------------------------------------------------


@pytest.fixture
def xa_session(server: Dsn, db: str) -> Iterator[Conn]:
    """A session for XA transactions; whatever it left prepared is rolled back after."""
    xa = connect(server, db)
    yield xa
    with xa.cursor() as cur:       # the owner ends its own (others may not, while it lives)
        cur.execute("XA RECOVER")
        for _, gtrid_length, _, data in cur.fetchall():
            try:
                cur.execute(f"XA ROLLBACK '{data[:gtrid_length].decode()}'")
            except pymysql.err.Error:
                pass               # not this session's
    xa.close()


def test_xa_committed_after_later_chunks_reaches_the_new_table(
        server: Dsn, db: str, conn: Conn, xa_session: Conn) -> None:
    """Rows change at XA PREPARE in the binlog and commit at a later XA COMMIT, which
    carries no rows: the flush must not copy the prepared transaction's rows before it
    commits and then never again."""
    make(conn)
    xa = xa_session

    def act(n: int) -> None:
        if n == 1:
            run(xa, "XA START 'x1'", "UPDATE t SET v = v + 1000 WHERE id IN (5, 350)",
                "INSERT INTO t VALUES (2001, 1, 'xa', NULL)", "DELETE FROM t WHERE id = 7",
                "XA END 'x1'", "XA PREPARE 'x1'")
            run(conn, "UPDATE m SET v = v + 1000 WHERE id IN (5, 350)",
                "INSERT INTO m VALUES (2001, 1, 'xa', NULL)", "DELETE FROM m WHERE id = 7")
        if n == 3:
            run(xa, "XA COMMIT 'x1'")

    at("after_chunk", act)
    migrate(config(server, db))
    same(conn)


def prepare(xa: Conn, conn: Conn, name: str) -> None:
    """An XA transaction on `t` prepared (rows locked), its writes made on the mirror."""
    run(xa, f"XA START '{name}'", "UPDATE t SET v = v + 1000 WHERE id IN (5, 350)",
        "INSERT INTO t VALUES (2001, 1, 'xa', NULL)", "DELETE FROM t WHERE id = 7",
        f"XA END '{name}'", f"XA PREPARE '{name}'")
    run(conn, "UPDATE m SET v = v + 1000 WHERE id IN (5, 350)",
        "INSERT INTO m VALUES (2001, 1, 'xa', NULL)", "DELETE FROM m WHERE id = 7")


def test_xa_rolled_back_leaves_no_rows(server: Dsn, db: str, conn: Conn,
        xa_session: Conn) -> None:
    make(conn)
    xa = xa_session

    def act(n: int) -> None:
        if n == 1:
            run(xa, "XA START 'x2'", "UPDATE t SET v = v + 1000 WHERE id IN (5, 350)",
                "INSERT INTO t VALUES (2001, 1, 'xa', NULL)", "DELETE FROM t WHERE id = 7",
                "XA END 'x2'", "XA PREPARE 'x2'")
        if n == 3:
            run(xa, "XA ROLLBACK 'x2'")

    at("after_chunk", act)
    migrate(config(server, db))
    same(conn)


def test_xa_prepared_after_the_checksum_committed_while_the_run_waits(
        server: Dsn, db: str, conn: Conn, xa_session: Conn) -> None:
    """Prepared after the checksum: the flush before the cutover waits on its row locks
    (retrying), and takes its rows once its coordinator commits it, 2 s later (no fault
    point lies inside a lock wait, so a timer ends it)."""
    make(conn)
    timers: list[threading.Timer] = []

    def prepared() -> None:
        prepare(xa_session, conn, "x5")
        timers.append(threading.Timer(2.0, run, (xa_session, "XA COMMIT 'x5'")))
        timers[0].start()

    at("after_checksum", lambda n: prepared() if n == 1 else None)
    try:
        migrate(config(server, db))
    finally:
        for timer in timers:
            timer.join()
    same(conn)


def test_xa_prepared_before_the_run_is_waited_for(server: Dsn, db: str, conn: Conn,
                                                  xa_session: Conn) -> None:
    """Prepared before the run: its rows are in the binlog before the start position and
    its XA COMMIT carries none. Committed during the copy it was lost to the applier
    (the checksum found keys 5, 7, 350: exit 7); the run now starts once it ended."""
    make(conn)
    prepare(xa_session, conn, "x6")
    timer = threading.Timer(1.0, run, (xa_session, "XA COMMIT 'x6'"))
    timer.start()
    try:
        migrate(config(server, db))
    finally:
        timer.join()
    same(conn)


def test_xa_left_prepared_before_the_run_is_refused(server: Dsn, db: str, conn: Conn,
                                                    xa_session: Conn) -> None:
    make(conn)
    prepare(xa_session, conn, "x7")
    with pytest.raises(PreflightFailed, match="x7") as err:
        migrate(config(server, db))
    assert err.value.exit_code == 4
    assert "XA RECOVER" in err.value.hint
    assert tables(conn) - {"_onlineddl_old_tables"} == {"t", "m"}


def test_xa_one_phase(server: Dsn, db: str, conn: Conn,
        xa_session: Conn) -> None:
    make(conn)
    xa = xa_session

    def act(n: int) -> None:
        if n == 1:
            run(xa, "XA START 'x3'", "UPDATE t SET v = v + 1000 WHERE id IN (5, 350)",
                "INSERT INTO t VALUES (2001, 1, 'xa', NULL)", "XA END 'x3'",
                "XA COMMIT 'x3' ONE PHASE")
            run(conn, "UPDATE m SET v = v + 1000 WHERE id IN (5, 350)",
                "INSERT INTO m VALUES (2001, 1, 'xa', NULL)")

    at("after_chunk", act)
    migrate(config(server, db))
    same(conn)


def test_xa_prepared_for_the_whole_run_stops_it_clearly(server: Dsn, db: str, conn: Conn,
                                                        xa_session: Conn) -> None:
    """A prepared XA transaction keeps its row locks until its coordinator ends it (even
    after its client is gone). The flush waits for them: a bounded stop naming XA
    RECOVER (it took about 20 s with these timeouts), the table unchanged."""
    make(conn)
    at("after_chunk", lambda n: prepare(xa_session, conn, "x4") if n == 1 else None)
    before = rows_of(conn, "t")
    start = time.monotonic()
    with pytest.raises(DatabaseError, match="Lock wait timeout") as err:
        migrate(config(server, db))
    assert time.monotonic() - start < 60
    assert err.value.exit_code == 15
    assert "XA RECOVER" in err.value.hint
    assert rows_of(conn, "t") == before
    assert old_tables(conn) == []


# --- other sessions' settings ------------------------------------------------------------


@pytest.mark.parametrize("image", ["MINIMAL", "NOBLOB"])
@pytest.mark.parametrize("key", ["INT", "DECIMAL(10,0)"])   # the wire reader, the library's
def test_a_session_logging_partial_row_images(server: Dsn, db: str, conn: Conn, image: str,
                                              key: str) -> None:
    """MINIMAL logs a changed row's primary key and the columns written; NOBLOB leaves out
    unchanged TEXT. The key the run walks is the primary key: the run must see every
    change (it stopped on the wire reader, 'lacks columns', before)."""
    make(conn, key)
    other = connect(server, db)
    run(other, f"SET SESSION binlog_row_image = {image}")

    def act(n: int) -> None:
        if n == 2:
            both(other, "UPDATE {t} SET v = v + 1 WHERE id IN (3, 150, 390)",
                 "UPDATE {t} SET body = 'changed' WHERE id = 4",
                 "INSERT INTO {t} (id, v) VALUES (1001, 5)",
                 "INSERT INTO {t} (id, v) VALUES (50001, 5)",
                 "DELETE FROM {t} WHERE id IN (6, 160)",
                 "UPDATE {t} SET id = id + 3000 WHERE id IN (8, 170)",
                 "UPDATE {t} SET id = id + 5000, v = 0 WHERE id = 9")

    at("after_chunk", act)
    at("after_checksum", lambda n: both(other, "UPDATE {t} SET v = v + 7 WHERE id < 20",
                                        "UPDATE {t} SET id = 7777 WHERE id = 11"))
    migrate(config(server, db))
    same(conn)


@pytest.mark.parametrize("key", ["BIGINT", "DECIMAL(12,0)"])
def test_a_minimal_image_without_the_walked_unique_key_stops_the_run(
        server: Dsn, db: str, conn: Conn, key: str) -> None:
    """The run walks UNIQUE u (the ALTER moves the primary key onto it); a MINIMAL image
    holds only the old primary key id. The library's reader took the missing u as NULL
    and the run exited 0 with the update lost (rows 3 and 390 differed); both readers
    must stop, the table not swapped."""
    rows = [(i, i, i * 10, f"n{i}") for i in range(1, ROWS + 1)]
    with conn.cursor() as cur:
        for name in ("t", "m"):
            cur.execute(f"CREATE TABLE {name} (id INT NOT NULL PRIMARY KEY, v INT NOT NULL, "
                        f"u {key} NOT NULL, note VARCHAR(40), UNIQUE KEY uu (u))")
            cur.executemany(f"INSERT INTO {name} VALUES (%s, %s, %s, %s)", rows)
    other = connect(server, db)
    run(other, "SET SESSION binlog_row_image = MINIMAL")
    at("after_checksum", lambda n: both(other, "UPDATE {t} SET v = v + 1 WHERE id IN (3, 390)"))
    with pytest.raises(ReplicationError, match=r"without the column\(s\) u .*MINIMAL") as err:
        migrate(config(server, db, alter="DROP PRIMARY KEY, ADD PRIMARY KEY (u)"))
    assert err.value.exit_code == 13
    assert "binlog_row_image=FULL" in err.value.hint
    assert old_tables(conn) == []
    assert scalar(conn, "SELECT COUNT(*) FROM information_schema.STATISTICS WHERE "
                        "TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 't' AND "
                        "INDEX_NAME = 'PRIMARY' AND COLUMN_NAME = 'id'") == 1
    assert_same_rows(conn, "t", "m", ["id", "v", "u", "note"], ["id"])




@pytest.mark.parametrize(("fmt", "key"), [("ROW", "INT"), ("MIXED", "INT"),
                                          ("STATEMENT", "INT"), ("STATEMENT", "DECIMAL(9,0)")])
def test_a_temporary_table_named_like_the_table_in_another_session(
        server: Dsn, db: str, conn: Conn, fmt: str, key: str) -> None:
    """Under MIXED or STATEMENT the session's writes to its temporary `t` are logged as
    statements naming `t`; they stopped the run (exit 13, 'INSERT INTO t VALUES ...')
    though the table never changed. (A DECIMAL key: the library's reader.)"""
    make(conn, key)
    other = connect(server, db)
    run(other, f"SET SESSION binlog_format = {fmt}")

    def act(n: int) -> None:
        if n == 1:
            run(other, "CREATE TEMPORARY TABLE t (id INT PRIMARY KEY, v INT)",
                "INSERT INTO t VALUES (1, 1), (2, 2)", "UPDATE t SET v = 5",
                "DELETE FROM t WHERE id = 1", "ALTER TABLE t ADD COLUMN w INT")
        if n == 3:
            run(other, "INSERT INTO t VALUES (3, 3, 3)", "DROP TEMPORARY TABLE t")

    at("after_chunk", act)
    migrate(config(server, db))
    same(conn)


@pytest.mark.parametrize("end", ["DROP TEMPORARY TABLE t", "ALTER TABLE t RENAME TO t_tmp"])
def test_a_statement_logged_write_after_the_temporary_table_is_gone_stops_the_run(
        server: Dsn, db: str, conn: Conn, end: str) -> None:
    """Once the session's temporary `t` is dropped or renamed, its `t` is the table
    again: a write logged as a statement must still stop the run."""
    make(conn)
    other = connect(server, db)
    run(other, "SET SESSION binlog_format = STATEMENT")

    def act(n: int) -> None:
        if n == 1:
            run(other, "CREATE TEMPORARY TABLE t (id INT PRIMARY KEY, v INT)",
                "INSERT INTO t VALUES (1, 1)", end)
            both(other, "UPDATE {t} SET v = v + 1 WHERE id = 3")

    at("after_chunk", act)
    with pytest.raises(ReplicationError, match="UPDATE t SET") as err:
        migrate(config(server, db))
    assert err.value.exit_code == 13
    assert old_tables(conn) == []
    same(conn)


def test_maintenance_statements_of_other_sessions_do_not_stop_the_run(
        server: Dsn, db: str, conn: Conn) -> None:
    """ANALYZE, CHECK, CHECKSUM, FLUSH TABLES, REPAIR and OPTIMIZE TABLE (a rebuild that
    keeps every row) on the table, and an index built on another table, between writes:
    none changes a row, none stops the run."""
    make(conn)
    other = connect(server, db)
    maintenance = ["ANALYZE TABLE t", "CHECK TABLE t", "CHECKSUM TABLE t", "FLUSH TABLES t",
                   "REPAIR TABLE t", "OPTIMIZE TABLE t", "CREATE INDEX iv ON m (v, id)"]

    def act(n: int) -> None:
        both(other, f"UPDATE {{t}} SET v = v + 1 WHERE id IN ({n}, {150 + n}, {390 - n})")
        with other.cursor() as cur:
            for statement in maintenance if n == 2 else maintenance[:-1]:
                cur.execute(statement)
                cur.fetchall()
        both(other, f"DELETE FROM {{t}} WHERE id = {20 + n}")

    at("after_chunk", act)
    at("after_checksum", act)
    migrate(config(server, db))
    same(conn)


@pytest.mark.parametrize("point", ["after_chunk", "after_checksum"])
def test_writes_of_every_statement_shape(server: Dsn, db: str, conn: Conn,
                                         point: str) -> None:
    """INSERT IGNORE, REPLACE, ON DUPLICATE KEY UPDATE (the key changed too), INSERT ...
    SELECT from the table itself, multi-table UPDATE and DELETE, ORDER BY ... LIMIT, a
    stored procedure, a trigger on another table writing the table, writes through a
    view, a subquery UPDATE: during the copy, and drained by the cutover."""
    make(conn)
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE other (id INT PRIMARY KEY, w INT)")
        cur.executemany("INSERT INTO other VALUES (%s, %s)", [(i, i % 3) for i in range(1, 60)])
        for name in ("t", "m"):
            cur.execute(f"CREATE VIEW {name}_view AS SELECT id, v, note FROM {name} "
                        "WHERE id < 300")
            cur.execute(f"CREATE TABLE {name}_log (id INT PRIMARY KEY, v INT)")
            cur.execute(f"CREATE TRIGGER {name}_log_ai AFTER INSERT ON {name}_log FOR EACH ROW "
                        f"INSERT INTO {name} (id, v, note) VALUES (NEW.id + 10000, NEW.v, "
                        "'trg') ON DUPLICATE KEY UPDATE v = v + NEW.v")
            cur.execute(f"CREATE PROCEDURE {name}_bump(IN lo INT, IN hi INT) UPDATE {name} "
                        "SET v = v * 2, note = 'proc' WHERE id BETWEEN lo AND hi")
    other = connect(server, db)
    shapes = [
        "INSERT IGNORE INTO {t} (id, v) VALUES (1, 99), (4001, 1)",
        "REPLACE INTO {t} (id, v, note) VALUES (2, 22, 'replaced'), (4002, 2, 'new')",
        "INSERT INTO {t} (id, v) VALUES (12, 0) ON DUPLICATE KEY UPDATE id = id + 5000",
        "INSERT INTO {t} (id, v) VALUES (13, 0) ON DUPLICATE KEY UPDATE v = v + 100",
        "INSERT INTO {t} (id, v, note) SELECT id + 6000, v, 'copy' FROM {t} WHERE id < 20",
        "UPDATE {t} JOIN other ON other.id = {t}.id SET {t}.v = {t}.v + other.w",
        "DELETE {t} FROM {t} JOIN other ON other.id = {t}.id WHERE other.w = 2 AND {t}.id > 40",
        "UPDATE {t} SET v = -v ORDER BY id DESC LIMIT 5",
        "DELETE FROM {t} WHERE id > 300 ORDER BY id LIMIT 3",
        "CALL {t}_bump(100, 120)",
        "INSERT INTO {t}_log VALUES (1, 5), (2, 6)",
        "UPDATE {t}_view SET note = 'via view' WHERE id BETWEEN 200 AND 210",
        "INSERT INTO {t}_view (id, v, note) VALUES (7001, 1, 'view')",
        "UPDATE {t} SET v = v + 1 WHERE id IN (SELECT id FROM other WHERE w = 1)",
    ]
    at(point, lambda n: both(other, *shapes) if n == 1 else None)
    migrate(config(server, db))
    same(conn)


def test_load_data_local_infile(server: Dsn, db: str, conn: Conn, tmp_path: Any) -> None:
    if not scalar(conn, "SELECT @@GLOBAL.local_infile"):
        # The suite's own servers have it on; MySQL 8's default is OFF.
        external_server_lacks("local_infile=ON on the server")
    make(conn)
    infile = tmp_path / "rows.tsv"
    infile.write_text("".join(f"{i}\t{i}\tloaded\t\\N\n" for i in range(3001, 3011)))
    other = connect(server, db, local_infile=True)
    at("after_chunk", lambda n: both(
        other, f"LOAD DATA LOCAL INFILE '{infile}' REPLACE INTO TABLE {{t}}") if n == 2 else None)
    migrate(config(server, db))
    same(conn)
    assert scalar(conn, "SELECT COUNT(*) FROM t WHERE note = 'loaded'") == 10


def test_an_unlogged_write_before_the_checksum_stops_the_run(server: Dsn, db: str,
                                                             conn: Conn) -> None:
    """A session with sql_log_bin=0 writes rows the binlog never shows: the checksum
    must find them (repair off: exit 7), the table not swapped."""
    make(conn)
    other = connect(server, db)
    run(other, "SET SESSION sql_log_bin = 0")
    at("after_chunk", lambda n: run(other, "UPDATE t SET v = v + 1 WHERE id = 3") if n == 2
       else None)
    with pytest.raises(ChecksumMismatch, match="keys: 3") as err:
        migrate(config(server, db))
    assert err.value.exit_code == 7
    assert "sql_log_bin" in err.value.hint
    assert old_tables(conn) == []


@pytest.mark.parametrize("hold", ["BEGIN", "LOCK TABLES t READ"])
def test_a_session_that_read_the_table_at_the_cutover(server: Dsn, db: str, conn: Conn,
                                                      hold: str) -> None:
    """A GUI's open transaction that read the table, or LOCK TABLES ... READ, during the
    first cutover attempt: that attempt fails with the table unchanged, the next swaps.
    (Held through every attempt: exit 8 after them, about 20 s here.)"""
    make(conn)
    gui = connect(server, db)

    def act(n: int) -> None:
        if n == 1:
            both(conn, "UPDATE {t} SET v = v + 1 WHERE id < 5")
            run(gui, hold, "SELECT COUNT(*) FROM t")
        if n == 2:
            run(gui, "UNLOCK TABLES" if "LOCK" in hold else "COMMIT")

    at("cutover_attempt", act)
    migrate(config(server, db))
    same(conn)


@pytest.mark.parametrize("setting", ["unique_checks = 0", "foreign_key_checks = 0"])
def test_sessions_with_unique_or_foreign_key_checks_off(server: Dsn, db: str, conn: Conn,
                                                        setting: str) -> None:
    make(conn)
    other = connect(server, db)
    run(other, f"SET SESSION {setting}")
    at("after_chunk", lambda n: both(other, "UPDATE {t} SET v = v + 1 WHERE id IN (3, 390)",
                                     "INSERT INTO {t} (id, v) VALUES (5000, 1)")
       if n == 2 else None)
    migrate(config(server, db, alter="ADD UNIQUE KEY un (note)"))
    same(conn)


def test_minimal_inserts_into_an_auto_increment_table(server: Dsn, db: str,
                                                      conn: Conn) -> None:
    """A MINIMAL insert logs the generated id with the columns given."""
    with conn.cursor() as cur:
        for name in ("t", "m"):
            cur.execute(f"CREATE TABLE {name} (id INT NOT NULL AUTO_INCREMENT PRIMARY KEY, "
                        "v INT NOT NULL DEFAULT 3, note VARCHAR(40) NULL, body TEXT NULL)")
            cur.executemany(f"INSERT INTO {name} (v, note) VALUES (%s, %s)",
                            [(i, f"n{i}") for i in range(1, ROWS + 1)])
    other = connect(server, db)
    run(other, "SET SESSION binlog_row_image = MINIMAL")
    at("after_chunk", lambda n: both(other, "INSERT INTO {t} (note) VALUES ('auto')",
                                     "INSERT INTO {t} () VALUES ()") if n == 2 else None)
    migrate(config(server, db))
    same(conn)


@pytest.mark.parametrize(("point", "ddl"), [
    ("after_chunk", "ALTER TABLE t ADD COLUMN extra INT NOT NULL DEFAULT 7"),
    ("after_checksum", "ALTER TABLE t ADD INDEX inote (note)"),
    ("after_checksum", "ALTER TABLE t MODIFY note VARCHAR(80) NULL"),
])
def test_ddl_hidden_from_the_binlog_stops_the_run(server: Dsn, db: str, conn: Conn,
                                                  point: str, ddl: str) -> None:
    """A DBA's ALTER with sql_log_bin=0 (as done on replicas) never reaches the binlog.
    The run exited 0 with the change gone (the column `extra` and its values, the index,
    the wider column): T's definition is now compared under the cutover's block with
    the one it had when the run started."""
    make(conn)
    other = connect(server, db)
    run(other, "SET SESSION sql_log_bin = 0")
    at(point, lambda n: run(other, ddl) if n == 1 else None)
    with pytest.raises(TableChanged, match="in no binlog the run reads") as err:
        migrate(config(server, db))
    assert err.value.exit_code == 13
    assert old_tables(conn) == []
    with conn.cursor() as cur:
        cur.execute("SHOW CREATE TABLE t")
        definition = cur.fetchone()[1]
    assert "`added`" not in definition
    assert ("extra" in definition) or ("inote" in definition) or ("varchar(80)" in definition)
    assert_same_rows(conn, "t", "m", COLUMNS, ["id"])


def test_ddl_hidden_from_the_binlog_stops_a_revert(server: Dsn, db: str, conn: Conn) -> None:
    """The same for `revert`: an ALTER of T with sql_log_bin=0 during the revert would be
    undone by its swap back to the old table; it stops before the swap (exit 13), T as
    that session left it."""
    make(conn)
    migrate(config(server, db))
    other = connect(server, db)
    run(other, "SET SESSION sql_log_bin = 0")
    at("after_checksum", lambda n: run(other, "ALTER TABLE t ADD INDEX inote (note)"))
    with pytest.raises(TableChanged, match="in no binlog the run reads") as err:
        revert(config(server, db, alter=""))
    assert err.value.exit_code == 13
    with conn.cursor() as cur:
        cur.execute("SHOW CREATE TABLE t")
        definition = str(cur.fetchone()[1])
    assert "`added`" in definition and "inote" in definition




@pytest.mark.mysql_only   # MariaDB 10.11 has no WITH ... UPDATE
def test_a_cte_update(server: Dsn, db: str, conn: Conn) -> None:
    make(conn)
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE other (id INT PRIMARY KEY, w INT)")
        cur.executemany("INSERT INTO other VALUES (%s, %s)", [(i, i % 3) for i in range(1, 60)])
    other = connect(server, db)
    at("after_chunk", lambda n: both(
        other, "WITH c AS (SELECT id FROM other WHERE w = 0) "
               "UPDATE {t} JOIN c ON c.id = {t}.id SET {t}.v = {t}.v + 3") if n == 2 else None)
    migrate(config(server, db))
    same(conn)


def test_minimal_images_of_a_table_walked_by_its_unique_not_null_key(
        server: Dsn, db: str, conn: Conn) -> None:
    """No primary key: the server takes the first UNIQUE NOT NULL key as one and MINIMAL
    logs it, the key the run walks."""
    rows = [(i, i, f"n{i}") for i in range(1, ROWS + 1)]
    with conn.cursor() as cur:
        for name in ("t", "m"):
            cur.execute(f"CREATE TABLE {name} (u INT NOT NULL, v INT NOT NULL, "
                        "note VARCHAR(40), UNIQUE KEY uu (u))")
            cur.executemany(f"INSERT INTO {name} VALUES (%s, %s, %s)", rows)
    other = connect(server, db)
    run(other, "SET SESSION binlog_row_image = MINIMAL")
    at("after_chunk", lambda n: both(other, "UPDATE {t} SET v = v + 1 WHERE u IN (3, 390)",
                                     "UPDATE {t} SET u = u + 1000 WHERE u = 5",
                                     "DELETE FROM {t} WHERE u = 6") if n == 2 else None)
    migrate(config(server, db))
    assert_same_rows(conn, "t", "m", ["u", "v", "note"], ["u"])


def queue_behind_the_cutover(server: Dsn, db: str, statement: str,
                             out: dict[str, Any]) -> threading.Thread:
    """`statement` from another session, once it waits behind the cutover's block (or
    has finished)."""
    def go() -> None:
        other = connect(server, db)
        try:
            with other.cursor() as cur:
                cur.execute("SET SESSION lock_wait_timeout = 60")
                cur.execute(statement)
                out["result"] = cur.fetchall()
        except pymysql.err.Error as exc:
            out["error"] = exc
        finally:
            other.close()

    thread = threading.Thread(target=go, daemon=True)
    thread.start()
    watcher = connect(server, db)
    deadline = time.monotonic() + 10
    with watcher.cursor() as cur:
        while thread.is_alive() and time.monotonic() < deadline:
            cur.execute("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO = %s "
                        "AND STATE LIKE 'Waiting for table%%'", (statement,))
            if cur.fetchone()[0]:
                break
            time.sleep(0.005)
    watcher.close()
    return thread


@pytest.mark.parametrize("statement", ["ANALYZE TABLE t", "CHECK TABLE t",
                                       "OPTIMIZE TABLE t"])
def test_maintenance_queued_behind_the_cutover(server: Dsn, db: str, conn: Conn,
                                               statement: str) -> None:
    """ANALYZE and CHECK waiting behind the cutover's block do not stop it. OPTIMIZE (a
    rebuild) does, clearly (exit 13, the swap called off, T unchanged): the swap would
    otherwise wait behind a whole-table rebuild."""
    make(conn)
    out: dict[str, Any] = {}
    threads: list[threading.Thread] = []
    at("cutover_started", lambda n: threads.append(
        queue_behind_the_cutover(server, db, statement, out)) if n == 1 else None)
    try:
        if statement.startswith("OPTIMIZE"):
            with pytest.raises(TableChanged, match="OPTIMIZE TABLE t") as err:
                migrate(config(server, db))
            assert err.value.exit_code == 13
            assert old_tables(conn) == []
        else:
            migrate(config(server, db))
            assert "added" in [r[0] for r in rows_of_columns(conn)]
    finally:
        for thread in threads:
            thread.join(30)
    assert "error" not in out
    same(conn)


def rows_of_columns(conn: Conn) -> list[tuple[Any, ...]]:
    with conn.cursor() as cur:
        cur.execute("SHOW COLUMNS FROM t")
        return list(cur.fetchall())

"""Values reach the new table exactly as the server's own ALTER TABLE writes them.

Each case creates `t` and a twin `mirror` with the same schema and rows, migrates `t`
(checksum repair off) while a writer changes both tables after every chunk (so the
binlog flushes convert values too), then applies the same ALTER to `mirror` natively:
the two must be equal in schema and row for row. Covered: conversions through the
server's time zone (global time_zone '+05:30'), the implicit value of an added NOT NULL
column without a DEFAULT, lossy but legal conversions the checksum must accept, FLOAT
to text, a generated column made regular, and a renamed primary key column (with a
crash and --resume).
"""

from __future__ import annotations

import datetime
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeAlias

import pymysql.connections
import pytest
from helpers import cli_env, connect, migrate_command, tables

from onlineddl import faults
from onlineddl.config import Dsn, MigrationConfig, Tuning
from onlineddl.db import Session
from onlineddl.errors import ChecksumMismatch, DataError, UnsupportedTable
from onlineddl.migration import migrate

Conn: TypeAlias = pymysql.connections.Connection

TUNING = Tuning(chunk_rows_initial=4, chunk_rows_min=2, chunk_rows_max=6,
                progress_interval=1.0, checkpoint_interval=0.3)
ZONE = "+05:30"


@pytest.fixture
def zone(server: Dsn) -> Iterator[str]:
    """The server's global time_zone set to +05:30 for this test, restored afterwards
    (the server is shared by the whole pytest session)."""
    with connect(server) as admin, admin.cursor() as cur:
        cur.execute("SELECT @@GLOBAL.time_zone")
        before = cur.fetchone()[0]
        cur.execute("SET GLOBAL time_zone = %s", (ZONE,))
    try:
        yield ZONE
    finally:
        with connect(server) as admin, admin.cursor() as cur:
            cur.execute("SET GLOBAL time_zone = %s", (before,))


@contextmanager
def global_sql_mode(server: Dsn, extra: str) -> Iterator[None]:
    """The server's global sql_mode with `extra` modes added, restored afterwards."""
    with connect(server) as admin, admin.cursor() as cur:
        cur.execute("SELECT @@GLOBAL.sql_mode")
        before = cur.fetchone()[0]
        cur.execute("SET GLOBAL sql_mode = CONCAT(@@GLOBAL.sql_mode, ',', %s)", (extra,))
    try:
        yield
    finally:
        with connect(server) as admin, admin.cursor() as cur:
            cur.execute("SET GLOBAL sql_mode = %s", (before,))


def both(conn: Conn, template: str, params: Sequence[Any] = ()) -> None:
    with conn.cursor() as cur:
        for table in ("t", "mirror"):
            cur.execute(template.format(t=table), params)


def make(conn: Conn, columns: str, rows: Sequence[Sequence[Any]]) -> None:
    both(conn, f"CREATE TABLE {{t}} ({columns}) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4")
    if rows:
        marks = ", ".join(["%s"] * len(rows[0]))
        with conn.cursor() as cur:
            for table in ("t", "mirror"):
                cur.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)


def writer(conn: Conn, statements: Sequence[tuple[str, Sequence[Any]]]) -> None:
    """After each chunk, run the next statement on both tables (one per chunk)."""
    pending = list(statements)

    def write() -> None:
        if pending:
            both(conn, *pending.pop(0))

    faults.register("after_chunk", write)


def run(server: Dsn, db: str, alter: str, **kw: Any) -> None:
    try:
        migrate(MigrationConfig(dsn=server, database=db, table="t", alter=alter,
                                repair=False, tuning=TUNING, **kw))
    finally:
        faults.clear()


def rows(conn: Conn, table: str, skip: Sequence[str] = ()) -> list[tuple[Any, ...]]:
    with conn.cursor() as cur:
        cur.execute(f"SHOW COLUMNS FROM `{table}`")
        names = [r[0] for r in cur.fetchall() if r[0] not in skip]
        listed = ", ".join(f"`{n}`" for n in names)
        cur.execute(f"SELECT {listed} FROM `{table}` ORDER BY 1")
        return [tuple(r) for r in cur.fetchall()]


def definition(conn: Conn, table: str) -> str:
    with conn.cursor() as cur:
        cur.execute(f"SHOW CREATE TABLE `{table}`")
        text = str(cur.fetchone()[1])
    return text.split("\n", 1)[1]


def assert_like_alter(conn: Conn, alter: str, skip: Sequence[str] = ()) -> None:
    with conn.cursor() as cur:
        cur.execute(f"ALTER TABLE mirror {alter}")
    assert definition(conn, "t") == definition(conn, "mirror")
    got, want = rows(conn, "t", skip), rows(conn, "mirror", skip)
    assert got == want


# --- item 1: time zones -----------------------------------------------------------

TzRow: TypeAlias = tuple[int, str, str, str | None]  # id, ts, dt, tv
TZ_ROWS: list[TzRow] = [(i, f"2024-01-0{i % 9 + 1} 10:00:0{i % 10}",
                         f"2024-02-0{i % 9 + 1} 11:00:00", f"2023-12-31 23:{i:02d}:00")
                        for i in range(1, 21)]
ZERO_ROW: TzRow = (21, "0000-00-00 00:00:00", "0000-00-00 00:00:00", None)
TZ_ALTER = ("MODIFY ts DATETIME NOT NULL, MODIFY dt TIMESTAMP NOT NULL, "
            "MODIFY tv VARCHAR(30) NULL, "
            "ADD COLUMN created DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP")


def zero_dates_allowed(conn: Conn) -> bool:
    """MariaDB's default sql_mode allows zero dates; MySQL 8's refuses them."""
    with conn.cursor() as cur:
        cur.execute("SELECT @@GLOBAL.sql_mode")
        return "NO_ZERO_DATE" not in str(cur.fetchone()[0]).upper()


def tz_table(conn: Conn) -> None:
    # A zero TIMESTAMP stays zero (CONVERT_TZ would make it NULL).
    extra = [ZERO_ROW] if zero_dates_allowed(conn) else []
    make(conn, "id INT PRIMARY KEY, ts TIMESTAMP NOT NULL, dt DATETIME NOT NULL, "
         "tv TIMESTAMP NULL", TZ_ROWS + extra)


def test_time_zone_conversions_match_alter(server: Dsn, db: str, zone: str) -> None:
    conn = connect(server, db)  # after the fixture: this session is in +05:30 too
    tz_table(conn)
    writer(conn, [("UPDATE {t} SET ts = '2024-03-03 03:03:03' WHERE id = 2", ()),
                  ("INSERT INTO {t} VALUES (99, '2024-05-05 05:05:05', "
                   "'2024-05-05 06:06:06', '2024-05-05 07:07:07')", ()),
                  ("UPDATE {t} SET dt = '2024-04-04 04:04:04', tv = NULL WHERE id = 19", ())])
    run(server, db, TZ_ALTER)
    assert_like_alter(conn, TZ_ALTER, skip=["created"])
    with conn.cursor() as cur:
        cur.execute("SELECT ts FROM t WHERE id = 1")
        assert cur.fetchone()[0] == datetime.datetime(2024, 1, 2, 10, 0, 1)
        # CURRENT_TIMESTAMP in the server's zone, as ALTER fills it: near the mirror's.
        cur.execute("SELECT MAX(ABS(TIMESTAMPDIFF(SECOND, t.created, m.created))) "
                    "FROM t JOIN mirror m USING (id)")
        assert cur.fetchone()[0] < 120
    conn.close()


def test_copy_in_another_zone_fails_the_checksum(server: Dsn, db: str, zone: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    conn = connect(server, db)
    tz_table(conn)
    # Copy and flush sessions in UTC (the old behaviour); the checksum still compares
    # against the conversion in the server's zone and must see the shift.
    monkeypatch.setattr(Session, "time_zone", "+00:00")
    with pytest.raises(ChecksumMismatch):
        run(server, db, "MODIFY ts DATETIME NOT NULL")
    assert rows(conn, "t") == rows(conn, "mirror")  # the original is untouched
    conn.close()


def test_timestamp_key_under_writers(server: Dsn, db: str, zone: str) -> None:
    conn = connect(server, db)
    make(conn, "ts TIMESTAMP NOT NULL PRIMARY KEY, v INT NOT NULL",
         [(f"2024-01-01 00:00:{i:02d}", i) for i in range(40)])
    writer(conn, [("UPDATE {t} SET v = v + 100 WHERE ts = '2024-01-01 00:00:35'", ()),
                  ("UPDATE {t} SET v = -1 WHERE ts = '2024-01-01 00:00:01'", ()),
                  ("DELETE FROM {t} WHERE ts = '2024-01-01 00:00:30'", ()),
                  ("INSERT INTO {t} VALUES ('2023-12-31 23:59:59', 7)", ()),
                  ("UPDATE {t} SET ts = '2030-01-01' WHERE ts = '2024-01-01 00:00:03'", ())])
    run(server, db, "ADD COLUMN z INT NULL")
    assert_like_alter(conn, "ADD COLUMN z INT NULL")
    conn.close()


# --- item 3: implicit defaults ----------------------------------------------------

IMPLICIT = ("ADD COLUMN a INT NOT NULL, ADD COLUMN b VARCHAR(5) NOT NULL, "
            "ADD COLUMN f TEXT NOT NULL, "
            "ADD COLUMN g ENUM('x','y') NOT NULL, ADD COLUMN h SET('x','y') NOT NULL, "
            "ADD COLUMN i BIT(3) NOT NULL, ADD COLUMN j YEAR NOT NULL, "
            "ADD COLUMN k TIME NOT NULL, ADD COLUMN l BINARY(3) NOT NULL, "
            "ADD COLUMN m DECIMAL(5,2) NOT NULL, ADD COLUMN n DOUBLE NOT NULL, "
            "ADD COLUMN o BLOB NOT NULL, ADD COLUMN p CHAR(2) NOT NULL")


def test_added_not_null_columns_get_the_implicit_value(server: Dsn, db: str) -> None:
    conn = connect(server, db)
    make(conn, "id INT PRIMARY KEY, v INT NULL", [(i, i) for i in range(20)])
    writer(conn, [("UPDATE {t} SET v = -v WHERE id IN (2, 15)", ()),
                  ("INSERT INTO {t} (id, v) VALUES (50, 50)", ()),
                  ("DELETE FROM {t} WHERE id = 3", ())])
    alter = IMPLICIT
    if zero_dates_allowed(conn):
        alter += (", ADD COLUMN c DATE NOT NULL, ADD COLUMN d DATETIME(3) NOT NULL, "
                  "ADD COLUMN e TIMESTAMP NOT NULL")
    run(server, db, alter)
    assert_like_alter(conn, alter)
    conn.close()


def test_added_timestamp_with_an_automatic_default(server: Dsn, db: str) -> None:
    """With explicit_defaults_for_timestamp off, the first TIMESTAMP NOT NULL gets
    DEFAULT CURRENT_TIMESTAMP: existing rows get the clock, not a zero date."""
    with connect(server) as admin, admin.cursor() as cur:
        cur.execute("SELECT @@GLOBAL.explicit_defaults_for_timestamp")
        before = cur.fetchone()[0]
        cur.execute("SET GLOBAL explicit_defaults_for_timestamp = OFF")
    try:
        conn = connect(server, db)
        make(conn, "id INT PRIMARY KEY, v INT NULL", [(i, i) for i in range(10)])
        alter = "ADD COLUMN e TIMESTAMP NOT NULL"
        run(server, db, alter)
        assert_like_alter(conn, alter, skip=["e"])
        with conn.cursor() as cur:
            cur.execute("SELECT MAX(ABS(TIMESTAMPDIFF(SECOND, t.e, m.e))) "
                        "FROM t JOIN mirror m USING (id)")
            assert cur.fetchone()[0] < 120
        conn.close()
    finally:
        with connect(server) as admin, admin.cursor() as cur:
            cur.execute("SET GLOBAL explicit_defaults_for_timestamp = %s", (before,))


def test_added_json_not_null_without_default_is_refused(server: Dsn, db: str) -> None:
    conn = connect(server, db)
    make(conn, "id INT PRIMARY KEY, v INT NULL", [(1, 1)])
    with pytest.raises(UnsupportedTable, match="DEFAULT"):
        run(server, db, "ADD COLUMN js JSON NOT NULL")
    assert tables(conn) == {"t", "mirror"}
    assert definition(conn, "t") == definition(conn, "mirror")
    conn.close()


def test_zero_date_fails_as_alter_does_under_no_zero_date(server: Dsn, db: str) -> None:
    with global_sql_mode(server, "NO_ZERO_DATE"):
        conn = connect(server, db)
        make(conn, "id INT PRIMARY KEY, v INT NULL", [(1, 1), (2, 2)])
        with pytest.raises(pymysql.err.MySQLError), conn.cursor() as cur:
            cur.execute("ALTER TABLE mirror ADD COLUMN d DATE NOT NULL")
        with pytest.raises(DataError):
            run(server, db, "ADD COLUMN d DATE NOT NULL")
        assert tables(conn) == {"t", "mirror"}
        assert rows(conn, "t") == rows(conn, "mirror")
        conn.close()


@pytest.mark.mariadb_only  # TIME_ROUND_FRACTIONAL is a MariaDB sql_mode
def test_server_sql_mode_rules_apply(server: Dsn, db: str) -> None:
    """TIME_ROUND_FRACTIONAL (MariaDB only) rounds DATETIME(6) -> DATETIME in a plain
    ALTER, so the copy must round too. Under NO_BACKSLASH_ESCAPES the ALTER's 'C:\\temp'
    keeps its backslash, and keys with quotes and backslashes (text and bytes) still
    reach the server intact through the driver's escaping."""
    conn = connect(server, db)
    make(conn, "k VARBINARY(20) PRIMARY KEY, dt DATETIME(6) NOT NULL",
         [(b"a\\b'%d" % i, f"2024-01-01 10:00:0{i}.{i}99999") for i in range(10)])
    writer(conn, [("UPDATE {t} SET dt = '2024-06-06 06:06:06.6' WHERE k = %s",
                   (b"a\\b'3",)),
                  ("DELETE FROM {t} WHERE k = %s", (b"a\\b'8",))])
    alter = "MODIFY dt DATETIME NOT NULL, ADD COLUMN p VARCHAR(10) NOT NULL DEFAULT 'C:\\temp'"
    with global_sql_mode(server, "TIME_ROUND_FRACTIONAL,NO_BACKSLASH_ESCAPES"):
        run(server, db, alter)
        with connect(server, db) as native:  # a session in the server's modes
            assert_like_alter(native, alter)
            with native.cursor() as cur:
                cur.execute("SELECT dt, p FROM t WHERE k LIKE '%5'")  # was 10:00:05.599999
                assert cur.fetchone() == (datetime.datetime(2024, 1, 1, 10, 0, 6), "C:\\temp")
    conn.close()


# --- items 4 and 5: lossy conversions, FLOAT to text -------------------------------

LOSSY_COLUMNS = (
    "id INT PRIMARY KEY, d DOUBLE, dec1 DECIMAL(12,6), tx TEXT, vc VARCHAR(20), "
    "st SET('a','b','c'), en ENUM('a','B'), ie INT, dt DATETIME(6), ds DECIMAL(10,4), "
    "bt BIT(8), yr INT, ch CHAR(10), u8 VARCHAR(20), co VARCHAR(20), f FLOAT, "
    "f73 FLOAT(7,3), d2 DOUBLE, dc DECIMAL(8,3)")
LOSSY_ALTER = (
    "MODIFY d FLOAT, MODIFY dec1 FLOAT, MODIFY tx VARCHAR(10), MODIFY vc CHAR(20), "
    "MODIFY st SET('c','b','a'), MODIFY en ENUM('A','b'), MODIFY ie ENUM('x','y','z'), "
    "MODIFY dt DATETIME, MODIFY ds DECIMAL(10,1), MODIFY bt INT, MODIFY yr YEAR, "
    "MODIFY ch VARCHAR(10), MODIFY u8 VARCHAR(20) CHARACTER SET latin1, "
    "MODIFY co VARCHAR(20) COLLATE utf8mb4_bin, MODIFY f VARCHAR(30), "
    "MODIFY f73 VARCHAR(30), MODIFY d2 VARCHAR(30), MODIFY dc VARCHAR(30)")


def lossy_row(i: int) -> tuple[Any, ...]:
    return (i, 1.1 + i, f"{i}.1234567", f"text {i}  ", f"vc {i}   ", "a,b" if i % 2 else "c",
            "B" if i % 2 else "a", i % 3 + 1, f"2024-01-01 10:00:0{i % 10}.{i:06d}",
            f"{i}.0551", i % 200, (i % 99) + 1, f"ch{i}", f"café {i}", f"Co {i}",
            1.1 * i, 12.3456 + i, 0.1 * i, f"{i}.125")


def test_lossy_conversions_match_alter_and_pass_the_checksum(server: Dsn, db: str) -> None:
    conn = connect(server, db)
    make(conn, LOSSY_COLUMNS, [lossy_row(i) for i in range(1, 25)])
    changed = lossy_row(77)
    writer(conn, [("UPDATE {t} SET d = 9.99, st = 'a,c', en = 'a', vc = 'x  ' WHERE id = 5", ()),
                  (f"INSERT INTO {{t}} VALUES ({', '.join(['%s'] * len(changed))})", changed),
                  ("UPDATE {t} SET f = 3.3, f73 = 0.5, tx = 'new  ' WHERE id = 21", ()),
                  ("DELETE FROM {t} WHERE id = 7", ())])
    run(server, db, LOSSY_ALTER)
    assert_like_alter(conn, LOSSY_ALTER)
    with conn.cursor() as cur:
        cur.execute("SELECT f, f73 FROM t WHERE id = 1")
        assert cur.fetchone() == ("1.1", "13.346")
    conn.close()


# --- item 6: a generated column made regular -------------------------------------

def test_generated_column_made_regular_keeps_its_values(server: Dsn, db: str) -> None:
    # A STORED one: MariaDB 10.11 refuses to make a VIRTUAL column regular (error 1907).
    conn = connect(server, db)
    make(conn, "id INT PRIMARY KEY, v INT NOT NULL, gs INT AS (v * 2) STORED, "
         "gv INT AS (v + 1) VIRTUAL", [])
    with conn.cursor() as cur:
        for table in ("t", "mirror"):
            cur.executemany(f"INSERT INTO {table} (id, v) VALUES (%s, %s)",
                            [(i, i) for i in range(20)])
    writer(conn, [("UPDATE {t} SET v = 1000 WHERE id = 4", ()),
                  ("INSERT INTO {t} (id, v) VALUES (77, 77)", ()),
                  ("UPDATE {t} SET v = 2000 WHERE id = 18", ())])
    alter = "MODIFY gs INT NULL"
    run(server, db, alter)
    assert_like_alter(conn, alter)
    with conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM t WHERE gs IS NULL")
        assert cur.fetchone()[0] == 0
    conn.close()


# --- item 7: a renamed primary key column ----------------------------------------

PK_RENAME = "CHANGE id id2 INT NOT NULL"


def test_renamed_key_column_under_writers(server: Dsn, db: str) -> None:
    conn = connect(server, db)
    make(conn, "id INT PRIMARY KEY, v VARCHAR(20) NOT NULL",
         [(i, f"v{i}") for i in range(1, 30)])
    writer(conn, [("UPDATE {t} SET v = 'changed' WHERE id = 25", ()),
                  ("INSERT INTO {t} VALUES (100, 'new')", ()),
                  ("UPDATE {t} SET id = 200 WHERE id = 26", ()),
                  ("DELETE FROM {t} WHERE id = 27", ()),
                  ("UPDATE {t} SET v = 'early' WHERE id = 1", ())])
    run(server, db, PK_RENAME)
    assert_like_alter(conn, PK_RENAME)
    conn.close()


def test_renamed_key_column_resumes(server: Dsn, db: str) -> None:
    conn = connect(server, db)
    make(conn, "id INT PRIMARY KEY, v VARCHAR(20) NOT NULL",
         [(i, f"v{i}") for i in range(1, 60)])
    args = migrate_command(server, db, PK_RENAME, "--chunk-size", "5", "--chunk-size-max",
                           "5")
    crashed = subprocess.run(args, env=cli_env(server, "after_chunk:3"), capture_output=True,
                             text=True, timeout=120)
    assert crashed.returncode == 137, crashed.stderr[-2000:]
    both(conn, "UPDATE {t} SET v = 'while down' WHERE id IN (2, 50)")
    both(conn, "INSERT INTO {t} VALUES (500, 'new')")
    writer(conn, [("UPDATE {t} SET v = 'resumed' WHERE id = 55", ())])
    run(server, db, PK_RENAME, resume=True)
    assert_like_alter(conn, PK_RENAME)
    conn.close()


def test_repair_writes_converted_values_in_place(server: Dsn, db: str) -> None:
    """The checksum repair updates rows in place (a join UPDATE naming both tables): the
    converted and filled columns must read the source's columns there too."""
    conn = connect(server, db)
    make(conn, "id INT PRIMARY KEY, f FLOAT NOT NULL", [(i, 1.1 * i) for i in range(1, 20)])
    # A stale shadow row behind the applier's back: only the repair can fix it.
    writer(conn, [("UPDATE {t} SET f = f WHERE id = 1", ()),
                  ("UPDATE `_t_new` SET f = 'stale', z = 5 WHERE id = 2", ())])
    alter = "MODIFY f VARCHAR(30) NOT NULL, ADD COLUMN z INT NOT NULL"
    migrate(MigrationConfig(dsn=server, database=db, table="t", alter=alter, repair=True,
                            tuning=TUNING))
    faults.clear()
    assert_like_alter(conn, alter)
    conn.close()


def test_checkpoint_holds_any_alter_text_and_key(server: Dsn, db: str) -> None:
    """The checkpoint keeps the ALTER's text and the watermark's key: in utf8mb4 whatever
    the database's default character set (latin1 here) is."""
    conn = connect(server, db)
    make(conn, "k VARCHAR(20) PRIMARY KEY, v INT NULL",
         [(f"\U0001F600 {i:02d}", i) for i in range(12)])
    alter = "COMMENT = 'parity \u2713 \U0001F600'"
    run(server, db, alter)
    assert_like_alter(conn, alter)
    conn.close()

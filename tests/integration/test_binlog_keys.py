"""The wire reader (keys straight off the socket) agrees with the server and with the
library's general decoder on real binlog events of every column type."""

from __future__ import annotations

import dataclasses
import random
import threading
import time
from collections.abc import Callable

import pymysql.connections
import pytest
from helpers import connect

from onlineddl.binlog import GONE, MOVED, UPSERT, Commit, Keys, TableShape, open_reader
from onlineddl.binlog.wire import WireReader
from onlineddl.config import Dsn
from onlineddl.db import Session
from onlineddl.flavor import BinlogPosition, MySQL, detect
from onlineddl.table import load_table

COLUMNS = """
  k {key} NOT NULL PRIMARY KEY,
  t TINYINT, su SMALLINT UNSIGNED, m MEDIUMINT, i INT, b BIGINT UNSIGNED,
  f FLOAT, d DOUBLE, dec1 DECIMAL(10,2), dec2 DECIMAL(65,30), dec3 DECIMAL(5,0),
  bit1 BIT(1), bit2 BIT(13), bit3 BIT(64),
  dt DATE, tm TIME, tm6 TIME(6), dtm DATETIME, dtm3 DATETIME(3), ts TIMESTAMP(6) NULL,
  y YEAR, c CHAR(3), c2 CHAR(200) CHARACTER SET utf8mb4, vc VARCHAR(20),
  vc2 VARCHAR(300) CHARACTER SET utf8mb4, bn BINARY(4), vb VARBINARY(500),
  tx TEXT, mtx MEDIUMTEXT, bl BLOB, lb LONGBLOB, e ENUM('a','b','c'),
  e2 ENUM({many_enum}), s SET('x','y','z'), s2 SET({many_set}), j JSON,
  g GEOMETRY NULL, p POINT NULL
"""


def values(rng: random.Random) -> list[object]:
    def maybe(v: object) -> object:
        return None if rng.random() < 0.2 else v
    return [maybe(rng.randint(-128, 127)), maybe(rng.randint(0, 65535)),
            maybe(rng.randint(-8388608, 8388607)), maybe(rng.randint(-2**31, 2**31 - 1)),
            maybe(rng.randint(0, 2**64 - 1)), maybe(rng.random()), maybe(rng.random() * 1e300),
            maybe("12345678.91"), maybe("-1." + "9" * 30), maybe(rng.randint(-99999, 99999)),
            maybe(rng.randint(0, 1)), maybe(rng.randint(0, 8191)), maybe(2**64 - 1),
            maybe("2024-02-29"), maybe("-838:59:59"), maybe("12:34:56.789012"),
            maybe("9999-12-31 23:59:59"), maybe("2000-01-01 00:00:00.123"),
            maybe("2030-01-01 00:00:00.5"), maybe(rng.randint(1901, 2155)), maybe("ab"),
            maybe("\U0001F600" * rng.randint(0, 200)), maybe("x" * rng.randint(0, 20)),
            maybe("\u00e9" * rng.randint(0, 300)), maybe(b"\x00\xff"),
            maybe(rng.randbytes(rng.randint(0, 500))), maybe("t" * rng.randint(0, 70000 // 4)),
            maybe("m" * rng.randint(0, 300)), maybe(rng.randbytes(rng.randint(0, 300))),
            maybe(rng.randbytes(rng.randint(0, 300))), maybe(rng.choice("abc")),
            maybe(f"v{rng.randint(0, 299)}"), maybe(rng.choice(["", "x", "x,z", "x,y,z"])),
            maybe(f"s{rng.randint(0, 30)}"), maybe('{"a": [1, 2, {"b": "\u00e9"}]}')]


KEYS: dict[str, tuple[Callable[[int], object], str]] = {
    # key type -> (value of row n, SQL that moves a key)
    "INT": (lambda n: n, "k = k + 1000"),
    "BIGINT UNSIGNED": (lambda n: 2**64 - n, "k = k - 1000"),
    "TINYINT": (lambda n: n, "k = k - 100"),
    "MEDIUMINT": (lambda n: -n, "k = k - 1000"),
    "SMALLINT": (lambda n: n, "k = k + 1000"),
    "VARCHAR(40) CHARACTER SET utf8mb4": (lambda n: f"\u00e9-{n}-\U0001F600",
                                          "k = CONCAT(k, 'x')"),
    "CHAR(10) CHARACTER SET latin1": (lambda n: f"\u00e9{n}", "k = CONCAT(k, 'y')"),
    # bytes 0x81 and 0x9D, which cp1252 leaves undefined and MySQL's latin1 does not
    "VARCHAR(10) CHARACTER SET latin1": (lambda n: f"\x81{n}\x9d", "k = CONCAT(k, 'z')"),
    "BINARY(16)": (lambda n: n.to_bytes(2, "big") + b"\x00\xff", "k = REVERSE(k)"),
    "VARBINARY(20)": (lambda n: b"\xff\x00" + bytes([n]), "k = CONCAT(k, 0x00)"),
}


@pytest.mark.parametrize("key", list(KEYS))
def test_fast_reader_matches_general_decoder(server: Dsn, db: str, key: str) -> None:
    value, move = KEYS[key]
    conn = connect(server, db)
    enum = ", ".join(f"'v{i}'" for i in range(300))
    sets = ", ".join(f"'s{i}'" for i in range(31))
    with conn.cursor() as cur:
        cur.execute(f"CREATE TABLE t ({COLUMNS.format(key=key, many_enum=enum, many_set=sets)})")
    control = Session(server, name="test", database=db)
    flavor = detect(str(control.scalar("SELECT VERSION()")))
    start = flavor.current_position(control)
    rng = random.Random(7)
    cols = ["t", "su", "m", "i", "b", "f", "d", "dec1", "dec2", "dec3", "bit1", "bit2",
            "bit3", "dt", "tm", "tm6", "dtm", "dtm3", "ts", "y", "c", "c2", "vc", "vc2", "bn",
            "vb", "tx", "mtx", "bl", "lb", "e", "e2", "s", "s2", "j"]
    marks = ", ".join(["%s"] * (len(cols) + 1))
    with conn.cursor() as cur:
        for n in range(1, 80):
            cur.execute(f"INSERT INTO t (k, {', '.join(cols)}, g, p) VALUES ({marks}, "
                        "ST_GeomFromText('LINESTRING(0 0, 1 1)'), POINT(1, 2))",
                        [value(n), *values(rng)])
        cur.execute("SELECT k FROM t")
        inserted = {r[0] for r in cur.fetchall()}
        cur.execute("UPDATE t SET i = i + 1, vc = 'changed' WHERE t < 0")
        cur.execute(f"UPDATE t SET {move} WHERE su > 30000")
        cur.execute("SELECT k FROM t")
        moved = {r[0] for r in cur.fetchall()}
        cur.execute("DELETE FROM t WHERE m > 0")
    end = flavor.current_position(control)
    info = load_table(control, db, "t")
    fast = TableShape.of(info)
    assert fast.key_kinds is not None  # read by the wire reader
    got_fast = read_keys(server, flavor, fast, start, end)
    # The truth is the server's: every key inserted and every key after the move.
    assert {k[0] for k in got_fast} == inserted | moved
    assert len(moved - inserted) > 5
    if key in ("INT", "TINYINT", "MEDIUMINT", "SMALLINT", "VARCHAR(40) CHARACTER SET utf8mb4"):
        # Where the general decoder is right, both agree key for key. (It is wrong for
        # BIGINT UNSIGNED above 2**63, latin1 text and BINARY, which is why keys are
        # read by onlineddl's own reader.)
        slow = dataclasses.replace(fast, key_kinds=None)  # the library's reader
        assert got_fast == read_keys(server, flavor, slow, start, end)


def read_keys(server: Dsn, flavor: MySQL, shape: TableShape, start: BinlogPosition,
              end: BinlogPosition) -> list[tuple[object, ...]]:
    return [key for keys, _ in read_events(server, flavor, shape, start, end)
            for key in keys]


def table_at(server: Dsn, db: str, ddl: str) -> tuple[
        pymysql.connections.Connection, Session, MySQL, BinlogPosition]:
    """Create the table; (connection, control session, flavor, binlog position after)."""
    conn = connect(server, db)
    with conn.cursor() as cur:
        cur.execute(ddl)
    control = Session(server, name="test", database=db)
    flavor = detect(str(control.scalar("SELECT VERSION()")))
    return conn, control, flavor, flavor.current_position(control)


def test_wire_reader_joins_events_larger_than_one_packet(server: Dsn, db: str) -> None:
    """A row image over 16 MB arrives as several protocol packets."""
    conn, control, flavor, start = table_at(
        server, db, "CREATE TABLE t (id INT PRIMARY KEY, b LONGBLOB, n INT)")
    with conn.cursor() as cur:
        cur.execute("INSERT INTO t VALUES (1, %s, 1)", (b"x" * (17 << 20),))
        cur.execute("INSERT INTO t VALUES (2, 'small', 2), (3, 'small', 3)")
        cur.execute("UPDATE t SET n = n + 1 WHERE id = 1")
        cur.execute("DELETE FROM t WHERE id = 2")
    end = flavor.current_position(control)
    shape = TableShape.of(load_table(control, db, "t"))
    assert shape.key_kinds is not None
    assert read_keys(server, flavor, shape, start, end) == [(1,), (2,), (3,), (1,), (2,)]


def test_wire_reader_kinds_tell_the_flush_what_each_change_did(server: Dsn, db: str) -> None:
    conn, control, flavor, start = table_at(server, db,
                                            "CREATE TABLE t (id INT PRIMARY KEY, n INT)")
    with conn.cursor() as cur:
        cur.execute("INSERT INTO t VALUES (1, 1), (2, 2)")
        cur.execute("UPDATE t SET n = 5 WHERE id = 1")
        cur.execute("UPDATE t SET id = 7 WHERE id = 2")
        cur.execute("DELETE FROM t WHERE id = 1")
    end = flavor.current_position(control)
    shape = TableShape.of(load_table(control, db, "t"))
    for kinds in (shape.key_kinds, None):  # the wire reader, then the library's
        events = read_events(server, flavor, dataclasses.replace(shape, key_kinds=kinds),
                             start, end)
        assert events == [([(1,), (2,)], UPSERT), ([(1,)], UPSERT), ([(2,), (7,)], MOVED),
                          ([(1,)], GONE)]


def test_wire_reader_follows_a_binlog_rotation_and_resumes_from_its_commits(
        server: Dsn, db: str) -> None:
    conn, control, flavor, start = table_at(server, db,
                                            "CREATE TABLE t (id INT PRIMARY KEY, n INT)")
    with conn.cursor() as cur:
        cur.execute("INSERT INTO t VALUES (1, 1)")
        middle = flavor.current_position(control)
        cur.execute("FLUSH BINARY LOGS")
        cur.execute("INSERT INTO t VALUES (2, 2)")
    end = flavor.current_position(control)
    assert end.file != start.file
    shape = TableShape.of(load_table(control, db, "t"))
    assert read_keys(server, flavor, shape, start, end) == [(1,), (2,)]
    assert read_keys(server, flavor, shape, middle, end) == [(2,)]


def test_polls_reach_the_head_across_rotations_and_read_each_change_once(
        server: Dsn, db: str) -> None:
    """Each poll is a new dump from where the last ended; a waiter's wake starts one at
    once (the interval here is far longer than the test). After FLUSH BINARY LOGS with
    nothing written since, the head is in the new file: an EOF must report it."""
    conn, control, flavor, start = table_at(server, db,
                                            "CREATE TABLE t (id INT PRIMARY KEY, n INT)")
    shape = TableShape.of(load_table(control, db, "t"))
    reader = open_reader(server, flavor, shape, start, random.randint(1 << 30, 1 << 31))
    assert isinstance(reader, WireReader)
    reader.poll_interval = 600
    items: list[object] = []
    failed: list[BaseException] = []
    stop = threading.Event()

    def read() -> None:
        try:
            for item in reader.items(stop):
                items.append(item)
        except BaseException as exc:  # shown by reach() instead of a bare timeout
            failed.append(exc)

    def reach(head: BinlogPosition) -> None:
        deadline = time.monotonic() + 20
        while not any(isinstance(i, Commit) and i.position.reached(head) for i in items[-3:]):
            assert not failed, f"the reader stopped: {failed[0]!r}"
            assert time.monotonic() < deadline, f"no poll reached {head}"
            reader.wake()
            time.sleep(0.01)

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    try:
        with conn.cursor() as cur:
            for n in range(1, 7):
                cur.execute("INSERT INTO t VALUES (%s, 0)", (n,))
                reach(flavor.current_position(control))
                if n % 2:
                    cur.execute("FLUSH BINARY LOGS")
                    reach(flavor.current_position(control))
        head = flavor.current_position(control)
    finally:
        stop.set()
        reader.wake()
        thread.join(timeout=10)
        reader.close()
    assert not failed, f"the reader stopped: {failed[0]!r}"
    assert [k for i in items if isinstance(i, Keys) for k in i.keys] == [(n,) for n in range(1, 7)]
    # Polls after the first go by file and position; GTIDs must still be followed (a
    # resume on MariaDB starts from the GTID state).
    last = [i for i in items if isinstance(i, Commit)][-1]
    assert last.position.gtid == head.gtid


def read_events(server: Dsn, flavor: MySQL, shape: TableShape, start: BinlogPosition,
                end: BinlogPosition) -> list[tuple[list[tuple[object, ...]], int]]:
    """Each row event's keys and kind, from `start` to the commit reaching `end`."""
    reader = open_reader(server, flavor, shape, start, random.randint(1 << 30, 1 << 31))
    events: list[tuple[list[tuple[object, ...]], int]] = []
    try:
        for item in reader.items(threading.Event()):
            if isinstance(item, Keys):
                events.append((list(item.keys), item.kind))
            elif isinstance(item, Commit) and item.position.reached(end):
                return events
    finally:
        reader.close()
    return events

"""A new UNIQUE key must never make a flush delete a row.

The table has no UNIQUE key on `email`; the ALTER adds one. While the run goes on, an
application writes a row whose email another row already holds. A plain ALTER would fail
on that; a flush that wrote the row with REPLACE would silently delete the other row. At
every moment up to the swap (copy, postponed cutover, the cutover's drain under the write
block) the run must stop with UniqueViolation (exit 10) naming the key and the value,
leaving T exactly as the application wrote it. Values legitimately moving between rows
(swaps, moves, under concurrent writers) must still migrate exactly. Repair is off.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeAlias

import pymysql.connections
import pytest
from helpers import Cursor, connect, scalar, tables
from workload import Op, Writers, assert_same_rows, q

from onlineddl import faults
from onlineddl.applier import FlushTarget, sync_keys
from onlineddl.config import Dsn, MigrationConfig, Tuning
from onlineddl.db import Session
from onlineddl.errors import UniqueViolation
from onlineddl.migration import Migration, migrate
from onlineddl.progress import Phase
from onlineddl.table import ColumnMapping, load_table
from onlineddl.uniques import unique_checks

Conn: TypeAlias = pymysql.connections.Connection
TUNING = Tuning(chunk_rows_initial=50, chunk_rows_min=10, chunk_rows_max=60,
                checkpoint_interval=0.5, cutover_lock_timeout=10)
DDL = ("CREATE TABLE {t} (id INT NOT NULL PRIMARY KEY, "
       "email VARCHAR(64) CHARACTER SET utf8mb4 COLLATE {collation} NULL, "
       "v INT NOT NULL DEFAULT 0) ENGINE=InnoDB")
ADD_UNIQUE = "ADD UNIQUE KEY uq_email (email)"
IDS = range(10, 6010, 10)          # gaps: a new row can land in a part already copied


def email(i: int) -> str:
    return f"u{i}@x"


def make_table(conn: Conn, collation: str = "utf8mb4_general_ci",
               names: tuple[str, ...] = ("t",)) -> None:
    with conn.cursor() as cur:
        for name in names:
            cur.execute(DDL.format(t=q(name), collation=collation))
            # Two NULL emails: rows with a NULL never collide under a UNIQUE key.
            cur.executemany(f"INSERT INTO {q(name)} (id, email, v) VALUES (%s, %s, %s)",
                            [(i, None if i in (30, 40) else email(i), i) for i in IDS])


def config(server: Dsn, db: str, alter: str = ADD_UNIQUE, **kw: Any) -> MigrationConfig:
    return MigrationConfig(dsn=server, database=db, table="t", alter=alter, repair=False,
                           tuning=kw.pop("tuning", TUNING), **kw)


def table_state(conn: Conn) -> tuple[str, list[tuple[Any, ...]]]:
    with conn.cursor() as cur:
        cur.execute("SHOW CREATE TABLE t")
        create = cur.fetchone()[1]
        cur.execute("SELECT id, email, v FROM t ORDER BY id")
        return create, list(cur.fetchall())


def assert_stopped(err: BaseException, conn: Conn, expected: tuple[str, list[Any]],
                   value: str) -> None:
    """UniqueViolation naming the key and the value, with what to do; T is the original
    table (no UNIQUE key) holding every row the application wrote; nothing left behind."""
    assert isinstance(err, UniqueViolation), f"{type(err).__name__}: {err}"
    assert err.exit_code == 10
    assert "uq_email" in err.message and value in err.message, err.message
    assert "run the migration again" in err.hint, err.hint
    assert table_state(conn) == expected
    assert "UNIQUE" not in expected[0]
    assert tables(conn) <= {"t", "mirror"}, "the run left artifacts behind"


class Run:
    """A migration in a background thread."""

    def __init__(self, cfg: MigrationConfig) -> None:
        self.migration = Migration(cfg)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.migration.run()
        except BaseException as exc:  # handed to the test thread by error_after()
            self.error = exc

    def wait(self, what: str, done: Callable[[], bool], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            assert self.thread.is_alive() or done(), f"the run ended before {what}: " \
                f"{self.error!r}"
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.01)

    def outcome(self, timeout: float = 120) -> BaseException | None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the run did not finish in time"
        return self.error


def watch_checksum() -> dict[str, int]:
    """Counts checksum chunks: a duplicate written during the copy must stop the run
    before the checksum (which would only find it after a flush deleted a row)."""
    seen = {"chunks": 0}

    def chunk() -> None:
        seen["chunks"] += 1

    faults.register("checksum_chunk", chunk)
    return seen


# --- the case that was seen: a duplicate while the cutover is postponed -----------------------


def test_duplicate_while_postponed_stops_the_run(server: Dsn, db: str,
                                                 tmp_path: Path) -> None:
    conn = connect(server, db)
    make_table(conn)
    flag = tmp_path / "postpone"
    flag.touch()
    run = Run(config(server, db, postpone_flag_file=str(flag)))
    run.wait("the postponed cutover", lambda: run.migration.phase == Phase.POSTPONED)
    with conn.cursor() as cur:
        cur.execute("INSERT INTO t (id, email, v) VALUES (7001, %s, 1)", (email(20),))
    expected = table_state(conn)

    def flushed_or_stopped() -> bool:
        # Before the fix the flush wrote row 7001 (deleting row 20); now it stops the run.
        try:
            return bool(scalar(conn, "SELECT COUNT(*) FROM _t_new WHERE id = 7001"))
        except pymysql.err.ProgrammingError:   # the stopped run removed _t_new
            return not run.thread.is_alive()

    run.wait("the duplicate's flush", flushed_or_stopped)
    flag.unlink()
    err = run.outcome()
    assert err is not None, "the run passed with a duplicate under the new UNIQUE key"
    assert_stopped(err, conn, expected, email(20))
    assert isinstance(err, UniqueViolation)
    assert "7001" in err.message and "20" in err.message


# --- duplicates written during the copy --------------------------------------------------------


def stopped_by_a_write_during_the_copy(server: Dsn, db: str, conn: Conn, statement: str,
                                       params: tuple[object, ...] = (),
                                       alter: str = ""
                                       ) -> tuple[UniqueViolation, Any]:
    """Commit `statement` after the third chunk; the run must stop with UniqueViolation
    during the copy, before the checksum (not found only by the checksum after a flush
    deleted a row). Returns the error and the table's state afterwards."""
    calls = {"n": 0}

    def at_chunk() -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            with conn.cursor() as cur:
                cur.execute(statement, params)

    faults.register("after_chunk", at_chunk)
    seen = watch_checksum()
    with pytest.raises(UniqueViolation) as info:
        migrate(config(server, db, alter or ADD_UNIQUE))
    faults.clear()
    assert seen["chunks"] == 0, "found only by the checksum, after a flush deleted a row"
    return info.value, table_state(conn)


def test_duplicate_inserted_into_the_copied_part(server: Dsn, db: str) -> None:
    """id 15 lies between copied rows; its email is that of row 20, also copied."""
    conn = connect(server, db)
    make_table(conn)
    err, expected = stopped_by_a_write_during_the_copy(
        server, db, conn, "INSERT INTO t (id, email, v) VALUES (15, %s, 1)", (email(20),))
    assert_stopped(err, conn, expected, email(20))
    assert len(expected[1]) == len(IDS) + 1


def test_two_new_rows_with_one_value_in_one_transaction(server: Dsn, db: str) -> None:
    """Both rows are new to the shadow and flushed in one batch: no row of the shadow
    holds the value yet, the batch itself does, twice."""
    conn = connect(server, db)
    make_table(conn)
    err, expected = stopped_by_a_write_during_the_copy(
        server, db, conn, "INSERT INTO t (id, email, v) VALUES (15, 'new@x', 1), "
                          "(25, 'new@x', 2)")
    assert_stopped(err, conn, expected, "new@x")
    assert "15" in err.message and "25" in err.message, err.message


def test_duplicate_updated_into_the_copied_part_for_a_later_row(server: Dsn, db: str) -> None:
    """An update of copied row 20 takes the email of row 3000, not copied yet: the copier
    meets the duplicate when it reaches row 3000."""
    conn = connect(server, db)
    make_table(conn)
    err, expected = stopped_by_a_write_during_the_copy(
        server, db, conn, "UPDATE t SET email = %s WHERE id = 20", (email(3000),))
    assert_stopped(err, conn, expected, email(3000))


def test_duplicate_inserted_into_the_part_not_yet_copied(server: Dsn, db: str) -> None:
    """id 5995 is far above the copier; its email is that of row 20, already copied."""
    conn = connect(server, db)
    make_table(conn)
    err, expected = stopped_by_a_write_during_the_copy(
        server, db, conn, "INSERT INTO t (id, email, v) VALUES (5995, %s, 1)", (email(20),))
    assert_stopped(err, conn, expected, email(20))


def test_case_insensitive_duplicate(server: Dsn, db: str) -> None:
    """T compares emails byte for byte; the ALTER makes them case-insensitive and unique.
    'U20@X' written into the copied part duplicates 'u20@x' under the new key."""
    conn = connect(server, db)
    make_table(conn, collation="utf8mb4_bin")
    alter = ("MODIFY email VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci NULL, "
             + ADD_UNIQUE)
    err, expected = stopped_by_a_write_during_the_copy(
        server, db, conn, "UPDATE t SET email = 'U20@X' WHERE id = 10", alter=alter)
    assert_stopped(err, conn, expected, "@x")
    assert "U20@X" in err.message or "u20@x" in err.message


# --- a duplicate committed inside the cutover's drain window -----------------------------------


def test_duplicate_drained_by_the_cutover_stops_before_the_swap(server: Dsn, db: str,
                                                                  tmp_path: Path) -> None:
    """An application transaction inserts the duplicate and stays open while the cutover
    asks for its write block (which waits for it); it commits once the block is queued,
    so the insert is applied by the cutover's own drain, with writes blocked."""
    conn = connect(server, db)
    make_table(conn)
    flag = tmp_path / "postpone"
    flag.touch()
    run = Run(config(server, db, postpone_flag_file=str(flag)))
    run.wait("the postponed cutover", lambda: run.migration.phase == Phase.POSTPONED)
    app = connect(server, db, autocommit=False)
    try:
        with app.cursor() as cur:
            cur.execute("INSERT INTO t (id, email, v) VALUES (7001, %s, 1)", (email(20),))
        flag.unlink()

        def lock_queued() -> bool:
            return bool(scalar(conn, "SELECT COUNT(*) FROM information_schema.PROCESSLIST "
                                     "WHERE INFO LIKE 'LOCK TABLES%' "
                                     "AND STATE LIKE '%metadata lock%'"))

        run.wait("the cutover's write block", lock_queued)
        app.commit()
    finally:
        app.close()
    err = run.outcome()
    assert err is not None, "the run swapped in a table that lost a row"
    with conn.cursor() as cur:
        cur.execute("SELECT id, email, v FROM t ORDER BY id")
        rows = list(cur.fetchall())
    assert len(rows) == len(IDS) + 1 and (7001, email(20), 1) in rows
    assert_stopped(err, conn, table_state(conn), email(20))


# --- the guard itself, as the checksum repair calls it ----------------------------------------


def test_sync_keys_never_deletes_a_real_holder_and_removes_a_stale_one(server: Dsn,
                                                                      db: str) -> None:
    """sync_keys as checksum repair and the flusher call it, on prepared tables: a row of
    another key that still holds the value stops the write (nothing changes); one whose
    source row moved on is stale and makes way."""
    conn = connect(server, db)
    with conn.cursor() as cur:
        cur.execute(DDL.format(t="t", collation="utf8mb4_general_ci"))
        cur.execute(DDL.format(t="_t_new", collation="utf8mb4_general_ci"))
        cur.execute(f"ALTER TABLE _t_new {ADD_UNIQUE}")
        cur.execute("INSERT INTO t VALUES (1, 'a@x', 1), (2, 'A@X', 2), (3, 'c@x', 3)")
        cur.execute("INSERT INTO _t_new VALUES (2, 'a@x', 2), (3, 'b@x', 3)")
    session = Session(server, name="test", isolation="REPEATABLE READ")
    try:
        mapping = ColumnMapping(("id", "email", "v"), ("id", "email", "v"), (), (), ())
        checks = unique_checks(session, load_table(session, db, "t"),
                               load_table(session, db, "_t_new"), mapping)
        target = FlushTarget(db, "t", "_t_new", ("`id`", "`email`", "`v`"),
                             ("id", "email", "v"), ("id",), other_unique=True,
                             integer_key=True, unique_checks=checks)
        assert target.guarded
        before = select_all(conn, "_t_new")
        with pytest.raises(UniqueViolation) as info:   # row 2 still holds 'A@X' in t
            sync_keys(session, target, [(1,)], atomic=True, in_place=True)
        assert "uq_email" in info.value.message and "2" in info.value.message
        assert select_all(conn, "_t_new") == before
        with conn.cursor() as cur:                     # row 2 moves on: now it is stale
            cur.execute("UPDATE t SET email = 'z@x' WHERE id = 2")
        sync_keys(session, target, [(1,)], atomic=True, in_place=True)
        assert select_all(conn, "_t_new") == [(1, "a@x", 1), (3, "b@x", 3)]
    finally:
        session.close()


def test_sync_keys_stops_rather_than_guess_on_a_key_it_cannot_compare(server: Dsn,
                                                                       db: str) -> None:
    """A DOUBLE key: its values do not round-trip exactly, so even a stale holder (row 2
    moved on in t) is not proven stale. The write stops; nothing is deleted."""
    conn = connect(server, db)
    with conn.cursor() as cur:
        for name in ("t", "_t_new"):
            cur.execute(f"CREATE TABLE {name} (id INT PRIMARY KEY, r DOUBLE NULL)")
        cur.execute("ALTER TABLE _t_new ADD UNIQUE KEY uq_r (r)")
        cur.execute("INSERT INTO t VALUES (1, 0.1), (2, 0.7)")
        cur.execute("INSERT INTO _t_new VALUES (2, 0.1)")
    session = Session(server, name="test", isolation="REPEATABLE READ")
    try:
        mapping = ColumnMapping(("id", "r"), ("id", "r"), (), (), ())
        checks = unique_checks(session, load_table(session, db, "t"),
                               load_table(session, db, "_t_new"), mapping)
        assert [(c.enforced, c.exact) for c in checks] == [(False, False)]
        target = FlushTarget(db, "t", "_t_new", ("`id`", "`r`"), ("id", "r"), ("id",),
                             other_unique=True, integer_key=True, unique_checks=checks)
        with pytest.raises(UniqueViolation) as info:
            sync_keys(session, target, [(1,)], atomic=True, in_place=True)
        assert "cannot tell" in info.value.message and "uq_r" in info.value.message
        with conn.cursor() as cur:
            cur.execute("SELECT id, r FROM _t_new")
            assert cur.fetchall() == ((2, 0.1),)
    finally:
        session.close()


def select_all(conn: Conn, table: str) -> list[tuple[Any, ...]]:
    with conn.cursor() as cur:
        cur.execute(f"SELECT id, email, v FROM {q(table)} ORDER BY id")
        return list(cur.fetchall())


# --- values moving between rows, under concurrent writers, must still migrate --------------------


@dataclasses.dataclass
class EmailModel:
    """Writers that keep `email` unique themselves (T does not enforce it): fresh values,
    swaps of two rows' values, moves of a value from one row to another, rotations."""

    ids: list[int]

    def ops(self) -> list[Op]:
        return [self.swap, self.swap, self.move, self.move, self.rotate, self.fresh,
                self.insert, self.delete, self.touch]

    def _pick(self, cur: Cursor, rng: random.Random, table: str, n: int) -> list[tuple[int, Any]]:
        ids = sorted(rng.sample(self.ids, n))
        marks = ", ".join(["%s"] * n)
        cur.execute(f"SELECT id, email FROM {q(table)} WHERE id IN ({marks}) ORDER BY id "
                    "FOR UPDATE", ids)
        rows = list(cur.fetchall())
        rng.shuffle(rows)
        return rows

    def _set(self, cur: Cursor, table: str, plan: list[tuple[int, Any]]
             ) -> list[tuple[str, list[Any]]]:
        stmts = []
        for row_id, value in plan:
            stmt = "UPDATE {t} SET email = %s WHERE id = %s"
            cur.execute(stmt.format(t=q(table)), [value, row_id])
            stmts.append((stmt.replace("{t}", "{m}"), [value, row_id]))
        return stmts

    def swap(self, cur: Cursor, rng: random.Random, table: str) -> list[tuple[str, list[Any]]]:
        rows = self._pick(cur, rng, table, 2)
        if len(rows) < 2:
            return []
        (a, va), (b, vb) = rows
        return self._set(cur, table, [(a, None), (b, va), (a, vb)])

    def move(self, cur: Cursor, rng: random.Random, table: str) -> list[tuple[str, list[Any]]]:
        """Row A gives its value to row B and takes a fresh one."""
        rows = self._pick(cur, rng, table, 2)
        if len(rows) < 2:
            return []
        (a, va), (b, _) = rows
        return self._set(cur, table, [(a, fresh()), (b, va)])

    def rotate(self, cur: Cursor, rng: random.Random, table: str) -> list[tuple[str, list[Any]]]:
        rows = self._pick(cur, rng, table, 3)
        if len(rows) < 3:
            return []
        values = [v for _, v in rows]
        plan = [(i, None) for i, _ in rows]
        plan += [(i, values[(n + 1) % 3]) for n, (i, _) in enumerate(rows)]
        return self._set(cur, table, plan)

    def fresh(self, cur: Cursor, rng: random.Random, table: str) -> list[tuple[str, list[Any]]]:
        rows = self._pick(cur, rng, table, 1)
        return self._set(cur, table, [(rows[0][0], fresh())]) if rows else []

    def touch(self, cur: Cursor, rng: random.Random, table: str) -> list[tuple[str, list[Any]]]:
        stmt = "UPDATE {t} SET v = v + 1 WHERE id = %s"
        params = [rng.choice(self.ids)]
        cur.execute(stmt.format(t=q(table)), params)
        return [(stmt.replace("{t}", "{m}"), params)]

    def insert(self, cur: Cursor, rng: random.Random, table: str) -> list[tuple[str, list[Any]]]:
        stmt = "INSERT INTO {t} (id, email, v) VALUES (%s, %s, %s)"
        params = [rng.randrange(6010, 9000), fresh(), 1]
        cur.execute(stmt.format(t=q(table)), params)
        return [(stmt.replace("{t}", "{m}"), params)]

    def delete(self, cur: Cursor, rng: random.Random, table: str) -> list[tuple[str, list[Any]]]:
        stmt = "DELETE FROM {t} WHERE id = %s"
        params = [rng.choice(self.ids)]
        cur.execute(stmt.format(t=q(table)), params)
        return [(stmt.replace("{t}", "{m}"), params)]


def fresh() -> str:
    return f"f{uuid.uuid4().hex[:16]}@x"


def test_values_moving_between_rows_still_migrate(server: Dsn, db: str,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    conn = connect(server, db)
    make_table(conn, names=("t", "mirror"))
    model = EmailModel(list(IDS))
    writers = Writers(server, db, "t", "mirror", model, threads=3)
    writers.burst_at("after_chunk", 20)
    caplog.set_level(logging.DEBUG, logger="onlineddl.applier")
    writers.start()
    try:
        migrate(config(server, db))
        writers.burst(30, seed=4242)   # after the swap: T enforces the key itself
    finally:
        writers.stop()
    assert not writers.errors, writers.errors[:5]
    assert writers.committed > 300
    assert_same_rows(conn, "t", "mirror", ["id", "email", "v"], ["id"])
    assert "UNIQUE KEY `uq_email`" in table_state(conn)[0]
    assert "stale holder" in caplog.text, "no value moved onto a row the shadow still had"


# --- which keys need the guard ---------------------------------------------------------------

BASE = ("CREATE TABLE {t} (id INT NOT NULL PRIMARY KEY, "
        "email VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL, "
        "code VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL, "
        "ratio DOUBLE NULL, n INT NULL, UNIQUE KEY uq_code (code), UNIQUE KEY uq_pre "
        "(email(8), n)) ENGINE=InnoDB")


@pytest.mark.parametrize("alter, name, enforced, exact", [
    ("ADD COLUMN c INT NULL", "uq_code", True, True),                  # kept as it was
    ("ADD UNIQUE KEY k (id, ratio)", "k", True, False),                # over the primary key
    ("ADD UNIQUE KEY k (code, n)", "k", True, True),                   # over uq_code
    ("ADD UNIQUE KEY k (email, n)", "k", True, True),                  # over uq_pre's prefix
    ("ADD UNIQUE KEY k (email(4), n)", "k", False, True),              # a shorter prefix
    ("ADD UNIQUE KEY k (email)", "k", False, True),
    ("MODIFY code VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci NULL",
     "uq_code", False, True),                                          # 'a' = 'A' now
    ("MODIFY code VARCHAR(80) CHARACTER SET latin1 NULL", "uq_code", False, True),
    ("MODIFY code VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL",
     "uq_code", True, True),
    ("MODIFY n BIGINT NULL", "uq_pre", False, True),
    ("ADD UNIQUE KEY k (ratio)", "k", False, False),                  # DOUBLE: no round trip
    ("ADD COLUMN c INT NULL, ADD UNIQUE KEY k (c)", "k", False, False),  # not from the source
])
def test_which_unique_keys_need_the_guard(server: Dsn, db: str, alter: str, name: str,
                                          enforced: bool, exact: bool) -> None:
    conn = connect(server, db)
    with conn.cursor() as cur:
        cur.execute(BASE.format(t="t"))
        cur.execute("CREATE TABLE _t_new LIKE t")
        cur.execute(f"ALTER TABLE _t_new {alter}")
    session = Session(server, name="test")
    try:
        source, shadow = load_table(session, db, "t"), load_table(session, db, "_t_new")
        kept = [c.name for c in source.columns if shadow.has_column(c.name)]
        mapping = ColumnMapping(tuple(kept), tuple(kept), (), (), ())
        checks = {c.name: c for c in unique_checks(session, source, shadow, mapping)}
    finally:
        session.close()
    assert (checks[name].enforced, checks[name].exact) == (enforced, exact), checks[name]
    assert "PRIMARY" not in checks


LOOSE = "VARCHAR(16) CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci NOT NULL"
STRICT = "VARCHAR(16) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL"


def make_keyed_table(conn: Conn, rows: str) -> tuple[str, list[tuple[Any, ...]]]:
    with conn.cursor() as cur:
        cur.execute(f"CREATE TABLE t (k {STRICT} PRIMARY KEY, v INT NOT NULL)")
        cur.execute(f"INSERT INTO t (k, v) VALUES {rows}")
        cur.execute("SHOW CREATE TABLE t")
        shape = str(cur.fetchone()[1])
    return shape, keyed_rows(conn)


def keyed_rows(conn: Conn) -> list[tuple[Any, ...]]:
    with conn.cursor() as cur:
        cur.execute("SELECT k, v FROM t ORDER BY k COLLATE utf8mb4_bin")
        return list(cur.fetchall())


def test_an_alter_that_makes_the_walked_key_looser_fails_on_rows_it_merges(
        server: Dsn, db: str) -> None:
    """The ALTER makes the run's own key compare more loosely and t already holds 'b'
    and 'B': a plain ALTER fails (duplicate entry). The copier's INSERT IGNORE skips one
    of the two, so the copy checks the run's key as it checks a new UNIQUE key: exit 10
    naming the key, t unchanged (without that check the checksum stopped the run with
    exit 7 and a hint blaming onlineddl)."""
    conn = connect(server, db)
    before = make_keyed_table(conn, "('a', 1), ('b', 2), ('B', 3), ('c', 4)")
    with pytest.raises(UniqueViolation, match="PRIMARY KEY \\(k\\)"):
        migrate(MigrationConfig(dsn=server, database=db, table="t", alter=f"MODIFY k {LOOSE}",
                                repair=False, tuning=TUNING))
    with conn.cursor() as cur:
        cur.execute("SHOW CREATE TABLE t")
        assert (str(cur.fetchone()[1]), keyed_rows(conn)) == before
    assert tables(conn) == {"t"}
    conn.close()


def test_a_looser_walked_key_stops_on_a_row_it_merges_written_later(server: Dsn,
                                                                    db: str) -> None:
    """The same ALTER, and a row written after the checksum ('B' beside 'b') is one key
    in the new table: a plain ALTER would fail on it, so does the run (exit 10, t as the
    application left it); without the flush's key check REPLACE overwrote 'b' and the
    run exited 0."""
    conn = connect(server, db)
    shape = make_keyed_table(conn, "('a', 1), ('b', 2), ('c', 3)")[0]

    def insert() -> None:
        with conn.cursor() as cur:
            cur.execute("INSERT INTO t (k, v) VALUES ('B', 4)")

    faults.register("after_checksum", insert)
    try:
        with pytest.raises(UniqueViolation, match="'B', 'b'"):
            migrate(MigrationConfig(dsn=server, database=db, table="t",
                                    alter=f"MODIFY k {LOOSE}", repair=False, tuning=TUNING))
    finally:
        faults.clear()
    with conn.cursor() as cur:
        cur.execute("SHOW CREATE TABLE t")
        assert str(cur.fetchone()[1]) == shape
    assert keyed_rows(conn) == [("B", 4), ("a", 1), ("b", 2), ("c", 3)]
    conn.close()

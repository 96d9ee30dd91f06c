"""Tables other tables reference (onlineddl/fkparents.py): T is the parent of `child`
(RESTRICT, the server's own constraint name) and of `child2` (ON DELETE CASCADE, a
user's name). Writers insert, update, re-key and delete T's rows and insert and delete
child rows; `mirror` is a parent with its own `mirror_child` / `mirror_child2` under the
same constraints, changed in the same transaction, so a write a constraint refuses on
T's side is never replayed and a cascade on T's side happens on the mirror's too.
Checksum repair is off.
"""

from __future__ import annotations

import dataclasses
import random
import subprocess
import threading
import time
import uuid
from typing import Any

import pymysql
import pytest
from helpers import Conn, Cursor, cli_env, connect, kept_tables, migrate_command, tables
from relations import references, run_config, show_create, snapshot, trigger_names, twin_database
from workload import Writers, assert_same_rows, q

from onlineddl import faults, fkparents
from onlineddl.config import Dsn, MigrationConfig, Tuning
from onlineddl.errors import (
    DataError,
    InvalidAlter,
    MissingPrivilege,
    TableChanged,
    UnsupportedTable,
)
from onlineddl.migration import Migration, migrate

pytestmark = pytest.mark.mariadb_only

ROWS = 300
CHILD_ROWS = 400
TUNING = Tuning(chunk_rows_initial=100, chunk_rows_min=50, chunk_rows_max=200,
                progress_interval=1.0, checkpoint_interval=0.5)
ALTER = "ADD COLUMN extra INT NOT NULL DEFAULT 5, ADD INDEX v_idx (v)"
# A constraint refused the write (1451, 1452), or the guard of an interrupted cutover
# did (1644: SIGNAL), or a killed run's re-pointed child did not find a new parent.
REFUSED = (1451, 1452, 1644)
CHILDREN = ("child", "child2")


def make_family(cur: Cursor, rows: int = ROWS) -> None:
    for parent, kid, kid2 in (("t", "child", "child2"),
                              ("mirror", "mirror_child", "mirror_child2")):
        cur.execute(f"CREATE TABLE {q(parent)} (id INT NOT NULL PRIMARY KEY, "
                    "v INT NOT NULL DEFAULT 0) ENGINE=InnoDB")
        cur.executemany(f"INSERT INTO {q(parent)} VALUES (%s, %s)",
                        [(i, i) for i in range(1, rows + 1)])
        cur.execute(f"CREATE TABLE {q(kid)} (id INT NOT NULL AUTO_INCREMENT PRIMARY KEY, "
                    "pid INT NULL, v INT NOT NULL DEFAULT 0, "
                    f"FOREIGN KEY (pid) REFERENCES {q(parent)} (id)) ENGINE=InnoDB")
        cur.execute(f"CREATE TABLE {q(kid2)} (id INT NOT NULL AUTO_INCREMENT PRIMARY KEY, "
                    "pid INT NULL, v INT NOT NULL DEFAULT 0, KEY by_pid (pid), "
                    f"CONSTRAINT {q(kid2 + '_cascade')} FOREIGN KEY (pid) REFERENCES "
                    f"{q(parent)} (id) ON DELETE CASCADE) ENGINE=InnoDB")
        data = [(i, (i * 7) % rows + 1 if i % 9 else None, i) for i in range(1, CHILD_ROWS)]
        for table in (kid, kid2):
            cur.executemany(f"INSERT INTO {q(table)} (id, pid, v) VALUES (%s, %s, %s)", data)


class ParentModel:
    """Random changes to T and its children, mirrored."""

    def __init__(self) -> None:
        self.refused = 0
        self.guarded = 0      # refused by the guard of an interrupted cutover

    def ops(self) -> list[Any]:
        return [self.add_parent, self.update_parent, self.rekey_parent, self.delete_parent,
                self.delete_parent, self.add_child, self.add_child2, self.delete_child]

    def _try(self, cur: Cursor, text: str, params: list[Any]) -> bool:
        try:
            cur.execute(text, params)
        except pymysql.err.MySQLError as exc:
            if exc.args[0] in REFUSED:
                if exc.args[0] == 1644:
                    assert fkparents.GUARD_MARK in str(exc.args[1]), exc
                    self.guarded += 1
                self.refused += 1
                return False
            raise
        return True

    def add_parent(self, cur: Cursor, rng: random.Random, table: str) -> list[Any]:
        params = [rng.randrange(1, ROWS + 60), rng.randrange(1000)]
        if not self._try(cur, f"INSERT IGNORE INTO {q(table)} (id, v) VALUES (%s, %s)", params):
            return []
        return [("INSERT IGNORE INTO {m} (id, v) VALUES (%s, %s)", params)] if cur.rowcount else []

    def update_parent(self, cur: Cursor, rng: random.Random, table: str) -> list[Any]:
        params = [rng.randrange(1, ROWS + 60)]
        if not self._try(cur, f"UPDATE {q(table)} SET v = v + 1 WHERE id = %s", params):
            return []
        return [("UPDATE {m} SET v = v + 1 WHERE id = %s", params)]

    def rekey_parent(self, cur: Cursor, rng: random.Random, table: str) -> list[Any]:
        params = [rng.randrange(ROWS + 60, ROWS + 120), rng.randrange(1, ROWS + 60)]
        if not self._try(cur, f"UPDATE IGNORE {q(table)} SET id = %s WHERE id = %s", params):
            return []
        return [("UPDATE IGNORE {m} SET id = %s WHERE id = %s", params)] if cur.rowcount \
            else []

    def delete_parent(self, cur: Cursor, rng: random.Random, table: str) -> list[Any]:
        params = [rng.randrange(1, ROWS + 120)]
        if not self._try(cur, f"DELETE FROM {q(table)} WHERE id = %s", params):
            return []
        return [("DELETE FROM {m} WHERE id = %s", params)]

    def _add(self, cur: Cursor, rng: random.Random, kid: str, mirror_kid: str
             ) -> list[Any]:
        values = [rng.choice([None, rng.randrange(1, ROWS + 120)]), rng.randrange(100)]
        if not self._try(cur, f"INSERT INTO {q(kid)} (pid, v) VALUES (%s, %s)", values):
            return []
        return [(f"INSERT INTO {q(mirror_kid)} (id, pid, v) VALUES (%s, %s, %s)",
                 [cur.lastrowid, *values])]

    def add_child(self, cur: Cursor, rng: random.Random, table: str) -> list[Any]:
        return self._add(cur, rng, "child", "mirror_child")

    def add_child2(self, cur: Cursor, rng: random.Random, table: str) -> list[Any]:
        return self._add(cur, rng, "child2", "mirror_child2")

    def delete_child(self, cur: Cursor, rng: random.Random, table: str) -> list[Any]:
        kid = rng.choice(CHILDREN)
        params = [rng.randrange(1, CHILD_ROWS + 200)]
        cur.execute(f"DELETE FROM {q(kid)} WHERE id = %s", params)
        return [(f"DELETE FROM {q('mirror_' + kid)} WHERE id = %s", params)]


def config(server: Dsn, db: str, alter: str = ALTER, **kw: Any) -> MigrationConfig:
    return run_config(server, db, alter, kw.pop("tuning", TUNING), **kw)


EXPECTED = [("child", "child_ibfk_1", "t", "RESTRICT"),
            ("child2", "child2_cascade", "t", "CASCADE"),
            ("mirror_child", "mirror_child_ibfk_1", "mirror", "RESTRICT"),
            ("mirror_child2", "mirror_child2_cascade", "mirror", "CASCADE")]


def assert_family_right(conn: Conn, children_before: dict[str, str]) -> None:
    assert_same_rows(conn, "t", "mirror", ["id", "v"], ["id"])
    for kid in CHILDREN:
        assert_same_rows(conn, kid, f"mirror_{kid}", ["id", "pid", "v"], ["id"])
        assert show_create(conn, kid) == children_before[kid]   # names, index, actions
    assert references(conn) == EXPECTED       # nothing references the old table
    assert trigger_names(conn) == []
    with conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM child c LEFT JOIN t p ON p.id = c.pid "
                    "WHERE c.pid IS NOT NULL AND p.id IS NULL")
        assert cur.fetchone()[0] == 0
        cur.execute("SELECT COUNT(*) FROM child2 c LEFT JOIN t p ON p.id = c.pid "
                    "WHERE c.pid IS NOT NULL AND p.id IS NULL")
        assert cur.fetchone()[0] == 0


def assert_constraints_work(conn: Conn) -> None:
    """After the run: T refuses deleting a parent of `child`, cascades to `child2`."""
    with conn.cursor() as cur:
        cur.execute("INSERT INTO t (id, v) VALUES (100000, 0), (100001, 0)")
        cur.execute("INSERT INTO child (pid) VALUES (100000)")
        cur.execute("INSERT INTO child2 (pid) VALUES (100001), (100001)")
        with pytest.raises(pymysql.err.IntegrityError):
            cur.execute("DELETE FROM t WHERE id = 100000")
        cur.execute("DELETE FROM t WHERE id = 100001")
        cur.execute("SELECT COUNT(*) FROM child2 WHERE pid = 100001")
        assert cur.fetchone()[0] == 0
        with pytest.raises(pymysql.err.IntegrityError):
            cur.execute("INSERT INTO child (pid) VALUES (100001)")


def children_shape(conn: Conn) -> dict[str, str]:
    return {kid: show_create(conn, kid) for kid in CHILDREN}


@pytest.mark.parametrize("alter", [
    ALTER,
    # A new primary key: the run walks the old one (kept UNIQUE), which the children's
    # constraints reference.
    "DROP PRIMARY KEY, ADD PRIMARY KEY (v, id), ADD UNIQUE KEY id_uq (id)",
], ids=["add-column", "new-primary-key"])
def test_parent_under_writers(server: Dsn, db: str, conn: Conn, alter: str) -> None:
    with conn.cursor() as cur:
        make_family(cur)
    before = children_shape(conn)
    model = ParentModel()
    writers = Writers(server, db, "t", "mirror", model, threads=3)
    bursts = writers.burst_at("after_chunk", 10)
    writers.start()
    try:
        result = migrate(config(server, db, alter))
        writers.wait_for_commits(30)       # after the swap, against the new T
    finally:
        writers.stop()
    assert not writers.errors, writers.errors[:5]
    assert len(bursts) >= 3
    assert_family_right(conn, before)
    assert_constraints_work(conn)
    assert kept_tables(conn) == {"t", "mirror", *CHILDREN, "mirror_child", "mirror_child2",
                                 "_t_old_*"}
    assert result.old_table.startswith("_t_old_")


@pytest.mark.parametrize("point", [
    "parents_guard_armed",     # the guard armed, no child re-pointed
    "parent_twin_added",       # the first child has its twin and its original
    "parent_twin_added:2",     # the first child re-pointed, the second half-way
    "children_repointed",      # every child references the shadow only
    "after_swap",              # swapped: the children's twins reference the new T
    "parent_original_added",   # swapped, the first child has both names
    "parents_renamed",         # names back, the old table's guards not yet dropped
])
def test_kill_and_resume(server: Dsn, db: str, conn: Conn, point: str) -> None:
    with conn.cursor() as cur:
        make_family(cur)
    before = children_shape(conn)
    model = ParentModel()
    writers = Writers(server, db, "t", "mirror", model, threads=2, pause=0.002)
    writers.start()
    try:
        args = migrate_command(server, db, ALTER, "--chunk-size", "100")
        crashed = subprocess.run(args, env=cli_env(server, point), capture_output=True,
                                 text=True, timeout=300)
        assert crashed.returncode == 137, crashed.stderr[-2000:]
        # In the crash window application writes go on: each works or fails loudly.
        writers.wait_for_commits(40)
        guarded = model.guarded
        migrate(config(server, db, resume=True))
        writers.wait_for_commits(20)
    finally:
        writers.stop()
    assert not writers.errors, writers.errors[:5]
    # Unswapped, the armed guard refused T's updates and deletes; swapped, it is on the
    # old table, which nobody writes.
    swapped = point in ("after_swap", "parent_original_added", "parents_renamed")
    assert (guarded == 0) == swapped, guarded
    assert_family_right(conn, before)
    assert_constraints_work(conn)
    assert "_t_fkgd" not in tables(conn)


def test_killed_while_repointed_then_cleanup_undoes_it(server: Dsn, db: str,
                                                       conn: Conn) -> None:
    from onlineddl.commands import cleanup
    with conn.cursor() as cur:
        make_family(cur, rows=50)
    before = children_shape(conn)
    args = migrate_command(server, db, ALTER)
    crashed = subprocess.run(args, env=cli_env(server, "children_repointed"),
                             capture_output=True, text=True, timeout=300)
    assert crashed.returncode == 137, crashed.stderr[-2000:]
    with conn.cursor() as cur:   # the guard refuses what could orphan a child
        with pytest.raises(pymysql.err.OperationalError, match="--resume"):
            cur.execute("DELETE FROM t WHERE id = 1")
        cur.execute("INSERT INTO t (id, v) VALUES (5000, 1)")   # inserts are harmless
    with pytest.raises(UnsupportedTable, match="re-pointing"):
        migrate(config(server, db))                     # a fresh run is refused
    cleanup(server, db, "t")
    assert children_shape(conn) == before
    assert trigger_names(conn) == []
    assert tables(conn) == {"t", "mirror", *CHILDREN, "mirror_child", "mirror_child2"}
    with conn.cursor() as cur:
        cur.execute("DELETE FROM t WHERE id = 5000")


def test_a_failed_attempt_repoints_back(server: Dsn, db: str, conn: Conn) -> None:
    """An application transaction holding `child2`'s metadata lock: the child's ALTER
    times out, the attempt fails, the children reference T again and T is unchanged."""
    with conn.cursor() as cur:
        make_family(cur, rows=50)
    before = children_shape(conn)
    holder = connect(server, db, autocommit=False)
    seen: list[list[tuple[str, str, str, str]]] = []
    attempts = {"n": 0}

    def hold() -> None:
        attempts["n"] += 1
        if attempts["n"] == 1:
            with holder.cursor() as cur:
                cur.execute("SELECT COUNT(*) FROM child2")   # holds its metadata lock

    def release() -> None:
        seen.append(references(conn))
        holder.rollback()

    faults.register("cutover_paused", hold)
    faults.register("cutover_attempt", release)
    started = time.monotonic()
    try:
        # The children's ALTERs wait the cutover's lock timeout, not the general one.
        migrate(config(server, db, tuning=dataclasses.replace(
            TUNING, cutover_lock_timeout=1, lock_wait_timeout=60)))
    finally:
        holder.close()
    assert time.monotonic() - started < 20
    assert attempts["n"] >= 2
    assert seen[1] == EXPECTED    # after the failed attempt: back on T, original names
    assert children_shape(conn) == before
    assert trigger_names(conn) == []
    assert_constraints_work(conn)


# --- refusals ---------------------------------------------------------------------------------

def test_self_reference_is_refused(server: Dsn, db: str, conn: Conn) -> None:
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE t (id INT PRIMARY KEY, up INT NULL, CONSTRAINT t_up "
                    "FOREIGN KEY (up) REFERENCES t (id)) ENGINE=InnoDB")
    before = snapshot(conn)
    with pytest.raises(InvalidAlter, match=r"\.t\.t_up \(up\).*references itself"):
        migrate(config(server, db))
    assert snapshot(conn) == before


def test_a_parent_with_triggers_is_refused(server: Dsn, db: str, conn: Conn) -> None:
    with conn.cursor() as cur:
        make_family(cur, rows=5)
        cur.execute("CREATE TRIGGER t_bi BEFORE INSERT ON t FOR EACH ROW SET NEW.v = 1")
    before = snapshot(conn)
    with pytest.raises(InvalidAlter, match="also has triggers") as err:
        migrate(config(server, db))
    assert err.value.exit_code == 5
    assert snapshot(conn) == before


def test_a_long_constraint_name_is_refused(server: Dsn, db: str, conn: Conn) -> None:
    name = "c" * 60
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE t (id INT PRIMARY KEY) ENGINE=InnoDB")
        cur.execute(f"CREATE TABLE kid (id INT PRIMARY KEY, pid INT, CONSTRAINT {q(name)} "
                    "FOREIGN KEY (pid) REFERENCES t (id)) ENGINE=InnoDB")
    before = snapshot(conn)
    with pytest.raises(InvalidAlter, match="would pass 64 characters"):
        migrate(config(server, db))
    assert snapshot(conn) == before


def test_a_child_in_another_database(server: Dsn, db: str, conn: Conn) -> None:
    other = f"{db}_far"
    with conn.cursor() as cur:
        make_family(cur, rows=30)
        cur.execute(f"CREATE DATABASE {q(other)}")
        cur.execute(f"CREATE TABLE {q(other)}.elsewhere (id INT PRIMARY KEY, tid INT, "
                    f"CONSTRAINT far FOREIGN KEY (tid) REFERENCES {q(db)}.t (id) "
                    "ON DELETE SET NULL) ENGINE=InnoDB")
        cur.execute("INSERT INTO t (id, v) VALUES (9003, 0), (9004, 0)")
        cur.execute(f"INSERT INTO {q(other)}.elsewhere VALUES (1, 9003), (2, 9004)")
    try:
        migrate(config(server, db))
        with conn.cursor() as cur:
            cur.execute("SELECT CONSTRAINT_NAME, UNIQUE_CONSTRAINT_SCHEMA, "
                        "REFERENCED_TABLE_NAME, DELETE_RULE FROM "
                        "information_schema.REFERENTIAL_CONSTRAINTS WHERE "
                        "CONSTRAINT_SCHEMA = %s", (other,))
            assert cur.fetchall() == (("far", db, "t", "SET NULL"),)
            cur.execute("DELETE FROM t WHERE id = 9003")
            cur.execute(f"SELECT tid FROM {q(other)}.elsewhere ORDER BY id")
            assert cur.fetchall() == ((None,), (9004,))
    finally:
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {q(other)}")


def test_dry_run_says_what_happens_to_each_child(server: Dsn, db: str, conn: Conn) -> None:
    from onlineddl.dryrun import render
    with conn.cursor() as cur:
        make_family(cur, rows=50)
    before = snapshot(conn)
    text = render(Migration(config(server, db)).dry_run())
    assert f"constraint child_ibfk_1 on {db}.child (ON DELETE RESTRICT" in text
    assert "re-pointed to the new table under the write block: two metadata-only " \
           "ALTERs (no rebuild, no row check" in text
    assert f"constraint child2_cascade on {db}.child2 (ON DELETE CASCADE" in text
    assert "rows not touched" in text
    assert "loses that mark" in text
    assert "none: no table references" not in text
    assert snapshot(conn) == before


def test_a_run_that_ends_for_good_leaves_no_guard(server: Dsn, db: str, conn: Conn) -> None:
    """A final error under the block (here injected once every child is re-pointed):
    the children are put back, and the guards and the marker table go with the run's
    other tables."""
    with conn.cursor() as cur:
        make_family(cur, rows=50)
    before = children_shape(conn)

    def fail() -> None:
        raise DataError("injected: a final error under the write block")

    faults.register("children_repointed", fail)
    with pytest.raises(DataError, match="injected"):
        migrate(config(server, db))
    assert children_shape(conn) == before
    assert references(conn) == EXPECTED
    assert trigger_names(conn) == []
    assert tables(conn) == {"t", "mirror", *CHILDREN, "mirror_child", "mirror_child2"}
    assert_constraints_work(conn)


def test_privileges_are_checked_up_front(server: Dsn, db: str, conn: Conn) -> None:
    """ALTER on a child in another database, and what creating the guard triggers
    takes with the binlog on: refused with exit 4 before anything is created."""
    other = f"{db}_far"
    user, password = f"odl_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    who = f"'{user}'@'127.0.0.1'"
    with conn.cursor() as cur:
        make_family(cur, rows=5)
        cur.execute(f"CREATE DATABASE {q(other)}")
        cur.execute(f"CREATE TABLE {q(other)}.elsewhere (id INT PRIMARY KEY, tid INT, "
                    f"CONSTRAINT far FOREIGN KEY (tid) REFERENCES {q(db)}.t (id)) "
                    "ENGINE=InnoDB")
        cur.execute("SELECT @@GLOBAL.log_bin_trust_function_creators")
        trusted = int(cur.fetchone()[0])
        cur.execute(f"CREATE USER {who} IDENTIFIED BY '{password}'")
        cur.execute(f"GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO {who}")
        cur.execute(f"GRANT ALL PRIVILEGES ON {q(db)}.* TO {who}")
    before = snapshot(conn)
    dsn = Dsn(host=server.host, port=server.port, user=user, password=password)
    try:
        # No privilege on the child's database: information_schema hides the child;
        # InnoDB's own list (PROCESS) shows it.
        with conn.cursor() as cur:
            cur.execute(f"GRANT PROCESS ON *.* TO {who}")
        with pytest.raises(MissingPrivilege, match=rf"cannot see: {other}/far") as info:
            migrate(config(dsn, db))
        assert info.value.exit_code == 4
        with conn.cursor() as cur:
            cur.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {q(other)}.* TO {who}")
        with conn.cursor() as cur:
            cur.execute("SET GLOBAL log_bin_trust_function_creators = OFF")
        with pytest.raises(MissingPrivilege) as info:
            migrate(config(dsn, db))
        assert info.value.exit_code == 4
        assert f"ALTER, LOCK TABLES, SELECT on {other}.elsewhere" in info.value.message
        assert "log_bin_trust_function_creators" in info.value.message
        assert f"GRANT ALTER, LOCK TABLES, SELECT ON `{other}`.* TO {who}" in info.value.hint
        with conn.cursor() as cur:
            cur.execute("SET GLOBAL log_bin_trust_function_creators = ON")
            cur.execute(f"GRANT ALTER, LOCK TABLES ON {q(other)}.* TO {who}")
            # Without PROCESS InnoDB's list cannot be read: the visible child is enough.
            cur.execute(f"REVOKE PROCESS ON *.* FROM {who}")
        migrate(config(dsn, db))
    finally:
        with conn.cursor() as cur:
            cur.execute(f"SET GLOBAL log_bin_trust_function_creators = {trusted}")
            cur.execute(f"DROP USER {who}")
            cur.execute(f"DROP DATABASE IF EXISTS {q(other)}")
    assert set(snapshot(conn)) >= set(before)


@pytest.mark.parametrize("alter", [
    "MODIFY id BIGINT NOT NULL",              # the children's columns stay INT
    "CHANGE id ident INT NOT NULL",           # renamed: not re-pointed
    "MODIFY id INT UNSIGNED NOT NULL",        # a key must keep its sign
], ids=["type", "rename", "unsigned"])
def test_an_alter_that_breaks_the_children_is_refused(server: Dsn, db: str, conn: Conn,
                                                       alter: str) -> None:
    with conn.cursor() as cur:
        make_family(cur, rows=20)
    before = snapshot(conn)
    with pytest.raises(InvalidAlter) as err:
        migrate(config(server, db, alter))
    assert "child" in err.value.message
    assert snapshot(conn) == before
    assert trigger_names(conn) == []
    if "CHANGE" not in alter:     # the server's own ALTER fails too
        with conn.cursor() as cur, pytest.raises(pymysql.err.MySQLError):
            cur.execute(f"ALTER TABLE t {alter}")


def test_a_child_transaction_open_across_the_rename(server: Dsn, db: str,
                                                    conn: Conn) -> None:
    """A child's transaction that starts once the children are re-pointed (the block
    holds T, not the children) and stays open: the RENAME must not swap while it holds
    what the RENAME needs, T's writes stay bounded, and the run ends right."""
    with conn.cursor() as cur:
        make_family(cur, rows=50)
    before = children_shape(conn)
    holder = connect(server, db, autocommit=False)
    opened = {"n": 0}

    def open_one() -> None:
        opened["n"] += 1
        if opened["n"] == 1:
            with holder.cursor() as cur:
                cur.execute("INSERT INTO child (pid, v) VALUES (3, 0)")   # open

            def end() -> None:
                time.sleep(4)
                holder.commit()

            threading.Thread(target=end, daemon=True).start()

    faults.register("children_repointed", open_one)
    stop = threading.Event()
    waits: list[float] = []

    guarded: list[str] = []

    def write_t() -> None:   # the longest a write to T waits
        writer = connect(server, db)
        with writer.cursor() as cur:
            while not stop.is_set():
                began = time.monotonic()
                try:
                    cur.execute("UPDATE t SET v = v WHERE id = 1")
                except pymysql.err.OperationalError as exc:
                    assert exc.args[0] == 1644 and fkparents.GUARD_MARK in exc.args[1]
                    guarded.append(exc.args[1])
                waits.append(time.monotonic() - began)
                time.sleep(0.005)
        writer.close()

    thread = threading.Thread(target=write_t, daemon=True)
    thread.start()
    try:
        migrate(config(server, db))
    finally:
        stop.set()
        thread.join(timeout=30)
        holder.close()
    # Bounded: the child lock's wait, then putting the children back while T is still
    # blocked (the transaction holds them), within the block's bound.
    assert max(waits) < TUNING.block_timeout + 1, max(waits)
    assert len(waits) > 10
    assert guarded == []    # T was never unblocked with the children re-pointed
    assert children_shape(conn) == before
    assert references(conn) == EXPECTED
    with conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM child WHERE pid = 3 AND v = 0 AND id >= %s",
                    (CHILD_ROWS,))
        assert cur.fetchone()[0] == 1
    assert_constraints_work(conn)


@pytest.mark.parametrize("name", ["_t_fkgd", "_t_fkprobe"])
def test_a_users_table_under_a_name_onlineddl_needs_is_left_alone(
        server: Dsn, db: str, conn: Conn, name: str) -> None:
    with conn.cursor() as cur:
        make_family(cur, rows=5)
        cur.execute(f"CREATE TABLE {q(name)} (id INT PRIMARY KEY) ENGINE=InnoDB")
        cur.execute(f"INSERT INTO {q(name)} VALUES (1)")
    before = snapshot(conn)
    with pytest.raises(UnsupportedTable, match=f"table {name}") as err:
        migrate(config(server, db))
    assert err.value.exit_code == 4
    assert snapshot(conn) == before
    with conn.cursor() as cur:
        cur.execute(f"SELECT COUNT(*) FROM {q(name)}")
        assert cur.fetchone()[0] == 1


def test_the_guards_wait_for_a_long_transaction_on_t(server: Dsn, db: str,
                                                     conn: Conn) -> None:
    """CREATE TRIGGER waits for a transaction open on T (and T's writers wait behind it):
    each try waits the cutover lock timeout, and the run goes on once it ends."""
    with conn.cursor() as cur:
        make_family(cur, rows=20)
    holder = connect(server, db, autocommit=False)

    def hold() -> None:
        with holder.cursor() as cur:
            cur.execute("SELECT COUNT(*) FROM t")      # holds T's metadata lock

        def end() -> None:
            time.sleep(2.5)
            holder.rollback()

        threading.Thread(target=end, daemon=True).start()

    faults.register("after_checksum", hold)
    try:
        migrate(config(server, db, tuning=dataclasses.replace(TUNING,
                                                              cutover_lock_timeout=1)))
    finally:
        holder.close()
    assert references(conn) == EXPECTED
    assert trigger_names(conn) == []


def test_composite_key_with_update_cascade_and_set_null(server: Dsn, db: str,
                                                        conn: Conn) -> None:
    """A child on a composite UNIQUE key of T, ON UPDATE CASCADE ON DELETE SET NULL:
    re-pointed and named back as it was; the actions work against the new T."""
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE t (id INT PRIMARY KEY, a INT NOT NULL, b INT NOT NULL, "
                    "UNIQUE KEY ab (a, b)) ENGINE=InnoDB")
        cur.executemany("INSERT INTO t VALUES (%s, %s, %s)",
                        [(i, i % 7, i) for i in range(1, 41)])
        cur.execute("CREATE TABLE kid (id INT PRIMARY KEY, ka INT NULL, kb INT NULL, "
                    "CONSTRAINT kid_ab FOREIGN KEY (ka, kb) REFERENCES t (a, b) "
                    "ON DELETE SET NULL ON UPDATE CASCADE) ENGINE=InnoDB")
        cur.executemany("INSERT INTO kid VALUES (%s, %s, %s)",
                        [(i, i % 7, i) for i in range(1, 21)])
    before = show_create(conn, "kid")
    migrate(config(server, db, "ADD COLUMN c INT NULL"))
    assert show_create(conn, "kid") == before
    with conn.cursor() as cur:
        cur.execute("UPDATE t SET b = 1000 WHERE id = 3")
        cur.execute("SELECT ka, kb FROM kid WHERE id = 3")
        assert cur.fetchone() == (3, 1000)
        cur.execute("DELETE FROM t WHERE id = 4")
        cur.execute("SELECT ka, kb FROM kid WHERE id = 4")
        assert cur.fetchone() == (None, None)
    assert trigger_names(conn) == []


# --- other sessions' foreign-key DDL during the run ------------------------------------------

def ddl_from_another_session(server: Dsn, db: str, point: str, statement: str) -> Conn:
    """At `point`, another session runs `statement` (a connection of its own)."""
    other = connect(server, db)

    def run() -> None:
        with other.cursor() as cur:
            cur.execute(statement)

    faults.register(point, run)
    return other


def test_a_child_added_during_the_run_stops_it_then_resume_repoints_it(
        server: Dsn, db: str, conn: Conn) -> None:
    """It passed none of the preflight checks: exit 13 before anything is re-pointed,
    T unchanged; --resume checks it and carries it like the others."""
    with conn.cursor() as cur:
        make_family(cur, rows=50)
    other = ddl_from_another_session(
        server, db, "after_checksum", "CREATE TABLE child3 (id INT PRIMARY KEY, pid INT, "
        "CONSTRAINT child3_fk FOREIGN KEY (pid) REFERENCES t (id))")
    try:
        with pytest.raises(TableChanged, match="child3_fk"):
            migrate(config(server, db))
    finally:
        faults.clear()
        other.close()
    assert ("child3", "child3_fk", "t", "RESTRICT") in references(conn)
    assert trigger_names(conn) == []
    migrate(config(server, db, resume=True))
    assert ("child3", "child3_fk", "t", "RESTRICT") in references(conn)
    assert not [r for r in references(conn) if r[2].startswith("_t_old_")]


def test_a_child_constraint_dropped_under_the_block_is_not_brought_back(
        server: Dsn, db: str, conn: Conn) -> None:
    """Dropped after the children were read: re-pointing it would bring it back under
    its name after the swap; the attempt stops instead (exit 13)."""
    with conn.cursor() as cur:
        make_family(cur, rows=50)
    other = ddl_from_another_session(server, db, "parents_guard_armed",
                                     "ALTER TABLE child2 DROP FOREIGN KEY child2_cascade")
    try:
        with pytest.raises(TableChanged, match="child2_cascade"):
            migrate(config(server, db))
    finally:
        faults.clear()
        other.close()
    assert "child2_cascade" not in [r[1] for r in references(conn)]


def test_a_constraint_left_on_the_old_table_is_not_a_success(
        server: Dsn, db: str, conn: Conn) -> None:
    """After the swap nothing may reference the old table (a child whose constraint
    followed T's name at the RENAME is checked against a frozen copy): no exit 0."""
    with conn.cursor() as cur:
        make_family(cur, rows=50)
    other = connect(server, db)

    def refer_to_old() -> None:
        with other.cursor() as cur:
            cur.execute("SELECT TABLE_NAME FROM information_schema.TABLES WHERE "
                        "TABLE_SCHEMA = DATABASE() AND TABLE_NAME LIKE '\\_t\\_old\\_%'")
            old = cur.fetchone()[0]
            cur.execute(f"CREATE TABLE late (id INT PRIMARY KEY, pid INT, CONSTRAINT late_fk "
                        f"FOREIGN KEY (pid) REFERENCES {q(old)} (id))")

    faults.register("parents_renamed", refer_to_old)
    try:
        with pytest.raises(TableChanged, match="late_fk"):
            migrate(config(server, db))
    finally:
        faults.clear()
        other.close()
    assert "_t_chkpnt" in tables(conn)      # not finished: --resume asks again


def test_a_child_added_before_a_resume_is_probed_against_the_new_table(
        server: Dsn, db: str, conn: Conn) -> None:
    """Killed mid-copy; another session then adds a child whose constraint the new
    table cannot hold (the ALTER changes the referenced column's type). The resume asks
    the server again, as the first run's setup did, and refuses up front (exit 5) instead
    of failing every cutover attempt: T unchanged, the run still resumable."""
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE t (id INT NOT NULL PRIMARY KEY, v INT NOT NULL, "
                    "KEY v_key (v)) ENGINE=InnoDB")
        cur.executemany("INSERT INTO t VALUES (%s, %s)", [(i, i) for i in range(1, 301)])
    alter = "MODIFY v BIGINT NOT NULL"
    crashed = subprocess.run(migrate_command(server, db, alter, "--chunk-size", "100"),
                             env=cli_env(server, "after_chunk:2"), capture_output=True,
                             text=True, timeout=300)
    assert crashed.returncode == 137, crashed.stderr[-2000:]
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE late (id INT PRIMARY KEY, pv INT, CONSTRAINT late_fk "
                    "FOREIGN KEY (pv) REFERENCES t (v)) ENGINE=InnoDB")
    before = show_create(conn, "t")
    started = time.monotonic()
    with pytest.raises(InvalidAlter, match="late_fk") as err:
        migrate(config(server, db, alter, resume=True))
    assert time.monotonic() - started < 30
    assert "--resume" in (err.value.hint or "")
    assert show_create(conn, "t") == before
    assert ("late", "late_fk", "t", "RESTRICT") in references(conn)
    assert trigger_names(conn) == []
    assert "_t_fkprobe" not in tables(conn)
    with conn.cursor() as cur, pytest.raises(pymysql.err.MySQLError):
        cur.execute(f"ALTER TABLE t {alter}")          # the server's own ALTER fails too
    with conn.cursor() as cur:
        cur.execute("ALTER TABLE late DROP FOREIGN KEY late_fk")
    migrate(config(server, db, alter, resume=True))
    assert "bigint" in show_create(conn, "t")


def child_index_facts(conn: Conn, database: str) -> dict[str, Any]:
    """What the server shows of the children's indexes; then whether a new index that
    can serve each constraint makes the server drop the old one by itself."""
    facts: dict[str, Any] = {}
    with conn.cursor() as cur:
        for kid in CHILDREN:
            facts[kid] = show_create(conn, kid, database)
            cur.execute("SELECT INDEX_NAME, SEQ_IN_INDEX, COLUMN_NAME, NON_UNIQUE, COMMENT, "
                        "INDEX_COMMENT, IGNORED FROM information_schema.STATISTICS WHERE "
                        "TABLE_SCHEMA = %s AND TABLE_NAME = %s ORDER BY 1, 2", (database, kid))
            facts[kid + " statistics"] = cur.fetchall()
            cur.execute("SELECT i.NAME, i.TYPE, i.N_FIELDS FROM information_schema."
                        "INNODB_SYS_INDEXES i JOIN information_schema.INNODB_SYS_TABLES t "
                        "USING (TABLE_ID) WHERE t.NAME = %s ORDER BY i.INDEX_ID",
                        (f"{database}/{kid}",))
            facts[kid + " innodb"] = cur.fetchall()
            cur.execute(f"ALTER TABLE {q(database)}.{q(kid)} ADD INDEX pid_v (pid, v)")
            facts[kid + " after ADD INDEX"] = show_create(conn, kid, database)
    return facts


def test_the_childrens_index_marks_as_documented(server: Dsn, db: str, conn: Conn) -> None:
    """Measured against a plain ALTER of T on a twin: the children look the same to
    SHOW CREATE TABLE and information_schema, but an index the server made for a
    constraint has lost that mark (docs/compatibility.md, the dry run): a later index
    that could serve the constraint no longer replaces it."""
    with conn.cursor() as cur:
        make_family(cur, rows=30)
    with twin_database(server, db) as twin, twin.cursor() as cur:
        make_family(cur, rows=30)
        cur.execute(f"ALTER TABLE t {ALTER}")
        migrate(config(server, db))
        native, ours = child_index_facts(conn, f"{db}_twin"), child_index_facts(conn, db)
    for kid in CHILDREN:
        for fact in ("", " statistics", " innodb"):
            assert ours[kid + fact] == native[kid + fact], kid + fact
    # `child` had the server's own index `pid`, `child2` its own `by_pid`.
    assert "KEY `pid` (`pid`)" not in native["child after ADD INDEX"]
    assert "KEY `pid` (`pid`)" in ours["child after ADD INDEX"]
    assert ours["child2 after ADD INDEX"] == native["child2 after ADD INDEX"]

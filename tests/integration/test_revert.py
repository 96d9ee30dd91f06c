"""`onlineddl revert`: the most recent swap undone, with every write made since.

Writers (tests/workload.py: each transaction changes t and a mirror that is never
migrated) run before, during and after the migration and during the revert, checksum
repair off: t must equal the mirror row for row on the common columns after each run.
A column the migration dropped (`extra`, on t only: the writers never name it) comes
back with its old value for old rows and its default for rows inserted since.
"""

from __future__ import annotations

import datetime
import json
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import Conn, cli_env, columns, connect, recorded_old_tables, tables
from workload import IntModel, Writers, assert_same_rows, make_tables

from onlineddl import faults
from onlineddl.applier import FlushTarget, sync_keys
from onlineddl.commands import cleanup, status
from onlineddl.config import Dsn, HookConfig, MigrationConfig, Tuning
from onlineddl.db import Session
from onlineddl.errors import (
    ArtifactsExist,
    DataError,
    LockHeld,
    ResumeRefused,
    RevertRefused,
    TableChanged,
    TableVanished,
)
from onlineddl.migration import migrate
from onlineddl.revert import revert
from onlineddl.run import Result
from onlineddl.runlock import RunnerLock

TUNING = Tuning(chunk_rows_initial=100, chunk_rows_min=50, chunk_rows_max=200,
                checkpoint_interval=0.3, progress_interval=1.0)
ROWS = 600
COMMON = ["id", "name", "v", "data", "note"]
EXTRA_DEFAULT = 7
# Rows the writers never pick (their keys are 1..ROWS + 100): the dropped column's values
# are checked exactly on these.
FIXED = range(100_001, 100_011)
ALTER = "DROP COLUMN extra, ADD COLUMN added INT NULL, MODIFY v BIGINT NOT NULL DEFAULT 0"


def config(server: Dsn, db: str, alter: str = "", **kw: Any) -> MigrationConfig:
    return MigrationConfig(dsn=server, database=db, table="t", alter=alter, repair=False,
                           tuning=kw.pop("tuning", TUNING), **kw)


def run_revert(server: Dsn, db: str, **kw: Any) -> Result:
    return revert(config(server, db, **kw))


def execute(conn: Conn, *statements: str) -> None:
    with conn.cursor() as cur:
        for statement in statements:
            cur.execute(statement)


def shape(conn: Conn, table: str = "t") -> str:
    """SHOW CREATE TABLE without the name and the AUTO_INCREMENT counter."""
    text = str(scalar_row(conn, f"SHOW CREATE TABLE `{table}`")[1])
    return re.sub(r"\s+AUTO_INCREMENT=\d+", "", text.split("\n", 1)[1])


def scalar_row(conn: Conn, text: str) -> tuple[Any, ...]:
    with conn.cursor() as cur:
        cur.execute(text)
        row = cur.fetchone()
        assert row is not None
        return tuple(row)


def extras(conn: Conn) -> dict[int, int]:
    with conn.cursor() as cur:
        cur.execute("SELECT id, extra FROM t WHERE id BETWEEN 100001 AND 100010 OR id = 500001")
        return {int(r[0]): int(r[1]) for r in cur.fetchall()}


@pytest.fixture
def seeded(server: Dsn, db: str) -> Iterator[tuple[Conn, Writers]]:
    """t and its mirror (IntModel), t with one more column `extra` (id * 3; NOT NULL
    DEFAULT 7) the writers never name, and ten rows out of the writers' reach."""
    conn = connect(server, db)
    model = IntModel(id_max=ROWS + 100)
    make_tables(conn, model, ROWS)
    execute(conn, f"ALTER TABLE t ADD COLUMN extra INT NOT NULL DEFAULT {EXTRA_DEFAULT}",
            "UPDATE t SET extra = id * 3")
    with conn.cursor() as cur:
        for table in ("t", "mirror"):
            cur.executemany(f"INSERT INTO {table} (id, name, v) VALUES (%s, 'fixed', %s)",
                            [(i, i) for i in FIXED])
    execute(conn, "UPDATE t SET extra = id * 3 WHERE id >= 100001")
    writers = Writers(server, db, "t", "mirror", model, threads=2, pause=0.005)
    yield conn, writers
    writers.stop()
    conn.close()


def test_revert_brings_back_the_old_schema_with_every_write(
        server: Dsn, db: str, seeded: tuple[Conn, Writers]) -> None:
    conn, writers = seeded
    before = shape(conn)
    writers.start()
    writers.wait_for_commits(20)
    migrated = migrate(config(server, db, ALTER))
    writers.wait_for_commits(30)
    # After the swap, out of the writers' reach: an update, a delete, an insert.
    execute(conn, "UPDATE t SET v = v + 1 WHERE id = 100001",
            "UPDATE mirror SET v = v + 1 WHERE id = 100001",
            "DELETE FROM t WHERE id = 100002", "DELETE FROM mirror WHERE id = 100002",
            "INSERT INTO t (id, name, v) VALUES (500001, 'new', 1)",
            "INSERT INTO mirror (id, name, v) VALUES (500001, 'new', 1)")
    # Deleted and inserted again in one transaction (so one flush sees both): a new row,
    # whose dropped column comes back as the default, not the deleted row's value.
    for table in ("t", "mirror"):
        execute(conn, "BEGIN", f"DELETE FROM {table} WHERE id = 100003",
                f"INSERT INTO {table} (id, name, v) VALUES (100003, 'again', 3)", "COMMIT")
    after_migrate = shape(conn)
    info = json.loads(status(server, db, "t", as_json=True))
    assert info["old_tables"][-1]["revert"].startswith("yes ("), info["old_tables"]
    assert info["old_tables"][-1]["kind"] == "migrate"
    commits = {"during": 0}

    def write_during_revert() -> None:
        writers.burst(10, seed=500 + commits["during"])
        commits["during"] += 1

    faults.register("after_checkpoint", write_during_revert)
    try:
        result = run_revert(server, db)
    finally:
        faults.clear()
    writers.wait_for_commits(30)
    writers.stop()
    assert not writers.errors, writers.errors[:5]
    assert commits["during"] > 0
    assert shape(conn) == before
    assert columns(conn) == ["id", "name", "v", "data", "note", "extra"]
    assert_same_rows(conn, "t", "mirror", COMMON, ["id"])
    got = extras(conn)
    assert got == {**{i: i * 3 for i in FIXED if i != 100002}, 500001: EXTRA_DEFAULT,
                   100003: EXTRA_DEFAULT}
    # The new-schema table is kept and recorded as the revert's old table.
    assert result.old_table in tables(conn)
    assert shape(conn, result.old_table) == after_migrate
    assert recorded_old_tables(conn)[-1] == result.old_table
    assert migrated.old_table not in tables(conn)
    assert migrated.old_table not in recorded_old_tables(conn)
    assert "_t_chkpnt" not in tables(conn)


def revert_command(server: Dsn, db: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "onlineddl", "revert", "--host", server.host, "--port",
            str(server.port), "--user", server.user, "--database", db, "--table", "t",
            "--no-repair", *extra]


def cli(server: Dsn, db: str, *extra: str, fault: str | None = None
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(revert_command(server, db, *extra), env=cli_env(server, fault),
                          capture_output=True, text=True, timeout=300, check=False)


@pytest.mark.parametrize("point", ["revert_setup", "applier_started", "after_checkpoint",
                                   "after_checksum", "cutover_started", "before_swap",
                                   "after_swap", "revert_recorded"])
def test_revert_killed_at_each_point_resumes(server: Dsn, db: str,
                                             seeded: tuple[Conn, Writers], point: str) -> None:
    conn, writers = seeded
    before = shape(conn)
    writers.start()
    migrate(config(server, db, ALTER))
    writers.wait_for_commits(10)
    killed = cli(server, db, fault=point)
    assert killed.returncode == 137, killed.stderr[-2000:]
    writers.wait_for_commits(10)
    again = cli(server, db)     # without --resume: refused, nothing changed
    assert again.returncode == 14, again.stderr[-2000:]
    assert "--resume" in again.stderr
    resumed = cli(server, db, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    writers.wait_for_commits(10)
    writers.stop()
    assert not writers.errors, writers.errors[:5]
    assert shape(conn) == before
    assert_same_rows(conn, "t", "mirror", COMMON, ["id"])
    assert extras(conn) == {i: i * 3 for i in FIXED}
    assert {n for n in tables(conn) if not n.startswith("_t_old_")} == \
        {"t", "mirror", "_onlineddl_old_tables"}
    assert len(recorded_old_tables(conn)) == 1


def stopped_after_checksum(run: Callable[[], object]) -> None:
    """`run` (a migrate or a revert) stopped by the test once its checksum passed,
    leaving its checkpoint behind."""
    def stop() -> None:
        raise RuntimeError("stopped by the test")

    faults.register("after_checksum", stop)
    try:
        with pytest.raises(RuntimeError):
            run()
    finally:
        faults.clear()


def snapshot(conn: Conn) -> dict[str, tuple[str, Any]]:
    """Every table's definition and contents (CHECKSUM TABLE), the registry's too."""
    out = {}
    for name in sorted(tables(conn)):
        out[name] = (shape(conn, name), scalar_row(conn, f"CHECKSUM TABLE `{name}`")[1])
    return out


def refused(server: Dsn, db: str, conn: Conn, error: type[Exception], *words: str) -> None:
    before = snapshot(conn)
    with pytest.raises(error) as caught:
        run_revert(server, db)
    message = str(caught.value)
    for word in words:
        assert word in message, message
    assert snapshot(conn) == before


def test_refused_without_a_recorded_old_table(server: Dsn, db: str,
                                              seeded: tuple[Conn, Writers]) -> None:
    conn, _ = seeded
    refused(server, db, conn, RevertRefused, "no recorded old table")


def test_refused_when_the_old_table_is_gone_or_changed(server: Dsn, db: str,
                                                       seeded: tuple[Conn, Writers]) -> None:
    conn, _ = seeded
    first = migrate(config(server, db, "ADD COLUMN a INT NULL")).old_table
    second = migrate(config(server, db, "ADD COLUMN b INT NULL")).old_table
    execute(conn, f"ALTER TABLE `{second}` ADD COLUMN z INT NULL")
    refused(server, db, conn, RevertRefused, second, "columns changed",
            "only the most recent swap", first)
    execute(conn, f"DROP TABLE `{second}`")
    refused(server, db, conn, RevertRefused, second, "is gone")


def test_refused_when_the_binlog_since_the_swap_is_purged(
        server: Dsn, db: str, seeded: tuple[Conn, Writers]) -> None:
    conn, _ = seeded
    migrate(config(server, db, "ADD COLUMN a INT NULL"))
    purge_to(conn, rotate(conn))
    refused(server, db, conn, RevertRefused, "purged")


def rotate(conn: Conn) -> str:
    """FLUSH BINARY LOGS; the name of the new current file."""
    execute(conn, "FLUSH BINARY LOGS")
    with conn.cursor() as cur:
        cur.execute("SHOW BINARY LOGS")
        return str(cur.fetchall()[-1][0])


def purge_to(conn: Conn, name: str) -> None:
    """PURGE BINARY LOGS TO `name` (every older file). No test of this module reads a
    binlog position from before its own first statement, so purging the shared
    server's files is harmless. The server keeps a file a binlog reader still reads (a
    run's reader may not have disconnected yet): purge until it is gone."""
    deadline = time.monotonic() + 30
    while True:
        execute(conn, f"PURGE BINARY LOGS TO '{name}'")
        with conn.cursor() as cur:
            cur.execute("SHOW BINARY LOGS")
            if str(cur.fetchall()[0][0]) == name:
                return
        assert time.monotonic() < deadline, "the server kept the old binlog files"
        time.sleep(0.1)


def stopped_in_a_later_binlog_file(server: Dsn, db: str, conn: Conn,
                                   writers: Writers) -> str:
    """A migration, writes, a new binlog file, writes, then a revert stopped after its
    checksum with its checkpoint in that later file, whose name it returns."""
    migrate(config(server, db, ALTER))
    swap_file = str(scalar_row(conn, "SELECT swap_file FROM _onlineddl_old_tables")[0])
    writers.burst(20, seed=41)
    later = rotate(conn)
    writers.burst(20, seed=42)
    stopped_after_checksum(lambda: run_revert(server, db))
    at = str(scalar_row(conn, "SELECT binlog_file FROM _t_chkpnt")[0])
    assert at == later != swap_file
    return at


def test_a_resumed_revert_needs_the_binlog_only_from_its_checkpoint(
        server: Dsn, db: str, seeded: tuple[Conn, Writers]) -> None:
    """The files from the swap to the checkpoint purged: the resumed revert reads from
    the checkpoint on, and finishes with every write."""
    conn, writers = seeded
    before = shape(conn)
    at = stopped_in_a_later_binlog_file(server, db, conn, writers)
    writers.burst(20, seed=43)
    purge_to(conn, at)
    run_revert(server, db, resume=True)
    writers.burst(20, seed=44)
    assert shape(conn) == before
    assert_same_rows(conn, "t", "mirror", COMMON, ["id"])
    assert extras(conn) == {i: i * 3 for i in FIXED}
    assert "_t_chkpnt" not in tables(conn)


def test_a_resumed_revert_whose_checkpoint_position_is_purged_is_refused(
        server: Dsn, db: str, seeded: tuple[Conn, Writers]) -> None:
    conn, writers = seeded
    stopped_in_a_later_binlog_file(server, db, conn, writers)
    writers.burst(10, seed=45)
    purge_to(conn, rotate(conn))
    before = snapshot(conn)
    with pytest.raises(ResumeRefused, match=r"binlog at the checkpoint .* was purged"):
        run_revert(server, db, resume=True)
    assert snapshot(conn) == before


def test_refused_for_a_dropped_not_null_column_without_default(
        server: Dsn, db: str, seeded: tuple[Conn, Writers]) -> None:
    conn, _ = seeded
    execute(conn, "ALTER TABLE t ADD COLUMN must INT NOT NULL")
    migrate(config(server, db, "DROP COLUMN must"))
    refused(server, db, conn, RevertRefused, "must", "NOT NULL without a DEFAULT")


def test_refused_when_current_values_do_not_fit_the_old_type(
        server: Dsn, db: str, seeded: tuple[Conn, Writers]) -> None:
    conn, _ = seeded
    migrate(config(server, db, "MODIFY v BIGINT NOT NULL DEFAULT 0, MODIFY name "
                               "VARCHAR(200) CHARACTER SET utf8mb4 NULL"))
    execute(conn, "UPDATE t SET v = 1 << 40 WHERE id = 3")
    refused(server, db, conn, RevertRefused, "t.v", "bigint", "int")
    execute(conn, "UPDATE t SET v = 3 WHERE id = 3",
            "UPDATE t SET name = REPEAT('x', 100) WHERE id = 4")
    refused(server, db, conn, RevertRefused, "t.name", "varchar(64)")


def test_refused_while_another_runner_or_a_migration_holds_the_table(
        server: Dsn, db: str, seeded: tuple[Conn, Writers]) -> None:
    conn, _ = seeded
    migrate(config(server, db, "ADD COLUMN a INT NULL"))
    with pytest.raises(ResumeRefused, match="no revert checkpoint"):
        run_revert(server, db, resume=True)
    lock = RunnerLock(server, db, "t")
    lock.acquire(0)
    try:
        refused(server, db, conn, LockHeld)
    finally:
        lock.release()

    stopped_after_checksum(lambda: migrate(config(server, db, "ADD COLUMN b INT NULL")))
    refused(server, db, conn, ArtifactsExist, "_t_chkpnt", "onlineddl migrate")
    with pytest.raises(ArtifactsExist, match="onlineddl migrate` again with --resume"):
        run_revert(server, db, resume=True)
    migrate(config(server, db, "ADD COLUMN b INT NULL", resume=True))

    # The other way round: a revert's checkpoint is never a migration's.
    stopped_after_checksum(lambda: run_revert(server, db))
    before = snapshot(conn)
    with pytest.raises(ResumeRefused, match="belongs to an unfinished `revert`"):
        migrate(config(server, db, "ADD COLUMN c INT NULL", resume=True))
    with pytest.raises(ArtifactsExist, match="onlineddl revert"):
        migrate(config(server, db, "ADD COLUMN c INT NULL"))
    assert snapshot(conn) == before
    run_revert(server, db, resume=True)
    assert "b" not in columns(conn) and "a" in columns(conn)


def test_three_migrations_then_revert_then_revert_the_revert(
        server: Dsn, db: str, seeded: tuple[Conn, Writers]) -> None:
    conn, writers = seeded
    writers.start()
    shapes = [shape(conn)]
    olds = []
    for alter in ("ADD COLUMN a INT NULL", "DROP COLUMN extra",
                  "ADD COLUMN b INT NOT NULL DEFAULT 2, ADD INDEX v_idx (v)"):
        olds.append(migrate(config(server, db, alter)).old_table)
        shapes.append(shape(conn))
        writers.wait_for_commits(10)
    first = run_revert(server, db)            # back to the 2nd schema
    assert shape(conn) == shapes[2]
    writers.wait_for_commits(10)
    # The writers still run: both tables read in one snapshot (they commit to both).
    execute(conn, "START TRANSACTION WITH CONSISTENT SNAPSHOT")
    assert_same_rows(conn, "t", "mirror", COMMON, ["id"])
    execute(conn, "COMMIT")
    assert recorded_old_tables(conn) == [olds[0], olds[1], first.old_table]
    second = run_revert(server, db)           # the revert reverted: the 3rd schema again
    assert shape(conn) == shapes[3]
    writers.wait_for_commits(10)
    writers.stop()
    assert not writers.errors, writers.errors[:5]
    assert_same_rows(conn, "t", "mirror", COMMON, ["id"])
    assert recorded_old_tables(conn) == [olds[0], olds[1], second.old_table]
    assert shape(conn, second.old_table) == shapes[2]
    with conn.cursor() as cur:   # b's values survived the round trip through schema 2
        cur.execute("SELECT COUNT(*) FROM t WHERE b <> 2")
        assert cur.fetchone()[0] == 0


def test_a_later_write_that_does_not_fit_stops_the_revert(
        server: Dsn, db: str, seeded: tuple[Conn, Writers]) -> None:
    """Strict mode: a value written during the revert that the old type cannot hold
    fails the flush loudly (never truncated); t is untouched; once the row is fixed,
    --resume finishes."""
    conn, _ = seeded
    migrate(config(server, db, "MODIFY v BIGINT NOT NULL DEFAULT 0"))
    wrote = {"n": 0}

    def too_big() -> None:
        if not wrote["n"]:
            execute(conn, "UPDATE t SET v = 1 << 40 WHERE id = 5")
        wrote["n"] += 1

    faults.register("applier_started", too_big)
    try:
        with pytest.raises(DataError) as caught:
            run_revert(server, db)
    finally:
        faults.clear()
    assert "revert --resume" in caught.value.hint
    assert "`v` bigint" in shape(conn)                   # t still the migrated table
    assert scalar_row(conn, "SELECT v FROM t WHERE id = 5")[0] == 1 << 40
    assert "_t_chkpnt" in tables(conn)
    execute(conn, "UPDATE t SET v = 5 WHERE id = 5")
    run_revert(server, db, resume=True)
    assert "`v` int" in shape(conn)
    assert_same_rows(conn, "t", "mirror", COMMON, ["id"])


def test_a_registry_of_an_earlier_version_is_upgraded_in_place(
        server: Dsn, db: str, seeded: tuple[Conn, Writers]) -> None:
    """Its rows carry no swap record: such an old table is listed and refused by revert;
    the next migration adds the columns and records its swap."""
    conn, _ = seeded
    execute(conn, "CREATE TABLE _onlineddl_old_tables (old_name VARCHAR(64) CHARACTER SET "
                  "utf8mb4 COLLATE utf8mb4_bin NOT NULL PRIMARY KEY, table_name VARCHAR(64) "
                  "CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL, swapped_at "
                  "DATETIME(6) NOT NULL, alter_text LONGTEXT NOT NULL, identity "
                  "VARCHAR(255) NOT NULL) ENGINE=InnoDB COMMENT='onlineddl old tables'")
    first = migrate(config(server, db, "ADD COLUMN a INT NULL")).old_table
    execute(conn, "ALTER TABLE _onlineddl_old_tables DROP COLUMN kind, DROP COLUMN swap_file, "
                  "DROP COLUMN swap_pos, DROP COLUMN swap_gtid, DROP COLUMN swap_mapping, "
                  "DROP COLUMN server_identity, DROP COLUMN table_identity")
    info = json.loads(status(server, db, "t", as_json=True))
    assert "without `revert`" in info["old_tables"][0]["revert"]
    refused(server, db, conn, RevertRefused, first, "without `revert`")
    second = migrate(config(server, db, "ADD COLUMN b INT NULL")).old_table
    assert "swap_mapping" in columns(conn, "_onlineddl_old_tables")
    assert run_revert(server, db).old_table in tables(conn)
    assert columns(conn) == [*COMMON, "extra", "a"]
    assert second not in tables(conn)


@pytest.mark.parametrize("in_place", [False, True])
def test_flush_keeps_columns_the_source_does_not_feed(server: Dsn, db: str,
                                                      in_place: bool) -> None:
    """applier.FlushTarget.keep_unfed: an existing row keeps its unfed column, a new row
    takes the column's default, a gone row is deleted; without the flag REPLACE resets
    it (the flag is what keeps it). A value the target cannot hold fails (strict sessions)."""
    conn = connect(server, db)
    execute(conn, "CREATE TABLE src (id INT PRIMARY KEY, v BIGINT NOT NULL)",
            "CREATE TABLE dst (id INT PRIMARY KEY, v INT NOT NULL, kept INT NOT NULL "
            "DEFAULT 7)",
            "INSERT INTO src VALUES (1, 10), (3, 30)",
            "INSERT INTO dst VALUES (1, 1, 100), (2, 2, 200)")
    session = Session(server, name="test", database=db)
    try:
        def target(**kw: Any) -> FlushTarget:
            return FlushTarget(db, "src", "dst", ("`src`.`v`", "`src`.`id`"), ("v", "id"),
                               ("id",), other_unique=False, integer_key=True, **kw)

        sync_keys(session, target(keep_unfed=True), [(1,), (2,), (3,)],
                  atomic=True, in_place=in_place)
        with conn.cursor() as cur:
            cur.execute("SELECT id, v, kept FROM dst ORDER BY id")
            assert cur.fetchall() == ((1, 10, 100), (3, 30, 7))
        execute(conn, "UPDATE src SET v = 1 << 40 WHERE id = 3")
        with pytest.raises(DataError):
            sync_keys(session, target(keep_unfed=True), [(3,)], atomic=True,
                      in_place=in_place)
        sync_keys(session, target(), [(1,)], atomic=True)
        assert scalar_row(conn, "SELECT kept FROM dst WHERE id = 1")[0] == 7
    finally:
        session.close()
        conn.close()


def test_a_change_to_t_after_the_recorded_swap_stops_the_revert(
        server: Dsn, db: str, seeded: tuple[Conn, Writers]) -> None:
    """A later migration with --drop-old records nothing; the last record is then not
    the most recent swap: the revert meets that migration's RENAME in the binlog and
    stops (exit 13), T unchanged, saying why."""
    conn, _ = seeded
    migrate(config(server, db, "ADD COLUMN a INT NULL"))
    migrate(config(server, db, "ADD INDEX v_idx (v)", drop_old=True))
    before = shape(conn)
    with pytest.raises(TableChanged, match="only the most recent swap"):
        run_revert(server, db)
    assert shape(conn) == before


def test_refused_when_t_changed_or_the_swap_ran_elsewhere(
        server: Dsn, db: str, seeded: tuple[Conn, Writers]) -> None:
    conn, _ = seeded
    migrate(config(server, db, "ADD COLUMN a INT NULL"))
    execute(conn, "UPDATE _onlineddl_old_tables SET server_identity = 'server_uuid=elsewhere'")
    refused(server, db, conn, RevertRefused, "another server", "elsewhere")
    execute(conn, "UPDATE _onlineddl_old_tables SET server_identity = ''",
            "ALTER TABLE t ADD COLUMN z INT NULL")
    refused(server, db, conn, RevertRefused, "columns of", "changed since the swap")


def test_refused_for_a_dropped_column_under_another_unique_key(
        server: Dsn, db: str, seeded: tuple[Conn, Writers]) -> None:
    conn, _ = seeded
    execute(conn, "ALTER TABLE t ADD UNIQUE KEY data_u (id, data)")
    migrate(config(server, db, "DROP COLUMN extra"))
    refused(server, db, conn, RevertRefused, "extra", "data_u")


def test_renamed_and_dropped_columns_come_back(server: Dsn, db: str) -> None:
    conn = connect(server, db)
    execute(conn, "CREATE TABLE t (id INT PRIMARY KEY, a INT NOT NULL, b VARCHAR(8) NOT NULL "
                  "DEFAULT 'dflt', c INT NULL)",
            "INSERT INTO t VALUES (1, 10, 'one', 100), (2, 20, 'two', 200), (3, 30, 'x', 3)")
    migrate(config(server, db, "CHANGE COLUMN a a2 BIGINT NOT NULL, DROP COLUMN b, "
                               "ADD COLUMN d INT NOT NULL DEFAULT 4"))
    execute(conn, "UPDATE t SET a2 = 11, d = 44 WHERE id = 1", "DELETE FROM t WHERE id = 3",
            "INSERT INTO t (id, a2, c) VALUES (4, 40, NULL)")
    run_revert(server, db)
    assert columns(conn) == ["id", "a", "b", "c"]
    with conn.cursor() as cur:
        cur.execute("SELECT id, a, b, c FROM t ORDER BY id")
        assert cur.fetchall() == ((1, 11, "one", 100), (2, 20, "two", 200),
                                  (4, 40, "dflt", None))
    conn.close()


def test_a_checkpoint_of_an_earlier_version_is_a_migrations(
        server: Dsn, db: str, seeded: tuple[Conn, Writers]) -> None:
    """A checkpoint written before `kind` existed resumes as a migration; its first
    write adds the column."""
    conn, _ = seeded

    stopped_after_checksum(lambda: migrate(config(server, db, "ADD COLUMN a INT NULL")))
    execute(conn, "ALTER TABLE _t_chkpnt DROP COLUMN kind")
    with pytest.raises(ArtifactsExist, match="onlineddl migrate"):
        run_revert(server, db)
    migrate(config(server, db, "ADD COLUMN a INT NULL", resume=True))
    assert "a" in columns(conn)


def test_the_auto_increment_counter_comes_along(server: Dsn, db: str) -> None:
    """As a plain ALTER keeps it: ids of rows deleted since the swap are not reused."""
    conn = connect(server, db)
    execute(conn, "CREATE TABLE t (id INT AUTO_INCREMENT PRIMARY KEY, v INT NOT NULL)",
            "INSERT INTO t (v) VALUES (1), (2)")
    migrate(config(server, db, "ADD COLUMN a INT NULL"))
    # One transaction: the binlog applier never sees the row exist, only T's counter.
    execute(conn, "BEGIN", "INSERT INTO t (id, v) VALUES (1000, 3)",
            "DELETE FROM t WHERE id = 1000", "COMMIT")
    run_revert(server, db)
    execute(conn, "INSERT INTO t (v) VALUES (4)")
    assert scalar_row(conn, "SELECT MAX(id) FROM t")[0] == 1001
    conn.close()


def test_cleanup_discards_an_unfinished_revert_and_keeps_the_old_table(
        server: Dsn, db: str, seeded: tuple[Conn, Writers]) -> None:
    conn, _ = seeded
    old = migrate(config(server, db, "ADD COLUMN a INT NULL")).old_table

    stopped_after_checksum(lambda: run_revert(server, db))
    # A user's `_t_new` with the old table's columns is never taken for the revert's.
    execute(conn, f"CREATE TABLE _t_new LIKE `{old}`", f"INSERT INTO _t_new SELECT * FROM `{old}`")
    with pytest.raises(ArtifactsExist, match="_t_new"):
        cleanup(server, db, "t")
    assert "_t_new" in tables(conn) and "_t_chkpnt" not in tables(conn)
    execute(conn, "DROP TABLE _t_new")
    assert old in tables(conn) and recorded_old_tables(conn) == [old]
    assert "a" in columns(conn)
    run_revert(server, db)
    assert "a" not in columns(conn)
    assert_same_rows(conn, "t", "mirror", COMMON, ["id"])


def test_hooks_tell_a_revert_apart_and_status_shows_it(
        server: Dsn, db: str, seeded: tuple[Conn, Writers], tmp_path: Path) -> None:
    old = migrate(config(server, db, "ADD COLUMN a INT NULL")).old_table
    text = status(server, db, "t")
    assert f"{old}  swapped " in text and "revert: yes (" in text
    seen = tmp_path / "seen"
    for event in ("startup", "before-cutover", "success"):
        hook = tmp_path / event
        hook.write_text(f'#!/bin/sh\necho "$ONLINEDDL_EVENT $ONLINEDDL_KIND $ONLINEDDL_ALTER" '
                        f'>> {seen}\n')
        hook.chmod(0o755)
    run_revert(server, db, hooks=HookConfig(directory=str(tmp_path), timeout=10))
    assert seen.read_text().splitlines() == [f"{e} revert revert to {old}" for e in
                                             ("startup", "before-cutover", "success")]


def test_a_text_key_keeps_dropped_values_through_the_upsert(server: Dsn, db: str) -> None:
    """A text primary key is never updated in place: every flush of the revert is the
    upsert (sql.upsert_keys), which must keep the dropped column's values."""
    conn = connect(server, db)
    execute(conn, "CREATE TABLE t (k VARCHAR(16) PRIMARY KEY, v INT NOT NULL, "
                  "extra INT NOT NULL DEFAULT 7)",
            "INSERT INTO t VALUES ('a', 1, 100), ('b', 2, 200), ('c', 3, 300)")
    migrate(config(server, db, "DROP COLUMN extra"))
    execute(conn, "UPDATE t SET v = 10 WHERE k = 'a'", "DELETE FROM t WHERE k = 'b'",
            "INSERT INTO t VALUES ('d', 4)")
    run_revert(server, db)
    with conn.cursor() as cur:
        cur.execute("SELECT k, v, extra FROM t ORDER BY k")
        assert cur.fetchall() == (("a", 10, 100), ("c", 3, 300), ("d", 4, EXTRA_DEFAULT))
    conn.close()


def test_refused_while_t_has_triggers_or_foreign_keys(server: Dsn, db: str,
                                                      seeded: tuple[Conn, Writers]) -> None:
    """The old table has none of them (the migration carried them to the new T): a
    revert that swapped it back would drop them silently, so it is refused."""
    conn, _ = seeded
    execute(conn, "CREATE TABLE audit (n INT)",
            "CREATE TRIGGER t_ai AFTER INSERT ON t FOR EACH ROW INSERT INTO audit VALUES (1)")
    migrate(config(server, db, "ADD COLUMN a INT NULL"))
    refused(server, db, conn, RevertRefused, "trigger t_ai", "would be lost")
    execute(conn, "DROP TRIGGER t_ai",
            "CREATE TABLE child (id INT PRIMARY KEY, t_id BIGINT, "
            "CONSTRAINT fk_child FOREIGN KEY (t_id) REFERENCES t (id))")
    refused(server, db, conn, RevertRefused, "fk_child", "would be lost")


def test_revert_of_a_primary_key_change(server: Dsn, db: str,
                                        seeded: tuple[Conn, Writers]) -> None:
    """The migration changed the primary key; the revert walks the key both tables
    still share (the old PK, kept as a UNIQUE key) and brings the old PK back."""
    conn, writers = seeded
    before = shape(conn)
    migrate(config(server, db, "DROP PRIMARY KEY, ADD PRIMARY KEY (v, id), "
                               "ADD UNIQUE KEY id_uq (id)"))
    writers.burst(40, seed=5)
    run_revert(server, db)
    writers.burst(20, seed=6)
    assert shape(conn) == before
    assert_same_rows(conn, "t", "mirror", COMMON, ["id"])


@pytest.mark.parametrize("created", [
    "CREATE TRIGGER t_ai AFTER INSERT ON t FOR EACH ROW INSERT INTO audit VALUES (1)",
    "CREATE TABLE child (id INT PRIMARY KEY, t_id BIGINT, "
    "CONSTRAINT fk_child FOREIGN KEY (t_id) REFERENCES t (id))",
], ids=["trigger", "child-foreign-key"])
def test_a_relation_created_during_the_revert_stops_it(
        server: Dsn, db: str, seeded: tuple[Conn, Writers], created: str) -> None:
    """Checked again under the write block: the RENAME would carry it to the old-table
    name and the new T would lack it."""
    conn, _ = seeded
    execute(conn, "CREATE TABLE audit (n INT)")
    migrate(config(server, db, "ADD COLUMN a INT NULL"))
    other = connect(server, db)          # another session's DDL
    faults.register("after_checksum", lambda: execute(other, created))
    try:
        with pytest.raises(TableChanged, match="created during the revert"):
            run_revert(server, db)
    finally:
        faults.clear()
        other.close()
    assert "a" in columns(conn)          # T is still the migrated table


def test_t_dropped_during_the_revert_is_said_so(server: Dsn, db: str,
                                               seeded: tuple[Conn, Writers]) -> None:
    """Another session renames T away mid-revert: the revert says T disappeared (not
    "T is unchanged"), removes its checkpoint, and leaves the old table recorded."""
    conn, _ = seeded
    old = migrate(config(server, db, "ADD COLUMN a INT NULL")).old_table
    other = connect(server, db)

    def rename_away() -> None:
        with other.cursor() as cur:
            cur.execute("RENAME TABLE t TO t_elsewhere")

    faults.register("after_checkpoint", rename_away)
    try:
        with pytest.raises(TableVanished, match="disappeared"):
            run_revert(server, db)
    finally:
        faults.clear()
        other.close()
    assert {"t_elsewhere", old} <= tables(conn) and "_t_chkpnt" not in tables(conn)


def test_dropped_column_of_a_table_walked_by_its_unique_key(server: Dsn, db: str) -> None:
    """A table without a primary key, walked by its UNIQUE NOT NULL key: that key is
    the revert's own, not "another UNIQUE key", so a dropped column comes back."""
    conn = connect(server, db)
    execute(conn, "CREATE TABLE t (id INT NOT NULL, v INT NOT NULL, gone INT NOT NULL "
                  "DEFAULT 7, UNIQUE KEY uk (id)) ENGINE=InnoDB",
            "INSERT INTO t VALUES (1, 1, 10), (2, 2, 20), (3, 3, 30)")
    migrate(config(server, db, "DROP COLUMN gone"))
    execute(conn, "INSERT INTO t VALUES (4, 4)", "UPDATE t SET v = 9 WHERE id = 1")
    run_revert(server, db)
    with conn.cursor() as cur:
        cur.execute("SELECT id, v, gone FROM t ORDER BY id")
        assert [tuple(r) for r in cur.fetchall()] == [(1, 9, 10), (2, 2, 20), (3, 3, 30),
                                                      (4, 4, 7)]
    conn.close()


CI = "VARCHAR(16) CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci NOT NULL"
BIN = "VARCHAR(16) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL"
STRICTER = {   # (t's columns, the migration): 'a' and 'A' one value before, two after
    "pk-collation": (f"k {CI} PRIMARY KEY, v INT NOT NULL", f"MODIFY k {BIN}"),
    "pk-binary": (f"k {CI} PRIMARY KEY, v INT NOT NULL", "MODIFY k VARBINARY(64) NOT NULL"),
    "unique-collation": (f"id INT AUTO_INCREMENT PRIMARY KEY, k {CI}, v INT NOT NULL, "
                         "UNIQUE KEY k_u (k)", f"MODIFY k {BIN}"),
}


@pytest.mark.parametrize("variant", sorted(STRICTER))
def test_keys_the_old_table_takes_for_one_stop_the_revert(server: Dsn, db: str,
                                                         variant: str) -> None:
    """A migration made a UNIQUE key compare more strictly: t can hold 'a' and 'A', the
    old table only one of them. Rows there before the revert are refused up front
    (exit 4), rows written during it stop the flush that meets them (exit 10), also
    after the checksum; t unchanged either way, never a row overwritten."""
    columns_, alter = STRICTER[variant]
    conn = connect(server, db)
    execute(conn, f"CREATE TABLE t ({columns_})",
            "INSERT INTO t (k, v) VALUES ('a', 1), ('b', 2), ('c', 3)")
    migrate(config(server, db, alter))
    execute(conn, "INSERT INTO t (k, v) VALUES ('A', 10)")
    refused(server, db, conn, RevertRefused, "takes for one value", "(k)", "'a'", "'A'")

    execute(conn, "DELETE FROM t WHERE k = 'A'")
    migrated = shape(conn)
    faults.register("after_checksum",
                    lambda: execute(conn, "INSERT INTO t (k, v) VALUES ('B', 20)"))
    try:
        with pytest.raises(DataError) as caught:
            run_revert(server, db)
    finally:
        faults.clear()
    assert "'b'" in caught.value.message, caught.value     # the value both rows hold
    assert "revert --resume" in caught.value.hint
    assert shape(conn) == migrated and "_t_chkpnt" in tables(conn)

    execute(conn, "UPDATE t SET k = 'B2' WHERE k = 'B'")
    run_revert(server, db, resume=True)
    assert "utf8mb4_general_ci" in shape(conn)
    with conn.cursor() as cur:
        cur.execute("SELECT k, v FROM t ORDER BY v")
        assert [(str(k), v) for k, v in cur.fetchall()] == [("a", 1), ("b", 2), ("c", 3),
                                                           ("B2", 20)]
    conn.close()


ZONE = "+05:30"


@pytest.fixture
def zone(server: Dsn) -> Iterator[str]:
    """The server's global time_zone fixed off UTC for this test, restored afterwards
    (the server is shared by the whole pytest session). Every onlineddl session and the
    test's own connections (opened after) take it."""
    admin = connect(server)
    before = scalar_row(admin, "SELECT @@GLOBAL.time_zone")[0]
    execute(admin, f"SET GLOBAL time_zone = '{ZONE}'")
    try:
        yield ZONE
    finally:
        execute(admin, f"SET GLOBAL time_zone = '{before}'")
        admin.close()


def on_both(conn: Conn, point: str, statements: list[str], per_pass: int = 1) -> None:
    """At each pass through `point`, the next `per_pass` statements, each on t and on
    the mirror ({t})."""
    pending = list(statements)

    def write() -> None:
        for statement in pending[:per_pass]:
            execute(conn, statement.format(t="t"), statement.format(t="mirror"))
        del pending[:per_pass]

    faults.register(point, write)


def all_rows(conn: Conn, table: str) -> list[tuple[Any, ...]]:
    with conn.cursor() as cur:
        cur.execute(f"SELECT * FROM `{table}` ORDER BY 1")
        return [tuple(r) for r in cur.fetchall()]


@pytest.mark.parametrize("ts", ["TIMESTAMP", "TIMESTAMP(6)"])
def test_revert_of_a_timestamp_key_in_a_zone_off_utc(server: Dsn, db: str, zone: str,
                                                     ts: str) -> None:
    """The walked key is a TIMESTAMP and the server's zone +05:30: the binlog hands the
    keys out in UTC (zones.py moves them), the sessions read them in the zone. Writers
    change t and the mirror (same wall-clock literals: same instants) during the
    migration and the revert (after the checksum too); after the revert t equals the
    mirror, every column (the dropped one too: rows inserted since take its default on
    both)."""
    frac = ".25" if "(" in ts else ""

    def at(i: int) -> str:
        return f"2024-01-01 0{i // 10}:00:{i:02d}{frac}"

    conn = connect(server, db)
    for table in ("t", "mirror"):
        execute(conn, f"CREATE TABLE {table} (ts {ts} NOT NULL PRIMARY KEY, v INT NOT NULL, "
                      "extra INT NOT NULL DEFAULT 7)")
        with conn.cursor() as cur:
            cur.executemany(f"INSERT INTO {table} (ts, v, extra) VALUES (%s, %s, %s)",
                            [(at(i), i, i * 3) for i in range(1, 40)])
    on_both(conn, "after_chunk", [
        f"UPDATE {{t}} SET v = v + 100 WHERE ts = '{at(35)}'",
        f"DELETE FROM {{t}} WHERE ts = '{at(5)}'",
        "INSERT INTO {t} (ts, v) VALUES ('2023-12-31 23:59:59', 7)",
        f"UPDATE {{t}} SET ts = '2030-06-01 05:29:00' WHERE ts = '{at(12)}'"])
    try:
        migrate(config(server, db, "DROP COLUMN extra, ADD COLUMN z INT NULL",
                       tuning=Tuning(chunk_rows_initial=4, chunk_rows_min=2,
                                     chunk_rows_max=6, checkpoint_interval=0.3)))
    finally:
        faults.clear()
    for table in ("t", "mirror"):
        execute(conn, f"INSERT INTO {table} (ts, v) VALUES ('2024-01-01 05:30:00', 1)",
                f"UPDATE {table} SET v = -3 WHERE ts = '{at(3)}'")
    on_both(conn, "applier_started", [
        f"UPDATE {{t}} SET v = v + 1 WHERE ts = '{at(21)}'",
        "INSERT INTO {t} (ts, v) VALUES ('1999-12-31 18:30:00', 2)",
        f"DELETE FROM {{t}} WHERE ts = '{at(31)}'"], per_pass=3)
    on_both(conn, "after_checksum", [
        f"UPDATE {{t}} SET ts = '2024-01-01 00:00:00' WHERE ts = '{at(27)}'",
        f"UPDATE {{t}} SET v = 9 WHERE ts = '{at(1)}'"], per_pass=2)
    try:
        run_revert(server, db)
    finally:
        faults.clear()
    assert columns(conn) == ["ts", "v", "extra"]
    got, want = all_rows(conn, "t"), all_rows(conn, "mirror")
    assert [r[:2] for r in got] == [r[:2] for r in want]
    # The dropped column: kept, but a row whose key moved since the swap is a new row
    # (docs/revert.md, Limits) and takes the default; the mirror was never migrated.
    moved = datetime.datetime(2024, 1, 1)
    assert {r[0]: r[2] for r in got} == {r[0]: 7 if r[0] == moved else r[2] for r in want}
    assert len(got) == 40 and got[0][1:] == (2, 7)     # the 1999 row, its instant kept
    conn.close()


@pytest.mark.parametrize("change", ["ADD UNIQUE KEY id_v (id, v)",
                                    "MODIFY name VARCHAR(80) CHARACTER SET utf8mb4 NULL"],
                         ids=["unique-key", "column"])
def test_the_old_table_changed_during_the_revert_stops_it(
        server: Dsn, db: str, seeded: tuple[Conn, Writers], change: str) -> None:
    """Another session's ALTER of the table the revert brings back: what the revert
    chose from its definition (REPLACE without another UNIQUE key, the checks) no longer
    holds. Seen under the write block before the swap: TableChanged, t unchanged."""
    conn, writers = seeded
    old = migrate(config(server, db, "ADD COLUMN a INT NULL")).old_table
    writers.burst(20, seed=7)
    other = connect(server, db)
    faults.register("after_checksum", lambda: execute(other, f"ALTER TABLE `{old}` {change}"))
    try:
        with pytest.raises(TableChanged, match="changed by another session") as caught:
            run_revert(server, db)
    finally:
        faults.clear()
        other.close()
    assert "onlineddl cleanup" in caught.value.hint
    assert "a" in columns(conn)            # t is still the migrated table
    assert old in tables(conn)
    if change.startswith("ADD UNIQUE"):     # discarded, then reverted as it is now
        cleanup(server, db, "t")
        run_revert(server, db)
        assert "a" not in columns(conn) and "id_v" in shape(conn)
        assert_same_rows(conn, "t", "mirror", COMMON, ["id"])


def test_a_stricter_key_without_collisions_reverts_under_writes(server: Dsn, db: str) -> None:
    """The walked key made stricter by the migration, writes during the revert that
    never collide (new keys, updates, deletes, a key whose letter case changed): every
    flush checks the key first and the revert finishes with t equal to the mirror, the
    dropped column kept."""
    conn = connect(server, db)
    for table in ("t", "mirror"):
        execute(conn, f"CREATE TABLE {table} (k {CI} PRIMARY KEY, v INT NOT NULL, "
                      "gone INT NOT NULL DEFAULT 7)")
        with conn.cursor() as cur:
            cur.executemany(f"INSERT INTO {table} (k, v, gone) VALUES (%s, %s, %s)",
                            [(f"k{i:04d}", i, i * 3) for i in range(1, 101)])
    migrate(config(server, db, f"MODIFY k {BIN}, DROP COLUMN gone"))

    def write(first: int, moved: int) -> None:
        for table in ("t", "mirror"):
            with conn.cursor() as cur:
                cur.executemany(f"INSERT INTO {table} (k, v) VALUES (%s, %s)",
                                [(f"new{i:04d}", i) for i in range(first, first + 150)])
            execute(conn, f"UPDATE {table} SET v = v + 1 WHERE BINARY k LIKE 'k00%%'",
                    f"DELETE FROM {table} WHERE k IN ('k0010', 'new{first + 5:04d}')",
                    f"UPDATE {table} SET k = 'K{moved:04d}' WHERE k = 'k{moved:04d}'")

    faults.register("applier_started", lambda: write(1, 1))
    faults.register("after_checksum", lambda: write(501, 50))
    try:
        run_revert(server, db)
    finally:
        faults.clear()
    assert columns(conn) == ["k", "v", "gone"]
    got, want = all_rows(conn, "t"), all_rows(conn, "mirror")
    assert [r[:2] for r in got] == [r[:2] for r in want] and len(got) == 397
    # The key whose case changed is a moved key: a new row for the old table.
    assert {r[0]: r[2] for r in got} == {r[0]: 7 if r[0] in ("K0001", "K0050") else r[2]
                                         for r in want}
    conn.close()

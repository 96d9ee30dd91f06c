"""`onlineddl revert`: the most recent swap undone, with every write made since.

Writers (tests/workload.py: each transaction changes t and a mirror that is never
migrated) run before, during and after the migration and during the revert, checksum
repair off: t must equal the mirror row for row on the common columns after each run.
A column the migration dropped (`extra`, on t only: the writers never name it) comes
back with its old value for old rows and its default for rows inserted since.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from helpers import Conn, cli_env, columns, connect, recorded_old_tables, scalar, tables
from workload import IntModel, Writers, assert_same_rows, make_tables

from onlineddl import faults
from onlineddl.commands import status
from onlineddl.config import Dsn, MigrationConfig, Tuning
from onlineddl.errors import (
    ArtifactsExist,
    DataError,
    LockHeld,
    ResumeRefused,
    RevertRefused,
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
    import re
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
    after_migrate = shape(conn)
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
    assert got == {**{i: i * 3 for i in FIXED if i != 100002}, 500001: EXTRA_DEFAULT}
    # The new-schema table is kept and recorded as the revert's old table.
    assert result.old_table in tables(conn)
    assert shape(conn, result.old_table) == after_migrate
    assert recorded_old_tables(conn)[-1] == result.old_table
    assert migrated.old_table not in tables(conn)
    assert migrated.old_table not in recorded_old_tables(conn)
    assert "_t_chkpnt" not in tables(conn)

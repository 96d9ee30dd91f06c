"""Migrations under concurrent writes, checksum repair OFF: any lost write fails loudly.

Writes are injected at exact moments with named fault points (no sleeps):
- `copy_start`: after the binlog applier started, before the first chunk is read, the
  window where a watermark filter that reads "not started" as "everything is above me"
  dropped writes in another tool;
- `after_chunk`: at every chunk boundary, just after the watermark moved.
Background writers run the whole time, across the cutover.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from helpers import connect
from workload import IntModel, Writers, assert_same_rows, make_tables

from onlineddl import faults
from onlineddl.config import Dsn, MigrationConfig, Tuning
from onlineddl.migration import migrate

# Two copy workers: chunks complete out of order, the watermark must still be a prefix.
SMALL_CHUNKS = Tuning(chunk_rows_initial=200, chunk_rows_min=50, chunk_rows_max=400,
                      progress_interval=1.0, checkpoint_interval=0.5, copy_workers=2)



def config(server: Dsn, db: str, alter: str, **kw: Any) -> MigrationConfig:
    return MigrationConfig(dsn=server, database=db, table="t", alter=alter, repair=False,
                           tuning=kw.pop("tuning", SMALL_CHUNKS), **kw)


def test_writers_during_whole_migration(server: Dsn, db: str,
                                        caplog: pytest.LogCaptureFixture) -> None:
    rows = 6000
    model = IntModel(id_max=rows + 500)
    conn = connect(server, db)
    make_tables(conn, model, rows)
    writers = Writers(server, db, "t", "mirror", model, threads=3)
    faults.register("copy_start", lambda: writers.burst(200, seed=999))
    bursts = writers.burst_at("after_chunk", 15)
    writers.start()
    try:
        result = migrate(config(server, db, "ADD COLUMN extra INT NOT NULL DEFAULT 5, "
                                            "ADD INDEX v_idx (v)"))
        writers.burst(50, seed=4242)  # after cutover: writes land in the new table
    finally:
        writers.stop()
    assert not writers.errors, writers.errors[:5]
    assert writers.committed > 500
    assert len(bursts) > 10, "the run should span many chunks"
    n = assert_same_rows(conn, "t", "mirror", ["id", "name", "v", "data", "note"], ["id"])
    assert n > 0
    with conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM t WHERE extra <> 5")
        assert cur.fetchone()[0] == 0
        cur.execute("SHOW INDEX FROM t WHERE Key_name = 'v_idx'")
        assert cur.fetchall()
        cur.execute("SHOW TABLES")
        tables = {r[0] for r in cur.fetchall()}
    assert tables - {"_onlineddl_old_tables"} == {"t", "mirror", result.old_table}
    assert result.rows_checked == n or result.rows_checked > 0
    # Two workers on an AUTO_INCREMENT table: told when the server makes them take turns.
    with conn.cursor() as cur:
        cur.execute("SELECT @@GLOBAL.innodb_autoinc_lock_mode")
        takes_turns = int(cur.fetchone()[0]) < 2
    assert ("the extra workers only wait" in caplog.text) == takes_turns


def test_dead_zone_burst_only(server: Dsn, db: str) -> None:
    """Only writes between applier start and the first chunk read; nothing else moves."""
    rows = 3000
    model = IntModel(id_max=rows + 200)
    conn = connect(server, db)
    make_tables(conn, model, rows)
    writers = Writers(server, db, "t", "mirror", model)
    faults.register("copy_start", lambda: writers.burst(400, seed=7))
    migrate(config(server, db, "ADD COLUMN c2 INT NULL"))
    assert not writers.errors
    assert writers.committed >= 300
    assert_same_rows(conn, "t", "mirror", ["id", "name", "v", "data", "note"], ["id"])


def test_chunk_boundary_writes_single_writer_per_boundary(server: Dsn, db: str) -> None:
    """Deletes of rows not yet copied, re-inserts of deleted keys and key moves, each
    committed exactly at a chunk boundary, with larger bursts and tiny chunks."""
    rows = 2000
    model = IntModel(id_max=rows)
    conn = connect(server, db)
    make_tables(conn, model, rows)
    writers = Writers(server, db, "t", "mirror", model)
    count = {"n": 0}

    def at_boundary() -> None:
        count["n"] += 1
        writers.burst(40, seed=10_000 + count["n"])

    faults.register("after_chunk", at_boundary)
    tiny = dataclasses.replace(SMALL_CHUNKS, chunk_rows_initial=50, chunk_rows_max=60)
    migrate(config(server, db, "MODIFY COLUMN v BIGINT NOT NULL DEFAULT 0", tuning=tiny))
    assert not writers.errors
    assert count["n"] >= 20
    assert_same_rows(conn, "t", "mirror", ["id", "name", "v", "data", "note"], ["id"])
    with conn.cursor() as cur:
        cur.execute("SELECT DATA_TYPE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA=%s "
                    "AND TABLE_NAME='t' AND COLUMN_NAME='v'", (db,))
        assert cur.fetchone()[0] == "bigint"


def test_backpressure_with_a_tiny_delta_map(server: Dsn, db: str) -> None:
    """With room for only 20 changed keys the reader must pause and resume, never drop."""
    rows = 3000
    model = IntModel(id_max=rows + 200)
    conn = connect(server, db)
    make_tables(conn, model, rows)
    writers = Writers(server, db, "t", "mirror", model, threads=3, pause=0.002)
    faults.register("copy_start", lambda: writers.burst(300, seed=5))
    tiny = dataclasses.replace(SMALL_CHUNKS, max_backlog=20, flush_workers=1)
    writers.start()
    try:
        migrate(config(server, db, "ADD COLUMN c3 INT NULL", tuning=tiny))
    finally:
        writers.stop()
    assert not writers.errors, writers.errors[:3]
    assert_same_rows(conn, "t", "mirror", ["id", "name", "v", "data", "note"], ["id"])

"""The tool's connections killed from the server side (KILL) at exact moments.

Mid-copy and mid-cutover the run reconnects and carries on, or stops resumably; losing
the runner-lock connection stops the run before cutover (it no longer owns the table).
No write may be lost either way. Repair is off.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from helpers import connect
from workload import IntModel, Seeded, Writers, assert_same_rows, make_tables

from onlineddl import faults
from onlineddl.config import Dsn, MigrationConfig, Tuning
from onlineddl.errors import Aborted
from onlineddl.migration import migrate
from onlineddl.runlock import lock_name

ROWS = 3000
COLUMNS = ["id", "name", "v", "data", "note"]
TUNING = Tuning(chunk_rows_initial=200, chunk_rows_max=400, checkpoint_interval=0.3)



@pytest.fixture
def setup(server: Dsn, db: str) -> Iterator[Seeded]:
    model = IntModel(id_max=ROWS + 300)
    conn = connect(server, db)
    make_tables(conn, model, ROWS)
    yield conn, model
    conn.close()


def config(server: Dsn, db: str, **kw: Any) -> MigrationConfig:
    return MigrationConfig(dsn=server, database=db, table="t", repair=False, tuning=TUNING,
                           alter="ADD COLUMN added INT NULL", **kw)


def kill_tool_connections(server: Dsn, db: str, *, spare_lock: bool,
                          with_database: bool, spare: tuple[int, ...] = ()) -> int:
    """KILL the migration's own connections (they have no default database, except the
    cutover's when `with_database`); spare the runner lock's when asked."""
    killer = connect(server)
    with killer.cursor() as cur:
        cur.execute("SELECT IS_USED_LOCK(%s)", (lock_name(db, "t"),))
        lock_holder = cur.fetchone()[0]
        cur.execute("SELECT ID, DB FROM information_schema.PROCESSLIST "
                    "WHERE ID <> CONNECTION_ID() AND USER = %s", (server.user,))
        victims = [i for i, d in cur.fetchall()
                   if (d is None or (with_database and d == db))
                   and not (spare_lock and i == lock_holder) and i not in spare]
        for conn_id in victims:
            try:
                cur.execute(f"KILL {int(conn_id)}")
            except Exception:  # it may have closed on its own meanwhile
                pass
    killer.close()
    return len(victims)


def test_kill_connections_mid_copy_reconnects(server: Dsn, db: str, setup: Seeded) -> None:
    conn, model = setup
    writers = Writers(server, db, "t", "mirror", model, threads=2, pause=0.002)
    count = {"chunks": 0, "killed": 0}

    def at_chunk() -> None:
        count["chunks"] += 1
        if count["chunks"] in (3, 6):
            count["killed"] += kill_tool_connections(server, db, spare_lock=True,
                                                     with_database=False)

    faults.register("after_chunk", at_chunk)
    writers.start()
    try:
        migrate(config(server, db))
    finally:
        writers.stop()
    assert count["killed"] >= 6  # control, copier, applier, binlog dump, twice
    assert not writers.errors, writers.errors[:3]
    assert_same_rows(conn, "t", "mirror", COLUMNS, ["id"])


def test_losing_the_runner_lock_stops_before_cutover(server: Dsn, db: str, setup: Seeded
                                                     ) -> None:
    conn, model = setup
    writers = Writers(server, db, "t", "mirror", model, threads=2, pause=0.002)
    count = {"chunks": 0}

    def at_chunk() -> None:
        count["chunks"] += 1
        if count["chunks"] == 3:
            killer = connect(server)
            with killer.cursor() as cur:
                cur.execute("SELECT IS_USED_LOCK(%s)", (lock_name(db, "t"),))
                cur.execute(f"KILL {int(cur.fetchone()[0])}")
            killer.close()

    faults.register("after_chunk", at_chunk)
    writers.start()
    try:
        with pytest.raises(Aborted, match="lock"):
            migrate(config(server, db))
        with conn.cursor() as cur:
            cur.execute("SHOW COLUMNS FROM t LIKE 'added'")
            assert cur.fetchone() is None  # no cutover happened
        faults.clear()
        migrate(config(server, db, resume=True))
    finally:
        writers.stop()
    assert not writers.errors, writers.errors[:3]
    assert_same_rows(conn, "t", "mirror", COLUMNS, ["id"])


def test_kill_connections_mid_cutover_retries(server: Dsn, db: str, setup: Seeded) -> None:
    conn, model = setup
    writers = Writers(server, db, "t", "mirror", model)
    bursts = {"n": 0, "killed": 0}

    def at_chunk() -> None:
        bursts["n"] += 1
        writers.burst(10, seed=bursts["n"])

    def at_cutover() -> None:
        if not bursts["killed"]:  # the first attempt only
            bursts["killed"] = kill_tool_connections(server, db, spare_lock=True,
                                                     with_database=True,
                                                     spare=(conn.thread_id(),))

    faults.register("after_chunk", at_chunk)
    faults.register("cutover_started", at_cutover)
    result = migrate(config(server, db))
    writers.burst(20, seed=99)
    assert bursts["killed"] >= 4
    assert result.cutover_attempts == 2
    assert not writers.errors, writers.errors[:3]
    assert_same_rows(conn, "t", "mirror", COLUMNS, ["id"])

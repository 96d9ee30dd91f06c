"""The race the watermark filter exists for, forced deterministically.

A chunk's INSERT ... SELECT reads through one read view taken when the statement starts.
We make the copier block half-way through chunk 1 (a test transaction holds a row of
the shadow table it must insert), delete a row further on in that chunk, let the applier
see and flush the delete, then let the copier go on. Its read view still shows the
deleted row, so it copies it. Only the filter (defer keys not yet below the low
watermark, never apply them early) makes the applier remove it afterwards; without the
filter the stale row survives and the checksum (repair off) fails the run.

Removing the filter, or treating "no chunk done yet" as "every key is below", makes this
test fail (checked by hand; see the README).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from helpers import Conn, connect, scalar
from workload import IntModel, assert_same_rows, make_tables

from onlineddl import faults
from onlineddl.applier import FlushTarget, sync_keys
from onlineddl.config import Dsn, MigrationConfig, Tuning
from onlineddl.db import Session
from onlineddl.flavor import detect
from onlineddl.migration import Migration

BLOCK_AT = 50     # the copier stops here in chunk 1 (ids 1..200)
DELETED = 150     # deleted while it waits; still visible to its read view


def test_delete_during_a_chunk_read_is_not_lost(server: Dsn, db: str) -> None:
    model = IntModel(id_max=1000)
    conn = connect(server, db)
    make_tables(conn, model, 1000)
    blocker = connect(server, db, autocommit=False)
    faults.register("copy_start", lambda: hold_shadow_row(blocker))
    tuning = Tuning(chunk_rows_initial=200, chunk_rows_max=200, copy_workers=1,
                    lock_wait_timeout=20)
    migration = Migration(MigrationConfig(dsn=server, database=db, table="t",
                                          alter="ADD COLUMN c INT NULL", repair=False,
                                          tuning=tuning))
    outcome: dict[str, Any] = {}
    runner = threading.Thread(target=run, args=(migration, outcome))
    runner.start()
    try:
        wait_for_lock_wait(conn)
        with conn.cursor() as cur:  # delete a row the blocked chunk has yet to reach
            cur.execute("BEGIN")
            cur.execute("DELETE FROM t WHERE id = %s", (DELETED,))
            cur.execute("DELETE FROM mirror WHERE id = %s", (DELETED,))
            cur.execute("COMMIT")
        control = Session(server, name="test")
        head = detect(str(control.scalar("SELECT VERSION()"))).current_position(control)
        control.close()
        applier = migration.applier
        assert applier is not None
        applier.wait_for(head, 30, "the delete")
        applier.flush_now()   # the applier's chance to act on the delete, before the copy
    finally:
        blocker.rollback()    # the copier goes on with its old read view
        runner.join(timeout=120)
    assert "error" not in outcome, outcome.get("error")
    assert_same_rows(conn, "t", "mirror", ["id", "name", "v", "data", "note"], ["id"])


def hold_shadow_row(blocker: Conn) -> None:
    with blocker.cursor() as cur:
        cur.execute("INSERT INTO _t_new (id, name, v) VALUES (%s, 'blocker', 0)", (BLOCK_AT,))


def run(migration: Migration, outcome: dict[str, Any]) -> None:
    try:
        outcome["result"] = migration.run()
    except Exception as exc:  # reported to the test thread
        outcome["error"] = exc


def wait_for_lock_wait(conn: Conn, table: str = "_t_new",
                       gave_up: Callable[[], bool] = lambda: False) -> None:
    """Until a statement waits for a row lock on `table` (the copier's INSERT ... SELECT
    for the blocker's row, by default); fails at once if `gave_up()` says it cannot."""
    deadline = time.monotonic() + 30
    with conn.cursor() as cur:
        while True:
            # Only the live TRANSACTIONS section: the LATEST DETECTED DEADLOCK section of
            # an earlier test also says "LOCK WAIT". (INNODB_TRX stayed empty here.)
            cur.execute("SHOW ENGINE INNODB STATUS")
            live = cur.fetchone()[2].split("\nTRANSACTIONS\n")[-1]
            if "LOCK WAIT" in live and f"`{table}`" in live:
                return
            assert not gave_up(), "it finished without waiting for the lock"
            assert time.monotonic() < deadline, "it never blocked"
            time.sleep(0.005)


@pytest.mark.parametrize("in_place", [True, False], ids=["update_join", "replace"])
def test_a_flush_waits_for_a_change_not_yet_committed(server: Dsn, db: str,
                                                      in_place: bool) -> None:
    """The server sends a transaction's binlog events before other sessions' plain reads
    can see it, so the applier may flush a key while its writer is still committing. The
    flush must read the source with locks (wait, then see the committed row), not from a
    snapshot (the old row, and the change would be lost until the key changed again).
    Both ways of writing the shadow are held to it."""
    conn = connect(server, db)
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE t (id INT PRIMARY KEY, v INT)")
        cur.execute("CREATE TABLE _t_new LIKE t")
        cur.execute("INSERT INTO t VALUES (1, 1), (2, 2)")
        cur.execute("INSERT INTO _t_new SELECT * FROM t")
    writer = connect(server, db, autocommit=False)
    with writer.cursor() as cur:
        cur.execute("UPDATE t SET v = 100 WHERE id = 1")    # not committed yet
    target = FlushTarget(db, "t", "_t_new", ("`id`", "`v`"), ("id", "v"), ("id",),
                         other_unique=False, integer_key=True)
    assert target.updates_in_place
    # READ COMMITTED, not the applier's REPEATABLE READ: there the server locks the read
    # side of any REPLACE ... SELECT anyway, so only here does dropping the statement's
    # own LOCK IN SHARE MODE fail this test (checked by hand).
    session = Session(server, name="test", database=db, isolation="READ COMMITTED",
                      lock_wait_timeout=20)
    flusher = threading.Thread(target=sync_keys, args=(session, target, [(1,), (2,)]),
                               kwargs={"atomic": True, "in_place": in_place})
    flusher.start()
    try:
        wait_for_lock_wait(conn, "t", gave_up=lambda: not flusher.is_alive())
        writer.commit()
    finally:
        writer.rollback()
        flusher.join(timeout=30)
        session.close()
    assert scalar(conn, "SELECT v FROM _t_new WHERE id = 1") == 100

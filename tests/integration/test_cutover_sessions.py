"""Other sessions during the cutover, and a tool that stops talking while it holds locks.

- A transaction holding a metadata lock on `_t_new` across the cutover: the swap must
  never let writers into the old table (the RENAME would wait for `_t_new`, not T);
  attempts are called off with T unchanged until it ends. Repair is off: a lost write
  fails the row comparison with the mirror.
- Another session's ALTER (ADD COLUMN, DROP INDEX) queued while the cutover holds T:
  the run stops at once with exit 13 (TableChanged), the ALTER lands on T, nothing of
  it vanishes into the old table.
- A drain round stuck on a row lock while T is blocked: the block ends within its bound.
- A tool process frozen (SIGSTOP) while it holds the cutover's lock and the runner lock:
  the server drops both within their idle limits.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from helpers import Conn, columns, connect, old_tables, scalar, tables
from workload import IntModel, Seeded, Writers, assert_same_rows, make_tables

from onlineddl import faults
from onlineddl.config import Dsn, MigrationConfig, Tuning
from onlineddl.errors import TableChanged
from onlineddl.migration import migrate
from onlineddl.othersessions import Watcher
from onlineddl.runlock import lock_name

ROWS = 2000
COLUMNS = ["id", "name", "v", "data", "note"]
TUNING = Tuning(chunk_rows_initial=500, chunk_rows_max=1000, checkpoint_interval=0.3)
# Tests marked mariadb_only interleave with MariaDB's two-connection protocol. MySQL
# renames under its own LOCK TABLES (the shadow locked too), where the same interleavings
# would wait on that lock instead; there a DDL queued meanwhile runs on the new T.


@pytest.fixture
def setup(server: Dsn, db: str) -> Iterator[Seeded]:
    model = IntModel(id_max=ROWS + 300)
    conn = connect(server, db)
    make_tables(conn, model, ROWS)
    yield conn, model
    conn.close()


def config(server: Dsn, db: str, tuning: Tuning = TUNING, **kw: Any) -> MigrationConfig:
    return MigrationConfig(dsn=server, database=db, table="t", repair=False, tuning=tuning,
                           alter="ADD COLUMN added INT NULL", **kw)


def wait_for_state(conn: Conn, like: str, state: str = "Waiting for table metadata lock",
                   timeout: float = 20) -> None:
    """Until a statement matching `like` is in `state` (PROCESSLIST)."""
    deadline = time.monotonic() + timeout
    with conn.cursor() as cur:
        while True:
            cur.execute("SELECT COUNT(*) FROM information_schema.PROCESSLIST "
                        "WHERE INFO LIKE %s AND STATE = %s", (like, state))
            if cur.fetchone()[0]:
                return
            assert time.monotonic() < deadline, f"no {like!r} in state {state!r}"
            time.sleep(0.005)


def in_thread(server: Dsn, db: str, statement: str, out: dict[str, Any]) -> threading.Thread:
    def run() -> None:
        other = connect(server, db)
        try:
            with other.cursor() as cur:
                cur.execute("SET SESSION lock_wait_timeout = 60")
                cur.execute(statement)
            out["done"] = time.monotonic()
        except Exception as exc:  # reported to the test
            out["error"] = exc
        finally:
            other.close()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


# --- item: a metadata lock on _t_new held across the cutover ---------------------------

@pytest.mark.mariadb_only
def test_a_transaction_reading_the_shadow_never_lets_writes_into_the_old_table(
        server: Dsn, db: str, setup: Seeded) -> None:
    """Once T is blocked, another session opens a transaction that reads `_t_new` and
    holds it for 3 seconds, while 4 writers run. Before, the RENAME queued on `_t_new`,
    the lock went, and 553-574 writes landed in the old table. Now each attempt is called off
    (T unchanged) until the reader ends, then the swap happens with every write."""
    conn, model = setup
    writers = Writers(server, db, "t", "mirror", model, threads=4, pause=0.001)
    reader = connect(server, db, autocommit=False)
    held = {"n": 0}

    def hold_shadow() -> None:
        if held["n"]:
            return
        held["n"] += 1
        with reader.cursor() as cur:
            cur.execute("SELECT COUNT(*) FROM _t_new")
        threading.Timer(3.0, reader.rollback).start()

    faults.register("cutover_started", hold_shadow)
    writers.start()
    try:
        result = migrate(config(server, db, tuning=Tuning(
            chunk_rows_initial=500, chunk_rows_max=1000, checkpoint_interval=0.3,
            cutover_attempts=10)))
    finally:
        writers.stop()
        reader.close()
    assert held["n"] == 1
    assert result.cutover_attempts >= 2      # the first was called off
    assert not writers.errors, writers.errors[:3]
    assert "added" in columns(conn, "t")
    assert_same_rows(conn, "t", "mirror", COLUMNS, ["id"])


@pytest.mark.parametrize("hold, release", [
    ("SELECT COUNT(*) FROM _t_new", "ROLLBACK"),
    ("HANDLER _t_new OPEN", "HANDLER _t_new CLOSE"),
], ids=["transaction", "handler"])
def test_a_session_holding_the_shadow_fails_attempts_before_writes_are_blocked(
        server: Dsn, db: str, setup: Seeded, hold: str, release: str) -> None:
    """Held from before T is blocked (an open transaction that read `_t_new`, or a
    HANDLER on it): the guard (LOCK TABLES _t_new WRITE, then let go) fails each
    attempt while writers never wait on T."""
    conn, _ = setup
    reader = connect(server, db, autocommit=False)
    held: list[bool] = []
    stop = threading.Event()
    stalls: list[float] = []

    def hold_shadow() -> None:
        if held:
            return
        held.append(True)
        with reader.cursor() as cur:
            cur.execute(hold)

        def let_go() -> None:
            with reader.cursor() as cur:
                cur.execute(release)
        threading.Timer(4.0, let_go).start()

    def write_all_along() -> None:
        writer = connect(server, db)
        with writer.cursor() as cur:
            while not stop.is_set():
                started = time.monotonic()
                cur.execute("UPDATE t SET v = v + 1 WHERE id = 1")
                cur.execute("UPDATE mirror SET v = v + 1 WHERE id = 1")
                if held:
                    stalls.append(time.monotonic() - started)
                time.sleep(0.01)
        writer.close()

    faults.register("cutover_paused", hold_shadow)
    thread = threading.Thread(target=write_all_along, daemon=True)
    thread.start()
    try:
        result = migrate(config(server, db, tuning=Tuning(
            chunk_rows_initial=500, chunk_rows_max=1000, cutover_attempts=10)))
    finally:
        stop.set()
        thread.join(timeout=30)
        reader.close()
    assert result.cutover_attempts >= 2
    assert stalls and max(stalls) < 0.5, max(stalls)   # a called-off block: >= 1 s
    assert_same_rows(conn, "t", "mirror", COLUMNS, ["id"])


# --- item: DDL from another session during the cutover ----------------------------------

@pytest.mark.mariadb_only
@pytest.mark.parametrize("ddl", ["ALTER TABLE t ADD COLUMN z INT NULL",
                                 "DROP INDEX k_v ON t"], ids=["add_column", "drop_index"])
def test_foreign_ddl_queued_under_the_cutover_lock_stops_the_run_on_t(
        server: Dsn, db: str, setup: Seeded, ddl: str) -> None:
    conn, _ = setup
    with conn.cursor() as cur:
        cur.execute("ALTER TABLE t ADD INDEX k_v (v)")
    out: dict[str, Any] = {}
    threads: list[threading.Thread] = []

    def queue_ddl() -> None:
        if threads:
            return
        threads.append(in_thread(server, db, ddl, out))
        wait_for_state(conn, ddl)

    faults.register("cutover_started", queue_ddl)
    started = time.monotonic()
    with pytest.raises(TableChanged) as caught:
        migrate(config(server, db))
    took = time.monotonic() - started
    threads[0].join(timeout=30)
    assert "error" not in out, out
    err = caught.value
    assert err.exit_code == 13
    assert ddl[:20] in err.message and "connection" in err.message
    assert "cleanup" in err.hint and "resumable" not in err.hint
    assert took < 20          # not 7 lock-wait retries of the drain
    names = tables(conn)
    assert old_tables(conn) == [] and "t_cutover" not in names and "_t_swap" not in names
    cols = columns(conn, "t")
    assert "added" not in cols                 # the swap was called off
    with conn.cursor() as cur:
        cur.execute("SHOW INDEX FROM t WHERE Key_name = 'k_v'")
        has_index = cur.fetchone() is not None
    if "z" in ddl:
        assert "z" in cols and has_index       # the operator's change is on T
    else:
        assert not has_index
    assert_same_rows(conn, "t", "mirror", COLUMNS, ["id"])


@pytest.mark.mariadb_only
def test_the_tripwire_reports_ddl_that_reached_the_old_table(
        server: Dsn, db: str, setup: Seeded,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """With the PROCESSLIST watch blinded, a queued ALTER runs on the old table right
    after the unlock (nothing to drain, so the swap goes ahead): the binlog shows it
    before our RENAME, and the run must fail saying so, never exit 0."""
    conn, _ = setup
    monkeypatch.setattr(Watcher, "look", lambda self: None)
    out: dict[str, Any] = {}
    threads: list[threading.Thread] = []
    ddl = "ALTER TABLE t ADD COLUMN z INT NULL"

    def queue_ddl() -> None:
        if threads:
            return
        threads.append(in_thread(server, db, ddl, out))
        wait_for_state(conn, ddl)

    faults.register("cutover_started", queue_ddl)
    with pytest.raises(TableChanged, match="between the drain and the swap") as caught:
        migrate(config(server, db))
    threads[0].join(timeout=30)
    (old,) = old_tables(conn)
    assert ddl in caught.value.message and old in caught.value.hint
    assert "z" in columns(conn, old) and "z" not in columns(conn, "t")


@pytest.mark.mariadb_only
def test_foreign_ddl_after_the_rename_queued_lands_on_t(server: Dsn, db: str, setup: Seeded
                                                        ) -> None:
    """An ALTER arriving once the RENAME waits for T queues behind it: the run either
    completes (the ALTER then runs on the new T) or calls the swap off (it runs on the
    old T, which stays T). Either way the column ends up on T, never on the old table alone."""
    conn, _ = setup
    out: dict[str, Any] = {}
    threads: list[threading.Thread] = []
    ddl = "ALTER TABLE t ADD COLUMN z INT NULL"

    def queue_ddl() -> None:
        if threads:
            return
        threads.append(in_thread(server, db, ddl, out))
        wait_for_state(conn, ddl)

    faults.register("rename_queued", queue_ddl)
    try:
        migrate(config(server, db))
        swapped = True
    except TableChanged:
        swapped = False
    threads[0].join(timeout=30)
    assert "error" not in out, out
    cols = columns(conn, "t")
    assert "z" in cols
    assert ("added" in cols) == swapped
    for old in old_tables(conn):
        assert "z" not in columns(conn, old)


# --- item: bounded blocks and frozen tools ----------------------------------------------

@pytest.mark.mariadb_only
def test_a_drain_round_stuck_on_a_row_lock_releases_the_block_within_its_bound(
        server: Dsn, db: str, setup: Seeded) -> None:
    """A change is pending when T is blocked, and another transaction holds every row
    of `_t_new`: the flush would wait innodb_lock_wait_timeout (10 s here). The block
    must end within block_timeout; the run then retries and succeeds."""
    conn, _ = setup
    holder = connect(server, db, autocommit=False)
    waited: dict[str, float] = {}

    def pending_change() -> None:
        if "pending" in waited:
            return
        waited["pending"] = 1
        with conn.cursor() as cur:   # reaches the binlog; the paused applier has not flushed it
            cur.execute("UPDATE t SET v = v + 1 WHERE id = 5")
            cur.execute("UPDATE mirror SET v = v + 1 WHERE id = 5")

    def hold_rows_and_write() -> None:
        if "held" in waited:
            return
        waited["held"] = 1
        with holder.cursor() as cur:
            cur.execute("SELECT COUNT(*) FROM _t_new FOR UPDATE")
        out: dict[str, Any] = {}
        started = time.monotonic()
        writer = in_thread(server, db, "UPDATE t SET note = 'w' WHERE id = 7", out)

        def measure() -> None:
            writer.join(timeout=30)
            waited["blocked"] = out.get("done", time.monotonic() + 99) - started
            holder.rollback()
        threading.Thread(target=measure, daemon=True).start()

    faults.register("cutover_paused", pending_change)
    faults.register("cutover_started", hold_rows_and_write)
    tuning = Tuning(chunk_rows_initial=500, chunk_rows_max=1000, block_timeout=2.0,
                    lock_wait_timeout=10, cutover_attempts=6)
    try:
        result = migrate(config(server, db, tuning=tuning))
    finally:
        holder.close()
    with conn.cursor() as cur:
        cur.execute("UPDATE mirror SET note = 'w' WHERE id = 7")
    assert waited["blocked"] < tuning.block_timeout + 1.5, waited
    assert result.cutover_attempts >= 2
    assert_same_rows(conn, "t", "mirror", COLUMNS, ["id"])


FROZEN_CHILD = textwrap.dedent("""
    import os, signal, sys
    from onlineddl import faults, runlock
    from onlineddl.config import Dsn, MigrationConfig, Tuning
    from onlineddl.migration import migrate
    runlock.IDLE_LIMIT = 3
    host, port, user, db = sys.argv[1:5]
    password = os.environ.get("ONLINEDDL_PASSWORD", "")
    faults.register("cutover_started", lambda: os.kill(os.getpid(), signal.SIGSTOP))
    migrate(MigrationConfig(dsn=Dsn(host=host, port=int(port), user=user, password=password),
                            database=db, table="t", alter="ADD COLUMN added INT NULL",
                            repair=False, tuning=Tuning(block_timeout=2.0)))
""")


def test_a_frozen_tool_releases_the_table_and_the_runner_lock(server: Dsn, db: str,
                                                              setup: Seeded) -> None:
    """The process stops (SIGSTOP) while its lock connection holds T: the server drops
    that connection after block_timeout + 2 s of silence, and the runner lock's after
    its idle limit, though the process still exists."""
    conn, _ = setup
    child = subprocess.Popen(
        [sys.executable, "-c", FROZEN_CHILD, server.host, str(server.port), server.user,
         db], env=dict(os.environ, ONLINEDDL_PASSWORD=server.password))
    try:
        wait_until_stopped(child.pid)
        started = time.monotonic()
        out: dict[str, Any] = {}
        writer = in_thread(server, db, "UPDATE t SET v = v + 1 WHERE id = 3", out)
        writer.join(timeout=30)
        assert "error" not in out, out
        assert out["done"] - started < 2.0 + 2 + 2, out["done"] - started
        deadline = time.monotonic() + 15
        while scalar(conn, f"SELECT IS_USED_LOCK('{lock_name(db, 't')}')") is not None:
            assert time.monotonic() < deadline, "the runner lock outlived its idle limit"
            time.sleep(0.2)
        assert child.poll() is None           # still alive, only frozen
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert "added" not in columns(conn, "t")  # T unchanged


def wait_until_stopped(pid: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with open(f"/proc/{pid}/stat") as stat:
            if stat.read().rsplit(")", 1)[1].split()[0] == "T":
                return
        assert time.monotonic() < deadline, "the tool never reached the cutover"
        time.sleep(0.05)

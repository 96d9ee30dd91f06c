"""One runner per table (seeds 001, 002, 004): a GET_LOCK on a dedicated connection.

The winner of 16 simultaneous runs is held before its cutover (postpone flag file)
until every other run has exited, so "exactly one does the work" does not depend on
timing.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import Conn, columns, connect, old_tables
from workload import IntModel, Writers, assert_same_rows

from onlineddl.config import Dsn
from onlineddl.runlock import lock_name

ALTER = "ADD COLUMN added INT NOT NULL DEFAULT 1"
COLUMNS = ["id", "name", "v", "data", "note"]


def cli(server: Dsn, db: str, table: str, *extra: str, command: str = "migrate"
        ) -> list[str]:
    args = [sys.executable, "-m", "onlineddl", command, "--host", server.host, "--port",
            str(server.port), "--user", server.user, "--database", db, "--table", table]
    if command == "migrate":
        args += ["--alter", ALTER, "--no-repair", "--chunk-size", "500"]
    return [*args, *extra]


def env(server: Dsn) -> dict[str, str]:
    out = dict(os.environ, ONLINEDDL_PASSWORD=server.password)
    out.pop("ONLINEDDL_FAULT", None)
    return out


def make(conn: Conn, model: IntModel, table: str, mirror: str, rows: int) -> None:
    with conn.cursor() as cur:
        for name in (table, mirror):
            cur.execute(model.create_sql(name))
            cur.execute(model.seed_sql(name, rows))



def test_sixteen_runners_one_does_the_work(server: Dsn, db: str, tmp_path: Path) -> None:
    conn = connect(server, db)
    model = IntModel(id_max=4300)
    make(conn, model, "t", "mirror", 4000)
    flag = tmp_path / "postpone"
    flag.touch()
    writers = Writers(server, db, "t", "mirror", model, threads=2, pause=0.003)
    writers.start()
    try:
        procs = [subprocess.Popen(cli(server, db, "t", "--postpone-cutover-flag-file",
                                      str(flag)), env=env(server), text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                 for _ in range(16)]
        losers, winner = wait_for_losers(procs)
        assert len(losers) == 15
        for out in losers:
            assert "another onlineddl run holds" in out
            assert "connection" in out  # names the holder
        flag.unlink()                                   # let the winner cut over
        _, err = winner.communicate(timeout=120)
        assert winner.returncode == 0, err[-3000:]
    finally:
        writers.stop()
    assert not writers.errors, writers.errors[:3]
    assert_same_rows(conn, "t", "mirror", COLUMNS, ["id"])
    assert columns(conn, "t").count("added") == 1
    (old,) = old_tables(conn)
    assert "added" not in columns(conn, old)           # the ALTER was applied once


def wait_for_losers(procs: list[subprocess.Popen[str]]) -> tuple[list[str], Any]:
    """Every run but one exits with code 6; the remaining one is the winner."""
    deadline = time.monotonic() + 120
    losers: list[str] = []
    pending = list(procs)
    while len(pending) > 1:
        assert time.monotonic() < deadline, "runners did not give up in time"
        for proc in list(pending):
            if proc.poll() is not None:
                _, err = proc.communicate()
                assert proc.returncode == 6, err[-3000:]
                losers.append(err)
                pending.remove(proc)
        time.sleep(0.05)
    return losers, pending[0]


def test_side_connection_holding_the_lock_blocks_runners(server: Dsn, db: str) -> None:
    conn = connect(server, db)
    make(conn, IntModel(id_max=600), "t", "mirror", 500)
    side = hold_runner_lock(server, db)
    refused = subprocess.run(cli(server, db, "t"), env=env(server), capture_output=True,
                             text=True, timeout=60)
    assert refused.returncode == 6
    assert "--wait-for-lock" in refused.stderr
    waiting = subprocess.Popen(cli(server, db, "t", "--wait-for-lock", "60"), env=env(server),
                               text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_until_waiting_for_user_lock(server)
    assert columns(conn, "t") == COLUMNS                # nothing started
    with conn.cursor() as cur:
        cur.execute("SHOW TABLES")
        assert {r[0] for r in cur.fetchall()} == {"t", "mirror"}
    with side.cursor() as cur:
        cur.execute("SELECT RELEASE_LOCK(%s)", (lock_name(db, "t"),))
    _, err = waiting.communicate(timeout=120)
    assert waiting.returncode == 0, err[-3000:]
    assert "added" in columns(conn, "t")


def hold_runner_lock(server: Dsn, db: str) -> Any:
    """A side connection holding the lock a runner of `db`.t takes."""
    side = connect(server)
    with side.cursor() as cur:
        cur.execute("SELECT GET_LOCK(%s, 0)", (lock_name(db, "t"),))
        assert cur.fetchone()[0] == 1
    return side


def wait_until_waiting_for_user_lock(server: Dsn) -> None:
    probe = connect(server)
    deadline = time.monotonic() + 60
    with probe.cursor() as cur:
        while True:
            cur.execute("SELECT COUNT(*) FROM information_schema.PROCESSLIST "
                        "WHERE INFO LIKE 'SELECT GET_LOCK%%' AND STATE LIKE '%%lock%%'")
            if cur.fetchone()[0]:
                return
            assert time.monotonic() < deadline, "the runner never waited for the lock"
            time.sleep(0.05)


def test_wait_for_lock_gives_up_with_the_holder_named(server: Dsn, db: str) -> None:
    conn = connect(server, db)
    make(conn, IntModel(id_max=100), "t", "mirror", 50)
    side = hold_runner_lock(server, db)
    started = time.monotonic()
    gave_up = subprocess.run(cli(server, db, "t", "--wait-for-lock", "1"), env=env(server),
                             capture_output=True, text=True, timeout=60)
    assert gave_up.returncode == 6
    assert time.monotonic() - started < 30  # bounded, not forever
    assert "another onlineddl run holds" in gave_up.stderr
    assert columns(conn, "t") == COLUMNS
    side.close()  # held until here: the lock lives as long as this connection


def test_four_tables_in_parallel(server: Dsn, db: str) -> None:
    conn = connect(server, db)
    model = IntModel(id_max=2200)
    names = ["t1", "t2", "t3", "t4"]
    writers = []
    for name in names:
        make(conn, model, name, f"m_{name}", 2000)
        writers.append(Writers(server, db, name, f"m_{name}", model, threads=1, pause=0.005))
    for w in writers:
        w.start()
    try:
        procs = [subprocess.Popen(cli(server, db, name), env=env(server), text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                 for name in names]
        for proc in procs:
            _, err = proc.communicate(timeout=180)
            assert proc.returncode == 0, err[-3000:]
    finally:
        for w in writers:
            w.stop()
    for name, w in zip(names, writers, strict=True):
        assert not w.errors, w.errors[:3]
        assert_same_rows(conn, name, f"m_{name}", COLUMNS, ["id"])
        assert "added" in columns(conn, name)


def test_cleanup_refuses_while_a_runner_holds_the_table(server: Dsn, db: str,
                                                       tmp_path: Path) -> None:
    conn = connect(server, db)
    make(conn, IntModel(id_max=600), "t", "mirror", 500)
    flag = tmp_path / "hold"
    flag.touch()
    runner = subprocess.Popen(cli(server, db, "t", "--postpone-cutover-flag-file", str(flag)),
                              env=env(server), text=True, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)
    wait_for_table(conn, "_t_chkpnt")
    refused = subprocess.run(cli(server, db, "t", command="cleanup"), env=env(server),
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 6, refused.stderr
    wait_for_table(conn, "_t_new")  # still there: cleanup touched nothing
    flag.unlink()
    _, err = runner.communicate(timeout=120)
    assert runner.returncode == 0, err[-3000:]


def wait_for_table(conn: Conn, name: str) -> None:
    deadline = time.monotonic() + 60
    with conn.cursor() as cur:
        while True:
            cur.execute("SHOW TABLES LIKE %s", (name,))
            if cur.fetchone():
                return
            assert time.monotonic() < deadline, f"{name} never appeared"
            time.sleep(0.05)


@pytest.mark.parametrize("name", ["we`ird", "sp ace", "sel ect", "d\u00e9j\u00e0_vu",
                                  "a.b", "select", "x`; DROP TABLE t; --"])
def test_identifiers_that_need_quoting(server: Dsn, db: str, name: str) -> None:
    conn = connect(server, db)
    q = "`" + name.replace("`", "``") + "`"
    with conn.cursor() as cur:
        cur.execute(f"CREATE TABLE {q} (id INT PRIMARY KEY, v VARCHAR(10))")
        cur.execute(f"INSERT INTO {q} VALUES (1, 'a'), (2, NULL), (3, 'c')")
        cur.execute("CREATE TABLE guard (id INT PRIMARY KEY)")
    done = subprocess.run(cli(server, db, name), env=env(server), capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    with conn.cursor() as cur:
        cur.execute(f"SELECT id, v, added FROM {q} ORDER BY id")
        assert cur.fetchall() == ((1, "a", 1), (2, None, 1), (3, "c", 1))
        cur.execute("SHOW TABLES LIKE 'guard'")
        assert cur.fetchone()  # an injection attempt in the name changed nothing else

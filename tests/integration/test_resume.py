"""Crash safety: kill `onlineddl migrate` at exact moments, keep writing, `--resume`.

Each case runs the real CLI in a subprocess with ONLINEDDL_FAULT=<point>, which makes
the process exit at once (status 137, as after kill -9) when it reaches that point.
Writers in this process keep writing before, during and after the crash; the resumed run
must finish with T equal to the writers' own record row for row, the new schema in
place, and the swap done exactly once. Checksum repair is off throughout.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from helpers import (
    Conn,
    cli_env,
    columns,
    connect,
    kept_tables,
    migrate_command,
    old_tables,
    recorded_old_tables,
    tables,
)
from workload import IntModel, Seeded, Writers, assert_same_rows, make_tables

from onlineddl.config import Dsn

ROWS = 3000
ALTER = "ADD COLUMN added INT NOT NULL DEFAULT 7"
COLUMNS = ["id", "name", "v", "data", "note"]


def run_cli(server: Dsn, db: str, *extra: str, fault: str | None = None,
            alter: str = ALTER) -> subprocess.CompletedProcess[str]:
    args = migrate_command(server, db, alter, "--chunk-size", "300", "--chunk-size-max",
                           "600", "--progress-interval", "1", *extra)
    return subprocess.run(args, env=cli_env(server, fault), capture_output=True, text=True,
                          timeout=300)


@pytest.fixture
def table(server: Dsn, db: str) -> Iterator[Seeded]:
    model = IntModel(id_max=ROWS + 300)
    conn = connect(server, db)
    make_tables(conn, model, ROWS)
    yield conn, model
    conn.close()






def assert_finished(conn: Conn, writers: Writers) -> None:
    assert not writers.errors, writers.errors[:5]
    assert_same_rows(conn, "t", "mirror", COLUMNS, ["id"])
    assert "added" in columns(conn, "t")
    # Swapped exactly once: the old table is the original, without the new column.
    (old,) = old_tables(conn)
    assert "added" not in columns(conn, old)
    assert kept_tables(conn) == {"t", "mirror", "_t_old_*"}
    # ... and recorded as ours, whatever moment the run was killed at.
    assert recorded_old_tables(conn) == [old]


# Each point, with the N-th time it is reached where the first is too early.
KILL_POINTS = [
    "shadow_created",            # before any checkpoint: resume starts over
    "applier_started",           # checkpoint written, nothing copied
    "copy_start",
    "after_chunk:3",             # mid-copy
    "after_flush:4",             # a flush done, its checkpoint not yet written
    "after_checkpoint:3",
    "during_checksum_drain",     # writes blocked for the checksum snapshot
    "checksum_chunk",            # mid-checksum
    "cutover_started",           # cutover_started written, before the drain and swap
    "during_cutover_drain",
    "before_swap",               # drained, the RENAME not yet issued
    "after_swap",                # swapped, the checkpoint does not know yet
]


@pytest.mark.parametrize("point", KILL_POINTS)
def test_kill_and_resume(server: Dsn, db: str, table: Seeded, point: str) -> None:
    conn, model = table
    writers = Writers(server, db, "t", "mirror", model, threads=2, pause=0.002)
    writers.start()
    try:
        crashed = run_cli(server, db, fault=point)
        assert crashed.returncode == 137, crashed.stderr[-2000:]
        writers.wait_for_commits(30)          # the table keeps changing while we are down
        plain = run_cli(server, db)            # without --resume: refused, nothing changed
        assert plain.returncode in (0, 14), plain.stderr[-2000:]
        if plain.returncode == 14:
            assert "--resume" in plain.stderr
            resumed = run_cli(server, db, "--resume")
            assert resumed.returncode == 0, resumed.stderr[-3000:]
        writers.wait_for_commits(30)          # writes after the swap land in the new T
    finally:
        writers.stop()
    assert_finished(conn, writers)


def test_resume_with_a_different_alter_is_refused(server: Dsn, db: str, table: Seeded) -> None:
    conn, _ = table
    crashed = run_cli(server, db, fault="after_chunk:2")
    assert crashed.returncode == 137
    before = tables(conn)
    refused = run_cli(server, db, "--resume", alter="ADD COLUMN other INT NULL")
    assert refused.returncode == 9, refused.stderr[-2000:]
    assert "differs from the one the checkpoint was made for" in refused.stderr
    assert tables(conn) == before
    assert columns(conn, "t") == COLUMNS
    assert run_cli(server, db, "--resume").returncode == 0
    assert_same_rows(conn, "t", "mirror", COLUMNS, ["id"])


def test_a_checkpoint_with_an_unknown_phase_is_refused(server: Dsn, db: str,
                                                       table: Seeded) -> None:
    conn, _ = table
    crashed = run_cli(server, db, fault="after_chunk:2")
    assert crashed.returncode == 137
    with conn.cursor() as cur:
        cur.execute("UPDATE _t_chkpnt SET phase = 'warp' WHERE id = 1")
    conn.commit()
    before = tables(conn)
    refused = run_cli(server, db, "--resume")
    assert refused.returncode == 9, refused.stderr[-2000:]
    assert "records phase 'warp', which this onlineddl version does not know" in refused.stderr
    assert tables(conn) == before
    assert columns(conn, "t") == COLUMNS
    with conn.cursor() as cur:
        cur.execute("UPDATE _t_chkpnt SET phase = 'copy' WHERE id = 1")
    conn.commit()
    assert run_cli(server, db, "--resume").returncode == 0
    assert_same_rows(conn, "t", "mirror", COLUMNS, ["id"])


def purge_binlogs(conn: Conn) -> None:
    """Purge every binlog but the current one. The server keeps a file a dump thread is
    still reading (the killed run's, until the server notices), so retry, bounded."""
    with conn.cursor() as cur:
        cur.execute("FLUSH BINARY LOGS")
        cur.execute("SHOW BINARY LOGS")       # SHOW MASTER STATUS is gone in MySQL 8.4
        current = cur.fetchall()[-1][0]
        deadline = time.monotonic() + 30
        while True:
            cur.execute("PURGE BINARY LOGS TO %s", (current,))
            cur.execute("SHOW BINARY LOGS")
            if [r[0] for r in cur.fetchall()] == [current]:
                return
            assert time.monotonic() < deadline, "binlogs could not be purged"
            time.sleep(0.1)


def test_resume_after_binlog_purge_is_refused(server: Dsn, db: str, table: Seeded) -> None:
    conn, _ = table
    crashed = run_cli(server, db, fault="after_chunk:2")
    assert crashed.returncode == 137
    purge_binlogs(conn)
    before = tables(conn)
    refused = run_cli(server, db, "--resume")
    assert refused.returncode == 9, refused.stderr[-2000:]
    assert "purged" in refused.stderr
    assert tables(conn) == before
    assert columns(conn, "t") == COLUMNS
    cleanup = subprocess.run(
        [sys.executable, "-m", "onlineddl", "cleanup", "--host", server.host, "--port",
         str(server.port), "--user", server.user, "--database", db, "--table", "t"],
        env=dict(os.environ, ONLINEDDL_PASSWORD=server.password), capture_output=True,
        text=True, timeout=60)
    assert cleanup.returncode == 0, cleanup.stderr
    assert tables(conn) == {"t", "mirror"}
    assert_same_rows(conn, "t", "mirror", COLUMNS, ["id"])


def test_status_reads_a_dead_run_from_the_server(server: Dsn, db: str, table: Seeded) -> None:
    import json

    crashed = run_cli(server, db, fault="after_chunk:3")
    assert crashed.returncode == 137
    base = [sys.executable, "-m", "onlineddl", "status", "--host", server.host, "--port",
            str(server.port), "--user", server.user, "--database", db, "--table", "t"]
    environ = dict(os.environ, ONLINEDDL_PASSWORD=server.password)
    human = subprocess.run(base, env=environ, capture_output=True, text=True, timeout=60)
    assert human.returncode == 0, human.stderr
    assert "phase: copy" in human.stdout
    assert "running: False" in human.stdout
    info = json.loads(subprocess.run([*base, "--json"], env=environ, capture_output=True,
                                     text=True, timeout=60).stdout)
    assert info["alter"] == ALTER
    assert info["rows_copied"] > 0
    assert info["cutover_started"] is False
    assert info["binlog_position"]
    assert "_t_new" in info["artifacts"]
    assert run_cli(server, db, "--resume").returncode == 0

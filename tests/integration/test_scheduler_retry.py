"""`--resume=auto` the way a scheduler runs it: the identical command, re-run until exit 0.

A Kubernetes Job, a systemd unit or a CI loop cannot add `--resume` after a crash; it
runs the same command line again. Each test here does exactly that with the real CLI in
a subprocess. Crashes are named fault points (ONLINEDDL_FAULT=<point>[:N] exits 137 as
after kill -9), chosen by a seeded random; writers keep changing the table throughout
and record every committed write in a mirror table; checksum repair is off, so any
lost or changed row fails loudly.
"""

from __future__ import annotations

import random
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from helpers import (
    Conn,
    cli_env,
    columns,
    connect,
    kept_tables,
    migrate_command,
    old_tables,
    scalar,
    tables,
)
from workload import IntModel, Seeded, Writers, assert_same_rows, make_tables

from onlineddl.config import Dsn

ROWS = 3000
ALTER = "ADD COLUMN added INT NOT NULL DEFAULT 7"
COLUMNS = ["id", "name", "v", "data", "note"]

# Kill points in the order a run reaches them (the N-th time where the first is early).
KILL_POINTS = [
    "after_chunk:2",        # mid-copy
    "after_checkpoint:2",   # a checkpoint just written
    "checksum_chunk",       # mid-checksum
    "cutover_started",      # cutover recorded, before the drain and the swap
    "before_swap",          # drained, the RENAME not yet issued
    "after_swap",           # swapped, the checkpoint does not know yet
]


def run_cli(server: Dsn, db: str, fault: str | None = None, alter: str = ALTER,
            *extra: str) -> subprocess.CompletedProcess[str]:
    """The scheduler's command line: always the same, `--resume=auto` included."""
    args = migrate_command(server, db, alter, "--chunk-size", "300", "--chunk-size-max",
                           "600", "--progress-interval", "1", "--resume=auto", *extra)
    return subprocess.run(args, env=cli_env(server, fault), capture_output=True, text=True,
                          timeout=300)


@pytest.fixture
def table(server: Dsn, db: str) -> Iterator[Seeded]:
    model = IntModel(id_max=ROWS + 300)
    conn = connect(server, db)
    make_tables(conn, model, ROWS)
    yield conn, model
    conn.close()




def create_time(conn: Conn, name: str) -> Any:
    return scalar(conn, "SELECT CREATE_TIME FROM information_schema.TABLES WHERE "
                        f"TABLE_SCHEMA = DATABASE() AND TABLE_NAME = '{name}'")


def assert_migrated_once(conn: Conn) -> None:
    assert "added" in columns(conn, "t")
    kept = old_tables(conn)
    assert len(kept) == 1, kept                   # swapped exactly once
    assert columns(conn, kept[0]) == COLUMNS      # the original
    assert kept_tables(conn) == {"t", "mirror", "_t_old_*"}


# Each seed kills the run at 4 of the 6 points, in lifecycle order; these three seeds
# together reach every point.
@pytest.mark.parametrize("seed", [3, 4, 7])
def test_scheduler_reruns_the_same_command_until_done(server: Dsn, db: str, table: Seeded,
                                                      seed: int) -> None:
    conn, model = table
    rng = random.Random(seed)
    kills = sorted(rng.sample(range(len(KILL_POINTS)), 4))
    planned = [KILL_POINTS[i] for i in kills]
    runs: list[tuple[str | None, int]] = []
    writers = Writers(server, db, "t", "mirror", model, threads=2, pause=0.002)
    writers.start()
    try:
        for fault in [*planned, None]:     # at most one run per kill, plus one
            result = run_cli(server, db, fault)
            runs.append((fault, result.returncode))
            if result.returncode == 0:
                break
            assert result.returncode == 137, (runs, result.stderr[-3000:])
            writers.wait_for_commits(20)  # the table keeps changing while it is down
        assert runs[-1][1] == 0, (planned, runs)
        assert len(runs) >= 2, runs        # at least one kill landed
        writers.wait_for_commits(20)      # writes after the swap land in the new T
    finally:
        writers.stop()
    assert not writers.errors, writers.errors[:5]
    assert_same_rows(conn, "t", "mirror", COLUMNS, ["id"])
    assert_migrated_once(conn)

    # The scheduler runs it once more (e.g. it never saw the exit 0): nothing to do.
    born = create_time(conn, "t")
    again = run_cli(server, db)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "already done" in again.stderr
    assert create_time(conn, "t") == born
    assert_same_rows(conn, "t", "mirror", COLUMNS, ["id"])
    assert_migrated_once(conn)


def test_fresh_start_then_rerun_after_success(server: Dsn, db: str, table: Seeded) -> None:
    conn, _ = table
    first = run_cli(server, db)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "already done" not in first.stderr
    assert_migrated_once(conn)
    born = create_time(conn, "t")
    again = run_cli(server, db)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "already done" in again.stderr
    assert create_time(conn, "t") == born
    assert_same_rows(conn, "t", "mirror", COLUMNS, ["id"])
    assert_migrated_once(conn)


def test_killed_while_asking_whether_done(server: Dsn, db: str, table: Seeded) -> None:
    """The "already done?" question builds an empty `_T_new` under a checkpoint; killed
    right then, the next run removes both and still answers: done."""
    conn, _ = table
    assert run_cli(server, db).returncode == 0
    crashed = run_cli(server, db, "done_probe")
    assert crashed.returncode == 137
    assert {"_t_new", "_t_chkpnt"} <= tables(conn)
    again = run_cli(server, db)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "already done" in again.stderr
    assert_same_rows(conn, "t", "mirror", COLUMNS, ["id"])
    assert_migrated_once(conn)


def test_a_death_before_the_first_checkpoint_is_started_over(server: Dsn, db: str,
                                                             table: Seeded) -> None:
    conn, _ = table
    crashed = run_cli(server, db, "shadow_created")
    assert crashed.returncode == 137
    resumed = run_cli(server, db)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "died while setting up" in resumed.stderr
    assert_same_rows(conn, "t", "mirror", COLUMNS, ["id"])
    assert_migrated_once(conn)


def test_another_alter_against_a_leftover_checkpoint_is_refused(server: Dsn, db: str,
                                                                table: Seeded) -> None:
    conn, _ = table
    crashed = run_cli(server, db, "after_chunk:2")
    assert crashed.returncode == 137
    before = tables(conn)
    refused = run_cli(server, db, None, "ADD COLUMN other INT NULL")
    assert refused.returncode == 9, refused.stderr[-2000:]
    assert "differs from the one the checkpoint was made for" in refused.stderr
    assert "onlineddl cleanup" in refused.stderr
    assert "onlineddl: retry=no" in refused.stderr
    assert tables(conn) == before
    assert columns(conn, "t") == COLUMNS
    assert run_cli(server, db).returncode == 0
    assert_same_rows(conn, "t", "mirror", COLUMNS, ["id"])
    assert_migrated_once(conn)


def test_a_bare_old_table_never_makes_a_run_done(server: Dsn, db: str, table: Seeded
                                                 ) -> None:
    """T already has the new schema (a plain ALTER by someone) and `_t_old` holds a
    backup with the old one: the ALTER applied to `_t_old` gives T's schema, but nothing
    records that onlineddl ran it. Not "already done": the run goes on as a plain run
    (here the server refuses the ALTER on T's copy: the column exists)."""
    conn, _ = table
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE _t_old LIKE t")
        cur.execute(f"ALTER TABLE t {ALTER}")
    result = run_cli(server, db)
    assert result.returncode != 0, result.stderr[-2000:]
    assert "already done" not in result.stderr
    assert tables(conn) == {"t", "mirror", "_t_old"}


def test_another_alter_after_success_is_not_taken_for_done(server: Dsn, db: str,
                                                           table: Seeded) -> None:
    """The old table kept by ALTER A does not make ALTER B "done": B runs, and keeps an
    old table of its own."""
    conn, _ = table
    assert run_cli(server, db).returncode == 0
    first = old_tables(conn)
    other = run_cli(server, db, None, "ADD COLUMN other INT NULL")
    assert other.returncode == 0, other.stderr[-2000:]
    assert "already done" not in other.stderr
    assert "other" in columns(conn, "t")
    kept = old_tables(conn)
    assert len(kept) == 2 and kept[0] == first[0], kept


@pytest.mark.parametrize("flag", ["--drop-old", "--allow-instant"])
def test_auto_refuses_options_that_leave_no_old_table(server: Dsn, db: str, table: Seeded,
                                                      flag: str) -> None:
    conn, _ = table
    refused = run_cli(server, db, None, ALTER, flag)
    assert refused.returncode == 2, refused.stderr[-2000:]
    assert flag in refused.stderr and "_T_old" in refused.stderr
    assert "onlineddl: retry=no" in refused.stderr
    assert tables(conn) == {"t", "mirror"}
    assert columns(conn, "t") == COLUMNS


def test_plain_resume_still_refuses_when_there_is_nothing(server: Dsn, db: str,
                                                          table: Seeded) -> None:
    conn, _ = table
    args = migrate_command(server, db, ALTER, "--resume")
    refused = subprocess.run(args, env=cli_env(server), capture_output=True, text=True,
                             timeout=120)
    assert refused.returncode == 9, refused.stderr[-2000:]
    assert "nothing to resume" in refused.stderr
    assert tables(conn) == {"t", "mirror"}


def test_rerun_after_success_on_a_partitioned_table(server: Dsn, db: str) -> None:
    """The "already done?" copy is a plain table like the shadow, so it works where a
    temporary table could not be made (a temporary table cannot be partitioned)."""
    conn = connect(server, db)
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE p (id INT NOT NULL PRIMARY KEY, v VARCHAR(20)) "
                    "ENGINE=InnoDB PARTITION BY HASH(id) PARTITIONS 3")
        cur.executemany("INSERT INTO p VALUES (%s, %s)", [(i, f"v{i}") for i in range(50)])
    args = migrate_command(server, db, "ADD COLUMN w INT NULL", "--resume=auto", table="p")
    first = subprocess.run(args, env=cli_env(server), capture_output=True, text=True,
                           timeout=120)
    assert first.returncode == 0, first.stderr[-2000:]
    again = subprocess.run(args, env=cli_env(server), capture_output=True, text=True,
                           timeout=120)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "already done" in again.stderr
    assert kept_tables(conn) == {"p", "_p_old_*"}
    assert scalar(conn, "SELECT COUNT(*) FROM p") == 50
    conn.close()

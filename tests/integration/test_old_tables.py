"""One table, many migrations: each run keeps its own old table, none blocks the next.

- Three migrations in a row on one table, with writers (in the same transaction to t and
  to a mirror) during each copy: no manual step; each old table holds exactly the rows
  t had at its swap, and keeps them while later runs go on; `status` lists the three
  (name, swap time, ALTER, size); `cleanup --old` removes them.
- A user's table named like an old table (not in onlineddl's record, or put in place
  of a recorded one) survives `cleanup --old` and --keep-old-for.
- `--keep-old-for` drops only the expired old tables, at the start and end of a run;
  `cleanup --old --older-than` likewise; nothing while T is missing.
- A run killed right after its swap: --resume finds the swap by the checkpoint's
  old-table name and records that old table.
"""

from __future__ import annotations

import json
import subprocess
import sys
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
    recorded_old_tables,
    tables,
)

from onlineddl import faults
from onlineddl.commands import cleanup, status
from onlineddl.config import Dsn, MigrationConfig, Tuning
from onlineddl.errors import ArtifactsExist, ResumeRefused, UsageError
from onlineddl.migration import Result, migrate

TUNING = Tuning(chunk_rows_initial=40, chunk_rows_min=10, chunk_rows_max=80)
ROWS = 300
ALTERS = ("ADD COLUMN a INT NULL", "ADD COLUMN b INT NOT NULL DEFAULT 2",
          "ADD INDEX v_idx (v)")
REGISTRY = "_onlineddl_old_tables"


@pytest.fixture
def conn(server: Dsn, db: str) -> Any:
    connection = connect(server, db)
    with connection.cursor() as cur:
        for name in ("t", "mirror"):
            cur.execute(f"CREATE TABLE {name} (id INT NOT NULL PRIMARY KEY, v INT NOT NULL)")
            cur.executemany(f"INSERT INTO {name} VALUES (%s, %s)",
                            [(i, i) for i in range(1, ROWS + 1)])
    yield connection
    connection.close()


def run(server: Dsn, db: str, alter: str, **kw: Any) -> Result:
    return migrate(MigrationConfig(dsn=server, database=db, table="t", alter=alter,
                                   repair=False, tuning=TUNING, **kw))


def execute(conn: Conn, *statements: str, params: tuple[Any, ...] = ()) -> None:
    with conn.cursor() as cur:
        for statement in statements:
            cur.execute(statement, params or None)


def rows(conn: Conn, table: str) -> list[tuple[Any, ...]]:
    with conn.cursor() as cur:
        cur.execute(f"SELECT id, v FROM `{table}` ORDER BY id")
        return list(cur.fetchall())


class Writer:
    """At each chunk: insert, update and delete one row, in t and the mirror together."""

    def __init__(self, server: Dsn, db: str, start: int) -> None:
        self.conn = connect(server, db, autocommit=False)
        self.next = start
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1
        n, self.next = self.next, self.next + 1
        with self.conn.cursor() as cur:
            for table in ("t", "mirror"):
                cur.execute(f"INSERT INTO {table} (id, v) VALUES (%s, %s)", (n, -n))
                cur.execute(f"UPDATE {table} SET v = v + 1000 WHERE id = %s", (n % ROWS + 1,))
                cur.execute(f"DELETE FROM {table} WHERE id = %s", (2 * n % ROWS + 1,))
        self.conn.commit()

    def close(self) -> None:
        self.conn.close()


def test_three_migrations_in_a_row_keep_three_old_tables(server: Dsn, db: str,
                                                          conn: Conn) -> None:
    kept: list[tuple[str, list[tuple[Any, ...]]]] = []
    for i, alter in enumerate(ALTERS):
        writer = Writer(server, db, start=10_000 * (i + 1))
        faults.register("after_chunk", writer)
        try:
            result = run(server, db, alter)
        finally:
            faults.clear()
            writer.close()
        assert writer.calls >= 3
        # No write after the swap: t, the mirror and this run's old table agree.
        assert rows(conn, "t") == rows(conn, "mirror")
        assert rows(conn, result.old_table) == rows(conn, "mirror")
        kept.append((result.old_table, rows(conn, "mirror")))
    names = [name for name, _ in kept]
    assert len(set(names)) == 3 and old_tables(conn) == sorted(names)
    assert recorded_old_tables(conn) == names
    for name, at_swap in kept:                 # later runs left each one as it was
        assert rows(conn, name) == at_swap
    assert columns(conn, names[0]) == ["id", "v"]
    assert columns(conn, names[2]) == ["id", "v", "a", "b"]

    info = json.loads(status(server, db, "t", as_json=True))
    assert [o["name"] for o in info["old_tables"]] == names
    assert [o["alter"] for o in info["old_tables"]] == list(ALTERS)
    assert all(o["recorded_table"] and o["size_bytes"] > 0 for o in info["old_tables"])
    text = status(server, db, "t")
    assert "old_tables: 3" in text and f"{names[1]}  swapped " in text
    assert f"ALTER {ALTERS[2]}" in text

    execute(conn, "CREATE TABLE _t_old_20000101_000000 (id INT PRIMARY KEY)")  # a user's
    done = cleanup(server, db, "t", old=True)
    assert [line.split(" (")[0] for line in done] == [f"dropped {db}.{n}" for n in names]
    assert kept_tables(conn) == {"t", "mirror", "_t_old_*"}
    assert old_tables(conn) == ["_t_old_20000101_000000"]
    assert recorded_old_tables(conn) == []
    assert cleanup(server, db, "t", old=True) == [f"no recorded old tables of {db}.t to drop"]


def age(conn: Conn, name: str, days: int) -> None:
    """Make a recorded old table look swapped `days` ago."""
    execute(conn, f"UPDATE {REGISTRY} SET swapped_at = swapped_at - INTERVAL {days} DAY "
            "WHERE old_name = %s", params=(name,))


def test_keep_old_for_drops_only_the_expired_ones(server: Dsn, db: str, conn: Conn) -> None:
    first = run(server, db, ALTERS[0]).old_table
    second = run(server, db, ALTERS[1]).old_table
    age(conn, first, 10)
    age(conn, second, 3)
    # A user's table under a recorded name: ours was dropped by hand, theirs took the name.
    execute(conn, f"DROP TABLE {second}", f"CREATE TABLE {second} (x INT PRIMARY KEY)")
    third = run(server, db, ALTERS[2], keep_old_for=2 * 86400.0).old_table
    assert old_tables(conn) == sorted([second, third])
    assert columns(conn, second) == ["x"]                     # never dropped
    assert recorded_old_tables(conn) == [second, third]
    info = json.loads(status(server, db, "t", as_json=True))
    assert [(o["name"], o["recorded_table"]) for o in info["old_tables"]] == \
        [(second, False), (third, True)]
    assert "NOT the recorded table" in status(server, db, "t")
    # cleanup --older-than: the young one stays, the user's table stays.
    done = cleanup(server, db, "t", old=True, older_than=86400.0)
    assert done[-1].startswith(f"kept {db}.{second}: it is not the old table")
    assert old_tables(conn) == sorted([second, third])
    age(conn, third, 2)
    done = cleanup(server, db, "t", old=True, older_than=86400.0)
    assert any(line.startswith(f"dropped {db}.{third}") for line in done)
    assert old_tables(conn) == [second]


def test_keep_old_for_zero_drops_this_runs_old_table_at_the_end(server: Dsn, db: str,
                                                                 conn: Conn) -> None:
    result = run(server, db, ALTERS[0], keep_old_for=0.0)
    assert old_tables(conn) == [] and recorded_old_tables(conn) == []
    assert result.old_table == ""
    result = run(server, db, ALTERS[1], drop_old=True)
    assert result.old_table == "" and kept_tables(conn) == {"t", "mirror"}


def test_old_tables_are_kept_while_t_is_missing(server: Dsn, db: str, conn: Conn) -> None:
    old = run(server, db, ALTERS[0]).old_table
    execute(conn, "RENAME TABLE t TO t_elsewhere")
    done = cleanup(server, db, "t", old=True)
    assert "t does not exist, so they may be the only copy" in done[-1]
    assert old_tables(conn) == [old] and recorded_old_tables(conn) == [old]
    with pytest.raises(UsageError, match="--older-than goes with --old"):
        cleanup(server, db, "t", older_than=60.0)


def test_a_run_killed_after_its_swap_records_its_old_table_on_resume(
        server: Dsn, db: str, conn: Conn) -> None:
    first = run(server, db, ALTERS[0]).old_table
    killed = subprocess.run(migrate_command(server, db, ALTERS[1]), env=cli_env(server,
                            "after_swap"), capture_output=True, text=True, timeout=120)
    assert killed.returncode == 137, killed.stderr[-2000:]
    (chosen,) = [n for n in old_tables(conn) if n != first]
    assert recorded_old_tables(conn) == [first]
    info = json.loads(status(server, db, "t", as_json=True))
    assert info["old_table"] == chosen      # the checkpoint names it
    result = run(server, db, ALTERS[1], resume=True)
    assert result.resumed and result.old_table == chosen
    assert recorded_old_tables(conn) == [first, chosen]
    assert rows(conn, chosen) == rows(conn, "t") == rows(conn, "mirror")
    assert "b" in columns(conn, "t") and "b" not in columns(conn, chosen)


def test_cli_keep_old_for_and_cleanup_old(server: Dsn, db: str, conn: Conn) -> None:
    base = ["--host", server.host, "--port", str(server.port), "--user", server.user,
            "--database", db, "--table", "t"]
    first = run(server, db, ALTERS[0]).old_table
    age(conn, first, 8)
    done = subprocess.run([sys.executable, "-m", "onlineddl", "migrate", *base, "--alter",
                           ALTERS[1], "--no-repair", "--keep-old-for", "7d"],
                          env=cli_env(server), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"--keep-old-for: dropped {db}.{first}" in done.stderr
    (second,) = old_tables(conn)
    bad = subprocess.run([sys.executable, "-m", "onlineddl", "cleanup", *base, "--old",
                          "--older-than", "a week"], env=cli_env(server),
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "is not a duration" in bad.stderr
    shown = subprocess.run([sys.executable, "-m", "onlineddl", "status", *base],
                           env=cli_env(server), capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0 and "old_tables: 1" in shown.stdout
    assert f"  {second}  swapped " in shown.stdout
    gone = subprocess.run([sys.executable, "-m", "onlineddl", "cleanup", *base, "--old"],
                          env=cli_env(server), capture_output=True, text=True, timeout=60)
    assert gone.returncode == 0, gone.stderr
    assert old_tables(conn) == [] and REGISTRY in tables(conn)


def checkpoint_old_name(conn: Conn) -> str:
    with conn.cursor() as cur:
        cur.execute("SELECT old_table FROM _t_chkpnt")
        return str(cur.fetchone()[0])


def test_an_old_table_name_taken_during_the_run_stops_it_before_the_swap(
        server: Dsn, db: str, conn: Conn) -> None:
    """Someone creates a table under the name the checkpoint fixed for this run's old
    table: the run stops before blocking writes (T unchanged, exit 14, resumable once it
    is gone), and --resume refuses while it is there."""
    def take() -> None:
        execute(conn, f"CREATE TABLE IF NOT EXISTS `{checkpoint_old_name(conn)}` (x INT)")

    faults.register("after_chunk", take)
    try:
        with pytest.raises(ArtifactsExist) as info:
            run(server, db, ALTERS[0])
    finally:
        faults.clear()
    taken = checkpoint_old_name(conn)
    assert f"{taken} exists: that is the name this run's swap gives" in info.value.message
    assert "--resume" in info.value.hint
    assert columns(conn, "t") == ["id", "v"] and columns(conn, taken) == ["x"]
    with pytest.raises(ResumeRefused) as refused:
        run(server, db, ALTERS[0], resume=True)
    assert "another table took it" in refused.value.message
    assert columns(conn, taken) == ["x"]
    execute(conn, f"DROP TABLE `{taken}`")
    result = run(server, db, ALTERS[0], resume=True)
    assert result.old_table == taken and rows(conn, taken) == rows(conn, "mirror")

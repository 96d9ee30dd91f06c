"""onlineddl drops and resumes only what carries its mark; everything else is named.

- User tables named `_t_new` / `_t_chkpnt` block a run (exit 14, named as not
  onlineddl's), survive `cleanup` (which refuses them by name, exit 14) and are never
  adopted by `--resume`.
- A dead run's own shadow and checkpoint are removed by `cleanup`, also a run that died
  while setting up (checkpoint without state, empty shadow).
- `_T_old`, where versions before per-run old tables kept the original: it no longer
  blocks a run; `cleanup` keeps it and says what it is; `cleanup --drop-old` drops it,
  and only while T exists. (Per-run old tables: test_old_tables.py.)
- `--resume` with nothing to resume refuses (exit 9); T renamed away mid-copy is reported
  as such (exit 13) and the run's tables are removed.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from helpers import Conn, cli_env, connect, external_server_lacks, kept_tables, tables

from onlineddl import faults
from onlineddl.commands import cleanup, status
from onlineddl.config import Dsn, MigrationConfig, Tuning
from onlineddl.errors import (
    Aborted,
    ArtifactsExist,
    ResumeRefused,
    TableVanished,
)
from onlineddl.migration import Result, migrate

TUNING = Tuning(chunk_rows_initial=40, chunk_rows_min=10, chunk_rows_max=80)
ROWS = 400
ALTER = "ADD COLUMN c INT NULL"


@pytest.fixture
def conn(server: Dsn, db: str) -> Any:
    connection = connect(server, db)
    with connection.cursor() as cur:
        cur.execute("CREATE TABLE t (id INT NOT NULL PRIMARY KEY, v INT NOT NULL)")
        cur.executemany("INSERT INTO t VALUES (%s, %s)", [(i, i) for i in range(1, ROWS + 1)])
    yield connection
    connection.close()


def run(server: Dsn, db: str, **kw: Any) -> Result:
    return migrate(MigrationConfig(dsn=server, database=db, table="t", alter=ALTER,
                                   repair=False, tuning=TUNING, **kw))


def execute(conn: Conn, *statements: str) -> None:
    with conn.cursor() as cur:
        for statement in statements:
            cur.execute(statement)


def rows(conn: Conn, table: str) -> Any:
    with conn.cursor() as cur:
        cur.execute(f"SELECT * FROM `{table}` ORDER BY 1")
        return cur.fetchall()


def die_at(point: str, nth: int = 1) -> None:
    """The run stops at the nth time it reaches `point`, leaving its tables behind."""
    seen = {"n": 0}

    def stop() -> None:
        seen["n"] += 1
        if seen["n"] == nth:
            raise Aborted(f"stopped by the test at {point}")

    faults.register(point, stop)


USER_TABLES = ("CREATE TABLE _t_new (id INT PRIMARY KEY, note TEXT)",
               "INSERT INTO _t_new VALUES (1, 'mine')",
               "CREATE TABLE _t_chkpnt (id INT PRIMARY KEY, note TEXT)",
               "INSERT INTO _t_chkpnt VALUES (2, 'also mine')")


def test_user_tables_with_artifact_names_block_and_survive(server: Dsn, db: str,
                                                           conn: Conn) -> None:
    execute(conn, *USER_TABLES)
    with pytest.raises(ArtifactsExist) as info:
        run(server, db)
    assert "_t_new, _t_chkpnt" in info.value.message
    assert "not made by onlineddl" in info.value.message
    assert "rename or drop" in info.value.hint
    with pytest.raises(ArtifactsExist) as refused:
        cleanup(server, db, "t")
    assert refused.value.exit_code == 14
    assert "left alone _t_new, _t_chkpnt" in refused.value.message
    with pytest.raises(ResumeRefused) as resume:
        run(server, db, resume=True)
    assert "nothing to resume" in resume.value.message
    assert "checkpoint: None" in status(server, db, "t"), "a user's _t_chkpnt is no checkpoint"
    assert tables(conn) == {"t", "_t_new", "_t_chkpnt"}
    assert rows(conn, "_t_new") == ((1, "mine"),)
    assert rows(conn, "_t_chkpnt") == ((2, "also mine"),)


def test_names_differing_in_case_are_other_tables(server: Dsn, db: str, conn: Conn) -> None:
    """With lower_case_table_names=0, `T` and `_T_new` are not `t` nor its shadow."""
    with conn.cursor() as cur:
        cur.execute("SELECT @@lower_case_table_names")
        if cur.fetchone()[0] != 0:
            external_server_lacks("names are case-insensitive on this server "
                                  "(lower_case_table_names != 0)")
    execute(conn, "CREATE TABLE T (id INT PRIMARY KEY)", "CREATE TABLE _T_new (id INT PRIMARY KEY)",
            "CREATE TABLE _T_old (id INT PRIMARY KEY)")
    run(server, db, drop_old=True)
    assert tables(conn) == {"t", "T", "_T_new", "_T_old"}
    with pytest.raises(ArtifactsExist) as info:
        migrate(MigrationConfig(dsn=server, database=db, table="T", alter=ALTER,
                                repair=False, tuning=TUNING))
    assert "_T_new" in info.value.message and "not made by onlineddl" in info.value.message


def test_resume_does_not_adopt_a_users_shadow(server: Dsn, db: str, conn: Conn) -> None:
    """Our checkpoint, but the `_t_new` beside it is not the table the run created."""
    die_at("after_chunk", 2)
    with pytest.raises(Aborted):
        run(server, db)
    faults.clear()
    execute(conn, "DROP TABLE _t_new", USER_TABLES[0], USER_TABLES[1])
    with pytest.raises(ResumeRefused) as info:
        run(server, db, resume=True)
    assert "_t_new is not the shadow table this run created" in info.value.message
    with pytest.raises(ArtifactsExist) as refused:
        cleanup(server, db, "t")
    assert "left alone _t_new" in refused.value.message
    assert "dropped " + db + "._t_chkpnt" in refused.value.message
    assert tables(conn) == {"t", "_t_new"}
    assert rows(conn, "_t_new") == ((1, "mine"),)


def test_cleanup_removes_our_own_leftovers(server: Dsn, db: str, conn: Conn) -> None:
    before = rows(conn, "t")
    die_at("after_chunk", 2)
    with pytest.raises(Aborted):
        run(server, db)
    faults.clear()
    assert tables(conn) == {"t", "_t_new", "_t_chkpnt"}
    assert cleanup(server, db, "t") == [f"dropped {db}._t_new", f"dropped {db}._t_chkpnt"]
    assert tables(conn) == {"t"}
    assert rows(conn, "t") == before


def test_a_run_that_died_setting_up_is_ours(server: Dsn, db: str, conn: Conn) -> None:
    """Killed between creating its checkpoint and writing the first row: cleanup takes the
    empty shadow created after the checkpoint for the run's own."""
    die_at("shadow_created")
    with pytest.raises(Aborted):
        run(server, db)
    faults.clear()
    assert tables(conn) == {"t", "_t_new", "_t_chkpnt"}
    assert cleanup(server, db, "t") == [f"dropped {db}._t_new", f"dropped {db}._t_chkpnt"]
    # ... and --resume starts such a run over.
    die_at("shadow_created")
    with pytest.raises(Aborted):
        run(server, db)
    faults.clear()
    assert run(server, db, resume=True, drop_old=True).rows_copied == ROWS
    assert tables(conn) == {"t"}


def test_legacy_old_table_is_explained_and_dropped_on_request(server: Dsn, db: str,
                                                              conn: Conn) -> None:
    execute(conn, "CREATE TABLE _t_old LIKE t", "INSERT INTO _t_old SELECT * FROM t")
    result = run(server, db)                        # not blocked by it
    assert kept_tables(conn) == {"t", "_t_old", "_t_old_*"}
    with pytest.raises(ResumeRefused) as resume:
        run(server, db, resume=True)
    assert resume.value.exit_code == 9
    kept = cleanup(server, db, "t")
    assert len(kept) == 1 and kept[0].startswith(f"kept {db}._t_old: the original table "
                                                 "kept by an onlineddl version before")
    assert kept_tables(conn) == {"t", "_t_old", "_t_old_*"}
    done = cleanup(server, db, "t", drop_old=True)
    assert done[0] == f"dropped {db}._t_old (--drop-old)"
    assert done[1].startswith(f"dropped {db}.{result.old_table} (the original before")
    assert tables(conn) == {"t", "_onlineddl_old_tables"}


def test_drop_old_refused_while_t_is_missing(server: Dsn, db: str, conn: Conn) -> None:
    execute(conn, "RENAME TABLE t TO _t_old")
    with pytest.raises(ArtifactsExist) as info:
        cleanup(server, db, "t", drop_old=True)
    assert "may be the only copy" in info.value.message
    assert tables(conn) == {"_t_old"}


def test_resume_with_nothing_to_resume_refuses(server: Dsn, db: str, conn: Conn) -> None:
    with pytest.raises(ResumeRefused) as info:
        run(server, db, resume=True)
    assert info.value.exit_code == 9
    assert "nothing to resume" in info.value.message
    assert "without --resume" in info.value.hint
    assert tables(conn) == {"t"}


def test_table_renamed_away_mid_copy(server: Dsn, db: str, conn: Conn) -> None:
    seen = {"n": 0}

    def rename() -> None:
        seen["n"] += 1
        if seen["n"] == 2:
            execute(conn, "RENAME TABLE t TO t_moved")

    faults.register("after_chunk", rename)
    with pytest.raises(TableVanished) as info:
        run(server, db)
    assert info.value.exit_code == 13
    assert f"{db}.t disappeared during the run" in info.value.message
    assert "--resume" not in str(info.value)
    assert tables(conn) == {"t_moved"}


def test_resume_on_another_server_is_refused(server: Dsn, db: str, conn: Conn) -> None:
    """The checkpoint names the server it was written on; a failover's new primary (here:
    the checkpoint rewritten to name another server) refuses the resume."""
    die_at("after_chunk", 2)
    with pytest.raises(Aborted):
        run(server, db)
    faults.clear()
    with conn.cursor() as cur:
        cur.execute("SELECT server_identity FROM _t_chkpnt")
        recorded = cur.fetchone()[0]
        assert recorded.startswith(("server_uuid=", "server_id="))
        cur.execute("UPDATE _t_chkpnt SET server_identity = 'server_id=4242 gtid_domain_id=9'")
    before = rows(conn, "_t_new")
    with pytest.raises(ResumeRefused) as info:
        run(server, db, resume=True)
    assert "written on another server (server_id=4242 gtid_domain_id=9)" in info.value.message
    assert "cleanup" in info.value.hint
    assert rows(conn, "_t_new") == before, "a refused resume changes nothing"
    with conn.cursor() as cur:
        cur.execute("UPDATE _t_chkpnt SET server_identity = %s", (recorded,))
    assert run(server, db, resume=True).resumed


def test_cli_cleanup_drop_old_and_refusal_exit_codes(server: Dsn, db: str, conn: Conn) -> None:
    run(server, db)
    base = [sys.executable, "-m", "onlineddl", "cleanup", "--host", server.host, "--port",
            str(server.port), "--user", server.user, "--database", db, "--table", "t"]
    execute(conn, *USER_TABLES[:2])
    refused = subprocess.run([*base, "--drop-old"], env=cli_env(server), capture_output=True,
                             text=True, timeout=120)
    assert refused.returncode == 14, refused.stderr
    assert "left alone _t_new" in refused.stderr
    assert "dropped " + db + "._t_old_" in refused.stderr
    assert tables(conn) == {"t", "_t_new", "_onlineddl_old_tables"}

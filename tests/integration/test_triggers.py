"""Tables with triggers: carried across the swap, firing exactly once, crash-safe.

The mirror oracle stays honest: the mirror table gets the same triggers, each writing
to the mirror's own audit table, and every writer transaction changes T and the mirror
together. After the run T must equal the mirror row for row (BEFORE triggers that
change NEW included) and the two audit tables must hold the same rows (AFTER triggers
fired exactly once per application write, never for the tool's copy and flush writes).
Checksum repair is off throughout.

The triggers: two BEFORE INSERT triggers that change NEW, the second created first and
placed after the other with PRECEDES (their order shows in the value), AFTER INSERT
with another definer, AFTER UPDATE writing the audit table, and AFTER DELETE created
under sql_mode PIPES_AS_CONCAT (its `||` concatenates only under that mode).
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pymysql
import pytest
from helpers import Conn, cli_env, connect, kept_tables, migrate_command, tables
from relations import audit_rows, run_config, trigger_names
from workload import IntModel, Writers, assert_same_rows, make_tables, q

from onlineddl import faults
from onlineddl.config import Dsn, MigrationConfig, Tuning
from onlineddl.errors import (
    CutoverFailed,
    InvalidAlter,
    MissingPrivilege,
    OnlineDDLError,
    TableChanged,
    UnsupportedTable,
)
from onlineddl.migration import Migration, migrate

ROWS = 2000
ALTER = "ADD COLUMN added INT NOT NULL DEFAULT 7, ADD INDEX v_idx (v)"
COLUMNS = ["id", "name", "v", "data", "note"]
TUNING = Tuning(chunk_rows_initial=200, chunk_rows_min=50, chunk_rows_max=400,
                progress_interval=1.0, checkpoint_interval=0.5)
GUARD_ERROR = 1644   # ER_SIGNAL_EXCEPTION: the guard's SIGNAL SQLSTATE '45000'
TRIGGER_FIELDS = ("TRIGGER_NAME, ACTION_TIMING, EVENT_MANIPULATION, ACTION_ORDER, "
                  "ACTION_STATEMENT, DEFINER, SQL_MODE, CHARACTER_SET_CLIENT, "
                  "COLLATION_CONNECTION")


def trigger_sql(table: str, audit: str, definer: str) -> list[str]:
    t, a = q(table), q(audit)
    return [
        f"CREATE TRIGGER {q(table + '_bi_b')} BEFORE INSERT ON {t} FOR EACH ROW "
        "SET NEW.note = CONCAT(NEW.note, '+b\u2713')",   # non-ASCII, client utf8mb4
        f"CREATE TRIGGER {q(table + '_bi_a')} BEFORE INSERT ON {t} FOR EACH ROW "
        f"PRECEDES {q(table + '_bi_b')} SET NEW.note = CONCAT(COALESCE(NEW.note, ''), '+a')",
        f"CREATE DEFINER={definer} TRIGGER {q(table + '_ai')} AFTER INSERT ON {t} FOR EACH ROW "
        f"INSERT INTO {a} (kind, id, v, note) VALUES ('i', NEW.id, NEW.v, NEW.note)",
        f"CREATE TRIGGER {q(table + '_au')} AFTER UPDATE ON {t} FOR EACH ROW BEGIN "
        f"INSERT INTO {a} (kind, id, v, note) VALUES ('u', NEW.id, NEW.v, OLD.id); END",
        "SET SESSION sql_mode = CONCAT(@@SESSION.sql_mode, ',PIPES_AS_CONCAT')",
        f"CREATE TRIGGER {q(table + '_ad')} AFTER DELETE ON {t} FOR EACH ROW "
        f"INSERT INTO {a} (kind, id, v, note) VALUES ('d', OLD.id, OLD.v, 'x' || OLD.id)",
        "SET SESSION sql_mode = DEFAULT",
    ]


@pytest.fixture
def definer(server: Dsn, db: str) -> Iterator[str]:
    """Another account, owner of one trigger (it needs the privileges its body uses)."""
    user = f"odl_trg_{uuid.uuid4().hex[:8]}"
    with connect(server) as admin, admin.cursor() as cur:
        cur.execute(f"CREATE USER '{user}'@'localhost'")
        cur.execute(f"GRANT ALL PRIVILEGES ON {q(db)}.* TO '{user}'@'localhost'")
    yield f"'{user}'@'localhost'"
    with connect(server) as admin, admin.cursor() as cur:
        cur.execute(f"DROP USER IF EXISTS '{user}'@'localhost'")


@pytest.fixture
def table(server: Dsn, db: str, definer: str) -> Iterator[tuple[Conn, IntModel]]:
    model = IntModel(id_max=ROWS + 300)
    conn = connect(server, db)
    make_tables(conn, model, ROWS)
    with conn.cursor() as cur:
        for name in ("t", "mirror"):
            cur.execute(f"CREATE TABLE {q('audit_' + name)} (n BIGINT AUTO_INCREMENT PRIMARY "
                        "KEY, kind CHAR(1) NOT NULL, id BIGINT, v INT, "
                        "note TEXT CHARACTER SET utf8mb4)")
            for text in trigger_sql(name, "audit_" + name, definer):
                cur.execute(text)
    yield conn, model
    conn.close()


def triggers_of(conn: Conn, table: str) -> list[tuple[Any, ...]]:
    """Every recorded property, the table's own name replaced so T and mirror compare."""
    with conn.cursor() as cur:
        cur.execute(f"SELECT {TRIGGER_FIELDS} FROM information_schema.TRIGGERS "
                    "WHERE EVENT_OBJECT_SCHEMA = DATABASE() AND EVENT_OBJECT_TABLE = %s "
                    "ORDER BY ACTION_TIMING, EVENT_MANIPULATION, ACTION_ORDER", (table,))
        return [tuple(str(v) for v in r) for r in cur.fetchall()]


def audit(conn: Conn, name: str) -> list[tuple[Any, ...]]:
    return audit_rows(conn, "audit_" + name, "kind, id, v, note")


def assert_carried(conn: Conn, before: list[tuple[Any, ...]], writers: Writers) -> None:
    errors = [e for e in writers.errors if str(GUARD_ERROR) not in e]
    assert not errors, errors[:5]
    assert_same_rows(conn, "t", "mirror", COLUMNS, ["id"])
    got, want = audit(conn, "t"), audit(conn, "mirror")
    assert len(got) == len(want) and got == want, "trigger effects differ from the mirror's"
    assert triggers_of(conn, "t") == before
    assert kept_tables(conn) - {"audit_t", "audit_mirror"} == {"t", "mirror", "_t_old_*"}
    old = next(n for n in tables(conn) if n.startswith("_t_old_"))
    assert triggers_of(conn, old) == [], "the guard left on the old table"
    with conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM information_schema.TRIGGERS WHERE "
                    "TRIGGER_SCHEMA = DATABASE() AND ACTION_STATEMENT LIKE '%onlineddl-guard%'")
        assert cur.fetchone()[0] == 0


def config(server: Dsn, db: str, alter: str = ALTER, **kw: Any) -> MigrationConfig:
    return run_config(server, db, alter, kw.pop("tuning", TUNING), **kw)


def test_triggers_carried_and_fire_exactly_once(server: Dsn, db: str,
                                                table: tuple[Conn, IntModel]) -> None:
    conn, model = table
    before = triggers_of(conn, "t")
    assert len(before) == 5
    writers = Writers(server, db, "t", "mirror", model, threads=3)
    bursts = writers.burst_at("after_chunk", 10)
    writers.start()
    try:
        result = migrate(config(server, db))
        writers.burst(100, seed=4242)   # after the swap: the new T's triggers fire
    finally:
        writers.stop()
    assert writers.committed > 150 and len(bursts) > 3
    assert result.old_table
    assert_carried(conn, before, writers)
    assert not writers.errors
    with conn.cursor() as cur:   # the order and the sql_mode came along
        cur.execute("INSERT INTO t (id, name, v, note) VALUES (99999, 'z', 1, NULL)")
        cur.execute("DELETE FROM t WHERE id = 99999")
        cur.execute("SELECT note FROM audit_t WHERE kind = 'i' AND id = 99999")
        assert cur.fetchone()[0] == "+a+b\u2713"
        cur.execute("SELECT note FROM audit_t WHERE kind = 'd' AND id = 99999")
        assert cur.fetchone()[0] == "x99999"


def test_writes_queued_on_the_block_fire_once_on_the_new_table(
        server: Dsn, db: str, table: tuple[Conn, IntModel]) -> None:
    """Writers waiting for T when the block starts, and (MariaDB) when the write lock
    for the carry is queued: none gets in between (the tripwire would fail the run on a
    write reaching the old table), each fires the new T's triggers once."""
    conn, _ = table
    before = triggers_of(conn, "t")
    threads: list[threading.Thread] = []
    outcomes: list[str | None] = []

    def queue_writes(first_key: int) -> None:
        for key in range(first_key, first_key + 4):
            def write(key: int = key) -> None:
                try:
                    with connect(server, db) as own:
                        outcomes.append(app_write(own, key))
                except Exception as exc:   # counted: the test fails on it
                    outcomes.append(f"writer crashed: {exc!r}")
            thread = threading.Thread(target=write, daemon=True)
            thread.start()
            threads.append(thread)
        # Every writer started so far waits for T (this batch and, at the relock, the
        # one queued when the block started): seen, not slept for.
        deadline = time.monotonic() + 20
        with connect(server, db) as watch, watch.cursor() as cur:
            while True:
                cur.execute("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE "
                            "INFO LIKE 'UPDATE t SET v = v + 5 WHERE id = %%' AND "
                            "STATE LIKE 'Waiting for table%%'")
                if cur.fetchone()[0] >= len(threads):
                    return
                assert time.monotonic() < deadline, "the writers never queued on T"
                time.sleep(0.005)

    faults.register("cutover_started", lambda: queue_writes(10))
    faults.register("trigger_relock_queued", lambda: queue_writes(20))
    migrate(config(server, db))
    for thread in threads:
        thread.join(timeout=30)
    assert len(outcomes) == len(threads) and all(o is None for o in outcomes), outcomes
    writers = Writers(server, db, "t", "mirror", IntModel(id_max=1))
    assert_carried(conn, before, writers)
    with conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM audit_t WHERE kind = 'u' AND id IN "
                    "(10, 11, 12, 13, 20, 21, 22, 23)")
        assert cur.fetchone()[0] == len(outcomes)


@pytest.mark.parametrize("alter", [
    "ADD COLUMN c INT NOT NULL DEFAULT 3 FIRST",
    "MODIFY v BIGINT NOT NULL DEFAULT 0, ADD INDEX v_idx (v)",
    "MODIFY note VARCHAR(200) CHARACTER SET utf8mb4 NULL",
])
def test_triggers_as_the_plain_alter_leaves_them(server: Dsn, db: str,
                                                 table: tuple[Conn, IntModel],
                                                 alter: str) -> None:
    """The oracle: the mirror gets the server's own ALTER, T onlineddl's. Both keep
    their triggers as they were, and the same writes afterwards leave the same rows and
    the same audit rows."""
    conn, model = table
    before = triggers_of(conn, "t")
    with conn.cursor() as cur:
        cur.execute(f"ALTER TABLE mirror {alter}")
    migrate(config(server, db, alter))
    assert triggers_of(conn, "t") == before
    assert [r[1:] for r in triggers_of(conn, "mirror")] == \
        [tuple(str(v).replace("audit_t", "audit_mirror") for v in r[1:]) for r in before]
    with conn.cursor() as cur:
        shapes = []
        for name in ("t", "mirror"):
            cur.execute(f"SHOW CREATE TABLE {name}")
            shapes.append(cur.fetchone()[1].split("\n", 1)[1])
        assert shapes[0] == shapes[1]
    Writers(server, db, "t", "mirror", model).burst(60, seed=11)
    assert_same_rows(conn, "t", "mirror", COLUMNS, ["id"])
    assert audit(conn, "t") == audit(conn, "mirror")


@pytest.mark.mariadb_only
@pytest.mark.parametrize("point", ["trigger_relock_queued", "triggers_moved"])
def test_foreign_ddl_in_the_block_ends_the_run_with_the_triggers_on_t(
        server: Dsn, db: str, table: tuple[Conn, IntModel], point: str) -> None:
    """Another session's DDL queued on T while the triggers move (MariaDB: it would run
    on T as soon as the lock goes): the swap is called off, the triggers are put back on
    T before the lock goes, the DDL runs on T, the run ends (exit 13)."""
    conn, _ = table
    before = triggers_of(conn, "t")
    ddl = "ALTER TABLE t ADD COLUMN z INT NULL"
    done: dict[str, Any] = {}

    def queue_ddl() -> None:
        def run() -> None:
            with connect(server, db) as other, other.cursor() as cur:
                cur.execute(ddl)
                done["ok"] = True
        threading.Thread(target=run, daemon=True).start()
        deadline = time.monotonic() + 20
        with connect(server, db) as watch, watch.cursor() as cur:
            while True:
                cur.execute("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE "
                            "INFO = %s AND STATE = 'Waiting for table metadata lock'", (ddl,))
                if cur.fetchone()[0]:
                    return
                assert time.monotonic() < deadline
                time.sleep(0.005)

    faults.register(point, queue_ddl)
    with pytest.raises(TableChanged) as caught:
        migrate(config(server, db))
    assert caught.value.exit_code == 13
    deadline = time.monotonic() + 20
    while "ok" not in done:
        assert time.monotonic() < deadline, "the DDL never ran"
        time.sleep(0.01)
    with conn.cursor() as cur:
        cur.execute("SHOW COLUMNS FROM t")
        cols = [r[0] for r in cur.fetchall()]
    assert "z" in cols and "added" not in cols   # the DDL ran on T; no swap
    assert triggers_of(conn, "t") == before
    assert app_write(conn, 5) is None
    with conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM audit_t WHERE kind = 'u' AND id = 5")
        assert cur.fetchone()[0] == 1


def run_cli(server: Dsn, db: str, *extra: str, fault: str | None = None,
            alter: str = ALTER) -> subprocess.CompletedProcess[str]:
    args = migrate_command(server, db, alter, "--chunk-size", "300", "--chunk-size-max",
                           "600", *extra)
    return subprocess.run(args, env=cli_env(server, fault), capture_output=True, text=True,
                          timeout=300)


def cleanup_cli(server: Dsn, db: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "onlineddl", "cleanup", "--host", server.host, "--port",
         str(server.port), "--user", server.user, "--database", db, "--table", "t"],
        env=cli_env(server), capture_output=True, text=True, timeout=120)


def app_write(conn: Conn, key: int) -> str | None:
    """One application write to T and the mirror in one transaction; the error text
    when it fails (then neither changed)."""
    conn.autocommit(False)
    try:
        with conn.cursor() as cur:
            cur.execute("UPDATE t SET v = v + 5 WHERE id = %s", (key,))
            cur.execute("UPDATE mirror SET v = v + 5 WHERE id = %s", (key,))
        conn.commit()
        return None
    except pymysql.err.MySQLError as exc:
        conn.rollback()
        return f"{exc.args[0]} {exc.args[1]}"
    finally:
        conn.autocommit(True)


# The points inside the carry, and what a write sees after a kill there.
CRASH_POINTS = [
    ("before_swap", "fires"),             # drained, nothing of the carry done yet
    # MariaDB only: T WRITE queued, the guard not yet on (MySQL 8 carries the triggers
    # under its one LOCK TABLES: no relock).
    pytest.param("trigger_relock_queued", "fires", marks=pytest.mark.mariadb_only),
    ("triggers_guarded", "fails"),        # guard + every trigger on T
    ("triggers_dropped", "fails"),        # guard only on T
    ("triggers_moved", "fails"),          # guard on T, the triggers on the shadow
    ("after_swap", "fires"),              # the new T has them; the guard is on the old
]


@pytest.mark.parametrize(("point", "write"), CRASH_POINTS)
def test_kill_inside_the_carry_then_resume(server: Dsn, db: str,
                                           table: tuple[Conn, IntModel], point: str,
                                           write: str) -> None:
    conn, model = table
    before = triggers_of(conn, "t")
    writers = Writers(server, db, "t", "mirror", model, threads=2, pause=0.002)
    writers.start()
    try:
        crashed = run_cli(server, db, fault=point)
        assert crashed.returncode == 137, crashed.stderr[-2000:]
        error = app_write(conn, 5)      # the application's write in the crash window
        if write == "fails":
            assert error is not None and str(GUARD_ERROR) in error, error
            assert "--resume" in error and "interrupted" in error
            # The resume puts the triggers back first, not at its cutover: killed again
            # before that, writes work and fire the triggers.
            again = run_cli(server, db, "--resume", fault="after_checksum")
            assert again.returncode == 137, again.stderr[-2000:]
            assert app_write(conn, 7) is None
        else:
            assert error is None
        resumed = run_cli(server, db, "--resume")
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        assert app_write(conn, 6) is None
        after = Writers(server, db, "t", "mirror", model)   # writes after the resume
        after.burst(30, seed=77)
        assert not after.errors and after.committed > 0, after.errors[:3]
    finally:
        writers.stop()
    if write == "fires":
        assert not writers.errors, writers.errors[:3]
    assert_carried(conn, before, writers)


def test_failed_carry_is_put_back_under_the_lock(server: Dsn, db: str,
                                                 table: tuple[Conn, IntModel]) -> None:
    """A statement of the carry fails (here: a fault callback, after T lost its
    triggers): the same attempt puts them back before the lock goes, and the next
    attempt carries them."""
    conn, model = table
    before = triggers_of(conn, "t")
    failed = {"n": 0}

    def fail_once() -> None:
        if not failed["n"]:
            failed["n"] += 1
            raise CutoverFailed("injected: the CREATE TRIGGER failed")

    def still_whole() -> None:
        # The next attempt starts with T as it was: every trigger back, no guard.
        if failed["n"]:
            with connect(server, db) as check:
                assert triggers_of(check, "t") == before

    faults.register("triggers_dropped", fail_once)
    faults.register("cutover_attempt", still_whole)
    writers = Writers(server, db, "t", "mirror", model, threads=2)
    writers.start()
    try:
        result = migrate(config(server, db))
        writers.burst(50, seed=7)
    finally:
        writers.stop()
    assert failed["n"] == 1 and result.cutover_attempts == 2
    assert not writers.errors, writers.errors[:3]
    assert_carried(conn, before, writers)


def test_cleanup_after_a_kill_puts_the_triggers_back(server: Dsn, db: str,
                                                     table: tuple[Conn, IntModel]) -> None:
    conn, _ = table
    before = triggers_of(conn, "t")
    crashed = run_cli(server, db, fault="triggers_dropped")
    assert crashed.returncode == 137
    assert triggers_of(conn, "t") != before
    done = cleanup_cli(server, db)
    assert done.returncode == 0, done.stderr
    assert "repaired the triggers" in done.stdout + done.stderr
    assert triggers_of(conn, "t") == before
    assert tables(conn) == {"t", "mirror", "audit_t", "audit_mirror"}
    assert app_write(conn, 5) is None
    with conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM audit_t WHERE kind = 'u' AND id = 5")
        assert cur.fetchone()[0] == 1, "the triggers fire again, once"


def test_kill_then_plain_run_is_refused_while_guarded(server: Dsn, db: str,
                                                      table: tuple[Conn, IntModel]) -> None:
    conn, _ = table
    before = triggers_of(conn, "t")
    assert run_cli(server, db, fault="triggers_guarded").returncode == 137
    plain = run_cli(server, db)
    assert plain.returncode == 4, plain.stderr[-2000:]
    assert "guard trigger" in plain.stderr and "--resume" in plain.stderr
    assert str(GUARD_ERROR) in (app_write(conn, 5) or ""), "the refusal changed nothing"
    assert run_cli(server, db, "--resume").returncode == 0
    assert triggers_of(conn, "t") == before


# --- refusals: the table untouched ------------------------------------------------------


def test_alter_dropping_a_column_a_trigger_uses_is_refused(
        server: Dsn, db: str, table: tuple[Conn, IntModel]) -> None:
    """A plain ALTER keeps the trigger and every insert then fails (Unknown column):
    refused up front instead."""
    conn, _ = table
    before, rows = triggers_of(conn, "t"), tables(conn)
    for alter in ("DROP COLUMN note", "RENAME COLUMN note TO remark",
                  "CHANGE note remark TEXT NULL"):
        with pytest.raises(InvalidAlter) as info:
            migrate(config(server, db, alter))
        assert info.value.exit_code == 5
        assert "t_bi_a" in info.value.message and "note" in info.value.message
        assert triggers_of(conn, "t") == before and tables(conn) == rows


def test_leftover_guard_without_a_run_is_refused(server: Dsn, db: str, conn: Conn) -> None:
    """A guard with no checkpoint (its run's tables dropped by hand): refused, named."""
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE t (id INT PRIMARY KEY, v INT)")
        cur.execute("CREATE TRIGGER _t_guard_ins BEFORE INSERT ON t FOR EACH ROW SIGNAL "
                    "SQLSTATE '45000' SET MESSAGE_TEXT = 'onlineddl-guard: x'")
    with pytest.raises(UnsupportedTable) as info:
        migrate(config(server, db, "ADD COLUMN c INT NULL"))
    assert "_t_guard_ins" in info.value.message
    assert tables(conn) == {"t"}
    # --resume=auto with nothing to resume starts afresh: the guard is refused the same.
    with pytest.raises(UnsupportedTable, match="_t_guard_ins"):
        migrate(config(server, db, "ADD COLUMN c INT NULL", resume_auto=True))
    assert tables(conn) == {"t"}


def test_guard_name_taken_is_refused(server: Dsn, db: str, conn: Conn) -> None:
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE t (id INT PRIMARY KEY, v INT)")
        cur.execute("CREATE TABLE other (id INT PRIMARY KEY)")
        cur.execute("CREATE TRIGGER _t_guard_upd BEFORE UPDATE ON other FOR EACH ROW "
                    "SET NEW.id = NEW.id")
        cur.execute("CREATE TRIGGER t_bu BEFORE UPDATE ON t FOR EACH ROW SET NEW.v = 1")
    with pytest.raises(UnsupportedTable) as info:
        migrate(config(server, db, "ADD COLUMN c INT NULL"))
    assert "_t_guard_upd (on other)" in info.value.message
    assert tables(conn) == {"t", "other"}


def test_case_only_rename_of_a_used_column_is_carried(server: Dsn, db: str,
                                                      conn: Conn) -> None:
    """Column names ignore case: NEW.v still names `V`, as after a plain ALTER."""
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE t (id INT PRIMARY KEY, v INT)")
        cur.execute("CREATE TRIGGER t_bi BEFORE INSERT ON t FOR EACH ROW SET NEW.v = 1")
    migrate(config(server, db, "RENAME COLUMN v TO V"))
    with conn.cursor() as cur:
        cur.execute("INSERT INTO t (id, V) VALUES (1, 5)")
        cur.execute("SELECT V FROM t")
        assert cur.fetchone()[0] == 1


def test_definer_privilege_is_checked_up_front(server: Dsn, db: str, conn: Conn) -> None:
    user, password = f"odl_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    who = f"'{user}'@'127.0.0.1'"
    with connect(server) as admin, admin.cursor() as cur:
        cur.execute("SELECT @@GLOBAL.log_bin_trust_function_creators")
        trusted = int(cur.fetchone()[0])
        cur.execute(f"CREATE USER {who} IDENTIFIED BY '{password}'")
        cur.execute(f"GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO {who}")
        cur.execute(f"GRANT ALL PRIVILEGES ON {q(db)}.* TO {who}")
    try:
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE t (id INT PRIMARY KEY, v INT)")
            cur.execute("CREATE TABLE a (v INT)")
            cur.execute("CREATE TRIGGER t_ai AFTER INSERT ON t FOR EACH ROW "
                        "INSERT INTO a VALUES (NEW.v)")   # definer: the test's admin
        dsn = Dsn(host=server.host, port=server.port, user=user, password=password)
        # With the binlog on, only SUPER creates triggers unless the server trusts
        # their creators (error 1419 otherwise, even for the user's own definer).
        with pytest.raises(MissingPrivilege) as info:
            migrate(config(dsn, db, "ADD COLUMN c INT NULL"))
        assert info.value.exit_code == 4
        assert "log_bin_trust_function_creators" in info.value.message
        assert "definer(s) " in info.value.message
        with connect(server) as admin, admin.cursor() as cur:
            cur.execute("SET GLOBAL log_bin_trust_function_creators = ON")
        with pytest.raises(MissingPrivilege) as info:
            migrate(config(dsn, db, "ADD COLUMN c INT NULL"))
        assert "log_bin_trust_function_creators" not in info.value.message
        assert "definer(s) " in info.value.message
        assert f"ON *.* TO {who}" in info.value.hint
        assert tables(conn) == {"t", "a"} and len(triggers_of(conn, "t")) == 1
    finally:
        with connect(server) as admin, admin.cursor() as cur:
            cur.execute(f"SET GLOBAL log_bin_trust_function_creators = {trusted}")
            cur.execute(f"DROP USER IF EXISTS {who}")


def test_dry_run_names_the_triggers(server: Dsn, db: str,
                                    table: tuple[Conn, IntModel]) -> None:
    from onlineddl.dryrun import render
    conn, _ = table
    text = render(Migration(config(server, db)).dry_run())
    assert "Triggers: 5 on t" in text
    assert "t_bi_a: BEFORE INSERT (order 1" in text and "t_bi_b: BEFORE INSERT (order 2" in text
    assert tables(conn) == {"t", "mirror", "audit_t", "audit_mirror"}


def test_resume_of_a_checkpoint_without_the_triggers_column(
        server: Dsn, db: str, table: tuple[Conn, IntModel]) -> None:
    """A checkpoint written before trigger support (no `triggers` column) resumes: the
    column is added; the triggers are read under the write block as always."""
    conn, _ = table
    before = triggers_of(conn, "t")
    assert run_cli(server, db, fault="after_chunk:2").returncode == 137
    with conn.cursor() as cur:
        cur.execute("ALTER TABLE _t_chkpnt DROP COLUMN triggers")
    resumed = run_cli(server, db, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert_carried(conn, before, Writers(server, db, "t", "mirror", IntModel(id_max=1)))


def test_status_reads_a_checkpoint_without_the_triggers_column(
        server: Dsn, db: str, table: tuple[Conn, IntModel]) -> None:
    """`status` only reads: an older checkpoint is shown, not altered."""
    conn, _ = table
    assert run_cli(server, db, fault="after_chunk:2").returncode == 137
    with conn.cursor() as cur:
        cur.execute("ALTER TABLE _t_chkpnt DROP COLUMN triggers")
    shown = subprocess.run(
        [sys.executable, "-m", "onlineddl", "status", "--host", server.host, "--port",
         str(server.port), "--user", server.user, "--database", db, "--table", "t"],
        env=cli_env(server), capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert "phase: copy" in shown.stdout
    with conn.cursor() as cur:
        cur.execute("SHOW COLUMNS FROM _t_chkpnt LIKE 'triggers'")
        assert cur.fetchone() is None


@pytest.mark.parametrize("change", ["create", "drop"])
def test_triggers_changed_during_the_run_stop_it_then_resume_carries_them(
        server: Dsn, db: str, table: tuple[Conn, IntModel], change: str) -> None:
    """Another session's CREATE / DROP TRIGGER on T during the copy: the run carries
    nothing it has not checked (exit 13, T unchanged); --resume checks the triggers as
    they are then and carries exactly those."""
    conn, _ = table
    other = connect(server, db)
    statement = ("CREATE TRIGGER t_extra BEFORE UPDATE ON t FOR EACH ROW "
                 "SET NEW.note = CONCAT(COALESCE(NEW.note, ''), '+u')"
                 if change == "create" else "DROP TRIGGER t_ai")

    def ddl() -> None:
        with other.cursor() as cur:
            cur.execute(statement)

    faults.register("after_checksum", ddl)
    try:
        with pytest.raises(TableChanged, match="triggers of t changed during the run"):
            migrate(config(server, db))
    finally:
        faults.clear()
        other.close()
    now = triggers_of(conn, "t")
    assert ("t_extra" in [r[0] for r in now]) is (change == "create")
    assert tables(conn) >= {"_t_new", "_t_chkpnt"}         # resumable, T unchanged
    migrate(config(server, db, resume=True))
    assert triggers_of(conn, "t") == now


@pytest.mark.parametrize("cause", ["name-taken", "create-fails"])
def test_triggers_that_cannot_be_put_back_keep_the_guard(
        server: Dsn, db: str, table: tuple[Conn, IntModel], cause: str) -> None:
    """The carry fails under the block, and so does putting the triggers back on T:
    another session gave the name of one of them to another table's trigger meanwhile
    (trigger names are per schema), or the CREATE fails. T keeps its guard, so no write
    reaches it without its triggers; the run stops with an error that says so and what
    to do; then --resume (or `onlineddl cleanup` and a new run) puts them back."""
    conn, model = table
    before = triggers_of(conn, "t")
    other = connect(server, db)
    done = {"carry": 0, "taken": 0}

    def fail_carry() -> None:
        if not done["carry"]:
            done["carry"] += 1
            raise CutoverFailed("injected: the CREATE TRIGGER on the new table failed")

    def restoring() -> None:
        if cause == "create-fails":
            raise UnsupportedTable("injected: the CREATE TRIGGER on t failed")
        if not done["taken"]:
            done["taken"] += 1
            with other.cursor() as cur:
                cur.execute("CREATE TRIGGER t_ai AFTER INSERT ON audit_mirror FOR EACH ROW "
                            "SET @taken = 1")

    faults.register("triggers_moved", fail_carry)
    faults.register("triggers_restoring", restoring)
    writers = Writers(server, db, "t", "mirror", model, threads=2, pause=0.002)
    writers.start()
    try:
        started = time.monotonic()
        with pytest.raises(OnlineDDLError) as err:
            migrate(config(server, db))
        assert time.monotonic() - started < 60
        faults.clear()
        text = f"{err.value.message} {err.value.hint}"
        assert "keeps its guard" in text and "--resume" in text and "cleanup" in text, text
        assert cause != "name-taken" or "t_ai (now on audit_mirror)" in text, text
        failed = app_write(conn, 5)
        assert failed is not None and str(GUARD_ERROR) in failed, failed
        if cause == "name-taken":
            with other.cursor() as cur:
                cur.execute("DROP TRIGGER t_ai")
            migrate(config(server, db, resume=True))
        else:
            done_cleanup = cleanup_cli(server, db)
            assert done_cleanup.returncode == 0, done_cleanup.stderr
            assert triggers_of(conn, "t") == before
            migrate(config(server, db))
        assert app_write(conn, 6) is None
        writers.burst(30, seed=5)
    finally:
        writers.stop()
        other.close()
    assert_carried(conn, before, writers)


@pytest.mark.mariadb_only
@pytest.mark.parametrize("audit", ["audit_t", "zz_audit"])    # sorts before / after t
@pytest.mark.parametrize("hold", ["lock-read", "read-transaction", "write-transaction"])
@pytest.mark.parametrize("freed", ["soon", "next-attempt"])
def test_a_table_the_triggers_use_held_by_another_session(
        server: Dsn, db: str, conn: Conn, audit: str, hold: str, freed: str) -> None:
    """MariaDB relocks T WRITE to carry its triggers, and LOCK TABLES T WRITE also locks
    the tables T's triggers write (here `audit`, by an INSERT trigger). Another session
    holds `audit` (LOCK TABLES ... READ; a transaction that read or wrote it holds no
    lock the relock waits for) while an UPDATE of T, which fires no trigger, waits on
    the block. The server takes
    the named tables (T, the sentry) first and `audit` after, holding T (MariaDB 10.11,
    whichever side of T `audit` sorts): the relock is rightly judged queued for T, the
    UPDATE waits until the swap (`audit` freed soon) or until the relock's lock wait
    timeout fails the attempt (freed only later), T unchanged. No write lost, no wait
    past the timeouts."""
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE t (id INT PRIMARY KEY, v INT NOT NULL)")
        cur.executemany("INSERT INTO t VALUES (%s, %s)", [(i, i) for i in range(1, 201)])
        cur.execute(f"CREATE TABLE {q(audit)} (n INT AUTO_INCREMENT PRIMARY KEY, id INT)")
        cur.execute(f"CREATE TRIGGER t_ai AFTER INSERT ON t FOR EACH ROW "
                    f"INSERT INTO {q(audit)} (id) VALUES (NEW.id)")
    holder = connect(server, db, autocommit=False)
    writer = connect(server, db)
    seen = {"attempt": 0, "queued": 0}
    waited: list[float] = []
    threads: list[threading.Thread] = []

    def release() -> None:
        with holder.cursor() as cur:
            cur.execute("UNLOCK TABLES" if hold == "lock-read" else "COMMIT")

    def attempt() -> None:
        seen["attempt"] += 1
        if seen["attempt"] > 1:
            release()

    def take_audit() -> None:
        if seen["attempt"] == 1:
            with holder.cursor() as cur:
                cur.execute({"lock-read": f"LOCK TABLES {q(audit)} READ",
                             "read-transaction": f"SELECT COUNT(*) FROM {q(audit)}",
                             "write-transaction": f"INSERT INTO {q(audit)} (id) VALUES (0)",
                             }[hold])

    def update_t() -> None:     # waits on the block, then goes wherever T is
        if seen["attempt"] == 1:
            def run() -> None:
                started = time.monotonic()
                with writer.cursor() as cur:
                    cur.execute("UPDATE t SET v = v + 1000 WHERE id = 7")
                waited.append(time.monotonic() - started)
            threads.append(threading.Thread(target=run))
            threads[-1].start()
            time.sleep(0.2)       # (queued behind the READ lock)

    def queued() -> None:
        seen["queued"] += 1
        if seen["attempt"] == 1 and freed == "soon":
            threads.append(threading.Timer(0.5, release))
            threads[-1].start()

    faults.register("cutover_attempt", attempt)
    faults.register("cutover_paused", take_audit)
    faults.register("cutover_started", update_t)
    faults.register("trigger_relock_queued", queued)
    try:
        result = migrate(config(server, db, "ADD COLUMN w INT NULL", tuning=Tuning(
            cutover_lock_timeout=2, block_timeout=3)))
    finally:
        faults.clear()
        for thread in threads:
            thread.join(timeout=30)
        holder.close()
        writer.close()
    assert seen["queued"] >= 1
    # Blocked at most: the drain's bound, the relock's wait (its lock wait timeout), slack.
    assert waited and waited[0] < 3 + 2 + 2, waited
    # A transaction's locks on `audit` are none the relock waits for.
    blocking = hold == "lock-read" and freed == "next-attempt"
    assert result.cutover_attempts == (2 if blocking else 1)
    with conn.cursor() as cur:
        cur.execute("SELECT v FROM t WHERE id = 7")
        assert cur.fetchone()[0] == 1007, "the write during the cutover was lost"
    assert trigger_names(conn, "t") == ["t_ai"]

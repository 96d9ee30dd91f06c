"""Bad input: each refusal raises the documented error class with a useful message, leaves
the table exactly as it was (same SHOW CREATE TABLE, same rows, same CHECKSUM TABLE) and
leaves nothing behind (no `_t_new`, `_t_chkpnt`, old table, cutover sentry or swap table,
no runner lock). The CLI turns the same errors into the documented exit codes and never
prints a password.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

import pymysql.connections
import pytest
from helpers import connect, kept_tables, numbers
from workload import q

from onlineddl import faults
from onlineddl.config import Dsn, MigrationConfig, Tuning
from onlineddl.errors import (
    ConnectionFailed,
    InvalidAlter,
    OnlineDDLError,
    PreflightFailed,
    TableNotFound,
    UniqueViolation,
    UnsupportedTable,
)
from onlineddl.migration import migrate
from onlineddl.runlock import lock_name

Conn: TypeAlias = pymysql.connections.Connection
REPO = Path(__file__).resolve().parents[2]
TUNING = Tuning(chunk_rows_initial=40, chunk_rows_min=10, chunk_rows_max=80)

T_DDL = ("CREATE TABLE t (id INT NOT NULL PRIMARY KEY, v INT NOT NULL, "
         "name VARCHAR(32) CHARACTER SET utf8mb4 NULL) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4")
SEED = ("INSERT INTO t (id, v, name) SELECT seq, seq * 10, CONCAT('n', seq, '\U0001F600') "
        f"FROM {numbers(600)}")
DUPLICATE = 424242



@dataclass(frozen=True)
class Bad:
    id: str
    alter: str
    error: type[OnlineDDLError]
    message: str                    # a fragment of str(error), compared case-insensitively
    setup: tuple[str, ...] = ()     # run after t is created and seeded
    ddl: str = T_DDL
    table: str = "t"
    database: str | None = None     # None: the test's database


BAD = [
    Bad("unknown_table", "ADD COLUMN c INT NULL", TableNotFound, "does not exist",
        table="no_such_table"),
    Bad("unknown_database", "ADD COLUMN c INT NULL", TableNotFound, "does not exist",
        database="no_such_db_onlineddl"),
    Bad("unparsable_alter", "ADD COLUMN", InvalidAlter, "a name is missing"),
    Bad("unparsable_garbage", "FROBNICATE THE TABLE", InvalidAlter,
        "unknown or unsupported ALTER clause"),
    Bad("server_rejects_existing_column", "ADD COLUMN v INT", InvalidAlter,
        "Duplicate column name 'v'"),
    Bad("server_rejects_unknown_column", "DROP COLUMN nope", InvalidAlter,
        "the server rejected the ALTER"),
    Bad("server_rejects_bad_type", "MODIFY COLUMN v NOSUCHTYPE", InvalidAlter,
        "the server rejected the ALTER"),
    Bad("database_name_with_backtick", "ADD COLUMN c INT NULL", TableNotFound,
        "does not exist", database="no_such`db"),
    Bad("database_name_with_trailing_space", "ADD COLUMN c INT NULL", TableNotFound,
        "does not exist", database="no_such_db "),
    Bad("table_name_in_another_case", "ADD COLUMN c INT NULL", TableNotFound,
        "did you mean --table t", table="T"),
    Bad("drop_primary_key_column", "DROP COLUMN id", InvalidAlter,
        "changes the primary key (id -> none)"),
    Bad("drop_primary_key", "DROP PRIMARY KEY", InvalidAlter,
        "share no UNIQUE key over NOT NULL columns"),
    Bad("no_primary_key", "ADD COLUMN c INT NULL", UnsupportedTable, "no PRIMARY KEY",
        ddl=T_DDL.replace(" PRIMARY KEY", "")),
    Bad("alter_names_another_table", "ALTER TABLE other ADD COLUMN c INT NULL", InvalidAlter,
        "names table 'other'", setup=("CREATE TABLE other (id INT PRIMARY KEY)",)),
    Bad("alter_names_another_database", "ALTER TABLE mysql.t ADD COLUMN c INT NULL",
        InvalidAlter, "names database 'mysql'"),
    Bad("rename_table", "RENAME TO x", InvalidAlter, "renaming the table"),
    Bad("rename_table_among_clauses", "ADD COLUMN c INT NULL, RENAME AS x", InvalidAlter,
        "renaming the table"),
    Bad("algorithm_inplace", "ADD COLUMN c INT NULL, ALGORITHM=INPLACE", InvalidAlter,
        "ALGORITHM="),
    Bad("lock_none", "LOCK=NONE, ADD COLUMN c INT NULL", InvalidAlter, "LOCK="),
    Bad("semicolon_second_statement", "ADD COLUMN c INT NULL; DROP TABLE t", InvalidAlter,
        "';'"),
    Bad("semicolon_trailing", "ADD COLUMN c INT NULL;", InvalidAlter, "';'"),
    Bad("unique_index_over_duplicates", "ADD UNIQUE INDEX uq_v (v)", UniqueViolation,
        str(DUPLICATE),
        setup=(f"UPDATE t SET v = {DUPLICATE} WHERE id IN (3, 550)",)),
    # Triggers are carried (test_triggers.py); one using a column the ALTER drops is not.
    Bad("trigger_uses_dropped_column", "DROP COLUMN v", InvalidAlter, "uses column(s) v",
        setup=("CREATE TABLE audit (n INT)",
               "CREATE TRIGGER t_ins AFTER INSERT ON t FOR EACH ROW "
               "INSERT INTO audit VALUES (NEW.v)")),
    # [foreign keys] A child with RESTRICT constraints is supported
    # (test_foreign_keys.py), and a parent on MariaDB (test_foreign_key_parents.py); a
    # cascading child, or a table referencing itself, is refused.
    Bad("cascading_foreign_key_from_table", "ADD COLUMN c INT NULL", InvalidAlter,
        "referential actions",
        setup=("CREATE TABLE parent (id INT PRIMARY KEY)",
               f"INSERT INTO parent SELECT seq FROM {numbers(600)}",
               "ALTER TABLE t ADD CONSTRAINT fk_parent FOREIGN KEY (id) REFERENCES parent (id) "
               "ON DELETE CASCADE")),
    Bad("foreign_key_to_itself", "ADD COLUMN c INT NULL", InvalidAlter, "is referenced by",
        setup=("ALTER TABLE t ADD COLUMN up INT NULL, ADD CONSTRAINT fk_up FOREIGN KEY (up) "
               "REFERENCES t (id)",
               "UPDATE t SET up = 5 WHERE id = 6")),
]


# --- the state that must not change -------------------------------------------------------------


def snapshot(conn: Conn, db: str, table: str = "t") -> dict[str, Any]:
    """Everything a refused run must leave as it was."""
    with conn.cursor() as cur:
        cur.execute(f"SHOW CREATE TABLE {q(db)}.{q(table)}")
        create = cur.fetchone()[1]
        cur.execute(f"SELECT * FROM {q(db)}.{q(table)} ORDER BY 1, 2, 3")
        rows = cur.fetchall()
        cur.execute(f"CHECKSUM TABLE {q(db)}.{q(table)}")
        checksum = cur.fetchone()[1]
        cur.execute("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s "
                    "ORDER BY TABLE_NAME", (db,))
        tables = [r[0] for r in cur.fetchall()]
        cur.execute("SELECT TRIGGER_NAME FROM information_schema.TRIGGERS "
                    "WHERE TRIGGER_SCHEMA = %s", (db,))
        triggers = sorted(r[0] for r in cur.fetchall())
    return {"create": create, "rows": rows, "checksum": checksum, "tables": tables,
            "triggers": triggers}


def assert_no_artifacts(conn: Conn, db: str, table: str = "t", run_db: str | None = None
                        ) -> None:
    """No artifact of a run on `run_db`.`table` (default: `db`) left in `db`, lock released."""
    with conn.cursor() as cur:
        cur.execute("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s",
                    (db,))
        names = {r[0] for r in cur.fetchall()}
        cur.execute("SELECT IS_USED_LOCK(%s)", (lock_name(run_db or db, table),))
        holder = cur.fetchone()[0]
    artifacts = {f"_{n}_{suffix}" for n in (table, "t") for suffix in ("new", "chkpnt", "old")}
    left = {n for n in names if n in artifacts or n.endswith(("_cutover", "_swap"))}
    assert not left, f"artifacts left behind: {sorted(left)}"
    assert holder is None, f"the runner lock is still held by connection {holder}"


def run(server: Dsn, db: str, table: str, alter: str) -> OnlineDDLError:
    config = MigrationConfig(dsn=server, database=db, table=table, alter=alter, repair=False,
                             tuning=TUNING)
    with pytest.raises(OnlineDDLError) as info:
        migrate(config)
    return info.value


def assert_error(err: OnlineDDLError, cls: type[OnlineDDLError], fragment: str) -> None:
    assert type(err) is cls, f"expected {cls.__name__}, got {type(err).__name__}: {err}"
    assert fragment.lower() in str(err).lower(), f"{fragment!r} not in {str(err)!r}"
    assert err.hint, f"{cls.__name__} should say what to do: {err}"


@pytest.mark.parametrize("bad", BAD, ids=[b.id for b in BAD])
def test_bad_input_is_refused_and_changes_nothing(server: Dsn, db: str, bad: Bad) -> None:
    conn = connect(server, db)
    try:
        with conn.cursor() as cur:
            cur.execute(bad.ddl)
            cur.execute(SEED)
            for stmt in bad.setup:
                cur.execute(stmt)
        before = snapshot(conn, db)
        err = run(server, bad.database or db, bad.table, bad.alter)
        assert_error(err, bad.error, bad.message)
        assert snapshot(conn, db) == before
        assert_no_artifacts(conn, db, bad.table, bad.database)
        if bad.database:
            with conn.cursor() as cur:
                cur.execute("SHOW DATABASES LIKE %s", (bad.database,))
                assert cur.fetchall() == (), "a database must not be created"
    finally:
        conn.close()


def test_unique_violation_is_found_during_the_copy(server: Dsn, db: str) -> None:
    """The duplicate sits far into the table, so the copy has started (the shadow and the
    checkpoint exist) when it is found: both must be removed again."""
    conn = connect(server, db)
    seen: dict[str, set[str]] = {"tables": set()}

    def look() -> None:
        with connect(server, db) as other, other.cursor() as cur:
            cur.execute("SHOW TABLES")
            seen["tables"] |= {r[0] for r in cur.fetchall()}

    try:
        with conn.cursor() as cur:
            cur.execute(T_DDL)
            cur.execute(SEED)
            cur.execute("UPDATE t SET v = -7 WHERE id IN (500, 590)")
        before = snapshot(conn, db)
        faults.register("after_chunk", look)
        err = run(server, db, "t", "ADD UNIQUE INDEX uq_v (v)")
        assert_error(err, UniqueViolation, "-7")
        assert {"_t_new", "_t_chkpnt"} <= seen["tables"], "the error should come mid-copy"
        assert snapshot(conn, db) == before
        assert_no_artifacts(conn, db)
    finally:
        conn.close()


def test_statement_binlog_format_is_refused(server: Dsn, db: str) -> None:
    refused_under_global(server, db, "binlog_format", "'STATEMENT'", "'ROW'",
                         "binlog_format is STATEMENT")


def test_settings_that_hide_row_changes_are_refused(server: Dsn, db: str) -> None:
    """Each flavor's setting that would log row changes in a form the reader skips:
    MariaDB's compressed events, MySQL's partial JSON row images."""
    with connect(server, db) as conn, conn.cursor() as cur:
        cur.execute("SELECT VERSION()")
        mariadb = "mariadb" in str(cur.fetchone()[0]).lower()
    if mariadb:
        refused_under_global(server, db, "log_bin_compress", "ON", "OFF",
                             "log_bin_compress is ON")
    else:
        refused_under_global(server, db, "binlog_row_value_options", "'PARTIAL_JSON'", "''",
                             "PARTIAL_JSON")


def refused_under_global(server: Dsn, db: str, variable: str, bad: str, good: str,
                         message: str) -> None:
    """With the server variable set to `bad`, the run is refused up front and nothing
    changes; the variable is set back to `good` whatever happens."""
    conn = connect(server, db)
    try:
        with conn.cursor() as cur:
            cur.execute(T_DDL)
            cur.execute(SEED)
        before = snapshot(conn, db)
        try:
            with conn.cursor() as cur:
                cur.execute(f"SET GLOBAL {variable} = {bad}")
            err = run(server, db, "t", "ADD COLUMN c INT NULL")
        finally:
            with conn.cursor() as cur:
                cur.execute(f"SET GLOBAL {variable} = {good}")
        assert_error(err, PreflightFailed, message)
        assert snapshot(conn, db) == before
        assert_no_artifacts(conn, db)
    finally:
        conn.close()


# --- the command line ------------------------------------------------------------------------


def cli(server: Dsn, db: str, *args: str, user: str | None = None,
        password: str | None = None) -> subprocess.CompletedProcess[str]:
    """`onlineddl migrate` in a subprocess; the password (default: the server's) travels in
    ONLINEDDL_PASSWORD, or not at all when `password` is ""."""
    base = [sys.executable, "-m", "onlineddl", "migrate", "--host", server.host,
            "--port", str(server.port), "--user", user or server.user, "--database", db]
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("ONLINEDDL_")}
    secret = server.password if password is None else password
    if secret:
        full_env["ONLINEDDL_PASSWORD"] = secret
    return subprocess.run([*base, *args], env=full_env, cwd=REPO, capture_output=True,
                          text=True, timeout=120)


def make_table(server: Dsn, db: str) -> Conn:
    conn = connect(server, db)
    with conn.cursor() as cur:
        cur.execute(T_DDL)
        cur.execute(SEED)
    return conn


def test_cli_success_exits_0(server: Dsn, db: str) -> None:
    conn = make_table(server, db)
    try:
        done = cli(server, db, "--table", "t", "--no-repair", "--alter", "ADD COLUMN c INT NULL")
        assert done.returncode == 0, done.stderr
        with conn.cursor() as cur:
            cur.execute("SELECT COUNT(*), SUM(c IS NULL) FROM t")
            assert cur.fetchone() == (600, 600)
            cur.execute("SHOW TABLES")
            assert kept_tables(conn) == {"t", "_t_old_*"}
    finally:
        conn.close()


def test_cli_unknown_table_exits_4(server: Dsn, db: str) -> None:
    conn = make_table(server, db)
    try:
        before = snapshot(conn, db)
        done = cli(server, db, "--table", "nope", "--no-repair", "--alter", "ADD COLUMN c INT")
        assert done.returncode == TableNotFound.exit_code == 4, done.stderr
        assert f"{db}.nope does not exist" in done.stderr
        assert "exit 4" in done.stderr
        assert done.stdout == ""
        assert snapshot(conn, db) == before
        assert_no_artifacts(conn, db, "nope")
    finally:
        conn.close()


@pytest.fixture
def password_user(server: Dsn, db: str) -> Iterator[tuple[str, str]]:
    """A user with a password (the test server's root has none), removed afterwards."""
    user, password = f"pw_{uuid.uuid4().hex[:8]}", f"secret-pw-{uuid.uuid4().hex[:12]}"
    with connect(server) as admin, admin.cursor() as cur:
        cur.execute("CREATE USER %s@'127.0.0.1' IDENTIFIED BY %s", (user, password))
        cur.execute("GRANT ALL PRIVILEGES ON *.* TO %s@'127.0.0.1'", (user,))
    try:
        yield user, password
    finally:
        with connect(server) as admin, admin.cursor() as cur:
            cur.execute("DROP USER IF EXISTS %s@'127.0.0.1'", (user,))


def test_cli_wrong_password_file_exits_3_and_never_prints_it(
        server: Dsn, db: str, password_user: tuple[str, str], tmp_path: Path) -> None:
    user, password = password_user
    wrong = f"wrong-{password}"
    pw_file = tmp_path / "pw"
    pw_file.write_text(wrong + "\n", encoding="utf-8")
    conn = make_table(server, db)
    try:
        done = cli(server, db, "--table", "t", "--no-repair", "--verbose",
                   "--password-file", str(pw_file), "--alter", "ADD COLUMN c INT NULL",
                   user=user, password="")
        assert done.returncode == ConnectionFailed.exit_code == 3, done.stderr
        assert "access denied" in done.stderr.lower()
        for secret in (wrong, password, "secret-pw"):
            assert secret not in done.stdout
            assert secret not in done.stderr
        assert_no_artifacts(conn, db)
    finally:
        conn.close()


def test_cli_env_password_is_never_printed(
        server: Dsn, db: str, password_user: tuple[str, str]) -> None:
    user, password = password_user
    conn = make_table(server, db)
    try:
        done = cli(server, db, "--table", "t", "--no-repair", "--verbose",
                   "--alter", "ADD COLUMN c INT NULL", user=user,
                   password=password)
        assert done.returncode == 0, done.stderr
        assert done.stderr, "a verbose run logs its progress"
        assert password not in done.stdout
        assert password not in done.stderr
        # A failing run prints its error (and the DSN it used) but not the password.
        failed = cli(server, db, "--table", "nope", "--no-repair", "--verbose",
                     "--alter", "ADD COLUMN c INT NULL", user=user,
                     password=password)
        assert failed.returncode == 4, failed.stderr
        assert password not in failed.stdout + failed.stderr
    finally:
        conn.close()

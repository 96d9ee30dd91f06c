"""Differential tests: the server's own ALTER TABLE is the oracle for onlineddl.

For each ALTER of the corpus, two identical tables are built (tests/parity.py: every
supported type, edge values, NULLs, a deleted tail so AUTO_INCREMENT > max(id) + 1). The
server runs the ALTER on `twin`; onlineddl runs it (in-process, checksum repair off, small
chunks) on `t`. Then:

- where the native ALTER succeeds, `t` must equal `twin`: SHOW CREATE TABLE (table name
  aside, AUTO_INCREMENT= included) and every value byte for byte in primary-key order,
  generated columns included. A value the server takes from the wall clock (DEFAULT
  CURRENT_TIMESTAMP on existing rows) must match within a few seconds, read in the
  server's zone, so a shift to UTC shows;
- where it fails, onlineddl must fail too with an OnlineDDLError: before the checksum and
  the cutover, and before the first chunk when the server refuses the ALTER even on an
  empty table (the failure does not depend on the data); `t` unchanged (schema and
  values) and no table left behind;
- an engine change (MyISAM, Aria) is acceptable only as a refusal up front, `t` untouched.

The whole module runs with the server's GLOBAL time_zone off UTC ('+05:30'), restored
afterwards: a conversion done in UTC instead of the session zone of a plain ALTER shows.

A few ALTERs also run with writers (test_parity_under_writes): at `copy_start` and after
every chunk one transaction inserts, updates, moves keys and deletes rows of `t` and of a
`mirror` alike, with statements valid on the old schema; after the run the mirror gets
the native ALTER, and `t` must equal it exactly, converted columns included.
"""

from __future__ import annotations

import difflib
import functools
import random
import uuid
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeAlias

import pymysql.connections
import pymysql.err
import pytest
from helpers import Cursor, connect, kept_tables, old_tables
from parity import (
    COLUMNS,
    ROWS,
    insert_sql,
    read_table,
    row_differences,
    row_values,
    seed,
    show_create,
    table_names,
)
from workload import commit_replaying, q

from onlineddl import faults
from onlineddl.config import Dsn, MigrationConfig, Tuning
from onlineddl.errors import OnlineDDLError
from onlineddl.migration import migrate

Conn: TypeAlias = pymysql.connections.Connection

ZONE = "+05:30"
# 50 rows in several chunks.
TUNING = Tuning(chunk_rows_initial=8, chunk_rows_min=4, chunk_rows_max=12,
                progress_interval=5.0, checkpoint_interval=0.3)
POINTS = ("copy_start", "after_chunk", "checksum_chunk", "cutover_started")


@dataclass(frozen=True)
class Entry:
    id: str
    alter: str
    clock: tuple[str, ...] = ()    # columns filled from the wall clock on existing rows
    engine: bool = False           # an engine change: a refusal up front is acceptable


E = Entry
ENUM4 = "'a','b','c d','\u00e9'"
CORPUS: list[Entry] = [
    # --- adds -------------------------------------------------------------------------
    E("add_int_null", "ADD COLUMN n INT NULL"),
    E("add_int_not_null", "ADD COLUMN n INT NOT NULL"),
    E("add_bigint_unsigned_not_null", "ADD COLUMN n BIGINT UNSIGNED NOT NULL"),
    E("add_decimal_not_null", "ADD COLUMN n DECIMAL(12,3) NOT NULL"),
    E("add_double_not_null", "ADD COLUMN n DOUBLE NOT NULL"),
    E("add_varchar_not_null", "ADD COLUMN n VARCHAR(20) NOT NULL"),
    E("add_char_not_null", "ADD COLUMN n CHAR(4) CHARACTER SET latin1 NOT NULL"),
    E("add_text_not_null", "ADD COLUMN n TEXT NOT NULL"),
    E("add_blob_not_null", "ADD COLUMN n BLOB NOT NULL"),
    E("add_date_not_null", "ADD COLUMN n DATE NOT NULL"),
    E("add_datetime_not_null", "ADD COLUMN n DATETIME(6) NOT NULL"),
    E("add_timestamp_not_null", "ADD COLUMN n TIMESTAMP NOT NULL"),
    E("add_time_not_null", "ADD COLUMN n TIME NOT NULL"),
    E("add_year_not_null", "ADD COLUMN n YEAR NOT NULL"),
    E("add_enum_not_null", "ADD COLUMN n ENUM('p','q') NOT NULL"),
    E("add_set_not_null", "ADD COLUMN n SET('p','q') NOT NULL"),
    E("add_bit_not_null", "ADD COLUMN n BIT(3) NOT NULL"),
    E("add_json_null", "ADD COLUMN n JSON NULL"),
    E("add_with_default", "ADD COLUMN n INT NOT NULL DEFAULT 42"),
    E("add_varchar_default_utf8mb4",
      "ADD COLUMN n VARCHAR(8) CHARACTER SET utf8mb4 NOT NULL DEFAULT '\u00e9\U0001F600 '"),
    E("add_timestamp_default_now",
      "ADD COLUMN n TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)", clock=("n",)),
    E("add_datetime_default_now", "ADD COLUMN n DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP",
      clock=("n",)),
    E("add_first", "ADD COLUMN n INT NULL DEFAULT 5 FIRST"),
    E("add_after", "ADD COLUMN n VARCHAR(8) NULL DEFAULT 'x' AFTER vc"),
    # --- drops ------------------------------------------------------------------------
    E("drop_column", "DROP COLUMN tx"),
    E("drop_two_columns", "DROP COLUMN f, DROP COLUMN bl"),
    E("drop_indexed_column", "DROP COLUMN i"),
    E("drop_generated_base_fails", "DROP COLUMN tag"),
    # --- numeric type changes ---------------------------------------------------------
    E("int_to_bigint", "MODIFY COLUMN i BIGINT NULL"),
    E("bigint_to_int_fits", "MODIFY COLUMN bs INT NULL"),
    E("bigint_to_int_overflows", "MODIFY COLUMN bi INT NULL"),
    E("signed_to_unsigned_fails", "MODIFY COLUMN ti TINYINT UNSIGNED NULL"),
    E("unsigned_to_signed_fails", "MODIFY COLUMN bu BIGINT NULL"),
    E("double_to_float", "MODIFY COLUMN d FLOAT NULL"),
    E("double_to_float_overflows", "MODIFY COLUMN dx FLOAT NULL"),
    E("decimal_to_float", "MODIFY COLUMN dc FLOAT NULL"),
    E("decimal_to_double", "MODIFY COLUMN dc DOUBLE NULL"),
    E("decimal_scale_reduced", "MODIFY COLUMN dc DECIMAL(20,2) NULL"),
    E("decimal_narrowed_overflows", "MODIFY COLUMN dc DECIMAL(6,2) NULL"),
    E("float_to_double", "MODIFY COLUMN f DOUBLE NULL"),
    E("float_to_varchar", "MODIFY COLUMN f VARCHAR(40) NULL"),
    E("double_to_varchar", "MODIFY COLUMN d VARCHAR(40) NULL"),
    E("int_to_varchar", "MODIFY COLUMN i VARCHAR(16) NULL"),
    E("decimal_to_varchar", "MODIFY COLUMN dc VARCHAR(32) NULL"),
    E("bit_to_int", "MODIFY COLUMN b8 INT NULL"),
    E("bit64_to_bigint_unsigned", "MODIFY COLUMN b64 BIGINT UNSIGNED NULL"),
    E("int_to_bit", "MODIFY COLUMN tu BIT(8) NULL"),
    E("int_to_bit_too_narrow", "MODIFY COLUMN su BIT(8) NULL"),
    # --- text type changes ------------------------------------------------------------
    E("varchar_to_int_fits", "MODIFY COLUMN ns INT NULL"),
    E("varchar_to_int_fails", "MODIFY COLUMN vc INT NULL"),
    E("text_to_varchar_fits", "MODIFY COLUMN tx VARCHAR(400) NULL"),
    E("text_to_varchar_cuts_trailing_spaces", "MODIFY COLUMN tx VARCHAR(300) NULL"),
    E("latin1_text_to_varchar_fits", "MODIFY COLUMN lt VARCHAR(32) CHARACTER SET latin1 NULL"),
    E("text_to_varchar_too_short", "MODIFY COLUMN tx VARCHAR(50) NULL"),
    E("varchar_to_char", "MODIFY COLUMN vc CHAR(64) CHARACTER SET utf8mb4 NULL"),
    E("char_to_varchar", "MODIFY COLUMN ch VARCHAR(16) CHARACTER SET utf8mb4 NULL"),
    E("varchar_widened", "MODIFY COLUMN vc VARCHAR(300) CHARACTER SET utf8mb4 NULL"),
    E("utf8mb4_to_latin1_fits", "MODIFY COLUMN lat VARCHAR(32) CHARACTER SET latin1 NULL"),
    E("utf8mb4_to_latin1_fails", "MODIFY COLUMN vc VARCHAR(64) CHARACTER SET latin1 NULL"),
    E("latin1_to_utf8mb4", "MODIFY COLUMN lt TEXT CHARACTER SET utf8mb4 NULL"),
    E("collation_bin_to_ci",
      "MODIFY COLUMN bv VARCHAR(32) CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci NULL"),
    E("collation_ci_to_bin",
      "MODIFY COLUMN vc VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL"),
    E("latin1_collation", "MODIFY COLUMN lt TEXT CHARACTER SET latin1 COLLATE latin1_bin NULL"),
    E("binary_widened", "MODIFY COLUMN bn BINARY(16) NULL"),
    E("blob_to_varbinary_too_short", "MODIFY COLUMN bl VARBINARY(16) NULL"),
    E("json_to_text", "MODIFY COLUMN j TEXT CHARACTER SET utf8mb4 NULL"),
    E("varbinary_to_varchar_fails", "MODIFY COLUMN vb VARCHAR(32) CHARACTER SET utf8mb4 NULL"),
    E("char_to_binary", "MODIFY COLUMN ch BINARY(64) NULL"),
    E("enum_add_member", f"MODIFY COLUMN e ENUM({ENUM4},'new') CHARACTER SET utf8mb4 NULL"),
    E("enum_reorder", "MODIFY COLUMN e ENUM('\u00e9','c d','b','a') CHARACTER SET utf8mb4 NULL"),
    E("enum_drop_used_member_fails",
      "MODIFY COLUMN e ENUM('a','b','\u00e9') CHARACTER SET utf8mb4 NULL"),
    E("enum_4_byte_member_add",
      "MODIFY COLUMN e4 ENUM('a','\U0001F600','b') CHARACTER SET utf8mb4 NULL"),
    E("set_reorder", "MODIFY COLUMN s SET('w','z','y','x') NULL"),
    E("set_add_member", "MODIFY COLUMN s SET('x','y','z','w','v') NULL"),
    # --- temporal type changes --------------------------------------------------------
    E("timestamp_to_datetime", "MODIFY COLUMN ts DATETIME(6) NULL"),
    E("datetime_to_timestamp", "MODIFY COLUMN created TIMESTAMP NOT NULL"),
    E("datetime_to_timestamp_out_of_range", "MODIFY COLUMN dtm TIMESTAMP(6) NULL"),
    E("timestamp_to_varchar", "MODIFY COLUMN ts VARCHAR(32) NULL"),
    E("datetime6_to_datetime", "MODIFY COLUMN dtm DATETIME NULL"),
    E("time6_to_time", "MODIFY COLUMN tm TIME NULL"),
    E("time_to_varchar", "MODIFY COLUMN tm VARCHAR(20) NULL"),
    E("date_to_datetime", "MODIFY COLUMN dt DATETIME NULL"),
    E("year_to_smallint", "MODIFY COLUMN yr SMALLINT NULL"),
    E("year_to_varchar", "MODIFY COLUMN yr VARCHAR(4) NULL"),
    E("int_to_year", "MODIFY COLUMN tu YEAR NULL"),
    E("time_to_bigint", "MODIFY COLUMN tm BIGINT NULL"),
    E("datetime_to_date", "MODIFY COLUMN created DATE NOT NULL"),
    # --- NULL / NOT NULL --------------------------------------------------------------
    E("not_null_without_nulls", "MODIFY COLUMN nonull INT NOT NULL"),
    E("not_null_with_nulls_fails", "MODIFY COLUMN i INT NOT NULL"),
    E("not_null_to_null", "MODIFY COLUMN created DATETIME NULL"),
    E("set_default", "ALTER COLUMN v SET DEFAULT 9"),
    # --- renames ----------------------------------------------------------------------
    E("change_rename", "CHANGE COLUMN ch ch2 CHAR(16) CHARACTER SET utf8mb4 NULL"),
    E("rename_column", "RENAME COLUMN tx TO body"),
    E("change_rename_and_retype", "CHANGE COLUMN i i2 BIGINT NULL"),
    E("rename_generated_base", "CHANGE COLUMN bs bs2 BIGINT NULL"),
    E("rename_primary_key", "CHANGE COLUMN id rid INT UNSIGNED NOT NULL AUTO_INCREMENT"),
    E("move_column_first", "MODIFY COLUMN vc VARCHAR(64) CHARACTER SET utf8mb4 NULL FIRST"),
    E("move_column_after", "MODIFY COLUMN bi BIGINT NULL AFTER j"),
    # --- generated columns ------------------------------------------------------------
    E("add_stored_generated",
      "ADD COLUMN g2 VARCHAR(100) CHARACTER SET utf8mb4 AS (CONCAT(ch, '|', lat)) STORED"),
    E("add_virtual_generated", "ADD COLUMN g3 INT AS (ti + 1) VIRTUAL"),
    E("stored_generated_to_regular",
      "MODIFY COLUMN gs VARCHAR(80) CHARACTER SET utf8mb4 NULL"),
    E("regular_to_stored_generated", "MODIFY COLUMN nonull INT AS (v * 2) STORED"),
    E("drop_virtual_generated", "DROP COLUMN gv"),
    # --- indexes ----------------------------------------------------------------------
    E("add_index", "ADD INDEX ix_vc (vc)"),
    E("add_prefix_index", "ADD INDEX ix_tx (tx(10))"),
    E("add_unique", "ADD UNIQUE KEY uq_v (v)"),
    E("add_unique_duplicates_fails", "ADD UNIQUE KEY uq_e (e)"),
    E("drop_index", "DROP INDEX ix_i"),
    E("rename_index", "RENAME INDEX ix_i TO ix_i2"),
    E("add_fulltext_index", "ADD FULLTEXT INDEX ft_tx (tx)"),
    E("drop_primary_key_fails", "DROP PRIMARY KEY"),
    # --- primary key changes (walked by a unique key both tables share, keys.py) --------
    E("pk_wider_keeps_old_as_unique",
      "DROP PRIMARY KEY, ADD PRIMARY KEY (v, id), ADD UNIQUE KEY uq_id (id)"),
    E("pk_replaced_by_unique_column",
      "DROP PRIMARY KEY, ADD PRIMARY KEY (v), ADD UNIQUE KEY uq_id (id)"),
    E("pk_over_nullable_without_nulls",
      "DROP PRIMARY KEY, ADD PRIMARY KEY (nonull, id), ADD UNIQUE KEY uq_id (id)"),
    E("pk_over_nulls_fails",
      "DROP PRIMARY KEY, ADD PRIMARY KEY (i, id), ADD UNIQUE KEY uq_id (id)"),
    E("pk_over_duplicates_fails",
      "DROP PRIMARY KEY, ADD PRIMARY KEY (nonull), ADD UNIQUE KEY uq_id (id)"),
    E("pk_renamed_and_wider",
      "CHANGE COLUMN id rid INT UNSIGNED NOT NULL AUTO_INCREMENT, DROP PRIMARY KEY, "
      "ADD PRIMARY KEY (v, rid), ADD UNIQUE KEY uq_rid (rid)"),
    # --- table options ----------------------------------------------------------------
    E("auto_increment_raised", "AUTO_INCREMENT = 1000"),
    E("auto_increment_below_max", "AUTO_INCREMENT = 5"),
    E("comment", "COMMENT = 'parity \u2713'"),
    E("row_format", "ROW_FORMAT = COMPACT"),
    E("convert_to_utf8mb4_unicode",
      "CONVERT TO CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"),
    E("convert_to_latin1_fails", "CONVERT TO CHARACTER SET latin1"),
    E("engine_innodb", "ENGINE = InnoDB"),
    E("engine_myisam", "ENGINE = MyISAM", engine=True),
    # Aria cannot index a virtual column: without the DROP INDEX the server refuses.
    E("engine_aria", "DROP INDEX ix_gv, ENGINE = Aria", engine=True),
    E("engine_unknown_fails", "ENGINE = NoSuchEngine"),
    E("force", "FORCE"),
    # --- several clauses --------------------------------------------------------------
    E("several_clauses",
      "ADD COLUMN m INT NOT NULL DEFAULT 7 AFTER id, DROP COLUMN bl, "
      "MODIFY COLUMN i BIGINT NULL, ADD INDEX ix_m (m), COMMENT = 'several'"),
    E("several_clauses_rename_reorder",
      "CHANGE COLUMN vc vc2 VARCHAR(100) CHARACTER SET utf8mb4 NULL, "
      f"MODIFY COLUMN e ENUM({ENUM4}) CHARACTER SET utf8mb4 NULL AFTER id, "
      "DROP INDEX ix_i, AUTO_INCREMENT = 500"),
]

# The ALTERs that also run under writes: conversions, renames and a dropped generation.
UNDER_WRITES = ("add_with_default", "int_to_bigint", "timestamp_to_datetime",
                "varchar_to_char", "float_to_varchar", "utf8mb4_to_latin1_fits",
                "change_rename", "enum_reorder", "stored_generated_to_regular",
                "convert_to_utf8mb4_unicode", "pk_wider_keeps_old_as_unique",
                "pk_replaced_by_unique_column")
BY_ID = {e.id: e for e in CORPUS}


# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def parity_db(server: Dsn) -> Iterator[str]:
    """One database for the module, with the server's zone off UTC while it runs."""
    name = f"t_parity_{uuid.uuid4().hex[:8]}"
    with connect(server) as admin, admin.cursor() as cur:
        cur.execute("SELECT @@GLOBAL.time_zone")
        zone = cur.fetchone()[0]
        cur.execute(f"CREATE DATABASE {q(name)}")
        cur.execute("SET GLOBAL time_zone = %s", (ZONE,))
    try:
        yield name
    finally:
        with connect(server) as admin, admin.cursor() as cur:
            cur.execute("SET GLOBAL time_zone = %s", (zone,))
            cur.execute("SET SESSION lock_wait_timeout = 10")
            cur.execute(f"DROP DATABASE IF EXISTS {q(name)}")


@pytest.fixture
def pconn(server: Dsn, parity_db: str) -> Iterator[Conn]:
    """A session as a plain client gets it (the server's zone and sql_mode), in a
    database emptied for this test."""
    conn = connect(server, parity_db)
    with conn.cursor() as cur:
        assert_zone(cur)
        for name in sorted(table_names(conn)):
            cur.execute(f"DROP TABLE {q(name)}")
    yield conn
    conn.close()


def assert_zone(cur: Cursor) -> None:
    cur.execute("SELECT @@SESSION.time_zone")
    assert cur.fetchone()[0] == ZONE, "the session should have the server's zone"


# --- running both sides ----------------------------------------------------------------------


class Phases:
    """How far a run got, counted at its fault points; `on` runs writes at some."""

    def __init__(self, on: dict[str, Callable[[], None]] | None = None) -> None:
        self.counts: Counter[str] = Counter()
        self.on = on or {}
        for point in POINTS:
            faults.register(point, functools.partial(self.hit, point))

    def hit(self, point: str) -> None:
        self.counts[point] += 1
        action = self.on.get(point)
        if action is not None:
            action()


def native_alter(server: Dsn, db: str, table: str, alter: str) -> str | None:
    """ALTER TABLE as a plain client runs it; None, or the server's error."""
    conn = connect(server, db)
    try:
        with conn.cursor() as cur:
            cur.execute(f"ALTER TABLE {q(table)} {alter}")
    except pymysql.err.MySQLError as err:
        return f"{err.args[0]}: {err.args[1]}" if len(err.args) > 1 else repr(err)
    finally:
        conn.close()
    return None


def fails_on_empty_table(server: Dsn, db: str, conn: Conn, alter: str) -> bool:
    """Does the server refuse the ALTER whatever the rows hold?"""
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE probe LIKE t")
    try:
        return native_alter(server, db, "probe", alter) is not None
    finally:
        with conn.cursor() as cur:
            cur.execute("DROP TABLE probe")


def run_onlineddl(server: Dsn, db: str, alter: str) -> OnlineDDLError | None:
    try:
        migrate(MigrationConfig(dsn=server, database=db, table="t", alter=alter,
                                repair=False, tuning=TUNING))
    except OnlineDDLError as err:
        return err
    return None


def compare(conn: Conn, table: str, reference: str, clock: tuple[str, ...] = ()
            ) -> list[str]:
    """Everything that differs between `table` and `reference`."""
    problems: list[str] = []
    got, want = show_create(conn, table), show_create(conn, reference)
    if got != want:
        diff = [line for line in difflib.unified_diff(want.splitlines(), got.splitlines(),
                                                      "native", "onlineddl", lineterm="", n=0)
                if line[:1] in "+-" and line[:3] not in ("+++", "---")]
        problems.append("SHOW CREATE TABLE differs: " + " | ".join(diff))
    got_cols, got_rows = read_table(conn, table)
    want_cols, want_rows = read_table(conn, reference)
    if [c for c, _ in got_cols] != [c for c, _ in want_cols]:
        problems.append(f"columns differ: onlineddl {got_cols}, native {want_cols}")
    else:
        problems += row_differences(got_cols, got_rows, want_rows, clock)
    return problems


# --- the corpus ------------------------------------------------------------------------------


@pytest.mark.parametrize("entry", CORPUS, ids=[e.id for e in CORPUS])
def test_parity(server: Dsn, parity_db: str, pconn: Conn, entry: Entry) -> None:
    seed(pconn, ("t", "twin"))
    native_error = native_alter(server, parity_db, "twin", entry.alter)
    print(f"native ALTER: {native_error or 'ok'}")   # shown when the test fails
    if native_error is None and not entry.engine:
        problems = succeeds_like_native(server, parity_db, pconn, entry)
    else:
        problems = fails_like_native(server, parity_db, pconn, entry, native_error)
    assert not problems, f"{entry.alter}:\n  " + "\n  ".join(problems)


def succeeds_like_native(server: Dsn, db: str, conn: Conn, entry: Entry) -> list[str]:
    phases = Phases()
    error = run_onlineddl(server, db, entry.alter)
    faults.clear()
    if error is not None:
        problems = [f"onlineddl failed where the native ALTER succeeded: "
                    f"{type(error).__name__}: {error}"]
        if "_t_new" in table_names(conn):   # left for --resume: show what it holds
            problems += [f"(in _t_new) {p}" for p in compare(conn, "_t_new", "twin")]
        return problems
    problems = compare(conn, "t", "twin", entry.clock)
    if kept_tables(conn) != {"t", "twin", "_t_old_*"}:
        problems.append(f"tables afterwards: {sorted(table_names(conn))}")
    if phases.counts["after_chunk"] < 2:
        problems.append(f"expected several chunks, got {phases.counts}")
    return problems


def fails_like_native(server: Dsn, db: str, conn: Conn, entry: Entry,
                      native_error: str | None) -> list[str]:
    """The native ALTER failed (or changes the engine): onlineddl must fail, early, and
    leave everything as it was."""
    up_front = native_error is None or fails_on_empty_table(server, db, conn, entry.alter)
    before_tables = table_names(conn)
    before_create = show_create(conn, "t")
    before_rows = read_table(conn, "t")
    phases = Phases()
    error = run_onlineddl(server, db, entry.alter)
    faults.clear()
    print(f"onlineddl: {type(error).__name__}: {error}; reached {dict(phases.counts)}")
    if error is None:
        why = f"the native ALTER failed with {native_error}" if native_error else \
            "an engine change must be refused up front"
        return [f"onlineddl succeeded where {why}"]
    problems = []
    late = [p for p in ("checksum_chunk", "cutover_started") if phases.counts[p]]
    if late:
        problems.append(f"failed late (reached {late}): {error}")
    if up_front and phases.counts["copy_start"]:
        problems.append(f"failed only after the copy started, though the server refuses "
                        f"this ALTER on an empty table: {error}")
    if table_names(conn) != before_tables:
        problems.append(f"left tables behind: {sorted(table_names(conn) - before_tables)} "
                        f"after {type(error).__name__}: {error}")
    if show_create(conn, "t") != before_create:
        problems.append("changed the table's schema")
    if read_table(conn, "t") != before_rows:
        problems.append("changed the table's rows")
    return problems


# --- the mirror oracle under writes ----------------------------------------------------------


class MirrorWriter:
    """Each call commits one transaction that changes `t` and `mirror` alike: an insert
    (a fresh key or a deleted one), updates of a few columns to other edge values (NULL
    among them), a primary-key move and a delete. The statements name only the old
    schema's columns, so they are valid on `t` until its cutover."""

    def __init__(self, conn: Conn, seed_text: str) -> None:
        self.conn = conn
        self.rng = random.Random(zlib.crc32(seed_text.encode()))
        self.next_id = ROWS + 40
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1
        rng, plan = self.rng, []
        new_id = self.next_id if self.calls % 3 else rng.randrange(ROWS - 9, ROWS + 1)
        self.next_id += 1
        values = row_values(new_id, version=rng.randrange(1, 9))
        plan.append((insert_sql(with_id=True), [new_id, *values]))
        for _ in range(2):
            cols = rng.sample(COLUMNS, 3)
            version = rng.randrange(1, 9)
            sets = ", ".join(f"{q(c.name)} = %s" for c in cols)
            params = [c.values[(version + n) % len(c.values)] for n, c in enumerate(cols)]
            plan.append((f"UPDATE {{t}} SET {sets} WHERE id = %s",
                         [*params, rng.randrange(1, self.next_id)]))
        old = rng.randrange(1, ROWS)
        # A free id below the counter (the first call's insert took it past ROWS + 40).
        # A key moved above the counter would meet a MariaDB 10.11 quirk: a later
        # metadata-only CHANGE COLUMN on a table with an indexed virtual column then
        # raises the counter by one more than SHOW CREATE TABLE showed before it.
        plan.append(("UPDATE {t} SET id = %s WHERE id = %s", [ROWS + 1 + self.calls, old]))
        plan.append(("DELETE FROM {t} WHERE id = %s", [rng.randrange(1, self.next_id)]))
        both = [(text.format(t=q(table)), params)
                for text, params in plan for table in ("t", "mirror")]
        try:
            commit_replaying(self.conn, both)
        except pymysql.err.IntegrityError:
            self.conn.rollback()   # a key taken by an earlier move: skip this round


def writer_connection(server: Dsn, db: str) -> Conn:
    conn = connect(server, db, autocommit=False)
    with conn.cursor() as cur:
        cur.execute("SET SESSION sql_mode = 'STRICT_ALL_TABLES'")
        cur.execute("SET SESSION time_zone = '+00:00'")   # the TIMESTAMP edges are UTC
    conn.commit()
    return conn


@pytest.mark.parametrize("entry_id", UNDER_WRITES)
def test_parity_under_writes(server: Dsn, parity_db: str, pconn: Conn, entry_id: str) -> None:
    entry = BY_ID[entry_id]
    seed(pconn, ("t", "mirror"))
    writer_conn = writer_connection(server, parity_db)
    try:
        writer = MirrorWriter(writer_conn, entry.id)
        phases = Phases({"copy_start": writer, "after_chunk": writer})
        error = run_onlineddl(server, parity_db, entry.alter)
        faults.clear()
    finally:
        writer_conn.close()
    assert phases.counts["after_chunk"] >= 2, phases.counts
    assert writer.calls >= 3
    problems = []
    if error is None:
        # Every committed write reached the original too (kept as the old table).
        (old,) = old_tables(pconn)
        problems += [f"({old} against the mirror) {p}" for p in compare(pconn, old, "mirror")]
    assert native_alter(server, parity_db, "mirror", entry.alter) is None
    if error is not None:
        problems.append(f"onlineddl failed: {type(error).__name__}: {error}")
        if "_t_new" in table_names(pconn):
            problems += [f"(in _t_new) {p}" for p in compare(pconn, "_t_new", "mirror")]
    else:
        problems += compare(pconn, "t", "mirror")
    assert not problems, f"{entry.alter}:\n  " + "\n  ".join(problems)

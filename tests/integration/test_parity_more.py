"""More differential tests against the server's own ALTER TABLE (test_parity.py's rules).

test_parity.py alters one table rich in types. This module adds what its corpus does not
reach: expression and per-row defaults, CHECK constraints, conversions between ENUM/SET,
text, dates and numbers in both directions, other character sets and collations,
invisible columns, odd column names, table options; and tables of their own (text that
reads as dates, NO PAD keys with trailing spaces, MariaDB's INET6/UUID, spatial columns,
a sequence default, system versioning, partitions), some under writes.

Each case seeds two identical tables, runs the ALTER natively on `twin` and through
onlineddl on `t`; then, as in test_parity.py: where the native ALTER succeeds `t` must
equal `twin` exactly (SHOW CREATE TABLE, every value), where it fails onlineddl fails
early with `t` untouched. A case marked `refused` is one onlineddl declines up front
(exit 5 or 4, `t` untouched) although the server would run it; docs/compatibility.md
lists why. Columns whose values the server draws per row (UUID(), RAND()) compare by
shape: as many non-NULL and as many distinct values.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from helpers import connect, kept_tables
from parity import read_table, seed, show_create, table_names
from workload import commit_replaying, q

from integration.test_parity import (
    TUNING,
    Conn,
    Phases,
    compare,
    fails_like_native,
    native_alter,
    parity_db,
    pconn,
    run_onlineddl,
    writer_connection,
)
from onlineddl import conversion, faults, sql
from onlineddl.config import Dsn, MigrationConfig
from onlineddl.db import Session
from onlineddl.errors import OnlineDDLError, UnsupportedTable
from onlineddl.flavor import detect
from onlineddl.migration import migrate
from onlineddl.preflight import check_constraints
from onlineddl.statement import parse_alter
from onlineddl.table import load_table

__all__ = ["parity_db", "pconn"]   # fixtures, used by name

ROWS = 30


@dataclass(frozen=True)
class Table:
    """A table of its own: `ddl` inside CREATE TABLE t (...), `names` the columns the
    rows fill, `rows` the values (repeated with a fresh id up to ROWS rows; the first
    name is the key, filled with the row number unless `keys` gives the keys)."""

    ddl: str
    names: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]
    options: str = ""
    keys: tuple[Any, ...] = ()
    before: tuple[str, ...] = ()     # statements run once before the tables are made
    seed_mode: str = "STRICT_ALL_TABLES"

    def create(self, table: str) -> str:
        return f"CREATE TABLE {q(table)} ({self.ddl}) ENGINE=InnoDB " \
               f"DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci {self.options}"

    def values(self) -> list[tuple[Any, ...]]:
        keys = self.keys or tuple(range(1, ROWS + 1))
        return [(k, *self.rows[n % len(self.rows)]) for n, k in enumerate(keys)]


@dataclass(frozen=True)
class Case:
    id: str
    alter: str
    table: Table | None = None          # None: tests/parity.py's rich table
    clock: tuple[str, ...] = ()
    shape: tuple[str, ...] = ()         # per-row random values: compared by shape
    refused: bool = False               # onlineddl refuses up front (documented)
    # The server's ALTER succeeds by storing values cut or changed, with warnings (a
    # global sql_mode that is not strict): onlineddl stops instead (exit 10), unchanged.
    strict_stop: bool = False
    native: str = ""                    # appended to the native ALTER only
    writer_mode: str = ""               # the writers' own sql_mode, under writes
    global_sql_mode: str | None = None  # the server's GLOBAL sql_mode during the case
    marks: tuple[Any, ...] = ()
    engine: bool = False                # (test_parity.fails_like_native reads it)


C = Case
PAD_CHAR = "STRICT_ALL_TABLES,PAD_CHAR_TO_FULL_LENGTH"
MARIADB = (pytest.mark.mariadb_only,)

TEXT_DATES = Table(
    "id INT NOT NULL PRIMARY KEY, ok VARCHAR(30) NULL, okt VARCHAR(30) NULL, "
    "bad VARCHAR(30) NULL, tm TIME NULL",
    ("id", "ok", "okt", "bad", "tm"),
    (("2024-02-29", "2024-02-29 12:34:56", "2024-02-30", "12:00:00"),
     ("1000-01-01", "1999-12-31 23:59:59.5", "garbage", "-01:00:00"),
     ("9999-12-31", "2024-1-5 1:2:3", "", "100:00:00"),
     (None, None, None, None),
     ("20240101", "20240101123456", "2024-02-29x", "00:00:01")))

NOPAD_KEYS = Table(
    "k VARCHAR(10) CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin NOT NULL PRIMARY KEY, "
    "n INT NULL",
    ("k", "n"), ((1,), (2,), (None,)),
    keys=tuple(f"k{n}" + " " * (n % 3) for n in range(ROWS // 3)) +
    tuple(f"k{n}" for n in range(ROWS // 3, ROWS)))

INET_UUID = Table(
    "id INT NOT NULL PRIMARY KEY, ip INET6 NULL, u UUID NULL, ipt VARCHAR(40) NULL, "
    "uc CHAR(36) NULL, ib BINARY(16) NULL",
    ("id", "ip", "u", "ipt", "uc", "ib"),
    (("::1", "123e4567-e89b-12d3-a456-426614174000", "fe80::1",
      "123E4567-E89B-12D3-A456-426614174000", b"\x20\x01" + bytes(14)),
     ("2001:db8::ff00:42:8329", "00000000-0000-0000-0000-000000000000", "::FFFF:1.2.3.4",
      "123e4567e89b12d3a456426614174000", bytes(range(16))),
     (None, None, None, None, None)))

SPATIAL = Table(
    "id INT NOT NULL PRIMARY KEY, p POINT NULL, g GEOMETRY NULL",
    ("id", "p", "g"), ())

SEQUENCE = Table(
    "id INT NOT NULL DEFAULT (NEXT VALUE FOR seq_t) PRIMARY KEY, n INT NULL",
    ("id", "n"), ((1,), (None,)), before=("CREATE SEQUENCE IF NOT EXISTS seq_t",))

VERSIONED = Table("id INT NOT NULL PRIMARY KEY, n INT NULL", ("id", "n"), ((1,), (None,)),
                  options="WITH SYSTEM VERSIONING")

PARTITIONED = Table("id INT NOT NULL PRIMARY KEY, n INT NULL", ("id", "n"), ((1,), (None,)),
                    options="PARTITION BY HASH (id) PARTITIONS 3")

ODD_NAMES = Table(
    "id INT NOT NULL PRIMARY KEY, `we``ird` INT NULL, `s p a c e` VARCHAR(8) NULL, "
    "`order` INT NULL, `\u00e9t\u00e9` VARCHAR(8) NULL, `select` INT NULL, "
    "`f{0}{}` FLOAT NULL, `c%s` CHAR(4) NULL, KEY `k``1` (`order`)",
    ("id", "we`ird", "s p a c e", "order", "\u00e9t\u00e9", "select", "f{0}{}", "c%s"),
    ((1, "a", 2, "\u00e9", 3, 1.1, "%s"), (None, None, None, None, None, None, None)))

ON_UPDATE = Table(
    "id INT NOT NULL PRIMARY KEY, n INT NULL, "
    "upd TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP",
    ("id", "n", "upd"), ((1, "2001-02-03 04:05:06"), (None, "2010-01-01 00:00:00")))

CHECKED = Table(
    "id INT NOT NULL PRIMARY KEY, n INT NULL CHECK (n >= 0), m INT NULL, "
    "CONSTRAINT ck_m CHECK (m < 100)",
    ("id", "n", "m"), ((1, 2), (None, 50), (7, None)))

WIDE_CHARS = Table(
    "id INT NOT NULL PRIMARY KEY, "
    "w16 VARCHAR(20) CHARACTER SET utf16 NULL, w32 VARCHAR(20) CHARACTER SET utf32 NULL, "
    "u2 VARCHAR(20) CHARACTER SET ucs2 NULL, b VARCHAR(20) NULL, "
    "en ENUM('x','\u00e9') CHARACTER SET utf16 NULL, st SET('x','y') CHARACTER SET utf32 NULL",
    ("id", "w16", "w32", "u2", "b", "en", "st"),
    (("\U0001F600a ", "\U0001D11E", "\u00e9t\u00e9 ", "\U0001F600", "\u00e9", "x,y"),
     ("", " ", "", "abc", "x", ""), (None, None, None, None, None, None)))

WIDE_KEY = Table(
    "k VARCHAR(10) CHARACTER SET utf16 NOT NULL PRIMARY KEY, n INT NULL",
    ("k", "n"), ((1,), (None,)),
    keys=tuple(f"\u00e9{n}\U0001F600" for n in range(ROWS)))

# Values only a permissive sql_mode stores: zero dates, a zero in a date, an ENUM's
# error value '' (index 0).
PERMISSIVE = Table(
    "id INT NOT NULL PRIMARY KEY, d DATE NULL, dt DATETIME NULL, e ENUM('a','b') NULL",
    ("id", "d", "dt", "e"),
    (("0000-00-00", "0000-00-00 00:00:00", "x"), ("2024-00-10", "2024-02-00 10:00:00", "b"),
     ("2024-01-01", "2024-01-01 00:00:00", "a"), (None, None, None)),
    seed_mode="")

TEXT_KEY = Table(
    "k VARCHAR(10) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL PRIMARY KEY, n INT NULL",
    ("k", "n"), ((1,), (None,)),
    keys=(*(f"k{n}" for n in range(ROWS - 2)), "K1", "K2"))
TEXT_KEY_CLEAN = Table(TEXT_KEY.ddl, TEXT_KEY.names, TEXT_KEY.rows,
                       keys=tuple(f"k{n}" for n in range(ROWS)))
TO_CI = "MODIFY COLUMN k VARCHAR(10) CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci NOT NULL"
NO_ZERO = "STRICT_ALL_TABLES,NO_ZERO_DATE,NO_ZERO_IN_DATE"
# Text that ALTER TABLE reads as an integer (signs, spaces, zeros).
INTEGER_TEXTS = Table(
    "id INT NOT NULL PRIMARY KEY, s VARCHAR(20) NULL, c CHAR(8) NULL, vb VARBINARY(8) NULL",
    ("id", "s", "c", "vb"),
    (("+5", "1", b"+5"), (" -3", " 2", b"-3 "), ("007", "-0", b"007"), ("  8  ", "300", b"8"),
     ("\t9", "4", b"\t9\n"), ("-0", None, None), ("9223372036854775807", "12", b"-0\t")))
WHOLE_NUMBERS = Table("id INT NOT NULL PRIMARY KEY, d DOUBLE NULL, dc DECIMAL(8,2) NULL",
                      ("id", "d", "dc"), ((20240229, 1), (19991231, 3), (None, None)))
YEARS = Table("id INT NOT NULL PRIMARY KEY, s VARCHAR(8) NULL, d DOUBLE NULL", ("id", "s", "d"),
              (("2024", 2024.0), ("99", 1999.0), ("5", None), (None, 70.0)))
BIG_TEXT = Table("id INT NOT NULL PRIMARY KEY, s VARCHAR(24) NULL", ("id", "s"),
                 (("18446744073709551615",), ("5",), (None,)))
# Halves and near-halves: how each conversion rounds.
HALVES = Table(
    "id INT NOT NULL PRIMARY KEY, d DOUBLE NULL, f FLOAT NULL, dc DECIMAL(12,4) NULL, "
    "s VARCHAR(20) NULL, vb VARBINARY(20) NULL",
    ("id", "d", "f", "dc", "s", "vb"),
    ((2.5, 2.5, "2.5000", "2.5", b"2.5"), (-2.5, -2.5, "-2.5000", "-2.5", b"7"),
     (0.5, 0.5, "0.5000", "0.5", b"-3"), (1.4999999999, 1.4999, "1.4999", "1.49999", b"1e3"),
     (0.05, 0.05, "0.0500", "0.05", b"0"),
     (1e15 + 0.5, 1048576.5, "99999999.5000", "1e3", b" 8"),
     (-0.5, -0.5, "-0.5000", " 7 ", None), (None, None, None, None, None)))
# Keys that meet once rounded: .5 apart at the 6th digit, 1.01 and 1.04.
TIME_KEY = Table("k DATETIME(6) NOT NULL PRIMARY KEY, n INT NULL", ("k", "n"), ((1,), (None,)),
                 keys=tuple(f"2024-01-01 00:00:{n // 2:02d}.00000{n % 2}" for n in range(ROWS)))
DECIMAL_KEY = Table("k DECIMAL(10,2) NOT NULL PRIMARY KEY, n INT NULL", ("k", "n"),
                    ((1,), (None,)), keys=tuple(f"{n // 2}.0{(n % 2) * 3 + 1}"
                                                for n in range(ROWS)))

CASES: list[Case] = [
    # --- CHECK constraints -------------------------------------------------------------
    C("check_add_passes", "ADD CONSTRAINT ck_v CHECK (v >= 0)", marks=MARIADB),
    C("check_add_unnamed", "ADD CHECK (v >= 0), ADD CHECK (nonull IS NOT NULL)", marks=MARIADB),
    C("check_add_violated_fails", "ADD CONSTRAINT ck_i CHECK (i > 0)", marks=MARIADB),
    C("check_on_converted_column_fails", "MODIFY COLUMN dc BIGINT NULL, "
      "ADD CONSTRAINT ck_dc CHECK (dc BETWEEN -99999999999999 AND 99999999999999)", marks=MARIADB),
    C("check_column_level", "ADD COLUMN n INT NULL CHECK (n > 0)", marks=MARIADB),
    # MariaDB adds this column INSTANT without checking the existing rows (their 0 then
    # fails the CHECK); onlineddl checks every row, as the server's ALGORITHM=COPY does.
    C("check_column_level_violated_fails", "ADD COLUMN n INT NOT NULL DEFAULT 0 CHECK (n > 0)",
      native=", ALGORITHM=COPY", marks=MARIADB),
    C("check_modify_column_level", "MODIFY COLUMN nonull INT NULL CHECK (nonull > -10)",
      marks=MARIADB),
    C("check_json_from_text_fails", "MODIFY COLUMN vc JSON NULL", marks=MARIADB),
    C("check_table_kept", "ADD COLUMN x INT NULL", table=CHECKED, marks=MARIADB),
    C("check_modify_kept", "MODIFY COLUMN m BIGINT NULL", table=CHECKED, marks=MARIADB),
    C("check_drop_constraint", "DROP CONSTRAINT ck_m", table=CHECKED, refused=True, marks=MARIADB),
    C("check_column_renamed", "CHANGE COLUMN m m2 INT NULL", table=CHECKED, marks=MARIADB),
    C("check_column_dropped", "DROP COLUMN m", table=CHECKED, marks=MARIADB),
    C("check_column_retyped_fails", "MODIFY COLUMN m VARCHAR(5) NULL", table=CHECKED,
      marks=MARIADB),
    C("check_add_to_checked", "ADD CONSTRAINT ck_x CHECK (n + m < 200), ADD CHECK (n < 10)",
      table=CHECKED, marks=MARIADB),
    # --- defaults ----------------------------------------------------------------------
    C("default_expr_from_columns", "ADD COLUMN n BIGINT NULL DEFAULT (v * 2 + 1)"),
    C("default_expr_text", "ADD COLUMN n VARCHAR(40) NULL DEFAULT (CONCAT('x', v))"),
    C("default_expr_null_into_not_null", "ADD COLUMN n INT NOT NULL DEFAULT (i)"),
    C("default_expr_null_into_not_null_nonstrict", "ADD COLUMN n INT NOT NULL DEFAULT (i)",
      global_sql_mode="", strict_stop=True),
    C("default_divides_by_zero", "ADD COLUMN n INT NULL DEFAULT (1 DIV (v - v))"),
    C("default_divides_by_zero_not_null", "ADD COLUMN n INT NOT NULL DEFAULT (v / (v - v))"),
    C("default_out_of_range", "ADD COLUMN n BIGINT NULL DEFAULT (CAST(v AS UNSIGNED) - 100)"),
    C("default_connection_id", "ADD COLUMN n BIGINT NULL DEFAULT (CONNECTION_ID())",
      shape=("n",)),
    C("default_uuid", "ADD COLUMN n VARCHAR(36) NULL DEFAULT (UUID())", shape=("n",)),
    # MariaDB's in-place ALTER (INSTANT, or INPLACE with FORCE) evaluates RAND() once
    # for all existing rows; its ALGORITHM=COPY once per row, as onlineddl's copy does.
    C("default_rand", "ADD COLUMN n DOUBLE NOT NULL DEFAULT (RAND())", shape=("n",),
      native=", ALGORITHM=COPY"),
    C("drop_default", "ALTER COLUMN v DROP DEFAULT"),
    C("modify_adds_default", "MODIFY COLUMN i INT NULL DEFAULT 5"),
    C("modify_not_null_default_with_nulls_fails", "MODIFY COLUMN i INT NOT NULL DEFAULT 5"),
    # The server turns the NULLs into the current time, which no checksum can verify.
    C("timestamp_nulls_to_not_null_refused",
      "MODIFY COLUMN ts TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)", refused=True,
      marks=MARIADB),
    C("timestamp_not_null_without_nulls",
      "MODIFY COLUMN created TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP"),
    C("datetime_nulls_to_not_null_now",
      "MODIFY COLUMN dtm DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)", clock=("dtm",)),
    C("two_timestamps_not_null", "ADD COLUMN n TIMESTAMP NOT NULL, "
      "ADD COLUMN n2 TIMESTAMP NOT NULL", clock=("n", "n2")),
    C("add_on_update_column",
      "ADD COLUMN n TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP",
      clock=("n",)),
    C("on_update_kept", "MODIFY COLUMN n BIGINT NULL", table=ON_UPDATE),
    C("on_update_to_datetime", "MODIFY COLUMN upd DATETIME NOT NULL", table=ON_UPDATE),
    # --- ENUM / SET / text -----------------------------------------------------------
    C("enum_to_varchar", "MODIFY COLUMN e VARCHAR(10) CHARACTER SET utf8mb4 NULL"),
    C("enum_to_int", "MODIFY COLUMN e INT NULL"),
    C("set_to_varchar", "MODIFY COLUMN s VARCHAR(20) NULL"),
    C("set_to_bigint", "MODIFY COLUMN s BIGINT NULL"),
    C("varchar_to_enum_fits",
      "MODIFY COLUMN ns ENUM('42','0','2147483647','-2147483648') NULL"),
    C("varchar_to_enum_fails", "MODIFY COLUMN ns ENUM('0','42') NULL"),
    C("varchar_to_set_fits", "MODIFY COLUMN ns SET('42','0','2147483647','-2147483648') NULL"),
    C("enum_to_set", "MODIFY COLUMN e SET('a','b','c d','\u00e9') CHARACTER SET utf8mb4 NULL"),
    C("bool", "MODIFY COLUMN b1 BOOL NULL"),
    C("tinyint_to_bool", "MODIFY COLUMN tu BOOL NULL"),
    # --- numbers ----------------------------------------------------------------------
    C("decimal_to_bigint_rounds", "MODIFY COLUMN dc BIGINT NULL"),
    C("decimal_to_int_fails", "MODIFY COLUMN dc INT NULL"),
    C("double_to_bigint_fails", "MODIFY COLUMN d BIGINT NULL"),
    C("double_to_decimal_rounds", "MODIFY COLUMN d DECIMAL(65,10) NULL"),
    C("float_to_decimal", "MODIFY COLUMN f DECIMAL(65,30) NULL"),
    C("float_to_int_fails", "MODIFY COLUMN f INT NULL"),
    C("decimal_to_decimal_unsigned_fails", "MODIFY COLUMN dc DECIMAL(20,6) UNSIGNED NULL"),
    C("int_to_decimal", "MODIFY COLUMN i DECIMAL(12,2) NULL"),
    C("int_to_double", "MODIFY COLUMN bi DOUBLE NULL"),
    C("bigint_unsigned_to_double", "MODIFY COLUMN bu DOUBLE NULL"),
    C("float_to_float_m_d", "MODIFY COLUMN d FLOAT(12,3) NULL"),
    C("year_to_int", "MODIFY COLUMN yr INT NULL"),
    C("halves_double_to_bigint", "MODIFY COLUMN d BIGINT NULL", table=HALVES),
    C("halves_float_to_int", "MODIFY COLUMN f INT NULL", table=HALVES),
    C("halves_decimal_to_int", "MODIFY COLUMN dc INT NULL", table=HALVES),
    C("halves_double_to_decimal", "MODIFY COLUMN d DECIMAL(20,1) NULL", table=HALVES),
    C("halves_float_to_decimal", "MODIFY COLUMN f DECIMAL(12,1) NULL", table=HALVES),
    C("halves_decimal_to_decimal", "MODIFY COLUMN dc DECIMAL(10,0) NULL", table=HALVES),
    C("halves_text_to_int_fails", "MODIFY COLUMN s INT NULL", table=HALVES),
    C("integer_texts_to_bigint", "MODIFY COLUMN s BIGINT NULL, MODIFY COLUMN c INT NULL",
      table=INTEGER_TEXTS),
    C("integer_texts_to_tinyint_fails", "MODIFY COLUMN s TINYINT NULL", table=INTEGER_TEXTS),
    C("halves_bytes_to_int_fails", "MODIFY COLUMN vb INT NULL", table=HALVES),
    C("integer_bytes_to_int", "MODIFY COLUMN vb INT NULL", table=INTEGER_TEXTS),
    C("halves_text_to_decimal", "MODIFY COLUMN s DECIMAL(8,1) NULL", table=HALVES),
    C("halves_text_to_double", "MODIFY COLUMN s DOUBLE NULL", table=HALVES),
    C("halves_double_to_float", "MODIFY COLUMN d FLOAT NULL", table=HALVES),
    # ALTER and INSERT ... SELECT disagree on fractions here: refused up front.
    C("halves_double_to_date_fails", "MODIFY COLUMN d DATETIME NULL", table=HALVES),
    C("halves_decimal_to_enum_fails", "MODIFY COLUMN dc ENUM('a','2.5','b') NULL",
      table=HALVES),
    C("whole_double_to_date_refused", "MODIFY COLUMN d DATE NULL", table=WHOLE_NUMBERS,
      refused=True),
    C("whole_decimal_to_enum_refused", "MODIFY COLUMN dc ENUM('a','b','c') NULL",
      table=WHOLE_NUMBERS, refused=True),
    C("big_text_to_bigint_unsigned_fails", "MODIFY COLUMN s BIGINT UNSIGNED NULL",
      table=BIG_TEXT),
    C("text_to_bigint_unsigned", "MODIFY COLUMN s BIGINT UNSIGNED NULL", table=INTEGER_TEXTS),
    C("halves_unsigned_fails", "MODIFY COLUMN dc DECIMAL(12,4) UNSIGNED NULL", table=HALVES),
    C("varchar_to_decimal_fits", "MODIFY COLUMN ns DECIMAL(12,1) NULL"),
    C("varchar_to_double", "MODIFY COLUMN ns DOUBLE NULL"),
    C("bit_to_varchar", "MODIFY COLUMN b8 VARCHAR(8) NULL"),
    C("bit_to_binary", "MODIFY COLUMN b64 BINARY(8) NULL"),
    C("bit_to_text", "MODIFY COLUMN b8 TEXT CHARACTER SET latin1 NULL, "
      "MODIFY COLUMN b1 BLOB NULL"),
    C("text_to_year_refused", "MODIFY COLUMN s YEAR NULL", table=YEARS, refused=True),
    C("double_to_year_refused", "MODIFY COLUMN d YEAR NULL", table=YEARS, refused=True),
    C("year_to_time_refused", "MODIFY COLUMN yr TIME NULL", refused=True),
    # --- temporal ---------------------------------------------------------------------
    C("datetime_to_time", "MODIFY COLUMN dtm TIME(6) NULL"),
    C("time_to_datetime", "MODIFY COLUMN tm DATETIME(6) NULL"),
    C("time_to_timestamp", "MODIFY COLUMN tm TIMESTAMP(6) NULL"),
    C("date_to_timestamp", "MODIFY COLUMN dt TIMESTAMP NULL"),
    C("timestamp_to_date", "MODIFY COLUMN ts DATE NULL"),
    C("timestamp_to_time", "MODIFY COLUMN ts TIME(6) NULL"),
    C("timestamp_to_bigint", "MODIFY COLUMN ts BIGINT NULL"),
    C("timestamp_to_decimal", "MODIFY COLUMN ts DECIMAL(24,6) NULL"),
    C("datetime_to_bigint", "MODIFY COLUMN dtm BIGINT NULL"),
    C("date_to_int", "MODIFY COLUMN dt INT NULL"),
    C("datetime6_to_timestamp0", "MODIFY COLUMN created TIMESTAMP(0) NOT NULL"),
    C("text_to_date_valid", "MODIFY COLUMN ok DATE NULL", table=TEXT_DATES),
    C("text_to_datetime_valid", "MODIFY COLUMN okt DATETIME NULL", table=TEXT_DATES),
    C("text_to_timestamp_valid", "MODIFY COLUMN okt TIMESTAMP NULL", table=TEXT_DATES),
    C("text_to_time", "MODIFY COLUMN okt TIME NULL", table=TEXT_DATES),
    C("text_to_date_invalid_fails", "MODIFY COLUMN bad DATE NULL", table=TEXT_DATES),
    C("time_to_datetime_small", "MODIFY COLUMN tm DATETIME NULL", table=TEXT_DATES),
    C("date_text_to_datetime", "MODIFY COLUMN ok DATETIME(3) NULL", table=TEXT_DATES),
    # --- character sets and collations ----------------------------------------------
    C("to_utf16", "MODIFY COLUMN vc VARCHAR(64) CHARACTER SET utf16 NULL"),
    C("to_utf32", "MODIFY COLUMN vc VARCHAR(64) CHARACTER SET utf32 NULL"),
    C("convert_to_utf16", "CONVERT TO CHARACTER SET utf16 COLLATE utf16_unicode_ci"),
    C("convert_wide_to_utf8mb4", "CONVERT TO CHARACTER SET utf8mb4", table=WIDE_CHARS),
    C("convert_wide_to_utf32", "CONVERT TO CHARACTER SET utf32 COLLATE utf32_bin",
      table=WIDE_CHARS),
    C("to_ucs2_fails", "MODIFY COLUMN vc VARCHAR(64) CHARACTER SET ucs2 NULL"),
    C("latin1_to_ucs2", "MODIFY COLUMN lt TEXT CHARACTER SET ucs2 NULL"),
    C("utf16_to_utf8mb4", "MODIFY COLUMN w16 VARCHAR(20) CHARACTER SET utf8mb4 NULL",
      table=WIDE_CHARS),
    C("utf32_to_utf16", "MODIFY COLUMN w32 VARCHAR(20) CHARACTER SET utf16 NULL",
      table=WIDE_CHARS),
    C("ucs2_to_latin1", "MODIFY COLUMN u2 VARCHAR(20) CHARACTER SET latin1 NULL",
      table=WIDE_CHARS),
    C("wide_add_column", "ADD COLUMN x INT NULL", table=WIDE_CHARS),
    C("wide_to_binary", "MODIFY COLUMN w16 VARBINARY(80) NULL", table=WIDE_CHARS),
    C("wide_enum_to_varchar", "MODIFY COLUMN en VARCHAR(4) CHARACTER SET utf16 NULL",
      table=WIDE_CHARS),
    C("wide_set_reordered", "MODIFY COLUMN st SET('y','x') CHARACTER SET utf32 NULL",
      table=WIDE_CHARS),
    C("wide_key_add_column", "ADD COLUMN x INT NULL", table=WIDE_KEY),
    C("wide_key_to_utf8mb4", "MODIFY COLUMN k VARCHAR(10) CHARACTER SET utf8mb4 NOT NULL",
      table=WIDE_KEY),
    C("varchar_to_utf16_char", "MODIFY COLUMN b CHAR(20) CHARACTER SET utf16 NULL",
      table=WIDE_CHARS),
    C("to_nopad", "MODIFY COLUMN vc VARCHAR(64) CHARACTER SET utf8mb4 "
      "COLLATE utf8mb4_nopad_bin NULL", marks=MARIADB),
    C("char_to_nopad", "MODIFY COLUMN ch CHAR(16) CHARACTER SET utf8mb4 "
      "COLLATE utf8mb4_nopad_bin NULL", marks=MARIADB),
    C("collation_unique_collides_fails",
      "MODIFY COLUMN bv VARCHAR(32) CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci NULL, "
      "ADD UNIQUE KEY uq_bv (bv)"),
    C("nopad_key_add_column", "ADD COLUMN x INT NULL", table=NOPAD_KEYS, marks=MARIADB),
    C("nopad_key_to_pad_fails", "MODIFY COLUMN k VARCHAR(10) CHARACTER SET utf8mb4 "
      "COLLATE utf8mb4_bin NOT NULL", table=NOPAD_KEYS, marks=MARIADB),
    C("nopad_key_widened", "MODIFY COLUMN k VARCHAR(20) CHARACTER SET utf8mb4 "
      "COLLATE utf8mb4_nopad_bin NOT NULL", table=NOPAD_KEYS, marks=MARIADB),
    # --- keys and visibility ------------------------------------------------------------
    C("desc_index", "ADD INDEX ix_vd (v DESC, id)"),
    C("prefix_unique", "ADD UNIQUE KEY uq_vb (vb(4))"),
    C("index_on_converted", "MODIFY COLUMN vc VARCHAR(64) CHARACTER SET utf8mb4 "
      "COLLATE utf8mb4_unicode_ci NULL, ADD INDEX ix_vc (vc)"),
    C("invisible_column_added", "ADD COLUMN n INT NULL DEFAULT 3 INVISIBLE"),
    C("column_made_invisible", "MODIFY COLUMN nonull INT NULL INVISIBLE"),
    C("ignored_index", "ADD INDEX ix_v (v) IGNORED", marks=MARIADB),
    # --- odd names --------------------------------------------------------------------
    C("odd_names_add", "ADD COLUMN `new``col \u00e9` INT NULL DEFAULT 1 AFTER `we``ird`",
      table=ODD_NAMES),
    C("odd_names_rename", "CHANGE COLUMN `s p a c e` `from` VARCHAR(16) NULL, "
      "RENAME COLUMN `select` TO `a``b`", table=ODD_NAMES),
    C("odd_names_retype", "MODIFY COLUMN `order` BIGINT NULL, "
      "MODIFY COLUMN `\u00e9t\u00e9` TEXT NULL, MODIFY COLUMN `f{0}{}` VARCHAR(20) NULL, "
      "MODIFY COLUMN `c%s` VARCHAR(8) NULL", table=ODD_NAMES),
    C("drop_and_readd_same_name", "DROP COLUMN i, ADD COLUMN i INT NOT NULL DEFAULT 5"),
    C("swap_names_change", "CHANGE COLUMN ti si SMALLINT NULL, CHANGE COLUMN si ti SMALLINT NULL"),
    C("swap_names_rename", "RENAME COLUMN lat TO lt, RENAME COLUMN lt TO lat"),
    C("rename_chain", "RENAME COLUMN mi TO mu, RENAME COLUMN mu TO mx"),
    C("rename_case_only", "CHANGE COLUMN vc VC VARCHAR(64) CHARACTER SET utf8mb4 NULL, "
      "RENAME COLUMN tx TO TX"),
    C("desc_primary_key", "DROP PRIMARY KEY, ADD PRIMARY KEY (id DESC)", marks=MARIADB),
    # --- table level ------------------------------------------------------------------
    C("add_auto_increment_column_refused", "ADD COLUMN a INT NOT NULL AUTO_INCREMENT, "
      "ADD UNIQUE KEY uq_a (a)", table=CHECKED, refused=True, marks=MARIADB),
    C("partition_by_refused", "PARTITION BY HASH (id) PARTITIONS 2", refused=True),
    C("row_format_dynamic", "ROW_FORMAT=DYNAMIC"),
    C("row_format_compressed", "ROW_FORMAT=COMPRESSED KEY_BLOCK_SIZE=8"),
    C("page_compressed", "PAGE_COMPRESSED=1", marks=MARIADB),
    C("stats_persistent", "STATS_PERSISTENT=0, STATS_SAMPLE_PAGES=7"),
    C("compressed_column", "MODIFY COLUMN tx TEXT COMPRESSED NULL", marks=MARIADB),
    C("sequence_default_added", "ADD COLUMN sq BIGINT NULL DEFAULT (NEXT VALUE FOR seq_t)",
      table=SEQUENCE, shape=("sq",), marks=MARIADB),
    C("json_to_longtext", "MODIFY COLUMN j LONGTEXT NULL", marks=MARIADB),
    C("text_default_literal", "ADD COLUMN n TEXT NULL DEFAULT ('abc'), "
      "ADD COLUMN n2 BLOB NULL DEFAULT (x'00ff')"),
    C("partitioned_add_column", "ADD COLUMN x INT NULL", table=PARTITIONED),
    C("sequence_default_add_column", "ADD COLUMN x INT NULL", table=SEQUENCE,
      marks=MARIADB),
    C("system_versioned_add_column", "ADD COLUMN x INT NULL", table=VERSIONED,
      marks=MARIADB),
    C("add_system_versioning", "ADD SYSTEM VERSIONING", refused=True, marks=MARIADB),
    C("inet6_add_column", "ADD COLUMN x INT NULL", table=INET_UUID, marks=MARIADB),
    C("inet6_to_varchar", "MODIFY COLUMN ip VARCHAR(40) NULL", table=INET_UUID,
      marks=MARIADB),
    C("varchar_to_inet6", "MODIFY COLUMN ipt INET6 NULL", table=INET_UUID, marks=MARIADB),
    C("varchar_to_inet6_fails", "MODIFY COLUMN u INET6 NULL", table=INET_UUID, marks=MARIADB),
    C("uuid_to_char", "MODIFY COLUMN u CHAR(36) NULL", table=INET_UUID, marks=MARIADB),
    C("inet6_to_binary", "MODIFY COLUMN ip BINARY(16) NULL", table=INET_UUID, marks=MARIADB),
    C("uuid_to_binary", "MODIFY COLUMN u BINARY(16) NULL", table=INET_UUID, marks=MARIADB),
    C("inet6_to_text", "MODIFY COLUMN ip TEXT CHARACTER SET latin1 NULL", table=INET_UUID,
      marks=MARIADB),
    C("uuid_to_varbinary", "MODIFY COLUMN u VARBINARY(64) NULL", table=INET_UUID,
      marks=MARIADB),
    C("char_to_uuid", "MODIFY COLUMN uc UUID NULL", table=INET_UUID, marks=MARIADB),
    C("binary_to_inet6", "MODIFY COLUMN ib INET6 NULL", table=INET_UUID, marks=MARIADB),
    C("spatial_add_column", "ADD COLUMN x INT NULL", table=SPATIAL),
    C("point_to_geometry", "MODIFY COLUMN p GEOMETRY NULL", table=SPATIAL),
    C("geometry_to_point_fails", "MODIFY COLUMN g POINT NULL", table=SPATIAL),
    C("point_to_varbinary", "MODIFY COLUMN p VARBINARY(64) NULL", table=SPATIAL),
    C("spatial_index_added", "MODIFY COLUMN g GEOMETRY NOT NULL DEFAULT (POINT(0, 0)), "
      "ADD SPATIAL INDEX sx (g)", table=SPATIAL),
    # --- generated columns and defaults over converted columns ---------------------
    C("generated_base_retyped", "MODIFY COLUMN ti SMALLINT NULL"),
    C("virtual_indexed_base_retyped", "MODIFY COLUMN bs DECIMAL(30,2) NULL"),
    C("generated_base_recollated", "MODIFY COLUMN tag VARCHAR(24) CHARACTER SET utf8mb4 "
      "COLLATE utf8mb4_bin NULL"),
    C("default_expr_over_converted", "MODIFY COLUMN i BIGINT NULL, "
      "ADD COLUMN n BIGINT NULL DEFAULT (i * 2)"),
    # --- text keys --------------------------------------------------------------------
    C("key_collation_collides_fails", "MODIFY COLUMN k VARCHAR(10) CHARACTER SET utf8mb4 "
      "COLLATE utf8mb4_general_ci NOT NULL", table=TEXT_KEY),
    C("key_recollated", TO_CI, table=TEXT_KEY_CLEAN),
    C("key_time_rounded_collides_fails", "MODIFY COLUMN k DATETIME(3) NOT NULL",
      table=TIME_KEY),
    C("key_time_widened", "MODIFY COLUMN k DATETIME(6) NOT NULL, ADD COLUMN x INT NULL",
      table=TIME_KEY),
    C("key_decimal_rounded_collides_fails", "MODIFY COLUMN k DECIMAL(10,1) NOT NULL",
      table=DECIMAL_KEY),
    C("key_decimal_to_varchar", "MODIFY COLUMN k VARCHAR(12) NOT NULL", table=DECIMAL_KEY),
    # CHAR cuts the keys' trailing spaces, which NO PAD counts: the applier would not
    # find a deleted row's key in the new table (keys.choose, exit 5).
    C("key_nopad_to_char_refused", "MODIFY COLUMN k CHAR(10) CHARACTER SET utf8mb4 "
      "COLLATE utf8mb4_nopad_bin NOT NULL", table=NOPAD_KEYS, refused=True, marks=MARIADB),
    C("key_widened", "MODIFY COLUMN k VARCHAR(12) CHARACTER SET utf8mb4 "
      "COLLATE utf8mb4_bin NOT NULL", table=TEXT_KEY),
    C("key_to_char", "MODIFY COLUMN k CHAR(10) CHARACTER SET utf8mb4 "
      "COLLATE utf8mb4_bin NOT NULL", table=TEXT_KEY),
    # --- values only a permissive sql_mode stores --------------------------------------
    C("permissive_add_column", "ADD COLUMN x INT NULL", table=PERMISSIVE, global_sql_mode=""),
    C("permissive_retype", "MODIFY COLUMN d DATETIME NULL, MODIFY COLUMN dt DATE NULL, "
      "MODIFY COLUMN e ENUM('b','a') NULL", table=PERMISSIVE, global_sql_mode=""),
    C("permissive_enum_to_varchar", "MODIFY COLUMN e VARCHAR(5) NULL", table=PERMISSIVE,
      global_sql_mode=""),
    # Zero dates already in the table, a global sql_mode refusing them: MariaDB's
    # in-place ALTER (INSTANT, INPLACE) keeps them; its ALGORITHM=COPY, like onlineddl's
    # copy, fails on them (docs/compatibility.md).
    C("no_zero_date_add_column", "ADD COLUMN x INT NULL", table=PERMISSIVE,
      global_sql_mode=NO_ZERO, native=", ALGORITHM=COPY"),
    C("no_zero_date_retype", "MODIFY COLUMN d DATETIME NULL", table=PERMISSIVE,
      global_sql_mode=NO_ZERO),
    C("strict_permissive_rows_add_column", "ADD COLUMN x INT NULL, FORCE", table=PERMISSIVE,
      global_sql_mode="STRICT_ALL_TABLES"),
    # --- the server's global sql_mode ---------------------------------------------
    C("nonstrict_truncating", "MODIFY COLUMN tx VARCHAR(50) NULL", global_sql_mode="",
      strict_stop=True),
    C("nonstrict_lossless", "MODIFY COLUMN i BIGINT NULL", global_sql_mode=""),
    C("nonstrict_not_null_with_nulls", "MODIFY COLUMN i INT NOT NULL", global_sql_mode="",
      strict_stop=True),
    C("nonstrict_invalid_dates", "MODIFY COLUMN bad DATE NULL", table=TEXT_DATES,
      global_sql_mode="", strict_stop=True),
    C("nonstrict_valid_dates", "MODIFY COLUMN okt DATETIME NULL", table=TEXT_DATES,
      global_sql_mode=""),
    C("ansi_quotes_string_default", 'ADD COLUMN n VARCHAR(10) NULL DEFAULT "abc"',
      global_sql_mode="STRICT_ALL_TABLES,ANSI_QUOTES"),
    # onlineddl reads names only bare or in backticks: refused, saying so.
    C("ansi_quotes_name", 'ADD COLUMN "n q" INT NULL DEFAULT 1',
      global_sql_mode="STRICT_ALL_TABLES,ANSI_QUOTES", refused=True),
    C("ansi_quotes_single_quotes", "ADD COLUMN n VARCHAR(10) NULL DEFAULT 'abc'",
      global_sql_mode="STRICT_ALL_TABLES,ANSI_QUOTES"),
    C("app_sessions_ansi_quotes", "MODIFY COLUMN ch VARCHAR(20) CHARACTER SET utf8mb4 NULL, "
      "MODIFY COLUMN e VARCHAR(10) CHARACTER SET utf8mb4 NULL",
      writer_mode="STRICT_ALL_TABLES,ANSI_QUOTES,PAD_CHAR_TO_FULL_LENGTH"),
    C("round_fractional_datetime_fails", "MODIFY COLUMN dtm DATETIME NULL",
      global_sql_mode="STRICT_ALL_TABLES,TIME_ROUND_FRACTIONAL", marks=MARIADB),
    C("round_fractional_time", "MODIFY COLUMN tm TIME NULL",
      global_sql_mode="STRICT_ALL_TABLES,TIME_ROUND_FRACTIONAL", marks=MARIADB),
    C("round_fractional_decimal_to_time", "MODIFY COLUMN dc TIME NULL",
      global_sql_mode="STRICT_ALL_TABLES,TIME_ROUND_FRACTIONAL", marks=MARIADB),
    C("round_fractional_timestamp", "MODIFY COLUMN ts TIMESTAMP NULL",
      global_sql_mode="STRICT_ALL_TABLES,TIME_ROUND_FRACTIONAL", marks=MARIADB),
    C("round_fractional_text_datetime", "MODIFY COLUMN okt DATETIME NULL", table=TEXT_DATES,
      global_sql_mode="STRICT_ALL_TABLES,TIME_ROUND_FRACTIONAL", marks=MARIADB),
    C("nonstrict_long_default", "ADD COLUMN n VARCHAR(3) NULL DEFAULT 'abcdef'",
      global_sql_mode=""),
    C("zero_date_default_no_zero_fails", "ADD COLUMN n DATE NOT NULL DEFAULT '0000-00-00'",
      global_sql_mode=NO_ZERO),
    C("zero_date_default_permissive", "ADD COLUMN n DATE NOT NULL DEFAULT '0000-00-00'",
      global_sql_mode=""),
    C("pad_char_global", "MODIFY COLUMN ch VARCHAR(20) CHARACTER SET utf8mb4 NULL",
      global_sql_mode=PAD_CHAR),
    C("pad_char_to_binary_and_int", "MODIFY COLUMN ch VARBINARY(80) NULL, "
      "MODIFY COLUMN i CHAR(12) NULL", global_sql_mode=PAD_CHAR),
    C("pad_char_widened", "MODIFY COLUMN ch CHAR(20) CHARACTER SET utf8mb4 NULL",
      global_sql_mode=PAD_CHAR),
    C("pad_char_nopad_to_text", "MODIFY COLUMN ch TEXT CHARACTER SET utf8mb4 "
      "COLLATE utf8mb4_nopad_bin NULL", global_sql_mode=PAD_CHAR, marks=MARIADB),
]
BY_ID = {c.id: c for c in CASES}


@pytest.fixture
def global_sql_mode(server: Dsn) -> Iterator[Callable[[str], None]]:
    """Sets the server's GLOBAL sql_mode for one case; restored afterwards."""
    with connect(server) as admin, admin.cursor() as cur:
        cur.execute("SELECT @@GLOBAL.sql_mode")
        saved = cur.fetchone()[0]

    def set_mode(mode: str) -> None:
        with connect(server) as admin, admin.cursor() as cur:
            cur.execute("SET GLOBAL sql_mode = %s", (mode,))

    yield set_mode
    set_mode(saved)


def make_tables(server: Dsn, db: str, conn: Conn, case: Case, names: Sequence[str]) -> None:
    if case.table is None:
        seed(conn, names)
        return
    table = case.table
    with connect(server, db) as seeder, seeder.cursor() as cur:
        cur.execute("SET SESSION sql_mode = %s", (table.seed_mode,))
        cur.execute("SET SESSION time_zone = '+00:00'")
        for text in table.before:
            cur.execute(text)
        for name in names:
            cur.execute(table.create(name))
            if table is SPATIAL:
                for k in range(1, ROWS + 1):
                    point = None if k % 3 == 0 else f"POINT({k} {-k * 1.5})"
                    line = None if k % 4 == 0 else "LINESTRING(0 0, 1 1, 2 5)"
                    cur.execute(f"INSERT INTO {q(name)} VALUES (%s, ST_GeomFromText(%s), "
                                "ST_GeomFromText(%s))", (k, point, line))
                continue
            marks = ", ".join(["%s"] * len(table.names))
            cur.executemany(f"INSERT INTO {q(name)} ({', '.join(qp(n) for n in table.names)}) "
                            f"VALUES ({marks})", table.values())


def qp(name: str) -> str:
    """A quoted name in a statement with %s parameters (a % in it doubled)."""
    return q(name).replace("%", "%%")


def flatten_shapes(conn: Conn, case: Case, tables: Sequence[str]) -> list[str]:
    """Per-row random columns: the same shape on both tables; then NULLed so the rest
    compares exactly."""
    problems = []
    shapes = []
    for table in tables:
        shape = []
        for col in case.shape:
            with conn.cursor() as cur:
                cur.execute(f"SELECT COUNT(*), COUNT({q(col)}), COUNT(DISTINCT {q(col)}) "
                            f"FROM {q(table)}")
                shape.append(cur.fetchone())
        shapes.append(shape)
    if shapes and shapes[0] != shapes[-1]:
        problems.append(f"shape of {case.shape} differs: onlineddl {shapes[0]}, "
                        f"native {shapes[-1]}")
    return problems


def null_out(conn: Conn, case: Case, tables: Sequence[str]) -> None:
    with conn.cursor() as cur:
        for table in tables:
            for col in case.shape:
                cur.execute(f"UPDATE {q(table)} SET {q(col)} = 0")


def params(cases: Sequence[Case]) -> list[Any]:
    return [pytest.param(c, id=c.id, marks=c.marks) for c in cases]


@pytest.mark.parametrize("case", params(CASES))
def test_parity_more(server: Dsn, parity_db: str, pconn: Conn, case: Case,
                     global_sql_mode: Callable[[str], None]) -> None:
    make_tables(server, parity_db, pconn, case, ("t", "twin"))
    if case.global_sql_mode is not None:
        global_sql_mode(case.global_sql_mode)
    native_error = native_alter(server, parity_db, "twin", case.alter + case.native)
    print(f"native ALTER: {native_error or 'ok'}")
    if case.refused or case.strict_stop:
        assert native_error is None, "a refused case is one the server runs"
        problems = refused(server, parity_db, pconn, case)
    elif native_error is None:
        problems = succeeds_like_native(server, parity_db, pconn, case)
    else:
        problems = fails_like_native(server, parity_db, pconn, case, native_error)  # type: ignore[arg-type]
    assert not problems, f"{case.alter}:\n  " + "\n  ".join(problems)


def succeeds_like_native(server: Dsn, db: str, conn: Conn, case: Case) -> list[str]:
    phases = Phases()
    before = kept_tables(conn)   # t, twin and what the case's table needs (a sequence)
    error = run_onlineddl(server, db, case.alter)
    faults.clear()
    if error is not None:
        problems = [f"onlineddl failed where the native ALTER succeeded: "
                    f"{type(error).__name__}: {error}"]
        if "_t_new" in table_names(conn):
            problems += [f"(in _t_new) {p}" for p in compare(conn, "_t_new", "twin")]
        return problems
    problems = flatten_shapes(conn, case, ("t", "twin"))
    if case.shape:
        null_out(conn, case, ("t", "twin"))
    problems += compare(conn, "t", "twin", case.clock)
    if kept_tables(conn) != before | {"_t_old_*"}:
        problems.append(f"tables afterwards: {sorted(table_names(conn))}")
    if phases.counts["after_chunk"] < 2:
        problems.append(f"expected several chunks, got {phases.counts}")
    return problems


def refused(server: Dsn, db: str, conn: Conn, case: Case) -> list[str]:
    """A refusal up front (exit 4 or 5), or for a strict_stop case a DataError (exit 10)
    before the checksum; either way `t`, its rows and the database's tables unchanged."""
    before = (table_names(conn), show_create(conn, "t"), read_table(conn, "t"))
    phases = Phases()
    error = run_onlineddl(server, db, case.alter)
    faults.clear()
    print(f"onlineddl: {type(error).__name__}: {error}")
    problems = []
    codes = (10,) if case.strict_stop else (4, 5)
    if not isinstance(error, OnlineDDLError) or error.exit_code not in codes:
        problems.append(f"expected exit {codes}, got {error!r}")
    elif case.strict_stop and "not strict" not in str(error.hint):
        problems.append(f"the error does not say why the plain ALTER succeeds: {error.hint}")
    late = "checksum_chunk" if case.strict_stop else "copy_start"
    if phases.counts[late]:
        problems.append(f"stopped only after {late}")
    if (table_names(conn), show_create(conn, "t"), read_table(conn, "t")) != before:
        problems.append("the table, its rows or the database's tables changed")
    return problems


# --- under writes -------------------------------------------------------------------------

UNDER_WRITES = ("default_expr_from_columns", "enum_to_varchar", "decimal_to_bigint_rounds",
                "time_to_datetime", "to_utf16", "nopad_key_add_column", "on_update_kept",
                "text_to_datetime_valid", "odd_names_retype", "check_modify_kept",
                "wide_add_column", "wide_key_add_column", "pad_char_global",
                "check_add_passes", "key_recollated", "generated_base_retyped",
                "app_sessions_ansi_quotes", "inet6_to_varchar", "varchar_to_inet6",
                "add_on_update_column", "swap_names_change", "drop_and_readd_same_name",
                "integer_texts_to_bigint")


@dataclass
class TableWriter:
    """Each call commits one transaction doing the same to `t` and `mirror`: an insert,
    an update of every non-key column to another sample row's values, a delete."""

    conn: Conn
    case: Case
    calls: int = 0
    done: list[str] = field(default_factory=list)

    def __call__(self) -> None:
        self.calls += 1
        n = self.calls
        plan: list[tuple[str, Any]] = []
        for table in ("t", "mirror"):
            plan += self.statements(table, n)
        commit_replaying(self.conn, plan)

    def statements(self, table: str, n: int) -> list[tuple[str, Any]]:
        t = q(table)
        if self.case.table is None:
            return [(f"UPDATE {t} SET i = i DIV 2, v = v + 1000, e = 'b', dc = dc / 3, "
                     f"tm = '-01:02:03.5', vc = CONCAT(LEFT(vc, 8), %s), ch = 'w', "
                     f"ti = ti DIV 2, tag = CONCAT(LEFT(tag, 4), 'x') "
                     f"WHERE id = %s", ("\u00e9", n * 3 % 50 + 1)),
                    (f"DELETE FROM {t} WHERE id = %s", (n * 7 % 50 + 1,)),
                    (f"INSERT INTO {t} (id, created, v, i, dc, tm, e, vc) VALUES "
                     f"(%s, '2020-01-01', %s, 5, 1.25, '-1:02:03', 'c d', 'new')",
                     (100 + n, 5000 + n))]
        spec = self.case.table
        names = spec.names
        rows = spec.values()
        source = rows[n % len(rows)]
        sets = ", ".join(f"{qp(c)} = %s" for c in names[1:])
        key = rows[(n * 5) % len(rows)][0]
        gone = rows[(n * 11 + 3) % len(rows)][0]
        fresh = f"z{n}" if isinstance(key, str) else 1000 + n
        marks = ", ".join(["%s"] * len(names))
        cols = ", ".join(qp(c) for c in names)
        return [(f"UPDATE {t} SET {sets} WHERE {q(names[0])} = %s", (*source[1:], key)),
                (f"DELETE FROM {t} WHERE {q(names[0])} = %s", (gone,)),
                (f"INSERT INTO {t} ({cols}) VALUES ({marks})", (fresh, *source[1:]))]


@pytest.mark.parametrize("case", params([BY_ID[i] for i in UNDER_WRITES]))
def test_parity_more_under_writes(server: Dsn, parity_db: str, pconn: Conn, case: Case,
                                  global_sql_mode: Callable[[str], None]) -> None:
    make_tables(server, parity_db, pconn, case, ("t", "mirror"))
    if case.global_sql_mode is not None:
        global_sql_mode(case.global_sql_mode)
    writer_conn = writer_connection(server, parity_db)
    if case.writer_mode:
        with writer_conn.cursor() as cur:
            cur.execute("SET SESSION sql_mode = %s", (case.writer_mode,))
    try:
        writer = TableWriter(writer_conn, case)
        phases = Phases({"copy_start": writer, "after_chunk": writer})
        error = run_onlineddl(server, parity_db, case.alter)
        faults.clear()
    finally:
        writer_conn.close()
    assert phases.counts["after_chunk"] >= 2, phases.counts
    assert native_alter(server, parity_db, "mirror", case.alter) is None
    assert error is None, f"onlineddl failed: {type(error).__name__}: {error}"
    problems = compare(pconn, "t", "mirror", case.clock)
    assert not problems, f"{case.alter}:\n  " + "\n  ".join(problems)



@pytest.mark.mariadb_only   # CHECK constraints on MySQL: refused (flavor.keeps_check_names)
@pytest.mark.parametrize("point", ["copy_start", "after_chunk"])
def test_check_violated_by_a_write_during_the_run(server: Dsn, parity_db: str, pconn: Conn,
                                                  point: str) -> None:
    """A committed write that the added CHECK rejects, reaching onlineddl through the copy
    (copy_start: before its chunk) or through the binlog (after_chunk: a copied row):
    the run stops with a DataError naming the constraint, before the checksum, with `t`
    holding the write, its schema unchanged and nothing left behind. (The plain ALTER
    would have refused the write itself, or failed on it.)"""
    seed(pconn, ("t",))
    before = (table_names(pconn), show_create(pconn, "t"))
    writes = 0

    def violate() -> None:
        nonlocal writes
        writes += 1
        if writes == 1:
            with connect(server, parity_db) as conn, conn.cursor() as cur:
                cur.execute("UPDATE t SET v = 500000 WHERE id = %s",
                            (50 if point == "copy_start" else 1,))

    phases = Phases({point: violate})
    error = run_onlineddl(server, parity_db, "ADD CONSTRAINT ck_v CHECK (v < 100000)")
    faults.clear()
    assert writes >= 1
    assert isinstance(error, OnlineDDLError) and error.exit_code == 10, repr(error)
    assert "ck_v" in str(error)
    assert not phases.counts["checksum_chunk"]
    assert (table_names(pconn), show_create(pconn, "t")) == before
    with pconn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM t WHERE v = 500000")
        assert cur.fetchone()[0] == 1


@pytest.mark.parametrize(("create", "alter", "refused"), [
    ("id INT PRIMARY KEY, n INT, CONSTRAINT ck_n CHECK (n > 0)", "ADD COLUMN x INT", True),
    ("id INT PRIMARY KEY, n INT CHECK (n > 0)", "ADD COLUMN x INT", True),
    ("id INT PRIMARY KEY, n INT", "ADD CONSTRAINT ck_n CHECK (n > 0)", True),
    ("id INT PRIMARY KEY, n INT", "ADD COLUMN x INT", False),
])
def test_check_constraints_where_names_may_change(server: Dsn, parity_db: str, pconn: Conn,
                                                  create: str, alter: str,
                                                  refused: bool) -> None:
    """On a flavor whose new table may not keep CHECK constraint names (MySQL:
    flavor.keeps_check_names), a table with one, or an ALTER adding one, is refused at
    preflight (UnsupportedTable, exit 4): the table here judged as on MySQL and MariaDB."""
    with pconn.cursor() as cur:
        cur.execute(f"CREATE TABLE t ({create})")
    session = Session(server, name="test", database=parity_db)
    try:
        info = load_table(session, parity_db, "t")
        parsed = parse_alter(alter, database=parity_db, table="t")
        for flavor, refuses in ((detect("8.0.36"), refused), (detect("10.11.6-MariaDB"), False)):
            if refuses:
                with pytest.raises(UnsupportedTable, match="CHECK constraint"):
                    check_constraints(session, flavor, info, parsed)
            else:
                check_constraints(session, flavor, info, parsed)
    finally:
        session.close()


@pytest.mark.parametrize("point", ["copy_start", "after_chunk"])
def test_run_key_collision_written_during_the_run(server: Dsn, parity_db: str, pconn: Conn,
                                                  point: str) -> None:
    """The ALTER makes the key case-insensitive; a write during the run adds 'K3' beside
    'k3' (before or after its chunk). The plain ALTER would fail (duplicate entry): the
    run stops with UniqueViolation (exit 10) naming the value, not with a checksum
    mismatch, and leaves nothing behind."""
    case = Case("collide", TO_CI, table=TEXT_KEY_CLEAN)
    make_tables(server, parity_db, pconn, case, ("t",))
    before = (table_names(pconn), show_create(pconn, "t"))
    writes = 0

    def collide() -> None:
        nonlocal writes
        writes += 1
        if writes == 1:
            with connect(server, parity_db) as conn, conn.cursor() as cur:
                cur.execute("INSERT INTO t (k, n) VALUES ('K3', 5)")

    Phases({point: collide})
    error = run_onlineddl(server, parity_db, TO_CI)
    faults.clear()
    assert isinstance(error, OnlineDDLError) and error.exit_code == 10, repr(error)
    assert "K3" in str(error) or "k3" in str(error), str(error)
    assert (table_names(pconn), show_create(pconn, "t")) == before


def test_percent_signs_in_names(server: Dsn, parity_db: str, pconn: Conn) -> None:
    """A table and columns whose names hold % (and %s): every statement onlineddl sends
    with parameters carries these names too (db.bind keeps quoted names as they are)."""
    create = ("CREATE TABLE {} (`id%s` INT NOT NULL PRIMARY KEY, `v%d` VARCHAR(8) NULL, "
              "`f%` FLOAT NULL)")
    with pconn.cursor() as cur:
        for name in ("t%s", "twin"):
            cur.execute(create.format(q(name)))
            cur.executemany(f"INSERT INTO {qp(name)} VALUES (%s, %s, %s)",
                            [(k, f"v{k}%", k / 3) for k in range(1, ROWS + 1)])
    alter = "MODIFY COLUMN `f%` VARCHAR(20) NULL, ADD COLUMN `n%s` INT NULL DEFAULT 7"
    assert native_alter(server, parity_db, "twin", alter) is None
    writes = Phases({"after_chunk": lambda: _update_percent_table(server, parity_db)})
    error = None
    try:
        migrate(MigrationConfig(dsn=server, database=parity_db, table="t%s", alter=alter,
                                repair=False, tuning=TUNING))
    except OnlineDDLError as err:
        error = err
    faults.clear()
    assert error is None, str(error)
    assert writes.counts["after_chunk"] >= 2
    with pconn.cursor() as cur:
        cur.execute("UPDATE twin SET `v%d` = CONCAT(`v%d`, '!') WHERE `id%s` <= 3")
    assert compare(pconn, "t%s", "twin") == []


def _update_percent_table(server: Dsn, db: str) -> None:
    with connect(server, db) as conn, conn.cursor() as cur:
        cur.execute("UPDATE `t%s` SET `v%d` = CONCAT(`v%d`, '!') WHERE `id%s` <= 3 "
                    "AND `v%d` NOT LIKE '%!'")


# (old type, values) x new types: values where the copy's INSERT ... SELECT and the
# server's ALTER once disagreed, and their neighbours. A wider matrix (about 2,400
# triples) found the cases conversion.py now handles or refuses.
PROBE_SOURCES = {
    "VARCHAR(30)": ("'2.5'", "' 12 '", "'1e2'", "'-0'", "'18446744073709551615'"),
    "VARBINARY(30)": ("'2.5'", "'8 '", "'9\\t'", "'2024-02-29 '", "'10:11:12\\n'"),
    "DOUBLE": ("2.5", "101112.5", "0.1", "20240229"),
    "DECIMAL(20,6)": ("2.5", "20240229.5"),
    "BIT(8)": ("b'101'",),
    "CHAR(12)": ("'2.5'", "'7 '"),
}
PROBE_TARGETS = ("INT", "BIGINT UNSIGNED", "DECIMAL(10,2)", "DOUBLE", "DATE", "DATETIME(3)",
                 "TIME",
                 "YEAR", "VARCHAR(10)", "TEXT", "ENUM('a','b','2.5')", "SET('a','b')")


def test_conversions_agree_with_alter(server: Dsn, parity_db: str, pconn: Conn) -> None:
    """For each (old type, value, new type): where onlineddl takes the conversion on
    (conversion.copy_expr does not refuse it), the copy's statement succeeds exactly
    where ALTER TABLE does, with the same value, and the checksum's two sides agree."""
    session = Session(server, name="probe", database=parity_db)
    problems: list[str] = []
    try:
        for (old_type, values), new_type in itertools.product(PROBE_SOURCES.items(),
                                                               PROBE_TARGETS):
            for value in values:
                problem = _probe(session, parity_db, old_type, value, new_type)
                if problem:
                    problems.append(f"{old_type} {value} -> {new_type}: {problem}")
    finally:
        session.close()
    assert not problems, "\n".join(problems)


def _probe(session: Session, db: str, old_type: str, value: str, new_type: str) -> str:
    for name in ("pa", "pb", "pc"):
        session.execute(f"DROP TABLE IF EXISTS {name}")
    session.execute(f"CREATE TABLE pa (id INT PRIMARY KEY, c {old_type} NULL)")
    session.execute(f"INSERT INTO pa VALUES (1, {value})")
    for name in ("pb", "pc"):
        session.execute(f"CREATE TABLE {name} LIKE pa")
    session.execute("INSERT INTO pb SELECT * FROM pa")
    session.execute("SET SESSION sql_mode = @@GLOBAL.sql_mode")
    native = _attempt(session, f"ALTER TABLE pb MODIFY c {new_type} NULL")
    if _attempt(session, f"ALTER TABLE pc MODIFY c {new_type} NULL"):
        return ""   # the server refuses the type itself
    old, new = (load_table(session, db, n).column("c") for n in ("pa", "pc"))
    try:
        expr = conversion.copy_expr(old, new, "`c`")
    except OnlineDDLError:
        return ""   # refused up front
    modes = str(session.scalar("SELECT @@GLOBAL.sql_mode"))
    session.execute("SET SESSION sql_mode = %s", (sql.session_sql_mode(modes),))
    ours = _attempt(session, f"INSERT INTO pc (id, c) SELECT id, {expr} FROM pa")
    if (native is None) != (ours is None):
        return f"ALTER {native or 'succeeds'}, the copy {ours or 'succeeds'}"
    if native is not None:
        return ""
    read = "SELECT HEX(CAST(c AS CHAR)) FROM {}"
    if session.scalar(read.format("pb")) != session.scalar(read.format("pc")):
        return "ALTER and the copy store different values"
    src, dst = conversion.checksum_pair(old, new)
    session.execute("SET SESSION time_zone = '+00:00'")
    try:
        hashed = [session.query_one(*sql.checksum_chunk(db, table, [expr], ["id"], None, None))
                  for table, expr in (("pa", src), ("pc", dst))]
    finally:
        session.execute("SET SESSION time_zone = @@GLOBAL.time_zone")
    return "" if hashed[0] == hashed[1] else "the checksum's two sides differ"


def _attempt(session: Session, text: str) -> str | None:
    try:
        session.execute(text)
    except OnlineDDLError as err:
        return err.message
    return None

"""Every column type round-trips through the initial copy, the binlog applier and the
checksum, with checksum repair OFF: a lost or mangled value fails the run or the test.

Each case creates `t` and `mirror` with the same schema (the NULL-able columns under test,
then `id INT` as the primary key) and the same seed rows at the type's edge values. At
`copy_start` and after every chunk, one transaction inserts, updates (to other edge
values, to NULL and back), moves keys and deletes rows of BOTH tables, some statements
touching two rows at once, so changes reach the shadow table through the binlog while
the copy runs. The key sits after the columns under test so that a binlog reader that
mis-sizes any of them reads a wrong key and loses a change. Unless the case is about
changing a column, the ALTER leaves the columns under test alone (`ADD COLUMN zz INT
NULL`). Afterwards the server applies the same ALTER to the mirror, so `t` must equal
`mirror` in schema and row for row: compared in Python, and on the server with `<=>`
column by column. Floats are compared exactly: the engine copies them server-side, never
through Python.

The last test adds a UNIQUE key over a collation change that makes two values equal
('abc' and 'ABC'): the run must stop with a DataError before cutover, leave `t` exactly
as it was and remove everything it created.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeAlias

import pymysql.connections
import pymysql.err
import pytest
from helpers import Cursor, connect, kept_tables, scalar, tables
from workload import commit_replaying, q

from onlineddl import faults
from onlineddl.config import Dsn, MigrationConfig, Tuning
from onlineddl.errors import DataError
from onlineddl.migration import migrate

Conn: TypeAlias = pymysql.connections.Connection
Row = tuple[Any, ...]

# Strict (nothing the writers send is silently truncated, so every edge value is really
# stored) but without NO_ZERO_DATE / NO_ZERO_IN_DATE, so zero dates are accepted.
WRITER_SQL_MODE = "STRICT_ALL_TABLES"

# Several chunks for a few dozen rows.
TUNING = Tuning(chunk_rows_initial=8, chunk_rows_min=4, chunk_rows_max=12,
                progress_interval=1.0, checkpoint_interval=0.3)

ADD_ZZ = "ADD COLUMN zz INT NULL"
UTF8 = "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"



@dataclass(frozen=True)
class Col:
    """A base column: the writers set it, cycling through its edge values."""

    name: str
    ddl: str                   # type and attributes
    values: tuple[Any, ...]    # edge values; None writes NULL
    param: str = "%s"          # how a value reaches SQL, e.g. ST_GeomFromText(%s)
    read: str = "{c}"          # how the Python comparison reads it


@dataclass(frozen=True)
class Gen:
    """A generated column: never written; after the run it must equal `expr`."""

    name: str
    ddl: str
    expr: str


@dataclass(frozen=True)
class TypeCase:
    id: str
    cols: tuple[Col, ...]
    alter: str = ADD_ZZ
    gens: tuple[Gen, ...] = ()
    keys: str = ""                     # index definitions inside CREATE TABLE (...)
    options: str = UTF8
    seed: int = 40                     # seed rows: ids 10, 20, ..., 10 * seed
    zero: tuple[str, ...] = ()         # extra queries that must return 0 afterwards

    def ddl(self, table: str) -> str:
        # The key comes LAST: a binlog reader that decodes only the key must step over
        # every column under test to reach it (and to reach the next row image).
        parts = [*(f"{q(c.name)} {c.ddl}" for c in self.cols),
                 *(f"{q(g.name)} {g.ddl}" for g in self.gens),
                 "id INT NOT NULL", "PRIMARY KEY (id)"]
        if self.keys:
            parts.append(self.keys)
        return f"CREATE TABLE {q(table)} ({', '.join(parts)}) {self.options}"

    def values(self, version: int) -> Row:
        return tuple(c.values[version % len(c.values)] for c in self.cols)


# --- edge values ----------------------------------------------------------------------------

def int_cols(name: str, bits: int) -> tuple[Col, Col]:
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return (Col(name, f"{name.upper()} NULL", (lo, hi, 0, -1, 1, None)),
            Col(f"{name}_u", f"{name.upper()} UNSIGNED NULL", (0, (1 << bits) - 1, 1, None,
                                                                 1 << (bits - 1))))


INTEGERS = (*int_cols("tinyint", 8), *int_cols("smallint", 16), *int_cols("mediumint", 24),
            *int_cols("int", 32), *int_cols("bigint", 64))

D65 = "9" * 35 + "." + "9" * 30
DECIMALS = (
    Col("d65", "DECIMAL(65,30) NULL",
        (Decimal(D65), Decimal("-" + D65), Decimal("0." + "0" * 29 + "1"),
         Decimal("-0." + "0" * 29 + "1"), Decimal(0),
         Decimal("12345678901234567890123456789012345.123456789012345678901234567890"),
         None)),
    Col("d10", "DECIMAL(10,2) NULL",
        (Decimal("99999999.99"), Decimal("-99999999.99"), Decimal("0.01"), Decimal("-0.01"),
         Decimal("0.00"), None, Decimal("-1.50"))),
)

# -0.0 is written too: MariaDB 10.11 stores it as 0; the comparison (by bits) would show
# a server that keeps the sign and an engine that loses it.
FLOATS = (
    # Read widened to DOUBLE: FLOAT's text form has only 6 significant digits.
    Col("f", "FLOAT NULL",
        (3.4028234663852886e38, -3.4028234663852886e38, 1.1754943508222875e-38,
         1.401298464324817e-45, -0.0, 0.1, 16777217.0, -2.5e-10, None),
        read="CAST({c} AS DOUBLE)"),
    Col("d", "DOUBLE NULL",
        (1.7976931348623157e308, -1.7976931348623157e308, 2.2250738585072014e-308, 5e-324,
         -5e-324, -0.0, 0.1, float(2**53 + 1), 1e-300, -123456789.125, None)),
)

BITS = (
    Col("b1", "BIT(1) NULL", (0, 1, None)),
    Col("b64", "BIT(64) NULL", (0, 2**64 - 1, 2**63, 1, 2**63 + 1, 0x00FF00FF00FF00FF, None)),
)

TEMPORAL = (
    Col("dt", "DATE NULL", ("1000-01-01", "9999-12-31", "2024-02-29", "1970-01-01", None)),
    Col("tm", "TIME(6) NULL",
        ("-838:59:59.999999", "838:59:59.999999", "-00:00:00.000001", "25:00:00.500000",
         "00:00:00", "-123:45:06.789012", None)),
    Col("dtm", "DATETIME(6) NULL",
        ("1000-01-01 00:00:00.000000", "9999-12-31 23:59:59.999999",
         "2024-02-29 12:34:56.123456", "1970-01-01 00:00:00.000001", None)),
    Col("ts", "TIMESTAMP(6) NULL DEFAULT NULL",
        ("1970-01-01 00:00:01.000000", "2038-01-19 03:14:07.999999",
         "2000-01-01 00:00:00.500000", "2024-02-29 23:59:59.000001", None)),
    Col("yr", "YEAR NULL", (1901, 2155, 2000, 0, None)),
)

ZERO_DATES = (
    Col("zd", "DATE NULL", ("0000-00-00", "2024-00-00", "2024-02-00", "1999-12-31", None)),
    Col("zdt", "DATETIME NULL",
        ("0000-00-00 00:00:00", "2024-00-00 00:00:00", "2000-01-01 00:00:00", None)),
    Col("zdt6", "DATETIME(6) NULL",
        ("0000-00-00 00:00:00.000000", "0000-00-00 00:00:00.000001",
         "2000-01-01 00:00:00.999999", None)),
    Col("zts", "TIMESTAMP(6) NULL DEFAULT NULL",
        ("0000-00-00 00:00:00.000000", "2001-02-03 04:05:06.070809", None)),
)

TEXTS = ("\U0001F600\U0001F680", "\U0001D11E music", "trailing   ", "", " ",
         "tab\tnew\nline", "quote ' \" \\ %", "\u6f22\u5b57\u30c6\u30b9\u30c8",
         "e\u0301 vs \u00e9", "\x00nul inside", "\U0001F468\u200d\U0001F469\u200d\U0001F467",
         None)
UTF8MB4 = (
    Col("vc", "VARCHAR(64) CHARACTER SET utf8mb4 NULL", TEXTS),
    Col("ch", "CHAR(16) CHARACTER SET utf8mb4 NULL", (*TEXTS, "\U0001F600" * 16)),
    Col("tx", "TEXT CHARACTER SET utf8mb4 NULL", (*TEXTS, "\U0001F600x" * 5000)),
    Col("mt", "MEDIUMTEXT CHARACTER SET utf8mb4 NULL", (*TEXTS, "x\U0001F600" * 30000)),
)

LATIN1_TEXTS = ("caf\u00e9", "\u00c0\u00c9\u00ce\u00d5\u00dc", "\u00df\u00f8\u00e5",
                "\u00a3\u00a5\u00a7\u00a9\u00ae\u00b0\u00b1\u00b5\u00b6\u00b7", "\u00ff",
                "trailing  ", "", "\u00bfQu\u00e9?", None)
LATIN1 = (
    Col("lv", "VARCHAR(32) CHARACTER SET latin1 NULL", LATIN1_TEXTS),
    Col("lc", "CHAR(10) CHARACTER SET latin1 NULL", LATIN1_TEXTS),
    Col("lt", "TEXT CHARACTER SET latin1 NULL", LATIN1_TEXTS),
    Col("lb", "VARCHAR(32) CHARACTER SET latin1 COLLATE latin1_bin NULL", LATIN1_TEXTS),
)

BIN_TEXTS = ("abc", "ABC", "Abc", "abc ", "\u00e9", "\u00c9", "\U0001F600", "", None)
BIN_COLLATION = (
    Col("bv", "VARCHAR(32) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL", BIN_TEXTS),
    Col("bc", "CHAR(8) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL", BIN_TEXTS),
    Col("bt", "TEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL", BIN_TEXTS),
)

_rnd = random.Random(7)
BYTES = (b"\x00", b"\xff", b"\x00" * 16, b"ab\x00\x00", bytes(range(16)), b"",
         b"\xff\xfe\x00\x01", b"\x80\x81\xc0\xc1\xf5", b"tail\x00", _rnd.randbytes(16), None)
BINARY = (
    Col("bn", "BINARY(16) NULL", BYTES),
    Col("vb", "VARBINARY(64) NULL", (*BYTES, bytes(range(64)))),
    Col("bl", "BLOB NULL", (*BYTES, bytes(range(256)) * 100)),
    Col("lbl", "LONGBLOB NULL", (*BYTES, _rnd.randbytes(300_000))),
)

ENUM_SET = (
    Col("e", "ENUM('a','b','c d','\u00e9','\U0001F600') CHARACTER SET utf8mb4 NULL",
        ("a", "c d", "\u00e9", "\U0001F600", "b", None)),
    Col("s", "SET('x','y','z','w') NULL", ("", "x", "x,y", "x,y,z,w", "w,x", None)),
)

JSONS = (
    Col("j", "JSON NULL",
        ('{"a": {"b": [1, 2.5, -3e10, null, true, false]}, "u": "\u00e9\U0001F600"}',
         "[]", "{}", '"str"', "12345678901234567890", "-0.0", "null",
         '{"deep": [[[[{"x": [1, {"y": "\\u00e9"}]}]]]]}',
         '{"big": 1.7976931348623157e308, "tiny": 5e-324}', None)),
)

GENERATED_BASE = (
    Col("a", "INT NULL", (-2147483648, 2147483647, 0, 7, None)),
    Col("s", "VARCHAR(32) CHARACTER SET utf8mb4 NULL", ("x", "\U0001F600", "", "abc ", None)),
)
GENERATED = (
    Gen("gv", "BIGINT AS (a * 2) VIRTUAL", "a * 2"),
    Gen("gs", "VARCHAR(40) CHARACTER SET utf8mb4 AS (CONCAT(s, '!')) STORED",
        "CONCAT(s, '!')"),
    Gen("gi", "INT AS (a DIV 3) VIRTUAL", "a DIV 3"),
)

GEO = "ST_GeomFromText(%s)"
SPATIAL = (
    Col("p", "POINT NULL", ("POINT(1.5 -2.25)", "POINT(0 0)", "POINT(-180 90)",
                            "POINT(1e300 -1e-300)", None), param=GEO),
    Col("g", "GEOMETRY NULL",
        ("POLYGON((0 0,10 0,10 10,0 10,0 0))", "LINESTRING(0 0,1 1,2 3.5)",
         "MULTIPOINT(1 1,2 2)", "GEOMETRYCOLLECTION(POINT(1 1),LINESTRING(0 0,1 1))",
         "POINT(-0.5 0.25)", None), param=GEO),
)

WIDE_VALUES = ("x" * 255, "\U0001F600" * 255, "\u00e9a" * 127, "", None, "z" * 200 + " " * 55)
WIDE = tuple(Col(f"w{i:02d}", "VARCHAR(255) CHARACTER SET utf8mb4 NULL",
                 WIDE_VALUES[i % 3:] + WIDE_VALUES[:i % 3]) for i in range(40))

MANY = tuple(Col(f"c{i:03d}", "INT NULL", (i, -2147483648, 2147483647, None, -i, 0))
             for i in range(200))

# --- ALTERs that change the columns under test ---------------------------------------------

INT_TO_VARCHAR = (
    Col("i", "INT NULL", (-2147483648, 2147483647, 0, -1, None)),
    Col("b", "BIGINT NULL", (-(2**63), 2**63 - 1, 0, None)),
    Col("u", "BIGINT UNSIGNED NULL", (2**64 - 1, 0, 1, None)),
)
VARCHAR_TO_TEXT = (Col("c", "VARCHAR(255) CHARACTER SET utf8mb4 NULL",
                       (*TEXTS, "\U0001F600" * 255)),)
DATETIME_TO_FSP = (
    Col("c", "DATETIME NULL", ("1000-01-01 00:00:00", "9999-12-31 23:59:59",
                               "2024-02-29 12:00:01", "0000-00-00 00:00:00", None)),
    Col("t", "TIME NULL", ("-838:59:59", "838:59:59", "00:00:00", "-00:00:01", None)),
)
FITS_LATIN1 = tuple(
    Col(c.name, c.ddl.replace("latin1 COLLATE latin1_bin", "utf8mb4 COLLATE utf8mb4_bin")
        .replace("latin1", "utf8mb4"), c.values) for c in LATIN1)
TO_LATIN1 = ("MODIFY COLUMN lv VARCHAR(32) CHARACTER SET latin1 NULL, "
             "MODIFY COLUMN lc CHAR(10) CHARACTER SET latin1 NULL, "
             "MODIFY COLUMN lt TEXT CHARACTER SET latin1 NULL, "
             "MODIFY COLUMN lb VARCHAR(32) CHARACTER SET latin1 COLLATE latin1_bin NULL")
MIXED_CHARSETS = (
    Col("la", "VARCHAR(32) NULL", LATIN1_TEXTS),             # the table default: latin1
    Col("lt", "TEXT NULL", LATIN1_TEXTS),                    # becomes MEDIUMTEXT
    Col("ut", "TEXT CHARACTER SET utf8mb4 NULL", TEXTS),
    Col("ub", "CHAR(8) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL", BIN_TEXTS),
    # ASCII members only: MariaDB 10.11's own CONVERT TO mangles non-ASCII ENUM members of
    # a latin1 column (a plain ALTER TABLE fails with error 1291 or 1265).
    Col("le", "ENUM('a','b','c d') NULL", ("a", "c d", "b", None)),
)
PARTITIONED = (Col("a", "INT NULL", (1, -1, 2147483647, None)),
               Col("s", "VARCHAR(32) CHARACTER SET utf8mb4 NULL", TEXTS))


CASES = [
    TypeCase("integers_signed_unsigned", INTEGERS),
    TypeCase("decimal", DECIMALS),
    TypeCase("float_double", FLOATS),
    TypeCase("bit", BITS),
    TypeCase("date_time_datetime_timestamp_year", TEMPORAL),
    TypeCase("zero_dates", ZERO_DATES),
    TypeCase("utf8mb4_text", UTF8MB4),
    TypeCase("latin1_text", LATIN1),
    TypeCase("utf8mb4_bin_collation", BIN_COLLATION),
    TypeCase("binary_blob", BINARY),
    TypeCase("enum_set", ENUM_SET),
    TypeCase("json", JSONS),
    TypeCase("generated_columns", GENERATED_BASE, gens=GENERATED, keys="INDEX gi_idx (gi)"),
    TypeCase("spatial", SPATIAL),
    TypeCase("wide_row_40_varchar255", WIDE, seed=24),
    TypeCase("many_columns_200_int", MANY, seed=24),
    TypeCase("alter_int_to_varchar", INT_TO_VARCHAR,
             alter="MODIFY COLUMN i VARCHAR(20) NULL, MODIFY COLUMN b VARCHAR(20) NULL, "
                   "MODIFY COLUMN u VARCHAR(20) NULL"),
    TypeCase("alter_varchar_to_text", VARCHAR_TO_TEXT, alter="MODIFY COLUMN c TEXT NULL"),
    TypeCase("alter_datetime_to_datetime6", DATETIME_TO_FSP,
             alter="MODIFY COLUMN c DATETIME(6) NULL, MODIFY COLUMN t TIME(6) NULL"),
    TypeCase("alter_utf8mb4_to_latin1", FITS_LATIN1, alter=TO_LATIN1),
    TypeCase("alter_convert_table_charset", MIXED_CHARSETS,
             alter="CONVERT TO CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci",
             options="ENGINE=InnoDB DEFAULT CHARSET=latin1"),
    TypeCase("alter_partitioned_table", PARTITIONED,
             options=f"{UTF8} PARTITION BY HASH(id) PARTITIONS 4",
             zero=("SELECT 4 - COUNT(*) FROM information_schema.PARTITIONS "
                   "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 't' "
                   "AND PARTITION_NAME IS NOT NULL",)),
]


# --- the writer ------------------------------------------------------------------------------


def writer_connection(server: Dsn, db: str) -> Conn:
    conn = connect(server, db, autocommit=False)
    with conn.cursor() as cur:
        cur.execute("SET SESSION sql_mode = %s", (WRITER_SQL_MODE,))
        cur.execute("SET SESSION time_zone = '+00:00'")  # TIMESTAMP edges are UTC
    conn.commit()
    return conn


class Writer:
    """Each call commits ONE transaction that changes `t` and `mirror` identically: inserts
    between existing keys and above them, updates near both ends of the key space (to
    other edge values, to NULL, back from NULL, and to NULL and back in one transaction),
    primary key moves up and down, deletes, and re-inserts of keys deleted earlier. Some
    statements change two rows, so one binlog event carries several row images."""

    def __init__(self, conn: Conn, case: TypeCase) -> None:
        self.conn, self.case = conn, case
        self.rng = random.Random(case.id)
        self.present = {10 * k for k in range(1, case.seed + 1)}
        self.gaps = [10 * k + 5 for k in range(1, case.seed)]
        self.rng.shuffle(self.gaps)
        self.top = 10 * case.seed
        self.version = case.seed          # the seed used versions 0 .. seed-1
        self.nulled: list[int] = []
        self.deleted: list[int] = []
        self.calls: dict[str, int] = {}
        self.plan: list[tuple[str, Sequence[Any]]] = []

    def at(self, point: str) -> Callable[[], None]:
        def callback() -> None:
            self.calls[point] = self.calls.get(point, 0) + 1
            self.transaction()
        return callback

    def transaction(self) -> None:
        self.plan = []
        self.round()
        commit_replaying(self.conn, self.plan)

    def round(self) -> None:
        self.insert(self.fresh_gap(), self.fresh_top())     # one INSERT, two rows
        self.update(self.pick("low"))
        self.update(self.pick("high"))
        if self.nulled:
            self.update(self.nulled[0])                     # back from NULL, later trx
        self.set_null(self.pick("any"))
        both_ways = self.pick("any")
        self.set_null(both_ways)
        self.update(both_ways)                              # to NULL and back, same trx
        self.update(self.pick("low"), self.pick("high"))    # one UPDATE, two rows
        self.move(self.pick("low"), self.fresh_top())       # a key moves above the copier
        self.move(self.pick("high"), self.fresh_gap())      # a key moves down
        if self.deleted:
            self.insert(self.deleted[0])                    # re-insert an earlier delete
        self.delete(self.pick("high"), self.pick("low"))    # one DELETE, two rows

    def pick(self, where: str) -> int:
        ordered = sorted(self.present)
        tenth = max(1, len(ordered) // 10)
        pool = {"low": ordered[:tenth], "high": ordered[-tenth:], "any": ordered}[where]
        return self.rng.choice(pool)

    def fresh_top(self) -> int:
        self.top += 10
        return self.top

    def fresh_gap(self) -> int:
        return self.gaps.pop() if self.gaps else self.fresh_top()

    def next_values(self) -> Row:
        self.version += 1
        return self.case.values(self.version)

    def both(self, template: str, params: Sequence[Any]) -> None:
        for table in ("t", "mirror"):
            self.plan.append((template.format(t=q(table)), params))

    def insert(self, *keys: int) -> None:
        self.both(insert_sql(self.case, len(keys)),
                  [v for key in keys for v in (key, *self.next_values())])
        for key in keys:
            self.present.add(key)
            self._forget(key, self.deleted)
            self._forget(key, self.nulled)

    def update(self, *keys: int) -> None:
        sets = ", ".join(f"{q(c.name)} = {c.param}" for c in self.case.cols)
        self.both(f"UPDATE {{t}} SET {sets} WHERE id IN ({marks(len(keys))})",
                  [*self.next_values(), *keys])
        for key in keys:
            self._forget(key, self.nulled)

    def set_null(self, key: int) -> None:
        sets = ", ".join(f"{q(c.name)} = NULL" for c in self.case.cols)
        self.both(f"UPDATE {{t}} SET {sets} WHERE id = %s", [key])
        if key not in self.nulled:
            self.nulled.append(key)

    def move(self, key: int, to: int) -> None:
        self.both("UPDATE {t} SET id = %s WHERE id = %s", [to, key])
        self.present.discard(key)
        self.present.add(to)
        if key in self.nulled:
            self.nulled[self.nulled.index(key)] = to
        self.deleted.append(key)           # free again: a later call may re-insert it

    def delete(self, *keys: int) -> None:
        self.both(f"DELETE FROM {{t}} WHERE id IN ({marks(len(keys))})", keys)
        for key in set(keys):
            self.present.discard(key)
            self.deleted.append(key)
            self._forget(key, self.nulled)

    @staticmethod
    def _forget(key: int, keys: list[int]) -> None:
        if key in keys:
            keys.remove(key)


def marks(n: int) -> str:
    return ", ".join(["%s"] * n)


def insert_sql(case: TypeCase, rows: int = 1) -> str:
    cols = ", ".join(["id", *(q(c.name) for c in case.cols)])
    row = "(" + ", ".join(["%s", *(c.param for c in case.cols)]) + ")"
    return f"INSERT INTO {{t}} ({cols}) VALUES {', '.join([row] * rows)}"


def seed(conn: Conn, case: TypeCase) -> None:
    with conn.cursor() as cur:
        for table in ("t", "mirror"):
            cur.execute(case.ddl(table))
            for k in range(case.seed):
                cur.execute(insert_sql(case).format(t=q(table)),
                            [10 * (k + 1), *case.values(k)])
    conn.commit()


# --- checks ---------------------------------------------------------------------------------


def columns_of(conn: Conn, table: str) -> list[str]:
    """The table's columns, `id` first (rows are compared by it)."""
    with conn.cursor() as cur:
        cur.execute("SELECT COLUMN_NAME FROM information_schema.COLUMNS "
                    "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s "
                    "ORDER BY ORDINAL_POSITION", (table,))
        names = [r[0] for r in cur.fetchall()]
    return ["id", *(n for n in names if n != "id")]


def exact(value: Any) -> Any:
    """Floats by their bits (keeps -0.0 apart from 0.0); everything else as is."""
    return float.hex(value) if isinstance(value, float) else value


def read_rows(conn: Conn, table: str, columns: Sequence[str],
              cols: Sequence[Col] = ()) -> list[Row]:
    reads = {c.name: c.read for c in cols}
    exprs = [reads.get(c, "{c}").format(c=q(c)) for c in columns]
    with conn.cursor() as cur:
        cur.execute(f"SELECT {', '.join(exprs)} FROM {q(table)} ORDER BY id")
        return [tuple(exact(v) for v in row) for row in cur.fetchall()]


def assert_same_rows(got: list[Row], want: list[Row], what: str,
                     columns: Sequence[str]) -> None:
    if got == want:
        return
    got_by, want_by = {r[0]: r for r in got}, {r[0]: r for r in want}
    missing = sorted(set(want_by) - set(got_by))[:5]
    extra = sorted(set(got_by) - set(want_by))[:5]
    differing = []
    for key in sorted(set(got_by) & set(want_by)):
        cols = [(c, g, w) for c, g, w in zip(columns, got_by[key], want_by[key], strict=True)
                if g != w]
        if cols:
            differing.append((key, [(c, short(g), short(w)) for c, g, w in cols[:3]]))
    raise AssertionError(f"{what}: {len(got)} rows vs {len(want)} in the mirror; missing "
                         f"ids {missing}; extra ids {extra}; differing (id, [(column, got, "
                         f"want)]) {differing[:3]}")


def short(value: Any) -> Any:
    return value[:40] if isinstance(value, (str, bytes)) and len(value) > 40 else value


def server_differences(conn: Conn, columns: Sequence[str]) -> dict[str, int]:
    """Per column, the rows where t and mirror differ, as the server compares them."""
    found = {}
    with conn.cursor() as cur:
        for col in columns:
            cur.execute(f"SELECT COUNT(*) FROM t JOIN mirror USING (id) "
                        f"WHERE NOT (t.{q(col)} <=> mirror.{q(col)})")
            count = cur.fetchone()[0]
            if count:
                found[col] = count
    return found


def create_table_text(conn: Conn, table: str) -> str:
    with conn.cursor() as cur:
        cur.execute(f"SHOW CREATE TABLE {q(table)}")
        text: str = cur.fetchone()[1]
    return text.replace(f"CREATE TABLE {q(table)}", "CREATE TABLE <T>", 1)




@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_type_round_trip(server: Dsn, db: str, case: TypeCase) -> None:
    conn = writer_connection(server, db)
    try:
        seed(conn, case)
        writer = Writer(conn, case)
        faults.register("copy_start", writer.at("copy_start"))
        faults.register("after_chunk", writer.at("after_chunk"))
        old = migrate(MigrationConfig(dsn=server, database=db, table="t", alter=case.alter,
                                      repair=False, tuning=TUNING)).old_table
        faults.clear()

        assert writer.calls.get("copy_start") == 1
        assert writer.calls.get("after_chunk", 0) >= 2, writer.calls
        assert kept_tables(conn) == {"t", "mirror", "_t_old_*"}
        # Every write committed before the cutover: the original holds them all too.
        before = columns_of(conn, "mirror")
        assert_same_rows(read_rows(conn, old, before, case.cols),
                         read_rows(conn, "mirror", before, case.cols), old, before)

        # The server's own ALTER of the mirror is the reference for schema and values.
        with conn.cursor() as cur:
            cur.execute(f"ALTER TABLE mirror {case.alter}")
        conn.commit()
        assert create_table_text(conn, "t") == create_table_text(conn, "mirror")
        columns = columns_of(conn, "t")
        assert columns == columns_of(conn, "mirror")
        want = read_rows(conn, "mirror", columns, case.cols)
        assert len(want) >= case.seed
        got = read_rows(conn, "t", columns, case.cols)
        assert_same_rows(got, want, "t after the migration", columns)
        assert server_differences(conn, columns) == {}
        assert scalar(conn, "SELECT COUNT(*) FROM t JOIN mirror USING (id)") == len(want)
        for gen in case.gens:
            assert scalar(conn, f"SELECT COUNT(*) FROM t WHERE NOT ({q(gen.name)} <=> "
                                f"{gen.expr})") == 0, gen
        for query in case.zero:
            assert scalar(conn, query) == 0, query
    finally:
        conn.close()


# --- a UNIQUE key over values a collation change makes equal ---------------------------------

COLLAPSE_DDL = ("CREATE TABLE {t} (id INT NOT NULL PRIMARY KEY, "
                "c VARCHAR(20) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL, v INT NULL) "
                "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4")
COLLAPSE_ALTER = ("MODIFY COLUMN c VARCHAR(20) CHARACTER SET utf8mb4 COLLATE "
                  "utf8mb4_general_ci NULL, ADD UNIQUE KEY uq_c (c)")


def both(cur: Cursor, template: str, params: Sequence[Any]) -> None:
    for table in ("t", "mirror"):
        cur.execute(template.format(t=q(table)), params)


@pytest.mark.parametrize("where", ["in_seed", "via_binlog"])
def test_unique_key_over_collapsing_collation(server: Dsn, db: str, where: str) -> None:
    """'abc' and 'ABC' are distinct under utf8mb4_bin and equal under utf8mb4_general_ci.
    in_seed: both are there before the run (the copier meets them, in different chunks).
    via_binlog: a write during the copy turns an already-copied row into 'ABC' (the
    applier meets it). Either way the new UNIQUE key cannot hold the data."""
    conn = writer_connection(server, db)
    try:
        with conn.cursor() as cur:
            for table in ("t", "mirror"):
                cur.execute(COLLAPSE_DDL.format(t=q(table)))
            for k in range(1, 41):
                both(cur, "INSERT INTO {t} (id, c, v) VALUES (%s, %s, %s)",
                     [10 * k, f"val{k}", k])
            both(cur, "UPDATE {t} SET c = 'abc' WHERE id = 10", [])
            if where == "in_seed":
                both(cur, "UPDATE {t} SET c = 'ABC' WHERE id = 350", [])
        conn.commit()
        original = create_table_text(conn, "t")
        calls = {"n": 0}

        def at_chunk() -> None:
            calls["n"] += 1
            with conn.cursor() as cur:
                both(cur, "UPDATE {t} SET v = v + 1 WHERE id = %s", [10 * calls["n"]])
                if where == "via_binlog" and calls["n"] == 1:
                    both(cur, "UPDATE {t} SET c = 'ABC' WHERE id = 20", [])
            conn.commit()

        faults.register("after_chunk", at_chunk)
        with pytest.raises(DataError):
            migrate(MigrationConfig(dsn=server, database=db, table="t", alter=COLLAPSE_ALTER,
                                    repair=False, tuning=TUNING))
        faults.clear()

        assert tables(conn) == {"t", "mirror"}, "the run left artifacts behind"
        assert create_table_text(conn, "t") == original
        columns = ["id", "c", "v"]
        assert_same_rows(read_rows(conn, "t", columns), read_rows(conn, "mirror", columns),
                         "t after the failed run", columns)
    finally:
        conn.close()

"""The table the parity suite (tests/integration/test_parity.py) alters, and how it reads
tables back for a byte-for-byte comparison.

One table rich in types: every type the README lists, signed and unsigned integers at
their limits, utf8mb4 text with 4-byte characters, trailing spaces and empty strings,
latin1 text, binary collations, bytes, ENUM, SET, JSON, a stored and a virtual generated
column, NULL in every nullable column (except `nonull`, which exists for "NULL -> NOT
NULL where no NULL is present"), and a deleted tail: 60 rows are inserted and the last 10
deleted, so AUTO_INCREMENT (61) is above max(id) + 1 (51).

Row k (1..60) takes, for the column at position n, `values[(k + n) % len(values)]`: every
value of every list appears in the 50 rows kept. Seeding is plain INSERTs (no MariaDB-only
sequence tables), so the same code runs against MySQL 8.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from workload import q

ROWS = 60
KEPT = 50          # rows 51..60 are deleted: AUTO_INCREMENT stays at 61
# The seed session: strict, and in UTC so the TIMESTAMP edges below are in range.
SEED_SQL_MODE = "STRICT_ALL_TABLES"


@dataclass(frozen=True)
class Col:
    name: str
    ddl: str
    values: tuple[Any, ...]   # None writes NULL


def _ints(name: str, ddl: str, lo: int, hi: int) -> Col:
    return Col(name, f"{ddl} NULL", (lo, hi, 0, None, -1 if lo < 0 else 1))


TEXTS = ("\U0001F600\U0001F680", "\U0001D11E music", "trailing   ", "", " ",
         "tab\tnew\nline", "quote ' \" \\ %", "\u6f22\u5b57\u30c6\u30b9\u30c8", None)
LATIN1_TEXTS = ("caf\u00e9", "\u00c0\u00c9\u00ce\u00d5\u00dc", "\u00df\u00f8\u00e5",
                "\u00a3\u00a5\u00a7\u00a9", "\u00ff", "trailing  ", "", None)
BIN_TEXTS = ("abc", "ABC", "Abc", "abc ", "\u00e9", "\u00c9", "\U0001F600", "", None)
D20 = "99999999999999.999999"

COLUMNS: tuple[Col, ...] = (
    _ints("ti", "TINYINT", -128, 127),
    _ints("tu", "TINYINT UNSIGNED", 0, 255),
    _ints("si", "SMALLINT", -32768, 32767),
    _ints("su", "SMALLINT UNSIGNED", 0, 65535),
    _ints("mi", "MEDIUMINT", -8388608, 8388607),
    _ints("mu", "MEDIUMINT UNSIGNED", 0, 16777215),
    Col("i", "INT NULL", (-2147483648, 2147483647, 0, -1, 7, None)),
    _ints("iu", "INT UNSIGNED", 0, 4294967295),
    _ints("bi", "BIGINT", -(2**63), 2**63 - 1),
    Col("bu", "BIGINT UNSIGNED NULL", (0, 2**64 - 1, 2**63, None, 1)),
    # BIGINT values that fit an INT.
    Col("bs", "BIGINT NULL", (-2147483648, 2147483647, 0, 12345, None)),
    Col("nonull", "INT NULL", (1, 2, 3, -4)),
    Col("dc", "DECIMAL(20,6) NULL",
        (Decimal(D20), Decimal("-" + D20), Decimal("0.000001"), Decimal("-0.000001"),
         Decimal("0.000000"), Decimal("12345.678951"), Decimal("-1.500000"), None)),
    Col("f", "FLOAT NULL",
        (3.4028234663852886e38, -3.4028234663852886e38, 1.1754943508222875e-38,
         1.401298464324817e-45, 0.1, 16777217.0, -2.5e-10, 1.5, None)),
    # Within FLOAT's range, so DOUBLE -> FLOAT succeeds (with rounding).
    Col("d", "DOUBLE NULL",
        (0.1, 1 / 3, -123456789.125, 1e-10, 3.141592653589793, float(2**53 + 1), 1e30,
         -0.0, None)),
    Col("dx", "DOUBLE NULL",
        (1.7976931348623157e308, -1.7976931348623157e308, 2.2250738585072014e-308, 5e-324,
         None)),
    Col("b1", "BIT(1) NULL", (0, 1, None)),
    Col("b8", "BIT(8) NULL", (0, 255, 128, 1, None)),
    Col("b64", "BIT(64) NULL", (0, 2**64 - 1, 2**63, 1, None)),
    Col("dt", "DATE NULL", ("1000-01-01", "9999-12-31", "2024-02-29", "1970-01-01", None)),
    Col("tm", "TIME(6) NULL",
        # MySQL's TIME range ends at 838:59:59.000000 (MariaDB's at .999999).
        ("-838:59:59.000000", "838:59:59.000000", "-00:00:00.000001", "25:00:00.500000",
         "00:00:00", "-123:45:06.789012", None)),
    Col("dtm", "DATETIME(6) NULL",
        ("1000-01-01 00:00:00.000000", "9999-12-31 23:59:59.999999",
         "2024-02-29 12:34:56.123456", "1970-01-01 00:00:00.000001", None)),
    # In TIMESTAMP's range in any zone: DATETIME -> TIMESTAMP succeeds.
    Col("created", "DATETIME NOT NULL",
        ("2000-01-01 00:00:00", "2024-02-29 23:59:59", "2030-06-15 12:00:00",
         "1999-12-31 18:30:00")),
    Col("ts", "TIMESTAMP(6) NULL DEFAULT NULL",
        ("1970-01-01 00:00:01.000000", "2038-01-19 03:14:07.999999",
         "2000-01-01 00:00:00.500000", "2024-02-29 23:59:59.000001", None)),
    Col("yr", "YEAR NULL", (1901, 2155, 2000, None)),
    Col("vc", "VARCHAR(64) CHARACTER SET utf8mb4 NULL", TEXTS),
    Col("ch", "CHAR(16) CHARACTER SET utf8mb4 NULL",
        ("\U0001F600" * 16, "abc", "", "\u00e9", " lead", None)),
    # Fits VARCHAR(400), not VARCHAR(50); VARCHAR(300) only by cutting trailing spaces
    # (which the server does with a note, not an error).
    Col("tx", "TEXT CHARACTER SET utf8mb4 NULL",
        ("\U0001F600x" * 150, "short", "", "trail  ", "\u00e9" * 100 + " " * 250, None)),
    # utf8mb4 text that fits latin1.
    Col("lat", "VARCHAR(32) CHARACTER SET utf8mb4 NULL", LATIN1_TEXTS),
    Col("lt", "TEXT CHARACTER SET latin1 NULL", LATIN1_TEXTS),
    Col("bv", "VARCHAR(32) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL", BIN_TEXTS),
    # Integers as text: VARCHAR -> INT succeeds.
    # The base of the stored generated column; no ALTER of the corpus changes it.
    Col("tag", "VARCHAR(24) CHARACTER SET utf8mb4 NULL", TEXTS),
    Col("ns", "VARCHAR(20) CHARACTER SET utf8mb4 NULL",
        ("-2147483648", "2147483647", "0", "42", None)),
    Col("bn", "BINARY(8) NULL", (b"\x00", b"\xff" * 8, b"ab\x00\x00", b"", None)),
    Col("vb", "VARBINARY(32) NULL",
        (b"\x00", b"\xff\xfe\x00\x01", b"", b"tail\x00", bytes(range(32)), None)),
    Col("bl", "BLOB NULL", (bytes(range(256)), b"", b"\x00\x00", None)),
    Col("e", "ENUM('a','b','c d','\u00e9') CHARACTER SET utf8mb4 NULL",
        ("a", "c d", "\u00e9", "b", None)),
    # A 4-byte member: an ALTER naming it is not latin1 text.
    Col("e4", "ENUM('a','\U0001F600') CHARACTER SET utf8mb4 NULL", ("\U0001F600", "a", None)),
    Col("s", "SET('x','y','z','w') NULL", ("", "x", "x,y", "x,y,z,w", "x,w", None)),
    Col("j", "JSON NULL",
        ('{"a": [1, 2.5, null, true], "u": "\u00e9\U0001F600"}', "[]", '"str"',
         "12345678901234567890", "-0.5", None)),
)
# Unique per row: ADD UNIQUE over it succeeds.
UNIQUE_COL = "v"
GENERATED = (
    "gs VARCHAR(80) CHARACTER SET utf8mb4 AS (CONCAT(tag, '#', ti)) STORED",
    "gv BIGINT AS (bs * 2) VIRTUAL",
)
KEYS = ("KEY ix_i (i)", "KEY ix_gv (gv)")


def create_sql(table: str) -> str:
    parts = ["id INT UNSIGNED NOT NULL AUTO_INCREMENT",
             *(f"{q(c.name)} {c.ddl}" for c in COLUMNS),
             f"{UNIQUE_COL} INT NOT NULL DEFAULT 0", *GENERATED, "PRIMARY KEY (id)", *KEYS]
    return (f"CREATE TABLE {q(table)} ({', '.join(parts)}) "
            "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci")


def row_values(k: int, version: int = 0) -> list[Any]:
    """The base column values of row k (the key is not among them), then `v`."""
    return [c.values[(k + n + version) % len(c.values)] for n, c in enumerate(COLUMNS)] \
        + [k * 3 + version * 1000]


def insert_sql(with_id: bool = False) -> str:
    """INSERT of `row_values` (after the key, with_id), the table name left as {t}."""
    names = [*(["id"] if with_id else []), *(c.name for c in COLUMNS), UNIQUE_COL]
    marks = ", ".join(["%s"] * len(names))
    return f"INSERT INTO {{t}} ({', '.join(q(n) for n in names)}) VALUES ({marks})"


def seed(conn: Any, tables: Sequence[str]) -> None:
    """Create and fill each table identically; the key comes from AUTO_INCREMENT."""
    with conn.cursor() as cur:
        cur.execute("SET SESSION sql_mode = %s", (SEED_SQL_MODE,))
        cur.execute("SET SESSION time_zone = '+00:00'")
        rows = [row_values(k) for k in range(1, ROWS + 1)]
        for table in tables:
            cur.execute(create_sql(table))
            cur.executemany(insert_sql().format(t=q(table)), rows)
            cur.execute(f"DELETE FROM {q(table)} WHERE id > %s", (KEPT,))
    conn.commit()


# --- reading a table back ------------------------------------------------------------------

NUMERIC = {"tinyint", "smallint", "mediumint", "int", "bigint", "decimal", "year"}
FLOATING = {"float", "double"}
TEMPORAL = {"date", "time", "datetime", "timestamp"}


def read_expr(name: str, data_type: str) -> str:
    """A SELECT expression that shows a column's value exactly: the stored bytes of text
    (so a charset, collation or trailing-space difference shows), the full text of
    numbers and temporal values, the exact double of a FLOAT, an ENUM/SET's index too."""
    c = q(name)
    if data_type in NUMERIC or data_type in TEMPORAL:
        return f"CAST({c} AS CHAR)"
    if data_type in FLOATING:
        return f"CAST({c} AS DOUBLE)"
    if data_type in ("enum", "set"):
        return f"CONCAT(HEX({c}), ':', {c} + 0)"
    return f"HEX({c})"   # text, bytes, JSON, BIT (as a number), anything else


def column_types(conn: Any, table: str) -> list[tuple[str, str]]:
    with conn.cursor() as cur:
        cur.execute("SELECT COLUMN_NAME, DATA_TYPE FROM information_schema.COLUMNS "
                    "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s "
                    "ORDER BY ORDINAL_POSITION", (table,))
        return [(r[0], r[1].lower()) for r in cur.fetchall()]


def primary_key(conn: Any, table: str) -> list[str]:
    with conn.cursor() as cur:
        cur.execute(f"SHOW KEYS FROM {q(table)} WHERE Key_name = 'PRIMARY'")
        return [r[4] for r in sorted(cur.fetchall(), key=lambda r: r[3])]


def exact(value: Any) -> Any:
    """Floats by their bits (-0.0 differs from 0.0)."""
    return value.hex() if isinstance(value, float) else value


def read_table(conn: Any, table: str) -> tuple[list[tuple[str, str]], list[tuple[Any, ...]]]:
    """(columns as (name, type), rows in primary-key order), every value exact."""
    cols = column_types(conn, table)
    exprs = ", ".join(read_expr(n, t) for n, t in cols)
    order = ", ".join(q(c) for c in primary_key(conn, table))
    with conn.cursor() as cur:
        cur.execute(f"SELECT {exprs} FROM {q(table)} ORDER BY {order}")
        rows = [tuple(exact(v) for v in r) for r in cur.fetchall()]
    return cols, rows


def show_create(conn: Any, table: str) -> str:
    with conn.cursor() as cur:
        cur.execute(f"SHOW CREATE TABLE {q(table)}")
        text: str = cur.fetchone()[1]
    return text.replace(f"CREATE TABLE {q(table)}", "CREATE TABLE <T>", 1)


def table_names(conn: Any) -> set[str]:
    with conn.cursor() as cur:
        cur.execute("SHOW TABLES")
        return {r[0] for r in cur.fetchall()}


def row_differences(columns: Sequence[tuple[str, str]], got: Sequence[tuple[Any, ...]],
                    want: Sequence[tuple[Any, ...]], clock: Sequence[str] = (),
                    tolerance: float = 5.0, limit: int = 4) -> list[str]:
    """What differs between two tables' rows (same columns, primary-key order), at most
    `limit` findings. Columns in `clock` hold wall-clock values (DEFAULT CURRENT_TIMESTAMP
    on existing rows): within `tolerance` seconds of each other is equal."""
    found: list[str] = []
    if len(got) != len(want):
        found.append(f"{len(got)} rows against {len(want)}")
    for g, w in zip(got, want, strict=False):
        for n, (name, data_type) in enumerate(columns):
            if g[n] == w[n] or (name in clock and near(g[n], w[n], tolerance)):
                continue
            found.append(f"row {g[0]} column {name}: onlineddl {shown(g[n], data_type)}, "
                         f"native {shown(w[n], data_type)}")
            if len(found) >= limit:
                return found
    return found


def near(a: Any, b: Any, seconds: float) -> bool:
    if a is None or b is None:
        return False
    fmt = "%Y-%m-%d %H:%M:%S.%f" if "." in str(a) else "%Y-%m-%d %H:%M:%S"
    try:
        delta = datetime.strptime(str(a), fmt) - datetime.strptime(str(b), fmt)
    except ValueError:
        return False
    return abs(delta.total_seconds()) <= seconds


def shown(value: Any, data_type: str) -> str:
    """A value for a failure message: HEX-read text also decoded, so it reads."""
    text = repr(short(value))
    if isinstance(value, str) and data_type in ("char", "varchar", "text", "tinytext",
                                                 "mediumtext", "longtext", "json", "enum",
                                                 "set"):
        raw = value.split(":")[0]
        try:
            text += f" ({short(bytes.fromhex(raw).decode('utf-8', 'replace'))!r})"
        except ValueError:
            pass
    return text


def short(value: object) -> object:
    """Text or bytes cut to 48 characters or bytes, for a failure message."""
    if isinstance(value, str) and len(value) > 48:
        return value[:48] + "..."
    if isinstance(value, bytes) and len(value) > 48:
        return value[:48] + b"..."
    return value

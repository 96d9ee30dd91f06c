"""The decisions of onlineddl/conversion.py (what the copy and the checksum read for each
old/new column pair), the session sql_mode and the TIMESTAMP key shift. The server
measurements behind them are in tests/integration/test_conversions.py."""

from __future__ import annotations

import datetime
from typing import Any, TypedDict

import pytest

from onlineddl import conversion, sql
from onlineddl.errors import UnsupportedTable
from onlineddl.statement import parse_alter
from onlineddl.table import Column, TableInfo, build_mapping
from onlineddl.zones import PROBES, KeyShift, key_shift


def col(name: str, column_type: str, data_type: str | None = None, *,
        charset: str | None = None, collation: str | None = None, nullable: bool = True,
        generated: bool = False, no_default: bool = False, ordinal: int = 0) -> Column:
    data = data_type or column_type.split("(")[0].split(" ")[0].lower()
    return Column(name, ordinal, data, column_type, charset, collation, nullable, generated,
                  no_default=no_default)


class Charset(TypedDict):
    charset: str
    collation: str


UTF8: Charset = {"charset": "utf8mb4", "collation": "utf8mb4_general_ci"}


def test_unchanged_column_is_the_bare_column_on_both_sides() -> None:
    a = col("c", "varchar(10)", **UTF8)
    assert conversion.copy_expr(a, a) == "`c`"
    assert conversion.checksum_pair(a, a) == ("`c`", "`c`")


def test_float_to_text_is_copied_as_its_own_text() -> None:
    f = col("f", "float(7,3)")
    assert conversion.copy_expr(f, col("f", "varchar(30)", **UTF8)) == "CONCAT(`f`)"
    assert conversion.copy_expr(f, col("f", "varbinary(30)")) == "CONCAT(`f`)"
    assert conversion.copy_expr(f, col("f", "double")) == "`f`"  # numbers: as stored
    assert conversion.copy_expr(col("d", "decimal(8,3)"), col("d", "varchar(30)", **UTF8)) \
        == "`d`"


def test_copy_expr_takes_the_reference_it_is_given() -> None:
    f, v = col("f", "float"), col("f", "text", **UTF8)
    assert conversion.copy_expr(f, v, "`d`.`t`.`f`") == "CONCAT(`d`.`t`.`f`)"


def test_conversions_to_bit_from_text_are_refused() -> None:
    with pytest.raises(UnsupportedTable, match="cannot convert"):
        conversion.copy_expr(col("s", "varchar(8)", **UTF8), col("s", "bit(8)"))
    assert conversion.copy_expr(col("i", "int(11)"), col("i", "bit(8)")) == "`i`"


def test_checksum_converts_timestamps_through_the_server_zone() -> None:
    ts, dt = col("c", "timestamp"), col("c", "datetime")
    assert conversion.checksum_pair(ts, dt) == (
        "CAST(COALESCE(CONVERT_TZ(`c`, '+00:00', @@GLOBAL.time_zone), `c`) AS DATETIME(0))",
        "CAST(`c` AS DATETIME(0))")
    assert conversion.checksum_pair(dt, ts)[0] == \
        "CAST(COALESCE(CONVERT_TZ(`c`, @@GLOBAL.time_zone, '+00:00'), `c`) AS DATETIME(0))"
    # TIMESTAMP to TIMESTAMP(3): both sides in one zone, no conversion.
    assert "CONVERT_TZ" not in conversion.checksum_pair(ts, col("c", "timestamp(3)"))[0]


def test_checksum_compares_in_the_new_type() -> None:
    d, f = col("d", "double"), col("d", "float")
    assert conversion.checksum_pair(d, f) == ("CAST(`d` AS FLOAT)", "CAST(`d` AS FLOAT)")
    v, c = col("v", "varchar(20)", **UTF8), col("v", "char(20)", **UTF8)
    assert conversion.checksum_pair(v, c)[1] == \
        "TRIM(TRAILING ' ' FROM LEFT(CONVERT(`v` USING utf8mb4), 20))"
    six, zero = col("t", "datetime(6)"), col("t", "datetime")
    assert conversion.checksum_pair(six, zero) == ("CAST(`t` AS DATETIME(0))",
                                                   "CAST(`t` AS DATETIME(0))")
    assert conversion.checksum_pair(col("x", "decimal(10,4)"), col("x", "decimal(10,1)"))[0] \
        == "CAST(`x` AS DECIMAL(10,1))"


def test_mysql_json_compares_as_json() -> None:
    assert conversion.checksum_pair(col("j", "text", **UTF8), col("j", "json")) == \
        ("CAST(`j` AS JSON)", "CAST(`j` AS JSON)")


def test_enum_and_set_compare_by_the_new_members() -> None:
    old = col("e", "enum('a','B')", **UTF8)
    new = col("e", "enum('A','b')", **UTF8)
    src, dst = conversion.checksum_pair(old, new)
    weight = ("WEIGHT_STRING(CONVERT(TRIM(TRAILING ' ' FROM `e`) USING utf8mb4) "
              "COLLATE utf8mb4_general_ci)")
    assert (src, dst) == (weight, weight)
    src, _ = conversion.checksum_pair(col("s", "set('a','b')", **UTF8),
                                      col("s", "set('b','a')", **UTF8))
    assert "((FIND_IN_SET('b', " in src and "> 0) << 1)" in src
    # Numbers reach an ENUM by index and a SET by bitmask.
    assert conversion.checksum_pair(col("i", "int(11)"), new) == ("CAST(`i` AS UNSIGNED)",
                                                                 "(`e` + 0)")


def test_members_keep_quotes_and_commas() -> None:
    assert conversion.members_of("enum('a','it''s','x,y')") == ["'a'", "'it''s'", "'x,y'"]


def test_bit_and_enum_to_numbers_compare_by_number() -> None:
    src, _ = conversion.checksum_pair(col("b", "bit(8)"), col("b", "varchar(8)", **UTF8))
    assert src == "LEFT(CONVERT((`b` + 0) USING utf8mb4), 8)"
    src, _ = conversion.checksum_pair(col("e", "enum('a','b')", **UTF8), col("e", "int(11)"))
    assert src == "CAST((`e` + 0) AS SIGNED)"
    src, _ = conversion.checksum_pair(col("y", "int(11)"), col("y", "year(4)"))
    assert "BETWEEN 1 AND 69 THEN CAST(`y` AS SIGNED) + 2000" in src


@pytest.mark.parametrize(("column_type", "value"), [
    ("int(11)", "0"), ("varchar(5)", "''"), ("date", "'0000-00-00'"),
    ("datetime(3)", "'0000-00-00 00:00:00'"), ("timestamp", "'0000-00-00 00:00:00'"),
    ("text", "''"), ("enum('x','y')", "1"), ("set('x','y')", "0"), ("bit(3)", "0"),
    ("year(4)", "0"), ("time", "'00:00:00'"), ("binary(3)", "''"), ("decimal(5,2)", "0"),
])
def test_implicit_defaults(column_type: str, value: str) -> None:
    assert conversion.implicit_default(col("c", column_type, nullable=False)) == value


@pytest.mark.parametrize("column", [col("j", "json"), col("g", "geometry"),
                                    col("u", "uuid")])
def test_no_implicit_default_is_refused(column: Column) -> None:
    with pytest.raises(UnsupportedTable, match="DEFAULT"):
        conversion.implicit_default(column)
    with pytest.raises(UnsupportedTable):
        conversion.implicit_default(col("j", "longtext", **UTF8), json_checked=True)


def info(name: str, *columns: Column, create: str = "") -> TableInfo:
    cols = tuple(Column(c.name, i, c.data_type, c.column_type, c.charset, c.collation,
                        c.nullable, c.generated, c.auto_increment, c.no_default)
                 for i, c in enumerate(columns))
    return TableInfo("d", name, cols, (columns[0].name,), "InnoDB", 0, create)


def test_mapping_fills_added_not_null_columns_and_copies_made_regular_ones() -> None:
    old = info("t", col("id", "int(11)", nullable=False), col("f", "float"),
               col("gs", "int(11)", generated=True), col("gv", "int(11)", generated=True))
    new = info("_t_new", col("id", "int(11)", nullable=False),
               col("f", "varchar(20)", **UTF8), col("gs", "int(11)"),
               col("gv", "int(11)", generated=True),
               col("a", "int(11)", nullable=False, no_default=True),
               col("b", "int(11)", nullable=False))
    plan = parse_alter("MODIFY f VARCHAR(20), MODIFY gs INT NULL, ADD a INT NOT NULL, "
                       "ADD b INT NOT NULL DEFAULT 1", database="d", table="t")
    mapping = build_mapping(old, new, plan)
    assert mapping.source == ("id", "f", "gs")
    assert mapping.target_cols() == ("id", "f", "gs", "a")
    assert mapping.source_exprs() == ["`id`", "CONCAT(`f`)", "`gs`", "0"]
    assert mapping.source_exprs("`d`.`t`")[:2] == ["`d`.`t`.`id`", "CONCAT(`d`.`t`.`f`)"]


def test_mapping_without_conversions_is_the_bare_columns() -> None:
    old = info("t", col("id", "int(11)", nullable=False), col("v", "int(11)"))
    new = info("_t_new", col("id", "int(11)", nullable=False), col("v", "int(11)"),
               col("z", "int(11)"))
    mapping = build_mapping(old, new, parse_alter("ADD z INT", database="d", table="t"))
    assert mapping.converts == ()
    assert mapping.source_exprs() == ["`id`", "`v`"]


def test_session_sql_mode_keeps_the_servers_rules_and_drops_what_breaks_ours() -> None:
    mode = sql.session_sql_mode(
        "STRICT_TRANS_TABLES,NO_ZERO_DATE,NO_BACKSLASH_ESCAPES,ANSI_QUOTES,"
        "TIME_ROUND_FRACTIONAL,PAD_CHAR_TO_FULL_LENGTH")
    assert mode == ("STRICT_ALL_TABLES,NO_AUTO_VALUE_ON_ZERO,NO_ENGINE_SUBSTITUTION,"
                    "NO_ZERO_DATE,NO_BACKSLASH_ESCAPES,TIME_ROUND_FRACTIONAL")
    assert sql.session_sql_mode("") == sql.SESSION_SQL_MODE


def test_key_shift_moves_only_timestamp_columns() -> None:
    shift = KeyShift((1,), datetime.timedelta(hours=5, minutes=30))
    utc = datetime.datetime(2024, 1, 1, 10, 0)
    assert shift.key((utc, utc, 3)) == (utc, datetime.datetime(2024, 1, 1, 15, 30), 3)
    assert shift.keys([(1, None)]) == [(1, None)]


class Offsets:
    """Answers key_shift's one query: the zone's name and its offset at each probe."""

    def __init__(self, name: str, *offsets: int | None) -> None:
        self.row = (name, *offsets)

    def query_one(self, text: str, params: object) -> tuple[object, ...]:
        return self.row


def ts_keyed() -> TableInfo:
    return info("t", col("ts", "timestamp", nullable=False), col("v", "int(11)"))


def test_key_shift_takes_a_fixed_offset() -> None:
    session: Any = Offsets("+05:30", *[19800] * len(PROBES))
    shift = key_shift(session, ts_keyed())
    assert shift == KeyShift((0,), datetime.timedelta(seconds=19800))
    session = Offsets("SYSTEM", *[0] * len(PROBES))
    assert key_shift(session, ts_keyed()) is None  # UTC: nothing to move


@pytest.mark.parametrize("offsets", [(3600, 3600, 7200, 3600, 7200, 7200),
                                     (None,) * len(PROBES)])
def test_key_shift_refuses_a_zone_without_one_offset(offsets: tuple[int | None, ...]) -> None:
    # Daylight saving time, or a named zone the server cannot convert (no zone tables).
    session: Any = Offsets("Europe/Berlin", *offsets)
    with pytest.raises(UnsupportedTable, match="daylight saving"):
        key_shift(session, ts_keyed())


def test_key_shift_asks_nothing_without_a_timestamp_key() -> None:
    session: Any = None  # never used
    assert key_shift(session, info("t", col("id", "int(11)", nullable=False))) is None


BIN: Charset = {"charset": "utf8mb4", "collation": "utf8mb4_bin"}
NOPAD: Charset = {"charset": "utf8mb4", "collation": "utf8mb4_nopad_bin"}
MYSQL_NOPAD: Charset = {"charset": "utf8mb4", "collation": "utf8mb4_0900_ai_ci"}


@pytest.mark.parametrize("old, new, why", [
    (col("k", "int(11)"), col("k", "bigint(20)"), None),
    (col("k", "int(11)"), col("k", "decimal(12,2)"), None),
    (col("k", "int(11)"), col("k", "varchar(12)", **UTF8), None),
    (col("k", "bigint(20)"), col("k", "varchar(24)", **UTF8), "another type"),
    (col("k", "decimal(10,2)"), col("k", "varchar(12)", **UTF8), None),
    (col("k", "decimal(20,2)"), col("k", "varchar(24)", **UTF8), "another type"),
    (col("k", "decimal(10,2)"), col("k", "decimal(12,3)"), None),
    (col("k", "decimal(10,2)"), col("k", "decimal(10,1)"), "fewer decimals"),
    (col("k", "decimal(10,2)"), col("k", "int(11)"), "another type"),
    (col("k", "date"), col("k", "datetime"), None),
    (col("k", "datetime(6)"), col("k", "datetime"), "fractional seconds"),
    (col("k", "timestamp(3)"), col("k", "datetime(6)"), None),
    (col("k", "datetime"), col("k", "date"), "another type"),
    (col("k", "time(3)"), col("k", "time"), "fractional seconds"),
    (col("k", "year(4)"), col("k", "int(11)"), None),
    (col("k", "int(11)"), col("k", "year(4)"), "another type"),
    (col("k", "varchar(10)", **UTF8), col("k", "int(11)"), "another type"),
    (col("k", "varchar(10)", **BIN), col("k", "varchar(20)", **UTF8), None),
    (col("k", "varchar(10)", **BIN), col("k", "char(10)", **BIN), None),
    (col("k", "varchar(10)", **NOPAD), col("k", "char(10)", **NOPAD), "trailing spaces"),
    (col("k", "varchar(10)", **MYSQL_NOPAD), col("k", "char(10)", **MYSQL_NOPAD),
     "trailing spaces"),
    (col("k", "varbinary(10)"), col("k", "varchar(10)", **UTF8), None),
    (col("k", "varbinary(10)"), col("k", "binary(10)"), "zero bytes"),
    (col("k", "binary(10)"), col("k", "binary(10)"), None),
])
def test_key_value_change(old: Column, new: Column, why: str | None) -> None:
    """Which conversions of a key column keep its values (the applier finds the new
    table's rows by the old values) and which change them (the key is not walked)."""
    got = conversion.key_value_change(old, new)
    assert got is None if why is None else why in str(got)

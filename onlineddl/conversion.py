"""How each old column's values reach the new column, the way the server's ALTER does it.

One place decides, for an old and a new column:
- the copy expression the copier's INSERT ... SELECT and every flush statement read
  (`copy_expr`): the bare column where the server's store conversion already matches
  what ALTER TABLE writes;
- the implicit default an added NOT NULL column without a DEFAULT gets (`implicit_default`):
  ALTER TABLE fills it in, an INSERT that leaves the column out fails in strict mode;
- the pair of checksum expressions (`checksum_pair`): the source side spells out the
  server's conversion of the old value, the shadow side reads the new column, both
  normalized to one form, so a lossy but legal conversion (DOUBLE -> FLOAT, VARCHAR ->
  CHAR, a reordered SET) compares equal and a stale or shifted value does not.

Time zones: the copy, flush and repair sessions run in the server's global time_zone
(the zone a plain ALTER converts in); checksum sessions run in '+00:00' and convert
explicitly, so a copy made in the wrong zone shows up as a mismatch.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from onlineddl.errors import UnsupportedTable
from onlineddl.sql import ident

if TYPE_CHECKING:
    from onlineddl.table import Column

GLOBAL_ZONE = "@@GLOBAL.time_zone"

INTEGERS = {"tinyint", "smallint", "mediumint", "int", "bigint"}
FLOATS = {"float", "double"}
STRINGS = {"char", "varchar", "tinytext", "text", "mediumtext", "longtext"}
BINARIES = {"binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob"}
TEMPORAL = {"date", "datetime", "timestamp", "time", "year"}
NUMBERS = INTEGERS | FLOATS | {"decimal", "year", "bit"}

# What ALTER TABLE ... ADD COLUMN c <type> NOT NULL (no DEFAULT) writes into existing
# rows (measured on MariaDB 10.11): numbers 0, text and binary '' (BINARY(n)
# pads it with zero bytes), zero dates, ENUM its first member (index 1), SET and BIT 0.
_ZERO = {**dict.fromkeys(INTEGERS | FLOATS | {"decimal", "year", "bit", "set"}, "0"),
         **dict.fromkeys(STRINGS | BINARIES, "''"),
         "enum": "1", "date": "'0000-00-00'", "time": "'00:00:00'",
         "datetime": "'0000-00-00 00:00:00'", "timestamp": "'0000-00-00 00:00:00'"}


def same_type(old: Column, new: Column) -> bool:
    return (old.column_type, old.charset, old.collation) == \
        (new.column_type, new.charset, new.collation)


def copy_expr(old: Column, new: Column, ref: str | None = None) -> str:
    """What the copy and the flushes SELECT for `new` from `old`; `ref` is how the old
    column is referenced (e.g. qualified by its table), by default its quoted name."""
    ref = ref or ident(old.name)
    if same_type(old, new):
        return ref
    check_convertible(old, new)
    if old.data_type in FLOATS and (new.data_type in STRINGS or new.data_type in BINARIES):
        # A FLOAT read as a number into a string is its double expansion
        # ('1.100000023841858'); ALTER writes the FLOAT's own text ('1.1', '1.100' for
        # FLOAT(7,3)), which is what CONCAT() renders.
        return f"CONCAT({ref})"
    value = ref
    if old.data_type == "char" and new.data_type != "char":
        value = _padded_char(old, value)
    if old.data_type in BINARIES and new.data_type in INTEGERS | FLOATS | {"decimal"}:
        # ALTER reads bytes with trailing whitespace ('8 ', '9\t') as the number; an
        # INSERT fails on them ("Data truncated"), as it does not for text. As latin1
        # text (one character a byte): MySQL 8's regular expressions refuse binary strings.
        value = f"REGEXP_REPLACE(CONVERT({value} USING latin1), '[[:space:]]+$', '')"
    if (old.data_type in STRINGS or old.data_type in BINARIES) and \
            new.data_type in INTEGERS:
        value = _integer_text(value, new)
    return value


def _integer_text(value: str, new: Column) -> str:
    """Text or bytes becoming an integer: ALTER TABLE fails on text with a decimal point or an
    exponent ('2.5', '1e3': "Truncated incorrect INTEGER value", MariaDB 10.11), where
    an INSERT ... SELECT rounds it and goes on. Such text is made to fail the copy's
    strict store too (a trailing '?' is garbage after the number: "Data truncated");
    so is text above 2^63 - 1 for BIGINT UNSIGNED, which ALTER reads as signed. The
    rest converts alike."""
    bad = f"{value} REGEXP '[.eE]'"
    if new.data_type == "bigint" and new.unsigned:
        # ALTER reads the text as a signed number: above 2^63 - 1 it fails.
        bad += (f" OR ({value} REGEXP '^[[:space:]]*[+]?[0-9]+[[:space:]]*$' AND "
                f"CAST({value} AS DECIMAL(65,0)) > 9223372036854775807)")
    return f"IF({bad}, CONCAT({value}, '?'), {value})"


def _padded_char(old: Column, ref: str) -> str:
    """A CHAR value as a plain ALTER reads it into another type. Under a global sql_mode
    with PAD_CHAR_TO_FULL_LENGTH that read keeps the trailing spaces to the full width,
    and the new VARCHAR/TEXT/BINARY/... column stores them ('ab' in CHAR(5) becomes
    'ab   '). onlineddl's sessions leave that mode out (it changes what its own key
    reads see), so the copy pads explicitly, under the same global condition. (A new
    CHAR column strips them again on store.)"""
    width = re.search(r"\((\d+)\)", old.column_type)
    if width is None:
        return ref
    return (f"IF(FIND_IN_SET('PAD_CHAR_TO_FULL_LENGTH', @@GLOBAL.sql_mode), "
            f"RPAD({ref}, {int(width.group(1))}, ' '), {ref})")


def key_value_change(old: Column, new: Column) -> str | None:
    """How the ALTER changes the values of a column of the run's key, or None when
    each value reaches the new column as one the server compares equal to it (or the
    store fails in strict mode). The applier deletes and re-reads the new table's rows
    by the old table's key values: a key the ALTER rounds (2.25 -> 2.3) would leave a
    row deleted meanwhile in the new table."""
    if same_type(old, new):
        return None
    o, n = old.data_type, new.data_type
    if o in INTEGERS and (n in INTEGERS or n == "decimal"):
        return None       # out of range fails; integers compare exactly
    if o == "decimal" and n == "decimal":
        return None if _size(new, 1) >= _size(old, 1) else "rounds it to fewer decimals"
    if o == "year" and (n == "year" or n in INTEGERS):
        return None
    if o == "date" and n in ("date", "datetime", "timestamp"):
        return None       # midnight, which compares equal to the date
    if o in ("datetime", "timestamp") and n in ("datetime", "timestamp"):
        return None if _size(new, 0) >= _size(old, 0) else "drops fractional seconds"
    if o == "time" and n == "time":
        return None if _size(new, 0) >= _size(old, 0) else "drops fractional seconds"
    texts_or_bytes = STRINGS | BINARIES
    if o in texts_or_bytes and n in texts_or_bytes:
        return _padding_change(old, new)
    if n in STRINGS and (o in INTEGERS - {"bigint"} or
                         (o == "decimal" and _size(old, 0) <= 15)):
        return None       # its digits; text and a number compare as DOUBLEs: exact here
    return "converts it to another type"


def _padding_change(old: Column, new: Column) -> str | None:
    """Text and bytes keep their characters (or fail); what a fixed-length type does to
    the end of a value may not compare equal: CHAR cuts trailing spaces, which a NO PAD
    collation counts, and BINARY(n) pads with zero bytes."""
    if new.data_type == "binary" and \
            not (old.data_type == "binary" and _size(old, 0) == _size(new, 0)):
        return "pads it with zero bytes"
    if new.data_type == "char" and old.data_type != "char" and \
            (_no_pad(old) or _no_pad(new)):
        return "cuts trailing spaces, which its NO PAD collation counts"
    return None


def _no_pad(col: Column) -> bool:
    """A collation that counts trailing spaces: MariaDB's *_nopad_*, MySQL 8's
    *_0900_* (binary types compare every byte anyway)."""
    name = (col.collation or "").lower()
    return "_nopad_" in name or "_0900_" in name or name.endswith("_nopad")


def _size(col: Column, part: int) -> int:
    """The first (0) or second (1) number in the column type's parentheses: a length or
    fractional-second precision, a DECIMAL's scale; 0 without."""
    found = re.search(r"\((\d+)(?:,(\d+))?\)", col.column_type)
    return int(found.group(part + 1) or 0) if found else 0


def check_convertible(old: Column, new: Column) -> None:
    """Refuse conversions where an INSERT ... SELECT and ALTER TABLE disagree in ways
    no expression here reproduces (MariaDB 10.11: to BIT from text, temporal or FLOAT
    values one succeeds where the other fails or writes other bits; FLOAT(M,D) to TIME
    rounds differently; FLOAT/DOUBLE to a date or time: ALTER fails on a fraction
    (101112.5, 0.1) where the INSERT makes 2010-11-12 or a zero date of it;
    DECIMAL/FLOAT/DOUBLE to ENUM/SET: ALTER matches 2.5 to a member '2.5' (ENUM) or
    rounds it (SET), the INSERT takes member 2)."""
    numeric = INTEGERS | {"bit", "decimal", "year", "enum", "set"}
    fractional = FLOATS | {"decimal"}
    if (new.data_type == "bit" and old.data_type not in numeric) or \
            (old.data_type in FLOATS and new.data_type in TEMPORAL - {"year"}) or \
            (old.data_type in fractional and new.data_type in ("enum", "set")) or \
            _unverifiable(old, new):
        raise UnsupportedTable(
            f"onlineddl cannot convert column {old.name} from {old.column_type} to "
            f"{new.column_type} the way ALTER TABLE does",
            hint="convert it to an integer type first, or run this ALTER without onlineddl")


def _unverifiable(old: Column, new: Column) -> bool:
    """Conversions the copy gets right but the checksum cannot spell out (it would stop
    every such run with a mismatch, exit 7): text, bytes or FLOAT/DOUBLE to YEAR
    (ALTER rounds '2.5' to 2003 and reads the text '-0' as 2000, the number 0 as 0000);
    YEAR to TIME (2024 becomes 00:20:24)."""
    return (new.data_type == "year" and
            (old.data_type in STRINGS or old.data_type in BINARIES or
             old.data_type in FLOATS)) or \
        (old.data_type == "year" and new.data_type == "time")


def implicit_default(new: Column, json_checked: bool = False) -> str:
    """The value ALTER TABLE gives existing rows in an added NOT NULL column without a
    DEFAULT, as SQL text. Under a sql_mode with NO_ZERO_DATE the zero date then fails
    the copy, as it fails a plain ALTER. `json_checked`: MariaDB's JSON (LONGTEXT with
    a json_valid CHECK)."""
    if json_checked or new.data_type == "json":
        # MariaDB's ALTER writes '' that its own CHECK (json_valid) then rejects on any
        # INSERT; MySQL's differs again. Neither can be copied faithfully.
        raise _no_implicit(new)
    value = _ZERO.get(new.data_type)
    if value is None:
        raise _no_implicit(new)
    return value


def _no_implicit(new: Column) -> UnsupportedTable:
    return UnsupportedTable(
        f"the ALTER adds column {new.name} {new.column_type} NOT NULL without a DEFAULT; "
        "onlineddl cannot write the implicit value ALTER TABLE gives existing rows for "
        "this type", hint=f"give {new.name} an explicit DEFAULT, or add it as NULL")


def checksum_pair(old: Column, new: Column) -> tuple[str, str]:
    """(source side, shadow side) checksum expressions for one mapped column, for
    sessions in '+00:00'. Equal text for an unchanged column."""
    src, dst = ident(old.name), ident(new.name)
    if same_type(old, new):
        return _hashable(new, src), _hashable(new, dst)
    value = copy_expr(old, new, src)
    if (old.data_type == "bit" and new.data_type != "bit" and not _raw_bits(new)) or \
            (old.data_type in ("enum", "set") and new.data_type in NUMBERS):
        value = f"({value} + 0)"  # ALTER converts these by their number
    if new.data_type == "year" and old.data_type != "year":
        value = _two_digit_years(f"CAST({value} AS SIGNED)")
    if old.data_type == "timestamp" and new.data_type != "timestamp":
        value = _convert_tz(value, "'+00:00'", GLOBAL_ZONE)
    elif new.data_type == "timestamp" and old.data_type != "timestamp":
        value = _convert_tz(value, GLOBAL_ZONE, "'+00:00'")
    if new.data_type in ("enum", "set"):
        return _member_pair(old, new, value, dst)
    return _hashable(new, normalize(new, value)), _hashable(new, normalize(new, dst))


# Unicode character sets that are not supersets of ASCII's bytes: the server will not
# mix their text with utf8mb4 text in one CONCAT_WS (error 1271, "Illegal mix of
# collations"), which the row hash (sql.row_hash) is.
WIDE_CHARSETS = frozenset({"ucs2", "utf16", "utf16le", "utf32"})


def _hashable(col: Column, expr: str) -> str:
    """`expr` as the row hash can take it: text in a wide character set by its bytes."""
    if col.charset in WIDE_CHARSETS:
        return f"HEX({expr})"
    return expr


def _raw_bits(new: Column) -> bool:
    """Does ALTER store a BIT value's bytes (not its number) in `new`? In TEXT and BLOB
    types (MariaDB 10.11: b'101' becomes the byte 0x05; in VARCHAR the text '5')."""
    return new.data_type in BINARIES - {"binary", "varbinary"} or \
        new.data_type in STRINGS - {"char", "varchar"}


def _convert_tz(value: str, source: str, target: str) -> str:
    """CONVERT_TZ, keeping a zero date (which CONVERT_TZ turns into NULL) as it is."""
    return f"COALESCE(CONVERT_TZ({value}, {source}, {target}), {value})"


def _two_digit_years(number: str) -> str:
    """A number as YEAR stores it: 1-69 are 2001-2069, 70-99 are 1970-1999."""
    return (f"(CASE WHEN {number} BETWEEN 1 AND 69 THEN {number} + 2000 "
            f"WHEN {number} BETWEEN 70 AND 99 THEN {number} + 1900 ELSE {number} END)")


def _member_pair(old: Column, new: Column, value: str, dst: str) -> tuple[str, str]:
    """ENUM and SET values: ALTER maps old text to the member equal under the new
    collation (its spelling and order), and numbers by index (ENUM) or bitmask (SET).
    A SET compares by the new member bits (FIND_IN_SET over the members); a SET member
    with a 4-byte character, which information_schema spells '?', then shows as a
    mismatch (a stop, never a silent pass)."""
    if old.data_type in NUMBERS:
        return f"CAST({value} AS UNSIGNED)", f"({dst} + 0)"
    if new.data_type == "enum":
        # The member ALTER picks is equal to the old text under the new collation
        # (trailing spaces aside): compare the collation's weights. Not FIELD() over the
        # members: information_schema spells a 4-byte character of a member as '?'.
        return _weight(new, value), _weight(new, dst)
    text = f"CONVERT({value} USING {new.charset}) COLLATE {new.collation}"
    members = members_of(new.column_type)
    bits = " + ".join(f"((FIND_IN_SET({m}, {text}) > 0) << {i})"
                      for i, m in enumerate(members))
    return f"({bits or '0'})", f"({dst} + 0)"


def _weight(col: Column, expr: str) -> str:
    trimmed = f"TRIM(TRAILING ' ' FROM {expr})"
    return f"WEIGHT_STRING(CONVERT({trimmed} USING {col.charset}) COLLATE {col.collation})"


def members_of(column_type: str) -> list[str]:
    """The quoted member literals of an ENUM/SET column type, as the server wrote them."""
    inner = column_type[column_type.index("(") + 1:column_type.rindex(")")]
    return re.findall(r"'(?:[^']|'')*'", inner)


def normalize(col: Column, expr: str) -> str:
    """`expr` in the form `col`'s type stores it, for hashing."""
    t = col.data_type
    width = re.search(r"\((\d+)(?:,(\d+))?\)", col.column_type)
    if t in INTEGERS or t == "bit":
        return f"CAST({expr} AS {'UNSIGNED' if col.unsigned or t == 'bit' else 'SIGNED'})"
    if t == "year":
        return f"CAST({expr} AS SIGNED)"
    if t == "decimal":
        args = f"{width.group(1)},{width.group(2) or 0}" if width else "10,0"
        return f"CAST({expr} AS DECIMAL({args}))"
    if t == "float":
        if width and width.group(2):
            return f"ROUND(CAST({expr} AS FLOAT), {width.group(2)})"
        return f"CAST({expr} AS FLOAT)"
    if t == "double":
        return f"CAST({expr} AS DOUBLE)"
    if t in ("datetime", "timestamp"):
        return f"CAST({expr} AS DATETIME({width.group(1) if width else 0}))"
    if t == "time":
        return f"CAST({expr} AS TIME({width.group(1) if width else 0}))"
    if t == "date":
        return f"CAST({expr} AS DATE)"
    if t in ("inet6", "inet4", "uuid"):
        # MariaDB's address and UUID types: their text in canonical form ('::FFFF:1.2.3.4'
        # and '::ffff:1.2.3.4' are one value); the bare cast reads their bytes.
        return f"CAST(CAST({expr} AS {t.upper()}) AS CHAR)"
    if t == "json":  # MySQL's JSON stores a normalized document
        return f"CAST({expr} AS JSON)"
    if t == "binary":
        return f"CAST({expr} AS BINARY({width.group(1) if width else 1}))"
    if t in BINARIES or not col.charset:
        return f"CAST({expr} AS BINARY)"
    text = f"CONVERT({expr} USING {col.charset})"
    if t in ("char", "varchar") and width:
        # Spaces past the length are cut on store (a note, not an error, even in strict
        # mode); any other excess fails the copy as it fails ALTER.
        text = f"LEFT({text}, {width.group(1)})"
    # CHAR drops trailing spaces on store (and reads them back without).
    return f"TRIM(TRAILING ' ' FROM {text})" if t == "char" else text

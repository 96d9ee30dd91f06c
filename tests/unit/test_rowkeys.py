"""The key-only row image reader, on hand-built row images."""

from __future__ import annotations

import struct
from collections.abc import Sequence

from onlineddl.binlog.rowkeys import (
    FIXED,
    PREFIXED,
    ColumnSpec,
    KeyKind,
    compile_parser,
    decimal_size,
)
from onlineddl.sql import Key


def parse_keys(data: bytes, specs: Sequence[ColumnSpec], key_order: Sequence[int],
               images: int) -> list[Key]:
    return compile_parser(specs, key_order, images)(data, 0, len(data))[0]

SIGNED = KeyKind("int", signed=True)
UNSIGNED = KeyKind("int", signed=False)


def image(nulls: int, *values: bytes, ncols: int) -> bytes:
    return nulls.to_bytes((ncols + 7) // 8, "little") + b"".join(values)


# (id BIGINT signed key, name VARCHAR(10), amount DECIMAL(10,2), note TEXT, small TINYINT)
SPECS = [ColumnSpec(FIXED, 8, SIGNED), ColumnSpec(PREFIXED, 1), ColumnSpec(FIXED, 5),
         ColumnSpec(PREFIXED, 2), ColumnSpec(FIXED, 1)]


def row(key: int, name: bytes, note: bytes | None, nulls: int = 0) -> bytes:
    values = [struct.pack("<q", key), bytes([len(name)]) + name, b"\x80\x00\x00\x01\x02"]
    if note is not None:
        values.append(struct.pack("<H", len(note)) + note)
    values.append(b"\x07")
    return image(nulls, *values, ncols=5)


def test_insert_rows() -> None:
    data = row(1, b"a", b"xyz") + row(-5, b"", b"") + row(2**62, b"0123456789", None, nulls=8)
    assert parse_keys(data, SPECS, [0], images=1) == [(1,), (-5,), (2**62,)]


def test_update_rows_report_both_keys_only_when_the_key_changed() -> None:
    data = row(1, b"a", b"x") + row(1, b"b", b"y") + row(3, b"a", b"x") + row(9, b"a", b"x")
    assert parse_keys(data, SPECS, [0], images=2) == [(1,), (3,), (9,)]
    update = compile_parser(SPECS, [0], 2)
    assert update(data, 0, len(data))[1] is True             # 3 -> 9 moved a row
    same = row(1, b"a", b"x") + row(1, b"b", b"y")
    assert update(same, 0, len(same)) == ([(1,)], False)     # the key stayed


def test_composite_and_unsigned_keys_in_any_column_order() -> None:
    specs = [ColumnSpec(PREFIXED, 1), ColumnSpec(FIXED, 4, UNSIGNED), ColumnSpec(FIXED, 2, SIGNED)]
    data = image(0, b"\x02hi", struct.pack("<I", 4_000_000_000), struct.pack("<h", -2), ncols=3)
    assert parse_keys(data, specs, [2, 1], images=1) == [(-2, 4_000_000_000)]


def test_mediumint_is_three_bytes() -> None:
    specs = [ColumnSpec(FIXED, 3, SIGNED)]
    data = image(0, (-1).to_bytes(3, "little", signed=True), ncols=1)
    assert parse_keys(data, specs, [0], images=1) == [(-1,)]


def test_decimal_sizes() -> None:
    assert decimal_size(10, 2) == 5
    assert decimal_size(65, 30) == 30
    assert decimal_size(18, 9) == 8
    assert decimal_size(1, 0) == 1


def test_text_and_binary_keys() -> None:
    specs = [ColumnSpec(PREFIXED, 1, KeyKind("str", codec="utf-8")),
             ColumnSpec(PREFIXED, 1, KeyKind("bytes", pad=4)), ColumnSpec(FIXED, 1)]
    name = "\u00e9\U0001F600".encode()
    data = image(0, bytes([len(name)]) + name, b"\x02\x00\xff", b"\x01", ncols=3)
    assert parse_keys(data, specs, [0, 1], images=1) == [("\u00e9\U0001F600", b"\x00\xff\x00\x00")]


def test_runs_of_fixed_columns_with_nulls_inside() -> None:
    # key INT, then four fixed columns (one of zero width), a NULL in the middle of them
    specs = [ColumnSpec(FIXED, 4, SIGNED), ColumnSpec(FIXED, 2), ColumnSpec(FIXED, 0),
             ColumnSpec(FIXED, 3), ColumnSpec(FIXED, 8), ColumnSpec(FIXED, 1, UNSIGNED)]
    full = image(0, struct.pack("<i", 7), b"\x01\x02", b"abc", b"12345678", b"\xff", ncols=6)
    holey = image(0b1000, struct.pack("<i", -7), b"\x01\x02", b"12345678", b"\x05", ncols=6)
    assert parse_keys(full + holey, specs, [0, 5], images=1) == [(7, 255), (-7, 5)]


def test_latin1_keys_with_bytes_cp1252_leaves_undefined() -> None:
    latin1 = KeyKind("str", codec="cp1252")
    raw = b"\x81\x8d\xe9\x80"             # two undefined in cp1252, then e-acute and euro
    data = image(0, bytes([len(raw)]) + raw, ncols=1)
    assert parse_keys(data, [ColumnSpec(PREFIXED, 1, latin1)], [0], images=1) == \
        [("\x81\x8d\u00e9\u20ac",)]

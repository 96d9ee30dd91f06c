"""Read only the primary key out of binlog row images, skipping every other column.

The applier needs nothing from a row change but its key (it re-reads the row from the
source), yet a general binlog decoder turns every column of every before and after
image into a Python object: about 13k row changes a second here. Skipping a column
only needs its length on the wire, so this reader walks each image once, decodes the
key columns and steps over the rest, with code generated per table layout.

Wire format of one image: a NULL bitmap with one bit per column present in the event,
then each present non-NULL column's value. Lengths depend only on the column type and
its table-map metadata (`ColumnSpec`). Integer, text and binary keys are decoded here;
other key types (DECIMAL, temporal) use the library's general decoder (binlog.py).
"""

from __future__ import annotations

import codecs
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from onlineddl.sql import Key

FIXED = 0     # `size` bytes
PREFIXED = 1  # a little-endian length of `size` bytes, then that many bytes

_DIG2BYTES = (0, 1, 1, 2, 2, 3, 3, 4, 4, 4)


def decimal_size(precision: int, scale: int) -> int:
    """Bytes of a binary DECIMAL(precision, scale) (nine digits per four bytes)."""
    intg = precision - scale
    return (intg // 9) * 4 + _DIG2BYTES[intg % 9] + (scale // 9) * 4 + _DIG2BYTES[scale % 9]


@dataclass(frozen=True)
class KeyKind:
    """How to decode a key column: an integer, text in a Python codec, or bytes."""

    kind: str                 # "int", "str" or "bytes"
    signed: bool = True       # int
    codec: str = ""           # str
    pad: int = 0              # bytes: BINARY(n) values are n bytes, zero-padded


@dataclass(frozen=True)
class ColumnSpec:
    kind: int                 # FIXED or PREFIXED
    size: int
    key: KeyKind | None = None


def _latin1_undefined(err: UnicodeError) -> tuple[str, int]:
    """MySQL's latin1 is cp1252, except that the five bytes cp1252 leaves undefined (0x81,
    0x8D, 0x8F, 0x90, 0x9D) are the control characters of the same number."""
    assert isinstance(err, UnicodeDecodeError)
    return "".join(chr(b) for b in err.object[err.start:err.end]), err.end


LATIN1_ERRORS = "onlineddl-latin1"
codecs.register_error(LATIN1_ERRORS, _latin1_undefined)

# (keys in row order, did any update move a row to another key)
KeyParser = Callable[[bytes, int, int], tuple[list[Key], bool]]


def compile_parser(specs: Sequence[ColumnSpec], key_order: Sequence[int], images: int
                   ) -> KeyParser:
    """A parser for one table layout, generated as straight-line Python: called with a
    rows event's bytes and the start and end of its rows, it returns every row's key
    and whether any update moved a row to another key.

    `images` is 1 for inserts and deletes, 2 for updates (before and after image); for
    an update both keys are returned when they differ. Every column must be present
    (binlog_row_image=FULL, which preflight requires globally; images of a session
    that logs fewer columns are read by compile_images_parser's parsers). `key_order`
    lists the column indexes of the primary key in key order.

    A generic loop over the columns (a tuple unpack, a NULL test and a branch per column
    per image) ran at about 100k rows a second; the generated code does the same steps
    with the sizes and bit masks as constants and runs of fixed-size columns skipped in
    one step, two to three times faster. The source is built only from integers and the
    codec names in table.KEY_CODECS.
    """
    slot = {col: n for n, col in enumerate(key_order)}
    lines = ["def parse(data, pos, end):", "    out = []", "    moved = False",
             "    while pos < end:"]
    for image in range(images):
        lines += ["        " + line for line in _image_lines(specs, slot, image)]
    if images == 1:
        lines.append("        out.append(key0)")
    else:
        lines += ["        out.append(key0)", "        if key1 != key0:",
                  "            out.append(key1)", "            moved = True"]
    lines.append("    return out, moved")
    scope: dict[str, Any] = {"from_bytes": int.from_bytes, "unpack_from": struct.unpack_from}
    exec(compile("\n".join(lines), f"<keys of {len(specs)} columns>", "exec"), scope)
    parser: KeyParser = scope["parse"]
    return parser


# Each row's images' keys (one image, or before and after), ABSENT where a key column
# is not in the image.
ImagesParser = Callable[[bytes, int, int], list[tuple[Key, ...]]]


def compile_images_parser(specs: Sequence[ColumnSpec], key_order: Sequence[int],
                          presents: Sequence[int], absent: object) -> ImagesParser:
    """A parser for row images that lack columns (a session writing with
    binlog_row_image MINIMAL or NOBLOB): `presents` holds each image's columns-present
    bitmap, and the image's NULL bitmap and values cover only the columns present. A key
    column an image lacks is `absent` in its key; items.image_keys makes sense of that.
    Rare, so it is compiled per bitmap and not made fast."""
    lines = ["def parse(data, pos, end):", "    out = []", "    while pos < end:"]
    for image, present in enumerate(presents):
        columns = [c for c in range(len(specs)) if present >> c & 1]
        slot = {n: key_order.index(c) for n, c in enumerate(columns) if c in key_order}
        lines += [f"        k{n} = ABSENT" for n in range(len(key_order))
                  if key_order[n] not in columns]
        lines += ["        " + line for line in _image_lines([specs[c] for c in columns],
                                                            slot, image, len(key_order))]
    lines.append(f"        out.append(({''.join(f'key{i}, ' for i in range(len(presents)))}))")
    lines.append("    return out")
    scope: dict[str, Any] = {"from_bytes": int.from_bytes, "unpack_from": struct.unpack_from,
                             "ABSENT": absent}
    exec(compile("\n".join(lines), f"<key images of {len(specs)} columns>", "exec"), scope)
    parser: ImagesParser = scope["parse"]
    return parser


def _image_lines(specs: Sequence[ColumnSpec], slot: dict[int, int], image: int,
                 key_width: int | None = None) -> list[str]:
    width = (len(specs) + 7) // 8
    out = [f"nulls = {_length(width)}", f"pos += {width}"]
    i = 0
    while i < len(specs):
        run = i
        while (run < len(specs) and specs[run].kind == FIXED and specs[run].size
               and run not in slot):
            run += 1
        if run - i > 1:  # several fixed-size columns: one step when none is NULL
            mask = sum(1 << c for c in range(i, run))
            out += [f"if not nulls & {mask}:",
                    f"    pos += {sum(specs[c].size for c in range(i, run))}", "else:"]
            out += ["    " + line for c in range(i, run) for line in _skip(specs[c], c)]
            i = run
            continue
        spec = specs[i]
        out += _key(spec, i, slot[i]) if i in slot else _skip(spec, i)
        i += 1
    names = ", ".join(f"k{n}" for n in range(len(slot) if key_width is None else key_width))
    out.append(f"key{image} = ({names},)")
    return out


def _skip(spec: ColumnSpec, column: int) -> list[str]:
    if spec.kind == FIXED:
        return [f"if not nulls & {1 << column}:", f"    pos += {spec.size}"] if spec.size else []
    return [f"if not nulls & {1 << column}:",
            f"    pos += {spec.size} + {_length(spec.size)}"]


def _key(spec: ColumnSpec, column: int, n: int) -> list[str]:
    assert spec.key is not None
    if spec.kind == FIXED:
        value = [f"    k{n} = {_decode_expr(f'data[pos:pos + {spec.size}]', spec.key, spec.size)}",
                 f"    pos += {spec.size}"]
    else:
        value = [f"    n = {_length(spec.size)}", f"    pos += {spec.size}",
                 f"    k{n} = {_decode_expr('data[pos:pos + n]', spec.key)}", "    pos += n"]
    return [f"if not nulls & {1 << column}:", *value, "else:", f"    k{n} = None"]


def _length(size: int) -> str:
    """The expression for a little-endian unsigned integer of `size` bytes at `pos`."""
    if size == 1:
        return "data[pos]"
    if size == 2:
        return "(data[pos] | data[pos + 1] << 8)"
    return f"from_bytes(data[pos:pos + {size}], 'little')"


_STRUCT_CODES = {1: "b", 2: "h", 4: "i", 8: "q"}


def _decode_expr(raw: str, key: KeyKind, size: int = 0) -> str:
    if key.kind == "int" and size in _STRUCT_CODES:  # no slice: read in place
        code = _STRUCT_CODES[size] if key.signed else _STRUCT_CODES[size].upper()
        return f"unpack_from('<{code}', data, pos)[0]"
    if key.kind == "int":
        return f"from_bytes({raw}, 'little', signed={key.signed!r})"
    if key.kind == "str" and key.codec == "cp1252":
        return f"{raw}.decode('cp1252', {LATIN1_ERRORS!r})"
    if key.kind == "str":
        return f"{raw}.decode({key.codec!r})"
    return f"{raw}.ljust({key.pad}, b'\\x00')" if key.pad else raw

"""Read only the primary key out of binlog row images, skipping every other column.

The applier needs nothing from a row change but its key (it re-reads the row from the
source), yet a general binlog decoder turns every column of every before and after
image into a Python object: about 13k row changes a second here. Skipping a column
only needs its length on the wire, so this reader walks each image once, decodes the
integer key columns and steps over the rest.

Wire format of one image: a NULL bitmap with one bit per column present in the event,
then each present non-NULL column's value. Lengths depend only on the column type and
its table-map metadata (`ColumnSpec`). Integer, text and binary keys are decoded here;
other key types (DECIMAL, temporal) use the general decoder (binlog.py chooses).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

Key = Any  # one key column's value: int, str or bytes

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


_SKIPPED = KeyKind("bytes")  # placeholder for columns that are not part of the key


def _decode(raw: bytes, key: KeyKind) -> Key:
    if key.kind == "int":
        return int.from_bytes(raw, "little", signed=key.signed)
    if key.kind == "str":
        return raw.decode(key.codec)
    return raw.ljust(key.pad, b"\x00")


def parse_keys(data: bytes, specs: Sequence[ColumnSpec], key_order: Sequence[int],
               images: int, start: int = 0, end: int | None = None) -> list[tuple[Key, ...]]:
    """Keys of every row in `data[start:end]`, the rows of a rows event.

    `images` is 1 for inserts and deletes, 2 for updates (before and after image); for
    an update both keys are returned when they differ. Every column must be present
    (binlog_row_image=FULL, which preflight requires). `key_order` lists the column
    indexes of the primary key in key order.
    """
    # Plain tuples and local names: this loop runs once per column per row image.
    plan = [(i >> 3, 1 << (i & 7), s.kind == FIXED, s.size, s.key or _SKIPPED)
            for i, s in enumerate(specs)]
    slot = {col: n for n, col in enumerate(key_order)}
    slots = [slot.get(i) for i in range(len(specs))]
    nulls_len = (len(specs) + 7) // 8
    from_bytes = int.from_bytes
    out: list[tuple[Key, ...]] = []
    pos = start
    end = len(data) if end is None else end
    while pos < end:
        before: tuple[Key, ...] | None = None
        for _ in range(images):
            nulls = data[pos:pos + nulls_len]
            pos += nulls_len
            key: list[Key] = [0] * len(key_order)
            for (byte, bit, fixed, size, kind), where in zip(plan, slots, strict=True):
                if nulls[byte] & bit:
                    continue
                if fixed:
                    if where is not None:
                        key[where] = _decode(data[pos:pos + size], kind)
                    pos += size
                else:
                    length = from_bytes(data[pos:pos + size], "little")
                    pos += size
                    if where is not None:
                        key[where] = _decode(data[pos:pos + length], kind)
                    pos += length
            found = tuple(key)
            if before is None:
                out.append(found)
                before = found
            elif found != before:
                out.append(found)
    return out

"""Table maps: which table a row event belongs to and how its values are laid out.

A row image is a NULL bitmap and then each non-NULL value; to step over a value only its
length is needed, which follows from the column's type byte and the table map's
metadata for that column. This module turns a TABLE_MAP event into that layout
(`rowkeys.ColumnSpec` per column), with the key columns marked for decoding, and holds
`TableShape`, what a reader knows of the table beforehand.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from onlineddl.binlog.rowkeys import FIXED, PREFIXED, ColumnSpec, KeyKind, decimal_size
from onlineddl.errors import ReplicationError
from onlineddl.table import INTEGER_BITS, KEY_CODECS, Column, TableInfo, wire_sized

# Column types (the table map's type bytes) and how their values are laid out.
_FIXED = {1: 1, 2: 2, 9: 3, 3: 4, 8: 8, 6: 0, 7: 4, 10: 3, 14: 3, 11: 3, 12: 8, 13: 1}
_FLOAT, _DOUBLE, _VARCHAR, _BIT, _TIMESTAMP2, _DATETIME2, _TIME2 = 4, 5, 15, 16, 17, 18, 19
_JSON, _NEWDECIMAL, _ENUM, _SET, _VAR_STRING, _STRING, _GEOMETRY = 245, 246, 247, 248, 253, 254, 255
_BLOBS = frozenset((249, 250, 251, 252, _JSON, _GEOMETRY))
_FSP_BASE = {_TIMESTAMP2: 4, _DATETIME2: 5, _TIME2: 3}
_INT_WIRE = frozenset((1, 2, 9, 3, 8))
_TEXT_WIRE = frozenset((_VARCHAR, _VAR_STRING, _STRING))


@dataclass(frozen=True)
class TableShape:
    """What a binlog reader needs to know about the table."""

    database: str
    table: str
    column_count: int
    key_ordinals: tuple[int, ...]
    # How to decode each key column off the wire; None when the wire reader cannot read
    # the table (a DECIMAL or temporal key, or a column type it cannot step over): then
    # python-mysql-replication's general decoder reads it (binlog.py).
    key_kinds: tuple[KeyKind, ...] | None = None
    unsigned_bits: tuple[int, ...] = ()   # per key column: width if UNSIGNED int, else 0
    # lower_case_table_names != 0: the server compares table and database names without
    # case, so the binlog's names (table maps, statements) are compared that way too.
    fold_case: bool = False
    key_names: tuple[str, ...] = ()       # the key's column names (messages)

    def is_table(self, database: str, table: str) -> bool:
        """Do a binlog table map's names mean this table, as the server compares names?"""
        if self.fold_case:
            return (database.lower() == self.database.lower()
                    and table.lower() == self.table.lower())
        return database == self.database and table == self.table

    @classmethod
    def of(cls, info: TableInfo, name: str | None = None, *, fold_case: bool = False
           ) -> TableShape:
        kinds = [key_kind(c) for c in info.key_columns]
        wire = all(kinds) and all(wire_sized(c) for c in info.columns)
        bits = tuple(INTEGER_BITS.get(c.data_type, 0) if c.unsigned else 0
                     for c in info.key_columns)
        return cls(info.database, name or info.name, len(info.columns), info.key_ordinals,
                   tuple(k for k in kinds if k is not None) if wire else None, bits,
                   fold_case, tuple(c.name for c in info.key_columns))


def packed_int(data: bytes, pos: int) -> tuple[int, int]:
    """A length-encoded integer at `pos`: (value, position after it)."""
    first = data[pos]
    if first < 0xFB:
        return first, pos + 1
    size = {0xFC: 2, 0xFD: 3, 0xFE: 8}.get(first)
    if size is None:
        raise ReplicationError(f"bad length-encoded integer 0x{first:02x} in a binlog event")
    return int.from_bytes(data[pos + 1:pos + 1 + size], "little"), pos + 1 + size


def column_specs(types: bytes, meta: bytes) -> list[ColumnSpec] | None:
    """Each column's wire layout from a table map's types and metadata; None if a
    column has a type whose size is not known here."""
    specs: list[ColumnSpec] = []
    m = 0
    for t in types:
        if t in _FIXED:
            specs.append(ColumnSpec(FIXED, _FIXED[t]))
        elif t in (_FLOAT, _DOUBLE):
            specs.append(ColumnSpec(FIXED, meta[m]))
            m += 1
        elif t in _FSP_BASE:
            specs.append(ColumnSpec(FIXED, _FSP_BASE[t] + (meta[m] + 1) // 2))
            m += 1
        elif t in _BLOBS:
            specs.append(ColumnSpec(PREFIXED, meta[m]))
            m += 1
        elif t in (_VARCHAR, _VAR_STRING):
            max_length = meta[m] | meta[m + 1] << 8
            specs.append(ColumnSpec(PREFIXED, 2 if max_length > 255 else 1))
            m += 2
        elif t == _NEWDECIMAL:
            specs.append(ColumnSpec(FIXED, decimal_size(meta[m], meta[m + 1])))
            m += 2
        elif t == _BIT:
            specs.append(ColumnSpec(FIXED, meta[m + 1] + (1 if meta[m] else 0)))
            m += 2
        elif t == _STRING:
            specs.append(_string_spec(meta[m], meta[m + 1]))
            m += 2
        else:
            return None
    return specs


def _string_spec(b0: int, b1: int) -> ColumnSpec:
    """CHAR/BINARY/ENUM/SET share the STRING type; the metadata's first byte holds the
    real type, folded together with the high bits of a CHAR's byte length."""
    if b0 & 0x30 != 0x30:
        real, length = b0 | 0x30, b1 | ((b0 & 0x30) ^ 0x30) << 4
    else:
        real, length = b0, b1
    if real in (_ENUM, _SET):
        return ColumnSpec(FIXED, b1)
    return ColumnSpec(PREFIXED, 2 if length > 255 else 1)


def key_specs(shape: TableShape, types: bytes, meta: bytes) -> list[ColumnSpec]:
    """Column specs for our table, with the key columns marked for decoding."""
    assert shape.key_kinds is not None, "the wire reader reads only tables it can decode"
    if len(types) != shape.column_count:
        raise ReplicationError(
            f"the binlog has {len(types)} columns for {shape.table}, the table has "
            f"{shape.column_count}: its schema changed during the migration",
            hint="do not ALTER the table while onlineddl runs; clean up and start again")
    specs = column_specs(types, meta)
    if specs is None:
        raise ReplicationError(
            f"the binlog has a column type of {shape.table} the reader cannot step over "
            f"(types {list(types)})", hint="report this with SHOW CREATE TABLE")
    for ordinal, kind in zip(shape.key_ordinals, shape.key_kinds, strict=True):
        wire = _INT_WIRE if kind.kind == "int" else _TEXT_WIRE
        if types[ordinal] not in wire:
            raise ReplicationError(f"key column {ordinal} of {shape.table} has binlog type "
                                   f"{types[ordinal]}, not the type the table reports")
        spec = specs[ordinal]
        specs[ordinal] = ColumnSpec(spec.kind, spec.size, kind)
    return specs


@dataclass(frozen=True)
class TableMap:
    table_id: int
    database: str
    table: str
    types: bytes
    meta: bytes


def parse_table_map(body: bytes) -> TableMap:
    table_id = int.from_bytes(body[0:6], "little")
    pos = 8                                   # table id (6) and flags (2)
    db_len = body[pos]
    database = body[pos + 1:pos + 1 + db_len].decode("utf-8", "replace")
    pos += 2 + db_len                         # length, name, NUL
    tbl_len = body[pos]
    table = body[pos + 1:pos + 1 + tbl_len].decode("utf-8", "replace")
    pos += 2 + tbl_len
    count, pos = packed_int(body, pos)
    types = body[pos:pos + count]
    meta_len, pos = packed_int(body, pos + count)
    return TableMap(table_id, database, table, types, body[pos:pos + meta_len])


def key_kind(col: Column) -> KeyKind | None:
    """How the wire reader decodes this key column; None when it does not."""
    if col.data_type in INTEGER_BITS:
        return KeyKind("int", signed=not col.unsigned)
    if col.data_type in ("char", "varchar") and col.charset in KEY_CODECS:
        return KeyKind("str", codec=KEY_CODECS[col.charset])
    if col.data_type == "binary":
        width = re.search(r"\((\d+)\)", col.column_type)
        return KeyKind("bytes", pad=int(width.group(1)) if width else 0)
    if col.data_type == "varbinary":
        return KeyKind("bytes")
    return None

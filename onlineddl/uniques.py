"""The new table's UNIQUE keys, and which of them the old table does not already enforce.

A flush writes the source's current rows into the shadow. With a UNIQUE key the old table
lacks, the source can hold two rows the new key cannot (an application inserting a
duplicate while the run goes on), and a `REPLACE` would silently delete one of them.
Such keys are "guarded": the applier writes their rows without REPLACE and looks into
every duplicate-key error (applier.py). A key the old table enforces itself (the same
columns, or a subset of them, compared alike) cannot be violated by the source: a row
that holds its value in the shadow while another row is written can only be stale.

Each key part is compared as the new index compares it: in the new column's character
set and collation ('abc' and 'ABC' are one value under a case-insensitive collation),
cut to the index's prefix length.
"""

from __future__ import annotations

from dataclasses import dataclass

from onlineddl import sql
from onlineddl.db import Session
from onlineddl.errors import UniqueViolation
from onlineddl.sql import Key, ident
from onlineddl.table import Column, ColumnMapping, TableInfo

TEXT = {"char", "varchar", "tinytext", "text", "mediumtext", "longtext"}
# Text types that keep trailing spaces as written (CHAR strips them).
VARYING_TEXT = TEXT - {"char"}
VARYING_BINARY = {"varbinary", "tinyblob", "blob", "mediumblob", "longblob"}
INTEGERS = {"tinyint", "smallint", "mediumint", "int", "bigint"}
# Types whose values come back from the server as Python values that, sent again as
# parameters, compare equal to the stored value. Not FLOAT/DOUBLE (printed rounded), BIT,
# JSON, spatial; not TIMESTAMP, whose text in a session time zone with daylight saving
# time names two instants once a year.
ROUND_TRIP = TEXT | VARYING_BINARY | INTEGERS | {
    "binary", "decimal", "date", "datetime", "time", "year", "enum", "set"}


@dataclass(frozen=True)
class KeyPart:
    column: str | None          # None: a functional key part (MySQL 8)
    prefix: int | None          # the index's prefix length (SUB_PART), None for all of it


@dataclass(frozen=True)
class UniqueIndex:
    name: str
    parts: tuple[KeyPart, ...]


@dataclass(frozen=True)
class UniqueCheck:
    """One UNIQUE key of the new table (other than the run's key, keys.py)."""

    name: str
    columns: tuple[str, ...]    # new-table column names, for messages
    stored: tuple[str, ...]     # SQL over the shadow's row: each part as the index compares it
    # SQL over the source's row: each part as the new row will hold it and the index
    # compare it; () when a part is not copied from the source (an added or generated
    # column, a functional part).
    values: tuple[str, ...]
    enforced: bool              # the old table's own keys already make it unique
    # `values` compare exactly as the index will and survive a round trip through the
    # client, so the applier can tell a stale holder of a value from a real duplicate.
    exact: bool

    @property
    def label(self) -> str:
        """How messages name the key: `PRIMARY KEY (a, b)`, `UNIQUE key k (a)`."""
        kind = "PRIMARY KEY" if self.name == "PRIMARY" else f"UNIQUE key {self.name}"
        return f"{kind} ({', '.join(self.columns)})"


def violation_hint(table: str) -> str:
    """What to do about duplicates a new UNIQUE key cannot hold."""
    return (f"{table} is unchanged, and a plain ALTER TABLE would fail on these rows too. "
            "Remove or change the duplicate rows (or leave the new UNIQUE or PRIMARY key "
            "out of the ALTER), then run the migration again (after `onlineddl cleanup` if "
            "a resumed run left its tables behind)")


def guarded(checks: tuple[UniqueCheck, ...]) -> bool:
    """Can a write to the source break one of these keys?"""
    return any(not c.enforced for c in checks)


def unique_checks(session: Session, source: TableInfo, shadow: TableInfo,
                  mapping: ColumnMapping) -> tuple[UniqueCheck, ...]:
    """The shadow's UNIQUE keys, each with how to compare it against the source; all but
    the run's key (keys.py), which the flushes find rows by. A new primary key that is
    not the run's key is one of them."""
    old_keys = load_unique_keys(session, source.database, source.name)
    new_keys = [k for k in load_unique_keys(session, shadow.database, shadow.name)
                if k.name != shadow.key_name]
    to_source = {t.lower(): s for s, t in zip(mapping.source, mapping.target, strict=True)}
    return tuple(_check(key, old_keys, source, shadow, to_source) for key in new_keys)


def run_key_checks(source: TableInfo, shadow: TableInfo) -> tuple[UniqueCheck, ...]:
    """The run's key (keys.py) as a check, when the new table compares it otherwise
    (key_as_compared: 'k1' and 'K1' one value under a case-insensitive collation). Rows
    the old key keeps apart can then meet under the new key, where the copy skips one;
    the plain ALTER fails on them (duplicate entry). Looked for only where rows were
    skipped or the checksum differs (copier, checksum), so such a run stops with
    UniqueViolation (exit 10), not a checksum mismatch."""
    values = key_as_compared(source, shadow)
    if not values:
        return ()
    return (UniqueCheck(shadow.key_name or "PRIMARY", shadow.key,
                        tuple(ident(c) for c in shadow.key), values,
                        enforced=False, exact=False),)


def load_unique_keys(session: Session, database: str, table: str) -> list[UniqueIndex]:
    """Every UNIQUE key of the table, the primary key included."""
    rows = session.query(
        "SELECT INDEX_NAME, COLUMN_NAME, SUB_PART FROM information_schema.STATISTICS "
        "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s AND NON_UNIQUE = 0 "
        "ORDER BY INDEX_NAME, SEQ_IN_INDEX", (database, table))
    parts: dict[str, list[KeyPart]] = {}
    for index, column, sub_part in rows:
        parts.setdefault(str(index), []).append(KeyPart(
            None if column is None else str(column),
            None if sub_part is None else int(sub_part)))
    return [UniqueIndex(name, tuple(p)) for name, p in parts.items()]


def key_part(old: Column, new: Column, prefix: int | None = None) -> str:
    """SQL over the source's row: `old`'s value as the new column `new` holds it, compared
    in the new column's character set and collation and cut to the index prefix."""
    text = ident(old.name)
    if new.charset and new.collation and \
            (old.charset, old.collation) != (new.charset, new.collation):
        text = f"CONVERT({text} USING {new.charset}) COLLATE {new.collation}"
    return f"LEFT({text}, {int(prefix)})" if prefix else text


def _check(key: UniqueIndex, old_keys: list[UniqueIndex], source: TableInfo,
           shadow: TableInfo, to_source: dict[str, str]) -> UniqueCheck:
    columns = tuple(p.column or "(expression)" for p in key.parts)
    stored = tuple(_stored(p) for p in key.parts)
    pairs = [(source.column(to_source[p.column.lower()]), shadow.column(p.column), p.prefix)
             for p in key.parts if p.column and p.column.lower() in to_source]
    values: tuple[str, ...] = ()
    exact = False
    if len(pairs) == len(key.parts):
        values = tuple(key_part(old, new, prefix) for old, new, prefix in pairs)
        exact = all(_compares_exactly(old, new) for old, new, _ in pairs)
    return UniqueCheck(key.name, columns, stored, values,
                       _enforced(key, old_keys, source, shadow, to_source), exact)


def _stored(part: KeyPart) -> str:
    if part.column is None:
        return "NULL"  # never compared: a functional part makes the check inexact
    text = ident(part.column)
    return f"LEFT({text}, {part.prefix})" if part.prefix else text


def _compares_exactly(old: Column, new: Column) -> bool:
    """Does key_part() give exactly the value the new column will hold, in a type whose
    values round-trip through the client?"""
    if old.data_type not in ROUND_TRIP or new.data_type not in ROUND_TRIP:
        return False
    if (old.column_type, old.charset, old.collation) == \
            (new.column_type, new.charset, new.collation):
        return True
    # Conversions that keep the value (or fail in strict mode): text to text in another
    # character set, collation or length; integer widths; variable-length bytes.
    return any(old.data_type in family and new.data_type in family
               for family in (VARYING_TEXT, INTEGERS, VARYING_BINARY, {"char"}))


def _enforced(key: UniqueIndex, old_keys: list[UniqueIndex], source: TableInfo,
              shadow: TableInfo, to_source: dict[str, str]) -> bool:
    """Does a UNIQUE key of the old table (its primary key included) already make this key
    unique? It does when each of its parts is a part of this key on a column the ALTER
    leaves alike, with no shorter prefix here: rows equal on this key are then equal on
    that one."""
    mine = {to_source[p.column.lower()].lower(): p for p in key.parts
            if p.column and p.column.lower() in to_source}

    def implied(part: KeyPart) -> bool:
        if part.column is None or part.column.lower() not in mine:
            return False
        new_part = mine[part.column.lower()]
        old, new = source.column(part.column), shadow.column(str(new_part.column))
        if (old.column_type, old.charset, old.collation) != \
                (new.column_type, new.charset, new.collation):
            return False
        return new_part.prefix is None or \
            (part.prefix is not None and part.prefix <= new_part.prefix)

    for old_key in old_keys:
        if all(implied(p) for p in old_key.parts):
            return True
        if old_key.name == key.name and old_key.parts == key.parts and \
                any(p.column is None for p in key.parts):
            return True  # the same functional key, copied by CREATE TABLE ... LIKE
    return False


def key_as_compared(source: TableInfo, target: TableInfo) -> tuple[str, ...]:
    """SQL over the source's row: the run's key as the target's key compares it, when
    a part is text in another character set or collation there; () when alike. Only the
    comparison can differ: keys.choose walks only a key whose values the ALTER keeps
    (conversion.key_value_change). A target that compares its key more loosely ('a' and
    'A' one value) can hold only one of two source rows (a revert of a migration that
    made the key stricter, or a migration that makes it looser)."""
    pairs = [(source.column(s), target.column(t))
             for s, t in zip(source.key, target.key, strict=True)]
    if all((c.charset, c.collation) == (t.charset, t.collation) for c, t in pairs):
        return ()
    return tuple(key_part(c, t) for c, t in pairs)


def check_key_collisions(session: Session, database: str, source: str, target: str,
                         exprs: tuple[str, ...], source_pk: tuple[str, ...],
                         target_pk: tuple[str, ...], keys: list[Key]) -> None:
    """Before the rows for `keys` are written: the target's rows their keys meet (read
    under a shared lock, so a concurrent flush's row is waited for) and theirs, read in
    the source, must be distinct keys as the target compares them (`exprs`, from
    key_as_compared). Else writing one would overwrite the other's row (REPLACE, or
    the upsert): UniqueViolation (exit 10), naming them, before anything is written."""
    if not keys:
        return
    found = session.query(*sql.rows_holding(database, target, [ident(c) for c in target_pk],
                                            target_pk, keys))
    among = list(dict.fromkeys([*keys, *(tuple(r[:len(target_pk)]) for r in found)]))
    counts = session.query(*sql.key_values(database, source, exprs, source_pk, among))
    values = [tuple(r[:-1]) for r in counts if r[-1] > 1]
    if not values:
        return
    rows = session.query(*sql.rows_holding(database, source, exprs, source_pk, values[:1],
                                           among))
    shown = ", ".join(repr(r[0] if len(source_pk) == 1 else tuple(r[:len(source_pk)]))
                      for r in rows[:10])
    raise UniqueViolation(
        f"the rows of {source} with {'/'.join(source_pk)} {shown} are one key in {target}, "
        f"which compares its key ({', '.join(target_pk)}) more loosely (another collation "
        "or character set): it cannot hold them both, and writing one would overwrite "
        "the other")

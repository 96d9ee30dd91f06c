"""The run's key: the one unique key the copy, the applier and the checksum all walk.

Every stage finds rows by one key in both tables: the copier chunks by it, the binlog
reader takes it out of each row change, the applier's delta map is keyed by it and its
flushes re-read and delete rows by it, the checksum compares chunks of it, and the
checkpoint's low watermark is a value of it. That only works for a key that is unique
and NOT NULL in the old table AND in the new one, over the same columns (renamed ones
included): then each source row is exactly one row of the new table, and back.

Usually that is the primary key. An ALTER that changes the primary key (a wider or
narrower one, a PK added to a table that had only a UNIQUE NOT NULL key) is supported
when the two tables still share such a key: the old primary key kept as a UNIQUE key,
or a UNIQUE key present on both sides. The choice is deterministic, so a resumed run
walks the same key: the old primary key when it is shared, else the first shared UNIQUE
key by name (among those whose column types the engine can walk; see
preflight.check_key).

The new primary key is then just another UNIQUE key of the new table: uniques.py
compares it like any other, and a source that does not enforce it (duplicates, a value
moved during the run) is caught the same way.
"""

from __future__ import annotations

import logging

from onlineddl import conversion, zones
from onlineddl.db import Session
from onlineddl.errors import InvalidAlter, UnsupportedTable
from onlineddl.preflight import check_key
from onlineddl.table import ColumnMapping, TableInfo, UniqueKey

log = logging.getLogger(__name__)

Pair = tuple[UniqueKey, UniqueKey]   # (the old table's key, the new table's same key)


def shared_keys(source: TableInfo, shadow: TableInfo, mapping: ColumnMapping) -> list[Pair]:
    """The old table's NOT NULL unique keys that the new table has too (over the columns
    they become, in the same order), in the order of preference: the old primary key
    first, then by name. For each, the new table's key: its primary key if that is the
    one, else the first by name."""
    to_new = {s.lower(): t.lower() for s, t in zip(mapping.source, mapping.target,
                                                   strict=True)}
    pairs: list[Pair] = []
    for old in source.unique_keys:
        mapped = tuple(to_new.get(c.lower(), "") for c in old.columns)
        if "" in mapped:
            continue   # a column dropped, or computed by the new table
        same = [new for new in shadow.unique_keys
                if tuple(c.lower() for c in new.columns) == mapped]
        if same:
            pairs.append((old, same[0]))
    return pairs


def choose(session: Session, source: TableInfo, shadow: TableInfo, mapping: ColumnMapping
           ) -> tuple[TableInfo, TableInfo]:
    """Both tables set to walk the run's key; InvalidAlter when they share none (exit 5),
    UnsupportedTable when no shared key has columns the engine can walk."""
    pairs = shared_keys(source, shadow, mapping)
    if not pairs:
        raise no_shared_key(source, shadow, mapping)
    kept = [(old, new) for old, new in pairs if not value_change(source, shadow, old, new)]
    if not kept:
        raise changed_key(source, shadow, *pairs[0])
    refusal: UnsupportedTable | None = None
    for old, new in kept:
        walked, target = source.with_key(old), shadow.with_key(new)
        try:
            check_key(walked)
            zones.key_shift(session, walked)
            # A key the ALTER makes TIMESTAMP (from DATETIME): in a zone with daylight
            # saving time its values in the skipped hour change on the way in.
            zones.key_shift(session, target)
        except UnsupportedTable as err:
            refusal = refusal or err
            continue
        chosen = walked, target
        if (old.name, new.name) != ("PRIMARY", "PRIMARY"):   # said only when unusual
            log.info("the run walks %s", describe(*chosen))
        return chosen
    assert refusal is not None
    raise refusal


def value_change(source: TableInfo, shadow: TableInfo, old: UniqueKey, new: UniqueKey
                 ) -> str:
    """How the ALTER changes the values of the key's columns ("" when it keeps them):
    rows are deleted and re-read in the new table by the old table's values, so a key
    whose values change cannot be walked."""
    for before, after in zip(old.columns, new.columns, strict=True):
        was, becomes = source.column(before), shadow.column(after)
        why = conversion.key_value_change(was, becomes)
        if why:
            return f"{before} ({was.column_type} -> {becomes.column_type}) {why}"
    return ""


def changed_key(source: TableInfo, shadow: TableInfo, old: UniqueKey, new: UniqueKey
                ) -> InvalidAlter:
    """The refusal when every key the tables share changes its values."""
    return InvalidAlter(
        f"the ALTER changes the values of {old.describe()}, the key onlineddl finds each "
        f"row by in both tables: {value_change(source, shadow, old, new)}. A row deleted "
        "during the run could then stay in the new table, so onlineddl does not walk it, "
        "and the tables share no other UNIQUE key over NOT NULL columns",
        hint="keep (or add) a UNIQUE key over NOT NULL columns the ALTER leaves alike, "
             "e.g. an id, or change this column with a plain ALTER TABLE; the table is "
             "unchanged")


def describe(source: TableInfo, shadow: TableInfo) -> str:
    """The run's key as the dry run and the log name it."""
    old, new = source.run_key, shadow.run_key
    if old.describe() == new.describe():
        return f"{old.describe()}, in the old and the new table"
    return f"{old.describe()} of the old table, {new.describe()} of the new table"


def no_shared_key(source: TableInfo, shadow: TableInfo, mapping: ColumnMapping
                  ) -> InvalidAlter:
    """The refusal, naming the key the ALTER would have to keep."""
    before = ", ".join(source.pk) or "none"
    after = ", ".join(shadow.pk) or "none"
    change = (f"changes the primary key ({before} -> {after})" if before != after else
              "changes the table's unique keys")
    to_new = {s.lower(): t for s, t in zip(mapping.source, mapping.target, strict=True)}
    # The old table's preferred key (its primary key, if any): what to keep.
    old = source.unique_keys[0] if source.unique_keys else source.run_key
    mapped = [to_new.get(c.lower()) for c in old.columns]
    if all(mapped):
        columns = ", ".join(str(c) for c in mapped)
        keep = (f"keep the old {old.describe()} as a UNIQUE key over NOT NULL columns in "
                f"the same ALTER, e.g. ADD UNIQUE KEY ({columns})")
    else:
        gone = [c for c, m in zip(old.columns, mapped, strict=True) if not m]
        keep = (f"the ALTER drops (or computes) {', '.join(gone)} of the old "
                f"{old.describe()}; keep a UNIQUE key over NOT NULL columns that both "
                "tables have")
    return InvalidAlter(
        f"the ALTER {change}, and the old and new table then share no UNIQUE key over "
        "NOT NULL columns: onlineddl needs one to copy the rows and apply changes to them "
        "one by one",
        hint=f"{keep}; the table is unchanged")

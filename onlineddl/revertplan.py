"""What a revert brings back, and every reason it refuses to, before anything changes.

A revert undoes the most recent swap of T: the old table that swap kept becomes T
again, with every write made to T since. The swap's record (oldtables.SwapRecord)
says which of the old table's columns each of T's columns fed; the inverse of that is
the revert's column mapping. Columns only the old table has (the migration dropped
them) are not fed: old rows keep their values, rows inserted since get the column's
default (applier.FlushTarget.keep_unfed). Columns only T has are left behind.

Refused, naming what is wrong (RevertRefused, exit 4), when:
- T has no recorded old table, the most recent one is gone or its columns changed, or
  it was recorded by a version that kept no swap record;
- the swap ran on another server, or T's columns changed since the swap;
- the binlog since the swap was purged (the revert must read every change since);
- an unfed column is NOT NULL without a default (a row inserted since has no value);
- an unfed column and a UNIQUE key besides the primary key on the old table (the
  upsert that keeps unfed values could update the wrong row on a duplicate);
- a current value of T does not fit the old column's type (a widened type, a
  nullable column that was NOT NULL): probed up front in strict mode;
- two rows of T are one value under a UNIQUE key of the old table that T does not
  enforce alike (a key whose collation the migration made stricter, or dropped).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

from onlineddl import conversion, foreignkeys, oldtables, sql, triggers
from onlineddl.config import Dsn, MigrationConfig
from onlineddl.cutover import is_our_rename, normalized_shape
from onlineddl.db import Session
from onlineddl.errors import OnlineDDLError, RevertRefused, TableChanged
from onlineddl.flavor import BinlogPosition, MySQL
from onlineddl.leftovers import identity_matches, shadow_identity
from onlineddl.oldtables import OldTable, SwapRecord
from onlineddl.resume import statement_after
from onlineddl.table import Artifacts, Column, ColumnMapping, TableInfo
from onlineddl.uniques import key_as_compared, load_unique_keys, unique_checks

log = logging.getLogger(__name__)

PREFIX = "revert to "


def revert_text(old: str) -> str:
    """What a revert's checkpoint and hooks show as its ALTER."""
    return PREFIX + old


def revert_target(text: str) -> str:
    """The old table a revert's checkpoint brings back (revert_text's inverse)."""
    if not text.startswith(PREFIX):
        raise RevertRefused(f"the checkpoint's {text!r} names no old table",
                            hint="run `onlineddl cleanup`, then `onlineddl revert` again")
    return text[len(PREFIX):]


@dataclass(frozen=True)
class LastSwap:
    """The most recent swap of T, the one a revert undoes."""
    old: OldTable          # the recorded old table the revert brings back
    swap: SwapRecord       # its swap's record
    # The old table's definition when this revert (or its resume) set out: every check
    # and the flushes' way of writing are chosen from it (check_target_unchanged).
    definition: str


def latest(session: Session, flavor: MySQL, database: str, table: str) -> LastSwap:
    """The most recent swap of T, if it can be reverted."""
    olds = oldtables.recorded(session, database, table)
    if not olds:
        raise RevertRefused(
            f"{database}.{table} has no recorded old table: onlineddl can only revert a "
            "swap it recorded (a `migrate` that kept its old table, or a `revert`)",
            hint="`onlineddl status` lists the recorded old tables")
    old = olds[-1]
    earlier = "" if len(olds) < 2 else (
        f"; only the most recent swap can be reverted (the older old tables "
        f"{', '.join(o.name for o in olds[:-1])} would need the binlog replayed through "
        "every schema T had since)")
    swap = check_record(session, flavor, database, table, old, earlier)
    return LastSwap(old, swap, definition(session, database, old.name))


def record_of(session: Session, database: str, table: str, name: str) -> LastSwap | None:
    """The record of the old table a resumed revert brings back, unchecked (after the
    swap it is T); None once forgotten (the revert's cleanup did that)."""
    for old in oldtables.recorded(session, database, table):
        if old.name == name and old.swap is not None:
            return LastSwap(old, old.swap, definition(session, database, name))
    return None


def definition(session: Session, database: str, table: str) -> str:
    """SHOW CREATE TABLE without the name and the AUTO_INCREMENT counter (the cutover
    carries T's counter over); "" when the table is gone."""
    if not session.scalar("SELECT COUNT(*) FROM information_schema.TABLES "
                          "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s", (database, table)):
        return ""
    row = session.query_one(f"SHOW CREATE TABLE {sql.qualified(database, table)}")
    assert row is not None
    return normalized_shape(str(row[1]))


def check_target_unchanged(session: Session, database: str, table: str, last: LastSwap) -> None:
    """Under the write block, before the swap: the old table must still have the
    definition the revert set out with. Another session's ALTER of it meanwhile (a
    UNIQUE key added, a column changed) invalidates what was chosen from it: a REPLACE
    under a UNIQUE key it did not know deletes rows; T would be swapped for a table
    nobody checked. Asked at each cutover attempt, the last look before the RENAME."""
    now = definition(session, database, last.old.name)
    if now == last.definition:
        return
    raise TableChanged(
        f"{database}.{last.old.name}, which the revert brings back, was changed by another "
        f"session during the revert (its definition differs from the one the revert set "
        f"out with); {table} was not swapped",
        hint=f"{table} is unchanged; {last.old.name} holds some of the writes made since "
             f"its swap. Run `onlineddl cleanup --database {database} --table {table}` to "
             "discard the revert, then `onlineddl revert` again (it checks the table as it "
             "is now), or migrate back with `onlineddl migrate`")


def check_record(session: Session, flavor: MySQL, database: str, table: str,
                 old: OldTable, earlier: str, *, from_swap: bool = True) -> SwapRecord:
    """The record can be reverted. `from_swap`: the binlog from the swap on is still
    on the server; a resumed revert reads it only from its checkpoint's position
    (resume.decide checks that one), so the files before may be purged."""
    where = f"{database}.{old.name}"
    if not old.exists:
        raise RevertRefused(f"the most recent old table of {table}, {where}, is gone"
                            + earlier, hint="nothing to revert to; T is unchanged")
    current = shadow_identity(session, database, old.name)
    if not identity_matches(old.identity, current):
        raise RevertRefused(
            f"{where} is not the old table onlineddl recorded: its columns changed, or "
            "another table took its name" + earlier,
            hint="revert by hand if you know what it holds; onlineddl will not swap it in")
    swap = old.swap
    if swap is None:
        raise RevertRefused(f"{where} was recorded by an onlineddl version without "
                            "`revert`: its swap position and column mapping are unknown",
                            hint="revert by hand, or migrate back with `onlineddl migrate`")
    here = flavor.server_identity(session)
    if swap.server and swap.server != here:
        raise RevertRefused(
            f"the swap that kept {where} ran on another server ({swap.server}); this is "
            f"{here}: its binlog position means nothing here",
            hint="migrate back with `onlineddl migrate` instead")
    now = shadow_identity(session, database, table)
    if swap.table_identity.split(" ")[-1:] != now.split(" ")[-1:]:
        raise RevertRefused(
            f"the columns of {database}.{table} changed since the swap that kept "
            f"{old.name} (another ALTER)", hint="migrate back with `onlineddl migrate`")
    if from_swap and not flavor.position_available(session, swap.position):
        raise RevertRefused(
            f"the binlog since the swap that kept {where} was purged (it starts after "
            f"{swap.position}): the writes made to {table} since cannot be replayed",
            hint="migrate back with `onlineddl migrate`; keep binlogs longer "
                 "(binlog_expire_logs_seconds) than you may want to revert")
    return swap


def check_relations(session: Session, database: str, table: str) -> None:
    """T's triggers and foreign keys (its own or other tables' to it) would not come
    along: the swap made by the migration left the old table without them, and a revert
    that swapped it back would drop them silently. Refused until revert carries them."""
    found = [f"trigger {t.name}" for t in triggers.load(session, database, table)]
    found += [f"foreign key {fk.describe()}" for fk in foreignkeys.load(session, database, table)]
    found += [f"foreign key {fk.describe()}"
              for fk in foreignkeys.referencing(session, database, table)]
    if found:
        raise RevertRefused(
            f"{database}.{table} has {', '.join(found)}; revert does not carry triggers or "
            "foreign keys to the table it brings back yet, so they would be lost",
            hint=f"drop them, revert, then create them again on {table}; or migrate back "
                 "with `onlineddl migrate` (which carries them); nothing was changed")


def inverse_mapping(source: TableInfo, target: TableInfo, swap: SwapRecord) -> ColumnMapping:
    """T's columns (source) into the old table's (target), from the swap's pairs."""
    pairs = [(t, o) for o, t in swap.pairs]
    missing = [f"{o} <- {t}" for t, o in pairs
               if not source.has_column(t) or not target.has_column(o)]
    if missing:
        raise RevertRefused(f"the recorded column mapping no longer matches the tables: "
                            f"{', '.join(missing)}", hint="migrate back with `onlineddl migrate`")
    fed = {o.lower() for _, o in pairs}
    unfed = tuple(c.name for c in target.columns if c.name.lower() not in fed
                  and not c.generated)
    left = tuple(c.name for c in source.columns
                 if c.name.lower() not in {t.lower() for t, _ in pairs})
    converts = []
    for t, o in pairs:
        conversion.check_convertible(source.column(t), target.column(o))
        converts.append(conversion.copy_expr(source.column(t), target.column(o), "{}"))
    renamed = tuple((source.column(t).name, target.column(o).name) for t, o in pairs
                    if t.lower() != o.lower())
    plain = all(c == "{}" for c in converts)
    return ColumnMapping(tuple(source.column(t).name for t, _ in pairs),
                         tuple(target.column(o).name for _, o in pairs), left, unfed,
                         renamed, () if plain else tuple(converts))


def check_unfed(session: Session, target: TableInfo, mapping: ColumnMapping) -> None:
    """Columns only the old table has must be able to take a value for new rows, and
    keeping their values must not meet another UNIQUE key (see the module docstring)."""
    unfed = [target.column(c) for c in mapping.added]
    stuck = [c.name for c in unfed if c.no_default]
    if stuck:
        raise RevertRefused(
            f"{target.name} has column(s) {', '.join(stuck)} (dropped by the migration) "
            "NOT NULL without a DEFAULT: rows inserted since the swap would have no value "
            "for them", hint="give them a DEFAULT on the old table "
                             f"(ALTER TABLE {target.name} ALTER COLUMN ... SET DEFAULT ...), "
                             "then revert")
    if not unfed:
        return
    # Besides the key the revert walks (keys.choose set it on `target`): the primary
    # key, or a UNIQUE NOT NULL key of a table without one.
    others = [k.name for k in load_unique_keys(session, target.database, target.name)
              if k.name != target.key_name]
    if others:
        raise RevertRefused(
            f"{target.name} has column(s) {', '.join(c.name for c in unfed)} the current "
            f"table lacks and UNIQUE key(s) {', '.join(others)} besides the one the revert walks: "
            "onlineddl cannot keep those columns' values safely under another UNIQUE key "
            "yet", hint="migrate back with `onlineddl migrate` (the dropped columns' old "
                        "values are in the old table)")


def check_fit(dsn: Dsn, source: TableInfo, target: TableInfo,
              mapping: ColumnMapping) -> None:
    """Every current value of T's columns must fit the old column it goes back into:
    written in strict mode into a temporary column of the old type, the server says
    which does not (a widened INT, a longer VARCHAR, NULLs in a formerly NOT NULL
    column). The same strict mode makes later writes that do not fit stop the run."""
    exprs = dict(zip(mapping.target, mapping.source_exprs(), strict=True))
    narrowed = [(source.column(s), target.column(t))
                for s, t in zip(mapping.source, mapping.target, strict=True)
                if not conversion.same_type(source.column(s), target.column(t))
                or (source.column(s).nullable and not target.column(t).nullable)]
    if not narrowed:
        return
    session = Session(dsn, name="revert-fit")    # strict, as every session
    try:
        for new, old in narrowed:
            _probe(session, source, new, old, exprs[old.name])
    finally:
        session.close()


def _probe(session: Session, source: TableInfo, new: Column, old: Column, expr: str) -> None:
    probe = sql.qualified(source.database, "_onlineddl_revert_fit")
    session.execute(f"CREATE TEMPORARY TABLE {probe} (v {_definition(old)})")
    try:
        session.execute(f"INSERT INTO {probe} (v) SELECT {expr} "
                        f"FROM {sql.qualified(source.database, source.name)}")
    except OnlineDDLError as err:
        raise RevertRefused(
            f"values of {source.name}.{new.name} ({new.column_type}) do not fit the old "
            f"column {old.name} ({old.column_type}{'' if old.nullable else ' NOT NULL'}): "
            f"{err.message}", hint="change those rows so they fit, or migrate back with "
                                   "`onlineddl migrate`; nothing was changed") from err
    finally:
        session.execute(f"DROP TEMPORARY TABLE IF EXISTS {probe}")


def check_collisions(session: Session, source: TableInfo, target: TableInfo,
                     mapping: ColumnMapping) -> None:
    """No two rows of T may be one value under a UNIQUE key of the old table that T
    does not enforce alike: the key the revert walks compared more loosely there (a
    migration that made its collation stricter: 'a' and 'A' two keys in T, one in the
    old table), or another UNIQUE key T lacks or compares more strictly. The old table
    could not hold both (a plain ALTER back would fail too). Rows written later are
    checked by every flush (uniques.check_key_collisions, write_guarded)."""
    keys = [(target.run_key.describe(), key_as_compared(source, target))]
    keys += [(c.label, c.values) for c in unique_checks(session, source, target, mapping)
             if not c.enforced and c.values]
    for label, exprs in keys:
        if exprs:
            _probe_collisions(session, source, target, label, exprs)


def _probe_collisions(session: Session, source: TableInfo, target: TableInfo, label: str,
                      exprs: tuple[str, ...]) -> None:
    table = sql.qualified(source.database, source.name)
    listed, not_null = ", ".join(exprs), " AND ".join(f"{e} IS NOT NULL" for e in exprs)
    found = session.query(f"SELECT {listed} FROM {table} WHERE {not_null} GROUP BY {listed} "
                          "HAVING COUNT(*) > 1 LIMIT 3")
    if not found:
        return
    values = [tuple(r) for r in found]
    where, params = sql.key_in(exprs, values[:1], quoted=True)
    rows = session.query(f"SELECT {sql.column_list(source.key)}, {listed} FROM {table} "
                         f"WHERE {where} LIMIT 10", params)
    shown = ", ".join(_row(tuple(r), len(source.key)) for r in rows)
    raise RevertRefused(
        f"{source.name} holds rows that {target.name}'s {label} takes for one value: "
        f"{', '.join(repr(v[0] if len(v) == 1 else v) for v in values)} (the rows with "
        f"{'/'.join(source.key)} {shown} for the first); {target.name} cannot hold them "
        "both (the migration made the key compare more strictly, or dropped it)",
        hint=f"change or delete rows of {source.name} so those values differ as "
             f"{target.name} compares them, then revert; or migrate back with `onlineddl "
             "migrate` (a plain ALTER back would fail on them too); nothing was changed")


def _row(row: tuple[object, ...], keys: int) -> str:
    """A row's key, and its values of the UNIQUE key when that is another one."""
    key, value = row[:keys], row[keys:]
    text = repr(key[0] if keys == 1 else key)
    if tuple(str(v) for v in key) != tuple(str(v) for v in value):
        text += f" ({', '.join(repr(v) for v in value)})"
    return text


def _definition(col: Column) -> str:
    text = col.column_type
    if col.charset:
        text += f" CHARACTER SET {col.charset} COLLATE {col.collation}"
    return text + ("" if col.nullable else " NOT NULL")


def start_after_swap(session: Session, flavor: MySQL, config: MigrationConfig,
                     last: LastSwap) -> BinlogPosition:
    """Where the revert reads the binlog from: right after the swap's RENAME, found by
    reading from the drain position recorded at the swap (no change to T between)."""
    swap = last.swap
    names = dataclasses.replace(Artifacts.for_table(config.table, last.old.name),
                                shadow=swap.shadow)   # the swap's own names
    found = statement_after(session, flavor, config, last.old.name, swap.position)
    if found is None or found[1].after is None:
        raise RevertRefused(
            f"the swap's RENAME was not found in the binlog after {swap.position} within "
            f"{config.tuning.rename_seen_timeout:.0f}s", hint="run the revert again")
    late, change = found
    if late or not is_our_rename(change.query, names):
        raise RevertRefused(
            f"the binlog after {swap.position} does not show the recorded swap first "
            f"({late} row change(s), then {change.query[:200]!r})",
            hint="migrate back with `onlineddl migrate`")
    assert change.after is not None
    log.info("revert: reading %s's changes since the swap, from %s", config.table,
             change.after)
    return change.after

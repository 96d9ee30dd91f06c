"""Tables in foreign-key relations: what is supported, what is refused and why.

T is a child (its own FOREIGN KEYs reference parents):

- The shadow is built with `CREATE TABLE ... LIKE`, which drops the constraints, and its
  indexes for them are made its own (own_indexes says why). Setting up, it gets T's
  constraints under temporary names and the operator's ALTER runs on it (empty) with
  foreign_key_checks on: the server's own verdict on the ALTER with the constraints
  present (a dropped column or index a constraint needs, a changed column type: errors
  1553, 1828, 1832 as a plain ALTER gives them).
- Only RESTRICT / NO ACTION constraints are carried. They are taken off again
  (release()) until the cutover: on the lagging shadow they would refuse the
  application's parent deletes for a child row T has already lost. Under the cutover's
  write block, after the drain, they are added back with foreign_key_checks=0 and
  ALGORITHM=INPLACE (metadata only, no rebuild, no row check); a failed attempt takes
  them off again, still under the block where their locks are free at once (MariaDB's
  two-connection swap), else right after it (DROP FOREIGN KEY waits for any write
  transaction open on a parent).
- Before they are added back, T's constraints are read again (check_unchanged): DDL on
  a parent (RENAME TABLE, RENAME COLUMN, DROP TABLE with checks off) changes them
  without any DDL on T, which is all the applier watches for. A difference stops the
  run (TableChanged), T unchanged; --resume reads them again.
- Constraint names are unique per schema, so on the shadow they carry temporary names:
  `<T>_ibfk_N` (the server's own names) become `<_T_new>_ibfk_N`, which the swap's
  RENAME itself turns into `<T>_ibfk_N` (InnoDB renames constraints named after the
  table); any other name N becomes `_odl_N`.
- After the checksum, T's referential integrity is verified: for each constraint, a
  chunked anti-join finds a row whose parent is missing (rows another session wrote with
  foreign_key_checks=0). One found stops the run before the swap (DataError), changing
  nothing: onlineddl never "repairs" data. It is a check as of then: what another
  session writes with checks off after it is carried as the server took it, as a plain
  in-place ALTER would keep it.
- After the swap (finish()): the old table's constraints are dropped (a backup must not
  refuse or receive the parents' changes), then T's `_odl_N` constraints are renamed to
  N in one ALTER (DROP FOREIGN KEY + ADD CONSTRAINT, INPLACE with checks off). Every
  step is idempotent from what the server shows, so --resume finishes it.

Refused, with every related constraint named (exit 5, nothing created):

- T is a parent (other tables reference it): handled by fkparents.py (the children's
  constraints re-pointed to the new table under the write block), refused there where
  it cannot be.
- T's constraint has ON DELETE / ON UPDATE CASCADE or SET NULL. The server applies a
  parent's cascade to T without writing it to the binlog (verified on MariaDB 10.11: a
  parent DELETE logs only the parent's row), so the applier never sees it. Tried and
  dropped: the same constraint on the shadow for the whole run, so the cascade reaches
  both tables in the application's transaction, with onlineddl's own writes checked
  (a write from a read taken before the cascade then fails with 1452 and is read
  again). It leaves a race: when the parent key is deleted and inserted again between
  that read and the write, the check passes and the stale row comes back. A test under
  writers that delete, re-insert and re-key parents found two rows differing at the
  checksum. Closing it needs locking reads in the copy and in every flush. Also, a
  parent DELETE waiting for T under the cutover's block holds the shadow (its child
  too) meanwhile, so adding the RESTRICT constraints to it there timed out every attempt.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from onlineddl import faults, sql
from onlineddl.db import ER_LOCK_WAIT_TIMEOUT, Session
from onlineddl.errors import (
    DatabaseError,
    DataError,
    InvalidAlter,
    OnlineDDLError,
    TableChanged,
)
from onlineddl.table import MAX_IDENT, Artifacts, ColumnMapping, TableInfo

log = logging.getLogger(__name__)

TEMP_PREFIX = "_odl_"
CHECKING_RULES = ("RESTRICT", "NO ACTION")
LIVE_RULES = ("CASCADE", "SET NULL")     # the server changes T when a parent changes
OLD_STAMP = len("_old_20261129_123456") + 1   # the old table's name is `_` T this
CHECK_CHUNK = 10_000                          # rows per anti-join chunk
SHOWN_ORPHANS = 5


@dataclass(frozen=True)
class ForeignKey:
    database: str             # the child's
    table: str                # the child
    name: str
    columns: tuple[str, ...]
    ref_database: str
    ref_table: str
    ref_columns: tuple[str, ...]
    on_update: str
    on_delete: str
    # The server's own text from REFERENCES on (SHOW CREATE TABLE): it writes the rules
    # it was given (ON UPDATE NO ACTION) and leaves out the default, so re-adding the
    # constraint with this text gives back the same SHOW CREATE TABLE.
    references: str = ""
    # The parent's key it references, as the server last found it (load()); None when it
    # found none: the parent is missing, or has no index on those columns. Not part of
    # the constraint's identity.
    parent_key: str | None = dataclasses.field(default=None, compare=False)

    @property
    def live(self) -> bool:
        """Does a parent's change change T (CASCADE, SET NULL), without a binlog row?"""
        return self.on_delete in LIVE_RULES or self.on_update in LIVE_RULES

    def describe(self) -> str:
        return (f"{self.database}.{self.table}.{self.name} ({', '.join(self.columns)}) -> "
                f"{self.ref_database}.{self.ref_table} ({', '.join(self.ref_columns)}) "
                f"ON DELETE {self.on_delete} ON UPDATE {self.on_update}")

    def clause(self, name: str, columns: Sequence[str] | None = None) -> str:
        """ADD CONSTRAINT text, under `name`, on `columns` (default: its own)."""
        if not self.references:
            raise ValueError(f"no REFERENCES text for the foreign key {self.name}")
        return (f"ADD CONSTRAINT {sql.ident(name)} FOREIGN KEY "
                f"({sql.column_list(columns or self.columns)}) {self.references}")


def _collect(rows: Sequence[tuple[object, ...]]) -> tuple[ForeignKey, ...]:
    found: dict[tuple[str, str, str], list[tuple[object, ...]]] = {}
    for r in rows:
        found.setdefault((str(r[0]), str(r[1]), str(r[2])), []).append(r)
    return tuple(ForeignKey(db, table, name, tuple(str(r[3]) for r in parts),
                            str(parts[0][4]), str(parts[0][5]),
                            tuple(str(r[6]) for r in parts),
                            str(parts[0][7]), str(parts[0][8]))
                 for (db, table, name), parts in found.items())


# A table's own constraints, read as two lookups by its name: joined in SQL, MariaDB
# 10.11 reads KEY_COLUMN_USAGE of every table in every database for the join (48 ms on
# a server with 2,300 tables, against 0.15 ms for each lookup), and T's are read under
# the cutover's write block.
_KEY_COLUMNS = (
    "SELECT CONSTRAINT_NAME, COLUMN_NAME, REFERENCED_TABLE_SCHEMA, REFERENCED_TABLE_NAME, "
    "REFERENCED_COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE "
    "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s AND REFERENCED_TABLE_NAME IS NOT NULL "
    "ORDER BY CONSTRAINT_NAME, ORDINAL_POSITION")
_RULES = (
    "SELECT CONSTRAINT_NAME, UPDATE_RULE, DELETE_RULE, UNIQUE_CONSTRAINT_NAME "
    "FROM information_schema.REFERENTIAL_CONSTRAINTS "
    "WHERE CONSTRAINT_SCHEMA = %s AND TABLE_NAME = %s")


def _own(session: Session, database: str, table: str) -> tuple[ForeignKey, ...]:
    """The table's own foreign keys, with their parent keys (no REFERENCES text)."""
    rules = {str(r[0]): r for r in session.query(_RULES, (database, table))}
    rows = [(database, table, name, column, ref_db, ref_table, ref_column,
             rules[str(name)][1], rules[str(name)][2])
            for name, column, ref_db, ref_table, ref_column
            in session.query(_KEY_COLUMNS, (database, table)) if str(name) in rules]
    key = {name: None if r[3] is None else str(r[3]) for name, r in rules.items()}
    return tuple(dataclasses.replace(fk, parent_key=key[fk.name]) for fk in _collect(rows))


def load(session: Session, database: str, table: str) -> tuple[ForeignKey, ...]:
    """The table's own foreign keys (it is their child), with their REFERENCES text."""
    found = _own(session, database, table)
    if not found:
        return found
    row = session.query_one(f"SHOW CREATE TABLE {sql.qualified(database, table)}")
    texts = references_text(str(row[1]) if row else "")
    return tuple(dataclasses.replace(fk, references=texts.get(fk.name, "")) for fk in found)


def references_text(create_sql: str) -> dict[str, str]:
    """Constraint name -> its text from REFERENCES on, from SHOW CREATE TABLE."""
    out = {}
    for line in create_sql.splitlines():
        m = re.match(r"\s*CONSTRAINT `((?:[^`]|``)*)` FOREIGN KEY \(.*?\) (REFERENCES .*?),?$",
                     line)
        if m:
            out[m.group(1).replace("``", "`")] = m.group(2)
    return out


def referencing(session: Session, database: str, table: str) -> tuple[ForeignKey, ...]:
    """Foreign keys of any table, in any database (itself included), that reference it.
    The tables holding them come from one scan of REFERENTIAL_CONSTRAINTS, then each
    one's keys by its name: joined with KEY_COLUMN_USAGE in SQL, MariaDB 10.11 read the
    keys of every table on the server (2,300 tables: 92 ms against 45 ms; the cutover
    asks under its write block)."""
    children = session.query(
        "SELECT DISTINCT CONSTRAINT_SCHEMA, TABLE_NAME FROM "
        "information_schema.REFERENTIAL_CONSTRAINTS WHERE UNIQUE_CONSTRAINT_SCHEMA = %s "
        "AND REFERENCED_TABLE_NAME = %s ORDER BY CONSTRAINT_SCHEMA, TABLE_NAME",
        (database, table))
    return tuple(fk for schema, child in children
                 for fk in _own(session, str(schema), str(child))
                 if (fk.ref_database, fk.ref_table) == (database, table))


# --- preflight ---------------------------------------------------------------------------

def check_table(session: Session, info: TableInfo, *, resuming: bool = False,
                dropped: Sequence[str] = (), added: Sequence[str] = ()
                ) -> tuple[ForeignKey, ...]:
    """Refuse (exit 5, nothing created) what is not supported; return T's own keys the
    new table keeps (all but the ALTER's DROP FOREIGN KEYs, `dropped`). (`resuming`: T
    may be the new table, its constraints still under temporary names.)"""
    # T as a parent (other tables reference it): fkparents.check.
    own = load(session, info.database, info.name)
    rules = CHECKING_RULES + LIVE_RULES
    odd = [fk for fk in own if fk.on_delete not in rules or fk.on_update not in rules]
    if odd:
        raise InvalidAlter(
            f"{info.database}.{info.name} has foreign key(s) with a rule onlineddl does "
            "not know: " + "; ".join(fk.describe() for fk in odd),
            hint="onlineddl changes nothing here; use a plain ALTER TABLE")
    live = [fk for fk in own if fk.live]
    if live:
        raise InvalidAlter(
            f"{info.database}.{info.name} has foreign key(s) with referential actions: "
            + "; ".join(fk.describe() for fk in live)
            + ". The server applies a parent's CASCADE / SET NULL to the child without "
            "writing it to the binlog, so the applier never sees it; carrying the "
            "constraint on the new table as well would let the parent's change reach both "
            "tables, but a row onlineddl copies or re-syncs from a read taken just before "
            "such a change, checked against a parent key that was meanwhile deleted and "
            "inserted again, would come back",
            hint="onlineddl changes nothing here; change the constraint to RESTRICT for the "
                 "migration (drop it and add it back in place with foreign_key_checks=0), "
                 "or use a plain ALTER TABLE")
    unread = [fk.name for fk in own if not fk.references and fk.name not in dropped]
    if unread:
        raise InvalidAlter(
            f"the REFERENCES text of {info.database}.{info.name}'s foreign key(s) "
            f"{', '.join(unread)} could not be read from SHOW CREATE TABLE, so onlineddl "
            "cannot add them to the new table", hint="onlineddl changes nothing here; use a "
            "plain ALTER TABLE, and please report the table's SHOW CREATE TABLE")
    if not resuming:
        _check_names(info, own)
        _check_dropped(info, own, dropped)
        _check_numbering(info, own, dropped, added)
    return tuple(fk for fk in own if fk.name not in dropped)


def _check_dropped(info: TableInfo, own: tuple[ForeignKey, ...], dropped: Sequence[str]
                   ) -> None:
    """DROP FOREIGN KEY of a constraint T does not have fails as the server's (1091)."""
    names = {fk.name for fk in own}
    missing = [name for name in dropped if name not in names]
    if missing:
        raise InvalidAlter(f"Can't DROP FOREIGN KEY `{missing[0]}`; check that it exists "
                           f"({info.database}.{info.name} has "
                           f"{', '.join(sorted(names)) or 'no foreign keys'})",
                           hint="fix the ALTER; the table is unchanged")


def _check_numbering(info: TableInfo, own: tuple[ForeignKey, ...], dropped: Sequence[str],
                     added: Sequence[str]) -> None:
    """The server names a new unnamed constraint T_ibfk_<highest N + 1>, counting one the
    same ALTER drops (seen on MariaDB 10.11: T_ibfk_2 after dropping T_ibfk_1). The
    shadow never holds a dropped one, so it would count one less: refused."""
    def top(names: Sequence[str]) -> int:
        return max((int(n) for n in (_auto_number(x, info.name) for x in names) if n),
                   default=0)

    kept_names = [fk.name for fk in own if fk.name not in dropped]
    if "" in added and top(dropped) > top(kept_names):
        raise InvalidAlter(
            f"the ALTER drops {info.name}_ibfk_{top(dropped)} and adds a foreign key "
            "without a name, which the server would number after the dropped one; "
            "onlineddl cannot reproduce that name",
            hint="name the new constraint (ADD CONSTRAINT name FOREIGN KEY ...), or drop "
                 "the old one in a run of its own; the table is unchanged")


def _check_names(info: TableInfo, own: tuple[ForeignKey, ...]) -> None:
    shadow = Artifacts.for_table(info.name).shadow
    for fk in own:
        why = _name_problem(fk, info.name, shadow)
        if not why and "_ibfk_" in info.database and _auto_number(fk.name, info.name):
            # Seen on MariaDB 10.11: RENAME then finds "_ibfk_" in the database part of
            # the constraint's internal name and makes t_ibfk_1_<...>/_t_new_ibfk_1 of it.
            why = "the database's name contains _ibfk_, which the swap's RENAME mistakes " \
                  "for the constraint's"
        if why:
            raise InvalidAlter(
                f"the foreign key {fk.describe()} has a name onlineddl cannot carry across "
                f"the swap: {why}",
                hint="onlineddl changes nothing here; rename the constraint first (drop "
                     "and add it with foreign_key_checks=0, in place), or use a plain "
                     "ALTER TABLE")


def _name_problem(fk: ForeignKey, table: str, shadow: str) -> str:
    if fk.name.startswith(TEMP_PREFIX):
        return f"it starts with {TEMP_PREFIX}, onlineddl's prefix for temporary names"
    if len(temp_name(fk.name, table, shadow)) > MAX_IDENT:
        return "its temporary name would pass 64 characters"
    if _auto_number(fk.name, table) is not None and len(fk.name) + OLD_STAMP > MAX_IDENT:
        # The RENAME renames it with the table: MariaDB cuts the name at 64 characters,
        # MySQL may refuse the RENAME.
        return ("the swap's RENAME renames it after the old table, and that name would "
                "pass 64 characters")
    return ""


def _auto_number(name: str, table: str) -> str | None:
    """N when `name` is the server's own `<table>_ibfk_N`."""
    prefix = f"{table}_ibfk_"
    rest = name[len(prefix):]
    return rest if name.startswith(prefix) and rest.isdigit() else None


def temp_name(name: str, table: str, shadow: str) -> str:
    """The constraint's name on the shadow (see the module docstring)."""
    number = _auto_number(name, table)
    return f"{shadow}_ibfk_{number}" if number is not None else TEMP_PREFIX + name


def temp_names(names: Artifacts, own: tuple[ForeignKey, ...]) -> list[str]:
    """The names T's carried constraints have on the shadow."""
    return [temp_name(fk.name, names.table, names.shadow) for fk in own]


def same_across_rename(create_sql: str, table: str) -> str:
    """SHOW CREATE TABLE text as the swap's RENAME leaves it alone: InnoDB renames the
    server's own constraint names with the table (`t_ibfk_1` becomes
    `_t_old_<stamp>_ibfk_1`), and SHOW CREATE TABLE lists constraints by name."""
    own = "CONSTRAINT " + sql.ident(table)[:-1] + "_ibfk_"
    lines = [line.rstrip(",").replace(own, "CONSTRAINT `_ibfk_")
             for line in create_sql.splitlines()]
    rules = sorted(line for line in lines if line.lstrip().startswith("CONSTRAINT "))
    rest = iter(rules)
    return "\n".join(next(rest) if line.lstrip().startswith("CONSTRAINT ") else line
                     for line in lines)


def final_name(name: str) -> str:
    return name[len(TEMP_PREFIX):] if name.startswith(TEMP_PREFIX) else name


# --- the shadow ----------------------------------------------------------------------------

def own_indexes(session: Session, database: str, shadow: str,
                own: tuple[ForeignKey, ...]) -> None:
    """Make the (empty) shadow's indexes for T's constraints its own. An index the server
    created for a constraint is marked as generated, and `CREATE TABLE ... LIKE` copies
    the mark; adding a constraint later replaces such an index, renamed after the
    constraint and moved to the end (MariaDB 10.11: `KEY pid` came back as
    `KEY _T_new_ibfk_1`, after the indexes the ALTER added). Renamed by hand (away and
    back, in place), an index loses the mark: the constraints then reuse it, names and
    order kept."""
    if not own:
        return
    rows = session.query(
        "SELECT INDEX_NAME, COLUMN_NAME FROM information_schema.STATISTICS "
        "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s AND INDEX_NAME <> 'PRIMARY' "
        "ORDER BY INDEX_NAME, SEQ_IN_INDEX", (database, shadow))
    columns: dict[str, list[str]] = {}
    for name, column in rows:
        columns.setdefault(str(name), []).append(str(column).lower())
    leads = {tuple(c.lower() for c in fk.columns) for fk in own}
    names = [n for n, cols in columns.items()
             if any(tuple(cols[:len(lead)]) == lead for lead in leads)]
    if not names:
        return
    away = {n: f"{TEMP_PREFIX}ix{i}" for i, n in enumerate(names)}
    _alter(session, database, shadow,
           [f"RENAME INDEX {sql.ident(n)} TO {sql.ident(t)}" for n, t in away.items()])
    _alter(session, database, shadow,
           [f"RENAME INDEX {sql.ident(t)} TO {sql.ident(n)}" for n, t in away.items()])


def without_foreign_keys(create_sql: str) -> str:
    """SHOW CREATE TABLE text without its FOREIGN KEY lines."""
    kept = [line for line in create_sql.splitlines() if not _is_foreign_key(line)]
    for i, line in enumerate(kept[:-1]):   # the definition list's last line has no comma
        if kept[i + 1].startswith(")") and line.endswith(","):
            kept[i] = line[:-1]
    return "\n".join(kept)


def _is_foreign_key(line: str) -> bool:
    return re.match(r"\s*CONSTRAINT `(?:[^`]|``)*` FOREIGN KEY ", line) is not None


@contextmanager
def checks_off(session: Session) -> Iterator[None]:
    """foreign_key_checks=0 on this session only (never global), restored after. Every
    ALTER run under it names ALGORITHM=INPLACE: should the setting be lost (a reconnect),
    the server refuses (error 1846) instead of rebuilding the table."""
    before = int(session.scalar("SELECT @@SESSION.foreign_key_checks") or 0)
    session.execute("SET SESSION foreign_key_checks = 0")
    try:
        yield
    finally:
        try:
            session.execute("SET SESSION foreign_key_checks = %s", (before,))
        except OnlineDDLError as err:
            log.warning("could not restore foreign_key_checks: %s", err.message)


def _alter(session: Session, database: str, table: str, clauses: list[str]) -> None:
    session.execute(f"ALTER TABLE {sql.qualified(database, table)} "
                    + ", ".join(clauses) + ", ALGORITHM=INPLACE")


def attach(session: Session, database: str, names: Artifacts, own: tuple[ForeignKey, ...],
           mapping: ColumnMapping | None) -> None:
    """Give the shadow T's constraints under their temporary names (those it lacks):
    in place, metadata only, rows unchecked. `mapping` carries renamed columns; None
    while the shadow still has T's columns (setup)."""
    if not own:
        return
    present = {fk.name for fk in load(session, database, names.shadow)}
    clauses = [fk.clause(temp_name(fk.name, names.table, names.shadow),
                         _columns(fk, mapping))
               for fk in own if temp_name(fk.name, names.table, names.shadow) not in present]
    if not clauses:
        return
    with checks_off(session):
        _alter(session, database, names.shadow, clauses)
    log.info("foreign keys added to %s: %d", names.shadow, len(clauses))


def check_unchanged(session: Session, database: str, table: str,
                    own: tuple[ForeignKey, ...], dropped: Sequence[str]) -> None:
    """Under the cutover's write block, before attach(): T's constraints as the server
    has them now must be those the run read at preflight (`own`, kept by the ALTER, and
    `dropped`, the ALTER's DROP FOREIGN KEYs), each with its parent's key. Another
    session's DDL on a parent (RENAME TABLE, RENAME COLUMN, DROP TABLE with
    foreign_key_checks=0) changes them without any DDL on T, which is all the applier
    watches for; the new table would get the preflight's text, to a table or column
    that may no longer be there (accepted with checks off). Any difference: TableChanged,
    T unchanged. Two lookups by T's name, a fraction of a millisecond."""
    found = {fk.name: fk for fk in _own(session, database, table)}
    wanted = {fk.name: dataclasses.replace(fk, references="") for fk in own}
    problems = [f"{name} is gone" for name in [*wanted, *dropped] if name not in found]
    problems += [f"{fk.describe()} was added" for name, fk in found.items()
                 if name not in wanted and name not in dropped]
    problems += [f"{wanted[name].describe()} is now {fk.describe()}"
                 for name, fk in found.items() if name in wanted and fk != wanted[name]]
    if problems:
        raise TableChanged(
            f"{database}.{table}'s foreign keys changed during the run (DDL on a parent "
            f"table, such as RENAME TABLE or RENAME COLUMN, changes them without any DDL on "
            f"{table}): {'; '.join(problems)}; the swap was called off, {table} unchanged",
            hint="run the same command with --resume: it reads the constraints again and "
                 "carries them as they are then (or `onlineddl cleanup` and start again)")
    # Compared with preflight's: a server that shows no key for a sound constraint (none
    # seen on MariaDB 10.11, which opens the parent to find it) then stops nothing.
    lost = [found[name] for name, fk in wanted.items()
            if found[name].parent_key is None and fk.parent_key is not None]
    if lost:
        raise TableChanged(
            f"the parent table of {database}.{table}'s foreign key(s) "
            f"{'; '.join(fk.describe() for fk in lost)} is missing, or has no key on those "
            "columns any more (dropped with foreign_key_checks=0 during the run); the swap "
            f"was called off, {table} unchanged",
            hint="put the parent table (or its key) back, or drop the constraint from "
                 f"{table}, then run the same command with --resume")


def release(session: Session, database: str, names: Artifacts,
            own: tuple[ForeignKey, ...]) -> None:
    """Take off the shadow the constraints that must not be there while it lags behind
    T: a RESTRICT / NO ACTION one would refuse the application's parent deletes for a
    child row T has already lost."""
    if not own:
        return
    checking = {temp_name(fk.name, names.table, names.shadow) for fk in own if not fk.live}
    present = [fk.name for fk in load(session, database, names.shadow)
               if fk.name in checking]
    if not present:
        return
    with checks_off(session):
        _alter(session, database, names.shadow,
               [f"DROP FOREIGN KEY {sql.ident(name)}" for name in present])
    log.info("foreign keys off %s until the cutover: %s", names.shadow, ", ".join(present))


def release_without_waiting(session: Session, database: str, names: Artifacts,
                            own: tuple[ForeignKey, ...]) -> None:
    """release(), while a failed attempt still blocks T, only if its locks are free now
    (lock_wait_timeout 0): once T takes writes again the shadow lags, and a constraint
    still on it refuses a parent delete for a child row T has lost (1451). DROP FOREIGN
    KEY waits for every open write transaction on a parent (MariaDB 10.11: a metadata
    lock), and the application's usual one (a parent row, then its child in T) waits for
    T, so waiting here would hold the block to its bound. Never raises: the caller's
    release after the unblock (retried) does it then, and the attempt's own error is
    the one to report."""
    if not own:
        return
    try:
        before = int(session.scalar("SELECT @@SESSION.lock_wait_timeout") or 1)
        session.execute("SET SESSION lock_wait_timeout = 0")
        try:
            release(session, database, names, own)
        finally:
            session.execute("SET SESSION lock_wait_timeout = %s", (before,))
    except OnlineDDLError as err:
        waited = isinstance(err, DatabaseError) and err.errno == ER_LOCK_WAIT_TIMEOUT
        log.log(logging.INFO if waited else logging.WARNING,
                "foreign keys stay on %s until the write block ends: %s", names.shadow,
                "a transaction open on a parent table holds its lock" if waited
                else err.message)


def detach(session: Session, database: str, table: str) -> None:
    """Drop every constraint of `table` (the shadow, the old table): in place."""
    found = load(session, database, table)
    if not found:
        return
    with checks_off(session):
        _alter(session, database, table,
               [f"DROP FOREIGN KEY {sql.ident(fk.name)}" for fk in found])
    log.info("foreign keys dropped from %s: %s", table, ", ".join(fk.name for fk in found))


def _columns(fk: ForeignKey, mapping: ColumnMapping | None) -> tuple[str, ...]:
    if mapping is None:
        return fk.columns
    to_new = {old.lower(): new for old, new in zip(mapping.source, mapping.target,
                                                    strict=True)}
    missing = [c for c in fk.columns if c.lower() not in to_new]
    if missing:
        raise InvalidAlter(f"the ALTER drops column(s) {', '.join(missing)} that the foreign "
                           f"key {fk.name} uses", hint="a plain ALTER fails the same way; "
                           "drop the constraint first")
    return tuple(to_new[c.lower()] for c in fk.columns)


# --- referential integrity ----------------------------------------------------------------

def verify_integrity(session: Session, database: str, table: str, pk: Sequence[str],
                     own: tuple[ForeignKey, ...], between: Callable[[], None],
                     chunk: int = CHECK_CHUNK) -> None:
    """Every row of `table` whose key columns are all non-NULL has its parent row (the
    server's MATCH SIMPLE rule), checked chunk by chunk in primary-key order: a plain
    read, no locks; `between` runs after each chunk (the run's health checks). A missing
    parent stops the run (DataError) naming the rows."""
    if own:
        log.info("checking that every row of %s has its parent (%d constraint(s))", table,
                 len(own))
    for fk in own:
        found = _orphans(session, database, table, pk, fk, chunk, between)
        if found:
            raise DataError(
                f"{database}.{table} holds row(s) whose parent is missing for the foreign "
                f"key {fk.describe()}: primary key(s) {found[:SHOWN_ORPHANS]}; the swap "
                "would carry them into the new table unchecked",
                hint="they were written with foreign_key_checks=0; fix or delete them (or "
                     "add the parent rows), then run again; nothing was changed")


def _orphans(session: Session, database: str, table: str, pk: Sequence[str],
             fk: ForeignKey, chunk: int, between: Callable[[], None]
             ) -> list[tuple[object, ...]]:
    child, parent = sql.qualified(database, table), sql.qualified(fk.ref_database,
                                                                  fk.ref_table)
    keys = ", ".join(f"c.{sql.ident(c)}" for c in pk)
    present = " AND ".join(f"c.{sql.ident(c)} IS NOT NULL" for c in fk.columns)
    joined = " AND ".join(f"p.{sql.ident(r)} = c.{sql.ident(c)}"
                          for c, r in zip(fk.columns, fk.ref_columns, strict=True))
    lower: tuple[object, ...] | None = None
    while True:
        upper = _chunk_end(session, database, table, pk, lower, chunk)
        # The outer query's bare names are the child's own columns.
        where, params = sql.key_range(pk, lower, upper)
        rows = session.query(
            f"SELECT {keys} FROM {child} c WHERE {where} AND {present} AND NOT EXISTS "
            f"(SELECT 1 FROM {parent} p WHERE {joined}) LIMIT {SHOWN_ORPHANS}", params)
        if rows:
            return [tuple(r) for r in rows]
        if upper is None:
            return []
        lower = upper
        between()


def _chunk_end(session: Session, database: str, table: str, pk: Sequence[str],
               lower: tuple[object, ...] | None, chunk: int) -> tuple[object, ...] | None:
    text, params = sql.next_chunk_bound(database, table, tuple(pk), lower, chunk)
    row = session.query_one(text, params)
    return tuple(row) if row else None


# --- after the swap ------------------------------------------------------------------------

def finish(session: Session, database: str, names: Artifacts) -> None:
    """After the swap: the old table loses its constraints, T's get their names back.
    Idempotent: --resume runs it again from whatever the server shows."""
    if names.old:
        detach(session, database, names.old)
    faults.point("old_foreign_keys_dropped")
    temp = [fk for fk in load(session, database, names.table)
            if fk.name.startswith(TEMP_PREFIX)]
    if temp:
        clauses = [f"DROP FOREIGN KEY {sql.ident(fk.name)}" for fk in temp] + \
            [fk.clause(final_name(fk.name)) for fk in temp]
        with checks_off(session):
            _alter(session, database, names.table, clauses)
        log.info("foreign keys of %s renamed: %s", names.table,
                 ", ".join(final_name(fk.name) for fk in temp))
    faults.point("foreign_keys_renamed")


# --- the dry run ----------------------------------------------------------------------------

def describe(table: str, shadow: str, own: tuple[ForeignKey, ...], rows: int,
             dropped: Sequence[str] = (), added: Sequence[str] = ()) -> list[str]:
    """What the dry run says about related tables (`rows`: T's row estimate; `dropped`,
    `added`: the ALTER's DROP / ADD FOREIGN KEY names, "" for one the server names)."""
    if not (own or dropped or added):
        return ["  none: no table references this one and it has no foreign keys"]
    parents = sorted({f"{fk.ref_database}.{fk.ref_table}" for fk in own})
    # MySQL 8 documents it: LOCK TABLES also locks the tables related by a foreign key.
    lines = [f"  {table} is a child of {', '.join(parents)}; no parent table is changed "
             "or rebuilt (the cutover's write block may hold writes to it too)"] if own \
        else ["  no parent table is changed or rebuilt"]
    for fk in own:
        lines.append(f"  {fk.describe()}: added to {shadow} as "
                     f"{temp_name(fk.name, table, shadow)} under the write block (in place, "
                     f"no rebuild), named {fk.name} again after the swap; the old table "
                     "loses it")
    lines += [f"  {name}: dropped by the ALTER (the new table never has it)"
              for name in dropped]
    lines += [f"  {name or 'the new foreign key the server names'}: added by the ALTER, on "
              f"{shadow} from the start, so every row written to it is checked (a row "
              "whose parent is missing stops the run, and the application's deletes of "
              "parent rows the new table still references are refused meanwhile)"
              for name in added]
    if own:
        lines.append(f"  before the swap: every row's parent is checked, one anti-join per "
                     f"constraint over ~{rows} rows ({CHECK_CHUNK} rows at a time, about "
                     f"{max(1, -(-rows // CHECK_CHUNK)) * len(own)} reads in all); a "
                     "missing parent stops the run (rows written with foreign_key_checks=0 "
                     "after the check are kept as the server took them)")
    return lines

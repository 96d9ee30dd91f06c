"""Tables other tables reference (T is a foreign-key parent): the children's constraints
re-pointed to the new table under the cutover's write block, atomically by the RENAME.

`RENAME TABLE T TO _T_old, _T_new TO T` moves every constraint that referenced T to
`_T_old`, and every constraint that referenced `_T_new` to T (MariaDB 10.11, with
foreign_key_checks 0 or 1). So, under the write block, after the drain (`_T_new` holds
exactly T's rows and T takes no writes):

1. a marker row goes into `_T_fkgd`: the guard triggers on T (BEFORE UPDATE and BEFORE
   DELETE, created before the block, inert while the marker table is empty) then fail
   every UPDATE and DELETE on T with SQLSTATE 45000 and a message saying to run
   --resume;
2. each child's constraint X gets a twin `_odlp_X` that references `_T_new` (ADD, with
   foreign_key_checks=0 on this session only and ALGORITHM=INPLACE: metadata only, no
   rebuild, no row check), then X is dropped: the child is always checked by at least
   one constraint, and its writes are checked against `_T_new`, equal to T under the
   block;
3. a session of the cutover holds the children (LOCK TABLES ... WRITE) until the
   RENAME is done: a parent's RENAME takes InnoDB locks on its children and waits, T
   blocked, for a transaction open on one (MariaDB 10.11); held, none can be open;
4. the swap's RENAME: `_odlp_X` now references the new T, nothing references the old.

After the swap (finish()), each `_odlp_X` is renamed X (ADD X referencing T, DROP
`_odlp_X`: MariaDB refuses both in one ALTER, error 1005), the marker table and the old
table's guards are dropped. A failed attempt re-points the children to T before T is
unblocked, then empties the marker. Every step is idempotent from what the server shows
(repair()), so --resume and `onlineddl cleanup` finish or undo it after a kill.

A kill between 1 and 3 leaves T unblocked, children checked against `_T_new` (which
then only lacks T's new rows, so a child row for one of them fails loudly with 1452),
and T's UPDATE / DELETE refused loudly by the guard: no child row can lose its parent.

The children's ALTERs wait at most the cutover lock timeout each, half the block's
bound in all: an application transaction holding a child's metadata lock fails the
attempt, T unchanged, and the children are put back before T is unblocked. Should the
RENAME still wait for a child's transaction, the renamer's innodb_lock_wait_timeout
(the cutover lock timeout) ends it (checked on MariaDB 10.11: error 1205, no table
renamed).

The marker table `_T_fkgd` and the probe `_T_fkprobe` (check_shadow) carry a COMMENT;
a user's table or trigger under one of onlineddl's names here is never touched: the
run is refused (exit 4).

Each child's index for the constraint is renamed away and back once before the cutover
(in place, metadata only): an index the server created for a constraint carries a mark,
and adding the twin would otherwise replace it with a new index named after the twin
(MariaDB 10.11), a rebuild. The mark is lost for good (the dry run says so): SHOW CREATE
TABLE and information_schema (STATISTICS, INNODB_SYS_INDEXES, INNODB_SYS_FOREIGN) show
the child as a plain ALTER of T leaves it, but a later `ALTER TABLE child ADD INDEX (pid,
v)` keeps the old index on `pid`, where with the mark the server drops it. Putting the
mark back means dropping the index and letting the server build it again: a rebuild.

Refused (exit 5, nothing changed): MySQL (its single-connection protocol locks T with
LOCK TABLES, under which the children cannot be altered without locking them too; not
built), T referencing itself, T with triggers as well (their carry write-locks T, and
the children's ALTERs wait for that lock), a constraint name that starts with `_odlp_`
or whose twin name passes 64 characters.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import re
import time
from collections.abc import Iterator, Sequence

from onlineddl import faults, foreignkeys, grants, ledger, sql, triggers
from onlineddl.db import Session
from onlineddl.errors import (
    CutoverFailed,
    DatabaseError,
    InvalidAlter,
    MissingPrivilege,
    TableChanged,
    UnsupportedTable,
)
from onlineddl.flavor import MySQL
from onlineddl.foreignkeys import ForeignKey
from onlineddl.table import MAX_IDENT, Artifacts, ColumnMapping, artifact_name, name_case

log = logging.getLogger(__name__)

PREFIX = "_odlp_"
MARKER_COMMENT = "onlineddl foreign-key guard"
PROBE_COMMENT = "onlineddl foreign-key probe"
GUARD_MARK = triggers.PARENT_GUARD_MARK   # in the guard's SIGNAL message
EVENTS = ("UPDATE", "DELETE")


def marker_name(table: str) -> str:
    return artifact_name(table, "fkgd")


def guard_name(table: str, event: str) -> str:
    return artifact_name(table, f"fkparent_{event[:3].lower()}")[:MAX_IDENT]


def twin(name: str) -> str:
    return PREFIX + name


# --- reading -----------------------------------------------------------------------------

def _with_text(session: Session, found: Sequence[ForeignKey]) -> tuple[ForeignKey, ...]:
    texts: dict[tuple[str, str], dict[str, str]] = {}
    out = []
    for fk in found:
        key = (fk.database, fk.table)
        if key not in texts:
            row = session.query_one(
                f"SHOW CREATE TABLE {sql.qualified(fk.database, fk.table)}")
            texts[key] = foreignkeys.references_text(str(row[1]) if row else "")
        out.append(dataclasses.replace(fk, references=texts[key].get(fk.name, "")))
    return tuple(out)


def children(session: Session, database: str, table: str) -> tuple[ForeignKey, ...]:
    """The constraints of other tables that reference `table`, with their text."""
    return _with_text(session, foreignkeys.referencing(session, database, table))


# `REFERENCES [db.]table (columns)`, names quoted as SHOW CREATE TABLE writes them.
_NAME = r"`(?:[^`]|``)*`"
_REFERENCED = rf"^REFERENCES (?:{_NAME}\.)?{_NAME} \((?:[^`)]|{_NAME})*\)"


def _add_clause(fk: ForeignKey, name: str, database: str, target: str,
                mapping: ColumnMapping | None = None) -> str:
    """ADD CONSTRAINT `name`, as `fk` but referencing database.target (its columns
    renamed by `mapping`, T's to the new table's; None: as they are)."""
    columns = sql.column_list(new_columns(fk, mapping))
    text, found = re.subn(_REFERENCED, f"REFERENCES {sql.qualified(database, target)} ({columns})",
                          fk.references)
    if not found:
        raise ValueError(f"cannot read the REFERENCES text of {fk.name}: {fk.references!r}")
    return (f"ADD CONSTRAINT {sql.ident(name)} FOREIGN KEY "
            f"({sql.column_list(fk.columns)}) {text}")


def new_columns(fk: ForeignKey, mapping: ColumnMapping | None) -> tuple[str, ...]:
    """The referenced columns' names in the new table (an ALTER may rename them)."""
    if mapping is None:
        return fk.ref_columns
    to_new = {old.lower(): new for old, new in zip(mapping.source, mapping.target,
                                                    strict=True)}
    missing = [c for c in fk.ref_columns if c.lower() not in to_new]
    if missing:
        raise InvalidAlter(
            f"the ALTER drops column(s) {', '.join(missing)} that the foreign key "
            f"{fk.describe()} references", hint="a plain ALTER fails the same way; drop "
            "the constraint first; the table is unchanged")
    return tuple(to_new[c.lower()] for c in fk.ref_columns)


def _alter(session: Session, fk: ForeignKey, clause: str) -> None:
    with foreignkeys.checks_off(session):
        session.execute(f"ALTER TABLE {sql.qualified(fk.database, fk.table)} {clause}, "
                        "ALGORITHM=INPLACE")


def _names_on(session: Session, fk: ForeignKey) -> set[str]:
    rows = session.query(
        "SELECT CONSTRAINT_NAME FROM information_schema.REFERENTIAL_CONSTRAINTS "
        "WHERE CONSTRAINT_SCHEMA = %s AND TABLE_NAME = %s", (fk.database, fk.table))
    return {str(r[0]) for r in rows}


# --- preflight ---------------------------------------------------------------------------

def check(session: Session, flavor: MySQL, database: str, table: str,
          has_triggers: bool, *, resuming: bool = False) -> tuple[ForeignKey, ...]:
    """The children's constraints, after refusing (exit 5 / 4, nothing changed) what
    cannot be re-pointed."""
    found = children(session, database, table)
    if not resuming:
        _refuse_live_guards(session, database, table)
    if flavor.lists_every_foreign_key:
        _refuse_hidden(session, database, table, found)
    if found:
        _refuse_names_taken(session, database, table)
    if not found:
        return found
    listed = "; ".join(fk.describe() for fk in found)
    keep = ("onlineddl changes nothing here; drop those constraints for the migration and "
            "add them back after (ALTER TABLE child ADD FOREIGN KEY with "
            "foreign_key_checks=0 is in place but checks no rows), or use a plain "
            "ALTER TABLE")
    why = ""
    if not flavor.repoints_fk_children:
        why = ("re-pointing the children is built for MariaDB only: MySQL's cutover "
               "locks the table with LOCK TABLES, under which the children cannot be "
               "altered")
    elif any(fk.database == database and fk.table == table for fk in found):
        why = "the table references itself"
    elif has_triggers:
        why = ("the table also has triggers: their carry write-locks it, and the "
               "children's ALTERs wait for that lock")
    else:
        for fk in found:
            if fk.name.startswith(PREFIX) and resuming:
                continue   # an interrupted run's twin: the resume names it back
            if fk.name.startswith(PREFIX):
                why = f"the constraint name {fk.name} starts with {PREFIX}, onlineddl's prefix"
            elif len(twin(fk.name)) > MAX_IDENT:
                why = f"the temporary name of {fk.name} would pass 64 characters"
            elif not fk.references:
                why = f"the REFERENCES text of {fk.name} could not be read"
    if why:
        raise InvalidAlter(f"{database}.{table} is referenced by foreign key(s): {listed}; "
                           f"onlineddl cannot re-point them here: {why}", hint=keep)
    _check_privileges(session, flavor, database, table, found)
    return found


_PLAIN = re.compile(r"^[A-Za-z0-9_]+$")


def _refuse_hidden(session: Session, database: str, table: str,
                   found: Sequence[ForeignKey]) -> None:
    """information_schema shows a user only the constraints of tables it holds a
    privilege on: a child in a database it cannot see would silently follow the old
    table at the swap. InnoDB's own list (MariaDB, with the PROCESS privilege) shows
    them all; without PROCESS, or for names InnoDB stores encoded, nothing to compare."""
    if not (_PLAIN.match(database) and _PLAIN.match(table)):
        return
    try:
        rows = session.query("SELECT ID FROM information_schema.INNODB_SYS_FOREIGN "
                             "WHERE LOWER(REF_NAME) = LOWER(%s)", (f"{database}/{table}",))
    except (DatabaseError, MissingPrivilege):   # 1227 without PROCESS
        log.info("cannot read information_schema.INNODB_SYS_FOREIGN (PROCESS privilege): "
                 "tables referencing %s.%s in databases this user cannot see are not "
                 "found", database, table)
        return
    seen = {f"{fk.database}/{fk.name}".lower() for fk in found}
    hidden = sorted(str(r[0]) for r in rows if str(r[0]).lower() not in seen)
    if hidden:
        raise MissingPrivilege(
            f"{database}.{table} is referenced by foreign key(s) of tables this user cannot "
            f"see: {', '.join(hidden)} (database/constraint); the swap would leave them "
            "referencing the old table",
            hint="grant the user ALTER on those databases (and SELECT to read them), or "
                 "drop those constraints for the migration")


def _comment(session: Session, database: str, name: str) -> str | None:
    """The table's COMMENT, None when it does not exist."""
    row = session.query_one(
        "SELECT TABLE_COMMENT FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s "
        "AND TABLE_NAME = %s", (database, name))
    return None if row is None else str(row[0])


def _refuse_names_taken(session: Session, database: str, table: str) -> None:
    """A user's table or trigger under one of the names onlineddl needs here is never
    touched: the run is refused (exit 4) instead."""
    taken = [f"table {n}" for n, mark in ((marker_name(table), MARKER_COMMENT),
                                         (probe_name(table), PROBE_COMMENT))
             if _comment(session, database, n) not in (None, mark)]
    names = [guard_name(table, e) for e in EVENTS]
    rows = session.query(
        "SELECT TRIGGER_NAME, ACTION_STATEMENT FROM information_schema.TRIGGERS "
        "WHERE TRIGGER_SCHEMA = %s AND TRIGGER_NAME IN (%s, %s)", (database, *names))
    taken += [f"trigger {r[0]}" for r in rows if GUARD_MARK not in str(r[1])]
    if taken:
        raise UnsupportedTable(
            f"{database} has {', '.join(taken)}: onlineddl needs those names to re-point "
            f"the foreign keys referencing {table}", hint="rename them first; nothing "
            "was changed")


def _refuse_live_guards(session: Session, database: str, table: str) -> None:
    marker = marker_name(table)
    if _comment(session, database, marker) == MARKER_COMMENT and \
            session.scalar(f"SELECT COUNT(*) FROM {sql.qualified(database, marker)}"):
        raise UnsupportedTable(
            f"an onlineddl cutover of {database}.{table} was interrupted while re-pointing "
            "the foreign keys of the tables that reference it: updates and deletes on it "
            "fail until it is finished",
            hint="run the interrupted migration again with --resume, or `onlineddl "
                 f"cleanup` for {table} to undo it")


def _check_privileges(session: Session, flavor: MySQL, database: str, table: str,
                      found: Sequence[ForeignKey]) -> None:
    """ALTER, LOCK TABLES and SELECT on every child; the guard triggers need TRIGGER on
    T and, with the binlog on, SUPER unless log_bin_trust_function_creators is ON (error
    1419 otherwise)."""
    held = grants.parse(flavor.grant_lines(session))
    fold = name_case(session) != 0
    account = grants.account(str(session.scalar("SELECT CURRENT_USER()")))
    needs, hints = [], []
    # ALTER to re-point them; LOCK TABLES (and SELECT, which it needs) to hold them
    # until the RENAME is done.
    wanted = ("ALTER", "LOCK TABLES", "SELECT")
    missing = sorted({(fk.database, fk.table) for fk in found
                      if not all(grants.holds(held, p, fk.database, fk.table, fold=fold)
                                 for p in wanted)})
    if missing:
        needs.append(", ".join(wanted) + " on " + ", ".join(f"{d}.{t}" for d, t in missing)
                     + " (tables that reference it)")
        hints += [f"GRANT {', '.join(wanted)} ON {sql.ident(d)}.* TO {account}"
                  for d in sorted({d for d, _ in missing})]
    if not grants.holds(held, "TRIGGER", database, table, fold=fold):
        needs.append("the TRIGGER privilege on it (for the cutover's guard triggers)")
        hints.append(f"GRANT TRIGGER ON {sql.ident(database)}.* TO {account}")
    if not triggers.may_create_triggers(session, held):
        needs.append(triggers.CREATE_NEEDS + " (the guard triggers)")
        hints.append(triggers.create_hint(account))
    if needs:
        raise MissingPrivilege(
            f"the user {account} cannot re-point the foreign keys referencing "
            f"{database}.{table}: it needs " + "; ".join(needs), hint="; ".join(hints))


# --- the new table ----------------------------------------------------------------------

PROBE_CONSTRAINT = PREFIX + "probe"


def probe_name(table: str) -> str:
    return artifact_name(table, "fkprobe")


def check_shadow(session: Session, database: str, names: Artifacts,
                 found: Sequence[ForeignKey], mapping: ColumnMapping) -> None:
    """The server's verdict on each child's constraint against the new table (still
    empty): an empty copy of the child gets it, with foreign_key_checks on. A plain ALTER
    that changes a referenced column's type or drops its index fails (1832, 1553); the
    same change here fails on the copy (150, 1822), and the run is refused, nothing
    changed. The copy is dropped again."""
    if not found:
        return
    for fk in found:
        renamed = new_columns(fk, mapping)
        if [c.lower() for c in renamed] != [c.lower() for c in fk.ref_columns]:
            raise InvalidAlter(
                f"the ALTER renames column(s) the foreign key {fk.describe()} references; "
                "onlineddl does not re-point a constraint to renamed columns",
                hint="rename the column with a plain ALTER TABLE, or drop the constraint "
                     "for the migration; the table is unchanged")
    _refuse_names_taken(session, database, names.table)
    _drop_probe(session, database, names.table)   # a killed run's
    probe = sql.qualified(database, probe_name(names.table))
    try:
        for fk in found:
            session.execute(f"CREATE TABLE {probe} LIKE "
                            f"{sql.qualified(fk.database, fk.table)}")
            session.execute(f"ALTER TABLE {probe} COMMENT = '{PROBE_COMMENT}'")
            try:
                session.execute(f"ALTER TABLE {probe} " + _add_clause(
                    fk, PROBE_CONSTRAINT, database, names.shadow, mapping))
            except DatabaseError as err:
                raise InvalidAlter(
                    f"the new table cannot be referenced by the foreign key "
                    f"{fk.describe()}: {err.message}",
                    hint="a plain ALTER fails the same way (the referenced columns keep "
                         "their types and an index); the table is unchanged") from err
            _drop_probe(session, database, names.table)
    finally:
        _drop_probe(session, database, names.table)


def check_shadow_again(session: Session, database: str, names: Artifacts,
                       found: Sequence[ForeignKey], mapping: ColumnMapping) -> None:
    """--resume: the server's verdict again on every child's constraint against the
    new table (as check_shadow at setup). A child another session added while no run
    was going has had none, and one the new table cannot hold would otherwise only
    fail each cutover attempt. Refused (exit 5) up front, T unchanged, the run still
    resumable once the constraint is dropped."""
    try:
        check_shadow(session, database, names, found, mapping)
    except InvalidAlter as err:
        raise InvalidAlter(
            f"{err.message} (a constraint added since the interrupted run was checked)",
            hint=f"drop that constraint and run the same command with --resume, or discard "
                 f"the run with `onlineddl cleanup` for {names.table}; the table is "
                 "unchanged") from err


def _drop_probe(session: Session, database: str, table: str) -> None:
    if _comment(session, database, probe_name(table)) == PROBE_COMMENT:
        ledger.drop(session, database, probe_name(table))


# --- before the cutover ------------------------------------------------------------------

def prepare(session: Session, database: str, names: Artifacts,
            found: Sequence[ForeignKey], wait: int) -> None:
    """Before the first attempt: the marker table (empty), the guard triggers on T
    (inert while it is empty), the children's constraint indexes made their own. Each
    statement waits at most `wait` seconds for a metadata lock (a CREATE TRIGGER waiting
    for T holds T's writers meanwhile). Idempotent."""
    if not found:
        return
    with lock_wait(session, wait):
        _prepare(session, database, names, found)


@contextlib.contextmanager
def lock_wait(session: Session, seconds: int) -> Iterator[None]:
    """Meanwhile each statement on `session` waits at most `seconds` (1 at least) for a
    metadata lock; the session's own setting is put back after."""
    before = int(session.scalar("SELECT @@SESSION.lock_wait_timeout") or 1)
    session.execute("SET SESSION lock_wait_timeout = %s", (max(1, seconds),))
    try:
        yield
    finally:
        session.execute("SET SESSION lock_wait_timeout = %s", (before,))


def _prepare(session: Session, database: str, names: Artifacts,
             found: Sequence[ForeignKey]) -> None:
    _refuse_names_taken(session, database, names.table)
    marker = sql.qualified(database, marker_name(names.table))
    if _comment(session, database, marker_name(names.table)) is None:
        session.execute(f"CREATE TABLE {marker} (id INT PRIMARY KEY) ENGINE=InnoDB "
                        f"COMMENT='{MARKER_COMMENT}'")
    session.execute(f"DELETE FROM {marker}")
    present = {str(r[0]) for r in session.query(
        "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = %s",
        (database,))}
    for event in EVENTS:
        if guard_name(names.table, event) not in present:
            session.execute(guard_sql(database, names.table, event))
    by_child: dict[tuple[str, str], list[ForeignKey]] = {}
    for fk in found:
        by_child.setdefault((fk.database, fk.table), []).append(fk)
    for (db, child), fks in by_child.items():
        foreignkeys.own_indexes(session, db, child, tuple(fks))


def guard_sql(database: str, table: str, event: str) -> str:
    return (f"CREATE TRIGGER {sql.qualified(database, guard_name(table, event))} BEFORE "
            f"{event} ON {sql.qualified(database, table)} FOR EACH ROW "
            f"IF EXISTS (SELECT 1 FROM {sql.qualified(database, marker_name(table))}) THEN "
            f"{triggers.signal_sql(table, GUARD_MARK)}; END IF")


# --- under the write block ----------------------------------------------------------------

def repoint(session: Session, database: str, names: Artifacts,
            found: Sequence[ForeignKey], wait: int, budget: float,
            mapping: ColumnMapping) -> None:
    """Under the block, drained: arm the guard, re-point every child to the shadow. Each
    ALTER waits at most `wait` seconds for its child's metadata lock (an application
    transaction holding it fails the attempt), and all of them together at most
    `budget` seconds (the rest of the write block's bound)."""
    if not found:
        return
    deadline = time.monotonic() + budget
    session.execute(f"INSERT IGNORE INTO "
                    f"{sql.qualified(database, marker_name(names.table))} VALUES (1)")
    faults.point("parents_guard_armed")
    with lock_wait(session, wait):
        for fk in found:
            _repoint_one(session, database, names, fk, mapping, wait, deadline)
    faults.point("children_repointed")
    log.info("foreign keys of %d child table(s) re-pointed to %s under the write block",
             len({(fk.database, fk.table) for fk in found}), names.shadow)


def _repoint_one(session: Session, database: str, names: Artifacts, fk: ForeignKey,
                 mapping: ColumnMapping, wait: int, deadline: float) -> None:
    """The twin referencing the shadow added, then the original dropped (each step
    skipped when the server shows it done)."""
    on_child = _names_on(session, fk)
    if fk.name not in on_child and twin(fk.name) not in on_child:
        # Dropped by another session since it was read: a twin would bring it back
        # under its name after the swap.
        raise TableChanged(
            f"the foreign key {fk.describe()} was dropped during the cutover",
            hint="run the same command with --resume; the table is unchanged")
    if twin(fk.name) not in on_child:
        _bound(session, wait, deadline)
        _alter(session, fk, _add_clause(fk, twin(fk.name), database, names.shadow, mapping))
    faults.point("parent_twin_added")
    if fk.name in on_child:
        _bound(session, wait, deadline)
        _alter(session, fk, f"DROP FOREIGN KEY {sql.ident(fk.name)}")


def lock_sql(found: Sequence[ForeignKey]) -> str:
    """LOCK TABLES ... WRITE for the children ("" for none)."""
    tables = sorted({(fk.database, fk.table) for fk in found})
    if not tables:
        return ""
    return "LOCK TABLES " + ", ".join(f"{sql.qualified(d, t)} WRITE" for d, t in tables)


def _bound(session: Session, wait: int, deadline: float) -> None:
    left = deadline - time.monotonic()
    if left < 1:
        raise CutoverFailed("re-pointing the foreign keys of the tables that reference "
                            "the table took longer than the write block may last",
                            hint="other sessions hold the child tables' metadata locks "
                                 "(open transactions): find them in "
                                 "information_schema.INNODB_TRX")
    session.execute("SET SESSION lock_wait_timeout = %s", (max(1, min(wait, int(left))),))


# --- repair / finish -----------------------------------------------------------------------

def _twins_referencing(session: Session, database: str, table: str) -> list[ForeignKey]:
    return [fk for fk in children(session, database, table) if fk.name.startswith(PREFIX)]


def _marker_exists(session: Session, database: str, table: str) -> bool:
    """Ours only: a user's table under that name is never read, emptied or dropped."""
    return _comment(session, database, marker_name(table)) == MARKER_COMMENT


def repair(session: Session, database: str, names: Artifacts, swapped: bool) -> bool:
    """Put right what an attempt (or a kill) left. Unswapped: every twin referencing the
    shadow is turned back into the original constraint on T, then the guard is disarmed.
    Swapped: every twin (now referencing T) gets its original name back. Returns
    whether anything was changed."""
    source = names.table if swapped else names.shadow
    changed = False
    for fk in _twins_referencing(session, database, source):
        original = fk.name[len(PREFIX):]
        if original not in _names_on(session, fk):
            _alter(session, fk, _add_clause(fk, original, database, names.table))
        faults.point("parent_original_added")
        _alter(session, fk, f"DROP FOREIGN KEY {sql.ident(fk.name)}")
        changed = True
    if changed:
        log.info("foreign keys of the tables referencing %s %s", names.table,
                 "renamed back" if swapped else "re-pointed back to it")
    if not swapped and _marker_exists(session, database, names.table):
        session.execute(f"DELETE FROM {sql.qualified(database, marker_name(names.table))}")
    return changed


def finish(session: Session, database: str, names: Artifacts) -> None:
    """After the swap: twins renamed, guards dropped from the old table, marker dropped."""
    repair(session, database, names, swapped=True)
    faults.point("parents_renamed")
    _refuse_left_on_old(session, database, names)
    drop_guards(session, database, names.old)
    if _marker_exists(session, database, names.table):
        ledger.drop(session, database, marker_name(names.table))


def _refuse_left_on_old(session: Session, database: str, names: Artifacts) -> None:
    """The last word after the swap: no constraint may reference the old table. One
    another session added while the cutover ran (after the children were read) followed
    T's name to the old table at the RENAME, and its child is now checked against a
    frozen copy: the run does not end with exit 0 then, and --resume asks again."""
    left = foreignkeys.referencing(session, database, names.old)
    if left:
        raise TableChanged(
            f"the swap is done, but foreign key(s) {'; '.join(fk.describe() for fk in left)} "
            f"now reference the old table {names.old}: another session added them while "
            "the cutover ran", hint=f"point each at {names.table} again (ALTER TABLE child "
            f"DROP FOREIGN KEY name, then ADD CONSTRAINT name FOREIGN KEY (...) REFERENCES "
            f"{names.table} (...)), then run the same command with --resume to finish")


def drop_guards(session: Session, database: str, table: str) -> None:
    if not table:
        return
    rows = session.query(
        "SELECT TRIGGER_NAME, ACTION_STATEMENT FROM information_schema.TRIGGERS "
        "WHERE EVENT_OBJECT_SCHEMA = %s AND EVENT_OBJECT_TABLE = %s", (database, table))
    for name, body in rows:
        if GUARD_MARK in str(body):
            session.execute(f"DROP TRIGGER IF EXISTS {sql.qualified(database, str(name))}")


def cleanup(session: Session, database: str, names: Artifacts, swapped: bool) -> list[str]:
    """`onlineddl cleanup`: finish (swapped) or undo (not) the re-pointing, drop the
    guards and the marker table."""
    _drop_probe(session, database, names.table)
    if not _marker_exists(session, database, names.table):
        return []
    if swapped:
        finish(session, database, names)
    else:
        repair(session, database, names, swapped=False)
        drop_guards(session, database, names.table)
        ledger.drop(session, database, marker_name(names.table))
    return [f"put the foreign keys referencing {database}.{names.table} right and dropped "
            "onlineddl's guard triggers and marker table"]


# --- the dry run ----------------------------------------------------------------------------

def describe(session: Session, found: Sequence[ForeignKey], shadow: str) -> list[str]:
    lines = []
    for fk in found:
        rows = session.scalar(
            "SELECT TABLE_ROWS FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND "
            "TABLE_NAME = %s", (fk.database, fk.table)) or 0
        lines.append(
            f"  constraint {fk.name} on {fk.database}.{fk.table} (ON DELETE {fk.on_delete} "
            f"ON UPDATE {fk.on_update}) is re-pointed to the new table under the write "
            f"block: two metadata-only ALTERs (no rebuild, no row check, as {twin(fk.name)} "
            f"referencing {shadow}), named {fk.name} again after the swap by two more; "
            f"~{int(rows)} rows not touched")
    if found:
        lines.append("  before the cutover: guard triggers (BEFORE UPDATE / DELETE, inert "
                     "until the write block) are put on the table, and each child's index "
                     "for the constraint is renamed away and back (metadata only); an index "
                     "the server made for the constraint loses that mark (SHOW CREATE "
                     "TABLE unchanged), so a later ADD INDEX on the child that could serve "
                     "the constraint no longer drops it by itself, as after a plain ALTER")
        lines.append("  during the write block the child tables are also held (LOCK "
                     "TABLES ... WRITE) from their re-pointing until the RENAME: their "
                     "writes wait those milliseconds too")
    return lines

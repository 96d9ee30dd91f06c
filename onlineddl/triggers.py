"""T's triggers, carried to the new table inside the cutover's write block.

Trigger names are unique per schema and RENAME TABLE moves a table's triggers with it,
so the new T can only get T's triggers (same names) once T has lost them: a DROP
TRIGGER on T, a CREATE TRIGGER on `_T_new`, then the RENAME. Between those statements T
holds no triggers. While the tool runs, that window lies inside the write block (every
statement of it runs while a lock of ours keeps application writes waiting, and they
go to the new T, whose triggers are complete, once the block ends), so no application
write sees it. The tool can still be killed inside the window; then its locks go and
writers reach T. So, before the first DROP, T gets a guard: one BEFORE trigger per
event T has triggers for, placed first, that fails the write with SQLSTATE 45000 and
a message naming the interrupted run. Every state a crash can leave is then one of:

- guard + all of T's triggers on T: writes fail loudly (nothing is missed);
- guard + some of them on T, some on `_T_new`: writes fail loudly;
- swapped: the new T has all the triggers, the guard went with the original to
  `_T_old_<stamp>`: writes fire the triggers exactly once.

`repair()` (run by --resume, `onlineddl cleanup`, and every cutover attempt) puts the
recorded triggers back on T in their order, drops the guard last, or after a swap drops
the guard from the old table. The definitions come from the checkpoint (recorded
under the write block, before the guard), never from a T a crash left half-done.

During the run the triggers stay on T: application writes fire them there, and BEFORE
triggers' changes to NEW are in the binlog row images and in the rows the flushes
re-read from T. The shadow has no triggers until the write block, so the copy's and
the flushes' writes never fire them.

Checked on MariaDB 10.11: CREATE/DROP TRIGGER under `LOCK TABLES T READ` fail (error
1099) and work under `T WRITE`; a waiting `LOCK TABLES T WRITE` is granted before writes
that waited longer; a plain ALTER that drops a column keeps a trigger using it (writes
then fail), and CREATE TRIGGER on a table without that column fails (1054); with the
binlog on, CREATE TRIGGER needs SUPER unless log_bin_trust_function_creators is ON
(1419, also for the user's own definer), and another definer needs SET USER or SUPER.

Each trigger is re-created with its definer, its sql_mode, character_set_client and
collation_connection (SHOW CREATE TRIGGER's and information_schema.TRIGGERS' fields),
and in ACTION_ORDER (each CREATE without FOLLOWS/PRECEDES goes last among its
timing/event, so creating them in order keeps the order).
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, replace

from onlineddl import faults, grants, sql
from onlineddl.db import Session
from onlineddl.errors import (
    CutoverFailed,
    DatabaseError,
    InvalidAlter,
    MissingPrivilege,
    OnlineDDLError,
    TableChanged,
    UnsupportedTable,
)
from onlineddl.flavor import MySQL
from onlineddl.table import MAX_IDENT, Artifacts, artifact_name, name_case

log = logging.getLogger(__name__)

GUARD_MARK = "onlineddl-guard"   # in the guard's SIGNAL message: tells our guard apart
# [fk parents] fkparents.py's guards on T: neither T's own triggers nor the carry's guards.
PARENT_GUARD_MARK = "onlineddl-fk-guard"
EVENTS = ("INSERT", "UPDATE", "DELETE")
UTF8_CLIENTS = ("utf8mb4", "utf8mb3", "utf8")
# Creating a trigger for another definer: MariaDB's SET USER (10.5.2+) or SUPER;
# MySQL 8's SET_USER_ID (SET_ANY_DEFINER from 8.2) or SUPER.
DEFINER_PRIVILEGES = ("SET USER", "SET_USER_ID", "SET_ANY_DEFINER", "SUPER")


@dataclass(frozen=True)
class Trigger:
    name: str
    timing: str          # BEFORE / AFTER
    event: str           # INSERT / UPDATE / DELETE
    order: int           # ACTION_ORDER within (timing, event), from 1
    body: str            # ACTION_STATEMENT, as written
    definer: str         # user@host (or a role's name)
    sql_mode: str
    character_set_client: str
    collation_connection: str

    def create_sql(self, database: str, table: str) -> str:
        return (f"CREATE DEFINER={definer_clause(self.definer)} TRIGGER "
                f"{sql.qualified(database, self.name)} {self.timing} {self.event} ON "
                f"{sql.qualified(database, table)} FOR EACH ROW {self.body}")


def definer_clause(definer: str) -> str:
    """`user@host` as a DEFINER clause: 'user'@'host' (quotes doubled, never
    backslashes, so it reads the same under NO_BACKSLASH_ESCAPES); a role: `role`."""
    if "@" not in definer:
        return sql.ident(definer)
    user, _, host = definer.rpartition("@")
    return "'" + user.replace("'", "''") + "'@'" + host.replace("'", "''") + "'"


_COLUMNS = ("TRIGGER_NAME, ACTION_TIMING, EVENT_MANIPULATION, ACTION_ORDER, ACTION_STATEMENT, "
            "DEFINER, SQL_MODE, CHARACTER_SET_CLIENT, COLLATION_CONNECTION")


def _all_on(session: Session, database: str, table: str) -> list[Trigger]:
    rows = session.query(
        f"SELECT {_COLUMNS} FROM information_schema.TRIGGERS "
        "WHERE EVENT_OBJECT_SCHEMA = %s AND EVENT_OBJECT_TABLE = %s "
        "ORDER BY ACTION_TIMING DESC, EVENT_MANIPULATION, ACTION_ORDER", (database, table))
    return [Trigger(str(r[0]), str(r[1]).upper(), str(r[2]).upper(), int(r[3]), str(r[4]),
                    str(r[5]), str(r[6]), str(r[7]), str(r[8])) for r in rows]


def is_guard(trigger: Trigger) -> bool:
    return GUARD_MARK in trigger.body and trigger.name.endswith(tuple(
        _guard_suffix(e) for e in EVENTS))


def _own(found: Iterable[Trigger]) -> tuple[Trigger, ...]:
    """The table's own triggers among `found`: our guards (the carry's, fkparents')
    left out."""
    return tuple(t for t in found if not is_guard(t) and PARENT_GUARD_MARK not in t.body)


def load(session: Session, database: str, table: str) -> tuple[Trigger, ...]:
    """T's own triggers (our guards left out), BEFORE ones first, in firing order."""
    return _own(_all_on(session, database, table))


def guards_on(session: Session, database: str, table: str) -> list[str]:
    return [t.name for t in _all_on(session, database, table) if is_guard(t)]


def same(a: Sequence[Trigger], b: Sequence[Trigger]) -> bool:
    """The same triggers in the same firing order (ACTION_ORDER numbers aside: a guard
    placed first shifts them)."""
    return [replace(t, order=0) for t in a] == [replace(t, order=0) for t in b]


def encode(triggers: Sequence[Trigger]) -> str:
    return json.dumps([asdict(t) for t in triggers])


def decode(text: str | None) -> tuple[Trigger, ...]:
    return tuple(Trigger(**d) for d in json.loads(text)) if text else ()


# --- guards --------------------------------------------------------------------------

def _guard_suffix(event: str) -> str:
    return f"guard_{event[:3].lower()}"


def guard_name(table: str, event: str) -> str:
    return artifact_name(table, _guard_suffix(event))[:MAX_IDENT]


def guard_message(table: str, mark: str = GUARD_MARK) -> str:
    """A guard's message (`mark` tells whose guard it is): at most 128 characters
    (MESSAGE_TEXT's limit), ASCII only."""
    name = table if table.isascii() else "the table"
    text = (f"{mark}: the onlineddl cutover of {name[:40]} was interrupted; run "
            "onlineddl again with --resume")
    return text[:128]


def signal_sql(table: str, mark: str = GUARD_MARK) -> str:
    """The statement a guard fails the write with: this run's guard and fkparents'."""
    message = guard_message(table, mark).replace("'", "''")
    return f"SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = '{message}'"


def guard_sql(database: str, table: str, event: str, first: str | None) -> str:
    order = f" PRECEDES {sql.ident(first)}" if first else ""
    return (f"CREATE TRIGGER {sql.qualified(database, guard_name(table, event))} BEFORE "
            f"{event} ON {sql.qualified(database, table)} FOR EACH ROW{order} "
            + signal_sql(table))


def drop_sql(database: str, name: str) -> str:
    return f"DROP TRIGGER IF EXISTS {sql.qualified(database, name)}"


# --- session context -----------------------------------------------------------------

class _Context:
    """Runs each CREATE TRIGGER under the trigger's own sql_mode, character_set_client
    and collation_connection (the server stores them with the trigger), and puts the
    session's own back afterwards."""

    def __init__(self, session: Session) -> None:
        self.session = session
        row = session.query_one("SELECT @@SESSION.sql_mode, @@SESSION.character_set_client, "
                                "@@SESSION.collation_connection")
        assert row is not None
        self.saved = (str(row[0]), str(row[1]), str(row[2]))

    def create(self, trigger: Trigger, database: str, table: str) -> None:
        self._set(trigger.sql_mode, trigger.character_set_client,
                  trigger.collation_connection)
        try:
            self.session.execute(trigger.create_sql(database, table))
        finally:
            self._set(*self.saved)

    def _set(self, mode: str, client: str, collation: str) -> None:
        self.session.execute("SET SESSION sql_mode = %s, character_set_client = %s, "
                             "collation_connection = %s", (mode, client, collation))


def create_all(session: Session, database: str, table: str,
               triggers: Iterable[Trigger]) -> None:
    context = _Context(session)
    for trigger in triggers:
        context.create(trigger, database, table)


# --- preflight -----------------------------------------------------------------------

def check(session: Session, flavor: MySQL, database: str, table: str,
          dropped: Iterable[str], renamed: Iterable[str], *,
          resuming: bool = False) -> tuple[Trigger, ...]:
    """T's triggers, after refusing (changing nothing) what cannot be carried: a guard
    left by a killed run, a trigger whose body uses a column the ALTER drops or
    renames, text the tool cannot send in the trigger's client character set, and a
    user who cannot re-create the triggers. `resuming`: a guard is the interrupted
    run's own, which the resume repairs from its checkpoint."""
    found = _all_on(session, database, table)
    guards = [t.name for t in found if is_guard(t)]
    if guards and not resuming:
        raise UnsupportedTable(
            f"{database}.{table} carries the guard trigger(s) {', '.join(guards)} of an "
            "onlineddl cutover that was interrupted: writes to the table fail until it is "
            "finished", hint="run the interrupted migration again with --resume, or "
                             f"`onlineddl cleanup` for {table} to undo it")
    triggers = _own(found)
    if triggers:
        _refuse_guard_names_taken(session, database, table)
    _refuse_lost_columns(triggers, database, table, set(dropped) | set(renamed))
    _refuse_foreign_text(triggers, database, table)
    if triggers:
        _check_privileges(session, flavor, database, table, triggers)
    return triggers


def _refuse_guard_names_taken(session: Session, database: str, table: str) -> None:
    """Trigger names are per schema: one of the guard's names taken by another trigger
    would fail every cutover attempt."""
    names = [guard_name(table, e) for e in EVENTS]
    marks = ", ".join(["%s"] * len(names))
    rows = session.query(
        "SELECT TRIGGER_NAME, EVENT_OBJECT_TABLE, ACTION_STATEMENT FROM "
        f"information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = %s AND TRIGGER_NAME IN ({marks})",
        (database, *names))
    taken = [f"{r[0]} (on {r[1]})" for r in rows if GUARD_MARK not in str(r[2])]
    if taken:
        raise UnsupportedTable(
            f"{database} has trigger(s) {', '.join(taken)}: onlineddl needs those names for "
            f"the guard it puts on {table} during the cutover",
            hint="rename those triggers (DROP and CREATE them under another name) first")


_ROW_COLUMN = re.compile(r"\b(?:NEW|OLD)\s*\.\s*(`(?:[^`]|``)+`|[0-9A-Za-z_$\u0080-\uffff]+)",
                         re.IGNORECASE)


def row_columns(body: str) -> set[str]:
    """The columns a trigger body names as NEW.c / OLD.c (lower case)."""
    out = set()
    for m in _ROW_COLUMN.finditer(body):
        name = m.group(1)
        if name.startswith("`"):
            name = name[1:-1].replace("``", "`")
        out.add(name.lower())
    return out


def _refuse_lost_columns(triggers: Sequence[Trigger], database: str, table: str,
                         gone: set[str]) -> None:
    """A plain ALTER keeps such a trigger and every write it fires for then fails
    ("Unknown column"); carrying that over silently would break the application at
    the swap, so the run is refused up front instead."""
    lost = {c.lower() for c in gone}
    for trigger in triggers:
        used = sorted(row_columns(trigger.body) & lost)
        if used:
            raise InvalidAlter(
                f"trigger {trigger.name} on {database}.{table} uses column(s) "
                f"{', '.join(used)} (as NEW./OLD.), which the ALTER drops or renames: "
                "after the ALTER every write the trigger fires for would fail",
                hint=f"change trigger {trigger.name} first (DROP TRIGGER, then CREATE it "
                     "without those columns), or keep the columns; the table is unchanged")


def _refuse_foreign_text(triggers: Sequence[Trigger], database: str, table: str) -> None:
    for trigger in triggers:
        text = trigger.create_sql(database, table) + trigger.definer
        if not text.isascii() and trigger.character_set_client.lower() not in UTF8_CLIENTS:
            raise UnsupportedTable(
                f"trigger {trigger.name} on {database}.{table} was created with "
                f"character_set_client={trigger.character_set_client} and has non-ASCII "
                "text; onlineddl re-creates triggers from UTF-8 text only",
                hint=f"re-create {trigger.name} with SET NAMES utf8mb4 first")


def _check_privileges(session: Session, flavor: MySQL, database: str, table: str,
                      triggers: Sequence[Trigger]) -> None:
    held = grants.parse(flavor.grant_lines(session))
    fold = name_case(session) != 0
    who = str(session.scalar("SELECT CURRENT_USER()"))
    account = grants.account(who)
    needs, missing = [], []
    if not all(grants.holds(held, "TRIGGER", database, t, fold=fold)
               for t in (table, Artifacts.for_table(table).shadow)):
        needs.append("the TRIGGER privilege on it and on the new table")
        missing.append(f"GRANT TRIGGER ON {sql.ident(database)}.* TO {account}")
    if not may_create_triggers(session, held):
        needs.append(CREATE_NEEDS)
        missing.append(create_hint(account))
    others = sorted({t.definer for t in triggers if not _same_account(t.definer, who)})
    if others and not any(_global(held, p) for p in DEFINER_PRIVILEGES):
        needs.append(f"to create triggers for their definer(s) {', '.join(others)}")
        missing.append(f"GRANT {flavor.definer_privilege} ON *.* TO {account}")
    if missing:
        raise MissingPrivilege(
            f"the user {account} cannot carry the triggers of {database}.{table}: it needs "
            + "; ".join(needs), hint="; ".join(missing))


# With the binlog on (always, for onlineddl) the server lets only SUPER create triggers
# unless log_bin_trust_function_creators is ON (MariaDB 10.11, error 1419 even for the
# user's own definer; MySQL 8 documents the same rule). The carry's triggers and
# fkparents' guard triggers both need it.
CREATE_NEEDS = ("SUPER, or log_bin_trust_function_creators=ON, to create triggers while "
                "binary logging is on")


def may_create_triggers(session: Session, held: list[grants.Grant]) -> bool:
    trusted = str(session.scalar("SELECT @@GLOBAL.log_bin_trust_function_creators"))
    return trusted in ("1", "ON") or _global(held, "SUPER")


def create_hint(account: str) -> str:
    return ("SET GLOBAL log_bin_trust_function_creators = ON (and in the server config), "
            f"or GRANT SUPER ON *.* TO {account}")


def _same_account(definer: str, current: str) -> bool:
    user, _, host = definer.rpartition("@")
    cur_user, _, cur_host = current.rpartition("@")
    return user == cur_user and host.lower() == cur_host.lower()


def _global(held: list[grants.Grant], privilege: str) -> bool:
    return any(not g.revoke and g.database == "*" and
               (privilege in g.privileges or "ALL" in g.privileges) for g in held)


# --- the carry -----------------------------------------------------------------------

class Carry:
    """T's triggers across one run's swap: `recorded` is the list the checkpoint holds
    (checked at the start of the run, or of its resume)."""

    def __init__(self, control: Session, database: str, names: Artifacts,
                 recorded: tuple[Trigger, ...]) -> None:
        self.control = control
        self.database = database
        self.names = names
        self.recorded = recorded
        self.moved = False   # the shadow holds the triggers, T the guard (until the swap)

    def snapshot(self) -> None:
        """Under the write block (no trigger DDL on T can run now): T's triggers must be
        the recorded ones; a guard still on T means an earlier attempt was not repaired."""
        found = _all_on(self.control, self.database, self.names.table)
        if any(is_guard(t) for t in found):
            raise CutoverFailed(f"{self.names.table} still carries a cutover guard trigger")
        current = _own(found)
        if not same(current, self.recorded):
            # Carrying them unchecked could garble a body written under another client
            # character set, or keep one that uses a column the ALTER drops.
            raise TableChanged(
                f"the triggers of {self.names.table} changed during the run (another "
                f"session's CREATE or DROP TRIGGER): {len(self.recorded)} checked at the "
                f"start, {len(current)} now", hint="run the same command with --resume: it "
                "checks the triggers as they are now and carries those; the table is "
                "unchanged")

    def carry(self, on_table: Session, on_shadow: Session) -> None:
        """Guard T, drop its triggers, create them on the shadow. `on_table` holds T
        write-locked (LOCK TABLES ... WRITE), `on_shadow` may change the shadow. A
        failure puts everything back (the guard last) and re-raises."""
        if not self.recorded:
            return
        db, t, s = self.database, self.names.table, self.names.shadow
        try:
            for event in sorted({tr.event for tr in self.recorded}):
                on_table.execute(guard_sql(db, t, event, self._first_before(event)))
            faults.point("triggers_guarded")
            for trigger in self.recorded:
                on_table.execute(drop_sql(db, trigger.name))
            faults.point("triggers_dropped")
            create_all(on_shadow, db, s, self.recorded)
            faults.point("triggers_moved")
        except OnlineDDLError as err:
            log.warning("carrying the triggers failed (%s); putting them back on %s",
                        err.message, t)
            self._restore(on_table, on_shadow)
            raise CutoverFailed(f"carrying the triggers of {t} failed: {err.message}",
                                hint=err.hint) from err
        self.moved = True
        log.info("triggers %s moved to %s under the write block",
                 ", ".join(tr.name for tr in self.recorded), s)

    def undo(self, on_table: Session, on_shadow: Session) -> None:
        """The swap was called off after the carry: put the triggers back on T while
        `on_table` still holds it write-locked (no write sees the guard)."""
        if self.moved:
            self._restore(on_table, on_shadow)
            self.moved = False

    def _first_before(self, event: str) -> str | None:
        for trigger in self.recorded:
            if trigger.timing == "BEFORE" and trigger.event == event:
                return trigger.name
        return None

    def _restore(self, on_table: Session, on_shadow: Session) -> None:
        try:
            _put_back(on_table, on_shadow, self.database, self.names, self.recorded)
        except OnlineDDLError as err:
            log.error("could not put the triggers back on %s (%s): its guard makes writes "
                      "fail until --resume or `onlineddl cleanup` repairs it",
                      self.names.table, err.message)

    def repair(self, swapped: bool) -> None:
        repair(self.control, self.database, self.names, self.recorded, swapped)
        self.moved = False


def _put_back(on_table: Session, on_shadow: Session, database: str, names: Artifacts,
              recorded: tuple[Trigger, ...], on_t: list[Trigger] | None = None) -> None:
    """Back to "every trigger on T, none on the shadow", the guard dropped last: should
    a step fail, T keeps its guard, and its writes fail loudly rather than go through
    without their triggers. DROP TRIGGER names no table: only names found on the
    shadow, or on T, are dropped (another table's trigger may have taken one)."""
    t = names.table
    shadow_has = {tr.name for tr in _all_on(on_shadow, database, names.shadow)}
    for trigger in recorded:
        if trigger.name in shadow_has:
            on_shadow.execute(drop_sql(database, trigger.name))
    if on_t is None:   # one read: T's own triggers and the guards
        on_t = _all_on(on_table, database, t)
    if not same(_own(on_t), recorded):
        present = {tr.name for tr in on_t}
        _refuse_names_taken(on_table, database, t, recorded, present)
        for trigger in recorded:
            if trigger.name in present:
                on_table.execute(drop_sql(database, trigger.name))
        try:
            faults.point("triggers_restoring")
            create_all(on_table, database, t, recorded)
        except OnlineDDLError as err:
            # Never an error that ends the run for good: that would drop the checkpoint,
            # the only record of the triggers the guard stands for.
            stuck = CutoverFailed(
                f"putting the triggers of {t} back failed: {err.message}; {_keeps(t)}",
                hint=f"{err.hint + '; ' if err.hint else ''}fix that, then run the same "
                     f"command with --resume, or `onlineddl cleanup` for {t}: either puts "
                     "them back")
            stuck.retryable = err.retryable
            raise stuck from err
    for trigger in on_t:
        if is_guard(trigger):
            on_table.execute(drop_sql(database, trigger.name))


def _keeps(table: str) -> str:
    return (f"{table} keeps its guard trigger(s): its writes fail rather than go through "
            "without its triggers")


def _refuse_names_taken(session: Session, database: str, table: str,
                        recorded: Sequence[Trigger], present: set[str]) -> None:
    """Trigger names are per schema: while T lacked its triggers another session may
    have given one of their names to a trigger of another table."""
    wanted = [tr.name for tr in recorded if tr.name not in present]
    if not wanted:
        return
    rows = session.query(
        "SELECT TRIGGER_NAME, EVENT_OBJECT_TABLE FROM information_schema.TRIGGERS WHERE "
        f"TRIGGER_SCHEMA = %s AND TRIGGER_NAME IN ({', '.join(['%s'] * len(wanted))})",
        (database, *wanted))
    if rows:
        taken = ", ".join(f"{r[0]} (now on {r[1]})" for r in rows)
        raise TableChanged(
            f"the triggers of {table} cannot be put back: another session gave their "
            f"name(s) to trigger(s) of another table: {taken}; {_keeps(table)}",
            hint="drop or rename those triggers, then run the same command with --resume, "
                 f"or `onlineddl cleanup` for {table}: either puts them back")


def repair(session: Session, database: str, names: Artifacts,
           recorded: tuple[Trigger, ...], swapped: bool) -> bool:
    """Finish what a killed carry left (see the module docstring). Returns whether
    anything was changed. Unswapped: T gets the recorded triggers back (in order), the
    shadow loses them, then the guard goes. Swapped: the old table loses the guard."""
    if swapped:
        old = names.old
        guards = guards_on(session, database, old) if old else []
        for name in guards:
            session.execute(drop_sql(database, name))
        return bool(guards)
    on_t = _all_on(session, database, names.table)
    guards = [t.name for t in on_t if is_guard(t)]
    if not guards:
        return False
    if not recorded:
        raise CutoverFailed(
            f"{names.table} carries a cutover guard trigger but the checkpoint records no "
            "triggers to put back", hint="re-create the table's triggers by hand, then "
            f"DROP TRIGGER the guard(s) {', '.join(guards)}")
    _put_back(session, session, database, names, recorded, on_t)
    log.warning("repaired the triggers of %s after an interrupted cutover: %s are back "
                "on it, the guard is gone", names.table,
                ", ".join(t.name for t in recorded))
    return True


# --- MariaDB: from the drain's READ lock to a WRITE lock, writers kept out ------------

def hand_over(old_lock: Session, new_lock: Session, control: Session, lock_sql: str,
              wait: float, before_unlock: Callable[[], None] = lambda: None) -> None:
    """`old_lock` holds T READ (and the sentry); return with `new_lock` holding
    `lock_sql` (T WRITE and the sentry) and no application write in between.

    The new LOCK TABLES is queued first and seen waiting for T; then the old lock goes.
    A waiting WRITE lock request is served before waiting writes (the server's metadata
    locks prefer a pending SNRW over pending SW requests: MariaDB 10.11, checked with
    writers queued before and after it). T sorts before the sentry, so the new lock
    waits for T first. The tables T's triggers write (an audit table) are locked by it
    too, but only after T and the sentry, T held meanwhile (MariaDB 10.11, whichever
    side of T they sort): another session holding one (LOCK TABLES audit READ) keeps T
    blocked until that frees it or the new lock's lock wait timeout (the cutover lock
    timeout) fails the attempt, T unchanged; no write gets in between.

    Raises CutoverFailed (T still blocked by `old_lock`, the queued request killed)
    when it is not seen waiting within `wait` seconds. `before_unlock` raises to call
    it off at the last moment (another session's DDL queued on T would run on it
    before the swap)."""
    outcome: dict[str, BaseException | None] = {}

    def take() -> None:
        try:
            new_lock.execute(lock_sql)
            outcome["error"] = None
        except BaseException as exc:  # reported to the caller through `outcome`
            outcome["error"] = exc

    thread = threading.Thread(target=take, name="cutover-relock", daemon=True)
    thread.start()
    deadline = time.monotonic() + wait
    while True:
        if "error" in outcome:   # failed, or granted at once: T was not blocked after all
            raise CutoverFailed("the write lock for carrying the triggers "
                                + (f"failed: {outcome['error']}" if outcome["error"] else
                                   "was granted without waiting for the drain's lock"))
        state = control.scalar("SELECT STATE FROM information_schema.PROCESSLIST "
                               "WHERE ID = %s", (new_lock.thread_id,))
        if state == "Waiting for table metadata lock":
            break
        if time.monotonic() > deadline:
            _stop(control, new_lock, thread)
            raise CutoverFailed("the write lock for carrying the triggers was not seen "
                                f"queued within {wait:.1f}s; the swap was called off")
        time.sleep(0.002)
    faults.point("trigger_relock_queued")
    try:
        before_unlock()
        old_lock.execute("UNLOCK TABLES")
    except OnlineDDLError:
        _stop(control, new_lock, thread)
        raise
    thread.join(timeout=wait + 10)
    if thread.is_alive() or outcome.get("error") is not None:
        _stop(control, new_lock, thread)
        raise CutoverFailed("the write lock for carrying the triggers was not granted: "
                            f"{outcome.get('error', 'timed out')}")


def _stop(control: Session, session: Session, thread: threading.Thread) -> None:
    if not thread.is_alive():
        return
    try:
        control.execute(f"KILL QUERY {int(session.thread_id)}")
    except DatabaseError as err:
        log.warning("could not stop the queued lock: %s", err.message)
    thread.join(timeout=10)

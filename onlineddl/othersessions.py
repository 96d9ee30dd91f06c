"""What other sessions are doing while the cutover blocks T, asked from the server.

The cutover's correctness on MariaDB depends on other sessions: one holding a lock on
`_T_new` can make the queued RENAME wait for the wrong name, and DDL on T queued behind
the cutover's lock runs on the old table after the unlock. This module answers, from
information_schema.PROCESSLIST and (where the server lists them) metadata locks:
which other session runs DDL on T, whether another statement names our tables, and
which table locks a connection holds or waits for.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable

from onlineddl.db import Session
from onlineddl.errors import (
    DatabaseError,
    MissingPrivilege,
    OnlineDDLError,
    PreflightFailed,
    TableChanged,
)
from onlineddl.flavor import BinlogPosition

log = logging.getLogger(__name__)

WATCH_INTERVAL = 0.02    # seconds between the watcher's looks at PROCESSLIST

# Statements that change a table's definition or contents without row events; another
# session's queued on T during the cutover would run on the old table.
DDL_VERBS = {"alter", "create", "drop", "rename", "truncate", "optimize", "repair"}
_WORD = re.compile(r"`((?:[^`]|``)+)`|([A-Za-z0-9_$\u0080-\uffff]+)")


def statement_names(text: str, names: set[str]) -> bool:
    """Does `text` mention one of `names` as an identifier (any letter case)?"""
    wanted = {n.lower() for n in names}
    return any((q.replace("``", "`") if q else bare).lower() in wanted
               for q, bare in _WORD.findall(text))


def is_ddl_on(text: str, table: str) -> bool:
    """A DDL statement that names `table` (errs on the side of yes: a false yes only
    stops the run)."""
    words = _WORD.findall(text.lstrip("( \t\r\n"))
    if not words:
        return False
    first = (words[0][0] or words[0][1]).lower()
    return first in DDL_VERBS and statement_names(text, {table})


def mdl_key(name: str, lower_case: bool) -> bytes:
    """A table name as the server orders metadata lock requests (bytes of the name,
    lowercased under lower_case_table_names)."""
    return (name.lower() if lower_case else name).encode("utf-8")


class Watcher:
    """While T is blocked: looks every WATCH_INTERVAL seconds for another session's DDL
    on T (in PROCESSLIST) and, on finding one, cancels the drain at once."""

    def __init__(self, session: Session, database: str, table: str, ours: set[int],
                 on_found: Callable[[], None]) -> None:
        self.session = session
        self.database = database
        self.table = table
        self.ours = ours
        self.on_found = on_found
        self.found: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cutover-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                found = self.look()
            except OnlineDDLError as err:
                log.debug("cutover watcher: %s", err.message)
                found = None
            if found:
                self.found = found
                self.on_found()
                return
            self._stop.wait(WATCH_INTERVAL)

    def look(self) -> str | None:
        """Another session's DDL on T, described (which session, which statement)."""
        rows = self.session.query(
            "SELECT ID, USER, HOST, DB, TIME, STATE, INFO FROM information_schema.PROCESSLIST "
            "WHERE INFO IS NOT NULL AND ID <> CONNECTION_ID()")
        for conn_id, user, host, db, secs, state, info in rows:
            if int(conn_id) in self.ours or not is_ddl_on(str(info), self.table):
                continue
            if db != self.database and not statement_names(str(info), {self.database}):
                continue  # the same name in another database
            return (f"connection {conn_id} ({user}@{host}, {state or 'running'} for "
                    f"{secs}s) runs: {str(info)[:300]}")
        return None

    def raise_if_found(self) -> None:
        if self.found:
            raise foreign_ddl(self.table, self.found, before_swap=True)


def foreign_ddl(table: str, found: str, *, before_swap: bool, old: str = "") -> TableChanged:
    if before_swap:
        return TableChanged(
            f"another session changed {table} during the cutover, so the swap was called "
            f"off with {table} unchanged by onlineddl: {found}",
            hint=f"that statement runs on {table} as its author meant; the shadow copy no "
                 "longer matches it, so --resume cannot continue. Let it finish, run "
                 "`onlineddl cleanup` for this table, then start again (with an ALTER that "
                 "takes the new definition into account)")
    return TableChanged(
        f"another session changed the original {table} between the drain and the swap: "
        f"{found}. The swap happened: {table} is the new table WITHOUT that change, and "
        f"the original (with it) is kept as {old}",
        hint=f"compare SHOW CREATE TABLE of {table} and of {old}, and apply that change to "
             f"{table} again if it is still wanted; check {old} for rows written after "
             "the drain")


def others_name(session: Session, names: list[str], exclude: int) -> bool:
    """Does a statement of another session (not `exclude`, not ours) name one of
    `names`?"""
    rows = session.query(
        "SELECT ID, INFO FROM information_schema.PROCESSLIST "
        "WHERE INFO IS NOT NULL AND ID NOT IN (%s, CONNECTION_ID())", (exclude,))
    return any(statement_names(str(info), set(names)) for _, info in rows)


def lock_source(session: Session) -> str | None:
    """Where the server lists metadata locks, if anywhere: the metadata_lock_info
    plugin's table (granted locks), or performance_schema.metadata_locks (granted
    and pending) when performance_schema runs with the MDL instrument on. Either is
    optional: a missing table or a user without SELECT on it means neither."""
    try:
        session.query("SELECT 1 FROM information_schema.METADATA_LOCK_INFO LIMIT 0")
        return "plugin"
    except (DatabaseError, MissingPrivilege):
        pass
    try:
        on = session.scalar(
            "SELECT ENABLED FROM performance_schema.setup_instruments "
            "WHERE NAME = 'wait/lock/metadata/sql/mdl' AND @@performance_schema = 1")
    except (DatabaseError, MissingPrivilege):
        return None
    return "performance_schema" if str(on or "").upper() == "YES" else None


def lock_info(session: Session, source: str | None, database: str, thread_id: int
              ) -> dict[str, str] | None:
    """The thread's exclusive table locks in our database: lowercased name ->
    GRANTED or PENDING; None where the server does not list them."""
    if source == "plugin":
        rows = session.query(
            "SELECT TABLE_NAME, 'GRANTED' FROM information_schema.METADATA_LOCK_INFO "
            "WHERE THREAD_ID = %s AND TABLE_SCHEMA = %s AND LOCK_MODE = 'MDL_EXCLUSIVE'",
            (thread_id, database))
    elif source == "performance_schema":
        rows = session.query(
            "SELECT m.OBJECT_NAME, m.LOCK_STATUS FROM performance_schema.metadata_locks m "
            "JOIN performance_schema.threads t ON t.THREAD_ID = m.OWNER_THREAD_ID "
            "WHERE t.PROCESSLIST_ID = %s AND m.OBJECT_TYPE = 'TABLE' "
            "AND m.OBJECT_SCHEMA = %s AND m.LOCK_TYPE = 'EXCLUSIVE'",
            (thread_id, database))
    else:
        return None
    return {str(name).lower(): str(status).upper() for name, status in rows}


def position_without_prepared_xa(session: Session, take: Callable[[], BinlogPosition],
                                 timeout: float) -> BinlogPosition:
    """A binlog position (`take()`) no prepared XA transaction spans. Such a transaction
    writes its rows to the binlog at XA PREPARE and nothing but the words at XA COMMIT:
    prepared before the run's start position and committed after it, its change is in
    no row event the applier reads, and the copier's plain read saw the rows before it.
    So the position counts once XA RECOVER, asked right after taking it, lists none
    (one prepared before it has then ended; one prepared after it is read in full).
    Waits up to `timeout` seconds, then refuses (exit 4, nothing created is kept)."""
    deadline = time.monotonic() + timeout
    while True:
        position = take()
        xids = prepared_xa(session)
        if not xids:
            return position
        if time.monotonic() > deadline:
            raise PreflightFailed(
                f"XA transaction(s) stayed prepared for {timeout:.0f}s: "
                f"{', '.join(xids[:5])}. A prepared XA transaction's rows are in the "
                "binlog already and its XA COMMIT carries none, so a run starting "
                "between the two would never see that change",
                hint="have their transaction coordinator end them (XA COMMIT or XA "
                     "ROLLBACK; XA RECOVER lists them), then run again")
        log.info("waiting for prepared XA transaction(s) to end: %s", ", ".join(xids[:5]))
        time.sleep(0.2)


def prepared_xa(session: Session) -> list[str]:
    """The xids XA RECOVER lists (every prepared XA transaction on the server); none
    when the user may not ask (MySQL 8 needs XA_RECOVER_ADMIN): then the checksum is
    what finds such a change, and it is logged."""
    try:
        rows = session.query("XA RECOVER")
    except (DatabaseError, MissingPrivilege) as err:
        log.warning("cannot list prepared XA transactions (%s): one prepared before the "
                    "run and committed during it is found only by the checksum", err.message)
        return []
    return [bytes(data[:gtrid_length]).decode("utf-8", "replace") if isinstance(
        data, (bytes, bytearray)) else str(data)[:gtrid_length]
        for _, gtrid_length, _, data in rows]

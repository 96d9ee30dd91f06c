"""The only module that imports pymysql (ruff's TID251 bans it elsewhere): sessions,
error translation (pymysql's exceptions never leave this module), retries, and the
binlog readers' connections.

Every session is one pinned connection (never pooled): session-level state such as
LOCK TABLES, GET_LOCK and an open snapshot lives on a connection, and a pool would
silently hand that state to someone else (a GET_LOCK taken through a pool guards
nothing).
"""

from __future__ import annotations

import logging
import random
import re
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any, ClassVar, TypeVar

import pymysql
import pymysql.err

from onlineddl.config import Dsn
from onlineddl.errors import (
    ConnectionFailed,
    DatabaseError,
    DataError,
    MissingPrivilege,
    OnlineDDLError,
    ReplicationError,
    StreamReconnected,
    TableNotFound,
)
from onlineddl.sql import session_sql_mode
from onlineddl.sql import use as use_database

log = logging.getLogger(__name__)
T = TypeVar("T")

# Server error numbers we act on.
ER_ACCESS_DENIED = 1045
ER_DBACCESS_DENIED = 1044
ER_BAD_DB = 1049
ER_NO_SUCH_TABLE = 1146
ER_LOCK_WAIT_TIMEOUT = 1205
ER_LOCK_DEADLOCK = 1213
ER_DUP_ENTRY = 1062
ER_QUERY_INTERRUPTED = 1317
ER_SPECIFIC_ACCESS_DENIED = 1227
ER_TABLEACCESS_DENIED = 1142
ER_COLUMNACCESS_DENIED = 1143
CR_CONN_HOST_ERROR = 2003
CR_UNKNOWN_HOST = 2005
CR_SERVER_GONE = 2006
CR_SERVER_LOST = 2013
ER_CONN_KILLED = 1927  # MariaDB: "Connection was killed"
ER_SERVER_SHUTDOWN = 1053

RETRYABLE = {ER_LOCK_WAIT_TIMEOUT, ER_LOCK_DEADLOCK, CR_SERVER_GONE, CR_SERVER_LOST,
             ER_CONN_KILLED, ER_QUERY_INTERRUPTED, ER_SERVER_SHUTDOWN}
LOST = {CR_SERVER_GONE, CR_SERVER_LOST, ER_CONN_KILLED, ER_SERVER_SHUTDOWN}
# Errors the rows cause, which a retry or --resume meets again: values that do not fit,
# NULL into NOT NULL, foreign keys, invalid JSON, a failed CHECK (4025 MariaDB, 3819
# MySQL), and errors of an expression the ALTER makes the server evaluate per row
# (a DEFAULT (expr) or a conversion): division by 0 (1365), arithmetic out of range
# (1690), illegal values for a type (1367, 1411, 1918), datetime overflow (1441), no
# geometry from the data (1416, 3037), invalid JSON for CAST (3156).
DATA_ERRORS = {1264, 1265, 1292, 1366, 1406, 1048, 1364, 1451, 1452, 3140, 4025, 3819,
               1365, 1690, 1367, 1411, 1918, 1441, 1416, 3037, 3156}


def translate(exc: BaseException, dsn: Dsn | None = None, *, login: bool = False
              ) -> OnlineDDLError:
    """Turn a pymysql exception into our error tree (the wall for pymysql errors).
    `login`: the error came while connecting (a wrong password), not from a statement
    (a missing privilege)."""
    if isinstance(exc, OnlineDDLError):
        return exc
    if isinstance(exc, pymysql.err.InterfaceError):  # used after the connection died
        return DatabaseError(f"connection to {dsn.describe() if dsn else 'the server'} "
                             "is closed", errno=CR_SERVER_GONE, retryable=True)
    errno = exc.args[0] if exc.args and isinstance(exc.args[0], int) else 0
    text = str(exc.args[1]) if len(exc.args) > 1 else str(exc)
    where = dsn.describe() if dsn else "the server"
    if errno == ER_ACCESS_DENIED or (login and errno == ER_DBACCESS_DENIED):
        return ConnectionFailed(
            f"access denied for {where}: {text}",
            hint="check --user and the password (--password-file, ONLINEDDL_PASSWORD "
                 "or --ask-password)" if errno == ER_ACCESS_DENIED else
                 "grant the user access to the database")
    if errno in (CR_CONN_HOST_ERROR, CR_UNKNOWN_HOST):
        return ConnectionFailed(
            f"cannot connect to {where}: {text}",
            hint="check --host/--port and that the server is running and reachable")
    if errno in (ER_BAD_DB, ER_NO_SUCH_TABLE):
        return TableNotFound(text, hint="check --database and --table")
    if errno in DATA_ERRORS:
        return DataError(f"the data does not fit the new schema: {text}",
                         hint="change the ALTER (or the rows) so every value fits, then run "
                              "again. onlineddl copies strictly whatever the server's "
                              "sql_mode: where that mode is not strict, a plain ALTER TABLE "
                              "would instead store such a value cut or changed, with only a "
                              "warning, and onlineddl never does that silently")
    if errno in (ER_DBACCESS_DENIED, ER_SPECIFIC_ACCESS_DENIED, ER_TABLEACCESS_DENIED,
                 ER_COLUMNACCESS_DENIED):
        return MissingPrivilege(
            f"the server refused a statement for lack of a privilege: {text}",
            hint="grant the user the privileges the README lists under \"Requirements "
                 "on the server\"")
    return DatabaseError(f"server error {errno}: {text}", errno=errno,
                         retryable=errno in RETRYABLE)


def is_lost_connection(err: OnlineDDLError) -> bool:
    return isinstance(err, DatabaseError) and err.errno in LOST


# Client-side bound on one statement's reply (pymysql read/write timeout) when the
# caller sets none: a statement silent for an hour means a dead server or network, and
# without a bound the tool would wait on the socket for ever.
DEFAULT_READ_TIMEOUT = 3600.0


# A quoted name or string (kept as it is), or a %s placeholder.
_PLACEHOLDER = re.compile(r"`(?:[^`]|``)*`|'(?:[^'\\]|\\.|'')*'|\"(?:[^\"\\]|\\.|\"\")*\"|%s",
                          re.DOTALL)


def bind(sql: str, params: Sequence[Any] | None, literal: Callable[[Any], str]) -> str:
    """`sql` with each %s placeholder outside quotes replaced by its parameter as an SQL
    literal; nothing else changes. Not the driver's `sql % params`: that reads every %
    in the text, and a name may hold one (a column `c%s`, a table `a%b`): ident() quotes
    names with backticks, whose contents are kept here as they are."""
    if params is None:
        return sql
    values = iter(params)

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) != "%s":
            return match.group(0)
        try:
            return literal(next(values))
        except StopIteration:
            raise ValueError(f"more %s placeholders than parameters in: {sql[:200]}") \
                from None

    text = _PLACEHOLDER.sub(substitute, sql)
    if next(values, _END) is not _END:
        raise ValueError(f"more parameters than %s placeholders in: {sql[:200]}")
    return text


_END = object()


class Session:
    """One pinned connection with the tool's session settings."""

    # None: the server's global time_zone, the zone a plain ALTER converts in.
    time_zone: ClassVar[str | None] = None

    def __init__(self, dsn: Dsn, *, name: str, database: str | None = None,
                 isolation: str | None = None, lock_wait_timeout: int = 3,
                 read_timeout: float | None = None, reconnect: bool = False,
                 idle_limit: int | None = None) -> None:
        """`reconnect`: after a lost connection, connect again before reporting the
        (retryable) error, so the caller's retry runs on a live session. Only for
        sessions that keep no state the server would lose with the connection (never
        for locks or snapshots).

        `read_timeout`: seconds the client waits for a statement's reply (and to send
        it) before it gives up on the connection (DEFAULT_READ_TIMEOUT when None).

        `idle_limit`: for sessions that hold locks (LOCK TABLES, GET_LOCK). The server
        closes the connection, releasing its locks, once it has been idle this many
        seconds or a packet from the client stalls this long (wait_timeout and the
        net timeouts): a frozen or cut-off tool cannot keep a table blocked for the
        server's default of 8 hours."""
        self.dsn = dsn
        self.name = name
        self._args = (database, read_timeout)
        self._settings = (isolation, lock_wait_timeout)
        self._idle_limit = idle_limit
        self._reconnect = reconnect
        self._conn = _connect(dsn, database, read_timeout)
        self.thread_id: int = self._conn.thread_id()
        self._setup(isolation, lock_wait_timeout)
        self._bound_idle()

    def _bound_idle(self) -> None:
        if self._idle_limit is None:
            return
        limit = max(1, int(self._idle_limit))
        self.execute("SET SESSION wait_timeout = %s, net_read_timeout = %s, "
                     "net_write_timeout = %s", (limit, limit, limit))

    def _error(self, exc: pymysql.err.Error) -> OnlineDDLError:
        err = translate(exc, self.dsn)
        if self._reconnect and is_lost_connection(err):
            self._reconnect = False  # no recursion if the new connection fails too
            try:
                self._conn = _connect(self.dsn, *self._args)
                self.thread_id = self._conn.thread_id()
                self._setup(*self._settings)
                self._bound_idle()
                log.info("%s: reconnected after a lost connection", self.name)
            except OnlineDDLError as again:
                log.warning("%s: reconnect failed: %s", self.name, again.message)
            finally:
                self._reconnect = True
        return err

    def _setup(self, isolation: str | None, lock_wait_timeout: int) -> None:
        # The global sql_mode and time_zone are what a plain ALTER on this server runs
        # under: its date rules, and the zone TIMESTAMP values convert in.
        modes = self.scalar("SELECT @@GLOBAL.sql_mode")
        self.execute("SET SESSION sql_mode = %s", (session_sql_mode(str(modes or "")),))
        if self.time_zone is None:
            self.execute("SET SESSION time_zone = @@GLOBAL.time_zone")
        else:
            self.execute("SET SESSION time_zone = %s", (self.time_zone,))
        self.execute("SET SESSION lock_wait_timeout = %s", (lock_wait_timeout,))
        self.execute("SET SESSION innodb_lock_wait_timeout = %s", (lock_wait_timeout,))
        if isolation:
            level = {"READ COMMITTED", "REPEATABLE READ", "SERIALIZABLE"}
            if isolation not in level:
                raise ValueError(isolation)
            self.execute(f"SET SESSION TRANSACTION ISOLATION LEVEL {isolation}")

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> int:
        """Run one statement; return the affected-row count."""
        try:
            with self._conn.cursor() as cur:
                return int(cur.execute(self._bind(sql, params)))
        except pymysql.err.Error as exc:
            raise self._error(exc) from exc

    def execute_as_client(self, text: str, database: str) -> int:
        """Run the operator's ALTER (`text`) as a plain client's session would: with
        `database` as the default (an unqualified `NEXT VALUE FOR seq` names a sequence
        there) and under the server's global sql_mode itself, not the tool's (with
        ANSI_QUOTES "abc" is a name; a DEFAULT the global mode refuses is refused)."""
        saved = self.scalar("SELECT @@SESSION.sql_mode")
        self.execute(use_database(database))
        self.execute("SET SESSION sql_mode = @@GLOBAL.sql_mode")
        try:
            return self.execute(text)
        finally:
            self.execute("SET SESSION sql_mode = %s", (saved,))

    def execute_info(self, sql: str, params: Sequence[Any] | None = None) -> tuple[int, str]:
        """Run one statement; return (affected rows, the server's info text)."""
        try:
            with self._conn.cursor() as cur:
                count = int(cur.execute(self._bind(sql, params)))
                message = getattr(getattr(cur, "_result", None), "message", b"") or b""
        except pymysql.err.Error as exc:
            raise self._error(exc) from exc
        if isinstance(message, bytes):
            message = message.decode("utf-8", "replace")
        return count, str(message)

    def _bind(self, sql: str, params: Sequence[Any] | None) -> str:
        return bind(sql, params, self._conn.escape)   # (literal() is deprecated)

    def query(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        return self._read(pymysql.cursors.Cursor, sql, params)

    def _read(self, cursor: Any, sql: str, params: Sequence[Any] | None) -> list[Any]:
        """A read, run once more on the new connection when a reconnecting session lost
        its own: reads are idempotent, so callers need not retry every status query.
        (Writes are not repeated here; their callers decide.)"""
        for attempt in (1, 2):
            try:
                with self._conn.cursor(cursor) as cur:
                    cur.execute(self._bind(sql, params))
                    return list(cur.fetchall())
            except pymysql.err.Error as exc:
                err = self._error(exc)
                if attempt == 2 or not (self._reconnect and is_lost_connection(err)):
                    raise err from exc
        raise AssertionError("unreachable")

    def query_one(self, sql: str, params: Sequence[Any] | None = None
                  ) -> tuple[Any, ...] | None:
        rows = self.query(sql, params)
        return rows[0] if rows else None

    def scalar(self, sql: str, params: Sequence[Any] | None = None) -> Any:
        row = self.query_one(sql, params)
        return row[0] if row else None

    def query_dicts(self, sql: str, params: Sequence[Any] | None = None
                    ) -> list[dict[str, Any]]:
        return self._read(pymysql.cursors.DictCursor, sql, params)

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        self.execute("BEGIN")
        try:
            yield self
        except BaseException:
            self.rollback_quietly()
            raise
        self.execute("COMMIT")

    def rollback_quietly(self) -> None:
        with suppress(pymysql.err.Error):
            self._conn.rollback()

    def ping(self) -> None:
        try:
            self._conn.ping(reconnect=False)
        except pymysql.err.Error as exc:
            raise self._error(exc) from exc

    def close(self) -> None:
        try:
            self._conn.close()
        except pymysql.err.Error:
            pass
        except Exception:  # already closed: nothing to do
            pass


class UtcSession(Session):
    """A session in '+00:00' whatever the server's zone: the checksum's, whose source
    side converts TIMESTAMP values to the server's zone explicitly, so a copy made in
    another zone differs (conversion.checksum_pair)."""

    time_zone = "+00:00"


def _connect(dsn: Dsn, database: str | None, read_timeout: float | None
             ) -> pymysql.connections.Connection:
    try:
        return connect(**connect_args(dsn, database, read_timeout))
    except pymysql.err.Error as exc:
        raise translate(exc, dsn, login=True) from exc


def login_probe(dsn: Dsn, sql: str, *, read_timeout: float) -> Any:
    """The first value `sql` returns on a bare connection (no session settings), or
    None while the server does not take the login yet (not listening, still starting
    up). For a server being started: a refused login is final, so it raises
    ConnectionFailed; other errors raise as `translate` turns them."""
    try:
        conn = connect(**connect_args(dsn, read_timeout=read_timeout))
        with conn, conn.cursor() as cur:
            cur.execute(sql)
            row = cur.fetchone()
    except pymysql.err.OperationalError as exc:
        if exc.args and exc.args[0] == ER_ACCESS_DENIED:
            raise translate(exc, dsn, login=True) from exc
        return None
    except pymysql.err.Error as exc:
        raise translate(exc, dsn, login=True) from exc
    return row[0] if row else None


# pymysql ships no type information here (no py.typed, no stubs installed), so its class is Any.
class Connection(pymysql.connections.Connection):  # type: ignore[misc]
    """pymysql's connection with one shared TLS context for its default "preferred" TLS
    mode. pymysql builds a fresh context per connection, loading the system's CA bundle
    each time: about 50 ms of CPU, a tenth of a short migration's own CPU time."""

    _preferred: ClassVar[ssl.SSLContext | None] = None
    _preferred_lock = threading.Lock()

    def _create_ssl_ctx(self, sslp: Any) -> ssl.SSLContext:
        if sslp != {}:
            own: ssl.SSLContext = super()._create_ssl_ctx(sslp)
            return own
        with Connection._preferred_lock:
            if Connection._preferred is None:
                Connection._preferred = super()._create_ssl_ctx(sslp)
            return Connection._preferred


def connect(**kwargs: Any) -> Connection:
    """A pymysql connection (keyword arguments as for pymysql.connect)."""
    return Connection(**kwargs)


def connect_args(dsn: Dsn, database: str | None = None,
                 read_timeout: float | None = None) -> dict[str, Any]:
    """pymysql keyword arguments for `dsn` (also used by the binlog wall)."""
    args: dict[str, Any] = {
        "host": dsn.host,
        "port": dsn.port,
        "user": dsn.user,
        "password": dsn.password,
        "charset": "utf8mb4",
        "autocommit": True,
        "connect_timeout": dsn.connect_timeout,
    }
    if dsn.unix_socket:
        args["unix_socket"] = dsn.unix_socket
    if database:
        args["database"] = database
    # Every connection gets a client-side bound: pymysql waits for ever by default.
    args["read_timeout"] = read_timeout or DEFAULT_READ_TIMEOUT
    args["write_timeout"] = read_timeout or DEFAULT_READ_TIMEOUT
    return args


def retry(fn: Callable[[], T], *, what: str, attempts: int = 5, base_delay: float = 0.2,
          max_delay: float = 5.0, stop: threading.Event | None = None) -> T:
    """Run `fn`, retrying retryable errors with exponential backoff and jitter (the
    jitter keeps workers that failed together from retrying in lockstep).

    Log level rises as retries go on, so a flapping run is visible without turning
    every transient deadlock into a warning.
    """
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except OnlineDDLError as err:
            if not err.retryable:
                raise
            if attempt == attempts:
                raise _exhausted(err, what, attempts) from err
            delay = min(max_delay, base_delay * 2 ** (attempt - 1)) * random.uniform(0.5, 1.5)
            level = logging.INFO if attempt == 1 else logging.WARNING
            log.log(level, "%s failed (attempt %d/%d): %s; retrying in %.2fs",
                    what, attempt, attempts, err.message, delay)
            if stop is not None and stop.wait(delay):
                raise
            if stop is None:
                time.sleep(delay)
    raise AssertionError("unreachable")


def _exhausted(err: OnlineDDLError, what: str, attempts: int) -> OnlineDDLError:
    """The final error after retries: what failed, how often, the likely causes."""
    errno = getattr(err, "errno", 0)
    if errno == ER_LOCK_WAIT_TIMEOUT:
        # A prepared XA transaction keeps its locks after its client disconnects: it is
        # in INNODB_TRX without a thread, not in PROCESSLIST, until XA COMMIT/ROLLBACK.
        causes = ("a long-running transaction holds locks on the table; find it in "
                  "information_schema.INNODB_TRX / PROCESSLIST, or a prepared XA "
                  "transaction in XA RECOVER (its coordinator must XA COMMIT or "
                  "XA ROLLBACK it)")
    elif errno == ER_LOCK_DEADLOCK:
        causes = "heavy write contention on the same rows; retry at a quieter time"
    elif errno in LOST:
        causes = ("the server restarted, a proxy or firewall dropped the connection, or "
                  "someone KILLed it")
    else:
        causes = "see the server's error log"
    err.message = f"{what} failed {attempts} times; last error: {err.message}"
    err.hint = f"likely cause: {causes}. The run is resumable with --resume."
    return err


_RECORDS_RE = re.compile(r"Records:\s*(\d+)")


_MATCHED_RE = re.compile(r"Rows matched:\s*(\d+)")


def rows_matched(info: str) -> int:
    """Rows an UPDATE found (changed or not), from the server's info text; 0 if absent."""
    match = _MATCHED_RE.search(info)
    return int(match.group(1)) if match else 0


def skipped_rows(info: str, affected: int) -> int:
    """Rows an `INSERT ... SELECT ... ON DUPLICATE KEY UPDATE pk = pk` read but did not
    insert. The server's own "Duplicates:" count stays 0 for such no-op updates (checked
    on MariaDB 10.11), but a no-op update adds 0 to the affected rows, so
    Records - affected counts the rows that met an existing key."""
    match = _RECORDS_RE.search(info)
    return max(0, int(match.group(1)) - affected) if match else 0


class DumpConnection:
    """A connection switched to the replication protocol: after COM_BINLOG_DUMP the
    server only streams packets, and they are read here in large chunks for
    binlog/wire.py to frame (pymysql's per-packet reads cost more than the parsing)."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn
        self._rfile = conn._rfile   # pymysql's buffered socket reader

    def read_chunk(self, size: int) -> bytes:
        """Whatever bytes have arrived (at least one), up to `size`."""
        try:
            data: bytes = self._rfile.read1(size)
        except OSError as exc:  # includes the read timeout: no heartbeat came
            raise StreamReconnected(f"the binlog connection was lost: {exc!r}") from exc
        if not data:
            raise StreamReconnected("the server closed the binlog connection")
        return data

    def close(self) -> None:
        with suppress(Exception):
            self._conn.close()


def binlog_stream_error(exc: Exception) -> OnlineDDLError:
    """What a failure inside the binlog library's stream means. A killed or dropped
    connection is resumed from the last commit (StreamReconnected); another server
    error, or the library's own (it raises bare exceptions on decode errors), stops
    the run (ReplicationError)."""
    if isinstance(exc, pymysql.err.Error):
        if exc.args and exc.args[0] in LOST:
            return StreamReconnected(f"the binlog connection was lost: {exc}")
        return ReplicationError(f"binlog stream failed: {exc}")
    return ReplicationError(f"binlog stream failed: {type(exc).__name__}: {exc}",
                            hint="the run is resumable with --resume")


def binlog_connect_args(dsn: Dsn, heartbeat: float) -> dict[str, Any]:
    """Arguments for a binlog stream's connection: a read that waits 20 heartbeats (at
    least 30 s) means the connection is dead."""
    return connect_args(dsn, read_timeout=max(30.0, heartbeat * 20))


def open_dump_connection(dsn: Dsn, settings: Sequence[tuple[str, tuple[Any, ...]]],
                         dump: bytes, *, heartbeat: float, crc: int | None = None
                         ) -> tuple[DumpConnection, int]:
    """Connect, announce checksums and the heartbeat, set `settings` (user variable
    assignments), send COM_BINLOG_DUMP (`dump` is its payload). Returns the stream and
    the checksum length of events; with `crc` known (a poll after the first), the server
    is not asked again. One SET for everything: a poll is a few round trips."""
    conn = None
    try:
        conn = connect(**binlog_connect_args(dsn, heartbeat))
        with conn.cursor() as cur:
            if crc is None:
                cur.execute("SELECT @@global.binlog_checksum")
                row = cur.fetchone()
                crc = 0 if row is None or str(row[0]).upper() == "NONE" else 4
            # Declares that we read checksums (the server refuses otherwise) and asks for
            # heartbeats; MySQL 8.0.26+ reads the source_* names, older servers master_*.
            assignments = [f"@{prefix}_{name}" for prefix in ("master", "source")
                           for name in ("binlog_checksum = @@global.binlog_checksum",
                                        "heartbeat_period = %s")]
            params: list[Any] = [int(heartbeat * 1e9)] * 2
            for assignment, values in settings:
                assignments.append(assignment)
                params.extend(values)
            cur.execute("SET " + ", ".join(assignments), params)
        conn._execute_command(dump[0], dump[1:])
        return DumpConnection(conn), crc
    except pymysql.err.Error as exc:
        if conn is not None:
            with suppress(Exception):
                conn.close()
        err = translate(exc, dsn)
        if err.retryable:
            raise StreamReconnected(f"could not open the binlog stream: {err.message}") from exc
        raise ReplicationError(f"could not open the binlog stream: {err.message}",
                               hint=err.hint) from exc

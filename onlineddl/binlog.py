"""The only module that imports pymysqlreplication: a binlog stream of key changes.

The reader yields, per transaction that touched the table, the primary keys it changed,
then a `Commit` carrying the position just after that transaction. Positions are only
ever reported at transaction boundaries, so a position the applier records can always
be resumed from without splitting a transaction.

Row values are mapped to columns by ordinal position, not by name: names are only in
the binlog when `binlog_row_metadata=FULL`, and ordinals work either way.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pymysql
from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.event import (
    GtidEvent,
    HeartbeatLogEvent,
    MariadbGtidEvent,
    QueryEvent,
    RotateEvent,
    XidEvent,
)
from pymysqlreplication.row_event import DeleteRowsEvent, UpdateRowsEvent, WriteRowsEvent

from onlineddl.config import Dsn
from onlineddl.db import LOST, connect_args
from onlineddl.errors import OnlineDDLError, ReplicationError
from onlineddl.flavor import BinlogPosition, MySQL
from onlineddl.sql import Key

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 0.5


@dataclass(frozen=True)
class Keys:
    """Keys changed by one row event (both old and new key for a key-changing update)."""

    keys: tuple[Key, ...]


@dataclass(frozen=True)
class Commit:
    """End of a transaction (or an idle heartbeat): everything before `position` is read."""

    position: BinlogPosition


@dataclass(frozen=True)
class SchemaChange:
    """DDL (or statement-logged DML) naming the table: the run cannot continue safely."""

    query: str


Item = Keys | Commit | SchemaChange


_IDENT = re.compile(r"`((?:[^`]|``)+)`|([^\s`.,;()=]+)")
_DDL = ("alter", "rename", "drop", "truncate", "create")
_DML = ("insert", "update", "delete", "replace", "load")


def ddl_names_table(text: str, table: str) -> bool:
    """Does this statement change `table` outside row events? DDL, or DML logged as a
    statement (a session with binlog_format=STATEMENT), which the applier cannot see
    as rows. Errs on the side of yes: a false yes stops the run safely."""
    names = [(q.replace("``", "`") if q else bare) for q, bare in _IDENT.findall(text)]
    if not names or names[0].lower() not in _DDL + _DML:
        return False
    if names[0].lower() == "alter":
        # ALTER [ONLINE] [IGNORE] TABLE [db.]name ...: only the altered table counts.
        words = [n.lower() for n in names]
        if "table" not in words:
            return False
        after = names[words.index("table") + 1:words.index("table") + 3]
        return any(n.lower() == table.lower() for n in after)
    return any(n.lower() == table.lower() for n in names[1:])


class StreamReconnected(ReplicationError):
    pass


@dataclass(frozen=True)
class TableShape:
    database: str
    table: str
    column_count: int
    key_ordinals: tuple[int, ...]


class BinlogReader:
    """Reads row changes for one table from `start`, across transactions."""

    def __init__(self, dsn: Dsn, flavor: MySQL, shape: TableShape, start: BinlogPosition,
                 server_id: int) -> None:
        self.flavor = flavor
        self.shape = shape
        self.position = start
        self._file = start.file
        self._gtid_state = start.gtid
        self._pending_gtid = ""
        self._in_txn = False
        self._stream_connects = 0
        args = connect_args(dsn, read_timeout=max(30.0, HEARTBEAT_SECONDS * 20))
        self._stream = BinLogStreamReader(
            connection_settings=args,
            server_id=server_id,
            blocking=True,
            slave_heartbeat=HEARTBEAT_SECONDS,
            only_events=[WriteRowsEvent, UpdateRowsEvent, DeleteRowsEvent, XidEvent,
                         QueryEvent, RotateEvent, HeartbeatLogEvent, GtidEvent,
                         MariadbGtidEvent],
            only_tables=[shape.table],
            only_schemas=[shape.database],
            pymysql_wrapper=self._connect,
            enable_logging=False,
            **flavor.reader_start_args(start),
        )

    def _connect(self, **kwargs: Any) -> pymysql.connections.Connection:
        """Refuse the library's silent reconnect: it can resume mid-transaction, after
        the table map it needs, and drop rows. The applier restarts us from a commit."""
        if kwargs.get("db") != "information_schema":
            self._stream_connects += 1
            if self._stream_connects > 1:
                raise StreamReconnected("the binlog connection was lost")
        return pymysql.connect(**kwargs)

    def items(self, stop: threading.Event) -> Iterator[Item]:
        try:
            while not stop.is_set():
                event = self._stream.fetchone()
                if event is None:
                    continue
                yield from self._handle(event)
        except OnlineDDLError:
            raise
        except pymysql.err.Error as exc:
            if exc.args and exc.args[0] in LOST:  # killed or dropped: resume from a commit
                raise StreamReconnected(f"the binlog connection was lost: {exc}") from exc
            raise ReplicationError(f"binlog stream failed: {exc}") from exc
        except Exception as exc:  # the library raises bare exceptions on decode errors
            raise ReplicationError(f"binlog stream failed: {type(exc).__name__}: {exc}",
                                   hint="the run is resumable with --resume") from exc

    def _handle(self, event: Any) -> Iterator[Item]:
        if isinstance(event, RotateEvent):
            self._file = event.next_binlog
            return
        if isinstance(event, (GtidEvent, MariadbGtidEvent)):
            self._in_txn = True
            self._pending_gtid = str(event.gtid)
            return
        if isinstance(event, (WriteRowsEvent, UpdateRowsEvent, DeleteRowsEvent)):
            yield Keys(self._keys(event))
            return
        if isinstance(event, XidEvent):
            yield self._commit(event.packet.log_pos)
            return
        if isinstance(event, QueryEvent):
            yield from self._query(event)
            return
        if isinstance(event, HeartbeatLogEvent) and not self._in_txn:
            if event.packet.log_pos:
                self.position = BinlogPosition(self._file, event.packet.log_pos,
                                               self._gtid_state)
            yield Commit(self.position)

    def _query(self, event: Any) -> Iterator[Item]:
        text = event.query.strip() if isinstance(event.query, str) else str(event.query)
        upper = text.upper()
        if upper == "BEGIN":
            self._in_txn = True
            return
        if upper != "COMMIT" and self._names_table(text):
            yield SchemaChange(text)
        # COMMIT of a non-XA transaction, or a DDL statement: a transaction boundary.
        yield self._commit(event.packet.log_pos)

    def _names_table(self, text: str) -> bool:
        return ddl_names_table(text, self.shape.table)

    def _commit(self, log_pos: int) -> Commit:
        if self._pending_gtid:
            self._gtid_state = self.flavor.advance_gtid(self._gtid_state, self._pending_gtid)
        self._pending_gtid = ""
        self._in_txn = False
        if log_pos:
            self.position = BinlogPosition(self._file, log_pos, self._gtid_state)
        return Commit(self.position)

    def _keys(self, event: Any) -> tuple[Key, ...]:
        out: list[Key] = []
        if isinstance(event, UpdateRowsEvent):
            for row in event.rows:
                before = self._key(row["before_values"])
                after = self._key(row["after_values"])
                out.append(before)
                if after != before:
                    out.append(after)
        else:
            out.extend(self._key(row["values"]) for row in event.rows)
        return tuple(out)

    def _key(self, values: dict[str, Any]) -> Key:
        row = list(values.values())
        if len(row) != self.shape.column_count:
            raise ReplicationError(
                f"binlog row for {self.shape.table} has {len(row)} columns, the table has "
                f"{self.shape.column_count}: its schema changed during the migration",
                hint="do not ALTER the table while onlineddl runs; clean up and start again")
        return tuple(row[i] for i in self.shape.key_ordinals)

    def close(self) -> None:
        try:
            self._stream.close()
        except Exception:  # closing a broken stream must not mask the real error
            log.debug("closing the binlog stream failed", exc_info=True)


def late_writes(reader: BinlogReader, timeout: float) -> int | None:
    """Count row changes to the table before the next DDL naming it (our RENAME).
    None when no such DDL shows up within `timeout` seconds."""
    stop = threading.Event()
    timer = threading.Timer(timeout, stop.set)
    timer.start()
    count = 0
    try:
        for item in reader.items(stop):
            if isinstance(item, Keys):
                count += len(item.keys)
            elif isinstance(item, SchemaChange):
                return count
    finally:
        timer.cancel()
    return None

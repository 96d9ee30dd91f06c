"""Binlog streams of key changes: the reader choice, and the general (library) path.

A reader yields, per transaction that touched the table, the primary keys it changed,
then a `Commit` carrying the position just after that transaction. Positions are only
ever reported at transaction boundaries, so a position the applier records can always
be resumed from without splitting a transaction.

Most tables are read by wire.py, which decodes only keys straight off the socket.
This module is the only one that imports pymysqlreplication (ruff's TID251 bans it
elsewhere): tables whose key the wire reader does not decode (DECIMAL, temporal) or that
have a column type it cannot step over are read through the library's general row
decoder. The library's connections and errors go through db.py.

Row values are mapped to columns by ordinal position, not by name: names are only in
the binlog when `binlog_row_metadata=FULL`, and ordinals work either way.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import replace
from typing import Any, Protocol

from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.constants.BINLOG import TABLE_MAP_EVENT
from pymysqlreplication.event import (
    ExecuteLoadQueryEvent,
    GtidEvent,
    HeartbeatLogEvent,
    MariadbGtidEvent,
    NotImplementedEvent,
    QueryEvent,
    RotateEvent,
    XAPrepareEvent,
    XidEvent,
)
from pymysqlreplication.packet import BinLogPacketWrapper
from pymysqlreplication.row_event import (
    DeleteRowsEvent,
    TableMapEvent,
    UpdateRowsEvent,
    WriteRowsEvent,
)

from onlineddl.binlog.items import (
    ABSENT,
    GONE,
    MOVED,
    TRANSACTION_PAYLOAD,
    UPSERT,
    Item,
    Keys,
    SchemaChange,
    Tracker,
    image_keys,
    refuse_transaction_payload,
)
from onlineddl.binlog.tablemap import TableShape
from onlineddl.binlog.wire import COMPRESSED, MARIADB_GTID_STANDALONE, WireReader
from onlineddl.config import Dsn
from onlineddl.db import Connection, Session, binlog_connect_args, binlog_stream_error, connect
from onlineddl.errors import OnlineDDLError, ReplicationError, StreamReconnected
from onlineddl.flavor import BinlogPosition, MySQL
from onlineddl.sql import Key

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 0.5


class BinlogReader(Protocol):
    def items(self, stop: threading.Event) -> Iterator[Item]: ...

    def wake(self) -> None: ...

    def close(self) -> None: ...


# python-mysql-replication ships no type information, so its classes are Any.
class CachedTableMapEvent(TableMapEvent):  # type: ignore[misc]
    """A table map the library parses once per distinct body instead of once per
    transaction. The server repeats an identical table map before every transaction's
    row events, and parsing it (columns, optional metadata) was most of the reader's
    time with many small transactions: about 2k transactions a second, where the same
    bytes seen before now cost one dict lookup."""

    _cache: dict[bytes, dict[str, Any]] = {}

    def __init__(self, from_packet: Any, event_size: int, table_map: Any,
                 ctl_connection: Any, **kwargs: Any) -> None:
        raw = bytes(from_packet.read(event_size))
        hit = self._cache.get(raw)
        if hit is not None:
            self.__dict__.update(hit)
            self.packet = from_packet
            return
        from_packet.unread(raw)
        super().__init__(from_packet, event_size, table_map, ctl_connection, **kwargs)
        if len(self._cache) > 4096:
            self._cache.clear()
        self._cache[raw] = {k: v for k, v in self.__dict__.items() if k != "packet"}


# The library picks event classes from a private map; route table maps to the cache.
BinLogPacketWrapper._BinLogPacketWrapper__event_map[TABLE_MAP_EVENT] = CachedTableMapEvent


def open_reader(dsn: Dsn, flavor: MySQL, shape: TableShape, start: BinlogPosition,
                server_id: int) -> BinlogReader:
    """The wire reader when it can read this table, else the library's. Names in the
    binlog are compared as the server compares them (lower_case_table_names)."""
    shape = replace(shape, fold_case=names_fold_case(dsn))
    if shape.key_kinds is not None:
        return WireReader.open(dsn, flavor, shape, start, server_id, HEARTBEAT_SECONDS)
    return LibraryReader(dsn, flavor, shape, start, server_id)


def names_fold_case(dsn: Dsn) -> bool:
    """Does the server compare table names without case (lower_case_table_names 1 or 2)?"""
    session = Session(dsn, name="binlog-names")
    try:
        return int(session.scalar("SELECT @@lower_case_table_names") or 0) != 0
    finally:
        session.close()


class _FoldedNames(list[str]):
    """A name list whose `in` ignores case: the library filters table maps with `in`."""

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and any(name.lower() == n.lower() for n in self)


class LibraryReader:
    """Reads row changes for one table from `start`, across transactions."""

    def __init__(self, dsn: Dsn, flavor: MySQL, shape: TableShape, start: BinlogPosition,
                 server_id: int) -> None:
        self.shape = shape
        self.txn = Tracker(flavor, start, database=shape.database, table=shape.table,
                           fold_case=shape.fold_case)
        self._stream_connects = 0
        args = binlog_connect_args(dsn, HEARTBEAT_SECONDS)
        names = _FoldedNames if shape.fold_case else list
        self._stream = BinLogStreamReader(
            connection_settings=args,
            server_id=server_id,
            blocking=True,
            slave_heartbeat=HEARTBEAT_SECONDS,
            only_events=[WriteRowsEvent, UpdateRowsEvent, DeleteRowsEvent, XidEvent,
                         QueryEvent, RotateEvent, HeartbeatLogEvent, GtidEvent,
                         MariadbGtidEvent, CachedTableMapEvent, XAPrepareEvent,
                         ExecuteLoadQueryEvent, NotImplementedEvent],
            # Unknown event types arrive as NotImplementedEvent, so that those holding
            # changes the reader cannot see (compressed ones) stop the run.
            filter_non_implemented_events=False,
            only_tables=names([shape.table]),
            only_schemas=names([shape.database]),
            pymysql_wrapper=self._connect,
            enable_logging=False,
            # The general decoder runs only for tables the wire reader cannot read, and
            # only their keys are used: text it cannot decode is never a key (text keys
            # are refused unless the wire reader decodes them, see table.py).
            ignore_decode_errors=True,
            **flavor.reader_start_args(start),
        )

    def _connect(self, **kwargs: Any) -> Connection:
        """Refuse the library's silent reconnect: it can resume mid-transaction, after
        the table map it needs, and drop rows. The applier restarts us from a commit."""
        if kwargs.get("db") != "information_schema":
            self._stream_connects += 1
            if self._stream_connects > 1:
                raise StreamReconnected("the binlog connection was lost")
        return connect(**kwargs)

    def items(self, stop: threading.Event) -> Iterator[Item]:
        try:
            while not stop.is_set():
                event = self._stream.fetchone()
                if event is None:
                    continue
                out: list[Item] = []
                self._handle(event, out)
                self.txn.take(out)
                yield from out
        except OnlineDDLError:
            raise
        except Exception as exc:  # the driver's errors, and the library's bare ones
            raise binlog_stream_error(exc) from exc

    def _handle(self, event: Any, out: list[Item]) -> None:
        if isinstance(event, RotateEvent):
            self.txn.file = event.next_binlog
        elif isinstance(event, MariadbGtidEvent):
            self.txn.begin(str(event.gtid),
                           opens=not event.flags & MARIADB_GTID_STANDALONE)
        elif isinstance(event, GtidEvent):
            self.txn.begin(str(event.gtid), opens=False)
        elif isinstance(event, (WriteRowsEvent, UpdateRowsEvent, DeleteRowsEvent)):
            self.txn.keys(self._keys(event))
        elif isinstance(event, (XidEvent, XAPrepareEvent)):
            self.txn.commit(event.packet.log_pos)
        elif isinstance(event, QueryEvent):
            text = event.query if isinstance(event.query, str) else str(event.query)
            self.txn.query(text, event.packet.log_pos, out, _text(event.schema),
                           _session(event))
        elif isinstance(event, ExecuteLoadQueryEvent):
            text, database = _load_query(event)
            self.txn.query(text, event.packet.log_pos, out, database,
                           _session(event))
        elif isinstance(event, HeartbeatLogEvent):
            self.txn.heartbeat(event.packet.log_pos, out)
        elif isinstance(event, NotImplementedEvent):
            self._unknown(event.event_type)

    @staticmethod
    def _unknown(event_type: int) -> None:
        if event_type == TRANSACTION_PAYLOAD:
            refuse_transaction_payload()
        if event_type in COMPRESSED:
            raise ReplicationError(
                "the server writes compressed binlog events (log_bin_compress=ON), "
                "which onlineddl does not read",
                hint="SET GLOBAL log_bin_compress=OFF, then run `onlineddl cleanup` and "
                     "start again: --resume would read the same event")

    def _keys(self, event: Any) -> Keys:
        # The columns-present bitmaps: a session with binlog_row_image MINIMAL or NOBLOB
        # logs only some columns, and the library reads an absent one as None.
        first = event.columns_present_bitmap
        if isinstance(event, UpdateRowsEvent):
            after = event.columns_present_bitmap2
            keys, moved = image_keys(self.shape.table, self.shape.key_names, (
                (self._key(row["before_values"], first), self._key(row["after_values"], after))
                for row in event.rows))
            return Keys(tuple(keys), MOVED if moved else UPSERT)
        keys, _ = image_keys(self.shape.table, self.shape.key_names,
                             ((self._key(row["values"], first),) for row in event.rows))
        return Keys(tuple(keys), GONE if isinstance(event, DeleteRowsEvent) else UPSERT)

    def _key(self, values: dict[str, Any], present: bytes) -> Key:
        row = list(values.values())
        if len(row) != self.shape.column_count:
            raise ReplicationError(
                f"binlog row for {self.shape.table} has {len(row)} columns, the table has "
                f"{self.shape.column_count}: its schema changed during the migration",
                hint="do not ALTER the table while onlineddl runs; clean up and start again")
        key = tuple(row[i] if present[i // 8] >> (i % 8) & 1 else ABSENT
                    for i in self.shape.key_ordinals)
        # The general decoder reads UNSIGNED as signed without full metadata.
        return tuple(v + (1 << bits) if bits and isinstance(v, int) and v < 0 else v
                     for v, bits in zip(key, self.shape.unsigned_bits, strict=True))

    def wake(self) -> None:
        """Nothing to do: this stream blocks at the head and sends events as they come."""

    def close(self) -> None:
        try:
            self._stream.close()
        except Exception:  # closing a broken stream must not mask the real error
            log.debug("closing the binlog stream failed", exc_info=True)


def _session(event: Any) -> int:
    """The session that ran a Query event: its thread id, unique on the server that ran
    it (an event replicated from another server keeps that server's ids)."""
    return int(event.packet.server_id or 0) << 32 | int(event.slave_proxy_id or 0)


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value or "")


def _load_query(event: Any) -> tuple[str, str]:
    """(statement, default database) of a statement-logged LOAD DATA: the library reads
    only the fixed fields; the status vars, database and statement follow."""
    packet = event.packet
    packet.read(event.status_vars_length)
    database = _text(packet.read(event.schema_length))
    packet.read(1)
    rest = event.event_size - 26 - event.status_vars_length - event.schema_length - 1
    return _text(packet.read(max(0, rest))), database


def first_statement(reader: BinlogReader, timeout: float
                    ) -> tuple[int, SchemaChange] | None:
    """Row changes to the table before the first statement naming it, and that
    statement (with the position after it); None when none shows up within `timeout`
    seconds."""
    stop = threading.Event()
    timer = threading.Timer(timeout, stop.set)
    timer.start()
    count = 0
    try:
        for item in reader.items(stop):
            if isinstance(item, Keys):
                count += len(item.keys)
            elif isinstance(item, SchemaChange):
                return count, item
    finally:
        timer.cancel()
    return None

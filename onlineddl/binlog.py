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
from pymysqlreplication.constants import FIELD_TYPE
from pymysqlreplication.constants.BINLOG import TABLE_MAP_EVENT
from pymysqlreplication.event import (
    GtidEvent,
    HeartbeatLogEvent,
    MariadbGtidEvent,
    QueryEvent,
    RotateEvent,
    XidEvent,
)
from pymysqlreplication.packet import BinLogPacketWrapper
from pymysqlreplication.row_event import (
    DeleteRowsEvent,
    TableMapEvent,
    UpdateRowsEvent,
    WriteRowsEvent,
)

from onlineddl.config import Dsn
from onlineddl.db import LOST, connect_args
from onlineddl.errors import OnlineDDLError, ReplicationError
from onlineddl.flavor import BinlogPosition, MySQL
from onlineddl.rowkeys import FIXED, PREFIXED, ColumnSpec, KeyKind, decimal_size, parse_keys
from onlineddl.sql import Key
from onlineddl.table import KEY_CODECS as CODECS
from onlineddl.table import Column, TableInfo

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


class CachedTableMapEvent(TableMapEvent):
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


class StreamReconnected(ReplicationError):
    pass


@dataclass(frozen=True)
class TableShape:
    database: str
    table: str
    column_count: int
    key_ordinals: tuple[int, ...]
    # How to decode each key column with the key-only reader; None when a key column
    # has a type it does not decode (rows then go through the general decoder).
    key_kinds: tuple[KeyKind, ...] | None = None
    unsigned_bits: tuple[int, ...] = ()   # per key column: width if UNSIGNED int, else 0

    @classmethod
    def of(cls, info: TableInfo, name: str | None = None) -> TableShape:
        kinds = [key_kind(c) for c in info.pk_columns]
        ok = all(k is not None for k in kinds)
        bits = tuple(INTEGER_BITS.get(c.data_type, 0) if c.unsigned else 0
                     for c in info.pk_columns)
        return cls(info.database, name or info.name, len(info.columns), info.pk_ordinals,
                   tuple(k for k in kinds if k is not None) if ok else None, bits)


INTEGER_BITS = {"tinyint": 8, "smallint": 16, "mediumint": 24, "int": 32, "bigint": 64}
INTEGER_KEYS = set(INTEGER_BITS)


def key_kind(col: Column) -> KeyKind | None:
    if col.data_type in INTEGER_KEYS:
        return KeyKind("int", signed=not col.unsigned)
    if col.data_type in ("char", "varchar") and col.charset in CODECS:
        return KeyKind("str", codec=CODECS[col.charset])
    if col.data_type == "binary":
        width = re.search(r"\((\d+)\)", col.column_type)
        return KeyKind("bytes", pad=int(width.group(1)) if width else 0)
    if col.data_type == "varbinary":
        return KeyKind("bytes")
    return None
_FIXED_SIZES = {
    FIELD_TYPE.TINY: 1, FIELD_TYPE.SHORT: 2, FIELD_TYPE.INT24: 3, FIELD_TYPE.LONG: 4,
    FIELD_TYPE.LONGLONG: 8, FIELD_TYPE.FLOAT: 4, FIELD_TYPE.DOUBLE: 8, FIELD_TYPE.DATE: 3,
    FIELD_TYPE.NEWDATE: 3, FIELD_TYPE.TIME: 3, FIELD_TYPE.TIMESTAMP: 4,
    FIELD_TYPE.DATETIME: 8, FIELD_TYPE.YEAR: 1, FIELD_TYPE.NULL: 0,
}
_FSP_BASE = {FIELD_TYPE.TIMESTAMP2: 4, FIELD_TYPE.DATETIME2: 5, FIELD_TYPE.TIME2: 3}
_INT_TYPES = {FIELD_TYPE.TINY, FIELD_TYPE.SHORT, FIELD_TYPE.INT24, FIELD_TYPE.LONG,
              FIELD_TYPE.LONGLONG}
_STRING_TYPES = {FIELD_TYPE.VARCHAR, FIELD_TYPE.VAR_STRING, FIELD_TYPE.STRING}


def column_spec(column: Any) -> ColumnSpec | None:
    """How to step over one column's value, from the table map; None: unknown type."""
    t = column.type
    if t in _FIXED_SIZES:
        return ColumnSpec(FIXED, _FIXED_SIZES[t])
    if t in _FSP_BASE:
        return ColumnSpec(FIXED, _FSP_BASE[t] + (column.fsp + 1) // 2)
    if t == FIELD_TYPE.NEWDECIMAL:
        return ColumnSpec(FIXED, decimal_size(column.precision, column.decimals))
    if t == FIELD_TYPE.BIT:
        return ColumnSpec(FIXED, column.bytes)
    if t in (FIELD_TYPE.ENUM, FIELD_TYPE.SET):
        return ColumnSpec(FIXED, column.size)
    if t in (FIELD_TYPE.VARCHAR, FIELD_TYPE.VAR_STRING, FIELD_TYPE.STRING):
        return ColumnSpec(PREFIXED, 2 if column.max_length > 255 else 1)
    if t in (FIELD_TYPE.BLOB, FIELD_TYPE.GEOMETRY, FIELD_TYPE.JSON, FIELD_TYPE.TINY_BLOB,
             FIELD_TYPE.MEDIUM_BLOB, FIELD_TYPE.LONG_BLOB):
        return ColumnSpec(PREFIXED, column.length_size)
    return None


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
        self._spec_cache: dict[int, tuple[Any, list[ColumnSpec] | None]] = {}
        args = connect_args(dsn, read_timeout=max(30.0, HEARTBEAT_SECONDS * 20))
        self._stream = BinLogStreamReader(
            connection_settings=args,
            server_id=server_id,
            blocking=True,
            slave_heartbeat=HEARTBEAT_SECONDS,
            only_events=[WriteRowsEvent, UpdateRowsEvent, DeleteRowsEvent, XidEvent,
                         QueryEvent, RotateEvent, HeartbeatLogEvent, GtidEvent,
                         MariadbGtidEvent, CachedTableMapEvent],
            only_tables=[shape.table],
            only_schemas=[shape.database],
            pymysql_wrapper=self._connect,
            enable_logging=False,
            # The general decoder runs only for DECIMAL/temporal keys (text keys always go
            # through the key-only reader, see table.check_primary_key), so text it cannot
            # decode is never a key and must not stop the run.
            ignore_decode_errors=True,
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
        specs = self._fast_specs(event)
        if specs is not None:
            data = event.packet.read(event.event_size - event.packet.read_bytes)
            images = 2 if isinstance(event, UpdateRowsEvent) else 1
            return tuple(parse_keys(data, specs, self.shape.key_ordinals, images))
        return self._keys_slow(event)

    def _fast_specs(self, event: Any) -> list[ColumnSpec] | None:
        """Column specs for the key-only reader, or None when it cannot be used."""
        if self.shape.key_kinds is None or len(event.columns) != self.shape.column_count:
            return None
        full = (1 << self.shape.column_count) - 1
        for bitmap in (event.columns_present_bitmap,
                       getattr(event, "columns_present_bitmap2", None)):
            if bitmap is not None and int.from_bytes(bitmap, "little") & full != full:
                return None  # not a full row image
        cached = self._spec_cache.get(event.table_id)
        if cached is not None and cached[0] is event.columns:
            return cached[1]  # the same table map object: see CachedTableMapEvent
        specs = self._build_specs(event.columns)
        self._spec_cache[event.table_id] = (event.columns, specs)
        return specs

    def _build_specs(self, columns: list[Any]) -> list[ColumnSpec] | None:
        assert self.shape.key_kinds is not None
        specs: list[ColumnSpec] = []
        kinds = dict(zip(self.shape.key_ordinals, self.shape.key_kinds, strict=True))
        for i, column in enumerate(columns):
            spec = column_spec(column)
            if spec is None:
                return None
            if i in kinds:
                wire = _INT_TYPES if kinds[i].kind == "int" else _STRING_TYPES
                if column.type not in wire:
                    return None
                spec = ColumnSpec(spec.kind, spec.size, kinds[i])
            specs.append(spec)
        return specs

    def _keys_slow(self, event: Any) -> tuple[Key, ...]:
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
        key = tuple(row[i] for i in self.shape.key_ordinals)
        # The general decoder reads UNSIGNED as signed without full metadata.
        return tuple(v + (1 << bits) if bits and isinstance(v, int) and v < 0 else v
                     for v, bits in zip(key, self.shape.unsigned_bits, strict=True))

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

"""The binlog read straight off the replication socket: the applier's fast path.

python-mysql-replication builds a packet wrapper and an event object for every event,
and a busy server writes four or five events per transaction (GTID, table map, rows,
XID): about 8k small transactions a second was all one core could follow, so the
applier fell behind four writers. This reader frames packets out of large socket
reads, looks at each event's 19-byte header, and decodes only what the applier needs:
transaction boundaries and positions, DDL text, our table's map, and the primary key
of our table's row images (tablemap.py for the layout, rowkeys.py for the keys).
Events of other tables are skipped unread; the items are those of items.py.

binlog.py picks this reader when every column of the table has a wire size this
module knows and the key is an integer, text or binary; otherwise the library reads
(DECIMAL and temporal keys). Both yield the same items (`Keys`, `Commit`,
`SchemaChange`) with the same position rules, and tests compare them event for event.

The reader polls: each dump is non-blocking (the server sends what the binlog holds,
then an EOF packet and hangs up), and the next one starts from where the last ended,
`poll_interval` later or at once when someone waits for a position (`wake`). A
blocking dump wakes the server's dump thread and this reader once per writer commit:
with four writers at full speed that cost them about a quarter of their throughput,
against about a tenth when polling ten times a second (README, "How it works").

Protocol references: the MySQL/MariaDB client-server protocol (COM_BINLOG_DUMP,
packet framing) and the binlog event layouts (header, QUERY, ROTATE, XID, GTID,
TABLE_MAP, ROWS v1/v2, HEARTBEAT).
"""

from __future__ import annotations

import struct
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from onlineddl.binlog.items import (
    ABSENT,
    GONE,
    MOVED,
    TRANSACTION_PAYLOAD,
    UPSERT,
    Item,
    Keys,
    Tracker,
    image_keys,
    refuse_transaction_payload,
)
from onlineddl.binlog.rowkeys import (
    ColumnSpec,
    ImagesParser,
    KeyParser,
    compile_images_parser,
    compile_parser,
)
from onlineddl.binlog.tablemap import TableShape, key_specs, packed_int, parse_table_map
from onlineddl.config import Dsn
from onlineddl.db import LOST, DumpConnection, open_dump_connection
from onlineddl.errors import ReplicationError, StreamReconnected
from onlineddl.flavor import BinlogPosition, MySQL

# Event types (the header's type byte).
QUERY, ROTATE, FORMAT_DESCRIPTION, XID, TABLE_MAP, HEARTBEAT = 2, 4, 15, 16, 19, 27
EXECUTE_LOAD_QUERY, XA_PREPARE = 18, 38
MYSQL_GTID, HEARTBEAT_V2, PARTIAL_UPDATE_ROWS = 33, 41, 39
MARIADB_GTID = 162
MARIADB_GTID_STANDALONE = 1           # GTID flag: one statement (DDL), no BEGIN/COMMIT
WRITE_V1, UPDATE_V1, DELETE_V1, WRITE_V2, UPDATE_V2, DELETE_V2 = 23, 24, 25, 30, 31, 32
ROWS_V1 = (WRITE_V1, UPDATE_V1, DELETE_V1)
ROWS = frozenset((*ROWS_V1, WRITE_V2, UPDATE_V2, DELETE_V2))
UPDATES = frozenset((UPDATE_V1, UPDATE_V2))
DELETES = frozenset((DELETE_V1, DELETE_V2))
# MariaDB's log_bin_compress writes these instead of QUERY and ROWS: reading past one
# would miss a change, so the reader stops instead.
COMPRESSED = frozenset(range(165, 172))
# The Query post-header (13 bytes); EXECUTE_LOAD_QUERY (statement-logged LOAD DATA) adds
# file id, the file name's start and end, and the duplicate handling (13 more).
QUERY_POST_HEADER = 13
LOAD_QUERY_POST_HEADER = 26

HEADER = struct.Struct("<IBIIIH")   # timestamp, type, server_id, size, log_pos, flags
HEADER_LEN = 19
MAX_PACKET = 0xFFFFFF
COM_BINLOG_DUMP = 0x12
DUMP_NON_BLOCK = 1                    # COM_BINLOG_DUMP flag: EOF at the end, no waiting
READ_SIZE = 1 << 18

Reopen = Callable[[BinlogPosition, int], tuple[DumpConnection, int]]


class WireReader:
    """Reads row changes of one table from `start`, across transactions; see binlog.py
    for the items it yields and the position rules."""

    poll_interval = 0.1

    def __init__(self, flavor: MySQL, shape: TableShape, start: BinlogPosition,
                 conn: DumpConnection | None = None, crc: int = 0,
                 reopen: Reopen | None = None) -> None:
        self.shape = shape
        self.txn = Tracker(flavor, start, database=shape.database, table=shape.table,
                           fold_case=shape.fold_case)
        self._conn = conn
        self._crc = crc                      # checksum bytes at the end of each event
        self._reopen = reopen                # the next dump; None: one stream, no polling
        self._wake = threading.Event()
        self._eof = False
        self._head = start.pos               # end of the last event read in txn.file
        # table id -> key parsers for one and for two images (updates)
        self._ours: dict[int, tuple[KeyParser, KeyParser]] = {}
        self._maps: dict[bytes, tuple[int, tuple[KeyParser, KeyParser, list[ColumnSpec]]
                                      | None]] = {}
        self._uuids: dict[bytes, str] = {}
        # table id -> column specs; parsers of images lacking columns (few, cached)
        self._specs: dict[int, list[ColumnSpec]] = {}
        self._partial: dict[tuple[tuple[ColumnSpec, ...], tuple[int, ...]], ImagesParser] = {}

    @classmethod
    def open(cls, dsn: Dsn, flavor: MySQL, shape: TableShape, start: BinlogPosition,
             server_id: int, heartbeat: float) -> WireReader:
        """Connect and ask the server for the binlog from `start`: the first dump by
        GTID where the flavor dumps by GTID (MariaDB), the polls after it by file and
        position (found by the first, on the same server: a GTID start scans the binlog
        file from its beginning)."""
        def dump(pos: BinlogPosition, by_gtid: bool, crc: int | None
                 ) -> tuple[DumpConnection, int]:
            return open_dump_connection(
                dsn, *cls._dump_request(flavor, pos, server_id, by_gtid),
                heartbeat=heartbeat, crc=crc)

        conn, crc = dump(start, True, None)
        # A poll goes on with the checksum length of the last format description read.
        return cls(flavor, shape, start, conn, crc,
                   reopen=lambda pos, crc: dump(pos, False, crc))

    @staticmethod
    def _dump_request(flavor: MySQL, start: BinlogPosition, server_id: int, by_gtid: bool
                      ) -> tuple[list[tuple[str, tuple[Any, ...]]], bytes]:
        """User variables to set, then the COM_BINLOG_DUMP payload."""
        settings: list[tuple[str, tuple[Any, ...]]] = [
            # 4 = understands GTID events; lower makes MariaDB rewrite them.
            ("@mariadb_slave_capability = 4", ())]
        gtid_settings = flavor.gtid_dump_settings(start) if by_gtid else None
        if gtid_settings is not None:
            settings += gtid_settings
            pos, name = 4, b""                # the server starts from the GTID state
        else:
            pos, name = start.pos, start.file.encode()
        # position, flags, our server id, file name
        return settings, struct.pack("<BIHI", COM_BINLOG_DUMP, pos, DUMP_NON_BLOCK,
                                     server_id) + name

    def wake(self) -> None:
        """Someone waits for a position: start the next poll now, not at the interval."""
        self._wake.set()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()

    # --- framing -----------------------------------------------------------------------

    def items(self, stop: threading.Event) -> Iterator[Item]:
        """Items in binlog order, one dump after another until `stop`."""
        while not stop.is_set():
            yield from self._dump(stop)
            if self._reopen is None:
                raise StreamReconnected("the server ended the binlog stream")
            self.close()
            self._conn = None
            self._wake.wait(self.poll_interval)
            self._wake.clear()
            if stop.is_set():
                return
            self.txn.rewind()
            self._conn, self._crc = self._reopen(self.txn.position, self._crc)
            self._head = self.txn.position.pos

    def _dump(self, stop: threading.Event) -> Iterator[Item]:
        """One dump, up to the server's EOF. Each socket read is parsed in one pass over
        a bytes object, every event read in place (by offset): at about 4 events a
        transaction, a generator or a copy per packet was most of the reader's time."""
        assert self._conn is not None, "open() the reader first"
        read = self._conn.read_chunk
        buf = bytearray()
        need = 4                              # bytes to have before parsing again
        self._eof = False
        while not stop.is_set():
            buf += read(READ_SIZE)
            if len(buf) < need:
                continue
            data = bytes(buf)
            out: list[Item] = []
            try:
                used, need = self.parse(data, out)
            except ReplicationError:
                # Items before the bad event first: the caller may stop at one of them
                # (first_statement stops at our RENAME; the new table's rows follow it).
                self.txn.take(out)
                yield from out
                raise
            del buf[:used]
            yield from out
            if self._eof:
                return

    def parse(self, data: bytes, out: list[Item]) -> tuple[int, int]:
        """Handle every whole packet in `data`; return the bytes used and how many the
        next, incomplete packet needs (counted from the first unused byte)."""
        pos, end = 0, len(data)
        while end - pos >= 4 and not self._eof:
            length = data[pos] | data[pos + 1] << 8 | data[pos + 2] << 16
            if length == MAX_PACKET:          # a payload of 16 MB or more: rare
                payload, after = self._joined(data, pos)
                if payload is None:
                    self.txn.take(out)
                    return pos, after
                self._payload(payload, 0, len(payload), out)
                pos = after
                continue
            if end - pos - 4 < length:
                self.txn.take(out)
                return pos, 4 + length
            self._payload(data, pos + 4, pos + 4 + length, out)
            pos += 4 + length
        self.txn.take(out)
        return pos, 4

    @staticmethod
    def _joined(data: bytes, pos: int) -> tuple[bytes | None, int]:
        """A payload split over several packets: (payload, position after it), or
        (None, bytes needed from `pos`) when not all of it has arrived."""
        parts, p = [], pos
        while True:
            if len(data) - p < 4:
                return None, p - pos + 4
            length = int.from_bytes(data[p:p + 3], "little")
            if len(data) - p - 4 < length:
                return None, p - pos + 4 + length
            parts.append(data[p + 4:p + 4 + length])
            p += 4 + length
            if length < MAX_PACKET:
                return b"".join(parts), p

    def _payload(self, data: bytes, start: int, end: int, out: list[Item]) -> None:
        kind = data[start]
        if kind == 0x00:
            self._event(data, start + 1, out)
        elif kind == 0xFF:
            self._raise_error(data[start:end])
        elif kind == 0xFE and end - start < 9:
            # The end of a non-blocking dump: everything the binlog held is read. Like a
            # heartbeat, it tells waiters the reader is at the head.
            self._eof = True
            self.txn.heartbeat(self._head, out)
        else:
            raise ReplicationError(f"unexpected binlog packet 0x{kind:02x}")

    @staticmethod
    def _raise_error(payload: bytes) -> None:
        errno = int.from_bytes(payload[1:3], "little")
        text = payload[3:]
        if text[:1] == b"#":
            text = text[6:]                   # '#' and the SQLSTATE
        message = text.decode("utf-8", "replace")
        if errno in LOST:
            raise StreamReconnected(f"the binlog connection was lost: {errno} {message}")
        raise ReplicationError(f"binlog stream failed: ({errno}) {message}",
                               hint="the run is resumable with --resume")

    # --- events ------------------------------------------------------------------------

    def _event(self, data: bytes, at: int, out: list[Item]) -> None:
        """One event whose header starts at `at`; its body follows the 19-byte header."""
        _, etype, server_id, size, log_pos, _ = HEADER.unpack_from(data, at)
        body, body_end = at + HEADER_LEN, at + size - self._crc
        txn = self.txn
        if log_pos > self._head:              # artificial events have log_pos 0
            self._head = log_pos
        if etype in ROWS:
            parsers = self._ours.get(int.from_bytes(data[body:body + 6], "little"))
            if parsers is not None:
                txn.keys(self._row_keys(data, body, etype, parsers, body_end))
        elif etype == TABLE_MAP:
            self._table_map(data[body:body_end])
        elif etype in (XID, XA_PREPARE):
            txn.commit(log_pos)
        elif etype == MARIADB_GTID:
            seq, domain, flags = struct.unpack_from("<QIB", data, body)
            txn.begin(f"{domain}-{server_id}-{seq}",
                      opens=not flags & MARIADB_GTID_STANDALONE)
        elif etype == MYSQL_GTID:
            txn.begin(self._mysql_gtid(data[body:body_end]), opens=False)
        elif etype in (QUERY, EXECUTE_LOAD_QUERY):
            text, database = self._query(
                data[body:body_end],
                QUERY_POST_HEADER if etype == QUERY else LOAD_QUERY_POST_HEADER)
            # The session: its thread id, unique on the server that ran it (an event
            # replicated from another server keeps that server's id and thread id).
            txn.query(text, log_pos, out, database,
                      server_id << 32 | int.from_bytes(data[body:body + 4], "little"))
        elif etype in (HEARTBEAT, HEARTBEAT_V2):
            txn.heartbeat(log_pos if etype == HEARTBEAT else 0, out)
        elif etype == ROTATE:
            txn.file = data[body + 8:body_end].decode()
            self._head = int.from_bytes(data[body:body + 8], "little")
        elif etype == FORMAT_DESCRIPTION:
            # Always ends with the checksum algorithm and four checksum bytes.
            self._crc = 4 if data[at + size - 5] != 0 else 0
        elif etype in COMPRESSED:
            raise ReplicationError(
                "the server writes compressed binlog events (log_bin_compress=ON), "
                "which onlineddl does not read",
                hint="SET GLOBAL log_bin_compress=OFF, then run `onlineddl cleanup` and start "
                     "again: --resume would read the same event")
        elif etype == TRANSACTION_PAYLOAD:
            refuse_transaction_payload()
        elif etype == PARTIAL_UPDATE_ROWS:
            raise ReplicationError(
                "the server logs partial JSON updates (binlog_row_value_options=PARTIAL_JSON)",
                hint="SET GLOBAL binlog_row_value_options='' and run again with --resume")

    def _mysql_gtid(self, body: bytes) -> str:
        sid = body[1:17]                      # after one flags byte
        name = self._uuids.get(sid)
        if name is None:
            name = self._uuids[sid] = str(uuid.UUID(bytes=sid))
        return f"{name}:{int.from_bytes(body[17:25], 'little')}"

    @staticmethod
    def _query(body: bytes, post_header: int) -> tuple[str, str]:
        """(statement, the default database it ran in)."""
        # thread id (4), exec time (4), db length (1), error code (2), status vars length (2)
        # (and for LOAD DATA more fixed fields), then the status vars, the database name
        # and a NUL, then the statement.
        db_len = body[8]
        at = post_header + int.from_bytes(body[11:13], "little")
        return (body[at + db_len + 1:].decode("utf-8", "replace"),
                body[at:at + db_len].decode("utf-8", "replace"))

    def _table_map(self, body: bytes) -> None:
        """Remember our table's id and layout; forget an id another table now uses."""
        hit = self._maps.get(body)
        if hit is None:
            tmap = parse_table_map(body)
            ours = None
            if self.shape.is_table(tmap.database, tmap.table):
                specs = key_specs(self.shape, tmap.types, tmap.meta)
                keys = self.shape.key_ordinals
                ours = (compile_parser(specs, keys, 1), compile_parser(specs, keys, 2), specs)
            if len(self._maps) > 4096:
                self._maps.clear()
            hit = self._maps[body] = (tmap.table_id, ours)
        table_id, ours = hit
        if ours is None:
            self._ours.pop(table_id, None)
            self._specs.pop(table_id, None)
        else:
            self._ours[table_id] = ours[:2]
            self._specs[table_id] = ours[2]

    def _images_parser(self, table_id: int, presents: list[int]) -> ImagesParser:
        """The parser for row images with these columns-present bitmaps, of the table
        map last read for `table_id`."""
        specs = self._specs[table_id]
        key = (tuple(specs), tuple(presents))
        parser = self._partial.get(key)
        if parser is None:
            if len(self._partial) > 256:
                self._partial.clear()
            parser = self._partial[key] = compile_images_parser(
                specs, self.shape.key_ordinals, presents, ABSENT)
        return parser

    def _row_keys(self, data: bytes, body: int, etype: int,
                  parsers: tuple[KeyParser, KeyParser], end: int) -> Keys:
        pos = body + 8                         # table id (6), flags (2)
        if etype not in ROWS_V1:
            pos += int.from_bytes(data[pos:pos + 2], "little")  # v2 extra data
        count, pos = packed_int(data, pos)
        if count != self.shape.column_count:
            raise ReplicationError(
                f"binlog row for {self.shape.table} has {count} columns, the table has "
                f"{self.shape.column_count}: its schema changed during the migration",
                hint="do not ALTER the table while onlineddl runs; clean up and start again")
        images = 2 if etype in UPDATES else 1
        width = (count + 7) // 8
        full = (1 << count) - 1
        presents = []
        for _ in range(images):   # the columns-present bitmaps
            presents.append(int.from_bytes(data[pos:pos + width], "little") & full)
            pos += width
        if presents[0] != full or presents[-1] != full:
            # A session with binlog_row_image MINIMAL or NOBLOB: rare, and slow.
            table_id = int.from_bytes(data[body:body + 6], "little")
            parse = self._images_parser(table_id, presents)
            keys, moved = image_keys(self.shape.table, self.shape.key_names,
                                     parse(data, pos, end))
            if etype in UPDATES:
                return Keys(keys, MOVED if moved else UPSERT)
            return Keys(keys, GONE if etype in DELETES else UPSERT)
        keys, moved = parsers[images - 1](data, pos, end)
        if etype in UPDATES:
            return Keys(keys, MOVED if moved else UPSERT)
        return Keys(keys, GONE if etype in DELETES else UPSERT)

"""The wire reader on hand-built MySQL 8 event streams (v2 row events, uuid:gno GTIDs,
checksums), split into socket reads at every possible point. MariaDB streams are read
from a real server in tests/integration/test_binlog_keys.py; no MySQL server runs on the
development machine, so this keeps the MySQL event layouts honest."""

from __future__ import annotations

import struct
import threading
import uuid
import zlib

import pytest

from onlineddl.binlog.items import GONE, MOVED, UPSERT, Commit, Item, Keys, SchemaChange
from onlineddl.binlog.rowkeys import FIXED, PREFIXED, ColumnSpec, KeyKind
from onlineddl.binlog.tablemap import TableShape, column_specs
from onlineddl.binlog.wire import WireReader
from onlineddl.errors import ReplicationError, StreamReconnected
from onlineddl.flavor import BinlogPosition, detect

SID = uuid.UUID("3e11fa47-71ca-11e1-9e33-c80aa9429562")
FILE = "binlog.000007"
SHAPE = TableShape("shop", "orders", 3, (0,), (KeyKind("int", signed=False),))


def packet(etype: int, body: bytes, log_pos: int = 0) -> bytes:
    size = 19 + len(body) + 4
    event = struct.pack("<IBIIIH", 1700000000, etype, 1, size, log_pos, 0) + body
    event += struct.pack("<I", zlib.crc32(event))
    payload = b"\x00" + event
    return len(payload).to_bytes(3, "little") + b"\x00" + payload


def fde() -> bytes:
    version = b"8.0.36".ljust(50, b"\x00")
    return packet(15, struct.pack("<H", 4) + version + struct.pack("<IB", 0, 19)
                  + bytes(40) + b"\x01")  # post-header lengths, then alg 1 = CRC32


def gtid(gno: int) -> bytes:
    return packet(33, b"\x01" + SID.bytes + struct.pack("<q", gno) + bytes(17))


def query(text: str, log_pos: int) -> bytes:
    db = b"shop"
    return packet(2, struct.pack("<IIBHH", 9, 0, len(db), 0, 0) + db + b"\x00"
                  + text.encode(), log_pos)


def table_map(table_id: int, table: bytes) -> bytes:
    # id BIGINT UNSIGNED, name VARCHAR(300) utf8mb4 (1200 bytes), code CHAR(10) latin1
    types = bytes([8, 15, 254])
    meta = struct.pack("<H", 1200) + bytes([254, 10])
    return packet(19, table_id.to_bytes(6, "little") + b"\x01\x00" + b"\x04shop\x00"
                  + bytes([len(table)]) + table + b"\x00" + b"\x03" + types
                  + bytes([len(meta)]) + meta + b"\x06")


def image(key: int, name: str, code: bytes | None) -> bytes:
    nulls = 0b100 if code is None else 0
    name_b = name.encode()
    out = bytes([nulls]) + struct.pack("<Q", key) + struct.pack("<H", len(name_b)) + name_b
    return out + (bytes([len(code)]) + code if code is not None else b"")


def rows(etype: int, table_id: int, *images: bytes) -> bytes:
    present = b"\x07\x07" if etype == 31 else b"\x07"
    body = table_id.to_bytes(6, "little") + b"\x01\x00" + b"\x02\x00" + b"\x03" + present
    return packet(etype, body + b"".join(images))


def xid(log_pos: int) -> bytes:
    return packet(16, struct.pack("<Q", 77), log_pos)


STREAM = b"".join([
    packet(4, struct.pack("<Q", 4) + FILE.encode()), fde(),
    gtid(41), query("BEGIN", 300), table_map(108, b"orders"), table_map(200, b"other"),
    rows(30, 108, image(1, "a" * 300, b"x"), image(2**64 - 1, "\u00e9", None)),
    rows(30, 200, image(9, "not ours", b"y")),
    rows(31, 108, image(1, "a", b"x"), image(1, "b", b"x"),     # same key
         image(5, "c", None), image(6, "c", None)),              # key moved
    xid(900),
    gtid(42), query("BEGIN", 1000), table_map(108, b"orders"),
    rows(32, 108, image(6, "c", None)), xid(1200),
    gtid(43), query("ALTER TABLE `shop`.`orders` ADD COLUMN z INT", 1400),
])


class Chunks:
    """A stand-in for the dump connection: the stream in reads of the given sizes."""

    def __init__(self, data: bytes, size: int) -> None:
        self.parts = [data[i:i + size] for i in range(0, len(data), size)]

    def read_chunk(self, size: int) -> bytes:
        if not self.parts:
            raise StreamReconnected("end of the test stream")
        return self.parts.pop(0)

    def close(self) -> None:
        pass


def read_all(data: bytes, size: int) -> list[Item]:
    start = BinlogPosition(FILE, 4, "")
    reader = WireReader(detect("8.0.36"), SHAPE, start, Chunks(data, size), crc=4)  # type: ignore[arg-type]
    out: list[Item] = []
    with pytest.raises(StreamReconnected):
        out.extend(reader.items(threading.Event()))
    return out


def test_mysql_stream_keys_kinds_positions_and_ddl() -> None:
    items = read_all(STREAM, 1 << 20)
    gtid_of = f"{SID}:"
    # One socket read: the keys of both transactions, then one Commit after them.
    assert items == [
        Keys([(1,), (2**64 - 1,)], UPSERT), Keys([(1,), (5,), (6,)], MOVED),
        Keys([(6,)], GONE), Commit(BinlogPosition(FILE, 1200, gtid_of + "42")),
        SchemaChange("ALTER TABLE `shop`.`orders` ADD COLUMN z INT"),
        Commit(BinlogPosition(FILE, 1400, gtid_of + "43")),
    ]


def test_any_split_into_socket_reads_gives_the_same_items() -> None:
    whole = read_all(STREAM, 1 << 20)
    keys = [i for i in whole if not isinstance(i, Commit)]
    # What must have been handed out before a Commit at each position, and nothing more.
    before = {900: keys[:2], 1200: keys[:3], 1400: keys}
    for size in (1, 2, 3, 5, 7, 19, 64, 333):
        got = read_all(STREAM, size)
        # Commits may be handed out per read; the keys and their order may not change,
        # and a Commit comes exactly after its transactions' keys.
        assert [i for i in got if not isinstance(i, Commit)] == keys
        assert got[-1] == whole[-1]
        for n, item in enumerate(got):
            if isinstance(item, Commit):
                assert [i for i in got[:n] if not isinstance(i, Commit)] == \
                    before[item.position.pos], (size, item)


def test_a_column_count_change_stops_the_reader_after_what_came_before() -> None:
    bad = packet(19, (108).to_bytes(6, "little") + b"\x01\x00\x04shop\x00\x06orders\x00"
                 + b"\x02" + bytes([8, 3]) + b"\x00" + b"\x00")
    stream = STREAM[:STREAM.index(gtid(42))] + gtid(42) + bad
    start = BinlogPosition(FILE, 4, "")
    reader = WireReader(detect("8.0.36"), SHAPE, start, Chunks(stream, 1 << 20), crc=4)  # type: ignore[arg-type]
    seen: list[Item] = []
    with pytest.raises(ReplicationError, match="2 columns"):
        seen.extend(reader.items(threading.Event()))
    assert seen[-1] == Commit(BinlogPosition(FILE, 900, f"{SID}:41"))


def test_column_layouts_from_table_map_metadata() -> None:
    # DATETIME(6), DECIMAL(10,2), BIT(13), ENUM (as STRING), CHAR(200) utf8mb4, BLOB, JSON
    types = bytes([18, 246, 16, 254, 254, 252, 245])
    meta = bytes([6, 10, 2, 5, 1, 247, 1, 0xCE, 0x20, 2, 4])  # 800 bytes: 0x320
    assert column_specs(types, meta) == [
        ColumnSpec(FIXED, 8), ColumnSpec(FIXED, 5), ColumnSpec(FIXED, 2), ColumnSpec(FIXED, 1),
        ColumnSpec(PREFIXED, 2), ColumnSpec(PREFIXED, 2), ColumnSpec(PREFIXED, 4)]
    assert column_specs(bytes([242]), b"\x04") is None  # a type it does not know


# --- polling: one non-blocking dump after another ---------------------------------------

EOF_PACKET = b"\x05\x00\x00\x00\xfe\x00\x00\x02\x00"


def rotate(pos: int, log_pos: int = 0) -> bytes:
    return packet(4, struct.pack("<Q", pos) + FILE.encode(), log_pos)


def polled(dumps: list[bytes], start: BinlogPosition) -> tuple[list[Item], list[BinlogPosition]]:
    """Read `dumps` as successive polls; return the items and where each poll started."""
    asked: list[BinlogPosition] = []
    rest = list(dumps[1:])

    def reopen(pos: BinlogPosition, crc: int) -> tuple[Chunks, int]:
        assert crc == 4, "a poll goes on with the checksum length read so far"
        asked.append(pos)
        if not rest:
            raise StreamReconnected("no more polls in this test")
        return Chunks(rest.pop(0), 7), 4

    reader = WireReader(detect("8.0.36"), SHAPE, start, Chunks(dumps[0], 7), crc=4,  # type: ignore[arg-type]
                        reopen=reopen)  # type: ignore[arg-type]
    reader.poll_interval = 0
    out: list[Item] = []
    with pytest.raises(StreamReconnected, match="no more polls"):
        out.extend(reader.items(threading.Event()))
    return out, asked


FIRST_TXN = [gtid(41), query("BEGIN", 300), table_map(108, b"orders"),
             rows(30, 108, image(1, "a", b"x")), xid(900)]
SECOND_TXN = [gtid(42), query("BEGIN", 1000), table_map(108, b"orders"),
              rows(32, 108, image(6, "c", None)), xid(1200)]


def test_each_poll_ends_at_the_head_and_the_next_starts_there() -> None:
    start = BinlogPosition(FILE, 4, "")
    # The first dump ends with an event that is not a commit (a PREVIOUS_GTIDS at 980):
    # the head is after it, and the next poll must start there, not at the commit.
    first = b"".join([rotate(4), fde(), *FIRST_TXN, packet(35, bytes(8), 980), EOF_PACKET])
    # A dump by position starts with an artificial rotate and format description.
    second = b"".join([rotate(980), fde(), *SECOND_TXN, EOF_PACKET])
    idle = b"".join([rotate(1200), fde(), EOF_PACKET])
    items, asked = polled([first, second, idle], start)
    gtid41, gtid42 = f"{SID}:41", f"{SID}:42"
    assert items == [
        Keys([(1,)], UPSERT), Commit(BinlogPosition(FILE, 900, gtid41)),
        Commit(BinlogPosition(FILE, 980, gtid41)),            # the first EOF: the head
        Keys([(6,)], GONE), Commit(BinlogPosition(FILE, 1200, gtid42)),
        Commit(BinlogPosition(FILE, 1200, gtid42)),           # second EOF
        Commit(BinlogPosition(FILE, 1200, gtid42)),           # an idle poll: no change
    ]
    assert asked == [BinlogPosition(FILE, 980, gtid41), BinlogPosition(FILE, 1200, gtid42),
                     BinlogPosition(FILE, 1200, gtid42)]


def test_a_poll_ending_inside_a_transaction_reads_it_again_whole() -> None:
    start = BinlogPosition(FILE, 4, "")
    first = b"".join([rotate(4), fde(), *FIRST_TXN, *SECOND_TXN[:4], EOF_PACKET])
    second = b"".join([rotate(900), fde(), *SECOND_TXN, EOF_PACKET])
    items, asked = polled([first, second], start)
    assert [i for i in items if isinstance(i, Keys)] == [Keys([(1,)], UPSERT),
                                                         Keys([(6,)], GONE)]
    assert asked[0] == BinlogPosition(FILE, 900, f"{SID}:41")
    assert items[-1] == Commit(BinlogPosition(FILE, 1200, f"{SID}:42"))


def test_a_dump_reporting_an_earlier_head_does_not_move_the_position_back() -> None:
    # A dump by GTID starts from the beginning of the file: its rotate says 4.
    start = BinlogPosition(FILE, 1200, f"{SID}:42")
    items, _ = polled([b"".join([rotate(4), fde(), EOF_PACKET])], start)
    assert items == [Commit(start)]

"""TIMESTAMP primary keys across time zones.

The copy, flush and repair sessions run in the server's global time_zone, so a TIMESTAMP
key they read or pass as a parameter is wall-clock text in that zone. Two sources hand
out the same key as UTC instead: the binlog (python-mysql-replication decodes a
TIMESTAMP as a naive UTC datetime) and the checksum (its sessions run in '+00:00').
Their keys are moved into the server's zone here before any session uses them.

That is exact only for a zone with one fixed offset: in a zone with daylight saving
time, one wall-clock hour a year names two instants, and a key in it could not be found
again. Tables with a TIMESTAMP key on such a server are refused.
"""

from __future__ import annotations

import datetime
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from onlineddl.binlog import BinlogReader
from onlineddl.binlog.items import Item, Keys
from onlineddl.db import Session
from onlineddl.errors import UnsupportedTable
from onlineddl.sql import Key
from onlineddl.table import TableInfo

# Instants across the TIMESTAMP range: a zone whose offset is the same at each is taken
# as fixed (every DST zone differs between January and July).
PROBES = ("1971-01-15 12:00:00", "2000-01-15 12:00:00", "2000-07-15 12:00:00",
          "2024-01-15 12:00:00", "2024-07-15 12:00:00", "2037-07-15 12:00:00")


@dataclass(frozen=True)
class KeyShift:
    """Add `offset` to the TIMESTAMP columns (`positions`) of a key given in UTC."""

    positions: tuple[int, ...]
    offset: datetime.timedelta

    def keys(self, keys: Sequence[Key]) -> list[Key]:
        return [self.key(k) for k in keys]

    def key(self, key: Key) -> Key:
        return tuple(v + self.offset if i in self.positions and
                     isinstance(v, datetime.datetime) else v for i, v in enumerate(key))


def key_shift(session: Session, info: TableInfo) -> KeyShift | None:
    """None when no key column is a TIMESTAMP (nothing to move) or the zone is UTC."""
    positions = tuple(i for i, c in enumerate(info.key_columns) if c.data_type == "timestamp")
    if not positions:
        return None
    probes = ", ".join(
        "TIMESTAMPDIFF(SECOND, %s, CONVERT_TZ(%s, '+00:00', @@GLOBAL.time_zone))"
        for _ in PROBES)
    row = session.query_one(f"SELECT @@GLOBAL.time_zone, {probes}",
                            [p for probe in PROBES for p in (probe, probe)])
    assert row is not None
    offsets = set(row[1:])
    if len(offsets) != 1 or None in offsets:
        raise UnsupportedTable(
            f"the key of {info.name} ({', '.join(info.key)}) has a TIMESTAMP column and "
            f"the server's time_zone ({row[0]}) has no fixed UTC offset (daylight saving "
            "time): one wall-clock hour a year names two instants, so onlineddl could not "
            "find such a key again", hint="run with a fixed-offset global time_zone (e.g. "
            "SET GLOBAL time_zone = '+00:00'), or use a plain ALTER for this table")
    seconds = int(offsets.pop())
    return KeyShift(positions, datetime.timedelta(seconds=seconds)) if seconds else None


class ShiftedReader:
    """A binlog reader whose TIMESTAMP keys are in the server's zone (see KeyShift)."""

    def __init__(self, inner: BinlogReader, shift: KeyShift) -> None:
        self.inner = inner
        self.shift = shift

    def items(self, stop: threading.Event) -> Iterator[Item]:
        for item in self.inner.items(stop):
            if isinstance(item, Keys):
                yield Keys(self.shift.keys(item.keys), item.kind)
            else:
                yield item

    def wake(self) -> None:
        self.inner.wake()

    def close(self) -> None:
        self.inner.close()

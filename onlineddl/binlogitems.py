"""What a binlog reader hands the applier, and the transaction bookkeeping both readers
share: keys changed by each row event (with what the change did to the row), a
`Commit` with the position after complete transactions, and `SchemaChange` for a
statement that changes the table outside row events."""

from __future__ import annotations

import re
from dataclasses import dataclass

from onlineddl.flavor import BinlogPosition, MySQL
from onlineddl.rowkeys import Key

# What a row event did to its keys' rows, as the flush operations it needs (bits):
# re-copy the row (it exists), delete the row if the source has none (it was deleted),
# or both (an update that moved rows to other keys: the old key is gone, the new one
# exists; they are not told apart, so both operations run for each).
UPSERT, GONE = 1, 2
MOVED = UPSERT | GONE


@dataclass(frozen=True)
class Keys:
    """Keys changed by one row event (both old and new key for a key-changing update)."""

    keys: tuple[Key, ...] | list[Key]
    kind: int = MOVED


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


class Tracker:
    """Transaction boundaries and positions, for either reader. Row events are held
    until their transaction commits; `take` then hands out the keys of every complete
    transaction and one `Commit` with the position after the last of them. A position
    is only ever taken at a commit (or an idle heartbeat), never mid-transaction.

    The wire reader takes once per socket read rather than once per transaction: with
    small transactions, a position and a Commit per transaction cost as much as the
    rest of the reading."""

    def __init__(self, flavor: MySQL, table: str, start: BinlogPosition) -> None:
        self.flavor = flavor
        self.table = table
        self.position = start
        self.file = start.file
        self._gtid_state = start.gtid
        self._pending_gtid = ""
        self._in_txn = False
        self._open: list[Keys] = []       # row events of the transaction being read
        self._done: list[Keys] = []       # of complete transactions, not handed out
        self._end: tuple[str, int] | None = None   # (file, pos) after the last commit

    def begin(self, gtid: str = "") -> None:
        self._in_txn = True
        if gtid:
            self._pending_gtid = gtid

    def keys(self, event: Keys) -> None:
        self._open.append(event)

    def commit(self, log_pos: int) -> None:
        if self._pending_gtid:
            self._gtid_state = self.flavor.advance_gtid(self._gtid_state, self._pending_gtid)
        self._pending_gtid = ""
        self._in_txn = False
        self._done += self._open
        self._open = []
        if log_pos:
            self._end = (self.file, log_pos)
        elif self._end is None:  # no position in the event: the last one still holds
            self._end = (self.position.file, self.position.pos)

    def take(self, out: list[Item]) -> None:
        """Hand out what committed since the last take, then its position."""
        if self._end is None:
            return
        out += self._done
        self._done = []
        file, pos = self._end
        self._end = None
        self.position = BinlogPosition(file, pos, self._gtid_state)
        out.append(Commit(self.position))

    def query(self, text: str, log_pos: int, out: list[Item]) -> None:
        text = text.strip()
        upper = text.upper()
        if upper == "BEGIN":
            self._in_txn = True
            return
        if upper != "COMMIT" and ddl_names_table(text, self.table):
            self.take(out)                 # everything before the statement comes first
            out.append(SchemaChange(text))
        # COMMIT of a non-XA transaction, or a DDL statement: a transaction boundary.
        self.commit(log_pos)

    def heartbeat(self, log_pos: int, out: list[Item]) -> None:
        """Idle: the server's position, so waiters see the stream is at the head."""
        if self._in_txn:
            return
        self.take(out)
        # Never backwards: a dump started by GTID reports the file's start first.
        if log_pos and (self.file != self.position.file or log_pos > self.position.pos):
            self.position = BinlogPosition(self.file, log_pos, self._gtid_state)
        out.append(Commit(self.position))

    def rewind(self) -> None:
        """A new dump starts at `position`: forget a transaction read only in part."""
        self._open = []
        self._in_txn = False
        self._pending_gtid = ""
        self.file = self.position.file

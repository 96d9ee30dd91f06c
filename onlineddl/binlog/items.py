"""What a binlog reader hands the applier, and the transaction bookkeeping both readers
share: keys changed by each row event (with what the change did to the row), a
`Commit` with the position after complete transactions, and `SchemaChange` for a
statement that changes the table outside row events."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from onlineddl import faults
from onlineddl.errors import ReplicationError
from onlineddl.flavor import BinlogPosition, MySQL
from onlineddl.sql import Key
from onlineddl.statement import creates_temporary_table, statement_changes_table

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
    """DDL (or statement-logged DML) naming the table: the run cannot continue safely.
    `after`: the position right after the statement, where it is a transaction by
    itself (DDL); a revert starts reading there, after the swap's RENAME."""

    query: str
    after: BinlogPosition | None = field(default=None, compare=False)


Item = Keys | Commit | SchemaChange


class _Absent:
    """A key column a row image does not hold (never a real value: key columns are NOT
    NULL, and this compares equal to nothing else)."""

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT: Final = _Absent()


def image_keys(table: str, key_names: tuple[str, ...], rows: Iterable[tuple[Key, ...]]
               ) -> tuple[list[Key], bool]:
    """Keys of row images that may lack columns: (keys in row order, did any update move
    a row to another key). Each row is its images' keys: one (insert, delete) or before
    and after (update), ABSENT where the image does not hold a key column.

    A session with binlog_row_image=MINIMAL logs the before image with the table's
    primary key only and the after image with only the columns the statement wrote;
    NOBLOB leaves out BLOB/TEXT columns it did not change. The server writes exactly the
    columns it logs in the after image (every assigned column, a trigger's or a generated
    column's recomputed value included), so a key column missing there is unchanged:
    the before image's value. A before (or only) image without a key column cannot say
    which row changed, which happens when the run walks a UNIQUE key that is not the
    primary key: the change would be lost, so the run stops."""
    out: list[Key] = []
    moved = False
    for images in rows:
        first = images[0]
        if ABSENT in first:
            raise _image_without_key(table, key_names, first)
        out.append(first)
        if len(images) == 2:
            after = tuple(b if a is ABSENT else a for a, b in zip(images[1], first,
                                                                   strict=True))
            if after != first:
                out.append(after)
                moved = True
    return out, moved


def _image_without_key(table: str, key_names: tuple[str, ...], key: Key) -> ReplicationError:
    lacking = [n for n, v in zip(key_names, key, strict=False) if v is ABSENT]
    return ReplicationError(
        f"a row change to {table} was logged without the column(s) "
        f"{', '.join(lacking) or 'of the key'} of the key the run walks "
        f"({', '.join(key_names)}): a session writes with binlog_row_image=MINIMAL, which "
        "logs only the primary key of a changed row, and this run walks another key, so "
        "it cannot tell which row changed",
        hint="SET GLOBAL binlog_row_image=FULL and have the writers reconnect (or SET "
             "SESSION binlog_row_image=FULL in them), then run `onlineddl cleanup` and "
             "start again: --resume would read the same change")


def ddl_names_table(text: str, table: str, *, database: str | None = None,
                    default_db: str = "", fold_case: bool = False) -> bool:
    """Does this statement change `table` outside row events? DDL on it, or DML writing
    it logged as a statement (a session with binlog_format=STATEMENT), which the applier
    cannot see as rows. `database` None: a table of that name in any database."""
    return statement_changes_table(text, database=database, table=table,
                                   default_db=default_db, fold_case=fold_case)


# MySQL's binlog_transaction_compression=ON writes each transaction's row events inside
# one TRANSACTION_PAYLOAD event (type 40), which the readers do not unpack.
TRANSACTION_PAYLOAD = 40


def refuse_transaction_payload() -> None:
    """Reading past a compressed transaction would miss its row changes: stop."""
    raise ReplicationError(
        "the server writes compressed transactions to the binlog "
        "(binlog_transaction_compression=ON), which onlineddl does not read",
        hint="SET GLOBAL binlog_transaction_compression=OFF (and SESSION ... = OFF in "
             "sessions that turned it on), then run `onlineddl cleanup` and start again: "
             "--resume would read the same event")


def transaction_control(text: str) -> str:
    """What a Query event does to the transaction around it: "begin", "end", "inside"
    (a savepoint: neither), or "" for any other statement. The server writes these
    texts itself (BEGIN, COMMIT, ROLLBACK, SAVEPOINT `s`, ROLLBACK TO `s`, XA ...)."""
    words = text.upper().split(None, 2)
    if not words:
        return ""
    first, second = words[0], words[1] if len(words) > 1 else ""
    if first in ("BEGIN", "START") or (first == "XA" and second in ("START", "BEGIN")):
        return "begin"
    if first == "COMMIT" or (first == "ROLLBACK" and second != "TO") or (
            first == "XA" and second in ("COMMIT", "ROLLBACK")):
        return "end"
    if first in ("SAVEPOINT", "RELEASE", "ROLLBACK", "XA"):
        return "inside"   # ROLLBACK TO [SAVEPOINT] s, XA END, XA PREPARE
    return ""


class Tracker:
    """Transaction boundaries and positions, for either reader. Row events are held
    until their transaction commits; `take` then hands out the keys of every complete
    transaction and one `Commit` with the position after the last of them. A position
    is only ever taken at a commit (or an idle heartbeat), never mid-transaction: a
    reader that reconnects from it must not skip the rest of a transaction whose GTID
    it already counted.

    A transaction ends at an XID event, a COMMIT or ROLLBACK Query event, XA COMMIT or
    XA ROLLBACK, or the XA PREPARE event that ends the binlog group of a prepared XA
    transaction. A statement outside a transaction (DDL: MariaDB flags its GTID event
    standalone, MySQL writes no BEGIN) is one by itself. SAVEPOINT, ROLLBACK TO and
    statement-logged DML inside a transaction are not boundaries.

    The wire reader takes once per socket read rather than once per transaction: with
    small transactions, a position and a Commit per transaction cost as much as the
    rest of the reading."""

    def __init__(self, flavor: MySQL, start: BinlogPosition, *, database: str, table: str,
                 fold_case: bool = False) -> None:
        self.flavor = flavor
        self.database = database
        self.table = table
        self.fold_case = fold_case          # lower_case_table_names != 0
        self.position = start
        self.file = start.file
        self._gtid_state = start.gtid
        self._pending_gtid = ""
        self._in_txn = False
        self._open: list[Keys] = []       # row events of the transaction being read
        self._done: list[Keys] = []       # of complete transactions, not handed out
        self._end: tuple[str, int] | None = None   # (file, pos) after the last commit
        # Server threads (sessions) seen creating a temporary table named like the
        # table: their statements naming it write that temporary table.
        self._temporary: set[int] = set()

    def begin(self, gtid: str = "", *, opens: bool = True) -> None:
        """A GTID event. `opens`: a transaction follows (a MariaDB GTID event not
        flagged standalone); MySQL's GTID event is followed by a BEGIN or one DDL."""
        if opens:
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

    def query(self, text: str, log_pos: int, out: list[Item], database: str = "",
              thread: int = 0) -> None:
        """A Query event; `database` is the default database it ran in, `thread` the
        session that ran it (server id and thread id, see the readers)."""
        if text == "BEGIN":                # the common cases first, as the server writes them
            self._in_txn = True
            return
        if text == "COMMIT":
            self.commit(log_pos)
            return
        control = transaction_control(text.strip())
        if control == "begin":
            self._in_txn = True
            return
        if control == "end":
            self.commit(log_pos)
            return
        if control == "inside":
            faults.point("binlog_savepoint")   # tests cut the stream inside a transaction
            return
        change = ddl_names_table(text, self.table, database=self.database,
                                 default_db=database, fold_case=self.fold_case)
        if thread and self._temporary_table(text, database, thread):
            change = False
        if change:
            self.take(out)                 # everything before the statement comes first
        if self._in_txn:
            if change:
                out.append(SchemaChange(text))
            return
        self.commit(log_pos)               # DDL: a transaction by itself
        if change and self._end is not None:
            file, pos = self._end
            out.append(SchemaChange(text, BinlogPosition(file, pos, self._gtid_state)))

    def _temporary_table(self, text: str, database: str, thread: int) -> bool:
        """Does this statement name that session's temporary table of the table's name
        rather than the table? A session with binlog_format MIXED or STATEMENT logs its
        temporary tables' statements; the server logs a DROP TEMPORARY TABLE for them
        when the session ends. Known from the CREATE TEMPORARY TABLE on: one created
        before the reader started is not known, and its writes stop the run. A DROP,
        a RENAME or an ALTER ... RENAME naming the table may end the temporary table's
        life under that name, after which the session's statements reach the table
        again: from then on they count (a needless stop at worst, never a missed
        write)."""
        if creates_temporary_table(text, database=self.database, table=self.table,
                                   default_db=database, fold_case=self.fold_case):
            self._temporary.add(thread)
            return True
        if thread not in self._temporary:
            return False
        verb = text.lstrip().split(None, 1)[0].upper()
        if (verb in ("DROP", "RENAME") or (verb == "ALTER" and "RENAME" in text.upper())) \
                and self.table.lower() in text.lower():
            self._temporary.discard(thread)
        return True

    def heartbeat(self, log_pos: int, out: list[Item]) -> None:
        """Idle: the server's position, so waiters see the stream is at the head."""
        if self._in_txn or self._pending_gtid:
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

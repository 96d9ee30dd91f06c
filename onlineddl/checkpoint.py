"""The checkpoint table `_T_chkpnt`: what a resumed run needs to carry on safely.

One row, replaced atomically in one statement. A binlog position is recorded only
together with the watermark it is safe for (see applier.SafePoint). A checkpoint that
cannot be written stops the run: carrying on would leave a resume point that lies.

The table carries onlineddl's mark (its COMMENT, MARK): a table of the same name
without it is someone else's, never read as a checkpoint nor dropped. The checkpoint
also records what identifies the shadow this run created (leftovers.shadow_identity)
and the server it ran on, so a resume adopts neither a user's `_T_new` nor another
server's binlog position.
"""

from __future__ import annotations

import base64
import datetime
import decimal
import hashlib
import json
import os
import socket
from dataclasses import dataclass, field
from typing import Any

from onlineddl import ledger, sql
from onlineddl.db import Session, retry
from onlineddl.errors import DatabaseError, OnlineDDLError, ReplicationError, ResumeRefused
from onlineddl.flavor import BinlogPosition
from onlineddl.progress import Phase
from onlineddl.sql import Key

ER_BAD_FIELD = 1054   # "Unknown column": a checkpoint of an older layout

MARK = "onlineddl checkpoint"

SCHEMA = """CREATE TABLE {table} (
  id TINYINT UNSIGNED NOT NULL PRIMARY KEY,
  alter_text LONGTEXT NOT NULL,
  alter_hash CHAR(40) NOT NULL,
  phase VARCHAR(32) NOT NULL,
  low_watermark LONGTEXT NULL,
  copy_complete TINYINT NOT NULL DEFAULT 0,
  rows_copied BIGINT NOT NULL DEFAULT 0,
  binlog_file VARCHAR(512) NOT NULL,
  binlog_pos BIGINT UNSIGNED NOT NULL,
  binlog_gtid TEXT NOT NULL,
  checksum_state VARCHAR(64) NOT NULL DEFAULT '',
  cutover_started TINYINT NOT NULL DEFAULT 0,
  drain_file VARCHAR(512) NULL,
  drain_pos BIGINT UNSIGNED NULL,
  drain_gtid TEXT NULL,
  swapped TINYINT NOT NULL DEFAULT 0,
  runner VARCHAR(255) NOT NULL,
  started_at DATETIME(6) NOT NULL,
  updated_at DATETIME(6) NOT NULL,
  server_identity VARCHAR(255) NOT NULL DEFAULT '',
  shadow_identity VARCHAR(255) NOT NULL DEFAULT '',
  old_table VARCHAR(64) NOT NULL DEFAULT '',
  triggers LONGTEXT NULL,
  kind VARCHAR(16) NOT NULL DEFAULT 'migrate'
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COMMENT='""" + MARK + "'"

COLUMNS = ("id", "alter_text", "alter_hash", "phase", "low_watermark", "copy_complete",
           "rows_copied", "binlog_file", "binlog_pos", "binlog_gtid", "checksum_state",
           "cutover_started", "drain_file", "drain_pos", "drain_gtid", "swapped", "runner",
           "started_at", "updated_at", "server_identity", "shadow_identity", "old_table",
           "triggers", "kind")
# Added after the others, with their definitions: a checkpoint of an earlier version
# lacks them (read as empty: no triggers recorded, a migration's); a write adds them.
LATER_COLUMNS = {"triggers": "LONGTEXT NULL", "kind": "VARCHAR(16) NOT NULL DEFAULT 'migrate'"}


def alter_hash(alter: str) -> str:
    return hashlib.sha1(" ".join(alter.split()).encode("utf-8")).hexdigest()


def runner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class State:
    alter_text: str
    phase: Phase
    position: BinlogPosition
    low_watermark: Key | None = None
    copy_complete: bool = False
    rows_copied: int = 0
    checksum_state: str = ""
    cutover_started: bool = False
    drain: BinlogPosition | None = None
    swapped: bool = False
    runner: str = field(default_factory=runner_id)
    started_at: datetime.datetime = field(
        default_factory=lambda: datetime.datetime.now(datetime.UTC).replace(tzinfo=None))
    updated_at: datetime.datetime | None = None
    server: str = ""     # the server the run started on (MySQL.server_identity)
    shadow: str = ""     # the shadow this run created (leftovers.shadow_identity)
    # The name the swap gives the original (table.old_table_name), chosen before the
    # copy: resume and swap_state decide whether the swap happened from it.
    old_table: str = ""
    # T's triggers (triggers.encode), recorded before the cutover puts its guard on T:
    # what --resume and cleanup put back after a kill in the middle of the carry.
    triggers: str = ""
    # Which command's run this is: `migrate` and `revert` never take each other's
    # checkpoints (a revert's shadow is the old table it swaps back in).
    kind: str = "migrate"

    @property
    def age_seconds(self) -> float:
        now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
        return (now - (self.updated_at or self.started_at)).total_seconds()


class Checkpoint:
    def __init__(self, session: Session, database: str, table: str) -> None:
        self.session = session
        self.database = database
        self.table = table
        self.qualified = sql.qualified(database, table)

    def create(self) -> None:
        self.session.execute(SCHEMA.format(table=self.qualified))

    def exists(self) -> bool:
        """Does our checkpoint exist (the table, carrying onlineddl's mark)?"""
        rows = self.session.query(
            "SELECT TABLE_NAME, TABLE_COMMENT FROM information_schema.TABLES "
            "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s", (self.database, self.table))
        return any(r[1] == MARK for r in rows)

    def write(self, state: State) -> None:
        """Replace the one row; any failure stops the run."""
        now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
        drain = state.drain
        values = (
            1, state.alter_text, alter_hash(state.alter_text), state.phase.text,
            encode_key(state.low_watermark), int(state.copy_complete), state.rows_copied,
            state.position.file, state.position.pos, state.position.gtid,
            state.checksum_state, int(state.cutover_started),
            drain.file if drain else None, drain.pos if drain else None,
            drain.gtid if drain else None, int(state.swapped), state.runner,
            state.started_at, now, state.server, state.shadow, state.old_table,
            state.triggers or None, state.kind,
        )
        marks = ", ".join(["%s"] * len(COLUMNS))
        text = f"REPLACE INTO {self.qualified} ({sql.column_list(COLUMNS)}) VALUES ({marks})"
        try:
            retry(lambda: self._replace(text, values), what="writing the checkpoint",
                  attempts=3)
        except OnlineDDLError as err:
            raise ReplicationError(
                f"cannot write the checkpoint {self.table}: {err.message}",
                hint="the run stopped so that its resume point stays true; fix the cause "
                     "and run again with --resume") from err
        state.updated_at = now

    def _replace(self, text: str, values: tuple[Any, ...]) -> None:
        try:
            self.session.execute(text, values)
        except DatabaseError as err:
            if err.errno != ER_BAD_FIELD:
                raise
            self._add_later_columns()
            self.session.execute(text, values)

    def _add_later_columns(self) -> None:
        ledger.add_missing_columns(self.session, self.database, self.table,
                                   list(LATER_COLUMNS.items()))

    def read(self) -> State | None:
        """The state, or None when there is no checkpoint of ours or it has no row yet
        (the run died while setting up)."""
        if not self.exists():
            return None
        # SELECT *: the later columns may be missing (an earlier version's checkpoint);
        # reading never changes it (`status` reads another runner's).
        rows = self.session.query_dicts(f"SELECT * FROM {self.qualified} WHERE id = 1")
        if rows and not set(COLUMNS) - set(LATER_COLUMNS) <= set(rows[0]):
            raise ResumeRefused(
                f"{self.table} was written by an older onlineddl version, which did not "
                "record the server, the shadow table it created and its old table's name",
                hint="finish or discard that run with the version that started it, or "
                     "drop its tables by hand and start again")
        if not rows:
            return None
        r = rows[0]
        drain = None
        if r["drain_file"]:
            drain = BinlogPosition(r["drain_file"], int(r["drain_pos"]), r["drain_gtid"] or "")
        return State(
            alter_text=r["alter_text"], phase=self._phase(r["phase"]),
            position=BinlogPosition(r["binlog_file"], int(r["binlog_pos"]), r["binlog_gtid"]),
            low_watermark=decode_key(r["low_watermark"]),
            copy_complete=bool(r["copy_complete"]), rows_copied=int(r["rows_copied"]),
            checksum_state=r["checksum_state"], cutover_started=bool(r["cutover_started"]),
            drain=drain, swapped=bool(r["swapped"]), runner=r["runner"],
            started_at=r["started_at"], updated_at=r["updated_at"],
            server=r["server_identity"], shadow=r["shadow_identity"],
            old_table=r["old_table"], triggers=str(r.get("triggers") or ""),
            kind=str(r.get("kind") or "migrate"))

    def _phase(self, text: str) -> Phase:
        try:
            return Phase.from_text(text)
        except ValueError:
            raise ResumeRefused(
                f"{self.table} records phase {text!r}, which this onlineddl version does "
                "not know (written by another version, or changed by hand)",
                hint="finish or discard that run with the version that started it, or "
                     "drop its tables by hand and start again") from None

    def drop(self) -> None:
        ledger.drop(self.session, self.database, self.table)


def _encode_value(v: Any) -> Any:
    if v is None or isinstance(v, bool):
        return {"n": None} if v is None else v
    if isinstance(v, int):
        return v
    if isinstance(v, str):
        return {"s": v}
    if isinstance(v, (bytes, bytearray)):
        return {"b": base64.b64encode(bytes(v)).decode("ascii")}
    if isinstance(v, decimal.Decimal):
        return {"d": str(v)}
    if isinstance(v, datetime.datetime):
        return {"dt": v.isoformat()}
    if isinstance(v, datetime.date):
        return {"date": v.isoformat()}
    if isinstance(v, datetime.timedelta):
        return {"td": [v.days, v.seconds, v.microseconds]}
    if isinstance(v, float):
        return {"f": repr(v)}
    raise TypeError(f"cannot checkpoint a key value of type {type(v).__name__}")


def _decode_value(v: Any) -> Any:
    if not isinstance(v, dict):
        return v
    (tag, val), = v.items()
    decoders: dict[str, Any] = {
        "n": lambda _: None, "s": str, "b": base64.b64decode, "d": decimal.Decimal,
        "dt": datetime.datetime.fromisoformat, "date": datetime.date.fromisoformat,
        "td": lambda x: datetime.timedelta(days=x[0], seconds=x[1], microseconds=x[2]),
        "f": float,
    }
    return decoders[tag](val)


def encode_key(key: Key | None) -> str | None:
    return None if key is None else json.dumps([_encode_value(v) for v in key])


def decode_key(text: str | None) -> Key | None:
    return None if text is None else tuple(_decode_value(v) for v in json.loads(text))

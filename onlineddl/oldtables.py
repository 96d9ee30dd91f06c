"""Old tables: the originals that successful runs keep, and the record that makes them ours.

Each run's swap renames T to its own `_T_old_<YYYYMMDD>_<HHMMSS>` (table.old_table_name,
UTC, chosen before the copy and recorded in the checkpoint), so any number of runs on one
table follow each other without a manual step, and every old table stays available
(a later `revert` needs the one its run swapped out).

An old table cannot carry a mark (it is T's original, comment and all), so onlineddl
records it when its run finishes, in one registry table per database,
`_onlineddl_old_tables` (COMMENT REGISTRY_MARK): T, the old table's name, when it was
swapped, the ALTER, and the old table's identity (leftovers.shadow_identity: its
CREATE_TIME and column list, read right after the swap). A table is one of our old
tables only when a row records its name for T and its identity still matches exactly;
a table of a user's that merely has such a name (or replaced ours) is never dropped.
None is ever dropped while T itself is missing: it may be the only copy of the data.

The record is written after the swap and before the checkpoint is dropped, so a crash
in between is finished by --resume, which writes it again (one row per old table).
"""

from __future__ import annotations

import datetime
import json
import logging
import re
from dataclasses import dataclass
from typing import Any

from onlineddl import ledger, sql
from onlineddl.db import Session, retry
from onlineddl.errors import ArtifactsExist, OnlineDDLError, UsageError
from onlineddl.flavor import BinlogPosition
from onlineddl.leftovers import shadow_identity
from onlineddl.table import Artifacts, name_case, old_table_name, same_name

log = logging.getLogger(__name__)

REGISTRY = "_onlineddl_old_tables"
REGISTRY_MARK = "onlineddl old tables"

# Names compare in binary: on a case-sensitive server `T` and `t` are two tables.
SCHEMA = """CREATE TABLE IF NOT EXISTS {table} (
  old_name VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL PRIMARY KEY,
  table_name VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
  swapped_at DATETIME(6) NOT NULL,
  alter_text LONGTEXT NOT NULL,
  identity VARCHAR(255) NOT NULL{swap}
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COMMENT='""" + REGISTRY_MARK + "'"

# What `revert` needs, added later: nullable, so a registry of an earlier version is
# upgraded in place (ALTER TABLE ... ADD COLUMN) and its rows read as "no swap record".
SWAP_COLUMNS = (
    ("kind", "VARCHAR(16) NULL"),                  # migrate | revert
    ("swap_file", "VARCHAR(512) NULL"),            # the drain position of the swap: no
    ("swap_pos", "BIGINT UNSIGNED NULL"),          # change to T between it and the RENAME
    ("swap_gtid", "TEXT NULL"),
    ("swap_mapping", "LONGTEXT NULL"),             # JSON, see SwapRecord
    ("server_identity", "VARCHAR(255) NULL"),
    ("table_identity", "VARCHAR(255) NULL"),       # T's identity right after the swap
)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str, flag: str) -> float:
    """"7d", "12h", "30m", "90s", "2w" or plain seconds, as seconds."""
    match = _DURATION.match(text.lower())
    if match is None:
        raise UsageError(f"{flag} {text!r} is not a duration",
                         hint=f"e.g. {flag} 7d, 12h, 30m or 90s")
    return float(match.group(1)) * _UNIT[match.group(2)]


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC).replace(tzinfo=None)


@dataclass(frozen=True)
class SwapRecord:
    """What a revert of a swap needs, recorded with the old table it kept."""

    kind: str                            # "migrate" or "revert": the run that swapped
    position: BinlogPosition             # the drain position under the swap's write block
    pairs: tuple[tuple[str, str], ...]   # (old table's column, T's column that it fed)
    shadow: str                          # the name the new T had before the swap
    server: str                          # MySQL.server_identity of the server it ran on
    table_identity: str                  # leftovers.shadow_identity of T after the swap

    def mapping_json(self) -> str:
        return json.dumps({"pairs": [list(p) for p in self.pairs], "shadow": self.shadow})


def swap_record(session: Session, database: str, names: Artifacts, kind: str,
                drain: BinlogPosition | None, pairs: tuple[tuple[str, str], ...],
                server: str) -> SwapRecord | None:
    """The record of a swap just done (T is the new table); None without a drain
    position (a checkpoint of an earlier version): that old table cannot be reverted."""
    if drain is None:
        return None
    return SwapRecord(kind, drain, pairs, names.shadow, server,
                      shadow_identity(session, database, names.table))


def _swap_record(row: dict[str, Any]) -> SwapRecord | None:
    if not row.get("swap_file") or not row.get("swap_mapping"):
        return None
    mapping = json.loads(str(row["swap_mapping"]))
    position = BinlogPosition(str(row["swap_file"]), int(row["swap_pos"]),
                              str(row.get("swap_gtid") or ""))
    return SwapRecord(str(row.get("kind") or "migrate"), position,
                      tuple((str(a), str(b)) for a, b in mapping["pairs"]),
                      str(mapping["shadow"]), str(row.get("server_identity") or ""),
                      str(row.get("table_identity") or ""))


@dataclass(frozen=True)
class OldTable:
    name: str
    table: str
    swapped_at: datetime.datetime     # UTC
    alter: str
    exists: bool                      # a table of that name exists
    ours: bool                        # ... and it is the one recorded (same identity)
    size_bytes: int                   # data + indexes, as information_schema estimates
    identity: str = ""                # as recorded at the swap (leftovers.shadow_identity)
    swap: SwapRecord | None = None    # None: recorded by a version before `revert`

    @property
    def age_seconds(self) -> float:
        return (utc_now() - self.swapped_at).total_seconds()


def choose_name(session: Session, database: str, table: str) -> str:
    """A free old-table name for this run: stamped now, a second later while taken (by
    any table, or by a record)."""
    taken = {n.lower() for n in _table_names(session, database)}
    taken |= {o.name.lower() for o in recorded(session, database, table)}
    when = utc_now().replace(microsecond=0)
    while old_table_name(table, when).lower() in taken:
        when += datetime.timedelta(seconds=1)
    return old_table_name(table, when)


def register(session: Session, database: str, names: Artifacts, alter: str,
             swap: SwapRecord | None = None) -> None:
    """Record this run's old table (after the swap; idempotent for a resumed finish),
    with what a revert of this swap needs (`swap`)."""
    identity = shadow_identity(session, database, names.old)
    if not identity:
        return   # not there (dropped with --drop-old before a crash): nothing to record
    registry = sql.qualified(database, REGISTRY)
    columns = ("old_name", "table_name", "swapped_at", "alter_text", "identity",
               *(name for name, _ in SWAP_COLUMNS))
    values = (names.old, names.table, utc_now(), alter, identity,
              *(_swap_values(swap) if swap else [None] * len(SWAP_COLUMNS)))
    update = ", ".join(f"{sql.ident(c)} = VALUES({sql.ident(c)})" for c in columns
                       if c not in ("old_name", "swapped_at"))

    def write() -> None:
        ensure_registry(session, database)
        session.execute(
            f"INSERT INTO {registry} ({sql.column_list(columns)}) VALUES "
            f"({', '.join(['%s'] * len(columns))}) ON DUPLICATE KEY UPDATE {update}",
            values)
    retry(write, what=f"recording the old table {names.old}", attempts=3)


def ensure_registry(session: Session, database: str) -> None:
    """Create the registry, or add the columns an earlier version's lacks."""
    _refuse_foreign_registry(session, database)
    registry = sql.qualified(database, REGISTRY)
    definitions = "".join(f",\n  {name} {kind}" for name, kind in SWAP_COLUMNS)
    session.execute(SCHEMA.format(table=registry, swap=definitions))
    if ledger.add_missing_columns(session, database, REGISTRY, SWAP_COLUMNS):
        log.info("upgraded %s.%s for revert records", database, REGISTRY)


def _swap_values(swap: SwapRecord) -> list[Any]:
    return [swap.kind, swap.position.file, swap.position.pos, swap.position.gtid,
            swap.mapping_json(), swap.server, swap.table_identity]


def recorded(session: Session, database: str, table: str) -> list[OldTable]:
    """T's recorded old tables, oldest first, each with whether it is still ours."""
    if not _registry_exists(session, database):
        return []
    case = name_case(session)
    # SELECT *: a registry of an earlier version lacks the swap columns.
    rows = session.query_dicts(
        f"SELECT * FROM {sql.qualified(database, REGISTRY)} ORDER BY swapped_at, old_name")
    sizes = _sizes(session, database)
    out = []
    for row in rows:
        old_name, identity = str(row["old_name"]), str(row["identity"])
        if not same_name(str(row["table_name"]), table, case):
            continue
        stored = next((n for n in sizes if same_name(n, old_name, case)), None)
        current = shadow_identity(session, database, stored) if stored else ""
        out.append(OldTable(old_name, str(row["table_name"]), row["swapped_at"],
                            str(row["alter_text"]), stored is not None,
                            bool(current) and current == identity,
                            sizes.get(stored or "", 0), identity, _swap_record(row)))
    return out


def drop_expired(session: Session, database: str, table: str, older_than: float | None,
                 *, keep: str = "") -> list[str]:
    """Drop T's old tables swapped more than `older_than` seconds ago (None: all of
    them), except `keep`; forget records whose table is gone. Only tables that are
    still ours, and only while T exists. Returns what it did, one line each."""
    done: list[str] = []
    case = name_case(session)
    if not any(same_name(n, table, case) for n in _table_names(session, database)):
        olds = recorded(session, database, table)
        if olds:
            done.append(f"kept the old tables of {database}.{table} "
                        f"({', '.join(o.name for o in olds)}): {table} does not exist, so "
                        "they may be the only copy of its data")
        return done
    for old in recorded(session, database, table):
        if old.name == keep or (older_than is not None and old.age_seconds < older_than):
            continue
        if old.exists and not old.ours:
            done.append(f"kept {database}.{old.name}: it is not the old table onlineddl "
                        "recorded (it was replaced or changed since); drop it yourself "
                        "if you do not need it")
            continue
        if old.exists:
            ledger.drop(session, database, old.name, must_exist=True)
            done.append(f"dropped {database}.{old.name} (the original before "
                        f"{old.alter!r}, swapped {old.swapped_at:%Y-%m-%d %H:%M:%S} UTC)")
        else:
            done.append(f"forgot {database}.{old.name}: it no longer exists")
        session.execute(f"DELETE FROM {sql.qualified(database, REGISTRY)} "
                        "WHERE old_name = %s", (old.name,))
    return done


def forget(session: Session, database: str, old_name: str) -> None:
    if _registry_exists(session, database):
        session.execute(f"DELETE FROM {sql.qualified(database, REGISTRY)} "
                        "WHERE old_name = %s", (old_name,))


def apply_retention(session: Session, database: str, table: str, older_than: float | None,
                    *, keep: str = "") -> None:
    """--keep-old-for: housekeeping, never a reason to fail the migration."""
    if older_than is None:
        return
    try:
        for line in drop_expired(session, database, table, older_than, keep=keep):
            log.info("--keep-old-for: %s", line)
    except OnlineDDLError as err:
        log.warning("--keep-old-for: could not drop expired old tables of %s.%s: %s",
                    database, table, err.message)


def describe(old: OldTable) -> str:
    note = "" if old.ours else (" (missing)" if not old.exists else
                                " (NOT the recorded table: never dropped by onlineddl)")
    return (f"{old.name}  swapped {old.swapped_at:%Y-%m-%d %H:%M:%S} UTC  "
            f"{old.size_bytes / 1048576:.1f} MiB  ALTER {old.alter}{note}")


def _registry_exists(session: Session, database: str) -> bool:
    row = session.query_one(
        "SELECT TABLE_COMMENT FROM information_schema.TABLES "
        "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s", (database, REGISTRY))
    return row is not None and str(row[0] or "") == REGISTRY_MARK


def _refuse_foreign_registry(session: Session, database: str) -> None:
    row = session.query_one(
        "SELECT TABLE_COMMENT FROM information_schema.TABLES "
        "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s", (database, REGISTRY))
    if row is not None and str(row[0] or "") != REGISTRY_MARK:
        raise ArtifactsExist(
            f"{database}.{REGISTRY} exists without onlineddl's mark: onlineddl keeps its "
            "record of old tables under that name",
            hint=f"rename your {REGISTRY}, then run again with --resume")


def _table_names(session: Session, database: str) -> list[str]:
    return [str(r[0]) for r in session.query(
        "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s",
        (database,))]


def _sizes(session: Session, database: str) -> dict[str, int]:
    return {str(r[0]): int(r[1] or 0) for r in session.query(
        "SELECT TABLE_NAME, DATA_LENGTH + INDEX_LENGTH FROM information_schema.TABLES "
        "WHERE TABLE_SCHEMA = %s", (database,))}

"""Checks before anything is created. Each refusal says what is wrong and how to fix it."""

from __future__ import annotations

import datetime
import logging

from onlineddl import grants, sql
from onlineddl.binlog.tablemap import key_kind
from onlineddl.db import Session
from onlineddl.errors import MissingPrivilege, PreflightFailed, UnsupportedTable
from onlineddl.flavor import MySQL
from onlineddl.statement import ParsedAlter
from onlineddl.table import (
    KEY_CODECS,
    SUPPORTED_PK_TYPES,
    UTF8,
    Artifacts,
    ColumnMapping,
    TableInfo,
    name_case,
    old_table_name,
    wire_sized,
)

log = logging.getLogger(__name__)


def check_server(session: Session, flavor: MySQL) -> None:
    _check_binlog(session, flavor)
    _check_primary(session, flavor)


def _check_binlog(session: Session, flavor: MySQL) -> None:
    row = session.query_one(
        "SELECT @@GLOBAL.log_bin, @@GLOBAL.binlog_format, @@GLOBAL.binlog_row_image")
    assert row is not None
    log_bin, fmt, image = str(row[0]), str(row[1]).upper(), str(row[2]).upper()
    if log_bin not in ("1", "ON"):
        raise PreflightFailed(
            "binary logging is disabled on this server (log_bin=OFF)",
            hint="start the server with --log-bin --binlog-format=ROW --binlog-row-image=FULL")
    if fmt != "ROW":
        raise PreflightFailed(
            f"binlog_format is {fmt}; onlineddl needs ROW to see every change",
            hint="SET GLOBAL binlog_format=ROW (and in the server config); sessions already "
                 "connected keep their old format until they reconnect")
    if image != "FULL":
        raise PreflightFailed(
            f"binlog_row_image is {image}; onlineddl needs FULL",
            hint="SET GLOBAL binlog_row_image=FULL (and in the server config)")
    # Events the reader would otherwise have to skip: compressed events (MariaDB),
    # partial JSON after-images and compressed transaction payloads (MySQL).
    if _has_var(session, "log_bin_compress") and \
            str(session.scalar("SELECT @@GLOBAL.log_bin_compress")).upper() in ("1", "ON"):
        raise PreflightFailed(
            "log_bin_compress is ON: the binlog holds compressed events onlineddl does not read",
            hint="SET GLOBAL log_bin_compress=OFF (and in the server config)")
    if _has_var(session, "binlog_row_value_options") and "PARTIAL_JSON" in str(
            session.scalar("SELECT @@GLOBAL.binlog_row_value_options")).upper():
        raise PreflightFailed(
            "binlog_row_value_options=PARTIAL_JSON: JSON updates are logged as partial "
            "row images, which onlineddl does not read",
            hint="SET GLOBAL binlog_row_value_options='' (and in the server config)")
    if _has_var(session, "binlog_transaction_compression") and str(session.scalar(
            "SELECT @@GLOBAL.binlog_transaction_compression")).upper() in ("1", "ON"):
        raise PreflightFailed(
            "binlog_transaction_compression is ON: the binlog holds compressed transaction "
            "payloads, which onlineddl does not read",
            hint="SET GLOBAL binlog_transaction_compression=OFF (and in the server config); "
                 "sessions already connected keep their setting until they reconnect")
    meta = session.scalar("SELECT @@GLOBAL.binlog_row_metadata") if _has_var(
        session, "binlog_row_metadata") else "FULL"
    if str(meta).upper() != "FULL":
        log.info("binlog_row_metadata=%s: binlog columns are mapped by position", meta)


def _has_var(session: Session, name: str) -> bool:
    return bool(session.query("SHOW GLOBAL VARIABLES LIKE %s", (name,)))


def _check_primary(session: Session, flavor: MySQL) -> None:
    if str(session.scalar("SELECT @@GLOBAL.read_only")) in ("1", "ON"):
        raise PreflightFailed(
            "the server is read-only: this looks like a replica, not the primary",
            hint="run onlineddl against the primary; replicas receive the change through "
                 "replication")


# What a run does in the database: reads and copies T (SELECT), writes the shadow and
# the checkpoint (INSERT, UPDATE, DELETE; REPLACE is INSERT plus DELETE), creates, alters
# and drops them (CREATE, ALTER, DROP), renames T away and the shadow onto it (ALTER and
# DROP on the old name, CREATE and INSERT on the new) and blocks writes for the checksum
# snapshot and the cutover (LOCK TABLES, database-wide only).
TABLE_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE", "CREATE", "DROP", "ALTER")
DATABASE_PRIVILEGES = ("LOCK TABLES",)
REPLICA_PRIVILEGES = ("REPLICATION SLAVE", "REPLICATION REPLICA")


def check_privileges(session: Session, flavor: MySQL, database: str, names: Artifacts) -> None:
    """Refuse up front (exit 4) when the user lacks a privilege the run needs, naming
    them and the GRANT statements to run: otherwise the cutover fails after the copy."""
    held = grants.parse(flavor.grant_lines(session))
    fold = name_case(session) != 0
    missing_global, missing_db = missing_privileges(held, flavor, database, names, fold)
    if not (missing_global or missing_db):
        return
    who = grants.account(str(session.scalar("SELECT CURRENT_USER()")))
    statements = []
    if missing_db:
        statements.append(f"GRANT {', '.join(missing_db)} ON {sql.ident(database)}.* TO {who}")
    if missing_global:
        statements.append(f"GRANT {', '.join(missing_global)} ON *.* TO {who}")
    raise MissingPrivilege(
        f"the user {who} lacks {', '.join(missing_db + missing_global)} (needed on "
        f"{database} to build and swap the new table, and on *.* to read the binlog)",
        hint="; ".join(statements) + " (or grant them to a role the user has as its default "
                                     "role)")


def missing_privileges(held: list[grants.Grant], flavor: MySQL, database: str,
                       names: Artifacts, fold: bool) -> tuple[list[str], list[str]]:
    """(missing on *.*, missing on the database), each in a fixed order."""
    missing_global = []
    if not any(_global(held, p) for p in REPLICA_PRIVILEGES):
        missing_global.append("REPLICATION SLAVE")
    position = flavor.binlog_position_privileges
    if not any(_global(held, p) for p in position):
        missing_global.append(position[0])
    # The old table's name carries the run's time stamp (table.old_table_name): no
    # table-level grant can name it in advance, so the RENAME needs database-level grants.
    stamped = () if names.old else (
        old_table_name(names.table, datetime.datetime.now(datetime.UTC)),)
    tables = (names.table, *names.all(), *stamped)
    missing_db = [p for p in TABLE_PRIVILEGES
                  if not all(grants.holds(held, p, database, t, fold=fold) for t in tables)]
    missing_db += [p for p in DATABASE_PRIVILEGES
                   if not grants.holds(held, p, database, fold=fold)]
    return missing_global, missing_db


def _global(held: list[grants.Grant], privilege: str) -> bool:
    """Replication privileges exist only on *.*."""
    return any(not g.revoke and g.database == "*" and
               (privilege in g.privileges or "ALL" in g.privileges) for g in held)


def check_table(session: Session, info: TableInfo) -> None:
    if info.engine.lower() != "innodb":
        raise UnsupportedTable(
            f"{info.database}.{info.name} uses the {info.engine} engine; onlineddl needs InnoDB "
            "(transactions and consistent snapshots)", hint="convert the table to InnoDB first")
    check_primary_key(info)
    # Triggers are carried (triggers.check); foreign keys are checked, and carried where
    # supported, by foreignkeys.check_table (both from migration.preflight).


def check_constraints(session: Session, flavor: MySQL, info: TableInfo,
                      alter: ParsedAlter) -> None:
    """CHECK constraints, T's own or added by the ALTER, where the new table may not
    carry them under the names a plain ALTER leaves (flavor.keeps_check_names)."""
    if flavor.keeps_check_names:
        return
    names = [str(r[0]) for r in session.query(
        "SELECT CONSTRAINT_NAME FROM information_schema.TABLE_CONSTRAINTS WHERE "
        "TABLE_SCHEMA = %s AND TABLE_NAME = %s AND CONSTRAINT_TYPE = 'CHECK'",
        (info.database, info.name))]
    if names or "add_check" in alter.kinds:
        what = f"has CHECK constraint(s) {', '.join(names)}" if names else \
            "gets a CHECK constraint from the ALTER"
        raise UnsupportedTable(
            f"{info.database}.{info.name} {what}: on {flavor.name} onlineddl cannot yet "
            "carry CHECK constraints under the names a plain ALTER leaves (CREATE TABLE "
            "... LIKE gives them generated names)",
            hint="run this ALTER with a plain ALTER TABLE, or drop the CHECK constraints "
                 "for the migration and add them back afterwards")


def check_nulls_made_clock(session: Session, source: TableInfo, shadow: TableInfo,
                           mapping: ColumnMapping) -> None:
    """A nullable column the ALTER makes TIMESTAMP NOT NULL: the server turns its NULLs
    into the current time (a plain ALTER and onlineddl's copy alike, seen on MariaDB
    10.11), a value the checksum cannot verify against the source's NULL. Refused
    (exit 4) when the column holds a NULL now; one written during the run stops the run
    at the checksum instead (exit 7, the table unchanged)."""
    for old_name, new_name in zip(mapping.source, mapping.target, strict=True):
        old, new = source.column(old_name), shadow.column(new_name)
        if not (old.nullable and not new.nullable and new.data_type == "timestamp"):
            continue
        found = session.query(
            f"SELECT 1 FROM {sql.qualified(source.database, source.name)} "
            f"WHERE {sql.ident(old.name)} IS NULL LIMIT 1")
        if found:
            raise UnsupportedTable(
                f"column {old.name} holds NULLs, which this ALTER turns into the current "
                f"time ({new.column_type} NOT NULL); onlineddl cannot verify such values",
                hint=f"set {old.name} where it is NULL first (UPDATE ... SET {old.name} = "
                     "CURRENT_TIMESTAMP WHERE ... IS NULL), then run again; the table is "
                     "unchanged")


def check_primary_key(info: TableInfo) -> None:
    """The table has a key the run can walk: its primary key or a UNIQUE key over NOT
    NULL columns (keys.py chooses among them once the new table exists)."""
    if not info.key:
        raise UnsupportedTable(
            f"{info.database}.{info.name} has no PRIMARY KEY and no UNIQUE key over NOT "
            "NULL columns (a UNIQUE key over a column prefix, such as (email(10)), does "
            "not count)", hint="add a primary key first; onlineddl walks and applies "
                               "changes by it")
    candidates = [info.with_key(k) for k in info.unique_keys] or [info]
    refusals = []
    for candidate in candidates:
        try:
            check_key(candidate)
            return
        except UnsupportedTable as err:
            refusals.append(err)
    raise refusals[0]


def check_key(info: TableInfo) -> None:
    """Can the run walk `info.key` (its column types, character sets, binlog values)?"""
    what = "primary key column" if info.key_name == "PRIMARY" else \
        f"column of UNIQUE KEY {info.key_name}"
    for col in info.key_columns:
        if col.data_type not in SUPPORTED_PK_TYPES:
            raise UnsupportedTable(
                f"{what} {col.name} has type {col.column_type}, which onlineddl "
                "cannot order safely", hint="supported key types: integers, DECIMAL, "
                "CHAR/VARCHAR/BINARY/VARBINARY, DATE/TIME/DATETIME/TIMESTAMP, YEAR")
        if col.data_type in ("char", "varchar") and col.charset not in KEY_CODECS:
            raise UnsupportedTable(
                f"{what} {col.name} uses character set {col.charset}, whose "
                "binlog values onlineddl cannot read back exactly",
                hint=f"supported key character sets: {', '.join(sorted(KEY_CODECS))}")
    # The wire reader decodes integer, text and binary keys of tables whose every column
    # it can step over; the rest go through the library's general decoder, which cannot
    # read latin1 text or binary keys back exactly (composite keys included).
    general = [c.name for c in info.columns if not wire_sized(c)] + \
        [c.name for c in info.key_columns if key_kind(c) is None]
    unreadable = [c.name for c in info.key_columns if c.data_type in ("binary", "varbinary")
                  or (c.data_type in ("char", "varchar") and c.charset not in UTF8)]
    if general and unreadable:
        raise UnsupportedTable(
            f"{info.database}.{info.name} has column(s) {', '.join(general)} that "
            f"onlineddl reads only through its general binlog decoder, and key column(s) "
            f"{', '.join(unreadable)} that decoder cannot read back exactly",
            hint="use a utf8mb4 text or integer key, or convert the listed columns to "
                 "standard types first")

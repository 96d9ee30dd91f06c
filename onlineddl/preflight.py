"""Checks before anything is created. Each refusal says what is wrong and how to fix it."""

from __future__ import annotations

import logging

from onlineddl.db import Session
from onlineddl.errors import PreflightFailed, UnsupportedTable
from onlineddl.flavor import MySQL
from onlineddl.table import TableInfo, check_primary_key, triggers_and_foreign_keys

log = logging.getLogger(__name__)


def check_server(session: Session, flavor: MySQL) -> None:
    _check_binlog(session, flavor)
    _check_primary(session, flavor)
    _check_privileges(session, flavor)


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
    # Events the reader would otherwise have to skip: compressed events (MariaDB) and
    # partial JSON after-images (MySQL).
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


def _check_privileges(session: Session, flavor: MySQL) -> None:
    grants = " ".join(str(r[0]).upper() for r in session.query("SHOW GRANTS"))
    if "ALL PRIVILEGES ON *.*" in grants:
        return
    missing = []
    if "REPLICATION SLAVE" not in grants and "REPLICATION REPLICA" not in grants:
        missing.append("REPLICATION SLAVE")
    if not any(p in grants for p in ("REPLICATION CLIENT", "BINLOG MONITOR", "SUPER")):
        missing.append("REPLICATION CLIENT" if not flavor.is_mariadb else "BINLOG MONITOR")
    if missing:
        raise PreflightFailed(
            f"the user lacks {', '.join(missing)} (needed to read the binlog)",
            hint=f"GRANT {', '.join(missing)} ON *.* TO the onlineddl user")


def check_table(session: Session, info: TableInfo) -> None:
    if info.engine.lower() != "innodb":
        raise UnsupportedTable(
            f"{info.database}.{info.name} uses the {info.engine} engine; onlineddl needs InnoDB "
            "(transactions and consistent snapshots)", hint="convert the table to InnoDB first")
    check_primary_key(info)
    found = triggers_and_foreign_keys(session, info.database, info.name)
    if found:
        raise UnsupportedTable(
            f"{info.database}.{info.name} has {', '.join(found)}; onlineddl does not carry "
            "triggers or foreign keys over yet",
            hint="drop them for the migration and recreate them after, or use an offline ALTER")

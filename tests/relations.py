"""Helpers for the tests of tables in relations: foreign keys (T a child, T a parent)
and triggers (import as `from relations import show_create`). Each reads the
connection's default database unless told another."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import Any

from helpers import Conn, connect, tables
from workload import q

from onlineddl.config import Dsn, MigrationConfig, Tuning


def run_config(server: Dsn, db: str, alter: str, tuning: Tuning, **kw: Any) -> MigrationConfig:
    """A migration of `t`, checksum repair off (a lost row fails the test loudly)."""
    return MigrationConfig(dsn=server, database=db, table="t", alter=alter, repair=False,
                           tuning=tuning, **kw)


def show_create(conn: Conn, table: str, database: str | None = None) -> str:
    """SHOW CREATE TABLE, its AUTO_INCREMENT= counter aside."""
    name = f"{q(database)}.{q(table)}" if database else q(table)
    with conn.cursor() as cur:
        cur.execute(f"SHOW CREATE TABLE {name}")
        return re.sub(r" AUTO_INCREMENT=\d+", "", str(cur.fetchone()[1]))


def snapshot(conn: Conn) -> dict[str, str]:
    """Every table of the database and its shape: to show that nothing changed."""
    return {name: show_create(conn, name) for name in sorted(tables(conn))}


def trigger_names(conn: Conn, table: str | None = None) -> list[str]:
    """The triggers of `table` (None: of every table in the database), by name."""
    where = " AND EVENT_OBJECT_TABLE = %s" if table is not None else ""
    with conn.cursor() as cur:
        cur.execute("SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE "
                    f"EVENT_OBJECT_SCHEMA = DATABASE(){where} ORDER BY TRIGGER_NAME",
                    (table,) if table is not None else None)
        return [r[0] for r in cur.fetchall()]


def audit_rows(conn: Conn, audit: str, columns: str) -> list[tuple[Any, ...]]:
    """What the triggers wrote into `audit`, in a stable order (the counter aside)."""
    with conn.cursor() as cur:
        cur.execute(f"SELECT {columns} FROM {q(audit)} ORDER BY {columns}")
        return list(cur.fetchall())


def references(conn: Conn) -> list[tuple[str, str, str, str]]:
    """(table, constraint, referenced table, delete rule) of every constraint."""
    with conn.cursor() as cur:
        cur.execute("SELECT TABLE_NAME, CONSTRAINT_NAME, REFERENCED_TABLE_NAME, DELETE_RULE "
                    "FROM information_schema.REFERENTIAL_CONSTRAINTS WHERE "
                    "CONSTRAINT_SCHEMA = DATABASE() ORDER BY TABLE_NAME, CONSTRAINT_NAME")
        return [tuple(r) for r in cur.fetchall()]


@contextlib.contextmanager
def twin_database(server: Dsn, db: str) -> Iterator[Conn]:
    """A second database `<db>_twin` for the server's own ALTER (the oracle): a
    connection using it, and the database dropped afterwards."""
    name = f"{db}_twin"
    admin = connect(server)
    try:
        with admin.cursor() as cur:
            cur.execute(f"CREATE DATABASE {q(name)}")
            cur.execute(f"USE {q(name)}")
        yield admin
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {q(name)}")
        admin.close()

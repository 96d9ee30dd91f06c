"""Helpers shared by the test suite (import as `from helpers import connect`)."""

from __future__ import annotations

import os
import re
import sys
from typing import Any, TypeAlias

import pymysql
import pymysql.connections
import pymysql.cursors
import pytest

from onlineddl.config import Dsn
from onlineddl.testing.seedrows import numbers as numbers  # shared with scripts/

# A test's own connection and cursor (pymysql ships no type information here, so mypy
# sees Any; the names say what the value is).
Conn: TypeAlias = pymysql.connections.Connection
Cursor: TypeAlias = pymysql.cursors.Cursor


def connect(dsn: Dsn, database: str | None = None,
            **kw: Any) -> Conn:
    """A plain autocommit utf8mb4 connection; keyword arguments override the defaults."""
    params: dict[str, Any] = {
        "host": dsn.host, "port": dsn.port, "user": dsn.user, "password": dsn.password,
        "unix_socket": dsn.unix_socket, "database": database, "autocommit": True,
        "charset": "utf8mb4", "connect_timeout": dsn.connect_timeout,
    }
    params.update(kw)
    return pymysql.connect(**params)


def scalar(conn: Conn, text: str) -> Any:
    """The first column of the first row of `text`."""
    with conn.cursor() as cur:
        cur.execute(text)
        return cur.fetchone()[0]


def tables(conn: Conn) -> set[str]:
    """The tables of the connection's default database."""
    with conn.cursor() as cur:
        cur.execute("SHOW TABLES")
        return {r[0] for r in cur.fetchall()}


def kept_tables(conn: Conn) -> set[str]:
    """tables(), with every old table a run kept (`_T_old_<YYYYMMDD>_<HHMMSS>`) shown as
    `_T_old_*` and onlineddl's record of old tables left out."""
    out = set()
    for name in tables(conn):
        if name == "_onlineddl_old_tables":
            continue
        out.add(re.sub(r"_old_\d{8}_\d{6}$", "_old_*", name))
    return out


def old_tables(conn: Conn, table: str = "t") -> list[str]:
    """The old tables named for `table`, oldest first."""
    pattern = re.compile(rf"_{re.escape(table)}_old_\d{{8}}_\d{{6}}")
    return sorted(n for n in tables(conn) if pattern.fullmatch(n))


def recorded_old_tables(conn: Conn, table: str = "t") -> list[str]:
    """The old tables onlineddl's record holds for `table`, oldest first."""
    if "_onlineddl_old_tables" not in tables(conn):
        return []
    with conn.cursor() as cur:
        cur.execute("SELECT old_name FROM _onlineddl_old_tables WHERE table_name = %s "
                    "ORDER BY swapped_at, old_name", (table,))
        return [r[0] for r in cur.fetchall()]


def columns(conn: Conn, table: str = "t") -> list[str]:
    """A table's column names in order."""
    with conn.cursor() as cur:
        cur.execute(f"SHOW COLUMNS FROM `{table}`")
        return [r[0] for r in cur.fetchall()]


def migrate_command(server: Dsn, db: str, alter: str, *extra: str, table: str = "t"
                    ) -> list[str]:
    """`python -m onlineddl migrate` for the test server, checksum repair off."""
    return [sys.executable, "-m", "onlineddl", "migrate", "--host", server.host, "--port",
            str(server.port), "--user", server.user, "--database", db, "--table", table,
            "--alter", alter, "--no-repair", *extra]


def cli_env(server: Dsn, fault: str | None = None) -> dict[str, str]:
    """The password through the environment (never argv); a fault point when asked."""
    env = dict(os.environ, ONLINEDDL_PASSWORD=server.password)
    env.pop("ONLINEDDL_FAULT", None)
    if fault:
        env["ONLINEDDL_FAULT"] = fault
    return env


def external_server_lacks(reason: str) -> None:
    """A capability the suite's own servers always have is missing: the binaries to
    start a server of a test's own, or a setting such as lower_case_table_names=0.
    Against an external server (ONLINEDDL_TEST_DSN, e.g. MySQL in docker on a machine
    without the binaries, or with case-insensitive names) the test is skipped; anywhere
    else, CI included, the missing capability is a failure, never a skip."""
    if os.environ.get("ONLINEDDL_TEST_DSN"):
        pytest.skip(reason)
    pytest.fail(reason)


"""Helpers shared by the test suite (import as `from helpers import connect`)."""

from __future__ import annotations

from typing import Any

import pymysql
import pymysql.connections

from onlineddl.config import Dsn


def connect(dsn: Dsn, database: str | None = None,
            **kw: Any) -> pymysql.connections.Connection:
    """A plain autocommit utf8mb4 connection; keyword arguments override the defaults."""
    params: dict[str, Any] = {
        "host": dsn.host, "port": dsn.port, "user": dsn.user, "password": dsn.password,
        "unix_socket": dsn.unix_socket, "database": database, "autocommit": True,
        "charset": "utf8mb4", "connect_timeout": dsn.connect_timeout,
    }
    params.update(kw)
    return pymysql.connect(**params)

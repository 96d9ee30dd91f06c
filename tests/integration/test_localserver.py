"""The throwaway server: configured as the engine needs, and it cleans up after itself."""

from __future__ import annotations

import dataclasses
import json
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pymysql.connections
import pytest
from helpers import connect, external_server_lacks, numbers

from onlineddl.config import Dsn
from onlineddl.db import login_probe
from onlineddl.errors import ConnectionFailed
from onlineddl.testing.localserver import LocalServer, find_flavor, pid_alive


@pytest.fixture
def binaries() -> None:
    """These tests start servers of their own, which needs the binaries even when the
    suite runs against ONLINEDDL_TEST_DSN (say, MySQL in docker without MariaDB)."""
    if find_flavor() is None:
        external_server_lacks("no mariadbd/mysqld is installed here")


def variables(conn: pymysql.connections.Connection, *names: str) -> dict[str, str]:
    with conn.cursor() as cur:
        cur.execute("SHOW GLOBAL VARIABLES WHERE Variable_name IN %s", (names,))
        return {name: str(value) for name, value in cur.fetchall()}


def test_fixture_server_writes_full_row_binlog(conn: pymysql.connections.Connection) -> None:
    assert variables(conn, "log_bin", "binlog_format", "binlog_row_image") == {
        "log_bin": "ON", "binlog_format": "ROW", "binlog_row_image": "FULL"}


@pytest.mark.parametrize("first, last", [(1, 1), (1, 10), (1, 600), (1, 1000), (3, 5),
                                         (1000, 1001), (500001, 1000000)])
def test_numbers_gives_each_integer_once(conn: pymysql.connections.Connection, first: int,
                                         last: int) -> None:
    """The seeding helper, on whichever flavor the suite runs against."""
    with conn.cursor() as cur:
        cur.execute(f"SELECT COUNT(*), COUNT(DISTINCT seq), MIN(seq), MAX(seq) "
                    f"FROM {numbers(last, first)}")
        count, distinct, low, high = cur.fetchone()
    assert (count, distinct, low, high) == (last - first + 1,) * 2 + (first, last)


def test_db_fixture_gives_an_empty_database(conn: pymysql.connections.Connection,
                                            db: str) -> None:
    with conn.cursor() as cur:
        cur.execute("SELECT DATABASE()")
        assert cur.fetchone() == (db,)
        cur.execute("SHOW TABLES")
        assert cur.fetchall() == ()
    assert len(db) <= 64


@pytest.mark.usefixtures("binaries")
def test_second_server_starts_and_stops_cleanly(server: Dsn) -> None:
    local = LocalServer(server_id=2)
    dsn = local.start()
    pid, root = local.pid, local.layout.root
    assert pid is not None
    try:
        assert dsn.port != server.port or dsn.host != server.host
        with connect(dsn) as c, c.cursor() as cur:
            cur.execute("SELECT @@server_id, @@binlog_row_metadata")
            assert cur.fetchone() == (2, "FULL")
    finally:
        local.stop()
    assert not pid_alive(pid)
    assert not root.exists()  # its own temp dir is removed with it


@pytest.mark.usefixtures("binaries")
def test_restart_after_kill_ignores_stale_pid_and_socket(tmp_path: Path) -> None:
    datadir = tmp_path / "srv"
    first = LocalServer(datadir=datadir)
    first.start()
    assert first._proc is not None
    first._proc.send_signal(signal.SIGKILL)  # our own child: no clean shutdown, files stay
    first._proc.wait(10)
    assert (datadir / "mysqld.pid").exists()
    second = LocalServer(datadir=datadir)
    try:
        with connect(second.start()) as c:
            c.ping()
    finally:
        second.stop()
        shutil.rmtree(datadir, ignore_errors=True)  # 100+ MB: do not leave it in basetemp


@pytest.mark.usefixtures("binaries")
def test_cli_server_outlives_its_command(tmp_path: Path) -> None:
    datadir = tmp_path / "cli"

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "onlineddl.testing.localserver", *args,
                               "--datadir", str(datadir)],
                              capture_output=True, text=True, timeout=120, check=False)

    try:
        started = cli("start")
        assert started.returncode == 0, started.stderr
        state = json.loads((datadir / "server.json").read_text())
        assert started.stdout.strip() == f"mysql://root@127.0.0.1:{state['port']}"
        with connect(Dsn.parse(started.stdout.strip())) as c:
            c.ping()
        assert cli("status").returncode == 0
    finally:
        assert cli("stop").returncode == 0
    assert not pid_alive(state["pid"])
    assert cli("status").returncode == 3
    shutil.rmtree(datadir, ignore_errors=True)


def test_login_probe_tells_a_refused_login_from_a_server_not_up_yet(server: Dsn) -> None:
    """LocalServer's readiness check (db.login_probe): a login answers the query, a
    closed port is "not up yet" (None, so the caller polls on), and a refused login is
    final (ConnectionFailed, which LocalServer reports as "root cannot log in")."""
    assert login_probe(server, "SELECT 1", read_timeout=5) == 1
    nobody = dataclasses.replace(server, user="onlineddl_no_such_user", password="x")
    with pytest.raises(ConnectionFailed, match="access denied"):
        login_probe(nobody, "SELECT 1", read_timeout=5)
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    closed = Dsn(host="127.0.0.1", port=port, connect_timeout=1)
    assert login_probe(closed, "SELECT 1", read_timeout=5) is None

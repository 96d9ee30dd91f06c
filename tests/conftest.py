"""Server fixtures for the whole suite.

`server` is session-scoped and lazy: tests/unit never asks for it, so `pytest tests/unit`
needs no database. Where the server comes from, first match wins:

  1. ONLINEDDL_TEST_DSN=mysql://user:pw@host:port  (e.g. docker-compose.yml's services)
  2. a throwaway local MariaDB/MySQL (onlineddl.testing.localserver), one per test run
  3. a MySQL 8.4 container via testcontainers, when a docker engine answers
  4. otherwise the run FAILS: a missing server must never turn into skipped tests.

A test only one flavor can run carries `@pytest.mark.mariadb_only` or
`@pytest.mark.mysql_only`; on the other flavor (told by the server's VERSION()) it is
skipped, saying why. Nothing else skips on the flavor.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator

import pymysql.connections
import pytest
from helpers import connect

from onlineddl import faults
from onlineddl.config import Dsn
from onlineddl.testing.localserver import LocalServer, find_flavor

DSN_ENV = "ONLINEDDL_TEST_DSN"
CONTAINER_IMAGE = "mysql:8.4"
CONTAINER_PASSWORD = "onlineddl"
# The same binlog settings LocalServer uses, so MySQL runs see what MariaDB runs see.
CONTAINER_FLAGS = [
    "--server-id=1", "--log-bin=binlog", "--binlog-format=ROW", "--binlog-row-image=FULL",
    "--binlog-row-metadata=FULL", "--gtid-mode=ON", "--enforce-gtid-consistency=ON",
    "--log-replica-updates=ON", "--innodb-flush-log-at-trx-commit=2", "--sync-binlog=0",
    "--max-connections=500", "--max-allowed-packet=64M",
]
NO_SERVER = (
    "no MySQL/MariaDB server for the integration tests. Either install one "
    "(`apt-get install -y mariadb-server-core`; scripts/test does this) or point the suite "
    f"at a running server: {DSN_ENV}=mysql://root:onlineddl@127.0.0.1:13306 "
    "(see docker-compose.yml)."
)
# DROP DATABASE waits for metadata locks; a test that leaked a transaction must not hang
# the run for the server's default of a year.
DROP_LOCK_WAIT = 10


@pytest.fixture(scope="session")
def server() -> Iterator[Dsn]:
    url = os.environ.get(DSN_ENV)
    if url:
        yield Dsn.parse(url)
    elif find_flavor() is not None:
        with LocalServer() as local:
            yield local.dsn
    elif _docker_works():
        yield from _mysql_container()
    else:
        pytest.fail(NO_SERVER, pytrace=False)


def _docker_works() -> bool:
    try:
        import docker

        docker.from_env(timeout=5).ping()
    except Exception:  # no client library, no socket, no daemon: all mean "no docker"
        return False
    return True


def _mysql_container() -> Iterator[Dsn]:
    from testcontainers.mysql import MySqlContainer

    container = MySqlContainer(CONTAINER_IMAGE, root_password=CONTAINER_PASSWORD)
    with container.with_command(" ".join(CONTAINER_FLAGS)):
        yield Dsn(host=container.get_container_host_ip(),
                  port=int(container.get_exposed_port(3306)),
                  user="root", password=CONTAINER_PASSWORD)


def database_name(test_name: str) -> str:
    """A unique, safe database name derived from the test name (at most 64 characters)."""
    base = re.sub(r"[^a-z0-9_]+", "_", test_name.lower()).strip("_")[:45]
    return f"t_{base}_{uuid.uuid4().hex[:8]}"


FLAVOR_MARKS = {"mariadb_only": "MariaDB", "mysql_only": "MySQL"}


@pytest.fixture(scope="session")
def server_flavor(server: Dsn) -> str:
    """"MariaDB" or "MySQL", from the test server's VERSION()."""
    with connect(server) as conn, conn.cursor() as cur:
        cur.execute("SELECT VERSION()")
        version = str(cur.fetchone()[0])
    return "MariaDB" if "mariadb" in version.lower() else "MySQL"


@pytest.fixture(autouse=True)
def _flavor_only(request: pytest.FixtureRequest) -> None:
    """Skips a test marked for the other flavor, before its database is made. Unmarked
    tests never ask for the server here (tests/unit runs without one)."""
    for mark, flavor in FLAVOR_MARKS.items():
        if request.node.get_closest_marker(mark) is None:
            continue
        actual = request.getfixturevalue("server_flavor")
        if actual != flavor:
            pytest.skip(f"{mark}: this server is {actual}")


@pytest.fixture
def db(server: Dsn, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh, empty database for this test; dropped afterwards."""
    name = database_name(request.node.name)
    with connect(server) as admin, admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{name}`")  # name is [a-z0-9_] only
    yield name
    with connect(server) as admin, admin.cursor() as cur:
        cur.execute("SET SESSION lock_wait_timeout = %s", (DROP_LOCK_WAIT,))
        cur.execute(f"DROP DATABASE IF EXISTS `{name}`")


@pytest.fixture
def conn(server: Dsn, db: str) -> Iterator[pymysql.connections.Connection]:
    """An autocommit connection whose default database is this test's `db`."""
    connection = connect(server, db)
    yield connection
    connection.close()


@pytest.fixture(autouse=True)
def _clear_faults() -> Iterator[None]:
    """Fault-point callbacks registered by a test never leak into the next one."""
    faults.clear()
    yield
    faults.clear()


@pytest.fixture
def sock() -> Iterator[str]:
    """A short unix socket path (pytest's tmp_path can pass the 107-byte limit)."""
    path = f"/tmp/odl-test-{uuid.uuid4().hex[:10]}.sock"
    yield path
    if os.path.lexists(path):
        os.unlink(path)

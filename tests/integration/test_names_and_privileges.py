"""Names as the server stores them, and privileges checked before anything is created.

- On a server started with --lower-case-table-names=1, `--table Orders` is the stored
  `orders`: migrate, --resume, cleanup and the runner lock all agree whatever the
  operator's spelling.
- A user missing privileges the run needs is refused up front (exit 4) with the missing
  privileges named and the GRANT statement to run; grants through a default role count,
  a role that is not enabled does not.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from helpers import connect, external_server_lacks, kept_tables, tables

from onlineddl import faults
from onlineddl.commands import cleanup, status
from onlineddl.config import Dsn, MigrationConfig, Tuning
from onlineddl.db import Session
from onlineddl.errors import Aborted, LockHeld, MissingPrivilege, OnlineDDLError
from onlineddl.migration import Result, migrate
from onlineddl.testing.localserver import LocalServer, find_flavor

TUNING = Tuning(chunk_rows_initial=40, chunk_rows_min=10, chunk_rows_max=80)
ROWS = 400
ALTER = "ADD COLUMN c INT NULL"


def seed(dsn: Dsn, database: str, table: str, rows: int = ROWS) -> None:
    with connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE IF NOT EXISTS `{database}`")
        cur.execute(f"CREATE TABLE `{database}`.`{table}` (id INT NOT NULL PRIMARY KEY, "
                    "v INT NOT NULL) ENGINE=InnoDB")
        cur.executemany(f"INSERT INTO `{database}`.`{table}` VALUES (%s, %s)",
                        [(i, i * 3) for i in range(1, rows + 1)])


def run(dsn: Dsn, database: str, table: str, alter: str = ALTER, **kw: Any) -> Result:
    config = MigrationConfig(dsn=dsn, database=database, table=table, alter=alter,
                             repair=False, tuning=TUNING, **kw)
    return migrate(config)


def stop_after_chunks(n: int = 2) -> None:
    """The run stops (resumably) after its n-th chunk, leaving its tables behind."""
    seen = {"chunks": 0}

    def stop() -> None:
        seen["chunks"] += 1
        if seen["chunks"] == n:
            raise Aborted("stopped by the test")

    faults.register("after_chunk", stop)


# --- lower_case_table_names=1 ----------------------------------------------------------------


@pytest.fixture(scope="module")
def folding() -> Iterator[Dsn]:
    """A throwaway server that stores names in lower case."""
    if find_flavor() is None:
        external_server_lacks("needs a local mariadbd/mysqld to start a server with "
                           "--lower-case-table-names=1")
    with LocalServer(extra_flags=("--lower-case-table-names=1",)) as srv:
        yield srv.dsn


@pytest.fixture
def shop(folding: Dsn) -> Iterator[str]:
    """A database created as `Shop_<id>` (stored in lower case) holding `Orders`."""
    name = f"Shop_{uuid.uuid4().hex[:6]}"
    seed(folding, name, "Orders")
    yield name
    with connect(folding) as conn, conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{name}`")


def test_server_stores_lower_case(folding: Dsn, shop: str) -> None:
    with connect(folding, shop.lower()) as conn:
        assert tables(conn) == {"orders"}


def test_mixed_case_spelling_migrates_the_stored_table(folding: Dsn, shop: str) -> None:
    result = run(folding, shop, "Orders")
    assert (result.database, result.table) == (shop.lower(), "orders")
    with connect(folding, shop.lower()) as conn, conn.cursor() as cur:
        assert kept_tables(conn) == {"orders", "_orders_old_*"}
        cur.execute("SELECT COUNT(*), COUNT(c) FROM orders")
        assert cur.fetchone() == (ROWS, 0)
    # Its old table is found and removed in any spelling, and so is the next run's.
    assert result.old_table.startswith("_orders_old_")
    info = json.loads(status(folding, shop.upper(), "ORDERS", as_json=True))
    assert [o["name"] for o in info["old_tables"]] == [result.old_table]
    second = run(folding, shop, "ORDERS", "ADD COLUMN d INT NULL")
    assert second.old_table != result.old_table
    done = cleanup(folding, shop, "Orders", old=True)
    assert [line.split(" (")[0] for line in done] == \
        [f"dropped {shop.lower()}.{n}" for n in (result.old_table, second.old_table)]
    with connect(folding, shop.lower()) as conn:
        assert kept_tables(conn) == {"orders"}


def test_resume_and_cleanup_in_another_spelling(folding: Dsn, shop: str) -> None:
    stop_after_chunks()
    with pytest.raises(Aborted):
        run(folding, shop, "Orders", drop_old=True)
    faults.clear()
    with connect(folding, shop.lower()) as conn:
        assert tables(conn) == {"orders", "_orders_new", "_orders_chkpnt"}
    result = run(folding, shop.upper(), "ORDERS", resume=True, drop_old=True)
    assert result.resumed
    with connect(folding, shop.lower()) as conn, conn.cursor() as cur:
        assert tables(conn) == {"orders"}
        cur.execute("SELECT COUNT(*), COUNT(c), SUM(v) FROM orders")
        assert cur.fetchone() == (ROWS, 0, 3 * ROWS * (ROWS + 1) // 2)
    # A second dead run, removed by `cleanup` in yet another spelling.
    stop_after_chunks()
    with pytest.raises(Aborted):
        run(folding, shop, "orders", "ADD COLUMN d INT NULL", drop_old=True)
    faults.clear()
    done = cleanup(folding, shop, "oRdErS")
    assert done == [f"dropped {shop.lower()}._orders_new",
                    f"dropped {shop.lower()}._orders_chkpnt"]
    with connect(folding, shop.lower()) as conn:
        assert tables(conn) == {"orders"}


def test_two_spellings_share_one_runner_lock(folding: Dsn, shop: str) -> None:
    """While a run on `Orders` copies, a run on `orders` is refused (exit 6)."""
    refused: list[OnlineDDLError] = []

    def second_runner() -> None:
        if refused:
            return
        try:
            run(folding, shop.lower(), "orders", drop_old=True)
        except OnlineDDLError as err:
            refused.append(err)

    faults.register("after_chunk", second_runner)
    run(folding, shop, "Orders", drop_old=True)
    assert len(refused) == 1 and isinstance(refused[0], LockHeld), refused
    assert refused[0].exit_code == 6
    assert f"{shop.lower()}.orders" in refused[0].message


# --- privileges ------------------------------------------------------------------------------


def is_mariadb(dsn: Dsn) -> bool:
    with connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT VERSION()")
        return "mariadb" in str(cur.fetchone()[0]).lower()


def admin(dsn: Dsn, *statements: str) -> None:
    with connect(dsn) as conn, conn.cursor() as cur:
        for statement in statements:
            cur.execute(statement)


@pytest.fixture
def restricted(server: Dsn, db: str) -> Iterator[tuple[Dsn, str]]:
    """A user (and a role name) of this test's own, dropped afterwards."""
    user, role = f"odl_{uuid.uuid4().hex[:8]}", f"odl_role_{uuid.uuid4().hex[:8]}"
    password = uuid.uuid4().hex
    admin(server, f"CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY '{password}'",
          f"CREATE ROLE {role}")
    seed(server, db, "t")
    try:
        yield Dsn(host=server.host, port=server.port, user=user, password=password), role
    finally:
        admin(server, f"DROP USER IF EXISTS '{user}'@'127.0.0.1'", f"DROP ROLE IF EXISTS {role}")


REPLICATION = "GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO {who}"


def test_missing_privileges_are_named_with_the_grant(server: Dsn, db: str,
                                                     restricted: tuple[Dsn, str]) -> None:
    user, _ = restricted
    who = f"'{user.user}'@'127.0.0.1'"
    admin(server, REPLICATION.format(who=who),
          f"GRANT SELECT, INSERT, UPDATE, DELETE, CREATE ON `{db}`.* TO {who}")
    with pytest.raises(MissingPrivilege) as info:
        run(user, db, "t")
    err = info.value
    assert err.exit_code == 4
    assert "DROP, ALTER, LOCK TABLES" in err.message
    grant = f"GRANT DROP, ALTER, LOCK TABLES ON `{db}`.* TO {who}"
    assert grant in err.hint
    with connect(server, db) as conn:
        assert tables(conn) == {"t"}, "a refused run creates nothing"
    admin(server, grant)   # exactly what the hint says to run
    run(user, db, "t")
    with connect(server, db) as conn:
        assert kept_tables(conn) == {"t", "_t_old_*"}


def test_missing_replication_privileges(server: Dsn, db: str,
                                        restricted: tuple[Dsn, str]) -> None:
    user, _ = restricted
    who = f"'{user.user}'@'127.0.0.1'"
    admin(server, f"GRANT ALL PRIVILEGES ON `{db}`.* TO {who}")
    with pytest.raises(MissingPrivilege) as info:
        run(user, db, "t")
    position = "BINLOG MONITOR" if is_mariadb(server) else "REPLICATION CLIENT"
    assert f"REPLICATION SLAVE, {position}" in info.value.message
    assert f"GRANT REPLICATION SLAVE, {position} ON *.* TO {who}" in info.value.hint


def test_grants_through_a_default_role(server: Dsn, db: str,
                                       restricted: tuple[Dsn, str]) -> None:
    """Privileges held through a role count once it is the user's default role."""
    user, role = restricted
    who = f"'{user.user}'@'127.0.0.1'"
    admin(server, REPLICATION.format(who=role), f"GRANT ALL PRIVILEGES ON `{db}`.* TO {role}",
          f"GRANT {role} TO {who}")
    with pytest.raises(MissingPrivilege):   # granted, but not enabled at login
        run(user, db, "t")
    default = f"SET DEFAULT ROLE {role} FOR {who}" if is_mariadb(server) else \
        f"SET DEFAULT ROLE {role} TO {who}"
    admin(server, default)
    run(user, db, "t")
    with connect(server, db) as conn:
        assert kept_tables(conn) == {"t", "_t_old_*"}


def test_a_refused_statement_is_a_privilege_error_not_a_password(
        server: Dsn, db: str, restricted: tuple[Dsn, str]) -> None:
    """1142/1044 after login: exit 4 naming the privilege, never "check the password"."""
    user, _ = restricted
    admin(server, f"GRANT SELECT ON `{db}`.* TO '{user.user}'@'127.0.0.1'")
    session = Session(user, name="test")
    try:
        for statement in (f"DROP TABLE `{db}`.t", "CREATE DATABASE odl_never_created"):
            with pytest.raises(MissingPrivilege) as info:
                session.execute(statement)
            assert info.value.exit_code == 4
            assert "password" not in str(info.value)
    finally:
        session.close()

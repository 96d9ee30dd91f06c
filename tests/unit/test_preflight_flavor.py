"""Preflight and flavor logic for the paths the test server cannot show: MySQL 8's
settings, roles and server identity, and the parsing of both flavors' SHOW GRANTS lines.
(The MariaDB paths also run against the real server: tests/integration/
test_names_and_privileges.py.)"""

from __future__ import annotations

import re
from typing import Any

import pytest

from onlineddl import grants
from onlineddl.errors import PreflightFailed
from onlineddl.flavor import MariaDB, MySQL
from onlineddl.leftovers import identity_matches
from onlineddl.preflight import check_server, missing_privileges
from onlineddl.table import Artifacts

MYSQL = MySQL((8, 0, 36), "8.0.36")
MARIADB = MariaDB((10, 11, 6), "10.11.6-MariaDB")
NAMES = Artifacts.for_table("orders")


class FakeServer:
    """Answers the few statements preflight and the flavor ask, from a table of global
    variables (a stand-in for a MySQL 8 server where none is available)."""

    def __init__(self, **variables: Any) -> None:
        self.variables = {"log_bin": "1", "binlog_format": "ROW", "binlog_row_image": "FULL",
                          "read_only": "0", **variables}
        self.statements: list[tuple[str, Any]] = []

    def query(self, text: str, params: Any = None) -> list[tuple[Any, ...]]:
        self.statements.append((text, params))
        if text.startswith("SHOW GLOBAL VARIABLES LIKE"):
            return [(params[0], self.variables[params[0]])] \
                if params[0] in self.variables else []
        if text.startswith("SHOW GRANTS"):
            return [(line,) for line in self.variables["grants"]]
        names = re.findall(r"@@GLOBAL\.(\w+)", text)
        return [tuple(self.variables[n] for n in names)]

    def query_one(self, text: str, params: Any = None) -> tuple[Any, ...] | None:
        rows = self.query(text, params)
        return rows[0] if rows else None

    def scalar(self, text: str, params: Any = None) -> Any:
        if text == "SELECT CURRENT_ROLE()":
            return self.variables.get("current_role", "NONE")
        row = self.query_one(text, params)
        return row[0] if row else None


def test_mysql_binlog_transaction_compression_is_refused() -> None:
    server = FakeServer(binlog_transaction_compression="ON")
    with pytest.raises(PreflightFailed) as info:
        check_server(server, MYSQL)  # type: ignore[arg-type]
    assert "binlog_transaction_compression is ON" in info.value.message
    assert "SET GLOBAL binlog_transaction_compression=OFF" in info.value.hint


def test_mysql_binlog_transaction_compression_off_passes() -> None:
    check_server(FakeServer(binlog_transaction_compression="OFF"), MYSQL)  # type: ignore[arg-type]
    check_server(FakeServer(), MARIADB)  # type: ignore[arg-type]  # no such variable


def test_server_identity_per_flavor() -> None:
    """MySQL: the server UUID. MariaDB: server_id plus the GTID domain."""
    server = FakeServer(server_uuid="3e11fa47-71ca-11e1-9e33-c80aa9429562", server_id=7,
                        gtid_domain_id=2)
    assert MYSQL.server_identity(server) == \
        "server_uuid=3e11fa47-71ca-11e1-9e33-c80aa9429562"
    assert MARIADB.server_identity(server) == "server_id=7 gtid_domain_id=2"


def test_mysql_active_roles_are_expanded_with_using() -> None:
    server = FakeServer(current_role="`app_rw`@`%`,`ops``x`@`%`",
                        grants=["GRANT USAGE ON *.* TO `u`@`%`"])
    MYSQL.grant_lines(server)
    text, params = server.statements[-1]
    assert text == "SHOW GRANTS FOR CURRENT_USER() USING %s@%s, %s@%s"
    assert params == ["app_rw", "%", "ops`x", "%"]
    none = FakeServer(current_role="NONE", grants=[])
    MYSQL.grant_lines(none)
    assert none.statements[-1] == ("SHOW GRANTS FOR CURRENT_USER()", [])


ALL_DB = ("GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, ALTER, LOCK TABLES ON `app`.* "
          "TO `u`@`%`")


def missing(flavor: MySQL, lines: list[str], database: str = "app", fold: bool = False,
            names: Artifacts = NAMES) -> tuple[list[str], list[str]]:
    return missing_privileges(grants.parse(lines), flavor, database, names, fold)


def test_mysql_privileges_complete() -> None:
    lines = ["GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO `u`@`%`", ALL_DB]
    assert missing(MYSQL, lines) == ([], [])


def test_mysql_root_lists_every_global_privilege() -> None:
    """MySQL 8 never prints ALL PRIVILEGES on *.*: each static privilege is listed."""
    lines = ["GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, RELOAD, SHUTDOWN, PROCESS, "
             "FILE, REFERENCES, INDEX, ALTER, SHOW DATABASES, SUPER, CREATE TEMPORARY "
             "TABLES, LOCK TABLES, EXECUTE, REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO "
             "`root`@`localhost` WITH GRANT OPTION",
             "GRANT APPLICATION_PASSWORD_ADMIN,BACKUP_ADMIN ON *.* TO `root`@`localhost`"]
    assert missing(MYSQL, lines) == ([], [])


def test_mysql_missing_lock_tables_and_replication_client() -> None:
    lines = ["GRANT REPLICATION SLAVE ON *.* TO `u`@`%`",
             "GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, ALTER ON `app`.* TO `u`@`%`"]
    assert missing(MYSQL, lines) == (["REPLICATION CLIENT"], ["LOCK TABLES"])


def test_mysql_partial_revoke_takes_a_privilege_away() -> None:
    lines = ["GRANT ALL PRIVILEGES ON *.* TO `u`@`%`",
             "REVOKE DROP ON `app`.* FROM `u`@`%`"]
    assert missing(MYSQL, lines) == ([], ["DROP"])
    assert missing(MYSQL, lines, database="other") == ([], [])


def test_grants_on_another_database_or_columns_do_not_count() -> None:
    lines = ["GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO `u`@`%`",
             ALL_DB.replace("`app`", "`app2`"),
             "GRANT SELECT (`id`, `v`), INSERT ON `app`.`orders` TO `u`@`%`"]
    glob, db = missing(MYSQL, lines)
    assert glob == []
    assert db == ["SELECT", "INSERT", "UPDATE", "DELETE", "CREATE", "DROP", "ALTER",
                  "LOCK TABLES"]


def test_table_level_grants_must_cover_every_artifact() -> None:
    """Grants on T alone do not let the run create `_T_new` or `_T_chkpnt`, and no
    table-level grant can name a run's old table before the run stamps its name."""
    lines = ["GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO `u`@`%`",
             "GRANT LOCK TABLES ON `app`.* TO `u`@`%`",
             "GRANT ALL PRIVILEGES ON `app`.`orders` TO `u`@`%`"]
    assert missing(MYSQL, lines)[1] == ["SELECT", "INSERT", "UPDATE", "DELETE", "CREATE",
                                        "DROP", "ALTER"]
    every = lines + [f"GRANT ALL PRIVILEGES ON `app`.`{n}` TO `u`@`%`"
                     for n in (*NAMES.all(), NAMES.legacy_old)]
    # ... nor can they name the old table, whose name each run stamps with its time.
    assert missing(MYSQL, every)[1] == ["SELECT", "INSERT", "UPDATE", "DELETE", "CREATE",
                                        "DROP", "ALTER"]
    chosen = NAMES.with_old("_orders_old_20261129_100507")
    assert missing(MYSQL, every, names=chosen)[1] == ["SELECT", "INSERT", "UPDATE", "DELETE",
                                                      "CREATE", "DROP", "ALTER"]
    every.append("GRANT ALL PRIVILEGES ON `app`.`_orders_old_20261129_100507` TO `u`@`%`")
    assert missing(MYSQL, every, names=chosen) == ([], [])


def test_database_patterns() -> None:
    lines = ["GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO `u`@`%`",
             ALL_DB.replace("`app`", "`app\\_%`")]
    assert missing(MARIADB, lines, database="app_eu") == ([], [])
    assert missing(MARIADB, lines, database="appXeu")[1] != []   # \\_ is a literal _
    folded = ["GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO `u`@`%`",
              ALL_DB.replace("`app`", "`App`")]
    assert missing(MARIADB, folded)[1] != []
    assert missing(MARIADB, folded, fold=True) == ([], [])


def test_mariadb_role_lines_and_binlog_monitor() -> None:
    """MariaDB's SHOW GRANTS with a default role: the role's grants follow the user's."""
    lines = ["GRANT `onlineddl_role` TO `u`@`127.0.0.1`",
             "GRANT USAGE ON *.* TO `u`@`127.0.0.1` IDENTIFIED BY PASSWORD '*D8'",
             "GRANT REPLICATION SLAVE ON *.* TO `onlineddl_role`",
             ALL_DB.replace("`u`@`%`", "`onlineddl_role`"),
             "SET DEFAULT ROLE `onlineddl_role` FOR `u`@`127.0.0.1`"]
    assert missing(MARIADB, lines) == (["BINLOG MONITOR"], [])
    assert missing(MARIADB, [*lines, "GRANT SUPER ON *.* TO `u`@`127.0.0.1`"]) == ([], [])


def test_account_quoting() -> None:
    assert grants.account("app@10.0.0.%") == "'app'@'10.0.0.%'"
    assert grants.account("o'neil@localhost") == "'o\\'neil'@'localhost'"


def test_shadow_identity_may_only_move_forward_with_the_same_columns() -> None:
    recorded = "2026-11-29 10:00:00 abc"
    assert identity_matches(recorded, recorded)
    assert identity_matches(recorded, "2026-11-29 10:05:00 abc")     # our AUTO_INCREMENT carry
    assert not identity_matches(recorded, "2026-11-29 09:59:59 abc")  # an older table
    assert not identity_matches(recorded, "2026-11-29 10:05:00 abd")  # other columns
    assert not identity_matches("", "2026-11-29 10:05:00 abc")        # nothing recorded

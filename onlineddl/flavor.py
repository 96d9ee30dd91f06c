"""Every difference between MySQL and MariaDB, chosen once from the version string.

`MySQL` is the base; `MariaDB(MySQL)` overrides only what differs (as alembic does with
its dialect implementations). Nothing else in the engine branches on the flavor: other
modules call a method or property here and never test the flavor's type
(tests/unit/test_walls.py fails on an `isinstance(..., MariaDB)` or `.is_mariadb`
outside this module).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Protocol

from onlineddl.errors import PreflightFailed
from onlineddl.grants import parse_roles


class Queryable(Protocol):
    def query(self, sql: str, params: Any = None) -> list[tuple[Any, ...]]: ...
    def scalar(self, sql: str, params: Any = None) -> Any: ...


@dataclass(frozen=True, order=True)
class BinlogPosition:
    """A point in the primary's binlog. Ordered by (file number, offset).

    `gtid` is the flavor's own text: a MySQL GTID set (`uuid:1-100`) or a MariaDB GTID
    list (`0-1-42,1-1-7`). MariaDB readers start from it; MySQL readers from file:pos.
    """

    file: str
    pos: int
    gtid: str = ""

    @property
    def sort_key(self) -> tuple[int, int]:
        return (binlog_file_number(self.file), self.pos)

    def reached(self, target: BinlogPosition) -> bool:
        return self.sort_key >= target.sort_key

    def __str__(self) -> str:
        suffix = f" gtid={self.gtid}" if self.gtid else ""
        return f"{self.file}:{self.pos}{suffix}"


def binlog_file_number(name: str) -> int:
    match = re.search(r"\.(\d+)$", name)
    if not match:
        raise ValueError(f"not a binlog file name: {name!r}")
    return int(match.group(1))


class MySQL:
    name = "mysql"

    def __init__(self, version: tuple[int, int, int], version_string: str) -> None:
        self.version = version
        self.version_string = version_string

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.version_string})"

    # --- positions -------------------------------------------------------------------

    def master_status_sql(self) -> str:
        # MySQL 8.2 deprecated SHOW MASTER STATUS and 8.4 removed it.
        return "SHOW BINARY LOG STATUS" if self.version >= (8, 2, 0) else "SHOW MASTER STATUS"

    def gtid_state(self, session: Queryable) -> str:
        value = session.scalar("SELECT @@GLOBAL.gtid_executed")
        return str(value or "").replace("\n", "")

    def current_position(self, session: Queryable) -> BinlogPosition:
        rows = session.query(self.master_status_sql())
        if not rows:
            raise PreflightFailed("binary logging is disabled on this server",
                                  hint="start the server with log_bin (and binlog_format=ROW)")
        file, pos = rows[0][0], int(rows[0][1])
        return BinlogPosition(str(file), pos, self.gtid_state(session))

    def advance_gtid(self, state: str, gtid: str) -> str:
        # MySQL readers resume from file:pos; the last GTID is kept for operators only.
        return gtid

    def reader_start_args(self, start: BinlogPosition) -> dict[str, Any]:
        """BinLogStreamReader arguments to start reading exactly at `start`."""
        return {"log_file": start.file, "log_pos": start.pos, "resume_stream": True}

    def gtid_dump_settings(self, start: BinlogPosition
                           ) -> list[tuple[str, tuple[Any, ...]]] | None:
        """User variable assignments (SQL, parameters) that make a COM_BINLOG_DUMP start
        from `start`'s GTID state; None where the dump starts from file:pos. MySQL starts
        a GTID dump with another command (COM_BINLOG_DUMP_GTID), so the wire reader's
        MySQL dumps always go by file:pos."""
        return None

    def binlog_files(self, session: Queryable) -> list[str]:
        return [str(row[0]) for row in session.query("SHOW BINARY LOGS")]

    def binlog_expiry_seconds(self, session: Queryable) -> float:
        """How long the server keeps binlog files before purging them by itself
        (binlog_expire_logs_seconds, else expire_logs_days); 0: never."""
        seconds = _variable(session, "binlog_expire_logs_seconds")
        if seconds:
            return float(seconds)
        days = _variable(session, "expire_logs_days")
        return float(days or 0) * 86400

    def position_available(self, session: Queryable, pos: BinlogPosition) -> bool:
        """Is the binlog still on the server from `pos` on (not purged)?"""
        return pos.file in self.binlog_files(session)

    # --- identity and privileges -----------------------------------------------------

    def server_identity(self, session: Queryable) -> str:
        """Which server this is, recorded in the checkpoint: a resume on another server
        (after a failover) must not trust a binlog file:pos from this one. MySQL's
        @@server_uuid is unique per server and survives restarts."""
        return f"server_uuid={session.scalar('SELECT @@GLOBAL.server_uuid')}"

    def grant_lines(self, session: Queryable) -> list[str]:
        """SHOW GRANTS for the current user with its active roles expanded (MySQL 8
        lists a role's privileges only with USING)."""
        roles = parse_roles(str(session.scalar("SELECT CURRENT_ROLE()") or ""))
        text, params = self.show_grants_sql(roles)
        return [str(row[0]) for row in session.query(text, params)]

    @staticmethod
    def show_grants_sql(roles: list[tuple[str, str]]) -> tuple[str, list[str]]:
        if not roles:
            return "SHOW GRANTS FOR CURRENT_USER()", []
        marks = ", ".join(["%s@%s"] * len(roles))
        return (f"SHOW GRANTS FOR CURRENT_USER() USING {marks}",
                [part for role in roles for part in role])

    @property
    def binlog_position_privileges(self) -> tuple[str, ...]:
        """Any of these lets the user read the binlog position (SHOW MASTER STATUS,
        SHOW BINARY LOGS); the first is the one to grant."""
        return ("REPLICATION CLIENT", "SUPER")

    # --- capabilities ----------------------------------------------------------------

    @property
    def rename_under_lock(self) -> bool:
        """MySQL 8.0.13+ allows RENAME TABLE under LOCK TABLES."""
        return self.version >= (8, 0, 13)

    def replica_status_sql(self) -> str:
        return "SHOW REPLICA STATUS" if self.version >= (8, 0, 22) else "SHOW SLAVE STATUS"

    def replica_hosts_sql(self) -> str:
        """Lists the replicas connected to this primary (those started with report_host
        show their address)."""
        return "SHOW REPLICAS" if self.version >= (8, 0, 22) else "SHOW SLAVE HOSTS"

    @property
    def supports_instant(self) -> bool:
        """ALGORITHM=INSTANT exists (MySQL 8.0.12+); the server decides per ALTER."""
        return self.version >= (8, 0, 12)

    @property
    def definer_privilege(self) -> str:
        """The privilege that lets a user create an object with another DEFINER."""
        return "SET_USER_ID"

    @property
    def repoints_fk_children(self) -> bool:
        """Can the cutover re-point other tables' foreign keys to the new table
        (fkparents.py)? Not on MySQL: its cutover holds T with LOCK TABLES on one
        connection, under which the children cannot be altered; built for MariaDB's."""
        return False

    @property
    def lists_every_foreign_key(self) -> bool:
        """Does information_schema.INNODB_SYS_FOREIGN (with PROCESS) list the foreign
        keys of every database, also those the user cannot see (fkparents.py)?"""
        return False

    @property
    def keeps_check_names(self) -> bool:
        """Does the new table keep T's CHECK constraints under their names, and the
        ALTER's added ones as a plain ALTER names them (preflight.check_constraints)?
        Not known on MySQL: its CHECK names are unique per schema, and it documents that
        CREATE TABLE ... LIKE gives the copy generated names; not verified here."""
        return False


class MariaDB(MySQL):
    name = "mariadb"

    def master_status_sql(self) -> str:
        return "SHOW MASTER STATUS"

    def server_identity(self, session: Queryable) -> str:
        """MariaDB has no server UUID. @@server_id must differ between the servers of
        one replication topology (a promoted replica has its own); the GTID domain tells
        topologies apart that reuse server ids. A restart keeps both."""
        row = session.query("SELECT @@GLOBAL.server_id, @@GLOBAL.gtid_domain_id")[0]
        return f"server_id={row[0]} gtid_domain_id={row[1]}"

    def grant_lines(self, session: Queryable) -> list[str]:
        """MariaDB's SHOW GRANTS includes the enabled (default) role's grants and those
        of the roles granted to it."""
        return [str(row[0]) for row in session.query("SHOW GRANTS")]

    @property
    def binlog_position_privileges(self) -> tuple[str, ...]:
        # 10.5 renamed REPLICATION CLIENT to BINLOG MONITOR (the old name is an alias).
        return ("BINLOG MONITOR", "REPLICATION CLIENT", "SUPER")

    def gtid_state(self, session: Queryable) -> str:
        return str(session.scalar("SELECT @@GLOBAL.gtid_binlog_pos") or "")

    def advance_gtid(self, state: str, gtid: str) -> str:
        """Fold one `domain-server-seq` GTID into a GTID list (one entry per domain)."""
        domain = gtid.split("-", 1)[0]
        if "," not in state and state.split("-", 1)[0] == domain:
            return gtid  # the common case, once per transaction: one domain
        domains = parse_mariadb_gtids(state)
        domains[domain] = gtid
        return ",".join(domains[d] for d in sorted(domains, key=int))

    def reader_start_args(self, start: BinlogPosition) -> dict[str, Any]:
        return {"is_mariadb": True, "auto_position": self.start_gtid(start)}

    def gtid_dump_settings(self, start: BinlogPosition
                           ) -> list[tuple[str, tuple[Any, ...]]] | None:
        """MariaDB starts a dump from the GTID list in @slave_connect_state. Strict mode:
        a GTID the binlog does not hold is an error, never a silent jump past it."""
        return [("@slave_connect_state = %s", (self.start_gtid(start),)),
                ("@slave_gtid_strict_mode = 1", ()),
                ("@slave_gtid_ignore_duplicates = 0", ())]

    @staticmethod
    def start_gtid(start: BinlogPosition) -> str:
        """MariaDB binlog readers (ours and the library's) start by GTID; an empty list
        would replay every binlog from the first, so it is refused up front."""
        if not start.gtid:
            raise PreflightFailed(
                "the MariaDB server reports no GTID position (@@gtid_binlog_pos is empty)",
                hint="commit any transaction on the server once, then run again")
        return start.gtid

    @property
    def rename_under_lock(self) -> bool:
        # Checked on 10.11: RENAME TABLE under LOCK TABLES fails with error 1192.
        return False

    def replica_status_sql(self) -> str:
        return "SHOW ALL SLAVES STATUS"   # every replication channel (multi-source)

    def replica_hosts_sql(self) -> str:
        return "SHOW SLAVE HOSTS"

    @property
    def supports_instant(self) -> bool:
        return True  # since 10.3; the server decides per ALTER

    @property
    def definer_privilege(self) -> str:
        return "SET USER"

    @property
    def repoints_fk_children(self) -> bool:
        return True   # tested on 10.11 (tests/integration/test_foreign_key_parents.py)

    @property
    def lists_every_foreign_key(self) -> bool:
        return True

    @property
    def keeps_check_names(self) -> bool:
        return True   # names are per table; tested on 10.11 (test_parity_more.py)


def _variable(session: Queryable, name: str) -> float:
    rows = session.query("SHOW GLOBAL VARIABLES LIKE %s", (name,))
    try:
        return float(rows[0][1]) if rows else 0.0
    except (TypeError, ValueError):
        return 0.0


def replica_lag(rows: list[dict[str, Any]]) -> float | None:
    """Seconds behind from replica status rows (the worst channel); None when a channel's
    replication is not running, so its lag is unknown. Both vocabularies: MySQL 8.0.22+
    says Source/Replica, MariaDB and older MySQL say Master/Slave."""
    worst = 0.0
    for row in rows:
        io = row.get("Replica_IO_Running", row.get("Slave_IO_Running"))
        sql_thread = row.get("Replica_SQL_Running", row.get("Slave_SQL_Running"))
        lag = row.get("Seconds_Behind_Source", row.get("Seconds_Behind_Master"))
        if str(io) != "Yes" or str(sql_thread) != "Yes" or lag is None:
            return None
        worst = max(worst, float(lag))
    return worst


def parse_mariadb_gtids(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        if not re.fullmatch(r"\d+-\d+-\d+", part):
            raise ValueError(f"not a MariaDB GTID: {part!r}")
        out[part.split("-", 1)[0]] = part
    return out


def mariadb_gtid_reached(current: str, target: str) -> bool:
    """True when every domain of `target` is at or past its sequence in `current`."""
    have = {d: int(g.rsplit("-", 1)[1]) for d, g in parse_mariadb_gtids(current).items()}
    for domain, gtid in parse_mariadb_gtids(target).items():
        if have.get(domain, -1) < int(gtid.rsplit("-", 1)[1]):
            return False
    return True


def parse_version(version_string: str) -> tuple[int, int, int]:
    match = re.match(r"(\d+)\.(\d+)\.(\d+)", version_string)
    if not match:
        raise PreflightFailed(f"cannot read the server version from {version_string!r}")
    major, minor, patch = (int(g) for g in match.groups())
    return major, minor, patch


def detect(version_string: str) -> MySQL:
    """Pick the flavor from `SELECT VERSION()`, refusing versions we do not support."""
    version = parse_version(version_string)
    if "mariadb" in version_string.lower():
        if version < (10, 6, 0):
            raise PreflightFailed(f"MariaDB {version_string} is too old",
                                  hint="onlineddl supports MariaDB 10.6 and later")
        return MariaDB(version, version_string)
    if version < (8, 0, 0):
        raise PreflightFailed(f"MySQL {version_string} is too old",
                              hint="onlineddl supports MySQL 8.0 and later")
    return MySQL(version, version_string)

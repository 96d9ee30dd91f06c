"""Flavor logic for MySQL and MariaDB, offline (MySQL cannot run on this machine)."""

from __future__ import annotations

import struct
from typing import Any

import pytest

from onlineddl.binlog.wire import WireReader
from onlineddl.errors import PreflightFailed
from onlineddl.flavor import (
    BinlogPosition,
    MariaDB,
    MySQL,
    binlog_file_number,
    detect,
    mariadb_gtid_reached,
)


class FakeSession:
    """Answers the few read-only queries a flavor makes (pure SQL text lookup)."""

    def __init__(self, answers: dict[str, list[tuple[Any, ...]]]) -> None:
        self.answers = answers
        self.seen: list[str] = []

    def query(self, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        self.seen.append(sql)
        return self.answers[sql]

    def scalar(self, sql: str, params: Any = None) -> Any:
        rows = self.query(sql, params)
        return rows[0][0] if rows else None


@pytest.mark.parametrize("version, cls, rename_under_lock", [
    ("10.11.19-MariaDB-0+deb12u1-log", MariaDB, False),
    ("10.6.5-MariaDB", MariaDB, False),
    ("11.4.2-MariaDB", MariaDB, False),
    ("8.0.36", MySQL, True),
    ("8.0.12", MySQL, False),
    ("8.4.0", MySQL, True),
])
def test_detect(version: str, cls: type, rename_under_lock: bool) -> None:
    flavor = detect(version)
    assert type(flavor) is cls
    assert flavor.rename_under_lock is rename_under_lock


@pytest.mark.parametrize("version", ["5.7.44", "10.5.9-MariaDB", "garbage"])
def test_detect_refuses_old_or_unknown(version: str) -> None:
    with pytest.raises(PreflightFailed):
        detect(version)


def test_mysql_position_uses_binary_log_status_on_84() -> None:
    flavor = detect("8.4.0")
    session = FakeSession({
        "SHOW BINARY LOG STATUS": [("binlog.000003", 157, "", "", "uuid:1-5")],
        "SELECT @@GLOBAL.gtid_executed": [("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5",)],
    })
    pos = flavor.current_position(session)
    assert pos == BinlogPosition("binlog.000003", 157, "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5")
    assert flavor.reader_start_args(pos) == {"log_file": "binlog.000003", "log_pos": 157,
                                             "resume_stream": True}


def test_mysql_80_uses_show_master_status() -> None:
    assert detect("8.0.36").master_status_sql() == "SHOW MASTER STATUS"


def test_mariadb_position_and_reader_args() -> None:
    flavor = detect("10.11.6-MariaDB")
    session = FakeSession({
        "SHOW MASTER STATUS": [("bin.000002", 4242, "", "")],
        "SELECT @@GLOBAL.gtid_binlog_pos": [("0-1-42,1-1-7",)],
    })
    pos = flavor.current_position(session)
    assert pos.gtid == "0-1-42,1-1-7"
    assert flavor.reader_start_args(pos) == {"is_mariadb": True, "auto_position": "0-1-42,1-1-7"}


def test_mariadb_refuses_to_start_without_gtid() -> None:
    with pytest.raises(PreflightFailed, match="GTID"):
        detect("10.11.6-MariaDB").reader_start_args(BinlogPosition("bin.000001", 4, ""))


def test_binlog_disabled_is_a_clear_error() -> None:
    session = FakeSession({"SHOW MASTER STATUS": []})
    with pytest.raises(PreflightFailed, match="binary logging is disabled"):
        detect("10.11.6-MariaDB").current_position(session)


def test_mariadb_gtid_advance_keeps_one_entry_per_domain() -> None:
    flavor = detect("10.11.6-MariaDB")
    state = flavor.advance_gtid("0-1-41,1-1-7", "0-1-42")
    assert state == "0-1-42,1-1-7"
    assert flavor.advance_gtid(state, "2-5-1") == "0-1-42,1-1-7,2-5-1"
    assert flavor.advance_gtid("", "0-1-1") == "0-1-1"


def test_mariadb_gtid_reached() -> None:
    assert mariadb_gtid_reached("0-1-42,1-1-7", "0-1-42")
    assert mariadb_gtid_reached("0-1-43", "0-1-42")
    assert not mariadb_gtid_reached("0-1-41", "0-1-42")
    assert not mariadb_gtid_reached("0-1-50", "0-1-42,1-1-1")


def test_positions_order_across_files() -> None:
    a = BinlogPosition("bin.000009", 900)
    b = BinlogPosition("bin.000010", 4)
    assert b.reached(a) and not a.reached(b)
    assert a.reached(a)
    assert binlog_file_number("mysql-bin.001234") == 1234


def test_the_first_wire_dump_starts_by_gtid_on_mariadb_and_by_file_pos_on_mysql() -> None:
    start = BinlogPosition("bin.000003", 1234, "0-1-42")
    assert detect("8.0.36").gtid_dump_settings(start) is None
    assert detect("10.11.6-MariaDB").gtid_dump_settings(start) == [
        ("@slave_connect_state = %s", ("0-1-42",)),
        ("@slave_gtid_strict_mode = 1", ()),
        ("@slave_gtid_ignore_duplicates = 0", ())]
    with pytest.raises(PreflightFailed, match="GTID"):
        detect("10.11.6-MariaDB").gtid_dump_settings(BinlogPosition("bin.000001", 4, ""))


@pytest.mark.parametrize("version, gtid_state, pos, name", [
    ("8.0.36", False, 1234, b"bin.000003"),
    ("10.11.6-MariaDB", True, 4, b""),
])
def test_wire_dump_request_follows_the_flavor(version: str, gtid_state: bool, pos: int,
                                              name: bytes) -> None:
    start = BinlogPosition("bin.000003", 1234, "0-1-42")
    settings, payload = WireReader._dump_request(detect(version), start, 7, True)
    assert any("slave_connect_state" in s for s, _ in settings) == gtid_state
    assert struct.unpack("<BIHI", payload[:11])[1] == pos and payload[11:] == name
    # The polls after the first dump go by file:pos on both flavors.
    settings, payload = WireReader._dump_request(detect(version), start, 7, False)
    assert [s for s, _ in settings] == ["@mariadb_slave_capability = 4"]
    assert struct.unpack("<BIHI", payload[:11])[1] == 1234 and payload[11:] == b"bin.000003"


@pytest.mark.parametrize(("version", "privilege", "repoints", "lists_all"), [
    ("8.0.36", "SET_USER_ID", False, False),
    ("10.11.6-MariaDB", "SET USER", True, True),
])
def test_trigger_and_foreign_key_capabilities(version: str, privilege: str, repoints: bool,
                                              lists_all: bool) -> None:
    flavor = detect(version)
    assert flavor.definer_privilege == privilege
    assert flavor.repoints_fk_children is repoints
    assert flavor.lists_every_foreign_key is lists_all
    assert flavor.keeps_check_names is repoints   # MariaDB only, as the two above

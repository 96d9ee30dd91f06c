"""Small pure pieces: artifact names, checkpoint key encoding, chunk sizing, key order,
errors, the delta map, DDL detection."""

from __future__ import annotations

import datetime
import decimal
from typing import Any

import pytest

from onlineddl.applier import DeltaMap
from onlineddl.binlog import GONE, MOVED, UPSERT, Keys, TableShape, ddl_names_table
from onlineddl.checkpoint import alter_hash, decode_key, encode_key
from onlineddl.chunker import Chunk, KeyOrder, Watermark
from onlineddl.config import Dsn, MigrationConfig, Tuning
from onlineddl.errors import EXIT_CODES, OnlineDDLError, UnsupportedTable, UsageError
from onlineddl.oldtables import parse_duration
from onlineddl.preflight import check_primary_key
from onlineddl.progress import Phase
from onlineddl.runlock import lock_name
from onlineddl.table import (
    Artifacts,
    Column,
    TableInfo,
    artifact_name,
    old_table_name,
    sentry_name,
)


def test_artifact_names() -> None:
    a = Artifacts.for_table("users")
    assert (a.shadow, a.old, a.checkpoint, a.swap) == \
        ("_users_new", "", "_users_chkpnt", "_users_swap")
    assert a.sentry == "users_cutover"
    assert a.legacy_old == "_users_old"
    assert "" not in a.all()
    when = datetime.datetime(2026, 11, 29, 10, 5, 7)
    assert a.with_old(old_table_name("users", when)).old == "_users_old_20261129_100507"


def test_long_old_table_names_are_shortened_and_keep_their_stamp() -> None:
    when = datetime.datetime(2026, 11, 29, 10, 5, 7)
    for table in ("x" * 64, "é" * 60, "t" * 45):
        name = old_table_name(table, when)
        assert len(name) <= 64 and name.endswith("_old_20261129_100507")
        assert name == old_table_name(table, when)
        assert name != old_table_name(table, when + datetime.timedelta(seconds=1))


def test_durations() -> None:
    assert parse_duration("7d", "--keep-old-for") == 7 * 86400
    assert parse_duration("12h", "--keep-old-for") == 12 * 3600
    assert parse_duration("1.5m", "--x") == 90
    assert parse_duration("90", "--x") == 90
    assert parse_duration("2w", "--x") == 14 * 86400
    for bad in ("", "7 days", "-1d", "d", "1y"):
        with pytest.raises(UsageError, match="is not a duration"):
            parse_duration(bad, "--keep-old-for")


def test_long_artifact_names_are_shortened_deterministically() -> None:
    long = "x" * 64
    name = artifact_name(long, "chkpnt")
    assert len(name) <= 64
    assert name == artifact_name(long, "chkpnt")
    assert artifact_name(long, "new") != artifact_name(long, "old")


@pytest.mark.parametrize("table", ["t", "T", "Users", "a" * 64, "z" * 60, "~" * 63 + "a",
                                   "\u00e9t\u00e9", "9lives"])
def test_sentry_sorts_after_table(table: str) -> None:
    # The cutover depends on this order: see cutover.py.
    name = sentry_name(table)
    assert len(name) <= 64
    assert name.encode("utf-8") > table.encode("utf-8")


@pytest.mark.parametrize("key", [
    (1,), (-5, "a\u00e9\U0001F600"), (b"\x00\xff",), (decimal.Decimal("12.3400"),),
    (datetime.datetime(2024, 2, 29, 23, 59, 59, 123456),), (datetime.date(2020, 1, 1),),
    (datetime.timedelta(hours=-3, microseconds=5),), (18446744073709551615,),
])
def test_checkpoint_key_round_trip(key: tuple[object, ...]) -> None:
    assert decode_key(encode_key(key)) == key


def test_checkpoint_none_key() -> None:
    assert encode_key(None) is None and decode_key(None) is None


def test_alter_hash_ignores_whitespace_only() -> None:
    assert alter_hash("ADD COLUMN  c INT") == alter_hash("ADD COLUMN c INT ")
    assert alter_hash("ADD COLUMN c INT") != alter_hash("ADD COLUMN d INT")


def _int_col(name: str = "id") -> Column:
    return Column(name, 0, "bigint", "bigint(20)", None, None, False, False)


def test_key_order_before_first_chunk_defers_everything() -> None:
    """Seed 000: "copier not started" must not read as "every key is above it"."""
    order = KeyOrder([_int_col()])
    wm = Watermark().get()
    assert order.below(None, [(1,), (10**12,)], wm) == [False, False]


def test_key_order_after_chunks() -> None:
    order = KeyOrder([_int_col()])
    wm = Watermark()
    wm.completed(Chunk(None, (100,)))
    assert order.below(None, [(1,), (100,), (101,)], wm.get()) == [True, True, False]
    wm.completed(Chunk((100,), None))
    assert order.below(None, [(10**15,)], wm.get()) == [True]


def test_key_order_non_integer_needs_the_server() -> None:
    col = Column("k", 0, "varchar", "varchar(10)", "utf8mb4", "utf8mb4_general_ci", False, False)
    wm = Watermark()
    wm.completed(Chunk(None, ("m",)))
    with pytest.raises(RuntimeError):
        KeyOrder([col]).below(None, [("a",)], wm.get())


def test_delta_map_latest_wins_and_discard_keeps_newer_changes() -> None:
    delta = DeltaMap()
    delta.add([Keys([(1,), (2,)], UPSERT)])
    snap = delta.snapshot()
    delta.add([Keys([(1,)], GONE)])            # changed again after the snapshot
    delta.discard(snap)
    assert [(k, latest & 3) for k, latest in delta.snapshot()] == [((1,), GONE)]
    assert delta.received == 3


def test_delta_map_keeps_the_operation_of_each_keys_latest_change() -> None:
    delta = DeltaMap()
    # One transaction: insert 1 and 2, delete 1, move 2 -> 3, re-insert 1, update 4.
    delta.add([Keys([(1,), (2,)], UPSERT), Keys([(1,)], GONE), Keys([(2,), (3,)], MOVED),
               Keys([(1,)], UPSERT), Keys([(4,)], UPSERT)])
    latest = {k[0]: op & 3 for k, op in delta.snapshot()}
    # 1 was gone before it came back: GONE stays (a revert resets what it keeps for
    # old rows); 4 was only changed.
    assert latest == {1: UPSERT | GONE, 2: MOVED, 3: MOVED, 4: UPSERT}


def test_exit_codes_are_distinct_and_documented() -> None:
    codes = [cls.exit_code for cls in _all_error_classes()]
    assert 0 not in codes
    for code in codes:
        assert code in EXIT_CODES


def _all_error_classes() -> list[type[OnlineDDLError]]:
    out, todo = [], [OnlineDDLError]
    while todo:
        cls = todo.pop()
        out.append(cls)
        todo.extend(cls.__subclasses__())
    return out


def test_error_text_includes_hint() -> None:
    err = UsageError("bad", hint="do this")
    assert "what to do: do this" in str(err)


def test_password_not_in_repr() -> None:
    dsn = Dsn(password="s3cret-pw")
    assert "s3cret-pw" not in repr(dsn)
    cfg = MigrationConfig(dsn=dsn, database="d", table="t", alter="ADD c INT")
    assert "s3cret-pw" not in repr(cfg)


def test_dsn_parse() -> None:
    dsn = Dsn.parse("mysql://u%40x:p%3Aw@db1:3307")
    assert (dsn.user, dsn.password, dsn.host, dsn.port) == ("u@x", "p:w", "db1", 3307)
    with pytest.raises(UsageError):
        Dsn.parse("postgres://x")


@pytest.mark.parametrize("kw", [
    {"chunk_time": 0}, {"chunk_rows_min": 10, "chunk_rows_initial": 5},
    {"cutover_attempts": 0}, {"lock_wait_timeout": 0}, {"copy_workers": 0},
    {"nice_ratio": -0.5}, {"nice_ratio": 101}, {"nice_ratio": float("nan")},
])
def test_tuning_validation(kw: dict[str, Any]) -> None:
    with pytest.raises(UsageError):
        Tuning(**kw).validate()


def test_lock_name_fits_the_server_limit() -> None:
    assert lock_name("d", "t") == "onlineddl.d.t"
    assert len(lock_name("d" * 64, "t" * 64)) <= 64


@pytest.mark.parametrize("text, hit", [
    ("ALTER TABLE t ADD COLUMN x INT", True),
    ("alter table `db`.`t` drop x", True),
    ("ALTER TABLE other ADD COLUMN t INT", False),
    ("RENAME TABLE `t` TO `_t_old`, `_t_new` TO `t`", True),
    ("DROP TABLE IF EXISTS `_t_new`", False),
    ("TRUNCATE t", True),
    ("CREATE TABLE `t_cutover` (id INT PRIMARY KEY)", False),
    ("INSERT INTO t VALUES (1)", True),
    ("UPDATE other SET a = 1", False),
])
def test_ddl_detection(text: str, hit: bool) -> None:
    assert ddl_names_table(text, "t") is hit


def _info(key: Column, other: Column) -> TableInfo:
    return TableInfo("d", "t", (key, other), (key.name,), "InnoDB", 0, "")


def test_general_decoder_tables_refuse_keys_it_cannot_read_back() -> None:
    latin1 = Column("k", 0, "varchar", "varchar(10)", "latin1", "latin1_swedish_ci", False,
                    False)
    utf8 = Column("k", 0, "varchar", "varchar(10)", "utf8mb4", "utf8mb4_bin", False, False)
    inet6 = Column("ip", 1, "inet6", "inet6", None, None, True, False)
    plain = Column("n", 1, "int", "int(11)", None, None, True, False)
    with pytest.raises(UnsupportedTable, match="ip"):
        check_primary_key(_info(latin1, inet6))
    check_primary_key(_info(utf8, inet6))    # the general decoder reads UTF-8 exactly
    check_primary_key(_info(latin1, plain))  # the wire reader decodes latin1 keys itself
    assert TableShape.of(_info(latin1, plain)).key_kinds is not None  # the wire reader
    assert TableShape.of(_info(utf8, inet6)).key_kinds is None        # the library


def test_composite_keys_with_a_general_decoder_part_refuse_unreadable_parts() -> None:
    day = Column("d", 0, "date", "date", None, None, False, False)
    raw = Column("b", 1, "varbinary", "varbinary(8)", None, None, False, False)
    text = Column("s", 1, "varchar", "varchar(8)", "utf8mb4", "utf8mb4_bin", False, False)
    mixed = TableInfo("d", "t", (day, raw), ("d", "b"), "InnoDB", 0, "")
    with pytest.raises(UnsupportedTable, match="b that decoder"):
        check_primary_key(mixed)   # the DATE part sends the table to the general decoder
    fine = TableInfo("d", "t", (day, text), ("d", "s"), "InnoDB", 0, "")
    check_primary_key(fine)
    assert TableShape.of(fine).key_kinds is None


def test_phase_text_round_trips_and_an_unknown_text_is_refused() -> None:
    assert [Phase.from_text(p.text) for p in Phase] == list(Phase)
    assert Phase.CATCHUP.text == "catchup"
    for text in ("warp", "COPY", "Copy", ""):
        with pytest.raises(ValueError, match="unknown phase"):
            Phase.from_text(text)

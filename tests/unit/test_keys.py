"""The run's key (keys.py): which NOT NULL unique key both tables share, and the refusal."""

from __future__ import annotations

from typing import cast

import pytest

from onlineddl import keys
from onlineddl.db import Session
from onlineddl.errors import UnsupportedTable
from onlineddl.preflight import check_primary_key
from onlineddl.table import Column, ColumnMapping, TableInfo, UniqueKey

NO_SESSION = cast(Session, None)   # asked only for TIMESTAMP key columns


def col(name: str, ordinal: int, data_type: str = "int") -> Column:
    return Column(name, ordinal, data_type, data_type, None, None, False, False)


def table(name: str, columns: list[str], pk: tuple[str, ...], *uniques: UniqueKey,
          types: dict[str, str] | None = None) -> TableInfo:
    cols = tuple(col(c, i, (types or {}).get(c, "int")) for i, c in enumerate(columns))
    found = ((UniqueKey("PRIMARY", pk),) if pk else ()) + tuple(
        sorted(uniques, key=lambda k: k.name))
    return TableInfo("db", name, cols, pk, "InnoDB", 0, "", unique_keys=found)


def mapping(old: list[str], renames: dict[str, str] | None = None) -> ColumnMapping:
    new = [(renames or {}).get(c, c) for c in old]
    return ColumnMapping(tuple(old), tuple(new), (), (), ())


COLS = ["id", "tenant_id", "email"]
UQ_ID = UniqueKey("uq_id", ("id",))
UQ_EMAIL = UniqueKey("uq_email", ("email",))


def chosen(source: TableInfo, shadow: TableInfo, m: ColumnMapping) -> tuple[str, str]:
    walked, new = keys.choose(NO_SESSION, source, shadow, m)
    return walked.run_key.describe(), new.run_key.describe()


def test_the_primary_key_when_unchanged() -> None:
    source = table("t", COLS, ("id",), UQ_EMAIL)
    shadow = table("_t_new", COLS, ("id",), UQ_EMAIL)
    assert chosen(source, shadow, mapping(COLS)) == ("PRIMARY KEY (id)", "PRIMARY KEY (id)")


def test_the_old_primary_key_kept_as_unique_is_preferred() -> None:
    source = table("t", COLS, ("id",), UQ_EMAIL)
    shadow = table("_t_new", COLS, ("tenant_id", "id"), UQ_ID, UQ_EMAIL)
    assert chosen(source, shadow, mapping(COLS)) == ("PRIMARY KEY (id)", "UNIQUE KEY uq_id (id)")


def test_else_the_first_shared_unique_key_by_name() -> None:
    a_key = UniqueKey("a_key", ("tenant_id", "email"))
    source = table("t", COLS, ("id",), UQ_EMAIL, a_key)
    shadow = table("_t_new", COLS, ("tenant_id", "id"), UQ_EMAIL, a_key)
    assert chosen(source, shadow, mapping(COLS)) == (
        "UNIQUE KEY a_key (tenant_id, email)", "UNIQUE KEY a_key (tenant_id, email)")


def test_the_new_tables_primary_key_is_preferred_among_its_keys() -> None:
    source = table("t", COLS, (), UQ_ID)
    shadow = table("_t_new", COLS, ("id",), UQ_ID)
    assert chosen(source, shadow, mapping(COLS)) == ("UNIQUE KEY uq_id (id)", "PRIMARY KEY (id)")


def test_renamed_columns_are_the_same_key() -> None:
    source = table("t", COLS, ("id",))
    new_cols = ["uid", "tenant_id", "email"]
    shadow = table("_t_new", new_cols, ("tenant_id", "uid"), UniqueKey("uq_uid", ("UID",)))
    assert chosen(source, shadow, mapping(COLS, {"id": "uid"})) == (
        "PRIMARY KEY (id)", "UNIQUE KEY uq_uid (UID)")


def test_the_same_columns_in_another_order_are_not_shared() -> None:
    source = table("t", COLS, ("tenant_id", "id"))
    shadow = table("_t_new", COLS, ("id", "tenant_id"))
    assert keys.shared_keys(source, shadow, mapping(COLS)) == []


def test_a_key_over_a_dropped_column_is_not_shared() -> None:
    source = table("t", COLS, ("id",), UQ_EMAIL)
    shadow = table("_t_new", ["id", "tenant_id"], ("id",))
    m = ColumnMapping(("id", "tenant_id"), ("id", "tenant_id"), ("email",), (), ())
    assert [old.name for old, _ in keys.shared_keys(source, shadow, m)] == ["PRIMARY"]


def test_a_shared_key_the_engine_cannot_walk_is_passed_over() -> None:
    types = {"email": "float"}
    source = table("t", COLS, ("email",), UQ_ID, types=types)
    shadow = table("_t_new", COLS, ("email",), UQ_ID, types=types)
    assert chosen(source, shadow, mapping(COLS)) == ("UNIQUE KEY uq_id (id)",
                                                     "UNIQUE KEY uq_id (id)")
    only = table("t", COLS, ("email",), types=types)
    with pytest.raises(UnsupportedTable, match="primary key column email has type float"):
        keys.choose(NO_SESSION, only, table("_t_new", COLS, ("email",), types=types),
                    mapping(COLS))


def test_nothing_shared_names_the_key_to_keep() -> None:
    source = table("t", COLS, ("id",))
    shadow = table("_t_new", COLS, ("tenant_id", "id"))
    err = keys.no_shared_key(source, shadow, mapping(COLS))
    assert "changes the primary key (id -> tenant_id, id)" in err.message
    assert "ADD UNIQUE KEY (id)" in err.hint and err.exit_code == 5
    with pytest.raises(type(err)):
        keys.choose(NO_SESSION, source, shadow, mapping(COLS))


def test_nothing_shared_after_a_rename_names_the_new_column() -> None:
    source = table("t", COLS, ("id",))
    shadow = table("_t_new", ["uid", "tenant_id", "email"], ())
    err = keys.no_shared_key(source, shadow, mapping(COLS, {"id": "uid"}))
    assert "(id -> none)" in err.message and "ADD UNIQUE KEY (uid)" in err.hint


def test_nothing_shared_when_a_key_column_is_dropped() -> None:
    source = table("t", COLS, ("id",))
    shadow = table("_t_new", ["tenant_id", "email"], ())
    m = ColumnMapping(("tenant_id", "email"), ("tenant_id", "email"), ("id",), (), ())
    assert "drops (or computes) id of the old PRIMARY KEY (id)" in \
        keys.no_shared_key(source, shadow, m).hint


def test_describe() -> None:
    source = table("t", COLS, ("id",))
    assert keys.describe(source, source) == "PRIMARY KEY (id), in the old and the new table"
    shadow = table("_t_new", COLS, ("tenant_id", "id"), UQ_ID).with_key(UQ_ID)
    assert keys.describe(source, shadow) == \
        "PRIMARY KEY (id) of the old table, UNIQUE KEY uq_id (id) of the new table"


def test_a_table_walks_its_primary_key_unless_told_otherwise() -> None:
    info = table("t", COLS, ("id",), UQ_EMAIL)
    assert (info.key, info.key_name) == (("id",), "PRIMARY")
    walked = info.with_key(UQ_EMAIL)
    assert (walked.key, walked.key_name, walked.pk) == (("email",), "uq_email", ("id",))
    assert walked.key_ordinals == (2,)


def test_preflight_accepts_a_table_with_any_walkable_key() -> None:
    types = {"id": "float"}
    check_primary_key(table("t", COLS, ("id",), UQ_EMAIL, types=types))
    with pytest.raises(UnsupportedTable, match="primary key column id has type float"):
        check_primary_key(table("t", COLS, ("id",), types=types))
    with pytest.raises(UnsupportedTable, match="no PRIMARY KEY and no UNIQUE key"):
        check_primary_key(table("t", COLS, ()))


class DstZone:
    """A server whose global time_zone has daylight saving time (zones.key_shift's
    probes come back with two offsets)."""

    def query_one(self, text: str, params: object) -> tuple[object, ...]:
        return ("Europe/Berlin", 3600, 3600, 7200, 3600, 7200, 7200)


def test_a_key_made_timestamp_in_a_zone_with_daylight_saving_time_is_not_walked() -> None:
    """DATETIME -> TIMESTAMP keeps key values in a fixed-offset zone only: with daylight
    saving time the skipped hour's values change (a row deleted then stays), so another
    shared key is walked, or the run is refused."""
    session = cast(Session, DstZone())
    source = table("t", COLS, ("email",), UQ_ID, types={"email": "datetime"})
    shadow = table("_t_new", COLS, ("email",), UQ_ID, types={"email": "timestamp"})
    walked, new = keys.choose(session, source, shadow, mapping(COLS))
    assert (walked.run_key.describe(), new.run_key.describe()) == (
        "UNIQUE KEY uq_id (id)", "UNIQUE KEY uq_id (id)")
    only = table("t", COLS, ("email",), types={"email": "datetime"})
    with pytest.raises(UnsupportedTable, match="daylight saving"):
        keys.choose(session, only, table("_t_new", COLS, ("email",),
                                         types={"email": "timestamp"}), mapping(COLS))

"""The pure parts of `revert`: its checkpoint text, the inverse column mapping, the
upsert that keeps columns the source does not feed, the key as the old table compares
it."""

from __future__ import annotations

import pytest

from onlineddl import sql
from onlineddl.errors import RevertRefused
from onlineddl.flavor import BinlogPosition
from onlineddl.oldtables import SwapRecord
from onlineddl.revertplan import inverse_mapping, revert_target, revert_text
from onlineddl.table import Column, TableInfo, UniqueKey
from onlineddl.uniques import key_as_compared


def col(name: str, column_type: str = "int(11)", *, generated: bool = False) -> Column:
    return Column(name, 0, column_type.split("(")[0], column_type, None, None, False,
                  generated)


def table(name: str, *columns: Column) -> TableInfo:
    return TableInfo("d", name, columns, ("id",), "InnoDB", 0, "")


def swap(*pairs: tuple[str, str]) -> SwapRecord:
    return SwapRecord("migrate", BinlogPosition("b.000001", 4), pairs, "_t_new", "", "")


def test_revert_text_names_the_old_table_and_back() -> None:
    assert revert_target(revert_text("_t_old_20260101_000000")) == "_t_old_20260101_000000"
    with pytest.raises(RevertRefused):
        revert_target("ADD COLUMN x INT")


def test_inverse_mapping_maps_back_renames_and_keeps_dropped_columns_unfed() -> None:
    # The migration: DROP COLUMN gone, CHANGE a b, ADD COLUMN new, MODIFY v BIGINT.
    old = table("_t_old_x", col("id"), col("a"), col("gone"), col("v"),
                col("g", generated=True))
    now = table("t", col("id"), col("b"), col("v", "bigint(20)"), col("new"))
    mapping = inverse_mapping(now, old, swap(("id", "id"), ("a", "b"), ("v", "v")))
    assert mapping.source == ("id", "b", "v")
    assert mapping.target == ("id", "a", "v")
    assert mapping.added == ("gone",)            # unfed: keeps its values, never g
    assert mapping.dropped == ("new",)           # left behind
    assert mapping.renamed == (("b", "a"),)
    assert mapping.target_cols() == ("id", "a", "v")   # no fills: defaults for new rows


def test_inverse_mapping_refuses_a_record_the_tables_no_longer_match() -> None:
    old = table("_t_old_x", col("id"), col("a"))
    now = table("t", col("id"))
    with pytest.raises(RevertRefused, match="a <- b"):
        inverse_mapping(now, old, swap(("id", "id"), ("a", "b")))


def test_upsert_keys_updates_only_the_fed_columns() -> None:
    text, params = sql.upsert_keys("d", "t", "_t_old", ["`t`.`v`", "`t`.`id`"], ["v", "id"],
                                   ["id"], [(1,), (2,)])
    assert text == ("INSERT INTO `d`.`_t_old` (`v`, `id`) SELECT `t`.`v`, `t`.`id` FROM "
                    "`d`.`t` WHERE `id` IN (%s, %s) LOCK IN SHARE MODE ON DUPLICATE KEY "
                    "UPDATE `d`.`_t_old`.`v` = VALUES(`v`), `d`.`_t_old`.`id` = VALUES(`id`)")
    assert params == [1, 2]


def text(name: str, collation: str | None, column_type: str = "varchar(16)") -> Column:
    charset = collation.split("_")[0] if collation else None
    return Column(name, 0, column_type.split("(")[0], column_type, charset, collation,
                  False, False)


def test_the_key_as_the_old_table_compares_it_only_when_it_compares_otherwise() -> None:
    uk = UniqueKey("uk", ("id", "k"))
    now = table("t", col("id"), text("k", "utf8mb4_bin")).with_key(uk)
    old = table("_t_old_x", col("id"), text("k", "utf8mb4_general_ci")).with_key(uk)
    assert key_as_compared(now, old) == (
        "`id`", "CONVERT(`k` USING utf8mb4) COLLATE utf8mb4_general_ci")
    same = table("_t_old_x", col("id"), text("k", "utf8mb4_bin")).with_key(uk)
    assert key_as_compared(now, same) == ()
    # VARBINARY back to a case-insensitive VARCHAR: compared in its collation too.
    raw = table("t", col("id"), text("k", None, "varbinary(64)")).with_key(uk)
    assert key_as_compared(raw, old)[1] == (
        "CONVERT(`k` USING utf8mb4) COLLATE utf8mb4_general_ci")

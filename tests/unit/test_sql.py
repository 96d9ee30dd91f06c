"""SQL text builders: quoting and key predicates (pure, no server)."""

from __future__ import annotations

import pytest

from onlineddl import sql
from onlineddl.db import bind, rows_matched


@pytest.mark.parametrize("name, quoted", [
    ("t", "`t`"),
    ("my table", "`my table`"),
    ("a`b", "`a``b`"),
    ("``", "``````"),
    ("select", "`select`"),
    ("db.t", "`db.t`"),
    ("t\u00e9\U0001F600", "`t\u00e9\U0001F600`"),
    ("x`; DROP TABLE t; --", "`x``; DROP TABLE t; --`"),
])
def test_ident_quotes_everything(name: str, quoted: str) -> None:
    assert sql.ident(name) == quoted


def test_ident_refuses_nul() -> None:
    with pytest.raises(ValueError):
        sql.ident("a\x00b")


def test_key_range_single_column() -> None:
    text, params = sql.key_range(["id"], (5,), (10,))
    assert text == "((`id` > %s)) AND ((`id` <= %s))"
    assert params == [5, 10]


def test_key_range_composite_is_or_expanded() -> None:
    text, params = sql.key_range(["a", "b"], (1, "x"), None)
    assert text == "((`a` > %s) OR (`a` = %s AND `b` > %s))"
    assert params == [1, 1, "x"]
    text, params = sql.key_range(["a", "b"], None, (2, "y"))
    assert text == "((`a` < %s) OR (`a` = %s AND `b` <= %s))"
    assert params == [2, 2, "y"]


def test_key_range_unbounded() -> None:
    assert sql.key_range(["id"], None, None) == ("TRUE", [])


def test_key_in() -> None:
    assert sql.key_in(["id"], [(1,), (2,)]) == ("`id` IN (%s, %s)", [1, 2])
    text, params = sql.key_in(["a", "b"], [(1, "x"), (2, "y")])
    assert text == "(`a`, `b`) IN ((%s, %s), (%s, %s))"
    assert params == [1, "x", 2, "y"]


def test_copy_range_is_not_insert_ignore() -> None:
    # IGNORE would turn data errors (truncation) into silent warnings.
    text, _ = sql.copy_range("d", "t", "_t_new", ["`a`"], ["a"], ["id"], None, (9,))
    assert "IGNORE" not in text
    assert "ON DUPLICATE KEY UPDATE `d`.`_t_new`.`id` = `d`.`_t_new`.`id`" in text


def test_copy_range_names_the_targets_key_when_renamed() -> None:
    text, _ = sql.copy_range("d", "t", "_t_new", ["`id`"], ["id2"], ["id"], None, (9,),
                             target_pk=["id2"])
    assert "ON DUPLICATE KEY UPDATE `d`.`_t_new`.`id2` = `d`.`_t_new`.`id2`" in text
    assert "WHERE ((`id` <= %s))" in text


def test_replace_keys_is_a_locking_read() -> None:
    text, params = sql.replace_keys("d", "t", "_t_new", ["`a`"], ["a"], ["id"], [(1,)])
    assert text.endswith("LOCK IN SHARE MODE")
    assert params == [1]


def test_insert_keys_is_a_plain_insert_and_a_locking_read() -> None:
    # Never REPLACE: a row holding the unique value elsewhere must fail the statement.
    text, params = sql.insert_keys("d", "t", "_t_new", ["`a`"], ["a"], ["id"], [(1,), (5,)])
    assert text == ("INSERT INTO `d`.`_t_new` (`a`) SELECT `a` FROM `d`.`t` "
                    "WHERE `id` IN (%s, %s) LOCK IN SHARE MODE")
    assert params == [1, 5]


def test_key_values_groups_as_the_key_compares_and_skips_nulls() -> None:
    part = "CONVERT(`e` USING utf8mb4) COLLATE utf8mb4_general_ci"
    text, params = sql.key_values("d", "t", [part, "`n`"], ["id"], [(7,)])
    assert text == (f"SELECT {part}, `n`, COUNT(*) FROM `d`.`t` WHERE `id` IN (%s) AND "
                    f"{part} IS NOT NULL AND `n` IS NOT NULL GROUP BY {part}, `n` "
                    "LOCK IN SHARE MODE")
    assert params == [7]


def test_rows_holding_values_among_keys() -> None:
    text, params = sql.rows_holding("d", "t", ["LEFT(`e`, 4)", "`n`"], ["id"],
                                    [("ab", 1), ("cd", 2)], among=[(3,)])
    assert text == ("SELECT `id`, LEFT(`e`, 4), `n` FROM `d`.`t` WHERE (LEFT(`e`, 4), `n`) "
                    "IN ((%s, %s), (%s, %s)) AND `id` IN (%s) LOCK IN SHARE MODE")
    assert params == ["ab", 1, "cd", 2, 3]


def test_update_keys_joins_on_the_key_and_leaves_it_alone() -> None:
    # A renamed key column (old_id -> id); only the other columns are set.
    text, params = sql.update_keys("d", "t", "_t_new", ["`old_id`", "`a`"], ["id", "b"],
                                   ["old_id"], ["id"], [(1,), (2,)])
    assert text == ("UPDATE `d`.`_t_new` JOIN `d`.`t` ON `d`.`_t_new`.`id` = `d`.`t`.`old_id` "
                    "SET `d`.`_t_new`.`b` = `d`.`t`.`a` WHERE `d`.`t`.`old_id` IN (%s, %s)")
    assert params == [1, 2]


def test_update_keys_takes_converted_columns_qualified() -> None:
    text, _ = sql.update_keys("d", "t", "_t_new", ["`d`.`t`.`id`", "CONCAT(`d`.`t`.`f`)", "0"],
                              ["id", "f", "z"], ["id"], ["id"], [(1,)])
    assert "SET `d`.`_t_new`.`f` = CONCAT(`d`.`t`.`f`), `d`.`_t_new`.`z` = 0 WHERE" in text


def test_replace_missing_skips_rows_the_target_has_and_locks() -> None:
    text, params = sql.replace_missing("d", "t", "_t_new", ["`id`", "`a`"], ["id", "a"],
                                       ["id"], ["id"], [(3,)])
    assert "NOT EXISTS (SELECT 1 FROM `d`.`_t_new` AS x WHERE x.`id` = `d`.`t`.`id`)" in text
    assert text.startswith("REPLACE INTO `d`.`_t_new`")
    assert text.endswith("LOCK IN SHARE MODE")
    assert params == [3]


def test_rows_matched_reads_the_update_info() -> None:
    assert rows_matched("(Rows matched: 12  Changed: 3  Warnings: 0") == 12
    assert rows_matched("") == 0


def test_delete_above() -> None:
    assert sql.delete_above("d", "n", ["id"], None) == ("DELETE FROM `d`.`n`", [])
    text, params = sql.delete_above("d", "n", ["id"], (7,))
    assert text == "DELETE FROM `d`.`n` WHERE ((`id` > %s))"
    assert params == [7]


def test_alter_table_is_the_only_splice() -> None:
    assert sql.alter_table("d", "_t_new", "ADD COLUMN c INT") == \
        "ALTER TABLE `d`.`_t_new` ADD COLUMN c INT"


def test_row_hash_distinguishes_null_from_empty() -> None:
    assert "ISNULL(`a`)" in sql.row_hash(["`a`"])


def test_integer_keys_runs_become_ranges_and_nothing_else_is_included() -> None:
    keys = [(k,) for k in [*range(100, 140), 7, 3, 500, *range(141, 150), 7]]
    text, params = sql.key_in(["id"], keys)
    marks = ", ".join(["%s"] * 12)
    assert text == f"(`id` IN ({marks}) OR `id` BETWEEN %s AND %s)"
    assert params == [3, 7, *range(141, 150), 500, 100, 139]
    covered = set(params[:12]) | set(range(params[12], params[13] + 1))
    assert covered == {k for (k,) in keys}


def test_text_keys_and_short_runs_stay_a_list() -> None:
    assert sql.key_in(["id"], [(1,), (2,), (3,)]) == ("`id` IN (%s, %s, %s)", [1, 2, 3])
    assert sql.key_in(["k"], [("b",), ("a",)]) == ("`k` IN (%s, %s)", ["b", "a"])
    assert sql.key_in(["id"], [(k,) for k in range(16)]) == ("`id` BETWEEN %s AND %s", [0, 15])


def test_drop_table_is_qualified_and_if_exists_unless_it_must_exist() -> None:
    assert sql.drop_table("d", "_t`new") == "DROP TABLE IF EXISTS `d`.`_t``new`"
    assert sql.drop_table("d", "t", if_exists=False) == "DROP TABLE `d`.`t`"


def test_bind_replaces_only_placeholders_outside_quotes() -> None:
    def literal(value: object) -> str:
        return repr(value)

    text = "SELECT `c%s`, 'a%sb', \"q%s\", `x``%s` FROM `t%d` WHERE a = %s AND b IN %s"
    assert bind(text, (1, (2, 3)), literal) == \
        "SELECT `c%s`, 'a%sb', \"q%s\", `x``%s` FROM `t%d` WHERE a = 1 AND b IN (2, 3)"
    assert bind("SELECT '%' , 'it''s %s', 'x\\'%s' , %s", ("v",), literal) == \
        "SELECT '%' , 'it''s %s', 'x\\'%s' , 'v'"
    assert bind("SELECT 100%", None, literal) == "SELECT 100%"


def test_bind_counts_parameters() -> None:
    with pytest.raises(ValueError, match="more %s placeholders"):
        bind("SELECT %s, %s", (1,), str)
    with pytest.raises(ValueError, match="more parameters"):
        bind("SELECT %s", (1, 2), str)

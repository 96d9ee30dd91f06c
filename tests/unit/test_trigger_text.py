"""triggers.py's text: the statements it sends, and what it reads in trigger bodies."""

from __future__ import annotations

from onlineddl import triggers
from onlineddl.triggers import Trigger

T = Trigger(name="t_bi", timing="BEFORE", event="INSERT", order=2,
            body="SET NEW.v = NEW.`odd``name` + OLD . w", definer="bob@%",
            sql_mode="ANSI_QUOTES", character_set_client="utf8mb4",
            collation_connection="utf8mb4_general_ci")


def test_create_sql_names_the_definer_and_the_new_table() -> None:
    assert T.create_sql("app", "_t_new") == (
        "CREATE DEFINER='bob'@'%' TRIGGER `app`.`t_bi` BEFORE INSERT ON `app`.`_t_new` "
        "FOR EACH ROW SET NEW.v = NEW.`odd``name` + OLD . w")


def test_definer_quotes_are_doubled_never_backslashed() -> None:
    assert triggers.definer_clause("o'neil@10.0.0.%") == "'o''neil'@'10.0.0.%'"
    assert triggers.definer_clause("a@b@host") == "'a@b'@'host'"
    assert triggers.definer_clause("some_role") == "`some_role`"


def test_row_columns() -> None:
    assert triggers.row_columns(T.body) == {"v", "odd`name", "w"}
    assert triggers.row_columns("BEGIN SET @x = renew.v; END") == set()


def test_guard_is_recognised_and_fits() -> None:
    long_table = "x" * 64
    for event in triggers.EVENTS:
        assert len(triggers.guard_name(long_table, event)) <= 64
    assert len(triggers.guard_message(long_table)) <= 128
    text = triggers.guard_sql("app", "t", "UPDATE", "t_bu")
    assert "PRECEDES `t_bu`" in text and "SIGNAL SQLSTATE '45000'" in text
    guard = Trigger("_t_guard_upd", "BEFORE", "UPDATE", 1,
                    "SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = '"
                    + triggers.guard_message("t") + "'", "u@h", "", "utf8mb4", "x")
    assert triggers.is_guard(guard) and not triggers.is_guard(T)


def test_order_numbers_aside_the_lists_compare() -> None:
    shifted = Trigger(**{**T.__dict__, "order": 3})
    assert triggers.same([T], [shifted])
    assert not triggers.same([T, shifted], [shifted])
    assert triggers.decode(triggers.encode([T])) == (T,)
    assert triggers.decode("") == ()

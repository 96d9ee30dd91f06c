"""The text work of onlineddl/fkparents.py (the server-facing parts are integration
tests: tests/integration/test_foreign_key_parents.py)."""

from __future__ import annotations

import pytest

from onlineddl import fkparents
from onlineddl.errors import InvalidAlter
from onlineddl.foreignkeys import ForeignKey
from onlineddl.table import ColumnMapping


def fk(references: str, ref_columns: tuple[str, ...] = ("id",)) -> ForeignKey:
    return ForeignKey("app", "kid", "kid_ibfk_1", ("p`id",), "app", "t", ref_columns,
                      "RESTRICT", "CASCADE", references)


def test_the_twin_references_the_new_table_with_the_same_rules() -> None:
    text = "REFERENCES `t` (`id`) ON DELETE CASCADE ON UPDATE NO ACTION"
    assert fkparents._add_clause(fk(text), "_odlp_kid_ibfk_1", "app", "_t_new") == (
        "ADD CONSTRAINT `_odlp_kid_ibfk_1` FOREIGN KEY (`p``id`) REFERENCES "
        "`app`.`_t_new` (`id`) ON DELETE CASCADE ON UPDATE NO ACTION")


def test_a_qualified_parent_and_quoted_names() -> None:
    text = "REFERENCES `my``db`.`t (x)` (`a``b`, `c)`) ON DELETE SET NULL"
    clause = fkparents._add_clause(fk(text, ("a`b", "c)")), "x", "my`db", "t (x)")
    assert clause.endswith("REFERENCES `my``db`.`t (x)` (`a``b`, `c)`) ON DELETE SET NULL")


def test_unreadable_text_is_an_error() -> None:
    with pytest.raises(ValueError):
        fkparents._add_clause(fk("ON DELETE CASCADE"), "x", "app", "t")


def test_renamed_and_dropped_referenced_columns() -> None:
    mapping = ColumnMapping(source=("id", "v"), target=("ident", "v"), dropped=(),
                            added=(), renamed=(("id", "ident"),))
    assert fkparents.new_columns(fk("REFERENCES `t` (`id`)"), mapping) == ("ident",)
    assert fkparents.new_columns(fk("REFERENCES `t` (`ID`)", ("ID",)), mapping) == ("ident",)
    gone = ColumnMapping(source=("v",), target=("v",), dropped=("id",), added=(),
                         renamed=())
    with pytest.raises(InvalidAlter, match="drops column"):
        fkparents.new_columns(fk("REFERENCES `t` (`id`)"), gone)


def test_lock_statement_and_names() -> None:
    kids = [fk("REFERENCES `t` (`id`)"),
            ForeignKey("b", "z", "c", ("x",), "app", "t", ("id",), "RESTRICT", "RESTRICT")]
    assert fkparents.lock_sql(kids) == "LOCK TABLES `app`.`kid` WRITE, `b`.`z` WRITE"
    assert fkparents.lock_sql([]) == ""
    assert fkparents.twin("c") == "_odlp_c"
    assert fkparents.marker_name("t") == "_t_fkgd"
    assert fkparents.guard_name("t", "DELETE") == "_t_fkparent_del"
    assert len(fkparents.guard_name("x" * 64, "UPDATE")) <= 64


def test_the_guard_is_inert_without_the_marker_and_says_what_to_do() -> None:
    text = fkparents.guard_sql("app", "t", "DELETE")
    assert "IF EXISTS (SELECT 1 FROM `app`.`_t_fkgd`) THEN SIGNAL SQLSTATE '45000'" in text
    assert fkparents.GUARD_MARK in text and "--resume" in text
    assert "BEFORE DELETE ON `app`.`t` FOR EACH ROW" in text

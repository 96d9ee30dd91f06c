"""The text work of onlineddl/foreignkeys.py (the server-facing parts are integration
tests: tests/integration/test_foreign_keys.py)."""

from __future__ import annotations

from onlineddl import foreignkeys
from onlineddl.foreignkeys import ForeignKey

CREATE = """CREATE TABLE `t` (
  `id` int(11) NOT NULL AUTO_INCREMENT,
  `pid` int(11) DEFAULT NULL,
  `o``id` int(11) DEFAULT NULL,
  PRIMARY KEY (`id`),
  KEY `pid` (`pid`),
  KEY `t_owner` (`o``id`),
  CONSTRAINT `t_ibfk_1` FOREIGN KEY (`pid`) REFERENCES `parent` (`id`),
  CONSTRAINT `t_owner` FOREIGN KEY (`o``id`) REFERENCES `other`.`parent` (`id`) ON UPDATE NO ACTION,
  CONSTRAINT `positive` CHECK (`pid` > 0)
) ENGINE=InnoDB AUTO_INCREMENT=7 DEFAULT CHARSET=latin1"""


def test_temporary_names() -> None:
    # The server's own names follow the RENAME; others get a prefix that comes off.
    assert foreignkeys.temp_name("t_ibfk_3", "t", "_t_new") == "_t_new_ibfk_3"
    assert foreignkeys.temp_name("t_ibfk_x", "t", "_t_new") == "_odl_t_ibfk_x"
    assert foreignkeys.temp_name("tt_ibfk_1", "t", "_t_new") == "_odl_tt_ibfk_1"
    assert foreignkeys.temp_name("owner", "t", "_t_new") == "_odl_owner"
    assert foreignkeys.final_name("_odl_owner") == "owner"
    assert foreignkeys.final_name("t_ibfk_3") == "t_ibfk_3"


def test_without_foreign_keys_keeps_everything_else() -> None:
    assert foreignkeys.without_foreign_keys(CREATE) == """CREATE TABLE `t` (
  `id` int(11) NOT NULL AUTO_INCREMENT,
  `pid` int(11) DEFAULT NULL,
  `o``id` int(11) DEFAULT NULL,
  PRIMARY KEY (`id`),
  KEY `pid` (`pid`),
  KEY `t_owner` (`o``id`),
  CONSTRAINT `positive` CHECK (`pid` > 0)
) ENGINE=InnoDB AUTO_INCREMENT=7 DEFAULT CHARSET=latin1"""


def test_without_foreign_keys_fixes_the_last_comma() -> None:
    text = foreignkeys.without_foreign_keys(CREATE.replace(",\n  CONSTRAINT `positive` "
                                                           "CHECK (`pid` > 0)", ""))
    assert "  KEY `t_owner` (`o``id`)\n) ENGINE" in text
    assert "FOREIGN KEY" not in text


def test_references_text_is_the_servers_own() -> None:
    assert foreignkeys.references_text(CREATE) == {
        "t_ibfk_1": "REFERENCES `parent` (`id`)",
        "t_owner": "REFERENCES `other`.`parent` (`id`) ON UPDATE NO ACTION",
    }


def test_clause_uses_the_given_name_and_columns() -> None:
    fk = ForeignKey("db", "t", "t_owner", ("o`id",), "other", "parent", ("id",), "NO ACTION",
                    "RESTRICT", "REFERENCES `other`.`parent` (`id`) ON UPDATE NO ACTION")
    assert fk.clause("_odl_t_owner", ("owner",)) == (
        "ADD CONSTRAINT `_odl_t_owner` FOREIGN KEY (`owner`) "
        "REFERENCES `other`.`parent` (`id`) ON UPDATE NO ACTION")
    assert fk.clause("x").startswith("ADD CONSTRAINT `x` FOREIGN KEY (`o``id`) ")


def test_shapes_compare_across_the_rename() -> None:
    """The swap renames `t_ibfk_1` to `_t_old_<stamp>_ibfk_1`, which SHOW CREATE TABLE
    then lists in another place: the same shape."""
    before = foreignkeys.same_across_rename(CREATE, "t")
    old = CREATE.replace("`t_ibfk_1`", "`_t_old_20261129_123456_ibfk_1`")
    assert foreignkeys.same_across_rename(old, "_t_old_20261129_123456") == before
    changed = old.replace("`pid` int(11)", "`pid` bigint(20)")
    assert foreignkeys.same_across_rename(changed, "_t_old_20261129_123456") != before

"""parse_alter: what each clause yields, and every refusal (pure text, no database)."""

from __future__ import annotations

from typing import Any

import pytest

from onlineddl.errors import InvalidAlter
from onlineddl.statement import ParsedAlter, parse_alter


def parse(text: str) -> ParsedAlter:
    return parse_alter(text, database="db", table="t")


# (text, expected fields); fields left out must be empty / False.
SUPPORTED: list[tuple[str, dict[str, Any]]] = [
    ("ADD COLUMN c INT NULL", {"added": {"c"}, "kinds": ("add_column",)}),
    ("ADD c INT AFTER b", {"added": {"c"}, "kinds": ("add_column",)}),
    ("ADD COLUMN (c1 INT, c2 VARCHAR(10) DEFAULT 'a,b')",
     {"added": {"c1", "c2"}, "kinds": ("add_column",)}),
    ("ADD (c1 INT, c2 INT)", {"added": {"c1", "c2"}, "kinds": ("add_column",)}),
    ("ADD COLUMN c INT NOT NULL UNIQUE",
     {"added": {"c"}, "unique_keys_added": (("c",),), "kinds": ("add_column",)}),
    ("ADD COLUMN id2 BIGINT AUTO_INCREMENT PRIMARY KEY",
     {"added": {"id2"}, "unique_keys_added": (("id2",),), "changes_primary_key": True,
      "kinds": ("add_column",)}),
    ("ADD c INT KEY",  # a bare KEY in a column definition means PRIMARY KEY
     {"added": {"c"}, "unique_keys_added": (("c",),), "changes_primary_key": True,
      "kinds": ("add_column",)}),
    ("ADD COLUMN c JSON DEFAULT (JSON_ARRAY()) COMMENT 'x'",
     {"added": {"c"}, "kinds": ("add_column",)}),
    ("DROP COLUMN c", {"dropped": {"c"}, "kinds": ("drop_column",)}),
    ("DROP c", {"dropped": {"c"}, "kinds": ("drop_column",)}),
    ("MODIFY COLUMN c BIGINT NOT NULL", {"modified": {"c"}, "kinds": ("modify_column",)}),
    ("MODIFY c VARCHAR(20) COLLATE utf8mb4_bin",
     {"modified": {"c"}, "changes_charset": True, "kinds": ("modify_column",)}),
    ("MODIFY c VARCHAR(20) CHARACTER SET latin1",
     {"modified": {"c"}, "changes_charset": True, "kinds": ("modify_column",)}),
    ("MODIFY c CHARACTER VARYING(20)", {"modified": {"c"}, "kinds": ("modify_column",)}),
    ("MODIFY c INT UNIQUE KEY",
     {"modified": {"c"}, "unique_keys_added": (("c",),), "kinds": ("modify_column",)}),
    ("CHANGE COLUMN a b INT", {"renames": {"a": "b"}, "modified": {"a"},
                                "kinds": ("change_column",)}),
    ("CHANGE a a BIGINT", {"modified": {"a"}, "kinds": ("change_column",)}),
    ("CHANGE a b TEXT CHARSET utf8mb4",
     {"renames": {"a": "b"}, "modified": {"a"}, "changes_charset": True,
      "kinds": ("change_column",)}),
    ("RENAME COLUMN a TO b", {"renames": {"a": "b"}, "kinds": ("rename_column",)}),
    ("ALTER COLUMN c SET DEFAULT 1", {"kinds": ("alter_column_default",)}),
    ("ALTER c DROP DEFAULT", {"kinds": ("alter_column_default",)}),
    ("ADD INDEX k (a, b)", {"kinds": ("add_index",)}),
    ("ADD KEY (a(10))", {"kinds": ("add_index",)}),
    ("ADD INDEX ((lower(a)))", {"kinds": ("add_index",)}),
    ("ADD FULLTEXT INDEX f (body)", {"kinds": ("add_index",)}),
    ("ADD SPATIAL KEY g (geo)", {"kinds": ("add_index",)}),
    ("ADD UNIQUE (a)", {"unique_keys_added": (("a",),), "kinds": ("add_unique",)}),
    ("ADD UNIQUE KEY k (a(10), b DESC) USING BTREE",
     {"unique_keys_added": (("a", "b"),), "kinds": ("add_unique",)}),
    ("ADD UNIQUE INDEX k USING HASH (a)",
     {"unique_keys_added": (("a",),), "kinds": ("add_unique",)}),
    ("ADD CONSTRAINT u UNIQUE (a, b)",
     {"unique_keys_added": (("a", "b"),), "kinds": ("add_unique",)}),
    ("ADD CONSTRAINT UNIQUE KEY k (a)",
     {"unique_keys_added": (("a",),), "kinds": ("add_unique",)}),
    ("DROP INDEX k", {"kinds": ("drop_index",)}),
    ("DROP KEY k", {"kinds": ("drop_index",)}),
    ("RENAME INDEX a TO b", {"kinds": ("rename_index",)}),
    ("RENAME KEY a TO b", {"kinds": ("rename_index",)}),
    ("ADD PRIMARY KEY (a, b)", {"unique_keys_added": (("a", "b"),),
                                "changes_primary_key": True, "kinds": ("add_primary_key",)}),
    ("ADD CONSTRAINT pk PRIMARY KEY (id)",
     {"unique_keys_added": (("id",),), "changes_primary_key": True,
      "kinds": ("add_primary_key",)}),
    ("DROP PRIMARY KEY", {"changes_primary_key": True, "kinds": ("drop_primary_key",)}),
    ("DROP INDEX `PRIMARY`", {"changes_primary_key": True, "kinds": ("drop_primary_key",)}),
    ("CONVERT TO CHARACTER SET utf8mb4 COLLATE utf8mb4_0900_ai_ci",
     {"changes_charset": True, "kinds": ("convert_charset",)}),
    ("CONVERT TO CHARSET utf8mb4", {"changes_charset": True, "kinds": ("convert_charset",)}),
    ("DEFAULT CHARSET=utf8mb4", {"changes_charset": True, "kinds": ("table_option",)}),
    ("DEFAULT CHARACTER SET = utf8mb4", {"changes_charset": True, "kinds": ("table_option",)}),
    ("COLLATE utf8mb4_bin", {"changes_charset": True, "kinds": ("table_option",)}),
    ("ENGINE=InnoDB", {"kinds": ("table_option",)}),
    ("ENGINE=InnoDB ROW_FORMAT=DYNAMIC DEFAULT CHARSET=utf8mb4",
     {"changes_charset": True, "kinds": ("table_option",)}),
    ("COMMENT='partition, lock; order by'", {"kinds": ("table_option",)}),
    ("AUTO_INCREMENT=1000", {"kinds": ("table_option",)}),
    ("FORCE", {"kinds": ("force",)}),
]

FIELDS = ("renames", "dropped", "added", "modified", "unique_keys_added",
          "changes_primary_key", "changes_charset", "kinds")
EMPTY: dict[str, Any] = {"renames": {}, "dropped": set(), "added": set(), "modified": set(),
                         "unique_keys_added": (), "changes_primary_key": False,
                         "changes_charset": False, "kinds": ()}


def assert_parsed(got: ParsedAlter, expected: dict[str, Any]) -> None:
    for name in FIELDS:
        assert getattr(got, name) == expected.get(name, EMPTY[name]), name


@pytest.mark.parametrize(("text", "expected"), SUPPORTED)
def test_each_supported_clause(text: str, expected: dict[str, Any]) -> None:
    got = parse(text)
    assert got.clauses == text
    assert_parsed(got, expected)


@pytest.mark.parametrize("prefix", [
    "ALTER TABLE t ", "alter table t ", "ALTER TABLE db.t ", "ALTER TABLE `t` ",
    "ALTER TABLE `db`.`t` ", "ALTER TABLE db . t ", "  ALTER\n  TABLE t\n  ",
])
def test_full_alter_table_is_stripped_to_its_clauses(prefix: str) -> None:
    got = parse(prefix + "ADD COLUMN c INT, DROP d ")
    assert got.clauses == "ADD COLUMN c INT, DROP d"
    assert_parsed(got, {"added": {"c"}, "dropped": {"d"}, "kinds": ("add_column", "drop_column")})


def test_many_clauses_in_order() -> None:
    got = parse("ADD COLUMN c INT NULL, DROP INDEX k, CHANGE a b INT, MODIFY d TEXT,"
               " ADD UNIQUE u (e), ENGINE=InnoDB, RENAME COLUMN f TO g, DROP h, FORCE")
    assert_parsed(got, {
        "added": {"c"}, "dropped": {"h"}, "modified": {"a", "d"},
        "renames": {"a": "b", "f": "g"}, "unique_keys_added": (("e",),),
        "kinds": ("add_column", "drop_index", "change_column", "modify_column", "add_unique",
                  "table_option", "rename_column", "drop_column", "force"),
    })


def test_swapping_two_columns_maps_each_old_name() -> None:
    assert parse("CHANGE a b INT, CHANGE b a INT").renames == {"a": "b", "b": "a"}


def test_clause_text_is_kept_as_written() -> None:
    text = "ADD COLUMN `c` VARCHAR(3) DEFAULT 'a;b' COMMENT \"x, y\""
    assert parse("ALTER TABLE t " + text).clauses == text


@pytest.mark.parametrize(("text", "name"), [
    ("ADD COLUMN `we``ird` INT", "we`ird"),
    ("ADD COLUMN `with space` INT", "with space"),
    ("ADD COLUMN `select` INT", "select"),
    ("ADD COLUMN `order` INT", "order"),
    ("ADD COLUMN naïve INT", "naïve"),
    ("ADD COLUMN `日付` DATE", "日付"),
    ("ADD COLUMN CamelCase INT", "CamelCase"),
    ("ADD COLUMN status INT", "status"),
    ("ADD COLUMN 1abc INT", "1abc"),
    ("ADD COLUMN a$b INT", "a$b"),
])
def test_names_come_back_unquoted_as_written(text: str, name: str) -> None:
    assert parse(text).added == {name}


def test_quoted_names_in_every_position() -> None:
    got = parse("CHANGE `a b` `c``d` INT, DROP `drop`, MODIFY `ünï` INT,"
               " RENAME COLUMN `from` TO `to`, ADD UNIQUE (`key`(5), `x y`)")
    assert_parsed(got, {
        "renames": {"a b": "c`d", "from": "to"}, "dropped": {"drop"},
        "modified": {"a b", "ünï"}, "unique_keys_added": (("key", "x y"),),
        "kinds": ("change_column", "drop_column", "modify_column", "rename_column",
                  "add_unique"),
    })


def test_reserved_words_in_backticks_are_names() -> None:
    got = parse("ADD `partition` INT, DROP `lock`, MODIFY `check` INT, ADD `foreign` INT")
    assert got.added == {"partition", "foreign"}
    assert got.dropped == {"lock"}


def test_a_table_named_like_a_keyword() -> None:
    got = parse_alter("ALTER TABLE `order` ADD c INT", database="db", table="order")
    assert got.clauses == "ADD c INT"


REFUSED: list[tuple[str, str]] = [
    ("", "empty"),
    ("   \n ", "empty"),
    ("ALTER TABLE t", "no clauses"),
    ("ADD c INT;", "remove the ;"),
    ("ADD c INT; DROP d", "remove the ;"),
    ("ALTER TABLE t ADD c INT; ALTER TABLE t DROP d", "remove the ;"),
    ("ADD c INT /*!50100 COMMENT 'x' */", "without version comments"),
    ("/*!40101 ADD c INT */", "without version comments"),
    ("ADD c INT -- note", "comments are not supported"),
    ("ADD c INT /* note */", "comments are not supported"),
    ("ALTER TABLE other ADD c INT", "names table 'other'"),
    ("ALTER TABLE otherdb.t ADD c INT", "names database 'otherdb'"),
    ("ALTER TABLE T ADD c INT", "names table 'T'"),
    ("ALTER IGNORE TABLE t ADD UNIQUE (a)", "ALTER IGNORE TABLE"),
    ("ALTER ONLINE TABLE t ADD c INT", "ALTER ONLINE TABLE"),
    ("ALTER TABLE IF EXISTS t ADD c INT", "IF [NOT] EXISTS"),
    ("RENAME TO u", "run RENAME TABLE separately"),
    ("RENAME AS u", "run RENAME TABLE separately"),
    ("RENAME u", "run RENAME TABLE separately"),
    ("ADD c INT, RENAME TO u", "renaming the table"),
    ("RENAME TABLE t TO u", "renaming the table"),
    ("ALGORITHM=INPLACE", "chosen by onlineddl"),
    ("ADD c INT, ALGORITHM = COPY", "chosen by onlineddl"),
    ("ADD c INT, LOCK=NONE", "chosen by onlineddl"),
    ("ADD c INT, LOCK NONE", "chosen by onlineddl"),
    ("ENGINE=InnoDB ALGORITHM=COPY", "chosen by onlineddl"),
    ("ADD FOREIGN KEY (a) REFERENCES p (id) ON DELETE CASCADE", "ON DELETE CASCADE"),
    ("ADD CONSTRAINT fk FOREIGN KEY (a) REFERENCES p (id) ON UPDATE SET NULL",
     "ON UPDATE SET"),
    ("ADD FOREIGN KEY (a) REFERENCES t (id)", "from the table to itself"),
    ("ADD FOREIGN KEY (a) REFERENCES `db`.`t` (id)", "from the table to itself"),
    ("ADD FOREIGN KEY (a)", "no REFERENCES"),
    ("ADD c INT REFERENCES p (id)", "REFERENCES in a column definition"),
    ("ADD PARTITION (PARTITION p3 VALUES LESS THAN (30))", "partition"),
    ("DROP PARTITION p1", "partition"),
    ("COALESCE PARTITION 2", "partition"),
    ("REORGANIZE PARTITION p1 INTO (PARTITION p2 VALUES LESS THAN (5))", "partition"),
    ("TRUNCATE PARTITION p1", "partition"),
    ("EXCHANGE PARTITION p1 WITH TABLE x", "partition"),
    ("ANALYZE PARTITION p1", "partition"),
    ("CHECK PARTITION p1", "partition"),
    ("PARTITION BY HASH(id) PARTITIONS 4", "partition"),
    ("ADD c INT PARTITION BY KEY(id)", "partition"),
    ("REMOVE PARTITIONING", "partition"),
    ("DISCARD TABLESPACE", "TABLESPACE"),
    ("IMPORT TABLESPACE", "TABLESPACE"),
    ("ORDER BY a", "ORDER BY"),
    ("DROP CHECK c1", "CHECK constraint"),
    ("DROP CONSTRAINT c1", "DROP CONSTRAINT"),
    ("ADD SYSTEM VERSIONING", "system versioning"),
    ("DROP SYSTEM VERSIONING", "system versioning"),
    ("ADD c INT WITHOUT SYSTEM VERSIONING", "system versioning"),
    ("ADD COLUMN IF NOT EXISTS c INT", "IF [NOT] EXISTS"),
    ("DROP COLUMN IF EXISTS c", "IF [NOT] EXISTS"),
    ("ADD INDEX IF NOT EXISTS k (a)", "IF [NOT] EXISTS"),
    ("DROP TABLE x", "another statement"),
    ("CREATE TABLE x (a INT)", "another statement"),
    ("SELECT 1", "another statement"),
    ("INSERT INTO t VALUES (1)", "another statement"),
    ("REPLACE INTO t VALUES (1)", "another statement"),
    ("TRUNCATE t", "another statement"),
    ("ALTER DATABASE db CHARACTER SET utf8mb4", "another statement"),
    ("ADD c INT, ALTER TABLE t DROP d", "another statement"),
    ("FOO BAR", "unknown or unsupported ALTER clause: 'FOO BAR'"),
    ("ADD c INT, WAIT 5", "unknown or unsupported ALTER clause: 'WAIT 5'"),
    ("FORCE x", "unknown or unsupported"),
    ("CONVERT c", "expected CONVERT TO"),
    ("RENAME COLUMN a b", "expected RENAME"),
    ("ALTER INDEX k INVISIBLE", "ALTER INDEX"),
    ("ALTER COLUMN c SET INVISIBLE", "only SET DEFAULT and DROP DEFAULT"),
    ("ADD UNIQUE ((lower(a)))", "on an expression"),
    ("ADD UNIQUE k", "no column list"),
    ("ADD (c INT, INDEX (c))", "index definitions inside ADD"),
    ("ADD c INT DEFAULT 'open", "check that every quote"),
    ("ADD `c INT", "check that every quote"),
    ("ADD c INT, ", "a comma too many"),
    ("ADD c INT,, DROP d", "a comma too many"),
    (", ADD c INT", "a comma too many"),
    ("ADD c DECIMAL(10, 2", "unbalanced parentheses"),
    ("ADD c INT)", "unbalanced parentheses"),
    ("DROP COLUMN", "a name is missing in 'DROP COLUMN'"),
    ('ADD "c" INT', "double quotes make a string"),
]


@pytest.mark.parametrize(("text", "fragment"), REFUSED)
def test_refused(text: str, fragment: str) -> None:
    with pytest.raises(InvalidAlter) as caught:
        parse(text)
    assert fragment in str(caught.value)
    assert caught.value.hint, "every refusal says what to do"


def test_refusal_quotes_the_offending_clause() -> None:
    with pytest.raises(InvalidAlter, match="'DROP CHECK ck'"):
        parse("ADD c INT, DROP CHECK ck, DROP d")


@pytest.mark.parametrize("text", ["ADD CHECK (a > 0)", "ADD CONSTRAINT c1 CHECK (a > 0)",
                                  "ADD CONSTRAINT CHECK (a > 0)"])
def test_check_constraints_are_added(text: str) -> None:
    got = parse(text)
    assert got.kinds == ("add_check",)
    assert not got.added and not got.unique_keys_added


def test_column_level_check() -> None:
    got = parse("ADD COLUMN n INT NULL CHECK (n > 0), MODIFY m INT CHECK (m < 9)")
    assert got.added == {"n"} and got.modified == {"m"} and not got.unique_keys_added


def test_foreign_key_clauses() -> None:
    """[foreign keys] The shadow gets the clauses without DROP FOREIGN KEY (it never
    holds T's constraints under their own names)."""
    got = parse("DROP FOREIGN KEY `fk a`, ADD c INT, ADD CONSTRAINT `n` FOREIGN KEY (c) "
                "REFERENCES p (id) ON DELETE RESTRICT, ADD FOREIGN KEY (c) REFERENCES "
                "other.t (id), DROP FOREIGN KEY b")
    assert got.foreign_keys_dropped == ("fk a", "b")
    assert got.foreign_keys_added == ("n", "")
    assert got.clauses_for_shadow == ("ADD c INT, ADD CONSTRAINT `n` FOREIGN KEY (c) "
                                      "REFERENCES p (id) ON DELETE RESTRICT, ADD FOREIGN KEY "
                                      "(c) REFERENCES other.t (id)")
    assert parse("DROP FOREIGN KEY x").clauses_for_shadow == ""
    plain = parse("ADD c INT")
    assert plain.clauses_for_shadow == plain.clauses


def test_semicolon_inside_strings_and_names_is_fine() -> None:
    got = parse("ADD `a;b` VARCHAR(3) DEFAULT ';', ADD c INT COMMENT 'x; DROP TABLE t'")
    assert got.added == {"a;b", "c"}


def test_keywords_inside_strings_are_not_keywords() -> None:
    got = parse("ADD c VARCHAR(9) DEFAULT 'PARTITION' COMMENT 'FOREIGN KEY, LOCK, CHECK'")
    assert got.kinds == ("add_column",)


@pytest.mark.parametrize(("alter", "counter"), [
    ("ADD COLUMN c INT NULL", None),
    ("ADD COLUMN id2 INT AUTO_INCREMENT UNIQUE", None),   # a column attribute, not the option
    ("ENGINE=InnoDB AUTO_INCREMENT=5", 5),
    ("AUTO_INCREMENT 77, ADD c INT", 77),
    ("COMMENT='x' AUTO_INCREMENT = 9", 9),
])
def test_auto_increment_table_option(alter: str, counter: int | None) -> None:
    assert parse_alter(alter, database="d", table="t").auto_increment == counter


def test_auto_increment_needs_a_number() -> None:
    with pytest.raises(InvalidAlter, match="whole number"):
        parse_alter("AUTO_INCREMENT=x", database="d", table="t")

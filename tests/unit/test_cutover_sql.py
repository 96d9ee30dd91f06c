"""The cutover's SQL per flavor, offline: which protocol, which statements, which names."""

from __future__ import annotations

import datetime

import pytest

from onlineddl.cutover import Cutover, is_our_rename, rename_sql
from onlineddl.flavor import detect
from onlineddl.othersessions import is_ddl_on, mdl_key
from onlineddl.table import Artifacts, old_table_name

WHEN = datetime.datetime(2026, 11, 29, 10, 5, 7)


def cutover_for(version: str, table: str = "users") -> Cutover:
    cut = Cutover.__new__(Cutover)  # only the pure parts: no sessions are opened
    cut.flavor = detect(version)
    cut.a = Artifacts.for_table(table, old_table_name(table, WHEN))
    return cut


def test_mysql_renames_under_its_lock_without_guard() -> None:
    cut = cutover_for("8.0.36")
    assert cut.flavor.rename_under_lock
    assert rename_sql(cut.a, guard=False) == \
        "RENAME TABLE `users` TO `_users_old_20261129_100507`, `_users_new` TO `users`"


def test_mariadb_swap_renames_the_guard_onto_the_sentry() -> None:
    cut = cutover_for("10.11.6-MariaDB")
    assert not cut.flavor.rename_under_lock
    assert rename_sql(cut.a, guard=True) == (
        "RENAME TABLE `users` TO `_users_old_20261129_100507`, `_users_new` TO `users`, "
        "`_users_swap` TO `users_cutover`")


def test_sentry_sorts_after_the_table_for_any_case() -> None:
    # The queued RENAME must wait for T itself, not for a name before it (see cutover.py).
    for table in ("users", "Users", "USERS", "_x", "z" * 64):
        a = Artifacts.for_table(table)
        assert a.sentry.encode() > table.encode()


def test_the_tripwire_knows_our_rename_from_anyone_elses() -> None:
    a = Artifacts.for_table("t", "_t_old_20261129_100507")
    assert is_our_rename("RENAME TABLE `t` TO `_t_old_20261129_100507`, `_t_new` TO `t`, "
                         "`_t_swap` TO `t_cutover`", a)
    assert is_our_rename("RENAME TABLE `t` TO `_t_old_20261129_100507`,\n `_t_new` TO `t`", a)
    # Another run's swap of the same table (its own old table) is not this run's.
    assert not is_our_rename("RENAME TABLE `t` TO `_t_old_20261129_100508`, `_t_new` TO `t`",
                             a)
    assert not is_our_rename("RENAME TABLE `t` TO `_t_old`, `_t_new` TO `t`", a)
    with pytest.raises(ValueError):
        rename_sql(Artifacts.for_table("t"), guard=True)   # no old-table name chosen
    assert not is_our_rename("ALTER TABLE t ADD COLUMN z INT", a)
    assert not is_our_rename("RENAME TABLE `t` TO `t2`", a)


def test_foreign_ddl_on_the_table_is_told_from_writes() -> None:
    assert is_ddl_on("ALTER TABLE t ADD COLUMN z INT", "t")
    assert is_ddl_on("alter online table `db`.`T` drop index k", "t")
    assert is_ddl_on("DROP INDEX k ON t", "t")
    assert is_ddl_on("TRUNCATE TABLE t", "t")
    assert not is_ddl_on("INSERT INTO t VALUES (1)", "t")
    assert not is_ddl_on("UPDATE t SET v = 1", "t")
    assert not is_ddl_on("ALTER TABLE t2 ADD COLUMN z INT", "t")


def test_the_old_table_sorts_like_it_did_before_t() -> None:
    """The RENAME locks names in order: `_t_old_<stamp>` sorts before a lowercase `t`
    (the probe must see it held) and after an uppercase `T`, like `_t_old` did."""
    for table, before in (("t", True), ("users", True), ("T", False), ("Users", False)):
        old = old_table_name(table, WHEN)
        assert (mdl_key(old, False) < mdl_key(table, False)) is before

"""The cutover's SQL per flavor, offline: which protocol, which statements, which names."""

from __future__ import annotations

from onlineddl.cutover import Cutover
from onlineddl.flavor import detect
from onlineddl.table import Artifacts


def cutover_for(version: str, table: str = "users") -> Cutover:
    cut = Cutover.__new__(Cutover)  # only the pure parts: no sessions are opened
    cut.flavor = detect(version)
    cut.a = Artifacts.for_table(table)
    return cut


def test_mysql_renames_under_its_lock_without_guard() -> None:
    cut = cutover_for("8.0.36")
    assert cut.flavor.rename_under_lock
    assert cut._rename_sql(guard=False) == \
        "RENAME TABLE `users` TO `_users_old`, `_users_new` TO `users`"


def test_mariadb_swap_renames_the_guard_onto_the_sentry() -> None:
    cut = cutover_for("10.11.6-MariaDB")
    assert not cut.flavor.rename_under_lock
    assert cut._rename_sql(guard=True) == (
        "RENAME TABLE `users` TO `_users_old`, `_users_new` TO `users`, "
        "`_users_swap` TO `users_cutover`")


def test_sentry_sorts_after_the_table_for_any_case() -> None:
    # The queued RENAME must wait for T itself, not for a name before it (see cutover.py).
    for table in ("users", "Users", "USERS", "_x", "z" * 64):
        a = Artifacts.for_table(table)
        assert a.sentry.encode() > table.encode()

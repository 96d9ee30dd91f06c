"""Foreign keys, triggers and a primary key change in one run: the features meet.

Each is tested on its own (test_foreign_keys.py, test_triggers.py,
test_primary_key_change.py); here one table has all three: T is a child of `parent`
(RESTRICT constraints), has AFTER INSERT / AFTER DELETE triggers writing an audit table,
and the ALTER changes its primary key. The cutover then carries the constraints and the
triggers under one write block. Writers change T and a mirror (same constraints, same
triggers writing its own audit table) in one transaction, repair off; after the run T
equals the mirror, the audit tables hold the same rows (each trigger fired exactly once
per application write), and SHOW CREATE TABLE equals the native ALTER's on a twin.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from helpers import Conn, kept_tables
from relations import audit_rows, run_config, show_create, trigger_names, twin_database
from workload import Writers, assert_same_rows, q

from integration.test_foreign_keys import COLUMNS, TUNING, ChildModel, make_family
from onlineddl import faults
from onlineddl.config import Dsn, MigrationConfig
from onlineddl.migration import Migration, migrate

ALTER = ("ADD COLUMN extra INT NOT NULL DEFAULT 5, DROP PRIMARY KEY, "
         "ADD PRIMARY KEY (v, id), ADD UNIQUE KEY id_uq (id)")
AUDIT = "kind, tid, v"     # the audit tables' columns the triggers write


def add_triggers(cur: Any, table: str, audit: str) -> None:
    cur.execute(f"CREATE TABLE {q(audit)} (n INT NOT NULL AUTO_INCREMENT PRIMARY KEY, "
                "kind CHAR(1) NOT NULL, tid INT NOT NULL, v INT NOT NULL)")
    cur.execute(f"CREATE TRIGGER {q(table + '_ai')} AFTER INSERT ON {q(table)} FOR EACH ROW "
                f"INSERT INTO {q(audit)} (kind, tid, v) VALUES ('i', NEW.id, NEW.v)")
    cur.execute(f"CREATE TRIGGER {q(table + '_ad')} AFTER DELETE ON {q(table)} FOR EACH ROW "
                f"INSERT INTO {q(audit)} (kind, tid, v) VALUES ('d', OLD.id, OLD.v)")


@pytest.fixture
def family(server: Dsn, db: str, conn: Conn) -> Iterator[Writers]:
    with conn.cursor() as cur:
        make_family(cur, rows=1200)
        add_triggers(cur, "t", "audit")
        add_triggers(cur, "mirror", "mirror_audit")
    writers = Writers(server, db, "t", "mirror", ChildModel(), threads=3)
    yield writers
    writers.stop()


def native_shape(server: Dsn, db: str) -> str:
    """SHOW CREATE TABLE of T after the server's own ALTER, on a twin family."""
    with twin_database(server, db) as twin, twin.cursor() as cur:
        make_family(cur, rows=20, names=("t",))
        add_triggers(cur, "t", "audit")
        cur.execute(f"ALTER TABLE t {ALTER}")
        return show_create(twin, "t")


def check(server: Dsn, db: str, conn: Conn, writers: Writers) -> None:
    assert not writers.errors, writers.errors[:5]
    assert_same_rows(conn, "t", "mirror", COLUMNS, ["id"])
    assert audit_rows(conn, "audit", AUDIT) == audit_rows(conn, "mirror_audit", AUDIT)
    assert trigger_names(conn, "t") == ["t_ad", "t_ai"]
    assert show_create(conn, "t") == native_shape(server, db)
    assert kept_tables(conn) == {"t", "mirror", "parent", "audit", "mirror_audit",
                                 "_t_old_*"}


def config(server: Dsn, db: str, **kw: Any) -> MigrationConfig:
    return run_config(server, db, ALTER, TUNING, **kw)


def test_foreign_keys_triggers_and_a_new_primary_key_under_writers(
        server: Dsn, db: str, conn: Conn, family: Writers) -> None:
    bursts = family.burst_at("after_chunk", 10)
    family.start()
    migrate(config(server, db))
    family.burst(40, seed=999)      # after the swap: the triggers and constraints on new T
    family.stop()
    assert len(bursts) >= 4
    check(server, db, conn, family)


def test_stopped_between_the_carries_then_resumed(server: Dsn, db: str, conn: Conn,
                                                  family: Writers) -> None:
    """Stopped with the constraints attached to the shadow under the block (before the
    triggers move): --resume finishes with both carried exactly once."""
    class Stop(Exception):
        pass

    def stop() -> None:
        raise Stop

    family.start()
    family.burst(20, seed=1)
    faults.register("foreign_keys_attached", stop)
    with pytest.raises(Stop):
        Migration(config(server, db)).run()
    faults.clear()
    family.burst(20, seed=2)        # T must still fire its triggers and check its parents
    Migration(config(server, db, resume=True)).run()
    family.burst(20, seed=3)
    family.stop()
    check(server, db, conn, family)

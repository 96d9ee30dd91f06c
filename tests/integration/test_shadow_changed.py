"""Another session's DDL on the new table `_t_new` during a run (onlineddl/shadowcheck.py).

The applier watches the binlog for DDL on T only; the shadow's own definition is checked
under the cutover's write block against the one setup recorded. A change stops the run
before the swap (exit 13), T unchanged; `cleanup` removes the run's tables.
"""

from __future__ import annotations

import pytest
from helpers import Conn, connect, tables
from workload import q

from onlineddl import faults
from onlineddl.commands import cleanup
from onlineddl.config import Dsn, MigrationConfig, Tuning
from onlineddl.errors import ArtifactsExist, TableChanged
from onlineddl.migration import migrate

TUNING = Tuning(chunk_rows_initial=100, chunk_rows_min=50, chunk_rows_max=200)


def make_table(conn: Conn, *, auto: bool = True) -> None:
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE t (id INT NOT NULL AUTO_INCREMENT PRIMARY KEY, "
                    "v INT NOT NULL, w VARCHAR(20) NULL) ENGINE=InnoDB")
        cur.executemany("INSERT INTO t (v, w) VALUES (%s, %s)",
                        [(i, f"w{i % 7}") for i in range(300)])


def definition(conn: Conn, table: str = "t") -> tuple[str, int]:
    with conn.cursor() as cur:
        cur.execute(f"SHOW CREATE TABLE {q(table)}")
        text = str(cur.fetchone()[1])
        cur.execute(f"CHECKSUM TABLE {q(table)}")
        return text, int(cur.fetchone()[1])


def config(server: Dsn, db: str, alter: str) -> MigrationConfig:
    return MigrationConfig(dsn=server, database=db, table="t", alter=alter, repair=False,
                           tuning=TUNING)


def other_session(server: Dsn, db: str, statement: str, point: str) -> None:
    done: list[bool] = []

    def run() -> None:
        if done:
            return
        done.append(True)
        other = connect(server, db)
        with other.cursor() as cur:
            cur.execute("SET SESSION lock_wait_timeout = 5")
            cur.execute(statement)
        other.close()

    faults.register(point, run)


@pytest.mark.parametrize(("statement", "point"), [
    ("ALTER TABLE _t_new ADD UNIQUE KEY sneaky (v)", "cutover_attempt"),
    ("ALTER TABLE _t_new MODIFY w VARCHAR(40) NULL", "after_checksum"),
    ("ALTER TABLE _t_new DROP INDEX v_idx", "after_chunk"),
    ("ALTER TABLE _t_new COMMENT 'mine'", "cutover_attempt"),
], ids=["unique-key-added", "column-changed", "index-dropped", "comment"])
def test_a_changed_shadow_stops_the_run_before_the_swap(server: Dsn, db: str, conn: Conn,
                                                        statement: str, point: str) -> None:
    make_table(conn)
    before = definition(conn)
    other_session(server, db, statement, point)
    with pytest.raises(TableChanged, match="changed the new table"):
        migrate(config(server, db, "ADD COLUMN extra INT NULL, ADD INDEX v_idx (v)"))
    assert definition(conn) == before
    if "MODIFY" in statement:   # its columns changed: no longer the shadow this run made
        with pytest.raises(ArtifactsExist, match="left alone _t_new"):
            cleanup(server, db, "t")
        assert tables(conn) == {"t", "_t_new"}
        return
    cleanup(server, db, "t")
    assert tables(conn) == {"t"}


def test_an_untouched_shadow_passes_with_a_carried_counter(server: Dsn, db: str,
                                                           conn: Conn) -> None:
    """Writes during the run move the counter (carried under the block): not a change."""
    make_table(conn)

    def insert() -> None:
        other = connect(server, db)
        with other.cursor() as cur:
            cur.execute("INSERT INTO t (v) VALUES (100000)")
        other.close()

    faults.register("after_chunk", insert)
    migrate(config(server, db, "ADD COLUMN extra INT NULL"))
    with conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM t")
        assert cur.fetchone()[0] == 300 + 3


@pytest.mark.parametrize("statement", [
    "ALTER TABLE t ADD COLUMN z INT NOT NULL DEFAULT 7",
    "ALTER TABLE t ADD UNIQUE KEY vz (v)",
], ids=["column-added", "unique-key-added"])
def test_ddl_on_t_before_the_binlog_position_stops_the_run(server: Dsn, db: str,
                                                           conn: Conn, statement: str) -> None:
    """DDL on T after preflight read it and before the binlog position the applier starts
    from (the shadow just created) is in no binlog the run reads: T's definition under
    the block is compared with preflight's. (The column was missing from the new table,
    exit 0.)"""
    make_table(conn)
    other_session(server, db, statement, "shadow_created")
    with pytest.raises(TableChanged, match="after the run read it"):
        migrate(config(server, db, "ADD COLUMN extra INT NULL"))
    after = definition(conn)
    assert "extra" not in after[0]
    cleanup(server, db, "t")
    assert tables(conn) == {"t"}
    assert definition(conn) == after

"""The checksum finds a difference it did not cause, names the keys, and repairs it."""

from __future__ import annotations

import pytest
from helpers import connect, numbers

from onlineddl import faults
from onlineddl.config import Dsn, MigrationConfig, Tuning
from onlineddl.errors import ChecksumMismatch
from onlineddl.migration import migrate

TUNING = Tuning(checksum_chunk_rows=300, chunk_rows_initial=500)



def corrupt_shadow(server: Dsn, db: str) -> None:
    """While writes to T are blocked for the snapshot: damage two shadow rows."""
    conn = connect(server, db)
    with conn.cursor() as cur:
        cur.execute("UPDATE _t_new SET v = v + 1 WHERE id IN (77, 2501)")
    conn.close()


@pytest.mark.parametrize("workers", [1, 3])
def test_mismatch_names_the_keys_and_leaves_t_alone(server: Dsn, db: str, workers: int
                                                    ) -> None:
    conn = connect(server, db)
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE t (id INT PRIMARY KEY, v INT NOT NULL)")
        cur.execute(f"INSERT INTO t SELECT seq, seq FROM {numbers(3000)}")
    faults.register("during_checksum_drain", lambda: corrupt_shadow(server, db))
    tuning = Tuning(checksum_chunk_rows=300, chunk_rows_initial=500, checksum_workers=workers)
    with pytest.raises(ChecksumMismatch, match=r"2 row\(s\) differ.*77.*2501"):
        migrate(MigrationConfig(dsn=server, database=db, table="t", alter="ADD c INT NULL",
                                repair=False, tuning=tuning))
    with conn.cursor() as cur:
        cur.execute("SHOW COLUMNS FROM t")
        assert [r[0] for r in cur.fetchall()] == ["id", "v"]   # no cutover
        cur.execute("SELECT COUNT(*), SUM(v) FROM t")
        assert cur.fetchone() == (3000, 3000 * 3001 // 2)


def test_repair_recopies_the_differing_rows(server: Dsn, db: str) -> None:
    conn = connect(server, db)
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE t (id INT PRIMARY KEY, v INT NOT NULL)")
        cur.execute(f"INSERT INTO t SELECT seq, seq FROM {numbers(3000)}")
    calls = {"n": 0}

    def once() -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            corrupt_shadow(server, db)

    faults.register("during_checksum_drain", once)
    migrate(MigrationConfig(dsn=server, database=db, table="t", alter="ADD c INT NULL",
                            repair=True, tuning=TUNING))
    assert calls["n"] >= 2  # verified again after the repair
    with conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM t WHERE v <> id")
        assert cur.fetchone()[0] == 0


@pytest.mark.parametrize(("damaged", "passes"), [(3, True), (4, False)])
def test_every_repair_is_verified(server: Dsn, db: str, damaged: int, passes: bool) -> None:
    """With three repairs allowed, a difference found by the first three comparisons is
    repaired three times and the fourth comparison decides; one that survives the third
    repair stops the run, T unchanged."""
    conn = connect(server, db)
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE t (id INT PRIMARY KEY, v INT NOT NULL)")
        cur.execute(f"INSERT INTO t SELECT seq, seq FROM {numbers(3000)}")
    calls = {"n": 0}

    def damage_the_first_snapshots() -> None:
        calls["n"] += 1
        if calls["n"] <= damaged:
            corrupt_shadow(server, db)

    faults.register("during_checksum_drain", damage_the_first_snapshots)
    config = MigrationConfig(dsn=server, database=db, table="t", alter="ADD c INT NULL",
                             repair=True, tuning=Tuning(checksum_chunk_rows=300,
                                                        chunk_rows_initial=500,
                                                        repair_attempts=3))
    if passes:
        migrate(config)
    else:
        with pytest.raises(ChecksumMismatch, match="after 3 repair attempts"):
            migrate(config)
    assert calls["n"] == 4     # three repairs, each compared again
    with conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM t WHERE v <> id")
        assert cur.fetchone()[0] == 0

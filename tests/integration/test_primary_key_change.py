"""ALTERs that change the primary key, walked by a unique key both tables share (keys.py).

Each supported case runs under writers (two threads, plus bursts at `copy_start` and at
every chunk boundary) that insert, update, move the id, move the tenant (the new
primary key's value) and the email (a unique key's value), and delete, on `t` and on a
`mirror` alike. Checksum repair is off. Afterwards the mirror gets the native ALTER, and
`t` must equal it: the same SHOW CREATE TABLE and the same rows. Then: a crash mid-copy
and `--resume`; the refusals (nothing shared), each leaving the table as it was and
nothing behind; and the data the new primary key cannot hold (duplicates, NULLs), which
fails like the native ALTER does, early, table untouched.
"""

from __future__ import annotations

import dataclasses
import itertools
import random
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from helpers import Conn, Cursor, cli_env, connect, kept_tables, migrate_command, tables
from workload import Writers, q

from onlineddl import faults
from onlineddl.config import Dsn, MigrationConfig, Tuning
from onlineddl.errors import (
    DataError,
    InvalidAlter,
    OnlineDDLError,
    UniqueViolation,
    UnsupportedTable,
)
from onlineddl.migration import migrate

ROWS = 1200
TENANTS = 7
TUNING = Tuning(chunk_rows_initial=100, chunk_rows_min=50, chunk_rows_max=150,
                progress_interval=5.0, checkpoint_interval=0.3, copy_workers=2)
COLUMNS = ("id", "tenant_id", "email", "v", "note")

PK_ID = "PRIMARY KEY (id), UNIQUE KEY uq_email (email)"


@dataclass
class TenantModel:
    """t (id, tenant_id, email, v, note) with the given keys. `v` is unique in every row
    at every moment (a shared counter), so a new key over it can hold the data."""

    keys: str
    ids: int = ROWS * 2
    counter: Iterator[int] = field(default_factory=lambda: itertools.count(10 * ROWS))
    lock: threading.Lock = field(default_factory=threading.Lock)

    def create_sql(self, table: str) -> str:
        return (f"CREATE TABLE {q(table)} (id BIGINT NOT NULL, tenant_id INT NOT NULL, "
                "email VARCHAR(64) CHARACTER SET utf8mb4 NOT NULL, v INT NOT NULL, "
                f"note VARCHAR(32) CHARACTER SET utf8mb4 NULL, {self.keys}) ENGINE=InnoDB")

    def seed(self, conn: Conn, names: tuple[str, ...] = ("t", "mirror")) -> None:
        rows = [(k, k % TENANTS + 1, f"u{k}@\u00e9x", k, None if k % 5 == 0 else f"n{k}")
                for k in range(1, ROWS + 1)]
        with conn.cursor() as cur:
            for name in names:
                cur.execute(self.create_sql(name))
                cur.executemany(f"INSERT INTO {q(name)} ({', '.join(COLUMNS)}) "
                                "VALUES (%s, %s, %s, %s, %s)", rows)

    def _v(self) -> int:
        with self.lock:
            return next(self.counter)

    def _id(self, rng: random.Random) -> int:
        return rng.randrange(1, self.ids)

    def ops(self) -> list[Any]:
        return [self.insert, self.update, self.move_tenant, self.move_tenant, self.move_id,
                self.move_email, self.delete]

    def _both(self, cur: Cursor, table: str, text: str, params: list[Any]
              ) -> list[tuple[str, list[Any]]]:
        cur.execute(text.format(t=q(table)), params)
        return [(text.replace("{t}", "{m}"), params)]

    def insert(self, cur: Cursor, rng: random.Random, table: str) -> list[tuple[str, list[Any]]]:
        return self._both(cur, table, "INSERT INTO {t} (id, tenant_id, email, v, note) "
                          "VALUES (%s, %s, %s, %s, %s)",
                          [self._id(rng), rng.randrange(1, TENANTS + 1),
                           f"w{rng.randrange(10**9)}\U0001F680", self._v(),
                           rng.choice([None, "", "i"])])

    def update(self, cur: Cursor, rng: random.Random, table: str) -> list[tuple[str, list[Any]]]:
        return self._both(cur, table, "UPDATE {t} SET v = %s, note = %s WHERE id = %s",
                          [self._v(), rng.choice([None, "u", "\u2603"]), self._id(rng)])

    def move_tenant(self, cur: Cursor, rng: random.Random, table: str
                    ) -> list[tuple[str, list[Any]]]:
        return self._both(cur, table, "UPDATE {t} SET tenant_id = %s WHERE id = %s",
                          [rng.randrange(1, TENANTS + 1), self._id(rng)])

    def move_id(self, cur: Cursor, rng: random.Random, table: str
                ) -> list[tuple[str, list[Any]]]:
        return self._both(cur, table, "UPDATE {t} SET id = %s WHERE id = %s",
                          [self._id(rng), self._id(rng)])

    def move_email(self, cur: Cursor, rng: random.Random, table: str
                   ) -> list[tuple[str, list[Any]]]:
        return self._both(cur, table, "UPDATE {t} SET email = %s WHERE id = %s",
                          [f"m{rng.randrange(10**9)}", self._id(rng)])

    def delete(self, cur: Cursor, rng: random.Random, table: str) -> list[tuple[str, list[Any]]]:
        return self._both(cur, table, "DELETE FROM {t} WHERE id = %s", [self._id(rng)])


def config(server: Dsn, db: str, alter: str) -> MigrationConfig:
    return MigrationConfig(dsn=server, database=db, table="t", alter=alter, repair=False,
                           tuning=TUNING)


def show_create(conn: Conn, table: str) -> str:
    with conn.cursor() as cur:
        cur.execute(f"SHOW CREATE TABLE {q(table)}")
        return str(cur.fetchone()[1]).replace(f"CREATE TABLE {q(table)}", "CREATE TABLE")


def all_rows(conn: Conn, table: str) -> list[tuple[Any, ...]]:
    with conn.cursor() as cur:
        cur.execute(f"SELECT * FROM {q(table)} ORDER BY 1, 2, 3")
        return list(cur.fetchall())


def assert_like_native(server: Dsn, db: str, conn: Conn, alter: str) -> None:
    """The mirror (every write the writers committed) gets the native ALTER: `t` must
    equal it, schema and rows."""
    with connect(server, db) as native, native.cursor() as cur:
        cur.execute(f"ALTER TABLE mirror {alter}")
    assert show_create(conn, "t") == show_create(conn, "mirror")
    got, want = all_rows(conn, "t"), all_rows(conn, "mirror")
    assert len(got) == len(want) and got == want, (
        f"{len(got)} rows against {len(want)}; first differing: "
        f"{next((g, w) for g, w in zip(got, want, strict=False) if g != w)}")


@dataclass(frozen=True)
class Case:
    id: str
    keys: str        # the old table's keys
    alter: str
    walks: str       # the key the log says the run walks


CASES = [
    # Wider: the old primary key stays as a UNIQUE key; tenant moves change the new PK.
    Case("wider", PK_ID,
         "DROP PRIMARY KEY, ADD PRIMARY KEY (tenant_id, id), ADD UNIQUE KEY uq_id (id)",
         "PRIMARY KEY (id) of the old table, UNIQUE KEY uq_id (id) of the new table"),
    # Narrower: the old table's UNIQUE (id) becomes the primary key.
    Case("narrower", "PRIMARY KEY (tenant_id, id), UNIQUE KEY uq_id (id)",
         "DROP PRIMARY KEY, ADD PRIMARY KEY (id)",
         "UNIQUE KEY uq_id (id) of the old table, PRIMARY KEY (id) of the new table"),
    # A PK added to a table that has only UNIQUE NOT NULL keys: walked by the first by
    # name, a text key (email) whose values move.
    Case("added_to_unique_only", "UNIQUE KEY uq_id (id), UNIQUE KEY uq_email (email)",
         "ADD PRIMARY KEY (id)", "UNIQUE KEY uq_email (email), in the old and the new table"),
    # The new PK is the old unique key; the old PK (preferred) is kept as UNIQUE.
    Case("unique_becomes_primary", PK_ID,
         "DROP PRIMARY KEY, ADD PRIMARY KEY (email), ADD UNIQUE KEY uq_id (id)",
         "PRIMARY KEY (id) of the old table, UNIQUE KEY uq_id (id) of the new table"),
    # No primary key, before or after: walked by the UNIQUE NOT NULL key, and (no other
    # unique key) flushed by updates in place joined on it.
    Case("no_primary_key_at_all", "UNIQUE KEY uq_id (id)",
         "ADD COLUMN extra INT NOT NULL DEFAULT 3",
         "UNIQUE KEY uq_id (id), in the old and the new table"),
    # A new PK the old table does not enforce (tenant_id, v): written by the guarded
    # path (uniques.py), every tenant move changes it.
    Case("not_enforced_by_old_keys", PK_ID,
         "DROP PRIMARY KEY, ADD PRIMARY KEY (tenant_id, v), ADD UNIQUE KEY uq_id (id)",
         "PRIMARY KEY (id) of the old table, UNIQUE KEY uq_id (id) of the new table"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_primary_key_change_under_writers(server: Dsn, db: str, case: Case,
                                          caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="onlineddl")
    model = TenantModel(case.keys)
    conn = connect(server, db)
    model.seed(conn)
    writers = Writers(server, db, "t", "mirror", model, threads=2, pause=0.002)
    chunks = {"n": 0}

    def at_boundary() -> None:
        chunks["n"] += 1
        writers.burst(10, seed=1000 + chunks["n"])

    faults.register("copy_start", lambda: writers.burst(60, seed=7))
    faults.register("after_chunk", at_boundary)
    writers.start()
    try:
        result = migrate(config(server, db, case.alter))
        writers.burst(30, seed=4242)     # after the swap: into the new table
    finally:
        writers.stop()
        faults.clear()
    assert not writers.errors, writers.errors[:5]
    assert chunks["n"] >= 5, "the run should span several chunks"
    assert writers.committed > 100
    assert f"the run walks {case.walks}" in caplog.text
    assert kept_tables(conn) == {"t", "mirror", "_t_old_*"}
    assert result.old_table
    assert_like_native(server, db, conn, case.alter)


def test_renamed_key_columns_with_a_wider_primary_key(server: Dsn, db: str,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    """The old PK column renamed and kept UNIQUE, in a wider PK: the same key."""
    caplog.set_level("INFO", logger="onlineddl")
    model = TenantModel("PRIMARY KEY (id)")
    conn = connect(server, db)
    model.seed(conn)
    alter = ("CHANGE COLUMN id uid BIGINT NOT NULL, DROP PRIMARY KEY, "
             "ADD PRIMARY KEY (tenant_id, uid), ADD UNIQUE KEY uq_uid (uid)")
    migrate(config(server, db, alter))
    assert ("the run walks PRIMARY KEY (id) of the old table, UNIQUE KEY uq_uid (uid) of "
            "the new table") in caplog.text
    assert_like_native(server, db, conn, alter)


# --- crash and --resume mid-copy -------------------------------------------------------------


@pytest.mark.parametrize("case", [CASES[0], CASES[2]], ids=[CASES[0].id, CASES[2].id])
def test_crash_mid_copy_and_resume(server: Dsn, db: str, case: Case) -> None:
    model = TenantModel(case.keys)
    conn = connect(server, db)
    model.seed(conn)
    writers = Writers(server, db, "t", "mirror", model, threads=2, pause=0.002)

    def run(*extra: str, fault: str | None = None) -> subprocess.CompletedProcess[str]:
        args = migrate_command(server, db, case.alter, "--chunk-size", "100",
                               "--chunk-size-max", "150", *extra)
        return subprocess.run(args, env=cli_env(server, fault), capture_output=True,
                              text=True, timeout=300)

    writers.start()
    try:
        crashed = run(fault="after_chunk:4")
        assert crashed.returncode == 137, crashed.stderr[-2000:]
        writers.wait_for_commits(40)                  # T keeps changing while we are down
        resumed = run("--resume")
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        assert "--resume: continuing from watermark" in resumed.stderr
        writers.wait_for_commits(20)
    finally:
        writers.stop()
    assert not writers.errors, writers.errors[:5]
    assert kept_tables(conn) == {"t", "mirror", "_t_old_*"}
    assert_like_native(server, db, conn, case.alter)


class Crash(BaseException):
    """Stops a run in-process the way a kill does: no cleanup, no failure handling."""


@pytest.mark.parametrize("case", [CASES[0], CASES[2]], ids=[CASES[0].id, CASES[2].id])
def test_resume_trims_the_shadow_by_the_run_key(server: Dsn, db: str, case: Case,
                                                caplog: pytest.LogCaptureFixture) -> None:
    """A checkpoint every tick, the run stopped mid-copy once a checkpoint holds a
    watermark: the resumed run finds it, a value of the run's key (not of either
    primary key), and trims the shadow above it by that key."""
    caplog.set_level("INFO", logger="onlineddl")
    model = TenantModel(case.keys)
    conn = connect(server, db)
    model.seed(conn)
    writers = Writers(server, db, "t", "mirror", model, threads=2, pause=0.002)
    chunks = {"n": 0}

    def crash_once_checkpointed() -> None:
        chunks["n"] += 1
        writers.burst(5, seed=chunks["n"])
        with conn.cursor() as cur:
            cur.execute("SELECT low_watermark FROM _t_chkpnt")
            if chunks["n"] >= 3 and cur.fetchone()[0] is not None:
                raise Crash()

    # Applier flushes often: the checkpoint records a watermark once one covers it.
    tuning = Tuning(chunk_rows_initial=50, chunk_rows_min=50, chunk_rows_max=50,
                    checkpoint_interval=0.0, flush_interval=0.01, progress_interval=5.0)
    run = MigrationConfig(dsn=server, database=db, table="t", alter=case.alter,
                          repair=False, tuning=tuning)
    faults.register("after_chunk", crash_once_checkpointed)
    writers.start()
    try:
        with pytest.raises(Crash):
            migrate(run)
        faults.clear()
        writers.wait_for_commits(40)
        migrate(dataclasses.replace(run, resume=True))
        writers.wait_for_commits(20)
    finally:
        writers.stop()
        faults.clear()
    assert not writers.errors, writers.errors[:5]
    resumed = [r.getMessage() for r in caplog.records if "continuing from watermark" in
               r.getMessage()]
    assert resumed and "watermark None" not in resumed[0], resumed
    assert any("above the watermark for re-copy" in r.getMessage() for r in caplog.records)
    assert_like_native(server, db, conn, case.alter)


# --- refusals: nothing shared ----------------------------------------------------------------


def snapshot(conn: Conn) -> tuple[str, list[tuple[Any, ...]], set[str]]:
    return show_create(conn, "t"), all_rows(conn, "t"), tables(conn)


@dataclass(frozen=True)
class Refusal:
    id: str
    keys: str
    alter: str
    error: type[OnlineDDLError]
    message: str
    hint: str = ""


REFUSALS = [
    Refusal("wider_without_the_old_key", "PRIMARY KEY (id)",
            "DROP PRIMARY KEY, ADD PRIMARY KEY (tenant_id, id)", InvalidAlter,
            "changes the primary key (id -> tenant_id, id)",
            "keep the old PRIMARY KEY (id) as a UNIQUE key over NOT NULL columns in the "
            "same ALTER, e.g. ADD UNIQUE KEY (id)"),
    Refusal("unique_dropped_too", PK_ID,
            "DROP PRIMARY KEY, DROP INDEX uq_email, ADD PRIMARY KEY (tenant_id, id)",
            InvalidAlter, "share no UNIQUE key over NOT NULL columns",
            "e.g. ADD UNIQUE KEY (id)"),
    Refusal("key_column_dropped", "PRIMARY KEY (id)", "DROP COLUMN id", InvalidAlter,
            "changes the primary key (id -> none)", "the ALTER drops (or computes) id"),
    Refusal("renamed_and_dropped_pk", "PRIMARY KEY (id)",
            "CHANGE COLUMN id uid BIGINT NOT NULL, DROP PRIMARY KEY", InvalidAlter,
            "changes the primary key (id -> none)", "e.g. ADD UNIQUE KEY (uid)"),
    Refusal("unique_key_made_nullable", "UNIQUE KEY uq_id (id)", "MODIFY id BIGINT NULL",
            InvalidAlter, "changes the table's unique keys", "ADD UNIQUE KEY (id)"),
    Refusal("no_key_at_all", "KEY ix_id (id)", "ADD PRIMARY KEY (id)", UnsupportedTable,
            "no PRIMARY KEY and no UNIQUE key over NOT NULL columns"),
    Refusal("only_a_nullable_unique_key", "UNIQUE KEY uq_note (note)",
            "ADD PRIMARY KEY (id)", UnsupportedTable, "no PRIMARY KEY and no UNIQUE key"),
    # A prefix key's index cannot give the rows in the order of the whole values.
    Refusal("only_a_prefix_unique_key", "UNIQUE KEY uq_email (email(10))",
            "ADD PRIMARY KEY (id)", UnsupportedTable, "(email(10)), does not count"),
    Refusal("shared_only_by_a_prefix_key", "PRIMARY KEY (id), UNIQUE KEY uq_email (email(10))",
            "DROP PRIMARY KEY, ADD PRIMARY KEY (tenant_id, id)", InvalidAlter,
            "share no UNIQUE key over NOT NULL columns", "e.g. ADD UNIQUE KEY (id)"),
]


@pytest.mark.parametrize("refusal", REFUSALS, ids=[r.id for r in REFUSALS])
def test_refused_without_a_shared_key(server: Dsn, db: str, refusal: Refusal) -> None:
    conn = connect(server, db)
    TenantModel(refusal.keys).seed(conn, ("t",))
    before = snapshot(conn)
    with pytest.raises(refusal.error) as caught:
        migrate(config(server, db, refusal.alter))
    assert refusal.message in caught.value.message, caught.value
    assert refusal.hint in caught.value.hint, caught.value.hint
    assert snapshot(conn) == before


def test_refusal_exit_code_from_the_cli(server: Dsn, db: str) -> None:
    conn = connect(server, db)
    TenantModel("PRIMARY KEY (id)").seed(conn, ("t",))
    before = snapshot(conn)
    args = migrate_command(server, db, "DROP PRIMARY KEY, ADD PRIMARY KEY (tenant_id, id)")
    done = subprocess.run(args, env=cli_env(server), capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 5, done.stderr[-2000:]
    assert "ADD UNIQUE KEY (id)" in done.stderr
    assert snapshot(conn) == before


# --- data the new primary key cannot hold ------------------------------------------------------


@pytest.mark.parametrize(("alter", "error", "message"), [
    # tenant_id repeats: the native ALTER fails with a duplicate entry.
    ("DROP PRIMARY KEY, ADD PRIMARY KEY (tenant_id), ADD UNIQUE KEY uq_id (id)",
     UniqueViolation, "the new PRIMARY KEY (tenant_id) would drop rows"),
    # note holds NULLs: the native ALTER cannot make it NOT NULL.
    ("DROP PRIMARY KEY, ADD PRIMARY KEY (note, id), ADD UNIQUE KEY uq_id (id)",
     DataError, "the data does not fit the new schema"),
], ids=["duplicates", "nulls"])
def test_data_the_new_primary_key_cannot_hold(server: Dsn, db: str, alter: str,
                                              error: type[DataError], message: str) -> None:
    conn = connect(server, db)
    TenantModel(PK_ID).seed(conn)
    before = snapshot(conn)
    copied = {"chunks": 0}
    faults.register("after_chunk", lambda: copied.__setitem__("chunks", copied["chunks"] + 1))
    try:
        with pytest.raises(error) as caught:
            migrate(config(server, db, alter))
    finally:
        faults.clear()
    assert message in caught.value.message, caught.value
    assert copied["chunks"] <= 1, "the first chunk holds a duplicate: fail there"
    assert snapshot(conn) == before
    with connect(server, db) as native, native.cursor() as cur, \
            pytest.raises(Exception, match=r"Duplicate entry|Invalid use of NULL|Data truncated"):
        cur.execute(f"ALTER TABLE mirror {alter}")


def test_dry_run_names_the_key_the_run_walks(server: Dsn, db: str) -> None:
    conn = connect(server, db)
    TenantModel(PK_ID).seed(conn, ("t",))
    before = snapshot(conn)
    args = migrate_command(server, db, CASES[0].alter, "--dry-run")
    done = subprocess.run(args, env=cli_env(server), capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert ("Key (the copy chunks, changes are applied and the checksum compares by it):\n"
            f"  {CASES[0].walks}\n") in done.stdout
    assert snapshot(conn) == before

"""Writers that change a table while it is migrated, and an independent record of it.

Every writer transaction changes the table under test AND a mirror table (same schema,
never migrated) in one transaction, so after the run the table must equal the mirror
row for row on the columns both still have. Any lost, stale or duplicated write shows.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeAlias

import pymysql
from helpers import Conn, Cursor, connect, numbers

from onlineddl import faults
from onlineddl.config import Dsn

RETRY = {1205, 1213}       # lock wait timeout, deadlock: the transaction rolled back
SKIP = {1062}              # duplicate key: this random op is not possible now

# One random change: made on `table` through the cursor, returned as the statements
# ({m} for the mirror's name) and parameters that make the same change to the mirror.
Op: TypeAlias = Callable[[Cursor, random.Random, str], list[tuple[str, list[Any]]]]


class Model(Protocol):
    """What Writers need of a table's model: its random changes."""

    def ops(self) -> list[Op]: ...


def q(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


@dataclass
class IntModel:
    """Table (id BIGINT AUTO_INCREMENT PK, name VARCHAR, v INT, data VARBINARY, note TEXT)."""

    id_max: int
    pk: str = "id"

    def create_sql(self, table: str) -> str:
        return (f"CREATE TABLE {q(table)} (id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, "
                "name VARCHAR(64) CHARACTER SET utf8mb4 NULL, v INT NOT NULL DEFAULT 0, "
                "data VARBINARY(64) NULL, note TEXT CHARACTER SET utf8mb4 NULL) ENGINE=InnoDB")

    def seed_sql(self, table: str, rows: int) -> str:
        return (f"INSERT INTO {q(table)} (id, name, v, data, note) SELECT seq, "
                "CONCAT('n', seq, '\U0001F600'), seq, UNHEX(MD5(seq)), "
                f"IF(seq % 7 = 0, NULL, REPEAT('x', seq % 50)) FROM {numbers(rows)}")

    def ops(self) -> list[Op]:
        return [self.insert, self.insert, self.update, self.update, self.update,
                self.delete, self.reinsert, self.move_key, self.move_key_down]

    def insert(self, cur: Cursor, rng: random.Random, table: str) -> list[tuple[str, list[Any]]]:
        values = [f"w\u00e9{rng.randrange(10**6)}\U0001F680", rng.randrange(10**6),
                  rng.randbytes(rng.randrange(0, 20)), rng.choice([None, "n", "\u2603" * 3])]
        cur.execute(f"INSERT INTO {q(table)} (name, v, data, note) VALUES (%s,%s,%s,%s)",
                    values)
        new_id = cur.lastrowid
        return [("INSERT INTO {m} (id, name, v, data, note) VALUES (%s,%s,%s,%s,%s)",
                 [new_id, *values])]

    def _key(self, rng: random.Random) -> int:
        return rng.randrange(1, self.id_max + 1)

    def update(self, cur: Cursor, rng: random.Random, table: str) -> list[tuple[str, list[Any]]]:
        stmt = "UPDATE {t} SET v = v + 1, name = %s, note = %s WHERE id = %s"
        params = [f"u{rng.randrange(1000)}", rng.choice([None, "", "z"]), self._key(rng)]
        cur.execute(stmt.format(t=q(table)), params)
        return [(stmt.replace("{t}", "{m}"), params)]

    def delete(self, cur: Cursor, rng: random.Random, table: str) -> list[tuple[str, list[Any]]]:
        params = [self._key(rng)]
        cur.execute(f"DELETE FROM {q(table)} WHERE id = %s", params)
        return [("DELETE FROM {m} WHERE id = %s", params)]

    def reinsert(self, cur: Cursor, rng: random.Random, table: str) -> list[tuple[str, list[Any]]]:
        """Insert an explicit low key: succeeds only when that key was deleted."""
        values = [self._key(rng), "re", 7, b"\x00\xff", None]
        cur.execute(f"INSERT INTO {q(table)} (id, name, v, data, note) VALUES (%s,%s,%s,%s,%s)",
                    values)
        return [("INSERT INTO {m} (id, name, v, data, note) VALUES (%s,%s,%s,%s,%s)", values)]

    def move_key(self, cur: Cursor, rng: random.Random, table: str) -> list[tuple[str, list[Any]]]:
        """Change a primary key to one far above the copier's position."""
        old = self._key(rng)
        params = [old + 10_000_000 + rng.randrange(1000), old]
        cur.execute(f"UPDATE {q(table)} SET id = %s WHERE id = %s", params)
        return [("UPDATE {m} SET id = %s WHERE id = %s", params)]

    def move_key_down(self, cur: Cursor, rng: random.Random, table: str
                      ) -> list[tuple[str, list[Any]]]:
        """Change a primary key to a low one (below the copier, maybe already copied)."""
        params = [self._key(rng), self._key(rng)]
        cur.execute(f"UPDATE {q(table)} SET id = %s WHERE id = %s", params)
        return [("UPDATE {m} SET id = %s WHERE id = %s", params)]


# A test's connection and the model whose table and mirror it seeded (make_tables).
Seeded: TypeAlias = tuple[Conn, IntModel]


def make_tables(conn: Conn, model: IntModel, rows: int, names: Sequence[str] = ("t", "mirror")
                ) -> None:
    """The table under test and its mirror: same schema, same seed rows."""
    with conn.cursor() as cur:
        for name in names:
            cur.execute(model.create_sql(name))
            if rows:
                cur.execute(model.seed_sql(name, rows))


def commit_replaying(conn: Conn, plan: Sequence[tuple[str, Any]], attempts: int = 20) -> int:
    """Run `plan` in one transaction and commit; replay it when the server rolled it back
    (deadlock, lock wait timeout), as an application would: the applier's locking re-reads
    can make a writer the deadlock victim. Returns how many replays it took."""
    for replays in range(attempts):
        try:
            with conn.cursor() as cur:
                for text, params in plan:
                    cur.execute(text, params)
            conn.commit()
            return replays
        except pymysql.err.OperationalError as exc:
            conn.rollback()
            if exc.args[0] not in RETRY:
                raise
        except BaseException:
            conn.rollback()
            raise
    raise AssertionError(f"the transaction was rolled back {attempts} times")


@dataclass
class Writers:
    dsn: Dsn
    database: str
    table: str
    mirror: str
    model: Model
    threads: int = 4
    pause: float = 0.001
    seed: int = 1
    committed: int = 0
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        for i in range(self.threads):
            t = threading.Thread(target=self._run, args=(self.seed * 100 + i,), daemon=True)
            t.start()
            self._workers.append(t)

    def stop(self) -> None:
        self._stop.set()
        for t in self._workers:
            t.join(timeout=60)

    def _run(self, seed: int) -> None:
        rng = random.Random(seed)
        conn = connect(self.dsn, self.database, autocommit=False)
        try:
            with conn.cursor() as cur:
                cur.execute("SET SESSION lock_wait_timeout = 60")
            while not self._stop.is_set():
                self.one(conn, rng)
                time.sleep(self.pause)
        except Exception as exc:  # recorded: the test fails on any writer error
            self.errors.append(f"writer crashed: {exc!r}")
        finally:
            conn.close()

    def wait_for_commits(self, more: int, timeout: float = 30) -> None:
        """Let the running writers commit `more` transactions (a condition, not a
        timed sleep)."""
        target = self.committed + more
        deadline = time.monotonic() + timeout
        while self.committed < target:
            assert time.monotonic() < deadline, "writers stalled"
            assert not self.errors, self.errors[:3]
            time.sleep(0.01)

    def burst(self, count: int, seed: int) -> None:
        """`count` transactions from the calling thread, committed before it returns."""
        rng = random.Random(seed)
        conn = connect(self.dsn, self.database, autocommit=False)
        try:
            for _ in range(count):
                self.one(conn, rng)
        finally:
            conn.close()

    def burst_at(self, point: str, count: int = 10) -> list[int]:
        """At each pass through the fault point `point`, a burst of `count` transactions
        (seeded by the pass's number). Returns the list whose length counts the passes."""
        passes: list[int] = []

        def burst() -> None:
            passes.append(len(passes) + 1)
            self.burst(count, seed=len(passes))

        faults.register(point, burst)
        return passes

    def one(self, conn: Conn, rng: random.Random) -> None:
        op = rng.choice(self.model.ops())
        for _attempt in range(20):
            try:
                with conn.cursor() as cur:
                    mirror_stmts = op(cur, rng, self.table)
                    for stmt, params in mirror_stmts:
                        cur.execute(stmt.format(m=q(self.mirror)), params)
                conn.commit()
                with self._lock:
                    self.committed += 1
                return
            except pymysql.err.MySQLError as exc:
                conn.rollback()
                code = exc.args[0] if exc.args else 0
                if code in SKIP:
                    return
                if code in RETRY:
                    continue
                self.errors.append(f"{op.__name__}: {exc!r}")
                return


def rows(conn: Conn, table: str, columns: Sequence[str], order: Sequence[str]
         ) -> list[tuple[Any, ...]]:
    with conn.cursor() as cur:
        cur.execute(f"SELECT {', '.join(q(c) for c in columns)} FROM {q(table)} "
                    f"ORDER BY {', '.join(q(c) for c in order)}")
        return list(cur.fetchall())


def assert_same_rows(conn: Conn, table: str, mirror: str, columns: Sequence[str],
                     order: Sequence[str], mirror_columns: Sequence[str] | None = None) -> int:
    got = rows(conn, table, columns, order)
    want = rows(conn, mirror, mirror_columns or columns, order)
    if got != want:
        got_keys = {r[0] for r in got}
        want_keys = {r[0] for r in want}
        missing = sorted(want_keys - got_keys)[:10]
        extra = sorted(got_keys - want_keys)[:10]
        stale = [g[0] for g, w in zip(got, want, strict=False) if g != w][:10]
        raise AssertionError(
            f"{table} differs from its mirror: {len(got)} vs {len(want)} rows; "
            f"missing keys {missing}; extra keys {extra}; first differing {stale}")
    return len(got)

"""The demo behind scripts/demo: a real online ALTER on a throwaway local server.

Writers insert, update and delete rows while the migration runs; each writer
transaction also records its change in a `mirror` table, so at the end the migrated
table can be compared with an independent record of every committed write.
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
import threading
import time
from typing import Any

import pymysql

from onlineddl import Dsn, MigrationConfig, Tuning, migrate
from onlineddl.cli import configure_logging
from onlineddl.testing.localserver import LocalServer
from onlineddl.testing.seedrows import numbers

log = logging.getLogger("demo")
ALTER = "ADD COLUMN note VARCHAR(64) NULL DEFAULT 'migrated', ADD INDEX idx_score (score)"
TABLE_SQL = ("CREATE TABLE {t} (id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, "
             "name VARCHAR(64) NOT NULL, score INT NOT NULL, payload VARBINARY(64)) "
             "ENGINE=InnoDB")


def connect(dsn: Dsn, autocommit: bool = True) -> pymysql.connections.Connection:
    return pymysql.connect(host=dsn.host, port=dsn.port, user=dsn.user, password=dsn.password,
                           database="demo", autocommit=autocommit, charset="utf8mb4")


def seed(dsn: Dsn, rows: int) -> None:
    conn = pymysql.connect(host=dsn.host, port=dsn.port, user=dsn.user, password=dsn.password,
                           autocommit=True)
    with conn.cursor() as cur:
        cur.execute("CREATE DATABASE demo")
        cur.execute("USE demo")
        for table in ("accounts", "mirror"):
            cur.execute(TABLE_SQL.format(t=table))
            cur.execute(f"INSERT INTO {table} (id, name, score, payload) SELECT seq, "
                        f"CONCAT('user-', seq), seq % 1000, UNHEX(MD5(seq)) "
                        f"FROM {numbers(rows)}")
    conn.close()


class Workload:
    """Two writers; every transaction changes `accounts` and `mirror` alike."""

    def __init__(self, dsn: Dsn, rows: int) -> None:
        self.dsn, self.rows = dsn, rows
        self.stop = threading.Event()
        self.commits = 0
        self.threads = [threading.Thread(target=self.run, args=(i,), daemon=True)
                        for i in range(2)]

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def finish(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join()

    def run(self, seed: int) -> None:
        rng, conn = random.Random(seed), connect(self.dsn, autocommit=False)
        while not self.stop.is_set():
            try:
                self.one(conn, rng)
                conn.commit()
                self.commits += 1
            except pymysql.err.OperationalError:
                conn.rollback()  # deadlock or lock wait: the transaction did not happen
            time.sleep(0.002)
        conn.close()

    def one(self, conn: pymysql.connections.Connection, rng: random.Random) -> None:
        key = rng.randrange(1, self.rows + 1)
        with conn.cursor() as cur:
            op = rng.choice(("insert", "update", "update", "delete"))
            if op == "insert":
                cur.execute("INSERT INTO accounts (name, score) VALUES ('new', %s)", (key,))
                cur.execute("INSERT INTO mirror (id, name, score) VALUES (%s, 'new', %s)",
                            (cur.lastrowid, key))
            elif op == "update":
                for t in ("accounts", "mirror"):
                    cur.execute(f"UPDATE {t} SET score = score + 1 WHERE id = %s", (key,))
            else:
                for t in ("accounts", "mirror"):
                    cur.execute(f"DELETE FROM {t} WHERE id = %s", (key,))


def verify(dsn: Dsn) -> bool:
    conn = connect(dsn)
    with conn.cursor() as cur:
        query = "SELECT id, name, score, payload FROM {} ORDER BY id"
        cur.execute(query.format("accounts"))
        got: tuple[tuple[Any, ...], ...] = cur.fetchall()
        cur.execute(query.format("mirror"))
        want: tuple[tuple[Any, ...], ...] = cur.fetchall()
        cur.execute("SELECT COUNT(*) FROM accounts WHERE note = 'migrated'")
        noted = cur.fetchone()[0]
    conn.close()
    log.info("accounts: %d rows, mirror: %d rows, rows with the new column: %d",
             len(got), len(want), noted)
    return got == want


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=200_000)
    args = parser.parse_args()
    configure_logging(False, "text")
    with LocalServer() as server:
        dsn = server.dsn
        log.info("throwaway server at %s:%d; seeding %d rows", dsn.host, dsn.port, args.rows)
        seed(dsn, args.rows)
        workload = Workload(dsn, args.rows)
        workload.start()
        log.info("writers running; migrating demo.accounts: %s", ALTER)
        try:
            result = migrate(MigrationConfig(dsn=dsn, database="demo", table="accounts",
                                             alter=ALTER, repair=False,
                                             tuning=Tuning(progress_interval=1.0)))
            time.sleep(0.5)  # writers keep writing into the new table
        finally:
            workload.finish()
        same = verify(dsn)
        log.info("migration took %.1fs, writes blocked %.3fs at cutover; %d writer "
                 "transactions committed", result.seconds, result.write_block_seconds,
                 workload.commits)
        log.info("RESULT: %s", "accounts matches the writers' record row for row" if same
                 else "MISMATCH between accounts and the writers' record")
        return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())

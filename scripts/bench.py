"""The benchmark behind scripts/bench: onlineddl against the offline ALTER and peers.

Creates its own throwaway server and tables, measures each comparison in the same run,
and prints a table. Writers run in separate processes so they do not share onlineddl's
interpreter; onlineddl runs as a subprocess so its peak memory can be read.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pymysql

from onlineddl.config import Dsn, Tuning
from onlineddl.testing.localserver import LocalServer
from onlineddl.testing.seedrows import numbers

if TYPE_CHECKING:  # the engine's modules are imported where the applier is measured
    from multiprocessing.context import Process
    from multiprocessing.queues import Queue
    from multiprocessing.synchronize import Event

    from onlineddl.applier import Applier
    from onlineddl.db import Session
    from onlineddl.flavor import BinlogPosition, MySQL

# (start time, latency) of each committed writer statement, in seconds
Latencies = list[tuple[float, float]]

TABLE = ("CREATE TABLE {t} (id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, "
         "name VARCHAR(64) NOT NULL, v INT NOT NULL, created DATETIME NOT NULL, "
         "payload VARBINARY(32), note VARCHAR(40)) ENGINE=InnoDB")
SEED = ("INSERT INTO {t} (id, name, v, created, payload, note) SELECT seq, "
        "CONCAT('name-', seq), seq, '2024-01-01' + INTERVAL seq SECOND, UNHEX(MD5(seq)), "
        "REPEAT('x', 30) FROM {numbers}")


def connect(dsn: Dsn, db: str | None = "bench", autocommit: bool = True
            ) -> pymysql.connections.Connection:
    return pymysql.connect(host=dsn.host, port=dsn.port, user=dsn.user, password=dsn.password,
                           database=db, autocommit=autocommit)


def run_sql(dsn: Dsn, *statements: str) -> float:
    conn = connect(dsn)
    started = time.monotonic()
    with conn.cursor() as cur:
        for s in statements:
            cur.execute(s)
    conn.close()
    return time.monotonic() - started


def seed(dsn: Dsn, table: str, rows: int) -> None:
    run_sql(dsn, f"DROP TABLE IF EXISTS {table}", TABLE.format(t=table))
    step = 500_000
    for lo in range(1, rows + 1, step):
        run_sql(dsn, SEED.format(t=table, numbers=numbers(min(rows, lo + step - 1), lo)))
    run_sql(dsn, f"ANALYZE TABLE {table}")
    settle(dsn)


def settle(dsn: Dsn, timeout: float = 60) -> None:
    """Let the server write out the seed's dirty pages before a measurement, so no tool
    pays for the previous step's I/O (the first run on a fresh server took 3x as long)."""
    conn = connect(dsn)
    with conn.cursor() as cur:
        cur.execute("SELECT @@GLOBAL.innodb_max_dirty_pages_pct")
        row = cur.fetchone()
        cur.execute("SET GLOBAL innodb_max_dirty_pages_pct = 0")
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                cur.execute("SHOW GLOBAL STATUS LIKE 'Innodb_buffer_pool_pages_dirty'")
                dirty = cur.fetchone()
                if dirty is None or int(dirty[1]) < 100:
                    break
                time.sleep(0.2)
        finally:
            cur.execute("SET GLOBAL innodb_max_dirty_pages_pct = %s", (row[0] if row else 90,))
    conn.close()


def onlineddl(dsn: Dsn, table: str, alter: str, options: tuple[str, ...] = ()
              ) -> tuple[float, float]:
    """Run the CLI; return (seconds, peak RSS in MB of that process). Its log goes to
    <tmp>/onlineddl-bench-<table>.log, to see where the time went."""
    args = [sys.executable, "-m", "onlineddl", "migrate", "--host", dsn.host, "--port",
            str(dsn.port), "--user", dsn.user, "--database", "bench", "--table", table,
            "--alter", alter, "--drop-old", "--progress-interval", "2", *options]
    log_path = os.path.join(tempfile.gettempdir(), f"onlineddl-bench-{table}.log")
    started = time.monotonic()
    with open(log_path, "w") as log_file:
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=log_file,
                                env=dict(os.environ, ONLINEDDL_PASSWORD=dsn.password))
        # Peak RSS from the kernel's high-water mark, read while it runs: the rusage of a
        # child also counts the parent's pages it held between fork and exec.
        peak = 0
        while proc.poll() is None:
            peak = max(peak, high_water_kb(proc.pid))
            time.sleep(0.05)
    seconds = time.monotonic() - started
    if proc.returncode != 0:
        with open(log_path) as log_file:
            raise SystemExit(f"onlineddl failed on {table}:\n{log_file.read()[-3000:]}")
    return seconds, peak / 1024


def high_water_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def pt_osc(dsn: Dsn, table: str, alter: str) -> float | None:
    tool = shutil.which("pt-online-schema-change")
    if tool is None:
        return None
    started = time.monotonic()
    done = subprocess.run(
        [tool, "--alter", alter, f"D=bench,t={table},h={dsn.host},P={dsn.port},u={dsn.user}",
         "--execute", "--no-check-replication-filters", "--recursion-method=none",
         "--no-drop-old-table", "--chunk-time=0.5", "--set-vars=lock_wait_timeout=5"],
        capture_output=True, text=True)
    if done.returncode != 0:
        print(f"pt-online-schema-change failed: {done.stderr[-1000:]}", file=sys.stderr)
        return None
    return time.monotonic() - started


# --- writers (separate processes) -------------------------------------------------------

def writer(dsn: Dsn, table: str, id_max: int, stop: Event, out: Queue[Latencies],
           seed_: int) -> None:
    rng = random.Random(seed_)
    conn = connect(dsn, autocommit=True)
    lat: Latencies = []
    with conn.cursor() as cur:
        while not stop.is_set():
            key = rng.randrange(1, id_max)
            op = rng.random()
            started = time.monotonic()
            try:
                if op < 0.3:
                    cur.execute(f"INSERT INTO {table} (name, v, created, payload, note) "
                                "VALUES ('w', %s, NOW(), 'p', 'n')", (key,))
                elif op < 0.85:
                    cur.execute(f"UPDATE {table} SET v = v + 1 WHERE id = %s", (key,))
                else:
                    cur.execute(f"DELETE FROM {table} WHERE id = %s", (key,))
            except pymysql.err.MySQLError:
                continue  # deadlock/lock wait: counted as not committed
            lat.append((started, time.monotonic() - started))
    out.put(lat)
    conn.close()


@dataclass
class Load:
    dsn: Dsn
    table: str
    id_max: int
    n: int = 4
    stop: Event = field(default_factory=mp.Event)
    out: Queue[Latencies] = field(default_factory=mp.Queue)
    procs: list[Process] = field(default_factory=list)

    def start(self) -> None:
        for i in range(self.n):
            p = mp.Process(target=writer, args=(self.dsn, self.table, self.id_max, self.stop,
                                                self.out, i))
            p.start()
            self.procs.append(p)

    def finish(self) -> list[tuple[float, float]]:
        self.stop.set()
        samples = [s for _ in self.procs for s in self.out.get()]
        for p in self.procs:
            p.join()
        return samples


def summarize(samples: list[tuple[float, float]], t0: float, t1: float) -> dict[str, float]:
    inside = [lat for start, lat in samples if t0 <= start <= t1]
    if not inside:
        return {"tps": 0.0, "p99_ms": 0.0, "max_ms": 0.0}
    inside.sort()
    return {"tps": len(inside) / (t1 - t0),
            "p99_ms": 1000 * inside[int(0.99 * (len(inside) - 1))],
            "max_ms": 1000 * inside[-1]}


def under_load(dsn: Dsn, rows: int, tool: str, options: tuple[str, ...] = ()
               ) -> dict[str, float]:
    table = f"load_{tool.replace('-', '_')}"
    seed(dsn, table, rows)
    load = Load(dsn, table, rows)
    load.start()
    time.sleep(1.0)                        # warm up
    base0 = time.monotonic()
    time.sleep(4.0)                        # baseline window: no migration
    base1 = time.monotonic()
    alter = "ADD COLUMN extra INT NULL"
    seconds = (onlineddl(dsn, table, alter, options)[0] if tool == "onlineddl"
               else pt_osc(dsn, table, alter))
    mig1 = time.monotonic()
    samples = load.finish()
    base = summarize(samples, base0, base1)
    during = summarize(samples, base1, mig1)
    return {"seconds": seconds or float("nan"), "share": during["tps"] / base["tps"],
            "base_tps": base["tps"], "tps": during["tps"], "base_p99_ms": base["p99_ms"],
            "p99_ms": during["p99_ms"], "max_ms": during["max_ms"]}


# --- the applier alone --------------------------------------------------------------------

def applier_throughput(dsn: Dsn, rows: int) -> dict[str, float]:
    """Row changes decoded and applied per second from a binlog backlog, and the lag
    behind the binlog head with four writers."""
    from onlineddl.applier import Applier, FlushTarget
    from onlineddl.binlog import BinlogReader, TableShape, open_reader
    from onlineddl.chunker import Chunk, KeyOrder, Watermark
    from onlineddl.db import Session
    from onlineddl.flavor import detect
    from onlineddl.table import load_table

    seed(dsn, "apply_t", rows)
    run_sql(dsn, "DROP TABLE IF EXISTS apply_n", "CREATE TABLE apply_n LIKE apply_t",
            "INSERT INTO apply_n SELECT * FROM apply_t")
    control = Session(dsn, name="bench")
    flavor = detect(str(control.scalar("SELECT VERSION()")))
    info = load_table(control, "bench", "apply_t")
    start = flavor.current_position(control)
    for lo in range(1, rows + 1, 50_000):   # the backlog: one change per row
        run_sql(dsn, f"UPDATE apply_t SET v = v + 1 WHERE id BETWEEN {lo} AND {lo + 49_999}")
    end = flavor.current_position(control)
    cols = tuple(c.name for c in info.columns)
    # As a migration builds it for this table: an integer key, no other UNIQUE key.
    target = FlushTarget("bench", "apply_t", "apply_n", tuple(f"`{c}`" for c in cols), cols,
                         info.key, other_unique=False, integer_key=True)
    shape = TableShape.of(info)
    watermark = Watermark()
    watermark.completed(Chunk(None, None))

    def reader(pos: BinlogPosition) -> BinlogReader:
        return open_reader(dsn, flavor, shape, pos, random.randint(1 << 30, 1 << 31))

    applier = Applier(dsn=dsn, flavor=flavor, reader_factory=reader, target=target,
                      key_order=KeyOrder(info.key_columns), watermark=watermark,
                      tuning=Tuning(), start=start)
    started = time.monotonic()
    applier.start()
    applier.wait_for(end, 600, "bench")
    while applier.backlog():
        time.sleep(0.01)
    rate = rows / (time.monotonic() - started)
    lags = lag_under_writers(dsn, applier, flavor, control, rows)
    applier.stop()
    control.close()
    return {"rate": rate, "lag_avg_s": statistics.mean(lags), "lag_max_s": max(lags)}


def lag_under_writers(dsn: Dsn, applier: Applier, flavor: MySQL, control: Session,
                      rows: int) -> list[float]:
    load = Load(dsn, "apply_t", rows)
    load.start()
    lags: list[float] = []
    deadline = time.monotonic() + 6
    time.sleep(1.0)
    while time.monotonic() < deadline:
        head, taken = flavor.current_position(control), time.monotonic()
        while not applier.received_position().reached(head) or applier.backlog() > 2000:
            time.sleep(0.005)
        lags.append(time.monotonic() - taken)
        time.sleep(0.2)
    load.finish()
    return lags


# --- the report ---------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000, help="idle and scale base")
    parser.add_argument("--load-rows", type=int, default=500_000)
    parser.add_argument("--scale", type=int, default=4, help="scale factor (x --rows)")
    parser.add_argument("--skip", default="",
                        help="comma list: idle,load,applier,scale (sections), pt-osc, "
                             "nice (the --nice-ratio run under load)")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    with LocalServer() as server:
        dsn = server.dsn
        conn = connect(dsn, db=None)
        conn.cursor().execute("CREATE DATABASE IF NOT EXISTS bench")
        conn.close()
        print("| measurement | result |\n|---|---|", flush=True)
        if "idle" not in skip:
            show(idle(dsn, args.rows))
        if "load" not in skip:
            show(loaded(dsn, args.load_rows, skip))
        if "applier" not in skip:
            a = applier_throughput(dsn, args.load_rows)
            show([f"| applier | {a['rate']:,.0f} row changes/s from a backlog; lag with 4 "
                  f"writers avg {a['lag_avg_s']:.2f}s max {a['lag_max_s']:.2f}s |"])
        if "scale" not in skip:
            show(scale(dsn, args.rows, args.scale))
    return 0


def show(lines: list[str]) -> None:
    """Each result as soon as it is measured, so a long run shows progress."""
    print("\n".join(lines), flush=True)


def idle(dsn: Dsn, rows: int) -> list[str]:
    seed(dsn, "idle_o", rows)
    ours, rss = onlineddl(dsn, "idle_o", "ADD COLUMN extra INT NULL")
    seed(dsn, "idle_a", rows)
    offline = run_sql(dsn, "ALTER TABLE idle_a ADD COLUMN extra INT NULL, ALGORITHM=COPY")
    lines = [f"| idle {rows:,} rows: onlineddl | {ours:.1f}s ({ours / offline:.2f}x the "
             f"offline ALTER), peak RSS {rss:.0f} MB |",
             f"| idle {rows:,} rows: ALTER TABLE ... ALGORITHM=COPY | {offline:.1f}s |"]
    seed(dsn, "idle_p", rows)
    pt = pt_osc(dsn, "idle_p", "ADD COLUMN extra INT NULL")
    lines.append(f"| idle {rows:,} rows: pt-online-schema-change | "
                 + (f"{pt:.1f}s ({pt / offline:.2f}x) |" if pt else "not installed |"))
    return lines


# Under load: the default run, the same with the copier resting as long as it copies
# (--nice-ratio 1, the knob that trades total time for the writers' share), then the peer.
LOAD_RUNS = (("onlineddl", ()), ("onlineddl", ("--nice-ratio", "1")), ("pt-osc", ()))


def loaded(dsn: Dsn, rows: int, skip: set[str]) -> list[str]:
    lines = []
    for tool, options in LOAD_RUNS:
        if tool in skip or (options and "nice" in skip):
            continue
        if tool == "pt-osc" and not shutil.which("pt-online-schema-change"):
            lines.append("| under load: pt-online-schema-change | not installed |")
            continue
        r = under_load(dsn, rows, tool, options)
        lines.append(
            f"| under load {rows:,} rows, 4 writers: {' '.join((tool, *options))} | "
            f"total {r['seconds']:.1f}s; "
            f"writers kept {100 * r['share']:.0f}% of {r['base_tps']:,.0f} tx/s; p99 "
            f"{r['p99_ms']:.1f} ms (baseline {r['base_p99_ms']:.1f} ms, "
            f"{r['p99_ms'] / max(r['base_p99_ms'], 1e-9):.1f}x); longest stall "
            f"{r['max_ms']:.0f} ms |")
    return lines


def scale(dsn: Dsn, rows: int, factor: int) -> list[str]:
    seed(dsn, "scale_1", rows)
    t1, rss1 = onlineddl(dsn, "scale_1", "ADD COLUMN extra INT NULL")
    run_sql(dsn, "DROP TABLE scale_1")
    seed(dsn, "scale_n", rows * factor)
    tn, rssn = onlineddl(dsn, "scale_n", "ADD COLUMN extra INT NULL")
    return [f"| scale: {rows:,} vs {rows * factor:,} rows | {t1:.1f}s vs {tn:.1f}s "
            f"({tn / t1:.2f}x); peak RSS {rss1:.0f} MB vs {rssn:.0f} MB |"]


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    sys.exit(main())

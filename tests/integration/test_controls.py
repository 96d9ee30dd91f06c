"""Operator controls against real runs: pause, throttles, abort, postpone, chunk time,
hooks, metrics, dry run and instant DDL, replica lag.

In-process runs (`Migration` in a thread) are steered through their real control socket;
CLI runs are subprocesses. Nothing waits on a timer: moments are made with fault point
callbacks, and conditions are polled with a bounded deadline.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import (
    Conn,
    cli_env,
    columns,
    connect,
    external_server_lacks,
    kept_tables,
    migrate_command,
    scalar,
    tables,
)
from workload import IntModel, assert_same_rows, make_tables

from onlineddl import commands, control, faults
from onlineddl.config import Dsn, HookConfig, MigrationConfig, Throttling, Tuning
from onlineddl.errors import Aborted, ConnectionFailed
from onlineddl.migration import Migration, Result

ROWS = 3000
ALTER = "ADD COLUMN added INT NOT NULL DEFAULT 1"
COLUMNS = ["id", "name", "v", "data", "note"]
SMALL = Tuning(chunk_rows_initial=100, chunk_rows_min=50, chunk_rows_max=100,
               progress_interval=0.5, checkpoint_interval=0.5)


@pytest.fixture(autouse=True)
def _info_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)   # changes are logged at INFO; tests read the log


@pytest.fixture
def conn(conn: Conn) -> Conn:
    """conftest's connection, with the table and its mirror seeded."""
    make_tables(conn, IntModel(id_max=ROWS), ROWS)
    return conn


def config(server: Dsn, db: str, sock: str | None = None, **kw: Any) -> MigrationConfig:
    return MigrationConfig(dsn=server, database=db, table="t", alter=ALTER, repair=False,
                           tuning=kw.pop("tuning", SMALL), control_socket=sock, **kw)


class Run:
    """A migration in a background thread."""

    def __init__(self, cfg: MigrationConfig) -> None:
        self.migration = Migration(cfg)
        self.result: Result | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.result = self.migration.run()
        except BaseException as exc:  # handed to the test thread by join()
            self.error = exc

    def join(self, timeout: float = 120) -> Result:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the run did not finish in time"
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


def wait_until(check: Callable[[], Any], what: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def status(path: str) -> dict[str, Any]:
    try:
        return dict(json.loads(control.send(path, "status json")))
    except ConnectionFailed:  # not listening yet (or any more)
        return {}





def update_both(conn: Conn, where: str, v: int) -> None:
    with conn.cursor() as cur:
        for name in ("t", "mirror"):
            cur.execute(f"UPDATE `{name}` SET v = %s WHERE {where}", (v,))


def on_chunk(n: int, action: Callable[[], object]) -> None:
    """Run `action` in the run's thread at the n-th completed chunk."""
    seen = {"n": 0}

    def hit() -> None:
        seen["n"] += 1
        if seen["n"] == n:
            action()

    faults.register("after_chunk", hit)


# --- pause, throttles, abort ------------------------------------------------------------


def test_pause_stops_the_copier_while_the_applier_applies(
        server: Dsn, db: str, conn: Conn, sock: str, caplog: pytest.LogCaptureFixture) -> None:
    on_chunk(3, lambda: control.send(sock, "pause"))
    run = Run(config(server, db, sock))
    wait_until(lambda: status(sock).get("throttle_reason", "").startswith("paused"),
               "the copier to wait")
    # Writes to copied rows reach the shadow during the pause: the applier applies...
    update_both(conn, "id <= 20", -1)
    wait_until(lambda: scalar(conn, "SELECT COUNT(*) FROM _t_new WHERE id <= 20 AND v = -1")
               == 20, "the applier to apply during the pause")
    copied, shadow_rows = status(sock)["rows_copied"], scalar(conn, "SELECT COUNT(*) FROM _t_new")
    update_both(conn, "id BETWEEN 21 AND 40", -2)
    wait_until(lambda: scalar(conn, "SELECT COUNT(*) FROM _t_new WHERE id BETWEEN 21 AND 40 "
                                    "AND v = -2") == 20, "the second batch to be applied")
    # ... while the copier copies nothing.
    assert status(sock)["rows_copied"] == copied < ROWS
    assert scalar(conn, "SELECT COUNT(*) FROM _t_new") == shadow_rows < ROWS
    assert status(sock)["paused"] is True
    assert control.send(sock, "resume").startswith("ok")
    result = run.join()
    assert result.rows_copied == ROWS
    assert_same_rows(conn, "t", "mirror", COLUMNS, ["id"])
    assert "copier waits: paused" in caplog.text
    assert "ctl pause: copier paused" in caplog.text and "ctl resume" in caplog.text


def test_flag_file_and_max_load_hold_the_copier_and_abort_is_resumable(
        server: Dsn, db: str, conn: Conn, sock: str, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    flag = tmp_path / "throttle"
    flag.touch()
    # Threads_running is at least 1 (the check itself), so this load limit always holds.
    throttling = Throttling(flag_file=str(flag), max_load=(("Threads_running", 0),),
                            interval=0.1)
    run = Run(config(server, db, sock, throttling=throttling))
    wait_until(lambda: status(sock).get("throttle_reason", "").startswith("flag-file"),
               "the flag file to hold the copier")
    flag.unlink()
    held = wait_until(lambda: status(sock).get("throttle_reason", "").startswith("max-load")
                      and status(sock), "--max-load to hold the copier")
    assert "Threads_running=" in held["throttle_reason"]
    assert held["rows_copied"] < ROWS
    assert "copier waits: flag-file" in caplog.text
    assert "copier waits: max-load: Threads_running=" in caplog.text
    update_both(conn, "id > 2900", 77)          # rows the copier has not reached yet
    control.send(sock, "abort")
    with pytest.raises(Aborted, match="ctl abort"):
        run.join()
    assert not os.path.exists(sock)
    info = json.loads(commands.status(server, db, "t", as_json=True))
    assert info["running"] is False and info["phase"] == "copy"
    assert "_t_new" in info["artifacts"]
    result = Migration(config(server, db, resume=True)).run()
    assert result.resumed
    assert_same_rows(conn, "t", "mirror", COLUMNS, ["id"])


def cli(server: Dsn, db: str, *extra: str, alter: str = ALTER, fault: str | None = None
        ) -> subprocess.CompletedProcess[str]:
    args = migrate_command(server, db, alter, "--chunk-size", "200", "--chunk-size-max",
                           "200", *extra)
    return subprocess.run(args, env=cli_env(server, fault), capture_output=True, text=True,
                          timeout=120)


def test_critical_load_aborts_resumably_and_runs_the_failure_hook(
        server: Dsn, db: str, conn: Conn, tmp_path: Path) -> None:
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    failure = hooks / "failure"
    failure.write_text(f"#!/bin/sh\nenv | grep ^ONLINEDDL_ > {tmp_path}/failure.env\n")
    failure.chmod(0o755)
    stopped = cli(server, db, "--critical-load", "Threads_running=0", "--hooks-dir",
                  str(hooks))
    assert stopped.returncode == 11, stopped.stderr[-3000:]
    assert "critical load on the primary: Threads_running=" in stopped.stderr
    assert "--resume" in stopped.stderr
    env = dict(line.split("=", 1) for line in
               (tmp_path / "failure.env").read_text().splitlines())
    assert env["ONLINEDDL_EVENT"] == "failure"
    assert env["ONLINEDDL_EXIT_CODE"] == "11"
    assert "critical load" in env["ONLINEDDL_ERROR"]
    assert "_t_chkpnt" in tables(conn)
    resumed = cli(server, db, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_rows(conn, "t", "mirror", COLUMNS, ["id"])
    assert "added" in columns(conn)


def test_a_killed_runs_socket_does_not_block_the_resume(server: Dsn, db: str,
                                                        conn: Conn) -> None:
    path = control.default_socket_path(db, "t")
    crashed = cli(server, db, fault="after_chunk:2")
    assert crashed.returncode == 137, crashed.stderr[-2000:]
    assert f"control socket: {path}" in crashed.stderr
    assert os.path.exists(path)                          # left behind by the kill
    resumed = cli(server, db, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "removed the stale control socket" in resumed.stderr
    assert not os.path.exists(path)
    assert_same_rows(conn, "t", "mirror", COLUMNS, ["id"])


# --- postpone ---------------------------------------------------------------------------


def test_postpone_by_flag_file_then_ctl_holds_the_cutover_until_unpostpone(
        server: Dsn, db: str, conn: Conn, sock: str, tmp_path: Path) -> None:
    flag = tmp_path / "postpone"
    flag.touch()
    run = Run(config(server, db, sock, postpone_flag_file=str(flag)))
    wait_until(lambda: status(sock).get("phase") == "postponed", "the postponed phase")
    assert "exists" in status(sock)["postpone_reason"]
    update_both(conn, "id <= 10", 5)             # the run stays in sync while it waits
    wait_until(lambda: scalar(conn, "SELECT COUNT(*) FROM _t_new WHERE id <= 10 AND v = 5")
               == 10, "the applier to apply while postponed")
    control.send(sock, "postpone")
    flag.unlink()                                # no longer enough: ctl postpone holds
    wait_until(lambda: "ctl postpone" in status(sock).get("postpone_reason", ""),
               "ctl postpone to hold the cutover")
    assert status(sock)["phase"] == "postponed"
    assert "added" not in columns(conn)
    human = ctl_cli("--control-socket", sock, "status")
    assert human.returncode == 0 and "phase: postponed" in human.stdout
    assert "postponed: True" in human.stdout
    as_json = ctl_cli("--control-socket", sock, "status", "--json")
    assert json.loads(as_json.stdout)["postponed"] is True
    refused = ctl_cli("--control-socket", sock, "chunk-time=fast")
    assert refused.returncode == 2 and "positive number" in refused.stderr
    nobody = ctl_cli("--database", db, "--table", "nothing_here", "status")
    assert nobody.returncode == 3 and "no onlineddl run is listening" in nobody.stderr
    assert ctl_cli("--control-socket", sock, "unpostpone").stdout.startswith("ok: ")
    run.join()
    assert "added" in columns(conn)
    assert_same_rows(conn, "t", "mirror", COLUMNS, ["id"])


def ctl_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "onlineddl", "ctl", *args],
                          capture_output=True, text=True, timeout=60)


def test_unpostpone_overrides_the_flag_file(server: Dsn, db: str, conn: Conn, sock: str,
                                            tmp_path: Path) -> None:
    flag = tmp_path / "postpone"
    flag.touch()
    run = Run(config(server, db, sock, postpone_flag_file=str(flag)))
    wait_until(lambda: status(sock).get("phase") == "postponed", "the postponed phase")
    control.send(sock, "unpostpone")
    run.join()
    assert flag.exists() and "added" in columns(conn)


# --- tuning a live run ------------------------------------------------------------------


def test_ctl_chunk_time_resizes_the_chunks(server: Dsn, db: str, conn: Conn, sock: str,
                                           caplog: pytest.LogCaptureFixture) -> None:
    sizes: list[int] = []
    holder: dict[str, Migration] = {}
    count = {"n": 0}

    def at_chunk() -> None:
        count["n"] += 1
        sizes.append(holder["m"].progress.chunk_size)
        if count["n"] == 3:
            control.send(sock, "chunk-time=0.0001")

    faults.register("after_chunk", at_chunk)
    tuning = Tuning(chunk_rows_initial=400, chunk_rows_min=50, chunk_rows_max=400)
    run = Run(config(server, db, sock, tuning=tuning))
    holder["m"] = run.migration
    run.join()
    assert max(sizes[1:3]) == 400        # before: sized for the default 0.5 s
    assert sizes[-1] == 50               # after: as small as allowed
    assert "ctl chunk-time: chunk time 0.5s -> 0.0001s" in caplog.text


def test_nice_ratio_rests_between_chunks_until_ctl_sets_it_to_0(
        server: Dsn, db: str, conn: Conn, sock: str, caplog: pytest.LogCaptureFixture) -> None:
    rested: list[float] = []
    holder: dict[str, Migration] = {}

    def at_chunk() -> None:   # runs before the rest that follows this chunk
        rested.append(holder["m"].progress.rested_seconds)
        if len(rested) == 4:
            assert status(sock)["nice_ratio"] == 2.0
            control.send(sock, "nice-ratio=0")

    faults.register("after_chunk", at_chunk)
    tuning = Tuning(chunk_rows_initial=400, chunk_rows_min=400, chunk_rows_max=400,
                    nice_ratio=2.0)
    run = Run(config(server, db, sock, tuning=tuning))
    holder["m"] = run.migration
    run.join()
    assert len(rested) >= 6
    assert rested[0] == 0 and 0 < rested[1] < rested[2] < rested[3]
    assert rested[3] == rested[-1] == run.migration.progress.rested_seconds
    assert "ctl nice-ratio: nice ratio 2 -> 0" in caplog.text
    assert_same_rows(conn, "t", "mirror", COLUMNS, ["id"])


# --- hooks ------------------------------------------------------------------------------


def write_hook(directory: Path, name: str, body: str) -> None:
    path = directory / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)


def read_env(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


def test_hooks_get_their_variables_and_a_failing_before_cutover_hook_postpones(
        server: Dsn, db: str, conn: Conn, sock: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONLINEDDL_PASSWORD", "s3cret-never-shown")
    hooks, out = tmp_path / "hooks", tmp_path / "out"
    hooks.mkdir()
    out.mkdir()
    gate = tmp_path / "window-open"
    for event in ("startup", "copy-done", "success", "status"):
        write_hook(hooks, event, f"env > {out}/{event}.env")
    write_hook(hooks, "before-cutover", f"echo run >> {out}/before.count\n"
                                        f"test -f {gate} || {{ echo closed; exit 1; }}")
    cfg = config(server, db, sock, hooks=HookConfig(directory=str(hooks), timeout=10,
                                                    status_interval=0.2,
                                                    retry_interval=0.2))
    run = Run(cfg)
    wait_until(lambda: "before-cutover hook failed" in status(sock).get(
        "postpone_reason", ""), "the failing hook to postpone the cutover")
    wait_until(lambda: len((out / "before.count").read_text().split()) >= 2,
               "the hook to be run again")
    assert "added" not in columns(conn)
    gate.touch()
    run.join()
    assert "added" in columns(conn)
    startup = read_env(out / "startup.env")
    assert startup["ONLINEDDL_EVENT"] == "startup"
    assert startup["ONLINEDDL_DATABASE"] == db
    assert startup["ONLINEDDL_TABLE"] == "t"
    assert startup["ONLINEDDL_ALTER"] == ALTER
    assert startup["ONLINEDDL_CONTROL_SOCKET"] == sock
    assert "s3cret-never-shown" not in (out / "startup.env").read_text()
    assert "ONLINEDDL_PASSWORD" not in startup
    done = read_env(out / "copy-done.env")
    assert done["ONLINEDDL_ROWS_COPIED"] == str(ROWS)
    assert done["ONLINEDDL_PHASE"] == "copy"
    assert float(done["ONLINEDDL_ELAPSED_SECONDS"]) > 0
    assert int(done["ONLINEDDL_ROWS_ESTIMATE"]) >= ROWS
    success = read_env(out / "success.env")
    assert success["ONLINEDDL_PHASE"] == "done"
    assert read_env(out / "status.env")["ONLINEDDL_EVENT"] == "status"


def test_a_failing_startup_hook_stops_before_anything_is_created(
        server: Dsn, db: str, conn: Conn, tmp_path: Path) -> None:
    write_hook(tmp_path, "startup", "echo not in the maintenance window; exit 1")
    with pytest.raises(Aborted, match="startup hook failed"):
        Migration(config(server, db, hooks=HookConfig(directory=str(tmp_path)))).run()
    assert tables(conn) == {"t", "mirror"}


# --- metrics ------------------------------------------------------------------------------


def scrape(port: int) -> dict[tuple[str, str], float]:
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, s.labels.get("phase", s.labels.get("reason", "")))] = s.value
    return out


def test_metrics_endpoint_parses_and_moves(server: Dsn, db: str, conn: Conn) -> None:
    scrapes: list[dict[tuple[str, str], float]] = []
    holder: dict[str, Migration] = {}
    count = {"n": 0}

    def at_chunk() -> None:
        count["n"] += 1
        if count["n"] in (2, 8):
            scrapes.append(scrape(holder["m"].metrics.port))

    faults.register("after_chunk", at_chunk)
    run = Run(config(server, db, metrics_port=0))
    holder["m"] = run.migration
    run.join()
    first, second = scrapes
    assert second[("onlineddl_rows_copied", "")] > first[("onlineddl_rows_copied", "")] > 0
    assert first[("onlineddl_phase", "copy")] == 1.0
    assert first[("onlineddl_phase", "cutover")] == 0.0
    # From the table's statistics, which InnoDB samples: near ROWS, not exactly (2999 seen).
    assert ROWS / 2 <= first[("onlineddl_rows_estimate", "")] <= ROWS * 2
    for name in ("onlineddl_applier_backlog_keys", "onlineddl_applier_lag_seconds",
                 "onlineddl_throttled", "onlineddl_cutover_attempts",
                 "onlineddl_cutover_lock_seconds", "onlineddl_eta_seconds"):
        assert (name, "") in first, name


# --- dry run and instant DDL ----------------------------------------------------------


def fingerprint(conn: Conn) -> tuple[Any, ...]:
    with conn.cursor() as cur:
        cur.execute("SHOW CREATE TABLE t")
        create = cur.fetchone()[1]
        cur.execute("CHECKSUM TABLE t")
        checksum = cur.fetchone()[1]
    return tables(conn), create, checksum


@pytest.mark.parametrize("alter, instant", [
    ("ADD COLUMN note2 VARCHAR(10) NULL", "Instant: yes"),
    ("ADD INDEX v_idx (v), MODIFY name VARCHAR(80) CHARACTER SET utf8mb4 NULL",
     "Instant: no"),
])
def test_dry_run_prints_the_plan_and_changes_nothing(server: Dsn, db: str, conn: Conn,
                                                     alter: str, instant: str) -> None:
    before = fingerprint(conn)
    done = cli(server, db, "--dry-run", "--nice-ratio", "1.5", alter=alter)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "(with the rests of --nice-ratio 1.5)" in out
    assert "nothing was changed" in out
    assert "CREATE TABLE `_t_new`" in out
    assert "Column mapping (old -> new):" in out and "  id -> id" in out
    assert "chunks: about" in out and "first chunk: 200 rows" in out
    assert "rows (estimate from statistics): ~" in out and "sample: copied 200 rows" in out
    assert instant in out
    if "note2" in alter:
        assert "(new) -> note2" in out
    else:
        assert "  name -> name  (varchar(64) -> varchar(80))" in out
    assert fingerprint(conn) == before


def test_allow_instant_applies_in_place_and_falls_back_to_a_copy(
        server: Dsn, db: str, conn: Conn) -> None:
    done = cli(server, db, "--allow-instant", alter="ADD COLUMN note2 INT NULL")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "applied in place with ALGORITHM=INSTANT" in done.stderr
    assert tables(conn) == {"t", "mirror"}                 # no shadow, no old table
    assert columns(conn)[-1] == "note2"
    assert_same_rows(conn, "t", "mirror", COLUMNS, ["id"])
    copied = cli(server, db, "--allow-instant", alter="ADD INDEX v_idx (v)")
    assert copied.returncode == 0, copied.stderr[-3000:]
    assert "cannot do this ALTER instantly; copying" in copied.stderr
    assert "_t_old_*" in kept_tables(conn)


def test_allow_instant_waits_for_the_postpone_flag(server: Dsn, db: str, conn: Conn,
                                                  sock: str, tmp_path: Path) -> None:
    """Applying the ALTER is the cutover of an instant run: the window still decides."""
    flag = tmp_path / "postpone"
    flag.touch()
    run = Run(config(server, db, sock, allow_instant=True, postpone_flag_file=str(flag)))
    wait_until(lambda: status(sock).get("phase") == "postponed", "the postponed phase")
    assert "added" not in columns(conn)
    flag.unlink()
    result = run.join()
    assert result.instant and result.rows_copied == 0
    assert "added" in columns(conn) and tables(conn) == {"t", "mirror"}


# --- replica lag ----------------------------------------------------------------------


@pytest.fixture
def replica(server: Dsn) -> Iterator[Any]:
    """A second local MariaDB replicating from the test server, not started yet (the
    test server must be MariaDB too: mark the test mariadb_only)."""
    from onlineddl.testing.localserver import LocalServer, MariaDB, find_flavor

    if not isinstance(find_flavor(), MariaDB):
        external_server_lacks("the replica set-up uses a local MariaDB server")
    probe = connect(server)

    class Replica(LocalServer):
        def argv(self) -> list[str]:
            return [*super().argv(), "--report-host=127.0.0.1", f"--report-port={self.port}"]

    with Replica(server_id=77) as srv:
        conn = connect(srv.dsn)
        with conn.cursor() as cur:
            cur.execute("CHANGE MASTER TO MASTER_HOST=%s, MASTER_PORT=%s, MASTER_USER=%s, "
                        "MASTER_PASSWORD=%s, MASTER_USE_GTID=slave_pos",
                        (server.host, server.port, server.user, server.password))
            # Replicate nothing but the stream itself: the replica has none of the
            # test databases, and lag is all this test needs.
            cur.execute("SET GLOBAL replicate_wild_do_table = 'no_such_db.%'")
            cur.execute("SET GLOBAL gtid_slave_pos = %s",
                        (scalar(probe, "SELECT @@GLOBAL.gtid_binlog_pos"),))
        yield srv, conn
        with conn.cursor() as cur:
            cur.execute("STOP SLAVE")
        conn.close()
    probe.close()


@pytest.mark.mariadb_only  # the replica set-up speaks MariaDB's replication SQL
def test_replica_lag_holds_the_copier(server: Dsn, db: str, conn: Conn, sock: str,
                                      replica: Any) -> None:
    from onlineddl.flavor import detect
    from onlineddl.throttle import ServerThrottle

    srv, rconn = replica
    throttling = Throttling(replicas=(srv.dsn,), max_lag=5, interval=0.1)
    run = Run(config(server, db, sock, throttling=throttling))
    held = wait_until(lambda: status(sock).get("throttle_reason", "").startswith(
        "replica-lag"), "replication being stopped to hold the copier")
    assert held
    assert "replication is not running" in status(sock)["throttle_reason"]
    with rconn.cursor() as cur:
        cur.execute("START SLAVE")
    run.join()
    assert "added" in columns(conn)
    # Discovery: the replica reports its address to the primary.
    flavor = detect(scalar(conn, "SELECT VERSION()"))
    wait_until(lambda: scalar(conn, "SELECT COUNT(*) FROM information_schema.PROCESSLIST "
                                    "WHERE COMMAND LIKE 'Binlog Dump%'"), "the replica")
    found = ServerThrottle(Throttling(discover_replicas=True, interval=0.01), server, flavor,
                      lambda: 5.0)
    try:
        found.check()
        assert [r.port for r in found.replicas] == [srv.port]
        assert found.hold() is None
        with rconn.cursor() as cur:
            cur.execute("STOP SLAVE SQL_THREAD")
        hold = wait_until(found.hold, "the stopped SQL thread to be noticed")
        assert hold.kind == "replica-lag"
    finally:
        found.close()

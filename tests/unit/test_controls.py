"""Operator controls, the pure parts: option parsing, the ctl protocol and socket, hook
environments and execution, metric names, throttle decisions, progress, the chunk plan."""

from __future__ import annotations

import os
import socket
import stat
import time
from pathlib import Path
from typing import Any

import pytest

from onlineddl import control, sql
from onlineddl.chunker import Chunker
from onlineddl.config import (
    Dsn,
    HookConfig,
    MigrationConfig,
    Throttling,
    Tuning,
    parse_load,
    parse_replica,
)
from onlineddl.control import Controls, ControlServer, parse_command
from onlineddl.dryrun import chunk_count
from onlineddl.errors import Aborted, ConnectionFailed, UsageError
from onlineddl.flavor import BinlogPosition, MariaDB, MySQL, replica_lag
from onlineddl.hooks import EVENTS, HookRunner, hook_env, process_env
from onlineddl.metrics import METRIC_NAMES, PrometheusMetrics, families
from onlineddl.progress import HeadLag, Phase, Progress, Snapshot, TerminalBar, status_line
from onlineddl.throttle import CopyGate, Hold, NoThrottle, exceeded

# --- options ------------------------------------------------------------------------


def test_parse_load() -> None:
    assert parse_load("Threads_running=50") == (("Threads_running", 50),)
    assert parse_load(" Threads_running = 5 , Threads_connected=500,") == \
        (("Threads_running", 5), ("Threads_connected", 500))


@pytest.mark.parametrize("text", ["", "Threads_running", "Threads_running=x",
                                  "Threads_running=-1", "bad name=3", "a=1;DROP=2"])
def test_parse_load_refuses(text: str) -> None:
    with pytest.raises(UsageError, match="--max-load"):
        parse_load(text)


def test_parse_replica_uses_the_primary_credentials() -> None:
    primary = Dsn(host="db1", user="dba", password="pw")
    assert parse_replica("db2", primary) == Dsn(host="db2", port=3306, user="dba",
                                                password="pw")
    assert parse_replica("db2:3307", primary).port == 3307
    other = parse_replica("mysql://mon@db3:3308", primary)
    assert (other.user, other.password, other.host, other.port) == ("mon", "pw", "db3", 3308)
    with pytest.raises(UsageError):
        parse_replica("db2:port", primary)


@pytest.mark.parametrize("kw", [
    {"throttling": Throttling(max_lag=0)},
    {"throttling": Throttling(max_load=(("Threads running", 1),))},
    {"hooks": HookConfig(directory="/nonexistent/hooks")},
    {"hooks": HookConfig(timeout=0)},
    {"control_socket": "/tmp/" + "x" * 120},
    {"metrics_port": 70000},
])
def test_config_validation_of_operator_options(kw: dict[str, Any]) -> None:
    with pytest.raises(UsageError):
        MigrationConfig(dsn=Dsn(), database="d", table="t", alter="ADD c INT", **kw).validate()


# --- the ctl protocol -----------------------------------------------------------------


@pytest.mark.parametrize("line, expected", [
    ("pause", control.Command("pause")),
    ("  RESUME \n", control.Command("resume")),
    ("chunk-time=0.1", control.Command("chunk-time", 0.1)),
    ("chunk-time 2", control.Command("chunk-time", 2.0)),
    ("max-lag=1.5", control.Command("max-lag", 1.5)),
    ("status", control.Command("status")),
    ("status json", control.Command("status", as_json=True)),
    ("no-throttle", control.Command("no-throttle")),
    ("unpostpone", control.Command("unpostpone")),
    ("abort", control.Command("abort")),
    ("nice-ratio=0", control.Command("nice-ratio", 0.0)),
    ("nice-ratio 2.5", control.Command("nice-ratio", 2.5)),
])
def test_parse_command(line: str, expected: control.Command) -> None:
    assert parse_command(line) == expected


@pytest.mark.parametrize("line", ["", "bogus", "pause now", "chunk-time", "chunk-time=0",
                                  "chunk-time=-1", "max-lag=abc", "status xml",
                                  "nice-ratio", "nice-ratio=-1", "nice-ratio=101",
                                  "nice-ratio=nan"])
def test_parse_command_refuses(line: str) -> None:
    with pytest.raises(UsageError):
        parse_command(line)


def test_every_command_changes_the_state_it_names() -> None:
    c = Controls(chunk_time=0.5, max_lag=1.5)
    for line in ("pause", "throttle", "postpone", "chunk-time=0.2", "max-lag=9",
                 "nice-ratio=3"):
        c.apply(parse_command(line))
    s = c.state()
    assert (s.paused, s.throttled, s.postponed, s.chunk_time, s.max_lag, s.nice_ratio) == \
        (True, True, True, 0.2, 9.0, 3.0)
    for line in ("resume", "no-throttle", "unpostpone", "abort"):
        c.apply(parse_command(line))
    s = c.state()
    assert (s.paused, s.throttled, s.postponed, s.unpostponed, s.abort_requested) == \
        (False, False, False, True, True)


def test_postpone_reasons(tmp_path: Path) -> None:
    flag = tmp_path / "postpone"
    c = Controls(chunk_time=0.5, max_lag=1.5)
    assert c.postpone_reason(str(flag)) is None
    flag.touch()
    assert "exists" in (c.postpone_reason(str(flag)) or "")
    c.apply(parse_command("postpone"))
    assert "ctl postpone" in (c.postpone_reason(None) or "")
    c.apply(parse_command("unpostpone"))      # releases the flag file too
    assert c.postpone_reason(str(flag)) is None


def test_socket_round_trip(sock: str) -> None:
    controls = Controls(chunk_time=0.5, max_lag=1.5)
    server = ControlServer(sock, controls, lambda: {"phase": "copy"})
    server.start()
    try:
        assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600
        assert control.send(sock, "pause").startswith("ok: copier paused")
        assert controls.state().paused
        assert "phase: copy" in control.send(sock, "status")
        assert '"paused": true' in control.send(sock, "status json")
        assert "unpostpone" in control.send(sock, "help")
        with pytest.raises(UsageError, match="unknown command"):
            control.send(sock, "bogus")
    finally:
        server.close()
    assert not os.path.exists(sock)
    with pytest.raises(ConnectionFailed, match="no onlineddl run is listening"):
        control.send(sock, "status")


def test_stale_socket_is_removed_and_a_live_one_refused(sock: str) -> None:
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(sock)          # what a killed run leaves: a socket nobody listens on
    dead.close()
    assert os.path.exists(sock)
    server = ControlServer(sock, Controls(chunk_time=1, max_lag=1), dict)
    server.start()
    try:
        with pytest.raises(UsageError, match="another process listens"):
            ControlServer(sock, Controls(chunk_time=1, max_lag=1), dict).start()
    finally:
        server.close()


def test_a_path_that_is_not_a_socket_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_text("keep me")
    with pytest.raises(UsageError, match="not a socket"):
        control.clear_stale_socket(str(path))
    assert path.read_text() == "keep me"


def test_default_socket_paths_are_short_and_distinct() -> None:
    assert control.default_socket_path("app", "users") == "/tmp/onlineddl.app.users.sock"
    a = control.default_socket_path("a b", "t")
    b = control.default_socket_path("a_b", "t")
    long = control.default_socket_path("d" * 64, "t" * 64)
    assert a != b
    assert len(long.encode()) <= 107


# --- throttling -----------------------------------------------------------------------


def test_exceeded() -> None:
    limits = (("Threads_running", 50), ("Threads_connected", 500))
    assert exceeded({"threads_running": 50, "threads_connected": 10}, limits) is None
    assert exceeded({"threads_running": 51}, limits) == "Threads_running=51 > 50"


@pytest.mark.parametrize("rows, lag", [
    ([], 0.0),
    ([{"Slave_IO_Running": "Yes", "Slave_SQL_Running": "Yes", "Seconds_Behind_Master": 3}],
     3.0),
    ([{"Replica_IO_Running": "Yes", "Replica_SQL_Running": "Yes",
       "Seconds_Behind_Source": 0}], 0.0),
    ([{"Slave_IO_Running": "Yes", "Slave_SQL_Running": "Yes", "Seconds_Behind_Master": 1},
      {"Slave_IO_Running": "Yes", "Slave_SQL_Running": "Yes", "Seconds_Behind_Master": 7}],
     7.0),
    ([{"Slave_IO_Running": "Yes", "Slave_SQL_Running": "No", "Seconds_Behind_Master": None}],
     None),
    ([{"Replica_IO_Running": "Connecting", "Replica_SQL_Running": "Yes",
       "Seconds_Behind_Source": 0}], None),
])
def test_replica_lag_from_status_rows(rows: list[dict[str, Any]], lag: float | None) -> None:
    assert replica_lag(rows) == lag


def test_flavor_replica_queries() -> None:
    assert MariaDB((10, 11, 0), "10.11.0-MariaDB").replica_status_sql() == \
        "SHOW ALL SLAVES STATUS"
    assert MySQL((8, 4, 0), "8.4.0").replica_status_sql() == "SHOW REPLICA STATUS"
    assert MySQL((8, 4, 0), "8.4.0").replica_hosts_sql() == "SHOW REPLICAS"
    assert MySQL((8, 0, 11), "8.0.11").supports_instant is False
    assert MySQL((8, 0, 36), "8.0.36").supports_instant is True


def test_instant_alter_sql() -> None:
    assert sql.alter_table("d", "t", "ADD c INT", instant=True) == \
        "ALTER TABLE `d`.`t` ADD c INT, ALGORITHM=INSTANT"


class FakeThrottle(NoThrottle):
    def __init__(self) -> None:
        self.answer: Hold | None = Hold("max-load", "Threads_running=9 > 1")

    def hold(self) -> Hold | None:
        return self.answer


def test_copy_gate_waits_for_every_reason_in_order() -> None:
    controls = Controls(chunk_time=0.5, max_lag=1.5)
    throttle = FakeThrottle()
    gate = CopyGate(controls, throttle)
    controls.apply(parse_command("pause"))
    controls.apply(parse_command("throttle"))
    seen: list[str] = []

    def tick() -> None:   # the operator lifts one reason per tick
        if controls.state().paused:
            controls.apply(parse_command("resume"))
        elif controls.state().throttled:
            controls.apply(parse_command("no-throttle"))
        else:
            throttle.answer = None

    gate.wait(tick, lambda h: seen.append(h.kind if h else "-"), poll=0)
    assert seen == ["paused", "throttled", "max-load", "-"]


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_copy_gate_rests_nice_ratio_times_the_chunk_and_ticks_meanwhile() -> None:
    controls = Controls(chunk_time=0.5, max_lag=1.5, nice_ratio=2.0)
    clock = FakeClock()
    gate = CopyGate(controls, FakeThrottle(), clock=lambda: clock.now, sleep=clock.sleep)
    ticks: list[float] = []
    rested = gate.rest(0.25, lambda: ticks.append(clock.now), poll=0.125)
    assert rested == 0.5 and clock.slept == [0.125] * 4
    assert len(ticks) == 4                          # the run stays healthy while resting
    controls.apply(parse_command("nice-ratio=0"))
    assert gate.rest(0.25, lambda: ticks.append(clock.now)) == 0.0
    assert len(ticks) == 4                          # ratio 0: no rest, no extra tick


def test_ctl_nice_ratio_0_ends_a_rest_at_once() -> None:
    controls = Controls(chunk_time=0.5, max_lag=1.5, nice_ratio=50.0)
    clock = FakeClock()
    gate = CopyGate(controls, FakeThrottle(), clock=lambda: clock.now, sleep=clock.sleep)

    def tick() -> None:     # the operator changes their mind before the third poll
        if len(clock.slept) == 2:
            controls.apply(parse_command("nice-ratio=0"))

    assert gate.rest(1.0, tick, poll=0.125) == 0.375   # that poll ends, no other starts


# --- hooks ----------------------------------------------------------------------------


def snapshot(**kw: Any) -> Snapshot:
    base: dict[str, Any] = dict(
        table="d.t", phase="copy", rows_copied=10, rows_estimate=100, percent=10.0,
        rate=5.0, eta_seconds=18.0, elapsed_seconds=2.5, backlog=3, applied=4,
        lag_seconds=0.0, throttle_reason="", postpone_reason="", chunk_size=100,
        cutover_attempts=0, write_block_seconds=0.0)
    base.update(kw)
    return Snapshot(**base)


def test_hook_env() -> None:
    cfg = MigrationConfig(dsn=Dsn(host="db1", user="dba", password="s3cret"), database="d",
                          table="t", alter="ADD c INT", control_socket="/tmp/x.sock")
    env = hook_env("failure", snapshot(), cfg, Aborted("boom"))
    assert env["ONLINEDDL_EVENT"] == "failure"
    assert env["ONLINEDDL_DATABASE"] == "d"
    assert env["ONLINEDDL_TABLE"] == "t"
    assert env["ONLINEDDL_PHASE"] == "copy"
    assert env["ONLINEDDL_ROWS_COPIED"] == "10"
    assert env["ONLINEDDL_ROWS_ESTIMATE"] == "100"
    assert env["ONLINEDDL_ELAPSED_SECONDS"] == "2.5"
    assert env["ONLINEDDL_ALTER"] == "ADD c INT"
    assert env["ONLINEDDL_HOST"] == "db1" and env["ONLINEDDL_USER"] == "dba"
    assert env["ONLINEDDL_CONTROL_SOCKET"] == "/tmp/x.sock"
    assert env["ONLINEDDL_ERROR"] == "boom"
    assert env["ONLINEDDL_EXIT_CODE"] == "11"
    assert "s3cret" not in env.values()
    assert not any("PASSWORD" in k for k in env)
    assert "ONLINEDDL_ERROR" not in hook_env("success", snapshot(), cfg)


def test_hooks_never_inherit_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONLINEDDL_PASSWORD", "s3cret")
    monkeypatch.setenv("MYSQL_PWD", "s3cret")
    env = process_env({"ONLINEDDL_EVENT": "x"})
    assert "s3cret" not in env.values()
    assert env["ONLINEDDL_EVENT"] == "x"


def write_hook(directory: Path, name: str, body: str) -> Path:
    path = directory / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return path


def test_hook_runner_names_order_failure_and_timeout(tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    write_hook(tmp_path, "success", f'echo "a $ONLINEDDL_EVENT" >> {out}')
    write_hook(tmp_path, "success.2-more", f'echo "b $ONLINEDDL_TABLE" >> {out}')
    write_hook(tmp_path, "successor", f"echo wrong >> {out}")     # another name
    (tmp_path / "success.txt").write_text("not executable")
    write_hook(tmp_path, "failure", "echo failing; exit 3")
    write_hook(tmp_path, "status", "sleep 30 & sleep 30")          # children too
    runner = HookRunner(HookConfig(directory=str(tmp_path), timeout=0.5))
    assert runner.run("success", {"ONLINEDDL_EVENT": "success", "ONLINEDDL_TABLE": "t"})
    assert out.read_text().splitlines() == ["a success", "b t"]
    assert runner.run("failure", {}) is False
    started = time.monotonic()
    assert runner.run("status", {}) is False
    assert time.monotonic() - started < 10            # killed, children included
    assert runner.run("startup", {}) is True          # no hook: nothing to fail
    assert set(EVENTS) >= {"startup", "copy-done", "before-cutover", "success", "failure"}


# --- metrics --------------------------------------------------------------------------


def test_metric_names_and_families() -> None:
    names = {f.name for f in families(snapshot(throttle_reason="paused: x"), "d", "t")}
    assert names == set(METRIC_NAMES)
    # Written out, as the README's metrics table lists them: a rename must show up here.
    assert names == {
        "onlineddl_rows_copied", "onlineddl_rows_estimate", "onlineddl_progress_ratio",
        "onlineddl_copy_rate_rows_per_second", "onlineddl_eta_seconds",
        "onlineddl_elapsed_seconds", "onlineddl_applier_backlog_keys",
        "onlineddl_applier_applied_total", "onlineddl_applier_lag_seconds",
        "onlineddl_phase", "onlineddl_throttled", "onlineddl_throttle_reason",
        "onlineddl_cutover_postponed", "onlineddl_chunk_size_rows",
        "onlineddl_copier_rested_seconds",
        "onlineddl_cutover_attempts", "onlineddl_cutover_lock_seconds"}
    assert "onlineddl_rows_copied" in names and "onlineddl_applier_lag_seconds" in names
    by_name = {f.name: f for f in families(snapshot(throttle_reason="paused: x"), "d", "t")}
    phases = {s.labels["phase"]: s.value for s in by_name["onlineddl_phase"].samples}
    assert phases["copy"] == 1.0 and phases["cutover"] == 0.0
    reasons = {s.labels["reason"]: s.value
               for s in by_name["onlineddl_throttle_reason"].samples}
    assert reasons["paused"] == 1.0 and reasons["max-load"] == 0.0


def test_metrics_endpoint_serves_parseable_text() -> None:
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    server = PrometheusMetrics(0, "127.0.0.1", snapshot, "d", "t")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics",
                                    timeout=5) as r:
            text = r.read().decode()
    finally:
        server.close()
    values = {(s.name, s.labels.get("table")): s.value
              for f in text_string_to_metric_families(text) for s in f.samples}
    assert values[("onlineddl_rows_copied", "t")] == 10.0
    assert values[("onlineddl_applier_backlog_keys", "t")] == 3.0


# --- progress and the plan ------------------------------------------------------------


def test_head_lag() -> None:
    lag = HeadLag()

    def pos(n: int) -> BinlogPosition:
        return BinlogPosition("binlog.000001", n)

    assert lag.lag(0.0, pos(0)) is None
    lag.observe(10.0, pos(100))
    lag.observe(11.0, pos(200))
    assert lag.lag(12.0, pos(50)) == 2.0     # has not read what was there at 10.0
    assert lag.lag(12.0, pos(150)) == 1.0    # read past the 10.0 sample, not the 11.0
    assert lag.lag(12.0, pos(200)) == 0.0    # caught up


def test_status_line_and_bar() -> None:
    line = status_line(snapshot(throttle_reason="paused: ctl", lag_seconds=1.5))
    assert "phase=copy" in line and "copied=10/~100 (10.0%)" in line
    assert "lag=1.5s" in line and "throttled=[paused: ctl]" in line and "eta=18s" in line
    bar = TerminalBar(stream=None, min_interval=0)  # type: ignore[arg-type]
    assert bar.render(snapshot()).startswith("[###---")


def test_progress_rate_stops_with_the_copy() -> None:
    p = Progress("d.t", 5.0)
    p.set_phase(Phase.COPY)
    p.rows_copied = 100
    p.set_phase(Phase.CHECKSUM)
    rate = p.rate()
    time.sleep(0.01)
    assert p.rate() == rate


def test_chunk_count_follows_the_chunkers_sizing() -> None:
    tuning = Tuning(chunk_time=0.5, chunk_rows_initial=1000, chunk_rows_max=100_000)

    def fresh() -> Chunker:
        return Chunker(None, None, tuning)  # type: ignore[arg-type]

    assert chunk_count(fresh(), 0, 1000.0) == 1
    assert chunk_count(fresh(), 10_000, None) == 10
    # 1000 rows/s and 0.5 s per chunk: 1000 rows first, then chunks settle at 500.
    assert chunk_count(fresh(), 100_000, 1000.0) == 1 + 99_000 // 500
    fast = chunk_count(fresh(), 10_000_000, 10_000_000.0)
    assert 100 <= fast <= 130       # grows by 1.25x per chunk up to the maximum


def test_terminal_bar_keeps_log_lines_above_it() -> None:
    import io
    import logging

    stream = io.StringIO()
    bar = TerminalBar(stream, min_interval=0)
    handler = bar.handler(logging.Formatter("%(message)s"))
    bar.update(snapshot())
    handler.emit(logging.LogRecord("x", logging.INFO, __file__, 1, "hello", None, None))
    bar.finish()
    text = stream.getvalue()
    drawn = "\r\x1b[2K" + bar.render(snapshot())
    # bar, then: clear the line, the log line, the bar again; finish clears it
    assert text == drawn + "\r\x1b[2Khello\n" + drawn + "\r\x1b[2K"

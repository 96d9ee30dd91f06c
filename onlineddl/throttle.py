"""Throttling: when the copier should wait, and when the run must stop.

The copier waits between chunks while a replica lags more than --max-lag, while a
status variable of the primary exceeds --max-load, while the throttle flag file exists,
or while the operator says so (`ctl pause`, `ctl throttle`). Only the copier waits: the
applier runs in its own threads and keeps the shadow table in sync meanwhile, so a long
throttle leaves no backlog behind. --critical-load instead stops the run (Aborted,
resumable): past that point the server needs the load gone, not merely not added to.

A replica whose replication is not running, or that cannot be reached, counts as
lagging without bound: its lag is unknown, and copying on regardless is how replicas
end up hours behind.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from onlineddl.config import Dsn, Throttling
from onlineddl.control import Controls
from onlineddl.db import Session
from onlineddl.errors import Aborted, OnlineDDLError, PreflightFailed, UsageError
from onlineddl.flavor import MySQL, replica_lag

log = logging.getLogger(__name__)

# What can hold the copier (also the `reason` label of the metric).
HOLD_KINDS = ("paused", "throttled", "flag-file", "max-load", "replica-lag")


@dataclass(frozen=True)
class Hold:
    kind: str     # one of HOLD_KINDS
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.detail}"


class Throttle(Protocol):
    def check(self) -> None:
        """Before the run starts: refuse settings the server cannot honour."""
    def hold(self) -> Hold | None:
        """Why the copier should wait now, or None."""
    def check_critical(self) -> None:
        """Raise Aborted when --critical-load is exceeded."""
    def close(self) -> None: ...


class NoThrottle:
    """Nothing configured: never holds, never aborts."""

    def check(self) -> None:
        pass

    def hold(self) -> Hold | None:
        return None

    def check_critical(self) -> None:
        pass

    def close(self) -> None:
        pass


def exceeded(status: dict[str, int], limits: tuple[tuple[str, int], ...]) -> str | None:
    """The first `VAR=value > limit` among `limits`, or None."""
    for name, limit in limits:
        value = status.get(name.lower())
        if value is not None and value > limit:
            return f"{name}={value} > {limit}"
    return None


class ServerThrottle:
    """--max-lag, --max-load, --critical-load and the flag file, checked on the server
    at most every `interval` seconds (the flag file on every call)."""

    def __init__(self, config: Throttling, dsn: Dsn, flavor: MySQL,
                 max_lag: Callable[[], float]) -> None:
        self.config = config
        self.dsn = dsn
        self.flavor = flavor
        self.max_lag = max_lag      # live: `ctl max-lag=S` changes it
        self.replicas = list(config.replicas)
        self._session: Session | None = None
        self._replica_sessions: dict[Dsn, Session] = {}
        self._held_at = self._critical_at = -1e9
        self._hold: Hold | None = None

    # --- before the run ----------------------------------------------------------------

    def check(self) -> None:
        names = {n for n, _ in (*self.config.max_load, *self.config.critical_load)}
        status = self._load_status(names) if names else {}
        unknown = sorted(n for n in names if n.lower() not in status)
        if unknown:
            raise UsageError(f"unknown status variable(s) for --max-load/--critical-load: "
                             f"{', '.join(unknown)}",
                             hint="use names from SHOW GLOBAL STATUS, e.g. Threads_running")
        if self.config.discover_replicas:
            self.replicas += self._discover()
        for replica in self.replicas:
            rows = self._replica(replica).query_dicts(self.flavor.replica_status_sql())
            if not rows:
                raise PreflightFailed(f"--replica {replica.describe()} is not a replica "
                                      "(its replica status is empty)",
                                      hint="list only replicas of this primary")
        if self.replicas:
            log.info("watching replica lag (--max-lag %gs) on %s", self.max_lag(),
                     ", ".join(r.describe() for r in self.replicas))

    def _discover(self) -> list[Dsn]:
        """Replicas that report their address to the primary (report_host), reached
        with the primary's credentials."""
        found = []
        for row in self._primary().query(self.flavor.replica_hosts_sql()):
            host, port = str(row[1] or ""), int(row[2] or 0)
            if host and port:  # binlog readers like ours register without an address
                found.append(Dsn(host=host, port=port, user=self.dsn.user,
                                 password=self.dsn.password,
                                 connect_timeout=self.dsn.connect_timeout))
        log.info("discovered %d replica(s)%s", len(found),
                 ": " + ", ".join(d.describe() for d in found) if found else
                 " (replicas show up only when started with report_host)")
        return [d for d in found if d not in self.replicas]

    # --- during the run ----------------------------------------------------------------

    def hold(self) -> Hold | None:
        flag = self.config.flag_file
        if flag and os.path.exists(flag):
            return Hold("flag-file", f"{flag} exists")
        now = time.monotonic()
        if now - self._held_at >= self.config.interval:
            self._held_at = now
            self._hold = self._load_hold() or self._lag_hold()
        return self._hold

    def check_critical(self) -> None:
        if not self.config.critical_load:
            return
        now = time.monotonic()
        if now - self._critical_at < self.config.interval:
            return
        self._critical_at = now
        limits = self.config.critical_load
        over = exceeded(self._load_status({n for n, _ in limits}), limits)
        if over:
            raise Aborted(f"critical load on the primary: {over} (--critical-load); "
                          "stopped so the server can recover",
                          hint="find what loads the server; resume once the load is down")

    def _load_hold(self) -> Hold | None:
        limits = self.config.max_load
        if not limits:
            return None
        over = exceeded(self._load_status({n for n, _ in limits}), limits)
        return Hold("max-load", f"{over} (--max-load)") if over else None

    def _load_status(self, names: set[str]) -> dict[str, int]:
        marks = ", ".join(["%s"] * len(names))
        rows = self._primary().query(
            f"SHOW GLOBAL STATUS WHERE Variable_name IN ({marks})", sorted(names))
        out = {}
        for name, value in rows:
            try:
                out[str(name).lower()] = int(value)
            except (TypeError, ValueError):
                continue
        return out

    def _lag_hold(self) -> Hold | None:
        limit = self.max_lag()
        for replica in self.replicas:
            try:
                lag = replica_lag(self._replica(replica).query_dicts(
                    self.flavor.replica_status_sql()))
            except OnlineDDLError as err:
                return Hold("replica-lag", f"cannot check {replica.describe()}: "
                                           f"{err.message}")
            if lag is None:
                return Hold("replica-lag", f"replication is not running on "
                                           f"{replica.describe()} (lag unknown)")
            if lag > limit:
                return Hold("replica-lag", f"{replica.describe()} is {lag:g}s behind "
                                           f"(--max-lag {limit:g}s)")
        return None

    def _primary(self) -> Session:
        if self._session is None:
            self._session = Session(self.dsn, name="throttle", reconnect=True)
        return self._session

    def _replica(self, dsn: Dsn) -> Session:
        if dsn not in self._replica_sessions:
            # A replica that is down must not stall the run for a long connect timeout
            # at every check: it holds the copier either way.
            quick = dataclasses.replace(dsn, connect_timeout=min(dsn.connect_timeout, 3.0))
            self._replica_sessions[dsn] = Session(quick, name=f"replica {dsn.describe()}",
                                                  reconnect=True)
        return self._replica_sessions[dsn]

    def close(self) -> None:
        for session in (self._session, *self._replica_sessions.values()):
            if session is not None:
                session.close()


def make_throttle(config: Throttling, dsn: Dsn, flavor: MySQL, controls: Controls
                  ) -> Throttle:
    if not config.watches_server and not config.flag_file:
        return NoThrottle()
    return ServerThrottle(config, dsn, flavor, lambda: controls.state().max_lag)


class CopyGate:
    """Holds the copier between chunks while the operator or the throttle says so."""

    def __init__(self, controls: Controls, throttle: Throttle,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.controls = controls
        self.throttle = throttle
        self._clock = clock
        self._sleep = sleep

    def reason(self) -> Hold | None:
        state = self.controls.state()
        if state.paused:
            return Hold("paused", "`ctl pause`; `ctl resume` continues")
        if state.throttled:
            return Hold("throttled", "`ctl throttle`; `ctl no-throttle` ends it")
        return self.throttle.hold()

    def rest(self, chunk_seconds: float, tick: Callable[[], None], poll: float = 0.1
             ) -> float:
        """--nice-ratio: leave the server to the application for `nice_ratio` times the
        time the last chunk took. The rest scales with the chunk's cost: a busier server
        makes chunks slower and so the rests longer. The ratio is read at every poll, so
        `ctl nice-ratio=0` ends a rest at once; `tick` keeps the run healthy meanwhile.
        Returns the seconds rested."""
        started = self._clock()
        rested = 0.0
        while (left := started + self.controls.state().nice_ratio * chunk_seconds
               - self._clock()) > 0:
            tick()
            self._sleep(min(poll, left))
            rested = self._clock() - started
        return rested

    def wait(self, tick: Callable[[], None], show: Callable[[Hold | None], None],
             poll: float = 0.1) -> None:
        """Return once nothing holds the copier; `tick` keeps the run healthy meanwhile
        (checkpoints, progress, abort), `show` publishes the reason."""
        hold = self.reason()
        if hold is None:
            return
        started = time.monotonic()
        log.info("copier waits: %s", hold)
        while hold is not None:
            show(hold)
            tick()
            self._sleep(poll)
            current = self.reason()
            if current is not None and current.kind != hold.kind:
                log.info("copier waits: %s", current)
            hold = current
        show(None)
        log.info("copier continues after waiting %.1fs", time.monotonic() - started)

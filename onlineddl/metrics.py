"""Prometheus metrics for one run: the only module that imports prometheus_client.

    onlineddl migrate ... --metrics-port 9187        # http://127.0.0.1:9187/metrics

Values are read from the run's snapshot at scrape time (a collector, not gauges set by
the run), so a scrape during the cutover or a long pause still sees current numbers.
Every series carries `database` and `table` labels. The registry is private: nothing
else a host process registers leaks into it, and two runs in one process do not clash.
prometheus_client is a regular dependency, imported only when --metrics-port asks for
the endpoint.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from onlineddl.errors import UsageError
from onlineddl.progress import Phase, Snapshot
from onlineddl.throttle import HOLD_KINDS

log = logging.getLogger(__name__)

PHASES = tuple(p.text for p in Phase)

# name -> (help, value from the snapshot)
GAUGES: dict[str, tuple[str, Callable[[Snapshot], float]]] = {
    "onlineddl_rows_copied": ("Rows copied into the shadow table", lambda s: s.rows_copied),
    "onlineddl_rows_estimate": ("Estimated rows in the table", lambda s: s.rows_estimate),
    "onlineddl_progress_ratio": ("Copy progress, 0 to 1", lambda s: s.percent / 100),
    "onlineddl_copy_rate_rows_per_second": ("Rows copied per second since the copy "
                                            "started", lambda s: s.rate),
    "onlineddl_eta_seconds": ("Estimated seconds until the copy is done (NaN: unknown)",
                              lambda s: math.nan if s.eta_seconds is None else s.eta_seconds),
    "onlineddl_elapsed_seconds": ("Seconds since the run started",
                                  lambda s: s.elapsed_seconds),
    "onlineddl_applier_backlog_keys": ("Changed keys waiting to be applied to the shadow "
                                       "table", lambda s: s.backlog),
    "onlineddl_applier_applied_total": ("Changes applied to the shadow table",
                                        lambda s: s.applied),
    "onlineddl_applier_lag_seconds": ("How far the applier is behind the binlog head "
                                      "(NaN: not measured yet)",
                                      lambda s: math.nan if s.lag_seconds is None
                                      else s.lag_seconds),
    "onlineddl_throttled": ("1 while the copier waits (pause, throttle, lag, load)",
                            lambda s: 1.0 if s.throttle_reason else 0.0),
    "onlineddl_cutover_postponed": ("1 while the cutover is postponed",
                                    lambda s: 1.0 if s.postpone_reason else 0.0),
    "onlineddl_copier_rested_seconds": ("Seconds the copier has rested (--nice-ratio)",
                                        lambda s: s.rested_seconds),
    "onlineddl_chunk_size_rows": ("Rows in the copier's next chunk", lambda s: s.chunk_size),
    "onlineddl_cutover_attempts": ("Cutover attempts so far", lambda s: s.cutover_attempts),
    "onlineddl_cutover_lock_seconds": ("Seconds the cutover blocked writes",
                                       lambda s: s.write_block_seconds),
}
LABELLED = {
    "onlineddl_phase": "1 for the run's current phase",
    "onlineddl_throttle_reason": "1 for what holds the copier now",
}
METRIC_NAMES = (*GAUGES, *LABELLED)


class MetricsSink(Protocol):
    port: int

    def close(self) -> None: ...


class NoMetrics:
    port = 0

    def close(self) -> None:
        pass


def families(snap: Snapshot, database: str, table: str) -> Iterator[Any]:
    """The metric families for one snapshot."""
    from prometheus_client.core import GaugeMetricFamily

    labels = ["database", "table"]
    for name, (text, value) in GAUGES.items():
        family = GaugeMetricFamily(name, text, labels=labels)
        family.add_metric([database, table], float(value(snap)))
        yield family
    phase = GaugeMetricFamily("onlineddl_phase", LABELLED["onlineddl_phase"],
                              labels=[*labels, "phase"])
    for name in PHASES:
        phase.add_metric([database, table, name], 1.0 if snap.phase == name else 0.0)
    yield phase
    reason = GaugeMetricFamily("onlineddl_throttle_reason", LABELLED[
        "onlineddl_throttle_reason"], labels=[*labels, "reason"])
    held = snap.throttle_reason.split(":", 1)[0]
    for kind in HOLD_KINDS:
        reason.add_metric([database, table, kind], 1.0 if held == kind else 0.0)
    yield reason


class PrometheusMetrics:
    """The HTTP endpoint (prometheus_client's own server, in a daemon thread)."""

    def __init__(self, port: int, address: str, snapshot: Callable[[], Snapshot],
                 database: str, table: str) -> None:
        try:
            from prometheus_client import CollectorRegistry, start_http_server
        except ImportError as exc:
            raise UsageError("--metrics-port needs the prometheus_client package",
                             hint="pip install prometheus_client (an onlineddl "
                                  "dependency)") from exc

        class RunCollector:
            def collect(self) -> Iterator[Any]:
                return families(snapshot(), database, table)

        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(RunCollector())
        try:
            self._server, self._thread = start_http_server(port, addr=address,
                                                           registry=self.registry)
        except OSError as exc:
            raise UsageError(f"cannot serve metrics on {address}:{port}: {exc}",
                             hint="pick a free --metrics-port") from exc
        self.port = int(self._server.server_port)
        log.info("metrics: http://%s:%d/metrics", address, self.port)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def serve(port: int | None, address: str, snapshot: Callable[[], Snapshot], database: str,
          table: str) -> MetricsSink:
    if port is None:
        return NoMetrics()
    return PrometheusMetrics(port, address, snapshot, database, table)

"""Progress reporting: one status line at a steady interval, through logging."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

log = logging.getLogger("onlineddl.progress")


@dataclass
class Progress:
    table: str
    interval: float
    rows_estimate: int = 0
    rows_copied: int = 0
    phase: str = "preflight"
    backlog: int = 0
    applied: int = 0
    binlog_lag: str = ""
    started: float = field(default_factory=time.monotonic)
    copy_started: float | None = None
    _last: float = 0.0

    def set_phase(self, phase: str) -> None:
        self.phase = phase
        if phase == "copy" and self.copy_started is None:
            self.copy_started = time.monotonic()
        log.info("phase: %s", phase)

    def rate(self) -> float:
        if self.copy_started is None:
            return 0.0
        elapsed = time.monotonic() - self.copy_started
        return self.rows_copied / elapsed if elapsed > 0 else 0.0

    def eta_seconds(self) -> float | None:
        rate = self.rate()
        remaining = max(0, self.rows_estimate - self.rows_copied)
        if rate <= 0 or self.phase != "copy":
            return None
        return remaining / rate

    def line(self) -> str:
        est = max(self.rows_estimate, self.rows_copied)
        pct = (100.0 * self.rows_copied / est) if est else 100.0
        eta = self.eta_seconds()
        eta_text = f"{eta:.0f}s" if eta is not None else "-"
        elapsed = time.monotonic() - self.started
        lag = f" lag={self.binlog_lag}" if self.binlog_lag else ""
        return (f"{self.table}: phase={self.phase} copied={self.rows_copied}/~{est} "
                f"({pct:.1f}%) rate={self.rate():.0f} rows/s eta={eta_text} "
                f"backlog={self.backlog} applied={self.applied}{lag} elapsed={elapsed:.1f}s")

    def maybe_report(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last >= self.interval:
            self._last = now
            log.info("%s", self.line())

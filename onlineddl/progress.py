"""Progress reporting: one status line at a steady interval, through logging; a snapshot
of the same numbers for `ctl status`, metrics and hooks; a bar for a terminal.

The library only logs. The CLI decides how that looks: text or JSON lines, and, when
stderr is a terminal, `TerminalBar`, which redraws one line in place and keeps log lines
above it.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, TextIO

from onlineddl.flavor import BinlogPosition

log = logging.getLogger("onlineddl.progress")


class Phase(enum.IntEnum):
    """The lifecycle's phases in order (migration.py runs them; metrics and the status
    line name them in lower case)."""

    PREFLIGHT = 1
    SETUP = 2
    COPY = 3
    CATCHUP = 4
    CHECKSUM = 5
    POSTPONED = 6
    CUTOVER = 7
    CLEANUP = 8
    DONE = 9

    @property
    def text(self) -> str:
        """The name written out: the checkpoint's phase column, status, metrics, hooks."""
        return self.name.lower()

    @classmethod
    def from_text(cls, text: str) -> Phase:
        """The phase a text names (as `text` writes it); ValueError for any other text."""
        phase = cls.__members__.get(text.upper())
        if phase is None or phase.text != text:
            raise ValueError(f"unknown phase {text!r}")
        return phase


@dataclass(frozen=True)
class Snapshot:
    """The run's numbers at one instant (safe to hand to other threads)."""

    table: str
    phase: str
    rows_copied: int
    rows_estimate: int
    percent: float
    rate: float                  # rows/s since the copy started
    eta_seconds: float | None    # of the copy; None outside it or before a rate is known
    elapsed_seconds: float
    backlog: int                 # changed keys waiting to be applied to the shadow
    applied: int                 # changes applied so far
    lag_seconds: float | None    # how far the applier is behind the binlog head
    throttle_reason: str         # why the copier waits ("" while it copies)
    postpone_reason: str         # why the cutover waits ("" when it does not)
    chunk_size: int              # rows in the copier's next chunk
    cutover_attempts: int
    write_block_seconds: float   # how long the cutover blocked writes
    rested_seconds: float = 0.0  # the copier's rests so far (--nice-ratio)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Progress:
    table: str
    interval: float
    rows_estimate: int = 0
    rows_copied: int = 0
    phase: Phase = Phase.PREFLIGHT
    backlog: int = 0
    applied: int = 0
    lag_seconds: float | None = None
    throttle_reason: str = ""
    postpone_reason: str = ""
    chunk_size: int = 0
    cutover_attempts: int = 0
    write_block_seconds: float = 0.0
    rested_seconds: float = 0.0
    bar: TerminalBar | None = None
    started: float = field(default_factory=time.monotonic)
    copy_started: float | None = None
    copy_finished: float | None = None
    _last: float = 0.0
    _rows_at_copy_start: int = 0

    def set_phase(self, phase: Phase) -> None:
        if self.phase == Phase.COPY and phase != Phase.COPY:
            self.copy_finished = time.monotonic()   # the rate stays the copy's rate
        self.phase = phase
        if phase == Phase.COPY and self.copy_started is None:
            self.copy_started = time.monotonic()
            self._rows_at_copy_start = self.rows_copied  # a resumed run's earlier rows
        log.info("phase: %s", phase.text)
        if self.bar is not None:
            self.bar.update(self.snapshot(), force=True)

    def rate(self) -> float:
        if self.copy_started is None:
            return 0.0
        elapsed = (self.copy_finished or time.monotonic()) - self.copy_started
        copied = self.rows_copied - self._rows_at_copy_start
        return copied / elapsed if elapsed > 0 else 0.0

    def eta_seconds(self) -> float | None:
        rate = self.rate()
        remaining = max(0, self.rows_estimate - self.rows_copied)
        if rate <= 0 or self.phase != Phase.COPY:
            return None
        return remaining / rate

    def snapshot(self) -> Snapshot:
        est = max(self.rows_estimate, self.rows_copied)
        pct = (100.0 * self.rows_copied / est) if est else 100.0
        return Snapshot(
            table=self.table, phase=self.phase.text, rows_copied=self.rows_copied,
            rows_estimate=est, percent=round(pct, 1), rate=round(self.rate(), 1),
            eta_seconds=self.eta_seconds(),
            elapsed_seconds=round(time.monotonic() - self.started, 1),
            backlog=self.backlog, applied=self.applied, lag_seconds=self.lag_seconds,
            throttle_reason=self.throttle_reason,
            postpone_reason=self.postpone_reason, chunk_size=self.chunk_size,
            cutover_attempts=self.cutover_attempts,
            write_block_seconds=self.write_block_seconds,
            rested_seconds=round(self.rested_seconds, 3))

    def line(self) -> str:
        return status_line(self.snapshot())

    def maybe_report(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.bar is not None and (force or self.bar.due()):  # a snapshot is not free
            self.bar.update(self.snapshot(), force=force)
        if force or now - self._last >= self.interval:
            self._last = now
            log.info("%s", self.line())


def status_line(s: Snapshot) -> str:
    eta = f"{s.eta_seconds:.0f}s" if s.eta_seconds is not None else "-"
    lag = f"{s.lag_seconds:.1f}s" if s.lag_seconds is not None else "-"
    text = (f"{s.table}: phase={s.phase} copied={s.rows_copied}/~{s.rows_estimate} "
            f"({s.percent:.1f}%) rate={s.rate:.0f} rows/s eta={eta} backlog={s.backlog} "
            f"applied={s.applied} lag={lag} elapsed={s.elapsed_seconds:.1f}s")
    if s.rested_seconds:
        text += f" rested={s.rested_seconds:.1f}s"
    if s.throttle_reason:
        text += f" throttled=[{s.throttle_reason}]"
    if s.postpone_reason:
        text += f" postponed=[{s.postpone_reason}]"
    return text


class HeadLag:
    """How far the applier is behind the binlog head, in seconds.

    The head is sampled (about once a second); the lag is the age of the oldest sample
    the applier has not read past yet, 0 once it has read past them all. Positions only
    grow, so the samples read past are always a prefix.
    """

    def __init__(self, every: float = 1.0) -> None:
        self.every = every
        self._samples: deque[tuple[float, BinlogPosition]] = deque()
        self._observed = False
        self._last = -1e9

    def maybe_observe(self, now: float, head: Callable[[], BinlogPosition]) -> None:
        """Sample the head (one query) at most every `every` seconds."""
        if now - self._last >= self.every:
            self._last = now
            self.observe(now, head())

    def observe(self, now: float, head: BinlogPosition) -> None:
        self._samples.append((now, head))
        self._observed = True

    def lag(self, now: float, received: BinlogPosition) -> float | None:
        while self._samples and received.reached(self._samples[0][1]):
            self._samples.popleft()
        if not self._observed:
            return None
        return round(now - self._samples[0][0], 1) if self._samples else 0.0


class TerminalBar:
    """A progress bar redrawn in place on a terminal (the CLI uses it only when stderr
    is a TTY and logs are text); log lines are written above it via `handler()`."""

    WIDTH = 30

    def __init__(self, stream: TextIO, min_interval: float = 0.2) -> None:
        self.stream = stream
        self.min_interval = min_interval
        self._lock = threading.Lock()
        self._text = ""
        self._last = 0.0

    def render(self, s: Snapshot) -> str:
        filled = int(self.WIDTH * min(100.0, s.percent) / 100)
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        eta = f"{s.eta_seconds:.0f}s" if s.eta_seconds is not None else "-"
        state = f" [{s.throttle_reason or s.postpone_reason}]" if (
            s.throttle_reason or s.postpone_reason) else ""
        return (f"[{bar}] {s.percent:5.1f}% {s.phase} {s.rows_copied}/~{s.rows_estimate} "
                f"{s.rate:.0f} rows/s eta {eta} backlog {s.backlog}{state}")[:160]

    def due(self) -> bool:
        return time.monotonic() - self._last >= self.min_interval

    def update(self, s: Snapshot, force: bool = False) -> None:
        if not force and not self.due():
            return
        self._last = time.monotonic()
        with self._lock:
            self._text = self.render(s)
            self._draw()

    def _draw(self) -> None:
        self.stream.write("\r\x1b[2K" + self._text)
        self.stream.flush()

    def handler(self, formatter: logging.Formatter) -> logging.Handler:
        bar = self

        class AboveTheBar(logging.StreamHandler[TextIO]):
            def emit(self, record: logging.LogRecord) -> None:
                with bar._lock:
                    bar.stream.write("\r\x1b[2K")
                    super().emit(record)
                    if bar._text:
                        bar._draw()

        handler = AboveTheBar(self.stream)
        handler.setFormatter(formatter)
        return handler

    def finish(self) -> None:
        with self._lock:
            if self._text:
                self.stream.write("\r\x1b[2K")
                self.stream.flush()
                self._text = ""

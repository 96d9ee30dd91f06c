"""Hooks: the operator's executables, run at named events of a run.

A file in --hooks-dir runs at event E when it is named `E` or `E.<anything>`
(`before-cutover`, `success.notify-chat.sh`); several run in name order. Events:

    startup         after the checks, before anything is created; failing stops the run
    copy-done       the copy finished (before catch-up and checksum)
    before-cutover  the copy is verified and in sync; failing postpones the cutover, and
                    the hook is run again every few seconds until it succeeds
    success         the table has the new schema
    failure         the run stopped with an error (ONLINEDDL_ERROR, ONLINEDDL_EXIT_CODE)
    status          every --hooks-status-interval seconds, in the background

Each hook gets the run's state in ONLINEDDL_* variables (see `hook_env`), never the
password: ONLINEDDL_PASSWORD and MYSQL_PWD are removed from its environment. A hook
runs at most --hooks-timeout seconds, then it and its children are killed (a failure).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Protocol

from onlineddl.config import HookConfig, MigrationConfig
from onlineddl.errors import OnlineDDLError
from onlineddl.progress import Snapshot, status_line

log = logging.getLogger(__name__)

EVENTS = ("startup", "copy-done", "before-cutover", "success", "failure", "status")
SECRET_VARIABLES = ("ONLINEDDL_PASSWORD", "MYSQL_PWD")
OUTPUT_LIMIT = 4000  # characters of a hook's output that reach the log


def hook_env(event: str, snap: Snapshot, config: MigrationConfig,
             error: OnlineDDLError | None = None) -> dict[str, str]:
    """The ONLINEDDL_* variables a hook receives."""
    dsn = config.dsn
    env = {
        "ONLINEDDL_EVENT": event,
        "ONLINEDDL_DATABASE": config.database,
        "ONLINEDDL_TABLE": config.table,
        "ONLINEDDL_ALTER": config.alter,
        "ONLINEDDL_KIND": config.kind,   # migrate | revert
        "ONLINEDDL_PHASE": snap.phase,
        "ONLINEDDL_ROWS_COPIED": str(snap.rows_copied),
        "ONLINEDDL_ROWS_ESTIMATE": str(snap.rows_estimate),
        "ONLINEDDL_PERCENT": f"{snap.percent:.1f}",
        "ONLINEDDL_ELAPSED_SECONDS": f"{snap.elapsed_seconds:.1f}",
        "ONLINEDDL_ETA_SECONDS": "" if snap.eta_seconds is None else f"{snap.eta_seconds:.0f}",
        "ONLINEDDL_BACKLOG": str(snap.backlog),
        "ONLINEDDL_LAG_SECONDS": "" if snap.lag_seconds is None else f"{snap.lag_seconds:g}",
        "ONLINEDDL_THROTTLED": snap.throttle_reason,
        "ONLINEDDL_STATUS": status_line(snap),
        "ONLINEDDL_HOST": dsn.unix_socket or dsn.host,
        "ONLINEDDL_PORT": str(dsn.port),
        "ONLINEDDL_USER": dsn.user,
        "ONLINEDDL_CONTROL_SOCKET": config.control_socket or "",
    }
    if event == "failure":
        env["ONLINEDDL_ERROR"] = error.message if error else ""
        env["ONLINEDDL_EXIT_CODE"] = str(error.exit_code if error else 1)
    return env


def process_env(hook_vars: Mapping[str, str]) -> dict[str, str]:
    """This process's environment without secrets, plus the hook's variables."""
    env = {k: v for k, v in os.environ.items() if k not in SECRET_VARIABLES}
    env.update(hook_vars)
    return env


class Hooks(Protocol):
    def run(self, event: str, env: Mapping[str, str]) -> bool:
        """Run the event's hooks; True when every one succeeded (or there are none)."""
    def run_in_background(self, event: str, env: Mapping[str, str]) -> None: ...
    def close(self) -> None: ...


class NoHooks:
    def run(self, event: str, env: Mapping[str, str]) -> bool:
        return True

    def run_in_background(self, event: str, env: Mapping[str, str]) -> None:
        pass

    def close(self) -> None:
        pass


class HookRunner:
    def __init__(self, config: HookConfig) -> None:
        assert config.directory is not None
        self.directory = Path(config.directory)
        self.timeout = config.timeout
        self._background: threading.Thread | None = None

    def scripts(self, event: str) -> list[Path]:
        found = []
        for path in sorted(self.directory.iterdir()):
            if path.name != event and not path.name.startswith(event + "."):
                continue
            if not path.is_file() or not os.access(path, os.X_OK):
                log.warning("hook %s is not an executable file; skipped", path)
                continue
            found.append(path)
        return found

    def run(self, event: str, env: Mapping[str, str]) -> bool:
        ok = True
        for path in self.scripts(event):
            ok = self._run_one(path, env) and ok
        return ok

    def run_in_background(self, event: str, env: Mapping[str, str]) -> None:
        """For `status`: never delays the run; skipped while the last one still runs."""
        if self._background is not None and self._background.is_alive():
            return
        self._background = threading.Thread(target=self.run, args=(event, dict(env)),
                                            name=f"hook-{event}", daemon=True)
        self._background.start()

    def _run_one(self, path: Path, env: Mapping[str, str]) -> bool:
        started = time.monotonic()
        try:
            proc = subprocess.Popen([str(path)], cwd=self.directory, env=process_env(env),
                                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as exc:
            log.warning("hook %s could not start: %s", path.name, exc)
            return False
        try:
            out, _ = proc.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            # The whole process group: a shell script's children would keep the pipe
            # open and make us wait for them.
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            out, _ = proc.communicate()
            log.warning("hook %s timed out after %gs and was killed", path.name,
                        self.timeout)
            self._log_output(path, out, logging.WARNING)
            return False
        seconds = time.monotonic() - started
        if proc.returncode != 0:
            log.warning("hook %s failed with exit code %d after %.1fs", path.name,
                        proc.returncode, seconds)
            self._log_output(path, out, logging.WARNING)
            return False
        log.info("hook %s succeeded (%.1fs)", path.name, seconds)
        self._log_output(path, out, logging.INFO)
        return True

    @staticmethod
    def _log_output(path: Path, out: bytes, level: int) -> None:
        text = out.decode("utf-8", "replace").strip()
        if text:
            log.log(level, "hook %s said: %s", path.name, text[:OUTPUT_LIMIT])

    def close(self) -> None:
        if self._background is not None:
            self._background.join(timeout=self.timeout + 1)


def make_hooks(config: HookConfig) -> Hooks:
    return HookRunner(config) if config.directory else NoHooks()


class Events:
    """The run's side of hooks: which event fires when, with the run's variables."""

    def __init__(self, config: MigrationConfig, snapshot: Callable[[], Snapshot]) -> None:
        self.config = config
        self.snapshot = snapshot
        self.hooks = make_hooks(config.hooks)
        self._last_status = time.monotonic()
        self._gate_passed: bool | None = None    # the before-cutover hook's last verdict
        self._gate_run = 0.0

    def fire(self, event: str, error: OnlineDDLError | None = None) -> bool:
        """Run the event's hooks now; True when they all passed."""
        return self.hooks.run(event, hook_env(event, self.snapshot(), self.config, error))

    def tick(self, now: float) -> None:
        """The `status` hook, every --hooks-status-interval, in the background."""
        if now - self._last_status >= self.config.hooks.status_interval:
            self._last_status = now
            self.hooks.run_in_background("status", hook_env("status", self.snapshot(),
                                                            self.config))

    def cutover_allowed(self) -> bool:
        """The before-cutover hooks pass. After a failure they run again only once the
        retry interval has passed (the caller polls several times a second)."""
        now = time.monotonic()
        if self._gate_passed is False and \
                now - self._gate_run < self.config.hooks.retry_interval:
            return False
        self._gate_run = now
        self._gate_passed = self.fire("before-cutover")
        return self._gate_passed

    def close(self) -> None:
        self.hooks.close()

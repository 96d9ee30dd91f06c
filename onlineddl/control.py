"""Live control of a run over a unix socket: see it, steer it, gate it, stop it.

    onlineddl ctl --database app --table users pause
    echo status | nc -U /tmp/onlineddl.app.users.sock        # the same, by hand

One line in (`command` or `command=value`), a reply out, then the connection closes: the
protocol gh-ost operators know. The socket changes only `Controls`, a small thread-safe
state the run reads between units of work; it never touches the database itself, so a
command takes effect at the run's next check (the copier checks between chunks, the
other phases several times a second).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import socket
import stat
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from onlineddl.config import MAX_NICE_RATIO
from onlineddl.errors import ConnectionFailed, UsageError

log = logging.getLogger(__name__)

# command -> what it does (also the `help` reply and the CLI's help text)
COMMANDS: dict[str, str] = {
    "status": "show the run's state (`status json` for JSON)",
    "pause": "hold the copier (the applier keeps the shadow table in sync)",
    "resume": "continue after pause",
    "throttle": "hold the copier, like a throttle flag file",
    "no-throttle": "end `throttle`",
    "chunk-time=S": "target seconds per copy chunk from now on",
    "max-lag=S": "replica lag in seconds above which the copier waits",
    "nice-ratio=R": "after each chunk the copier rests R times as long as it took (0: none)",
    "postpone": "hold the cutover (after the copy and checksum) until `unpostpone`",
    "unpostpone": "cut over as soon as possible, even while the postpone flag file exists",
    "abort": "stop the run cleanly; it stays resumable with --resume",
    "help": "list the commands",
}
VALUE_COMMANDS = {"chunk-time", "max-lag", "nice-ratio"}
TIMEOUT = 5.0  # seconds a client may take to send its line or read the reply


@dataclass(frozen=True)
class Command:
    name: str
    value: float | None = None
    as_json: bool = False


def parse_command(line: str) -> Command:
    """`pause`, `chunk-time=0.2` (or `chunk-time 0.2`), `status json`."""
    match = re.fullmatch(r"([a-z-]+)(?:\s*[=\s]\s*(\S+))?", line.strip().lower())
    if match is None:
        raise UsageError(f"cannot read the command {line.strip()!r}; commands: "
                         + ", ".join(COMMANDS))
    name, arg = match.group(1), match.group(2) or ""
    if name == "status" and arg in ("", "json"):
        return Command("status", as_json=arg == "json")
    if name in VALUE_COMMANDS:
        try:
            value = float(arg)
        except ValueError:
            value = -1.0
        if name == "nice-ratio":
            if not 0 <= value <= MAX_NICE_RATIO:
                raise UsageError(f"nice-ratio needs a number from 0 to {MAX_NICE_RATIO:g}, "
                                 "e.g. nice-ratio=0.5 (0: no rest)")
        elif not value > 0:
            raise UsageError(f"{name} needs a positive number of seconds, e.g. {name}=0.5")
        return Command(name, value)
    if name in COMMANDS and not arg:
        return Command(name)
    raise UsageError(f"unknown command {line.strip()!r}; commands: "
                     + ", ".join(COMMANDS))


@dataclass(frozen=True)
class ControlState:
    paused: bool
    throttled: bool
    postponed: bool       # `ctl postpone` holds the cutover
    unpostponed: bool     # `ctl unpostpone` released every postpone (flag file included)
    abort_requested: bool
    chunk_time: float
    max_lag: float
    nice_ratio: float = 0.0


class Controls:
    """What the operator asked for; read by the run, changed by the socket (thread-safe)."""

    def __init__(self, *, chunk_time: float, max_lag: float, nice_ratio: float = 0.0
                 ) -> None:
        self._lock = threading.Lock()
        self._state = ControlState(False, False, False, False, False, chunk_time, max_lag,
                                   nice_ratio)

    def state(self) -> ControlState:
        with self._lock:
            return self._state

    def apply(self, cmd: Command) -> str:
        """Carry out one command; returns the reply (and logs the change)."""
        changes = self._changes(cmd)
        with self._lock:
            before = self._state
            self._state = ControlState(**{**asdict(before), **changes})
        message = self._describe(cmd, before)
        log.info("ctl %s: %s", cmd.name, message)
        return message

    @staticmethod
    def _changes(cmd: Command) -> dict[str, Any]:
        changes: dict[str, dict[str, Any]] = {
            "pause": {"paused": True}, "resume": {"paused": False},
            "throttle": {"throttled": True}, "no-throttle": {"throttled": False},
            "postpone": {"postponed": True, "unpostponed": False},
            "unpostpone": {"postponed": False, "unpostponed": True},
            "abort": {"abort_requested": True},
            "chunk-time": {"chunk_time": cmd.value}, "max-lag": {"max_lag": cmd.value},
            "nice-ratio": {"nice_ratio": cmd.value},
        }
        return changes[cmd.name]

    @staticmethod
    def _describe(cmd: Command, before: ControlState) -> str:
        if cmd.name == "chunk-time":
            return f"chunk time {before.chunk_time:g}s -> {cmd.value:g}s"
        if cmd.name == "max-lag":
            return f"max lag {before.max_lag:g}s -> {cmd.value:g}s"
        if cmd.name == "nice-ratio":
            return f"nice ratio {before.nice_ratio:g} -> {cmd.value:g}"
        return {
            "pause": "copier paused; `resume` continues",
            "resume": "copier resumed",
            "throttle": "copier throttled; `no-throttle` ends it",
            "no-throttle": "operator throttle ended",
            "postpone": "cutover postponed until `unpostpone`",
            "unpostpone": "cutover no longer postponed (flag file ignored from now on)",
            "abort": "aborting: the run stops at its next check and stays resumable",
        }[cmd.name]

    def postpone_reason(self, flag_file: str | None) -> str | None:
        """Why the cutover must wait now (operator or flag file), or None."""
        state = self.state()
        if state.postponed:
            return "postponed by `ctl postpone`; `ctl unpostpone` cuts over"
        if state.unpostponed:
            return None
        if flag_file and os.path.exists(flag_file):
            return f"postponed while {flag_file} exists; delete it (or `ctl unpostpone`)"
        return None


def default_socket_path(database: str, table: str) -> str:
    """/tmp/onlineddl.<db>.<table>.sock; names with other characters (or too long for a
    socket path) get a short hash so two tables never share a path."""
    plain = f"{database}.{table}"
    if re.fullmatch(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+", plain) and len(plain) <= 80:
        return f"/tmp/onlineddl.{plain}.sock"
    safe = re.sub(r"[^A-Za-z0-9_-]", "_", plain)[:60]
    digest = hashlib.sha1(plain.encode("utf-8")).hexdigest()[:10]
    return f"/tmp/onlineddl.{safe}.{digest}.sock"


class ControlServer:
    """The socket: one thread, one short connection per command."""

    def __init__(self, path: str, controls: Controls,
                 status: Callable[[], dict[str, Any]]) -> None:
        self.path = path
        self.controls = controls
        self.status = status
        self._sock: socket.socket | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._inode = 0

    def start(self) -> None:
        clear_stale_socket(self.path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(self.path)
            os.chmod(self.path, 0o600)  # before listen(): nobody else can connect first
            sock.listen(8)
        except OSError as exc:
            sock.close()
            raise UsageError(f"cannot listen on the control socket {self.path}: {exc}",
                             hint="pick another path with --control-socket") from exc
        sock.settimeout(0.2)
        self._sock = sock
        self._inode = os.stat(self.path).st_ino
        self._thread = threading.Thread(target=self._serve, name="control-socket",
                                        daemon=True)
        self._thread.start()
        log.info("control socket: %s (onlineddl ctl --control-socket %s status)",
                 self.path, self.path)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._sock is not None:
            self._sock.close()
            try:  # only our own file: another run may have taken the path since
                if os.stat(self.path).st_ino == self._inode:
                    os.unlink(self.path)
            except OSError:
                pass

    def _serve(self) -> None:
        assert self._sock is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                try:
                    self._handle(conn)
                except OSError as exc:  # a client that hung up: nothing to answer
                    log.debug("control socket client: %s", exc)
                except Exception:  # a bug: keep the socket serving the next command
                    log.exception("control socket: the command failed")

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(TIMEOUT)
        line = _read_line(conn)
        conn.sendall((self.reply(line) + "\n").encode("utf-8"))

    def reply(self, line: str) -> str:
        try:
            cmd = parse_command(line)
        except UsageError as err:
            return f"error: {err.message}"
        if cmd.name == "help":
            return "\n".join(f"{name:14} {text}" for name, text in COMMANDS.items())
        if cmd.name == "status":
            info = {**self.status(), **asdict(self.controls.state())}
            if cmd.as_json:
                return json.dumps(info, default=str)
            return "\n".join(f"{k}: {v}" for k, v in info.items())
        return "ok: " + self.controls.apply(cmd)


def _read_line(conn: socket.socket, limit: int = 1024) -> str:
    data = b""
    while b"\n" not in data and len(data) < limit:
        part = conn.recv(256)
        if not part:
            break
        data += part
    return data.split(b"\n", 1)[0].decode("utf-8", "replace")


def clear_stale_socket(path: str) -> None:
    """Remove a socket file a killed run left behind (it must never block a resume);
    refuse a path that is not a socket, or one another process still listens on."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise UsageError(f"the control socket path {path} exists and is not a socket",
                         hint="pick another path with --control-socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        os.unlink(path)
        log.info("removed the stale control socket %s of an earlier run", path)
        return
    except OSError:
        pass
    finally:
        probe.close()
    raise UsageError(f"another process listens on the control socket {path}",
                     hint="each run needs its own socket: pick another --control-socket")


def send(path: str, line: str, timeout: float = TIMEOUT) -> str:
    """The client side (`onlineddl ctl`): send one command, return the reply.
    Raises UsageError for a command the run refused."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
        sock.sendall((line.strip() + "\n").encode("utf-8"))
        chunks = []
        while part := sock.recv(65536):
            chunks.append(part)
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        raise ConnectionFailed(
            f"no onlineddl run is listening on {path} ({exc.strerror})",
            hint="check --database/--table or --control-socket; the run prints its socket "
                 "path at start") from exc
    except OSError as exc:
        raise ConnectionFailed(f"control socket {path}: {exc}") from exc
    finally:
        sock.close()
    reply = b"".join(chunks).decode("utf-8", "replace").rstrip("\n")
    if reply.startswith("error: "):
        raise UsageError(reply[len("error: "):])
    return reply

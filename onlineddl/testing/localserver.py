"""A throwaway local MariaDB/MySQL server: the embedded default for tests, demo, benchmarks.

    with LocalServer() as srv:          # fresh temp dir, free port, root with no password
        dsn = srv.dsn                   # mysql://root@127.0.0.1:PORT

Everything lives under one directory (the `datadir` argument):

    DIR/data/          the server's data directory (initialised on first start)
    DIR/mysqld.sock    DIR/mysqld.pid    DIR/error.log    DIR/init.sql    DIR/server.json

The server is configured like a production primary as far as the engine cares (ROW
binlog, FULL images and metadata, GTIDs) and like a scratch box otherwise (no fsync).
It is stopped by its own pid only, never by process name: other people's servers may be
running on the same machine. CLI: `python -m onlineddl.testing.localserver start|stop|status`.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import ctypes
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from onlineddl.config import MAX_SOCKET_PATH, Dsn
from onlineddl.db import login_probe
from onlineddl.errors import ConnectionFailed, OnlineDDLError

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
SEARCH_DIRS = ("/usr/sbin", "/usr/local/sbin", "/usr/bin", "/usr/local/bin")
INSTALL_HINT = "apt-get install -y mariadb-server-core (or put mariadbd/mysqld on PATH)"
PORT_ATTEMPTS = 3


class LocalServerError(OnlineDDLError):
    """The local server could not be found, started or stopped."""


@dataclass(frozen=True)
class Layout:
    """Where each file of one local server lives."""

    root: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def socket(self) -> Path:
        return self.root / "mysqld.sock"

    @property
    def pid_file(self) -> Path:
        return self.root / "mysqld.pid"

    @property
    def error_log(self) -> Path:
        return self.root / "error.log"

    @property
    def init_sql(self) -> Path:
        return self.root / "init.sql"

    @property
    def tmpdir(self) -> Path:
        # Its own: a starting mariadbd deletes the #sql* files in its tmpdir, which in a
        # shared /tmp are other servers' live temporary tables.
        return self.root / "tmp"

    @property
    def state(self) -> Path:
        return self.root / "server.json"


# ---------------------------------------------------------------------------------------
# Flavors: how to initialise a data directory and which flags each server understands.


@dataclass(frozen=True)
class Flavor:
    """A server binary and its version; subclasses override only what differs."""

    server: Path
    version: tuple[int, int, int]
    name = ""

    def initialize(self, layout: Layout, target: Path, timeout: float,
                   extra_flags: tuple[str, ...] = ()) -> None:
        """Create the data directory. `extra_flags`: the server's extra options, for
        those the data directory must be created with."""
        raise NotImplementedError

    def init_sql(self) -> str:
        # install-db creates root@localhost only (socket); tests and tools come in over TCP.
        return ("CREATE USER IF NOT EXISTS 'root'@'127.0.0.1';\n"
                "GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;\n")

    def flags(self) -> list[str]:
        """Flags beyond the common ones: GTIDs, row metadata, replica updates."""
        raise NotImplementedError


@dataclass(frozen=True)
class MariaDB(Flavor):
    name = "mariadb"

    def initialize(self, layout: Layout, target: Path, timeout: float,
                   extra_flags: tuple[str, ...] = ()) -> None:
        install_db = _find_install_db(self.server)
        _run_init([
            str(install_db), "--no-defaults", f"--datadir={target}",
            # 'normal' gives root@localhost an empty password instead of unix_socket auth,
            # which would tie logins to the OS user that happens to run the tests.
            "--auth-root-authentication-method=normal",
            "--skip-test-db", "--skip-name-resolve", f"--extra-file={layout.init_sql}",
            *_user_flag(),
        ], timeout)

    def init_sql(self) -> str:
        # Bootstrap runs with grant tables off; GRANT fails with 1290 until they are loaded.
        return "FLUSH PRIVILEGES;\n" + super().init_sql()

    def flags(self) -> list[str]:
        # MariaDB always writes GTIDs; --binlog-row-metadata arrived in 10.5.
        extra = ["--binlog-row-metadata=FULL"] if self.version >= (10, 5, 0) else []
        return [*extra, "--log-slave-updates"]


@dataclass(frozen=True)
class MySQL(Flavor):
    name = "mysql"

    def initialize(self, layout: Layout, target: Path, timeout: float,
                   extra_flags: tuple[str, ...] = ()) -> None:
        # MySQL 8 fixes lower_case_table_names when the data dictionary is created.
        case = tuple(f for f in extra_flags if f.startswith("--lower-case-table-names"))
        _run_init([
            str(self.server), "--no-defaults", "--initialize-insecure", f"--datadir={target}",
            f"--init-file={layout.init_sql}", *_user_flag(), *case,
        ], timeout)

    def flags(self) -> list[str]:
        extra = ["--binlog-row-metadata=FULL"] if self.version >= (8, 0, 1) else []
        # 8.0.26 renamed the option; 8.4 still accepts the old name but warns.
        updates = "--log-replica-updates" if self.version >= (8, 0, 26) else "--log-slave-updates"
        return [
            *extra, "--gtid-mode=ON", "--enforce-gtid-consistency=ON", updates,
            # X Protocol listens on 33060 by default: two local servers would collide.
            "--mysqlx=OFF",
        ]


def find_flavor() -> Flavor | None:
    """The server binary on this machine (mariadbd first, then mysqld), or None."""
    for name in ("mariadbd", "mysqld"):
        path = _which(name)
        if path is not None:
            return _identify(path)
    return None


def _which(name: str) -> Path | None:
    # /usr/sbin is often missing from a non-root PATH, and that is where Debian puts mariadbd.
    found = shutil.which(name) or shutil.which(name, path=os.pathsep.join(SEARCH_DIRS))
    return Path(found) if found else None


def _identify(server: Path) -> Flavor:
    out = subprocess.run([str(server), "--version"], capture_output=True, text=True,
                         timeout=30, check=False).stdout
    match = re.search(r"Ver (\d+)\.(\d+)\.(\d+)", out)
    if match is None:
        raise LocalServerError(f"cannot read the version of {server}: {out.strip()!r}")
    version = (int(match[1]), int(match[2]), int(match[3]))
    cls = MariaDB if "mariadb" in out.lower() else MySQL
    return cls(server=server, version=version)


def _find_install_db(server: Path) -> Path:
    # Tarball layouts keep the script in ../bin or ../scripts next to the server binary.
    beside = [server.parent.parent / d for d in ("bin", "scripts")]
    for name in ("mariadb-install-db", "mysql_install_db"):
        found = _which(name) or next((d / name for d in beside if (d / name).is_file()), None)
        if found is not None:
            return found
    raise LocalServerError("mariadb-install-db not found", hint=INSTALL_HINT)


def _user_flag() -> list[str]:
    # mariadbd/mysqld refuse to run as root unless told to explicitly.
    return ["--user=root"] if os.geteuid() == 0 else []


def _run_init(argv: list[str], timeout: float) -> None:
    # Own process group: install-db is a shell script whose bootstrap server must not
    # outlive a timeout, and the group is ours alone to kill.
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=max(timeout, 1))
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise LocalServerError(f"{argv[0]} did not finish in {timeout:.0f}s") from None
    if proc.returncode != 0:
        lines = out.decode(errors="replace").splitlines()
        # install-db ends with a page of generic advice; the cause is an [ERROR] line.
        errors = [line for line in lines if "ERROR" in line][:10]
        tail = "\n".join([*errors, *lines[-8:]])
        raise LocalServerError(f"{argv[0]} failed with code {proc.returncode}:\n{tail}")


# ---------------------------------------------------------------------------------------
# Processes: identified by pid, checked against the data dir before any signal.


def pid_alive(pid: int) -> bool:
    """True while `pid` runs; a zombie (exited, not yet reaped by init) counts as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"


def _cmdline(pid: int) -> list[str]:
    if Path("/proc/self").is_dir():
        try:
            return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            return []
    # No /proc (macOS): ask ps about this one pid.
    out = subprocess.run(["ps", "-o", "args=", "-p", str(pid)], capture_output=True,
                         text=True, timeout=10, check=False).stdout
    return out.split()


def _serves(pid: int, layout: Layout) -> bool:
    """True when `pid` is alive and is the server of this data dir (guards pid reuse)."""
    return pid_alive(pid) and f"--datadir={layout.data}" in _cmdline(pid)


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _parent_death_signal() -> Callable[[], object] | None:
    """A preexec_fn that makes the child get SIGTERM when this thread dies (Linux only).

    atexit does not run when the test runner is SIGKILLed; this still stops the server.
    The kernel ties it to the forking *thread*, so it is only safe from the main thread.
    """
    if not sys.platform.startswith("linux") or threading.current_thread() is not \
            threading.main_thread():
        return None
    libc = ctypes.CDLL(None, use_errno=True)  # loaded here: the child must not load libraries
    pr_set_pdeathsig = 1
    return lambda: libc.prctl(pr_set_pdeathsig, signal.SIGTERM)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now (may race; start retries)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


# ---------------------------------------------------------------------------------------
# The server.


class LocalServer:
    """One throwaway server process, owned by this object (or by the CLI's server.json)."""

    def __init__(self, datadir: Path | None = None, port: int | None = None,
                 server_id: int = 1, extra_flags: tuple[str, ...] = ()) -> None:
        """`extra_flags`: more server options, appended last (so they win), e.g.
        ("--lower-case-table-names=1",) for a test of that setting."""
        self._owns_dir = datadir is None
        # resolve(): `stop` compares this path with the running server's command line.
        root = Path(tempfile.mkdtemp(prefix="onlineddl-server-")) if datadir is None \
            else Path(datadir)
        self.layout = Layout(root.resolve())
        self._requested_port = port
        self.port: int | None = None
        self.server_id = server_id
        self.extra_flags = extra_flags
        self.pid: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._flavor: Flavor | None = None

    @property
    def dsn(self) -> Dsn:
        if self.port is None:
            raise LocalServerError("the local server is not started")
        return Dsn(host=HOST, port=self.port, user="root", password="")

    @property
    def flavor(self) -> Flavor:
        if self._flavor is None:
            self._flavor = find_flavor()
        if self._flavor is None:
            raise LocalServerError("no mariadbd or mysqld found on PATH or in /usr/sbin",
                                   hint=INSTALL_HINT)
        return self._flavor

    def __enter__(self) -> LocalServer:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- start -----------------------------------------------------------------------

    def start(self, timeout: float = 60, *, detach: bool = False) -> Dsn:
        """Start the server and wait (bounded) until root can log in over TCP.

        detach=True is for the CLI: the server outlives this Python process and is
        stopped later through server.json instead of at exit.
        """
        if self.pid is not None and pid_alive(self.pid):
            raise LocalServerError(f"this LocalServer is already running (pid {self.pid})")
        deadline = time.monotonic() + timeout
        try:
            self._prepare(deadline)
            self._launch(deadline, detach)
        except BaseException:
            self._abort()
            raise
        self._write_state()
        if not detach:
            atexit.register(self._stop_at_exit)
        return self.dsn

    def _launch(self, deadline: float, detach: bool) -> None:
        for attempt in range(1, PORT_ATTEMPTS + 1):
            self.port = self._pick_port()
            offset = self._spawn(detach)
            try:
                self._wait_ready(deadline, offset)
                return
            except _PortTaken:
                # Someone took our free port between probe and bind: only retry ports we chose.
                if self._requested_port is not None or attempt == PORT_ATTEMPTS:
                    raise self._failure("could not bind its port", offset) from None

    def _pick_port(self) -> int:
        if self._requested_port is None:
            return free_port()
        # Checked up front: otherwise the readiness probe could reach whoever holds the port.
        if not _port_free(self._requested_port):
            raise LocalServerError(f"port {self._requested_port} on {HOST} is in use",
                                   hint="pick another --port, or omit it to get a free one")
        return self._requested_port

    def _prepare(self, deadline: float) -> None:
        self.layout.root.mkdir(parents=True, exist_ok=True)
        self.layout.tmpdir.mkdir(exist_ok=True)
        if len(str(self.layout.socket)) > MAX_SOCKET_PATH:
            raise LocalServerError(f"socket path too long: {self.layout.socket}",
                                   hint="use a shorter --datadir")
        self._clear_stale_files()
        if not (self.layout.data / "mysql").is_dir():
            self._initialize(deadline - time.monotonic())

    def _clear_stale_files(self) -> None:
        """A server killed earlier leaves its pid and socket files; they must not block us."""
        for pid in (_read_pid(self.layout.pid_file), self._state_pid()):
            if pid is not None and _serves(pid, self.layout):
                raise LocalServerError(f"a server is already running on {self.layout.root} "
                                       f"(pid {pid})", hint="stop it first: python -m "
                                       "onlineddl.testing.localserver stop --datadir "
                                       f"{self.layout.root}")
        sock = self.layout.socket
        for stale in (self.layout.pid_file, sock, sock.with_name(sock.name + ".lock"),
                      self.layout.state):
            stale.unlink(missing_ok=True)

    def _initialize(self, timeout: float) -> None:
        # Initialise beside the final place and rename: a half-built data dir from an
        # interrupted run must never look like a usable one.
        target = self.layout.root / "data.init"
        deadline = time.monotonic() + timeout
        self.layout.init_sql.write_text(self.flavor.init_sql())
        for attempt in (1, 2):
            shutil.rmtree(target, ignore_errors=True)
            shutil.rmtree(self.layout.data, ignore_errors=True)
            try:
                self.flavor.initialize(self.layout, target, deadline - time.monotonic(),
                                       self.extra_flags)
                break
            except LocalServerError as err:
                # Seen once on a loaded 2-core machine: install-db's bootstrap failed and
                # a second try on a clean directory worked.
                if attempt == 2 or time.monotonic() >= deadline:
                    raise
                log.warning("initialising %s failed, trying once more: %s", target,
                            err.message)
        target.rename(self.layout.data)

    def argv(self) -> list[str]:
        """The exact command line of the server (after start() chose the port)."""
        lay = self.layout
        return [
            str(self.flavor.server),
            "--no-defaults",  # must come first: never read /etc/mysql or ~/.my.cnf
            f"--datadir={lay.data}", f"--socket={lay.socket}", f"--pid-file={lay.pid_file}",
            f"--tmpdir={lay.tmpdir}",
            f"--log-error={lay.error_log}", *_user_flag(),
            f"--port={self.port}", f"--bind-address={HOST}", "--skip-name-resolve",
            f"--server-id={self.server_id}", "--log-bin=binlog",
            "--binlog-format=ROW", "--binlog-row-image=FULL", *self.flavor.flags(),
            "--innodb-buffer-pool-size=256M",
            # Throwaway data: durability costs fsyncs we do not need.
            "--innodb-flush-log-at-trx-commit=2", "--sync-binlog=0",
            "--max-connections=500", "--max-allowed-packet=64M",
            *self.extra_flags,
        ]

    def _spawn(self, detach: bool) -> int:
        """Start the process; return the error log offset where this attempt's output begins."""
        log_path = self.layout.error_log
        offset = log_path.stat().st_size if log_path.exists() else 0
        with open(log_path, "ab") as log:  # early failures print before --log-error applies
            self._proc = subprocess.Popen(
                self.argv(), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                # Own session: a Ctrl-C meant for pytest must not kill the server mid-test.
                start_new_session=True,
                preexec_fn=None if detach else _parent_death_signal(),
            )
        self.pid = self._proc.pid
        return offset

    def _wait_ready(self, deadline: float, offset: int) -> None:
        while True:
            if self._proc is not None and self._proc.poll() is not None:
                if _port_taken(self._log_since(offset)):
                    raise _PortTaken()
                raise self._failure(f"exited with code {self._proc.returncode}", offset)
            if self._ping():
                return
            if time.monotonic() > deadline:
                raise self._failure("did not answer in time", offset)
            time.sleep(0.05)

    def _ping(self) -> bool:
        """True once root can log in over TCP to *this* server (not whoever has the port)."""
        dsn = Dsn(host=HOST, port=self.port or 0, user="root", password="",
                  connect_timeout=1)
        try:
            answer = login_probe(dsn, "SELECT @@socket", read_timeout=5)
        except ConnectionFailed as exc:  # root's login refused
            raise LocalServerError(f"root cannot log in over TCP to {HOST}:{self.port}",
                                   hint=f"delete {self.layout.root} to re-initialise"
                                   ) from exc
        # None: not listening yet (2003) or still starting up
        return answer is not None and answer == str(self.layout.socket)

    def _log_since(self, offset: int) -> str:
        try:
            with open(self.layout.error_log, "rb") as log:
                log.seek(offset)
                return log.read().decode(errors="replace")
        except OSError:
            return ""

    def _failure(self, what: str, offset: int) -> LocalServerError:
        tail = "\n".join(self._log_since(offset).splitlines()[-25:])
        return LocalServerError(f"local server {what} (port {self.port}); "
                                f"{self.layout.error_log} ends with:\n{tail}")

    # -- state file ------------------------------------------------------------------

    def _write_state(self) -> None:
        state = {"pid": self.pid, "port": self.port, "dsn": url(self.dsn),
                 "flavor": self.flavor.name, "datadir": str(self.layout.root)}
        tmp = self.layout.state.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2) + "\n")
        tmp.replace(self.layout.state)

    def _state_pid(self) -> int | None:
        pid = read_state(self.layout.root).get("pid")
        return pid if isinstance(pid, int) else None

    # -- stop ------------------------------------------------------------------------

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM our own server pid, wait (bounded), SIGKILL it if it will not go.

        Without a child process of our own (the CLI case) the pid comes from server.json
        and is signalled only if its command line names this data dir.
        """
        atexit.unregister(self._stop_at_exit)
        if self._proc is not None:
            _terminate_child(self._proc, timeout)
        else:
            pid = self._state_pid()
            if pid is not None and _serves(pid, self.layout):
                _terminate_pid(pid, timeout)
        self.layout.state.unlink(missing_ok=True)
        self._forget()

    def _abort(self) -> None:
        """Undo a failed start: kill only the process this start spawned, nothing else."""
        if self._proc is not None:
            # SIGKILL at once: mariadbd ignores SIGTERM until it has finished starting up.
            self._proc.kill()
            self._proc.wait(10)
        self._forget()

    def _forget(self) -> None:
        self.pid, self._proc, self.port = None, None, None
        if self._owns_dir:
            shutil.rmtree(self.layout.root, ignore_errors=True)

    def _stop_at_exit(self) -> None:
        with contextlib.suppress(Exception):
            self.stop(timeout=10)


class _PortTaken(Exception):
    pass


def _terminate_child(proc: subprocess.Popen[bytes], timeout: float) -> None:
    # Popen's signal methods do nothing once the child is reaped, so a recycled pid is
    # never hit.
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def _terminate_pid(pid: int, timeout: float) -> None:
    """Stop a server that is not our child (started by the CLI in another process)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if _wait_gone(pid, timeout):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    if not _wait_gone(pid, 10):
        raise LocalServerError(f"local server pid {pid} survived SIGKILL")


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _port_taken(log: str) -> bool:
    return "Address already in use" in log or "Bind on TCP/IP port" in log


def url(dsn: Dsn) -> str:
    return f"mysql://{dsn.user}@{dsn.host}:{dsn.port}"


def read_state(root: Path) -> dict[str, Any]:
    """The CLI's record of a running server (pid, port, dsn), or {} when there is none."""
    try:
        state = json.loads(Layout(Path(root).resolve()).state.read_text())
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


# ---------------------------------------------------------------------------------------
# CLI: scripts/demo and benchmarks start a server that outlives the command.


def _cmd_start(args: argparse.Namespace) -> int:
    srv = LocalServer(datadir=args.datadir, port=args.port, server_id=args.server_id)
    dsn = srv.start(timeout=args.timeout, detach=True)
    print(url(dsn))
    return 0


def _cmd_stop(args: argparse.Namespace) -> int:
    LocalServer(datadir=args.datadir).stop(timeout=args.timeout)
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    layout = Layout(Path(args.datadir).resolve())
    state = read_state(layout.root)
    pid = state.get("pid")
    if isinstance(pid, int) and _serves(pid, layout):
        print(f"running pid={pid} {state.get('dsn')}")
        return 0
    print("stopped")
    return 3  # like `systemctl status`: 3 means not running


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m onlineddl.testing.localserver",
                                     description="A throwaway local MariaDB/MySQL server.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, func in (("start", _cmd_start), ("stop", _cmd_stop), ("status", _cmd_status)):
        cmd = sub.add_parser(name)
        cmd.add_argument("--datadir", type=Path, required=True)
        cmd.add_argument("--timeout", type=float, default=60)
        cmd.set_defaults(func=func)
        if name == "start":
            cmd.add_argument("--port", type=int, default=None)
            cmd.add_argument("--server-id", type=int, default=1)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return int(args.func(args))
    except OnlineDDLError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())

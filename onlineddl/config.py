"""Frozen configuration: every decision a run is made of, validated once."""

from __future__ import annotations

import dataclasses
import os
import random
import re
import urllib.parse
from dataclasses import dataclass, field

from onlineddl.errors import UsageError


@dataclass(frozen=True)
class Dsn:
    """Where the server is and who we are. The password never appears in repr()."""

    host: str = "127.0.0.1"
    port: int = 3306
    user: str = "root"
    password: str = field(default="", repr=False)
    unix_socket: str | None = None
    connect_timeout: float = 10.0

    @classmethod
    def parse(cls, url: str) -> Dsn:
        """Parse `mysql://user:pass@host:port` (or `?unix_socket=/path`)."""
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("mysql", "mariadb"):
            raise UsageError(f"not a mysql:// DSN: {parts.scheme}://...",
                             hint="write it as mysql://user:password@host:port")
        query = urllib.parse.parse_qs(parts.query)
        sock = query.get("unix_socket", [None])[0]
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 3306,
            user=urllib.parse.unquote(parts.username or "root"),
            password=urllib.parse.unquote(parts.password or ""),
            unix_socket=sock,
        )

    def with_password(self, password: str) -> Dsn:
        return dataclasses.replace(self, password=password)

    def describe(self) -> str:
        where = self.unix_socket or f"{self.host}:{self.port}"
        return f"{self.user}@{where}"


MAX_NICE_RATIO = 100.0  # resting longer than this is a pause: `ctl pause`


@dataclass(frozen=True)
class Tuning:
    """Knobs with defaults that suit a busy primary; each has a test that moves it."""

    chunk_time: float = 0.5          # target seconds per copy chunk
    chunk_rows_initial: int = 1000
    chunk_rows_min: int = 100
    chunk_rows_max: int = 100_000
    flush_batch: int = 1000          # keys per applier flush statement
    flush_interval: float = 0.2      # seconds between applier flushes
    flush_workers: int = 2           # applier connections applying batches side by side
    max_backlog: int = 500_000       # changed keys held in memory before reading pauses
    progress_interval: float = 5.0   # seconds between status lines
    checkpoint_interval: float = 2.0
    lock_wait_timeout: int = 3       # seconds, for the tool's own sessions
    cutover_attempts: int = 5
    cutover_lock_timeout: int = 2    # seconds the cutover may wait for its write block
    catchup_timeout: float = 600.0   # bounded wait for the applier to catch up
    # How long the binlog reader may take to reach the swap's RENAME: the tripwire after
    # the swap, and --resume confirming a swap from the drain position.
    rename_seen_timeout: float = 30.0
    block_timeout: float = 5.0       # longest a drain may keep writes blocked
    checksum_chunk_rows: int = 10_000
    copy_workers: int = 1            # chunks copied side by side (2+ helps only with idle cores)
    nice_ratio: float = 0.0          # after each chunk, rest this many times its copy time
    checksum_workers: int = 2        # parallel checksum readers (one snapshot each)
    repair_attempts: int = 3

    def validate(self) -> None:
        if self.chunk_time <= 0:
            raise UsageError("--chunk-time must be positive")
        if not 1 <= self.chunk_rows_min <= self.chunk_rows_initial <= self.chunk_rows_max:
            raise UsageError("chunk sizes must satisfy 1 <= min <= initial <= max")
        if self.cutover_attempts < 1:
            raise UsageError("--cutover-attempts must be at least 1")
        if self.lock_wait_timeout < 1:
            raise UsageError("--lock-wait-timeout must be at least 1 second")
        if not 1 <= self.copy_workers <= 32:
            raise UsageError("--copy-workers must be between 1 and 32")
        if not 0 <= self.nice_ratio <= MAX_NICE_RATIO:
            raise UsageError(f"--nice-ratio must be between 0 and {MAX_NICE_RATIO:g} (0: full "
                             "speed; 1: rest as long as each chunk took)")
        # Not flags, but a zero here would hang the run (a full delta map of size 0
        # never drains) or leave nobody to flush or compare.
        if self.max_backlog < 1 or self.flush_workers < 1 or self.checksum_workers < 1 \
                or self.flush_batch < 1:
            raise UsageError("max_backlog, flush_batch, flush_workers and checksum_workers "
                             "must be at least 1")


@dataclass(frozen=True)
class Throttling:
    """When the copier waits, and when the run stops (see throttle.py)."""

    max_lag: float = 1.5                  # seconds a replica may lag before the copier waits
    replicas: tuple[Dsn, ...] = ()        # --replica: replicas whose lag is watched
    discover_replicas: bool = False       # also watch the replicas the primary lists
    max_load: tuple[tuple[str, int], ...] = ()       # copier waits while a status var exceeds
    critical_load: tuple[tuple[str, int], ...] = ()  # the run stops (resumably) when exceeded
    flag_file: str | None = None          # copier waits while this file exists
    interval: float = 0.5                 # seconds between checks on the server

    @property
    def watches_server(self) -> bool:
        return bool(self.replicas or self.discover_replicas or self.max_load
                    or self.critical_load)

    def validate(self) -> None:
        if self.max_lag <= 0:
            raise UsageError("--max-lag must be positive")
        if self.interval <= 0:
            raise UsageError("the throttle check interval must be positive")
        for flag, pairs in (("--max-load", self.max_load),
                            ("--critical-load", self.critical_load)):
            for name, limit in pairs:
                if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) or limit < 0:
                    raise UsageError(f"{flag}: bad threshold {name}={limit}",
                                     hint=f"write it as {flag} Threads_running=50")


def parse_load(text: str, flag: str = "--max-load") -> tuple[tuple[str, int], ...]:
    """`Threads_running=50,Threads_connected=500` -> (("Threads_running", 50), ...)."""
    pairs: list[tuple[str, int]] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        name = name.strip()
        try:
            limit = int(value.strip())
        except ValueError:
            limit = -1
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) or limit < 0:
            raise UsageError(f"{flag}: cannot read {part!r}",
                             hint=f"write it as {flag} Threads_running=50[,VAR=N...] with "
                                  "a status variable name and a whole number")
        pairs.append((name, limit))
    if not pairs:
        raise UsageError(f"{flag} needs at least one VAR=N")
    return tuple(pairs)


def parse_replica(text: str, primary: Dsn) -> Dsn:
    """`host[:port]`, or `mysql://user@host:port`; the primary's credentials by default,
    so no password need appear on the command line."""
    if "://" in text:
        dsn = Dsn.parse(text)
        user = dsn.user if "@" in text else primary.user
        password = dsn.password or primary.password
        return Dsn(host=dsn.host, port=dsn.port, user=user, password=password,
                   connect_timeout=primary.connect_timeout)
    host, _, port = text.rpartition(":") if ":" in text else (text, "", "3306")
    if not host or not port.isdigit():
        raise UsageError(f"--replica: cannot read {text!r}",
                         hint="write it as HOST[:PORT] or mysql://user@HOST:PORT")
    return Dsn(host=host, port=int(port), user=primary.user, password=primary.password,
               connect_timeout=primary.connect_timeout)


@dataclass(frozen=True)
class HookConfig:
    """Executables in `directory` run at named events (see hooks.py)."""

    directory: str | None = None
    timeout: float = 60.0           # seconds; a hook still running then is killed (a failure)
    status_interval: float = 60.0   # seconds between `status` hooks
    retry_interval: float = 5.0     # a failing before-cutover hook is run again this often

    def validate(self) -> None:
        if self.directory is not None and not os.path.isdir(self.directory):
            raise UsageError(f"--hooks-dir {self.directory} is not a directory")
        if self.timeout <= 0 or self.status_interval <= 0 or self.retry_interval <= 0:
            raise UsageError("hook timeout and intervals must be positive")


# Linux limits a unix socket path to 108 bytes including the NUL.
MAX_SOCKET_PATH = 107


@dataclass(frozen=True)
class MigrationConfig:
    dsn: Dsn
    database: str
    table: str
    alter: str
    repair: bool = True
    drop_old: bool = False
    keep_old_for: float | None = None        # seconds; drop older old tables (None: keep)
    resume: bool = False             # --resume: continue a run; refuse when there is none
    resume_auto: bool = False        # --resume=auto: continue, start, or report it done
    server_id: int = 0               # 0: derive a unique one at run time
    lock_wait: float = 0.0           # seconds to wait for another runner (--wait-for-lock)
    max_checkpoint_age: float = 3 * 86400.0  # --resume refuses older checkpoints
    postpone_flag_file: str | None = None    # cutover waits while this file exists
    tuning: Tuning = field(default_factory=Tuning)
    throttling: Throttling = field(default_factory=Throttling)
    hooks: HookConfig = field(default_factory=HookConfig)
    control_socket: str | None = None        # unix socket for `onlineddl ctl`; None: none
    metrics_port: int | None = None          # Prometheus endpoint; None: none, 0: any port
    metrics_address: str = "127.0.0.1"
    allow_instant: bool = False              # apply an INSTANT-capable ALTER in place
    # "migrate", or "revert" (revert.py; `alter` then names the old table it brings back,
    # "revert to <old table>", once the run found it)
    kind: str = "migrate"

    def reader_server_id(self) -> int:
        """The server id a binlog reader of this run registers with: --server-id, or
        a random one in a range servers are rarely given."""
        return self.server_id or random.randint(1 << 30, (1 << 32) - 2)

    def validate(self) -> None:
        if not self.database:
            raise UsageError("--database is required")
        if not self.table:
            raise UsageError("--table is required")
        if self.kind not in ("migrate", "revert"):
            raise UsageError(f"unknown kind of run {self.kind!r}")
        if self.kind == "migrate" and not self.alter.strip():
            raise UsageError("--alter is required", hint='e.g. --alter "ADD COLUMN c INT NULL"')
        for name in (self.database, self.table):
            if len(name) > 64:
                raise UsageError(f"identifier longer than 64 characters: {name[:20]}...")
            if "\x00" in name:
                raise UsageError("identifiers may not contain NUL bytes")
        self._validate_resume()
        if self.keep_old_for is not None and self.keep_old_for < 0:
            raise UsageError("--keep-old-for must not be negative")
        self.tuning.validate()
        self.throttling.validate()
        self.hooks.validate()
        if self.control_socket is not None and (
                not self.control_socket
                or len(self.control_socket.encode()) > MAX_SOCKET_PATH):
            raise UsageError(f"--control-socket must be a path of 1 to {MAX_SOCKET_PATH} "
                             "bytes", hint="pick a shorter path")
        if self.metrics_port is not None and not 0 <= self.metrics_port <= 65535:
            raise UsageError("--metrics-port must be between 0 and 65535")

    def _validate_resume(self) -> None:
        """--resume=auto recognises a finished run by the old table it kept
        (`_T_old_<stamp>`, see Migration.finished_before): options that leave none
        would make a re-run after success start a second migration of the table.
        (--keep-old-for drops only tables older than it asks; a retry comes sooner.)"""
        if not self.resume_auto:
            return
        if self.resume:
            raise UsageError("--resume and --resume=auto are one option; give it once")
        refused = (("--drop-old", self.drop_old,
                    "drop --drop-old, and drop the old table (_T_old_<stamp>) in a later "
                    "step once the migration succeeded (`onlineddl cleanup --old`)"),
                   ("--allow-instant", self.allow_instant,
                    "drop --allow-instant (the run then copies online and keeps _T_old_<stamp>), "
                    "or run an instant ALTER outside the scheduler"))
        for flag, given, hint in refused:
            if given:
                raise UsageError(
                    f"--resume=auto cannot be combined with {flag}: a re-run after success "
                    "recognises the finished migration by the old table (_T_old_<stamp>) it kept, "
                    "and "
                    f"{flag} leaves none, so a retry would migrate the table again",
                    hint=hint)


def password_from_env() -> str | None:
    return os.environ.get("ONLINEDDL_PASSWORD")

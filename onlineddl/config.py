"""Frozen configuration: every decision a run is made of, validated once."""

from __future__ import annotations

import dataclasses
import os
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


@dataclass(frozen=True)
class Tuning:
    """Knobs with defaults that suit a busy primary; each has a test that moves it."""

    chunk_time: float = 0.5          # target seconds per copy chunk
    chunk_rows_initial: int = 1000
    chunk_rows_min: int = 100
    chunk_rows_max: int = 100_000
    flush_batch: int = 1000          # keys per applier flush statement
    flush_interval: float = 0.2      # seconds between applier flushes
    progress_interval: float = 5.0   # seconds between status lines
    checkpoint_interval: float = 2.0
    lock_wait_timeout: int = 3       # seconds, for the tool's own sessions
    cutover_attempts: int = 5
    cutover_lock_timeout: int = 2    # seconds the cutover may wait for its write block
    catchup_timeout: float = 600.0   # bounded wait for the applier to catch up
    drain_timeout: float = 30.0      # bounded wait to drain under the write block
    block_timeout: float = 5.0       # longest a drain may keep writes blocked
    checksum_chunk_rows: int = 10_000
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


@dataclass(frozen=True)
class MigrationConfig:
    dsn: Dsn
    database: str
    table: str
    alter: str
    repair: bool = True
    drop_old: bool = False
    resume: bool = False
    server_id: int = 0               # 0: derive a unique one at run time
    lock_wait: float = 0.0           # seconds to wait for another runner (--wait-for-lock)
    max_checkpoint_age: float = 3 * 86400.0  # --resume refuses older checkpoints
    postpone_flag_file: str | None = None    # cutover waits while this file exists
    tuning: Tuning = field(default_factory=Tuning)

    def validate(self) -> None:
        if not self.database:
            raise UsageError("--database is required")
        if not self.table:
            raise UsageError("--table is required")
        if not self.alter.strip():
            raise UsageError("--alter is required", hint='e.g. --alter "ADD COLUMN c INT NULL"')
        for name in (self.database, self.table):
            if len(name) > 64:
                raise UsageError(f"identifier longer than 64 characters: {name[:20]}...")
            if "\x00" in name:
                raise UsageError("identifiers may not contain NUL bytes")
        self.tuning.validate()


def password_from_env() -> str | None:
    return os.environ.get("ONLINEDDL_PASSWORD")

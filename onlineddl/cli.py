"""The command line: subcommands build a config and call the API; only OnlineDDLError is
caught, and it becomes a message on stderr plus the documented exit code."""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from onlineddl import commands
from onlineddl.config import Dsn, MigrationConfig, Tuning, password_from_env
from onlineddl.errors import EXIT_CODES, OnlineDDLError, UsageError
from onlineddl.migration import migrate

log = logging.getLogger("onlineddl")


def _server_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("server")
    g.add_argument("--host", default="127.0.0.1")
    g.add_argument("--port", type=int, default=3306)
    g.add_argument("--user", default="root")
    g.add_argument("--socket", default=None, help="unix socket path (instead of host/port)")
    g.add_argument("--password-file", type=Path, default=None,
                   help="file whose first line is the password")
    g.add_argument("--ask-password", action="store_true",
                   help="prompt for the password on the terminal")
    g.add_argument("--connect-timeout", type=float, default=10.0)
    p.add_argument("--database", "-d", required=True)
    p.add_argument("--table", "-t", required=True)
    p.add_argument("--verbose", "-v", action="store_true")
    p.add_argument("--log-format", choices=("text", "json"), default="text")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="onlineddl", description="Online schema changes for MySQL and MariaDB.",
        epilog="exit codes: " + "; ".join(f"{k} {v}" for k, v in EXIT_CODES.items()))
    sub = parser.add_subparsers(dest="command", required=True)

    m = sub.add_parser("migrate", help="ALTER a table online")
    _server_args(m)
    m.add_argument("--alter", required=True,
                   help='the ALTER clauses, e.g. "ADD COLUMN c INT NULL, ADD INDEX (c)"')
    m.add_argument("--resume", action="store_true", help="continue an interrupted run")
    m.add_argument("--repair", dest="repair", action="store_true", default=True,
                   help="re-copy rows the checksum finds different (default)")
    m.add_argument("--no-repair", dest="repair", action="store_false",
                   help="stop with an error on any checksum difference")
    m.add_argument("--drop-old", action="store_true", help="drop _T_old after the swap")
    m.add_argument("--chunk-time", type=float, default=Tuning.chunk_time,
                   help="target seconds per chunk; the chunk size adapts to it")
    m.add_argument("--chunk-size", type=int, default=Tuning.chunk_rows_initial,
                   help="rows in the first chunk")
    m.add_argument("--chunk-size-max", type=int, default=Tuning.chunk_rows_max)
    m.add_argument("--wait-for-lock", type=float, default=0.0,
                   help="seconds to wait for another run on the same table")
    m.add_argument("--cutover-attempts", type=int, default=Tuning.cutover_attempts)
    m.add_argument("--cutover-lock-timeout", type=int, default=Tuning.cutover_lock_timeout)
    m.add_argument("--progress-interval", type=float, default=Tuning.progress_interval)
    m.add_argument("--postpone-cutover-flag-file", default=None, metavar="FILE",
                   help="while FILE exists, stay in sync and hold the cutover")
    m.add_argument("--max-checkpoint-age", type=float, default=72.0,
                   help="hours; --resume refuses an older checkpoint (default 72)")
    m.add_argument("--server-id", type=int, default=0,
                   help="binlog reader server id (default: a random unused-looking id)")

    c = sub.add_parser("cleanup", help="remove artifacts of a dead run (never touches T)")
    _server_args(c)

    s = sub.add_parser("status", help="show the checkpoint and lock holder of a run")
    _server_args(s)
    s.add_argument("--json", action="store_true")
    return parser


def read_password(args: argparse.Namespace) -> str:
    """--password-file, ONLINEDDL_PASSWORD, or a prompt when asked; else empty."""
    if args.password_file is not None:
        try:
            return args.password_file.read_text(encoding="utf-8").splitlines()[0]
        except (OSError, IndexError) as exc:
            raise UsageError(f"cannot read --password-file {args.password_file}: {exc}") \
                from exc
    env = password_from_env()
    if env is not None:
        return env
    if args.ask_password:
        return getpass.getpass("MySQL password: ")
    return ""


def dsn_from(args: argparse.Namespace) -> Dsn:
    return Dsn(host=args.host, port=args.port, user=args.user, password=read_password(args),
               unix_socket=args.socket, connect_timeout=args.connect_timeout)


def config_from(args: argparse.Namespace) -> MigrationConfig:
    tuning = Tuning(chunk_time=args.chunk_time, chunk_rows_initial=args.chunk_size,
                    chunk_rows_min=min(Tuning.chunk_rows_min, args.chunk_size),
                    chunk_rows_max=max(args.chunk_size, args.chunk_size_max),
                    cutover_attempts=args.cutover_attempts,
                    cutover_lock_timeout=args.cutover_lock_timeout,
                    progress_interval=args.progress_interval)
    return MigrationConfig(dsn=dsn_from(args), database=args.database, table=args.table,
                           alter=args.alter, repair=args.repair, drop_old=args.drop_old,
                           resume=args.resume, server_id=args.server_id,
                           lock_wait=args.wait_for_lock,
                           max_checkpoint_age=args.max_checkpoint_age * 3600,
                           postpone_flag_file=args.postpone_cutover_flag_file, tuning=tuning)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps({"time": self.formatTime(record), "level": record.levelname,
                           "logger": record.name, "message": record.getMessage()})


def configure_logging(verbose: bool, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    logging.getLogger("pymysqlreplication").setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose, args.log_format)
    try:
        if args.command == "migrate":
            result = migrate(config_from(args))
            log.info("success: %d rows copied, %d rows verified, %.1fs, writes blocked "
                     "%.3fs at cutover", result.rows_copied, result.rows_checked,
                     result.seconds, result.write_block_seconds)
        elif args.command == "cleanup":
            for line in commands.cleanup(dsn_from(args), args.database, args.table):
                log.info("%s", line)
        elif args.command == "status":
            print(commands.status(dsn_from(args), args.database, args.table, args.json))
        return 0
    except OnlineDDLError as err:
        log.error("%s (exit %d)", err, err.exit_code)
        return err.exit_code
    except KeyboardInterrupt:
        log.error("interrupted; the run is resumable with --resume")
        return 11


if __name__ == "__main__":
    sys.exit(main())

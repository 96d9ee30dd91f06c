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

from onlineddl import __version__, commands, control
from onlineddl.config import (
    Dsn,
    HookConfig,
    MigrationConfig,
    Throttling,
    Tuning,
    parse_load,
    parse_replica,
    password_from_env,
)
from onlineddl.dryrun import render
from onlineddl.errors import (
    EXIT_CODES,
    OnlineDDLError,
    TableChanged,
    TableVanished,
    UsageError,
)
from onlineddl.hooks import EVENTS
from onlineddl.migration import Migration
from onlineddl.oldtables import parse_duration
from onlineddl.progress import TerminalBar
from onlineddl.revert import Revert

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
    _table_args(p)


def _table_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument("--database", "-d", required=required)
    p.add_argument("--table", "-t", required=required)
    p.add_argument("--verbose", "-v", action="store_true")
    p.add_argument("--log-format", choices=("text", "json"), default="text",
                   help="log lines on stderr as text or as JSON objects (for log shippers)")


def _repair_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--repair", dest="repair", action="store_true", default=True,
                   help="re-copy rows the checksum finds different (default)")
    p.add_argument("--no-repair", dest="repair", action="store_false",
                   help="stop with an error on any checksum difference")


def _run_args(p: argparse.ArgumentParser) -> None:
    """The options of a run that ends in a cutover: `migrate` and `revert`."""
    p.add_argument("--wait-for-lock", type=float, default=0.0,
                   help="seconds to wait for another run on the same table")
    p.add_argument("--cutover-attempts", type=int, default=Tuning.cutover_attempts)
    p.add_argument("--cutover-lock-timeout", type=int, default=Tuning.cutover_lock_timeout)
    p.add_argument("--progress-interval", type=float, default=Tuning.progress_interval)
    p.add_argument("--postpone-cutover-flag-file", default=None, metavar="FILE",
                   help="while FILE exists, stay in sync and hold the cutover")
    p.add_argument("--max-checkpoint-age", type=float, default=72.0,
                   help="hours; --resume refuses an older checkpoint (default 72)")
    p.add_argument("--server-id", type=int, default=0,
                   help="binlog reader server id (default: a random unused-looking id)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="onlineddl", description="Online schema changes for MySQL and MariaDB.",
        epilog="exit codes: " + "; ".join(f"{k} {v}" for k, v in EXIT_CODES.items()))
    parser.add_argument("--version", action="version", version=f"onlineddl {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    m = sub.add_parser("migrate", help="ALTER a table online")
    _server_args(m)
    m.add_argument("--alter", required=True,
                   help='the ALTER clauses, e.g. "ADD COLUMN c INT NULL, ADD INDEX (c)"')
    m.add_argument("--resume", nargs="?", const="required", default=None,
                   choices=("required", "auto"), metavar="auto",
                   help="continue an interrupted run (refused when there is none); "
                        "--resume=auto: continue one, or start when there is none, or exit "
                        "0 when this ALTER already finished (for schedulers that retry "
                        "the same command)")
    _repair_args(m)
    m.add_argument("--drop-old", action="store_true",
                   help="drop this run's old table (the original) after the swap")
    m.add_argument("--keep-old-for", default=None, metavar="DURATION",
                   help="drop this table's old tables swapped longer ago than DURATION "
                        "(7d, 12h, 30m) at the start and end of this run (default: keep)")
    m.add_argument("--chunk-time", type=float, default=Tuning.chunk_time,
                   help="target seconds per chunk; the chunk size adapts to it")
    m.add_argument("--chunk-size", type=int, default=Tuning.chunk_rows_initial,
                   help="rows in the first chunk")
    m.add_argument("--chunk-size-max", type=int, default=Tuning.chunk_rows_max)
    m.add_argument("--copy-workers", type=int, default=Tuning.copy_workers,
                   help="parallel chunk copiers (1 is gentlest on a busy server)")
    m.add_argument("--nice-ratio", type=float, default=Tuning.nice_ratio, metavar="R",
                   help="after each chunk, rest R times as long as it took (0: full speed; "
                        "1: the copier works half the time); `ctl nice-ratio=R` changes it")
    _run_args(m)
    m.add_argument("--dry-run", action="store_true",
                   help="run every check, print the new table, the column mapping, the "
                        "chunk plan and an estimate; change nothing")
    m.add_argument("--allow-instant", action="store_true",
                   help="when the server can do the ALTER with ALGORITHM=INSTANT, do that "
                        "in place instead of copying")
    _operator_args(m)

    r = sub.add_parser("revert", help="undo the most recent swap of a table: its old table "
                                      "back as T, with every write made since")
    _server_args(r)
    r.add_argument("--resume", action="store_true",
                   help="continue an interrupted revert (refused when there is none)")
    _repair_args(r)
    _run_args(r)
    _operator_args(r)

    c = sub.add_parser("cleanup", help="remove artifacts of a dead run (never touches T)")
    _server_args(c)
    c.add_argument("--old", action="store_true",
                   help="also drop the old tables (originals) earlier successful runs kept "
                        "and recorded (only while T exists)")
    c.add_argument("--older-than", default=None, metavar="DURATION",
                   help="with --old: only those swapped longer ago than DURATION (7d, 12h)")
    c.add_argument("--drop-old", action="store_true",
                   help="--old, and also _T_old, kept by onlineddl versions before "
                        "per-run old tables")

    s = sub.add_parser("status", help="show the checkpoint and lock holder of a run, and "
                                      "the old tables kept")
    _server_args(s)
    s.add_argument("--json", action="store_true")

    k = sub.add_parser("ctl", help="steer a running migration through its control socket",
                       epilog="commands: " + "; ".join(
                           f"{name}: {text}" for name, text in control.COMMANDS.items()))
    k.add_argument("words", nargs="+", metavar="COMMAND",
                   help=" | ".join(control.COMMANDS))
    k.add_argument("--control-socket", default=None, metavar="PATH",
                   help="the run's socket (default: from --database and --table)")
    k.add_argument("--json", action="store_true", help="`status` as JSON")
    _table_args(k, required=False)
    return parser


def _operator_args(m: argparse.ArgumentParser) -> None:
    c = m.add_argument_group("control and observability")
    c.add_argument("--control-socket", default=None, metavar="PATH",
                   help="unix socket for `onlineddl ctl` (default "
                        "/tmp/onlineddl.<database>.<table>.sock)")
    c.add_argument("--metrics-port", type=int, default=None, metavar="PORT",
                   help="serve Prometheus metrics on this port")
    c.add_argument("--metrics-address", default="127.0.0.1", metavar="ADDR",
                   help="address the metrics endpoint binds (default 127.0.0.1)")
    t = m.add_argument_group("throttling")
    t.add_argument("--max-lag", type=float, default=Throttling.max_lag, metavar="S",
                   help="the copier waits while a replica lags more than S seconds")
    t.add_argument("--replica", action="append", default=[], metavar="HOST[:PORT]",
                   help="a replica to watch (repeatable; HOST[:PORT] or "
                        "mysql://user@HOST:PORT, with the primary's password)")
    t.add_argument("--discover-replicas", action="store_true",
                   help="also watch the replicas the primary lists (needs report_host)")
    t.add_argument("--max-load", default=None, metavar="VAR=N[,VAR=N]",
                   help="the copier waits while a global status variable exceeds N, "
                        "e.g. Threads_running=50")
    t.add_argument("--critical-load", default=None, metavar="VAR=N[,VAR=N]",
                   help="stop the run (resumably, exit 11) when a status variable exceeds N")
    t.add_argument("--throttle-flag-file", default=None, metavar="FILE",
                   help="the copier waits while FILE exists")
    h = m.add_argument_group("hooks")
    h.add_argument("--hooks-dir", default=None, metavar="DIR",
                   help=f"run executables named after events ({', '.join(EVENTS)}) from DIR")
    h.add_argument("--hooks-timeout", type=float, default=HookConfig.timeout, metavar="S",
                   help="kill a hook still running after S seconds (a failure)")
    h.add_argument("--hooks-status-interval", type=float,
                   default=HookConfig.status_interval, metavar="S",
                   help="seconds between `status` hooks")


def read_password(args: argparse.Namespace) -> str:
    """--password-file, ONLINEDDL_PASSWORD, or a prompt when asked; else empty."""
    if args.password_file is not None:
        path: Path = args.password_file
        try:
            return path.read_text(encoding="utf-8").splitlines()[0]
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


def throttling_from(args: argparse.Namespace, dsn: Dsn) -> Throttling:
    """The throttling options, which `migrate` and `revert` share."""
    return Throttling(
        max_lag=args.max_lag, replicas=tuple(parse_replica(r, dsn) for r in args.replica),
        discover_replicas=args.discover_replicas,
        max_load=parse_load(args.max_load, "--max-load") if args.max_load else (),
        critical_load=parse_load(args.critical_load, "--critical-load")
        if args.critical_load else (),
        flag_file=args.throttle_flag_file)


def hooks_from(args: argparse.Namespace) -> HookConfig:
    return HookConfig(directory=args.hooks_dir, timeout=args.hooks_timeout,
                      status_interval=args.hooks_status_interval)


def config_from(args: argparse.Namespace) -> MigrationConfig:
    tuning = Tuning(chunk_time=args.chunk_time, chunk_rows_initial=args.chunk_size,
                    chunk_rows_min=min(Tuning.chunk_rows_min, args.chunk_size),
                    chunk_rows_max=max(args.chunk_size, args.chunk_size_max),
                    copy_workers=args.copy_workers, nice_ratio=args.nice_ratio,
                    cutover_attempts=args.cutover_attempts,
                    cutover_lock_timeout=args.cutover_lock_timeout,
                    progress_interval=args.progress_interval)
    dsn = dsn_from(args)
    throttling, hooks = throttling_from(args, dsn), hooks_from(args)
    socket = None if args.dry_run else (
        args.control_socket or control.default_socket_path(args.database, args.table))
    return MigrationConfig(dsn=dsn, database=args.database, table=args.table,
                           alter=args.alter, repair=args.repair, drop_old=args.drop_old,
                           keep_old_for=None if args.keep_old_for is None else
                           parse_duration(args.keep_old_for, "--keep-old-for"),
                           resume=args.resume == "required",
                           resume_auto=args.resume == "auto", server_id=args.server_id,
                           lock_wait=args.wait_for_lock,
                           max_checkpoint_age=args.max_checkpoint_age * 3600,
                           postpone_flag_file=args.postpone_cutover_flag_file, tuning=tuning,
                           throttling=throttling, hooks=hooks, control_socket=socket,
                           metrics_port=args.metrics_port,
                           metrics_address=args.metrics_address,
                           allow_instant=args.allow_instant)


def revert_config_from(args: argparse.Namespace) -> MigrationConfig:
    """`revert` takes the options of `migrate` that apply to it; the rest keep their
    defaults (there is no copy)."""
    tuning = Tuning(cutover_attempts=args.cutover_attempts,
                    cutover_lock_timeout=args.cutover_lock_timeout,
                    progress_interval=args.progress_interval)
    dsn = dsn_from(args)
    throttling, hooks = throttling_from(args, dsn), hooks_from(args)
    return MigrationConfig(
        dsn=dsn, database=args.database, table=args.table, alter="", kind="revert",
        repair=args.repair, resume=args.resume, server_id=args.server_id,
        lock_wait=args.wait_for_lock, max_checkpoint_age=args.max_checkpoint_age * 3600,
        postpone_flag_file=args.postpone_cutover_flag_file, tuning=tuning,
        throttling=throttling, hooks=hooks,
        control_socket=args.control_socket or control.default_socket_path(args.database,
                                                                          args.table),
        metrics_port=args.metrics_port, metrics_address=args.metrics_address)


def run_revert(args: argparse.Namespace, bar: TerminalBar | None) -> None:
    try:
        result = Revert(revert_config_from(args), bar=bar).run()
    finally:
        if bar is not None:
            bar.finish()
    log.info("success: %s.%s reverted, %d rows verified, %.1fs, writes blocked %.3fs at "
             "cutover; the table it was is kept as %s", result.database, result.table,
             result.rows_checked, result.seconds, result.write_block_seconds,
             result.old_table)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps({"time": self.formatTime(record), "level": record.levelname,
                           "logger": record.name, "message": record.getMessage()})


def configure_logging(verbose: bool, fmt: str, bar: TerminalBar | None = None) -> None:
    formatter: logging.Formatter = JsonFormatter() if fmt == "json" else \
        logging.Formatter("%(asctime)s %(levelname)s %(message)s")
    if bar is not None:
        handler = bar.handler(formatter)
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    logging.getLogger("pymysqlreplication").setLevel(logging.WARNING)


def progress_bar(args: argparse.Namespace) -> TerminalBar | None:
    """A bar only for a person watching a terminal; log shippers get plain lines."""
    if args.command not in ("migrate", "revert") or getattr(args, "dry_run", False) \
            or args.log_format != "text":
        return None
    return TerminalBar(sys.stderr) if sys.stderr.isatty() else None


def run_migrate(args: argparse.Namespace, bar: TerminalBar | None) -> None:
    if args.dry_run and args.resume:
        raise UsageError("--dry-run plans a new run; it cannot be combined with --resume")
    migration = Migration(config_from(args), bar=bar)
    if args.dry_run:
        print(render(migration.dry_run()))
        return
    try:
        result = migration.run()
    finally:
        if bar is not None:
            bar.finish()
    if result.already_done:
        log.info("success: already done by an earlier run of this ALTER; nothing changed")
        return
    if result.instant:
        log.info("success: applied in place with ALGORITHM=INSTANT, %.1fs", result.seconds)
        return
    log.info("success: %d rows copied, %d rows verified, %.1fs, writes blocked "
             "%.3fs at cutover", result.rows_copied, result.rows_checked,
             result.seconds, result.write_block_seconds)


def run_ctl(args: argparse.Namespace) -> None:
    path = args.control_socket
    if path is None:
        if not (args.database and args.table):
            raise UsageError("ctl needs --control-socket PATH, or --database and --table "
                             "to find the default socket")
        path = control.default_socket_path(args.database, args.table)
    line = " ".join(args.words)
    if args.json and line.strip() == "status":
        line = "status json"
    print(control.send(path, line))


# Exit codes after which running the identical command again can succeed without a
# person doing anything (a scheduler may retry, with a backoff), and those after which it
# cannot (a scheduler must stop and tell a person). 137 (killed) is a retry too.
RETRY_EXIT_CODES = frozenset({3, 6, 8, 11, 12, 13, 15})
FINAL_EXIT_CODES = frozenset({1, 2, 4, 5, 7, 9, 10, 14})


def should_retry(err: OnlineDDLError) -> bool:
    """Does running the same command again have a chance? By the exit code, except for
    another session's DDL on the table (exit 13 like a binlog failure, but the shadow no
    longer matches T: a person must look)."""
    if isinstance(err, (TableChanged, TableVanished)):
        return False
    return err.exit_code in RETRY_EXIT_CODES


def advise_retry(retry: bool, log_format: str) -> None:
    """The scheduler's signal, one line on stderr after the error: `onlineddl:
    retry=yes|no` (with --log-format json, the message of a JSON log line)."""
    line = f"onlineddl: retry={'yes' if retry else 'no'}"
    if log_format == "json":
        log.info("%s", line)
    else:
        print(line, file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    bar = progress_bar(args)
    configure_logging(args.verbose, args.log_format, bar)
    try:
        if args.command == "migrate":
            run_migrate(args, bar)
        elif args.command == "revert":
            run_revert(args, bar)
        elif args.command == "ctl":
            run_ctl(args)
        elif args.command == "cleanup":
            older = None if args.older_than is None else \
                parse_duration(args.older_than, "--older-than")
            for line in commands.cleanup(dsn_from(args), args.database, args.table,
                                         drop_old=args.drop_old, old=args.old,
                                         older_than=older):
                log.info("%s", line)
        elif args.command == "status":
            print(commands.status(dsn_from(args), args.database, args.table, args.json))
        return 0
    except OnlineDDLError as err:
        log.error("%s (exit %d)", err, err.exit_code)
        if args.command in ("migrate", "revert"):
            advise_retry(should_retry(err), args.log_format)
        return err.exit_code
    except KeyboardInterrupt:
        log.error("interrupted; the run is resumable with --resume")
        if args.command in ("migrate", "revert"):
            advise_retry(True, args.log_format)
        return 11


if __name__ == "__main__":
    sys.exit(main())

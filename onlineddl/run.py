"""The machinery every run that ends in a swap shares: `migrate` and `revert`.

A run owns T (the runner lock), keeps a binlog applier that makes a target table follow
T, checkpoints, answers the operator (control socket, throttling, hooks, metrics),
catches up, verifies, waits while the cutover is postponed, swaps with the crash-safe
cutover (cutover.py) and cleans up. What differs is how the target comes to be: the
migration creates and copies a shadow (migration.py); a revert takes the old table a
swap kept, complete as of that swap (revert.py). Each subclass's `stages()` reads top to
bottom; the stages here are short methods over the state they share. Setup returns a
frozen Context (the tables with the key the run walks, the mapping, the checkpoint and
its state, the running applier) that every later stage takes as its argument.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from onlineddl import faults, sql, triggers, zones
from onlineddl.applier import Applier, FlushTarget
from onlineddl.binlog import BinlogReader, TableShape, open_reader
from onlineddl.checkpoint import Checkpoint, State
from onlineddl.checksum import Checksum
from onlineddl.chunker import Chunker, KeyOrder, Watermark
from onlineddl.config import MigrationConfig
from onlineddl.control import Controls, ControlServer
from onlineddl.cutover import Cutover, drop_guards
from onlineddl.db import Session
from onlineddl.errors import (
    Aborted,
    ArtifactsExist,
    OnlineDDLError,
    ReplicationError,
    TableChanged,
    TableNotFound,
    TableVanished,
    WaitTimeout,
)
from onlineddl.flavor import BinlogPosition, MySQL, detect
from onlineddl.hooks import Events
from onlineddl.ledger import Ledger
from onlineddl.metrics import MetricsSink, NoMetrics, serve
from onlineddl.preflight import check_privileges
from onlineddl.progress import HeadLag, Phase, Progress, TerminalBar
from onlineddl.runlock import RunnerLock
from onlineddl.table import (
    Artifacts,
    ColumnMapping,
    TableInfo,
    auto_increment_counter,
    present_artifacts,
    resolve_names,
)
from onlineddl.throttle import CopyGate, Hold, NoThrottle, Throttle

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Result:
    database: str
    table: str
    rows_copied: int
    rows_checked: int
    seconds: float
    cutover_attempts: int
    write_block_seconds: float
    resumed: bool
    instant: bool = False   # applied in place with ALGORITHM=INSTANT (--allow-instant)
    already_done: bool = False  # --resume=auto: an earlier run of this ALTER finished
    old_table: str = ""     # where the swapped-out table is kept ("" with --drop-old or instant)


@dataclass(frozen=True)
class Sides:
    """T and the table that becomes T at the swap, each with the key the run walks
    (keys.py), and the column mapping from T's columns to the other's."""
    source: TableInfo
    target: TableInfo
    mapping: ColumnMapping


@dataclass(frozen=True)
class Record:
    """The run's checkpoint table and the state it holds. The object is fixed; the
    state's fields change as the run goes on and are written at each checkpoint."""
    checkpoint: Checkpoint
    state: State


@dataclass(frozen=True)
class Context(Record):
    """What setup made, fixed for the rest of the run: every stage after setup takes it,
    so none of them can run before it exists."""
    source: TableInfo      # T, with the key the run walks
    target: TableInfo      # the table that becomes T at the swap
    mapping: ColumnMapping
    applier: Applier       # following T's binlog into `target` since setup


CATCHUP_LAG = 1.0      # seconds behind the binlog head that count as caught up
CATCHUP_SETTLE = 20.0  # seconds to try for that before going on


class Run:
    """What a migration and a revert share: the session, the lock, the operator's
    handles, the applier, the checkpoint, catch-up, checksum, postponement, cutover."""

    def __init__(self, config: MigrationConfig, *, bar: TerminalBar | None = None) -> None:
        config.validate()
        self.config = config
        self.tuning = config.tuning
        self.db = config.database
        self.names = Artifacts.for_table(config.table)
        self.phase = Phase.PREFLIGHT
        self.progress = Progress(f"{config.database}.{config.table}",
                                 config.tuning.progress_interval, bar=bar)
        self.control: Session | None = None
        self.runner_lock = RunnerLock(config.dsn, config.database, config.table)
        self.flavor: MySQL | None = None
        # Set by follow(), so that any exit stops it (the stages use Context.applier).
        self.applier: Applier | None = None
        self.watermark = Watermark()
        self.ledger = Ledger()          # the artifacts this run created
        self.resumed = False
        self.rows_checked = 0
        self.cutover_attempts = 0
        self.block_seconds = 0.0
        self._last_checkpoint = 0.0
        self._last_lock_check = 0.0
        # The operator's handles: consulted between units of work, in tick().
        self.controls = Controls(chunk_time=config.tuning.chunk_time,
                                 max_lag=config.throttling.max_lag,
                                 nice_ratio=config.tuning.nice_ratio)
        self.throttle: Throttle = NoThrottle()
        self.gate = CopyGate(self.controls, self.throttle)
        self.events = Events(config, self.progress.snapshot)
        self.metrics: MetricsSink = NoMetrics()
        self.ctl_server: ControlServer | None = None
        self.head_lag = HeadLag()

    def run(self) -> Result:
        """The command: its stages, then its result. Any error ends it through
        _failed(): what this run made is removed or kept for --resume, and the failure
        hook fires."""
        started = time.monotonic()
        try:
            self.stages()
            return self.succeed(started)
        except OnlineDDLError as caught:
            err = self._failed(caught)
            if err is caught:
                raise
            raise err from caught
        finally:
            self.close()

    def stages(self) -> None:
        raise NotImplementedError

    def succeed(self, started: float) -> Result:
        raise NotImplementedError

    # --- opening ---------------------------------------------------------------------

    def connect(self) -> None:
        self.control = Session(self.config.dsn, name="control",
                               lock_wait_timeout=self.tuning.lock_wait_timeout, reconnect=True)
        version = str(self.control.scalar("SELECT VERSION()"))
        self.flavor = detect(version)
        log.info("connected to %s (%s)", self.config.dsn.describe(), version)
        self._use_stored_names()
        self.runner_lock.acquire(self.config.lock_wait, self._describe_holder)

    def _use_stored_names(self) -> None:
        """From here on the run knows T by the server's stored names (with
        lower_case_table_names=1, `--table Orders` is `orders`): artifacts, the runner
        lock, messages and the binlog reader's table are all built from them."""
        try:
            database, table = resolve_names(self._control(), self.config.database,
                                            self.config.table)
        except TableNotFound:
            # A user without privileges on the database does not see it: say so.
            check_privileges(self._control(), self._flavor(), self.config.database,
                             Artifacts.for_table(self.config.table))
            raise
        if (database, table) == (self.config.database, self.config.table):
            return
        log.info("the server stores %s.%s as %s.%s", self.config.database,
                 self.config.table, database, table)
        self.config = dataclasses.replace(self.config, database=database, table=table)
        self.events.config = self.config
        self.db, self.names = database, Artifacts.for_table(table)
        self.progress.table = f"{database}.{table}"
        self.runner_lock = RunnerLock(self.config.dsn, database, table)

    def open_controls(self) -> None:
        """The control socket and the metrics endpoint (once we own the table, so a second
        runner never takes over the first one's socket)."""
        if self.config.control_socket:
            self.ctl_server = ControlServer(self.config.control_socket, self.controls,
                                            self.status)
            self.ctl_server.start()
        self.metrics = serve(self.config.metrics_port, self.config.metrics_address,
                             self.progress.snapshot, self.db, self.config.table)

    def startup_hook(self) -> None:
        if not self.events.fire("startup"):
            raise Aborted("the startup hook failed, so the run did not start; nothing was "
                          "changed", hint="see the hook's output above")

    # --- following T -------------------------------------------------------------------

    def follow(self, record: Record, sides: Sides, target: FlushTarget) -> Context:
        """Read T's binlog from the checkpoint's position and keep the target following
        T through `target`: the last step of setup, which returns what it made."""
        source = sides.source
        shape = TableShape.of(source)
        server_id = self.config.reader_server_id()
        shift = zones.key_shift(self._control(), source)

        def reader(begin: BinlogPosition) -> BinlogReader:
            opened = open_reader(self.config.dsn, self._flavor(), shape, begin, server_id)
            return zones.ShiftedReader(opened, shift) if shift else opened

        applier = Applier(dsn=self.config.dsn, flavor=self._flavor(), reader_factory=reader,
                          target=target, key_order=KeyOrder(source.key_columns),
                          watermark=self.watermark, tuning=self.tuning,
                          start=record.state.position)
        self.applier = applier
        applier.start()
        faults.point("applier_started")
        return Context(checkpoint=record.checkpoint, state=record.state, source=source,
                       target=sides.target, mapping=sides.mapping, applier=applier)

    def catch_up(self, ctx: Context) -> None:
        """Wait, bounded, until the applier has reached the binlog head with a small
        backlog; then, for up to CATCHUP_SETTLE seconds, until it reaches a head within
        CATCHUP_LAG seconds of reading it, so the drain under the write block (checksum
        snapshot, cutover) is short. Under writes faster than the applier it goes on
        after CATCHUP_SETTLE rather than wait for a quiet moment that may not come."""
        self.set_phase(Phase.CATCHUP)
        deadline = time.monotonic() + self.tuning.catchup_timeout
        settle_until = None
        while True:
            head, asked = self._flavor().current_position(self._control()), time.monotonic()
            self._wait_for_head(ctx, head, deadline)
            if time.monotonic() - asked <= CATCHUP_LAG:
                break
            settle_until = settle_until or time.monotonic() + CATCHUP_SETTLE
            if time.monotonic() > settle_until:
                log.info("the applier stays more than %.1fs behind under this write load; "
                         "going on (the drain under the write block will be longer)",
                         CATCHUP_LAG)
                break
        ctx.applier.flush_now()

    def _wait_for_head(self, ctx: Context, head: BinlogPosition, deadline: float) -> None:
        applier = ctx.applier
        while not (applier.received_position().reached(head)
                   and applier.backlog() <= self.tuning.flush_batch):
            applier.wake_reader()
            self.tick(ctx)
            if time.monotonic() > deadline:
                raise WaitTimeout(
                    f"the applier did not catch up within {self.tuning.catchup_timeout:.0f}s "
                    f"(backlog {applier.backlog()}, at {applier.received_position()}, "
                    f"head {head})",
                    hint="the write load is higher than onlineddl applies; the run is "
                         "resumable with --resume at a quieter time")
            time.sleep(0.01)

    def verify(self, ctx: Context) -> None:
        self.set_phase(Phase.CHECKSUM)
        checksum = Checksum(dsn=self.config.dsn, flavor=self._flavor(), control=self._control(),
                            source=ctx.source, shadow=ctx.target, mapping=ctx.mapping,
                            target=ctx.applier.target, applier=ctx.applier, tuning=self.tuning)
        result = checksum.run(self.config.repair, lambda: self.tick(ctx))
        self.rows_checked = result.rows
        ctx.state.checksum_state = "passed"
        self.tick(ctx, force_checkpoint=True)
        log.info("checksum passed: %d rows in %d chunks", result.rows, result.chunks)
        faults.point("after_checksum")

    def wait_while_postponed(self, tick: Callable[[], None]) -> None:
        """Hold the cutover while the operator wants it held (the flag file, `ctl
        postpone`) or the before-cutover hook fails; `tick` keeps the run in sync
        meanwhile."""
        reason = self._postpone_reason()
        if reason is None:
            return
        self.set_phase(Phase.POSTPONED)
        log.info("cutover %s", reason)
        while reason is not None:
            self.progress.postpone_reason = reason
            tick()
            time.sleep(0.2)
            current = self._postpone_reason()
            if current is not None and current != reason:
                log.info("cutover %s", current)
            reason = current
        self.progress.postpone_reason = ""
        log.info("cutover no longer postponed; cutting over")

    # --- the swap ------------------------------------------------------------------------

    def cut_over(self, ctx: Context) -> None:
        self.set_phase(Phase.CUTOVER)
        self.runner_lock.check()
        self._refuse_taken_old_name()
        self._before_cutover(ctx)
        # Most of the counter is carried now; under the write block only what moved since.
        self._carry_auto_increment(ctx, self._control())
        cutover = Cutover(dsn=self.config.dsn, flavor=self._flavor(), control=self._control(),
                          database=self.db, artifacts=self.names, applier=ctx.applier,
                          tuning=self.tuning,
                          on_block=lambda drain: self._record_cutover_started(ctx, drain),
                          is_owner=self.runner_lock.check,
                          before_swap=lambda session: self._before_swap(ctx, session),
                          carry=self._carry(ctx),
                          after_failed_attempt=lambda session: self._after_failed_attempt(
                              ctx, session),
                          undo_under_block=self._undo_under_block,
                          children_lock=self._children_lock)
        try:
            cutover.run()
        finally:
            self.progress.cutover_attempts = cutover.attempts
        self.cutover_attempts, self.block_seconds = cutover.attempts, cutover.block_seconds
        self.progress.write_block_seconds = cutover.block_seconds
        log.info("cutover done after %d attempt(s); writes blocked for %.3fs",
                 cutover.attempts, cutover.block_seconds)
        ctx.applier.stop()
        self._record_swapped(ctx)

    def _record_swapped(self, record: Record) -> None:
        record.state.swapped, record.state.phase = True, Phase.CLEANUP
        record.checkpoint.write(record.state)

    def finish_after_swap(self, record: Record) -> None:
        """A resumed run that found the swap done: recorded, then cleaned up."""
        self._record_swapped(record)
        self.cleanup(record)

    def cleanup(self, record: Record) -> None:
        raise NotImplementedError

    # The cutover's hooks; a migration adds its triggers and foreign keys.
    def _before_cutover(self, ctx: Context) -> None:
        """Checks before the first attempt (T not blocked yet)."""

    def _carry(self, ctx: Context) -> triggers.Carry | None:
        """T's triggers, moved to the new table under the write block (None: none)."""
        return None

    def _before_swap(self, ctx: Context, session: Session) -> None:
        """Under the write block, drained, on a session that may change the new table."""
        self._carry_auto_increment(ctx, session)

    def _after_failed_attempt(self, ctx: Context, session: Session) -> None:
        """Undo what _before_swap did that must not stay until the next attempt."""

    def _undo_under_block(self, session: Session) -> None:
        """Undo, while T is still blocked, what must not outlive a failed attempt."""

    def _children_lock(self) -> str:
        """LOCK TABLES text for tables the cutover holds until the RENAME ("" none)."""
        return ""

    def _counter_set_by_alter(self) -> bool:
        """Does the run's own statement set the new table's AUTO_INCREMENT (then it is
        not carried over)? The migration says so for AUTO_INCREMENT=N in its ALTER."""
        return False

    def _carry_auto_increment(self, ctx: Context, session: Session) -> None:
        """A plain ALTER keeps T's AUTO_INCREMENT counter, so ids of deleted or rolled
        back rows are not handed out again; the new table's may be lower (CREATE TABLE
        ... LIKE starts at 1; an old table stopped counting at its swap). Raise it to
        T's (never lower it)."""
        target = ctx.target
        if self._counter_set_by_alter() or not any(c.auto_increment for c in target.columns):
            return
        ours = auto_increment_counter(session, self.db, self.config.table)
        theirs = auto_increment_counter(session, self.db, target.name) or 1
        if ours is not None and ours > theirs:
            session.execute(sql.set_auto_increment(self.db, target.name, ours))
            log.info("AUTO_INCREMENT of %s carried over: %d", target.name, ours)

    def _record_cutover_started(self, ctx: Context, drain: BinlogPosition) -> None:
        state = ctx.state
        state.cutover_started, state.drain, state.phase = True, drain, Phase.CUTOVER
        ctx.checkpoint.write(state)

    def _refuse_taken_old_name(self) -> None:
        """The checkpoint fixed the old table's name; were it taken, every RENAME fails."""
        if self.names.old in present_artifacts(self._control(), self.db, self.names):
            raise ArtifactsExist(
                f"{self.db}.{self.names.old} exists: that is the name this run's swap gives "
                f"the original {self.config.table}, and another table took it during the run",
                hint=f"rename or drop {self.names.old} yourself (check first what it holds), "
                     "then run the same command with --resume")

    # --- between units of work ---------------------------------------------------------

    def tick(self, ctx: Context, force_checkpoint: bool = False) -> None:
        """Between units of work: health checks, the operator's stop, checkpoint,
        progress, the status hook."""
        ctx.applier.check()
        self._check_stop(ctx)
        now = time.monotonic()
        if now - self._last_lock_check >= 1.0:
            self.runner_lock.check()
            self._last_lock_check = now
        if force_checkpoint or now - self._last_checkpoint >= self.tuning.checkpoint_interval:
            self._write_checkpoint(ctx)
            self._last_checkpoint = now
        self._measure(ctx.applier, now)
        self.progress.maybe_report()
        self.events.tick(now)

    def _check_stop(self, ctx: Context) -> None:
        """`ctl abort` and --critical-load stop the run resumably, checkpoint first."""
        try:
            if self.controls.state().abort_requested:
                raise Aborted("aborted by the operator (`ctl abort`)")
            self.throttle.check_critical()
        except Aborted:
            self._write_checkpoint(ctx)
            raise

    def _measure(self, applier: Applier, now: float) -> None:
        self.progress.backlog = applier.backlog()
        self.progress.applied = applier.flushed_rows
        self.head_lag.maybe_observe(
            now, lambda: self._flavor().current_position(self._control()))
        self.progress.lag_seconds = self.head_lag.lag(now, applier.received_position())

    def _show_hold(self, hold: Hold | None) -> None:
        self.progress.throttle_reason = str(hold) if hold else ""

    def _steer(self, chunker: Chunker) -> None:
        """`ctl chunk-time=S`: the chunker sizes the chunks after the next for it."""
        chunk_time = self.controls.state().chunk_time
        if chunker.tuning.chunk_time != chunk_time:
            chunker.tuning = dataclasses.replace(chunker.tuning, chunk_time=chunk_time)

    def _postpone_reason(self) -> str | None:
        reason = self.controls.postpone_reason(self.config.postpone_flag_file)
        if reason is None and not self.events.cutover_allowed():
            reason = ("postponed: the before-cutover hook failed; it runs again every "
                      f"{self.config.hooks.retry_interval:g}s")
        return reason

    def status(self) -> dict[str, Any]:
        """What `ctl status` shows (with the controls' state)."""
        return {**self.progress.snapshot().as_dict(), "alter": self.config.alter}

    def _write_checkpoint(self, ctx: Context) -> None:
        state = ctx.state
        safe = ctx.applier.safe
        state.low_watermark = safe.watermark.bound
        state.copy_complete = safe.watermark.complete
        state.position = safe.position
        state.rows_copied = self.progress.rows_copied
        state.phase = self.phase
        ctx.checkpoint.write(state)
        faults.point("after_checkpoint")

    def set_phase(self, phase: Phase) -> None:
        self.phase = phase
        self.progress.set_phase(phase)

    # --- failure and the end -------------------------------------------------------------

    # Errors a resume cannot fix: what this run created is removed, nothing is left.
    FINAL_ERRORS: tuple[type[OnlineDDLError], ...] = ()

    def _failed(self, caught: OnlineDDLError) -> OnlineDDLError:
        """The error the run ends with: T gone meanwhile (another session), or final
        (this run's tables removed), or resumable (said in its hint); the failure hook
        fired with it."""
        vanished = self._vanished(caught)
        err = vanished or self._explain(caught)
        if vanished is not None or isinstance(err, self.FINAL_ERRORS):
            self.discard_created()
        else:
            self._resumable_note(err)
        self.events.fire("failure", err)
        return err

    def _explain(self, err: OnlineDDLError) -> OnlineDDLError:
        """A subclass's clearer word for an error, where it has one."""
        return err

    def _resumable(self, err: OnlineDDLError) -> bool:
        """May the failure note say "resumable"? Not after another session's DDL on the
        table (the target is stale: --resume would refuse), nor when the error's own
        advice already says how to go on."""
        if isinstance(err, TableChanged) or (self.applier and self.applier.ddl):
            return False
        return "--resume" not in err.hint and "cleanup" not in err.hint

    def _resumable_note(self, err: OnlineDDLError) -> None:
        if self.phase >= Phase.COPY and self.phase < Phase.DONE and self._resumable(err):
            note = ("the run is resumable: run the same command again (--resume=auto "
                    "continues it)" if self.config.resume_auto else
                    "the run is resumable: run the same command with --resume")
            err.hint = f"{err.hint}; {note}" if err.hint else note

    def _drop_created(self, name: str) -> None:
        self.ledger.drop(self._control(), self.db, name)

    def discard_created(self) -> None:
        if not self.ledger or self.control is None:
            return
        created = ", ".join(self.ledger.names)
        try:
            if self.applier:
                self.applier.stop()
            self.ledger.discard(self.control, self.db)
            log.info("removed %s", created)
        except OnlineDDLError:
            log.warning("could not remove %s; use `onlineddl cleanup`", created)

    def _vanished(self, err: OnlineDDLError) -> TableVanished | None:
        """T gone after preflight found it (the copy's "no such table", or the applier's
        DDL error, whichever comes first): another session renamed or dropped it.
        Nothing can be resumed; the run's own tables are removed."""
        if not isinstance(err, (TableNotFound, ReplicationError)) or self.control is None \
                or not Phase.PREFLIGHT < self.phase < Phase.CUTOVER:
            return None
        try:
            if self.names.table in present_artifacts(self.control, self.db, self.names):
                return None
        except OnlineDDLError:
            return None   # cannot tell: report the error as it is
        return TableVanished(
            f"{self.db}.{self.config.table} disappeared during the run: another session "
            f"renamed or dropped it ({err.message})",
            hint="no DDL on the table while onlineddl runs; once the table is back under "
                 "its name, start again (`onlineddl cleanup` removes anything of this run "
                 "that is left)")

    def _describe_holder(self) -> str:
        try:
            state = Checkpoint(self._control(), self.db, self.names.checkpoint).read()
        except OnlineDDLError:
            return ""
        if state is None:
            return ""
        return (f"; runner {state.runner}, started {state.started_at:%Y-%m-%d %H:%M:%S} UTC, "
                f"phase {state.phase.text}")

    def _drop_guards(self) -> None:
        drop_guards(self._control(), self.db, self.names)

    def close(self) -> None:
        if self.applier:
            self.applier.stop()
        self.throttle.close()
        self.events.close()
        self.metrics.close()
        if self.ctl_server:
            self.ctl_server.close()
        self.runner_lock.release()
        if self.control:
            self.control.close()

    # Set by connect(), the first stage: every later one may rely on them.
    def _control(self) -> Session:
        assert self.control is not None
        return self.control

    def _flavor(self) -> MySQL:
        assert self.flavor is not None
        return self.flavor

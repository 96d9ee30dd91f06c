"""The lifecycle of one online ALTER, read top to bottom; the resume policy.

    preflight -> setup -> [applier starts] -> copy -> catch-up -> checksum
              -> (postponed) -> cutover -> cleanup

Only this module knows the order of the stages. The operator's handles on a run (the
control socket, throttling, hooks, metrics; control.py, throttle.py, hooks.py,
metrics.py) are consulted between units of work, in `tick()` and between copy chunks.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from onlineddl import (
    dryrun,
    faults,
    fkparents,
    foreignkeys,
    keys,
    ledger,
    leftovers,
    oldtables,
    resume,
    sql,
    triggers,
    zones,
)
from onlineddl.applier import Applier, FlushTarget
from onlineddl.binlog import BinlogReader, TableShape, open_reader
from onlineddl.checkpoint import Checkpoint, State, alter_hash
from onlineddl.checksum import Checksum
from onlineddl.chunker import Chunker, KeyOrder, Watermark
from onlineddl.config import MigrationConfig
from onlineddl.control import Controls, ControlServer
from onlineddl.copier import Copier
from onlineddl.cutover import Cutover, drop_guards, swap_state
from onlineddl.db import Session, retry
from onlineddl.errors import (
    Aborted,
    ArtifactsExist,
    CutoverFailed,
    DatabaseError,
    DataError,
    InvalidAlter,
    OnlineDDLError,
    PreflightFailed,
    ReplicationError,
    ResumeRefused,
    TableChanged,
    TableNotFound,
    TableVanished,
    WaitTimeout,
)
from onlineddl.flavor import BinlogPosition, MySQL, detect
from onlineddl.hooks import Events
from onlineddl.ledger import Ledger
from onlineddl.metrics import MetricsSink, NoMetrics, serve
from onlineddl.preflight import check_privileges, check_server, check_table
from onlineddl.progress import HeadLag, Phase, Progress, TerminalBar
from onlineddl.runlock import RunnerLock
from onlineddl.statement import ParsedAlter, parse_alter
from onlineddl.table import (
    Artifacts,
    ColumnMapping,
    TableInfo,
    auto_increment_counter,
    build_mapping,
    integer_key,
    load_table,
    present_artifacts,
    resolve_names,
)
from onlineddl.throttle import CopyGate, Hold, NoThrottle, Throttle, make_throttle
from onlineddl.uniques import UniqueCheck, unique_checks

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
    old_table: str = ""     # where the original is kept ("" with --drop-old or instant)


CATCHUP_LAG = 1.0      # seconds behind the binlog head that count as caught up
CATCHUP_SETTLE = 20.0  # seconds to try for that before going on

# Errors a resume cannot fix: clean up what this run created so nothing is left behind.
FINAL_ERRORS = (PreflightFailed, InvalidAlter, DataError)


class Migration:
    """One run. `run()` is the table of contents; each stage is a short method."""

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
        self.parsed_alter: ParsedAlter | None = None
        self.source: TableInfo | None = None
        self.shadow: TableInfo | None = None
        self.mapping: ColumnMapping | None = None
        self.shadow_unique: tuple[UniqueCheck, ...] | None = None
        self.foreign_keys: tuple[foreignkeys.ForeignKey, ...] = ()   # T's own (child side)
        # [fk parents] other tables' constraints referencing T (fkparents.py)
        self.fk_children: tuple[foreignkeys.ForeignKey, ...] = ()
        self.applier: Applier | None = None
        self.checkpoint: Checkpoint | None = None
        self.state: State | None = None
        self.watermark = Watermark()
        self.ledger = Ledger()          # the artifacts this run created
        self.resumed = False
        self.rows_checked = 0
        self.cutover_attempts = 0
        self.block_seconds = 0.0
        self._last_checkpoint = 0.0
        self._last_lock_check = 0.0
        # The operator's handles (see the module docstring).
        self.controls = Controls(chunk_time=config.tuning.chunk_time,
                                 max_lag=config.throttling.max_lag,
                                 nice_ratio=config.tuning.nice_ratio)
        self.throttle: Throttle = NoThrottle()
        self.gate = CopyGate(self.controls, self.throttle)
        self.events = Events(config, self.progress.snapshot)
        self.metrics: MetricsSink = NoMetrics()
        self.ctl_server: ControlServer | None = None
        self.head_lag = HeadLag()
        self.instant = False             # the server can do the ALTER with ALGORITHM=INSTANT
        self.applied_instantly = False   # ... and did, on T itself (--allow-instant)
        self.already_done = False        # --resume=auto found this ALTER already done
        self.triggers: tuple[triggers.Trigger, ...] = ()   # T's, read by preflight

    # --- the lifecycle ---------------------------------------------------------------

    def run(self) -> Result:
        started = time.monotonic()
        try:
            self.connect()
            self.open_controls()
            self.preflight()
            self.startup_hook()
            self.drop_expired_old_tables()
            if self.apply_instantly():     # --allow-instant, and the server can: no copy
                return self.succeed(started)
            if self.finished_before():     # --resume=auto: this ALTER is already done
                return self.succeed(started)
            if not self.setup():           # False: a resumed run found the swap done
                self.finish_after_swap()
                return self.succeed(started)
            self.start_applier()
            self.copy()
            self.catch_up()
            self.verify()
            self.wait_while_postponed()
            self.catch_up()
            self.cut_over()
            self.cleanup()
            return self.succeed(started)
        except OnlineDDLError as err:
            vanished = self._vanished(err)
            if vanished is not None or isinstance(err, FINAL_ERRORS):
                self.discard_created()
                self.events.fire("failure", vanished or err)
                if vanished is not None:
                    raise vanished from err
                raise
            if self.phase >= Phase.COPY and self.phase < Phase.DONE and self._resumable(err):
                note = ("the run is resumable: run the same command again (--resume=auto "
                        "continues it)" if self.config.resume_auto else
                        "the run is resumable: run the same command with --resume")
                err.hint = f"{err.hint}; {note}" if err.hint else note
            self.events.fire("failure", err)
            raise
        finally:
            self.close()

    def _resumable(self, err: OnlineDDLError) -> bool:
        """May the failure note say "resumable"? Not after another session's DDL on the
        table (the shadow is stale: --resume would refuse), nor when the error's own
        advice already says how to go on."""
        if isinstance(err, TableChanged) or (self.applier and self.applier.ddl):
            return False
        return "--resume" not in err.hint and "cleanup" not in err.hint

    def dry_run(self) -> dryrun.DryRun:
        """--dry-run: every check, the new table as the server builds it, the column
        mapping, the chunk plan and an estimate. The shadow is created for the server's
        verdict and dropped again: nothing is left changed."""
        try:
            self.connect()
            self.preflight()
            self._refuse_leftovers()
            self._create_shadow()
            return self._describe_dry_run()
        finally:
            self.discard_created()
            self.close()

    # --- stages ----------------------------------------------------------------------

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

    def preflight(self) -> None:
        self.set_phase(Phase.PREFLIGHT)
        control, flavor = self._control(), self._flavor()
        check_server(control, flavor)
        check_privileges(control, flavor, self.db, self.names)
        self.parsed_alter = parse_alter(self.config.alter, database=self.db,
                                        table=self.config.table)
        # A changed primary key is checked once the new table exists (keys.choose).
        self.source = load_table(control, self.db, self.config.table)
        check_table(control, self.source)
        # Triggers (triggers.py): refused here only when they cannot be carried. A resumed
        # run may find the guard of its own interrupted cutover: setup repairs it.
        alter = self._parsed_alter()
        self.triggers = triggers.check(control, flavor, self.db, self.config.table,
                                       alter.dropped,
                                       [o for o, n in alter.renames.items()
                                        if o.lower() != n.lower()],   # names ignore case
                                       resuming=self.config.resume or self.config.resume_auto)
        # [foreign keys] refuses what is not supported; T's own constraints otherwise.
        self.foreign_keys = foreignkeys.check_table(
            control, self.source, resuming=self.config.resume or self.config.resume_auto,
            dropped=self.parsed_alter.foreign_keys_dropped,
            added=self.parsed_alter.foreign_keys_added)
        # [fk parents] the tables referencing T: re-pointed under the block, or refused.
        self.fk_children = fkparents.check(
            control, flavor, self.db, self.config.table, bool(self.triggers),
            resuming=self.config.resume or self.config.resume_auto)
        zones.key_shift(control, self.source)  # refuses a TIMESTAMP key in a DST zone
        self.progress.rows_estimate = self.source.rows_estimate
        self.throttle = make_throttle(self.config.throttling, self.config.dsn, flavor,
                                      self.controls)
        self.gate = CopyGate(self.controls, self.throttle)
        self.throttle.check()

    def startup_hook(self) -> None:
        if not self.events.fire("startup"):
            raise Aborted("the startup hook failed, so the run did not start; nothing was "
                          "changed", hint="see the hook's output above")

    def drop_expired_old_tables(self) -> None:
        """--keep-old-for, at the start: T's old tables swapped longer ago than that (this
        run holds T's runner lock, so no other run is finishing one of them)."""
        oldtables.apply_retention(self._control(), self.db, self.config.table,
                                  self.config.keep_old_for)

    def apply_instantly(self) -> bool:
        """--allow-instant: when the server can do the ALTER in place (ALGORITHM=INSTANT),
        do that instead of copying, once nothing postpones it (the flag file, `ctl
        postpone`, the before-cutover hook): applying it is this run's cutover."""
        if not self.config.allow_instant or self.config.resume:
            return False
        self._refuse_leftovers()
        self._create_shadow()                  # the server's verdict, on an empty copy of T
        self._drop_created(self.names.shadow)
        if not self.instant:
            log.info("--allow-instant: the server cannot do this ALTER instantly; copying")
            return False
        self.wait_while_postponed(tick=self._tick_without_copy)
        if not self._alter_instantly():
            return False
        self.applied_instantly = True
        self.set_phase(Phase.DONE)
        log.info("done: %s.%s has the new schema, applied instantly (no copy)", self.db,
                 self.config.table)
        return True

    def _alter_instantly(self) -> bool:
        """ALTER T itself with ALGORITHM=INSTANT. It needs a brief exclusive metadata lock
        (writers queue behind a waiting ALTER), so each try waits --cutover-lock-timeout."""
        session = Session(self.config.dsn, name="instant",
                          lock_wait_timeout=self.tuning.cutover_lock_timeout)
        text = sql.alter_table(self.db, self.config.table, self._parsed_alter().clauses,
                               instant=True)
        try:
            retry(lambda: session.execute(text), what="the instant ALTER",
                  attempts=self.tuning.cutover_attempts)
        except DatabaseError as err:
            if err.retryable:
                raise CutoverFailed(
                    f"the instant ALTER did not get its lock on {self.config.table}: "
                    f"{err.message}", hint="long transactions on the table hold it (see "
                    "information_schema.INNODB_TRX); run again later, or without "
                    "--allow-instant to copy online") from err
            log.warning("the server refused ALGORITHM=INSTANT on %s itself (%s); copying "
                        "online instead", self.config.table, err.message)
            return False
        finally:
            session.close()
        return True

    def setup(self) -> bool:
        """Create (or, with --resume, find) the shadow table and the checkpoint.
        Returns False when a resumed run finds the swap already done."""
        self.set_phase(Phase.SETUP)
        control = self._control()
        self.checkpoint = Checkpoint(control, self.db, self.names.checkpoint)
        if self.config.resume or self.config.resume_auto:
            found = leftovers.survey(control, self.db, self.names)
            if found.state is not None:
                return self._resume_from(found.state)
            if self.config.resume:   # (--resume=auto: finished_before() removed a dead setup)
                self._start_over(found)
        self._refuse_leftovers()
        self.names = self.names.with_old(oldtables.choose_name(control, self.db,
                                                               self.config.table))
        # The checkpoint first: it marks the run as onlineddl's, and the shadow it
        # records next is the only `_T_new` cleanup and --resume will take for ours.
        self.checkpoint.create()
        self.ledger.record(self.names.checkpoint)
        self._create_shadow()
        faults.point("shadow_created")
        position = self._flavor().current_position(control)
        self.state = State(alter_text=self.config.alter, phase=Phase.COPY, position=position,
                           server=self._flavor().server_identity(control),
                           shadow=leftovers.shadow_identity(control, self.db,
                                                            self.names.shadow),
                           old_table=self.names.old, triggers=triggers.encode(self.triggers))
        self.checkpoint.write(self.state)
        return True

    def _start_over(self, found: leftovers.Survey) -> None:
        """--resume without a checkpoint state: only a run that died while setting up
        (its checkpoint, perhaps an empty shadow, nothing else) is removed and started
        again; with nothing of ours to resume, refuse (exit 9)."""
        if found.checkpoint and not found.foreign:
            log.warning("--resume: the earlier run died while setting up (before its first "
                        "checkpoint); removing %s (nothing was copied yet)",
                        ", ".join(found.ours))
            for name in found.ours:
                ledger.drop(self._control(), self.db, name, must_exist=True)
            return
        why = leftovers.refusal(found, self.db, self.config.table)
        raise ResumeRefused(
            f"nothing to resume: {self.db} has no onlineddl checkpoint for "
            f"{self.config.table} ({self.names.checkpoint})"
            + (f"; {why.message}" if why else ""),
            hint=why.hint if why else "run the same command without --resume to start")

    def start_applier(self) -> None:
        """Start reading the binlog before the first chunk is read: the stream then
        starts before every chunk's snapshot, so a change a chunk's read missed is
        always in it."""
        source, shadow, state = self._source(), self._shadow(), self._state()
        mapping = self._mapping()
        # Qualified: the in-place flush joins the two tables.
        exprs = tuple(mapping.source_exprs(sql.qualified(self.db, source.name)))
        target = FlushTarget(self.db, source.name, shadow.name, exprs,
                             mapping.target_cols(), shadow.key,
                             source.key, other_unique=bool(self._unique_checks()),
                             integer_key=integer_key(source, shadow),
                             unique_checks=self._unique_checks())
        shape = TableShape.of(source)
        server_id = self.config.server_id or random.randint(1 << 30, (1 << 32) - 2)

        shift = zones.key_shift(self._control(), source)

        def reader(start: BinlogPosition) -> BinlogReader:
            opened = open_reader(self.config.dsn, self._flavor(), shape, start, server_id)
            return zones.ShiftedReader(opened, shift) if shift else opened

        self.applier = Applier(dsn=self.config.dsn, flavor=self._flavor(),
                               reader_factory=reader, target=target,
                               key_order=KeyOrder(source.key_columns),
                               watermark=self.watermark, tuning=self.tuning,
                               start=state.position)
        self.applier.start()
        faults.point("applier_started")

    def copy(self) -> None:
        self.set_phase(Phase.COPY)
        if self.watermark.get().complete:
            return
        self._warn_if_workers_take_turns()
        session = Session(self.config.dsn, name="copier", isolation="READ COMMITTED",
                          lock_wait_timeout=self.tuning.lock_wait_timeout, reconnect=True)
        try:
            chunker = Chunker(session, self._source(), self.tuning,
                              start=self.watermark.get().bound)
            copier = Copier(dsn=self.config.dsn, tuning=self.tuning, source=self._source(),
                            shadow=self._shadow(), mapping=self._mapping(), chunker=chunker,
                            watermark=self.watermark, unique_checks=self._unique_checks())
            base = self.progress.rows_copied

            def tick() -> None:
                self.progress.rows_copied = base + copier.stats.rows
                self.progress.chunk_size = copier.chunker.size
                self.tick()

            def between(chunk_seconds: float) -> None:
                tick()
                # Pause, throttling and rest hold only the copier: the applier has its
                # own threads and keeps the shadow in sync meanwhile.
                if not copier.chunker.done:  # no rest once no chunk is left to start
                    self.progress.rested_seconds += self.gate.rest(chunk_seconds, tick)
                self.gate.wait(tick, self._show_hold)
                self._steer(copier.chunker)

            copier.run(between)
        finally:
            session.close()
        self.tick(force_checkpoint=True)
        self.events.fire("copy-done")

    def _warn_if_workers_take_turns(self) -> None:
        """With innodb_autoinc_lock_mode below 2 (MariaDB's default is 1), an
        INSERT ... SELECT into a table with an AUTO_INCREMENT column holds a table-level
        lock until it ends, explicit values or not: copy workers then copy one at a time
        (MariaDB 10.11, 1M rows: two workers 4.3-4.6 s against 3.9-4.1 s for one; into a
        table without AUTO_INCREMENT, 2.6-3.2 s against 3.5-3.9 s)."""
        if self.tuning.copy_workers < 2:
            return
        if not any(c.auto_increment for c in self._shadow().columns):
            return
        mode = int(self._control().scalar("SELECT @@GLOBAL.innodb_autoinc_lock_mode"))
        if mode < 2:
            log.warning("--copy-workers %d: the new table has an AUTO_INCREMENT column and "
                        "innodb_autoinc_lock_mode=%d, so the server runs one copy chunk at a "
                        "time and the extra workers only wait; innodb_autoinc_lock_mode=2 "
                        "(a server start-up setting) lets them copy side by side",
                        self.tuning.copy_workers, mode)

    def catch_up(self) -> None:
        """Wait, bounded, until the applier has reached the binlog head with a small
        backlog; then, for up to CATCHUP_SETTLE seconds, until it reaches a head within
        CATCHUP_LAG seconds of reading it, so the drain under the write block (checksum
        snapshot, cutover) is short. Under writes faster than the applier it goes on
        after CATCHUP_SETTLE rather than wait for a quiet moment that may not come."""
        self.set_phase(Phase.CATCHUP)
        applier = self._applier()
        deadline = time.monotonic() + self.tuning.catchup_timeout
        settle_until = None
        while True:
            head, asked = self._flavor().current_position(self._control()), time.monotonic()
            self._wait_for_head(applier, head, deadline)
            if time.monotonic() - asked <= CATCHUP_LAG:
                break
            settle_until = settle_until or time.monotonic() + CATCHUP_SETTLE
            if time.monotonic() > settle_until:
                log.info("the applier stays more than %.1fs behind under this write load; "
                         "going on (the drain under the write block will be longer)",
                         CATCHUP_LAG)
                break
        applier.flush_now()

    def _wait_for_head(self, applier: Applier, head: BinlogPosition, deadline: float) -> None:
        while not (applier.received_position().reached(head)
                   and applier.backlog() <= self.tuning.flush_batch):
            applier.wake_reader()
            self.tick()
            if time.monotonic() > deadline:
                raise WaitTimeout(
                    f"the applier did not catch up within {self.tuning.catchup_timeout:.0f}s "
                    f"(backlog {applier.backlog()}, at {applier.received_position()}, "
                    f"head {head})",
                    hint="the write load is higher than onlineddl applies; the run is "
                         "resumable with --resume at a quieter time")
            time.sleep(0.01)

    def verify(self) -> None:
        self.set_phase(Phase.CHECKSUM)
        mapping = self._mapping()
        applier = self._applier()
        checksum = Checksum(dsn=self.config.dsn, flavor=self._flavor(), control=self._control(),
                            source=self._source(), shadow=self._shadow(), mapping=mapping,
                            target=applier.target, applier=applier, tuning=self.tuning)
        result = checksum.run(self.config.repair, self.tick)
        self.rows_checked = result.rows
        self._state().checksum_state = "passed"
        self.tick(force_checkpoint=True)
        log.info("checksum passed: %d rows in %d chunks", result.rows, result.chunks)
        faults.point("after_checksum")

    def wait_while_postponed(self, tick: Callable[[], None] | None = None) -> None:
        """Hold the cutover while the operator wants it held (the flag file, `ctl
        postpone`) or the before-cutover hook fails; stay in sync meanwhile."""
        reason = self._postpone_reason()
        if reason is None:
            return
        self.set_phase(Phase.POSTPONED)
        log.info("cutover %s", reason)
        while reason is not None:
            self.progress.postpone_reason = reason
            (tick or self.tick)()
            time.sleep(0.2)
            current = self._postpone_reason()
            if current is not None and current != reason:
                log.info("cutover %s", current)
            reason = current
        self.progress.postpone_reason = ""
        log.info("cutover no longer postponed; cutting over")

    def cut_over(self) -> None:
        self.set_phase(Phase.CUTOVER)
        self.runner_lock.check()
        self._refuse_taken_old_name()
        # [foreign keys] every row's parent exists, or the run stops before the swap.
        foreignkeys.verify_integrity(self._control(), self.db, self.config.table,
                                     self._source().pk, self.foreign_keys, self.tick)
        # Most of the counter is carried now; under the write block only what moved since.
        self._carry_auto_increment(self._control())
        # [fk parents] guards (inert) on T and the children's indexes made their own.
        self.fk_children = fkparents.children(self._control(), self.db, self.config.table)
        # CREATE TRIGGER waits for transactions open on T, and writers queue behind it:
        # each try waits the cutover lock timeout at most.
        retry(lambda: fkparents.prepare(self._control(), self.db, self.names,
                                        self.fk_children, self.tuning.cutover_lock_timeout),
              what="putting the guard triggers on the table",
              attempts=self.tuning.cutover_attempts)
        cutover = Cutover(dsn=self.config.dsn, flavor=self._flavor(), control=self._control(),
                          database=self.db, artifacts=self.names, applier=self._applier(),
                          tuning=self.tuning, on_block=self._record_cutover_started,
                          is_owner=self.runner_lock.check,
                          before_swap=self._before_swap, carry=self._carry(),
                          after_failed_attempt=self._after_failed_attempt,
                          undo_under_block=self._undo_repoint,
                          children_lock=self._children_lock)
        try:
            cutover.run()
        finally:
            self.progress.cutover_attempts = cutover.attempts
        self.cutover_attempts, self.block_seconds = cutover.attempts, cutover.block_seconds
        self.progress.write_block_seconds = cutover.block_seconds
        log.info("cutover done after %d attempt(s); writes blocked for %.3fs",
                 cutover.attempts, cutover.block_seconds)
        self._applier().stop()
        state = self._state()
        state.swapped, state.phase = True, Phase.CLEANUP
        self._checkpoint().write(state)

    def _carry(self) -> triggers.Carry:
        state = self._state()

        def record(current: tuple[triggers.Trigger, ...]) -> None:
            state.triggers = triggers.encode(current)   # written by the cutover's on_block

        return triggers.Carry(self._control(), self.db, self.names,
                              triggers.decode(state.triggers), record)

    def cleanup(self) -> None:
        self.set_phase(Phase.CLEANUP)
        control = self._control()
        drop_guards(control, self.db, self.names)
        # The trigger guard went with the original to the old table: dropped there.
        triggers.repair(control, self.db, self.names, triggers.decode(self._state().triggers),
                        swapped=True)
        foreignkeys.finish(control, self.db, self.names)   # [foreign keys] idempotent
        fkparents.finish(control, self.db, self.names)     # [fk parents] idempotent
        # Recorded (or dropped) before the checkpoint goes: a crash in between is
        # finished by --resume, which does it again.
        if self.config.drop_old:
            ledger.drop(control, self.db, self.names.old)
        else:
            oldtables.register(control, self.db, self.names, self._state().alter_text)
        self._checkpoint().drop()
        if self.config.drop_old:
            oldtables.forget(control, self.db, self.names.old)
        oldtables.apply_retention(control, self.db, self.config.table,
                                  self.config.keep_old_for)
        self.set_phase(Phase.DONE)
        kept = self._kept_old()
        log.info("done: %s.%s has the new schema%s", self.db, self.config.table,
                 f"; the original is kept as {kept}" if kept else "")

    # --- resume ----------------------------------------------------------------------

    def _resume_from(self, state: State) -> bool:
        self.resumed = True
        self.state = state
        self.names = self.names.with_old(state.old_table)
        decision = resume.decide(self._control(), self._flavor(), self.config, self.names,
                                 state, key=self._resumed_key)
        if decision.finish:
            return False
        # [fk parents] a kill while re-pointing: the children back to T, guard disarmed.
        fkparents.repair(self._control(), self.db, self.names, swapped=False)
        # A kill inside the trigger carry left T guarded: its triggers go back first.
        triggers.repair(self._control(), self.db, self.names, triggers.decode(state.triggers),
                        swapped=False)
        # [foreign keys] a failed cutover may have left them on the shadow.
        foreignkeys.release(self._control(), self.db, self.names, self.foreign_keys)
        self.watermark = Watermark(state.low_watermark, state.copy_complete)
        self.progress.rows_copied = state.rows_copied
        state.cutover_started, state.drain = False, None
        return True

    def _resumed_key(self, shadow: TableInfo) -> tuple[str, ...]:
        """The run's key, chosen again as the first run chose it (keys.choose is
        deterministic): the checkpoint's watermark is a value of it."""
        self.shadow = shadow
        self._choose_key()
        return self._shadow().key

    def finished_before(self) -> bool:
        """--resume=auto with no run to continue: did an earlier run of this ALTER finish
        (T has the schema the ALTER gives the old table that run kept)? Then there is
        nothing to do: a scheduler's retry after the process died just after success
        exits 0 instead of starting a second migration of the migrated table."""
        if not self.config.resume_auto:
            return False
        found = leftovers.survey(self._control(), self.db, self.names)
        if found.checkpoint and found.state is None and not found.foreign:
            # A run (or this question) killed while setting up: removed, as --resume does.
            self._start_over(found)
            found = leftovers.survey(self._control(), self.db, self.names)
        if found.checkpoint or found.ours or found.foreign:
            return False
        old = self._kept_by_this_alter()
        if old is None or not self._ask_done_before(old):
            return False
        self.already_done = True
        self.set_phase(Phase.DONE)
        log.info("--resume=auto: already done: %s.%s has the schema this ALTER gives %s "
                 "(the original an earlier run of it kept); nothing to do", self.db,
                 self.config.table, old)
        return True

    def _kept_by_this_alter(self) -> str | None:
        """The old table the newest finished run of this ALTER kept: recorded, and still
        the recorded table. A bare `_T_old` (an earlier version's, or a user's backup)
        carries no record of its ALTER, so it never makes a run "already done"."""
        mine = alter_hash(self.config.alter)
        runs = [o for o in oldtables.recorded(self._control(), self.db, self.config.table)
                if o.ours and alter_hash(o.alter) == mine]
        return runs[-1].name if runs else None

    def _ask_done_before(self, old: str) -> bool:
        """The question is asked of an empty `_T_new` made from `old` the way setup()
        makes the shadow from T, under a checkpoint created first: killed midway, this
        leaves what the next run (or `cleanup`) removes as a run that died while
        setting up. Both tables are dropped again."""
        control, names = self._control(), self.names.with_old(old)
        Checkpoint(control, self.db, names.checkpoint).create()
        self.ledger.record(names.checkpoint)
        try:
            control.execute(f"CREATE TABLE {sql.qualified(self.db, names.shadow)} "
                            f"LIKE {sql.qualified(self.db, names.old)}")
            self.ledger.record(names.shadow)
            faults.point("done_probe")
            return resume.done_before(control, self.db, names,
                                      self._parsed_alter().clauses_for_shadow)
        finally:
            for name in (names.shadow, names.checkpoint):
                if name in self.ledger:
                    self._drop_created(name)

    def finish_after_swap(self) -> None:
        state = self._state()
        state.swapped, state.phase = True, Phase.CLEANUP
        self._checkpoint().write(state)
        self.cleanup()

    # --- helpers ---------------------------------------------------------------------

    def tick(self, force_checkpoint: bool = False) -> None:
        """Between units of work: health checks, the operator's stop, checkpoint,
        progress, the status hook."""
        applier = self._applier()
        applier.check()
        self._check_stop()
        now = time.monotonic()
        if now - self._last_lock_check >= 1.0:
            self.runner_lock.check()
            self._last_lock_check = now
        if force_checkpoint or now - self._last_checkpoint >= self.tuning.checkpoint_interval:
            self._write_checkpoint()
            self._last_checkpoint = now
        self._measure(now)
        self.progress.maybe_report()
        self.events.tick(now)

    def _tick_without_copy(self) -> None:
        """tick() for the instant path: no applier and no checkpoint to look after."""
        if self.controls.state().abort_requested:
            raise Aborted("aborted by the operator (`ctl abort`); nothing was changed")
        self.throttle.check_critical()
        self.runner_lock.check()
        self.progress.maybe_report()

    def _check_stop(self) -> None:
        """`ctl abort` and --critical-load stop the run resumably, checkpoint first."""
        try:
            if self.controls.state().abort_requested:
                raise Aborted("aborted by the operator (`ctl abort`)")
            self.throttle.check_critical()
        except Aborted:
            self._write_checkpoint()
            raise

    def _measure(self, now: float) -> None:
        applier = self._applier()
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
        return {**self.progress.snapshot().as_dict(), "alter": self.config.alter,
                "instant_possible": self.instant}

    def _write_checkpoint(self) -> None:
        state = self._state()
        safe = self._applier().safe
        state.low_watermark = safe.watermark.bound
        state.copy_complete = safe.watermark.complete
        state.position = safe.position
        state.rows_copied = self.progress.rows_copied
        state.phase = self.phase
        self._checkpoint().write(state)
        faults.point("after_checkpoint")

    def _carry_auto_increment(self, session: Session) -> None:
        """A plain ALTER keeps T's AUTO_INCREMENT counter, so ids of deleted or rolled
        back rows are not handed out again; CREATE TABLE ... LIKE starts the shadow at 1
        and the copy only takes it past the largest id. Raise the shadow's counter to
        T's (never lower it). With AUTO_INCREMENT=N in the ALTER the shadow already has
        what a plain ALTER gives: N, or past the largest id."""
        shadow = self._shadow()
        if self._parsed_alter().auto_increment is not None or \
                not any(c.auto_increment for c in shadow.columns):
            return
        ours = auto_increment_counter(session, self.db, self.config.table)
        theirs = auto_increment_counter(session, self.db, shadow.name) or 1
        if ours is not None and ours > theirs:
            session.execute(sql.set_auto_increment(self.db, shadow.name, ours))
            log.info("AUTO_INCREMENT of %s carried over: %d", shadow.name, ours)

    def _before_swap(self, session: Session) -> None:
        """Under the write block, drained: the counter, then [foreign keys] T's
        constraints onto the shadow (in place, metadata only)."""
        self._carry_auto_increment(session)
        foreignkeys.attach(session, self.db, self.names, self.foreign_keys, self._mapping())
        faults.point("foreign_keys_attached")
        # [fk parents] the children's constraints to the shadow (the RENAME moves them to T).
        found = fkparents.children(session, self.db, self.config.table)
        if {fk.name for fk in found} - {fk.name for fk in self.fk_children}:
            raise TableChanged(
                f"a table gained a foreign key referencing {self.config.table} during the "
                f"run: {'; '.join(fk.describe() for fk in found)}",
                hint="run the same command with --resume: it prepares the new one too")
        self.fk_children = found
        fkparents.repoint(session, self.db, self.names, found,
                          self.tuning.cutover_lock_timeout, self.tuning.block_timeout / 2,
                          self._mapping())

    def _after_failed_attempt(self, session: Session) -> None:
        """[foreign keys] Off the shadow again until the next attempt: while it lags
        behind T they would refuse the application's parent deletes."""
        foreignkeys.release(session, self.db, self.names, self.foreign_keys)
        self._undo_repoint(session)

    def _children_lock(self) -> str:
        """[fk parents] LOCK TABLES for the tables referencing T ("" for none)."""
        return fkparents.lock_sql(self.fk_children)

    def _undo_repoint(self, session: Session) -> None:
        """[fk parents] The children back to T, the guard disarmed (no swap happened)."""
        fkparents.repair(session, self.db, self.names, swapped=False)

    def _record_cutover_started(self, drain: BinlogPosition) -> None:
        state = self._state()
        state.cutover_started, state.drain, state.phase = True, drain, Phase.CUTOVER
        self._checkpoint().write(state)

    def set_phase(self, phase: Phase) -> None:
        self.phase = phase
        self.progress.set_phase(phase)

    def _refuse_taken_old_name(self) -> None:
        """The checkpoint fixed the old table's name; were it taken, every RENAME fails."""
        if self.names.old in present_artifacts(self._control(), self.db, self.names):
            raise ArtifactsExist(
                f"{self.db}.{self.names.old} exists: that is the name this run's swap gives "
                f"the original {self.config.table}, and another table took it during the run",
                hint=f"rename or drop {self.names.old} yourself (check first what it holds), "
                     "then run the same command with --resume")

    def _refuse_leftovers(self) -> None:
        found = leftovers.survey(self._control(), self.db, self.names)
        refusal = leftovers.refusal(found, self.db, self.config.table)
        if refusal is not None:
            raise refusal

    def _create_shadow(self) -> None:
        control, shadow = self._control(), sql.qualified(self.db, self.names.shadow)
        control.execute(f"CREATE TABLE {shadow} LIKE {sql.qualified(self.db, self.config.table)}")
        self.ledger.record(self.names.shadow)
        foreignkeys.own_indexes(control, self.db, self.names.shadow, self.foreign_keys)
        # [foreign keys] T's constraints are on the (empty) shadow while the ALTER runs:
        # the server's own verdict on it with them present; dropped again after.
        try:
            foreignkeys.attach(control, self.db, self.names, self.foreign_keys, None)
        except OnlineDDLError as err:
            raise InvalidAlter(f"the server refused {self.config.table}'s foreign keys on "
                               f"the new table: {err.message}",
                               hint="nothing was changed; the user needs the REFERENCES "
                                    "privilege on the parent tables") from err
        self.instant = self._alter_shadow_instantly()
        clauses = self._parsed_alter().clauses_for_shadow   # [foreign keys] see there
        if not self.instant and clauses:
            try:
                control.execute(sql.alter_table(self.db, self.names.shadow, clauses))
            except OnlineDDLError as err:
                raise InvalidAlter(f"the server rejected the ALTER: {err.message}",
                                   hint="fix the ALTER; the original table is unchanged") \
                    from err
        foreignkeys.release(control, self.db, self.names, self.foreign_keys)  # [fks]
        self.shadow = load_table(control, self.db, self.names.shadow)
        self._refuse_engine(self.shadow)
        self._choose_key()
        # [fk parents] the server's verdict on the children's constraints against it.
        fkparents.check_shadow(control, self.db, self.names, self.fk_children,
                               self._mapping())

    def _choose_key(self) -> None:
        """Set the key the run walks on both tables' infos (keys.py); refuse (exit 5)
        when the ALTER leaves the two tables no shared NOT NULL unique key."""
        self.source, self.shadow = keys.choose(self._control(), self._source(),
                                               self._shadow(), self._mapping())

    def _refuse_engine(self, shadow: TableInfo) -> None:
        """Only InnoDB gives the consistent snapshots and transactional flushes the copy
        and the checksum rely on. Checked before the instant path is chosen: MariaDB
        takes ALGORITHM=INSTANT for an engine change on an empty table and would then
        rebuild T itself under a lock."""
        if shadow.engine.lower() != "innodb":
            raise InvalidAlter(
                f"the ALTER makes {self.config.table} a {shadow.engine} table; onlineddl "
                "copies only into InnoDB (transactions and consistent snapshots)",
                hint="change the engine with a plain ALTER TABLE outside onlineddl; the "
                     "table is unchanged")

    def _alter_shadow_instantly(self) -> bool:
        """Can the server do the ALTER with ALGORITHM=INSTANT? Asked on the empty shadow
        (the server refuses rather than copies when it cannot); if so, that altered it."""
        clauses = self._parsed_alter().clauses_for_shadow
        if not self._flavor().supports_instant or not clauses:
            return False
        text = sql.alter_table(self.db, self.names.shadow, clauses, instant=True)
        try:
            self._control().execute(text)
        except OnlineDDLError:
            return False
        log.info("the server can do this ALTER instantly (ALGORITHM=INSTANT)%s",
                 "" if self.config.allow_instant else
                 "; --allow-instant would apply it to the table in place, without a copy")
        return True

    def _drop_created(self, name: str) -> None:
        self.ledger.drop(self._control(), self.db, name)

    def _describe_dry_run(self) -> dryrun.DryRun:
        own = foreignkeys.describe(self.config.table, self.names.shadow, self.foreign_keys,
                                   self._source().rows_estimate,
                                   self._parsed_alter().foreign_keys_dropped,
                                   self._parsed_alter().foreign_keys_added)
        if self.fk_children:   # [fk parents] "none" no longer true
            own = [line for line in own if not line.lstrip().startswith("none:")]
        return dryrun.build(self.config, self._flavor().version_string, self._source(),
                            self._shadow(), self._mapping(), self.instant,
                            triggers=self.triggers,
                            related=tuple(own + fkparents.describe(
                                self._control(), self.fk_children, self.names.shadow)))

    def _mapping(self) -> ColumnMapping:
        if self.mapping is None:
            self.mapping = build_mapping(self._source(), self._shadow(), self._parsed_alter())
        return self.mapping

    def _unique_checks(self) -> tuple[UniqueCheck, ...]:
        """The shadow's UNIQUE keys, asked once: the applier and the copier both need them."""
        if self.shadow_unique is None:
            self.shadow_unique = unique_checks(self._control(), self._source(),
                                               self._shadow(), self._mapping())
        return self.shadow_unique

    def discard_created(self) -> None:
        self._undo_parents()
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

    def _undo_parents(self) -> None:
        """[fk parents] A run that ends for good leaves no guard trigger or marker table
        behind (the children back on T, or named back after a swap)."""
        if self.control is None or not self.names.old:
            return
        try:
            swapped = swap_state(self.control, self.db, self.names).swapped
            fkparents.cleanup(self.control, self.db, self.names, swapped)
        except OnlineDDLError as err:
            log.warning("could not remove the foreign-key guards of %s (%s); use "
                        "`onlineddl cleanup`", self.config.table, err.message)

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
            state = Checkpoint(self._control(), self.db, self.names.checkpoint
                               ).read(upgrade=False)   # another runner's: only read
        except OnlineDDLError:
            return ""
        if state is None:
            return ""
        return (f"; runner {state.runner}, started {state.started_at:%Y-%m-%d %H:%M:%S} UTC, "
                f"phase {state.phase.text}")

    def succeed(self, started: float) -> Result:
        self.events.fire("success")
        return Result(self.db, self.config.table, self.progress.rows_copied, self.rows_checked,
                      time.monotonic() - started, self.cutover_attempts, self.block_seconds,
                      self.resumed, instant=self.applied_instantly,
                      already_done=self.already_done, old_table=self._kept_old())

    def _kept_old(self) -> str:
        """This run's old table, unless dropped at its end (--drop-old, or
        --keep-old-for 0: the retention then drops it too)."""
        dropped = self.config.drop_old or self.config.keep_old_for == 0
        if self.applied_instantly or self.already_done or dropped or \
                self.phase != Phase.DONE:
            return ""
        return self.names.old

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

    # Typed accessors: each stage may rely on the ones before it having run.
    def _control(self) -> Session:
        assert self.control is not None
        return self.control

    def _flavor(self) -> MySQL:
        assert self.flavor is not None
        return self.flavor

    def _parsed_alter(self) -> ParsedAlter:
        assert self.parsed_alter is not None
        return self.parsed_alter

    def _source(self) -> TableInfo:
        assert self.source is not None
        return self.source

    def _shadow(self) -> TableInfo:
        assert self.shadow is not None
        return self.shadow

    def _applier(self) -> Applier:
        assert self.applier is not None
        return self.applier

    def _checkpoint(self) -> Checkpoint:
        assert self.checkpoint is not None
        return self.checkpoint

    def _state(self) -> State:
        assert self.state is not None
        return self.state


def migrate(config: MigrationConfig) -> Result:
    """The Python API: run one online ALTER to completion (or raise OnlineDDLError)."""
    return Migration(config).run()

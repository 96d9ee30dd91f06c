"""The lifecycle of one online ALTER, read top to bottom; the resume policy.

    preflight -> setup -> [applier starts] -> copy -> catch-up -> checksum
              -> (postponed) -> cutover -> cleanup

Only this module knows the order of a migration's stages; the stages it shares with
`revert` (the applier, catch-up, checksum, postponement, cutover, the operator's
handles consulted in `tick()` and between copy chunks) are in run.py.
"""

from __future__ import annotations

import logging
import time
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
    othersessions,
    resume,
    shadowcheck,
    sql,
    triggers,
    zones,
)
from onlineddl.applier import FlushTarget
from onlineddl.checkpoint import Checkpoint, State, alter_hash
from onlineddl.chunker import Chunker, Watermark
from onlineddl.config import MigrationConfig
from onlineddl.copier import Copier
from onlineddl.cutover import drop_guards, swap_state
from onlineddl.db import Session, retry
from onlineddl.errors import (
    Aborted,
    CutoverFailed,
    DatabaseError,
    DataError,
    InvalidAlter,
    OnlineDDLError,
    PreflightFailed,
    ResumeRefused,
    TableChanged,
)
from onlineddl.preflight import (
    check_constraints,
    check_nulls_made_clock,
    check_privileges,
    check_server,
    check_table,
)
from onlineddl.progress import Phase, TerminalBar
from onlineddl.run import Context, Record, Run, Sides
from onlineddl.run import Result as Result  # re-exported: the API's result type
from onlineddl.statement import ParsedAlter, parse_alter
from onlineddl.table import (
    TableInfo,
    build_mapping,
    integer_key,
    load_table,
    unfed_columns,
)
from onlineddl.throttle import CopyGate, make_throttle
from onlineddl.uniques import key_as_compared, unique_checks

log = logging.getLogger(__name__)


class Migration(Run):
    """One run. `stages()` is the table of contents; each stage is a short method."""

    FINAL_ERRORS = (PreflightFailed, InvalidAlter, DataError)

    def __init__(self, config: MigrationConfig, *, bar: TerminalBar | None = None) -> None:
        super().__init__(config, bar=bar)
        self.parsed_alter: ParsedAlter | None = None   # preflight's
        self.source: TableInfo | None = None            # T, as preflight read it
        self.instant = False             # the server can do the ALTER with ALGORITHM=INSTANT
        self.applied_instantly = False   # ... and did, on T itself (--allow-instant)
        self.already_done = False        # --resume=auto found this ALTER already done
        self.triggers: tuple[triggers.Trigger, ...] = ()   # T's, read by preflight
        self.foreign_keys: tuple[foreignkeys.ForeignKey, ...] = ()   # T's own (child side)
        # [fk parents] other tables' constraints referencing T (fkparents.py)
        self.fk_children: tuple[foreignkeys.ForeignKey, ...] = ()

    # --- the lifecycle ---------------------------------------------------------------

    def stages(self) -> None:
        """The table of contents (run.Run.run ends it with the result, or the error)."""
        self.connect()
        self.open_controls()
        self.preflight()
        self.startup_hook()
        self.drop_expired_old_tables()
        if self.apply_instantly():     # --allow-instant, and the server can: no copy
            return
        if self.finished_before():     # --resume=auto: this ALTER is already done
            return
        ctx = self.setup()             # the shadow, the checkpoint, the applier
        if not isinstance(ctx, Context):   # a resumed run found the swap done
            self.finish_after_swap(ctx)
            return
        self.copy(ctx)
        self.catch_up(ctx)
        self.verify(ctx)
        self.wait_while_postponed(lambda: self.tick(ctx))
        self.catch_up(ctx)
        self.cut_over(ctx)
        self.cleanup(ctx)

    def dry_run(self) -> dryrun.DryRun:
        """--dry-run: every check, the new table as the server builds it, the column
        mapping, the chunk plan and an estimate. The shadow is created for the server's
        verdict and dropped again: nothing is left changed."""
        try:
            self.connect()
            self.preflight()
            self._refuse_leftovers()
            return self._describe_dry_run(self._create_shadow())
        finally:
            self.discard_created()
            self.close()

    # --- stages ----------------------------------------------------------------------

    def preflight(self) -> None:
        self.set_phase(Phase.PREFLIGHT)
        control, flavor = self._control(), self._flavor()
        check_server(control, flavor)
        check_privileges(control, flavor, self.db, self.names)
        self.parsed_alter = parse_alter(self.config.alter, database=self.db,
                                        table=self.config.table)
        # A changed primary key is checked once the new table exists (keys.choose).
        source = self.source = load_table(control, self.db, self.config.table)
        check_table(control, source)
        # Triggers (triggers.py): refused here only when they cannot be carried. A resumed
        # run may find the guard of its own interrupted cutover: setup repairs it.
        alter = self._parsed_alter()
        check_constraints(control, flavor, source, alter)
        self.triggers = self._check_triggers()
        # [foreign keys] refuses what is not supported; T's own constraints otherwise.
        self.foreign_keys = foreignkeys.check_table(
            control, source, resuming=self.config.resume or self.config.resume_auto,
            dropped=alter.foreign_keys_dropped, added=alter.foreign_keys_added)
        # [fk parents] the tables referencing T: re-pointed under the block, or refused.
        self.fk_children = self._check_children()
        zones.key_shift(control, source)  # refuses a TIMESTAMP key in a DST zone
        self.progress.rows_estimate = source.rows_estimate
        self.throttle = make_throttle(self.config.throttling, self.config.dsn, flavor,
                                      self.controls)
        self.gate = CopyGate(self.controls, self.throttle)
        self.throttle.check()

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
            retry(lambda: session.execute_as_client(text, self.db),
                  what="the instant ALTER",
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

    def setup(self) -> Context | Record:
        """Create (or, with --resume, find) the shadow table and the checkpoint, and
        start the applier: it reads the binlog from before the first chunk is read, so
        a change a chunk's read missed is always in it. Only the checkpoint when a
        resumed run finds the swap already done."""
        self.set_phase(Phase.SETUP)
        control = self._control()
        checkpoint = Checkpoint(control, self.db, self.names.checkpoint)
        if self.config.resume or self.config.resume_auto:
            found = leftovers.survey(control, self.db, self.names)
            if found.state is not None:
                return self._resume_from(Record(checkpoint, found.state))
            if self.config.resume:   # (--resume=auto: finished_before() removed a dead setup)
                self._start_over(found)
        self._refuse_leftovers()
        if self.config.resume or self.config.resume_auto:
            # Starting afresh after all: a guard on T is no run's of ours to repair (its
            # checkpoint is gone), and the triggers it stands for may be missing.
            self.triggers = self._check_triggers(resuming=False)
        self.names = self.names.with_old(oldtables.choose_name(control, self.db,
                                                               self.config.table))
        # The checkpoint first: it marks the run as onlineddl's, and the shadow it
        # records next is the only `_T_new` cleanup and --resume will take for ours.
        checkpoint.create()
        self.ledger.record(self.names.checkpoint)
        sides = self._create_shadow()
        faults.point("shadow_created")
        # A start position no prepared XA transaction spans (othersessions.py).
        position = othersessions.position_without_prepared_xa(
            control, lambda: self._flavor().current_position(control),
            10 * self.tuning.lock_wait_timeout)
        state = State(alter_text=self.config.alter, phase=Phase.COPY, position=position,
                      server=self._flavor().server_identity(control),
                      shadow=leftovers.shadow_identity(control, self.db, self.names.shadow),
                      old_table=self.names.old, triggers=triggers.encode(self.triggers))
        checkpoint.write(state)
        return self.start_applier(Record(checkpoint, state), sides)

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

    def start_applier(self, record: Record, sides: Sides) -> Context:
        """The applier, from the checkpoint's position: the stream starts before every
        chunk's snapshot."""
        source, shadow, mapping = sides.source, sides.target, sides.mapping
        # The shadow's UNIQUE keys, asked once: the applier and the copier both need them.
        checks = unique_checks(self._control(), source, shadow, mapping)
        # Qualified: the in-place flush joins the two tables.
        exprs = tuple(mapping.source_exprs(sql.qualified(self.db, source.name)))
        target = FlushTarget(self.db, source.name, shadow.name, exprs,
                             mapping.target_cols(), shadow.key, source.key,
                             other_unique=bool(checks), integer_key=integer_key(source, shadow),
                             unique_checks=checks,
                             # keys the shadow's key would take for one
                             key_as_compared=key_as_compared(source, shadow),
                             unfed=bool(unfed_columns(shadow, mapping)))
        return self.follow(record, sides, target)

    def copy(self, ctx: Context) -> None:
        self.set_phase(Phase.COPY)
        if self.watermark.get().complete:
            return
        self._warn_if_workers_take_turns(ctx.target)
        session = Session(self.config.dsn, name="copier", isolation="READ COMMITTED",
                          lock_wait_timeout=self.tuning.lock_wait_timeout, reconnect=True)
        try:
            chunker = Chunker(session, ctx.source, self.tuning,
                              start=self.watermark.get().bound)
            copier = Copier(dsn=self.config.dsn, tuning=self.tuning, source=ctx.source,
                            shadow=ctx.target, mapping=ctx.mapping, chunker=chunker,
                            watermark=self.watermark,
                            unique_checks=ctx.applier.target.unique_checks)
            base = self.progress.rows_copied

            def tick() -> None:
                self.progress.rows_copied = base + copier.stats.rows
                self.progress.chunk_size = copier.chunker.size
                self.tick(ctx)

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
        self.tick(ctx, force_checkpoint=True)
        self.events.fire("copy-done")

    def _warn_if_workers_take_turns(self, shadow: TableInfo) -> None:
        """With innodb_autoinc_lock_mode below 2 (MariaDB's default is 1), an
        INSERT ... SELECT into a table with an AUTO_INCREMENT column holds a table-level
        lock until it ends, explicit values or not: copy workers then copy one at a time
        (MariaDB 10.11, 1M rows: two workers 4.3-4.6 s against 3.9-4.1 s for one; into a
        table without AUTO_INCREMENT, 2.6-3.2 s against 3.5-3.9 s)."""
        if self.tuning.copy_workers < 2:
            return
        if not any(c.auto_increment for c in shadow.columns):
            return
        mode = int(self._control().scalar("SELECT @@GLOBAL.innodb_autoinc_lock_mode"))
        if mode < 2:
            log.warning("--copy-workers %d: the new table has an AUTO_INCREMENT column and "
                        "innodb_autoinc_lock_mode=%d, so the server runs one copy chunk at a "
                        "time and the extra workers only wait; innodb_autoinc_lock_mode=2 "
                        "(a server start-up setting) lets them copy side by side",
                        self.tuning.copy_workers, mode)

    def cleanup(self, record: Record) -> None:
        self.set_phase(Phase.CLEANUP)
        control, state = self._control(), record.state
        drop_guards(control, self.db, self.names)
        # The trigger guard went with the original to the old table: dropped there.
        triggers.repair(control, self.db, self.names, triggers.decode(state.triggers),
                        swapped=True)
        foreignkeys.finish(control, self.db, self.names)   # [foreign keys] idempotent
        fkparents.finish(control, self.db, self.names)     # [fk parents] idempotent
        # Recorded (or dropped) before the checkpoint goes: a crash in between is
        # finished by --resume, which does it again.
        if self.config.drop_old:
            ledger.drop(control, self.db, self.names.old)
        else:
            swap = oldtables.swap_record(control, self.db, self.names, "migrate", state.drain,
                                         self._swap_pairs(record), state.server)
            oldtables.register(control, self.db, self.names, state.alter_text, swap)
        record.checkpoint.drop()
        if self.config.drop_old:
            oldtables.forget(control, self.db, self.names.old)
        oldtables.apply_retention(control, self.db, self.config.table,
                                  self.config.keep_old_for)
        self.set_phase(Phase.DONE)
        kept = self._kept_old()
        log.info("done: %s.%s has the new schema%s", self.db, self.config.table,
                 f"; the original is kept as {kept}" if kept else "")

    def _swap_pairs(self, record: Record) -> tuple[tuple[str, str], ...]:
        """(original's column, new T's column it fed), for a later revert. A resumed
        run that finds the swap done has no mapping: built from the two tables."""
        if isinstance(record, Context):
            mapping = record.mapping
        else:
            old = load_table(self._control(), self.db, self.names.old)
            mapping = build_mapping(old, self._source(), self._parsed_alter())
        return tuple(zip(mapping.source, mapping.target, strict=True))

    # --- resume ----------------------------------------------------------------------

    def _resume_from(self, record: Record) -> Context | Record:
        state = record.state
        self.resumed = True
        self.names = self.names.with_old(state.old_table)
        # The run's key is chosen again as the first run chose it (keys.choose is
        # deterministic): the checkpoint's watermark is a value of it.
        decision = resume.decide(self._control(), self._flavor(), self.config, self.names,
                                 state, key=lambda shadow: self._sides(shadow).target.key)
        if decision.finish:
            return record
        # [fk parents] a kill while re-pointing: the children back to T, guard disarmed.
        fkparents.repair(self._control(), self.db, self.names, swapped=False)
        # A kill inside the trigger carry left T guarded: its triggers go back first.
        triggers.repair(self._control(), self.db, self.names, triggers.decode(state.triggers),
                        swapped=False)
        # ... and are checked as they are now (another session may have changed them):
        # what this run carries. So are the children, back on T after the repair.
        self.triggers = self._check_triggers()
        state.triggers = triggers.encode(self.triggers)
        self.fk_children = self._check_children()
        sides = self._sides(load_table(self._control(), self.db, self.names.shadow))
        # [fk parents] a child added while the run was down: the server's verdict on it.
        fkparents.check_shadow_again(self._control(), self.db, self.names,
                                     self.fk_children, sides.mapping)
        # [foreign keys] a failed cutover may have left them on the shadow.
        foreignkeys.release(self._control(), self.db, self.names, self.foreign_keys)
        self.watermark = Watermark(state.low_watermark, state.copy_complete)
        self.progress.rows_copied = state.rows_copied
        state.cutover_started, state.drain = False, None
        return self.start_applier(record, sides)

    def _check_triggers(self, resuming: bool | None = None) -> tuple[triggers.Trigger, ...]:
        """T's triggers, refused (nothing changed) when they cannot be carried.
        `resuming` (default: a --resume run): a guard on T may be ours to repair."""
        if resuming is None:
            resuming = self.config.resume or self.config.resume_auto
        alter = self._parsed_alter()
        return triggers.check(self._control(), self._flavor(), self.db, self.config.table,
                              alter.dropped,
                              [o for o, n in alter.renames.items()
                               if o.lower() != n.lower()],   # names ignore case
                              resuming=resuming)

    def _check_children(self) -> tuple[foreignkeys.ForeignKey, ...]:
        """[fk parents] The tables referencing T: re-pointed under the block, or refused."""
        return fkparents.check(self._control(), self._flavor(), self.db, self.config.table,
                               bool(self.triggers),
                               resuming=self.config.resume or self.config.resume_auto)

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

    # --- helpers ---------------------------------------------------------------------

    def _tick_without_copy(self) -> None:
        """tick() for the instant path: no applier and no checkpoint to look after."""
        if self.controls.state().abort_requested:
            raise Aborted("aborted by the operator (`ctl abort`); nothing was changed")
        self.throttle.check_critical()
        self.runner_lock.check()
        self.progress.maybe_report()

    def status(self) -> dict[str, Any]:
        """What `ctl status` shows (with the controls' state)."""
        return {**super().status(), "instant_possible": self.instant}

    def _counter_set_by_alter(self) -> bool:
        """With AUTO_INCREMENT=N in the ALTER the shadow already has what a plain ALTER
        gives: N, or past the largest id."""
        return self._parsed_alter().auto_increment is not None

    # --- the cutover's hooks (run.Run.cut_over) ----------------------------------------

    def _before_cutover(self, ctx: Context) -> None:
        """[foreign keys] every row's parent exists, or the run stops before the swap."""
        foreignkeys.verify_integrity(self._control(), self.db, self.config.table,
                                     ctx.source.pk, self.foreign_keys, lambda: self.tick(ctx))
        # [fk parents] guards (inert) on T and the children's indexes made their own.
        self.fk_children = self._children_now(self._control())
        # CREATE TRIGGER waits for transactions open on T, and writers queue behind it:
        # each try waits the cutover lock timeout at most.
        retry(lambda: fkparents.prepare(self._control(), self.db, self.names,
                                        self.fk_children, self.tuning.cutover_lock_timeout),
              what="putting the guard triggers on the table",
              attempts=self.tuning.cutover_attempts)

    def _children_now(self, session: Session) -> tuple[foreignkeys.ForeignKey, ...]:
        """[fk parents] The constraints referencing T now. One another session added
        since preflight has passed none of its checks (privileges, names, the new
        table's verdict): the run stops, T unchanged, and --resume checks it."""
        found = fkparents.children(session, self.db, self.config.table)
        known = {(fk.database, fk.table, fk.name) for fk in self.fk_children}
        new = [fk for fk in found if (fk.database, fk.table, fk.name) not in known]
        if new:
            raise TableChanged(
                f"foreign key(s) referencing {self.config.table} were added during the run: "
                f"{'; '.join(fk.describe() for fk in new)}",
                hint="run the same command with --resume: it checks them and re-points "
                     "them too; the table is unchanged")
        return found

    def _carry(self, ctx: Context) -> triggers.Carry:
        return triggers.Carry(self._control(), self.db, self.names,
                              triggers.decode(ctx.state.triggers))

    def _before_swap(self, ctx: Context, session: Session) -> None:
        """Under the write block, drained: the counter, then [foreign keys] T's
        constraints onto the shadow (in place, metadata only)."""
        super()._before_swap(ctx, session)
        # T and the new table still as preflight read and setup built them, T's own
        # constraints still as preflight found them (another session's DDL stops here).
        foreignkeys.check_unchanged(session, self.db, self.config.table, self.foreign_keys,
                                    self._parsed_alter().foreign_keys_dropped)
        shadowcheck.check_unchanged(session, self.db, ctx.source, ctx.target,
                                    foreignkeys.temp_names(self.names, self.foreign_keys))
        foreignkeys.attach(session, self.db, self.names, self.foreign_keys, ctx.mapping)
        faults.point("foreign_keys_attached")
        # [fk parents] the children's constraints to the shadow (the RENAME moves them to T).
        found = self._children_now(session)
        self.fk_children = found
        fkparents.repoint(session, self.db, self.names, found,
                          self.tuning.cutover_lock_timeout, self.tuning.block_timeout / 2,
                          ctx.mapping)

    def _after_failed_attempt(self, ctx: Context, session: Session) -> None:
        """[foreign keys] Off the shadow again until the next attempt: while it lags
        behind T they would refuse the application's parent deletes."""
        foreignkeys.release(session, self.db, self.names, self.foreign_keys)
        self._undo_under_block(session)

    def _children_lock(self) -> str:
        """[fk parents] LOCK TABLES for the tables referencing T ("" for none)."""
        return fkparents.lock_sql(self.fk_children)

    def _undo_under_block(self, session: Session) -> None:
        """[fk parents] The children back to T, the guard disarmed (no swap happened).
        Nothing to ask while T is blocked when no table references it."""
        foreignkeys.release_without_waiting(session, self.db, self.names,
                                            self.foreign_keys)   # [fk own]
        if self.fk_children:
            fkparents.repair(session, self.db, self.names, swapped=False)

    def discard_created(self) -> None:
        self._undo_parents()
        super().discard_created()

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

    def _refuse_leftovers(self) -> None:
        found = leftovers.survey(self._control(), self.db, self.names)
        refusal = leftovers.refusal(found, self.db, self.config.table)
        if refusal is not None:
            raise refusal

    def _create_shadow(self) -> Sides:
        """`_T_new`: CREATE TABLE ... LIKE T, then the ALTER (the server's verdict);
        returned with the key the run walks and the column mapping."""
        control, name = self._control(), sql.qualified(self.db, self.names.shadow)
        control.execute(f"CREATE TABLE {name} LIKE {sql.qualified(self.db, self.config.table)}")
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
                control.execute_as_client(
                    sql.alter_table(self.db, self.names.shadow, clauses), self.db)
            except OnlineDDLError as err:
                raise InvalidAlter(f"the server rejected the ALTER: {err.message}",
                                   hint="fix the ALTER; the original table is unchanged") \
                    from err
        foreignkeys.release(control, self.db, self.names, self.foreign_keys)  # [fks]
        shadow = load_table(control, self.db, self.names.shadow)
        self._refuse_engine(shadow)
        sides = self._sides(shadow)
        check_nulls_made_clock(control, sides.source, sides.target, sides.mapping)
        # [fk parents] the server's verdict on the children's constraints against it.
        fkparents.check_shadow(control, self.db, self.names, self.fk_children, sides.mapping)
        return sides

    def _sides(self, shadow: TableInfo) -> Sides:
        """T and the shadow with the key the run walks (keys.py) and the column mapping;
        refused (exit 5) when the ALTER leaves the two tables no shared NOT NULL unique
        key."""
        mapping = build_mapping(self._source(), shadow, self._parsed_alter())
        source, shadow = keys.choose(self._control(), self._source(), shadow, mapping)
        return Sides(source, shadow, mapping)

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
            self._control().execute_as_client(text, self.db)
        except OnlineDDLError:
            return False
        log.info("the server can do this ALTER instantly (ALGORITHM=INSTANT)%s",
                 "" if self.config.allow_instant else
                 "; --allow-instant would apply it to the table in place, without a copy")
        return True

    def _describe_dry_run(self, sides: Sides) -> dryrun.DryRun:
        own = foreignkeys.describe(self.config.table, self.names.shadow, self.foreign_keys,
                                   sides.source.rows_estimate,
                                   self._parsed_alter().foreign_keys_dropped,
                                   self._parsed_alter().foreign_keys_added)
        if self.fk_children:   # [fk parents] "none" no longer true
            own = [line for line in own if not line.lstrip().startswith("none:")]
        return dryrun.build(self.config, self._flavor().version_string, sides.source,
                            sides.target, sides.mapping, self.instant,
                            triggers=self.triggers,
                            related=tuple(own + fkparents.describe(
                                self._control(), self.fk_children, self.names.shadow)))

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

    # Set by preflight: every later stage may rely on them.
    def _parsed_alter(self) -> ParsedAlter:
        assert self.parsed_alter is not None
        return self.parsed_alter

    def _source(self) -> TableInfo:
        assert self.source is not None
        return self.source


def migrate(config: MigrationConfig) -> Result:
    """The Python API: run one online ALTER to completion (or raise OnlineDDLError)."""
    return Migration(config).run()

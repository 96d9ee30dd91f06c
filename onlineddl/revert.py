"""`onlineddl revert`: the most recent swap of T undone, with every write made since.

    preflight (the record, every refusal: revertplan.py) -> setup -> [applier from
    right after the swap's RENAME] -> catch-up -> checksum -> (postponed) -> cutover
    -> cleanup

A revert is a run with T as the source and the old table the swap kept as the target.
That table is complete as of the swap, so there is no copy (the watermark is complete
from the start): the applier replays every change to T since the swap onto it,
through the inverse of the swap's column mapping. The cutover is the migration's, with
the old table in the shadow's place and a fresh `_T_old_<stamp>` for the table T is
now; that one is recorded like any old table, so a revert can be reverted too.
The checkpoint `_T_chkpnt` records kind "revert": `migrate --resume` never takes it,
nor `revert --resume` a migration's.
"""

from __future__ import annotations

import dataclasses
import logging
import time

from onlineddl import faults, keys, leftovers, oldtables, revertplan, shadowcheck, sql
from onlineddl.applier import FlushTarget
from onlineddl.checkpoint import Checkpoint, State
from onlineddl.chunker import Watermark
from onlineddl.config import MigrationConfig
from onlineddl.db import Session
from onlineddl.errors import (
    ArtifactsExist,
    DataError,
    OnlineDDLError,
    PreflightFailed,
    ResumeRefused,
    RevertRefused,
    TableChanged,
)
from onlineddl.leftovers import shadow_identity
from onlineddl.preflight import check_privileges, check_server, check_table
from onlineddl.progress import Phase, TerminalBar
from onlineddl.resume import decide
from onlineddl.run import Context, Record, Result, Run, Sides
from onlineddl.table import integer_key, load_table
from onlineddl.throttle import CopyGate, make_throttle
from onlineddl.uniques import key_as_compared, unique_checks

log = logging.getLogger(__name__)


class Revert(Run):
    """One revert. `stages()` is the table of contents."""

    FINAL_ERRORS = (PreflightFailed,)   # refused before anything was changed

    def __init__(self, config: MigrationConfig, *, bar: TerminalBar | None = None) -> None:
        super().__init__(dataclasses.replace(config, kind="revert"), bar=bar)
        self.last_swap: revertplan.LastSwap | None = None   # the swap to revert (preflight)
        self.sides: Sides | None = None            # ... and its tables, checked
        self.resuming: State | None = None         # the checkpoint of a revert to resume
        self.target = ""     # the old table this revert brings back

    def stages(self) -> None:
        """The table of contents (run.Run.run ends it with the result, or the error)."""
        self.connect()
        self.open_controls()
        self.preflight()
        self.startup_hook()
        ctx = self.setup()             # the checkpoint, the applier from the swap
        if not isinstance(ctx, Context):   # a resumed revert found its swap done
            self.finish_after_swap(ctx)
            return
        self.catch_up(ctx)
        self.verify(ctx)
        self.wait_while_postponed(lambda: self.tick(ctx))
        self.catch_up(ctx)
        self.cut_over(ctx)
        self.cleanup(ctx)

    def _explain(self, err: OnlineDDLError) -> OnlineDDLError:
        if isinstance(err, DataError):
            err.hint = (f"a row written to {self.config.table} since the swap cannot be "
                        f"written to {self.target} (a value its column cannot hold, or a "
                        "duplicate under one of its UNIQUE keys); "
                        f"{self.config.table} is unchanged. Change that row, then run "
                        "`onlineddl revert --resume`; or give up with `onlineddl cleanup`")
            return err
        return self._explain_ddl(err)

    def _explain_ddl(self, err: OnlineDDLError) -> OnlineDDLError:
        """The applier met DDL on T before our own swap: T changed after the swap being
        reverted (a plain ALTER, or a later migration that kept no record: --drop-old).
        The revert cannot go on; say so instead of the applier's generic message."""
        ddl = self.applier.ddl if self.applier else None
        if ddl is None or self.phase >= Phase.CUTOVER:
            return err
        return TableChanged(
            f"{self.config.table} was changed after the swap that kept {self.target} (the "
            f"binlog shows: {ddl[:300]}): a later migration that kept no record "
            "(--drop-old), or another session's DDL; a revert cannot replay across it (only "
            "the most recent swap of a table can be reverted)",
            hint=f"`onlineddl cleanup --database {self.db} --table {self.config.table}` "
                 f"discards this revert ({self.config.table} is unchanged; {self.target} "
                 "holds some of the writes made since its swap); migrate back instead")

    # --- stages ----------------------------------------------------------------------

    def preflight(self) -> None:
        """The server, T, and either the checkpoint of a revert to resume or the swap to
        revert with every refusal (revertplan.py). Nothing is created here."""
        self.set_phase(Phase.PREFLIGHT)
        control, flavor = self._control(), self._flavor()
        check_server(control, flavor)
        check_privileges(control, flavor, self.db, self.names)
        check_table(control, load_table(control, self.db, self.config.table))
        revertplan.check_relations(control, self.db, self.config.table)
        self.throttle = make_throttle(self.config.throttling, self.config.dsn, flavor,
                                      self.controls)
        self.gate = CopyGate(self.controls, self.throttle)
        self.throttle.check()
        found = leftovers.survey(control, self.db, self.names)
        if found.state is not None and found.state.kind == "revert":
            if not self.config.resume:
                raise ArtifactsExist(
                    f"an unfinished revert of {self.db}.{self.config.table} left "
                    f"{self.names.checkpoint}",
                    hint="run `onlineddl revert` again with --resume to continue it, or "
                         "`onlineddl cleanup` to discard it")
            self.resuming = found.state
            self.target = revertplan.revert_target(found.state.alter_text)
            self.last_swap = revertplan.record_of(control, self.db, self.config.table,
                                             self.target)
            return
        if self.config.resume and found.state is None and \
                found.ours == (self.names.checkpoint,) and not found.foreign:
            return   # a run died while setting up, nothing else made: setup() starts over
        refusal = leftovers.refusal(found, self.db, self.config.table)
        if refusal is not None:
            raise refusal
        if self.config.resume:
            raise ResumeRefused(
                f"nothing to resume: {self.db} has no revert checkpoint for "
                f"{self.config.table} ({self.names.checkpoint})",
                hint="run `onlineddl revert` without --resume to start one")
        self.last_swap = revertplan.latest(control, flavor, self.db, self.config.table)
        self._load_target()

    def _load_target(self) -> Sides:
        last, control = self._last_swap(), self._control()
        self.target = last.old.name
        self.config = dataclasses.replace(self.config,
                                          alter=revertplan.revert_text(last.old.name))
        self.events.config = self.config
        source = load_table(control, self.db, self.config.table)
        target = load_table(control, self.db, last.old.name)
        check_table(control, target)
        mapping = revertplan.inverse_mapping(source, target, last.swap)
        # The key both tables share (keys.py): a migration may have changed the PK.
        source, target = keys.choose(control, source, target, mapping)
        revertplan.check_unfed(control, target, mapping)
        revertplan.check_fit(self.config.dsn, source, target, mapping)
        # Rows of T the old table's UNIQUE keys would take for one.
        revertplan.check_collisions(control, source, target, mapping)
        log.info("revert: %s.%s goes back to %s (swapped %s UTC, %s)", self.db,
                 self.config.table, last.old.name,
                 f"{last.old.swapped_at:%Y-%m-%d %H:%M:%S}", last.old.alter)
        self.sides = Sides(source, target, mapping)
        return self.sides

    def setup(self) -> Context | Record:
        """The checkpoint (kind "revert"), or with --resume the one found, and the
        applier following T from it. Only the checkpoint when a resumed revert finds
        its swap done."""
        self.set_phase(Phase.SETUP)
        control = self._control()
        checkpoint = Checkpoint(control, self.db, self.names.checkpoint)
        if self.resuming is not None:
            return self._resume(Record(checkpoint, self.resuming))
        if self.last_swap is None:   # --resume after a death while setting up: start over
            log.warning("--resume: the earlier revert died while setting up; starting over")
            checkpoint.drop()
            self.last_swap = revertplan.latest(control, self._flavor(), self.db,
                                               self.config.table)
            self._load_target()
        last = self._last_swap()
        self.names = dataclasses.replace(
            self.names, shadow=last.old.name,
            old=oldtables.choose_name(control, self.db, self.config.table))
        start = revertplan.start_after_swap(control, self._flavor(), self.config, last)
        checkpoint.create()
        self.ledger.record(self.names.checkpoint)
        faults.point("revert_setup")
        self.watermark = Watermark(None, True)   # the target is complete as of the swap
        state = State(alter_text=self.config.alter, phase=Phase.CATCHUP, position=start,
                      copy_complete=True, server=self._flavor().server_identity(control),
                      shadow=shadow_identity(control, self.db, last.old.name),
                      old_table=self.names.old, kind="revert")
        checkpoint.write(state)
        return self.start_applier(Record(checkpoint, state), self._sides())

    def _resume(self, record: Record) -> Context | Record:
        state = record.state
        self.resumed = True
        self.config = dataclasses.replace(self.config, alter=state.alter_text)
        self.events.config = self.config
        self.names = dataclasses.replace(self.names, shadow=self.target,
                                         old=state.old_table)
        # The revert's watermark is complete: nothing is trimmed, and _load_target
        # chooses the key again.
        if decide(self._control(), self._flavor(), self.config, self.names, state,
                  key=lambda shadow: shadow.key).finish:
            return record
        if self.last_swap is None:
            raise ResumeRefused(f"{self.target}, which the revert brings back, is no longer "
                                f"recorded as an old table of {self.config.table}",
                                hint="run `onlineddl cleanup` to discard the revert")
        revertplan.check_record(self._control(), self._flavor(), self.db, self.config.table,
                                self.last_swap.old, "", from_swap=False)
        sides = self._load_target()
        self.watermark = Watermark(None, True)
        state.cutover_started, state.drain = False, None
        return self.start_applier(record, sides)

    def start_applier(self, record: Record, sides: Sides) -> Context:
        source, target, mapping = sides.source, sides.target, sides.mapping
        checks = unique_checks(self._control(), source, target, mapping)
        exprs = tuple(mapping.source_exprs(sql.qualified(self.db, source.name)))
        flush = FlushTarget(self.db, source.name, target.name, exprs, mapping.target_cols(),
                            target.key, source.key, other_unique=bool(checks),
                            integer_key=integer_key(source, target), unique_checks=checks,
                            keep_unfed=bool(mapping.added),
                            key_as_compared=key_as_compared(source, target))
        return self.follow(record, sides, flush)

    def _before_swap(self, ctx: Context, session: Session) -> None:
        """Under the write block: the counter, and T's relations checked again. A
        trigger or a child's foreign key another session created since preflight would
        follow T to its old-table name at the RENAME and be lost to the new T; their
        DDL waits for T's lock now, so this look is final."""
        super()._before_swap(ctx, session)
        try:
            revertplan.check_relations(session, self.db, self.config.table)
        except RevertRefused as err:
            raise TableChanged(f"{err.message} (created during the revert)",
                               hint=f"{self.config.table} is unchanged; `onlineddl cleanup` "
                                    "discards the revert") from err
        shadowcheck.check_source(session, self.db, ctx.source)   # DDL with sql_log_bin=0
        revertplan.check_target_unchanged(session, self.db, self.config.table,
                                          self._last_swap())

    def cleanup(self, record: Record) -> None:
        """Record the table T was as this revert's old table (with the swap, so it can
        be reverted), forget the record of the one brought back (it is T now), then
        drop the checkpoint: a crash in between is finished by --resume."""
        self.set_phase(Phase.CLEANUP)
        control, state = self._control(), record.state
        self._drop_guards()
        recorded = {o.name: o for o in oldtables.recorded(control, self.db, self.config.table)}
        if self.names.old not in recorded:
            # The record of the table brought back is forgotten only after this one is
            # written, so a resumed finish still has it here.
            pairs = tuple((t, o) for o, t in self._last_swap().swap.pairs)
            swap = oldtables.swap_record(control, self.db, self.names, "revert", state.drain,
                                         pairs, state.server)
            oldtables.register(control, self.db, self.names, state.alter_text, swap)
        faults.point("revert_recorded")
        oldtables.forget(control, self.db, self.target)
        record.checkpoint.drop()
        self.set_phase(Phase.DONE)
        log.info("done: %s.%s is back to %s's schema, with every write since its swap; the "
                 "table it was is kept as %s (`onlineddl revert` again brings it back)",
                 self.db, self.config.table, self.target, self.names.old)

    def succeed(self, started: float) -> Result:
        self.events.fire("success")
        return Result(self.db, self.config.table, 0, self.rows_checked,
                      time.monotonic() - started, self.cutover_attempts, self.block_seconds,
                      self.resumed, old_table=self.names.old)

    # Set by preflight (or setup, starting over): the stages after it rely on them.
    def _last_swap(self) -> revertplan.LastSwap:
        assert self.last_swap is not None
        return self.last_swap

    def _sides(self) -> Sides:
        assert self.sides is not None
        return self.sides


def revert(config: MigrationConfig) -> Result:
    """The Python API: revert the most recent swap of T (or raise OnlineDDLError)."""
    return Revert(config).run()

"""The resume policy: what a checkpoint allows a re-run to do, decided from the server.

    swapped (recorded)                     -> finish: clean up, no rename
    cutover started, the server shows the swap
                                           -> confirm the drain from the binlog, finish
    otherwise                              -> continue: refuse if unsafe (different
                                              ALTER, too old, another server, shadow
                                              missing or not the one this run created,
                                              binlog purged), then trim the shadow above
                                              the watermark and carry on from there

With --resume=auto a run without a checkpoint also asks `done_before`: did an earlier
run of this very ALTER already finish on this table (then there is nothing to do and
the re-run exits 0, as a scheduler retrying blindly needs)?
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from onlineddl import foreignkeys, sql
from onlineddl.binlog import SchemaChange, TableShape, first_statement, open_reader
from onlineddl.checkpoint import State, alter_hash
from onlineddl.config import MigrationConfig
from onlineddl.cutover import drop_guards, is_our_rename, normalized_shape, swap_state
from onlineddl.db import Session
from onlineddl.errors import OnlineDDLError, ReplicationError, ResumeRefused, TableChanged
from onlineddl.flavor import BinlogPosition, MySQL
from onlineddl.leftovers import identity_matches, shadow_identity
from onlineddl.table import Artifacts, TableInfo, load_table

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Decision:
    finish: bool     # the swap is done: only cleanup remains


def decide(session: Session, flavor: MySQL, config: MigrationConfig, names: Artifacts,
           state: State, key: Callable[[TableInfo], tuple[str, ...]]) -> Decision:
    """Check the checkpoint against the server; raise ResumeRefused when unsafe. `key`
    gives the run's key of the shadow (keys.py), in which the watermark is."""
    _refuse_unsafe(config, state)
    _refuse_other_server(session, flavor, state)
    if state.swapped:
        log.info("--resume: the checkpoint records the swap; finishing")
        return Decision(finish=True)
    db = config.database
    if not names.old:
        raise ResumeRefused("the checkpoint does not name the run's old table",
                            hint="run `onlineddl cleanup`, then start again without --resume")
    if state.cutover_started and swap_state(session, db, names).swapped:
        log.info("--resume: the swap happened (the checkpoint had not recorded it yet)")
        confirm_drain(session, flavor, config, names, state)
        return Decision(finish=True)
    tables = _tables(session, db)
    if names.old in tables:
        raise ResumeRefused(
            f"{db}.{names.old} exists, but this run's swap has not happened: that is the "
            "name the swap gives the original table, and another table took it",
            hint=f"rename or drop {names.old} yourself (check first what it holds), then "
                 "run again with --resume")
    if names.shadow not in tables:
        raise ResumeRefused(f"the shadow table {names.shadow} is missing",
                            hint="run `onlineddl cleanup`, then start again without --resume")
    if not identity_matches(state.shadow, shadow_identity(session, db, names.shadow)):
        raise ResumeRefused(
            f"{db}.{names.shadow} is not the shadow table this run created (it was dropped "
            "and another table took its name, or it was rebuilt): onlineddl will not "
            "continue into it",
            hint=f"rename or drop {names.shadow} yourself, run `onlineddl cleanup`, then "
                 "start again without --resume")
    if not flavor.position_available(session, state.position):
        raise ResumeRefused(
            f"the binlog at the checkpoint ({state.position}) was purged from the server",
            hint="run `onlineddl cleanup` and start again; keep binlogs longer "
                 "(binlog_expire_logs_seconds) than a run may be down")
    drop_guards(session, db, names)
    trim_shadow(session, db, names, state, key)
    log.info("--resume: continuing from watermark %s, binlog %s", state.low_watermark,
             state.position)
    return Decision(finish=False)


def _refuse_unsafe(config: MigrationConfig, state: State) -> None:
    if state.kind != config.kind:
        cleanup = f"onlineddl cleanup --database {config.database} --table {config.table}"
        raise ResumeRefused(
            f"the checkpoint of {config.table} belongs to an unfinished `{state.kind}` "
            f"({state.alter_text!r}), not to a `{config.kind}`",
            hint=f"finish it with `onlineddl {state.kind} ... --resume`, or discard it "
                 f"with `{cleanup}`; then run this command")
    if alter_hash(state.alter_text) != alter_hash(config.alter):
        cleanup = f"onlineddl cleanup --database {config.database} --table {config.table}"
        raise ResumeRefused(
            f"the ALTER differs from the one the checkpoint was made for: {state.alter_text!r} "
            f"(an unfinished run of that ALTER owns {config.table}'s checkpoint)",
            hint="finish that run (the same command with its --alter and --resume), or "
                 f"discard it with `{cleanup}`; then run this ALTER. Retrying this "
                 "command does not help")
    if state.age_seconds > config.max_checkpoint_age:
        raise ResumeRefused(
            f"the checkpoint is {state.age_seconds / 3600:.1f}h old, older than "
            f"--max-checkpoint-age ({config.max_checkpoint_age / 3600:.1f}h)",
            hint="run `onlineddl cleanup` and start again, or raise --max-checkpoint-age "
                 "if the binlogs since then are still on the server")


def _refuse_other_server(session: Session, flavor: MySQL, state: State) -> None:
    """A checkpoint's binlog position (file:pos, or a GTID list) means something only on
    the server that wrote it; after a failover the new primary's binlog differs, and
    its copies of the shadow and checkpoint came through replication. Always refused:
    start again on the new primary."""
    here = flavor.server_identity(session)
    if state.server and state.server != here:
        raise ResumeRefused(
            f"the checkpoint was written on another server ({state.server}); this server "
            f"is {here} (a failover, or a restored copy?): its binlog position means "
            "nothing here", hint="run `onlineddl cleanup` on this server and start the "
                                 "migration again")


def _tables(session: Session, database: str) -> set[str]:
    rows = session.query("SELECT TABLE_NAME FROM information_schema.TABLES "
                         "WHERE TABLE_SCHEMA = %s", (database,))
    return {str(r[0]) for r in rows}


def trim_shadow(session: Session, database: str, names: Artifacts, state: State,
                key: Callable[[TableInfo], tuple[str, ...]]) -> None:
    """Rows above the checkpoint's watermark may be stale: remove them; they are copied
    again (a deferred binlog change to them died with the crashed process). `key` is
    asked in any case: it also gives the resumed run its shadow and key."""
    walked = key(load_table(session, database, names.shadow))
    if state.copy_complete:
        return
    text, params = sql.delete_above(database, names.shadow, walked, state.low_watermark)
    deleted = session.execute(text, params)
    log.info("--resume: removed %d row(s) above the watermark for re-copy", deleted)


def statement_after(session: Session, flavor: MySQL, config: MigrationConfig, old: str,
                    start: BinlogPosition) -> tuple[int, SchemaChange] | None:
    """The first statement naming T in the binlog from `start`, read with the shape T
    had before a swap (its old table's, `old`): the row changes to T before it and the
    statement; None when none shows up within rename_seen_timeout."""
    before = load_table(session, config.database, old)
    shape = TableShape.of(before, name=config.table)
    server_id = config.reader_server_id()
    reader = open_reader(config.dsn, flavor, shape, start, server_id)
    try:
        return first_statement(reader, timeout=config.tuning.rename_seen_timeout)
    finally:
        reader.close()


def confirm_drain(session: Session, flavor: MySQL, config: MigrationConfig, names: Artifacts,
                  state: State) -> None:
    """The swap only happens after the drain completed (see cutover.py); confirm from
    the binlog that the first statement on T after the drain position is our RENAME,
    with no change to T before it, i.e. every write before the swap reached the new
    table. Anything else, or no answer, stops the run: never finish unconfirmed."""
    if state.drain is None:
        raise ResumeRefused("the checkpoint says cutover started but has no drain position",
                            hint="inspect the tables by hand; please report this")
    found = statement_after(session, flavor, config, names.old, state.drain)
    where = (f"mysqlbinlog from {state.drain} must show no row event for "
             f"{config.database}.{config.table} before the RENAME")
    if found is None:
        raise ReplicationError(
            f"--resume: the swap happened, but the RENAME was not found in the binlog "
            f"after the drain position {state.drain} within "
            f"{config.tuning.rename_seen_timeout:.0f}s, so it is not confirmed that every write "
            f"before the swap reached the new {config.table}",
            hint=f"run --resume again (the binlog may be slow to read), or check by hand: "
                 f"{where}; then `onlineddl cleanup`")
    late, ddl = found[0], found[1].query
    if not is_our_rename(ddl, names):
        raise TableChanged(
            f"another session changed the original {config.table} between the drain "
            f"and the swap: the binlog shows {ddl[:300]!r} before our RENAME. "
            f"{config.table} is the new table without that change; the original, with "
            f"it, is {names.old}",
            hint=f"compare SHOW CREATE TABLE of {config.table} and {names.old}, apply that "
                 f"change to {config.table} again if still wanted; {where}")
    if late:
        raise ReplicationError(
            f"{late} change(s) to {config.table} were written after the drain position "
            f"{state.drain} and before the swap; they are in {names.old}",
            hint="copy those rows by hand; please report this with the log")
    log.info("--resume: confirmed from the binlog: every change before the swap was "
             "drained (drain position %s)", state.drain)



def done_before(session: Session, database: str, names: Artifacts, clauses: str) -> bool:
    """Did an earlier run of this ALTER finish on T? `names.shadow` is an empty copy of
    `_T_old`'s definition (CREATE TABLE ... LIKE, as a run builds its shadow from T):
    apply the ALTER to it and compare SHOW CREATE TABLE with T's, table name and
    AUTO_INCREMENT counter aside. Equal: T has exactly the schema this ALTER gives the
    original the earlier run kept. When the server refuses the ALTER there, it cannot
    tell: False (the caller refuses as for any `_T_old` in the way)."""
    try:
        if clauses:   # [foreign keys] "" when the ALTER only drops foreign keys
            session.execute_as_client(sql.alter_table(database, names.shadow, clauses),
                                      database)
    except OnlineDDLError as err:
        log.warning("--resume=auto: cannot tell whether %s was already migrated by this "
                    "ALTER: the server refused it on a copy of %s's definition (%s)",
                    names.table, names.old, err.message)
        return False
    same = _schema(session, database, names.shadow) == _schema(session, database, names.table)
    if not same:
        log.info("--resume=auto: %s exists, but %s does not have the schema this ALTER "
                 "gives it: not a finished run of this ALTER", names.old, names.table)
    return same


def _schema(session: Session, database: str, table: str) -> str:
    row = session.query_one(f"SHOW CREATE TABLE {sql.qualified(database, table)}")
    assert row is not None
    # [foreign keys] the old table a run kept has none (foreignkeys.finish drops them)
    return foreignkeys.without_foreign_keys(normalized_shape(str(row[1])))

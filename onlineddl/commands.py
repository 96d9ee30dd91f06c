"""The `cleanup` and `status` commands, as functions the CLI and Python callers share."""

from __future__ import annotations

import datetime
import json
from typing import Any

from onlineddl import fkparents, ledger, leftovers, oldtables, revertplan, triggers
from onlineddl.checkpoint import Checkpoint, State
from onlineddl.config import Dsn
from onlineddl.cutover import swap_state
from onlineddl.db import Session
from onlineddl.errors import ArtifactsExist, OnlineDDLError, UsageError
from onlineddl.flavor import detect
from onlineddl.runlock import RunnerLock
from onlineddl.table import Artifacts, present_artifacts, resolve_names


def cleanup(dsn: Dsn, database: str, table: str, *, drop_old: bool = False,
            old: bool = False, older_than: float | None = None) -> list[str]:
    """Remove what a dead run left: the shadow, the checkpoint and cutover guards, and
    only those carrying onlineddl's mark (leftovers.py). Tables named like them that
    are not onlineddl's are left alone and named (ArtifactsExist, exit 14).

    Refuses while a runner holds the table. Never touches the table itself. With `old`
    (or `drop_old`), also the old tables successful runs kept and recorded
    (oldtables.py; only those swapped more than `older_than` seconds ago when given),
    and only while T exists; with `drop_old` also `_T_old`, where versions before
    per-run old tables kept the original. Returns what it did, one line each."""
    if older_than is not None and not (old or drop_old):
        raise UsageError("--older-than goes with --old", hint="add --old")
    session = Session(dsn, name="cleanup")
    try:
        database, table = resolve_names(session, database, table, must_exist=False)
        lock = RunnerLock(dsn, database, table)
        lock.acquire(0)
        try:
            return _cleanup(session, database, table, drop_old, old or drop_old,
                            older_than)
        finally:
            lock.release()
    finally:
        session.close()


def _cleanup(session: Session, database: str, table: str, drop_old: bool, old: bool,
             older_than: float | None) -> list[str]:
    names = Artifacts.for_table(table)
    found = leftovers.survey(session, database, names)
    done: list[str] = []
    if found.state is not None:   # before the checkpoint (which records them) goes
        done += _repair_parents(session, database, names, found.state)   # [fk parents]
        done += _repair_triggers(session, database, names, found.state)
    for name in found.ours:
        ledger.drop(session, database, name, must_exist=True)
        done.append(f"dropped {database}.{name}")
    if found.legacy_old:
        done.append(_legacy_old_table(session, database, names, drop_old))
    if old:
        done += oldtables.drop_expired(session, database, table, older_than) or \
            [f"no recorded old tables of {database}.{table} to drop"]
    if found.foreign:
        raise ArtifactsExist(
            f"left alone {', '.join(found.foreign)} in {database}: named like onlineddl's "
            f"work tables for {table} but not made by onlineddl (no onlineddl mark; a "
            "shadow table counts only with the checkpoint of the run that created it)"
            + (f"; {'; '.join(done)}" if done else ""),
            hint="if they are yours, keep them and rename them before migrating this "
                 "table; otherwise drop them yourself once sure they hold nothing you need")
    return done or [f"nothing to clean up for {database}.{table}"]


def _repair_parents(session: Session, database: str, names: Artifacts,
                    state: State) -> list[str]:
    """[fk parents] A run killed while re-pointing the children's foreign keys: back to
    T (unswapped) or renamed back (swapped); the guards and the marker table dropped."""
    if not state.old_table:
        return []
    names = names.with_old(state.old_table)
    return fkparents.cleanup(session, database, names,
                             swap_state(session, database, names).swapped)


def _repair_triggers(session: Session, database: str, names: Artifacts,
                     state: State) -> list[str]:
    """A run killed while carrying T's triggers left a guard that fails writes: put
    the recorded triggers back on T (unswapped), or drop the guard from the old table."""
    recorded = triggers.decode(state.triggers)
    if not state.old_table:
        return []
    names = names.with_old(state.old_table)
    swapped = swap_state(session, database, names).swapped
    if not triggers.repair(session, database, names, recorded, swapped):
        return []
    where = names.old if swapped else names.table
    return [f"repaired the triggers of {database}.{names.table}: dropped the cutover guard "
            f"from {where}" + ("" if swapped else
                                f"; {', '.join(t.name for t in recorded)} are back on it")]


def _legacy_old_table(session: Session, database: str, names: Artifacts,
                      drop_old: bool) -> str:
    legacy = names.legacy_old
    old = f"{database}.{legacy}"
    if not drop_old:
        return (f"kept {old}: the original table kept by an onlineddl version before "
                "per-run old tables (or a table of yours with that name); it does not "
                "block migrations: drop it with --drop-old when you no longer need it")
    if names.table not in present_artifacts(session, database, names):
        raise ArtifactsExist(f"kept {old}: {database}.{names.table} does not exist, so "
                             f"{legacy} may be the only copy of its data",
                             hint=f"rename {legacy} back to {names.table} yourself")
    ledger.drop(session, database, legacy, must_exist=True)
    return f"dropped {old} (--drop-old)"


def status(dsn: Dsn, database: str, table: str, as_json: bool = False) -> str:
    """The state of a running or dead run, read from the server."""
    session = Session(dsn, name="status")
    try:
        database, table = resolve_names(session, database, table, must_exist=False)
        info = _status_info(session, database, table, Artifacts.for_table(table))
    finally:
        session.close()
    text = info.pop("old_tables_text")
    if as_json:
        return json.dumps(info, default=str, indent=2)
    lines = [f"{k}: {v}" for k, v in info.items() if k != "old_tables"]
    lines.append(f"old_tables: {len(text)}")
    lines += [f"  {line}" for line in text]
    return "\n".join(lines)


def _status_info(session: Session, database: str, table: str, names: Artifacts
                 ) -> dict[str, Any]:
    lock = RunnerLock(session.dsn, database, table)
    holder = session.scalar("SELECT IS_USED_LOCK(%s)", (lock.name,))
    state = Checkpoint(session, database, names.checkpoint).read()
    info: dict[str, Any] = {
        "table": f"{database}.{table}",
        "running": holder is not None,
        "lock_holder_connection": holder,
        "lock_holder": _describe_connection(session, holder),
        "artifacts": sorted(n for n in present_artifacts(session, database, names)
                            if n != names.table),
    }
    olds = oldtables.recorded(session, database, table)
    revertible = _revertible(session, database, table, olds)
    info["old_tables"] = [
        {"name": o.name, "swapped_at": o.swapped_at, "alter": o.alter,
         "size_bytes": o.size_bytes, "exists": o.exists, "recorded_table": o.ours,
         "kind": o.swap.kind if o.swap else None,
         "revert": revertible.get(o.name, "no: only the most recent swap can be reverted")}
        for o in olds]
    info["old_tables_text"] = [
        f"{oldtables.describe(o)}\n    revert: "
        f"{revertible.get(o.name, 'no: only the most recent swap can be reverted')}"
        for o in olds]
    if state is None:
        info["checkpoint"] = None
        return info
    info.update({
        "phase": state.phase.text, "alter": state.alter_text, "runner": state.runner,
        "rows_copied": state.rows_copied, "copy_complete": state.copy_complete,
        "low_watermark": state.low_watermark, "binlog_position": str(state.position),
        "checksum": state.checksum_state or "-", "cutover_started": state.cutover_started,
        "drain_position": str(state.drain) if state.drain else None,
        "swapped": state.swapped, "old_table": state.old_table, "kind": state.kind,
        "started_at": state.started_at,
        "updated_at": state.updated_at,
        "checkpoint_age_seconds": round(state.age_seconds, 1),
    })
    return info


def _revertible(session: Session, database: str, table: str,
                olds: list[oldtables.OldTable]) -> dict[str, str]:
    """Whether `onlineddl revert` can bring the most recent old table back now, and
    until about when the server keeps the binlog it needs (its own expiry; a manual
    PURGE or a full disk can end that sooner)."""
    if not olds:
        return {}
    latest = olds[-1]
    flavor = detect(str(session.scalar("SELECT VERSION()")))
    try:
        revertplan.check_record(session, flavor, database, table, latest, "")
    except OnlineDDLError as err:
        return {latest.name: f"no: {err.message}"}
    files = flavor.binlog_files(session)
    expiry = flavor.binlog_expiry_seconds(session)
    oldest = f"oldest binlog file on the server {files[0]}" if files else "no binlog files"
    if not expiry:
        until = "the server never purges binlogs by itself (binlog_expire_logs_seconds=0)"
    else:
        assert latest.swap is not None   # check_record refuses a record without one
        end = latest.swapped_at + datetime.timedelta(seconds=expiry)
        until = (f"until about {end:%Y-%m-%d %H:%M:%S} UTC, when the server's binlog expiry "
                 f"({expiry:.0f}s) may purge {latest.swap.position.file}")
    return {latest.name: f"yes ({oldest}; {until}; sooner if the binlogs are purged by hand)"}


def _describe_connection(session: Session, conn_id: Any) -> str | None:
    """Where the runner lock's connection comes from (the client's host:port)."""
    if conn_id is None:
        return None
    row = session.query_one("SELECT HOST FROM information_schema.PROCESSLIST WHERE ID = %s",
                            (conn_id,))
    return f"connection {conn_id} from {row[0]}" if row else f"connection {conn_id}"

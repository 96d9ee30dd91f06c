"""The `cleanup` and `status` commands, as functions the CLI and Python callers share."""

from __future__ import annotations

import json
from typing import Any

from onlineddl import sql
from onlineddl.checkpoint import Checkpoint
from onlineddl.config import Dsn
from onlineddl.cutover import SENTRY_COMMENT
from onlineddl.db import Session
from onlineddl.runlock import RunnerLock
from onlineddl.table import Artifacts, present_artifacts


def cleanup(dsn: Dsn, database: str, table: str) -> list[str]:
    """Remove the shadow, the checkpoint and a cutover sentry of a dead run.

    Refuses while a runner holds the table. Never touches the table itself, nor a real
    `_T_old` (after a swap that is the original data; drop it yourself when sure)."""
    lock = RunnerLock(dsn, database, table)
    lock.acquire(0)
    names = Artifacts.for_table(table)
    session = Session(dsn, name="cleanup")
    done: list[str] = []
    try:
        present = _present(session, database, names)
        for name in (names.shadow, names.checkpoint):
            if name in present:
                session.execute(f"DROP TABLE {sql.qualified(database, name)}")
                done.append(f"dropped {database}.{name}")
        for name in (names.sentry, names.swap):
            if present.get(name) == SENTRY_COMMENT:
                session.execute(f"DROP TABLE {sql.qualified(database, name)}")
                done.append(f"dropped cutover guard {database}.{name}")
        if names.old in present:
            done.append(f"kept {database}.{names.old} (the original table of an earlier "
                        "swap): drop it when you no longer need it")
        if not done:
            done.append(f"nothing to clean up for {database}.{table}")
    finally:
        session.close()
        lock.release()
    return done


def _present(session: Session, database: str, names: Artifacts) -> dict[str, str]:
    found = present_artifacts(session, database, names)
    found.pop(names.table, None)
    return found


def status(dsn: Dsn, database: str, table: str, as_json: bool = False) -> str:
    """The state of a running or dead run, read from the server."""
    names = Artifacts.for_table(table)
    session = Session(dsn, name="status")
    try:
        info = _status_info(session, database, table, names)
    finally:
        session.close()
    if as_json:
        return json.dumps(info, default=str, indent=2)
    return "\n".join(f"{k}: {v}" for k, v in info.items())


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
        "artifacts": sorted(_present(session, database, names)),
    }
    if state is None:
        info["checkpoint"] = None
        return info
    info.update({
        "phase": state.phase, "alter": state.alter_text, "runner": state.runner,
        "rows_copied": state.rows_copied, "copy_complete": state.copy_complete,
        "low_watermark": state.low_watermark, "binlog_position": str(state.position),
        "checksum": state.checksum_state or "-", "cutover_started": state.cutover_started,
        "drain_position": str(state.drain) if state.drain else None,
        "swapped": state.swapped, "started_at": state.started_at,
        "updated_at": state.updated_at,
        "checkpoint_age_seconds": round(state.age_seconds, 1),
    })
    return info


def _describe_connection(session: Session, conn_id: Any) -> str | None:
    """Where the runner lock's connection comes from (the client's host:port)."""
    if conn_id is None:
        return None
    row = session.query_one("SELECT HOST FROM information_schema.PROCESSLIST WHERE ID = %s",
                            (conn_id,))
    return f"connection {conn_id} from {row[0]}" if row else f"connection {conn_id}"

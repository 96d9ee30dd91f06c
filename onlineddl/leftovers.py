"""Which tables named like T's artifacts are onlineddl's own, and what to say about them.

A table is onlineddl's only when it carries onlineddl's mark; anything else under one of
those names is a user's table and is never dropped, adopted or resumed from:

- the checkpoint `_T_chkpnt`: its COMMENT (checkpoint.MARK);
- the cutover guards: their COMMENT (cutover.SENTRY_COMMENT);
- the shadow `_T_new`: it cannot carry a comment (it becomes T, and a plain ALTER would
  not have left one), so our checkpoint records what identifies it (shadow_identity)
  and a shadow without a matching checkpoint is not ours;
- old tables (`_T_old_<stamp>`, the originals successful runs keep) are not leftovers:
  they never block a run; oldtables.py records and recognises them. `_T_old`, where
  earlier versions kept the original, carries no mark either; it no longer blocks a run
  and is dropped only when the operator asks (`cleanup --drop-old`).
"""

from __future__ import annotations

import datetime
import hashlib
from dataclasses import dataclass

from onlineddl.checkpoint import MARK, Checkpoint, State
from onlineddl.cutover import SENTRY_COMMENT
from onlineddl.db import Session
from onlineddl.errors import ArtifactsExist
from onlineddl.sql import qualified
from onlineddl.table import Artifacts, present_artifacts

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


def shadow_identity(session: Session, database: str, table: str) -> str:
    """`<CREATE_TIME> <hash of the column list>` of a table, "" when it does not exist.

    Survives a restart (both live in the data dictionary). The CREATE_TIME may only move
    forward afterwards: on MariaDB any ALTER of the shadow (our own AUTO_INCREMENT carry
    at cutover) sets it anew; the columns do not change. A user's table matches only if
    it was created after our shadow with exactly the new table's columns."""
    created = session.scalar(
        "SELECT CREATE_TIME FROM information_schema.TABLES "
        "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s", (database, table))
    if created is None:
        return ""
    rows = session.query(
        "SELECT COLUMN_NAME, COLUMN_TYPE FROM information_schema.COLUMNS "
        "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION",
        (database, table))
    columns = "\n".join(f"{r[0]} {r[1]}" for r in rows)
    digest = hashlib.sha1(columns.encode("utf-8")).hexdigest()[:20]
    return f"{created:{TIME_FORMAT}} {digest}"


def identity_matches(recorded: str, current: str) -> bool:
    """Is the table with identity `current` the shadow recorded as `recorded`?"""
    if not recorded or not current:
        return False
    (rec_date, rec_time, rec_cols), (cur_date, cur_time, cur_cols) = (
        recorded.split(" "), current.split(" "))
    return rec_cols == cur_cols and f"{cur_date} {cur_time}" >= f"{rec_date} {rec_time}"


@dataclass(frozen=True)
class Survey:
    ours: tuple[str, ...]      # onlineddl's artifacts (drop order: shadow, guards, checkpoint)
    foreign: tuple[str, ...]   # named like an artifact, without onlineddl's mark
    legacy_old: bool           # `_T_old` (kept by an earlier onlineddl version) exists
    checkpoint: bool           # our checkpoint exists
    state: State | None        # its state (None: none, or the run died while setting up)


def survey(session: Session, database: str, names: Artifacts) -> Survey:
    present = present_artifacts(session, database, names)
    checkpoint = present.get(names.checkpoint) == MARK
    state = Checkpoint(session, database, names.checkpoint).read() if checkpoint else None
    ours: list[str] = []
    foreign: list[str] = []
    if names.shadow in present:
        mine = checkpoint and _shadow_is_ours(session, database, names, state)
        (ours if mine else foreign).append(names.shadow)
    for guard in (names.sentry, names.swap):
        if guard in present:
            (ours if present[guard] == SENTRY_COMMENT else foreign).append(guard)
    if names.checkpoint in present:
        (ours if checkpoint else foreign).append(names.checkpoint)
    return Survey(tuple(ours), tuple(foreign), names.legacy_old in present, checkpoint, state)


def _shadow_is_ours(session: Session, database: str, names: Artifacts,
                    state: State | None) -> bool:
    if state is not None and state.kind != "migrate":
        return False   # a revert creates no `_T_new` (its target is an old table)
    current = shadow_identity(session, database, names.shadow)
    if state is not None:
        return identity_matches(state.shadow, current)
    return _left_by_setup(session, database, names)


def _left_by_setup(session: Session, database: str, names: Artifacts) -> bool:
    """Our checkpoint has no state yet: the run died between creating it and writing its
    first row, i.e. while creating the shadow. A run creates the checkpoint first and
    refuses to start while a `_T_new` exists, so the shadow is that run's if it was
    created at or after the checkpoint and holds no row (nothing is lost either way)."""
    times = {str(r[0]): r[1] for r in session.query(
        "SELECT TABLE_NAME, CREATE_TIME FROM information_schema.TABLES "
        "WHERE TABLE_SCHEMA = %s AND TABLE_NAME IN (%s, %s)",
        (database, names.shadow, names.checkpoint))}
    shadow, checkpoint = times.get(names.shadow), times.get(names.checkpoint)
    if not (isinstance(shadow, datetime.datetime) and isinstance(checkpoint, datetime.datetime)):
        return False
    empty = session.query_one(f"SELECT 1 FROM {qualified(database, names.shadow)} LIMIT 1")
    return shadow >= checkpoint and empty is None


def refusal(found: Survey, database: str, table: str) -> ArtifactsExist | None:
    """Why a fresh run cannot start here, and what to do; None when it can."""
    cleanup = f"onlineddl cleanup --database {database} --table {table}"
    if found.checkpoint:
        left = ", ".join(found.ours)
        kind = found.state.kind if found.state else ""
        again = f"run `onlineddl {kind}` again" if kind else "run again"
        return ArtifactsExist(
            f"an earlier run on {database}.{table} left {left}{_foreign_note(found)}"
            + (f" (an unfinished `{kind}`)" if kind not in ("", "migrate") else ""),
            hint=f"{again} with --resume to continue it, or `{cleanup}` to discard it")
    if found.foreign:
        return ArtifactsExist(
            f"{database} has {', '.join(found.foreign)}, named like onlineddl's work tables "
            f"for {table} but not made by onlineddl (no onlineddl mark; a shadow table "
            "counts only with the checkpoint of the run that created it)",
            hint="onlineddl needs these names: rename or drop those tables yourself (check "
                 "first that they hold nothing you need), then run again")
    if found.ours:
        return ArtifactsExist(
            f"an earlier run on {database}.{table} left {', '.join(found.ours)}",
            hint=f"`{cleanup}` removes them")
    return None


def _foreign_note(found: Survey) -> str:
    if not found.foreign:
        return ""
    return (f"; {', '.join(found.foreign)} also exist(s) but carry no onlineddl mark "
            "(not onlineddl's; `onlineddl cleanup` leaves them alone)")

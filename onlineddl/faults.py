"""Named fault points: where tests stop, kill or interleave with a run at exact moments.

Two ways to use a point:
- `ONLINEDDL_FAULT=name` (optionally `name:N`, the N-th time the point is reached)
  makes the process exit at once with status 137, as if killed by SIGKILL. Crash tests
  run `onlineddl migrate` as a subprocess with it set.
- `register(name, callback)` runs a callback there, in-process; concurrency tests use it
  to commit writes at exactly the moment under test instead of sleeping and hoping.

Every name is in POINTS. A name outside it is refused (ValueError from point() and
register(); an ONLINEDDL_FAULT naming one ends the process at the first point reached,
exit 2): a misspelt point would otherwise never fire, and a test relying on it would
pass without testing anything.

When neither is set, a point costs two set/dict lookups.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable

KILL_EXIT_CODE = 137
BAD_SPEC_EXIT_CODE = 2
ENV = "ONLINEDDL_FAULT"

# Every point the engine reaches. A new faults.point() call adds its name here
# (tests/unit/test_faults.py checks both directions against the source).
POINTS = frozenset({
    "shadow_created",          # migration: the shadow table exists, no checkpoint yet
    "applier_started",         # migration: binlog applier running, checkpoint written
    "copy_start",              # copier: before the first chunk
    "after_chunk",             # copier: after each chunk
    "after_flush",             # applier: after each flush of the delta map
    "after_checkpoint",        # migration: after each checkpoint write
    "during_checksum_drain",   # applier: checksum drain reached its target (writes held)
    "checksum_chunk",          # checksum: after each compared chunk
    "after_checksum",          # migration: checksum passed, before the cutover
    "cutover_attempt",         # cutover: each attempt, before taking locks
    "cutover_locked",          # cutover: locks held
    "cutover_started",         # cutover: cutover_started checkpointed
    "during_cutover_drain",    # applier: cutover drain reached its target
    "cutover_paused",          # cutover: the applier paused, before the swap's locks
    "before_swap",             # cutover: drained, RENAME not yet issued
    "rename_queued",           # cutover: the RENAME is queued behind our lock
    "after_swap",              # cutover: swapped, the checkpoint does not know yet
    "binlog_savepoint",        # binlog reader: a SAVEPOINT inside a row transaction
    "done_probe",              # --resume=auto: asking whether this ALTER already finished
    "trigger_relock_queued",   # triggers (MariaDB): T WRITE queued behind the drain's lock
    "triggers_guarded",        # triggers: the guard is on T, T still has its triggers
    "triggers_dropped",        # triggers: T has only the guard, the shadow none yet
    "triggers_moved",          # triggers: the shadow has them all, the RENAME not yet run
    "triggers_restoring",      # triggers: putting them back on T, T has only the guard
    "foreign_keys_attached",   # cutover: under the block, T's constraints on the shadow
    "old_foreign_keys_dropped",  # foreignkeys: after the swap, the old table's dropped
    "foreign_keys_renamed",    # foreignkeys: after the swap, T's constraints renamed back
    "revert_setup",            # revert: its checkpoint exists, no state written yet
    "revert_recorded",         # revert: the swapped-out table recorded, the record of
                               # the table brought back not yet forgotten
    "parents_guard_armed",     # fkparents: under the block, the guard on T armed
    "parent_twin_added",       # fkparents: a child has its twin (to the shadow) and original
    "children_repointed",      # fkparents: every child references the shadow only
    "children_locked",         # cutover: the re-pointed children held until the RENAME
    "parent_original_added",   # fkparents: repair: a child has its original and its twin
    "parents_renamed",         # fkparents: after the swap, the children's names back
})

_callbacks: dict[str, Callable[[], None]] = {}
_counts: dict[str, int] = {}
_lock = threading.Lock()


def point(name: str) -> None:
    if name not in POINTS:
        raise ValueError(f"unknown fault point {name!r}; known: {', '.join(sorted(POINTS))}")
    callback = _callbacks.get(name)
    if callback is not None:
        callback()
    spec = os.environ.get(ENV)
    if not spec:
        return
    wanted, _, nth = spec.partition(":")
    if wanted not in POINTS or not (nth or "1").isdigit():
        # A misspelt point would never fire: the crash test would see a clean run.
        sys.stderr.write(f"{ENV}={spec!r} names no fault point (name or name:N; known: "
                         f"{', '.join(sorted(POINTS))})\n")
        sys.stderr.flush()
        os._exit(BAD_SPEC_EXIT_CODE)
    if wanted != name:
        return
    with _lock:
        _counts[name] = _counts.get(name, 0) + 1
        count = _counts[name]
    if count >= int(nth or "1"):
        os._exit(KILL_EXIT_CODE)


def register(name: str, callback: Callable[[], None]) -> None:
    if name not in POINTS:
        raise ValueError(f"unknown fault point {name!r}; known: {', '.join(sorted(POINTS))}")
    _callbacks[name] = callback


def clear() -> None:
    _callbacks.clear()
    _counts.clear()

"""Named fault points: where tests stop, kill or interleave with a run at exact moments.

Two ways to use a point:
- `ONLINEDDL_FAULT=name` (optionally `name:N`, the N-th time the point is reached)
  makes the process exit at once with status 137, as if killed by SIGKILL. Crash tests
  run `onlineddl migrate` as a subprocess with it set.
- `register(name, callback)` runs a callback there, in-process; concurrency tests use it
  to commit writes at exactly the moment under test instead of sleeping and hoping.

When neither is set, a point costs one dict lookup.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

KILL_EXIT_CODE = 137

_callbacks: dict[str, Callable[[], None]] = {}
_counts: dict[str, int] = {}
_lock = threading.Lock()


def point(name: str) -> None:
    callback = _callbacks.get(name)
    if callback is not None:
        callback()
    spec = os.environ.get("ONLINEDDL_FAULT")
    if not spec:
        return
    wanted, _, nth = spec.partition(":")
    if wanted != name:
        return
    with _lock:
        _counts[name] = _counts.get(name, 0) + 1
        count = _counts[name]
    if count >= int(nth or "1"):
        os._exit(KILL_EXIT_CODE)


def register(name: str, callback: Callable[[], None]) -> None:
    _callbacks[name] = callback


def clear() -> None:
    _callbacks.clear()
    _counts.clear()

"""The fault-point registry: POINTS matches the engine's faults.point() calls both ways,
and a name outside it is refused (a misspelt point would let a test pass vacuously)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from onlineddl import faults

PACKAGE = Path(faults.__file__).resolve().parent
CALL = re.compile(r"""faults\.point\(\s*(f?)(["'])(.+?)\2\s*\)""")
PLACEHOLDER = re.compile(r"\{(\w+)\}")


def engine_source() -> str:
    return "\n".join(p.read_text() for p in sorted(PACKAGE.rglob("*.py"))
                     if p.name != "faults.py")


def expansions(template: str, source: str) -> set[str]:
    """An f-string point name with each placeholder replaced by every string value the
    source gives a variable or keyword of that name (`label="x"`, `label: str = "x"`)."""
    names = {template}
    for var in PLACEHOLDER.findall(template):
        values = set(re.findall(rf"""\b{var}(?:\s*:\s*str)?\s*=\s*["'](\w+)["']""", source))
        assert values, f"no value for {{{var}}} in {template!r}"
        names = {n.replace(f"{{{var}}}", v) for n in names for v in values}
    return names


def called_names() -> set[str]:
    source = engine_source()
    found: set[str] = set()
    for is_f, _, text in CALL.findall(source):
        found |= expansions(text, source) if is_f else {text}
    return found


def test_every_call_names_a_registered_point() -> None:
    called = called_names()
    assert "during_checksum_drain" in called and "during_cutover_drain" in called
    assert called - faults.POINTS == set()


def test_every_registered_point_is_reached_somewhere() -> None:
    assert faults.POINTS - called_names() == set()


def test_every_point_call_is_found_by_the_scan() -> None:
    """No faults.point() call with a name the pattern cannot read (a variable, say)."""
    source = engine_source()
    assert source.count("faults.point(") == len(CALL.findall(source))


def test_unknown_names_are_refused_in_process() -> None:
    with pytest.raises(ValueError, match="after_chnk"):
        faults.register("after_chnk", lambda: None)
    with pytest.raises(ValueError, match="after_chnk"):
        faults.point("after_chnk")


def test_callbacks_run_at_their_point_until_cleared() -> None:
    seen: list[str] = []
    faults.register("after_chunk", lambda: seen.append("after_chunk"))
    faults.point("after_chunk")
    faults.point("copy_start")
    faults.clear()
    faults.point("after_chunk")
    assert seen == ["after_chunk"]


def reach(spec: str, *points: str) -> subprocess.CompletedProcess[str]:
    code = "from onlineddl import faults\n" + "".join(
        f"faults.point({p!r})\n" for p in points) + "print('passed')"
    env = dict(os.environ, ONLINEDDL_FAULT=spec)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=60)


@pytest.mark.parametrize("spec", ["after_chnk", "after_chunk:x", "during_drain"])
def test_an_unknown_env_point_fails_the_process_at_the_first_point(spec: str) -> None:
    done = reach(spec, "copy_start", "after_chunk")
    assert done.returncode == faults.BAD_SPEC_EXIT_CODE
    assert "names no fault point" in done.stderr and "passed" not in done.stdout


def test_the_env_point_kills_at_its_nth_hit() -> None:
    assert reach("after_chunk:2", "after_chunk").stdout.strip() == "passed"
    assert reach("after_chunk:2", "after_chunk", "after_chunk").returncode == \
        faults.KILL_EXIT_CODE

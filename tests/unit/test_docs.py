"""The manual stays true where a machine can tell: every relative link resolves, the exit
codes table in the README is the one errors.py defines, and docs/flags.md names every
flag of every subcommand with the parser's default."""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from onlineddl import cli, errors
from onlineddl.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
FLAGS = DOCS / "flags.md"

# Pages another branch writes; a link to one may point nowhere until that branch is
# merged. Remove a name once its page is in the tree.
PENDING: set[str] = set()

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def pages() -> list[Path]:
    return [README, ROOT / "CHANGELOG.md", *sorted(DOCS.glob("*.md"))]


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to -."""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    found = set()
    in_code = False
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            in_code = not in_code
        if not in_code and (m := re.match(r"#{1,6} (.*)", line)):
            found.add(slug(m.group(1)))
    return found


def links(page: Path) -> list[str]:
    text = page.read_text(encoding="utf-8")
    # Indented code blocks are examples, not links.
    prose = "\n".join(line for line in text.splitlines() if not line.startswith("    "))
    return LINK.findall(prose)


@pytest.mark.parametrize("page", pages(), ids=lambda p: p.name)
def test_every_relative_link_resolves(page: Path) -> None:
    broken = []
    for target in links(page):
        if re.match(r"[a-z]+:", target):
            continue  # https:, mailto:
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        rel = dest.relative_to(ROOT).as_posix() if dest.is_relative_to(ROOT) else str(dest)
        if rel in PENDING and not dest.exists():
            continue
        if not dest.exists():
            broken.append(f"{target}: no file {rel}")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading #{anchor} in {rel}")
    assert not broken, f"{page.name}: " + "; ".join(broken)


def test_readme_links_every_page_of_the_manual() -> None:
    linked = {(README.parent / t.partition("#")[0]).resolve() for t in links(README)}
    missing = [p.name for p in DOCS.glob("*.md") if p.resolve() not in linked]
    assert not missing, f"README does not link {missing}"


@pytest.mark.parametrize("page", sorted(DOCS.glob("*.md")), ids=lambda p: p.name)
def test_each_page_starts_with_one_line_saying_what_it_covers(page: Path) -> None:
    lines = page.read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("# ") and lines[1] == ""
    assert lines[2].strip() and not lines[2].startswith("#")


# --- exit codes ---------------------------------------------------------------------

def readme_exit_codes() -> dict[int, str]:
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Exit codes\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| (\d+) \| (.*) \|$", section, flags=re.MULTILINE)
    return {int(code): meaning for code, meaning in rows}


def test_readme_exit_codes_are_the_ones_errors_py_defines() -> None:
    table = readme_exit_codes()
    assert vars(cli)["EXIT_CODES"] is errors.EXIT_CODES  # cli's help prints this table
    assert sorted(table) == sorted(errors.EXIT_CODES)
    for code, meaning in table.items():
        assert meaning.startswith(errors.EXIT_CODES[code]), (
            f"README exit {code} must begin with errors.EXIT_CODES[{code}]: "
            f"{errors.EXIT_CODES[code]!r}, not {meaning!r}")


def test_every_error_class_exit_code_is_in_the_table() -> None:
    def subclasses(cls: type[errors.OnlineDDLError]) -> list[type[errors.OnlineDDLError]]:
        below: list[type[errors.OnlineDDLError]] = cls.__subclasses__()
        return [cls, *(s for sub in below for s in subclasses(sub))]

    codes = {cls.exit_code for cls in subclasses(errors.OnlineDDLError)}
    assert codes <= set(readme_exit_codes()), codes - set(readme_exit_codes())


# --- flags --------------------------------------------------------------------------

@dataclass(frozen=True)
class Row:
    commands: tuple[str, ...]   # "onlineddl" for the top-level parser
    names: tuple[str, ...]      # option strings, or a positional's metavar
    default: str


def parsers() -> dict[str, argparse.ArgumentParser]:
    top = build_parser()
    found = {"onlineddl": top}
    for action in top._actions:
        if isinstance(action, argparse._SubParsersAction):
            found.update(action.choices)
    return found


def flag_rows() -> list[Row]:
    """Rows of every `| flag | default | meaning |` table, with the commands named (in
    backticks) by the heading above it."""
    known = set(parsers())
    rows: list[Row] = []
    commands: tuple[str, ...] = ()
    in_flags = False
    for line in FLAGS.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            commands = tuple(w for w in re.findall(r"`([^`]+)`", line) if w in known)
            in_flags = False
        elif line.startswith("| flag | default |"):
            assert commands, f"a flags table under a heading naming no command: {line}"
            in_flags = True
        elif in_flags and line.startswith("|") and not line.startswith("|---"):
            flag, default = (cell.strip() for cell in line.strip("|").split("|")[:2])
            names = tuple(seg.split()[0] for seg in re.findall(r"`([^`]+)`", flag))
            rows.append(Row(commands, names, default))
        elif not line.startswith("|"):
            in_flags = False
    return rows


def parser_actions(command: str) -> dict[str, argparse.Action]:
    by_name: dict[str, argparse.Action] = {}
    for action in parsers()[command]._actions:
        if isinstance(action, argparse._SubParsersAction):
            continue
        if isinstance(action, argparse._HelpAction) and command != "onlineddl":
            continue  # documented once, on the top-level row
        names = action.option_strings or [str(action.metavar or action.dest)]
        for name in names:
            by_name[name] = action
    return by_name


def check_default(action: argparse.Action, cell: str) -> str | None:
    """None when the cell states the parser's default, else what is wrong."""
    flag = action.nargs == 0
    if cell == "required":
        ok = action.required or (not action.option_strings and action.nargs == "+")
    elif cell == "off":
        ok = flag and (action.default in (False, None, argparse.SUPPRESS)
                       or isinstance(action, argparse._StoreFalseAction))
    elif cell == "on":
        ok = flag and action.default is True and isinstance(action, argparse._StoreTrueAction)
    elif cell == "none":
        ok = not flag and action.default in (None, [])
    elif m := re.fullmatch(r"`([^`]*)`", cell):
        ok = action.default == m.group(1)
    elif re.fullmatch(r"\d+(\.\d+)?", cell):
        ok = (not flag and isinstance(action.default, int | float)
              and float(action.default) == float(cell))
    else:
        return f"default cell {cell!r} is not a number, `value`, off, on, none or required"
    return None if ok else f"documented default {cell!r}, parser default {action.default!r}"


def test_flags_page_covers_every_command() -> None:
    documented = {c for row in flag_rows() for c in row.commands}
    assert documented == set(parsers())


@pytest.mark.parametrize("command", sorted(parsers()))
def test_flags_page_names_every_flag_of(command: str) -> None:
    actions = parser_actions(command)
    rows = [row for row in flag_rows() if command in row.commands]
    documented = [name for row in rows for name in row.names]
    duplicates = {n for n in documented if documented.count(n) > 1}
    assert not duplicates, f"{command}: documented twice: {sorted(duplicates)}"
    assert set(documented) == set(actions), (
        f"{command}: undocumented {sorted(set(actions) - set(documented))}, "
        f"not in the parser {sorted(set(documented) - set(actions))}")


@pytest.mark.parametrize("command", sorted(parsers()))
def test_flags_page_defaults_match_the_parser_for(command: str) -> None:
    actions = parser_actions(command)
    wrong = []
    for row in flag_rows():
        if command not in row.commands:
            continue
        for name in row.names:
            action = actions.get(name)
            if action is not None and (why := check_default(action, row.default)):
                wrong.append(f"{name}: {why}")
    assert not wrong, f"{command}: " + "; ".join(wrong)

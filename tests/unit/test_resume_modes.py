"""--resume's two modes on the command line, and the retry advice a scheduler reads."""

from __future__ import annotations

import pytest

from onlineddl.cli import (
    FINAL_EXIT_CODES,
    RETRY_EXIT_CODES,
    build_parser,
    config_from,
    should_retry,
)
from onlineddl.errors import (
    EXIT_CODES,
    Aborted,
    ConnectionFailed,
    DatabaseError,
    ResumeRefused,
    TableChanged,
    TableVanished,
    UsageError,
)

BASE = ["migrate", "--database", "d", "--table", "t", "--alter", "ADD COLUMN c INT NULL"]


@pytest.mark.parametrize(("flags", "resume", "auto"), [
    ([], False, False),
    (["--resume"], True, False),
    (["--resume=required"], True, False),
    (["--resume=auto"], False, True),
    (["--resume", "auto"], False, True),
])
def test_resume_flag_modes(flags: list[str], resume: bool, auto: bool) -> None:
    config = config_from(build_parser().parse_args([*BASE, *flags]))
    assert (config.resume, config.resume_auto) == (resume, auto)
    config.validate()


def test_resume_flag_rejects_other_values() -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args([*BASE, "--resume=maybe"])


@pytest.mark.parametrize("flag", ["--drop-old", "--allow-instant"])
def test_auto_refuses_options_that_leave_no_old_table(flag: str) -> None:
    config = config_from(build_parser().parse_args([*BASE, "--resume=auto", flag]))
    with pytest.raises(UsageError, match="_T_old"):
        config.validate()


def test_every_exit_code_is_either_retry_or_final() -> None:
    assert RETRY_EXIT_CODES.isdisjoint(FINAL_EXIT_CODES)
    assert set(EXIT_CODES) - {0} == RETRY_EXIT_CODES | FINAL_EXIT_CODES


def test_retry_advice() -> None:
    assert should_retry(ConnectionFailed("down"))
    assert should_retry(Aborted("critical load"))
    assert should_retry(DatabaseError("odd", errno=1234))
    assert not should_retry(ResumeRefused("other ALTER"))
    assert not should_retry(UsageError("bad"))
    # exit 13, but another session's DDL: a person must look.
    assert not should_retry(TableChanged("ddl"))
    assert not should_retry(TableVanished("gone"))


def test_retry_line_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    from onlineddl.cli import advise_retry

    advise_retry(True, "text")
    advise_retry(False, "text")
    assert capsys.readouterr().err.splitlines() == ["onlineddl: retry=yes",
                                                    "onlineddl: retry=no"]

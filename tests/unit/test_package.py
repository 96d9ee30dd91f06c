"""The package's face: one version, printed by --version; typed; licensed."""

from __future__ import annotations

from pathlib import Path

import pytest

import onlineddl
from onlineddl.cli import main

ROOT = Path(__file__).resolve().parents[2]


def test_version_flag_prints_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"onlineddl {onlineddl.__version__}"


def test_one_version_source() -> None:
    text = (ROOT / "pyproject.toml").read_text()
    project = text.split("[project]", 1)[1].split("\n[", 1)[0]
    assert 'dynamic = ["version"]' in project and "\nversion" not in project
    assert 'attr = "onlineddl.__version__"' in text


def test_typed_marker_and_license_are_shipped() -> None:
    assert (ROOT / "onlineddl" / "py.typed").exists()
    assert "MIT License" in (ROOT / "LICENSE").read_text()
    assert 'license = { text = "MIT" }' in (ROOT / "pyproject.toml").read_text()

"""Packaging metadata agrees with itself: one version, the license the metadata names."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

from otpylib._version import __version__

ROOT = Path(__file__).resolve().parents[2]


def test_one_version_everywhere() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" in project["project"]["dynamic"]
    assert project["tool"]["hatch"]["version"]["path"] == "otpylib/_version.py"
    assert re.fullmatch(r"\d+\.\d+\.\d+([ab]\d+)?", __version__)
    assert metadata.version("otpylib") == __version__


def test_license_file_matches_the_metadata() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == {"text": "Apache-2.0"}
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "License :: OSI Approved :: Apache Software License" in project["classifiers"]

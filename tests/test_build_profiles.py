"""The release build ships lean (no debug info, stripped) and profiling keeps a profile of its own,
which the benchmark notes use."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parent.parent


def test_release_has_no_debug_info_and_is_stripped_and_profiling_keeps_both() -> None:
    profiles = tomllib.loads((ROOT / "Cargo.toml").read_text())["profile"]
    assert profiles["release"].get("debug", 0) in (0, False, "none")
    assert profiles["release"].get("strip") in (True, "symbols")
    assert profiles["profiling"]["inherits"] == "release"
    assert profiles["profiling"]["debug"] not in (0, False, "none")
    assert profiles["profiling"].get("strip") in (None, False, "none")
    assert "--profile profiling" in (ROOT / "bench" / "README.md").read_text()

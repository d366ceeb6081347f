"""What a release publishes comes from one place: the version is ``[workspace.package]``'s in
Cargo.toml, which every crate and the Python package inherit (pyproject.toml's version is dynamic:
maturin reads the crate's), and the CHANGELOG has its section."""

from __future__ import annotations

import re
import sys

from conftest import REPO_ROOT

import signalroom

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

CARGO = tomllib.loads((REPO_ROOT / "Cargo.toml").read_text())
VERSION = CARGO["workspace"]["package"]["version"]


def test_every_crate_inherits_the_workspace_version() -> None:
    manifests = [*sorted(REPO_ROOT.glob("crates/*/Cargo.toml")), REPO_ROOT / "bench" / "Cargo.toml"]
    for manifest in manifests:
        package = tomllib.loads(manifest.read_text())["package"]
        assert package["version"] == {"workspace": True}, manifest


def test_the_workspace_requires_its_own_crates_at_this_version() -> None:
    ours = {name: dep for name, dep in CARGO["workspace"]["dependencies"].items() if name.startswith("signalroom-")}
    assert set(ours) == {"signalroom-core", "signalroom-client", "signalroom-server"}
    for name, dep in ours.items():
        assert dep["version"] == VERSION, f"{name}: version {dep['version']!r}, the workspace's is {VERSION!r}"


def test_the_python_package_takes_the_crates_version() -> None:
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    assert "version" not in pyproject["project"]
    assert pyproject["project"]["dynamic"] == ["version"]
    assert signalroom.__version__ == VERSION


def test_the_changelog_has_this_versions_section() -> None:
    changelog = (REPO_ROOT / "CHANGELOG.md").read_text()
    assert re.search(rf"^#+ \[?{re.escape(VERSION)}\]? ", changelog, flags=re.MULTILINE), VERSION

"""The documentation site documents everything it should: every public name of the package in the API
reference, every flag of ``signalroom serve`` on the server's page, every page in the navigation.

The site is ``site/``, built by ``scripts/docs`` (``mkdocs build --strict``, which ``scripts/test``
runs first); these tests build it when it is missing.
"""

from __future__ import annotations

import re
import subprocess
import sys
import zlib
from types import ModuleType

import pytest
from conftest import REPO_ROOT

import signalroom
import signalroom.sync
import signalroom.testing

SITE = REPO_ROOT / "site"
DOCS = REPO_ROOT / "docs"


@pytest.fixture(scope="module")
def inventory() -> set[str]:
    """The names the site documents: mkdocstrings' inventory (Sphinx's objects.inv format)."""
    if not (SITE / "objects.inv").is_file():
        subprocess.run([str(REPO_ROOT / "scripts" / "docs")], check=True, timeout=600)
    header, _, body = (SITE / "objects.inv").read_bytes().partition(b"zlib.\n")
    assert header.startswith(b"# Sphinx inventory version 2"), header
    return {line.split(" ", 1)[0] for line in zlib.decompress(body).decode().splitlines()}


@pytest.mark.parametrize("module", [signalroom, signalroom.sync, signalroom.testing])
def test_every_public_name_is_in_the_api_reference(module: ModuleType, inventory: set[str]) -> None:
    names = module.__all__
    assert names, module
    prefix = module.__name__
    missing = [name for name in names if f"{prefix}.{name}" not in inventory]
    assert not missing, f"not in the API reference: {missing}"


def test_every_method_of_the_session_is_documented(inventory: set[str]) -> None:
    public = [name for name in vars(signalroom.Session) if not name.startswith("_")]
    missing = [name for name in public if f"signalroom.Session.{name}" not in inventory]
    assert not missing, missing


def test_every_serve_flag_is_on_the_servers_page() -> None:
    help_text = subprocess.run(
        [sys.executable, "-m", "signalroom", "serve", "--help"], capture_output=True, text=True, check=True, timeout=30
    ).stdout
    flags = set(re.findall(r"^\s+(?:-\w, )?(--[a-z][a-z0-9-]+)", help_text, flags=re.MULTILINE)) - {"--help"}
    assert len(flags) > 20, help_text
    page = (DOCS / "server" / "index.md").read_text()
    missing = sorted(flag for flag in flags if f"`{flag}`" not in page)
    assert not missing, f"flags of signalroom serve missing from docs/server/index.md: {missing}"


def test_every_page_is_in_the_navigation() -> None:
    nav = (REPO_ROOT / "mkdocs.yml").read_text()
    pages = sorted(str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md"))
    missing = [page for page in pages if f" {page}\n" not in nav]
    assert not missing, missing


def test_the_rust_crates_api_is_in_the_site(inventory: set[str]) -> None:
    for crate in ("signalroom_core", "signalroom_client", "signalroom_server"):
        assert (SITE / "rust" / crate / "index.html").is_file(), crate
    assert 'href="signalroom_client/"' in (SITE / "rust" / "index.html").read_text()


def test_the_site_is_built_from_this_version(inventory: set[str]) -> None:
    assert signalroom.__version__ in (SITE / "changelog" / "index.html").read_text()

"""Fixtures for browser tests: the static test site, headless Chromium, and participant pages."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest

from .cdp import Chromium
from .harness import Participant, StaticSite

OpenParticipant = Callable[[str], Awaitable[Participant]]


@pytest.fixture(scope="session")
def static_site() -> Iterator[StaticSite]:
    """The test page + openvidu-browser bundle, served on 127.0.0.1 for the whole run."""
    site = StaticSite()
    yield site
    site.close()


@pytest.fixture
async def chromium(failed: Callable[[], bool]) -> AsyncIterator[Chromium]:
    """A fresh headless Chromium; on test failure its pages' events and console are printed."""
    browser = await Chromium.launch()
    try:
        yield browser
    finally:
        if failed():
            for page in browser.pages:
                print(f"\n{await page.diagnostics()}")
            print(f"\n--- chromium stderr (tail) ---\n{browser.stderr_tail()}")
        await browser.close()


@pytest.fixture
def open_participant(chromium: Chromium, static_site: StaticSite) -> OpenParticipant:
    """Factory: ``await open_participant("alice")`` opens the test page in a new tab, ready to join."""

    async def open_(name: str) -> Participant:
        page = await chromium.new_page(name)
        await page.goto(static_site.url)
        await page.wait_for("window.harnessReady === true", timeout=10)
        return Participant(page)

    return open_

"""A minimal driver for headless Chromium over the DevTools protocol (CDP).

Chromium is started with ``--remote-debugging-port=0``; the port it picked is read from the
``DevToolsActivePort`` file in its fresh user-data-dir. One websocket to the browser target carries
everything; pages are attached as "flat" sessions (``Target.attachToTarget`` with ``flatten``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

DEFAULT_CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # Several pages run side by side: keep background ones at full speed.
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
)
START_TIMEOUT_S = 30.0
COMMAND_TIMEOUT_S = 15.0
MAX_CONSOLE_LINES = 5000

EventCallback = Callable[[str, dict[str, Any]], None]


class CdpError(Exception):
    """A DevTools command failed or the connection was lost."""


class JsError(Exception):
    """Evaluated JavaScript threw (or its promise rejected)."""


class WaitTimeoutError(AssertionError):
    """A ``Page.wait_for`` condition did not become truthy in time."""


class CdpConnection:
    """A DevTools websocket: numbered commands with replies, and events dispatched per session."""

    def __init__(self, ws: ClientConnection) -> None:
        self._ws = ws
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._listeners: dict[str | None, list[EventCallback]] = {}
        self._closed: BaseException | None = None
        self._reader = asyncio.create_task(self._read_loop())

    @classmethod
    async def open(cls, url: str) -> CdpConnection:
        """Connect to a DevTools websocket URL."""
        ws = await connect(url, max_size=None, ping_interval=None, open_timeout=COMMAND_TIMEOUT_S)
        return cls(ws)

    async def send(
        self, method: str, params: dict[str, Any] | None = None, session_id: str | None = None
    ) -> dict[str, Any]:
        """Send a command (to a page when ``session_id`` is given) and return its ``result``."""
        if self._closed is not None:
            raise CdpError(f"{method}: DevTools connection closed ({self._closed!r})")
        message: dict[str, Any] = {"id": next(self._ids), "method": method, "params": params or {}}
        if session_id is not None:
            message["sessionId"] = session_id
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[message["id"]] = future
        try:
            await self._ws.send(json.dumps(message))
            async with asyncio.timeout(COMMAND_TIMEOUT_S):
                reply = await future
        except TimeoutError:
            raise CdpError(f"{method}: no reply within {COMMAND_TIMEOUT_S}s") from None
        finally:
            self._pending.pop(message["id"], None)
        if "error" in reply:
            raise CdpError(f"{method}: {reply['error']}")
        result: dict[str, Any] = reply.get("result", {})
        return result

    def add_listener(self, session_id: str | None, callback: EventCallback) -> None:
        """Call ``callback(method, params)`` for every event of ``session_id`` (None: the browser)."""
        self._listeners.setdefault(session_id, []).append(callback)

    async def close(self) -> None:
        """Close the websocket and stop the reader."""
        await self._ws.close()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader

    async def _read_loop(self) -> None:
        try:
            async for raw in self._ws:
                message = json.loads(raw)
                if "id" in message:
                    future = self._pending.get(message["id"])
                    if future is not None and not future.done():
                        future.set_result(message)
                    continue
                for callback in self._listeners.get(message.get("sessionId"), []):
                    callback(message["method"], message.get("params", {}))
            self._closed = ConnectionError("websocket closed by Chromium")
        except ConnectionClosed as error:
            self._closed = error
        finally:
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(CdpError(f"DevTools connection closed ({self._closed!r})"))


def _format_remote_object(obj: dict[str, Any]) -> str:
    """Render a CDP RemoteObject (a console argument) as text."""
    if "value" in obj:
        value = obj["value"]
        return value if isinstance(value, str) else json.dumps(value)
    return str(obj.get("description", obj.get("type", "?")))


class Page:
    """One browser tab, steerable from Python: evaluate JavaScript, wait for conditions, read the console."""

    def __init__(self, conn: CdpConnection, session_id: str, target_id: str, name: str) -> None:
        self.conn = conn
        self.session_id = session_id
        self.target_id = target_id
        self.name = name
        self.console: list[str] = []
        self._load_waiters: list[asyncio.Future[None]] = []
        conn.add_listener(session_id, self._on_event)

    def _on_event(self, method: str, params: dict[str, Any]) -> None:
        line: str | None = None
        if method == "Runtime.consoleAPICalled":
            text = " ".join(_format_remote_object(arg) for arg in params.get("args", []))
            line = f"console.{params.get('type')}: {text}"
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            description = details.get("exception", {}).get("description") or details.get("text")
            line = f"uncaught exception: {description}"
        elif method == "Log.entryAdded":
            entry = params.get("entry", {})
            line = f"log.{entry.get('level')}: {entry.get('text')} {entry.get('url', '')}".rstrip()
        elif method == "Page.loadEventFired":
            for waiter in self._load_waiters:
                if not waiter.done():
                    waiter.set_result(None)
            self._load_waiters.clear()
        if line is not None and len(self.console) < MAX_CONSOLE_LINES:
            self.console.append(line)

    async def send(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send a DevTools command to this page."""
        return await self.conn.send(method, params, self.session_id)

    async def goto(self, url: str, timeout: float = 20.0) -> None:
        """Navigate and wait for the load event."""
        loaded: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._load_waiters.append(loaded)
        result = await self.send("Page.navigate", {"url": url})
        if result.get("errorText"):
            raise CdpError(f"navigation to {url} failed: {result['errorText']}")
        try:
            async with asyncio.timeout(timeout):
                await loaded
        except TimeoutError:
            raise WaitTimeoutError(f"[{self.name}] {url} did not load within {timeout}s") from None

    async def evaluate(self, expression: str) -> Any:
        """Evaluate a JavaScript expression (awaiting a returned promise) and return its JSON value."""
        result = await self.send(
            "Runtime.evaluate",
            {"expression": expression, "awaitPromise": True, "returnByValue": True, "userGesture": True},
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            description = details.get("exception", {}).get("description") or details.get("text")
            raise JsError(f"[{self.name}] {expression!r} threw: {description}")
        return result.get("result", {}).get("value")

    async def wait_for(self, condition: str, timeout: float = 10.0, interval: float = 0.05) -> Any:
        """Poll the JavaScript expression ``condition`` until it is truthy; return its value.

        On timeout raise ``WaitTimeoutError`` with the page's recorded events (the fixtures print the console).
        """
        deadline = time.monotonic() + timeout
        value: Any = None
        while True:
            value = await self.evaluate(condition)
            if value:
                return value
            if time.monotonic() >= deadline:
                raise WaitTimeoutError(
                    f"[{self.name}] timed out after {timeout}s waiting for: {condition}\n"
                    f"last value: {value!r}\n{await self.diagnostics(console_lines=0)}"
                )
            await asyncio.sleep(interval)

    async def diagnostics(self, console_lines: int = 40) -> str:
        """The page's ``window.events`` and the tail of its console, for failure reports."""
        try:
            events = json.dumps(await self.evaluate("window.events"), indent=1)
        except (CdpError, JsError) as error:
            events = f"<unavailable: {error}>"
        text = f"--- [{self.name}] window.events ---\n{events}"
        if console_lines > 0:
            console = "\n".join(self.console[-console_lines:])
            text += f"\n--- [{self.name}] console (tail) ---\n{console}"
        return text


class Chromium:
    """A headless Chromium process with a fresh profile, driven over one DevTools connection."""

    def __init__(self, process: subprocess.Popen[bytes], profile: tempfile.TemporaryDirectory[str]) -> None:
        self.process = process
        self._profile = profile
        self.conn: CdpConnection | None = None
        self.pages: list[Page] = []

    @property
    def stderr_path(self) -> Path:
        """File receiving Chromium's stderr."""
        return Path(self._profile.name) / "chromium-stderr.log"

    @classmethod
    async def launch(cls, executable: str | None = None) -> Chromium:
        """Start Chromium (``$CHROMIUM`` or /usr/bin/chromium) and connect to it."""
        executable = executable or os.environ.get("CHROMIUM", DEFAULT_CHROMIUM)
        if shutil.which(executable) is None:
            raise FileNotFoundError(f"Chromium not found at {executable} (run scripts/setup-test-env)")
        profile = tempfile.TemporaryDirectory(prefix="signalroom-chromium-", ignore_cleanup_errors=True)
        user_data_dir = Path(profile.name) / "profile"
        user_data_dir.mkdir()
        with (Path(profile.name) / "chromium-stderr.log").open("wb") as stderr:
            process = subprocess.Popen(
                [
                    executable,
                    *CHROMIUM_FLAGS,
                    "--remote-debugging-port=0",
                    f"--user-data-dir={user_data_dir}",
                    "about:blank",
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                start_new_session=True,  # its own process group, so teardown can end all its children
            )
        browser = cls(process, profile)
        try:
            port, path = await browser._wait_for_devtools(user_data_dir / "DevToolsActivePort")
            browser.conn = await CdpConnection.open(f"ws://127.0.0.1:{port}{path}")
        except BaseException:
            await browser.close()
            raise
        return browser

    async def _wait_for_devtools(self, port_file: Path) -> tuple[int, str]:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Chromium exited with {self.process.returncode}:\n{self.stderr_tail()}")
            lines = port_file.read_text().split("\n") if port_file.exists() else []
            if len(lines) >= 2 and lines[0].isdigit() and lines[1].startswith("/"):
                return int(lines[0]), lines[1]
            await asyncio.sleep(0.05)
        raise RuntimeError(f"Chromium wrote no DevToolsActivePort within {START_TIMEOUT_S}s:\n{self.stderr_tail()}")

    async def new_page(self, name: str) -> Page:
        """Open a new tab (about:blank) with console/log capture enabled."""
        assert self.conn is not None
        target = await self.conn.send("Target.createTarget", {"url": "about:blank"})
        attached = await self.conn.send("Target.attachToTarget", {"targetId": target["targetId"], "flatten": True})
        page = Page(self.conn, attached["sessionId"], target["targetId"], name)
        for domain in ("Runtime", "Page", "Log"):
            await page.send(f"{domain}.enable")
        self.pages.append(page)
        return page

    def stderr_tail(self, lines: int = 30) -> str:
        """The last lines Chromium wrote to stderr."""
        try:
            text = self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    async def close(self) -> None:
        """Close the browser (politely, then by force) and delete its profile."""
        if self.conn is not None:
            with contextlib.suppress(CdpError, ConnectionClosed, OSError, TimeoutError):
                await asyncio.wait_for(self.conn.send("Browser.close"), 5)
            await self.conn.close()
        try:
            await asyncio.wait_for(asyncio.to_thread(self.process.wait), 5)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            await asyncio.to_thread(self.process.wait)
        # Renderer/utility children share the process group; end any that outlived the browser.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self._profile.cleanup()

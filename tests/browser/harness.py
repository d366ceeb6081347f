"""The browser side of the end-to-end tests: the static test site and a steerable participant page."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from .cdp import Page

HERE = Path(__file__).resolve().parent
OPENVIDU_BUNDLE = HERE / "node_modules" / "openvidu-browser" / "static" / "js" / "openvidu-browser-2.32.2.js"
# openvidu-browser 2.22.0 (npm alias openvidu-browser-2.22), which always opens wss://.
OPENVIDU_BUNDLE_2_22 = HERE / "node_modules" / "openvidu-browser-2.22" / "static" / "js" / "openvidu-browser-2.22.0.js"
SIGNALROOM_MODULE = HERE.parent.parent / "crates" / "signalroom-server" / "assets" / "js" / "signalroom.js"
ROUTES: dict[str, tuple[Path, str]] = {
    "/": (HERE / "static" / "index.html", "text/html; charset=utf-8"),
    "/2.22": (HERE / "static" / "index-2.22.html", "text/html; charset=utf-8"),
    "/harness.js": (HERE / "static" / "harness.js", "text/javascript; charset=utf-8"),
    "/openvidu-browser.js": (OPENVIDU_BUNDLE, "text/javascript; charset=utf-8"),
    "/openvidu-browser-2.22.js": (OPENVIDU_BUNDLE_2_22, "text/javascript; charset=utf-8"),
    # signalroom's requests and streams, imported from the repository as it is.
    "/signalroom.js": (SIGNALROOM_MODULE, "text/javascript; charset=utf-8"),
}


class _Handler(BaseHTTPRequestHandler):
    """Serves the few files in ``ROUTES`` (GET/HEAD only), 404 otherwise."""

    def do_GET(self) -> None:
        self._serve(with_body=True)

    def do_HEAD(self) -> None:
        self._serve(with_body=False)

    def _serve(self, with_body: bool) -> None:
        route = ROUTES.get(self.path.split("?", 1)[0])
        if route is None:
            self.send_error(404)
            return
        body = route[0].read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", route[1])
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if with_body:
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        """Keep the test output quiet."""


class StaticSite:
    """The test page and the openvidu-browser bundle on a free port of 127.0.0.1."""

    def __init__(self) -> None:
        missing = [str(path) for path, _ in ROUTES.values() if not path.is_file()]
        if missing:
            raise FileNotFoundError(f"missing test site files (run scripts/setup-test-env): {missing}")
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="test-site", daemon=True)
        self._thread.start()
        host, port = self._httpd.server_address[:2]
        self.url = f"http://{host!s}:{port}/"

    def close(self) -> None:
        """Stop serving."""
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()


def _match_js(kind: str, fields: dict[str, Any]) -> str:
    """A JS predicate over a recorded event: ``e.kind === kind`` and every field strictly equal."""
    return f"(e) => e.kind === {json.dumps(kind)} && Object.entries({json.dumps(fields)}).every(([k, v]) => e[k] === v)"


class Participant:
    """One openvidu-browser participant in its own page, steered step by step from Python."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.connection_id: str | None = None

    @property
    def name(self) -> str:
        """The page's name (used in diagnostics)."""
        return self.page.name

    async def join(self, token: str, metadata: Any) -> dict[str, Any]:
        """``session.connect(token, metadata)``; returns ``{ok, connectionId}`` or ``{ok: false, code, ...}``."""
        result: dict[str, Any] = await self.page.evaluate(
            f"window.harness.join({json.dumps(token)}, {json.dumps(metadata)})"
        )
        if result.get("ok"):
            self.connection_id = result["connectionId"]
        return result

    async def signal(self, data: str, type: str, to: list[str] | None = None) -> dict[str, Any]:  # noqa: A002
        """``session.signal({data, type, to})`` with ``to`` as connection ids; returns ``{ok, ...}``."""
        options: dict[str, Any] = {"data": data, "type": type}
        if to is not None:
            options["to"] = to
        result: dict[str, Any] = await self.page.evaluate(f"window.harness.signal({json.dumps(options)})")
        return result

    async def disconnect(self) -> None:
        """``session.disconnect()``."""
        await self.page.evaluate("window.harness.disconnect()")

    async def events(self, kind: str | None = None, match: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Recorded events, optionally only those of ``kind`` whose fields equal those in ``match``."""
        everything: list[dict[str, Any]] = await self.page.evaluate("window.events")
        return [
            e
            for e in everything
            if (kind is None or e["kind"] == kind) and all(e.get(k) == v for k, v in (match or {}).items())
        ]

    async def wait_event(self, kind: str, match: dict[str, Any] | None = None, timeout: float = 10.0) -> dict[str, Any]:
        """Wait until an event of ``kind`` whose fields equal those in ``match`` is recorded; return it."""
        event: dict[str, Any] = await self.page.wait_for(
            f"window.events.find({_match_js(kind, match or {})})", timeout=timeout
        )
        return event

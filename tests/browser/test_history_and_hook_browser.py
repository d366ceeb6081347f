"""The signal hook and the signal history, seen by the real openvidu-browser 2.32.2 in headless
Chromium next to a Python participant: a ``signalroom serve`` process asks an HTTP hook (served by
the test) before delivering chat signals; the chat page shows a newcomer the conversation so far."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import pytest

import signalroom

from .cdp import Chromium
from .test_operations_browser import open_chat, say, shown

if TYPE_CHECKING:
    from conftest import StartServer

    from .conftest import OpenParticipant

WAIT = 10.0


def decide(signal: dict[str, Any]) -> dict[str, Any]:
    """The test's moderation policy: no spam, a masked word, whispers back to their sender."""
    data = signal.get("data") or ""
    if "spam" in data:
        return {"allow": False, "reason": "no spam here"}
    if "darn" in data:
        return {"data": data.replace("darn", "****")}
    if data.startswith("whisper") and signal.get("from"):
        return {"to": [signal["from"]]}
    return {}


class _Hook(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        answer = json.dumps(decide(body)).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        """Quiet."""


@pytest.fixture
def hook_url() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/hook"
    finally:
        httpd.shutdown()
        httpd.server_close()


async def test_allow_refuse_and_rewrite_seen_by_a_browser_and_a_python_participant(
    start_server: StartServer, hook_url: str, open_participant: OpenParticipant
) -> None:
    with start_server("--signal-hook", hook_url, "--signal-hook-types", "chat") as server:
        api = signalroom.ServerApi(server.url, server.secret)
        await api.create_session("hooked")
        browser = await open_participant("ada")
        conn = await api.create_connection("hooked")
        assert (await browser.join(conn.token, "ada"))["ok"]
        bot = await signalroom.connect((await api.create_connection("hooked")).token, data="bot")
        try:
            # Allowed, both ways.
            heard = bot.wait_for("signal:chat", timeout=WAIT, predicate=lambda e: e.data == "hello")
            assert (await browser.signal("hello", "chat"))["ok"]
            await heard
            await bot.signal("hi ada", type="chat")
            await browser.wait_event("signal:chat", {"data": "hi ada"}, timeout=WAIT)

            # Refused: the browser's session.signal() rejects with the hook's reason; so does Python's.
            refused = await browser.signal("spam spam", "chat")
            assert (refused["ok"], refused["code"], refused["message"]) == (False, 602, "no spam here"), refused
            with pytest.raises(signalroom.RpcError, match="no spam here"):
                await bot.signal("more spam", type="chat")

            # Rewritten data, each way.
            masked = bot.wait_for("signal:chat", timeout=WAIT, predicate=lambda e: e.data.startswith("oh"))
            assert (await browser.signal("oh darn", "chat"))["ok"]
            assert (await masked).data == "oh ****"
            await bot.signal("darn it", type="chat")
            await browser.wait_event("signal:chat", {"data": "**** it"}, timeout=WAIT)

            # Rewritten recipients: the bot's whisper comes back to the bot only.
            back = bot.wait_for("signal:chat", timeout=WAIT, predicate=lambda e: e.data == "whisper to myself")
            await bot.signal("whisper to myself", type="chat")
            await back
            # Another type skips the hook (spam is fine there), and comes after everything above.
            await bot.signal("spam is fine here", type="cursor")
            await browser.wait_event("signal", {"data": "spam is fine here"}, timeout=WAIT)
            datas = [e["data"] for e in await browser.events("signal")]
            assert datas == ["hello", "hi ada", "oh ****", "**** it", "spam is fine here"], datas
        finally:
            await bot.disconnect()


async def test_the_chat_page_shows_a_newcomer_the_conversation_so_far(
    start_server: StartServer, chromium: Chromium
) -> None:
    with start_server() as server:
        ada = await open_chat(chromium, server, "Ada")
        await say(ada, "first, from Ada")
        await ada.wait_for(shown("Ada", "first, from Ada"), timeout=WAIT)
        api = signalroom.ServerApi(server.url, server.secret)
        bot = await signalroom.connect((await api.create_connection("demo")).token, data="bot")
        await bot.signal("then the bot", type="chat")
        await bot.disconnect()  # gone before the newcomer comes: shown by its connection id
        await ada.wait_for(shown("bot", "then the bot"), timeout=WAIT)
        history = await api.signal_history("demo")
        assert [e.data for e in history] == ["first, from Ada", "then the bot"]

        grace = await open_chat(chromium, server, "Grace")
        await grace.wait_for(shown("Ada", "first, from Ada"), timeout=WAIT)
        await say(ada, "and now live")
        await grace.wait_for(shown("Ada", "and now live"), timeout=WAIT)
        items = await grace.evaluate("[...document.querySelectorAll('#messages li')].map(li => li.textContent)")
        items = items[items.index("Earlier in this session:") :]
        bot_id = history[1].from_
        assert items == [
            "Earlier in this session:",
            "Adafirst, from Ada",
            f"{bot_id}then the bot",
            "Now:",
            "Adaand now live",
        ], items

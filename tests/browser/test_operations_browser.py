"""Running it in production, in headless Chromium: the chat page at ``/`` (two people and a Python bot),
the REST API called from a page on another origin (CORS as OpenVidu), and openvidu-browser 2.22,
which always opens ``wss://``, joining a server started with ``--tls-self-signed``."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import signal
import subprocess
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

import signalroom

from .cdp import Chromium, Page
from .harness import HERE, Participant, StaticSite

if TYPE_CHECKING:
    from conftest import SignalroomServer, StartServer

WAIT = 10.0
SCREENSHOTS = HERE.parent.parent / "target" / "screenshots"
NPM_BUNDLE = HERE / "node_modules" / "openvidu-browser" / "static" / "js" / "openvidu-browser-2.32.2.min.js"


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=WAIT) as response:
        body: bytes = response.read()
        return body


async def open_chat(chromium: Chromium, server: SignalroomServer, name: str) -> Page:
    """The chat page in a new tab, joined to session "demo" as ``name``."""
    page = await chromium.new_page(name)
    await page.goto(f"{server.url}/")
    await page.wait_for("window.chatReady === true", timeout=WAIT)
    fill = {"session": "demo", "name": name, "secret": server.secret}
    await page.evaluate(
        f"Object.entries({json.dumps(fill)}).forEach(([id, v]) => {{ document.getElementById(id).value = v; }}),"
        "document.getElementById('join').requestSubmit()"
    )
    await page.wait_for("!document.getElementById('room').hidden", timeout=WAIT)
    return page


async def say(page: Page, text: str) -> None:
    await page.evaluate(
        f"document.getElementById('text').value = {json.dumps(text)}, document.getElementById('say').requestSubmit()"
    )


def shown(who: str, text: str) -> str:
    """A JS condition: the message list has ``who``'s ``text``."""
    return (
        "[...document.querySelectorAll('#messages li')].some(li => "
        f"li.querySelector('.who')?.textContent === {json.dumps(who)} && li.textContent.endsWith({json.dumps(text)}))"
    )


async def test_the_chat_page_two_people_and_a_bot(server_process: SignalroomServer, chromium: Chromium) -> None:
    server = server_process
    # The embedded bundle is npm's, byte for byte, and its licence is served with it.
    embedded = await asyncio.to_thread(fetch, f"{server.url}/openvidu-browser-2.32.2.min.js")
    assert hashlib.sha256(embedded).digest() == hashlib.sha256(NPM_BUNDLE.read_bytes()).digest()
    assert b"Apache License" in await asyncio.to_thread(fetch, f"{server.url}/openvidu-browser/LICENSE")
    # A server with a secret of its own does not give it away.
    assert json.loads(await asyncio.to_thread(fetch, f"{server.url}/chat/config.json")) == {}

    ada = await open_chat(chromium, server, "Ada")
    grace = await open_chat(chromium, server, "Grace")
    await ada.wait_for("document.getElementById('people').textContent.includes('Grace')", timeout=WAIT)

    api = signalroom.ServerApi(server.url, server.secret)
    bot = await signalroom.connect((await api.create_connection("demo")).token, data="bot")
    try:
        heard = bot.wait_for("signal:chat", predicate=lambda e: e.data == "hello from Ada")
        await say(ada, "hello from Ada")
        await grace.wait_for(shown("Ada", "hello from Ada"), timeout=WAIT)
        await ada.wait_for(shown("Ada", "hello from Ada"), timeout=WAIT)
        assert (await heard).from_ is not None

        await bot.signal("beep, I am a bot", type="chat")
        await say(grace, "hi Ada, hi bot")
        for page in (ada, grace):
            await page.wait_for(shown("bot", "beep, I am a bot"), timeout=WAIT)
            await page.wait_for(shown("Grace", "hi Ada, hi bot"), timeout=WAIT)
        people = await ada.evaluate("document.getElementById('people').textContent")
        assert people == "3 here: Ada, Grace, bot", people

        metrics = {"width": 900, "height": 760, "deviceScaleFactor": 1, "mobile": False}
        await ada.send("Emulation.setDeviceMetricsOverride", metrics)
        await ada.evaluate("window.scrollTo(0, 0)")
        shot = await ada.send("Page.captureScreenshot", {"format": "png"})
        png = base64.b64decode(shot["data"])
        assert png.startswith(b"\x89PNG") and len(png) > 10_000
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / "chat-page.png"
        path.write_bytes(png)
        print(f"chat page screenshot: {path}")
    finally:
        await bot.disconnect()
    await grace.evaluate("document.getElementById('leave').click()")
    await ada.wait_for(
        "[...document.querySelectorAll('#messages li.notice')].some(li => li.textContent === 'Grace left')",
        timeout=WAIT,
    )


def notice(text: str) -> str:
    """A JS condition: the message list has the notice ``text``."""
    return f"[...document.querySelectorAll('#messages li.notice')].some(li => li.textContent === {json.dumps(text)})"


async def test_the_chat_page_names_participants_without_data_and_says_when_the_server_is_gone(
    signalroom_binary: Path, start_server: StartServer, chromium: Chromium
) -> None:
    with start_server() as server:
        ada = await open_chat(chromium, server, "Ada")
        # A participant with no client data, joined with a token from `signalroom token`.
        command = [str(signalroom_binary), "token", "demo", "--url", server.url, "--secret", server.secret]
        made = await asyncio.to_thread(subprocess.check_output, command, text=True, timeout=WAIT)
        anonymous = await signalroom.connect(made.strip())
        who = anonymous.connection_id
        await ada.wait_for(notice(f"{who} joined"), timeout=WAIT)
        people = await ada.evaluate("document.getElementById('people').textContent")
        assert people == f"2 here: Ada, {who}", people
        await anonymous.signal("no name here", type="chat")
        await ada.wait_for(shown(who, "no name here"), timeout=WAIT)
        # "server" is what signals sent through the REST API come from, and only that.
        await signalroom.ServerApi(server.url, server.secret).signal("demo", "from the back end", type="chat")
        await ada.wait_for(shown("server", "from the back end"), timeout=WAIT)
        await anonymous.disconnect()
        await ada.wait_for(notice(f"{who} left"), timeout=WAIT)
        await ada.wait_for("document.getElementById('people').textContent === '1 here: Ada'", timeout=WAIT)

        # The server stops: the page says the connection is gone, and lists nobody.
        server.process.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(server.process.wait, WAIT) == 0
        await ada.wait_for(notice("The server stopped: the connection is gone. (openviduServerStopped)"), timeout=WAIT)
        assert await ada.evaluate("document.getElementById('people').textContent") == "not connected"
        assert await ada.evaluate("document.getElementById('text').disabled")
        notices = await ada.evaluate("[...document.querySelectorAll('#messages li.notice')].map(li => li.textContent)")
        assert not [n for n in notices if n.startswith("server ")], notices


async def test_a_page_on_another_origin_calls_the_rest_api(
    server_process: SignalroomServer, chromium: Chromium, static_site: StaticSite
) -> None:
    # The page comes from the test site; the API is on the server's own port: another origin.
    page = await chromium.new_page("other-origin")
    await page.goto(static_site.url)
    assert static_site.url.rstrip("/") != server_process.url
    auth = base64.b64encode(f"OPENVIDUAPP:{server_process.secret}".encode()).decode()
    call = """
      (async (url, auth, credentials) => {
        try {
          const r = await fetch(url + '/openvidu/api/sessions', {
            method: 'POST', credentials,
            headers: {'Authorization': 'Basic ' + auth, 'Content-Type': 'application/json'},
            body: JSON.stringify({customSessionId: 'cors-' + credentials}),
          });
          return {ok: true, status: r.status, body: await r.json()};
        } catch (e) { return {ok: false, error: String(e)}; }
      })(%s, %s, %s)
    """
    # A preflighted request (Authorization, JSON): answered for any origin.
    done = await page.evaluate(call % (json.dumps(server_process.url), json.dumps(auth), json.dumps("omit")))
    assert done["ok"] and done["status"] == 200 and done["body"]["id"] == "cors-omit", done
    # As OpenVidu, `*` and no credentials: a request with credentials is refused by the browser.
    refused = await page.evaluate(call % (json.dumps(server_process.url), json.dumps(auth), json.dumps("include")))
    assert refused == {"ok": False, "error": "TypeError: Failed to fetch"}, refused


async def test_openvidu_browser_2_22_joins_over_wss_with_the_self_signed_certificate(
    start_server: StartServer, chromium: Chromium, static_site: StaticSite
) -> None:
    with start_server("--tls-self-signed") as server:
        assert server.url.startswith("https://")
        # The browser is told to accept the certificate, as a person does at the warning.
        assert chromium.conn is not None
        await chromium.conn.send("Security.setIgnoreCertificateErrors", {"ignore": True})
        api = signalroom.ServerApi(server.url, server.secret, accept_invalid_certs=True)
        await api.create_session("tls")
        conn = await api.create_connection("tls")
        assert conn.token.startswith("wss://")

        page = await chromium.new_page("openvidu-browser-2.22")
        await page.goto(f"{static_site.url}2.22")
        await page.wait_for("window.harnessReady === true", timeout=WAIT)
        assert await page.evaluate("typeof OpenVidu === 'function'")
        old = Participant(page)
        joined = await old.join(conn.token, {"name": "old"})
        assert joined == {"ok": True, "connectionId": conn.connection_id}, joined

        bot = await signalroom.connect((await api.create_connection("tls")).token, accept_invalid_certs=True)
        try:
            heard = bot.wait_for("signal:chat")
            sent = await old.signal("from 2.22 over wss", "chat")
            assert sent.get("ok"), sent
            assert (await heard).data == "from 2.22 over wss"
            await bot.signal("back over wss", type="chat", to=[conn.connection_id])
            got = await old.wait_event("signal:chat", {"data": "back over wss"}, timeout=WAIT)
            assert got["from"] == bot.connection_id
        finally:
            await bot.disconnect()
        await old.disconnect()


def test_the_npm_bundle_is_the_embedded_one() -> None:
    embedded = HERE.parent.parent / "crates/signalroom-server/assets/openvidu-browser/openvidu-browser-2.32.2.min.js"
    assert Path(embedded).read_bytes() == NPM_BUNDLE.read_bytes()


async def test_the_chat_page_asks_a_bot_and_shows_its_answer_as_it_streams(
    server_process: SignalroomServer, chromium: Chromium
) -> None:
    server = server_process
    ada = await open_chat(chromium, server, "Ada")
    api = signalroom.ServerApi(server.url, server.secret)
    bot = await signalroom.connect((await api.create_connection("demo")).token, data="bot")
    words = ["signalroom", "is", "an", "OpenVidu", "signalling", "server."]
    streaming = "[...document.querySelectorAll('#messages li.streaming')].map(li => li.textContent)"

    @bot.handle("ask")
    async def ask(request: signalroom.Request) -> str:
        assert request.payload == "what is signalroom?"
        async with bot.open_stream(topic="answer") as stream:
            for i, word in enumerate(words):
                await stream.write(word + " ")
                # The page shows the answer so far while the bot is still writing it.
                so_far = "bot" + " ".join(words[: i + 1]) + " "
                await ada.wait_for(f"{streaming}.includes({json.dumps(so_far)})", timeout=WAIT)
        return "done"

    try:
        await ada.wait_for("document.getElementById('people').textContent.includes('bot')", timeout=WAIT)
        await say(ada, "@bot what is signalroom?")
        await ada.wait_for(shown("Ada", "@bot what is signalroom?"), timeout=WAIT)
        answer = " ".join(words) + " "
        await ada.wait_for(
            "[...document.querySelectorAll('#messages li.answer')].some(li => li.textContent === "
            f"{json.dumps('bot' + answer)})",
            timeout=WAIT,
        )
        # Asking someone who answers nothing says so.
        await say(ada, "@nobody hello")
        bob = await signalroom.connect((await api.create_connection("demo")).token, data="Bob")
        try:
            await ada.wait_for("document.getElementById('people').textContent.includes('Bob')", timeout=WAIT)
            await say(ada, "@Bob are you a bot?")
            await ada.wait_for(notice("No answer: Bob does not answer questions"), timeout=WAIT)
        finally:
            await bob.disconnect()
    finally:
        await bot.disconnect()

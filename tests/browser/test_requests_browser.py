"""End to end: signalroom's requests and streams between a Python bot and the real openvidu-browser
2.32.2 in headless Chromium, with the browser module (``signalroom.js``, imported from the
repository by the test page, and served by the server at ``/signalroom.js``)."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest

import signalroom

from .harness import SIGNALROOM_MODULE, Participant

if TYPE_CHECKING:
    from conftest import SignalroomServer

    from .conftest import OpenParticipant

SESSION_ID = "asking"
WAIT = 10.0


@dataclass
class Room:
    """alice in a browser tab with the module attached, and a Python bot, both joined."""

    alice: Participant
    alice_id: str
    bot: signalroom.Session


@pytest.fixture
async def room(server_process: SignalroomServer, open_participant: OpenParticipant) -> AsyncIterator[Room]:
    api = signalroom.ServerApi(server_process.url, server_process.secret)
    await api.create_session(SESSION_ID)
    bot = await signalroom.connect((await api.create_connection(SESSION_ID)).token, data="bot")
    alice_conn = await api.create_connection(SESSION_ID)
    alice = await open_participant("alice")
    assert (await alice.join(alice_conn.token, "alice"))["ok"]
    await alice.wait_event("connectionCreated", {"connectionId": bot.connection_id}, WAIT)
    attached = await alice.page.evaluate(
        "import('/signalroom.js').then((m) => { window.signalroom = m; window.sr = m.attach(window.harness.session);"
        " return typeof window.sr.request; })"
    )
    assert attached == "function"
    try:
        yield Room(alice, alice_conn.connection_id, bot)
    finally:
        await bot.disconnect()


def test_the_server_serves_the_module_of_the_repository(server_process: SignalroomServer) -> None:
    for path, kind in (("/signalroom.js", "text/javascript"), ("/signalroom.d.ts", "application/typescript")):
        with urllib.request.urlopen(server_process.url + path) as response:
            assert response.headers["Content-Type"].startswith(kind)
            body = response.read().decode()
        source = SIGNALROOM_MODULE if path.endswith(".js") else SIGNALROOM_MODULE.with_suffix(".d.ts")
        assert body == source.read_text(encoding="utf-8")


async def test_the_browser_requests_the_bots_method_and_gets_the_reply(room: Room) -> None:
    @room.bot.handle("ask")
    async def ask(request: signalroom.Request) -> str:
        if request.payload == "fail":
            raise ValueError("cannot answer that")
        return f"bot heard {request.payload!r} from {request.caller.connection_id}"

    call = (
        "window.sr.request({target}, {method}, {payload}, {{timeout: 5000}})"
        ".then((reply) => ({{ok: true, reply}}), (e) => ({{ok: false, code: e.code, message: e.message}}))"
    )
    bot = json.dumps(room.bot.connection_id)
    result = await room.alice.page.evaluate(call.format(target=bot, method='"ask"', payload='"héllo"'))
    assert result == {"ok": True, "reply": f"bot heard 'héllo' from {room.alice_id}"}
    result = await room.alice.page.evaluate(call.format(target=bot, method='"ask"', payload='"fail"'))
    assert result["ok"] is False and result["code"] == "handler-failed"
    assert "ValueError: cannot answer that" in result["message"]
    result = await room.alice.page.evaluate(call.format(target=bot, method='"nothing"', payload='""'))
    assert result["ok"] is False and result["code"] == "no-handler"


async def test_the_bot_requests_the_browsers_method(room: Room) -> None:
    await room.alice.page.evaluate(
        "window.sr.handle('shout', (request) => `${request.caller.connectionId} says ${request.payload.toUpperCase()}`);"
        "window.sr.handle('later', async (request) => { await new Promise((r) => setTimeout(r, 10));"
        " if (request.payload === 'fail') throw new TypeError('not today'); return 'later ' + request.payload; });"
        "true"
    )
    bot = room.bot
    assert await bot.request(room.alice_id, "shout", "hi") == f"{bot.connection_id} says HI"
    assert await bot.request(room.alice_id, "later", "ok") == "later ok"
    with pytest.raises(signalroom.HandlerError, match="TypeError: not today"):
        await bot.request(room.alice_id, "later", "fail")
    with pytest.raises(signalroom.NoHandlerError):
        await bot.request(room.alice_id, "nothing")


async def test_a_bot_streams_to_the_browser_and_the_page_shows_it_as_it_arrives(room: Room) -> None:
    page = room.alice.page
    await page.evaluate(
        "window.pieces = []; window.shown = document.createElement('p'); window.shown.id = 'answer';"
        "document.body.append(window.shown);"
        "window.sr.onStream('answer', async (stream) => {"
        "  window.progress = [stream.total, stream.sender.connectionId];"
        "  for await (const piece of stream) { window.pieces.push(piece); window.shown.textContent += piece; }"
        "  window.streamDone = true; });"
        "true"
    )
    words = ["the", "answer", "appears", "word", "by", "word", "as", "the", "bot", "writes", "it"]
    async with room.bot.open_stream(topic="answer", to=[room.alice_id]) as stream:
        for word in words:
            await stream.write(word + " ")
            # Shown before the next word is even written: it streams.
            await page.wait_for(f"document.getElementById('answer').textContent.endsWith({json.dumps(word + ' ')})")
    await page.wait_for("window.streamDone === true", timeout=WAIT)
    assert await page.evaluate("window.pieces") == [word + " " for word in words]
    assert await page.evaluate("window.progress") == [None, room.bot.connection_id]


async def test_large_texts_both_ways(room: Room) -> None:
    page = room.alice.page
    text = ('a "quoted" line\\n with é and 漢字 🎉\n' * 10_000)[:300_000]
    await page.evaluate(
        "window.sr.onStream('big', async (stream) => { window.big = await stream.text();"
        " window.bigTotal = stream.total; window.bigReceived = stream.received; }); true"
    )
    await room.bot.send_text(text, topic="big", to=[room.alice_id])
    await page.wait_for("window.big !== undefined", timeout=WAIT)
    assert await page.evaluate("window.big") == text
    assert await page.evaluate("[window.bigTotal, window.bigReceived]") == [len(text.encode())] * 2

    incoming = room.bot.next_stream("back")
    await page.evaluate(
        f"window.sr.sendText(window.big, {{to: [{json.dumps(room.bot.connection_id)}], topic: 'back'}})"
    )
    stream = await incoming
    assert stream.total == len(text.encode())
    assert await stream.text() == text

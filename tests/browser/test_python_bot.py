"""End to end: a Python bot (the signalroom package) and the real openvidu-browser 2.32.2 in headless
Chromium, in one session on one signalroom server, exchanging signals both ways.

The bot answers ``ping:<n>`` with a targeted ``pong:<n>`` from its handler; everything asserted on the
browser side is what the unmodified library emitted in the page.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest

import signalroom

from .harness import Participant

if TYPE_CHECKING:
    from conftest import SignalroomServer

    from .conftest import OpenParticipant

SESSION_ID = "bots"
WAIT = 10.0


@dataclass
class Room:
    """Session "bots": alice in a browser tab and a Python bot, both joined."""

    alice: Participant
    alice_id: str
    bot: signalroom.Session


@pytest.fixture
async def room(server_process: SignalroomServer, open_participant: OpenParticipant) -> AsyncIterator[Room]:
    api = signalroom.ServerApi(server_process.url, server_process.secret)
    await api.create_session(SESSION_ID)
    alice_conn = await api.create_connection(SESSION_ID, data="server-alice")
    alice = await open_participant("alice")
    joined = await alice.join(alice_conn.token, {"name": "alice"})
    assert joined == {"ok": True, "connectionId": alice_conn.connection_id}, joined

    bot_conn = await api.create_connection(SESSION_ID)
    bot = await signalroom.connect(bot_conn.token, data=json.dumps({"name": "bot"}, separators=(",", ":")))

    @bot.on("signal:chat")
    async def answer(event: signalroom.SignalEvent) -> None:
        if event.data.startswith("ping:") and event.from_ is not None:
            await bot.signal("pong:" + event.data.removeprefix("ping:"), type="chat", to=[event.from_])

    try:
        yield Room(alice, alice_conn.connection_id, bot)
    finally:
        await bot.disconnect()


async def test_each_sees_the_other_join(room: Room) -> None:
    created = await room.alice.wait_event("connectionCreated", {"connectionId": room.bot.connection_id}, WAIT)
    assert created["data"] == '{"name":"bot"}', created
    remote = {c.connection_id: c for c in room.bot.remote_connections}
    assert remote[room.alice_id].data == '{"name":"alice"}%/%server-alice'


async def test_browser_broadcast_reaches_the_bot(room: Room) -> None:
    received = room.bot.wait_for("signal:chat", predicate=lambda e: e.data == "hello bot", timeout=WAIT)
    assert await room.alice.signal("hello bot", "chat") == {"ok": True}
    event = await received
    assert event.type == "chat"
    assert event.from_ is not None and event.from_.connection_id == room.alice_id


async def test_bot_broadcast_and_targeted_signals_reach_the_browser(room: Room) -> None:
    await room.bot.signal("hi everyone", type="chat")
    await room.bot.signal("just for alice", type="chat", to=[room.alice_id])
    for data in ("hi everyone", "just for alice"):
        event = await room.alice.wait_event("signal:chat", {"data": data}, WAIT)
        assert event["type"] == "signal:chat"
        assert event["from"] == room.bot.connection_id


async def test_the_bot_replies_from_its_handler_to_the_browser_only(room: Room) -> None:
    bot_id = room.bot.connection_id
    seen_by_bot: list[str] = []
    room.bot.on("signal:chat", lambda e: seen_by_bot.append(e.data))
    assert await room.alice.signal("ping:7", "chat", to=[bot_id]) == {"ok": True}
    pong = await room.alice.wait_event("signal:chat", {"data": "pong:7"}, WAIT)
    assert pong["from"] == bot_id
    # The reply was targeted: the bot must not get it back. Its own later broadcast arrives after
    # anything it sent before, so once that marker is in, absence is certain.
    marker = room.bot.wait_for("signal:chat", predicate=lambda e: e.data == "marker", timeout=WAIT)
    await room.bot.signal("marker", type="chat")
    await marker
    assert "ping:7" in seen_by_bot
    assert "pong:7" not in seen_by_bot

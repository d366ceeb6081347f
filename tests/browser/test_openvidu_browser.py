"""End to end: the real, unmodified openvidu-browser 2.32.2 in headless Chromium against signalroom.

Two participants (alice and bob, each in its own tab) join session "lobby" with tokens from our REST
API, then exchange signals and get force-disconnected, and every assertion is made on the events the
library really emitted in the page (``window.events``).
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

from .harness import Participant

if TYPE_CHECKING:
    from conftest import SignalroomServer

    from .conftest import OpenParticipant

SESSION_ID = "lobby"
UNKNOWN_CONNECTION_ID = "con_Xunknown0"
_markers = itertools.count()


@dataclass
class Lobby:
    """Session "lobby" with alice and bob joined; ``connections`` holds the REST Connection objects."""

    server: SignalroomServer
    alice: Participant
    bob: Participant
    connections: dict[str, dict[str, Any]]


def full_metadata(client: dict[str, str], server_data: str) -> str:
    """Connection.data as OpenVidu builds it: client metadata + ``%/%`` + server data."""
    return json.dumps(client, separators=(",", ":")) + "%/%" + server_data


def cid(participant: Participant) -> str:
    """The participant's connection id (it has joined)."""
    assert participant.connection_id is not None, f"{participant.name} has not joined"
    return participant.connection_id


async def flush(sender: Participant, receivers: list[Participant]) -> None:
    """Broadcast a fresh marker from ``sender`` and wait until every receiver has it.

    Signals from one sender arrive in send order, so afterwards every earlier signal of ``sender`` that
    was going to reach a receiver has reached it: absence can be asserted without sleeping.
    """
    marker = f"marker-{next(_markers)}"
    assert await sender.signal(marker, "chat") == {"ok": True}
    for receiver in receivers:
        await receiver.wait_event("signal:chat", {"data": marker, "from": cid(sender)})


@pytest.fixture
async def lobby(server_process: SignalroomServer, open_participant: OpenParticipant) -> Lobby:
    """Create "lobby" and two connections by REST; alice and bob join from their own tabs."""
    server = server_process
    session = server.rest_ok("POST", "/sessions", {"customSessionId": SESSION_ID}).json()
    assert session["id"] == SESSION_ID, session
    connections: dict[str, dict[str, Any]] = {}
    participants: dict[str, Participant] = {}
    for name in ("alice", "bob"):
        connection = server.rest_ok("POST", f"/sessions/{SESSION_ID}/connection", {"data": f"server-{name}"}).json()
        connections[name] = connection
        participant = await open_participant(name)
        joined = await participant.join(connection["token"], {"name": name})
        assert joined == {"ok": True, "connectionId": connection["connectionId"]}, (name, joined, connection)
        participants[name] = participant
    return Lobby(server, participants["alice"], participants["bob"], connections)


async def test_tokens_and_join_show_each_other(lobby: Lobby) -> None:
    """Tokens are ws:// URLs of our server; each participant sees itself and the other (connectionCreated)."""
    ws_base = "ws://" + lobby.server.url.removeprefix("http://")
    for connection in lobby.connections.values():
        assert connection["token"].startswith(f"{ws_base}?sessionId={SESSION_ID}&token=tok_"), connection

    alice, bob = lobby.alice, lobby.bob
    expected = {
        cid(alice): full_metadata({"name": "alice"}, "server-alice"),
        cid(bob): full_metadata({"name": "bob"}, "server-bob"),
    }
    # alice learns about bob from a participantJoined notification, bob about alice from his joinRoom answer.
    await alice.wait_event("connectionCreated", {"connectionId": cid(bob)})
    for participant in (alice, bob):
        created = await participant.events("connectionCreated")
        seen = {event["connectionId"]: event["data"] for event in created}
        assert seen == expected, f"{participant.name}: {created}"
        assert len(created) == 2, f"{participant.name}: duplicate connectionCreated: {created}"
        assert await participant.events("sessionDisconnected") == []
        assert await participant.events("exception") == []


async def test_broadcast_signal_reaches_everyone_including_sender(lobby: Lobby) -> None:
    """A broadcast fires ``signal:chat`` with data, type and from on every participant, the sender too."""
    alice, bob = lobby.alice, lobby.bob
    assert await alice.signal("hello everyone", "chat") == {"ok": True}
    for participant in (alice, bob):
        event = await participant.wait_event("signal:chat", {"data": "hello everyone"})
        assert event["type"] == "signal:chat", event
        assert event["from"] == cid(alice), event
        generic = await participant.events("signal", {"data": "hello everyone"})
        assert [(e["type"], e["from"]) for e in generic] == [("signal:chat", cid(alice))], generic

    await flush(alice, [alice, bob])
    for participant in (alice, bob):
        received = await participant.events("signal:chat", {"data": "hello everyone"})
        assert len(received) == 1, f"{participant.name} got the broadcast {len(received)} times: {received}"


async def test_targeted_signal_reaches_only_its_target(lobby: Lobby) -> None:
    """``to: [alice]`` from bob reaches alice (from = bob) and not bob himself."""
    alice, bob = lobby.alice, lobby.bob
    assert await bob.signal("psst alice", "chat", to=[cid(alice)]) == {"ok": True}
    event = await alice.wait_event("signal:chat", {"data": "psst alice"})
    assert (event["type"], event["from"]) == ("signal:chat", cid(bob)), event

    await flush(bob, [alice, bob])
    assert await bob.events("signal:chat", {"data": "psst alice"}) == []
    assert len(await alice.events("signal:chat", {"data": "psst alice"})) == 1


async def test_rest_signal_reaches_everyone_without_from(lobby: Lobby) -> None:
    """POST /openvidu/api/signal with type ``signal:chat`` fires ``signal:chat`` everywhere, from undefined."""
    lobby.server.rest_ok("POST", "/signal", {"session": SESSION_ID, "type": "signal:chat", "data": "from rest"})
    for participant in (lobby.alice, lobby.bob):
        event = await participant.wait_event("signal:chat", {"data": "from rest"})
        assert event["type"] == "signal:chat", event
        assert event["fromDefined"] is False, f"{participant.name}: REST signal has a from: {event}"


async def test_signal_to_unknown_connection_is_rejected(lobby: Lobby) -> None:
    """A ``to`` with an unknown connection id rejects the promise with 601 and delivers nothing, to anyone."""
    alice, bob = lobby.alice, lobby.bob
    alone = await alice.signal("ghost", "chat", to=[UNKNOWN_CONNECTION_ID])
    assert alone["ok"] is False and alone["code"] == 601, alone
    mixed = await alice.signal("half ghost", "chat", to=[cid(bob), UNKNOWN_CONNECTION_ID])
    assert mixed["ok"] is False and mixed["code"] == 601, mixed

    await flush(alice, [alice, bob])
    for participant in (alice, bob):
        for data in ("ghost", "half ghost"):
            assert await participant.events("signal", {"data": data}) == [], f"{participant.name} got {data!r}"


async def test_rest_force_disconnect(lobby: Lobby) -> None:
    """DELETE of bob's connection: bob gets sessionDisconnected, alice connectionDestroyed, both with the reason."""
    alice, bob = lobby.alice, lobby.bob
    lobby.server.rest_ok("DELETE", f"/sessions/{SESSION_ID}/connection/{cid(bob)}", expect=204)

    await bob.wait_event("sessionDisconnected", {"reason": "forceDisconnectByServer"})
    await alice.wait_event("connectionDestroyed", {"connectionId": cid(bob), "reason": "forceDisconnectByServer"})
    assert await alice.events("sessionDisconnected") == []

    # alice is still connected: her broadcast still reaches her, and the server no longer lists bob.
    await flush(alice, [alice])
    listed = lobby.server.rest_ok("GET", f"/sessions/{SESSION_ID}/connection").json()
    assert [c["connectionId"] for c in listed["content"]] == [cid(alice)], listed

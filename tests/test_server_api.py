"""signalroom.ServerApi: every call of the REST client, against the in-process server."""

from __future__ import annotations

import signalroom
from signalroom.testing import ParticipantFactory


async def test_sessions_are_created_fetched_listed_and_closed(
    signalroom_server: signalroom.Server, server_api: signalroom.ServerApi
) -> None:
    assert server_api.url == f"{signalroom_server.url}/openvidu/api"
    assert "ServerApi(" in repr(server_api)
    lobby = await server_api.create_session("lobby")
    assert isinstance(lobby, signalroom.SessionObject)
    assert (lobby.session_id, lobby.custom_session_id, lobby.connections) == ("lobby", "lobby", [])
    assert lobby.created_at > 0
    assert lobby.to_dict()["id"] == "lobby"
    again = await server_api.create_session("lobby")  # exists: returned, not an error
    assert again.session_id == "lobby"
    random = await server_api.create_session()
    assert random.session_id.startswith("ses_")
    assert random.custom_session_id == ""
    assert (await server_api.get_session("lobby")).session_id == "lobby"
    assert sorted(s.session_id for s in await server_api.list_sessions()) == sorted(["lobby", random.session_id])
    await server_api.close_session(random.session_id)
    assert [s.session_id for s in await server_api.list_sessions()] == ["lobby"]


async def test_connections_are_created_listed_fetched_and_deleted(server_api: signalroom.ServerApi) -> None:
    await server_api.create_session("lobby")
    conn = await server_api.create_connection("lobby", data="server data", role="moderator", record=False)  # type: ignore[arg-type]  # any case at run time
    assert isinstance(conn, signalroom.ConnectionObject)
    assert conn.connection_id.startswith("con_")
    assert (conn.session_id, conn.status, conn.role, conn.record, conn.server_data) == (
        "lobby",
        "pending",
        "MODERATOR",
        False,
        "server data",
    )
    assert conn.token.startswith("ws://127.0.0.1:") and "sessionId=lobby" in conn.token
    assert (conn.active_at, conn.client_data, conn.platform, conn.ip) == (None, None, None, None)
    assert conn.to_dict()["connectionId"] == conn.connection_id
    assert conn.connection_id in repr(conn)
    plain = await server_api.create_connection("lobby")
    assert (plain.role, plain.record, plain.server_data) == ("PUBLISHER", True, "")

    session = await signalroom.connect(conn.token, data="client data", platform="a test")
    active = await server_api.get_connection("lobby", conn.connection_id)
    assert active.status == "active"
    assert active.active_at is not None and active.active_at >= active.created_at
    assert (active.client_data, active.platform, active.ip) == ("client data", "a test", "127.0.0.1")
    listed = await server_api.list_connections("lobby")
    assert sorted(c.connection_id for c in listed) == sorted([conn.connection_id, plain.connection_id])
    assert [c.connection_id for c in (await server_api.get_session("lobby")).connections if c.status == "active"] == [
        conn.connection_id
    ]

    await server_api.delete_connection("lobby", plain.connection_id)  # a pending one: its token stops working
    assert [c.connection_id for c in await server_api.list_connections("lobby")] == [conn.connection_id]
    evicted = session.wait_for("sessionDisconnected")
    await server_api.delete_connection("lobby", conn.connection_id)
    assert (await evicted).reason == "forceDisconnectByServer"


async def test_closing_a_session_tells_its_participants(
    server_api: signalroom.ServerApi, participant: ParticipantFactory
) -> None:
    alice = await participant("lobby")
    disconnected = alice.wait_for("sessionDisconnected")
    await server_api.close_session("lobby")
    assert (await disconnected).reason == "sessionClosedByServer"


async def test_server_signals_reach_everyone_or_the_chosen_ones(
    server_api: signalroom.ServerApi, participant: ParticipantFactory
) -> None:
    alice = await participant("lobby")
    bob = await participant("lobby")
    to_all = [alice.wait_for("signal:news"), bob.wait_for("signal:news")]
    await server_api.signal("lobby", "to everyone", type="news")
    for waiting in to_all:
        event = await waiting
        assert (event.data, event.type, event.from_) == ("to everyone", "news", None)
    only_bob = bob.wait_for("signal:dm")
    untyped = alice.wait_for("signal")
    await server_api.signal("lobby", "just bob", type="signal:dm", to=[bob.connection])
    await server_api.signal("lobby", "no type", to=[alice.connection_id])
    assert (await only_bob).data == "just bob"
    event = await untyped
    assert (event.data, event.name) == ("no type", "signal")


async def test_send_signal_passes_the_type_verbatim(
    server_api: signalroom.ServerApi, participant: ParticipantFactory
) -> None:
    alice = await participant("lobby")
    seen: list[tuple[str, str]] = []
    alice.on("signal", lambda e: seen.append((e.name, e.data)))
    last = alice.wait_for("signal", predicate=lambda e: e.data == "prefixed")
    await server_api.send_signal("lobby", data="bare", type="chat", to=[alice.connection])
    await server_api.send_signal("lobby", type="signal:chat")  # no data
    await server_api.send_signal("lobby", data="prefixed", type="signal:chat")
    await last
    assert seen == [("chat", "bare"), ("signal:chat", ""), ("signal:chat", "prefixed")]

"""signalroom.connect and Session: joining, sending, receiving, waiting, streams and leaving."""

from __future__ import annotations

import asyncio

import pytest

import signalroom
from signalroom.testing import ParticipantFactory

TIMEOUT = 5.0


async def test_connect_returns_a_session_that_knows_itself(
    server_api: signalroom.ServerApi, participant: ParticipantFactory
) -> None:
    await server_api.create_session("lobby")
    conn = await server_api.create_connection("lobby", data="server-side")
    session = await signalroom.connect(conn.token, data="client-side")
    try:
        assert isinstance(session, signalroom.Session)
        assert session.connection_id == conn.connection_id
        assert session.connection.connection_id == conn.connection_id
        assert session.connection.data == "client-side%/%server-side"
        assert session.connection.created_at > 0
        assert session.session_id == "lobby"
        assert session.role == "PUBLISHER"
        assert session.state == "connected"
        assert session.end_reason is None
        assert session.remote_connections == []
        assert conn.connection_id in repr(session)

        created = session.wait_for("connectionCreated", predicate=lambda e: e.connection.data == "bob")
        other = await participant("lobby", data="bob")
        assert (await created).connection == other.connection
        assert session.remote_connections == [other.connection]
        assert other.remote_connections == [session.connection]
    finally:
        await session.disconnect()
    assert str(session.state) == "disconnected"
    assert session.end_reason == "disconnect"


async def test_first_events_reach_handlers_registered_right_after_connect(
    server_api: signalroom.ServerApi, participant: ParticipantFactory
) -> None:
    first = await participant("lobby", data="first")
    await server_api.create_session("lobby")
    conn = await server_api.create_connection("lobby")
    session = await signalroom.connect(conn.token, data="second")
    created: list[str] = []
    session.on("connectionCreated", lambda e: created.append(e.connection.data))
    done = session.wait_for("connectionCreated", predicate=lambda e: e.connection == first.connection)
    await done
    assert created == ["second", "first"]  # itself first, then who was already there
    await session.disconnect()


async def test_async_with_connect_leaves_at_the_end(
    server_api: signalroom.ServerApi, participant: ParticipantFactory
) -> None:
    watcher = await participant("lobby")
    conn = await server_api.create_connection("lobby")
    gone = watcher.wait_for("connectionDestroyed", predicate=lambda e: e.connection.connection_id == conn.connection_id)
    async with signalroom.connect(conn.token) as session:
        assert session.state == "connected"
    assert str(session.state) == "disconnected"
    event = await gone
    assert event.reason == "disconnect"
    assert event.name == "connectionDestroyed"


async def test_async_with_session_leaves_at_the_end(participant: ParticipantFactory) -> None:
    session = await participant("lobby")
    disconnected = session.wait_for("sessionDisconnected")
    async with session:
        pass
    event = await disconnected
    assert event.reason == "disconnect"
    assert session.end_reason == "disconnect"


async def test_broadcast_reaches_everyone_sender_included(participant: ParticipantFactory) -> None:
    alice = await participant("lobby", data="alice")
    bob = await participant("lobby", data="bob")
    at_alice = alice.wait_for("signal:chat")
    at_bob = bob.wait_for("signal:chat")
    await alice.signal("hello", type="chat")
    for event in (await at_alice, await at_bob):
        assert isinstance(event, signalroom.SignalEvent)
        assert event.data == "hello"
        assert event.type == "chat"
        assert event.name == "signal:chat"
        assert event.from_ == alice.connection
        assert event.from_ is not None and event.from_.data == "alice"
        assert "hello" in repr(event)


async def test_targeted_signals_reach_only_their_recipients(participant: ParticipantFactory) -> None:
    alice = await participant("lobby")
    bob = await participant("lobby")
    carol = await participant("lobby")
    got: dict[str, list[str]] = {"alice": [], "bob": [], "carol": []}
    alice.on("signal", lambda e: got["alice"].append(e.data))
    bob.on("signal", lambda e: got["bob"].append(e.data))
    carol.on("signal", lambda e: got["carol"].append(e.data))
    last = carol.wait_for("signal", predicate=lambda e: e.data == "end")
    await alice.signal("to bob by Connection", type="dm", to=[bob.connection])
    await alice.signal("to bob by id", type="dm", to=[bob.connection_id])
    await alice.signal("to carol and bob", type="dm", to=(carol.connection, bob.connection_id))
    await alice.signal("end", type="dm", to=[carol.connection])
    await last
    assert got["alice"] == []
    assert got["bob"] == ["to bob by Connection", "to bob by id", "to carol and bob"]
    assert got["carol"] == ["to carol and bob", "end"]


async def test_signal_without_type_and_data_defaults(participant: ParticipantFactory) -> None:
    alice = await participant("lobby")
    event = alice.wait_for("signal")
    await alice.signal("")
    received = await event
    assert received.data == ""
    assert received.name == "signal:signal"
    assert received.type == "signal"


async def test_on_as_decorator_and_call_accepts_plain_and_async_functions(participant: ParticipantFactory) -> None:
    alice = await participant("lobby")
    seen: list[str] = []
    ran = asyncio.Event()

    @alice.on("signal:chat")
    def plain(event: signalroom.SignalEvent) -> None:
        seen.append(f"plain {event.data}")

    async def coroutine(event: signalroom.SignalEvent) -> None:
        seen.append(f"async {event.data}")
        ran.set()

    assert alice.on("signal:chat", coroutine) is coroutine
    assert plain.__name__ == "plain"  # the decorator returns the function unchanged
    await alice.signal("x", type="chat")
    await asyncio.wait_for(ran.wait(), TIMEOUT)
    assert seen == ["plain x", "async x"]


async def test_signal_handlers_fire_by_type(participant: ParticipantFactory) -> None:
    alice = await participant("lobby")
    seen: list[tuple[str, str]] = []
    alice.on("signal", lambda e: seen.append(("signal", e.data)))
    alice.on("signal:a", lambda e: seen.append(("signal:a", e.data)))
    alice.on("signal:b", lambda e: seen.append(("signal:b", e.data)))
    done = alice.wait_for("signal:b")
    await alice.signal("1", type="a")
    await alice.signal("2", type="signal:b")  # the prefix is optional
    await done
    assert seen == [("signal", "1"), ("signal:a", "1"), ("signal", "2"), ("signal:b", "2")]


async def test_off_removes_one_handler_or_all(participant: ParticipantFactory) -> None:
    alice = await participant("lobby")
    seen: list[str] = []

    def one(event: signalroom.SignalEvent) -> None:
        seen.append("one")

    def two(event: signalroom.SignalEvent) -> None:
        seen.append("two")

    alice.on("signal:x", one)
    alice.on("signal:x", two)
    alice.off("signal:x", one)
    alice.off("signal:x", one)  # not registered any more: nothing happens
    first = alice.wait_for("signal:x")
    await alice.signal("", type="x")
    await first
    assert seen == ["two"]
    alice.off("signal:x")
    second = alice.wait_for("signal:x")
    await alice.signal("", type="x")
    await second
    assert seen == ["two"]


async def test_unknown_event_names_are_refused_with_a_hint(participant: ParticipantFactory) -> None:
    alice = await participant("lobby")
    with pytest.raises(signalroom.InvalidArgumentError, match="'signal:chat'"):
        alice.on("chat", print)  # type: ignore[signalroom-event]
    with pytest.raises(ValueError, match="signalling only"):
        alice.on("streamCreated", print)  # type: ignore[signalroom-event]
    with pytest.raises(ValueError, match="unknown event"):
        alice.wait_for("connectioncreated")  # type: ignore[signalroom-event]
    with pytest.raises(TypeError, match="callable"):
        alice.on("signal", "not a function")  # type: ignore[call-overload]


async def test_connection_events_carry_who_and_why(
    participant: ParticipantFactory, server_api: signalroom.ServerApi
) -> None:
    alice = await participant("lobby")
    events: list[signalroom.ConnectionEvent] = []
    alice.on("connectionCreated", events.append)
    alice.on("connectionDestroyed", events.append)
    destroyed = alice.wait_for("connectionDestroyed")
    bob = await participant("lobby", data="bob")
    await server_api.delete_connection("lobby", bob.connection_id)
    await destroyed
    assert [(e.name, e.connection.data, e.reason) for e in events] == [
        ("connectionCreated", "", None),  # alice herself: handlers registered before the first await see it
        ("connectionCreated", "bob", None),
        ("connectionDestroyed", "bob", "forceDisconnectByServer"),
    ]


async def test_wait_for_watches_from_the_call_and_filters(participant: ParticipantFactory) -> None:
    alice = await participant("lobby")
    bye = alice.wait_for("signal:chat", predicate=lambda e: "bye" in e.data, timeout=TIMEOUT)
    any_signal = alice.wait_for("signal")
    for text in ("hi", "how are you", "bye now"):
        await alice.signal(text, type="chat")
    assert (await bye).data == "bye now"
    assert (await any_signal).data == "hi"


async def test_wait_for_raises_the_predicates_exception(participant: ParticipantFactory) -> None:
    alice = await participant("lobby")

    def broken(event: signalroom.SignalEvent) -> bool:
        raise KeyError("oops")

    waiting = alice.wait_for("signal", predicate=broken)
    await alice.signal("x")
    with pytest.raises(KeyError, match="oops"):
        await waiting


async def test_wait_for_times_out_with_a_signal_timeout_error(participant: ParticipantFactory) -> None:
    alice = await participant("lobby")
    with pytest.raises(signalroom.SignalTimeoutError, match=r"no 'signal:never' event within 0.05 s") as info:
        await alice.wait_for("signal:never", timeout=0.05)
    assert isinstance(info.value, TimeoutError)
    assert info.value.timeout == 0.05
    with pytest.raises(signalroom.InvalidArgumentError):
        alice.wait_for("signal", timeout=-1)


async def test_wait_for_can_be_cancelled(participant: ParticipantFactory) -> None:
    alice = await participant("lobby")
    waiting = alice.wait_for("signal", timeout=None)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    done = alice.wait_for("signal")
    await alice.signal("still delivered")
    assert (await done).data == "still delivered"


async def test_signals_stream_in_order_and_end_with_the_session(participant: ParticipantFactory) -> None:
    alice = await participant("lobby")
    chat = alice.signals("chat")
    everything = alice.signals()
    for i in range(5):
        await alice.signal(str(i), type="chat")
        await alice.signal("other", type="other")
    received = []
    async for event in chat:
        received.append(event.data)
        if len(received) == 5:
            break
    assert received == ["0", "1", "2", "3", "4"]
    await alice.disconnect()
    rest = [event.name async for event in everything]  # ends: the session is over
    assert rest == ["signal:chat", "signal:other"] * 5
    late = alice.signals("chat")
    assert [event async for event in late] == []


async def test_a_closed_stream_stops_receiving(participant: ParticipantFactory) -> None:
    alice = await participant("lobby")
    async with alice.signals("chat") as stream:
        await alice.signal("one", type="chat")
        assert (await stream.__anext__()).data == "one"
    done = alice.wait_for("signal:chat")
    await alice.signal("two", type="chat")
    await done
    assert [event async for event in stream] == []


async def test_disconnect_delivers_session_disconnected_last_and_twice_is_harmless(
    participant: ParticipantFactory,
) -> None:
    alice = await participant("lobby")
    names: list[str] = []
    alice.on("sessionDisconnected", lambda e: names.append(f"{e.name}:{e.reason}"))
    await alice.disconnect()
    assert names == ["sessionDisconnected:disconnect"]  # delivered when disconnect() returns
    await alice.disconnect()
    assert names == ["sessionDisconnected:disconnect"]
    ended = await alice.wait_for("sessionDisconnected")
    assert ended.reason == "disconnect"
    with pytest.raises(signalroom.ConnectionLostError, match="join again"):
        await alice.wait_for("signal")


async def test_signals_sent_by_the_server_have_no_sender(
    participant: ParticipantFactory, server_api: signalroom.ServerApi
) -> None:
    alice = await participant("lobby")
    bob = await participant("lobby")
    at_alice = alice.wait_for("signal:news")
    at_bob = bob.wait_for("signal:news", timeout=0.3)
    await server_api.signal("lobby", "from the server", type="news", to=[alice.connection])
    event = await at_alice
    assert event.from_ is None
    assert event.data == "from the server"
    with pytest.raises(signalroom.SignalTimeoutError):
        await at_bob
    with pytest.raises(signalroom.InvalidSignalError, match="no sender"):
        await alice.signal("reply", to=[event.from_])  # type: ignore[list-item]


async def test_moderators_can_force_disconnect(participant: ParticipantFactory) -> None:
    moderator = await participant("lobby", role="MODERATOR")
    bob = await participant("lobby")
    assert moderator.role == "MODERATOR"
    evicted = bob.wait_for("sessionDisconnected")
    await moderator.force_disconnect(bob.connection)
    assert (await evicted).reason == "forceDisconnectByUser"
    assert bob.end_reason == "forceDisconnectByUser"

"""signalroom.testing, the pytest plugin: its fixtures and assert_signal."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

import signalroom
import signalroom.testing
from signalroom.testing import ParticipantFactory, assert_signal


def test_the_plugin_is_loaded_through_its_entry_point(pytestconfig: pytest.Config) -> None:
    assert pytestconfig.pluginmanager.get_plugin("signalroom") is signalroom.testing


def test_signalroom_server_runs_in_process_with_a_random_secret(signalroom_server: signalroom.Server) -> None:
    assert signalroom_server.running
    assert signalroom_server.url.startswith("http://127.0.0.1:")
    assert signalroom_server.secret.startswith("test-") and len(signalroom_server.secret) > 10


async def test_server_api_talks_to_that_server(
    server_api: signalroom.ServerApi, signalroom_server: signalroom.Server
) -> None:
    assert server_api.url == f"{signalroom_server.url}/openvidu/api"
    assert await server_api.list_sessions() == []


async def test_participant_joins_creating_the_session_if_needed(
    participant: ParticipantFactory, server_api: signalroom.ServerApi
) -> None:
    alice = await participant("lobby", data="alice")
    bob = await participant("lobby", data="bob", server_data="srv", role="MODERATOR")
    carol = await participant("other")
    assert alice.session_id == bob.session_id == "lobby"
    assert carol.session_id == "other"
    assert bob.connection.data == "bob%/%srv"
    assert bob.role == "MODERATOR"
    assert sorted(s.session_id for s in await server_api.list_sessions()) == ["lobby", "other"]
    fast = await participant("lobby", ping_interval=1.0)  # connect() options pass through
    assert fast.state == "connected"


async def test_assert_signal_finds_signals_that_arrived_before_it_was_called(participant: ParticipantFactory) -> None:
    alice = await participant("lobby")
    bob = await participant("lobby")
    arrived = bob.wait_for("signal:chat")
    await alice.signal("early", type="chat")
    await arrived  # bob has it: assert_signal is called after the fact
    event = await assert_signal(bob, "chat", data="early", sender=alice.connection)
    assert event.data == "early"
    with pytest.raises(AssertionError, match="received no signal with type 'chat', data 'early'"):
        await assert_signal(bob, "chat", data="early", timeout=0.1)  # each signal counts once


async def test_assert_signal_waits_and_matches_type_data_and_sender(
    participant: ParticipantFactory,
    server_api: signalroom.ServerApi,
    assert_signal: Callable[..., Awaitable[signalroom.SignalEvent]],
) -> None:
    alice = await participant("lobby")
    bob = await participant("lobby")
    await alice.signal("one", type="a", to=[bob.connection])
    await server_api.signal("lobby", "two", type="b", to=[bob.connection])
    assert (await assert_signal(bob, "signal:b", sender=None)).data == "two"
    assert (await assert_signal(bob, sender=alice.connection_id)).data == "one"
    with pytest.raises(AssertionError) as info:
        await assert_signal(bob, "a", data="three", timeout=0.2)
    message = str(info.value)
    assert "type 'a', data 'three' within 0.2 s" in message
    assert "0 other signal(s)" in message  # the two above were claimed
    await alice.signal("four", type="a", to=[bob.connection])
    with pytest.raises(AssertionError, match=r"1 other signal\(s\): \[SignalEvent\(type='a', data='four'"):
        await assert_signal(bob, "a", data="three", timeout=0.2)


async def test_assert_signal_works_on_any_session_for_signals_still_to_come(
    server_api: signalroom.ServerApi,
) -> None:
    await server_api.create_session("lobby")
    async with signalroom.connect((await server_api.create_connection("lobby")).token) as session:
        waiting = asyncio.ensure_future(assert_signal(session, "chat", data="later"))
        await asyncio.sleep(0)  # let it start watching
        await session.signal("later", type="chat")
        assert (await waiting).data == "later"

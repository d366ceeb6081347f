"""The error hierarchy: each error is raised where it should be, subclasses the right built-in, and
says what to do; a server that goes away."""

from __future__ import annotations

import asyncio
import os
import pickle
import signal as signals
from typing import TYPE_CHECKING

import pytest
import websockets.asyncio.server

import signalroom
from signalroom.testing import ParticipantFactory

if TYPE_CHECKING:
    from conftest import SignalroomServer

TIMEOUT = 10.0


def test_the_hierarchy_subclasses_the_built_ins() -> None:
    assert issubclass(signalroom.InvalidSignalError, ValueError)
    assert issubclass(signalroom.InvalidArgumentError, ValueError)
    assert issubclass(signalroom.ConnectionLostError, ConnectionError)
    assert issubclass(signalroom.SignalTimeoutError, TimeoutError)
    assert issubclass(signalroom.ServerStartError, OSError)
    for cls in (
        signalroom.InvalidSignalError,
        signalroom.InvalidArgumentError,
        signalroom.RpcError,
        signalroom.ConnectionLostError,
        signalroom.SignalTimeoutError,
        signalroom.ServerApiError,
        signalroom.ServerStartError,
    ):
        assert issubclass(cls, signalroom.SignalroomError)
    assert not issubclass(signalroom.RpcError, ValueError)


def test_errors_survive_pickling() -> None:
    error = signalroom.RpcError("sendMessage rejected: x (code 601)", code=601, message="x", method="sendMessage")
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is signalroom.RpcError
    assert (str(copy), copy.code, copy.message, copy.method) == (str(error), 601, "x", "sendMessage")
    start = signalroom.ServerStartError("cannot start the server: cannot listen on 127.0.0.1:1", errno=98)
    copy_start = pickle.loads(pickle.dumps(start))
    assert type(copy_start) is signalroom.ServerStartError
    assert (str(copy_start), copy_start.errno) == (str(start), 98)


async def test_invalid_signals_are_refused_before_anything_is_sent(participant: ParticipantFactory) -> None:
    alice = await participant("lobby")
    bob = await participant("lobby")
    received: list[str] = []
    bob.on("signal", lambda e: received.append(e.data))
    with pytest.raises(signalroom.InvalidSignalError, match="control characters") as bad_type:
        await alice.signal("hi", type="new\nline")
    assert bad_type.value.field == "type"
    with pytest.raises(signalroom.InvalidSignalError, match=r"to=\['con_x'\]"):
        await alice.signal("hi", to="con_x")  # type: ignore[arg-type]  # refused at run time too
    with pytest.raises(ValueError, match=r"to\[1\] is 42"):
        await alice.signal("hi", to=[bob.connection, 42])  # type: ignore[list-item]
    with pytest.raises(signalroom.InvalidSignalError, match="over the limit"):
        await alice.signal("hi", type="t" * 300)
    last = bob.wait_for("signal:ok")
    await alice.signal("fine", type="ok")
    await last
    assert received == ["fine"]  # none of the refused ones reached anybody
    await alice.disconnect()
    # Validation comes first: a bad signal is refused as such even on a session that is over.
    with pytest.raises(signalroom.InvalidSignalError):
        await alice.signal("hi", type="new\nline")


async def test_data_over_the_servers_limit_is_an_rpc_error_600() -> None:
    async with signalroom.Server(max_signal_bytes=1024) as server:
        api = signalroom.ServerApi(server.url, server.secret)
        await api.create_session("lobby")
        alice = await signalroom.connect((await api.create_connection("lobby")).token)
        bob = await signalroom.connect((await api.create_connection("lobby")).token)
        received: list[str] = []
        bob.on("signal", lambda e: received.append(e.data))
        # The size is the server's to judge (its limit is configured): the client sends, the server refuses.
        with pytest.raises(signalroom.RpcError, match="over the limit of 1024 bytes") as too_big:
            await alice.signal("x" * 1025, type="chat")
        assert too_big.value.code == 600
        assert too_big.value.method == "sendMessage"
        last = bob.wait_for("signal:ok")
        await alice.signal("fine", type="ok")
        await last
        assert received == ["fine"]
        await alice.disconnect()
        await bob.disconnect()


async def test_signals_as_large_as_openvidus_frame_allows_are_taken_by_default() -> None:
    async with signalroom.Server() as server:
        api = signalroom.ServerApi(server.url, server.secret)
        await api.create_session("lobby")
        alice = await signalroom.connect((await api.create_connection("lobby")).token)
        bob = await signalroom.connect((await api.create_connection("lobby")).token)
        # OpenVidu takes frames of 50 KiB and has no limit of its own on the data.
        big = "x" * (48 * 1024)
        arrived = bob.wait_for("signal:big", timeout=TIMEOUT)
        await alice.signal(big, type="big")
        assert (await arrived).data == big
        await alice.disconnect()
        await bob.disconnect()


async def test_an_unknown_recipient_is_an_rpc_error_601(participant: ParticipantFactory) -> None:
    alice = await participant("lobby")
    with pytest.raises(signalroom.RpcError) as info:
        await alice.signal("hi", type="chat", to=["con_nobody"])
    error = info.value
    assert error.code == 601
    assert error.method == "sendMessage"
    assert "con_nobody" in error.message
    assert "nothing was delivered" in str(error)
    assert not isinstance(error, ValueError)


async def test_a_used_token_is_an_rpc_error_401_that_says_what_to_do(server_api: signalroom.ServerApi) -> None:
    await server_api.create_session("lobby")
    conn = await server_api.create_connection("lobby")
    async with signalroom.connect(conn.token):
        with pytest.raises(signalroom.RpcError, match="create a new connection") as info:
            await signalroom.connect(conn.token)
    assert info.value.code == 401
    assert info.value.method == "joinRoom"


async def test_a_malformed_token_is_an_invalid_argument() -> None:
    with pytest.raises(signalroom.InvalidArgumentError, match="create_connection") as info:
        await signalroom.connect("not a token")
    assert isinstance(info.value, ValueError)
    with pytest.raises(signalroom.InvalidArgumentError, match="timeout"):
        await signalroom.connect("ws://127.0.0.1:1?sessionId=s&token=t", timeout=-1)


async def test_an_unreachable_server_is_a_connection_lost_error() -> None:
    with pytest.raises(signalroom.ConnectionLostError, match="is the server running") as info:
        await signalroom.connect("ws://127.0.0.1:9?sessionId=lobby&token=tok_x", connect_timeout=2)
    assert isinstance(info.value, ConnectionError)


async def test_force_disconnect_without_the_moderator_role_is_refused(participant: ParticipantFactory) -> None:
    alice = await participant("lobby")
    bob = await participant("lobby")
    with pytest.raises(signalroom.RpcError, match="MODERATOR") as info:
        await alice.force_disconnect(bob.connection_id)
    assert info.value.code == 401


async def test_server_api_errors_carry_the_status(
    signalroom_server: signalroom.Server, server_api: signalroom.ServerApi
) -> None:
    with pytest.raises(signalroom.ServerApiError, match="no such session") as not_found:
        await server_api.get_session("nope")
    assert not_found.value.status == 404
    wrong = signalroom.ServerApi(signalroom_server.url, "wrong secret")
    with pytest.raises(signalroom.ServerApiError, match="wrong secret") as unauthorized:
        await wrong.list_sessions()
    assert unauthorized.value.status == 401
    await server_api.create_session("lobby")
    with pytest.raises(signalroom.ServerApiError) as not_acceptable:
        await server_api.signal("lobby", "x", to=["con_nobody"])
    assert not_acceptable.value.status in (400, 406)
    down = signalroom.ServerApi("http://127.0.0.1:9", "s", timeout=2)
    with pytest.raises(signalroom.ServerApiError, match="is the server running") as unreachable:
        await down.list_sessions()
    assert unreachable.value.status is None


def test_bad_server_api_arguments_are_invalid_arguments() -> None:
    with pytest.raises(signalroom.InvalidArgumentError, match="http"):
        signalroom.ServerApi("ws://127.0.0.1:4443", "s")
    with pytest.raises(signalroom.InvalidArgumentError, match="timeout"):
        signalroom.ServerApi("http://127.0.0.1:4443", "s", timeout=float("nan"))


async def test_bad_roles_are_invalid_arguments(server_api: signalroom.ServerApi) -> None:
    await server_api.create_session("lobby")
    with pytest.raises(signalroom.InvalidArgumentError, match="MODERATOR"):
        await server_api.create_connection("lobby", role="ADMIN")  # type: ignore[arg-type]


async def test_a_request_without_an_answer_is_a_signal_timeout_error() -> None:
    # A WebSocket server that accepts the link and never answers a request.
    async def silent(connection: websockets.asyncio.server.ServerConnection) -> None:
        await connection.wait_closed()

    async with websockets.asyncio.server.serve(silent, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        with pytest.raises(signalroom.SignalTimeoutError, match="joinRoom timed out after 300 ms") as info:
            await signalroom.connect(f"ws://127.0.0.1:{port}?sessionId=s&token=t", timeout=0.3)
    assert isinstance(info.value, TimeoutError)
    assert info.value.method == "joinRoom"
    assert info.value.timeout == 0.3


async def test_a_handshake_without_an_answer_is_a_connection_lost_error() -> None:
    # A listening socket that never answers: the WebSocket handshake never completes.
    writers: list[asyncio.StreamWriter] = []
    server = await asyncio.start_server(lambda r, w: writers.append(w), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(signalroom.ConnectionLostError, match=r"timed out|cannot open") as info:
            await signalroom.connect(f"ws://127.0.0.1:{port}?sessionId=s&token=t", connect_timeout=0.2)
        assert isinstance(info.value, ConnectionError)
    finally:
        for writer in writers:
            writer.close()
            await writer.wait_closed()
        server.close()
        await server.wait_closed()


async def test_the_embedded_server_going_away(
    participant: ParticipantFactory, signalroom_server: signalroom.Server
) -> None:
    alice = await participant("lobby")
    waiting = alice.wait_for("signal:never", timeout=TIMEOUT)
    reasons: list[str] = []
    alice.on("sessionDisconnected", lambda e: reasons.append(e.reason))
    disconnected = alice.wait_for("sessionDisconnected", timeout=TIMEOUT)
    await signalroom_server.astop()
    assert (await disconnected).reason == "openviduServerStopped"
    assert reasons == ["openviduServerStopped"]
    with pytest.raises(signalroom.ConnectionLostError, match="before a 'signal:never' event") as pending:
        await waiting
    assert pending.value.reason == "openviduServerStopped"
    with pytest.raises(signalroom.ConnectionLostError, match="join again with a new token") as later:
        await alice.signal("anyone?")
    assert later.value.reason == "openviduServerStopped"
    assert isinstance(later.value, ConnectionError)
    assert alice.state == "disconnected"


async def test_a_server_process_that_dies(server_process: SignalroomServer) -> None:
    api = signalroom.ServerApi(server_process.url, server_process.secret)
    await api.create_session("lobby")
    conn = await api.create_connection("lobby")
    session = await signalroom.connect(
        conn.token, ping_interval=0.2, ping_timeout=0.5, reconnect_interval=0.1, reconnect_attempts=2
    )
    names: list[str] = []
    session.on("reconnecting", lambda e: names.append(e.name))
    session.on("sessionDisconnected", lambda e: names.append(f"{e.name}:{e.reason}"))
    disconnected = session.wait_for("sessionDisconnected", timeout=TIMEOUT)
    os.killpg(server_process.process.pid, signals.SIGKILL)  # no goodbye: the socket just breaks
    assert (await disconnected).reason == "networkDisconnect"
    assert names == ["reconnecting", "sessionDisconnected:networkDisconnect"]
    with pytest.raises(signalroom.ConnectionLostError) as info:
        await session.signal("hello?")
    assert info.value.reason == "networkDisconnect"

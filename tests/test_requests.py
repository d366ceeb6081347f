"""Request/reply between participants (``Session.request`` and ``@session.handle``), on one node
and across two nodes sharing Redis; and a signal too big for a frame, refused before sending."""

from __future__ import annotations

import asyncio
import concurrent.futures
import time

import pytest

import signalroom

Pair = tuple[signalroom.Session, signalroom.Session]


async def test_a_request_gets_the_reply_of_a_plain_or_async_handler(pair: Pair) -> None:
    alice, bob = pair

    @bob.handle("upper")
    def upper(request: signalroom.Request) -> str:
        assert request.caller.connection_id == alice.connection_id
        assert request.method == "upper"
        return request.payload.upper()

    @bob.handle("slow-echo")
    async def echo(request: signalroom.Request) -> str:
        await asyncio.sleep(0)
        return f"echo: {request.payload}"

    assert bob.handle("x", upper) is upper  # handle() returns the function
    assert await alice.request(bob.connection, "upper", 'héllo "q"\n') == 'HÉLLO "Q"\n'
    assert await alice.request(bob.connection_id, "slow-echo", "hi", timeout=5.0) == "echo: hi"
    assert await alice.request(bob.connection, "slow-echo") == "echo: "
    # Requests and replies never reach signal handlers.
    seen: list[signalroom.SignalEvent] = []
    alice.on("signal", seen.append)
    bob.on("signal", seen.append)
    assert await alice.request(bob.connection, "upper", "a") == "A"
    marker = bob.wait_for("signal:chat")
    await alice.signal("marker", type="chat", to=[bob.connection])
    await marker
    assert [e.type for e in seen] == ["chat"]


async def test_an_exception_in_the_handler_reaches_the_caller_with_its_message(pair: Pair) -> None:
    alice, bob = pair

    @bob.handle("divide")
    def divide(request: signalroom.Request) -> str:
        return str(1 / int(request.payload))

    @bob.handle("fail-later")
    async def fail_later(request: signalroom.Request) -> str:
        await asyncio.sleep(0)
        raise ValueError("no such answer")

    with pytest.raises(signalroom.HandlerError) as caught:
        await alice.request(bob.connection, "divide", "0")
    assert caught.value.message == "ZeroDivisionError: division by zero"
    assert caught.value.method == "divide" and caught.value.target == bob.connection_id
    with pytest.raises(signalroom.HandlerError, match="ValueError: no such answer"):
        await alice.request(bob.connection, "fail-later")
    assert await alice.request(bob.connection, "divide", "4") == "0.25"


async def test_no_handler_at_the_target(pair: Pair) -> None:
    alice, bob = pair
    with pytest.raises(signalroom.NoHandlerError, match="no handler of 'nope'"):
        await alice.request(bob.connection, "nope", "x")
    bob.handle("nope", lambda request: "now yes")
    assert await alice.request(bob.connection, "nope") == "now yes"
    bob.unhandle("nope")
    with pytest.raises(signalroom.RequestError):
        await alice.request(bob.connection, "nope")


def handle_forever(session: signalroom.Session) -> tuple[asyncio.Event, asyncio.Event]:
    """Makes `session` handle method ``forever`` by never answering: (started, cancelled)."""
    started, cancelled = asyncio.Event(), asyncio.Event()

    @session.handle("forever")
    async def forever(request: signalroom.Request) -> str:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "never"

    return started, cancelled


async def test_a_request_times_out_and_its_handler_is_cancelled(pair: Pair) -> None:
    alice, bob = pair
    started, cancelled = handle_forever(bob)

    with pytest.raises(signalroom.RequestTimeoutError) as caught:
        await alice.request(bob.connection, "forever", timeout=0.5)
    assert isinstance(caught.value, TimeoutError)
    assert caught.value.timeout == 0.5
    assert started.is_set()
    await asyncio.wait_for(cancelled.wait(), 5.0)


async def test_the_target_leaving_mid_request_fails_it(pair: Pair) -> None:
    alice, bob = pair
    started = asyncio.Event()

    @bob.handle("forever")
    async def forever(request: signalroom.Request) -> str:
        started.set()
        await asyncio.Event().wait()
        return "never"

    asking = asyncio.ensure_future(alice.request(bob.connection, "forever", timeout=30.0))
    await asyncio.wait_for(started.wait(), 5.0)
    await bob.disconnect()
    with pytest.raises(signalroom.TargetLeftError, match="left the session"):
        await asking
    # Nobody there any more: refused by the server, the same error.
    with pytest.raises(signalroom.TargetLeftError, match="not in session"):
        await alice.request(bob.connection, "forever")


async def test_cancelling_the_caller_cancels_the_handler(pair: Pair) -> None:
    alice, bob = pair
    started, cancelled = handle_forever(bob)

    asking = asyncio.ensure_future(alice.request(bob.connection, "forever", timeout=None))
    await asyncio.wait_for(started.wait(), 5.0)
    asking.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asking
    await asyncio.wait_for(cancelled.wait(), 5.0)
    # The session goes on.
    bob.handle("ping", lambda request: "pong")
    assert await alice.request(bob.connection, "ping") == "pong"


async def test_a_reply_too_big_for_a_signal(pair: Pair) -> None:
    alice, bob = pair
    bob.handle("big", lambda request: "x" * 100_000)
    with pytest.raises(signalroom.ReplyTooBigError, match="too big"):
        await alice.request(bob.connection, "big")
    bob.handle("ping", lambda request: "pong")
    assert await alice.request(bob.connection, "ping") == "pong"


async def test_a_hundred_concurrent_requests_between_two_participants(pair: Pair) -> None:
    alice, bob = pair

    @bob.handle("square")
    async def square(request: signalroom.Request) -> str:
        n = int(request.payload)
        await asyncio.sleep(0.001 * (n % 7))  # replies come back out of order
        return str(n * n)

    @alice.handle("cube")
    def cube(request: signalroom.Request) -> str:
        return str(int(request.payload) ** 3)

    squares = [alice.request(bob.connection, "square", str(n)) for n in range(100)]
    cubes = [bob.request(alice.connection, "cube", str(n)) for n in range(100)]
    replies = await asyncio.gather(*squares, *cubes)
    assert replies == [str(n * n) for n in range(100)] + [str(n**3) for n in range(100)]


async def test_a_signal_too_big_for_a_frame_is_refused_before_sending(pair: Pair) -> None:
    alice, bob = pair
    assert alice.max_frame_bytes == 51_200  # the server said so in its joinRoom answer
    reconnecting: list[signalroom.SessionEvent] = []
    alice.on("reconnecting", reconnecting.append)
    with pytest.raises(signalroom.InvalidSignalError) as caught:
        await alice.signal("x" * 100_000, type="chat")
    error = caught.value
    assert error.field == "data" and error.limit == 51_200
    assert error.size is not None and 100_000 < error.size < 100_200
    assert "51200" in str(error) and str(error.size) in str(error) and "send_text" in str(error)
    # The session is still up: the next signal goes through at once.
    got = bob.wait_for("signal:chat")
    await alice.signal("y" * 40_000, type="chat")
    assert (await got).data == "y" * 40_000
    assert alice.state == "connected" and reconnecting == []
    with pytest.raises(signalroom.InvalidSignalError):
        await alice.request(bob.connection, "m", "z" * 60_000)


def test_the_sync_facade_requests_handles_and_streams(signalroom_server: signalroom.Server) -> None:
    api = signalroom.sync.ServerApi(signalroom_server.url, signalroom_server.secret)
    api.create_session("sync")
    with (
        signalroom.sync.connect(api.create_connection("sync").token) as alice,
        signalroom.sync.connect(api.create_connection("sync").token) as bob,
    ):

        @bob.handle("upper")
        def upper(request: signalroom.Request) -> str:
            if request.payload == "fail":
                raise KeyError("nope")
            # A handler runs on a worker thread: it may block and ask back.
            return bob.request(request.caller, "suffix", request.payload.upper())

        alice.handle("suffix", lambda request: request.payload + "!")
        assert alice.request(bob.connection, "upper", "hi") == "HI!"
        with pytest.raises(signalroom.HandlerError, match="KeyError"):
            alice.request(bob.connection, "upper", "fail")
        with pytest.raises(signalroom.NoHandlerError):
            alice.request(bob.connection, "nothing")
        # A stream of any size, whole.
        text = "many words " * 20_000
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            received = pool.submit(bob.receive_text, "report", timeout=10.0)
            deadline = time.monotonic() + 10.0
            while not bob.aio._streams_in._waiters:  # until bob waits for it
                assert time.monotonic() < deadline
                time.sleep(0.01)
            alice.send_text(text, topic="report", to=[bob.connection])
            assert received.result(timeout=10.0) == text

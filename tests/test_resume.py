"""Zero-loss resume: what ``reconnected`` says, and a numbered stream of signals that must arrive
exactly once, in order, through a proxy (``tcpproxy.py``) that breaks the network mid-stream.

Each stream test prints what the receiver got (``lost``, ``duplicated``): run with ``-s`` to see it.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import pytest
import websockets.asyncio.server
from tcpproxy import TcpProxy

import signalroom

TIMEOUT = 10.0
#: Signals the sender sends.
SIGNALS = 300
#: The signal the sender is about to send when the network breaks.
CUT_AT = 100
#: The sender's pause between two signals, in seconds.
PACE = 0.001
#: How long the receiver may take to get the last signal once it was sent (a reconnection included).
SETTLE = 10.0
#: How long the receiver is watched for repeats after the last signal.
QUIET = 0.5

# -- what reconnected says, against a scripted server ----------------------------------------------


def _join_result() -> dict[str, Any]:
    """A joinRoom result as OpenVidu 2.32.2 sends it."""
    return {
        "id": "con_T1",
        "finalUserId": "97061F3F73313C3E",
        "createdAt": 1700000001000,
        "metadata": "",
        "value": [],
        "session": "S1",
        "version": "2.32.2",
        "mediaServer": "kurento",
        "videoSimulcast": False,
        "record": False,
        "role": "PUBLISHER",
        "sessionId": "rpc1",
    }


@pytest.mark.parametrize(
    ("connect_result", "recovered", "replayed"),
    [
        ({"value": "reconnection successful", "sessionId": "rpc1", "recovered": True, "replayed": 2}, True, 2),
        ({"value": "reconnection successful", "sessionId": "rpc1", "recovered": False, "replayed": 32}, False, 32),
        ({"value": "reconnection successful", "sessionId": "rpc1"}, None, 0),  # OpenVidu says nothing
    ],
)
async def test_reconnected_says_what_the_server_said_of_the_resume(
    connect_result: dict[str, Any], recovered: bool | None, replayed: int
) -> None:
    links = 0

    async def script(ws: websockets.asyncio.server.ServerConnection) -> None:
        nonlocal links
        links += 1
        async for text in ws:
            request = json.loads(text)
            method = request["method"]
            if method == "ping" and links == 1 and "interval" not in request.get("params", {}):
                ws.transport.abort()  # the first link breaks at its second ping, after the join
                return
            result: dict[str, Any] = {"value": "pong"}
            if method == "joinRoom":
                result = _join_result()
            elif method == "connect":
                result = connect_result
            await ws.send(json.dumps({"jsonrpc": "2.0", "id": request["id"], "result": result}))

    async with websockets.asyncio.server.serve(script, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        session = await signalroom.connect(
            f"ws://127.0.0.1:{port}?sessionId=S1&token=t",
            ping_interval=0.05,
            reconnect_interval=0.05,
            reconnect_attempts=20,
        )
        old_style: list[str] = []

        def takes_a_session_event(event: signalroom.SessionEvent) -> None:
            old_style.append(event.name)  # a handler written before ReconnectedEvent

        session.on("reconnected", takes_a_session_event)
        event = await session.wait_for("reconnected", timeout=TIMEOUT)
        assert isinstance(event, signalroom.ReconnectedEvent)
        assert isinstance(event, signalroom.SessionEvent)
        assert (event.name, event.recovered, event.replayed) == ("reconnected", recovered, replayed)
        assert repr(event) == f"ReconnectedEvent(recovered={recovered}, replayed={replayed})"
        await session.disconnect()
        assert old_style == ["reconnected"]


# -- a numbered stream through a broken network -----------------------------------------------------


@dataclass
class Seen:
    """What the receiver saw."""

    data: list[str] = field(default_factory=list)
    reconnected: list[tuple[bool | None, int]] = field(default_factory=list)

    @staticmethod
    def expected() -> list[str]:
        return [str(i) for i in range(SIGNALS)]

    @property
    def lost(self) -> int:
        got = set(self.data)
        return sum(1 for d in self.expected() if d not in got)

    @property
    def duplicated(self) -> int:
        return len(self.data) - len(set(self.data))

    @property
    def in_order(self) -> bool:
        numbers = [int(d) for d in self.data]
        return all(a < b for a, b in zip(numbers, numbers[1:]))

    def report(self, test: str) -> None:
        print(
            f"{test}: B received {len(self.data)} signals of {SIGNALS}: lost {self.lost}, "
            f"duplicated {self.duplicated}, in order {self.in_order}; reconnected {self.reconnected}"
        )


async def _stream_through(send_queue: int | None, cut: Callable[[TcpProxy], None]) -> Seen:
    """B joins through a proxy, A joins directly and sends B ``SIGNALS`` signals; ``cut`` breaks the
    network as A is about to send signal ``CUT_AT``."""
    async with TcpProxy() as proxy, signalroom.Server(public_url=proxy.url, send_queue=send_queue) as server:
        proxy.target = ("127.0.0.1", server.port)
        direct = f"ws://127.0.0.1:{server.port}"
        # REST straight to the server: only B's socket crosses the proxy.
        api = signalroom.ServerApi(f"http://127.0.0.1:{server.port}", server.secret)
        await api.create_session("stream")
        b = await signalroom.connect(
            (await api.create_connection("stream")).token,
            ping_interval=0.25,
            ping_timeout=0.5,
            reconnect_interval=0.1,
            reconnect_attempts=50,
        )
        a_joined = b.wait_for(
            "connectionCreated", predicate=lambda e: e.connection.connection_id != b.connection_id, timeout=TIMEOUT
        )
        a_token = (await api.create_connection("stream")).token
        a = await signalroom.connect(a_token.replace(f"ws://127.0.0.1:{proxy.port}", direct, 1))
        assert (await a_joined).connection == a.connection

        seen = Seen()
        last = asyncio.get_running_loop().create_future()

        def on_signal(event: signalroom.SignalEvent) -> None:
            seen.data.append(event.data)
            if event.data == str(SIGNALS - 1) and not last.done():
                last.set_result(None)

        b.on("signal:n", on_signal)
        b.on("reconnected", lambda e: seen.reconnected.append((e.recovered, e.replayed)))
        started = time.monotonic()
        for i in range(SIGNALS):
            if i == CUT_AT:
                print(f"cut after {(time.monotonic() - started) * 1000:.0f} ms")
                cut(proxy)
            await a.signal(str(i), type="n", to=[b.connection])
            await asyncio.sleep(PACE)
        print(f"A sent {SIGNALS} signals in {(time.monotonic() - started) * 1000:.0f} ms")
        try:
            await asyncio.wait_for(last, SETTLE)
            await asyncio.sleep(QUIET)  # repeats would come now
        except asyncio.TimeoutError:
            pass  # the last signal was lost: the counts say how much else was
        assert b.state != "disconnected", f"B's session ended: {b.end_reason}"
        await a.disconnect()
        await b.disconnect()
        return seen


def _assert_every_signal_once_in_order(seen: Seen) -> None:
    assert seen.reconnected, "B never reconnected"
    assert all(recovered is True for recovered, _ in seen.reconnected), seen.reconnected
    assert (seen.lost, seen.duplicated) == (0, 0), f"lost and duplicated; reconnected {seen.reconnected}"
    assert seen.data == Seen.expected()


async def test_a_reset_connection_loses_nothing_and_repeats_nothing() -> None:
    seen = await _stream_through(None, TcpProxy.reset)
    seen.report("reset")
    _assert_every_signal_once_in_order(seen)


async def test_a_silent_network_loses_nothing_and_repeats_nothing() -> None:
    seen = await _stream_through(None, lambda proxy: proxy.blackhole(2.0))
    seen.report("blackhole 2 s")
    _assert_every_signal_once_in_order(seen)


async def test_a_gap_larger_than_the_queue_is_reported_and_repeats_nothing() -> None:
    # The server keeps at most 32 notifications per participant: a 2 s silence outgrows it.
    seen = await _stream_through(32, lambda proxy: proxy.blackhole(2.0))
    seen.report("blackhole 2 s, queue of 32")
    assert any(recovered is False for recovered, _ in seen.reconnected), seen.reconnected
    assert seen.lost > 0, "a loss was reported but every signal arrived"
    assert seen.duplicated == 0
    assert seen.in_order, seen.data


async def test_a_signal_whose_await_is_cancelled_while_the_link_is_down_is_never_sent() -> None:
    """B's link is down (the proxy refuses it), B's signal waits for it and its await times out:
    that signal is not sent once the link is back; the next one is."""
    async with TcpProxy() as proxy, signalroom.Server(public_url=proxy.url) as server:
        proxy.target = ("127.0.0.1", server.port)
        direct = f"ws://127.0.0.1:{server.port}"
        api = signalroom.ServerApi(f"http://127.0.0.1:{server.port}", server.secret)
        await api.create_session("held")
        b = await signalroom.connect(
            (await api.create_connection("held")).token, reconnect_interval=0.05, reconnect_attempts=1000
        )
        a_token = (await api.create_connection("held")).token
        a = await signalroom.connect(a_token.replace(f"ws://127.0.0.1:{proxy.port}", direct, 1))
        got: list[str] = []
        a.on("signal:n", lambda e: got.append(e.data))
        after = a.wait_for("signal:n", predicate=lambda e: e.data == "after", timeout=TIMEOUT)
        await b.signal("before", type="n", to=[a.connection])

        reconnecting = b.wait_for("reconnecting", timeout=TIMEOUT)
        proxy.target = None  # B's attempts to reconnect are refused
        proxy.reset()
        await reconnecting
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(b.signal("held", type="n", to=[a.connection]), 0.2)
        assert b.state == "reconnecting"

        reconnected = b.wait_for("reconnected", timeout=TIMEOUT)
        proxy.target = ("127.0.0.1", server.port)
        await reconnected
        await b.signal("after", type="n", to=[a.connection])
        await after
        assert got == ["before", "after"]
        await a.disconnect()
        await b.disconnect()

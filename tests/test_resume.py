"""Zero-loss resume: what ``reconnected`` says."""

from __future__ import annotations

import json
from typing import Any

import pytest
import websockets.asyncio.server

import signalroom

TIMEOUT = 10.0

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
            if method == "ping" and links == 1 and "params" not in request:
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

"""End to end: the real openvidu-browser 2.32.2 loses its socket, reconnects by itself, and receives
the signals sent to it while it had none (its participant's outbox outlives the socket).

The browser reaches the server through a TCP proxy the test controls (``tcpproxy.py``); the server's
public URL is the proxy's, so tokens point there. The test resets the browser's connection and keeps
the proxy shut for a moment, so the signals are sent while the participant has no socket at all.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import TYPE_CHECKING

from tcpproxy import TcpProxy

import signalroom

if TYPE_CHECKING:
    from .conftest import OpenParticipant

SESSION_ID = "reconnecting"
#: Signals sent while the browser has no socket.
MISSED = 5
#: How long the proxy refuses new connections after the cut (openvidu-browser retries every 3 s).
SHUT_FOR = 1.5
#: A reconnection takes up to one retry interval of openvidu-browser after the proxy reopens.
RECONNECT_TIMEOUT = 15.0


async def test_a_browser_reconnects_and_receives_what_was_sent_meanwhile(open_participant: OpenParticipant) -> None:
    secret = "s3cr3t-" + secrets.token_hex(8)
    async with TcpProxy() as proxy, signalroom.Server(secret=secret, public_url=proxy.url) as server:
        proxy.target = ("127.0.0.1", server.port)
        # REST calls go to the server itself, not through the proxy.
        api = signalroom.ServerApi(f"http://127.0.0.1:{server.port}", secret)
        await api.create_session(SESSION_ID)
        connection = await api.create_connection(SESSION_ID)
        assert connection.token.startswith(f"ws://127.0.0.1:{proxy.port}"), connection.token
        alice = await open_participant("alice")
        joined = await alice.join(connection.token, {"name": "alice"})
        assert joined == {"ok": True, "connectionId": connection.connection_id}, joined

        await api.signal(SESSION_ID, "before", type="signal:chat", to=[connection.connection_id])
        await alice.wait_event("signal:chat", {"data": "before"})

        # The network breaks; for a moment nothing gets through to the server.
        target, proxy.target = proxy.target, None
        proxy.reset()
        await alice.wait_event("reconnecting", timeout=RECONNECT_TIMEOUT)
        for i in range(MISSED):
            await api.signal(SESSION_ID, f"missed-{i}", type="signal:chat", to=[connection.connection_id])
        await asyncio.sleep(SHUT_FOR)
        proxy.target = target

        await alice.wait_event("reconnected", timeout=RECONNECT_TIMEOUT)
        await api.signal(SESSION_ID, "after", type="signal:chat", to=[connection.connection_id])
        await alice.wait_event("signal:chat", {"data": "after"}, timeout=RECONNECT_TIMEOUT)

        received = [e["data"] for e in await alice.events("signal:chat")]
        assert received == ["before", *(f"missed-{i}" for i in range(MISSED)), "after"], received
        assert await alice.events("sessionDisconnected") == []
        assert [c.connection_id for c in (await api.get_session(SESSION_ID)).connections] == [connection.connection_id]

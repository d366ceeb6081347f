"""End to end: the real openvidu-browser 2.32.2 joined to one node of a cluster (nodes sharing a
redis-server, behind a balancer: the ``tcpproxy.py`` proxy a test points at one node or another, as a
balancer's health checks do) goes on when that node goes away:

- the node drains (SIGTERM in a rolling restart): the browser reconnects by itself to the other node,
  keeps its connection id, is never told the session ended, and receives every signal sent to it
  meanwhile (the drained node recorded how far it wrote to the browser's socket; the other replays
  the rest, although openvidu-browser says nothing of what it got);
- the node is killed (SIGKILL) and no live node can be reached for 9 s: when the browser reaches one,
  its participant is still there (the others give a dead node's participants the reconnection grace
  once they find it dead).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tcpproxy import TcpProxy

import signalroom
from signalroom.testing import SignalroomCluster

if TYPE_CHECKING:
    from .conftest import OpenParticipant

#: The ``start_server`` fixture of ``tests/conftest.py``: a ``signalroom serve`` process.
StartServer = Callable[..., contextlib.AbstractContextManager[Any]]

SESSION_ID = "restarts"
#: Signals sent to the browser while its node drains.
SENT = 10
#: A reconnection takes up to one retry interval of openvidu-browser (3 s) and a node's drain window.
RECONNECT_TIMEOUT = 20.0
#: How long the browser reaches no live node after a SIGKILL (the issue's scenario).
UNREACHABLE_FOR = 9.0


async def test_a_browser_on_a_draining_node_resumes_on_the_other_and_misses_nothing(
    signalroom_cluster: SignalroomCluster, open_participant: OpenParticipant
) -> None:
    a, b = signalroom_cluster.nodes
    async with TcpProxy(("127.0.0.1", a.port)) as balancer:
        api = signalroom_cluster.api(1)
        await api.create_session(SESSION_ID)
        connection = await signalroom_cluster.api(0).create_connection(SESSION_ID)
        token = connection.token.replace(a.url.replace("http", "ws", 1), balancer.url.replace("http", "ws", 1))
        alice = await open_participant("alice")
        joined = await alice.join(token, {"name": "alice"})
        assert joined == {"ok": True, "connectionId": connection.connection_id}, joined
        to = [connection.connection_id]
        await api.signal(SESSION_ID, "before", type="signal:chat", to=to)
        await alice.wait_event("signal:chat", {"data": "before"})

        # Node A drains; the balancer's health check sends new sockets to node B from now on.
        drained = asyncio.ensure_future(a.adrain())
        balancer.target = ("127.0.0.1", b.port)
        await alice.wait_event("reconnecting", timeout=RECONNECT_TIMEOUT)
        for i in range(SENT):
            await api.signal(SESSION_ID, f"meanwhile-{i}", type="signal:chat", to=to)
        await alice.wait_event("reconnected", timeout=RECONNECT_TIMEOUT)
        await drained
        await api.signal(SESSION_ID, "after", type="signal:chat", to=to)
        await alice.wait_event("signal:chat", {"data": "after"}, timeout=RECONNECT_TIMEOUT)

        received = [e["data"] for e in await alice.events("signal:chat")]
        assert received == ["before", *(f"meanwhile-{i}" for i in range(SENT)), "after"], received
        assert await alice.events("sessionDisconnected") == []
        assert await alice.events("exception") == []
        listed = [c.connection_id for c in (await api.get_session(SESSION_ID)).connections]
        assert listed == [connection.connection_id], listed


async def test_a_browser_survives_its_node_killed_and_nine_seconds_without_a_live_node(
    signalroom_cluster: SignalroomCluster, open_participant: OpenParticipant, start_server: StartServer
) -> None:
    b = signalroom_cluster.nodes[1]
    async with TcpProxy() as balancer:
        with start_server("--broker", signalroom_cluster.broker) as doomed:
            balancer.target = ("127.0.0.1", int(doomed.url.rsplit(":", 1)[1]))
            api = signalroom_cluster.api(1)
            await api.create_session(SESSION_ID)
            created = doomed.rest("POST", f"/sessions/{SESSION_ID}/connection", {})
            assert created.status == 200, created
            token, connection_id = created.json()["token"], created.json()["connectionId"]
            # The deployment's tokens point to its balancer.
            token = token.replace(doomed.url.replace("http", "ws", 1), balancer.url.replace("http", "ws", 1))
            alice = await open_participant("alice")
            joined = await alice.join(token, {"name": "alice"})
            assert joined == {"ok": True, "connectionId": connection_id}, joined
            watcher = await signalroom.connect((await api.create_connection(SESSION_ID)).token, data="watcher")

            # The node dies; for 9 s the balancer finds no live node to send the browser to.
            balancer.target = None
            doomed.process.kill()
            doomed.process.wait()
            balancer.reset()
            await alice.wait_event("reconnecting", timeout=RECONNECT_TIMEOUT)
            await asyncio.sleep(UNREACHABLE_FOR)
            balancer.target = ("127.0.0.1", b.port)

            await alice.wait_event("reconnected", timeout=RECONNECT_TIMEOUT)
            await api.signal(SESSION_ID, "after", type="signal:chat", to=[connection_id])
            await alice.wait_event("signal:chat", {"data": "after"}, timeout=RECONNECT_TIMEOUT)
            assert await alice.events("sessionDisconnected") == []
            assert [c.connection_id for c in watcher.remote_connections] == [connection_id]
            await watcher.disconnect()

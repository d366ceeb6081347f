"""Participants joined to different nodes of a two-node cluster (``signalroom_cluster``: two servers
sharing one redis-server) exchange broadcast and targeted signals and handler replies."""

from __future__ import annotations

import asyncio

from tcpproxy import TcpProxy

import signalroom
from signalroom.testing import SignalroomCluster, assert_signal, record_signals

TIMEOUT = 10.0


async def join(cluster: SignalroomCluster, node: int, session_id: str, data: str) -> signalroom.Session:
    """A participant on ``node`` (the token is minted there and points there)."""
    conn = await cluster.api(node).create_connection(session_id)
    assert conn.token.startswith(cluster.nodes[node].url.replace("http", "ws", 1)), conn.token
    session = await signalroom.connect(conn.token, data=data)
    record_signals(session)
    return session


async def test_participants_on_different_nodes_see_each_other(signalroom_cluster: SignalroomCluster) -> None:
    await signalroom_cluster.api(0).create_session("lobby")
    alice = await join(signalroom_cluster, 0, "lobby", "alice")
    bob = await join(signalroom_cluster, 1, "lobby", "bob")
    try:
        assert [c.connection_id for c in bob.remote_connections] == [alice.connection_id]
        for api in (signalroom_cluster.api(0), signalroom_cluster.api(1)):
            listed = {c.connection_id for c in await api.list_connections("lobby")}
            assert listed == {alice.connection_id, bob.connection_id}
    finally:
        await alice.disconnect()
        await bob.disconnect()


async def test_broadcast_and_targeted_signals_cross_nodes_both_ways(signalroom_cluster: SignalroomCluster) -> None:
    await signalroom_cluster.api(1).create_session("lobby")
    alice = await join(signalroom_cluster, 0, "lobby", "alice")
    bob = await join(signalroom_cluster, 1, "lobby", "bob")
    carol = await join(signalroom_cluster, 1, "lobby", "carol")
    try:
        await alice.signal("hello all", type="chat")
        for s in (alice, bob, carol):
            await assert_signal(s, "chat", data="hello all", sender=alice.connection, timeout=TIMEOUT)
        await bob.signal("hello back", type="chat")
        for s in (alice, bob, carol):
            await assert_signal(s, "chat", data="hello back", sender=bob.connection, timeout=TIMEOUT)

        direct: dict[str, list[str]] = {s.connection_id: [] for s in (alice, bob, carol)}
        for s in (alice, bob, carol):
            s.on("signal:dm", lambda e, got=direct[s.connection_id]: got.append(e.data))
        await alice.signal("only carol", type="dm", to=[carol.connection])
        await assert_signal(carol, "dm", data="only carol", sender=alice.connection, timeout=TIMEOUT)
        await carol.signal("only alice", type="dm", to=[alice.connection])
        await assert_signal(alice, "dm", data="only alice", sender=carol.connection, timeout=TIMEOUT)
        # Nobody else got a direct message (a last broadcast, sent after both were delivered,
        # has arrived everywhere).
        await alice.signal("end", type="end")
        for s in (alice, bob, carol):
            await assert_signal(s, "end", timeout=TIMEOUT)
        assert direct == {
            alice.connection_id: ["only alice"],
            bob.connection_id: [],
            carol.connection_id: ["only carol"],
        }
    finally:
        for s in (alice, bob, carol):
            await s.disconnect()


async def test_a_handler_on_one_node_answers_a_participant_on_the_other(
    signalroom_cluster: SignalroomCluster,
) -> None:
    await signalroom_cluster.api(0).create_session("lobby")
    alice = await join(signalroom_cluster, 0, "lobby", "alice")
    bob = await join(signalroom_cluster, 1, "lobby", "bob")
    try:

        @bob.on("signal:question")
        async def answer(event: signalroom.SignalEvent) -> None:
            assert event.from_ is not None
            await bob.signal(f"answer to {event.data}", type="answer", to=[event.from_])

        await alice.signal("life", type="question", to=[bob.connection])
        event = await assert_signal(alice, "answer", timeout=TIMEOUT)
        assert (event.data, event.from_) == ("answer to life", bob.connection)
    finally:
        await alice.disconnect()
        await bob.disconnect()


async def test_a_bot_on_a_draining_node_resumes_on_the_other_and_misses_nothing(
    signalroom_cluster: SignalroomCluster,
) -> None:
    """A node drains (as on SIGTERM in a rolling restart) while the server streams signals to a bot
    joined there: the bot reconnects through the balancer to the other node, keeps its connection
    id, and gets every signal once, in order; nobody is told it left."""
    a, b = signalroom_cluster.nodes
    # The deployment's balancer: it sends new sockets to node A until its health check finds A
    # draining, then to node B; the tokens point to it.
    balancer = await TcpProxy(("127.0.0.1", a.port)).start()
    await signalroom_cluster.api(0).create_session("lobby")
    token = (await signalroom_cluster.api(0).create_connection("lobby")).token
    token = token.replace(a.url.replace("http", "ws", 1), balancer.url.replace("http", "ws", 1))
    bot = await signalroom.connect(token, data="bot", reconnect_interval=0.1)
    watcher = await join(signalroom_cluster, 1, "lobby", "watcher")
    got: list[int] = []
    left: list[str] = []
    count = 200
    everything = asyncio.Event()

    def take(e: signalroom.SignalEvent) -> None:
        got.append(int(e.data))
        if len(got) >= count:
            everything.set()

    bot.on("signal:n", take)
    watcher.on("connectionDestroyed", lambda e: left.append(e.connection.connection_id))
    connection_id = bot.connection_id
    api = signalroom_cluster.api(1)
    try:
        drained = asyncio.ensure_future(a.adrain())
        balancer.target = ("127.0.0.1", b.port)
        for i in range(count):
            await api.signal("lobby", str(i), type="n", to=[connection_id])
            if i == count // 2:
                await drained
        await asyncio.wait_for(everything.wait(), TIMEOUT)
        assert got == list(range(count)), "every signal once, in order"
        assert bot.connection_id == connection_id
        assert left == []
        assert {c.connection_id for c in await api.list_connections("lobby")} >= {connection_id}
    finally:
        await bot.disconnect()
        await watcher.disconnect()
        await balancer.stop()

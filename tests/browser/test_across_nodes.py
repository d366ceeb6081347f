"""End to end: two real openvidu-browser 2.32.2 participants on different nodes of a cluster (two
in-process ``signalroom.Server`` sharing a redis-server: the ``signalroom_cluster`` fixture) see
each other join and exchange broadcast and targeted signals both ways.

Each participant's token is minted by its own node, so it joins there. The same test also runs,
as a strict xfail, against two servers that share nothing: there every join succeeds on its own
node and nothing crosses, so the test must fail; if it passed, it would not be checking that
signals cross nodes.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

import signalroom
from signalroom.testing import SignalroomCluster

from .harness import Participant

if TYPE_CHECKING:
    from .conftest import OpenParticipant

SESSION_ID = "across"
#: How long a signal or a notification has to reach the other node's participant.
CROSS_TIMEOUT = 5.0
#: HTTP status of a session that already exists (created through the other node).
CONFLICT = 409


@pytest.fixture(
    params=[
        "shared",
        pytest.param(
            "unshared",
            marks=pytest.mark.xfail(
                raises=AssertionError, reason="two servers without a shared Redis: nothing crosses"
            ),
        ),
    ]
)
def nodes(request: pytest.FixtureRequest) -> Iterator[tuple[signalroom.Server, signalroom.Server]]:
    """Two nodes: the ``signalroom_cluster`` fixture, or (the control) two servers sharing nothing."""
    if request.param == "shared":
        cluster: SignalroomCluster = request.getfixturevalue("signalroom_cluster")
        yield cluster.nodes
        return
    secret = "test-" + secrets.token_hex(8)
    with signalroom.Server(secret=secret) as a, signalroom.Server(secret=secret) as b:
        yield (a, b)


async def join_on(node: signalroom.Server, page: Participant, name: str) -> str:
    """Mints a token on ``node`` (creating the session there unless it exists) and joins ``page``
    with it; returns the connection id."""
    api = node.api()
    try:
        await api.create_session(SESSION_ID)
    except signalroom.ServerApiError as error:
        assert error.status == CONFLICT, error
    connection = await api.create_connection(SESSION_ID, data=f"server-{name}")
    assert connection.token.startswith(node.url.replace("http", "ws", 1) + "?"), connection.token
    joined = await page.join(connection.token, {"name": name})
    assert joined == {"ok": True, "connectionId": connection.connection_id}, (name, joined)
    return connection.connection_id


async def test_browsers_on_two_nodes_exchange_signals(
    nodes: tuple[signalroom.Server, signalroom.Server], open_participant: OpenParticipant
) -> None:
    alice, bob = await open_participant("alice"), await open_participant("bob")
    a = await join_on(nodes[0], alice, "alice")
    b = await join_on(nodes[1], bob, "bob")

    # Broadcasts, both ways: everyone gets them, the sender included, from the sender.
    for sender, sender_id, data in ((alice, a, "hello from node 0"), (bob, b, "hello from node 1")):
        assert await sender.signal(data, "chat") == {"ok": True}
        for receiver in (alice, bob):
            event = await receiver.wait_event("signal:chat", {"data": data, "from": sender_id}, timeout=CROSS_TIMEOUT)
            assert event["type"] == "signal:chat", event

    # Targeted signals, both ways: only the target gets them.
    for sender, sender_id, target, target_id in ((alice, a, bob, b), (bob, b, alice, a)):
        data = f"only {target.name}"
        assert await sender.signal(data, "dm", to=[target_id]) == {"ok": True}
        # The page records every signal as kind "signal" (and "signal:chat" ones as such too).
        await target.wait_event("signal", {"type": "signal:dm", "data": data, "from": sender_id}, timeout=CROSS_TIMEOUT)
    # A last broadcast from each, sent after the targeted signals, has reached both pages: anything
    # else sent earlier that was going to arrive has arrived.
    for sender, sender_id in ((alice, a), (bob, b)):
        assert await sender.signal("end", "end") == {"ok": True}
        for receiver in (alice, bob):
            await receiver.wait_event("signal", {"type": "signal:end", "from": sender_id}, timeout=CROSS_TIMEOUT)
    assert [e["data"] for e in await alice.events("signal", {"type": "signal:dm"})] == ["only alice"]
    assert [e["data"] for e in await bob.events("signal", {"type": "signal:dm"})] == ["only bob"]

    # Each saw the other join (alice through a participantJoined from node 1, bob in his joinRoom
    # answer, which lists node 0's participant), once.
    for page in (alice, bob):
        created = [e["connectionId"] for e in await page.events("connectionCreated")]
        assert sorted(created) == sorted([a, b]), f"{page.name}: {created}"
        assert await page.events("sessionDisconnected") == []
        assert await page.events("exception") == []
    # Both nodes list both participants.
    for node in nodes:
        listed = {c.connection_id for c in await node.api().list_connections(SESSION_ID)}
        assert listed == {a, b}, listed

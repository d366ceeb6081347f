"""One process in many sessions: results and events of many sessions reach their awaiters when
they are delivered together (in batches), successes and failures mixed, each to its own future."""

from __future__ import annotations

import asyncio
import gc
import threading
from collections.abc import Callable

import pytest

import signalroom
from signalroom.testing import ParticipantFactory

TIMEOUT = 10.0


async def test_many_signals_of_many_sessions_each_resolve_their_own_future(
    participant: ParticipantFactory,
) -> None:
    sessions = [await participant(f"room-{i % 5}", data=f"p{i}") for i in range(20)]
    received: dict[str, int] = {s.connection_id: 0 for s in sessions}
    everyone = asyncio.get_running_loop().create_future()
    per_sender = 25

    def count(session: signalroom.Session) -> Callable[[signalroom.SignalEvent], None]:
        def on_signal(event: signalroom.SignalEvent) -> None:
            received[session.connection_id] += 1
            if all(n >= per_sender for n in received.values()) and not everyone.done():
                everyone.set_result(None)

        return on_signal

    for s in sessions:
        s.on("signal:self", count(s))
    # Signals to oneself, and to somebody who is not there (refused: 601), all in flight at once:
    # the refusals must reach their own awaiters, as exceptions, and no success get lost.
    sends = []
    for s in sessions:
        for n in range(per_sender):
            sends.append(s.signal(f"{n}", type="self", to=[s.connection]))
            sends.append(s.signal("x", type="self", to=["con_nobody"]))
    results = await asyncio.wait_for(asyncio.gather(*sends, return_exceptions=True), TIMEOUT)
    ok = results[0::2]
    refused = results[1::2]
    assert ok == [None] * len(ok)
    assert all(isinstance(r, signalroom.RpcError) and r.code == 601 for r in refused), refused[:3]
    await asyncio.wait_for(everyone, TIMEOUT)
    assert set(received.values()) == {per_sender}


async def test_a_cancelled_signal_await_does_not_disturb_the_others(participant: ParticipantFactory) -> None:
    session = await participant("lobby")
    got: list[str] = []
    session.on("signal:n", lambda e: got.append(e.data))
    last = session.wait_for("signal:n", predicate=lambda e: e.data == "49")
    first = asyncio.ensure_future(session.signal("0", type="n", to=[session.connection]))
    await asyncio.sleep(0)  # started: its result is on its way
    first.cancel()
    rest = [session.signal(str(i), type="n", to=[session.connection]) for i in range(1, 50)]
    await asyncio.wait_for(asyncio.gather(*rest), TIMEOUT)
    with pytest.raises(asyncio.CancelledError):
        await first
    await asyncio.wait_for(last, TIMEOUT)
    assert [d for d in got if d != "0"] == [str(i) for i in range(1, 50)]


async def test_events_of_many_sessions_blocked_together_arrive_in_order_in_one_batch_each(
    participant: ParticipantFactory, server_api: signalroom.ServerApi
) -> None:
    """Events of 20 sessions of one loop, queued while the loop is busy, cross together (one hub
    batch): each session gets its own, in order, in one batch, and none of another's."""
    receivers = [await participant(f"hub-{i}") for i in range(20)]
    tokens = [(await server_api.create_connection(f"hub-{i}")).token for i in range(20)]
    per_receiver = 50
    got: dict[str, list[str]] = {r.connection_id: [] for r in receivers}
    for r in receivers:
        r.on("signal:b", lambda e, r=r: got[r.connection_id].append(e.data))
    sent = threading.Event()
    errors: list[BaseException] = []

    def send_from_another_loop() -> None:
        async def main() -> None:
            senders = [await signalroom.connect(t) for t in tokens]
            try:
                await asyncio.gather(
                    *(
                        s.signal(f"{r.connection_id} {n}", type="b", to=[r.connection])
                        for n in range(per_receiver)
                        for s, r in zip(senders, receivers)
                    )
                )
            finally:
                await asyncio.gather(*(s.disconnect() for s in senders))

        try:
            asyncio.run(main())
        except BaseException as error:  # noqa: BLE001 (reported by the test)
            errors.append(error)
        finally:
            sent.set()

    before: list[int] = []

    @receivers[0].on("signal:hold")
    def hold(event: signalroom.SignalEvent) -> None:
        before.extend(r._batches for r in receivers)
        thread = threading.Thread(target=send_from_another_loop)
        thread.start()
        assert sent.wait(30.0), "the sender thread did not finish"  # the loop is blocked meanwhile

    def is_last(receiver: signalroom.Session) -> Callable[[signalroom.SignalEvent], bool]:
        return lambda event: event.data == f"{receiver.connection_id} {per_receiver - 1}"

    last = [r.wait_for("signal:b", predicate=is_last(r), timeout=30.0) for r in receivers]
    await receivers[0].signal("", type="hold", to=[receivers[0].connection])
    await asyncio.gather(*last)
    assert errors == []
    for r in receivers:
        assert got[r.connection_id] == [f"{r.connection_id} {n}" for n in range(per_receiver)]
    crossings = [r._batches - b for r, b in zip(receivers, before)]
    # The sender's joins and leaves reach every receiver too (connectionCreated/Destroyed), some
    # maybe after the loop was released: a few batches at most, not one per signal.
    assert all(1 <= c <= 3 for c in crossings), crossings


async def test_refused_signals_leave_nothing_behind_for_the_gc(participant: ParticipantFactory) -> None:
    """A refused signal's error refers, through its traceback, to the frame that awaited the
    signal, which refers to what it awaited, which holds the error: the cyclic GC must be able to
    see that whole cycle and free it (else every failure would be kept for good)."""
    session = await participant("lobby")

    def errors() -> int:
        gc.collect()
        return sum(1 for o in gc.get_objects() if isinstance(o, signalroom.RpcError))

    before = errors()
    for _ in range(20):
        try:
            await asyncio.wait_for(session.signal("x", type="n", to=["con_nobody"]), TIMEOUT)
        except signalroom.RpcError as error:
            assert error.code == 601
        else:
            pytest.fail("a signal to nobody was not refused")
    assert errors() == before

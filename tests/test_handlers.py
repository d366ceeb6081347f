"""Handler rules: arrival order, coroutine handlers as tasks, replies from handlers, failing handlers,
slow handlers, and events crossing from Rust in batches."""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import pytest

import signalroom
from signalroom.testing import ParticipantFactory

TIMEOUT = 10.0


async def test_reply_from_a_coroutine_handler(participant: ParticipantFactory) -> None:
    alice = await participant("lobby", data="alice")
    bob = await participant("lobby", data="bob")

    @bob.on("signal:question")
    async def answer(event: signalroom.SignalEvent) -> None:
        assert event.from_ is not None
        await bob.signal(f"answer to {event.data}", type="answer", to=[event.from_])

    answers = alice.wait_for("signal:answer", timeout=TIMEOUT)
    await alice.signal("life", type="question", to=[bob.connection])
    event = await answers
    assert event.data == "answer to life"
    assert event.from_ == bob.connection


async def test_a_handler_can_send_and_wait_for_the_echo_of_its_own_broadcast(participant: ParticipantFactory) -> None:
    alice = await participant("lobby")
    done: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    @alice.on("signal:ping")
    async def ping(event: signalroom.SignalEvent) -> None:
        echo = alice.wait_for("signal:pong", timeout=TIMEOUT)
        await alice.signal("pong!", type="pong")  # the pump is free while this handler awaits
        done.set_result((await echo).data)

    await alice.signal("", type="ping")
    assert await asyncio.wait_for(done, TIMEOUT) == "pong!"


async def test_a_plain_handler_can_schedule_a_reply(participant: ParticipantFactory) -> None:
    alice = await participant("lobby")
    bob = await participant("lobby")
    tasks: list[asyncio.Task[None]] = []
    bob.on(
        "signal:hi",
        lambda e: tasks.append(asyncio.ensure_future(bob.signal("hello", type="hello", to=[alice.connection]))),
    )
    hello = alice.wait_for("signal:hello")
    await alice.signal("", type="hi")
    assert (await hello).from_ == bob.connection
    await asyncio.gather(*tasks)


async def test_one_thousand_signals_arrive_in_order(participant: ParticipantFactory) -> None:
    sender = await participant("lobby")
    receiver = await participant("lobby")
    received: list[str] = []
    last = receiver.wait_for("signal:seq", predicate=lambda e: e.data == "999", timeout=30.0)
    receiver.on("signal:seq", lambda e: received.append(e.data))
    # Sent concurrently, as fast as the link takes them; the server keeps the order of one sender.
    await asyncio.gather(*(sender.signal(str(i), type="seq", to=[receiver.connection]) for i in range(1000)))
    await last
    assert received == [str(i) for i in range(1000)]


async def test_handlers_run_in_registration_order_and_coroutines_start_in_arrival_order(
    participant: ParticipantFactory,
) -> None:
    alice = await participant("lobby")
    order: list[str] = []
    finished = asyncio.Event()

    async def slow(event: signalroom.SignalEvent) -> None:
        order.append(f"async start {event.data}")
        await asyncio.sleep(0)  # yields: other events and handlers go on meanwhile
        if event.data == "2":
            finished.set()

    alice.on("signal:n", lambda e: order.append(f"first {e.data}"))
    alice.on("signal:n", slow)
    alice.on("signal:n", lambda e: order.append(f"last {e.data}"))
    for n in ("0", "1", "2"):
        await alice.signal(n, type="n")
    await asyncio.wait_for(finished.wait(), TIMEOUT)
    assert [x for x in order if x.startswith(("first", "last"))] == [
        "first 0",
        "last 0",
        "first 1",
        "last 1",
        "first 2",
        "last 2",
    ]
    assert [x for x in order if x.startswith("async")] == ["async start 0", "async start 1", "async start 2"]


@pytest.mark.signalroom_handler_errors_ok
async def test_a_failing_handler_is_logged_with_its_traceback_and_delivery_goes_on(
    participant: ParticipantFactory, caplog: pytest.LogCaptureFixture
) -> None:
    alice = await participant("lobby")
    delivered: list[str] = []

    def plain_boom(event: signalroom.SignalEvent) -> None:
        raise RuntimeError(f"plain handler broke on {event.data}")

    async def async_boom(event: signalroom.SignalEvent) -> None:
        raise LookupError(f"async handler broke on {event.data}")

    alice.on("signal:x", plain_boom)
    alice.on("signal:x", async_boom)
    alice.on("signal:x", lambda e: delivered.append(e.data))
    four_logged = asyncio.Event()

    class Count(logging.Handler):
        seen = 0

        def emit(self, record: logging.LogRecord) -> None:
            self.seen += 1
            if self.seen == 4:
                four_logged.set()

    counter = Count(logging.ERROR)
    logging.getLogger("signalroom").addHandler(counter)
    try:
        with caplog.at_level(logging.ERROR, logger="signalroom"):
            last = alice.wait_for("signal:x", predicate=lambda e: e.data == "second")
            await alice.signal("first", type="x")
            await alice.signal("second", type="x")
            await last
            await asyncio.wait_for(four_logged.wait(), TIMEOUT)
    finally:
        logging.getLogger("signalroom").removeHandler(counter)
    assert delivered == ["first", "second"]
    failures = sorted(
        (type(r.exc_info[1]).__name__, str(r.exc_info[1])) for r in caplog.records if r.exc_info and r.exc_info[1]
    )
    assert failures == [
        ("LookupError", "async handler broke on first"),
        ("LookupError", "async handler broke on second"),
        ("RuntimeError", "plain handler broke on first"),
        ("RuntimeError", "plain handler broke on second"),
    ]
    messages = [r.getMessage() for r in caplog.records]
    assert all("handler" in m and "failed" in m for m in messages), messages
    assert any("plain_boom" in m for m in messages) and any("async_boom" in m for m in messages)
    assert all(r.exc_info and r.exc_info[2] is not None for r in caplog.records)  # with the traceback


async def test_a_slow_handler_never_blocks_the_socket(participant: ParticipantFactory) -> None:
    # Pings every 100 ms, a link with no pong within 300 ms counts as broken; the server too drops a
    # socket that stays 3 intervals without a ping. The handler blocks the event loop for 1.5 s.
    alice = await participant("lobby", ping_interval=0.1, ping_timeout=0.3, reconnect_attempts=0)
    bob = await participant("lobby")
    trouble: list[str] = []
    alice.on("reconnecting", lambda e: trouble.append(e.name))
    alice.on("sessionDisconnected", lambda e: trouble.append(e.reason))

    @alice.on("signal:slow")
    def block(event: signalroom.SignalEvent) -> None:
        time.sleep(1.5)  # a slow handler, on purpose: the loop is stuck, Rust is not

    after = alice.wait_for("signal:after", timeout=TIMEOUT)
    await bob.signal("", type="slow", to=[alice.connection])
    await bob.signal("still there?", type="after", to=[alice.connection])
    assert (await after).data == "still there?"
    assert trouble == []
    assert alice.state == "connected"
    reply = bob.wait_for("signal:reply", timeout=TIMEOUT)
    await alice.signal("yes", type="reply", to=[bob.connection])
    assert (await reply).data == "yes"


async def test_a_pending_coroutine_handler_does_not_hold_back_later_events(participant: ParticipantFactory) -> None:
    alice = await participant("lobby")
    released = asyncio.Event()
    done = asyncio.Event()

    @alice.on("signal:wait")
    async def wait(event: signalroom.SignalEvent) -> None:
        await released.wait()  # set by the handler of a later event
        done.set()

    alice.on("signal:release", lambda e: released.set())
    await alice.signal("", type="wait")
    await alice.signal("", type="release")
    await asyncio.wait_for(done.wait(), TIMEOUT)


async def test_handlers_may_change_handlers_while_dispatching(participant: ParticipantFactory) -> None:
    alice = await participant("lobby")
    seen: list[str] = []

    def once(event: signalroom.SignalEvent) -> None:
        seen.append(f"once {event.data}")
        alice.off("signal:x", once)
        alice.on("signal:x", lambda e: seen.append(f"added {e.data}"))

    alice.on("signal:x", once)
    last = alice.wait_for("signal:x", predicate=lambda e: e.data == "2")
    await alice.signal("1", type="x")
    await alice.signal("2", type="x")
    await last
    assert seen == ["once 1", "added 2"]


async def test_a_burst_crosses_from_rust_in_a_few_batches(
    participant: ParticipantFactory, server_api: signalroom.ServerApi
) -> None:
    """1,000 signals queued while the receiver's loop is busy reach Python in one or two batches,
    not 1,000 wake-ups. The sender runs on its own event loop in another thread."""
    receiver = await participant("lobby")
    conn = await server_api.create_connection("lobby")
    sent = threading.Event()
    errors: list[BaseException] = []

    def send_from_another_loop() -> None:
        async def main() -> None:
            async with signalroom.connect(conn.token) as sender:
                await asyncio.gather(*(sender.signal(str(i), type="b", to=[receiver.connection]) for i in range(1000)))

        try:
            asyncio.run(main())
        except BaseException as error:  # noqa: BLE001 (reported by the test)
            errors.append(error)
        finally:
            sent.set()

    batches: list[int] = []
    received: list[str] = []
    receiver.on("signal:b", lambda e: received.append(e.data))

    @receiver.on("signal:hold")
    def hold(event: signalroom.SignalEvent) -> None:
        thread = threading.Thread(target=send_from_another_loop)
        thread.start()
        assert sent.wait(30.0), "the sender thread did not finish"  # the loop is blocked meanwhile
        batches.append(receiver._batches)

    last = receiver.wait_for("signal:b", predicate=lambda e: e.data == "999", timeout=30.0)
    await receiver.signal("", type="hold", to=[receiver.connection])
    await last
    assert errors == []
    assert received == [str(i) for i in range(1000)]
    crossings = receiver._batches - batches[0]
    assert 1 <= crossings <= 3, f"1,000 signals took {crossings} batches"

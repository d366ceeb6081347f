"""Streams between participants (``open_stream``, ``send_text``, ``on_stream``, ``next_stream``), on
one node and across two nodes sharing Redis: any size, in order, aborted, and flow control."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

import signalroom
from signalroom._streams import WINDOW_BYTES

Pair = tuple[signalroom.Session, signalroom.Session]
TIMEOUT = 30.0


async def until(check: Any, timeout: float = TIMEOUT) -> None:
    """Waits for ``check()`` to be true."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_five_megabytes_of_send_text_arrive_whole_and_equal(pair: Pair) -> None:
    alice, bob = pair
    # Everything JSON escapes (twice more on the wire), multi-byte characters, and plain text.
    pattern = 'plain text, "quotes", back\\slashes, new\nlines, tabs\t, \x01, é, 漢字, 🎉. '
    text = (pattern * (5_000_000 // len(pattern) + 1))[:5_000_000]
    incoming = bob.next_stream("report")
    # The writer keeps within a window of what the reader read: it sends while the reader reads.
    sending = asyncio.ensure_future(alice.send_text(text, topic="report"))
    stream = await incoming
    assert stream.sender.connection_id == alice.connection_id
    assert stream.topic == "report" and stream.kind == "text"
    assert stream.total == len(text.encode())
    received = await asyncio.wait_for(stream.text(), TIMEOUT)
    await sending
    assert len(received) == len(text)
    assert received == text
    assert stream.received == stream.total and stream.done


async def test_bytes_arrive_whole(pair: Pair) -> None:
    alice, bob = pair
    data = bytes(range(256)) * 4000
    incoming = bob.next_stream()
    await alice.send_bytes(data, to=[bob.connection], topic="blob")
    stream = await incoming
    assert stream.kind == "bytes" and stream.total == len(data)
    assert await stream.read() == data


async def test_a_stream_of_ten_thousand_chunks_arrives_in_order(pair: Pair) -> None:
    alice, bob = pair
    chunks: list[str | bytes] = []
    done = asyncio.Event()

    @bob.on_stream("count")
    async def read(stream: signalroom.IncomingStream) -> None:
        async for chunk in stream:
            chunks.append(chunk)
        done.set()

    async with alice.open_stream(topic="count", to=[bob.connection]) as stream:
        for i in range(10_000):
            await stream.write(f"{i},")
    await asyncio.wait_for(done.wait(), TIMEOUT)
    assert chunks == [f"{i}," for i in range(10_000)]


async def test_an_aborted_stream_raises_at_the_reader(pair: Pair) -> None:
    alice, bob = pair
    incoming = bob.next_stream("answer")
    stream = alice.open_stream(topic="answer", to=[bob.connection])
    await stream.write("the beginning")
    reader = await incoming
    assert await reader.__anext__() == "the beginning"
    await stream.abort("changed my mind")
    with pytest.raises(signalroom.StreamAbortedError, match="changed my mind") as caught:
        await reader.__anext__()
    assert caught.value.reason == "changed my mind"

    # An exception in the writer's block aborts the stream with it.
    incoming = bob.next_stream("answer")
    with pytest.raises(RuntimeError):
        async with alice.open_stream(topic="answer") as stream:
            await stream.write("x")
            raise RuntimeError("model crashed")
    with pytest.raises(signalroom.StreamAbortedError, match="RuntimeError: model crashed"):
        await (await incoming).text()


async def test_the_sender_leaving_aborts_its_streams(pair: Pair) -> None:
    alice, bob = pair
    incoming = bob.next_stream("answer")
    stream = alice.open_stream(topic="answer")
    await stream.write("half an answer")
    reader = await incoming
    await alice.disconnect()
    with pytest.raises(signalroom.StreamAbortedError, match="left the session") as caught:
        await reader.text()
    assert caught.value.reason == "sender left"


async def test_progress_and_several_streams_at_once(pair: Pair) -> None:
    alice, bob = pair
    streams: list[signalroom.IncomingStream] = []
    bob.on_stream(None, streams.append)
    one = alice.open_stream(topic="a", total=6)
    two = alice.open_stream(topic="b")
    await one.write("abc")
    await two.write("xyz")
    await until(lambda: len(streams) == 2 and streams[0].received == 3)
    assert [(s.topic, s.total) for s in streams] == [("a", 6), ("b", None)]
    await one.write("def")
    await two.write("uvw")
    await one.close()
    await two.close()
    assert [await s.text() for s in streams] == ["abcdef", "xyzuvw"]
    assert streams[0].received == 6


async def test_a_writer_faster_than_its_reader_is_slowed_not_evicted(pair: Pair) -> None:
    alice, bob = pair
    piece = "x" * 40_000
    total = 3 * WINDOW_BYTES
    incoming = bob.next_stream("flood")
    writer = alice.open_stream(topic="flood", to=[bob.connection], total=total)

    async def write_all() -> None:
        for _ in range(total // len(piece)):
            await writer.write(piece)
        await writer.close()

    writing = asyncio.ensure_future(write_all())
    reader = await incoming
    assert await reader.__anext__() == piece  # then the reader stops reading
    await until(lambda: writer.waiting)
    # The writer waits with at most a window (and a chunk) ahead of what was read.
    assert writer.written <= len(piece) + WINDOW_BYTES + len(piece)
    assert not writing.done()
    read = len(piece)
    async for chunk in reader:  # reading again lets it go on
        read += len(chunk)
    await asyncio.wait_for(writing, TIMEOUT)
    assert read == writer.written == total // len(piece) * len(piece)
    assert bob.state == "connected" and alice.state == "connected"

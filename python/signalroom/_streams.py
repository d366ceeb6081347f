"""Streams: text or bytes of any size, in chunks, over ordinary signals.

On the wire (``docs/protocol.md``, "Requests and streams"), each chunk is a signal of type
``signal:sr.stream`` whose ``data`` is a JSON object: ``{"id": "3", "n": 0, "data": "..."}``, the
first one (``n`` 0) with ``"open": {"topic": "...", "kind": "text" | "bytes", "total": 1234}``
(``total`` when known, in bytes), the last one with ``"end": true``, or ``"abort": "reason"`` instead.
Bytes travel in base64. The chunks of one stream come from one sender, so they arrive in order (OpenVidu
keeps a sender's signals in order); ``n`` counts them, and a gap aborts the stream at the reader.

Flow control: a reader that reads (iterates, or awaits the whole) acknowledges what it consumed
with a ``signal:sr.ack`` to the sender, ``{"id": "3", "read": 123456, "n": 40}`` (bytes and chunks
consumed so far), the first at once (``read`` 0): the writer then keeps at most
:data:`WINDOW_BYTES` and :data:`WINDOW_CHUNKS` ahead of each such reader, and waits, so that no
reader's queue on the server (``--send-queue``, ``--send-queue-bytes``) overflows and gets it evicted.
Receivers that never acknowledge (no reader there, another client) are not waited for.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import logging
import weakref
from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Literal, Union

from ._native import Connection, SignalEvent
from .errors import ConnectionLostError, InvalidArgumentError, SignalTimeoutError, StreamAbortedError, StreamError

if TYPE_CHECKING:
    from typing_extensions import Self

    from ._session import Recipient, Recipients, Session

__all__ = [
    "ACK_TYPE",
    "ANNOUNCE_GRACE",
    "STREAM_TYPE",
    "WINDOW_BYTES",
    "WINDOW_CHUNKS",
    "IncomingStream",
    "IncomingStreams",
    "StreamHandler",
    "StreamWriter",
]

log = logging.getLogger("signalroom")

#: The signal type of a stream's chunks (on the wire ``signal:sr.stream``).
STREAM_TYPE = "sr.stream"
#: The signal type of a reader's acknowledgements (on the wire ``signal:sr.ack``).
ACK_TYPE = "sr.ack"

#: A writer waits while a reader that acknowledges is this many bytes behind...
WINDOW_BYTES = 4 * 1024 * 1024
#: ... or this many chunks (both well below the server's default queue of 4096 frames, 16 MiB).
WINDOW_CHUNKS = 1024
# A reader acknowledges each time it consumed this much since its last acknowledgement.
_ACK_BYTES = WINDOW_BYTES // 4
_ACK_CHUNKS = WINDOW_CHUNKS // 4
# Chunk signals a writer keeps in flight (sent, not yet accepted by the server).
_IN_FLIGHT = 32
#: A recipient that has not acknowledged a stream once its window is full is not waited for after
#: this many seconds (it does not run signalroom's streams).
ANNOUNCE_GRACE = 5.0
# Room kept free in each frame besides what is measured.
_FRAME_MARGIN = 64
# The frame around a sendMessage's params, with the longest request id.
_FRAME_SKELETON = len('{"jsonrpc":"2.0","id":,"method":"sendMessage","params":{"message":""}}') + 20


def _specials(text: str) -> int:
    return text.count('"') + text.count("\\")


def _cost(escaped: str) -> int:
    """The bytes ``escaped`` (text already escaped once, as inside an envelope's JSON) takes in a
    frame: the envelope is a signal's data (escaped in the message), the message is escaped in the
    frame: each quote or backslash grows by 3 bytes in all."""
    n = len(escaped)
    if not escaped.isascii():
        n = len(escaped.encode("utf-8", "surrogatepass"))
    return n + 3 * _specials(escaped)


class StreamWriter:
    """A stream being sent (made by :meth:`Session.open_stream <signalroom.Session.open_stream>`):
    :meth:`write` text (or bytes, for a ``binary`` stream) in pieces of any size, then
    :meth:`close` it, or :meth:`abort` it. As ``async with``: closed at the end of the block,
    aborted if the block raises.

    Example::

        async with session.open_stream(topic="answer", to=[asker]) as stream:
            for word in answer.split():
                await stream.write(word + " ")
    """

    def __init__(
        self,
        session: Session,
        stream_id: str,
        *,
        to: list[str] | None,
        topic: str,
        total: int | None,
        binary: bool,
    ) -> None:
        self._session = session
        #: The stream's id (unique among this participant's streams).
        self.id = stream_id
        #: The topic readers choose streams by.
        self.topic = topic
        #: The recipients' connection ids (``None``: everyone).
        self.to = to
        #: The total size announced, in bytes, if any.
        self.total = total
        #: Whether it carries bytes (else text).
        self.binary = binary
        #: Bytes written so far (UTF-8 for text).
        self.written = 0
        self._chunks = 0  # chunks sent
        self._in_flight: deque[asyncio.Future[None]] = deque()
        self._readers: dict[str, tuple[int, int]] = {}  # connection id -> (bytes, chunks) read
        # Recipients not heard from yet: taken for readers at 0 until they acknowledge, skip, or
        # stay silent for ANNOUNCE_GRACE seconds once the window is full (not signalroom clients).
        self._presumed: set[str] = set(to) if to is not None else set()
        self._acked = asyncio.Event()
        self._over = False
        self._error: BaseException | None = None
        kind = "bytes" if binary else "text"
        head: dict[str, Any] = {"topic": topic, "kind": kind}
        if total is not None:
            head["total"] = total
        self._open: dict[str, Any] | None = head
        to_json = json.dumps({"to": to or [], "data": "", "type": f"signal:{STREAM_TYPE}"})
        self._message_cost = len(to_json) + _specials(to_json)

    @property
    def waiting(self) -> bool:
        """Whether a :meth:`write` is waiting for a reader to catch up (flow control)."""
        return not self._acked.is_set() and self._blocked()

    def _room(self, header: dict[str, Any]) -> int:
        """The bytes a chunk's data may take in a frame with ``header``'s envelope."""
        skeleton = json.dumps({**header, "data": ""}, ensure_ascii=False)
        used = _FRAME_SKELETON + self._message_cost + _cost(skeleton) + _FRAME_MARGIN
        return self._session._native.max_frame_bytes - used

    def _header(self) -> dict[str, Any]:
        header: dict[str, Any] = {"id": self.id, "n": self._chunks}
        if self._open is not None:
            header["open"] = self._open
        return header

    async def write(self, data: str | bytes) -> None:
        """Sends ``data`` (a ``str``, or ``bytes`` for a ``binary`` stream), in as many signals as
        it takes. Returns once they are queued; waits first while a reader that reads is too far
        behind (flow control). Raises :class:`ConnectionLostError` once the session is over."""
        if self._over:
            raise StreamError(f"stream {self.id} is closed: nothing more can be written", stream_id=self.id)
        if self.binary:
            if not isinstance(data, (bytes, bytearray, memoryview)):
                raise InvalidArgumentError(f"a binary stream takes bytes, not {type(data).__name__}")
            await self._write_bytes(bytes(data))
        else:
            if not isinstance(data, str):
                raise InvalidArgumentError(
                    f"a text stream takes str, not {type(data).__name__} (binary=True for bytes)"
                )
            await self._write_text(data)

    async def _write_text(self, text: str) -> None:
        start = 0
        while True:
            header = self._header()
            room = self._room(header)
            rest = len(text) - start
            n = min(rest, room)
            while True:
                piece = text[start : start + n]
                escaped = json.dumps(piece, ensure_ascii=False)[1:-1]
                cost = _cost(escaped)
                if cost <= room or n <= 1:
                    break
                n = max(1, min(n - 1, n * room // cost - 8))
            if rest and n == 0:
                raise StreamError(f"stream {self.id}: the server's frames are too small to carry a chunk")
            await self._send(header, piece, len(piece.encode("utf-8", "surrogatepass")) if not piece.isascii() else n)
            start += n
            if start >= len(text):
                return

    async def _write_bytes(self, data: bytes) -> None:
        start = 0
        while True:
            header = self._header()
            n = max(3, (self._room(header) // 4) * 3)
            piece = data[start : start + n]
            await self._send(header, base64.b64encode(piece).decode("ascii"), len(piece))
            start += n
            if start >= len(data):
                return

    async def _send(self, header: dict[str, Any], chunk: str, size: int, **extra: Any) -> None:
        await self._flow()
        body = {**header, "data": chunk, **extra}
        self._open = None
        self._chunks += 1
        self.written += size
        future = self._session._native.signal(json.dumps(body, ensure_ascii=False), type=STREAM_TYPE, to=self.to)
        self._in_flight.append(asyncio.ensure_future(future))
        while len(self._in_flight) > _IN_FLIGHT:
            await self._in_flight.popleft()

    def _behind(self, read: int, chunks: int) -> bool:
        return self.written - read >= WINDOW_BYTES or self._chunks - chunks >= WINDOW_CHUNKS

    def _blocked(self) -> bool:
        if self._presumed and self._behind(0, 0):
            return True
        return any(self._behind(read, chunks) for read, chunks in self._readers.values())

    async def _flow(self) -> None:
        while self._blocked():
            if self._error is not None:
                raise self._error
            self._acked.clear()
            try:
                await asyncio.wait_for(self._acked.wait(), ANNOUNCE_GRACE)
            except asyncio.TimeoutError:
                if self._presumed:
                    log.info(
                        "signalroom: stream %s: %s never acknowledged; not waiting for them",
                        self.id,
                        ", ".join(sorted(self._presumed)),
                    )
                    self._presumed.clear()
        if self._error is not None:
            raise self._error

    def _on_ack(self, reader: str, read: int, chunks: int, skip: bool) -> None:
        if self.to is not None and reader not in self.to:
            return
        self._presumed.discard(reader)
        if skip:
            self._readers.pop(reader, None)
        else:
            self._readers[reader] = (read, chunks)
        self._acked.set()

    def _reader_left(self, reader: str) -> None:
        self._presumed.discard(reader)
        self._readers.pop(reader, None)
        self._acked.set()

    def _ended(self, error: BaseException) -> None:
        self._error = error
        self._acked.set()

    async def _finish(self, **how: Any) -> None:
        if self._over:
            return
        self._over = True
        try:
            header = self._header()
            self._open = None
            body = {**header, **how}
            self._chunks += 1
            future = self._session._native.signal(json.dumps(body, ensure_ascii=False), type=STREAM_TYPE, to=self.to)
            self._in_flight.append(asyncio.ensure_future(future))
            while self._in_flight:
                await self._in_flight.popleft()
        finally:
            for future in self._in_flight:
                future.cancel()
            self._session._streams_out.pop(self.id, None)

    async def close(self) -> None:
        """Ends the stream: readers see its end once they read what was written. Closing twice
        does nothing."""
        await self._finish(end=True)

    async def abort(self, reason: str = "aborted by the sender") -> None:
        """Ends the stream early: readers get :class:`StreamAbortedError` with ``reason``."""
        await self._finish(abort=reason or "aborted")

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        if exc is None:
            await self.close()
        elif not self._over:
            try:
                await self.abort(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
            except Exception:  # noqa: BLE001 (the block's exception is the one to raise)
                log.info("signalroom: stream %s could not be aborted", self.id)

    def __repr__(self) -> str:
        return f"<StreamWriter {self.id} topic={self.topic!r} written={self.written}>"


class IncomingStream:
    """A stream being received: its chunks in order (``async for chunk in stream``: ``str`` for
    text, ``bytes`` for a binary stream), or the whole (``await stream.text()``,
    ``await stream.read()``). ``received`` counts the bytes arrived so far, ``total`` is what the
    sender announced (``None`` if it did not). Reading raises :class:`StreamAbortedError` when the
    sender aborted it or left.

    Example::

        @session.on_stream("answer")
        async def show(stream: signalroom.IncomingStream) -> None:
            async for piece in stream:
                print(piece, end="", flush=True)
    """

    def __init__(
        self, session: Session, stream_id: str, sender: Connection, topic: str, kind: str, total: int | None
    ) -> None:
        self._session = session
        #: The sender's id of this stream.
        self.id = stream_id
        #: Who sends it.
        self.sender = sender
        #: Its topic.
        self.topic = topic
        #: ``"text"`` or ``"bytes"``.
        self.kind: Literal["text", "bytes"] = "bytes" if kind == "bytes" else "text"
        #: The total size the sender announced, in bytes, or ``None``.
        self.total = total
        #: Bytes received so far (UTF-8 for text).
        self.received = 0
        self._chunks: deque[tuple[str | bytes, int]] = deque()
        self._next = 1  # the n expected next (the opening chunk was 0)
        self._ended = False
        self._error: BaseException | None = None
        self._arrived = asyncio.Event()
        self._read = 0  # bytes consumed
        self._read_chunks = 0
        self._acked = (0, 0)
        self._claimed = False

    @property
    def done(self) -> bool:
        """Whether every chunk has arrived (the sender closed it), or it was aborted."""
        return self._ended or self._error is not None

    def _push(self, message: dict[str, Any]) -> None:
        data = message.get("data")
        if isinstance(data, str) and data:
            if self.kind == "bytes":
                chunk: str | bytes = base64.b64decode(data)
                size = len(chunk)
            else:
                chunk = data
                size = len(data) if data.isascii() else len(data.encode("utf-8", "surrogatepass"))
            self.received += size
            self._chunks.append((chunk, size))
        if "abort" in message:
            self._fail(
                StreamAbortedError(
                    f"stream {self.id} from {self.sender.connection_id} was aborted: {message['abort']}",
                    stream_id=self.id,
                    reason=str(message["abort"]),
                )
            )
        elif message.get("end"):
            self._ended = True
        self._arrived.set()

    def _fail(self, error: BaseException) -> None:
        if not self._ended and self._error is None:
            self._error = error
            self._arrived.set()

    def _consumed(self, size: int) -> None:
        self._read += size
        self._read_chunks += 1
        bytes_acked, chunks_acked = self._acked
        if self._read - bytes_acked >= _ACK_BYTES or self._read_chunks - chunks_acked >= _ACK_CHUNKS:
            self._ack()

    def _ack(self) -> None:
        if self._ended and not self._chunks:
            return  # everything read: the writer is done with this reader
        self._acked = (self._read, self._read_chunks)
        body = json.dumps({"id": self.id, "read": self._read, "n": self._read_chunks})
        self._session._dispatcher.spawn(
            self._session._requests._send_quietly(body, ACK_TYPE, self.sender.connection_id)
        )

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> str | bytes:
        while True:
            if self._chunks:
                chunk, size = self._chunks.popleft()
                self._consumed(size)
                return chunk
            if self._error is not None:
                raise self._error
            if self._ended:
                raise StopAsyncIteration
            self._arrived.clear()
            await self._arrived.wait()

    async def _all(self) -> list[str | bytes]:
        return [chunk async for chunk in self]

    async def text(self) -> str:
        """The whole text, once the stream ended (what was already iterated is not included)."""
        chunks = await self._all()
        if self.kind == "bytes":
            return b"".join(c for c in chunks if isinstance(c, bytes)).decode("utf-8")
        return "".join(c for c in chunks if isinstance(c, str))

    async def read(self) -> bytes:
        """The whole content as bytes (text as UTF-8), once the stream ended."""
        chunks = await self._all()
        if self.kind == "bytes":
            return b"".join(c for c in chunks if isinstance(c, bytes))
        return "".join(c for c in chunks if isinstance(c, str)).encode("utf-8")

    def __repr__(self) -> str:
        total = "?" if self.total is None else self.total
        return (
            f"<IncomingStream {self.id} from {self.sender.connection_id} topic={self.topic!r} {self.received}/{total}>"
        )


#: A stream handler: ``async def`` or plain function of an :class:`IncomingStream`.
StreamHandler = Callable[[IncomingStream], object]


class _StreamWaiter:
    __slots__ = ("future", "topic")

    def __init__(self, topic: str | None, future: asyncio.Future[IncomingStream]) -> None:
        self.topic = topic
        self.future = future


class Streams:
    """A session's incoming streams, their handlers and waiters."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self._ids = itertools.count(1)
        self._incoming: dict[tuple[str, str], IncomingStream] = {}
        self._handlers: dict[str | None, list[StreamHandler]] = {}
        self._waiters: list[_StreamWaiter] = []
        self._queues: list[weakref.ref[IncomingStreams]] = []

    def next_id(self) -> str:
        return str(next(self._ids))

    def on_chunk(self, event: SignalEvent) -> None:
        sender = event.from_
        if sender is None:
            return
        try:
            message = json.loads(event.data)
            sid = str(message["id"])
            n = int(message.get("n", -1))
        except (ValueError, KeyError, TypeError):
            log.warning("signalroom: ignoring a malformed stream chunk %r", event.data[:200])
            return
        if sender.connection_id == self._session.connection_id:
            return  # our own broadcast, back
        key = (sender.connection_id, sid)
        stream = self._incoming.get(key)
        if stream is None:
            head = message.get("open")
            if n != 0 or not isinstance(head, dict):
                return  # a stream nobody here reads, or that began before this participant joined
            total = head.get("total")
            stream = IncomingStream(
                self._session,
                sid,
                sender,
                str(head.get("topic", "")),
                str(head.get("kind", "text")),
                total if isinstance(total, int) else None,
            )
            if not self._claim(stream):
                # Nobody reads it here: the writer need not wait for this participant.
                body = json.dumps({"id": sid, "skip": True})
                self._session._dispatcher.spawn(
                    self._session._requests._send_quietly(body, ACK_TYPE, sender.connection_id)
                )
                return
            self._incoming[key] = stream
            stream._push(message)
            stream._ack()  # "a reader is here": the writer keeps within the window from now on
        else:
            if n != stream._next:
                stream._fail(
                    StreamAbortedError(
                        f"stream {sid} from {sender.connection_id}: chunk {stream._next} is missing (got {n})",
                        stream_id=sid,
                        reason="chunks missing",
                    )
                )
            else:
                stream._next += 1
                stream._push(message)
        if stream.done:
            self._incoming.pop(key, None)

    def _claim(self, stream: IncomingStream) -> bool:
        claimed = False
        for waiter in list(self._waiters):
            if not waiter.future.done() and waiter.topic in (None, stream.topic):
                waiter.future.set_result(stream)
                self._waiters.remove(waiter)
                claimed = True
                break
        alive = []
        for ref in self._queues:
            streams = ref()
            if streams is None or streams._over:
                continue
            alive.append(ref)
            if streams.topic in (None, stream.topic):
                streams._push(stream)
                claimed = True
        self._queues = alive
        for fn in self._handlers.get(stream.topic, []) + self._handlers.get(None, []):
            claimed = True
            self._session._dispatcher.run(fn, stream)
        return claimed

    def on_ack(self, event: SignalEvent) -> None:
        if event.from_ is None:
            return
        try:
            message = json.loads(event.data)
            writer = self._session._streams_out.get(str(message["id"]))
            read, chunks = int(message.get("read", 0)), int(message.get("n", 0))
        except (ValueError, KeyError, TypeError):
            return
        if writer is not None:
            writer._on_ack(event.from_.connection_id, read, chunks, bool(message.get("skip")))

    def left(self, connection_id: str) -> None:
        for key in [key for key in self._incoming if key[0] == connection_id]:
            stream = self._incoming.pop(key)
            stream._fail(
                StreamAbortedError(
                    f"stream {stream.id}: its sender {connection_id} left the session",
                    stream_id=stream.id,
                    reason="sender left",
                )
            )
        for writer in list(self._session._streams_out.values()):
            writer._reader_left(connection_id)

    def ended(self, reason: str | None) -> None:
        for stream in self._incoming.values():
            stream._fail(
                StreamAbortedError(
                    f"stream {stream.id}: the session ended ({reason})", stream_id=stream.id, reason=str(reason)
                )
            )
        self._incoming.clear()
        lost = ConnectionLostError(f"the session ended ({reason}) while a stream was being written", reason=reason)
        for writer in list(self._session._streams_out.values()):
            writer._ended(lost)
        for waiter in self._waiters:
            if not waiter.future.done():
                waiter.future.set_exception(
                    ConnectionLostError(f"the session ended ({reason}) before a stream came", reason=reason)
                )
        self._waiters.clear()
        for ref in self._queues:
            streams = ref()
            if streams is not None:
                streams._push(None)
        self._queues = []

    def open(self, to: Recipients | None, topic: str, total: int | None, binary: bool) -> StreamWriter:
        """:meth:`Session.open_stream`."""
        session = self._session
        session._own_loop("open_stream")
        if not isinstance(topic, str):
            raise InvalidArgumentError(f"topic must be a string, not {type(topic).__name__}")
        if total is not None and (not isinstance(total, int) or total < 0):
            raise InvalidArgumentError(f"total must be a number of bytes >= 0 or None, not {total!r}")
        writer = StreamWriter(session, self.next_id(), to=recipients_of(to), topic=topic, total=total, binary=binary)
        if to is None:  # everyone here now is a reader until it says otherwise
            writer._presumed = {c.connection_id for c in session._native.remote_connections}
        session._streams_out[writer.id] = writer
        return writer

    def on(self, topic: str | None, fn: StreamHandler | None) -> Any:
        """:meth:`Session.on_stream`."""
        if fn is None:

            def register(f: StreamHandler) -> StreamHandler:
                self._add(topic, f)
                return f

            return register
        if not callable(fn):
            raise TypeError(f"handler must be callable, not {type(fn).__name__}")
        self._add(topic, fn)
        return fn

    def _add(self, topic: str | None, fn: StreamHandler) -> None:
        handlers = self._handlers.setdefault(topic, [])
        if fn not in handlers:
            handlers.append(fn)

    def off(self, topic: str | None, fn: StreamHandler | None) -> None:
        if fn is None:
            self._handlers.pop(topic, None)
        elif fn in self._handlers.get(topic, []):
            self._handlers[topic].remove(fn)

    def next(self, topic: str | None, timeout: float | None) -> asyncio.Future[IncomingStream]:
        """:meth:`Session.next_stream`."""
        session = self._session
        loop = session._own_loop("next_stream")
        future: asyncio.Future[IncomingStream] = loop.create_future()
        if session._over:
            future.set_exception(session._lost_error("stream"))
            return future
        waiter = _StreamWaiter(topic, future)
        self._waiters.append(waiter)

        def forget(_f: asyncio.Future[IncomingStream]) -> None:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

        future.add_done_callback(forget)
        if timeout is not None:
            seconds = timeout

            def expire() -> None:
                if not future.done():
                    future.set_exception(
                        SignalTimeoutError(f"no stream of topic {topic!r} within {seconds:g} s", timeout=seconds)
                    )

            timer = loop.call_later(timeout, expire)
            future.add_done_callback(lambda _f: timer.cancel())
        return future

    def iterate(self, topic: str | None, over: bool) -> IncomingStreams:
        streams = IncomingStreams(topic, over)
        if not over:
            self._queues.append(weakref.ref(streams))
        return streams


class IncomingStreams:
    """The streams of one topic (every topic when ``None``) that arrive from now on, as an async
    iterator that ends when the session ends. Made by :meth:`Session.streams
    <signalroom.Session.streams>`; stop with ``await it.aclose()`` or drop it."""

    def __init__(self, topic: str | None, over: bool) -> None:
        self.topic = topic
        self._queue: asyncio.Queue[IncomingStream | None] = asyncio.Queue()
        self._over = over

    def _push(self, stream: IncomingStream | None) -> None:
        if not self._over:
            self._queue.put_nowait(stream)

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> IncomingStream:
        if self._over and self._queue.empty():
            raise StopAsyncIteration
        stream = await self._queue.get()
        if stream is None:
            self._over = True
            raise StopAsyncIteration
        return stream

    async def aclose(self) -> None:
        """Stops receiving streams."""
        self._over = True


def recipients_of(to: Iterable[Recipient] | None) -> list[str] | None:
    """Connection ids from ``to`` (``None``: everyone)."""
    if to is None:
        return None
    if isinstance(to, str):
        raise InvalidArgumentError(f"to must be a list of connection ids, not a string: write to=[{to!r}]")
    ids = []
    for item in to:
        ids.append(item if isinstance(item, str) else str(getattr(item, "connection_id", item)))
    return ids


_Chunk = Union[str, bytes]

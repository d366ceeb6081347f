"""``Session``: a participant's membership in an OpenVidu session: what it is (its connection, state,
the others), sending (signals, requests, streams), handlers, waiting (``wait_for``, signal streams)
and leaving. This is the public surface, documented and typed here; the session's parts below do
the work.

Events are queued by Rust and cross to asyncio in batches, those of every session of an event loop
together (``_native.EventHub``: one task of the loop takes everything queued since its last call
and hands each session its share); one pump task per session, on the event loop that connected
it, dispatches its events, in arrival order. With a ``rejoin`` policy the pump also rejoins,
with a fresh token, when the session was lost to the network or a server restart.

The session's parts: the pump, the rejoin policy and the session's end (``_pump``); the handlers,
the observers and the dispatch of each event to them all (``_dispatch``); waiting: ``wait_for``'s
futures and the signal streams, made, woken and ended (``_waiting``); requests (``_requests``) and
streams (``_streams``). Elsewhere: the event names (``_event_names``), the event classes and
handler types (``_events``), ``connect`` and its options (``_connect``), the transcript a session
records (``_transcript``).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Iterator
from types import CoroutineType, TracebackType
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar, Union, overload

from . import _native
from ._dispatch import Dispatcher
from ._event_names import (
    ConnectionEventName,
    DisconnectedEventName,
    EventName,
    PropertyChangedEventName,
    ReconnectedEventName,
    ReconnectingEventName,
    RejoinedEventName,
)
from ._events import (
    AnyHandler,
    ConnectionHandlerT,
    DisconnectedHandlerT,
    EndReason,
    Event,
    HandlerErrorHook,
    PropertyHandlerT,
    ReconnectedHandlerT,
    RejoinedEvent,
    RejoinedHandlerT,
    SessionHandlerT,
    SignalHandlerT,
    default_on_error,
)
from ._native import (
    Connection,
    ConnectionEvent,
    ConnectionObject,
    ConnectionPropertyChangedEvent,
    ReconnectedEvent,
    SessionDisconnectedEvent,
    SessionEvent,
    SignalEvent,
)
from ._pump import Pump
from ._requests import RequestHandler, Requests
from ._streams import (
    IncomingStream,
    IncomingStreams,
    StreamHandler,
    Streams,
    StreamWriter,
)
from ._transcript import Recorder
from ._waiting import SignalStream, Waiting
from .errors import ConnectionLostError, InvalidArgumentError, InvalidSignalError

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = [
    "DEFAULT_TIMEOUT",
    "REQUEST_TIMEOUT",
    "EndReason",
    "Event",
    "EventName",
    "HandlerErrorHook",
    "Recipient",
    "Recipients",
    "Recorder",
    "RejoinedEvent",
    "Role",
    "Session",
    "State",
    "TokenFactory",
    "WhileReconnecting",
]


#: Default timeout of :meth:`Session.wait_for`, in seconds.
DEFAULT_TIMEOUT = 10.0

#: A participant's role.
Role = Literal["PUBLISHER", "SUBSCRIBER", "MODERATOR"]

#: A session's state (:attr:`Session.state`).
State = Literal["connected", "reconnecting", "disconnected"]

#: How :meth:`Session.signal` behaves while the link is down: ``"wait"`` for it (at most the
#: session's ``timeout``) or ``"fail"`` at once with :class:`ConnectionLostError`.
WhileReconnecting = Literal["wait", "fail"]

#: A recipient of a signal: a connection id, or anything with a ``connection_id``.
Recipient = Union[str, Connection, ConnectionObject]

_T_co = TypeVar("_T_co", covariant=True)


class _CollectionNotStr(Protocol[_T_co]):
    """A list, tuple or set (anything iterable that tests membership of any object), but not a
    ``str``, whose ``__contains__`` takes only strings: ``to="con_x"`` is a type error."""

    def __contains__(self, value: object, /) -> bool: ...
    def __iter__(self) -> Iterator[_T_co]: ...


#: The recipients of a signal: a list (tuple, set) of connection ids and :class:`Connection`
#: objects; never a bare ``str``.
Recipients = _CollectionNotStr[Recipient]

#: Gives a fresh token for a ``rejoin``: an ``async def`` (or plain function) of no argument.
TokenFactory = Callable[[], Union[Awaitable[str], str]]

#: Default timeout of :meth:`Session.request`, in seconds.
REQUEST_TIMEOUT = 5.0

_RequestHandlerT = TypeVar("_RequestHandlerT", bound=RequestHandler)
_StreamHandlerT = TypeVar("_StreamHandlerT", bound=StreamHandler)


class Session:
    """A participant's membership in an OpenVidu session. Made by :func:`signalroom.connect`.

    Handlers (:meth:`on`) run on the event loop that connected the session, for the events that
    arrive after they are registered: plain functions inline, coroutine functions as tasks; events
    of one name reach its handlers in arrival order. Handlers registered right after
    ``await connect(...)`` (before the next ``await``) see the first events too
    (``connectionCreated`` for this participant and everyone already there).

    Example::

        session = await signalroom.connect(token, data='{"name": "bot"}')

        @session.on("signal:chat")
        async def echo(event: signalroom.SignalEvent) -> None:
            if event.from_ != session.connection:
                await session.reply(event, f"echo: {event.data}")

        await session.signal("hello everyone", type="chat")
        await session.disconnect()
    """

    def __init__(
        self,
        native: _native.Session,
        *,
        options: dict[str, Any] | None = None,
        rejoin: TokenFactory | None = None,
        rejoin_attempts: int = 30,
        rejoin_interval: float = 1.0,
        while_reconnecting: WhileReconnecting = "wait",
    ) -> None:
        if while_reconnecting not in ("wait", "fail"):
            raise InvalidArgumentError(f"while_reconnecting must be 'wait' or 'fail', not {while_reconnecting!r}")
        self._native = native
        self._loop = asyncio.get_running_loop()
        self._options = dict(options or {})
        self._timeout: float = self._options.get("timeout", DEFAULT_TIMEOUT)
        self._while_reconnecting: WhileReconnecting = while_reconnecting
        self._waiting = Waiting(self)
        self._ended: SessionDisconnectedEvent | None = None
        self._over = False
        self._batches = 0  # event batches received from Rust (diagnostics, tests)
        self._connection = native.connection
        self._requests = Requests(self)
        self._streams_in = Streams(self)
        self._streams_out: dict[str, StreamWriter] = {}
        self._dispatcher = Dispatcher(self)
        self._pump = Pump(self, rejoin, rejoin_attempts, rejoin_interval)

    # -- what the session is -------------------------------------------------------------------

    @property
    def connection(self) -> Connection:
        """This participant (``connection.connection_id``, ``connection.data``)."""
        return self._connection

    @property
    def max_frame_bytes(self) -> int:
        """The largest WebSocket frame the server accepts, in bytes: what signalroom's server says
        when joining (``--max-frame-bytes``), or OpenVidu's 51200 for a server that does not say.
        :meth:`signal` refuses a signal whose frame would be larger; streams (:meth:`send_text`)
        carry anything larger."""
        return self._native.max_frame_bytes

    @property
    def connection_id(self) -> str:
        """This participant's connection id."""
        return self._connection.connection_id

    @property
    def session_id(self) -> str:
        """The OpenVidu session id."""
        return self._native.session_id

    @property
    def remote_connections(self) -> list[Connection]:
        """The other participants now in the session, in join order."""
        return self._native.remote_connections

    @property
    def role(self) -> Role:
        """This participant's role: ``PUBLISHER``, ``SUBSCRIBER`` or ``MODERATOR``."""
        return self._native.role

    @property
    def state(self) -> State:
        """``connected``, ``reconnecting`` (the link is being reopened, or the session rejoined)
        or ``disconnected``."""
        if self._pump.rejoining():
            return "reconnecting"
        state = self._native.state
        return "connected" if state == "joining" else state

    @property
    def end_reason(self) -> EndReason | str | None:
        """Why the session ended (an :data:`EndReason`: ``disconnect``, ``networkDisconnect``, ...),
        or ``None`` while on (rejoining included)."""
        if self._pump.rejoining():
            return None
        return self._native.end_reason

    def __repr__(self) -> str:
        return f"<signalroom.Session {self.session_id!r} as {self.connection_id!r} ({self.state})>"

    # -- sending -------------------------------------------------------------------------------

    async def signal(
        self,
        data: str,
        *,
        type: str | None = None,  # noqa: A002 (as openvidu-browser)
        to: Recipients | None = None,
    ) -> None:
        """Sends a signal to everybody in the session (this participant included), or only to ``to``
        (a list of connection ids and :class:`Connection` objects; not a bare string). ``type``
        ``"chat"`` fires ``"signal:chat"`` at the receivers. Returns when the server accepted it.

        While the link is down (state ``reconnecting``: reopening it, or rejoining), it waits for
        the link, at most the session's ``timeout``, then sends; with
        ``connect(..., while_reconnecting="fail")`` it raises :class:`ConnectionLostError` at once
        instead (nothing is sent; send again after ``reconnected`` or ``rejoined``).

        Raises :class:`InvalidSignalError` before sending anything for a malformed type or ``to``,
        :class:`RpcError` with code 600 if ``data`` is over the server's limit (``--max-signal-bytes``,
        2 MiB by default, and a signal must fit in a 50 KiB frame; the server judges) and 601 if a recipient is not in the session
        (nothing is delivered either way),
        :class:`ConnectionLostError` once the session is over, :class:`SignalTimeoutError`.

        Example::

            await session.signal("hi all", type="chat")
            await session.signal("psst", type="chat", to=[bob.connection])
        """
        if isinstance(to, str):
            raise InvalidSignalError(
                f"to must be a list of connection ids, not a string: write to=[{to!r}]", field="to"
            )
        # (reply() does the same, inline: one coroutine per answered signal, not two.)
        sent = self._start_signal(data, type, to)
        try:
            await sent
        except (asyncio.CancelledError, ConnectionLostError) as error:
            await self._unsent(sent, error, data, type, to)

    def _start_signal(self, data: str, type: str | None, to: Recipients | None) -> Awaitable[None]:  # noqa: A002
        """Hands a signal to the session now, or, when a rejoin must come first, returns the
        coroutine that waits for it and then sends (see :meth:`_must_wait_to_send`)."""
        if self._must_wait_to_send():
            return self._send_after_rejoin(data, type, to)
        return self._native.start_signal(data, type, to)

    async def _unsent(
        self,
        sent: Awaitable[None],
        error: BaseException,
        data: str,
        type: str | None,  # noqa: A002
        to: Recipients | None,
    ) -> None:
        """The await of a signal from :meth:`_start_signal` failed with ``error``: a cancelled one is
        not sent if not written yet, as before the await began; one whose link was lost is sent
        again after the rejoin when the session rejoins (:meth:`_resend_after_rejoin`)."""
        if isinstance(error, asyncio.CancelledError):
            # (A cancelled native awaitable has dropped its signal itself; this covers a
            # cancellation that reached the await otherwise. _send_after_rejoin abandons its own.)
            if not isinstance(sent, CoroutineType):
                self._native.abandon(sent)
            raise error
        if not self._resend_after_rejoin():
            raise error
        await self._send_after_rejoin(data, type, to)

    def _must_wait_to_send(self) -> bool:
        """Before sending a signal: whether to wait for a rejoin first; raises
        :class:`ConnectionLostError` while the link is down and ``while_reconnecting="fail"``."""
        rejoining = self._pump.rejoining()
        # (The native state is asked only when it matters: a call per signal otherwise.)
        if self._while_reconnecting == "fail" and (rejoining or self._native.state == "reconnecting"):
            raise ConnectionLostError(
                f"session {self.session_id!r} is reconnecting: the signal was not sent; send it again "
                "once the session is back ('reconnected' or 'rejoined' event), or use "
                "while_reconnecting='wait'",
                reason=None,
            )
        return rejoining

    async def _send_after_rejoin(self, data: str, type: str | None, to: Recipients | None) -> None:  # noqa: A002
        """Waits for the rejoin, then sends the signal again (see :meth:`_resend_after_rejoin`)."""
        await self._pump.until_rejoined()
        sent = self._native.start_signal(data, type, to)
        try:
            await sent
        except asyncio.CancelledError:
            self._native.abandon(sent)
            raise

    def _resend_after_rejoin(self) -> bool:
        """A signal failed with :class:`ConnectionLostError`: whether the link was down and, while
        the signal waited for it, the session ended in a way that is rejoined; then the signal
        waits for the rejoin, as when that was known first, and is sent again."""
        return self._while_reconnecting != "fail" and self._pump.rejoining()

    async def reply(self, event: SignalEvent, data: str, *, type: str | None = None) -> None:  # noqa: A002
        """Answers a signal: sends ``data`` to its sender only, with the same type unless ``type``
        is given. Raises :class:`InvalidSignalError` for a signal sent through the REST API (it has
        no sender to answer).

        Example::

            @session.on("signal:question")
            async def answer(event: signalroom.SignalEvent) -> None:
                await session.reply(event, "42")
        """
        if event.from_ is None:
            raise InvalidSignalError(f"{event!r} came through the REST API: it has no sender to reply to", field="to")
        # signal(data, type=..., to=[event.from_]), inline (see signal()).
        type = event.type if type is None else type  # noqa: A001
        to = (event.from_,)
        sent = self._start_signal(data, type, to)
        try:
            await sent
        except (asyncio.CancelledError, ConnectionLostError) as error:
            await self._unsent(sent, error, data, type, to)

    async def force_disconnect(self, connection: Recipient) -> None:
        """Evicts a participant (needs the ``MODERATOR`` role; else :class:`RpcError` 401)."""
        await self._native.force_disconnect(connection)

    # -- handlers ------------------------------------------------------------------------------

    @overload
    def on(self, name: ConnectionEventName) -> Callable[[ConnectionHandlerT], ConnectionHandlerT]: ...  # type: ignore[overload-overlap]
    @overload
    def on(self, name: ConnectionEventName, fn: ConnectionHandlerT) -> ConnectionHandlerT: ...
    @overload
    def on(self, name: PropertyChangedEventName) -> Callable[[PropertyHandlerT], PropertyHandlerT]: ...  # type: ignore[overload-overlap]
    @overload
    def on(self, name: PropertyChangedEventName, fn: PropertyHandlerT) -> PropertyHandlerT: ...
    @overload
    def on(self, name: DisconnectedEventName) -> Callable[[DisconnectedHandlerT], DisconnectedHandlerT]: ...  # type: ignore[overload-overlap]
    @overload
    def on(self, name: DisconnectedEventName, fn: DisconnectedHandlerT) -> DisconnectedHandlerT: ...
    @overload
    def on(self, name: ReconnectingEventName) -> Callable[[SessionHandlerT], SessionHandlerT]: ...  # type: ignore[overload-overlap]
    @overload
    def on(self, name: ReconnectingEventName, fn: SessionHandlerT) -> SessionHandlerT: ...
    @overload
    def on(self, name: ReconnectedEventName) -> Callable[[ReconnectedHandlerT], ReconnectedHandlerT]: ...  # type: ignore[overload-overlap]
    @overload
    def on(self, name: ReconnectedEventName, fn: ReconnectedHandlerT) -> ReconnectedHandlerT: ...
    @overload
    def on(self, name: RejoinedEventName) -> Callable[[RejoinedHandlerT], RejoinedHandlerT]: ...  # type: ignore[overload-overlap]
    @overload
    def on(self, name: RejoinedEventName, fn: RejoinedHandlerT) -> RejoinedHandlerT: ...
    @overload
    def on(self, name: str) -> Callable[[SignalHandlerT], SignalHandlerT]: ...
    @overload
    def on(self, name: str, fn: SignalHandlerT) -> SignalHandlerT: ...
    def on(self, name: str, fn: AnyHandler | None = None) -> Any:
        """Registers ``fn`` for the event ``name``; as a decorator, returns the function unchanged.

        Names: ``"signal"`` (every signal), ``"signal:<type>"`` (signals of that type),
        ``"connectionCreated"``, ``"connectionDestroyed"``, ``"connectionPropertyChanged"``,
        ``"sessionDisconnected"`` (always the last event), ``"reconnecting"``, ``"reconnected"`` (a
        :class:`ReconnectedEvent`, a :class:`SessionEvent` that also says whether anything sent while
        the link was down was lost: ``recovered``, and how much the server replayed: ``replayed``).

        ``fn`` may be a plain function (runs inline: keep it short) or an ``async def`` (runs as a
        task, so it may ``await session.signal(...)``). An exception in a handler goes to
        :attr:`on_error` (by default: logged with its traceback, logger ``signalroom``; under pytest
        the plugin fails the test) and never stops delivery.

        Registering a handler already registered for ``name`` does nothing; a module-level function
        defined again under the same name (a notebook cell run again, a module reloaded) replaces
        the previous version instead of being added next to it. :meth:`handlers` lists them.

        Raises ``RuntimeError`` once the event loop that connected the session is closed (nothing
        could run the handler): connect again on the new loop.

        Example::

            @session.on("signal:chat")
            async def reply(event: signalroom.SignalEvent) -> None:
                await session.reply(event, f"echo: {event.data}")

            session.on("connectionCreated", lambda e: print("joined:", e.connection.data))
        """
        return self._dispatcher.on(name, fn)

    def off(self, name: str, fn: AnyHandler | None = None) -> None:
        """Unregisters ``fn`` from ``name`` (every handler of ``name`` when ``fn`` is omitted).
        Unregistering a handler that is not registered does nothing.

        Example::

            session.off("signal:chat", reply)
        """
        self._dispatcher.off(name, fn)

    def handlers(self, name: str | None = None) -> list[Callable[..., object]]:
        """The handlers registered for ``name``, in the order they run (every handler of every
        name, name by name, when ``name`` is ``None``).

        Example::

            assert session.handlers("signal:chat") == [reply]
        """
        return self._dispatcher.registered(name)

    @property
    def on_error(self) -> HandlerErrorHook:
        """Called as ``on_error(handler, event, exception)`` when a handler raises (a plain one at
        once, an ``async`` one when its task ends). The default logs the exception with its
        traceback (logger ``signalroom``) and, under pytest, makes the plugin fail the test. Set
        your own to report errors elsewhere (``None`` restores the default); an exception raised by
        the hook itself is logged.

        Example::

            session.on_error = lambda handler, event, error: sentry_sdk.capture_exception(error)
        """
        return self._dispatcher.on_error or default_on_error

    @on_error.setter
    def on_error(self, hook: HandlerErrorHook | None) -> None:
        if hook is not None and not callable(hook):
            raise TypeError(f"on_error must be callable or None, not {type(hook).__name__}")
        self._dispatcher.on_error = hook

    # -- waiting -------------------------------------------------------------------------------

    @overload
    def wait_for(  # type: ignore[overload-overlap]
        self,
        event: ConnectionEventName,
        *,
        predicate: Callable[[ConnectionEvent], object] | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> asyncio.Future[ConnectionEvent]: ...
    @overload
    def wait_for(  # type: ignore[overload-overlap]
        self,
        event: PropertyChangedEventName,
        *,
        predicate: Callable[[ConnectionPropertyChangedEvent], object] | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> asyncio.Future[ConnectionPropertyChangedEvent]: ...
    @overload
    def wait_for(  # type: ignore[overload-overlap]
        self,
        event: DisconnectedEventName,
        *,
        predicate: Callable[[SessionDisconnectedEvent], object] | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> asyncio.Future[SessionDisconnectedEvent]: ...
    @overload
    def wait_for(  # type: ignore[overload-overlap]
        self,
        event: ReconnectingEventName,
        *,
        predicate: Callable[[SessionEvent], object] | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> asyncio.Future[SessionEvent]: ...
    @overload
    def wait_for(  # type: ignore[overload-overlap]
        self,
        event: ReconnectedEventName,
        *,
        predicate: Callable[[ReconnectedEvent], object] | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> asyncio.Future[ReconnectedEvent]: ...
    @overload
    def wait_for(  # type: ignore[overload-overlap]
        self,
        event: RejoinedEventName,
        *,
        predicate: Callable[[RejoinedEvent], object] | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> asyncio.Future[RejoinedEvent]: ...
    @overload
    def wait_for(
        self,
        event: str,
        *,
        predicate: Callable[[SignalEvent], object] | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> asyncio.Future[SignalEvent]: ...
    def wait_for(
        self,
        event: str,
        *,
        predicate: Callable[[Any], object] | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> asyncio.Future[Any]:
        """The next event ``event`` (for which ``predicate`` is true), as an awaitable.

        It starts watching when called, not when awaited, so you can create it before doing what
        causes the event. Raises :class:`SignalTimeoutError` after ``timeout`` seconds (``None``:
        no limit) and :class:`ConnectionLostError` if the session ends first. An exception raised
        by ``predicate`` is raised here.

        Example::

            answer = session.wait_for("signal:chat", predicate=lambda e: "bye" in e.data, timeout=2.0)
            await session.signal("say bye", type="chat")
            event = await answer
        """
        return self._waiting.wait_for(event, predicate, timeout)

    def signals(self, type: str | None = None) -> SignalStream:  # noqa: A002
        """The signals of ``type`` (every signal when ``None``) that arrive from now on, as an async
        iterator that ends when the session ends.

        Example::

            async for event in session.signals("chat"):
                print(event.from_, event.data)
        """
        return self._waiting.signals(type)

    # -- requests and streams ------------------------------------------------------------------

    async def request(
        self, to: Recipient, method: str, payload: str = "", *, timeout: float | None = REQUEST_TIMEOUT
    ) -> str:
        """Asks participant ``to`` (a :class:`Connection` or its id) to run its handler of
        ``method`` (:meth:`handle`) with ``payload``, and returns the string it replies. Several
        requests may be in flight at once; cancelling the calling task cancels the handler's task
        on the other side.

        Raises (all :class:`RequestError`): :class:`RequestTimeoutError` after ``timeout`` seconds
        (``None``: no limit), :class:`NoHandlerError` when ``to`` handles no ``method``,
        :class:`TargetLeftError` when ``to`` left before replying (or is not in the session),
        :class:`HandlerError` with the handler's exception as ``message``,
        :class:`ReplyTooBigError` when the reply did not fit in a signal; and
        :class:`InvalidSignalError` for a payload too big for one signal, :class:`ConnectionLostError`
        when this session ends first.

        Example::

            reply = await session.request(bot, "ask", "what is 6 x 7?", timeout=5.0)
        """
        return await self._requests.request(to, method, payload, timeout)

    @overload
    def handle(self, method: str) -> Callable[[_RequestHandlerT], _RequestHandlerT]: ...
    @overload
    def handle(self, method: str, fn: _RequestHandlerT) -> _RequestHandlerT: ...
    def handle(self, method: str, fn: RequestHandler | None = None) -> Any:
        """Makes ``fn`` answer the requests of ``method`` (:meth:`request`): it receives a
        :class:`Request` (``.payload``, ``.caller``, ``.method``) and returns the reply string;
        an ``async def`` runs as a task (and is cancelled if the caller gives up or leaves), a plain
        function inline. An exception it raises reaches the caller as :class:`HandlerError` with
        its message. One handler per method: a new one replaces the previous one. As a decorator,
        returns the function unchanged.

        Example::

            @session.handle("ask")
            async def ask(request: signalroom.Request) -> str:
                return f"you asked {request.payload!r}"
        """
        return self._requests.handle(method, fn)

    def unhandle(self, method: str) -> None:
        """Stops answering ``method``: callers then get :class:`NoHandlerError`."""
        self._requests.unhandle(method)

    def open_stream(
        self,
        *,
        to: Recipients | None = None,
        topic: str = "",
        total: int | None = None,
        binary: bool = False,
    ) -> StreamWriter:
        """A stream to everyone else in the session, or to ``to``: :meth:`StreamWriter.write`
        text (``bytes`` with ``binary=True``) in pieces of any size, then ``close()`` it (or use
        ``async with``). Receivers choose streams by ``topic``; ``total`` (bytes, UTF-8 for text)
        is shown to them as the size to expect. A writer waits while a reader is too far behind.

        Example::

            async with session.open_stream(topic="answer", to=[asker]) as stream:
                async for token in model.generate(prompt):
                    await stream.write(token)
        """
        return self._streams_in.open(to, topic, total, binary)

    async def send_text(self, data: str, *, to: Recipients | None = None, topic: str = "") -> None:
        """Sends ``data``, of any size, as one stream: receivers get it whole with
        ``await stream.text()`` (:meth:`on_stream`, :meth:`next_stream`). Returns once every chunk
        was accepted by the server.

        Example::

            await session.send_text(report, topic="report", to=[boss])
        """
        if not isinstance(data, str):
            raise InvalidArgumentError(f"send_text takes a str, not {type(data).__name__}")
        total = len(data) if data.isascii() else len(data.encode("utf-8", "surrogatepass"))
        async with self.open_stream(to=to, topic=topic, total=total) as stream:
            await stream.write(data)

    async def send_bytes(self, data: bytes, *, to: Recipients | None = None, topic: str = "") -> None:
        """Sends ``data`` (bytes, any size) as one binary stream; see :meth:`send_text`."""
        async with self.open_stream(to=to, topic=topic, total=len(data), binary=True) as stream:
            await stream.write(data)

    @overload
    def on_stream(self, topic: str | None = None) -> Callable[[_StreamHandlerT], _StreamHandlerT]: ...
    @overload
    def on_stream(self, topic: str | None, fn: _StreamHandlerT) -> _StreamHandlerT: ...
    def on_stream(self, topic: str | None = None, fn: StreamHandler | None = None) -> Any:
        """Registers ``fn`` for the streams of ``topic`` (every topic when ``None``) that arrive from
        now on: it receives an :class:`IncomingStream` as soon as its first chunk arrives. Plain
        functions run inline, ``async def`` as tasks; errors go to :attr:`on_error`. Streams that
        nobody reads (no handler, :meth:`next_stream` or :meth:`streams` for their topic) are
        dropped.

        Example::

            @session.on_stream("answer")
            async def show(stream: signalroom.IncomingStream) -> None:
                async for piece in stream:
                    print(piece, end="")
        """
        return self._streams_in.on(topic, fn)

    def off_stream(self, topic: str | None = None, fn: StreamHandler | None = None) -> None:
        """Unregisters ``fn`` (every handler of ``topic`` when omitted)."""
        self._streams_in.off(topic, fn)

    def next_stream(
        self, topic: str | None = None, *, timeout: float | None = DEFAULT_TIMEOUT
    ) -> asyncio.Future[IncomingStream]:
        """The next stream of ``topic`` (any topic when ``None``) to arrive, as an awaitable; it
        starts watching when called. Raises :class:`SignalTimeoutError` after ``timeout`` seconds
        and :class:`ConnectionLostError` if the session ends first.

        Example::

            incoming = session.next_stream("report")
            await other.send_text(big, topic="report")
            text = await (await incoming).text()
        """
        return self._streams_in.next(topic, timeout)

    def streams(self, topic: str | None = None) -> IncomingStreams:
        """The streams of ``topic`` (every topic when ``None``) that arrive from now on, as an async
        iterator that ends when the session ends.

        Example::

            async for stream in session.streams("answer"):
                print(await stream.text())
        """
        self._own_loop("streams")
        return self._streams_in.iterate(topic, self._over)

    # -- leaving -------------------------------------------------------------------------------

    async def disconnect(self) -> None:
        """Leaves the session. Returns once the server acknowledged and ``sessionDisconnected``
        (reason ``disconnect``) was delivered to the handlers. Leaving twice does nothing; leaving
        while rejoining stops rejoining."""
        self._pump.leave()
        await self._native.disconnect()
        pump = self._pump.task
        if not pump.done() and asyncio.current_task() is not pump and asyncio.get_running_loop() is self._loop:
            await asyncio.wait([pump])

    async def wait_closed(self) -> SessionDisconnectedEvent:
        """Waits until the session is over (for good: a session with a ``rejoin`` policy first
        tries to rejoin) and returns its ``sessionDisconnected`` event: "run until it ends".

        Example::

            session.on("signal:job", run_job)
            ended = await session.wait_closed()
            print("session over:", ended.reason)
        """
        self._own_loop("wait_closed")
        if not self._pump.task.done():
            await asyncio.wait([self._pump.task])
        if self._ended is None:
            raise ConnectionLostError(
                f"the event pump of {self!r} stopped before the session ended", reason=self.end_reason
            )
        return self._ended

    def record(self, path: str | os.PathLike[str]) -> Recorder:
        """Writes every event this session sees from now on to ``path``, one JSON object a line
        (appending): ``time`` (seconds since the epoch), ``event`` (its name), ``type`` (of a
        signal), ``data``, ``from`` (a connection id), ``to`` (this participant's connection id),
        ``reason``; absent values are ``null``. Read it back with :func:`signalroom.read_transcript`.
        Returns a :class:`Recorder`: ``close()`` it (or use ``with``) to stop; it stops by itself
        when the session is over.

        Example::

            with session.record("chat.jsonl"):
                await session.wait_closed()
            frame = signalroom.read_transcript("chat.jsonl", frame=True)
        """
        recorder = Recorder(self, path)
        self._dispatcher.observers.append(recorder._write)
        return recorder

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.disconnect()

    # -- for the session's parts ---------------------------------------------------------------

    def _own_loop(self, what: str) -> asyncio.AbstractEventLoop:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not self._loop:
            raise RuntimeError(
                f"Session.{what}() must be called from the event loop that connected this session; "
                "connect a new session on this loop"
            )
        return self._loop

    def _lost_error(self, name: str) -> ConnectionLostError:
        reason = self._ended.reason if self._ended is not None else self._native.end_reason
        return ConnectionLostError(
            f"the session ended ({reason}) before a {name!r} event came; join again with a new token",
            reason=reason,
        )

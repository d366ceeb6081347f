"""``Session``: a participant in an OpenVidu session, with handlers, ``wait_for`` and signal streams.

Events are queued by Rust and cross to asyncio in batches: one pump task per session, on the event
loop that connected it, awaits ``_native.Session.next_events()`` (everything queued since its last
call) and dispatches each event here, in arrival order.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import weakref
from collections.abc import Callable, Generator, Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, TypeVar, Union, overload

from . import _native
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
from .errors import ConnectionLostError, InvalidArgumentError, SignalTimeoutError

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["DEFAULT_TIMEOUT", "Connecting", "Event", "Session", "SignalStream", "connect"]

log = logging.getLogger("signalroom")

#: Default timeout of :meth:`Session.wait_for`, in seconds.
DEFAULT_TIMEOUT = 10.0

#: Any event a session delivers.
Event = Union[
    SignalEvent,
    ConnectionEvent,
    ConnectionPropertyChangedEvent,
    SessionDisconnectedEvent,
    SessionEvent,
    ReconnectedEvent,
]

#: A recipient of a signal: a connection id, or anything with a ``connection_id``.
Recipient = Union[str, Connection, ConnectionObject]

SESSION_EVENTS = (
    "connectionCreated",
    "connectionDestroyed",
    "connectionPropertyChanged",
    "sessionDisconnected",
    "reconnecting",
    "reconnected",
)
_SESSION_EVENTS = frozenset(SESSION_EVENTS)

_ConnectionEventName = Literal["connectionCreated", "connectionDestroyed"]
_ReconnectingEventName = Literal["reconnecting"]

_SignalHandler = TypeVar("_SignalHandler", bound=Callable[[SignalEvent], object])
_ConnectionHandler = TypeVar("_ConnectionHandler", bound=Callable[[ConnectionEvent], object])
_PropertyHandler = TypeVar("_PropertyHandler", bound=Callable[[ConnectionPropertyChangedEvent], object])
_DisconnectedHandler = TypeVar("_DisconnectedHandler", bound=Callable[[SessionDisconnectedEvent], object])
_SessionHandler = TypeVar("_SessionHandler", bound=Callable[[SessionEvent], object])
_ReconnectedHandler = TypeVar("_ReconnectedHandler", bound=Callable[[ReconnectedEvent], object])
_AnyHandler = Callable[[Any], object]


def _check_name(name: str) -> str:
    """``name`` if a session can fire it; else an ``InvalidArgumentError`` saying what to use."""
    if not isinstance(name, str):
        raise TypeError(f"event name must be a str, not {type(name).__name__}")
    if name == "signal" or name.startswith("signal:") or name in _SESSION_EVENTS:
        return name
    if name.startswith(("stream", "publisher", "recording", "broadcast", "speech", "network", "exception")):
        raise InvalidArgumentError(f"event {name!r} is not supported: signalroom is signalling only (no media)")
    raise InvalidArgumentError(
        f"unknown event {name!r}: use 'signal' (every signal), 'signal:<type>' (e.g. 'signal:{name}' for "
        f"signals of type {name!r}) or one of {', '.join(SESSION_EVENTS)}"
    )


def _name_of(fn: object) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)


class _Waiter:
    """One pending :meth:`Session.wait_for`."""

    __slots__ = ("future", "name", "predicate", "timer")

    def __init__(self, name: str, predicate: Callable[[Any], object] | None, future: asyncio.Future[Any]) -> None:
        self.name = name
        self.predicate = predicate
        self.future = future
        self.timer: asyncio.TimerHandle | None = None


class SignalStream:
    """The signals of one type, in arrival order, as an async iterator; it ends when the session
    ends. Made by :meth:`Session.signals`; it receives every signal that arrives after that call.

    Example::

        async for event in session.signals("chat"):
            if event.data == "bye":
                break

    Leave a stream you stop reading with ``await stream.aclose()`` (or ``async with``), or just drop
    it: it stops receiving once it is garbage-collected.
    """

    def __init__(self, name: str, ended: bool) -> None:
        self.name = name
        self._queue: asyncio.Queue[SignalEvent | None] = asyncio.Queue()
        self._ended = ended

    def _push(self, event: SignalEvent | None) -> None:
        if not self._ended:
            self._queue.put_nowait(event)
            if event is None:
                self._ended = True

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> SignalEvent:
        if self._ended and self._queue.empty():
            raise StopAsyncIteration
        event = await self._queue.get()
        if event is None:
            raise StopAsyncIteration
        return event

    async def aclose(self) -> None:
        """Stops receiving; signals already queued are dropped."""
        self._ended = True
        while not self._queue.empty():
            self._queue.get_nowait()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


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
                await session.signal(f"echo: {event.data}", type="chat", to=[event.from_])

        await session.signal("hello everyone", type="chat")
        await session.disconnect()
    """

    def __init__(self, native: _native.Session) -> None:
        self._native = native
        self._loop = asyncio.get_running_loop()
        self._handlers: dict[str, tuple[_AnyHandler, ...]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._waiters: list[_Waiter] = []
        self._streams: list[weakref.ref[SignalStream]] = []  # a dropped stream stops receiving
        self._ended: SessionDisconnectedEvent | None = None
        self._over = False
        self._batches = 0  # event batches received from Rust (diagnostics, tests)
        self._connection = native.connection
        self._pump = self._loop.create_task(self._run(), name=f"signalroom events of {native.connection_id}")

    # -- what the session is -------------------------------------------------------------------

    @property
    def connection(self) -> Connection:
        """This participant (``connection.connection_id``, ``connection.data``)."""
        return self._connection

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
    def role(self) -> str:
        """This participant's role: ``PUBLISHER``, ``SUBSCRIBER`` or ``MODERATOR``."""
        return self._native.role

    @property
    def state(self) -> str:
        """``connected``, ``reconnecting`` or ``disconnected``."""
        return self._native.state

    @property
    def end_reason(self) -> str | None:
        """Why the session ended (``disconnect``, ``networkDisconnect``, ...), or ``None`` while on."""
        return self._native.end_reason

    def __repr__(self) -> str:
        return f"<signalroom.Session {self.session_id!r} as {self.connection_id!r} ({self.state})>"

    # -- sending -------------------------------------------------------------------------------

    async def signal(
        self,
        data: str,
        *,
        type: str | None = None,  # noqa: A002 (as openvidu-browser)
        to: Iterable[Recipient] | None = None,
    ) -> None:
        """Sends a signal to everybody in the session (this participant included), or only to ``to``
        (connection ids or :class:`Connection` objects). ``type`` ``"chat"`` fires
        ``"signal:chat"`` at the receivers. Returns when the server accepted it.

        Raises :class:`InvalidSignalError` before sending anything for a malformed type or ``to``,
        :class:`RpcError` with code 600 if ``data`` is over the server's limit (``--max-signal-bytes``,
        2 MiB by default, and a signal must fit in a 50 KiB frame; the server judges) and 601 if a recipient is not in the session
        (nothing is delivered either way),
        :class:`ConnectionLostError` once the session is over, :class:`SignalTimeoutError`.

        Example::

            await session.signal("hi all", type="chat")
            await session.signal("psst", type="chat", to=[event.from_])
        """
        await self._native.signal(data, type=type, to=to)

    async def force_disconnect(self, connection: Recipient) -> None:
        """Evicts a participant (needs the ``MODERATOR`` role; else :class:`RpcError` 401)."""
        await self._native.force_disconnect(connection)

    # -- handlers ------------------------------------------------------------------------------

    @overload
    def on(self, name: _ConnectionEventName) -> Callable[[_ConnectionHandler], _ConnectionHandler]: ...  # type: ignore[overload-overlap]
    @overload
    def on(self, name: _ConnectionEventName, fn: _ConnectionHandler) -> _ConnectionHandler: ...
    @overload
    def on(self, name: Literal["connectionPropertyChanged"]) -> Callable[[_PropertyHandler], _PropertyHandler]: ...  # type: ignore[overload-overlap]
    @overload
    def on(self, name: Literal["connectionPropertyChanged"], fn: _PropertyHandler) -> _PropertyHandler: ...
    @overload
    def on(self, name: Literal["sessionDisconnected"]) -> Callable[[_DisconnectedHandler], _DisconnectedHandler]: ...  # type: ignore[overload-overlap]
    @overload
    def on(self, name: Literal["sessionDisconnected"], fn: _DisconnectedHandler) -> _DisconnectedHandler: ...
    @overload
    def on(self, name: _ReconnectingEventName) -> Callable[[_SessionHandler], _SessionHandler]: ...  # type: ignore[overload-overlap]
    @overload
    def on(self, name: _ReconnectingEventName, fn: _SessionHandler) -> _SessionHandler: ...
    @overload
    def on(self, name: Literal["reconnected"]) -> Callable[[_ReconnectedHandler], _ReconnectedHandler]: ...  # type: ignore[overload-overlap]
    @overload
    def on(self, name: Literal["reconnected"], fn: _ReconnectedHandler) -> _ReconnectedHandler: ...
    @overload
    def on(self, name: str) -> Callable[[_SignalHandler], _SignalHandler]: ...
    @overload
    def on(self, name: str, fn: _SignalHandler) -> _SignalHandler: ...
    def on(self, name: str, fn: _AnyHandler | None = None) -> Any:
        """Registers ``fn`` for the event ``name``; as a decorator, returns the function unchanged.

        Names: ``"signal"`` (every signal), ``"signal:<type>"`` (signals of that type),
        ``"connectionCreated"``, ``"connectionDestroyed"``, ``"connectionPropertyChanged"``,
        ``"sessionDisconnected"`` (always the last event), ``"reconnecting"``, ``"reconnected"`` (a
        :class:`ReconnectedEvent`, a :class:`SessionEvent` that also says whether anything sent while
        the link was down was lost: ``recovered``, and how much the server replayed: ``replayed``).

        ``fn`` may be a plain function (runs inline: keep it short) or an ``async def`` (runs as a
        task, so it may ``await session.signal(...)``). An exception in a handler is logged with
        its traceback (logger ``signalroom``) and never stops delivery.

        Example::

            @session.on("signal:chat")
            async def reply(event: signalroom.SignalEvent) -> None:
                await session.signal(f"echo: {event.data}", type="chat", to=[event.from_])

            session.on("connectionCreated", lambda e: print("joined:", e.connection.data))
        """
        name = _check_name(name)
        if fn is None:

            def register(f: _AnyHandler) -> _AnyHandler:
                self.on(name, f)
                return f

            return register
        if not callable(fn):
            raise TypeError(f"handler must be callable, not {type(fn).__name__}")
        self._handlers[name] = (*self._handlers.get(name, ()), fn)
        return fn

    def off(self, name: str, fn: _AnyHandler | None = None) -> None:
        """Unregisters ``fn`` from ``name`` (every handler of ``name`` when ``fn`` is omitted).
        Unregistering a handler that is not registered does nothing.

        Example::

            session.off("signal:chat", reply)
        """
        name = _check_name(name)
        if fn is None:
            self._handlers.pop(name, None)
            return
        handlers = list(self._handlers.get(name, ()))
        if fn in handlers:
            handlers.remove(fn)
        if handlers:
            self._handlers[name] = tuple(handlers)
        else:
            self._handlers.pop(name, None)

    # -- waiting -------------------------------------------------------------------------------

    @overload
    def wait_for(  # type: ignore[overload-overlap]
        self,
        event: _ConnectionEventName,
        *,
        predicate: Callable[[ConnectionEvent], object] | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> asyncio.Future[ConnectionEvent]: ...
    @overload
    def wait_for(  # type: ignore[overload-overlap]
        self,
        event: Literal["connectionPropertyChanged"],
        *,
        predicate: Callable[[ConnectionPropertyChangedEvent], object] | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> asyncio.Future[ConnectionPropertyChangedEvent]: ...
    @overload
    def wait_for(  # type: ignore[overload-overlap]
        self,
        event: Literal["sessionDisconnected"],
        *,
        predicate: Callable[[SessionDisconnectedEvent], object] | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> asyncio.Future[SessionDisconnectedEvent]: ...
    @overload
    def wait_for(  # type: ignore[overload-overlap]
        self,
        event: _ReconnectingEventName,
        *,
        predicate: Callable[[SessionEvent], object] | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> asyncio.Future[SessionEvent]: ...
    @overload
    def wait_for(  # type: ignore[overload-overlap]
        self,
        event: Literal["reconnected"],
        *,
        predicate: Callable[[ReconnectedEvent], object] | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> asyncio.Future[ReconnectedEvent]: ...
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
        name = _check_name(event)
        if timeout is not None and not timeout >= 0:
            raise InvalidArgumentError(f"timeout must be a number of seconds >= 0 or None, not {timeout!r}")
        loop = self._own_loop("wait_for")
        future: asyncio.Future[Any] = loop.create_future()
        if self._over:
            ended = self._ended
            if name == "sessionDisconnected" and ended is not None and (predicate is None or predicate(ended)):
                future.set_result(ended)
            else:
                future.set_exception(self._lost_error(name))
            return future
        waiter = _Waiter(name, predicate, future)
        self._waiters.append(waiter)
        if timeout is not None:
            waiter.timer = loop.call_later(timeout, self._expire, waiter, timeout)
        future.add_done_callback(functools.partial(self._forget_waiter, waiter))
        return future

    def signals(self, type: str | None = None) -> SignalStream:  # noqa: A002
        """The signals of ``type`` (every signal when ``None``) that arrive from now on, as an async
        iterator that ends when the session ends.

        Example::

            async for event in session.signals("chat"):
                print(event.from_, event.data)
        """
        name = "signal" if type is None else type if type.startswith("signal:") else f"signal:{type}"
        self._own_loop("signals")
        stream = SignalStream(name, ended=self._over)
        if not self._over:
            self._streams.append(weakref.ref(stream))
        return stream

    # -- leaving -------------------------------------------------------------------------------

    async def disconnect(self) -> None:
        """Leaves the session. Returns once the server acknowledged and ``sessionDisconnected``
        (reason ``disconnect``) was delivered to the handlers. Leaving twice does nothing."""
        await self._native.disconnect()
        pump = self._pump
        if not pump.done() and asyncio.current_task() is not pump and asyncio.get_running_loop() is self._loop:
            await asyncio.wait([pump])

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.disconnect()

    # -- delivery ------------------------------------------------------------------------------

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

    def _expire(self, waiter: _Waiter, timeout: float) -> None:
        if not waiter.future.done():
            what = " matching the predicate" if waiter.predicate is not None else ""
            waiter.future.set_exception(
                SignalTimeoutError(
                    f"no {waiter.name!r} event{what} within {timeout:g} s; is the sender in session "
                    f"{self.session_id!r}, and was wait_for() called before the event could arrive?",
                    timeout=timeout,
                )
            )

    def _forget_waiter(self, waiter: _Waiter, future: asyncio.Future[Any]) -> None:
        if waiter.timer is not None:
            waiter.timer.cancel()
        try:
            self._waiters.remove(waiter)
        except ValueError:
            pass
        if not future.cancelled():
            future.exception()  # retrieved: an unawaited wait_for() that timed out logs nothing

    async def _run(self) -> None:
        """The pump: takes the events Rust queued, batch by batch, and dispatches them."""
        next_events = self._native.next_events
        dispatch = self._dispatch
        try:
            while True:
                batch = await next_events()
                if batch is None:
                    return
                self._batches += 1
                for event in batch:
                    dispatch(event)
        except Exception:  # never expected: a bug; say so rather than go quiet
            log.exception("signalroom: the event pump of %r failed", self)
        finally:
            self._finish()

    def _dispatch(self, event: Event) -> None:
        handlers = self._handlers
        name = event.name
        if type(event) is SignalEvent:
            fns = handlers.get("signal", ())
            if name != "signal":
                specific = handlers.get(name)
                if specific:
                    fns = fns + specific if fns else specific
        else:
            fns = handlers.get(name, ())
            if type(event) is SessionDisconnectedEvent:
                self._ended = event
        for fn in fns:
            try:
                result = fn(event)
            except Exception:
                log.exception("signalroom: handler %s failed on %r", _name_of(fn), event)
                continue
            if result is not None and inspect.isawaitable(result):
                task = asyncio.ensure_future(result, loop=self._loop)
                self._tasks.add(task)
                task.add_done_callback(functools.partial(self._on_task_done, fn, event))
        if self._waiters:
            self._wake_waiters(event, name)
        if self._streams and type(event) is SignalEvent:
            self._push_to_streams(event, name)

    def _push_to_streams(self, event: SignalEvent, name: str) -> None:
        alive = []
        for ref in self._streams:
            stream = ref()
            if stream is None or stream._ended:
                continue
            alive.append(ref)
            if stream.name == "signal" or stream.name == name:
                stream._push(event)
        self._streams = alive

    def _wake_waiters(self, event: Event, name: str) -> None:
        is_signal = type(event) is SignalEvent
        for waiter in list(self._waiters):
            if waiter.future.done() or not (waiter.name == name or (is_signal and waiter.name == "signal")):
                continue
            if waiter.predicate is not None:
                try:
                    if not waiter.predicate(event):
                        continue
                except Exception as error:  # noqa: BLE001 (raised where wait_for() is awaited)
                    waiter.future.set_exception(error)
                    continue
            waiter.future.set_result(event)

    def _on_task_done(self, fn: object, event: Event, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            log.error("signalroom: handler %s failed on %r", _name_of(fn), event, exc_info=error)

    def _finish(self) -> None:
        self._over = True
        for waiter in list(self._waiters):
            if not waiter.future.done():
                waiter.future.set_exception(self._lost_error(waiter.name))
        for ref in self._streams:
            stream = ref()
            if stream is not None:
                stream._push(None)
        self._streams = []


class Connecting:
    """What :func:`connect` returns: await it for a :class:`Session`, or use it with ``async with``
    to leave the session at the end of the block."""

    def __init__(self, token: str, options: dict[str, Any]) -> None:
        self._token = token
        self._options = options
        self._session: Session | None = None

    def __await__(self) -> Generator[Any, None, Session]:
        return self._connect().__await__()

    async def _connect(self) -> Session:
        native = await _native.connect(self._token, **self._options)
        return Session(native)

    async def __aenter__(self) -> Session:
        self._session = await self._connect()
        return self._session

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._session is not None:
            await self._session.disconnect()


def connect(
    token: str,
    *,
    data: str = "",
    platform: str | None = None,
    timeout: float = 10.0,
    connect_timeout: float = 10.0,
    ping_interval: float = 5.0,
    ping_timeout: float = 5.0,
    reconnect_interval: float = 3.0,
    reconnect_attempts: int = 2000,
    accept_invalid_certs: bool = False,
) -> Connecting:
    """Joins the session of ``token`` (from :meth:`ServerApi.create_connection`), as openvidu-browser
    does; ``await`` it for a :class:`Session`, or use ``async with``.

    - ``data``: this participant's client data; others see it in ``connection.data``.
    - ``timeout``: of each request (join, signal, leave), in seconds.
    - ``ping_interval``/``ping_timeout``: keepalive; a ping unanswered in time means the link broke.
    - ``reconnect_interval``/``reconnect_attempts``: how a broken link is reopened (0 attempts: never);
      when all fail the session ends with ``sessionDisconnected`` (``networkDisconnect``).
    - ``accept_invalid_certs``: accept any TLS certificate (development only).

    Raises :class:`RpcError` (401) for an unknown or used token, :class:`ConnectionLostError` when
    the server cannot be reached, :class:`InvalidArgumentError` for a malformed token.

    Example::

        session = await signalroom.connect(conn.token, data='{"name": "bot"}')

        async with signalroom.connect(conn.token) as session:
            await session.signal("hi", type="chat")
    """
    options: dict[str, Any] = {
        "data": data,
        "platform": platform,
        "timeout": timeout,
        "connect_timeout": connect_timeout,
        "ping_interval": ping_interval,
        "ping_timeout": ping_timeout,
        "reconnect_interval": reconnect_interval,
        "reconnect_attempts": reconnect_attempts,
        "accept_invalid_certs": accept_invalid_certs,
    }
    return Connecting(token, options)

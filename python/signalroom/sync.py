"""``signalroom.sync``: the same API without asyncio, for plain scripts and REPLs.

Every call blocks until done and returns the result; nothing runs on the caller's thread: the
sessions live on an event loop of the package's own, in a background thread started on first use
(the socket, pings and reconnection on Rust threads, as always). Handlers (:meth:`Session.on`) run
on that background thread; events are also kept, from the moment of joining, for
:meth:`Session.receive` and iteration, so nothing that arrives before you ask is missed.

Its ``Session``, ``ServerApi`` and ``Server`` have the methods of the asyncio ones, with the same
parameters, but: instead of ``wait_for()`` and ``signals()``, :meth:`Session.receive` and iteration;
instead of the stream objects (``open_stream()``, ``on_stream()``, ``next_stream()``, ``streams()``),
whole texts and bytes (``send_text()``, ``send_bytes()``, :meth:`Session.receive_text`);
``wait_closed()`` takes a ``timeout``; a request handler is a plain function, run on a worker thread.

Example (one signal, one reply)::

    with signalroom.sync.connect(token) as session:
        session.signal("ping", type="ping")
        print(session.receive("signal:pong", timeout=2).data)

And the REST API::

    api = signalroom.sync.ServerApi("http://127.0.0.1:4443", "MY_SECRET")
    api.create_session("lobby")
    token = api.create_connection("lobby").token
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import logging
import os
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar, overload

from . import _api, _connect, _events, _server, _session
from ._event_names import (
    ConnectionEventName,
    DisconnectedEventName,
    PropertyChangedEventName,
    ReconnectedEventName,
    ReconnectingEventName,
    RejoinedEventName,
)
from ._events import AnyHandler, EndReason, Event, HandlerErrorHook, RejoinedEvent, check_name
from ._history import HistoryEntry, SignalHistory
from ._native import (
    Connection,
    ConnectionEvent,
    ConnectionObject,
    ConnectionPropertyChangedEvent,
    ReconnectedEvent,
    SessionDisconnectedEvent,
    SessionEvent,
    SessionObject,
    SignalEvent,
)
from ._requests import Request
from ._session import DEFAULT_TIMEOUT, Recipients, Role, State
from ._transcript import Recorder
from .errors import ConnectionLostError, SignalTimeoutError

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["DEFAULT_BUFFER", "Server", "ServerApi", "Session", "connect"]

log = logging.getLogger("signalroom")

#: How many events a sync session keeps for :meth:`Session.receive` (the oldest go first).
DEFAULT_BUFFER = 10_000

_T = TypeVar("_T")
_SyncRequestHandler = TypeVar("_SyncRequestHandler", bound=Callable[[Request], str])


class _Runner:
    """The package's event loop for synchronous callers, in a daemon thread started on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._thread is None or not self._thread.is_alive():
                loop = asyncio.new_event_loop()
                started = threading.Event()

                def run() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(started.set)
                    loop.run_forever()

                thread = threading.Thread(target=run, name="signalroom-sync", daemon=True)
                thread.start()
                started.wait()
                self._loop, self._thread = loop, thread
            return self._loop

    def on_loop_thread(self) -> bool:
        return self._thread is not None and threading.current_thread() is self._thread

    def run(self, coroutine: Coroutine[Any, Any, _T]) -> _T:
        """Runs ``coroutine`` on the loop and blocks until it is done."""
        if self.on_loop_thread():
            coroutine.close()
            raise RuntimeError(
                "a blocking signalroom.sync call from a handler would wait for itself: "
                "in a handler, use the event's session (its signal() returns at once)"
            )
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop())
        try:
            return future.result()
        except BaseException:  # Ctrl-C while waiting: stop the work too
            future.cancel()
            raise

    def call(self, fn: Callable[[], _T]) -> _T:
        """Calls ``fn`` on the loop's thread (at once when already there) and returns its result."""
        if self.on_loop_thread():
            return fn()

        async def call() -> _T:
            return fn()

        return self.run(call())

    def shutdown(self) -> None:
        """At interpreter exit: leaves the sessions still open (their pumps are cancelled) and
        stops the loop."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or not thread.is_alive() or loop.is_closed():
            return

        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        try:
            asyncio.run_coroutine_threadsafe(cancel_all(), loop).result(2.0)
        except Exception:  # exiting: note it and go on
            log.debug("signalroom: leaving the sync sessions at exit failed", exc_info=True)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(2.0)


_runner = _Runner()
atexit.register(_runner.shutdown)


class Session:
    """A participant in an OpenVidu session, blocking (made by :func:`connect`). It has the
    names of :class:`signalroom.Session`, plus :meth:`receive` and iteration over its events.

    Example::

        with signalroom.sync.connect(token) as session:
            session.on("signal:ping", lambda e: session.reply(e, "pong", type="pong"))
            for event in session:  # until the session ends
                print(event)
    """

    def __init__(self, session: _session.Session, buffer: int = DEFAULT_BUFFER) -> None:
        # Made on the loop's thread, before the session's first events are dispatched.
        self._session = session
        self._cond = threading.Condition()
        self._events: collections.deque[Event] = collections.deque()
        self._buffer = buffer
        self._dropped = 0
        session._dispatcher.observers.append(self._keep)

    # -- what the session is -------------------------------------------------------------------

    @property
    def aio(self) -> _session.Session:
        """The asyncio :class:`signalroom.Session` underneath (its loop is the background one)."""
        return self._session

    @property
    def connection(self) -> Connection:
        """This participant (``connection.connection_id``, ``connection.data``)."""
        return self._session.connection

    @property
    def max_frame_bytes(self) -> int:
        """The largest WebSocket frame the server accepts, in bytes (see
        :attr:`signalroom.Session.max_frame_bytes`): :meth:`send_text` carries anything larger."""
        return self._session.max_frame_bytes

    @property
    def connection_id(self) -> str:
        """This participant's connection id."""
        return self._session.connection_id

    @property
    def session_id(self) -> str:
        """The OpenVidu session id."""
        return self._session.session_id

    @property
    def remote_connections(self) -> list[Connection]:
        """The other participants now in the session, in join order."""
        return self._session.remote_connections

    @property
    def role(self) -> Role:
        """This participant's role."""
        return self._session.role

    @property
    def state(self) -> State:
        """``connected``, ``reconnecting`` or ``disconnected``."""
        return self._session.state

    @property
    def end_reason(self) -> EndReason | str | None:
        """Why the session ended, or ``None`` while on."""
        return self._session.end_reason

    def __repr__(self) -> str:
        return f"<signalroom.sync.Session {self.session_id!r} as {self.connection_id!r} ({self.state})>"

    # -- sending -------------------------------------------------------------------------------

    def signal(
        self,
        data: str,
        *,
        type: str | None = None,  # noqa: A002
        to: Recipients | None = None,
    ) -> None:
        """Sends a signal (see :meth:`signalroom.Session.signal`); returns when the server accepted
        it. From a handler (on the background thread) it queues the signal and returns at once;
        a failure then goes to :attr:`on_error`."""
        self._send(self._session.signal(data, type=type, to=to))

    def reply(self, event: SignalEvent, data: str, *, type: str | None = None) -> None:  # noqa: A002
        """Answers a signal: ``data`` to its sender only, with its type unless ``type`` is given."""
        self._send(self._session.reply(event, data, type=type))

    def _send(self, coroutine: Coroutine[Any, Any, None]) -> None:
        if not _runner.on_loop_thread():
            _runner.run(coroutine)
            return
        session = self._session
        task = asyncio.ensure_future(coroutine)

        def done(task: asyncio.Future[None]) -> None:
            if not task.cancelled() and task.exception() is not None:
                session._dispatcher.failed(self.signal, SessionDisconnectedEvent, task.exception())  # type: ignore[arg-type]

        task.add_done_callback(done)

    def force_disconnect(self, connection: _session.Recipient) -> None:
        """Evicts a participant (needs the ``MODERATOR`` role)."""
        _runner.run(self._session.force_disconnect(connection))

    # -- requests and streams ------------------------------------------------------------------

    def request(
        self,
        to: _session.Recipient,
        method: str,
        payload: str = "",
        *,
        timeout: float | None = _session.REQUEST_TIMEOUT,
    ) -> str:
        """Asks ``to`` to run its handler of ``method`` and returns its reply (see
        :meth:`signalroom.Session.request`, and its errors). Blocks; not from a handler of this
        session's plain ``on()`` handlers (they run on the background loop): from a request
        handler (:meth:`handle`), which runs on a worker thread, it works.

        Example::

            print(session.request(bot, "ask", "what is 6 x 7?"))
        """
        return _runner.run(self._session.request(to, method, payload, timeout=timeout))

    @overload
    def handle(self, method: str) -> Callable[[_SyncRequestHandler], _SyncRequestHandler]: ...
    @overload
    def handle(self, method: str, fn: _SyncRequestHandler) -> _SyncRequestHandler: ...
    def handle(self, method: str, fn: _SyncRequestHandler | None = None) -> Any:
        """Makes ``fn`` (a plain function of a :class:`signalroom.Request`, returning the reply
        string) answer the requests of ``method``. It runs on a worker thread, so it may block and
        call this session's methods; an exception it raises reaches the caller as
        :class:`HandlerError`.

        Example::

            @session.handle("ask")
            def ask(request: signalroom.Request) -> str:
                return request.payload.upper()
        """
        if fn is None:

            def register(f: _SyncRequestHandler) -> _SyncRequestHandler:
                self.handle(method, f)
                return f

            return register
        handler = fn

        async def on_worker(request: Request) -> str:
            return await asyncio.get_running_loop().run_in_executor(None, handler, request)

        _runner.call(lambda: self._session.handle(method, on_worker))
        return fn

    def unhandle(self, method: str) -> None:
        """Stops answering ``method``: callers then get :class:`NoHandlerError`."""
        _runner.call(lambda: self._session.unhandle(method))

    def send_text(self, data: str, *, to: Recipients | None = None, topic: str = "") -> None:
        """Sends ``data``, of any size, as one stream (see :meth:`signalroom.Session.send_text`);
        returns once it was all sent."""
        _runner.run(self._session.send_text(data, to=to, topic=topic))

    def send_bytes(self, data: bytes, *, to: Recipients | None = None, topic: str = "") -> None:
        """Sends ``data`` (bytes, any size) as one binary stream; see :meth:`send_text`."""
        _runner.run(self._session.send_bytes(data, to=to, topic=topic))

    def receive_text(self, topic: str | None = None, *, timeout: float | None = DEFAULT_TIMEOUT) -> str:
        """The whole text of the next stream of ``topic`` (any topic when ``None``) that begins
        after this call, e.g. one sent with ``send_text``. Raises :class:`SignalTimeoutError` when
        none begins within ``timeout`` seconds."""

        async def receive() -> str:
            stream = await self._session.next_stream(topic, timeout=timeout)
            return await stream.text()

        return _runner.run(receive())

    # -- handlers ------------------------------------------------------------------------------

    @overload
    def on(self, name: ConnectionEventName) -> Callable[[_events.ConnectionHandlerT], _events.ConnectionHandlerT]: ...  # type: ignore[overload-overlap]
    @overload
    def on(self, name: ConnectionEventName, fn: _events.ConnectionHandlerT) -> _events.ConnectionHandlerT: ...
    @overload
    def on(self, name: PropertyChangedEventName) -> Callable[[_events.PropertyHandlerT], _events.PropertyHandlerT]: ...  # type: ignore[overload-overlap]
    @overload
    def on(self, name: PropertyChangedEventName, fn: _events.PropertyHandlerT) -> _events.PropertyHandlerT: ...
    @overload
    def on(  # type: ignore[overload-overlap]
        self, name: DisconnectedEventName
    ) -> Callable[[_events.DisconnectedHandlerT], _events.DisconnectedHandlerT]: ...
    @overload
    def on(self, name: DisconnectedEventName, fn: _events.DisconnectedHandlerT) -> _events.DisconnectedHandlerT: ...
    @overload
    def on(self, name: ReconnectingEventName) -> Callable[[_events.SessionHandlerT], _events.SessionHandlerT]: ...  # type: ignore[overload-overlap]
    @overload
    def on(self, name: ReconnectingEventName, fn: _events.SessionHandlerT) -> _events.SessionHandlerT: ...
    @overload
    def on(  # type: ignore[overload-overlap]
        self, name: ReconnectedEventName
    ) -> Callable[[_events.ReconnectedHandlerT], _events.ReconnectedHandlerT]: ...
    @overload
    def on(self, name: ReconnectedEventName, fn: _events.ReconnectedHandlerT) -> _events.ReconnectedHandlerT: ...
    @overload
    def on(self, name: RejoinedEventName) -> Callable[[_events.RejoinedHandlerT], _events.RejoinedHandlerT]: ...  # type: ignore[overload-overlap]
    @overload
    def on(self, name: RejoinedEventName, fn: _events.RejoinedHandlerT) -> _events.RejoinedHandlerT: ...
    @overload
    def on(self, name: str) -> Callable[[_events.SignalHandlerT], _events.SignalHandlerT]: ...
    @overload
    def on(self, name: str, fn: _events.SignalHandlerT) -> _events.SignalHandlerT: ...
    def on(self, name: str, fn: AnyHandler | None = None) -> Any:
        """Registers ``fn`` for the event ``name`` (see :meth:`signalroom.Session.on`: the same
        names, event classes and rules); it runs on the package's background thread. Returns
        ``fn``; without ``fn``, a decorator.

        Example::

            @session.on("signal:ping")
            def ping(event: signalroom.SignalEvent) -> None:
                session.reply(event, "pong", type="pong")
        """
        if fn is None:

            def register(f: AnyHandler) -> AnyHandler:
                self.on(name, f)
                return f

            return register
        handler = fn
        return _runner.call(lambda: self._session.on(name, handler))

    def off(self, name: str, fn: AnyHandler | None = None) -> None:
        """Unregisters ``fn`` from ``name`` (every handler of ``name`` when ``fn`` is omitted)."""
        _runner.call(lambda: self._session.off(name, fn))

    def handlers(self, name: str | None = None) -> list[Callable[..., object]]:
        """The handlers registered for ``name`` (for every name when ``None``)."""
        return _runner.call(lambda: self._session.handlers(name))

    @property
    def on_error(self) -> HandlerErrorHook:
        """Called as ``on_error(handler, event, exception)`` when a handler raises (see
        :attr:`signalroom.Session.on_error`)."""
        return self._session.on_error

    @on_error.setter
    def on_error(self, hook: HandlerErrorHook | None) -> None:
        self._session.on_error = hook

    # -- receiving -----------------------------------------------------------------------------

    def _keep(self, event: Event) -> None:
        with self._cond:
            if len(self._events) >= self._buffer:
                self._events.popleft()
                self._dropped += 1
                if self._dropped == 1:
                    log.warning(
                        "signalroom: %r keeps at most %d unreceived events; dropping the oldest",
                        self,
                        self._buffer,
                    )
            self._events.append(event)
            self._cond.notify_all()

    def _over(self) -> bool:
        return self._session._over or self._session._ended is not None

    @overload
    def receive(  # type: ignore[overload-overlap]
        self,
        name: ConnectionEventName,
        *,
        predicate: Callable[[ConnectionEvent], object] | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> ConnectionEvent: ...
    @overload
    def receive(  # type: ignore[overload-overlap]
        self,
        name: PropertyChangedEventName,
        *,
        predicate: Callable[[ConnectionPropertyChangedEvent], object] | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> ConnectionPropertyChangedEvent: ...
    @overload
    def receive(  # type: ignore[overload-overlap]
        self,
        name: DisconnectedEventName,
        *,
        predicate: Callable[[SessionDisconnectedEvent], object] | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> SessionDisconnectedEvent: ...
    @overload
    def receive(  # type: ignore[overload-overlap]
        self,
        name: ReconnectingEventName,
        *,
        predicate: Callable[[SessionEvent], object] | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> SessionEvent: ...
    @overload
    def receive(  # type: ignore[overload-overlap]
        self,
        name: ReconnectedEventName,
        *,
        predicate: Callable[[ReconnectedEvent], object] | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> ReconnectedEvent: ...
    @overload
    def receive(  # type: ignore[overload-overlap]
        self,
        name: RejoinedEventName,
        *,
        predicate: Callable[[RejoinedEvent], object] | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> RejoinedEvent: ...
    @overload
    def receive(
        self,
        name: None = None,
        *,
        predicate: Callable[[Event], object] | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> Event: ...
    @overload
    def receive(
        self,
        name: str,
        *,
        predicate: Callable[[SignalEvent], object] | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> SignalEvent: ...
    def receive(
        self,
        name: str | None = None,
        *,
        predicate: Callable[[Any], object] | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> Any:
        """The first event kept or to come that is named ``name`` (``"signal"``, ``"signal:chat"``,
        ``"connectionCreated"``, ...; any event when ``None``) and for which ``predicate`` is true;
        it is taken out of what is kept. Events are kept from the moment of joining (at most
        ``buffer`` of them, the oldest dropped first), so one that arrived before the call counts.

        Raises :class:`SignalTimeoutError` after ``timeout`` seconds (``None``: no limit) and
        :class:`ConnectionLostError` once the session is over with no such event kept.

        Example::

            session.signal("ping", type="ping")
            reply = session.receive("signal:pong", timeout=2)
        """
        if _runner.on_loop_thread():
            raise RuntimeError(
                "receive() from a handler would wait for itself: events are delivered on the thread "
                "that runs handlers; register a handler for the event instead"
            )
        wanted = None if name is None else check_name(name)

        def matches(event: Event) -> bool:
            if (
                wanted is not None
                and event.name != wanted
                and not (wanted == "signal" and isinstance(event, SignalEvent))
            ):
                return False
            return predicate is None or bool(predicate(event))

        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                for i, event in enumerate(self._events):
                    if matches(event):
                        del self._events[i]
                        return event
                if self._over():
                    raise ConnectionLostError(
                        f"the session ended ({self.end_reason}) before a {wanted or 'any'!r} event came",
                        reason=self.end_reason,
                    )
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise SignalTimeoutError(
                        f"no {wanted or 'any'!r} event within {timeout:g} s in session {self.session_id!r}",
                        timeout=timeout,
                    )
                self._cond.wait(0.5 if remaining is None else min(remaining, 0.5))

    def __iter__(self) -> Iterator[Event]:
        """Every event, in arrival order, until the session is over (``sessionDisconnected`` is
        the last one)."""
        while True:
            try:
                event = self.receive(timeout=None)
            except ConnectionLostError:
                return
            yield event
            if isinstance(event, SessionDisconnectedEvent):
                return

    def record(self, path: str | os.PathLike[str]) -> Recorder:
        """Writes every event from now on to ``path`` as JSON Lines (see
        :meth:`signalroom.Session.record`)."""
        return _runner.call(lambda: self._session.record(path))

    # -- leaving -------------------------------------------------------------------------------

    def disconnect(self) -> None:
        """Leaves the session; returns once the server acknowledged. Leaving twice does nothing."""
        _runner.run(self._session.disconnect())

    def wait_closed(self, timeout: float | None = None) -> SessionDisconnectedEvent:
        """Blocks until the session is over (rejoining included) and returns its
        ``sessionDisconnected`` event; :class:`SignalTimeoutError` after ``timeout`` seconds."""
        session = self._session

        async def wait() -> SessionDisconnectedEvent:
            return await asyncio.wait_for(session.wait_closed(), timeout)

        try:
            return _runner.run(wait())
        except asyncio.TimeoutError:
            raise SignalTimeoutError(f"{self!r} was still on after {timeout:g} s", timeout=timeout) from None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.disconnect()


def connect(token: str, *, buffer: int = DEFAULT_BUFFER, **options: Any) -> Session:
    """Joins the session of ``token`` and returns a :class:`Session` (use it with ``with`` to
    leave at the end). ``options`` are those of :func:`signalroom.connect` (``data``, ``timeout``,
    ``rejoin`` — here a plain function may give the token —, ...); ``buffer`` bounds the events
    kept for :meth:`Session.receive`.

    Example::

        with signalroom.sync.connect(token, data="bot") as session:
            session.signal("hi", type="chat")
    """

    async def open_session() -> Session:
        session = await _connect.connect(token, **options)
        return Session(session, buffer)

    return _runner.run(open_session())


class ServerApi:
    """:class:`signalroom.ServerApi`, blocking: the same methods, each returning its result.

    Example::

        api = signalroom.sync.ServerApi("http://127.0.0.1:4443", "MY_SECRET")
        api.create_session("lobby")
        conn = api.create_connection("lobby")
    """

    def __init__(self, url: str, secret: str, *, timeout: float = 10.0, accept_invalid_certs: bool = False) -> None:
        """A client of the server at ``url`` with its ``secret``."""
        self._api = _api.ServerApi(url, secret, timeout=timeout, accept_invalid_certs=accept_invalid_certs)

    @property
    def url(self) -> str:
        """The REST base: ``http(s)://host:port/openvidu/api``."""
        return self._api.url

    def __repr__(self) -> str:
        return f"<signalroom.sync.ServerApi {self.url}>"

    def create_session(
        self, custom_session_id: str | None = None, *, signal_history: SignalHistory | None = None
    ) -> SessionObject:
        """Creates a session; with ``custom_session_id``, returns the existing one if there is one;
        ``signal_history``: what it keeps of its signals (a signalroom server's extension)."""
        return _runner.run(self._api.create_session(custom_session_id, signal_history=signal_history))

    def signal_history(
        self, session_id: str, *, limit: int | None = None, since: int | None = None
    ) -> list[HistoryEntry]:
        """The signals a session kept, oldest first (see :meth:`signalroom.ServerApi.signal_history`)."""
        return _runner.run(self._api.signal_history(session_id, limit=limit, since=since))

    def get_session(self, session_id: str) -> SessionObject:
        """A session."""
        return _runner.run(self._api.get_session(session_id))

    def list_sessions(self) -> list[SessionObject]:
        """Every session."""
        return _runner.run(self._api.list_sessions())

    def close_session(self, session_id: str) -> None:
        """Closes a session."""
        _runner.run(self._api.close_session(session_id))

    def create_connection(
        self, session_id: str, *, data: str | None = None, role: Role | None = None, record: bool | None = None
    ) -> ConnectionObject:
        """Creates a connection: its ``token`` joins the session once."""
        return _runner.run(self._api.create_connection(session_id, data=data, role=role, record=record))

    def list_connections(self, session_id: str) -> list[ConnectionObject]:
        """The connections of a session."""
        return _runner.run(self._api.list_connections(session_id))

    def get_connection(self, session_id: str, connection_id: str) -> ConnectionObject:
        """A connection."""
        return _runner.run(self._api.get_connection(session_id, connection_id))

    def delete_connection(self, session_id: str, connection_id: str) -> None:
        """Deletes a connection (evicts its participant)."""
        _runner.run(self._api.delete_connection(session_id, connection_id))

    def signal(
        self,
        session_id: str,
        data: str,
        *,
        type: str | None = None,  # noqa: A002
        to: Recipients | None = None,
    ) -> None:
        """Sends a signal from the server (see :meth:`signalroom.ServerApi.signal`)."""
        _runner.run(self._api.signal(session_id, data, type=type, to=to))

    def send_signal(
        self,
        session_id: str,
        *,
        data: str | None = None,
        type: str | None = None,  # noqa: A002
        to: Recipients | None = None,
    ) -> None:
        """Sends a signal request verbatim (see :meth:`signalroom.ServerApi.send_signal`)."""
        _runner.run(self._api.send_signal(session_id, data=data, type=type, to=to))


class Server(_server.Server):
    """:class:`signalroom.Server` whose :meth:`api` is a blocking :class:`ServerApi`.

    Example::

        with signalroom.sync.Server() as server:
            api = server.api()
            api.create_session("lobby")
    """

    def api(self, *, timeout: float = 10.0) -> ServerApi:  # type: ignore[override]
        """A blocking :class:`ServerApi` for this server."""
        return ServerApi(self.url, self.secret, timeout=timeout)

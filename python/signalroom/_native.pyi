"""Stubs of ``signalroom._native``, the Rust half of signalroom (checked by ``python -m mypy.stubtest``).

Every public name has a docstring here, so that an editor shows it on hover."""

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from os import PathLike
from typing import Any, Literal, final

from typing_extensions import TypeAlias, disjoint_base

__all__ = [
    "Connection",
    "ConnectionEvent",
    "ConnectionObject",
    "ConnectionPropertyChangedEvent",
    "EventHub",
    "ReconnectedEvent",
    "Server",
    "ServerApi",
    "Session",
    "SessionDisconnectedEvent",
    "SessionEvent",
    "SessionObject",
    "SignalEvent",
    "__version__",
    "connect",
    "enable_logging",
    "serve_cli",
]

__version__: str
_debug_build: bool

_Role: TypeAlias = Literal["PUBLISHER", "SUBSCRIBER", "MODERATOR"]
_State: TypeAlias = Literal["joining", "connected", "reconnecting", "disconnected"]
# The reasons signalroom and OpenVidu send; other servers may send others (hence ``| str``).
_EndReason: TypeAlias = Literal[
    "disconnect",
    "forceDisconnectByUser",
    "forceDisconnectByServer",
    "sessionClosedByServer",
    "networkDisconnect",
    "openviduServerStopped",
]

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
    history: bool = False,
) -> Awaitable[Session]:
    """Joins the session of ``token``; resolves to a native :class:`Session`. Use
    :func:`signalroom.connect`, which adds handlers, ``wait_for`` and streams."""

def enable_logging(default_filter: str = "info") -> None:
    """Sends the Rust logs to stderr, filtered as ``RUST_LOG`` (``default_filter`` when it is not
    set). Only the first call has an effect."""

def serve_cli(argv: list[str]) -> int:
    """Runs the ``signalroom`` command line (``argv[0]`` is the program name); returns the exit status."""

_Recipient: TypeAlias = str | Connection | ConnectionObject

@final
class Connection:
    """A participant of the session (openvidu-browser's ``Connection``). Equal (and hashing
    alike) when id, join time and data are."""

    @property
    def connection_id(self) -> str:
        """Its id (``con_…``); give it in ``to=[...]`` to signal only this participant."""
    @property
    def created_at(self) -> int:
        """When it joined, in ms since the epoch (0 when the server did not say)."""
    @property
    def data(self) -> str:
        """Its metadata: the client data given to ``connect(data=...)``, the server data given to
        ``ServerApi.create_connection(data=...)``, or both joined by ``%/%``."""
    def __eq__(self, value: object, /) -> bool: ...
    def __hash__(self) -> int: ...

@final
class SignalEvent:
    """A signal received: fires the event ``signal`` and the event named by its type
    (``signal:chat``)."""

    @property
    def name(self) -> str:
        """The event name: the wire type, e.g. ``signal:chat``."""
    @property
    def type(self) -> str:
        """The type without the ``signal:`` prefix, e.g. ``chat``."""
    @property
    def data(self) -> str:
        """The data (``""`` when the sender gave none)."""
    @property
    def from_(self) -> Connection | None:
        """The sender, or ``None`` for a signal sent through the REST API."""
    @property
    def history(self) -> bool:
        """Sent before this participant joined: from the session's history (``connect(...,
        history=True)``)."""

@final
class ConnectionEvent:
    """``connectionCreated`` (someone joined; also fired for everyone already there when this
    participant joins) or ``connectionDestroyed`` (someone left)."""

    @property
    def name(self) -> Literal["connectionCreated", "connectionDestroyed"]:
        """``connectionCreated`` or ``connectionDestroyed``."""
    @property
    def connection(self) -> Connection:
        """Who joined or left."""
    @property
    def reason(self) -> _EndReason | str | None:
        """Why it left (``disconnect``, ``forceDisconnectByServer``, ``networkDisconnect``, ...);
        ``None`` for ``connectionCreated``."""

@final
class ConnectionPropertyChangedEvent:
    """``connectionPropertyChanged``: a property of this participant's own connection changed."""

    @property
    def name(self) -> Literal["connectionPropertyChanged"]:
        """``connectionPropertyChanged``."""
    @property
    def new_value(self) -> str:
        """The new value, as the server sent it."""
    @property
    def property(self) -> str:  # last: it shadows the decorator in this class
        """``role`` or ``record``."""

@final
class SessionDisconnectedEvent:
    """``sessionDisconnected``: the session is over; always the last event."""

    @property
    def name(self) -> Literal["sessionDisconnected"]:
        """``sessionDisconnected``."""
    @property
    def reason(self) -> _EndReason | str:
        """``disconnect`` (you left), ``forceDisconnectByServer``, ``sessionClosedByServer``,
        ``openviduServerStopped``, ``networkDisconnect`` (reconnection failed), ... (see
        :data:`signalroom.EndReason`)."""

@disjoint_base
class SessionEvent:
    """``reconnecting`` (the link broke and is being reopened; requests wait) or ``reconnected``
    (a :class:`ReconnectedEvent`)."""

    @property
    def name(self) -> str:
        """``reconnecting`` or ``reconnected``."""

@final
class ReconnectedEvent(SessionEvent):
    """``reconnected``: the link is back and the session goes on.

    A signalroom server replays what it sent while the link was down and says whether that was
    everything; other servers (OpenVidu) say nothing.

    Example::

        @session.on("reconnected")
        def back(event: signalroom.ReconnectedEvent) -> None:
            if event.recovered is False:
                log.warning("missed events while reconnecting; resynchronising")
    """

    @property
    def recovered(self) -> bool | None:
        """``True``: nothing sent meanwhile was lost. ``False``: the server no longer had some of it
        (the gap outgrew its queue), so events were missed. ``None``: the server does not say."""
    @property
    def replayed(self) -> int:
        """How many notifications the server replayed (delivered as events like any other)."""

_Event: TypeAlias = (
    SignalEvent | ConnectionEvent | ConnectionPropertyChangedEvent | SessionDisconnectedEvent | SessionEvent
)

@final
class EventHub:
    """The events of the sessions of one event loop (:meth:`Session.attach`), taken together."""

    def __init__(self) -> None:
        """An empty hub: attach sessions to it."""
    def next(self) -> Awaitable[list[tuple[int, list[_Event], bool]]]:
        """Everything queued since the last call (waits for one event), grouped by session:
        ``(key, events, over)``, ``over`` once that session's events are over."""

@final
class Session:
    """A joined session (native half). Use :class:`signalroom.Session`, which adds handlers,
    ``wait_for`` and streams on top of this."""

    def signal(
        self,
        data: str,
        *,
        type: str | None = None,  # noqa: A002
        to: Iterable[_Recipient] | None = None,
    ) -> asyncio.Future[None]:
        """Sends a signal (queued now, in call order); resolves when the server accepted it."""
    def start_signal(
        self,
        data: str,
        type: str | None,  # noqa: A002
        to: Iterable[_Recipient] | None,
        /,
    ) -> Awaitable[None]:
        """:meth:`signal` for ``Session.signal`` and ``reply``: an awaitable lighter than an asyncio
        future, awaited once; a cancelled await of it drops the signal if not written yet."""
    def abandon(self, sent: Awaitable[None]) -> None:
        """The await of ``sent`` (from :meth:`start_signal`) was cancelled: a signal not written
        yet is not written, its answer not waited for. Nothing happens once it was answered."""
    def next_events(self) -> Awaitable[list[_Event] | None]:
        """Every event queued since the last call (waits for one); ``None`` once the session is over.
        Not for a session attached to an :class:`EventHub`."""
    def attach(self, hub: EventHub) -> int:
        """Sends this session's events to ``hub`` from now on, under the key returned (at most once)."""
    def disconnect(self) -> Awaitable[None]:
        """Leaves the session; resolves when done."""
    def close(self) -> None:
        """Starts leaving the session without waiting (when no event loop is left to await)."""
    def force_disconnect(self, connection: _Recipient) -> Awaitable[None]:
        """Evicts a participant (needs the ``MODERATOR`` role)."""
    @property
    def connection(self) -> Connection:
        """This participant."""
    @property
    def max_frame_bytes(self) -> int:
        """The largest frame the server accepts, in bytes (51200 for a server that does not say)."""
    @property
    def connection_id(self) -> str:
        """This participant's connection id."""
    @property
    def session_id(self) -> str:
        """The OpenVidu session id."""
    @property
    def remote_connections(self) -> list[Connection]:
        """The other participants, in join order."""
    @property
    def role(self) -> _Role:
        """This participant's role."""
    @property
    def state(self) -> _State:
        """``connected``, ``reconnecting`` or ``disconnected``."""
    @property
    def end_reason(self) -> _EndReason | str | None:
        """Why the session ended, once it has; else ``None``."""

@final
class ConnectionObject:
    """A Connection of the REST API (``/openvidu/api/sessions/{id}/connection``): a token to
    join with, and, once used, who joined."""

    @property
    def connection_id(self) -> str:
        """The connection id (``con_…``)."""
    @property
    def session_id(self) -> str:
        """The session id."""
    @property
    def status(self) -> Literal["pending", "active"]:
        """``pending`` (token not used yet) or ``active``."""
    @property
    def token(self) -> str:
        """The token: give it to :func:`signalroom.connect` or to openvidu-browser."""
    @property
    def role(self) -> _Role:
        """``PUBLISHER``, ``SUBSCRIBER`` or ``MODERATOR``."""
    @property
    def record(self) -> bool:
        """Whether the connection is recorded."""
    @property
    def server_data(self) -> str:
        """The server data given at creation (``""`` when none)."""
    @property
    def client_data(self) -> str | None:
        """The client data given by the participant when it joined, once active."""
    @property
    def created_at(self) -> int:
        """When it was created, in ms since the epoch."""
    @property
    def active_at(self) -> int | None:
        """When its participant joined, in ms since the epoch; ``None`` while pending."""
    @property
    def platform(self) -> str | None:
        """The participant's platform, once active."""
    @property
    def ip(self) -> str | None:
        """The participant's IP, once active."""
    def to_dict(self) -> dict[str, Any]:
        """The object exactly as the REST API returned it (OpenVidu's JSON, camelCase keys)."""

@final
class SessionObject:
    """A Session of the REST API (``/openvidu/api/sessions``)."""

    @property
    def session_id(self) -> str:
        """The session id."""
    @property
    def custom_session_id(self) -> str:
        """The custom id given at creation, or ``""``."""
    @property
    def created_at(self) -> int:
        """When it was created, in ms since the epoch."""
    @property
    def connections(self) -> list[ConnectionObject]:
        """Its connections, pending ones included."""
    def to_dict(self) -> dict[str, Any]:
        """The object exactly as the REST API returned it (OpenVidu's JSON, camelCase keys)."""

@final
class ServerApi:
    """The REST client (native half). Use :class:`signalroom.ServerApi`, whose methods are
    coroutines."""

    def __new__(cls, url: str, secret: str, *, timeout: float = 10.0, accept_invalid_certs: bool = False) -> ServerApi:
        """A client of the server at ``url`` with its ``secret``."""
    @property
    def url(self) -> str:
        """The REST base: ``http(s)://host:port/openvidu/api``."""
    def create_session(
        self, custom_session_id: str | None = None, *, signal_history: str | None = None
    ) -> Awaitable[SessionObject]:
        """Creates a session (or returns the existing one of ``custom_session_id``);
        ``signal_history``: the ``signalHistory`` setting as JSON text."""
    def signal_history(self, session_id: str, *, limit: int | None = None, since: int | None = None) -> Awaitable[str]:
        """The signals a session kept, as JSON text."""
    def get_session(self, session_id: str) -> Awaitable[SessionObject]:
        """A session."""
    def list_sessions(self) -> Awaitable[list[SessionObject]]:
        """Every session."""
    def close_session(self, session_id: str) -> Awaitable[None]:
        """Closes a session."""
    def create_connection(
        self, session_id: str, *, data: str | None = None, role: _Role | None = None, record: bool | None = None
    ) -> Awaitable[ConnectionObject]:
        """Creates a connection (a token)."""
    def list_connections(self, session_id: str) -> Awaitable[list[ConnectionObject]]:
        """The connections of a session."""
    def get_connection(self, session_id: str, connection_id: str) -> Awaitable[ConnectionObject]:
        """A connection."""
    def delete_connection(self, session_id: str, connection_id: str) -> Awaitable[None]:
        """Deletes a connection (evicts its participant)."""
    def send_signal(
        self,
        session_id: str,
        *,
        data: str | None = None,
        type: str | None = None,  # noqa: A002
        to: Iterable[_Recipient] | None = None,
    ) -> Awaitable[None]:
        """Sends a signal request verbatim (``type`` unchanged)."""
    def signal(
        self,
        session_id: str,
        data: str,
        *,
        type: str | None = None,  # noqa: A002
        to: Iterable[_Recipient] | None = None,
    ) -> Awaitable[None]:
        """Sends a signal from the server (``type`` given the ``signal:`` prefix)."""

@final
class Server:
    """The embedded server (native half). Use :class:`signalroom.Server`."""

    def __new__(
        cls,
        *,
        secret: str = "MY_SECRET",
        host: str = "127.0.0.1",
        port: int = 0,
        public_url: str | None = None,
        tls_cert: str | PathLike[str] | None = None,
        tls_key: str | PathLike[str] | None = None,
        max_signal_bytes: int | None = None,
        send_queue: int | None = None,
        reconnection_grace: float | None = None,
        broker: str | None = None,
        drain_window: float | None = None,
        signal_history: str | None = None,
        signal_hook: Callable[[str, Callable[..., None]], None] | None = None,
        signal_hook_types: list[str] | None = None,
        signal_hook_timeout: float | None = None,
        signal_hook_fail_open: bool = False,
    ) -> Server:
        """Configures a server (not started yet)."""
    def start(self) -> None:
        """Starts serving; returns once the socket listens (the GIL is released)."""
    def start_async(self) -> Awaitable[None]:
        """:meth:`start`, as an awaitable."""
    def stop(self) -> None:
        """Stops serving; blocks until done (the GIL is released)."""
    def stop_async(self) -> Awaitable[None]:
        """:meth:`stop`, as an awaitable."""
    def drain_async(self) -> Awaitable[None]:
        """Drains, then stops (with a broker; without one, as :meth:`stop`)."""
    @property
    def running(self) -> bool:
        """Whether it is serving."""
    @property
    def url(self) -> str:
        """Its URL, ``http://127.0.0.1:PORT``."""
    @property
    def token_base(self) -> str:
        """The start of its tokens, ``ws://127.0.0.1:PORT``."""
    @property
    def port(self) -> int:
        """The port it listens on."""
    @property
    def secret(self) -> str:
        """The REST API secret."""

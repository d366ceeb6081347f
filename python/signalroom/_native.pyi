"""Stubs of ``signalroom._native``, the Rust half of signalroom (checked by ``python -m mypy.stubtest``)."""

from collections.abc import Awaitable, Iterable
from os import PathLike
from typing import Any, final

from typing_extensions import TypeAlias, disjoint_base

__all__ = [
    "Connection",
    "ConnectionEvent",
    "ConnectionObject",
    "ConnectionPropertyChangedEvent",
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
) -> Awaitable[Session]: ...
def enable_logging(default_filter: str = "info") -> None: ...
def serve_cli(argv: list[str]) -> int: ...

_Recipient: TypeAlias = str | Connection | ConnectionObject

@final
class Connection:
    @property
    def connection_id(self) -> str: ...
    @property
    def created_at(self) -> int: ...
    @property
    def data(self) -> str: ...
    def __eq__(self, value: object, /) -> bool: ...
    def __hash__(self) -> int: ...

@final
class SignalEvent:
    @property
    def name(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def data(self) -> str: ...
    @property
    def from_(self) -> Connection | None: ...

@final
class ConnectionEvent:
    @property
    def name(self) -> str: ...
    @property
    def connection(self) -> Connection: ...
    @property
    def reason(self) -> str | None: ...

@final
class ConnectionPropertyChangedEvent:
    @property
    def name(self) -> str: ...
    @property
    def new_value(self) -> str: ...
    @property
    def property(self) -> str: ...  # last: it shadows the decorator in this class

@final
class SessionDisconnectedEvent:
    @property
    def name(self) -> str: ...
    @property
    def reason(self) -> str: ...

@disjoint_base
class SessionEvent:
    """``reconnecting`` (the link broke and is being reopened; requests wait) or ``reconnected``
    (a :class:`ReconnectedEvent`)."""

    @property
    def name(self) -> str: ...

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
class Session:
    def signal(
        self,
        data: str,
        *,
        type: str | None = None,  # noqa: A002
        to: Iterable[_Recipient] | None = None,
    ) -> Awaitable[None]: ...
    def next_events(self) -> Awaitable[list[_Event] | None]: ...
    def disconnect(self) -> Awaitable[None]: ...
    def force_disconnect(self, connection: _Recipient) -> Awaitable[None]: ...
    @property
    def connection(self) -> Connection: ...
    @property
    def connection_id(self) -> str: ...
    @property
    def session_id(self) -> str: ...
    @property
    def remote_connections(self) -> list[Connection]: ...
    @property
    def role(self) -> str: ...
    @property
    def state(self) -> str: ...
    @property
    def end_reason(self) -> str | None: ...

@final
class ConnectionObject:
    @property
    def connection_id(self) -> str: ...
    @property
    def session_id(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def token(self) -> str: ...
    @property
    def role(self) -> str: ...
    @property
    def record(self) -> bool: ...
    @property
    def server_data(self) -> str: ...
    @property
    def client_data(self) -> str | None: ...
    @property
    def created_at(self) -> int: ...
    @property
    def active_at(self) -> int | None: ...
    @property
    def platform(self) -> str | None: ...
    @property
    def ip(self) -> str | None: ...
    def to_dict(self) -> dict[str, Any]: ...

@final
class SessionObject:
    @property
    def session_id(self) -> str: ...
    @property
    def custom_session_id(self) -> str: ...
    @property
    def created_at(self) -> int: ...
    @property
    def connections(self) -> list[ConnectionObject]: ...
    def to_dict(self) -> dict[str, Any]: ...

@final
class ServerApi:
    def __new__(
        cls, url: str, secret: str, *, timeout: float = 10.0, accept_invalid_certs: bool = False
    ) -> ServerApi: ...
    @property
    def url(self) -> str: ...
    def create_session(self, custom_session_id: str | None = None) -> Awaitable[SessionObject]: ...
    def get_session(self, session_id: str) -> Awaitable[SessionObject]: ...
    def list_sessions(self) -> Awaitable[list[SessionObject]]: ...
    def close_session(self, session_id: str) -> Awaitable[None]: ...
    def create_connection(
        self, session_id: str, *, data: str | None = None, role: str | None = None, record: bool | None = None
    ) -> Awaitable[ConnectionObject]: ...
    def list_connections(self, session_id: str) -> Awaitable[list[ConnectionObject]]: ...
    def get_connection(self, session_id: str, connection_id: str) -> Awaitable[ConnectionObject]: ...
    def delete_connection(self, session_id: str, connection_id: str) -> Awaitable[None]: ...
    def send_signal(
        self,
        session_id: str,
        *,
        data: str | None = None,
        type: str | None = None,  # noqa: A002
        to: Iterable[_Recipient] | None = None,
    ) -> Awaitable[None]: ...
    def signal(
        self,
        session_id: str,
        data: str,
        *,
        type: str | None = None,  # noqa: A002
        to: Iterable[_Recipient] | None = None,
    ) -> Awaitable[None]: ...

@final
class Server:
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
    ) -> Server: ...
    def start(self) -> None: ...
    def start_async(self) -> Awaitable[None]: ...
    def stop(self) -> None: ...
    def stop_async(self) -> Awaitable[None]: ...
    @property
    def running(self) -> bool: ...
    @property
    def url(self) -> str: ...
    @property
    def token_base(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def secret(self) -> str: ...

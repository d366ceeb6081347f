"""``connect``: joining a session. Its options (those of the link, given to Rust, and the
``rejoin`` policy, kept by the :class:`Session`) are checked here, and :class:`Connecting` is what
it returns: a coroutine for the :class:`Session`, usable with ``async with`` too.
"""

from __future__ import annotations

from collections.abc import Coroutine, Generator
from types import TracebackType
from typing import Any

from . import _native
from ._session import Session, TokenFactory, WhileReconnecting
from .errors import InvalidArgumentError

__all__ = ["Connecting", "connect"]


class Connecting(Coroutine[Any, Any, "Session"]):
    """What :func:`connect` returns: a coroutine (``await`` it, or give it to ``asyncio.run``,
    ``asyncio.create_task`` or ``asyncio.ensure_future``) for a :class:`Session`, or use it with
    ``async with`` to leave the session at the end of the block."""

    def __init__(self, token: str, options: dict[str, Any], policy: dict[str, Any]) -> None:
        self._token = token
        self._options = options
        self._policy = policy
        self._coroutine: Coroutine[Any, Any, Session] | None = None
        self._session: Session | None = None

    def _started(self) -> Coroutine[Any, Any, Session]:
        if self._coroutine is None:
            self._coroutine = self._connect()
        return self._coroutine

    def __await__(self) -> Generator[Any, None, Session]:
        return self._started().__await__()

    def send(self, value: Any) -> Any:
        """Coroutine protocol: resumes the connection attempt (as ``coroutine.send``)."""
        return self._started().send(value)

    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any:
        """Coroutine protocol: raises an exception inside the connection attempt."""
        if val is None and tb is None:
            return self._started().throw(typ)
        return self._started().throw(typ, val, tb)

    def close(self) -> None:
        """Coroutine protocol: abandons the connection attempt (nothing happens if never started)."""
        if self._coroutine is not None:
            self._coroutine.close()

    async def _connect(self) -> Session:
        native = await _native.connect(self._token, **self._options)
        return Session(native, options=self._options, **self._policy)

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
    rejoin: TokenFactory | None = None,
    rejoin_attempts: int = 30,
    rejoin_interval: float = 1.0,
    while_reconnecting: WhileReconnecting = "wait",
    history: bool = False,
) -> Connecting:
    """Joins the session of ``token`` (from :meth:`ServerApi.create_connection`), as openvidu-browser
    does; ``await`` it for a :class:`Session`, or use ``async with``.

    - ``data``: this participant's client data; others see it in ``connection.data``.
    - ``timeout``: of each request (join, signal, leave), in seconds.
    - ``ping_interval``/``ping_timeout``: keepalive; a ping unanswered in time means the link broke.
    - ``reconnect_interval``/``reconnect_attempts``: how a broken link is reopened (0 attempts: never);
      when all fail the session ends with ``sessionDisconnected`` (``networkDisconnect``).
    - ``accept_invalid_certs``: accept any TLS certificate (development only).
    - ``rejoin``: opt-in; a function of no argument (``async def`` or plain) giving a fresh token.
      When the session is lost for good (reason ``networkDisconnect`` or
      ``openviduServerStopped``: a server restart), the session joins again with a new token, up to
      ``rejoin_attempts`` times ``rejoin_interval`` seconds apart (an exception from ``rejoin`` counts
      as a failed attempt), fires ``rejoined`` (a :class:`RejoinedEvent`) and goes on: same
      :class:`Session` object, handlers and waiters kept, a new connection id. ``sessionDisconnected``
      fires only if every attempt failed.
    - ``while_reconnecting``: what :meth:`Session.signal` does while the link is down: ``"wait"``
      (default; at most ``timeout`` seconds) or ``"fail"`` (raise :class:`ConnectionLostError` at once).
    - ``history``: ask a signalroom server for the session's signal history (a session created
      with ``signal_history``): its signals arrive first, oldest first, as :class:`SignalEvent`
      with ``history`` true, before any live signal and none twice. Register handlers before
      they are dispatched: they are delivered with the first events, after ``connectionCreated``.

    Raises :class:`RpcError` (401) for an unknown or used token, :class:`ConnectionLostError` when
    the server cannot be reached, :class:`InvalidArgumentError` for a malformed token.

    Example::

        session = await signalroom.connect(conn.token, data='{"name": "bot"}')

        async with signalroom.connect(conn.token) as session:
            await session.signal("hi", type="chat")

        async def fresh_token() -> str:
            return (await api.create_connection("lobby")).token

        bot = await signalroom.connect(await fresh_token(), rejoin=fresh_token)
    """
    if rejoin is not None and not callable(rejoin):
        raise TypeError(f"rejoin must be a function giving a token, not {type(rejoin).__name__}")
    if rejoin_attempts < 1:
        raise InvalidArgumentError(f"rejoin_attempts must be at least 1, not {rejoin_attempts}")
    if not rejoin_interval >= 0:
        raise InvalidArgumentError(f"rejoin_interval must be a number of seconds >= 0, not {rejoin_interval!r}")
    if while_reconnecting not in ("wait", "fail"):
        raise InvalidArgumentError(f"while_reconnecting must be 'wait' or 'fail', not {while_reconnecting!r}")
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
        "history": history,
    }
    policy: dict[str, Any] = {
        "rejoin": rejoin,
        "rejoin_attempts": rejoin_attempts,
        "rejoin_interval": rejoin_interval,
        "while_reconnecting": while_reconnecting,
    }
    return Connecting(token, options, policy)

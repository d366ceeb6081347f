"""``ServerApi``: the REST API of an OpenVidu 2.x server, as coroutines."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from . import _native
from ._history import HistoryEntry, SignalHistory
from ._native import ConnectionObject, SessionObject

if TYPE_CHECKING:
    from ._session import Recipients, Role

__all__ = ["ServerApi"]


class ServerApi:
    """A client of the REST API of an OpenVidu 2.x server (signalroom's or the real one):
    sessions, connections (tokens) and signals sent by the server. Every method is a coroutine:
    ``await`` it, or give it to ``asyncio.run``, ``asyncio.create_task`` or ``asyncio.ensure_future``.
    For plain scripts, :class:`signalroom.sync.ServerApi` has the same methods, blocking.

    Raises :class:`ServerApiError` (``.status``) for an HTTP error, :class:`ConnectionLostError`
    when the server cannot be reached, :class:`SignalTimeoutError` after ``timeout`` seconds.

    Example::

        api = signalroom.ServerApi("http://127.0.0.1:4443", "MY_SECRET")
        await api.create_session("lobby")
        conn = await api.create_connection("lobby", data='{"name": "bot"}')
        session = await signalroom.connect(conn.token)
        await api.signal("lobby", "from the server", type="chat")
    """

    def __init__(self, url: str, secret: str, *, timeout: float = 10.0, accept_invalid_certs: bool = False) -> None:
        """A client of the server at ``url`` (``http(s)://host:port``) with its ``secret``;
        ``timeout`` bounds each request, in seconds."""
        self._native = _native.ServerApi(url, secret, timeout=timeout, accept_invalid_certs=accept_invalid_certs)

    @property
    def url(self) -> str:
        """The REST base: ``http(s)://host:port/openvidu/api``."""
        return self._native.url

    def __repr__(self) -> str:
        return repr(self._native)

    async def create_session(
        self, custom_session_id: str | None = None, *, signal_history: SignalHistory | None = None
    ) -> SessionObject:
        """Creates a session; with ``custom_session_id``, returns the existing one if there is one.
        ``signal_history`` (a signalroom server's extension) makes it keep its last signals for
        late joiners (``connect(..., history=True)``) and :meth:`signal_history`."""
        if signal_history is None:
            return await self._native.create_session(custom_session_id)
        return await self._native.create_session(custom_session_id, signal_history=signal_history.to_json())

    async def signal_history(
        self, session_id: str, *, limit: int | None = None, since: int | None = None
    ) -> list[HistoryEntry]:
        """The signals a session kept (a signalroom server's ``GET /sessions/{id}/signals``),
        oldest first: the last ``limit`` (the server's default: 100) of those after ``since`` (an
        entry's ``seq``). Empty for a session keeping none; :class:`ServerApiError` 404 if there is
        no such session."""
        text = await self._native.signal_history(session_id, limit=limit, since=since)
        return [HistoryEntry._from_json(item) for item in json.loads(text)]

    async def get_session(self, session_id: str) -> SessionObject:
        """A session (its pending connections included); :class:`ServerApiError` 404 if none."""
        return await self._native.get_session(session_id)

    async def list_sessions(self) -> list[SessionObject]:
        """Every session."""
        return await self._native.list_sessions()

    async def close_session(self, session_id: str) -> None:
        """Closes a session: every participant gets ``sessionDisconnected`` (``sessionClosedByServer``)."""
        await self._native.close_session(session_id)

    async def create_connection(
        self,
        session_id: str,
        *,
        data: str | None = None,
        role: Role | None = None,
        record: bool | None = None,
    ) -> ConnectionObject:
        """Creates a connection in ``session_id``: its ``token`` joins the session once. ``data``
        is the server data every participant sees; ``role`` is ``PUBLISHER`` (default),
        ``SUBSCRIBER`` or ``MODERATOR`` (may evict others)."""
        return await self._native.create_connection(session_id, data=data, role=role, record=record)

    async def list_connections(self, session_id: str) -> list[ConnectionObject]:
        """The connections of a session, pending ones included."""
        return await self._native.list_connections(session_id)

    async def get_connection(self, session_id: str, connection_id: str) -> ConnectionObject:
        """A connection."""
        return await self._native.get_connection(session_id, connection_id)

    async def delete_connection(self, session_id: str, connection_id: str) -> None:
        """Deletes a connection: its participant is evicted (``forceDisconnectByServer``), or its
        unused token stops working."""
        await self._native.delete_connection(session_id, connection_id)

    async def signal(
        self,
        session_id: str,
        data: str,
        *,
        type: str | None = None,  # noqa: A002
        to: Recipients | None = None,
    ) -> None:
        """Sends a signal from the server to ``to`` (a list of connection ids or ``Connection``
        objects), or to everybody. ``type`` ``chat`` reaches ``session.on("signal:chat")``;
        receivers see ``from_`` ``None``. Like OpenVidu, the server refuses it (406) while nobody
        has joined the session."""
        await self._native.signal(session_id, data, type=type, to=to)

    async def send_signal(
        self,
        session_id: str,
        *,
        data: str | None = None,
        type: str | None = None,  # noqa: A002
        to: Recipients | None = None,
    ) -> None:
        """Sends a signal request verbatim (``POST /openvidu/api/signal``): unlike :meth:`signal`,
        ``type`` is not given the ``signal:`` prefix (openvidu-browser fires the event named exactly so)."""
        await self._native.send_signal(session_id, data=data, type=type, to=to)

"""``Server``: the signalroom server running inside this Python process."""

from __future__ import annotations

import os
from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING

from . import _native
from ._api import ServerApi
from ._history import SignalHistory
from .hook import SignalHook, _Dispatcher

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["DEFAULT_SECRET", "Server"]

#: The development secret (OpenVidu's default); pass your own for anything reachable by others.
DEFAULT_SECRET = "MY_SECRET"


class Server:
    """The Rust signalroom server, run inside this Python process (on the extension's own threads,
    so it keeps serving while your code runs): for tests, notebooks and small deployments.

    ``port=0`` picks a free port; read it back from :attr:`url` or :attr:`port`. Use it as a
    context manager (``with`` or ``async with``), or call :meth:`start` and :meth:`stop`.
    Stopping tells every participant (``sessionDisconnected``, reason ``openviduServerStopped``).

    Example::

        async with signalroom.Server(secret="s3cret") as server:
            api = server.api()
            await api.create_session("lobby")
            conn = await api.create_connection("lobby")
            session = await signalroom.connect(conn.token)

    In a notebook: ``server = signalroom.Server().start()``, later ``server.stop()``.
    """

    def __init__(
        self,
        *,
        secret: str = DEFAULT_SECRET,
        host: str = "127.0.0.1",
        port: int = 0,
        public_url: str | None = None,
        tls_cert: str | os.PathLike[str] | None = None,
        tls_key: str | os.PathLike[str] | None = None,
        max_signal_bytes: int | None = None,
        send_queue: int | None = None,
        reconnection_grace: float | None = None,
        broker: str | None = None,
        drain_window: float | None = None,
        signal_history: SignalHistory | None = None,
        signal_hook: SignalHook | None = None,
        signal_hook_types: Sequence[str] | None = None,
        signal_hook_timeout: float | None = None,
        signal_hook_fail_open: bool = False,
    ) -> None:
        """Configures a server (not started yet).

        - ``secret``: the REST API secret (HTTP Basic ``OPENVIDUAPP:<secret>``).
        - ``host``, ``port``: where to listen; ``port=0`` picks a free port.
        - ``public_url``: the URL clients reach it at; tokens point there (default: from the address).
        - ``tls_cert``, ``tls_key``: PEM files, to serve HTTPS/WSS.
        - ``max_signal_bytes``: largest signal ``data`` accepted (default 2 MiB: a signal is bounded by the 50 KiB frame and the REST body limit).
        - ``send_queue``: frames queued per participant before a too slow one is disconnected.
        - ``reconnection_grace``: seconds a participant whose link dropped may reconnect (default 10).
        - ``broker``: ``redis://HOST:PORT[/DB]`` to share sessions with other servers through Redis;
          ``redis+sentinel://H1:26379,H2:26379/MASTER_NAME`` through the primary Redis Sentinel names;
          ``redis-cluster://H1:6379,H2:6379`` through a Redis Cluster (default: sessions live in this
          server).
        - ``drain_window``: seconds over which :meth:`adrain` closes its sockets (default 5).
        - ``signal_history``: what sessions created without a ``signal_history`` of their own keep
          of their signals (default: nothing, as OpenVidu).
        - ``signal_hook``: a function (plain or ``async def``) asked before each signal of the types
          ``signal_hook_types`` (default: every type) is delivered: it takes a
          :class:`HookRequest` and returns ``None``/``True`` (deliver), ``False`` or
          :func:`signalroom.hook.refuse` (refuse with a reason), or :func:`signalroom.hook.allow`
          (deliver other data or to other recipients). It runs on the loop that started the server
          (``astart``/``async with``), else on signalroom's own; one that raises, or gives no answer
          within ``signal_hook_timeout`` seconds (default 1), refuses the signal, unless
          ``signal_hook_fail_open`` delivers it.
        """
        self._dispatcher = None if signal_hook is None else _Dispatcher(signal_hook)
        self._native = _native.Server(
            secret=secret,
            host=host,
            port=port,
            public_url=public_url,
            tls_cert=None if tls_cert is None else os.fspath(tls_cert),
            tls_key=None if tls_key is None else os.fspath(tls_key),
            max_signal_bytes=max_signal_bytes,
            send_queue=send_queue,
            reconnection_grace=reconnection_grace,
            broker=broker,
            drain_window=drain_window,
            signal_history=None if signal_history is None else signal_history.to_json(),
            signal_hook=self._dispatcher,
            signal_hook_types=None if signal_hook_types is None else list(signal_hook_types),
            signal_hook_timeout=signal_hook_timeout,
            signal_hook_fail_open=signal_hook_fail_open,
        )

    def start(self) -> Self:
        """Starts serving and returns ``self`` once the socket listens (blocks briefly; the GIL is
        released). Starting a running server does nothing. Raises :class:`ServerStartError` (an
        ``OSError``) if the address cannot be bound or the TLS files cannot be loaded."""
        if self._dispatcher is not None:
            self._dispatcher.bind()
        self._native.start()
        return self

    def stop(self) -> None:
        """Stops serving: participants are told (``openviduServerStopped``), sockets flushed and
        closed. Blocks until done (the GIL is released). Stopping a stopped server does nothing."""
        self._native.stop()

    async def astart(self) -> Self:
        """:meth:`start`, without blocking the event loop."""
        if self._dispatcher is not None:
            self._dispatcher.bind()
        await self._native.start_async()
        return self

    async def astop(self) -> None:
        """:meth:`stop`, without blocking the event loop."""
        await self._native.stop_async()

    async def adrain(self) -> None:
        """Drains, then stops, as ``signalroom serve`` does on SIGTERM with a broker: its
        participants' sockets close (spread over ``drain_window``) as a network drop, their
        clients reconnect to another server sharing the broker and resume there with the same
        connection, missing nothing; nobody is told they left. Without a broker: :meth:`astop`."""
        await self._native.drain_async()

    @property
    def running(self) -> bool:
        """Whether it is serving."""
        return self._native.running

    @property
    def url(self) -> str:
        """Its URL, ``http://127.0.0.1:PORT``: the base of the REST API."""
        return self._native.url

    @property
    def token_base(self) -> str:
        """The start of its tokens, ``ws://127.0.0.1:PORT``."""
        return self._native.token_base

    @property
    def port(self) -> int:
        """The port it listens on."""
        return self._native.port

    @property
    def secret(self) -> str:
        """The REST API secret."""
        return self._native.secret

    def api(self, *, timeout: float = 10.0) -> ServerApi:
        """A :class:`ServerApi` for this server (its URL and secret)."""
        return ServerApi(self.url, self.secret, timeout=timeout)

    def __repr__(self) -> str:
        where = self.url if self.running else "stopped"
        return f"<signalroom.Server {where}>"

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        return await self.astart()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.astop()

"""A loopback TCP proxy a test controls, to break the network between a client and a server the way
networks break: every connection reset at once (RST both ways), or silence (bytes stop flowing,
nobody is told) that ends in a reset. New connections after a cut are forwarded normally."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["TcpProxy"]

#: Bytes read from one side before they are written to the other.
CHUNK = 16 * 1024


def _abort(writer: asyncio.StreamWriter) -> None:
    """Closes with an RST: a zero linger makes the kernel abort the connection, not close it."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


@dataclass
class _Pair:
    client: asyncio.StreamWriter
    server: asyncio.StreamWriter
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def stop_forwarding(self) -> None:
        for task in self.tasks:
            task.cancel()

    def reset(self) -> None:
        self.stop_forwarding()
        _abort(self.client)
        _abort(self.server)


class TcpProxy:
    """A proxy on ``127.0.0.1:0`` forwarding to ``target``; use as ``async with``."""

    def __init__(self, target: tuple[str, int] | None = None) -> None:
        self.target = target
        self._server: asyncio.Server | None = None
        self._pairs: list[_Pair] = []
        self._later: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        assert self._server is not None, "not started"
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``: give it to a server as its public URL."""
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> Self:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        self.reset()
        for task in list(self._later):
            task.cancel()
        await asyncio.gather(*self._later, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def reset(self) -> None:
        """Aborts every open connection pair with an RST on both sides."""
        pairs, self._pairs = self._pairs, []
        for pair in pairs:
            pair.reset()

    def blackhole(self, seconds: float) -> None:
        """Forwards nothing, either way, on every open connection pair for ``seconds``, then resets
        them. Neither side is told until the reset."""
        pairs, self._pairs = self._pairs, []
        for pair in pairs:
            pair.stop_forwarding()  # nothing is read any more: the kernel buffers fill and stay full

        async def reset_later() -> None:
            try:
                await asyncio.sleep(seconds)
            finally:  # stopping the proxy early resets them too
                for pair in pairs:
                    pair.reset()

        task = asyncio.ensure_future(reset_later())
        self._later.add(task)
        task.add_done_callback(self._later.discard)

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        if self.target is None:
            _abort(client_writer)
            return
        try:
            server_reader, server_writer = await asyncio.open_connection(*self.target)
        except OSError:
            _abort(client_writer)
            return
        pair = _Pair(client_writer, server_writer)
        pair.tasks = [
            asyncio.ensure_future(_forward(client_reader, server_writer)),
            asyncio.ensure_future(_forward(server_reader, client_writer)),
        ]
        self._pairs.append(pair)


async def _forward(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copies ``reader`` to ``writer`` until end of stream, then half-closes ``writer``."""
    try:
        while chunk := await reader.read(CHUNK):
            writer.write(chunk)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        writer.transport.abort()

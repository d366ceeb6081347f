"""signalroom: OpenVidu 2.x signalling for asyncio, in Rust.

Join an OpenVidu session with a token, exchange signals with everyone in it (browsers running
``openvidu-browser`` included), drive the REST API, or run the server in this process.

Example::

    import asyncio
    import signalroom

    async def main() -> None:
        async with signalroom.Server(secret="s3cret") as server:
            api = signalroom.ServerApi(server.url, "s3cret")
            await api.create_session("lobby")
            alice = await signalroom.connect((await api.create_connection("lobby")).token)
            bob = await signalroom.connect((await api.create_connection("lobby")).token)

            @bob.on("signal:chat")
            async def answer(event: signalroom.SignalEvent) -> None:
                await bob.reply(event, f"echo: {event.data}")

            reply = alice.wait_for("signal:chat", predicate=lambda e: e.data.startswith("echo"))
            await alice.signal("hello", type="chat", to=[bob.connection])
            print((await reply).data)  # echo: hello
            await alice.disconnect()
            await bob.disconnect()

    asyncio.run(main())

See :func:`connect`, :class:`Session`, :class:`ServerApi`, :class:`Server`; for plain scripts
(no asyncio) :mod:`signalroom.sync`; for analysis :meth:`Session.record` and
:func:`read_transcript`; for tests the pytest plugin :mod:`signalroom.testing`; for type checking
the mypy plugin :mod:`signalroom.mypy_plugin`; from a terminal ``python -m signalroom``.
"""

from __future__ import annotations

from ._api import ServerApi
from ._connect import Connecting, connect
from ._event_names import EventName
from ._events import EndReason, Event, HandlerErrorHook, RejoinedEvent
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
    __version__,
    enable_logging,
)
from ._pump import REJOIN_REASONS
from ._requests import Request, RequestHandler
from ._server import DEFAULT_SECRET, Server
from ._session import (
    DEFAULT_TIMEOUT,
    REQUEST_TIMEOUT,
    Recipient,
    Recipients,
    Role,
    Session,
    State,
    TokenFactory,
    WhileReconnecting,
)
from ._streams import IncomingStream, IncomingStreams, StreamHandler, StreamWriter
from ._transcript import Recorder, TranscriptRecord, read_transcript
from ._waiting import SignalStream
from .errors import (
    ConnectionLostError,
    HandlerError,
    InvalidArgumentError,
    InvalidSignalError,
    NoHandlerError,
    ReplyTooBigError,
    RequestError,
    RequestTimeoutError,
    RpcError,
    ServerApiError,
    ServerStartError,
    SignalroomError,
    SignalTimeoutError,
    StreamAbortedError,
    StreamError,
    TargetLeftError,
)
from .hook import HookRequest, SignalHook

__all__ = [
    "DEFAULT_SECRET",
    "DEFAULT_TIMEOUT",
    "REJOIN_REASONS",
    "REQUEST_TIMEOUT",
    "Connecting",
    "Connection",
    "ConnectionEvent",
    "ConnectionLostError",
    "ConnectionObject",
    "ConnectionPropertyChangedEvent",
    "EndReason",
    "Event",
    "EventName",
    "HandlerError",
    "HandlerErrorHook",
    "HistoryEntry",
    "HookRequest",
    "IncomingStream",
    "IncomingStreams",
    "InvalidArgumentError",
    "InvalidSignalError",
    "NoHandlerError",
    "Recipient",
    "Recipients",
    "ReconnectedEvent",
    "Recorder",
    "RejoinedEvent",
    "ReplyTooBigError",
    "Request",
    "RequestError",
    "RequestHandler",
    "RequestTimeoutError",
    "Role",
    "RpcError",
    "Server",
    "ServerApi",
    "ServerApiError",
    "ServerStartError",
    "Session",
    "SessionDisconnectedEvent",
    "SessionEvent",
    "SessionObject",
    "SignalEvent",
    "SignalHistory",
    "SignalHook",
    "SignalStream",
    "SignalTimeoutError",
    "SignalroomError",
    "State",
    "StreamAbortedError",
    "StreamError",
    "StreamHandler",
    "StreamWriter",
    "TargetLeftError",
    "TokenFactory",
    "TranscriptRecord",
    "WhileReconnecting",
    "__version__",
    "connect",
    "enable_logging",
    "hook",
    "read_transcript",
    "sync",
]

from . import hook, sync

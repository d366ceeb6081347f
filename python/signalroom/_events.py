"""What a session delivers, and to what: the event classes made in Python (:class:`RejoinedEvent`;
the others come from Rust), the :data:`Event` union, the check of an event name, the types of
handlers by event name (shared by the overloads of the asyncio and the blocking ``Session``), and
where a handler's exception goes by default.

The names themselves are in ``_event_names``.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Literal, TypeVar, Union

from ._event_names import SESSION_EVENTS, SIGNAL, SIGNAL_PREFIX
from ._native import (
    Connection,
    ConnectionEvent,
    ConnectionPropertyChangedEvent,
    ReconnectedEvent,
    SessionDisconnectedEvent,
    SessionEvent,
    SignalEvent,
)
from .errors import InvalidArgumentError

__all__ = [
    "AnyHandler",
    "ConnectionHandlerT",
    "DisconnectedHandlerT",
    "EndReason",
    "Event",
    "HandlerErrorHook",
    "PropertyHandlerT",
    "ReconnectedHandlerT",
    "RejoinedEvent",
    "RejoinedHandlerT",
    "SessionHandlerT",
    "SignalHandlerT",
    "check_name",
    "default_on_error",
    "handler_error_listeners",
    "name_of",
]

log = logging.getLogger("signalroom")

#: Why a session ended (:attr:`SessionDisconnectedEvent.reason`) or a participant left
#: (:attr:`ConnectionEvent.reason`). Other servers may send other values.
EndReason = Literal[
    "disconnect",
    "forceDisconnectByUser",
    "forceDisconnectByServer",
    "sessionClosedByServer",
    "networkDisconnect",
    "openviduServerStopped",
]


class RejoinedEvent:
    """``rejoined``: a session with a ``rejoin`` policy lost its place (network, server restart)
    and joined again with a fresh token. It is a new participant for the others: ``connection``
    is new, ``previous`` is the one it had; signals sent meanwhile were not received.

    Example::

        @session.on("rejoined")
        def back(event: signalroom.RejoinedEvent) -> None:
            print("rejoined as", event.connection.connection_id, "after", event.reason)
    """

    __slots__ = ("attempts", "connection", "previous", "reason")

    #: Always ``"rejoined"``.
    name: Literal["rejoined"] = "rejoined"

    def __init__(self, connection: Connection, previous: Connection, reason: str, attempts: int) -> None:
        #: This participant now.
        self.connection = connection
        #: This participant before it was lost.
        self.previous = previous
        #: Why the previous participation ended (``networkDisconnect``, ``openviduServerStopped``).
        self.reason = reason
        #: How many tries it took (1: the first).
        self.attempts = attempts

    def __repr__(self) -> str:
        return (
            f"RejoinedEvent({self.previous.connection_id!r} -> {self.connection.connection_id!r}, "
            f"reason={self.reason!r}, attempts={self.attempts})"
        )


#: Any event a session delivers.
Event = Union[
    SignalEvent,
    ConnectionEvent,
    ConnectionPropertyChangedEvent,
    SessionDisconnectedEvent,
    SessionEvent,
    ReconnectedEvent,
    RejoinedEvent,
]

_SESSION_EVENTS = frozenset(SESSION_EVENTS)


def check_name(name: str) -> str:
    """``name`` if a session can fire it; else an ``InvalidArgumentError`` saying what to use."""
    if not isinstance(name, str):
        raise TypeError(f"event name must be a str, not {type(name).__name__}")
    if name == SIGNAL or name.startswith(SIGNAL_PREFIX) or name in _SESSION_EVENTS:
        return name
    if name.startswith(("stream", "publisher", "recording", "broadcast", "speech", "network", "exception")):
        raise InvalidArgumentError(f"event {name!r} is not supported: signalroom is signalling only (no media)")
    raise InvalidArgumentError(
        f"unknown event {name!r}: use 'signal' (every signal), 'signal:<type>' (e.g. 'signal:{name}' for "
        f"signals of type {name!r}) or one of {', '.join(SESSION_EVENTS)}"
    )


# The handler a name takes, for the overloads of on(): a decorated function keeps its own type.
SignalHandlerT = TypeVar("SignalHandlerT", bound=Callable[[SignalEvent], object])
ConnectionHandlerT = TypeVar("ConnectionHandlerT", bound=Callable[[ConnectionEvent], object])
PropertyHandlerT = TypeVar("PropertyHandlerT", bound=Callable[[ConnectionPropertyChangedEvent], object])
DisconnectedHandlerT = TypeVar("DisconnectedHandlerT", bound=Callable[[SessionDisconnectedEvent], object])
SessionHandlerT = TypeVar("SessionHandlerT", bound=Callable[[SessionEvent], object])
ReconnectedHandlerT = TypeVar("ReconnectedHandlerT", bound=Callable[[ReconnectedEvent], object])
RejoinedHandlerT = TypeVar("RejoinedHandlerT", bound=Callable[[RejoinedEvent], object])
AnyHandler = Callable[[Any], object]

#: Called with the handler that raised, the event and the exception (see :attr:`Session.on_error`).
HandlerErrorHook = Callable[[Callable[..., object], Event, BaseException], object]

# Who hears of handler errors that reached the default hook (the pytest plugin, per test).
handler_error_listeners: list[Callable[[Callable[..., object], Any, BaseException], None]] = []


def default_on_error(fn: Callable[..., object], event: Any, error: BaseException) -> None:
    """The default :attr:`Session.on_error`: logs the error with its traceback (logger
    ``signalroom``) and tells the pytest plugin, which fails the running test."""
    log.error("signalroom: handler %s failed on %r", name_of(fn), event, exc_info=error)
    for listener in handler_error_listeners:
        listener(fn, event, error)


def name_of(fn: object) -> str:
    """A handler's name in messages: its qualified name, else its ``repr``."""
    return getattr(fn, "__qualname__", None) or repr(fn)

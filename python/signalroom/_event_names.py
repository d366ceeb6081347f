"""The names of the events a session fires, defined once: the ``Literal`` types the overloads of
``on()``, ``wait_for()`` and ``receive()`` take (one per event class), :data:`EventName` made of
them, and :data:`SESSION_EVENTS`, the same names as strings for the checks at run time and in the
mypy plugin.

It imports nothing but ``typing``: the mypy plugin (``signalroom.mypy_plugin``) reads it while
mypy runs.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

__all__ = [
    "SESSION_EVENTS",
    "SIGNAL",
    "SIGNAL_PREFIX",
    "ConnectionEventName",
    "DisconnectedEventName",
    "EventName",
    "PropertyChangedEventName",
    "ReconnectedEventName",
    "ReconnectingEventName",
    "RejoinedEventName",
]

#: Every signal (``session.on("signal", ...)``).
SIGNAL = "signal"
#: Signals of one type: ``"signal:<type>"``.
SIGNAL_PREFIX = "signal:"

#: A participant joined or left (a ``ConnectionEvent``).
ConnectionEventName = Literal["connectionCreated", "connectionDestroyed"]
#: A participant's property changed (a ``ConnectionPropertyChangedEvent``).
PropertyChangedEventName = Literal["connectionPropertyChanged"]
#: The session ended; always the last event (a ``SessionDisconnectedEvent``).
DisconnectedEventName = Literal["sessionDisconnected"]
#: The link broke and is being reopened (a ``SessionEvent``).
ReconnectingEventName = Literal["reconnecting"]
#: The link is back (a ``ReconnectedEvent``).
ReconnectedEventName = Literal["reconnected"]
#: The session was lost and joined again (a ``RejoinedEvent``).
RejoinedEventName = Literal["rejoined"]

#: The names of the events a session fires besides ``"signal"`` and ``"signal:<type>"``.
EventName = Literal[
    ConnectionEventName,
    PropertyChangedEventName,
    DisconnectedEventName,
    ReconnectingEventName,
    ReconnectedEventName,
    RejoinedEventName,
]


def _names(literal: Any) -> tuple[str, ...]:
    """The strings of a ``Literal``, nested ones flattened (Python 3.9.0 keeps them nested)."""
    return tuple(name for arg in get_args(literal) for name in (_names(arg) if get_args(arg) else (arg,)))


#: :data:`EventName` as strings, in its order.
SESSION_EVENTS: tuple[str, ...] = _names(EventName)

"""Mistakes that mypy --strict must catch (tests/test_typing.py), with signalroom's mypy plugin
(pyproject.toml) for event names: each line marked with an E comment must get one error, containing
the comment's text, and no other line may get one. Not run, only type-checked."""

from __future__ import annotations

import signalroom


async def mistakes(session: signalroom.Session, api: signalroom.ServerApi, event: signalroom.SignalEvent) -> None:
    def on_created(e: signalroom.ConnectionEvent) -> None:
        print(e.connection.data)

    session.on("connectionCreated", on_created)  # right: the name gives the event class
    session.on("conectionCreated", on_created)  # E: event "conectionCreated": did you mean "connectionCreated"?
    session.on("conectionCreated", lambda e: None)  # E: did you mean "connectionCreated"?
    joined = await session.wait_for("conectionCreated")  # E: unknown signalroom event
    print(joined.connection)  # right: the call above is the one error
    rejoined = await session.wait_for("rejoined")
    print(rejoined.previous.connection_id)  # right

    @session.on("rejoined")  # E: Value of type variable
    def wrong_class(e: signalroom.SignalEvent) -> None: ...

    await api.create_connection("lobby", role="admin")  # E: Argument "role" to "create_connection"
    await api.create_connection("lobby", role="MODERATOR")  # right
    await session.signal("hi", to="con_x")  # E: Argument "to" to "signal" of "Session"
    await session.signal("hi", to=[event.from_])  # E: List item 0 has incompatible type "Connection | None"
    await session.signal("hi", to=["con_x", session.connection])  # right
    if session.state == "conected":  # E: Non-overlapping equality check
        pass
    role: signalroom.Role = session.role  # right
    print(role, event.reason)  # E: "SignalEvent" has no attribute "reason"
    signalroom.connect("ws://x", while_reconnecting="retry")  # E: Argument "while_reconnecting" to "connect"


def sync_mistakes(s: signalroom.sync.Session) -> None:
    print(s.receive("connectionCreated").connection.data)  # right
    print(s.receive("signal:chat").data)  # right
    print(s.receive("connectionCreated").data)  # E: "ConnectionEvent" has no attribute "data"
    s.receive("signl")  # E: unknown signalroom event "signl": did you mean "signal"?
    s.receive("chat")  # E: unknown signalroom event "chat": for signals of type chat write "signal:chat"
    s.on("signal:", print)  # E: empty signal type
    s.signal("hi", to="con_x")  # E: Argument "to" to "signal" of "Session"

    @s.on("sessionDisconnected")  # E: Value of type variable
    def wrong(e: signalroom.SignalEvent) -> None: ...

    @s.on("sessionDisconnected")  # right
    def right(e: signalroom.SessionDisconnectedEvent) -> None: ...

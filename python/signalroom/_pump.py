"""A session's life after joining: the pump, one task per session that takes the events Rust
queued, batch by batch, and dispatches them; the ``rejoin``
policy (the lost session's end held, joining again with fresh tokens, a ``rejoined`` event or the
end delivered at last); leaving (``Session.disconnect`` stops rejoining) and the end of it all:
over for good, or abandoned by an event loop shutting down.

The events of every session of an event loop cross from Rust together: each session is attached
to its loop's :class:`_Hub` (``_native.EventHub``), whose one task takes everything queued for all
of them in one crossing and hands each session's pump its batch. In a process joined to many
sessions each usually has one event at a time: a crossing per session would cost more than the
event.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import warnings
from collections import deque
from typing import TYPE_CHECKING, Any

from . import _native
from ._events import RejoinedEvent
from ._native import SessionDisconnectedEvent
from .errors import ConnectionLostError, SignalTimeoutError

if TYPE_CHECKING:
    from ._session import Session, TokenFactory

__all__ = ["REJOIN_REASONS", "Pump"]

log = logging.getLogger("signalroom")


class _Hub:
    """The events of the sessions of one event loop: a ``_native.EventHub`` and the task that
    takes its batches (started with the first session attached, over once none is left)."""

    __slots__ = ("native", "pumps", "task")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.native = _native.EventHub()
        self.pumps: dict[int, Pump] = {}
        self.task = loop.create_task(self._run(), name="signalroom events")

    async def _run(self) -> None:
        pumps = self.pumps
        try:
            while pumps:
                for key, events, over in await self.native.next():
                    pump = pumps.get(key)
                    if pump is None:
                        continue
                    if events:
                        pump.feed(events)
                    if over:
                        del pumps[key]
                        pump.feed(None)
        except Exception:  # never expected: a bug; say so rather than go quiet
            log.exception("signalroom: the event hub of the loop failed")
            for pump in pumps.values():
                pump.feed(None)
            pumps.clear()


#: The hub of each event loop with sessions (removed once its task is over: no session left, or
#: the loop shutting down).
_hubs: dict[asyncio.AbstractEventLoop, _Hub] = {}


def _attach(pump: Pump, native: _native.Session) -> None:
    """Sends the events of ``native`` to ``pump`` through the hub of its event loop."""
    loop = pump._session._loop
    hub = _hubs.get(loop)
    if hub is None or hub.task.done():
        hub = _hubs[loop] = _Hub(loop)
        hub.task.add_done_callback(functools.partial(_hub_done, loop, hub))
    hub.pumps[native.attach(hub.native)] = pump


def _hub_done(loop: asyncio.AbstractEventLoop, hub: _Hub, task: asyncio.Task[None]) -> None:
    if _hubs.get(loop) is hub:
        del _hubs[loop]


#: Session end reasons after which a session with a ``rejoin`` policy rejoins: its link was lost
#: for good, or its server stopped (a restart).
REJOIN_REASONS: frozenset[str] = frozenset({"networkDisconnect", "openviduServerStopped"})


class Pump:
    """A session's pump task and rejoin policy."""

    __slots__ = (
        "_parked",
        "_queued",
        "_session",
        "_wake",
        "attempts",
        "held_end",
        "interval",
        "leaving",
        "link_up",
        "rejoin",
        "task",
    )

    def __init__(self, session: Session, rejoin: TokenFactory | None, attempts: int, interval: float) -> None:
        self._session = session
        self.rejoin = rejoin  # None once given up
        self.attempts = attempts
        self.interval = interval
        self.held_end: SessionDisconnectedEvent | None = None  # lost, rejoining
        self.link_up = asyncio.Event()
        self.link_up.set()
        self.leaving = asyncio.Event()
        self._queued: deque[list[Any] | Exception | None] = deque()  # from the hub, not dispatched yet
        self._wake: asyncio.Future[None] | None = None  # the pump waits for a batch
        self._parked = False  # the pump waits in _next with nothing queued
        _attach(self, session._native)
        self.task = session._loop.create_task(self._run(), name=f"signalroom events of {session._native.connection_id}")

    # -- the rejoin policy ---------------------------------------------------------------------

    def rejoining(self) -> bool:
        """Whether the session was lost and will rejoin (the end may still be on its way from Rust:
        the pump holds it when it comes)."""
        session = self._session
        if session._over:
            return False
        if self.held_end is not None:
            return True
        return self.rejoin is not None and not self.leaving.is_set() and session._native.end_reason in REJOIN_REASONS

    def hold_end(self, end: SessionDisconnectedEvent) -> bool:
        """Whether the session's end ``end`` is held for a rejoin: not over yet, the pump rejoins
        once Rust is done."""
        if (
            self.rejoin is not None
            and end.reason in REJOIN_REASONS
            and not self.leaving.is_set()
            and self.held_end is None
        ):
            self.held_end = end
            return True
        return False

    async def until_rejoined(self) -> None:
        """Waits until the session lost is rejoined (:meth:`Session.signal`'s wait)."""
        session = self._session
        if self.held_end is None:
            self.link_up.clear()  # the pump is about to hold the end and rejoin; it sets it again
        try:
            await asyncio.wait_for(self.link_up.wait(), session._timeout)
        except asyncio.TimeoutError:
            raise SignalTimeoutError(
                f"session {session.session_id!r} was still rejoining after {session._timeout:g} s; "
                "the signal was not sent",
                timeout=session._timeout,
            ) from None

    def leave(self) -> None:
        """The session is leaving (:meth:`Session.disconnect`): no more rejoining, nothing waits for it."""
        self.leaving.set()
        self.link_up.set()

    # -- the pump ------------------------------------------------------------------------------

    def feed(self, batch: list[Any] | None) -> None:
        """A batch of this session's events from the hub (``None``: its events are over).

        When the pump waits with nothing queued, the batch is dispatched here and now, in the
        hub's task: in arrival order as the pump would, without waking the pump for it (a
        future, a task step and a scheduled callback per session and batch)."""
        if batch is not None and self._parked and not self._queued:
            session = self._session
            session._batches += 1
            dispatch = session._dispatcher.dispatch
            try:
                for event in batch:
                    dispatch(event)
            except Exception as error:  # noqa: BLE001 (never expected: a bug; the pump reports it and stops)
                self._queued.append(error)
            else:
                return
        else:
            self._queued.append(batch)
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    async def _next(self) -> list[Any] | None:
        queued = self._queued
        while not queued:
            self._wake = self._session._loop.create_future()
            self._parked = True
            try:
                await self._wake
            finally:
                self._parked = False
        batch = queued.popleft()
        if isinstance(batch, Exception):
            raise batch
        return batch

    async def _run(self) -> None:
        """The pump: takes the events Rust queued, batch by batch, and dispatches them; rejoins
        when the session was lost and a ``rejoin`` policy is set."""
        session = self._session
        dispatch = session._dispatcher.dispatch
        try:
            while True:
                batch = await self._next()
                if batch is None:
                    if self.held_end is not None and await self._rejoin_now(self.held_end):
                        continue
                    return
                session._batches += 1
                for event in batch:
                    dispatch(event)
        except asyncio.CancelledError:
            self._abandoned()
            raise
        except Exception:  # never expected: a bug; say so rather than go quiet
            log.exception("signalroom: the event pump of %r failed", session)
        finally:
            self._finish()

    def _abandoned(self) -> None:
        """The pump was cancelled: its event loop is shutting down (``asyncio.run`` returning)
        with the session still on. Leave, so the server does not keep a ghost participant."""
        session = self._session
        if session._over or session._native.state == "disconnected":
            return
        session._native.close()
        warnings.warn(
            f"{session!r} was still connected when its event loop shut down; it was disconnected. "
            "Leave explicitly with 'await session.disconnect()' or 'async with signalroom.connect(...)'",
            ResourceWarning,
            stacklevel=1,
        )

    async def _rejoin_now(self, lost: SessionDisconnectedEvent) -> bool:
        """Joins again with fresh tokens, up to ``rejoin_attempts`` times; True once rejoined.
        Otherwise delivers ``lost`` (the held ``sessionDisconnected``)."""
        assert self.rejoin is not None
        session = self._session
        self.link_up.clear()
        previous = session._connection
        error: BaseException | None = None
        for attempt in range(1, self.attempts + 1):
            if self.leaving.is_set():
                break
            try:
                token = self.rejoin()
                if inspect.isawaitable(token):
                    token = await token
                # A rejoin does not ask for the history again: it was delivered on the first join.
                native = await _native.connect(token, **{**session._options, "history": False})
            except Exception as e:  # noqa: BLE001 (retried; the last one is logged)
                error = e
                log.info("signalroom: rejoin attempt %d of %r failed: %s", attempt, session.session_id, e)
                try:
                    await asyncio.wait_for(self.leaving.wait(), self.interval)
                except asyncio.TimeoutError:
                    pass
                continue
            if self.leaving.is_set():  # disconnect() was called meanwhile: leave this one too
                await native.disconnect()
                break
            session._native = native
            session._connection = native.connection
            _attach(self, native)
            self.held_end = None
            self.link_up.set()
            log.info("signalroom: %r rejoined after %s (attempt %d)", session, lost.reason, attempt)
            session._dispatcher.dispatch(RejoinedEvent(native.connection, previous, lost.reason, attempt))
            return True
        if error is not None:
            log.warning("signalroom: %r could not rejoin: %s", session.session_id, error)
        self.held_end = None
        self.rejoin = None  # given up: this end is final
        self.link_up.set()
        session._dispatcher.dispatch(lost)
        return False

    def _finish(self) -> None:
        """The session is over: what waits for it (replies, streams, waiters) fails or ends."""
        session = self._session
        session._over = True
        self.link_up.set()
        session._dispatcher.observers = []
        reason = session._ended.reason if session._ended is not None else session._native.end_reason
        session._requests.ended(
            ConnectionLostError(f"the session ended ({reason}) before the reply came", reason=reason)
        )
        session._streams_in.ended(reason)
        session._waiting.ended()

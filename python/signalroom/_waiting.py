"""Waiting for a session's events: the futures of :meth:`Session.wait_for` (one ``_Waiter`` each)
and the async iterators of :meth:`Session.signals` (:class:`SignalStream`), with their bookkeeping:
made here, woken and fed by the session's dispatch, expired by their timers, ended with the session.

The :class:`Session` keeps the public methods (their overloads and documentation); a session's
:class:`Waiting` does what they ask.
"""

from __future__ import annotations

import asyncio
import functools
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._events import Event, check_name
from ._native import SignalEvent
from .errors import InvalidArgumentError, SignalTimeoutError

if TYPE_CHECKING:
    from typing_extensions import Self

    from ._session import Session

__all__ = ["SignalStream", "Waiting"]


class _Waiter:
    """One pending :meth:`Session.wait_for`."""

    __slots__ = ("future", "name", "predicate", "timer")

    def __init__(self, name: str, predicate: Callable[[Any], object] | None, future: asyncio.Future[Any]) -> None:
        self.name = name
        self.predicate = predicate
        self.future = future
        self.timer: asyncio.TimerHandle | None = None


class SignalStream:
    """The signals of one type, in arrival order, as an async iterator; it ends when the session
    ends. Made by :meth:`Session.signals`; it receives every signal that arrives after that call.

    Example::

        async for event in session.signals("chat"):
            if event.data == "bye":
                break

    Leave a stream you stop reading with ``await stream.aclose()`` (or ``async with``), or just drop
    it: it stops receiving once it is garbage-collected.
    """

    def __init__(self, name: str, ended: bool) -> None:
        self.name = name
        self._queue: asyncio.Queue[SignalEvent | None] = asyncio.Queue()
        self._ended = ended

    def _push(self, event: SignalEvent | None) -> None:
        if not self._ended:
            self._queue.put_nowait(event)
            if event is None:
                self._ended = True

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> SignalEvent:
        if self._ended and self._queue.empty():
            raise StopAsyncIteration
        event = await self._queue.get()
        if event is None:
            raise StopAsyncIteration
        return event

    async def aclose(self) -> None:
        """Stops receiving; signals already queued are dropped."""
        self._ended = True
        while not self._queue.empty():
            self._queue.get_nowait()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class Waiting:
    """A session's pending ``wait_for`` futures and live signal streams."""

    __slots__ = ("_session", "streams", "waiters")

    def __init__(self, session: Session) -> None:
        self._session = session
        self.waiters: list[_Waiter] = []
        self.streams: list[weakref.ref[SignalStream]] = []  # a dropped stream stops receiving

    def wait_for(
        self, event: str, predicate: Callable[[Any], object] | None, timeout: float | None
    ) -> asyncio.Future[Any]:
        """:meth:`Session.wait_for`."""
        session = self._session
        name = check_name(event)
        if timeout is not None and not timeout >= 0:
            raise InvalidArgumentError(f"timeout must be a number of seconds >= 0 or None, not {timeout!r}")
        loop = session._own_loop("wait_for")
        future: asyncio.Future[Any] = loop.create_future()
        if session._over:
            ended = session._ended
            if name == "sessionDisconnected" and ended is not None and (predicate is None or predicate(ended)):
                future.set_result(ended)
            else:
                future.set_exception(session._lost_error(name))
            return future
        waiter = _Waiter(name, predicate, future)
        self.waiters.append(waiter)
        if timeout is not None:
            waiter.timer = loop.call_later(timeout, self._expire, waiter, timeout)
        future.add_done_callback(functools.partial(self._forget, waiter))
        return future

    def signals(self, type: str | None) -> SignalStream:  # noqa: A002
        """:meth:`Session.signals`."""
        name = "signal" if type is None else type if type.startswith("signal:") else f"signal:{type}"
        self._session._own_loop("signals")
        over = self._session._over
        stream = SignalStream(name, ended=over)
        if not over:
            self.streams.append(weakref.ref(stream))
        return stream

    def _expire(self, waiter: _Waiter, timeout: float) -> None:
        if not waiter.future.done():
            what = " matching the predicate" if waiter.predicate is not None else ""
            waiter.future.set_exception(
                SignalTimeoutError(
                    f"no {waiter.name!r} event{what} within {timeout:g} s; is the sender in session "
                    f"{self._session.session_id!r}, and was wait_for() called before the event could arrive?",
                    timeout=timeout,
                )
            )

    def _forget(self, waiter: _Waiter, future: asyncio.Future[Any]) -> None:
        if waiter.timer is not None:
            waiter.timer.cancel()
        try:
            self.waiters.remove(waiter)
        except ValueError:
            pass
        if not future.cancelled():
            future.exception()  # retrieved: an unawaited wait_for() that timed out logs nothing

    def wake(self, event: Event, name: str) -> None:
        """Resolves the waiters ``event`` (named ``name``) is for."""
        is_signal = type(event) is SignalEvent
        for waiter in list(self.waiters):
            if waiter.future.done() or not (waiter.name == name or (is_signal and waiter.name == "signal")):
                continue
            if waiter.predicate is not None:
                try:
                    if not waiter.predicate(event):
                        continue
                except Exception as error:  # noqa: BLE001 (raised where wait_for() is awaited)
                    waiter.future.set_exception(error)
                    continue
            waiter.future.set_result(event)

    def push(self, event: SignalEvent, name: str) -> None:
        """Gives the signal ``event`` (named ``name``) to the streams of its type."""
        alive = []
        for ref in self.streams:
            stream = ref()
            if stream is None or stream._ended:
                continue
            alive.append(ref)
            if stream.name == "signal" or stream.name == name:
                stream._push(event)
        self.streams = alive

    def ended(self) -> None:
        """The session is over: pending waiters fail with :class:`ConnectionLostError`, streams end."""
        for waiter in list(self.waiters):
            if not waiter.future.done():
                waiter.future.set_exception(self._session._lost_error(waiter.name))
        for ref in self.streams:
            stream = ref()
            if stream is not None:
                stream._push(None)
        self.streams = []

"""Handlers and the dispatch of a session's events: the handlers registered (:meth:`Session.on`,
:meth:`Session.off`, :meth:`Session.handlers`), the :attr:`Session.on_error` hook, the observers
that see every event before the handlers (recorders, ``signalroom.sync``'s buffers), the tasks a
session runs (``async`` handlers, and what the session spawns), and the delivery of each event the
pump takes from Rust: to the requests and streams that own the reserved signal types, to the
observers and handlers, then to the waiters and signal streams (``_waiting``).

The :class:`Session` keeps the public methods (their overloads and documentation); a session's
:class:`Dispatcher` does what they ask.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable, Coroutine
from types import CoroutineType
from typing import TYPE_CHECKING, Any

from ._events import AnyHandler, Event, HandlerErrorHook, check_name, name_of
from ._native import SessionDisconnectedEvent, SignalEvent
from ._requests import REPLY_TYPE, REQUEST_TYPE
from ._streams import ACK_TYPE, STREAM_TYPE

if TYPE_CHECKING:
    from ._session import Session

__all__ = ["Dispatcher"]

log = logging.getLogger("signalroom")


def _same_definition(a: object, b: object) -> bool:
    """Whether ``a`` and ``b`` are two versions of one module-level function (a notebook cell or
    a module run again defines a new function object under the same name)."""
    if not (inspect.isfunction(a) and inspect.isfunction(b)):
        return False
    qualname = a.__qualname__
    return (
        qualname == b.__qualname__
        and a.__module__ == b.__module__
        and "<" not in qualname  # not a lambda, not a function defined inside another one
    )


class Dispatcher:
    """A session's handlers, observers and tasks, and the delivery of its events to them."""

    __slots__ = (
        "_loop",
        "_on_handler_done",
        "_on_spawned_done",
        "_session",
        "_waiting",
        "handlers",
        "observers",
        "on_error",
        "reserved",
        "tasks",
    )

    def __init__(self, session: Session) -> None:
        self._session = session
        self._loop = session._loop
        self._waiting = session._waiting
        self.handlers: dict[str, tuple[AnyHandler, ...]] = {}
        #: The hook set (:attr:`Session.on_error`), ``None`` for the default.
        self.on_error: HandlerErrorHook | None = None
        self.observers: list[Callable[[Event], None]] = []  # recorders, sync buffers: not handlers
        #: The tasks running (kept alive here), with the handler and the event of each handler's
        #: task (``None`` for what :meth:`spawn` runs).
        self.tasks: dict[asyncio.Task[Any], tuple[Callable[..., object], Any] | None] = {}
        # One bound method each for every task's done callback (a ``functools.partial`` per task
        # was three more objects per handled event for the cyclic GC, alive as long as the task).
        self._on_handler_done = self._handler_done
        self._on_spawned_done = self._spawned_done
        # Signals of these types are requests, replies and streams: handled here, not by handlers.
        self.reserved: dict[str, Callable[[SignalEvent], None]] = {
            f"signal:{REQUEST_TYPE}": session._requests.on_request,
            f"signal:{REPLY_TYPE}": session._requests.on_reply,
            f"signal:{STREAM_TYPE}": session._streams_in.on_chunk,
            f"signal:{ACK_TYPE}": session._streams_in.on_ack,
        }

    # -- the handlers --------------------------------------------------------------------------

    def on(self, name: str, fn: AnyHandler | None) -> Any:
        """:meth:`Session.on`."""
        name = check_name(name)
        if fn is None:

            def register(f: AnyHandler) -> AnyHandler:
                self.on(name, f)
                return f

            return register
        if not callable(fn):
            raise TypeError(f"handler must be callable, not {type(fn).__name__}")
        if self._loop.is_closed():
            raise RuntimeError(
                f"the event loop that connected {self._session!r} is closed: no handler of it can run any more; "
                "connect a new session on the running loop"
            )
        handlers = list(self.handlers.get(name, ()))
        for i, registered in enumerate(handlers):
            if registered == fn:
                return fn
            if _same_definition(registered, fn):
                log.info("signalroom: %s for %r replaced by its new definition", name_of(fn), name)
                handlers[i] = fn
                break
        else:
            handlers.append(fn)
        self.handlers[name] = tuple(handlers)
        return fn

    def off(self, name: str, fn: AnyHandler | None) -> None:
        """:meth:`Session.off`."""
        name = check_name(name)
        if fn is None:
            self.handlers.pop(name, None)
            return
        handlers = list(self.handlers.get(name, ()))
        if fn in handlers:
            handlers.remove(fn)
        if handlers:
            self.handlers[name] = tuple(handlers)
        else:
            self.handlers.pop(name, None)

    def registered(self, name: str | None) -> list[Callable[..., object]]:
        """:meth:`Session.handlers`."""
        if name is not None:
            return list(self.handlers.get(check_name(name), ()))
        return [fn for fns in self.handlers.values() for fn in fns]

    # -- running them --------------------------------------------------------------------------

    def failed(self, fn: Callable[..., object], event: Event, error: BaseException) -> None:
        """Reports that handler ``fn`` raised ``error`` on ``event`` to the session's ``on_error``."""
        try:
            self._session.on_error(fn, event, error)
        except Exception:
            log.exception("signalroom: the on_error hook failed on %r", error)

    def run(self, fn: Callable[..., object], arg: Any) -> None:
        """Runs the handler ``fn`` on ``arg``: a plain function inline, a coroutine function as a
        task; an exception goes to ``on_error``."""
        try:
            result = fn(arg)
        except Exception as error:  # noqa: BLE001 (reported to on_error)
            self.failed(fn, arg, error)
            return
        if result is None:
            return
        if type(result) is CoroutineType:  # the common case, without ensure_future's checks
            task = self._loop.create_task(result)
        elif inspect.isawaitable(result):
            task = asyncio.ensure_future(result, loop=self._loop)
        else:
            return
        self.tasks[task] = (fn, arg)
        task.add_done_callback(self._on_handler_done)

    def _handler_done(self, task: asyncio.Task[Any]) -> None:
        ran = self.tasks.pop(task, None)
        if task.cancelled():
            return
        error = task.exception()
        if error is not None and ran is not None:
            fn, event = ran
            self.failed(fn, event, error)

    def spawn(self, coroutine: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Runs ``coroutine`` as a task of the session (kept alive; an exception is logged)."""
        task = self._loop.create_task(coroutine)
        self.tasks[task] = None
        task.add_done_callback(self._on_spawned_done)
        return task

    def _spawned_done(self, task: asyncio.Task[Any]) -> None:
        self.tasks.pop(task, None)
        if not task.cancelled() and task.exception() is not None:
            log.error("signalroom: a task of %r failed", self._session, exc_info=task.exception())

    # -- delivering an event -------------------------------------------------------------------

    def dispatch(self, event: Event) -> None:
        """Delivers ``event``, in arrival order, to whatever it is for."""
        handlers = self.handlers
        name = event.name
        if type(event) is SignalEvent:
            reserved = self.reserved.get(name)
            if reserved is not None:
                reserved(event)
                return
            fns = handlers.get("signal", ())
            if name != "signal":
                specific = handlers.get(name)
                if specific:
                    fns = fns + specific if fns else specific
        else:
            if type(event) is SessionDisconnectedEvent:
                session = self._session
                if session._pump.hold_end(event):
                    return
                session._ended = event
            elif name == "connectionDestroyed":
                left = event.connection.connection_id  # type: ignore[union-attr]
                self._session._requests.left(left)
                self._session._streams_in.left(left)
            fns = handlers.get(name, ())
        for observer in self.observers:
            observer(event)
        for fn in fns:
            self.run(fn, event)
        waiting = self._waiting
        if waiting.waiters:
            waiting.wake(event, name)
        if waiting.streams and type(event) is SignalEvent:
            waiting.push(event, name)

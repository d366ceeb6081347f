"""Requests and replies between participants, on top of ordinary signals.

On the wire (``docs/protocol.md``, "Requests and streams"), a request is a signal of type
``signal:sr.request`` to one participant, whose ``data`` is a JSON object
``{"id": "7", "method": "ask", "payload": "..."}``; its reply a signal of type ``signal:sr.reply`` to
the caller, ``{"id": "7", "payload": "..."}`` or ``{"id": "7", "error": {"code": "no-handler",
"message": "..."}}``; a caller that gives up sends ``{"id": "7", "cancel": true}`` as a request. Ids
are the caller's (unique among its requests); a reply counts only from the participant asked.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import itertools
import json
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Union

from ._native import Connection, SignalEvent
from .errors import (
    HandlerError,
    InvalidArgumentError,
    InvalidSignalError,
    NoHandlerError,
    ReplyTooBigError,
    RequestError,
    RequestTimeoutError,
    RpcError,
    TargetLeftError,
)

if TYPE_CHECKING:
    from ._session import Recipient, Session

__all__ = ["REPLY_TYPE", "REQUEST_TYPE", "Request", "RequestHandler"]

log = logging.getLogger("signalroom")

#: The signal type of a request (on the wire ``signal:sr.request``).
REQUEST_TYPE = "sr.request"
#: The signal type of a reply (on the wire ``signal:sr.reply``).
REPLY_TYPE = "sr.reply"

_ERRORS: dict[str, type[RequestError]] = {
    cls.code: cls for cls in (NoHandlerError, HandlerError, ReplyTooBigError, TargetLeftError, RequestTimeoutError)
}


class Request:
    """A request received by a handler (:meth:`Session.handle <signalroom.Session.handle>`):
    ``method``, ``payload`` (a string) and ``caller`` (the :class:`Connection` that asked)."""

    __slots__ = ("caller", "id", "method", "payload")

    def __init__(self, id: str, method: str, payload: str, caller: Connection) -> None:  # noqa: A002
        #: The caller's id of this request.
        self.id = id
        #: The method asked.
        self.method = method
        #: What the caller sent.
        self.payload = payload
        #: Who asked.
        self.caller = caller

    def __repr__(self) -> str:
        return f"Request({self.method!r} from {self.caller.connection_id!r}, payload={self.payload[:40]!r})"


#: A request handler: ``async def`` or plain function of a :class:`Request`, returning the reply.
RequestHandler = Callable[[Request], Union[Awaitable[str], str]]


class _Pending:
    __slots__ = ("future", "method", "target", "timer")

    def __init__(self, future: asyncio.Future[str], method: str, target: str) -> None:
        self.future = future
        self.method = method
        self.target = target
        self.timer: asyncio.TimerHandle | None = None


def _target_id(to: Recipient) -> str:
    if isinstance(to, str):
        return to
    connection_id = getattr(to, "connection_id", None)
    if not isinstance(connection_id, str):
        raise InvalidArgumentError(f"a request goes to one participant: a Connection or its id, not {to!r}")
    return connection_id


class Requests:
    """A session's requests in flight and request handlers (one per :class:`Session`)."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self._ids = itertools.count(1)
        self._pending: dict[str, _Pending] = {}
        self._handlers: dict[str, RequestHandler] = {}
        self._serving: dict[tuple[str, str], asyncio.Task[Any]] = {}

    # -- the caller's side ---------------------------------------------------------------------

    async def request(self, to: Recipient, method: str, payload: str, timeout: float | None) -> str:
        if not isinstance(method, str) or not method:
            raise InvalidArgumentError(f"method must be a non-empty string, not {method!r}")
        if not isinstance(payload, str):
            raise InvalidArgumentError(f"payload must be a string, not {type(payload).__name__}")
        if timeout is not None and not timeout > 0:
            raise InvalidArgumentError(f"timeout must be a number of seconds > 0 or None, not {timeout!r}")
        session = self._session
        target = _target_id(to)
        loop = session._own_loop("request")
        rid = str(next(self._ids))
        future: asyncio.Future[str] = loop.create_future()
        pending = _Pending(future, method, target)
        self._pending[rid] = pending
        if timeout is not None:
            pending.timer = loop.call_later(timeout, self._expire, rid, timeout)
        data = json.dumps({"id": rid, "method": method, "payload": payload}, ensure_ascii=False)
        sent = False
        try:
            # Queued now; its failure (refused, too big) fails the request through _refused.
            queued = session._native.signal(data, type=REQUEST_TYPE, to=[target])
            sent = True
            queued.add_done_callback(functools.partial(self._refused, rid))
            return await future
        except (asyncio.CancelledError, RequestTimeoutError):
            if sent:  # the handler's task there, if any, is cancelled
                session._dispatcher.spawn(
                    self._send_quietly(json.dumps({"id": rid, "cancel": True}), REQUEST_TYPE, target)
                )
            raise
        finally:
            if pending.timer is not None:
                pending.timer.cancel()
            self._pending.pop(rid, None)
            if future.done() and not future.cancelled():
                future.exception()  # retrieved
            else:
                future.cancel()

    def _refused(self, rid: str, queued: asyncio.Future[None]) -> None:
        """The request's signal was answered: if refused, the request fails with why."""
        if queued.cancelled():
            return
        error = queued.exception()
        pending = self._pending.get(rid)
        if error is None or pending is None or pending.future.done():
            return
        method, target = pending.method, pending.target
        if isinstance(error, RpcError) and error.code == 601:
            error = TargetLeftError(
                f"request {method!r} to {target}: not in session {self._session.session_id!r}",
                method=method,
                target=target,
            )
        elif isinstance(error, InvalidSignalError):
            error = InvalidSignalError(
                f"request {method!r}: the payload is too big for one signal ({error}); "
                "send it as a stream (session.send_text) and request with a reference to it",
                field="data",
                size=error.size,
                limit=error.limit,
            )
        pending.future.set_exception(error)

    def _expire(self, rid: str, timeout: float) -> None:
        pending = self._pending.get(rid)
        if pending is not None and not pending.future.done():
            pending.future.set_exception(
                RequestTimeoutError(
                    f"request {pending.method!r} to {pending.target}: no reply within {timeout:g} s; does it "
                    "run signalroom (Python, or the browser module) and is it busy?",
                    method=pending.method,
                    target=pending.target,
                    timeout=timeout,
                )
            )

    def on_reply(self, event: SignalEvent) -> None:
        try:
            reply = json.loads(event.data)
            pending = self._pending.get(reply["id"])
        except (ValueError, KeyError, TypeError):
            log.warning("signalroom: ignoring a malformed reply %r", event.data[:200])
            return
        if pending is None or pending.future.done():
            return  # given up (timed out, cancelled): a late reply
        if event.from_ is None or event.from_.connection_id != pending.target:
            return  # only the participant asked answers
        error = reply.get("error")
        if error is None:
            payload = reply.get("payload", "")
            pending.future.set_result(payload if isinstance(payload, str) else json.dumps(payload))
            return
        code = str(error.get("code", "")) if isinstance(error, dict) else ""
        message = str(error.get("message", "")) if isinstance(error, dict) else str(error)
        cls = _ERRORS.get(code, RequestError)
        what = {
            "no-handler": f"no handler of {pending.method!r} there",
            "handler-failed": f"its handler failed: {message}",
            "reply-too-big": f"the reply was too big: {message}",
        }.get(code, f"{code or 'error'}: {message}")
        pending.future.set_exception(
            cls(
                f"request {pending.method!r} to {pending.target}: {what}",
                method=pending.method,
                target=pending.target,
                message=message,
            )
        )

    def left(self, connection_id: str) -> None:
        """``connection_id`` left: its requests fail, its requests being served are cancelled."""
        for pending in list(self._pending.values()):
            if pending.target == connection_id and not pending.future.done():
                pending.future.set_exception(
                    TargetLeftError(
                        f"request {pending.method!r} to {connection_id}: it left the session before replying",
                        method=pending.method,
                        target=connection_id,
                    )
                )
        for key in [key for key in self._serving if key[0] == connection_id]:
            self._serving.pop(key).cancel()

    def ended(self, error: BaseException) -> None:
        for pending in list(self._pending.values()):
            if not pending.future.done():
                pending.future.set_exception(error)
        for task in self._serving.values():
            task.cancel()
        self._serving.clear()

    # -- the handler's side --------------------------------------------------------------------

    def handle(self, method: str, fn: RequestHandler | None) -> Any:
        """:meth:`Session.handle`."""
        if fn is None:

            def register(f: RequestHandler) -> RequestHandler:
                self.handle(method, f)
                return f

            return register
        if not isinstance(method, str) or not method:
            raise InvalidArgumentError(f"method must be a non-empty string, not {method!r}")
        if not callable(fn):
            raise TypeError(f"handler must be callable, not {type(fn).__name__}")
        self._handlers[method] = fn
        return fn

    def unhandle(self, method: str) -> None:
        self._handlers.pop(method, None)

    def handlers(self) -> dict[str, RequestHandler]:
        return dict(self._handlers)

    def on_request(self, event: SignalEvent) -> None:
        caller = event.from_
        if caller is None:
            return  # from the REST API: nobody to reply to
        try:
            message = json.loads(event.data)
            rid = str(message["id"])
        except (ValueError, KeyError, TypeError):
            log.warning("signalroom: ignoring a malformed request %r", event.data[:200])
            return
        key = (caller.connection_id, rid)
        if message.get("cancel"):
            task = self._serving.pop(key, None)
            if task is not None:
                task.cancel()
            return
        method = message.get("method")
        payload = message.get("payload", "")
        fn = self._handlers.get(method) if isinstance(method, str) else None
        if fn is None:
            self._reply(caller, rid, error=("no-handler", f"no handler of {method!r}"))
            return
        request = Request(rid, method, payload if isinstance(payload, str) else json.dumps(payload), caller)
        try:
            result = fn(request)
        except Exception as e:  # noqa: BLE001 (goes to the caller)
            self._reply(caller, rid, error=("handler-failed", _describe(e)))
            return
        if inspect.isawaitable(result):
            task = self._session._dispatcher.spawn(self._serve(caller, rid, result))
            self._serving[key] = task
            task.add_done_callback(lambda _t: self._serving.pop(key, None))
        else:
            self._reply(caller, rid, result=result)

    async def _serve(self, caller: Connection, rid: str, result: Awaitable[Any]) -> None:
        try:
            reply = await result
        except asyncio.CancelledError:
            raise  # the caller gave up or left: no reply
        except Exception as e:  # noqa: BLE001 (goes to the caller)
            self._reply(caller, rid, error=("handler-failed", _describe(e)))
            return
        self._reply(caller, rid, result=reply)

    def _reply(self, caller: Connection, rid: str, *, result: Any = None, error: tuple[str, str] | None = None) -> None:
        """Queues the reply (no task: the signal is queued when called)."""
        if error is None:
            if result is None:
                result = ""
            if not isinstance(result, str):
                error = ("handler-failed", f"the handler returned {type(result).__name__}, not a str")
        body: dict[str, Any] = {"id": rid}
        if error is None:
            body["payload"] = result
        else:
            body["error"] = {"code": error[0], "message": error[1]}
        try:
            queued = self._session._native.signal(
                json.dumps(body, ensure_ascii=False), type=REPLY_TYPE, to=[caller.connection_id]
            )
        except Exception as e:  # noqa: BLE001 (the session is over: nobody to tell)
            log.info("signalroom: a reply to %s could not be sent: %s", caller.connection_id, e)
            return
        queued.add_done_callback(functools.partial(self._replied, caller.connection_id, rid))

    def _replied(self, caller: str, rid: str, queued: asyncio.Future[None]) -> None:
        if queued.cancelled():
            return
        error = queued.exception()
        if isinstance(error, InvalidSignalError):
            body = {"id": rid, "error": {"code": "reply-too-big", "message": str(error)}}
            self._session._dispatcher.spawn(self._send_quietly(json.dumps(body), REPLY_TYPE, caller))
        elif error is not None:  # the caller left, the session ended: nobody to tell
            log.info("signalroom: a reply to %s could not be sent: %s", caller, error)

    async def _send_quietly(self, data: str, kind: str, to: str) -> None:
        try:
            await self._session._native.signal(data, type=kind, to=[to])
        except Exception as e:  # noqa: BLE001 (best effort)
            log.info("signalroom: a %s signal to %s could not be sent: %s", kind, to, e)


def _describe(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__

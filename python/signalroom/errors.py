"""The exceptions of signalroom: one hierarchy, each class also a subclass of the matching built-in,
so ``except TimeoutError`` or ``except ValueError`` work as you expect::

    SignalroomError(Exception)
    ├── InvalidSignalError(SignalroomError, ValueError)     bad signal, refused before sending
    ├── InvalidArgumentError(SignalroomError, ValueError)   bad token, URL or option
    ├── RpcError(SignalroomError)                           .code .message .method .data
    ├── ConnectionLostError(SignalroomError, ConnectionError)  .reason
    ├── SignalTimeoutError(SignalroomError, TimeoutError)   .timeout
    ├── RequestError(SignalroomError)                       .method .target: a request failed
    │   ├── RequestTimeoutError(RequestError, TimeoutError)  no reply in time
    │   ├── NoHandlerError(RequestError)                    nothing handles that method there
    │   ├── TargetLeftError(RequestError, ConnectionError)  the target left (or was never in)
    │   ├── HandlerError(RequestError)                      the handler raised; .message
    │   └── ReplyTooBigError(RequestError)                  the reply did not fit in a frame
    ├── StreamError(SignalroomError)                        .stream_id
    │   └── StreamAbortedError(StreamError)                 the sender aborted or left; .reason
    ├── ServerApiError(SignalroomError)                     .status .message
    └── ServerStartError(SignalroomError, OSError)          .errno

The Rust extension (``signalroom._native``) raises these very classes: it imports them from this
module once and caches them. Exceptions raised by your own handlers are never wrapped.

Example::

    try:
        await session.signal("hi", type="chat", to=["con_gone"])
    except signalroom.RpcError as e:
        assert e.code == 601  # recipient not in the session; nothing was delivered
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ConnectionLostError",
    "HandlerError",
    "InvalidArgumentError",
    "InvalidSignalError",
    "NoHandlerError",
    "ReplyTooBigError",
    "RequestError",
    "RequestTimeoutError",
    "RpcError",
    "ServerApiError",
    "ServerStartError",
    "SignalTimeoutError",
    "SignalroomError",
    "StreamAbortedError",
    "StreamError",
    "TargetLeftError",
]


def _restore(cls: type[SignalroomError], text: str, attrs: dict[str, Any]) -> SignalroomError:
    error = cls.__new__(cls)
    Exception.__init__(error, text)
    for key, value in attrs.items():
        setattr(error, key, value)
    return error


class SignalroomError(Exception):
    """Base class of every error signalroom raises."""

    def __reduce__(self) -> tuple[Any, ...]:
        text = str(self.args[0]) if self.args else ""
        return (_restore, (type(self), text, dict(self.__dict__)))


class InvalidSignalError(SignalroomError, ValueError):
    """The signal was refused before anything was sent: its ``type``, ``data`` or ``to`` is
    malformed or over a limit. Fix the input; retrying the same signal will not help.

    ``field`` names the culprit (``"type"``, ``"data"`` or ``"to"``) when known. For a signal too
    big for one WebSocket frame, ``size`` is the frame it would make and ``limit`` the largest the
    server accepts (both in bytes); the session stays up. Send such payloads as a stream
    (:meth:`Session.send_text <signalroom.Session.send_text>`).
    """

    def __init__(
        self, text: str, *, field: str | None = None, size: int | None = None, limit: int | None = None
    ) -> None:
        super().__init__(text)
        self.field = field
        self.size = size
        self.limit = limit


class InvalidArgumentError(SignalroomError, ValueError):
    """An argument other than a signal was refused before anything was sent: a malformed token, a
    server URL that is not ``http(s)://``, a negative timeout, an unknown role."""


class RpcError(SignalroomError):
    """The server refused a request with a JSON-RPC error; retrying will not help.

    ``code`` is OpenVidu's error code (401 token invalid or used, 601 recipient not in the session,
    600 malformed signal, 202 session unknown, ...), ``message`` the server's own words, ``method``
    the request (``joinRoom``, ``sendMessage``, ...).
    """

    def __init__(self, text: str, *, code: int, message: str, method: str | None = None, data: Any = None) -> None:
        super().__init__(text)
        self.code = code
        self.message = message
        self.method = method
        self.data = data


class ConnectionLostError(SignalroomError, ConnectionError):
    """The link to the server is gone: it could not be opened, it dropped before the server
    answered (the request may or may not have been processed), or the session is over.

    ``reason`` is the session's end reason (``networkDisconnect``, ``openviduServerStopped``,
    ``disconnect``, ...) once the session is over, else ``None``.
    """

    def __init__(self, text: str, *, reason: str | None = None) -> None:
        super().__init__(text)
        self.reason = reason


class SignalTimeoutError(SignalroomError, TimeoutError):
    """Nothing came in time: the server did not answer a request, or
    :meth:`Session.wait_for <signalroom.Session.wait_for>` saw no matching event.

    ``timeout`` is the time waited, in seconds; ``method`` the request that timed out, if any.
    """

    def __init__(self, text: str, *, timeout: float | None = None, method: str | None = None) -> None:
        super().__init__(text)
        self.timeout = timeout
        self.method = method


class RequestError(SignalroomError):
    """A :meth:`Session.request <signalroom.Session.request>` got no reply: one of the subclasses
    says why. ``method`` is the method asked, ``target`` the connection id asked.

    Example::

        try:
            reply = await session.request(bot, "ask", "what time is it?", timeout=5.0)
        except signalroom.HandlerError as e:
            print("the bot failed:", e.message)
        except signalroom.RequestError as e:
            print("no answer:", e)
    """

    #: The error's code on the wire (``"handler-failed"``, ``"no-handler"``, ...), for replies.
    code = "request-failed"

    def __init__(self, text: str, *, method: str = "", target: str = "", message: str = "") -> None:
        super().__init__(text)
        self.method = method
        self.target = target
        #: The other side's message (the handler's exception, for :class:`HandlerError`).
        self.message = message


class RequestTimeoutError(RequestError, TimeoutError):
    """No reply came within the request's ``timeout`` (``.timeout``, seconds). The target may be
    slow, or not run signalroom's request handling at all."""

    code = "timeout"

    def __init__(
        self, text: str, *, method: str = "", target: str = "", message: str = "", timeout: float | None = None
    ) -> None:
        RequestError.__init__(self, text, method=method, target=target, message=message)
        self.timeout = timeout


class NoHandlerError(RequestError):
    """The target handles no request of that method (no ``@session.handle(method)`` there)."""

    code = "no-handler"


class TargetLeftError(RequestError, ConnectionError):
    """The target left the session before it replied (or was not in it)."""

    code = "target-left"


class HandlerError(RequestError):
    """The target's handler raised an exception: ``message`` is its text (its type and message)."""

    code = "handler-failed"


class ReplyTooBigError(RequestError):
    """The handler's reply did not fit in one signal (a frame of the server's size); reply with
    less, or stream the answer (:meth:`Session.send_text <signalroom.Session.send_text>`)."""

    code = "reply-too-big"


class StreamError(SignalroomError):
    """A stream could not be read or written. ``stream_id`` is the stream's id."""

    def __init__(self, text: str, *, stream_id: str = "", reason: str = "") -> None:
        super().__init__(text)
        self.stream_id = stream_id
        self.reason = reason


class StreamAbortedError(StreamError):
    """The stream ended before its end: the sender aborted it (``reason`` says why), left the
    session (``reason`` ``"sender left"``), or this session ended."""


class ServerApiError(SignalroomError):
    """The REST API (``/openvidu/api``) answered with an error status, or could not be reached.

    ``status`` is the HTTP status (404 unknown session, 406 recipient not in the session,
    401 wrong secret, ...), or ``None`` when no response came (server down, TLS error, timeout);
    ``message`` is the server's explanation.
    """

    def __init__(self, text: str, *, status: int | None = None, message: str = "") -> None:
        super().__init__(text)
        self.status = status
        self.message = message


class ServerStartError(SignalroomError, OSError):
    """The embedded :class:`~signalroom.Server` could not start: its address cannot be bound (in use,
    not local, needs privileges) or its TLS files cannot be loaded. Retrying helps only once the
    port is free; ``port=0`` picks a free one.

    ``errno`` is the operating system's error number (e.g. ``errno.EADDRINUSE``), when there is one.
    """

    def __init__(self, text: str, *, errno: int | None = None) -> None:
        super().__init__(text)
        self.errno = errno

    def __reduce__(self) -> tuple[Any, ...]:
        text = str(self.args[0]) if self.args else ""
        return (_restore, (type(self), text, {**self.__dict__, "errno": self.errno}))

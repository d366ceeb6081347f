"""The signal hook of the embedded server: a Python function asked before a signal is delivered.

Example (a moderation bot in the server's own process)::

    from signalroom.hook import HookRequest, allow, refuse

    def moderate(request: HookRequest) -> object:
        if "spam" in (request.data or ""):
            return refuse("no spam here")
        return allow(data=(request.data or "").replace("darn", "****"))

    async with signalroom.Server(signal_hook=moderate, signal_hook_types=["chat"]) as server:
        ...
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Union

__all__ = ["Decision", "HookRequest", "SignalHook", "allow", "refuse"]

log = logging.getLogger("signalroom")


@dataclass(frozen=True)
class HookRequest:
    """A signal on its way, as the signal hook sees it (before anybody got it)."""

    #: The session.
    session_id: str
    #: The sender's connection id; ``None`` for a signal sent through the REST API.
    from_: str | None
    #: The recipients asked for; empty: everybody.
    to: list[str]
    #: The type without ``signal:`` (``chat``); ``None``: it has none.
    type: str | None
    #: The data.
    data: str | None


#: What a hook function returns: ``None`` or ``True`` delivers the signal unchanged, ``False``
#: refuses it, and a mapping decides as the HTTP hook's answer does (:func:`allow`, :func:`refuse`).
Decision = Union[None, bool, Mapping[str, Any]]

#: A hook function: plain or ``async def``, taking a :class:`HookRequest`.
SignalHook = Callable[[HookRequest], Union[Decision, Awaitable[Decision]]]


def allow(*, data: str | None = None, to: Sequence[str] | None = None) -> dict[str, Any]:
    """Delivers the signal, with other ``data`` and/or to other recipients (connection ids; an
    empty list: everybody)."""
    decision: dict[str, Any] = {"allow": True}
    if data is not None:
        decision["data"] = data
    if to is not None:
        decision["to"] = list(to)
    return decision


def refuse(reason: str) -> dict[str, Any]:
    """Refuses the signal: the sender's ``signal()`` raises :class:`RpcError` (code 602) with
    ``reason`` as its message; a REST ``POST /signal`` gets 403."""
    return {"allow": False, "reason": reason}


def _decision_json(decision: object) -> str | None:
    if decision is None or decision is True:
        return None
    if decision is False:
        return json.dumps(refuse("signal refused"))
    if isinstance(decision, Mapping):
        return json.dumps(dict(decision))
    raise TypeError(f"a signal hook returns None, a bool or a mapping, not {type(decision).__name__}")


class _Dispatcher:
    """Runs the user's hook function on an event loop for the server's threads: the loop that
    started the server when there was one (``astart``, ``async with``), else signalroom's own."""

    def __init__(self, fn: SignalHook) -> None:
        self.fn = fn
        self.loop: asyncio.AbstractEventLoop | None = None

    def bind(self) -> None:
        try:
            self.loop = asyncio.get_running_loop()
        except RuntimeError:
            self.loop = None

    def _target_loop(self) -> asyncio.AbstractEventLoop:
        loop = self.loop
        if loop is None or loop.is_closed() or not loop.is_running():
            from .sync import _runner

            loop = _runner.loop()
        return loop

    def __call__(self, request_json: str, answer: Callable[..., None]) -> None:
        item = json.loads(request_json)
        request = HookRequest(
            session_id=item["sessionId"],
            from_=item.get("from"),
            to=list(item.get("to") or []),
            type=item.get("type"),
            data=item.get("data"),
        )
        asyncio.run_coroutine_threadsafe(self._decide(request, answer), self._target_loop())

    async def _decide(self, request: HookRequest, answer: Callable[..., None]) -> None:
        try:
            result = self.fn(request)
            if inspect.isawaitable(result):
                result = await result
            answer(_decision_json(result))
        except Exception as e:  # the server's failure mode decides (fail open or closed)
            log.exception("signal hook %r failed on %r", self.fn, request)
            answer(None, f"the hook function raised {type(e).__name__}: {e}")

"""A mypy plugin that checks signalroom's event names: with it, a misspelt name in
``session.on(...)``, ``session.off(...)``, ``session.wait_for(...)``, ``session.handlers(...)`` and
``sync`` ``session.receive(...)`` is a type error, whatever the handler's annotations.

Without the plugin, names are ``Literal`` types in the overloads, so a name gives its event class,
and a misspelt session event falls to the signal overload (a handler annotated for another event
class is then an error); names of the form ``"signal:<type>"`` can be any string, so only the
plugin can tell ``"conectionCreated"`` from a signal type.

Enable it in the mypy configuration::

    [tool.mypy]
    plugins = ["signalroom.mypy_plugin"]
"""

from __future__ import annotations

from typing import Callable

from mypy.errorcodes import ErrorCode
from mypy.nodes import StrExpr
from mypy.plugin import MethodContext, Plugin
from mypy.types import Type

SESSION_EVENTS = frozenset(
    {
        "connectionCreated",
        "connectionDestroyed",
        "connectionPropertyChanged",
        "sessionDisconnected",
        "reconnecting",
        "reconnected",
        "rejoined",
    }
)

#: The error code of an unknown event name (``# type: ignore[signalroom-event]``).
EVENT_NAME = ErrorCode("signalroom-event", "Check signalroom event names", "signalroom")

CHECKED_METHODS = frozenset(
    f"{cls}.{method}"
    for cls in ("signalroom._session.Session", "signalroom.sync.Session")
    for method in ("on", "off", "wait_for", "handlers", "receive")
)


def _problem(name: str) -> str | None:
    if name == "signal" or name in SESSION_EVENTS:
        return None
    if name.startswith("signal:"):
        return None if len(name) > len("signal:") else 'empty signal type: write "signal" for every signal'
    return (
        f'unknown signalroom event "{name}": use "signal", "signal:<type>" (e.g. "signal:{name}") or one of '
        + ", ".join(sorted(SESSION_EVENTS))
    )


def _check_event_name(ctx: MethodContext) -> Type:
    if ctx.args and ctx.args[0]:
        argument = ctx.args[0][0]
        if isinstance(argument, StrExpr):
            problem = _problem(argument.value)
            if problem is not None:
                ctx.api.fail(problem, argument, code=EVENT_NAME)
    return ctx.default_return_type


class SignalroomPlugin(Plugin):
    """Checks the event names given to signalroom sessions."""

    def get_method_hook(self, fullname: str) -> Callable[[MethodContext], Type] | None:
        return _check_event_name if fullname in CHECKED_METHODS else None


def plugin(version: str) -> type[Plugin]:
    """The entry point mypy calls."""
    return SignalroomPlugin

"""A mypy plugin that checks signalroom's event names: with it, a misspelt name in
``session.on(...)``, ``session.off(...)``, ``session.wait_for(...)``, ``session.handlers(...)`` and
``sync`` ``session.receive(...)`` is a type error, whatever the handler's annotations.

Without the plugin, names are ``Literal`` types in the overloads, so a name gives its event class,
and a misspelt session event falls to the signal overload (a handler annotated for another event
class is then an error); names of the form ``"signal:<type>"`` can be any string, so only the
plugin can tell ``"conectionCreated"`` from a signal type.

A misspelt name gets one error, which suggests the closest known name (``"conectionCreated"``:
did you mean ``"connectionCreated"``?); the call is then not checked further, so no error about
the handler's type comes with it.

Enable it in the mypy configuration::

    [tool.mypy]
    plugins = ["signalroom.mypy_plugin"]

It reads the event names from ``signalroom/_event_names.py`` by that file's path, never importing
the package for them: given by its own path (``plugins = [".../signalroom/mypy_plugin.py"]``), it
loads without the package's ``__init__`` and the compiled extension that imports.
"""

from __future__ import annotations

import difflib
import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Callable

from mypy.errorcodes import ErrorCode
from mypy.nodes import Expression, StrExpr
from mypy.plugin import MethodContext, MethodSigContext, Plugin
from mypy.types import AnyType, FunctionLike, Type, TypeOfAny


def _load_event_names() -> ModuleType:
    """``signalroom/_event_names.py``, the file beside this one, run as a module of its own: a
    submodule's import would run the package's ``__init__``, which imports the compiled extension."""
    path = Path(__file__).with_name("_event_names.py")
    spec = importlib.util.spec_from_file_location("signalroom_mypy_plugin_event_names", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_names = _load_event_names()
_SIGNAL: str = _names.SIGNAL
_SIGNAL_PREFIX: str = _names.SIGNAL_PREFIX

#: The names of the events besides signals (``signalroom._event_names``, where the session takes them from).
SESSION_EVENTS: frozenset[str] = frozenset(_names.SESSION_EVENTS)

#: The error code of an unknown event name (``# type: ignore[signalroom-event]``).
EVENT_NAME = ErrorCode("signalroom-event", "Check signalroom event names", "signalroom")

CHECKED_METHODS = frozenset(
    f"{cls}.{method}"
    for cls in ("signalroom._session.Session", "signalroom.sync.Session")
    for method in ("on", "off", "wait_for", "handlers", "receive")
)


def _problem(name: str) -> str | None:
    if name == _SIGNAL or name in SESSION_EVENTS:
        return None
    if name.startswith(_SIGNAL_PREFIX):
        return None if len(name) > len(_SIGNAL_PREFIX) else 'empty signal type: write "signal" for every signal'
    close = difflib.get_close_matches(name, [_SIGNAL, *sorted(SESSION_EVENTS)], n=1, cutoff=0.6)
    if close:
        return f'unknown signalroom event "{name}": did you mean "{close[0]}"?'
    others = ", ".join(sorted(SESSION_EVENTS))
    return f'unknown signalroom event "{name}": for signals of type {name} write "signal:{name}"; else "signal" or one of {others}'


def _event_name(args: list[list[Expression]]) -> StrExpr | None:
    """The event name given as a literal string, if it is one."""
    first = args[0][0] if args and args[0] else None
    return first if isinstance(first, StrExpr) else None


def _check_event_name(ctx: MethodContext) -> Type:
    name = _event_name(ctx.args)
    if name is not None:
        problem = _problem(name.value)
        if problem is not None:
            ctx.api.fail(problem, name, code=EVENT_NAME)
    return ctx.default_return_type


def _unchecked_after_a_bad_name(ctx: MethodSigContext) -> FunctionLike:
    """With a misspelt name the call is reported once (``_check_event_name``); it takes anything
    and gives ``Any``, so that no error about the handler's type joins that one."""
    name = _event_name(ctx.args)
    if name is None or _problem(name.value) is None:
        return ctx.default_signature
    anything = AnyType(TypeOfAny.special_form)
    signature = ctx.default_signature
    return signature.copy_modified(arg_types=[anything] * len(signature.arg_types), ret_type=anything, variables=[])


class SignalroomPlugin(Plugin):
    """Checks the event names given to signalroom sessions."""

    def get_method_hook(self, fullname: str) -> Callable[[MethodContext], Type] | None:
        return _check_event_name if fullname in CHECKED_METHODS else None

    def get_method_signature_hook(self, fullname: str) -> Callable[[MethodSigContext], FunctionLike] | None:
        return _unchecked_after_a_bad_name if fullname in CHECKED_METHODS else None


def plugin(version: str) -> type[Plugin]:
    """The entry point mypy calls."""
    return SignalroomPlugin

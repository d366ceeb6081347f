"""``signalroom.sync`` keeps up with the asyncio API it wraps.

Every public method and property of the asyncio classes (``Session``, ``ServerApi``, ``Server``) and
every function ``signalroom.sync`` also offers has a blocking counterpart of the same name with the
same parameters (names, kinds, defaults) and the same annotations, overloads included; where the
asyncio one is a coroutine (or returns an awaitable of ``T``), the blocking one returns ``T``;
``async with`` (``__aenter__``/``__aexit__``) is ``with`` (``__enter__``/``__exit__``). Annotations are
compared as written, with module prefixes dropped: an asyncio class and its blocking namesake
(``ServerApi``) match.

The deliberate differences are the tables below, each with its reason; an entry no longer needed
fails too, so the tables stay true.
"""

from __future__ import annotations

import inspect
import re
import sys
import typing
from collections.abc import Callable
from types import ModuleType
from typing import Any, NamedTuple

import pytest

import signalroom
import signalroom.sync

#: (asyncio class or module, blocking class or module)
PAIRS: list[tuple[Any, Any]] = [
    (signalroom.Session, signalroom.sync.Session),
    (signalroom.ServerApi, signalroom.sync.ServerApi),
    (signalroom.Server, signalroom.sync.Server),
    (signalroom, signalroom.sync),
]

#: Asyncio members with no blocking counterpart, and what the blocking API offers instead.
ASYNC_ONLY: dict[str, str] = {
    "Session.wait_for": "receive(): a blocking session keeps its events from joining on, so nothing "
    "arrives unseen between two calls, and a future needs a loop",
    "Session.signals": "iterating the session (for event in session), or receive()",
    "Session.open_stream": "a StreamWriter is written with await: send_text() sends a whole text",
    "Session.on_stream": "an IncomingStream is read with await: receive_text() gives a whole text",
    "Session.off_stream": "no on_stream() to undo",
    "Session.next_stream": "receive_text()",
    "Session.streams": "receive_text(), one text at a time",
}

#: Members present on both sides whose parameters differ (names, kinds or defaults; then
#: annotations are not compared either).
PARAMETERS_DIFFER: dict[str, str] = {
    "Session.__init__": "made by connect(), around an asyncio session",
    "Session.wait_closed": "a blocking wait takes a timeout: nothing else could stop it",
    "connect": "the options of signalroom.connect pass through **options; buffer bounds what receive() keeps",
}

#: Members with the same parameters whose annotations differ.
ANNOTATIONS_DIFFER: dict[str, str] = {
    "Session.handle": "a blocking request handler is a plain function, run on a worker thread; an "
    "asyncio one may be a coroutine function",
}

#: Public members of the blocking classes and module with no asyncio namesake.
SYNC_ONLY: dict[str, str] = {
    "Session.aio": "the asyncio session underneath",
    "Session.receive": "instead of wait_for() and signals()",
    "Session.receive_text": "instead of next_stream() and streams()",
    "DEFAULT_BUFFER": "the default of connect(buffer=...)",
}

TABLES = {
    "ASYNC_ONLY": ASYNC_ONLY,
    "PARAMETERS_DIFFER": PARAMETERS_DIFFER,
    "ANNOTATIONS_DIFFER": ANNOTATIONS_DIFFER,
    "SYNC_ONLY": SYNC_ONLY,
}

#: ``async with`` and ``async for`` are ``with`` and ``for``.
DUNDERS = {"__aenter__": "__enter__", "__aexit__": "__exit__", "__aiter__": "__iter__", "__anext__": "__next__"}

_PREFIX = re.compile(r"\b(?:signalroom\.)?(?:_[a-z_]+|sync|asyncio|typing|collections\.abc)\.")
_AWAITABLE = re.compile(r"(?:Future|Awaitable)\[(.*)\]|Coroutine\[Any,Any,(.*)\]")


def _annotation(annotation: object) -> str:
    """An annotation as written, module prefixes and spaces dropped; ``inspect.Signature.empty``
    is ``""``."""
    if annotation is inspect.Signature.empty:
        return ""
    text = annotation if isinstance(annotation, str) else inspect.formatannotation(annotation)
    return _PREFIX.sub("", text).replace(" ", "")


def _awaited(annotation: str) -> str:
    """What awaiting a value of type ``annotation`` gives (``Future[T]`` -> ``T``), else itself."""
    found = _AWAITABLE.fullmatch(annotation)
    return (found.group(1) or found.group(2)) if found else annotation


class Shape(NamedTuple):
    """What a caller sees of a function: its parameters and their annotations, what it returns."""

    parameters: tuple[tuple[str, str, object], ...]  # name, kind, default
    annotations: tuple[str, ...]
    returns: str


def _shape(fn: Callable[..., object], awaited: bool) -> Shape:
    """``fn``'s shape; with ``awaited``, the return is what awaiting its result gives."""
    signature = inspect.signature(fn)
    parameters = tuple(
        (p.name, p.kind.description, "<none>" if p.default is inspect.Parameter.empty else p.default)
        for p in signature.parameters.values()
    )
    annotations = tuple(_annotation(p.annotation) for p in signature.parameters.values())
    returns = _annotation(signature.return_annotation)
    if awaited and not inspect.iscoroutinefunction(fn):
        returns = _awaited(returns)
    return Shape(parameters, annotations, returns)


def _shapes(owner: Any, name: str, awaited: bool) -> dict[str, Any]:
    """Everything compared of ``owner.name``: a property's getter and setter, a function's shape
    and its overloads' (in order)."""
    member = inspect.getattr_static(owner, name)
    if isinstance(member, property):
        return {
            "property": True,
            "getter": _annotation(inspect.signature(member.fget).return_annotation) if member.fget else None,
            "setter": _shape(member.fset, awaited=False).annotations if member.fset else None,
        }
    fn = member.__func__ if isinstance(member, (staticmethod, classmethod)) else member
    if not callable(fn):
        return {"value": type(fn).__name__}
    overloads = typing.get_overloads(fn) if sys.version_info >= (3, 11) else []
    return {"shape": _shape(fn, awaited), "overloads": [_shape(o, awaited) for o in overloads]}


def _public(owner: Any) -> set[str]:
    if isinstance(owner, ModuleType):
        return set(owner.__all__)
    dunders = {d for d in [*DUNDERS, "__init__"] if hasattr(owner, d)}
    return {name for name in dir(owner) if not name.startswith("_")} | dunders


def _key(aio: Any, name: str) -> str:
    return name if isinstance(aio, ModuleType) else f"{aio.__name__}.{name}"


def _counterparts() -> list[tuple[str, Any, str, Any, str]]:
    """(key, asyncio owner, its member's name, blocking owner, its counterpart's name) for every
    member compared: a module's functions only where the blocking module has a namesake."""
    pairs = []
    for aio, blocking in PAIRS:
        names = _public(aio) & _public(blocking) if isinstance(aio, ModuleType) else _public(aio)
        for name in sorted(names):
            if isinstance(aio, ModuleType) and not inspect.isfunction(getattr(aio, name)):
                continue  # classes are paired above; constants are shared
            pairs.append((_key(aio, name), aio, name, blocking, DUNDERS.get(name, name)))
    return pairs


def _describe(a: dict[str, Any], b: dict[str, Any]) -> str:
    """The first difference between two members' shapes (``_shapes``), in words."""
    if "shape" not in a or "shape" not in b:
        return f"asyncio {a} against blocking {b}"
    if len(a["overloads"]) != len(b["overloads"]):
        return f"{len(a['overloads'])} overloads against {len(b['overloads'])}"
    for i, (x, y) in enumerate(zip([a["shape"], *a["overloads"]], [b["shape"], *b["overloads"]])):
        for part in Shape._fields:
            if getattr(x, part) != getattr(y, part):
                where = "the implementation" if i == 0 else f"overload {i}"
                return f"{part} of {where} differ:\n  asyncio  {getattr(x, part)}\n  blocking {getattr(y, part)}"
    return f"asyncio {a} against blocking {b}"


def differences() -> list[str]:
    """Every way the blocking API diverges from the asyncio one beyond the tables, and every entry
    of the tables that no longer says anything true."""
    problems: list[str] = []
    used: set[str] = set()

    def listed(key: str, table: str, differs: bool) -> bool:
        """Whether ``key`` is in the table named ``table``; if so, its difference must still be there."""
        if key not in TABLES[table]:
            return False
        used.add(key)
        if not differs:
            problems.append(f"{key}: in {table}, but that difference is gone")
        return True

    for key, aio, name, blocking, sync_name in _counterparts():
        if listed(key, "ASYNC_ONLY", not hasattr(blocking, sync_name)):
            continue
        if not hasattr(blocking, sync_name):
            problems.append(f"{key}: no blocking counterpart {sync_name!r}")
            continue
        a = _shapes(aio, name, awaited=True)
        b = _shapes(blocking, sync_name, awaited=False)
        if "shape" in a and "shape" in b:
            parameters = [[s.parameters for s in [x["shape"], *x["overloads"]]] for x in (a, b)]
            if listed(key, "PARAMETERS_DIFFER", parameters[0] != parameters[1]):
                continue
            if parameters[0] == parameters[1] and listed(key, "ANNOTATIONS_DIFFER", a != b):
                continue
        if a != b:
            problems.append(f"{key}: {_describe(a, b)}")
    for aio, blocking in PAIRS:
        known = _public(aio) | {DUNDERS[d] for d in _public(aio) if d in DUNDERS}
        for name in sorted(_public(blocking) - known):
            key = _key(aio, name)
            if key in SYNC_ONLY:
                used.add(key)
            else:
                problems.append(f"{key}: only in signalroom.sync (add it to SYNC_ONLY, with why)")
    for name, table in TABLES.items():
        problems.extend(f"{key}: in {name}, but not compared: no such member?" for key in sorted(set(table) - used))
    return problems


def test_the_blocking_api_matches_the_asyncio_one_but_for_the_listed_differences() -> None:
    problems = differences()
    assert problems == [], "\n".join(problems)


def test_every_listed_difference_says_why() -> None:
    for table in TABLES.values():
        assert all(reason.strip() for reason in table.values()), table


@pytest.mark.skipif(sys.version_info < (3, 11), reason="typing.get_overloads is Python 3.11's")
def test_the_overloads_are_compared() -> None:
    shapes = _shapes(signalroom.sync.Session, "on", awaited=False)
    assert len(shapes["overloads"]) == 14, shapes

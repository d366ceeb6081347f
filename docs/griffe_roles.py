"""A griffe extension for the documentation site: the package's docstrings are written for editors and
``help()`` in reStructuredText's habits (``:class:`Session```, ``Example::``); this turns them into the
Markdown that mkdocstrings renders.

- A role (``:func:``, ``:class:``, ``:meth:``, ``:attr:``, ``:mod:``, ``:exc:``, ``:data:``) naming an
  object of the package becomes a cross-reference to its entry in the API reference, resolved as Python
  would from where the docstring is (the object's class, its module, then the package ``signalroom``).
  A name the package does not have stays code, so ``mkdocs build --strict`` fails only on references
  to the package's own objects that no page documents.
- ``Example::`` loses its second colon (the indented block after it is already a code block).
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?(?:func|class|meth|attr|mod|exc|data|obj|const):`(~?)([^`<>]+)`")
PACKAGE = "signalroom"


def _lookup(root: griffe.Module, path: str) -> griffe.Object | griffe.Alias | None:
    if path == PACKAGE:
        return root
    if not path.startswith(PACKAGE + "."):
        return None
    try:
        found: griffe.Object | griffe.Alias = root[path[len(PACKAGE) + 1 :]]
    except (KeyError, griffe.AliasResolutionError, griffe.CyclicAliasError):
        return None
    return found


def _scopes(obj: griffe.Object | griffe.Alias) -> list[str]:
    """Where a name in ``obj``'s docstring is looked up: its class (or itself, if a class), its module,
    the package."""
    scopes = []
    node: Any = obj
    while node is not None:
        if node.is_class or node.is_module:
            scopes.append(node.path)
        node = node.parent
    scopes.append(PACKAGE)
    return scopes


def _public_path(root: griffe.Module, path: str) -> str:
    """``signalroom._session.Session`` -> ``signalroom.Session`` when the package exports it: the
    reference documents objects under the names users import."""
    parts = path.split(".")
    exports = set(root.exports or ())
    if len(parts) > 2 and parts[1].startswith("_") and parts[2] in exports:
        return ".".join([PACKAGE, *parts[2:]])
    return path


class SphinxRoles(griffe.Extension):
    """Rewrites reStructuredText roles into mkdocstrings cross-references, once the package is loaded."""

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        if pkg.path != PACKAGE:
            return
        seen: set[int] = set()
        stack: list[Any] = [pkg]
        while stack:
            obj = stack.pop()
            if id(obj) in seen or obj.is_alias:
                continue
            seen.add(id(obj))
            if obj.docstring is not None:
                obj.docstring.value = self._rewrite(pkg, obj, obj.docstring.value)
            stack.extend(member for member in obj.members.values() if not member.is_alias)

    def _rewrite(self, root: griffe.Module, obj: Any, text: str) -> str:
        def reference(match: re.Match[str]) -> str:
            short, name = match.group(1) == "~", match.group(2).strip().removesuffix("()")
            shown = name.rsplit(".", 1)[-1] if short else name
            for scope in _scopes(obj):
                path = name if name.startswith(PACKAGE + ".") or name == PACKAGE else f"{scope}.{name}"
                if _lookup(root, path) is not None:
                    return f"[`{shown}`][{_public_path(root, path)}]"
            return f"`{shown}`"

        text = ROLE.sub(reference, text)
        return re.sub(r"^(\s*Example)::$", r"\1:", text, flags=re.MULTILINE)

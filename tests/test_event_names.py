"""The event names are defined once (``signalroom._event_names``): the session's checks, the public
``EventName`` type and the mypy plugin take them from there, and that module stays light enough
for mypy to read (it imports nothing of the package, so neither the extension module)."""

from __future__ import annotations

import json
import subprocess
import sys
import typing
from pathlib import Path

import signalroom
import signalroom.mypy_plugin
from signalroom import _event_names

NAMES = Path(_event_names.__file__)
PLUGIN = NAMES.with_name("mypy_plugin.py")


def test_the_names_module_imports_nothing_of_the_package() -> None:
    code = (
        "import importlib.util, json, sys\n"
        f"spec = importlib.util.spec_from_file_location('names', {str(NAMES)!r})\n"
        "module = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(module)\n"
        "print(json.dumps([list(module.SESSION_EVENTS), sorted(m for m in sys.modules if 'signalroom' in m)]))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    names, loaded = json.loads(run.stdout)
    assert loaded == []
    assert names == list(_event_names.SESSION_EVENTS)


def test_the_plugin_loaded_by_its_path_imports_nothing_of_the_package() -> None:
    # As mypy loads plugins = [".../signalroom/mypy_plugin.py"]: its directory first on sys.path,
    # then a module of its own name; no signalroom module, the compiled extension least of all.
    code = (
        "import json, sys\n"
        f"sys.path.insert(0, {str(PLUGIN.parent)!r})\n"
        "import mypy_plugin\n"
        "loaded = sorted(m for m in sys.modules if m == 'signalroom' or m.startswith('signalroom.'))\n"
        "print(json.dumps([sorted(mypy_plugin.SESSION_EVENTS), 'signalroom._native' in sys.modules, loaded]))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    names, native, loaded = json.loads(run.stdout)
    assert not native
    assert loaded == []
    assert names == sorted(_event_names.SESSION_EVENTS)


def test_every_name_is_in_event_name_once_and_the_plugin_knows_them() -> None:
    names = _event_names.SESSION_EVENTS
    assert len(names) == len(set(names)) == 7, names
    assert "rejoined" in names and "connectionCreated" in names
    assert signalroom.EventName is _event_names.EventName
    by_class = [
        _event_names.ConnectionEventName,
        _event_names.PropertyChangedEventName,
        _event_names.DisconnectedEventName,
        _event_names.ReconnectingEventName,
        _event_names.ReconnectedEventName,
        _event_names.RejoinedEventName,
    ]
    assert [name for literal in by_class for name in typing.get_args(literal)] == list(names)
    assert signalroom.mypy_plugin.SESSION_EVENTS == frozenset(names)

"""Types that catch mistakes: mypy --strict on a file of deliberate errors, and docstrings for
every public name of the stubs (what an editor shows on hover)."""

from __future__ import annotations

import ast
import inspect
import re
import subprocess
import sys
from pathlib import Path

import signalroom

HERE = Path(__file__).resolve().parent
ERRORS = HERE / "typing" / "deliberate_errors.py"
STUBS = Path(signalroom.__file__).resolve().parent / "_native.pyi"


def test_mypy_strict_catches_each_deliberate_mistake_and_nothing_else() -> None:
    expected: dict[int, str] = {}
    for number, line in enumerate(ERRORS.read_text().splitlines(), 1):
        if "# E: " in line:
            expected[number] = line.split("# E: ", 1)[1].strip()
    assert len(expected) >= 9
    run = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--show-error-codes", str(ERRORS)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=HERE.parent,
    )
    assert run.returncode == 1, run.stdout + run.stderr
    errors: dict[int, list[str]] = {}
    for line in run.stdout.splitlines():
        found = re.match(rf".*{re.escape(ERRORS.name)}:(\d+): error: (.*)", line)
        if found:
            errors.setdefault(int(found.group(1)), []).append(found.group(2))
    unexpected = {n: e for n, e in errors.items() if n not in expected}
    assert unexpected == {}, run.stdout
    for number, text in expected.items():
        assert any(text in e for e in errors.get(number, [])), f"line {number}: no error with {text!r}:\n{run.stdout}"
        assert len(errors[number]) == 1, f"line {number}: more than one error:\n{run.stdout}"


def _undocumented(tree: ast.Module) -> list[str]:
    missing: list[str] = []

    def visit(body: list[ast.stmt], prefix: str) -> None:
        for node in body:
            if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                name = f"{prefix}{node.name}"
                public = not node.name.startswith("_") or node.name in ("__new__", "__init__")
                if public and node.name not in ("__eq__", "__hash__") and ast.get_docstring(node) is None:
                    missing.append(name)
                if isinstance(node, ast.ClassDef):
                    visit(node.body, f"{name}.")

    visit(tree.body, "")
    return missing


def test_every_public_name_of_the_stubs_has_a_docstring() -> None:
    assert _undocumented(ast.parse(STUBS.read_text())) == []


def test_every_public_name_of_the_package_has_a_docstring() -> None:
    missing = []
    for name in signalroom.__all__:
        value = getattr(signalroom, name)
        if isinstance(value, type) or inspect.isfunction(value):
            if not (value.__doc__ or "").strip():
                missing.append(name)
            for attr, member in vars(value).items() if isinstance(value, type) else ():
                if attr.startswith("_") or not (callable(member) or isinstance(member, property)):
                    continue
                if not (getattr(member, "__doc__", None) or "").strip():
                    missing.append(f"{name}.{attr}")
    assert missing == []

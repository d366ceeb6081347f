"""The wheel that ``scripts/wheel`` built, as a user without Rust gets it: installed into a fresh
virtual environment whose ``PATH`` has no ``cargo`` or ``rustc``, away from this checkout, it runs the
README's asyncio, sync and pytest examples, and its ``signalroom`` command serves.

``SIGNALROOM_WHEEL`` names the wheel (``scripts/test`` builds it and sets it); without it these tests
are skipped, except under CI, where they fail. The testing extra's dependencies come from
``target/wheelhouse`` (``scripts/setup-test-env``), so the installs ask no package index.
"""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import READY_PREFIX, READY_TIMEOUT_S, REPO_ROOT
from test_readme import _blocks, _sync_example

import signalroom

WHEELHOUSE = REPO_ROOT / "target" / "wheelhouse"
#: The wheel's Linux policy: glibc >= 2.17.
MANYLINUX = "manylinux2014_x86_64.manylinux_2_17_x86_64"


def _wheel() -> Path:
    name = os.environ.get("SIGNALROOM_WHEEL")
    if not name:
        if os.environ.get("CI"):
            pytest.fail("SIGNALROOM_WHEEL is not set: scripts/test builds the wheel and names it")
        pytest.skip("no wheel: run scripts/wheel, then SIGNALROOM_WHEEL=dist/<the wheel> pytest tests/test_wheel.py")
    path = Path(name).resolve()
    assert path.is_file(), f"SIGNALROOM_WHEEL={name}: no such file"
    return path


@dataclass
class Venv:
    root: Path
    env: dict[str, str]
    install_seconds: float

    @property
    def python(self) -> Path:
        return self.root / "bin" / "python"

    def run(self, *args: str | Path, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(a) for a in args], capture_output=True, text=True, timeout=timeout, check=False, cwd=cwd, env=self.env
        )


@pytest.fixture(scope="module")
def wheel() -> Path:
    return _wheel()


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Venv]:
    """A fresh venv (the base interpreter's, not this one's) with the wheel and its testing extra."""
    root = tmp_path_factory.mktemp("wheel") / "venv"
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", str(root)], check=True, timeout=120)
    # Nothing of this checkout, of the test's venv or of Rust: the venv's bin, then the system's.
    path = os.pathsep.join([str(root / "bin"), "/usr/local/bin", "/usr/bin", "/bin"])
    for tool in ("cargo", "rustc", "rustup", "maturin"):
        assert shutil.which(tool, path=path) is None, f"{tool} is on the fresh venv's PATH"
    drop = ("PYTHONPATH", "VIRTUAL_ENV", "CARGO_HOME", "RUSTUP_HOME", "CARGO_TARGET_DIR", "PYTHONHOME")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["PATH"] = path
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PIP_NO_INDEX"] = "1"  # nothing from a package index: a source build would need Rust
    started = time.monotonic()
    pip = [str(root / "bin" / "python"), "-m", "pip", "install", "--quiet", "--only-binary=:all:"]
    subprocess.run(
        [*pip, str(wheel)],
        check=True,
        timeout=120,
        env=env,
    )
    install_seconds = time.monotonic() - started
    subprocess.run(
        [*pip, "--find-links", str(WHEELHOUSE), f"signalroom[testing] @ {wheel.as_uri()}"],
        check=True,
        timeout=120,
        env=env,
    )
    print(f"\nwheel {wheel.name}: {wheel.stat().st_size / 1e6:.1f} MB, installed in {install_seconds:.1f} s")
    yield Venv(root, env, install_seconds)


def test_the_wheel_is_abi3_manylinux2014_and_carries_the_package(wheel: Path) -> None:
    version = signalroom.__version__
    assert wheel.name == f"signalroom-{version}-cp39-abi3-{MANYLINUX}.whl"
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = archive.read(f"signalroom-{version}.dist-info/entry_points.txt").decode()
    for name in ("_native.abi3.so", "_native.pyi", "py.typed", "__init__.py", "sync.py", "testing/__init__.py"):
        assert f"signalroom/{name}" in names, name
    groups = configparser.ConfigParser()
    groups.read_string(entry_points)
    assert groups["console_scripts"]["signalroom"] == "signalroom.__main__:main"
    assert groups["pytest11"]["signalroom"] == "signalroom.testing"
    auditwheel = Path(sys.executable).parent / "auditwheel"
    report = subprocess.run([str(auditwheel), "show", str(wheel)], capture_output=True, text=True, check=True).stdout
    assert '"manylinux_2_17_x86_64"' in report, report


def test_it_installs_in_seconds_and_imports_from_the_venv(venv: Venv, tmp_path: Path) -> None:
    assert venv.install_seconds < 30, f"installing the wheel took {venv.install_seconds:.1f} s"
    run = venv.run(
        venv.python, "-c", "import signalroom; print(signalroom.__file__, signalroom.__version__)", cwd=tmp_path
    )
    assert run.returncode == 0, run.stderr
    where, version = run.stdout.split()
    assert Path(where).is_relative_to(venv.root), where
    assert version == signalroom.__version__


def test_the_readme_asyncio_example_runs(venv: Venv, tmp_path: Path) -> None:
    run = venv.run(venv.python, "-c", _blocks("python")[0], cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stdout == "echo: hi bob\n"
    assert run.stderr == ""


def test_the_readme_pytest_example_passes(venv: Venv, tmp_path: Path) -> None:
    (tmp_path / "test_example.py").write_text(_blocks("python")[1])
    config = [b for b in _blocks("toml") if "[tool.pytest.ini_options]" in b]
    (tmp_path / "pyproject.toml").write_text(config[0])
    run = venv.run(
        venv.python, "-m", "pytest", "-p", "no:cacheprovider", "-rw", str(tmp_path), cwd=tmp_path, timeout=120
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 passed" in run.stdout, run.stdout
    assert "warning" not in run.stdout.lower(), run.stdout


def test_the_signalroom_command_serves_and_the_readme_sync_example_runs(venv: Venv, tmp_path: Path) -> None:
    """The wheel's ``signalroom serve`` is the server, the README's sync example (run by the wheel's
    Python) the client; this process's package is the bot that answers."""
    command = venv.root / "bin" / "signalroom"
    help_run = venv.run(command, "serve", "--help", cwd=tmp_path)
    assert help_run.returncode == 0 and "--listen" in help_run.stdout, help_run.stdout + help_run.stderr
    with subprocess.Popen(
        [str(command), "serve", "--listen", "127.0.0.1:0", "--secret", "wheel-secret"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=tmp_path,
        env=venv.env,
    ) as server:
        try:
            assert server.stdout is not None
            deadline = time.monotonic() + READY_TIMEOUT_S
            line = ""
            while time.monotonic() < deadline and not line.startswith(READY_PREFIX):
                line = server.stdout.readline()  # the server prints its ready line first
                if not line and server.poll() is not None:
                    break
            assert line.startswith(READY_PREFIX), f"no ready line from the wheel's signalroom serve: {line!r}"
            url = line[len(READY_PREFIX) :].strip()
            api = signalroom.sync.ServerApi(url, "wheel-secret")
            api.create_session("lobby")
            with signalroom.sync.connect(api.create_connection("lobby").token) as bot:
                bot.on("signal:ping", lambda e: bot.reply(e, "pong", type="pong"))
                token = api.create_connection("lobby").token
                example = "import sys\ntoken = sys.argv[1]\n" + _sync_example()
                run = venv.run(venv.python, "-c", example, token, cwd=tmp_path)
            assert run.returncode == 0, run.stderr
            assert run.stdout == "pong\n"
        finally:
            server.terminate()
            server.wait(timeout=10)
    assert server.returncode == 0, f"signalroom serve exited with {server.returncode} on SIGTERM"

"""Shared pytest fixtures: a running signalroom server and a tiny REST client for it.

The server binary is built once per test run, after collection and only if a selected test needs it,
with ``cargo build -p signalroom-server`` (a no-op when up to date), unless ``SIGNALROOM_BIN`` names a
binary to use as is.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
READY_PREFIX = "signalroom ready: "
READY_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0
DEFAULT_RUST_LOG = "info,signalroom=debug,signalroom_server=debug,signalroom_core=debug"

# Per-phase test reports, so fixtures can tell in their teardown whether the test failed.
phase_report_key = pytest.StashKey[dict[str, pytest.TestReport]]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    """Remember the setup/call/teardown reports on the item (see ``node_failed``)."""
    report = yield
    item.stash.setdefault(phase_report_key, {})[report.when] = report
    return report


def node_failed(node: pytest.Item) -> bool:
    """True if the setup or call phase of ``node`` has failed (usable in fixture teardown)."""
    reports = node.stash.get(phase_report_key, {})
    return any(r.failed for r in reports.values())


@pytest.fixture
def failed(request: pytest.FixtureRequest) -> Callable[[], bool]:
    """A check, for use in other fixtures' teardown, of whether the current test has failed."""
    return lambda: node_failed(request.node)


@dataclass
class RestResponse:
    """An HTTP response from the REST API."""

    status: int
    body: bytes

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)


@dataclass
class SignalroomServer:
    """A running ``signalroom serve`` process and helpers to talk to it."""

    url: str
    secret: str
    process: subprocess.Popen[bytes]
    stderr_path: Path
    stdout_lines: list[str] = field(default_factory=list)

    def rest(self, method: str, path: str, body: Any = None, timeout: float = 10.0) -> RestResponse:
        """Call ``/openvidu/api<path>`` with Basic auth; ``body`` is sent as JSON. Never raises on HTTP errors."""
        data = None if body is None else json.dumps(body).encode()
        auth = base64.b64encode(f"OPENVIDUAPP:{self.secret}".encode()).decode()
        request = urllib.request.Request(f"{self.url}/openvidu/api{path}", data=data, method=method)
        request.add_header("Authorization", f"Basic {auth}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return RestResponse(response.status, response.read())
        except urllib.error.HTTPError as error:
            with error:
                return RestResponse(error.code, error.read())

    def rest_ok(self, method: str, path: str, body: Any = None, expect: int = 200) -> RestResponse:
        """Like ``rest`` but asserts the status is ``expect``."""
        response = self.rest(method, path, body)
        assert response.status == expect, (
            f"{method} /openvidu/api{path} {body!r}: expected {expect}, got {response.status} {response.body!r}"
        )
        return response

    def stderr_tail(self, lines: int = 60) -> str:
        """The last ``lines`` lines the server wrote to stderr."""
        text = self.stderr_path.read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])


def _build_server() -> tuple[Path, str | None]:
    """The server binary and an error text (None if usable); builds it unless ``SIGNALROOM_BIN`` is set."""
    override = os.environ.get("SIGNALROOM_BIN")
    if override:
        return Path(override), None
    binary = REPO_ROOT / "target" / "debug" / "signalroom"
    if shutil.which("cargo"):
        build = subprocess.run(
            ["cargo", "build", "--quiet", "-p", "signalroom-server"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
        if build.returncode != 0:
            return binary, f"cargo build -p signalroom-server failed:\n{build.stderr[-4000:]}"
    if not binary.is_file():
        return binary, f"server binary {binary} not found"
    return binary, None


server_build_key = pytest.StashKey[tuple[Path, str | None]]()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Build the server once, before any test runs (so the build is not charged to a test's timeout)."""
    if any("signalroom_binary" in getattr(item, "fixturenames", ()) for item in items):
        config.stash[server_build_key] = _build_server()


@pytest.fixture(scope="session")
def signalroom_binary(pytestconfig: pytest.Config) -> Path:
    """The server binary (built once per test run, at the end of collection)."""
    if server_build_key not in pytestconfig.stash:
        pytestconfig.stash[server_build_key] = _build_server()
    binary, error = pytestconfig.stash[server_build_key]
    if error is not None:
        pytest.fail(error, pytrace=False)
    return binary


def _drain_stdout(process: subprocess.Popen[bytes], sink: list[str], ready: threading.Event) -> None:
    """Drain the server's stdout into ``sink``; set ``ready`` after the first ready line (or at EOF)."""
    assert process.stdout is not None
    for raw in process.stdout:
        sink.append(raw.decode(errors="replace").rstrip("\n"))
        if sink[-1].startswith(READY_PREFIX):
            ready.set()
    process.stdout.close()
    ready.set()


@contextlib.contextmanager
def run_server(
    binary: Path, node: pytest.Item, args: Sequence[str] = (), env: Mapping[str, str] | None = None
) -> Iterator[SignalroomServer]:
    """A ``signalroom serve`` process on a free loopback port with a random secret and ``args``;
    stopped with SIGTERM afterwards. If the test fails, the tail of its stderr is printed."""
    secret = "s3cr3t-" + secrets.token_hex(8)
    with tempfile.TemporaryDirectory(prefix="signalroom-server-") as tmp:
        stderr_path = Path(tmp) / "stderr.log"
        with stderr_path.open("wb") as stderr_file:
            process = subprocess.Popen(
                [str(binary), "serve", "--listen", "127.0.0.1:0", "--secret", secret, *args],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=stderr_file,
                env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", DEFAULT_RUST_LOG), **(env or {})},
                start_new_session=True,  # its own process group: a hung server is killed with its children
            )
        lines: list[str] = []
        ready = threading.Event()
        drainer = threading.Thread(target=_drain_stdout, args=(process, lines, ready), daemon=True)
        drainer.start()
        server = SignalroomServer("", secret, process, stderr_path, lines)
        try:
            ready.wait(READY_TIMEOUT_S)
            ready_lines = [line for line in lines if line.startswith(READY_PREFIX)]
            if not ready_lines:
                if drainer.is_alive():
                    problem = f"printed no {READY_PREFIX!r} line within {READY_TIMEOUT_S}s"
                else:  # stdout closed: the process is exiting
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        process.wait(STOP_TIMEOUT_S)
                    problem = f"exited (code {process.returncode}) without a {READY_PREFIX!r} line"
                pytest.fail(f"server {problem}; stdout: {lines!r}\nstderr tail:\n{server.stderr_tail()}", pytrace=False)
            server.url = ready_lines[0][len(READY_PREFIX) :].strip().rstrip("/")
            yield server
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    print(f"server ignored SIGTERM for {STOP_TIMEOUT_S}s; killing it")
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
            with contextlib.suppress(ProcessLookupError):  # leftover children of the server, if any
                os.killpg(process.pid, signal.SIGKILL)
            drainer.join(STOP_TIMEOUT_S)
            if node_failed(node):
                print(f"\n--- signalroom stderr (tail, exit code {process.returncode}) ---\n{server.stderr_tail()}")


@pytest.fixture
def server_process(signalroom_binary: Path, request: pytest.FixtureRequest) -> Iterator[SignalroomServer]:
    """A fresh server on a free loopback port with a random secret; stopped with SIGTERM afterwards.

    If the test fails, the tail of the server's stderr is printed (shown in the failure report).
    """
    with run_server(signalroom_binary, request.node) as server:
        yield server


StartServer = Callable[..., contextlib.AbstractContextManager[SignalroomServer]]


@pytest.fixture
def start_server(signalroom_binary: Path, request: pytest.FixtureRequest) -> StartServer:
    """Factory: ``with start_server("--flag", env={...}) as server:`` runs a server with more arguments."""

    def start(*args: str, env: Mapping[str, str] | None = None) -> contextlib.AbstractContextManager[SignalroomServer]:
        return run_server(signalroom_binary, request.node, args, env)

    return start


# -- two participants, on one node or on two nodes sharing Redis ---------------------------------


@pytest.fixture(params=["one node", "two nodes"])
async def pair(request: pytest.FixtureRequest) -> Any:
    """``(alice, bob)``: two participants of one session who already see each other, on one
    in-process server, or (``two nodes``) alice on one node and bob on another, sharing Redis."""
    import signalroom

    if request.param == "one node":
        server = request.getfixturevalue("signalroom_server")
        apis = (server.api(), server.api())
    else:
        cluster = request.getfixturevalue("signalroom_cluster")
        apis = (cluster.api(0), cluster.api(1))
    await apis[0].create_session("room")
    alice = await signalroom.connect((await apis[0].create_connection("room")).token, data="alice")
    bob_seen = alice.wait_for("connectionCreated", predicate=lambda e: e.connection.data == "bob")
    bob = await signalroom.connect((await apis[1].create_connection("room")).token, data="bob")
    await bob_seen
    yield alice, bob
    await alice.disconnect()
    await bob.disconnect()

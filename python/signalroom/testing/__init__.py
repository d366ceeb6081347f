"""``signalroom.testing``: a pytest plugin (loaded automatically once signalroom is installed) for
testing code that talks OpenVidu signalling, with the server inside the test process.

Fixtures:

- ``signalroom_server``: a :class:`signalroom.Server` on a free loopback port with a random secret,
  fresh for each test and stopped after it.
- ``server_api``: a :class:`signalroom.ServerApi` for that server.
- ``participant``: a factory; ``await participant("lobby", data=...)`` creates the session if needed,
  a connection, joins with its token and returns the :class:`signalroom.Session`; every participant
  leaves at the end of the test. Needs pytest-asyncio (``pip install 'signalroom[testing]'``).
- ``assert_signal``: :func:`assert_signal`, as a fixture.
- Handler errors: a test during which a signalroom handler raised (an exception that reached the
  default :attr:`signalroom.Session.on_error`) fails, with that exception. Mark a test
  ``@pytest.mark.signalroom_handler_errors_ok`` when handler errors are expected.
- ``signalroom_cluster``: a :class:`SignalroomCluster`, two servers in this process sharing their
  sessions through a ``redis-server`` of the test's own (started on a free loopback port, without
  persistence, and stopped after the test; ``redis-server`` must be installed). A token minted by
  ``nodes[i].api()`` joins on node ``i``, so participants land on the node you choose.

Example::

    async def test_echo(participant, assert_signal):
        alice = await participant("lobby", data="alice")
        bob = await participant("lobby", data="bob")
        bob.on("signal:ping", lambda e: asyncio.ensure_future(bob.reply(e, "pong", type="pong")))
        await alice.signal("hi", type="ping")
        event = await assert_signal(alice, "pong", data="pong")
        assert event.from_ == bob.connection
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterator
from typing import Any, Protocol

import pytest

from .. import _events
from .._api import ServerApi
from .._connect import connect
from .._native import SignalEvent
from .._server import Server
from .._session import DEFAULT_TIMEOUT, Role, Session

__all__ = ["HandlerError", "ParticipantFactory", "SignalroomCluster", "assert_signal", "record_signals"]

#: The marker that lets a test pass although a signalroom handler raised during it.
HANDLER_ERRORS_OK = "signalroom_handler_errors_ok"


class HandlerError(AssertionError):
    """A signalroom handler raised during the test (the exception is chained as its cause)."""


#: The marker that installs a signal hook in the test's servers:
#: ``@pytest.mark.signalroom_signal_hook(hook=fn, types=["chat"], timeout=1.0, fail_open=False)``
#: (``hook=`` by name: pytest takes a marker given one function alone as decorating it).
SIGNAL_HOOK = "signalroom_signal_hook"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{HANDLER_ERRORS_OK}: a signalroom handler may raise in this test without failing it",
    )
    config.addinivalue_line(
        "markers",
        f"{SIGNAL_HOOK}(hook=fn, types=None, timeout=None, fail_open=False): the servers of the "
        "signalroom_server and signalroom_cluster fixtures ask fn (a signal hook) before delivering a signal",
    )


def _signal_hook_options(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The ``Server`` options of the test's ``signalroom_signal_hook`` marker, if any."""
    marker = request.node.get_closest_marker(SIGNAL_HOOK)
    if marker is None:
        return {}
    fn = marker.args[0] if marker.args else marker.kwargs.get("hook")
    if not callable(fn):
        pytest.fail(f"@pytest.mark.{SIGNAL_HOOK}(hook=fn) needs a function (plain or async def)", pytrace=False)
    return {
        "signal_hook": fn,
        "signal_hook_types": marker.kwargs.get("types"),
        "signal_hook_timeout": marker.kwargs.get("timeout"),
        "signal_hook_fail_open": bool(marker.kwargs.get("fail_open", False)),
    }


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    """Fails the test if a signalroom handler raised while it ran (unless it is marked
    ``signalroom_handler_errors_ok``)."""
    errors: list[tuple[Callable[..., object], Any, BaseException]] = []

    def listener(fn: Callable[..., object], event: Any, error: BaseException) -> None:
        errors.append((fn, event, error))

    _events.handler_error_listeners.append(listener)
    try:
        result = yield
    finally:
        _events.handler_error_listeners.remove(listener)
    if errors and item.get_closest_marker(HANDLER_ERRORS_OK) is None:
        fn, event, error = errors[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise HandlerError(
            f"signalroom handler {_events.name_of(fn)} raised {type(error).__name__}: {error} on {event!r}{more}; "
            f"mark the test @pytest.mark.{HANDLER_ERRORS_OK} if that is expected"
        ) from error
    return result


_MISSING: Any = object()


class _Recorder:
    """Signals a session received, kept so :func:`assert_signal` also finds those that arrived
    before it was called. Each signal satisfies at most one assertion."""

    def __init__(self) -> None:
        self.unclaimed: list[SignalEvent] = []

    def __call__(self, event: object) -> None:
        if isinstance(event, SignalEvent):
            self.unclaimed.append(event)


_recorders: weakref.WeakKeyDictionary[Session, _Recorder] = weakref.WeakKeyDictionary()


def record_signals(session: Session) -> None:
    """Keeps every signal ``session`` receives from now on, so that :func:`assert_signal` finds
    signals that arrived before it was called. Sessions from the ``participant`` fixture do this
    from the start."""
    if session not in _recorders:
        recorder = _Recorder()
        _recorders[session] = recorder
        session._dispatcher.observers.append(recorder)  # not a handler: session.handlers() shows only yours


async def assert_signal(
    session: Session,
    type: str | None = None,  # noqa: A002
    *,
    data: str = _MISSING,
    sender: Any = _MISSING,
    timeout: float = DEFAULT_TIMEOUT,
) -> SignalEvent:
    """Asserts that ``session`` receives a signal of ``type`` (``"chat"`` or ``"signal:chat"``; any
    type when ``None``), with ``data`` and from ``sender`` (a :class:`Connection`, a connection id,
    or ``None`` for the REST API) when given, within ``timeout`` seconds; returns it.

    For sessions from the ``participant`` fixture (or passed to :func:`record_signals`), a matching
    signal that arrived earlier counts too; each signal satisfies one assertion only. On failure the
    message lists the signals that did arrive.

    Example::

        await alice.signal("hi", type="chat")
        await assert_signal(bob, "chat", data="hi", sender=alice.connection)
    """
    name = None if type is None else type if type.startswith("signal:") else f"signal:{type}"
    expected_sender = (
        sender if sender is _MISSING or sender is None or isinstance(sender, str) else sender.connection_id
    )

    def matches(event: SignalEvent) -> bool:
        if name is not None and event.name != name:
            return False
        if data is not _MISSING and event.data != data:
            return False
        if expected_sender is not _MISSING:
            sent_by = None if event.from_ is None else event.from_.connection_id
            if sent_by != expected_sender:
                return False
        return True

    recorder = _recorders.get(session)
    if recorder is not None:
        for i, event in enumerate(recorder.unclaimed):
            if matches(event):
                del recorder.unclaimed[i]
                return event
    seen: list[SignalEvent] = []

    def check(event: SignalEvent) -> bool:
        if matches(event):
            return True
        seen.append(event)
        return False

    try:
        event = await session.wait_for("signal", predicate=check, timeout=timeout)
    except TimeoutError:
        wanted = [f"type {type!r}" if type else "any type"]
        if data is not _MISSING:
            wanted.append(f"data {data!r}")
        if expected_sender is not _MISSING:
            wanted.append(f"from {expected_sender!r}")
        # A recorder holds every unclaimed signal (those seen while waiting too).
        got = recorder.unclaimed if recorder is not None else seen
        raise AssertionError(
            f"{session.connection_id} received no signal with {', '.join(wanted)} within {timeout:g} s; "
            f"it received {len(got)} other signal(s): {got[:10]!r}"
        ) from None
    if recorder is not None:
        try:
            recorder.unclaimed.remove(event)
        except ValueError:
            pass
    return event


class ParticipantFactory(Protocol):
    """The ``participant`` fixture: joins a session as a new participant."""

    def __call__(
        self,
        session_id: str = "lobby",
        *,
        data: str = "",
        server_data: str | None = None,
        role: Role | None = None,
        **connect_options: Any,
    ) -> Awaitable[Session]: ...


@pytest.fixture
def signalroom_server(request: pytest.FixtureRequest) -> Iterator[Server]:
    """A signalroom server in this process, on a free loopback port with a random secret; stopped
    after the test. A test marked ``@pytest.mark.signalroom_signal_hook(hook=fn, ...)`` gets one asking
    ``fn`` before delivering signals."""
    with Server(secret="test-" + secrets.token_hex(8), port=0, **_signal_hook_options(request)) as server:
        yield server


#: How long a fresh ``redis-server`` has to answer ``PING``.
REDIS_START_TIMEOUT = 10.0
#: Ports tried for that ``redis-server`` (another process may take a free port before it binds).
REDIS_PORT_ATTEMPTS = 5


class SignalroomCluster:
    """Two :class:`signalroom.Server` nodes sharing one ``redis-server`` (the ``signalroom_cluster``
    fixture): they behave as one server, whichever node a REST call or a participant uses.

    Example::

        async def test_across_nodes(signalroom_cluster):
            a, b = (node.api() for node in signalroom_cluster.nodes)
            await a.create_session("lobby")
            alice = await signalroom.connect((await a.create_connection("lobby")).token)  # on node 0
            bob = await signalroom.connect((await b.create_connection("lobby")).token)  # on node 1
    """

    def __init__(self, nodes: tuple[Server, Server], broker: str) -> None:
        #: The servers; tokens minted by ``nodes[i].api()`` point to node ``i``.
        self.nodes = nodes
        #: The ``redis://`` URL the nodes share.
        self.broker = broker

    def api(self, node: int) -> ServerApi:
        """A :class:`signalroom.ServerApi` for ``nodes[node]``."""
        return self.nodes[node].api()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _redis_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(7) == b"+PONG\r\n"
    except OSError:
        return False


def _start_redis(program: str, tmp: str) -> tuple[int, subprocess.Popen[bytes]]:
    """Starts ``redis-server`` on a free loopback port and waits until it answers ``PING``; tries
    another port when it exits first (another process took the port meanwhile)."""
    log_path = os.path.join(tmp, "redis.log")
    for _ in range(REDIS_PORT_ATTEMPTS):
        port = _free_port()
        with open(log_path, "wb") as log_file:
            redis = subprocess.Popen(
                [program, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                cwd=tmp,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + REDIS_START_TIMEOUT
        while not _redis_answers(port):
            if redis.poll() is not None:
                break
            if time.monotonic() > deadline:
                redis.kill()
                redis.wait()
                with open(log_path, encoding="utf-8", errors="replace") as f:
                    pytest.fail(f"redis-server on port {port} did not answer PING:\n{f.read()}", pytrace=False)
            time.sleep(0.01)
        else:
            return port, redis
    with open(log_path, encoding="utf-8", errors="replace") as f:
        pytest.fail(f"redis-server did not start in {REDIS_PORT_ATTEMPTS} attempts:\n{f.read()}", pytrace=False)


@pytest.fixture
def signalroom_cluster(request: pytest.FixtureRequest) -> Iterator[SignalroomCluster]:
    """Two signalroom servers in this process on free loopback ports, with one random secret,
    sharing their sessions through a ``redis-server`` started for the test (free port, no
    persistence); all stopped after the test. Fails the test when ``redis-server`` is not installed
    (Debian: ``apt-get install redis-server``)."""
    program = shutil.which("redis-server")
    if program is None:
        pytest.fail("signalroom_cluster needs redis-server: apt-get install redis-server", pytrace=False)
    with tempfile.TemporaryDirectory(prefix="signalroom-redis-") as tmp:
        port, redis = _start_redis(program, tmp)
        try:
            broker = f"redis://127.0.0.1:{port}/0"
            secret = "test-" + secrets.token_hex(8)
            hook = _signal_hook_options(request)
            a, b = (Server(secret=secret, port=0, broker=broker, **hook) for _ in range(2))
            with a, b:
                yield SignalroomCluster((a, b), broker)
        finally:
            redis.kill()
            redis.wait()


@pytest.fixture
def server_api(signalroom_server: Server) -> ServerApi:
    """A :class:`signalroom.ServerApi` for ``signalroom_server``."""
    return signalroom_server.api()


@pytest.fixture(name="assert_signal")
def _assert_signal_fixture() -> Callable[..., Awaitable[SignalEvent]]:
    """:func:`assert_signal`, as a fixture (no import needed)."""
    return assert_signal


async def _participant(server_api: ServerApi) -> AsyncIterator[ParticipantFactory]:
    """A factory: ``await participant("lobby", data=...)`` creates the session if needed and a
    connection (``server_data``, ``role``), joins with its token (client ``data`` and any
    :func:`signalroom.connect` option) and returns the :class:`signalroom.Session`, whose
    signals are recorded for :func:`assert_signal`. Everyone leaves after the test."""
    sessions: list[Session] = []

    async def join(
        session_id: str = "lobby",
        *,
        data: str = "",
        server_data: str | None = None,
        role: Role | None = None,
        **connect_options: Any,
    ) -> Session:
        await server_api.create_session(session_id)
        conn = await server_api.create_connection(session_id, data=server_data, role=role)
        session = await connect(conn.token, data=data, **connect_options)
        record_signals(session)
        sessions.append(session)
        return session

    yield join
    await asyncio.gather(*(s.disconnect() for s in sessions), return_exceptions=True)


def _participant_needs_pytest_asyncio() -> ParticipantFactory:
    """The ``participant`` fixture needs pytest-asyncio."""
    pytest.fail("the participant fixture needs pytest-asyncio: pip install 'signalroom[testing]'", pytrace=False)


participant: Any
try:
    import pytest_asyncio
except ImportError:  # pragma: no cover - only without pytest-asyncio
    participant = pytest.fixture(_participant_needs_pytest_asyncio, name="participant")
else:
    participant = pytest_asyncio.fixture(_participant, name="participant")

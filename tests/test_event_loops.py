"""Where signalroom runs: pytest-asyncio's per-test loops, asyncio.run (twice in one process), a loop
that runs all along with top-level ``await`` as in Jupyter, and interpreter exit with sessions open."""

from __future__ import annotations

import ast
import asyncio
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import signalroom
from signalroom.testing import ParticipantFactory

TIMEOUT = 20.0

_loops: list[asyncio.AbstractEventLoop] = []


async def _round_trip(participant: ParticipantFactory) -> None:
    alice = await participant("lobby")
    bob = await participant("lobby")
    got = bob.wait_for("signal:chat")
    await alice.signal("hi", type="chat")
    assert (await got).from_ == alice.connection


async def test_first_of_two_tests_with_their_own_loops(participant: ParticipantFactory) -> None:
    _loops.append(asyncio.get_running_loop())
    await _round_trip(participant)


async def test_second_of_two_tests_with_their_own_loops(participant: ParticipantFactory) -> None:
    loop = asyncio.get_running_loop()
    assert _loops, "runs after the first test"
    assert loop is not _loops[0] and _loops[0].is_closed()
    await _round_trip(participant)


def test_asyncio_run_twice_in_one_process() -> None:
    async def once(n: int) -> str:
        async with signalroom.Server() as server:
            api = server.api()
            await api.create_session("lobby")
            async with signalroom.connect((await api.create_connection("lobby")).token) as session:
                echo = session.wait_for("signal")
                await session.signal(f"run {n}")
                return (await echo).data

    assert asyncio.run(once(1)) == "run 1"
    assert asyncio.run(once(2)) == "run 2"


class Kernel:
    """A loop that runs all along in its own thread, and cells run on it as a notebook kernel runs
    them: compiled with top-level ``await`` allowed, sharing one namespace."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever)
        self.namespace: dict[str, Any] = {"signalroom": signalroom, "asyncio": asyncio}
        self.thread.start()

    def run(self, cell: str) -> None:
        code = compile(textwrap.dedent(cell), "<cell>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)

        async def execute() -> None:
            result = eval(code, self.namespace)
            if asyncio.iscoroutine(result):
                await result

        asyncio.run_coroutine_threadsafe(execute(), self.loop).result(TIMEOUT)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(TIMEOUT)
        self.loop.close()


@pytest.fixture
def kernel() -> Iterator[Kernel]:
    kernel = Kernel()
    yield kernel
    kernel.close()


def test_top_level_await_on_a_loop_that_is_already_running(kernel: Kernel) -> None:
    kernel.run("server = signalroom.Server().start()")
    kernel.run(
        """
        api = server.api()
        await api.create_session("lobby")
        session = await signalroom.connect((await api.create_connection("lobby")).token)
        """
    )
    kernel.run(
        """
        got = []
        session.on("signal:chat", lambda e: got.append(e.data))
        await session.signal("sent in one cell", type="chat")
        """
    )
    # Between cells the loop keeps running: the signal is handled with no cell awaiting anything.
    deadline = time.monotonic() + TIMEOUT
    while kernel.namespace["got"] != ["sent in one cell"] and time.monotonic() < deadline:
        time.sleep(0.01)
    assert kernel.namespace["got"] == ["sent in one cell"]
    kernel.run("done = session.wait_for('signal:chat', predicate=lambda e: e.data == 'and another')")
    kernel.run("await session.signal('and another', type='chat'); await done")
    assert kernel.namespace["got"] == ["sent in one cell", "and another"]
    with pytest.raises(RuntimeError, match="from the event loop that connected this session"):
        kernel.namespace["session"].wait_for("signal")  # from this thread: no loop, or another one
    kernel.run("await session.disconnect(); await server.astop()")
    assert kernel.namespace["session"].end_reason == "disconnect"


RECEIVER = """
import asyncio, sys
import signalroom

async def main() -> None:
    session = await signalroom.connect(sys.argv[1])
    enough = asyncio.get_running_loop().create_future()
    count = 0

    def on_signal(event: signalroom.SignalEvent) -> None:
        nonlocal count
        count += 1
        if count == 50 and not enough.done():
            enough.set_result(None)

    session.on("signal", on_signal)
    async def slow(event: signalroom.SignalEvent) -> None:
        await asyncio.sleep(10)  # still pending at exit
    session.on("signal", slow)
    print("joined", flush=True)
    await enough
    # Leaves with the session open, signals still arriving, handler tasks pending.

if sys.argv[2] == "asyncio.run":
    asyncio.run(main())
else:  # a loop never closed, its event pump still waiting for Rust
    asyncio.new_event_loop().run_until_complete(main())
print("exiting", flush=True)
"""


@pytest.mark.parametrize("how", ["asyncio.run", "loop left open"])
async def test_the_interpreter_exits_cleanly_with_sessions_open(
    how: str, participant: ParticipantFactory, server_api: signalroom.ServerApi
) -> None:
    sender = await participant("lobby")
    for attempt in range(8):  # the exit races with deliveries from Rust: try it a few times
        conn = await server_api.create_connection("lobby")
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            RECEIVER,
            conn.token,
            how,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert process.stdout is not None
        assert (await asyncio.wait_for(process.stdout.readline(), TIMEOUT)) == b"joined\n"
        exited = asyncio.ensure_future(process.wait())
        for _ in range(100):  # flood it, 200 signals at a time, until it has left the session
            if exited.done():
                break
            burst = (sender.signal("x", to=[conn.connection_id]) for _ in range(200))
            results = await asyncio.gather(*burst, return_exceptions=True)
            errors = [r for r in results if isinstance(r, BaseException)]
            if errors:
                assert all(isinstance(e, signalroom.RpcError) and e.code == 601 for e in errors), errors
                break  # it has left
        out, err = await asyncio.wait_for(process.communicate(), TIMEOUT)
        await exited
        assert process.returncode == 0, f"attempt {attempt}: exit code {process.returncode}\n{err.decode()}"
        assert out == b"exiting\n"
        assert b"Traceback" not in err and b"Fatal" not in err, err.decode()

"""Handler bookkeeping: no duplicates, a listing, on_error, the pytest plugin failing a test whose
handler raised, and sessions whose event loop is gone."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

import signalroom
from signalroom.testing import ParticipantFactory

TIMEOUT = 10.0


async def test_registering_a_handler_twice_registers_it_once(participant: ParticipantFactory) -> None:
    alice = await participant("lobby")
    got: list[str] = []

    def handler(event: signalroom.SignalEvent) -> None:
        got.append(event.data)

    alice.on("signal:chat", handler)
    alice.on("signal:chat", handler)
    alice.on("signal:chat")(handler)
    assert alice.handlers("signal:chat") == [handler]
    done = alice.wait_for("signal:chat")
    await alice.signal("once", type="chat")
    await done
    assert got == ["once"]


async def test_a_function_defined_again_replaces_its_previous_version(participant: ParticipantFactory) -> None:
    alice = await participant("lobby")
    namespace: dict[str, Any] = {"got": []}
    cell = "def on_chat(event):\n    got.append(event.data)\n"
    exec(compile(cell, "<cell>", "exec"), namespace)  # noqa: S102 (a notebook cell...)
    first = namespace["on_chat"]
    alice.on("signal:chat", first)
    exec(compile(cell, "<cell>", "exec"), namespace)  # noqa: S102 (...run again)
    second = namespace["on_chat"]
    assert first is not second
    alice.on("signal:chat", second)
    assert alice.handlers("signal:chat") == [second]
    # Lambdas and distinct objects are never merged.
    one, two = (lambda e: None), (lambda e: None)
    alice.on("signal:chat", one)
    alice.on("signal:chat", two)
    assert alice.handlers("signal:chat") == [second, one, two]
    assert alice.handlers() == [second, one, two]
    alice.off("signal:chat", one)
    assert alice.handlers("signal:chat") == [second, two]
    alice.off("signal:chat")
    assert alice.handlers("signal:chat") == []
    done = alice.wait_for("signal:chat")
    await alice.signal("nobody listens", type="chat")
    await done
    assert namespace["got"] == []


async def test_on_error_receives_plain_and_async_handler_errors(participant: ParticipantFactory) -> None:
    alice = await participant("lobby")
    failures: list[tuple[object, str, str]] = []
    both = asyncio.Event()

    def hook(fn: object, event: signalroom.Event, error: BaseException) -> None:
        failures.append((fn, event.name, str(error)))
        if len(failures) == 2:
            both.set()

    def plain(event: signalroom.SignalEvent) -> None:
        raise ValueError("plain")

    async def later(event: signalroom.SignalEvent) -> None:
        await asyncio.sleep(0)
        raise KeyError("async")

    alice.on_error = hook
    assert alice.on_error is hook
    alice.on("signal:x", plain)
    alice.on("signal:x", later)
    await alice.signal("", type="x")
    await asyncio.wait_for(both.wait(), TIMEOUT)
    assert sorted(failures, key=lambda f: f[2]) == [(later, "signal:x", "'async'"), (plain, "signal:x", "plain")]
    alice.on_error = None  # the default again
    assert alice.on_error is not hook


PLUGIN_TESTS = """
import asyncio
import pytest

async def _raise_in_handler(participant):
    alice = await participant("lobby")
    def broken(event):
        raise RuntimeError("the handler broke")
    alice.on("signal:x", broken)
    done = alice.wait_for("signal:x")
    await alice.signal("", type="x")
    await done

@pytest.mark.asyncio
async def test_fails(participant):
    await _raise_in_handler(participant)

@pytest.mark.asyncio
@pytest.mark.signalroom_handler_errors_ok
async def test_opted_out(participant):
    await _raise_in_handler(participant)

@pytest.mark.asyncio
async def test_clean(participant):
    alice = await participant("lobby")
    alice.on("signal:x", lambda e: None)
    done = alice.wait_for("signal:x")
    await alice.signal("", type="x")
    await done
"""


def test_the_pytest_plugin_fails_a_test_whose_handler_raised(tmp_path: Path) -> None:
    (tmp_path / "test_plugin_example.py").write_text(PLUGIN_TESTS)
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "asyncio_mode=strict", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
    )
    out = run.stdout
    assert "1 failed, 2 passed" in out, out + run.stderr
    assert "FAILED test_plugin_example.py::test_fails" in out
    assert "HandlerError: signalroom handler " in out and "broken raised RuntimeError: the handler broke" in out, out
    assert "signalroom_handler_errors_ok" in out


def test_on_is_refused_once_the_sessions_loop_is_closed() -> None:
    with signalroom.Server(secret="closed") as server:
        api = server.api()
        asyncio.run(api.create_session("lobby"))
        token = asyncio.run(api.create_connection("lobby")).token
        loop = asyncio.new_event_loop()
        try:
            session = loop.run_until_complete(signalroom.connect(token))
            session.on("signal", lambda e: None)  # fine while the loop lives
            loop.run_until_complete(session.disconnect())
        finally:
            loop.close()
        with pytest.raises(RuntimeError, match=r"event loop that connected .* is closed"):
            session.on("signal", lambda e: None)


def test_a_session_left_connected_leaves_with_a_resource_warning_when_its_loop_shuts_down() -> None:
    with signalroom.Server(secret="rw") as server:
        api = server.api()

        async def setup() -> tuple[str, str]:
            await api.create_session("lobby")
            watcher = await api.create_connection("lobby")
            return watcher.token, (await api.create_connection("lobby")).token

        watcher_token, token = asyncio.run(setup())
        left: list[str] = []
        with signalroom.sync.connect(watcher_token) as watcher:
            watcher.on("connectionDestroyed", lambda e: left.append(f"{e.connection.connection_id} {e.reason}"))

            async def forget_to_leave() -> str:
                session = await signalroom.connect(token)
                return session.connection_id

            with pytest.warns(ResourceWarning, match="was still connected when its event loop shut down"):
                connection_id = asyncio.run(forget_to_leave())
            deadline = time.monotonic() + TIMEOUT
            while not left and time.monotonic() < deadline:
                time.sleep(0.01)
        assert left == [f"{connection_id} disconnect"]


def test_the_guides_handler_rules_are_what_a_notebook_sees() -> None:
    # Re-running a cell in a kernel: the same rule as above, through a real interpreter's __main__.
    script = textwrap.dedent(
        """
        import asyncio, signalroom

        async def main() -> None:
            async with signalroom.Server() as server:
                api = server.api()
                await api.create_session("lobby")
                session = await signalroom.connect((await api.create_connection("lobby")).token)
                got = []
                for _ in range(2):  # the same cell, twice
                    exec("def on_chat(event):\\n    got.append(event.data)\\nsession.on('signal:chat', on_chat)",
                         {"session": session, "got": got, "__name__": "__main__"})
                done = session.wait_for("signal:chat")
                await session.signal("hi", type="chat")
                await done
                print(got, len(session.handlers("signal:chat")))
                await session.disconnect()

        asyncio.run(main())
        """
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 0, run.stderr
    assert run.stdout == "['hi'] 1\n"

"""signalroom.sync: the blocking API, from plain threads with no event loop."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from typing import Any

import pytest

import signalroom
import signalroom.sync

TIMEOUT = 10.0


@pytest.fixture
def server() -> Iterator[signalroom.sync.Server]:
    with signalroom.sync.Server(secret="sync-secret") as server:
        yield server


def _no_loop_here() -> None:
    with pytest.raises(RuntimeError):
        asyncio.get_running_loop()


def test_one_signal_one_reply_from_a_plain_thread(server: signalroom.sync.Server) -> None:
    api = server.api()
    api.create_session("lobby")
    bot = signalroom.sync.connect(api.create_connection("lobby").token, data="bot")
    bot.on("signal:ping", lambda e: bot.reply(e, f"pong to {e.data}", type="pong"))
    result: dict[str, Any] = {}

    def script() -> None:  # a plain thread: no event loop anywhere on it
        try:
            _no_loop_here()
            token = api.create_connection("lobby").token
            # The README's four lines (with the import), here inside a function.
            with signalroom.sync.connect(token) as s:
                s.signal("hi", type="ping")
                result["reply"] = s.receive("signal:pong", timeout=TIMEOUT)
            result["state"] = s.state
            _no_loop_here()
        except Exception as error:  # noqa: BLE001 (reported to the test below)
            result["error"] = error

    thread = threading.Thread(target=script)
    thread.start()
    thread.join(TIMEOUT * 2)
    assert "error" not in result, result.get("error")
    assert result["reply"].data == "pong to hi"
    assert result["reply"].from_ == bot.connection
    assert result["state"] == "disconnected"
    bot.disconnect()
    assert bot.end_reason == "disconnect"


def test_the_four_line_script_runs_as_a_program(server: signalroom.sync.Server) -> None:
    api = server.api()
    api.create_session("lobby")
    with signalroom.sync.connect(api.create_connection("lobby").token) as bot:
        bot.on("signal:ping", lambda e: bot.reply(e, "pong", type="pong"))
        script = textwrap.dedent(
            """
            import signalroom, sys; token = sys.argv[1]
            with signalroom.sync.connect(token) as s:
                s.signal("hi", type="ping")
                print(s.receive("signal:pong", timeout=5).data)
            """
        )
        lines = [line for line in script.splitlines()[2:] if line.strip()]
        assert len(lines) == 3  # plus the import: one signal and one reply in 4 lines
        run = subprocess.run(
            [sys.executable, "-c", script, api.create_connection("lobby").token],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert run.returncode == 0, run.stderr
    assert run.stdout == "pong\n"


# The same with asyncio, for comparison (the closing figures: 7 lines against 4).
ASYNC_ONE_SIGNAL_ONE_REPLY = """\
import asyncio, signalroom, sys; token = sys.argv[1]
async def main() -> None:
    async with signalroom.connect(token) as s:
        reply = s.wait_for("signal:pong", timeout=5)
        await s.signal("hi", type="ping")
        print((await reply).data)
asyncio.run(main())
"""


def test_the_same_with_asyncio_takes_seven_lines(server: signalroom.sync.Server) -> None:
    assert len(ASYNC_ONE_SIGNAL_ONE_REPLY.splitlines()) == 7
    api = server.api()
    api.create_session("lobby")
    with signalroom.sync.connect(api.create_connection("lobby").token) as bot:
        bot.on("signal:ping", lambda e: bot.reply(e, "pong", type="pong"))
        run = subprocess.run(
            [sys.executable, "-c", ASYNC_ONE_SIGNAL_ONE_REPLY, api.create_connection("lobby").token],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert run.returncode == 0, run.stderr
    assert run.stdout == "pong\n"


def test_receive_keeps_events_that_arrived_before_the_call_and_times_out(server: signalroom.sync.Server) -> None:
    api = server.api()
    api.create_session("lobby")
    alice = signalroom.sync.connect(api.create_connection("lobby").token, data="alice")
    bob = signalroom.sync.connect(api.create_connection("lobby").token, data="bob")
    try:
        for i in range(3):
            alice.signal(str(i), type="n", to=[bob.connection])
        alice.signal("other", type="x", to=[bob.connection])
        # Asked for in another order than they arrived: each is found, none lost.
        assert bob.receive("signal:x", timeout=TIMEOUT).data == "other"
        assert [bob.receive("signal:n", timeout=TIMEOUT).data for _ in range(3)] == ["0", "1", "2"]
        assert (
            bob.receive("connectionCreated", predicate=lambda e: e.connection == alice.connection).connection.data
            == "alice"
        )
        with pytest.raises(signalroom.SignalTimeoutError, match="signal:n"):
            bob.receive("signal:n", timeout=0.2)
        with pytest.raises(signalroom.InvalidArgumentError, match="unknown event"):
            bob.receive("chat")  # type: ignore[signalroom-event]
    finally:
        alice.disconnect()
        bob.disconnect()
    with pytest.raises(signalroom.ConnectionLostError):
        bob.receive("signal:n", timeout=TIMEOUT)


def test_iteration_yields_every_event_until_the_session_ends(server: signalroom.sync.Server) -> None:
    api = server.api()
    api.create_session("lobby")
    conn = api.create_connection("lobby")
    watcher = signalroom.sync.connect(conn.token)
    sender = signalroom.sync.connect(api.create_connection("lobby").token)
    sender.signal("one", type="chat")
    sender.disconnect()
    api.delete_connection("lobby", conn.connection_id)  # ends the watcher's session
    names = [event.name for event in watcher]
    assert names[-1] == "sessionDisconnected"
    assert "signal:chat" in names and "connectionDestroyed" in names
    assert watcher.end_reason == "forceDisconnectByServer"


def test_handlers_run_on_the_background_thread_and_can_be_listed_and_removed(server: signalroom.sync.Server) -> None:
    api = server.api()
    api.create_session("lobby")
    with signalroom.sync.connect(api.create_connection("lobby").token) as s:
        threads: list[str] = []
        seen = threading.Event()

        def handler(event: signalroom.SignalEvent) -> None:
            threads.append(threading.current_thread().name)
            seen.set()

        assert s.on("signal:chat", handler) is handler
        s.on("signal:chat", handler)  # twice: still once
        assert s.handlers("signal:chat") == [handler]
        s.signal("hi", type="chat")
        assert seen.wait(TIMEOUT)
        assert threads == ["signalroom-sync"]
        s.off("signal:chat", handler)
        assert s.handlers("signal:chat") == []


def test_sync_server_api_covers_the_rest_api(server: signalroom.sync.Server) -> None:
    api = server.api()
    assert isinstance(api, signalroom.sync.ServerApi)
    created = api.create_session("room")
    assert created.session_id == "room"
    assert [s.session_id for s in api.list_sessions()] == ["room"]
    conn = api.create_connection("room", role="MODERATOR")
    assert api.get_connection("room", conn.connection_id).role == "MODERATOR"
    assert [c.connection_id for c in api.list_connections("room")] == [conn.connection_id]
    with pytest.raises(signalroom.ServerApiError) as info:
        api.get_session("nowhere")
    assert info.value.status == 404
    api.close_session("room")
    assert api.list_sessions() == []


def test_a_blocking_call_from_a_handler_is_refused_instead_of_hanging(server: signalroom.sync.Server) -> None:
    api = server.api()
    api.create_session("lobby")
    with signalroom.sync.connect(api.create_connection("lobby").token) as s:
        errors: list[BaseException] = []
        done = threading.Event()

        def handler(event: signalroom.SignalEvent) -> None:
            try:
                s.receive("signal:never", timeout=0.1)  # would block the thread that delivers it
            except Exception as error:  # noqa: BLE001 (checked below)
                errors.append(error)
            try:
                api.list_sessions()
            except Exception as error:  # noqa: BLE001 (checked below)
                errors.append(error)
            done.set()

        s.on("signal:go", handler)
        s.signal("", type="go")
        assert done.wait(TIMEOUT)
    assert len(errors) == 2
    assert all(isinstance(e, RuntimeError) and "would wait for itself" in str(e) for e in errors), errors


def test_bytes_unhandle_and_the_frame_limit_as_on_the_asyncio_session(server: signalroom.sync.Server) -> None:
    api = server.api()
    api.create_session("lobby")
    with (
        signalroom.sync.connect(api.create_connection("lobby").token) as alice,
        signalroom.sync.connect(api.create_connection("lobby").token) as bob,
    ):
        assert alice.max_frame_bytes == alice.aio.max_frame_bytes > 0
        bob.handle("ask", lambda request: request.payload.upper())
        assert alice.request(bob.connection, "ask", "hi", timeout=TIMEOUT) == "HI"
        bob.unhandle("ask")
        with pytest.raises(signalroom.NoHandlerError):
            alice.request(bob.connection, "ask", "hi", timeout=TIMEOUT)
        # Watching starts when next_stream() is called on the session's loop: before the send.
        incoming = signalroom.sync._runner.call(lambda: bob.aio.next_stream("blob", timeout=TIMEOUT))
        data = bytes(range(256)) * 1000  # larger than a frame: several chunks

        async def read() -> bytes:
            return await (await incoming).read()

        alice.send_bytes(data, topic="blob", to=[bob.connection])
        assert signalroom.sync._runner.run(read()) == data

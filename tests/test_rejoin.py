"""Bots that survive: the ``rejoin`` policy across a restart of the server process, what signal()
does while the link is down (``while_reconnecting``: rejoining, or reopening the link through a
proxy that breaks it), and ``wait_closed``."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from tcpproxy import TcpProxy

import signalroom

TIMEOUT = 30.0
READY = "signalroom ready: "


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class ServerProcess:
    """``signalroom serve`` on a fixed port, that a test can stop and start again."""

    def __init__(self, binary: Path, log_dir: Path) -> None:
        self.binary = binary
        self.port = _free_port()
        self.secret = "s3cr3t-" + secrets.token_hex(8)
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log_dir / "server.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            process = subprocess.Popen(
                [str(self.binary), "serve", "--listen", f"127.0.0.1:{self.port}", "--secret", self.secret],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
                start_new_session=True,
            )
        assert process.stdout is not None
        deadline = time.monotonic() + TIMEOUT
        line = process.stdout.readline().decode()
        while not line.startswith(READY):
            assert process.poll() is None and time.monotonic() < deadline, self.log.read_text()[-3000:]
            line = process.stdout.readline().decode()
        process.stdout.close()
        self.process = process

    def stop(self, how: int = signal.SIGTERM) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(how)
        try:
            process.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture
async def server(signalroom_binary: Path, tmp_path: Path) -> AsyncIterator[ServerProcess]:
    server = ServerProcess(signalroom_binary, tmp_path)
    await asyncio.to_thread(server.start)
    try:
        yield server
    finally:
        await asyncio.to_thread(server.stop)


def _token_factory(server: ServerProcess, session_id: str = "lobby", data: str = "bot") -> Callable[[], Awaitable[str]]:
    api = signalroom.ServerApi(server.url, server.secret, timeout=2.0)

    async def fresh_token() -> str:
        await api.create_session(session_id)  # the restarted server has no sessions
        return (await api.create_connection(session_id, data=data)).token

    return fresh_token


async def _until(condition: object, what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not callable(condition) or not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["stopped", "killed"])
async def test_a_bot_survives_a_restart_of_the_server_process(server: ServerProcess, how: int) -> None:
    fresh_token = _token_factory(server)
    bot = await signalroom.connect(
        await fresh_token(),
        rejoin=fresh_token,
        rejoin_interval=0.1,
        rejoin_attempts=600,  # a minute: however slow the restart is on a busy machine
        reconnect_interval=0.1,
        reconnect_attempts=3,
    )
    try:

        @bot.on("signal:ping")
        async def pong(event: signalroom.SignalEvent) -> None:
            await bot.reply(event, f"pong {event.data}", type="pong")

        ended: list[signalroom.SessionDisconnectedEvent] = []
        bot.on("sessionDisconnected", ended.append)
        rejoined = bot.wait_for("rejoined", timeout=TIMEOUT)
        before = bot.connection
        await asyncio.to_thread(server.stop, how)
        await _until(lambda: bot.state == "reconnecting", "the bot to notice")
        await asyncio.to_thread(server.start)  # a new process: no sessions, no participants
        event = await rejoined
        assert event.previous == before
        assert event.connection == bot.connection != before
        assert event.reason == ("openviduServerStopped" if how == signal.SIGTERM else "networkDisconnect")
        assert bot.state == "connected" and bot.end_reason is None and ended == []

        # The same handlers answer on the new server.
        user_token = await _token_factory(server, data="user")()
        async with signalroom.connect(user_token) as user:
            reply = user.wait_for("signal:pong", timeout=TIMEOUT)
            await user.signal("1", type="ping", to=[bot.connection])
            assert (await reply).data == "pong 1"
    finally:
        await bot.disconnect()
    assert bot.end_reason == "disconnect"


async def test_without_rejoin_a_restart_ends_the_session(server: ServerProcess) -> None:
    session = await signalroom.connect(await _token_factory(server)())
    await asyncio.to_thread(server.stop)
    ended = await asyncio.wait_for(session.wait_closed(), TIMEOUT)
    assert ended.reason == "openviduServerStopped"


async def test_signal_while_rejoining_waits_for_the_link_or_fails_at_once(server: ServerProcess) -> None:
    fresh_token = _token_factory(server)
    waiting = await signalroom.connect(
        await fresh_token(), timeout=TIMEOUT, rejoin=fresh_token, rejoin_interval=0.1, rejoin_attempts=600
    )
    failing = await signalroom.connect(
        await fresh_token(), while_reconnecting="fail", rejoin=fresh_token, rejoin_interval=0.1, rejoin_attempts=600
    )
    try:
        rejoined = [s.wait_for("rejoined", timeout=TIMEOUT) for s in (waiting, failing)]
        await asyncio.to_thread(server.stop)
        await _until(lambda: waiting.state == failing.state == "reconnecting", "both to lose the server")

        started = time.monotonic()
        with pytest.raises(signalroom.ConnectionLostError, match="reconnecting: the signal was not sent"):
            await failing.signal("now", type="chat")
        assert time.monotonic() - started < 1.0  # at once, not after a timeout

        sent = asyncio.ensure_future(waiting.signal("after the restart", type="chat"))
        await asyncio.sleep(0.3)
        assert not sent.done()  # waiting for the link
        await asyncio.to_thread(server.start)
        await asyncio.gather(*rejoined)
        await asyncio.wait_for(sent, TIMEOUT)  # sent once the session was back, not refused
        assert sent.result() is None and waiting.state == "connected"
        started = time.monotonic()
        await failing.signal("back", type="chat")  # once back, "fail" sends as usual
        assert time.monotonic() - started < TIMEOUT
    finally:
        await waiting.disconnect()
        await failing.disconnect()


async def test_an_eviction_is_not_rejoined_and_wait_closed_returns_its_end(server: ServerProcess) -> None:
    fresh_token = _token_factory(server)
    calls = 0

    async def counting_factory() -> str:
        nonlocal calls
        calls += 1
        return await fresh_token()

    bot = await signalroom.connect(await fresh_token(), rejoin=counting_factory, rejoin_interval=0.1)
    api = signalroom.ServerApi(server.url, server.secret)
    await api.delete_connection("lobby", bot.connection_id)
    ended = await asyncio.wait_for(bot.wait_closed(), TIMEOUT)
    assert ended.reason == "forceDisconnectByServer"
    assert calls == 0
    assert await bot.wait_closed() is ended  # again: at once


async def test_rejoin_gives_up_after_its_attempts_and_ends_the_session(server: ServerProcess) -> None:
    fresh_token = _token_factory(server)
    attempts = 0

    async def unreachable() -> str:
        nonlocal attempts
        attempts += 1
        raise ConnectionError("no token today")

    bot = await signalroom.connect(await fresh_token(), rejoin=unreachable, rejoin_attempts=3, rejoin_interval=0.05)
    await asyncio.to_thread(server.stop)
    ended = await asyncio.wait_for(bot.wait_closed(), TIMEOUT)
    assert ended.reason == "openviduServerStopped"
    assert attempts == 3
    assert bot.state == "disconnected"


async def test_signal_while_the_link_is_reopened_waits_or_fails_at_once() -> None:
    async with TcpProxy() as proxy, signalroom.Server(public_url=proxy.url) as server:
        proxy.target = ("127.0.0.1", server.port)
        api = server.api()
        await api.create_session("lobby")

        async def join(while_reconnecting: signalroom.WhileReconnecting) -> signalroom.Session:
            token = (await api.create_connection("lobby")).token
            return await signalroom.connect(
                token,
                timeout=TIMEOUT,
                reconnect_interval=0.1,
                ping_interval=0.2,
                ping_timeout=0.5,
                while_reconnecting=while_reconnecting,
            )

        waiting, failing = await join("wait"), await join("fail")
        try:
            back = [s.wait_for("reconnected", timeout=TIMEOUT) for s in (waiting, failing)]
            heard = failing.wait_for("signal:chat", predicate=lambda e: e.data == "meanwhile", timeout=TIMEOUT)
            proxy.target = None  # new connections are refused...
            proxy.reset()  # ...and the open ones broken
            await _until(lambda: waiting.state == failing.state == "reconnecting", "both to lose the link")

            started = time.monotonic()
            with pytest.raises(signalroom.ConnectionLostError, match="reconnecting: the signal was not sent"):
                await failing.signal("now", type="chat")
            assert time.monotonic() - started < 1.0

            sent = asyncio.ensure_future(waiting.signal("meanwhile", type="chat"))
            await asyncio.sleep(0.3)
            assert not sent.done()
            proxy.target = ("127.0.0.1", server.port)
            await asyncio.wait_for(sent, TIMEOUT)
            await asyncio.gather(*back)
            assert (await heard).from_ == waiting.connection
        finally:
            await waiting.disconnect()
            await failing.disconnect()

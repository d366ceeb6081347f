"""signalroom.Server (the Rust server inside the Python process) and ``python -m signalroom serve``."""

from __future__ import annotations

import asyncio
import errno
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import signalroom

TIMEOUT = 20.0


def test_start_stop_and_where_to_reach_it() -> None:
    server = signalroom.Server(secret="s3cret", port=0)
    assert not server.running
    assert "stopped" in repr(server)
    with pytest.raises(signalroom.SignalroomError, match="call start"):
        _ = server.url
    assert server.start() is server
    try:
        assert server.running
        assert server.url == f"http://127.0.0.1:{server.port}"
        assert server.token_base == f"ws://127.0.0.1:{server.port}"
        assert server.secret == "s3cret"
        assert server.url in repr(server)
        server.start()  # running already: nothing happens
    finally:
        server.stop()
    assert not server.running
    server.stop()  # stopped already: nothing happens


def test_with_block_and_a_fixed_port() -> None:
    with signalroom.Server() as first:
        assert first.secret == signalroom.DEFAULT_SECRET
        port = first.port
        with pytest.raises(signalroom.ServerStartError, match=f"cannot listen on 127.0.0.1:{port}") as taken:
            signalroom.Server(port=port).start()
        assert isinstance(taken.value, OSError)
        assert taken.value.errno == errno.EADDRINUSE
    assert not first.running
    with signalroom.Server(port=port) as again:  # the port is free again
        assert again.port == port


async def test_async_with_block_serves_participants() -> None:
    async with signalroom.Server(secret="s") as server:
        api = server.api()
        await api.create_session("lobby")
        conn = await api.create_connection("lobby")
        session = await signalroom.connect(conn.token)
        assert session.state == "connected"
        disconnected = session.wait_for("sessionDisconnected")
    assert not server.running
    assert (await disconnected).reason == "openviduServerStopped"


def test_bad_settings_are_refused() -> None:
    with pytest.raises(signalroom.InvalidArgumentError, match="both"):
        signalroom.Server(tls_cert="cert.pem")
    with pytest.raises(signalroom.InvalidArgumentError, match="resolve"):
        signalroom.Server(host="no such host.invalid")
    with pytest.raises(signalroom.InvalidArgumentError, match="at least 1"):
        signalroom.Server(send_queue=0)
    with pytest.raises(signalroom.InvalidArgumentError, match="reconnection_grace"):
        signalroom.Server(reconnection_grace=-1.0)
    with pytest.raises(signalroom.InvalidArgumentError, match="public_url"):
        signalroom.Server(public_url="not a url")


async def test_public_url_and_signal_limit_are_applied() -> None:
    async with signalroom.Server(public_url="http://localhost:1234", max_signal_bytes=10) as server:
        assert server.url == "http://localhost:1234"
        api = signalroom.ServerApi(f"http://127.0.0.1:{server.port}", server.secret)
        await api.create_session("lobby")
        conn = await api.create_connection("lobby")
        assert conn.token.startswith("ws://localhost:1234?")
        assert server.token_base == "ws://localhost:1234"
        token = conn.token.replace("ws://localhost:1234", f"ws://127.0.0.1:{server.port}")
        async with signalroom.connect(token) as session:
            with pytest.raises(signalroom.RpcError) as info:
                await session.signal("more than ten bytes")
            assert info.value.code == 600


def test_stop_releases_the_gil() -> None:
    """stop() waits (up to a 3 s grace) for a half-received HTTP request; a Python thread waiting for
    the GIL finishes that request during stop(), which only works if stop() released the GIL."""
    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(60.0)  # now a waiting thread gets the GIL only when it is released on purpose
    try:
        server = signalroom.Server().start()
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(b"GET /openvidu/api/config HTTP/1.1\r\nHost: x\r\n")  # headers not finished
            go = threading.Event()
            ran_at: list[float] = []

            def finish_request() -> None:
                go.wait()
                ran_at.append(time.monotonic())  # runs once this thread holds the GIL
                sock.sendall(b"\r\n")  # the request is complete: the server can stop now

            thread = threading.Thread(target=finish_request)
            thread.start()
            go.set()
            started = time.monotonic()
            server.stop()
            stopped = time.monotonic()
            thread.join(TIMEOUT)
    finally:
        sys.setswitchinterval(switch_interval)
    assert ran_at and started < ran_at[0] < stopped, "the other thread did not run during stop()"
    assert stopped - started < 2.5


def test_python_m_signalroom_serve() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "signalroom", "serve", "--listen", "127.0.0.1:0", "--secret", "s3cret"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("signalroom ready: http://127.0.0.1:"), line
        url = line.split(": ", 1)[1].strip()

        async def use_it() -> str:
            api = signalroom.ServerApi(url, "s3cret")
            await api.create_session("lobby")
            session = await signalroom.connect((await api.create_connection("lobby")).token)
            disconnected = session.wait_for("sessionDisconnected", timeout=TIMEOUT)
            process.send_signal(signal.SIGTERM)
            return (await disconnected).reason

        assert asyncio.run(use_it()) == "openviduServerStopped"
        assert process.wait(TIMEOUT) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        stderr = process.stderr.read() if process.stderr else ""
        if process.stdout:
            process.stdout.close()
        if process.stderr:
            process.stderr.close()
    assert "Traceback" not in stderr, stderr


def test_python_m_signalroom_serve_stops_cleanly_and_at_once_on_ctrl_c() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "signalroom", "serve", "--listen", ":0", "--secret", "s3cret"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    async def stop_it(url: str) -> float:
        api = signalroom.ServerApi(url, "s3cret")
        await api.create_session("lobby")
        session = await signalroom.connect((await api.create_connection("lobby")).token)
        gone = session.wait_for("sessionDisconnected", timeout=TIMEOUT)
        started = time.monotonic()
        process.send_signal(signal.SIGINT)
        assert await asyncio.to_thread(process.wait, TIMEOUT) == 0
        took = time.monotonic() - started
        assert (await gone).reason == "openviduServerStopped"
        return took

    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("signalroom ready: http://127.0.0.1:"), line
        took = asyncio.run(stop_it(line.split(": ", 1)[1].strip()))
        # As the binary (a few hundredths of a second): the stop, and no lingering after it.
        assert took < 0.5, f"{took:.3f} s from Ctrl-C to exit"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        stderr = process.stderr.read() if process.stderr else ""
        if process.stdout:
            process.stdout.close()
        if process.stderr:
            process.stderr.close()
    assert "Traceback" not in stderr, stderr
    assert "KeyboardInterrupt" not in stderr, stderr


def test_python_m_signalroom_has_the_command_line_of_the_binary(signalroom_binary: Path) -> None:
    for args in (["serve", "--help"], ["--help"], ["--version"], ["serve", "--send-queue", "0"]):
        ours = subprocess.run(
            [sys.executable, "-m", "signalroom", *args], capture_output=True, text=True, timeout=TIMEOUT, check=False
        )
        theirs = subprocess.run(
            [signalroom_binary, *args], capture_output=True, text=True, timeout=TIMEOUT, check=False
        )
        assert (ours.returncode, ours.stdout, ours.stderr) == (theirs.returncode, theirs.stdout, theirs.stderr), args
    help_text = subprocess.run(
        [sys.executable, "-m", "signalroom", "serve", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for flag in ("--listen", "--public-url", "--secret", "OPENVIDU_SECRET", "--tls-cert", "--tls-key", "--send-queue"):
        assert flag in help_text


def test_python_m_signalroom_serve_says_what_is_wrong() -> None:
    env = {k: v for k, v in os.environ.items() if k != "OPENVIDU_SECRET"}
    bad = subprocess.run(
        [sys.executable, "-m", "signalroom", "serve", "--listen", "nowhere"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert bad.returncode == 2
    assert "HOST:PORT" in bad.stderr
    with signalroom.Server() as taken:
        busy = subprocess.run(
            [sys.executable, "-m", "signalroom", "serve", "--listen", f"127.0.0.1:{taken.port}"],
            capture_output=True,
            text=True,
            env=env,
            timeout=TIMEOUT,
            check=False,
        )
    assert busy.returncode == 1
    assert "development secret" in busy.stderr  # no --secret: a loud warning
    assert "cannot listen" in busy.stderr

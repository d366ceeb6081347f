"""``python -m signalroom listen`` and ``send``: watching a session from a terminal."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

import signalroom

TIMEOUT = 30.0


@pytest.fixture
def server() -> Iterator[signalroom.sync.Server]:
    with signalroom.sync.Server(secret="cli-secret") as server:
        yield server


def _listen(server: signalroom.Server, *args: str) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "signalroom", "listen", *args, "--url", server.url, "--secret", "cli-secret"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    line = process.stderr.readline()  # once it has joined
    assert line.startswith("listening to session "), line + process.stderr.read()
    return process


def test_listen_prints_a_signal_sent_with_send_as_it_arrives(server: signalroom.sync.Server) -> None:
    listener = _listen(server, "lobby", "--count", "2")
    try:
        send = [sys.executable, "-m", "signalroom", "send", "lobby", "--url", server.url, "--secret", "cli-secret"]
        sent = subprocess.run(
            [*send, "hello there", "--type", "chat"], capture_output=True, text=True, timeout=TIMEOUT, check=False
        )
        assert sent.returncode == 0, sent.stderr
        assert listener.stdout is not None
        started = time.monotonic()
        line = listener.stdout.readline()
        while "signal:chat" not in line:  # its own arrival comes first
            assert time.monotonic() - started < TIMEOUT and line, line
            line = listener.stdout.readline()
        assert line.rstrip().endswith("signal:chat from server: hello there"), line
        subprocess.run([*send, "bye", "--type", "chat"], check=True, capture_output=True, timeout=TIMEOUT)
        out, err = listener.communicate(timeout=TIMEOUT)
        assert listener.returncode == 0, err
        assert out.splitlines()[0].endswith("signal:chat from server: bye"), out
    finally:
        listener.kill()
        listener.wait()


def test_listen_with_a_token_in_json_and_send_to_one_participant(server: signalroom.sync.Server) -> None:
    api = server.api()
    api.create_session("room")
    conn = api.create_connection("room")
    with signalroom.sync.connect(api.create_connection("room").token, data="alice") as alice:
        listener = _listen(server, conn.token, "--json", "--type", "dm", "--count", "1")
        try:
            alice.receive("connectionCreated", predicate=lambda e: e.connection.connection_id == conn.connection_id)
            alice.signal("not for it", type="other")
            alice.signal("for you", type="dm", to=[conn.connection_id])
            out, err = listener.communicate(timeout=TIMEOUT)
        finally:
            listener.kill()
            listener.wait()
    assert listener.returncode == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    signals = [line for line in lines if line["event"].startswith("signal")]
    assert signals == [{"event": "signal:dm", "type": "dm", "from": alice.connection_id, "data": "for you"}]


def test_send_reports_a_refusal_in_words(server: signalroom.sync.Server) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "signalroom", "send", "nowhere", "hi", "--url", server.url, "--secret", "cli-secret"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert run.returncode == 1
    assert run.stderr.startswith("error: ") and "404" in run.stderr, run.stderr
    assert "Traceback" not in run.stderr

"""``python -m signalroom listen`` and ``send``: watching a session from a terminal; one command
line with the binary's, one help."""

from __future__ import annotations

import json
import signal
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
    assert run.stderr.startswith("signalroom: ") and "404" in run.stderr, run.stderr
    assert "no such session or connection" in run.stderr, run.stderr
    assert "Traceback" not in run.stderr


def test_listen_says_who_joined_and_left_with_their_data(server: signalroom.sync.Server) -> None:
    listener = _listen(server, "lobby")
    try:
        with signalroom.sync.connect(server.api().create_connection("lobby").token, data="alice") as alice:
            pass
        assert listener.stdout is not None
        lines: list[str] = []
        while not any(" left " in line for line in lines):  # each line ends in a newline until EOF
            lines.append(listener.stdout.readline())
            assert lines[-1], lines
    finally:
        listener.send_signal(signal.SIGINT)
        listener.communicate(timeout=TIMEOUT)
    ours = [line for line in lines if alice.connection_id in line]
    assert ours[0].rstrip().endswith(f"{alice.connection_id} (alice) joined"), lines
    assert ours[1].rstrip().endswith(f"{alice.connection_id} (alice) left (disconnect)"), lines
    assert listener.returncode == 130


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "signalroom", *args], capture_output=True, text=True, timeout=TIMEOUT, check=False
    )


def test_one_help_lists_every_command_and_helps_with_each() -> None:
    listed = _run("--help")
    assert listed.returncode == 0, listed.stderr
    commands = listed.stdout.split("Commands:", 1)[1].split("Options:", 1)[0]
    names = {line.split()[0] for line in commands.splitlines() if line.strip()}
    assert {"serve", "sessions", "signal", "kick", "token", "listen", "help"} <= names, commands
    assert "send" in commands  # signal's other name
    for command, words in [("listen", "TOKEN_OR_SESSION"), ("send", "--to"), ("signal", "--to")]:
        helped = _run("help", command)
        assert helped.returncode == 0, helped.stderr
        assert words in helped.stdout and "--url" in helped.stdout, helped.stdout

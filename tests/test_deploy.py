"""``deploy/run-local.sh``: Redis (one redis-server, Sentinel, or a Redis Cluster), two nodes and
HAProxy on this machine. Two participants join through the balancer (each may land on either node)
and exchange broadcast and targeted signals both ways; everything is stopped afterwards."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

import signalroom
from signalroom.testing import assert_signal, record_signals

REPO_ROOT = Path(__file__).resolve().parent.parent
READY_PREFIX = "signalroom cluster ready: "
READY_TIMEOUT_S = 90.0  # (about 3 s here; each step of the script has a limit of its own and says which failed)
STOP_TIMEOUT_S = 15.0
TIMEOUT = 10.0


@pytest.fixture(params=["one", "sentinel", "cluster"])
def deployment(signalroom_binary: Path, request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    """``deploy/run-local.sh --redis KIND`` on a free balancer port: (balancer URL, secret);
    stopped with SIGTERM."""
    secret = "s3cr3t-" + secrets.token_hex(8)
    with tempfile.TemporaryFile() as stderr:
        yield from _run(signalroom_binary, secret, stderr, request.param)


def _run(signalroom_binary: Path, secret: str, stderr: IO[bytes], redis: str) -> Iterator[tuple[str, str]]:
    script = subprocess.Popen(
        [str(REPO_ROOT / "deploy" / "run-local.sh"), "--port", "0", "--secret", secret, "--redis", redis],
        env={**os.environ, "SIGNALROOM_BIN": str(signalroom_binary)},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=stderr,
        start_new_session=True,
    )
    lines: list[str] = []
    ready = threading.Event()

    def read_stdout() -> None:
        assert script.stdout is not None
        for raw in script.stdout:
            lines.append(raw.decode(errors="replace").strip())
            if lines[-1].startswith(READY_PREFIX):
                ready.set()
        script.stdout.close()
        ready.set()

    reader = threading.Thread(target=read_stdout, daemon=True)
    reader.start()
    try:
        ready.wait(READY_TIMEOUT_S)
        url = next((line.removeprefix(READY_PREFIX) for line in lines if line.startswith(READY_PREFIX)), None)
        if url is None:
            script.terminate()
            script.wait(timeout=STOP_TIMEOUT_S)
            stderr.seek(0)
            err = stderr.read().decode(errors="replace")
            pytest.fail(f"run-local.sh never said it was ready; stdout {lines}; stderr:\n{err}", pytrace=False)
        yield url, secret
    finally:
        if script.poll() is None:
            script.send_signal(signal.SIGTERM)
            try:
                script.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(script.pid, signal.SIGKILL)
                script.wait()
                pytest.fail("run-local.sh did not stop on SIGTERM", pytrace=False)
        reader.join(STOP_TIMEOUT_S)
        # Every process it started is gone: nothing is left in its process group.
        try:
            os.killpg(script.pid, 0)
        except ProcessLookupError:
            pass
        else:
            os.killpg(script.pid, signal.SIGKILL)
            pytest.fail("run-local.sh left processes behind", pytrace=False)


async def test_two_participants_through_the_balancer_exchange_signals(deployment: tuple[str, str]) -> None:
    url, secret = deployment
    api = signalroom.ServerApi(url, secret)
    await api.create_session("lobby")
    tokens = [(await api.create_connection("lobby")).token for _ in range(2)]
    assert all(t.startswith(url.replace("http", "ws", 1)) for t in tokens), tokens
    alice = await signalroom.connect(tokens[0], data="alice")
    bob = await signalroom.connect(tokens[1], data="bob")
    try:
        for s in (alice, bob):
            record_signals(s)
        await alice.signal("from alice", type="chat")
        await bob.signal("from bob", type="chat")
        for s in (alice, bob):
            await assert_signal(s, "chat", data="from alice", sender=alice.connection, timeout=TIMEOUT)
            await assert_signal(s, "chat", data="from bob", sender=bob.connection, timeout=TIMEOUT)
        await alice.signal("to bob", type="dm", to=[bob.connection])
        await assert_signal(bob, "dm", data="to bob", sender=alice.connection, timeout=TIMEOUT)
        await bob.signal("to alice", type="dm", to=[alice.connection])
        await assert_signal(alice, "dm", data="to alice", sender=bob.connection, timeout=TIMEOUT)
        listed = {c.connection_id for c in await api.list_connections("lobby")}
        assert listed == {alice.connection_id, bob.connection_id}
    finally:
        await alice.disconnect()
        await bob.disconnect()

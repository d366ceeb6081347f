"""Signal history (``connect(token, history=True)``, ``ServerApi.signal_history``, ``signalroom
history``) and the signal hook (``Server(signal_hook=fn)``, the pytest marker), from Python."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import signalroom
from signalroom.hook import Decision, HookRequest, allow, refuse
from signalroom.testing import ParticipantFactory, SignalroomCluster

TIMEOUT = 5.0
CHAT = signalroom.SignalHistory(size=3, types=["chat"])


async def _first(stream: signalroom.SignalStream, n: int) -> list[signalroom.SignalEvent]:
    """The first ``n`` signals of ``stream``."""
    got: list[signalroom.SignalEvent] = []
    async for event in stream:
        got.append(event)
        if len(got) == n:
            break
    return got


async def test_a_late_joiner_gets_the_last_signals_marked_as_history_then_live_ones(
    server_api: signalroom.ServerApi,
) -> None:
    await server_api.create_session("lobby", signal_history=CHAT)
    alice = await signalroom.connect((await server_api.create_connection("lobby")).token, data="alice")
    try:
        for i in range(5):
            await alice.signal(f"chat {i}", type="chat")
            await alice.signal(f"cursor {i}", type="cursor")
        conn = await server_api.create_connection("lobby")
        bob = await signalroom.connect(conn.token, data="bob", history=True)
        try:
            # Subscribed before the first await after connect(): the history is dispatched first.
            stream = asyncio.ensure_future(_first(bob.signals("chat"), 4))
            await alice.signal("live", type="chat")
            got = await asyncio.wait_for(stream, TIMEOUT)
            assert [(e.data, e.history) for e in got] == [
                ("chat 2", True),
                ("chat 3", True),
                ("chat 4", True),
                ("live", False),
            ]
            assert got[0].from_ == alice.connection
            assert "history=True" in repr(got[0])
        finally:
            await bob.disconnect()
    finally:
        await alice.disconnect()


async def test_history_is_off_by_default_and_read_over_rest(
    server_api: signalroom.ServerApi, participant: ParticipantFactory
) -> None:
    alice = await participant("plain", data="alice")
    await alice.signal("said", type="chat")
    assert await server_api.signal_history("plain") == []
    late = await participant("plain", data="late", history=True)
    with pytest.raises(TimeoutError):
        await late.wait_for("signal:chat", timeout=0.3)

    await server_api.create_session("kept", signal_history=signalroom.SignalHistory(size=10, ttl_seconds=3600))
    bob = await participant("kept", data="bob")
    for i in range(4):
        await bob.signal(f"m{i}", type="chat")
    entries = await server_api.signal_history("kept")
    assert [e.data for e in entries] == ["m0", "m1", "m2", "m3"]
    assert entries[0].from_ == bob.connection_id and entries[0].type == "signal:chat"
    assert [e.data for e in await server_api.signal_history("kept", limit=1)] == ["m3"]
    assert [e.data for e in await server_api.signal_history("kept", since=entries[1].seq)] == ["m2", "m3"]
    with pytest.raises(signalroom.ServerApiError) as missing:
        await server_api.signal_history("nope")
    assert missing.value.status == 404


async def test_the_history_command_prints_the_history(
    signalroom_server: signalroom.Server, participant: ParticipantFactory
) -> None:
    await signalroom_server.api().create_session("cli", signal_history=CHAT)
    alice = await participant("cli", data="alice")
    await alice.signal("hello from the cli test", type="chat")
    command = [sys.executable, "-m", "signalroom", "history", "cli", "--url", signalroom_server.url]
    env = {"OPENVIDU_SECRET": signalroom_server.secret}
    table = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True, env=env, timeout=30)
    assert table.returncode == 0, table.stderr
    assert "hello from the cli test" in table.stdout and alice.connection_id in table.stdout
    as_json = await asyncio.to_thread(
        subprocess.run, [*command, "--json"], capture_output=True, text=True, env=env, timeout=30
    )
    assert json.loads(as_json.stdout)[0]["data"] == "hello from the cli test"


async def test_a_late_joiner_on_another_node_gets_the_history(signalroom_cluster: SignalroomCluster) -> None:
    a, b = signalroom_cluster.api(0), signalroom_cluster.api(1)
    await a.create_session("lobby", signal_history=CHAT)
    alice = await signalroom.connect((await a.create_connection("lobby")).token)
    try:
        for i in range(4):
            await alice.signal(f"m{i}", type="chat")
        bob = await signalroom.connect((await b.create_connection("lobby")).token, history=True)
        try:
            stream = asyncio.ensure_future(_first(bob.signals("chat"), 4))
            await alice.signal("live", type="chat")
            got = await asyncio.wait_for(stream, TIMEOUT)
            assert [(e.data, e.history) for e in got] == [("m1", True), ("m2", True), ("m3", True), ("live", False)]
        finally:
            await bob.disconnect()
    finally:
        await alice.disconnect()


# ---- the signal hook --------------------------------------------------------------------------


async def moderate(request: HookRequest) -> Decision:
    """An async hook: refuses spam, masks a word, sends whispers back to their sender only."""
    data = request.data or ""
    if "spam" in data:
        return refuse("no spam here")
    if "darn" in data:
        return allow(data=data.replace("darn", "****"))
    if data.startswith("whisper") and request.from_ is not None:
        return allow(to=[request.from_])
    return None


@pytest.mark.signalroom_signal_hook(hook=moderate, types=["chat"])
async def test_an_async_hook_allows_refuses_and_rewrites(
    server_api: signalroom.ServerApi, participant: ParticipantFactory
) -> None:
    alice = await participant("lobby", data="alice")
    bob = await participant("lobby", data="bob")
    arrived = asyncio.ensure_future(_first(bob.signals("chat"), 3))
    cursor = bob.wait_for("signal:cursor", timeout=TIMEOUT)
    await alice.signal("hello", type="chat")
    with pytest.raises(signalroom.RpcError) as refused:
        await alice.signal("buy spam", type="chat")
    assert (refused.value.code, refused.value.message) == (602, "no spam here")
    await alice.signal("darn", type="chat")
    await alice.signal("whisper", type="chat")
    await alice.signal("not moderated: spam", type="cursor")
    await server_api.signal("lobby", "darn from the server", type="chat")
    with pytest.raises(signalroom.ServerApiError) as forbidden:
        await server_api.signal("lobby", "spam from the server", type="chat")
    assert forbidden.value.status == 403
    got = await asyncio.wait_for(arrived, TIMEOUT)
    assert [e.data for e in got] == ["hello", "****", "**** from the server"]
    assert (await cursor).data == "not moderated: spam"


def plain_refuser(request: HookRequest) -> Decision:
    return request.data != "no"


@pytest.mark.signalroom_signal_hook(hook=plain_refuser)
async def test_a_plain_function_hook_and_other_types(participant: ParticipantFactory) -> None:
    alice = await participant("lobby", data="alice")
    with pytest.raises(signalroom.RpcError) as refused:
        await alice.signal("no", type="anything")
    assert refused.value.message == "signal refused"
    await alice.signal("yes", type="anything")


async def _never(request: HookRequest) -> Decision:
    await asyncio.Event().wait()
    return None


@pytest.mark.parametrize("fail_open", [False, True])
async def test_a_hook_that_times_out_fails_closed_or_open(fail_open: bool) -> None:
    async with signalroom.Server(
        signal_hook=_never, signal_hook_timeout=0.2, signal_hook_fail_open=fail_open
    ) as server:
        api = server.api()
        await api.create_session("lobby")
        alice = await signalroom.connect((await api.create_connection("lobby")).token)
        try:
            if fail_open:
                await alice.signal("through", type="chat")
            else:
                with pytest.raises(signalroom.RpcError, match="signal hook is unavailable"):
                    await alice.signal("blocked", type="chat")
        finally:
            await alice.disconnect()


async def _raises(request: HookRequest) -> Decision:
    raise RuntimeError("the moderation service is down")


@pytest.mark.parametrize("fail_open", [False, True])
async def test_a_hook_that_is_down_fails_closed_or_open(fail_open: bool) -> None:
    async with signalroom.Server(signal_hook=_raises, signal_hook_fail_open=fail_open) as server:
        api = server.api()
        await api.create_session("lobby")
        alice = await signalroom.connect((await api.create_connection("lobby")).token)
        try:
            if fail_open:
                await alice.signal("through", type="chat")
            else:
                with pytest.raises(signalroom.RpcError, match="moderation service is down"):
                    await alice.signal("blocked", type="chat")
        finally:
            await alice.disconnect()


async def _slow_first(request: HookRequest) -> Decision:
    n = int((request.data or "c0")[1:])
    await asyncio.sleep(max(0.0, 0.1 - n * 0.01))  # the first ones answer last
    return None


async def test_a_slow_hook_keeps_the_senders_order() -> None:
    async with signalroom.Server(signal_hook=_slow_first, signal_hook_types=["chat"]) as server:
        api = server.api()
        await api.create_session("lobby")
        alice = await signalroom.connect((await api.create_connection("lobby")).token)
        bob = await signalroom.connect((await api.create_connection("lobby")).token)
        try:
            sent = [d for i in range(10) for d in (f"c{i}", f"k{i}")]
            got: list[str] = []
            done = asyncio.get_running_loop().create_future()

            def keep(event: signalroom.SignalEvent) -> None:
                got.append(event.data)
                if len(got) == len(sent) and not done.done():
                    done.set_result(None)

            bob.on("signal", keep)
            await asyncio.gather(*(alice.signal(d, type="chat" if d[0] == "c" else "cursor") for d in sent))
            await asyncio.wait_for(done, TIMEOUT)
            assert got == sent
        finally:
            await asyncio.gather(alice.disconnect(), bob.disconnect())


@pytest.mark.signalroom_signal_hook(hook=moderate, types=["chat"])
async def test_the_hook_works_through_two_nodes(signalroom_cluster: SignalroomCluster) -> None:
    a, b = signalroom_cluster.api(0), signalroom_cluster.api(1)
    await a.create_session("lobby")
    alice = await signalroom.connect((await a.create_connection("lobby")).token)
    bob = await signalroom.connect((await b.create_connection("lobby")).token)
    try:
        with pytest.raises(signalroom.RpcError, match="no spam here"):
            await alice.signal("spam", type="chat")
        darn = bob.wait_for("signal:chat", timeout=TIMEOUT)
        await alice.signal("darn", type="chat")
        assert (await darn).data == "****"
    finally:
        await asyncio.gather(alice.disconnect(), bob.disconnect())


def test_the_operations_pages_moderation_bot_runs_and_type_checks(tmp_path: Path) -> None:
    page = (Path(__file__).resolve().parent.parent / "docs" / "server" / "operations.md").read_text()
    blocks = re.findall(r"^```python\n(.*?)^```", page, flags=re.DOTALL | re.MULTILINE)
    [bot] = [b for b in blocks if "signal_hook=moderate" in b]
    assert len([line for line in bot.splitlines() if line.strip()]) <= 30
    run = subprocess.run([sys.executable, "-c", bot], capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 0, run.stderr
    assert run.stdout == "refused: that word is not allowed here\nbob, joining later, reads: well **** (history)\n"
    (tmp_path / "bot.py").write_text(bot)
    typed = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(tmp_path / "bot.py")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=tmp_path,
    )
    assert typed.returncode == 0, typed.stdout + typed.stderr

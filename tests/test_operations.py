"""Running it in production: Prometheus metrics, OpenVidu's webhooks, CORS, development TLS, the
admin commands and the logs, each against a real ``signalroom serve`` process."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import json
import os
import re
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import websockets
from prometheus_client.openmetrics.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

import signalroom
from signalroom.testing import SignalroomCluster

if TYPE_CHECKING:
    from conftest import SignalroomServer, StartServer

TIMEOUT = 10.0


# -- helpers -----------------------------------------------------------------------------------


def http(url: str, method: str = "GET", headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (lower-case names) and body of one request; never raises on HTTP errors."""
    request = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, {k.lower(): v for k, v in error.headers.items()}, error.read()


def scrape(url: str) -> dict[str, list[Sample]]:
    """``/metrics`` parsed by prometheus_client's OpenMetrics parser: samples by family name."""
    status, headers, body = http(f"{url}/metrics")
    assert status == 200, body
    assert headers["content-type"].startswith("application/openmetrics-text")
    families = text_string_to_metric_families(body.decode())  # type: ignore[no-untyped-call]
    return {family.name: family.samples for family in families}


def value(families: dict[str, list[Sample]], name: str, sample: str | None = None, **labels: str) -> float:
    """The value of the sample ``sample`` (default: the family's name) of family ``name`` with ``labels``;
    0 for a labelled counter not counted yet (it has no sample)."""
    matches = [
        s.value
        for s in families.get(name, [])
        if s.name == (sample or name) and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    assert len(matches) <= 1, f"{name} {sample} {labels}: {families[name]}"
    assert matches or labels, f"{name} {sample}: no such sample"
    return matches[0] if matches else 0


async def until(check: Any, timeout: float = TIMEOUT) -> None:
    """Waits for ``check()`` to be true."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


# -- metrics -----------------------------------------------------------------------------------


async def test_metrics_count_sessions_participants_signals_and_requests(server_process: SignalroomServer) -> None:
    server = server_process
    api = signalroom.ServerApi(server.url, server.secret)
    await api.create_session("m1")
    alice = await signalroom.connect((await api.create_connection("m1")).token, data="alice")
    bob = await signalroom.connect((await api.create_connection("m1")).token, data="bob")
    try:
        got = bob.wait_for("signal:chat", predicate=lambda e: e.data == "3")
        for n in ("1", "2", "3"):
            await alice.signal(n, type="chat")  # to both of them
        await got
        noted = bob.wait_for("signal:note")
        await api.signal("m1", "from the server", type="note", to=[bob.connection_id])
        await noted

        m = scrape(server.url)
        assert value(m, "signalroom_sessions") == 1
        assert value(m, "signalroom_participants") == 2
        assert value(m, "signalroom_sockets") == 2
        assert value(m, "signalroom_participants_joined", "signalroom_participants_joined_total") == 2
        assert value(m, "signalroom_join_duration_seconds", "signalroom_join_duration_seconds_count") == 2
        assert value(m, "signalroom_join_duration_seconds", "signalroom_join_duration_seconds_sum") > 0
        assert value(m, "signalroom_signals_received", "signalroom_signals_received_total", origin="rpc") == 3
        assert value(m, "signalroom_signals_received", "signalroom_signals_received_total", origin="rest") == 1
        assert (
            value(
                m, "signalroom_signal_data_received_bytes", "signalroom_signal_data_received_bytes_total", origin="rpc"
            )
            == 3
        )
        notes = "signalroom_signal_notifications_sent"
        assert value(m, notes, f"{notes}_total") == 3 * 2 + 1
        # Written to the sockets: bob's participantJoined to alice and the 7 signal notifications;
        # the answers to both joins and to the 3 sendMessage at least (pings come on their own).
        frames = "signalroom_frames_sent"
        assert value(m, frames, f"{frames}_total", kind="notification") == 1 + 3 * 2 + 1
        assert value(m, frames, f"{frames}_total", kind="response") >= 2 + 3
        payload = "signalroom_frame_payload_sent_bytes"
        assert value(m, payload, f"{payload}_total", kind="notification") > 8 * 100
        assert value(m, "signalroom_send_queue_depth", "signalroom_send_queue_depth_count") == 2
        requests = "signalroom_http_requests"
        post_sessions = {"method": "POST", "route": "/openvidu/api/sessions", "status": "200"}
        assert value(m, requests, f"{requests}_total", **post_sessions) == 1
        connection = {"method": "POST", "route": "/openvidu/api/sessions/{id}/connection", "status": "200"}
        assert value(m, requests, f"{requests}_total", **connection) == 2
        assert value(m, "signalroom_broker_up", broker="local") == 1

        await bob.disconnect()
        await alice.disconnect()
        api_missing = signalroom.ServerApi(server.url, "wrong")
        with pytest.raises(signalroom.ServerApiError):
            await api_missing.list_sessions()
        await until(lambda: value(scrape(server.url), "signalroom_sessions") == 0)
        m = scrape(server.url)
        left = "signalroom_participants_left"
        assert value(m, left, f"{left}_total", reason="disconnect") == 2
        destroyed = "signalroom_sessions_destroyed"
        assert value(m, destroyed, f"{destroyed}_total", reason="disconnect") == 1
        assert value(m, "signalroom_participants") == 0
        assert value(m, requests, f"{requests}_total", method="GET", route="/openvidu/api/sessions", status="401") == 1
    finally:
        await alice.disconnect()
        await bob.disconnect()


async def test_slow_receivers_are_counted(start_server: StartServer) -> None:
    # A tiny send queue: a participant whose socket does not read is evicted as a slow receiver.
    with start_server("--send-queue", "4") as server:
        api = signalroom.ServerApi(server.url, server.secret)
        await api.create_session("slow")
        sender = await signalroom.connect((await api.create_connection("slow")).token)
        token = (await api.create_connection("slow")).token
        ws_url = token.split("?")[0] + "/openvidu"
        # A raw WebSocket that joins, then stops reading (max_queue=1: the client library does not
        # read ahead either, so the TCP buffers fill and the server's queue with them).
        async with websockets.connect(ws_url, max_queue=1, max_size=None) as raw:
            join = {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "joinRoom",
                "params": {"token": token, "session": "slow", "platform": "raw", "metadata": "", "secret": ""},
            }
            await raw.send(json.dumps(join))
            slow_id = json.loads(await raw.recv())["result"]["id"]
            big = "x" * 40000
            evicted = "signalroom_send_queue_overflows"
            for _ in range(1000):
                if value(scrape(server.url), evicted, f"{evicted}_total") >= 1:
                    break
                with contextlib.suppress(signalroom.RpcError):
                    for _ in range(20):
                        await sender.signal(big, type="flood", to=[slow_id])
            m = scrape(server.url)
            assert value(m, evicted, f"{evicted}_total") >= 1
            left = "signalroom_participants_left"
            await until(lambda: value(scrape(server.url), left, f"{left}_total", reason="networkDisconnect") == 1)
        await sender.disconnect()


# -- the rest of this file's tests -----------------------------------------------------------------
# -- webhooks ----------------------------------------------------------------------------------


@dataclass
class Receiver:
    """A real HTTP server taking webhook posts: records each (headers, JSON body)."""

    url: str = ""
    posts: list[tuple[dict[str, str], dict[str, Any]]] = field(default_factory=list)
    # Statuses to answer the first posts with (then 200).
    statuses: list[int] = field(default_factory=list)
    # While set, posts are held (a receiver that hangs).
    hold: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    attempts: int = 0

    def events(self, name: str) -> list[dict[str, Any]]:
        return [body for _, body in self.posts if body.get("event") == name]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    got = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            got.attempts += 1
            if got.hold.is_set():
                got.release.wait(TIMEOUT)
            status = got.statuses.pop(0) if got.statuses else 200
            if status == 200:
                got.posts.append(({k.lower(): v for k, v in self.headers.items()}, json.loads(body)))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            """Quiet."""

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    got.url = f"http://127.0.0.1:{httpd.server_address[1]}/hook"
    yield got
    got.release.set()
    httpd.shutdown()
    httpd.server_close()
    thread.join()


# The fields of each event, as OpenVidu 2.32's call-detail records have them
# (io.openvidu.server.cdr: CDREvent, CDREventEnd, CDREventSession, CDREventParticipant, CDREventSignal)
# plus the webhook's "event".
BASE = {"event", "sessionId", "uniqueSessionId", "timestamp"}
END = {"startTime", "duration", "reason"}
PARTICIPANT = {"participantId", "connectionId", "location", "ip", "platform", "clientData", "serverData"}
OPENVIDU_FIELDS = {
    "sessionCreated": BASE,
    "sessionDestroyed": BASE | END,
    "participantJoined": BASE | PARTICIPANT,
    "participantLeft": BASE | END | PARTICIPANT,
    "signalSent": BASE | {"from", "to", "type", "data"},
}
ALL_EVENTS = json.dumps(list(OPENVIDU_FIELDS))


async def test_webhook_events_have_openvidus_names_and_shapes(start_server: StartServer, receiver: Receiver) -> None:
    headers = json.dumps(["Authorization: Basic d2ViaG9vaw==", "X-Origin: signalroom"])
    with start_server(
        "--webhook", receiver.url, "--webhook-headers", headers, "--webhook-events", ALL_EVENTS
    ) as server:
        api = signalroom.ServerApi(server.url, server.secret)
        created = await api.create_session("hooked")
        conn = await api.create_connection("hooked", data="server side")
        alice = await signalroom.connect(conn.token, data="alice")
        await alice.signal("hello", type="chat")
        await api.signal("hooked", "from the server", type="note", to=[alice.connection_id])
        await alice.disconnect()
        await until(lambda: len(receiver.events("sessionDestroyed")) == 1)

    names = [body["event"] for _, body in receiver.posts]
    assert names == [
        "sessionCreated",
        "participantJoined",
        "signalSent",
        "signalSent",
        "participantLeft",
        "sessionDestroyed",
    ]
    for head, body in receiver.posts:
        assert set(body) == OPENVIDU_FIELDS[body["event"]], body
        assert head["content-type"] == "application/json"
        assert head["authorization"] == "Basic d2ViaG9vaw=="
        assert head["x-origin"] == "signalroom"
        assert body["sessionId"] == "hooked"
        assert body["uniqueSessionId"] == f"hooked_{created.created_at}"
    [session_created] = receiver.events("sessionCreated")
    assert session_created["timestamp"] == created.created_at
    [joined] = receiver.events("participantJoined")
    assert joined["connectionId"] == joined["participantId"] == alice.connection_id
    assert (joined["clientData"], joined["serverData"], joined["ip"]) == ("alice", "server side", "127.0.0.1")
    assert joined["location"] == "unknown"
    by_rpc, by_rest = receiver.events("signalSent")
    assert by_rpc | {"timestamp": 0} == {
        "event": "signalSent",
        "sessionId": "hooked",
        "uniqueSessionId": f"hooked_{created.created_at}",
        "timestamp": 0,
        "from": alice.connection_id,
        "to": [alice.connection_id],
        "type": "chat",
        "data": "hello",
    }
    assert (by_rest["from"], by_rest["to"], by_rest["type"], by_rest["data"]) == (
        None,
        [alice.connection_id],
        "note",
        "from the server",
    )
    [left] = receiver.events("participantLeft")
    assert left["reason"] == "disconnect"
    assert left["startTime"] == joined["timestamp"]
    assert left["duration"] == (left["timestamp"] - left["startTime"]) // 1000
    [destroyed] = receiver.events("sessionDestroyed")
    assert destroyed["reason"] == "lastParticipantLeft"
    assert destroyed["startTime"] == created.created_at


async def test_webhook_takes_openvidus_environment_and_default_events(
    start_server: StartServer, receiver: Receiver
) -> None:
    env = {
        "OPENVIDU_WEBHOOK": "true",
        "OPENVIDU_WEBHOOK_ENDPOINT": receiver.url,
        "OPENVIDU_WEBHOOK_HEADERS": '["X-Env: yes"]',
    }
    with start_server(env=env) as server:
        config = server.rest_ok("GET", "/config").json()
        assert (config["OPENVIDU_WEBHOOK"], config["OPENVIDU_WEBHOOK_ENDPOINT"]) == (True, receiver.url)
        assert "signalSent" not in config["OPENVIDU_WEBHOOK_EVENTS"]
        assert "OPENVIDU_WEBHOOK_HEADERS" not in config
        api = signalroom.ServerApi(server.url, server.secret)
        await api.create_session("env")
        alice = await signalroom.connect((await api.create_connection("env")).token)
        await alice.signal("not posted: signalSent is not among OpenVidu's default events")
        await alice.disconnect()
        await until(lambda: len(receiver.events("sessionDestroyed")) == 1)
    names = [body["event"] for _, body in receiver.posts]
    assert names == ["sessionCreated", "participantJoined", "participantLeft", "sessionDestroyed"]
    assert all(head["x-env"] == "yes" for head, _ in receiver.posts)

    # OpenVidu's switch off: nothing is posted even with an endpoint.
    receiver.posts.clear()
    with start_server(env={**env, "OPENVIDU_WEBHOOK": "false"}) as server:
        await signalroom.ServerApi(server.url, server.secret).create_session("off")
        await asyncio.sleep(0.5)
    assert receiver.posts == []


def test_webhook_settings_are_checked_at_start(signalroom_binary: Path) -> None:
    for args, message in [
        (["--webhook-events", '["sessionMade"]'], "not an OpenVidu event name"),
        (["--webhook-headers", "Authorization: x"], "JSON array"),
        (["--webhook", "ftp://x/"], "not http:// or https://"),
    ]:
        run = subprocess.run(
            [str(signalroom_binary), "serve", "--listen", ":0", *args],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
        assert run.returncode == 2, run
        assert message in run.stderr
    run = subprocess.run(
        [str(signalroom_binary), "serve", "--listen", ":0"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
        env={**os.environ, "OPENVIDU_WEBHOOK": "true"},
    )
    assert run.returncode == 2 and "no endpoint" in run.stderr, run


async def test_webhook_retries_then_drops_and_counts(start_server: StartServer, receiver: Receiver) -> None:
    # Two failures, then success: delivered on the third attempt.
    receiver.statuses = [500, 503]
    with start_server("--webhook", receiver.url) as server:
        api = signalroom.ServerApi(server.url, server.secret)
        await api.create_session("retried")
        await until(lambda: len(receiver.events("sessionCreated")) == 1)
        assert receiver.attempts == 3
        m = scrape(server.url)
        assert value(m, "signalroom_webhook_attempts_failed", "signalroom_webhook_attempts_failed_total") == 2
        assert value(m, "signalroom_webhook_events_delivered", "signalroom_webhook_events_delivered_total") == 1

    # A receiver that fails every time: the event is dropped after 5 attempts, and counted.
    receiver.statuses = [500] * 5
    receiver.attempts = 0
    with start_server("--webhook", receiver.url) as server:
        api = signalroom.ServerApi(server.url, server.secret)
        await api.create_session("dropped")
        dropped = "signalroom_webhook_events_dropped"
        await until(
            lambda: value(scrape(server.url), dropped, f"{dropped}_total", reason="retries_exhausted") == 1,
            timeout=15,
        )
        assert receiver.attempts == 5
        assert "dropped after 5 attempts" in server.stderr_tail(200)


async def test_webhook_queue_is_bounded(start_server: StartServer, receiver: Receiver) -> None:
    # The receiver hangs: the first post waits, 1,024 more queue, the rest are dropped at once
    # (the server goes on answering).
    receiver.hold.set()
    with start_server("--webhook", receiver.url, "--webhook-events", '["sessionCreated"]') as server:
        api = signalroom.ServerApi(server.url, server.secret)
        started = time.monotonic()
        for n in range(1100):
            await api.create_session(f"s{n}")
        assert time.monotonic() - started < 30
        dropped = "signalroom_webhook_events_dropped"
        await until(lambda: value(scrape(server.url), dropped, f"{dropped}_total", reason="queue_full") >= 1100 - 1025)
        assert "events are waiting already" in server.stderr_tail(400)
        receiver.release.set()


# -- CORS --------------------------------------------------------------------------------------


def test_cors_allows_any_origin_without_credentials(server_process: SignalroomServer) -> None:
    url = f"{server_process.url}/openvidu/api/sessions"
    origin = {"Origin": "http://another-origin.example"}
    preflight = {
        **origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type",
    }
    status, headers, _ = http(url, "OPTIONS", preflight)
    assert status == 200
    assert headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in headers
    assert "POST" in headers["access-control-allow-methods"]
    assert {"authorization", "content-type"} <= set(headers["access-control-allow-headers"].lower().split(","))
    status, headers, _ = http(url, "GET", origin)  # no secret: 401, still readable by the page
    assert status == 401
    assert headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in headers


# -- the admin commands ------------------------------------------------------------------------


def admin(
    binary: Path, server: SignalroomServer, *args: str, secret: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``signalroom ARGS --url URL`` with the secret in OPENVIDU_SECRET."""
    env = {**os.environ, "OPENVIDU_SECRET": server.secret if secret is None else secret}
    return subprocess.run(
        [str(binary), *args, "--url", server.url],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
        env=env,
    )


async def test_admin_commands_against_a_running_server(
    signalroom_binary: Path, server_process: SignalroomServer
) -> None:
    server = server_process
    made = admin(signalroom_binary, server, "token", "ops", "--role", "moderator", "--data", "from-cli", "--json")
    assert made.returncode == 0, made.stderr
    token = json.loads(made.stdout)
    assert token["role"] == "MODERATOR" and token["session"] == "ops"
    alice = await signalroom.connect(token["token"], data="alice")
    try:
        assert alice.connection_id == token["connection"]
        plain = admin(signalroom_binary, server, "token", "ops")  # the session exists: one more token
        assert plain.returncode == 0 and plain.stdout.strip().startswith("ws://"), plain

        listed = admin(signalroom_binary, server, "sessions", "--json")
        [session] = json.loads(listed.stdout)
        assert session["id"] == "ops"
        active = [c["connectionId"] for c in session["connections"]["content"] if c["status"] == "active"]
        assert active == [alice.connection_id]
        table = admin(signalroom_binary, server, "sessions").stdout.splitlines()
        assert table[0].split()[:5] == ["SESSION", "CREATED", "CONNECTION", "STATUS", "ROLE"]
        [row] = [line for line in table[1:] if alice.connection_id in line]
        # CREATED in local time (as Python's, in the same environment); --json keeps the number.
        created = datetime.datetime.fromtimestamp(session["createdAt"] / 1000).strftime("%Y-%m-%d %H:%M:%S")
        assert row.split()[:6] == ["ops", *created.split(), alice.connection_id, "active", "MODERATOR"]
        assert row.split()[-2:] == ["alice", "from-cli"]

        got = alice.wait_for("signal:chat")
        sent = admin(signalroom_binary, server, "signal", "ops", "hello from ops", "--type", "chat")
        assert sent.returncode == 0, sent.stderr
        event = await got
        assert (event.data, event.from_) == ("hello from ops", None)
        targeted = alice.wait_for("signal:note")
        assert (
            admin(
                signalroom_binary, server, "signal", "ops", "to you", "--type", "note", "--to", alice.connection_id
            ).returncode
            == 0
        )
        assert (await targeted).data == "to you"

        refused = admin(signalroom_binary, server, "sessions", secret="wrong")
        assert refused.returncode == 1 and "401" in refused.stderr, refused
        missing = admin(signalroom_binary, server, "kick", "ops", "con_nobody")
        assert missing.returncode == 1 and "404" in missing.stderr, missing

        gone = alice.wait_for("sessionDisconnected")
        kicked = admin(signalroom_binary, server, "kick", "ops", alice.connection_id, "--json")
        assert kicked.returncode == 0 and json.loads(kicked.stdout)["kicked"] is True
        assert (await gone).reason == "forceDisconnectByServer"
        # Its last participant gone, the session closed.
        assert json.loads(admin(signalroom_binary, server, "sessions", "--json").stdout) == []
        assert admin(signalroom_binary, server, "sessions").stdout.strip() == "no sessions"
    finally:
        await alice.disconnect()


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_admin_commands_say_what_to_do_when_refused(signalroom_binary: Path, server_process: SignalroomServer) -> None:
    server = server_process
    expected = [
        (["sessions"], "wrong", "server API 401", "wrong secret: pass the server's with --secret or OPENVIDU_SECRET"),
        (["token", "empty", "--json"], None, "", ""),  # a session nobody has joined
        (["kick", "empty", "con_nobody"], None, "server API 404", "no such session or connection"),
        (
            ["signal", "empty", "anyone there?"],
            None,
            "server API 406",
            "a recipient is not in the session, or nobody has joined it yet",
        ),
    ]
    for args, secret, error, hint in expected:
        run = admin(signalroom_binary, server, *args, secret=secret)
        if not error:
            assert run.returncode == 0, run.stderr
            continue
        assert run.returncode == 1, run
        assert run.stderr.startswith(f"signalroom: {error}") and run.stderr.rstrip().endswith(hint), run.stderr
    # Nothing listens there: the command says so, and how to point it elsewhere.
    down = subprocess.run(
        [str(signalroom_binary), "sessions", "--url", f"http://127.0.0.1:{free_port()}"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert down.returncode == 1
    assert "Connection refused" in down.stderr, down.stderr
    assert "is the server running? pass --url" in down.stderr, down.stderr


# -- logs and the environment ------------------------------------------------------------------


async def test_json_logs_and_no_colours_off_a_terminal(start_server: StartServer) -> None:
    with start_server(env={"SIGNALROOM_LOG_FORMAT": "json", "RUST_LOG": "info"}) as server:
        await signalroom.ServerApi(server.url, server.secret).create_session("logged")
        await until(lambda: "session created" in server.stderr_tail())
        lines = [line for line in server.stderr_tail(200).splitlines() if line.startswith("{")]
        records = [json.loads(line) for line in lines]
        assert any(r["fields"]["message"] == "session created" and r["level"] == "INFO" for r in records), lines
    with start_server("--log-format", "pretty") as server:
        await signalroom.ServerApi(server.url, server.secret).create_session("logged")
        await until(lambda: "session created" in server.stderr_tail())
        assert "\x1b[" not in server.stderr_tail(200)


def test_every_serve_flag_has_an_environment_variable_in_the_servers_table(signalroom_binary: Path) -> None:
    help_text = subprocess.run(
        [str(signalroom_binary), "serve", "--help"], capture_output=True, text=True, timeout=TIMEOUT, check=True
    ).stdout
    # One block per option: its flag, then its help up to the next option.
    blocks = re.split(r"\n(?=[ ]{2,6}(?:-\w, )?--[a-z])", help_text)[1:]
    envs = {re.findall(r"--[a-z][a-z-]+", block)[0]: re.search(r"\[env: (\w+)", block) for block in blocks}
    del envs["--help"]
    assert len(envs) >= 20
    page = (Path(__file__).resolve().parent.parent / "docs" / "server" / "index.md").read_text()
    table = page[page.index("| Flag | Environment variable |") :]
    table = table[: table.index("\n\n")]
    rows = {flag: row for row in table.splitlines()[2:] for flag in re.findall(r"--[a-z-]+", row.split("|")[1])}
    for flag, env in envs.items():
        assert env, f"{flag} has no environment variable"
        assert flag in rows, f"{flag} missing from the table of docs/server/index.md"
        assert f"`{env.group(1)}`" in rows[flag], f"{flag}: {env.group(1)} not in its row of docs/server/index.md"


def test_flags_are_read_from_the_environment(signalroom_binary: Path) -> None:
    run = subprocess.run(
        [str(signalroom_binary), "serve"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
        env={**os.environ, "SIGNALROOM_LISTEN": "not-an-address", "SIGNALROOM_SEND_QUEUE": "0"},
    )
    assert run.returncode == 2
    assert "not-an-address" in run.stderr or "send-queue" in run.stderr


# -- development TLS ---------------------------------------------------------------------------


async def test_tls_self_signed_serves_https_and_wss_with_the_printed_certificate(start_server: StartServer) -> None:
    with start_server("--tls-self-signed") as server:
        assert server.url.startswith("https://127.0.0.1:")
        printed = re.search(r"SHA-256 fingerprint ([0-9A-F:]{95})", server.stderr_tail())
        assert printed, server.stderr_tail()
        host, port = server.url.removeprefix("https://").rsplit(":", 1)
        insecure = ssl.create_default_context()
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE
        der = ssl.get_server_certificate((host, int(port)))
        served = hashlib.sha256(ssl.PEM_cert_to_DER_cert(der)).hexdigest().upper()
        assert printed.group(1).replace(":", "") == served

        # The certificate verifies for 127.0.0.1 once trusted (what a browser does after the warning).
        def public_url() -> str:
            trusting = ssl.create_default_context(cadata=der)
            request = urllib.request.Request(f"{server.url}/openvidu/api/config/openvidu-publicurl")
            with urllib.request.urlopen(request, context=trusting, timeout=TIMEOUT) as response:
                return str(response.read().decode())

        assert (await asyncio.to_thread(public_url)).startswith("https://127.0.0.1:")

        api = signalroom.ServerApi(server.url, server.secret, accept_invalid_certs=True)
        await api.create_session("secure")
        conn = await api.create_connection("secure")
        assert conn.token.startswith("wss://127.0.0.1:")
        async with await signalroom.connect(conn.token, accept_invalid_certs=True) as joined:
            echo = joined.wait_for("signal")
            await joined.signal("over wss")
            assert (await echo).data == "over wss"


async def test_tls_errors_name_the_certificate_and_the_fix(signalroom_binary: Path, start_server: StartServer) -> None:
    with start_server("--tls-self-signed") as server:
        # The command line: the certificate, and --insecure.
        refused = admin(signalroom_binary, server, "sessions")
        assert refused.returncode == 1
        assert "invalid peer certificate: UnknownIssuer" in refused.stderr, refused.stderr
        assert "not trusted" in refused.stderr and "pass --insecure" in refused.stderr, refused.stderr
        assert "fingerprint" in refused.stderr
        assert "is the server running" not in refused.stderr
        assert admin(signalroom_binary, server, "sessions", "--insecure").returncode == 0

        # Python's REST client: the certificate and accept_invalid_certs=True, not "is it running?".
        with pytest.raises(signalroom.ServerApiError) as api_error:
            await signalroom.ServerApi(server.url, server.secret).list_sessions()
        text = str(api_error.value)
        assert "UnknownIssuer" in text and "accept_invalid_certs=True" in text, text
        assert "is the server running" not in text

        # Python's connect(): the same.
        api = signalroom.ServerApi(server.url, server.secret, accept_invalid_certs=True)
        await api.create_session("secure")
        token = (await api.create_connection("secure")).token
        with pytest.raises(signalroom.ConnectionLostError) as connect_error:
            await signalroom.connect(token)
        text = str(connect_error.value)
        assert "UnknownIssuer" in text and "accept_invalid_certs=True" in text and "fingerprint" in text, text


def test_signalroom_drain_drains_a_node_with_a_broker_and_says_why_not_otherwise(
    signalroom_binary: Path,
    server_process: SignalroomServer,
    start_server: StartServer,
    signalroom_cluster: SignalroomCluster,
) -> None:
    refused = admin(signalroom_binary, server_process, "drain")
    assert refused.returncode == 1, refused
    assert "nowhere to drain" in refused.stderr and "stop it instead" in refused.stderr, refused.stderr
    with start_server("--broker", signalroom_cluster.broker, "--drain-window-secs", "0") as node:
        ready = urllib.request.urlopen(f"{node.url}/health/ready", timeout=TIMEOUT)
        assert ready.status == 200
        drained = admin(signalroom_binary, node, "drain")
        assert drained.returncode == 0, drained.stderr
        assert drained.stdout.startswith("draining"), drained.stdout
        # It exits by itself once drained (nothing to wait for here).
        assert node.process.wait(TIMEOUT) == 0

"""Every async call of the package is a coroutine: asyncio.run, create_task and ensure_future take
it as they take an ``async def`` call."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

import signalroom

API_CALLS: list[tuple[str, Callable[[signalroom.ServerApi], Coroutine[Any, Any, object]]]] = [
    ("create_session", lambda api: api.create_session("web")),
    ("get_session", lambda api: api.get_session("web")),
    ("list_sessions", lambda api: api.list_sessions()),
    ("create_connection", lambda api: api.create_connection("web")),
    ("list_connections", lambda api: api.list_connections("web")),
]


@pytest.fixture
def server() -> Any:
    with signalroom.Server(secret="co-secret") as server:
        yield server


def test_asyncio_run_takes_every_server_api_call(server: signalroom.Server) -> None:
    api = signalroom.ServerApi(server.url, "co-secret")
    for name, call in API_CALLS:
        coroutine = call(api)
        assert inspect.iscoroutine(coroutine), name
        asyncio.run(coroutine)  # no "no running event loop": the call waits for the loop
    conn = asyncio.run(api.create_connection("web"))
    asyncio.run(api.get_connection("web", conn.connection_id))
    asyncio.run(api.delete_connection("web", conn.connection_id))
    asyncio.run(api.close_session("web"))
    assert asyncio.run(api.list_sessions()) == []


def test_asyncio_run_takes_connect_and_create_task_and_ensure_future_take_everything(
    server: signalroom.Server,
) -> None:
    api = server.api()
    asyncio.run(api.create_session("web"))

    token = asyncio.run(api.create_connection("web")).token
    with pytest.warns(ResourceWarning, match="still connected when its event loop shut down"):
        session = asyncio.run(signalroom.connect(token))  # left connected: it leaves as the loop closes
    assert isinstance(session, signalroom.Session)
    # The server saw it leave: the session, empty once it had been joined, is gone (as OpenVidu does).
    deadline = time.monotonic() + 5
    while asyncio.run(api.list_sessions()) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert asyncio.run(api.list_sessions()) == []
    asyncio.run(api.create_session("web"))

    async def main() -> None:
        tasks: list[asyncio.Future[Any]] = [
            asyncio.create_task(api.list_sessions()),
            asyncio.ensure_future(api.create_connection("web")),
            asyncio.create_task(signalroom.connect((await api.create_connection("web")).token)),
        ]
        sessions, conn, joined = await asyncio.gather(*tasks)
        assert [s.session_id for s in sessions] == ["web"]
        joined2 = await asyncio.ensure_future(signalroom.connect(conn.token))
        assert isinstance(joined, signalroom.Session) and isinstance(joined2, signalroom.Session)
        for s in (joined, joined2):
            await s.disconnect()
        embedded = signalroom.Server()
        await asyncio.create_task(embedded.astart())
        assert embedded.running
        await asyncio.ensure_future(embedded.astop())
        assert not embedded.running

    asyncio.run(main())


def test_a_connect_coroutine_that_is_never_started_can_be_closed_quietly() -> None:
    coroutine = signalroom.connect("ws://127.0.0.1:1?sessionId=s&token=t")
    coroutine.close()  # nothing started, nothing to warn about


def test_connect_still_works_with_async_with(server: signalroom.Server) -> None:
    async def main() -> str:
        api = server.api()
        await api.create_session("web")
        async with signalroom.connect((await api.create_connection("web")).token) as session:
            return session.state

    assert asyncio.run(main()) == "connected"

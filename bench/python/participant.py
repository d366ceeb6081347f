"""A Python participant for scenario 5 of signalroom's benchmark (driven by ``loadgen``).

Joins a signalroom session with a token, prints ``ready``, then blocks (on purpose, event loop
included) until it reads ``go`` on stdin: the load generator sends its whole burst meanwhile, so
the participant starts with every signal waiting for it and what is measured is how fast it
handles them, not how fast they arrive. It counts the ``signal:bench`` signals with a plain
handler, and once it has ``--count`` of them (or ``--timeout`` passed) prints one JSON line:
``{"received": N, "seconds": S, "signals_per_s": R}``, the rate from the first signal to the last.

Two ways to be that participant, doing the same user-visible job:

* ``--mode signalroom``: the ``signalroom`` package (Rust client underneath): ``await
  signalroom.connect(token)`` and ``session.on("signal:bench", handler)`` with a plain function;
* ``--mode websockets``: pure Python: the ``websockets`` package speaking the same JSON-RPC
  (``joinRoom``), ``json.loads`` of every frame, and the same plain handler for ``sendMessage``
  notifications of type ``signal:bench``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

SIGNAL_TYPE = "signal:bench"


class Counter:
    """The plain handler both modes use: counts and timestamps what it is given."""

    def __init__(self, count: int, done: asyncio.Future[None]) -> None:
        self.count = count
        self.done = done
        self.received = 0
        self.first = 0.0
        self.last = 0.0

    def __call__(self, event: Any) -> None:
        now = time.perf_counter()
        if self.received == 0:
            self.first = now
        self.received += 1
        self.last = now
        if self.received >= self.count and not self.done.done():
            self.done.set_result(None)

    def result(self) -> dict[str, float]:
        seconds = self.last - self.first
        rate = (self.received - 1) / seconds if self.received > 1 and seconds > 0 else 0.0
        return {"received": self.received, "seconds": seconds, "signals_per_s": rate}


def hold_until_go() -> None:
    """Blocks the whole thread (so the event loop too) until the load generator says ``go``."""
    print("ready", flush=True)
    sys.stdin.readline()


async def wait(done: asyncio.Future[None], timeout: float) -> None:
    try:
        await asyncio.wait_for(asyncio.shield(done), timeout)
    except (asyncio.TimeoutError, TimeoutError):
        pass


async def run_signalroom(token: str, count: int, timeout: float) -> dict[str, float]:
    import signalroom

    counter = Counter(count, asyncio.get_running_loop().create_future())
    session = await signalroom.connect(token)
    session.on(SIGNAL_TYPE, counter)
    hold_until_go()
    await wait(counter.done, timeout)
    await session.disconnect()
    return counter.result()


async def join_with_websockets(token: str) -> Any:
    """A pure-Python participant's join: the ``websockets`` connection to the token's server, once
    its ``joinRoom`` was answered (the shape openvidu-browser sends)."""
    import websockets

    parts = urlsplit(token)
    session_id = parse_qs(parts.query)["sessionId"][0]
    url = f"{parts.scheme}://{parts.netloc}/openvidu?sessionId={session_id}"
    ws = await websockets.connect(url, max_size=None, compression=None)
    join = {
        "jsonrpc": "2.0",
        "method": "joinRoom",
        "id": 1,
        "params": {
            "token": token,
            "session": session_id,
            "platform": "Python websockets",
            "sdkVersion": "2.32.2",
            "metadata": "",
            "secret": "",
            "recorder": False,
            "stt": False,
        },
    }
    await ws.send(json.dumps(join))
    while True:
        answer = json.loads(await ws.recv())
        if answer.get("id") == 1:
            if "error" in answer:
                raise RuntimeError(f"joinRoom refused: {answer['error']}")
            return ws


async def run_websockets(token: str, count: int, timeout: float) -> dict[str, float]:
    counter = Counter(count, asyncio.get_running_loop().create_future())
    async with await join_with_websockets(token) as ws:
        hold_until_go()

        async def pump() -> None:
            async for frame in ws:
                message = json.loads(frame)
                if message.get("method") == "sendMessage":
                    params = message["params"]
                    if params.get("type") == SIGNAL_TYPE:
                        counter(params)

        reader = asyncio.ensure_future(pump())
        await wait(counter.done, timeout)
        reader.cancel()
    return counter.result()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=["signalroom", "websockets"], required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args()
    run = run_signalroom if args.mode == "signalroom" else run_websockets
    result = asyncio.run(run(args.token, args.count, args.timeout))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()

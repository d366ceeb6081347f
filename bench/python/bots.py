"""One Python process in many sessions, for scenario 13 of signalroom's benchmark (driven by
``loadgen``): a bot service.

Joins one session per token of ``--tokens`` (a file, one token a line), 50 joins at a time, and
answers every ``signal:bench`` signal with a ``signal:reply`` signal of the same data to its
sender only. Prints one JSON line once every session is joined:
``{"joined": N, "rss_base": B, "rss_joined": J}`` (bytes; ``rss_base`` after the imports, before
the first join), then obeys the load generator, one command a line on stdin:

* ``reset``: counts from now (handled signals, loop lag); prints ``{"ok": true}``;
* ``report``: prints ``{"handled": H, "seconds": S, "lag_max_ms": M, "lag_p99_ms": P,
  "lag_samples": K, "lag_cpu_max_ms": U, "gc_max_ms": G, "gc_collections": C, "rss": R}``
  for the time since the last ``reset``;
* ``quit``: leaves every session and exits.

The loop-lag probe sleeps 1 ms at a time and records how much later than asked it woke up: how
long the event loop was held by whatever ran before it (the package's batches of events, the
handlers, Python's cyclic garbage collector, which any allocation may start) or by the kernel
giving the core to another process (the load generator shares it). ``lag_cpu_max_ms`` is the most
CPU time the loop's thread used within one probe's wait (``time.thread_time``): how long work on
the loop held it, without the time the core was elsewhere. ``gc_max_ms`` is the longest
collection (``gc.callbacks``), part of that work.

Two ways to be that service, doing the same user-visible job:

* ``--mode signalroom``: the ``signalroom`` package: ``await signalroom.connect(token)`` per
  session and an ``async`` handler ``await session.reply(event, event.data, type="reply")``;
* ``--mode websockets``: pure Python: one ``websockets`` connection per session speaking the same
  JSON-RPC, ``json.loads`` of every frame, and for each signal a ``sendMessage`` request sent at
  once (its answer is not waited for: the least Python can do).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import time
from collections.abc import Awaitable
from typing import Any, Callable

from participant import join_with_websockets

SIGNAL_TYPE = "signal:bench"
JOIN_CONCURRENCY = 50
PROBE_S = 0.001


def rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


class Stats:
    def __init__(self) -> None:
        self._gc_started = 0.0
        self.reset()
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        now = time.perf_counter()
        if phase == "start":
            self._gc_started = now
            return
        took = now - self._gc_started
        self.gc_collections += 1
        self.gc_max = max(self.gc_max, took)

    def reset(self) -> None:
        self.handled = 0
        self.lags: list[float] = []
        self.lags_cpu: list[float] = []
        self.gc_collections = 0
        self.gc_max = 0.0
        self.since = time.perf_counter()

    def report(self) -> dict[str, Any]:
        lags = sorted(self.lags)
        p99 = lags[min(len(lags) - 1, int(len(lags) * 0.99))] if lags else 0.0
        return {
            "handled": self.handled,
            "seconds": time.perf_counter() - self.since,
            "lag_max_ms": (lags[-1] if lags else 0.0) * 1e3,
            "lag_p99_ms": p99 * 1e3,
            "lag_samples": len(lags),
            "lag_cpu_max_ms": max(self.lags_cpu, default=0.0) * 1e3,
            "gc_max_ms": self.gc_max * 1e3,
            "gc_collections": self.gc_collections,
            "rss": rss(),
        }


async def probe(stats: Stats) -> None:
    loop = asyncio.get_running_loop()
    while True:
        t, cpu = loop.time(), time.thread_time()
        await asyncio.sleep(PROBE_S)
        stats.lags.append(max(0.0, loop.time() - t - PROBE_S))
        stats.lags_cpu.append(time.thread_time() - cpu)


async def join_all(tokens: list[str], join: Callable[[str], Awaitable[Any]]) -> list[Any]:
    gate = asyncio.Semaphore(JOIN_CONCURRENCY)

    async def one(token: str) -> Any:
        async with gate:
            return await join(token)

    return list(await asyncio.gather(*(one(t) for t in tokens)))


async def run_signalroom(tokens: list[str], stats: Stats) -> tuple[list[Any], Callable[[], Awaitable[None]]]:
    import signalroom

    async def join(token: str) -> Any:
        session = await signalroom.connect(token)

        @session.on(SIGNAL_TYPE)
        async def answer(event: signalroom.SignalEvent) -> None:
            stats.handled += 1
            await session.reply(event, event.data, type="reply")

        return session

    sessions = await join_all(tokens, join)

    async def leave() -> None:
        await asyncio.gather(*(s.disconnect() for s in sessions), return_exceptions=True)

    return sessions, leave


async def run_websockets(tokens: list[str], stats: Stats) -> tuple[list[Any], Callable[[], Awaitable[None]]]:

    async def join(token: str) -> Any:
        ws = await join_with_websockets(token)

        async def pump() -> None:
            next_id = 2
            async for frame in ws:
                message = json.loads(frame)
                if message.get("method") == "sendMessage":
                    params = message["params"]
                    if params.get("type") == SIGNAL_TYPE:
                        stats.handled += 1
                        inner = {"to": [params["from"]], "data": params["data"], "type": "signal:reply"}
                        out = {
                            "jsonrpc": "2.0",
                            "method": "sendMessage",
                            "params": {"message": json.dumps(inner)},
                            "id": next_id,
                        }
                        next_id += 1
                        await ws.send(json.dumps(out))

        task = asyncio.ensure_future(pump())
        return ws, task

    joined = await join_all(tokens, join)

    async def leave() -> None:
        for _, task in joined:
            task.cancel()
        await asyncio.gather(*(ws.close() for ws, _ in joined), return_exceptions=True)

    return joined, leave


async def main_async(mode: str, tokens: list[str]) -> None:
    stats = Stats()
    loop = asyncio.get_running_loop()
    run = run_signalroom if mode == "signalroom" else run_websockets
    if mode == "signalroom":
        import signalroom  # noqa: F401 (imported before the base is taken)
    else:
        import websockets  # noqa: F401
    base = rss()
    _, leave = await run(tokens, stats)
    print(json.dumps({"joined": len(tokens), "rss_base": base, "rss_joined": rss()}), flush=True)
    prober = asyncio.ensure_future(probe(stats))
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = (await reader.readline()).decode().strip()
        if line == "reset":
            stats.reset()
            print(json.dumps({"ok": True}), flush=True)
        elif line == "report":
            print(json.dumps(stats.report()), flush=True)
        elif line in ("quit", ""):
            break
    prober.cancel()
    await leave()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=["signalroom", "websockets"], required=True)
    parser.add_argument("--tokens", required=True, help="a file of tokens, one a line")
    args = parser.parse_args()
    with open(args.tokens) as f:
        tokens = [t.strip() for t in f if t.strip()]
    asyncio.run(main_async(args.mode, tokens))


if __name__ == "__main__":
    main()

"""Scenario 11 of signalroom's benchmark (driven by ``loadgen``): requests and streams between two
Python participants of the ``signalroom`` package, against the same done by hand with signals.

Both participants join the session of a server the load generator started (``--url``,
``--secret``), in one process. Then, in alternating rounds (so that the machine's drift hits both
sides alike):

* **request/reply**: ``await alice.request(bob, "echo", payload)`` answered by
  ``@bob.handle("echo")``, one at a time; against **by hand**: alice waits for bob's answer with
  ``wait_for("signal:pong", predicate=...)`` after sending a ``ping`` signal carrying an id, which
  bob's handler answers with a ``pong`` signal to alice carrying the same id and the payload. Round
  trips/s and each round trip's latency (p50, p99).
* **streams**: ``alice.send_text(data)`` of ``--stream-bytes`` read whole by bob
  (``await stream.text()``), against the raw signal rate of the same bytes: alice sends them as
  signals as big as a frame allows (up to 32 in flight), bob's plain handler counts them. MB/s
  from the first byte sent to the last received.

Prints one JSON line with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from typing import Any

import signalroom

PAYLOAD = "x" * 64


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def requests_round(alice: signalroom.Session, bob: signalroom.Session, n: int) -> list[float]:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        reply = await alice.request(bob.connection, "echo", PAYLOAD, timeout=10.0)
        times.append(time.perf_counter() - start)
        assert reply == PAYLOAD
    return times


async def by_hand_round(alice: signalroom.Session, bob: signalroom.Session, n: int, first_id: int) -> list[float]:
    times = []
    for i in range(first_id, first_id + n):
        rid = str(i)
        start = time.perf_counter()
        pong = alice.wait_for("signal:pong", predicate=lambda e, rid=rid: e.data.startswith(rid + ":"), timeout=10.0)
        await alice.signal(f"{rid}:{PAYLOAD}", type="ping", to=[bob.connection])
        event = await pong
        times.append(time.perf_counter() - start)
        assert event.data.endswith(PAYLOAD)
    return times


async def stream_round(alice: signalroom.Session, bob: signalroom.Session, data: str) -> float:
    incoming = bob.next_stream("bench", timeout=30.0)
    start = time.perf_counter()
    sending = asyncio.ensure_future(alice.send_text(data, topic="bench", to=[bob.connection]))
    text = await (await incoming).text()
    seconds = time.perf_counter() - start
    await sending
    assert len(text) == len(data)
    return seconds


async def raw_round(alice: signalroom.Session, bob: signalroom.Session, data: str) -> float:
    # The largest data a signal of type "raw" to bob can carry in one frame (plain ASCII).
    piece = alice.max_frame_bytes - 200 - len(bob.connection_id)
    got = 0
    done = asyncio.get_running_loop().create_future()

    def count(event: signalroom.SignalEvent) -> None:
        nonlocal got
        got += len(event.data)
        if got >= len(data) and not done.done():
            done.set_result(None)

    bob.on("signal:raw", count)
    start = time.perf_counter()
    in_flight: list[Any] = []
    for at in range(0, len(data), piece):
        in_flight.append(asyncio.ensure_future(alice.signal(data[at : at + piece], type="raw", to=[bob.connection])))
        if len(in_flight) >= 32:
            await in_flight.pop(0)
    await asyncio.gather(*in_flight)
    await asyncio.wait_for(done, 60.0)
    seconds = time.perf_counter() - start
    bob.off("signal:raw", count)
    return seconds


async def main(url: str, secret: str, requests: int, rounds: int, stream_bytes: int) -> dict[str, Any]:
    api = signalroom.ServerApi(url, secret)
    await api.create_session("rpc")
    alice = await signalroom.connect((await api.create_connection("rpc")).token, data="alice")
    bob = await signalroom.connect((await api.create_connection("rpc")).token, data="bob")
    bob.handle("echo", lambda request: request.payload)

    @bob.on("signal:ping")
    async def pong(event: signalroom.SignalEvent) -> None:
        assert event.from_ is not None
        await bob.signal(event.data, type="pong", to=[event.from_])

    # Warm-up: both paths once.
    await requests_round(alice, bob, 50)
    await by_hand_round(alice, bob, 50, 0)
    per_round = max(1, requests // rounds)
    rpc: list[float] = []
    manual: list[float] = []
    rpc_s = manual_s = 0.0
    next_id = 1000
    for _ in range(rounds):
        start = time.perf_counter()
        rpc += await requests_round(alice, bob, per_round)
        rpc_s += time.perf_counter() - start
        start = time.perf_counter()
        manual += await by_hand_round(alice, bob, per_round, next_id)
        manual_s += time.perf_counter() - start
        next_id += per_round
    data = ("signalroom streams text of any size. " * (stream_bytes // 37 + 1))[:stream_bytes]
    stream_s = await stream_round(alice, bob, data)
    raw_s = await raw_round(alice, bob, data)
    await alice.disconnect()
    await bob.disconnect()
    rtt = {
        "round_trips": len(rpc),
        "round_trips_per_s": len(rpc) / rpc_s,
        "p50_us": statistics.median(rpc) * 1e6,
        "p99_us": percentile(rpc, 0.99) * 1e6,
    }
    hand = {
        "round_trips": len(manual),
        "round_trips_per_s": len(manual) / manual_s,
        "p50_us": statistics.median(manual) * 1e6,
        "p99_us": percentile(manual, 0.99) * 1e6,
    }
    return {
        "requests": rtt,
        "by_hand": hand,
        "rate_ratio": rtt["round_trips_per_s"] / hand["round_trips_per_s"],
        "p99_ratio": rtt["p99_us"] / hand["p99_us"],
        "stream_bytes": stream_bytes,
        "send_text_mb_per_s": stream_bytes / stream_s / 1e6,
        "raw_signals_mb_per_s": stream_bytes / raw_s / 1e6,
        "stream_ratio": raw_s / stream_s,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--secret", required=True)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--stream-bytes", type=int, default=50_000_000)
    args = parser.parse_args()
    result = asyncio.run(main(args.url, args.secret, args.requests, args.rounds, args.stream_bytes))
    print(json.dumps(result), flush=True)

"""How many signals per second one plain Python handler receives from a Rust sender in the same
session.

The server runs in this process (``signalroom.Server``); the sender is the Rust client in another
process (``crates/signalroom-py/examples/signal_sender.rs``), sending ``--count`` signals to the
receiver with up to 256 awaiting the server's answer. The receiver is one ``signalroom.Session``
with one plain handler that counts. The rate is taken between the first and the last signal
handled. Both in release builds, the package installed as users get it::

    python3 -m venv /tmp/perf && /tmp/perf/bin/pip install .
    cargo build --release -p signalroom-py --example signal_sender
    /tmp/perf/bin/python python/examples/handler_rate.py --count 200000 --runs 3

Seen on the 2-core development machine (2026-11-24, 200,000 signals of a few bytes): live, 155,000
to 225,000 signals/s, as fast as the sender got them through the server (the sender's own time is
printed; batches stay under 100 signals: Python waits for work); ``--queued``, 1.7 million
signals/s (batches of 4,096, the most one crossing carries).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from pathlib import Path

import signalroom

REPO = Path(__file__).resolve().parents[2]
SENDER = REPO / "target" / "release" / "examples" / "signal_sender"


async def one_run(count: int, sender: Path, window: int, queued: bool) -> tuple[float, int, str]:
    """Signals per second into the handler, the batches they came in, and what the sender said.

    ``queued``: the event loop is kept busy until the sender is done, so every signal is already
    queued in Rust when the loop resumes: the rate is then Python's alone (crossing, dispatch,
    handler), without the sender and the server competing for the two cores.
    """
    async with signalroom.Server(secret="perf") as server:
        api = server.api()
        await api.create_session("perf")
        receiver = await signalroom.connect((await api.create_connection("perf")).token)
        sender_token = (await api.create_connection("perf")).token
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        first = 0.0
        received = 0

        def handler(event: signalroom.SignalEvent) -> None:  # the plain handler being measured
            nonlocal received, first
            received += 1
            if received == 1:
                first = time.perf_counter()
            elif received == count:
                done.set_result(time.perf_counter())

        receiver.on("signal:perf", handler)
        batches_before = receiver._batches
        args = [str(sender), sender_token, str(count), receiver.connection_id, str(window)]
        if queued:
            # Blocks the event loop on purpose, while Rust queues every signal.
            said = subprocess.run(args, check=True, capture_output=True, text=True).stdout  # noqa: ASYNC221
            first = time.perf_counter()
            received = 1  # timed from here: count - 1 signals, as in the other mode
            last = await asyncio.wait_for(done, 600)
        else:
            process = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.PIPE)
            last = await asyncio.wait_for(done, 600)
            out, _ = await process.communicate()
            if process.returncode != 0:
                raise SystemExit(f"sender failed ({process.returncode}): {out.decode()}")
            said = out.decode()
        batches = receiver._batches - batches_before
        await receiver.disconnect()
        return (count - 1) / (last - first), batches, said.strip()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=200_000, help="signals per run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--window", type=int, default=256, help="signals the sender keeps awaiting an answer")
    parser.add_argument("--queued", action="store_true", help="let every signal queue up first: Python's own rate")
    parser.add_argument("--sender", type=Path, default=SENDER, help="the signal_sender example binary")
    args = parser.parse_args()
    if not args.sender.is_file():
        raise SystemExit(f"{args.sender} not found: cargo build --release -p signalroom-py --example signal_sender")
    if signalroom._native._debug_build:
        print("warning: signalroom._native is a debug build; use maturin develop --release", file=sys.stderr)
    rates = []
    for run in range(1, args.runs + 1):
        rate, batches, said = await one_run(args.count, args.sender, args.window, args.queued)
        rates.append(rate)
        print(
            f"run {run}: {rate:,.0f} signals/s into one plain handler; {batches} batches "
            f"({args.count / batches:,.0f} signals per batch); sender: {said}"
        )
    print(f"median {statistics.median(rates):,.0f} signals/s, best {max(rates):,.0f} ({args.count:,} signals per run)")


if __name__ == "__main__":
    asyncio.run(main())

"""Medians of the metrics on/off runs in this folder: fan-out deliveries/s ÷ raw, and the server's
CPU per delivery (server_cpu ÷ deliveries/s). Run: python3 bench/results/metrics/summarise.py [after|before]"""

import json
import statistics
import sys
from pathlib import Path

folder = Path(__file__).parent / (sys.argv[1] if len(sys.argv) > 1 else "after")
for n in (10, 100, 1000):
    for kind in ("on", "off"):
        ratios, ns = [], []
        for path in sorted(folder.glob(f"*-metrics-{kind}.json")):
            servers = json.loads(path.read_text())["servers"]
            ours, raw = servers["signalroom"][f"fanout_{n}"], servers["raw"][f"fanout_{n}"]
            ratios.append(ours["deliveries_per_s"] / raw["deliveries_per_s"])
            ns.append(ours["server_cpu"] / ours["deliveries_per_s"] * 1e9)
        print(
            f"N = {n:>4}, metrics {kind:>3}: {len(ns)} runs, deliveries/s ÷ raw median {statistics.median(ratios):.2f} "
            f"({min(ratios):.2f} to {max(ratios):.2f}), server CPU per delivery median {statistics.median(ns):.0f} ns "
            f"({min(ns):.0f} to {max(ns):.0f})"
        )

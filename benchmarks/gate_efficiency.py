"""The adaptive gate against a server that never queues (issue #33, item 1b): is it as
efficient as a fixed ``--concurrency``?

``codeclm bench``'s workload (a real ``codeclm run`` in a child process; the mock in its
own process with a fixed latency and a fixed number of slots), 40 seeds and
``--instructions 400`` at 500 ms a call and 64 slots, ``--concurrency 64``: adaptive, then
``--no-adaptive``, side by side for each of ``--repeat`` run seeds. Efficiency is the
server's bound (calls × latency / slots) over the process's wall; the steering figure is
the adaptive run within 0.03 of the fixed one, every time.

    .venv/bin/python -m benchmarks.gate_efficiency --repeat 5
"""

from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import replace
from pathlib import Path

from codeclm.bench.throughput import Workload, measure


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instructions", type=int, default=400)
    parser.add_argument("--latency", type=float, default=0.5)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    base = Workload(
        instructions=args.instructions, latency=args.latency, slots=64, concurrency=64,
        seeds=40, metadata=40,
    )  # fmt: skip
    gaps = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(1, args.repeat + 1):
            row = []
            for adaptive in (True, False):
                workload = replace(base, adaptive=adaptive, seed=seed)
                result = measure(workload, Path(tmp) / f"{seed}-{adaptive}")
                record = json.loads((Path(tmp) / f"{seed}-{adaptive}/run/run.json").read_text())
                (gate,) = record["endpoints"].values()
                row.append((result.efficiency, gate["cuts"], gate["lowest"], gate["limit"]))
            (on, cuts, lowest, ended), (off, *_) = row
            gaps.append(off - on)
            print(
                f"seed {seed}: efficiency adaptive {on:.3f}  --no-adaptive {off:.3f}  "
                f"gap {off - on:+.3f}  (adaptive: lowest {lowest}, ended {ended}, cuts "
                f"{cuts or 'none'})",
                flush=True,
            )
    within = sum(gap <= 0.03 for gap in gaps)
    print(f"within 0.03 of --no-adaptive: {within} of {len(gaps)}")


if __name__ == "__main__":
    main()

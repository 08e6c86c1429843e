"""How codeclm paces itself against servers that set their own limits (issue #24).

    .venv/bin/python -m benchmarks.server_limits [--instructions 300] [--latency 0.1]

On 30 Self-Instruct seeds (beside the project in ../shared), ``--concurrency 64``, against
the loopback mock in two guises, each with adaptive concurrency on and then off:

- ``hidden limit 8``: it serves at most 8 calls at once and answers 429 (``Retry-After:
  1``) above that, as gateways with a per-key limit do. Printed: the share of calls
  answered 429, and the wall over the server's bound (calls served × latency / 8).
- ``knee at 8``: it takes every call, but past 8 in flight each takes longer in
  proportion, as servers that queue do (vLLM, llama.cpp): more in flight buys no
  throughput, only latency. Printed: the mean calls in flight at the server (the limit
  should settle near the knee), the wall over the bound, and the mean latency.

Each endpoint's limit as ``run.json`` records it (now, lowest, highest, cuts) is printed too.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import codeclm
from codeclm.bench.mock_llm import MockLLM
from tests.conftest import mock_roles, write_seeds

PUBLIC_SEEDS = Path(__file__).resolve().parents[1].parent / "shared/benchmarks/self_instruct.jsonl"
LIMIT = 8

SERVERS: dict[str, Callable[[float], MockLLM]] = {
    "hidden limit 8": lambda latency: MockLLM(
        record=False, latency=latency, hidden_limit=LIMIT, hidden_retry_after=1.0
    ),
    "knee at 8": lambda latency: MockLLM(record=False, latency=latency, load_knee=LIMIT),
}


def _seeds(folder: Path) -> Path:
    if PUBLIC_SEEDS.is_file():
        lines = PUBLIC_SEEDS.read_text().splitlines()[:30]
        texts = [json.loads(line)["instruction"] for line in lines]
    else:  # a clone that is not beside ../shared
        texts = [f"Seed task {i}: explain topic {i * 7} to a beginner." for i in range(30)]
    return write_seeds(folder / "seeds.jsonl", texts)


def measure(
    server: str, adaptive: bool, args: argparse.Namespace, folder: Path, concurrency: int = 64
) -> str:
    """One run; its figures in a line."""
    mock = SERVERS[server](args.latency).start()
    try:
        seeds = _seeds(folder)
        started = time.monotonic()
        result = codeclm.run(
            seeds,
            out=folder / "run",
            instructions=args.instructions,
            concurrency=concurrency,
            adaptive=adaptive,
            **mock_roles(mock),
        )
        wall = time.monotonic() - started
    finally:
        mock.stop()
    served = mock.statuses[200] + mock.statuses[503]
    asked = sum(mock.statuses.values())
    bound = served * args.latency / LIMIT
    line = (
        f"{server:<15} --concurrency {concurrency:<2} adaptive {'on ' if adaptive else 'off'}  "
        f"calls {asked:>5,}  "
        f"429 share {mock.statuses[429] / asked:5.3f}  wall {wall:6.1f} s  "
        f"bound {bound:5.1f} s  wall/bound {wall / bound:5.2f}  "
        f"mean in flight {mock.busy_seconds / wall:5.1f}"
    )
    if server.startswith("knee"):
        line += f"  mean latency {mock.busy_seconds / served:5.3f} s"
    for name, stats in result.record.endpoints.items():
        line += (
            f"\n    {name}: limit {stats.limit} (lowest {stats.lowest}, highest "
            f"{stats.highest}), cuts {stats.cuts or 'none'}"
        )
    return line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instructions", type=int, default=300)
    parser.add_argument("--latency", type=float, default=0.1, help="seconds per call")
    parser.add_argument("--servers", nargs="+", choices=sorted(SERVERS), default=list(SERVERS))
    parser.add_argument("--off", action="store_true", help="also with adaptive concurrency off")
    parser.add_argument(
        "--known",
        action="store_true",
        help="also told the limit: --concurrency 8, adaptive off (what a client that knew it "
        "would do)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for server in args.servers:
            runs = [(True, 64)] + [(False, 64)] * args.off + [(False, LIMIT)] * args.known
            for adaptive, concurrency in runs:
                where = Path(tmp) / f"{server}-{adaptive}-{concurrency}".replace(" ", "_")
                where.mkdir()
                print(measure(server, adaptive, args, where, concurrency), flush=True)


if __name__ == "__main__":
    main()

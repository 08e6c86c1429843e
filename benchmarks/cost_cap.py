"""How much of ``--max-cost`` a run spends before it stops (issue #33, item 2): at least
90% of the cap, never more.

``codeclm run`` against the loopback mock (its own process, 20 ms a call, answers of about
``--answer-tokens`` tokens), priced as the tests price it (strong $2.50/$10 per million
input/output tokens, target $0.50/$1.50) with the default ``max_tokens`` 2048: one strong
request may cost about $0.021 at its bound. Each run with ``--max-cost C`` prints its stop
line, what it spent and the share of the cap.

    .venv/bin/python -m benchmarks.cost_cap
    .venv/bin/python -m benchmarks.cost_cap --cap 0.15 --repeat 5
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from codeclm.bench.throughput import Workload

PRICES = (
    "[strong.price]\ninput = 2.5\noutput = 10.0\n"
    "[target.price]\ninput = 0.5\noutput = 1.5\ncached_input = 0.25\n"
)


def one_run(workload: Workload, workdir: Path, cap: float, answer_tokens: int) -> None:
    """A capped run; its stop line, what it spent and the share of the cap."""
    command = [sys.executable, "-m", "codeclm.bench.mock_cli", "--latency", "0.02"]
    command += ["--slots", "64", "--answer-tokens", str(answer_tokens)]
    mock = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert mock.stdout is not None
    base_url = mock.stdout.readline().strip()
    try:
        argv = workload.run_argv(workdir, base_url)
        with (workdir / "bench.toml").open("a") as settings:
            settings.write(PRICES)
        env = {**os.environ, "OPENAI_API_KEY": "bench"}
        done = subprocess.run(
            [*argv, "--max-cost", str(cap), "--quiet"],
            env=env, capture_output=True, text=True, check=False,
        )  # fmt: skip
    finally:
        mock.terminate()
        mock.wait()
    spent = json.loads((workdir / "run" / "run.json").read_text())["cost"]["total"]
    print(f"exit {done.returncode}: {done.stderr.strip()}")
    print(f"  spent ${spent:.4f} of ${cap}: {spent / cap:.1%}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cap", type=float, default=0.15)
    parser.add_argument("--instructions", type=int, default=200)
    parser.add_argument("--answer-tokens", type=int, default=350)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(1, args.repeat + 1):
            workload = Workload(
                instructions=args.instructions, concurrency=8, seeds=10, metadata=10, seed=seed
            )
            one_run(workload, Path(tmp) / f"run{seed}", args.cap, args.answer_tokens)


if __name__ == "__main__":
    main()

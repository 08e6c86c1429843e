"""Random 429s and 503s (issue #33, item 1c): a provider's rate limit answers 429 whatever
the number in flight, and a busy one a few 503s. Does the pace hold?

The same ``codeclm run`` against the loopback mock (its own process, 50 ms a call) clean,
then answering 3% of requests 429 (``Retry-After`` as given) and 3% 503 at random; each
pair run ``--repeat`` times with different seeds. Prints each wall, their ratio, and where
the gate's limit ended (the steering figure: at most 1.3× the clean wall, and the limit
not down to 1).

    .venv/bin/python -m benchmarks.rate_limits
    .venv/bin/python -m benchmarks.rate_limits --instructions 100 --concurrency 16 --repeat 3
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from codeclm.bench.throughput import Workload


def _mock(rates: list[str]) -> tuple[subprocess.Popen[str], str]:
    command = [sys.executable, "-m", "codeclm.bench.mock_cli", "--latency", "0.05"]
    mock = subprocess.Popen([*command, "--slots", "64", *rates], stdout=subprocess.PIPE, text=True)
    assert mock.stdout is not None
    return mock, mock.stdout.readline().strip()


def one_run(
    workload: Workload, workdir: Path, rates: list[str], seed: int, extra: list[str]
) -> tuple[float, str]:
    """The process's wall, and how the gate ended (from run.json)."""
    mock, base_url = _mock(rates)
    try:
        argv = [*workload.run_argv(workdir, base_url), "--quiet", "--seed", str(seed), *extra]
        started = time.monotonic()
        env = {**os.environ, "OPENAI_API_KEY": "bench"}
        done = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, check=False)
        wall = time.monotonic() - started
    finally:
        mock.terminate()
        mock.wait()
    if done.returncode != 0:
        raise SystemExit(f"codeclm run exited {done.returncode}")
    record = json.loads((workdir / "run" / "run.json").read_text())
    (gate,) = record["endpoints"].values()
    ended = (
        f"limit {gate['lowest']}..{gate['highest']}, ended {gate['limit']}; "
        f"429s {gate['refused']} (read as a rate limit {gate.get('rate_limited', 0)}); "
        f"cuts {gate['cuts'] or 'none'}, undone {gate.get('undone', 0)}"
    )
    return wall, ended


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instructions", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--retry-after", type=float, default=1.0)
    parser.add_argument("--backoff", type=float, help="the runs' --backoff (default: codeclm's)")
    args = parser.parse_args()
    workload = Workload(
        instructions=args.instructions, concurrency=args.concurrency, seeds=40, metadata=40
    )
    faults = ["--rate-limit-rate", "0.03", "--error-rate", "0.03"]
    faults += ["--retry-after", str(args.retry_after)]
    extra = ["--backoff", str(args.backoff)] if args.backoff is not None else []
    ratios = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(1, args.repeat + 1):
            clean, _ = one_run(workload, Path(tmp) / f"clean{seed}", [], seed, extra)
            faulty, ended = one_run(workload, Path(tmp) / f"faulty{seed}", faults, seed, extra)
            ratios.append(faulty / clean)
            print(
                f"seed {seed}: clean {clean:5.1f} s  3% 429 + 3% 503 {faulty:5.1f} s  "
                f"ratio {faulty / clean:4.2f}  ({ended})",
                flush=True,
            )
    print(f"ratio: {min(ratios):.2f}..{max(ratios):.2f} over {len(ratios)} pairs")


if __name__ == "__main__":
    main()

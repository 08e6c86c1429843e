"""Extra LLM calls after `kill -9` at 25%, 50% and 75% of a run, against the loopback mock.

    .venv/bin/python -m benchmarks.resume_after_kill [--instructions 200] [--concurrency 8]

Prints, for each kill point, the calls the interrupted-and-resumed run sent beyond an
uninterrupted run with the same seed, and whether its dataset.jsonl came out identical.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from codeclm.bench.mock_llm import MockLLM, mixed_rule
from tests.conftest import mock_args

SEEDS = Path(__file__).resolve().parents[1] / "codeclm" / "examples" / "seeds.jsonl"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--instructions", type=int, default=200)
    parser.add_argument("--metadata", type=int, default=40)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    os.environ.setdefault("OPENAI_API_KEY", "benchmark-key")
    mock = MockLLM(judge_rule=mixed_rule).start()
    settings = {
        "instructions": args.instructions,
        "metadata": args.metadata,
        "concurrency": args.concurrency,
        "seed": 7,
        "quiet": True,
    }

    def command(out: Path) -> list[str]:
        return [
            sys.executable,
            "-m",
            "codeclm",
            "run",
            str(SEEDS),
            *mock_args(mock, out, **settings),
        ]

    with tempfile.TemporaryDirectory() as tmp:
        started = time.monotonic()
        subprocess.run(command(Path(tmp) / "baseline"), check=True, capture_output=True)
        baseline_seconds = time.monotonic() - started
        total = len(mock.requests)
        dataset = (Path(tmp) / "baseline" / "dataset.jsonl").read_text()
        print(
            f"uninterrupted: {args.instructions} instructions, {total} LLM calls, "
            f"{len(dataset.splitlines())} kept, {baseline_seconds:.1f}s"
        )
        print("kill at  calls before kill  calls after resume  extra calls  dataset identical")
        for fraction in (0.25, 0.5, 0.75):
            with mock.lock:
                mock.requests.clear()
                mock.received = 0
            out = Path(tmp) / f"killed-{fraction}"
            mock.stop_at, mock.stop_signal = int(total * fraction), signal.SIGKILL
            proc = subprocess.Popen(
                command(out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            mock.stop_pid = proc.pid
            proc.wait()
            before = len(mock.requests)
            mock.stop_at = None
            subprocess.run(command(out), check=True, capture_output=True)
            after = len(mock.requests) - before
            same = (out / "dataset.jsonl").read_text() == dataset
            print(
                f"{fraction:>7.0%}  {before:>17}  {after:>18}  {before + after - total:>11}  {same}"
            )
    mock.stop()


if __name__ == "__main__":
    main()

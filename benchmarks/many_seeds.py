"""Many seeds (issue #32, item 11): how soon the first request goes out, the memory, and the
checkpoint store, for seed files of 10,000 and 100,000 lines.

A real ``codeclm run`` (a child process) against the loopback mock (a process of its own,
50 ms a call, 64 slots), watched from outside for a fixed window: the child's RSS every
0.2 s (``/proc``), the mock's clock of its first request, and the run folder's
``checkpoints.sqlite*`` at the window's end. The run is then stopped (SIGINT, as Ctrl-C);
its outputs are not the point.

    .venv/bin/python -m benchmarks.many_seeds            # 10,000 and 100,000
    .venv/bin/python -m benchmarks.many_seeds 2000 20000 --window 30
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from codeclm.bench.mock_llm import STRONG_MODEL, TARGET_MODEL
from codeclm.bench.throughput import start_mock
from codeclm.outputs import CHECKPOINTS

_VOCABULARY = (
    "account billing invoice refund login password reset shipping order delivery "
    "tracking return warranty subscription cancel upgrade plan discount coupon "
    "payment card bank transfer address email phone notification app crash update "
    "install sync backup export import report dashboard chart filter search setting "
    "profile privacy security "
)
WORDS = _VOCABULARY.split()


@dataclass
class Watched:
    seeds: int
    first_request: float | None
    peak_rss_mb: float
    checkpoint_mb: float
    requests: int


def write_seeds(path: Path, count: int) -> None:
    """``count`` distinct seeds of 12 words, as a ticket archive's first lines might be."""
    rng = random.Random(count)
    with path.open("w") as out:
        for i in range(count):
            words = " ".join(rng.choice(WORDS) for _ in range(11))
            out.write(json.dumps({"id": f"t{i}", "instruction": f"Ticket {i}: {words}"}) + "\n")


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _stats(base_url: str) -> dict[str, float | int | None]:
    with urllib.request.urlopen(f"{base_url}/mock/stats") as answer:
        stats: dict[str, float | int | None] = json.loads(answer.read())
        return stats


def watch(count: int, window: float, workdir: Path) -> Watched:
    """One run over ``count`` seeds, watched for ``window`` seconds."""
    seeds = workdir / f"seeds-{count}.jsonl"
    write_seeds(seeds, count)
    mock, base_url = start_mock(0.05, 64)
    out = workdir / f"run-{count}"
    settings = workdir / "many.toml"
    settings.write_text(
        "instructions = 200\nmetadata = 50\nconcurrency = 64\n"
        + "".join(
            f'[{role}]\nmodel = "{model}"\nbase_url = "{base_url}"\n'
            for role, model in (("strong", STRONG_MODEL), ("target", TARGET_MODEL))
        )
    )
    argv = [sys.executable, "-m", "codeclm", "run", str(seeds), "--config", str(settings)]
    env = {**os.environ, "OPENAI_API_KEY": "bench"}
    started = time.monotonic()
    child = subprocess.Popen(
        [*argv, "--out", str(out), "--quiet"], env=env, stdout=subprocess.DEVNULL
    )
    peak, first = 0.0, None
    try:
        while time.monotonic() - started < window and child.poll() is None:
            peak = max(peak, _rss_mb(child.pid))
            if first is None and (at := _stats(base_url).get("first")) is not None:
                first = float(at) - started  # (the mock's clock is CLOCK_MONOTONIC too)
            time.sleep(0.2)
        requests = int(_stats(base_url).get("received") or 0)
        store = sum(p.stat().st_size for p in out.glob(f"{CHECKPOINTS}*")) / 2**20
    finally:
        child.send_signal(signal.SIGINT)
        try:
            child.wait(timeout=60)
        except subprocess.TimeoutExpired:
            child.kill()
        mock.terminate()
        mock.wait()
    return Watched(count, first, peak, store, requests)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("counts", nargs="*", type=int, default=[10_000, 100_000])
    parser.add_argument("--window", type=float, default=45.0, help="seconds each run is watched")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for count in args.counts:
            seen = watch(count, args.window, Path(tmp))
            rows.append(seen)
            first = f"{seen.first_request:.1f} s" if seen.first_request is not None else "none"
            print(
                f"{seen.seeds:>7,} seeds  first request {first:>8}  peak RSS "
                f"{seen.peak_rss_mb:6.0f} MB  checkpoints {seen.checkpoint_mb:6.1f} MB  "
                f"requests in {args.window:g} s {seen.requests:,}",
                flush=True,
            )
    if len(rows) > 1 and rows[0].peak_rss_mb:
        print(
            f"peak RSS, {rows[-1].seeds:,} / {rows[0].seeds:,}: "
            f"{rows[-1].peak_rss_mb / rows[0].peak_rss_mb:.2f}x"
        )


if __name__ == "__main__":
    main()

"""Does one run deliver its budget from models as they really behave? (issues #10 and #20)

    .venv/bin/python -m benchmarks.realistic_budget [--sizes 40 400 1000] [--concurrency 32]

Against the loopback mock as a *stingy* model (every list of 4 or more comes back with 1
to 3 items, otherwise well-formed), and again with the realistic misbehaviours on top
(``MockLLM.realistic``: repeated items, 10% of structured replies wrapped in prose, a fence
or after <think>, 2% refusals, 3% 429 with Retry-After, 3% 503, 3% of list replies cut at
max_tokens), on public seeds (Vicuna's, beside the project in ../shared), it runs one
``codeclm run`` for each N (``--metadata`` N/10, at least 10) and prints kept + dropped +
failed against N, what was missing and why, the entries whose Self-Rubrics stalled, the
faults, calls and wall time. Then it kills the smallest run half-way (SIGKILL), resumes
it, and says whether its dataset.jsonl is byte-identical to the uninterrupted run's.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from codeclm.bench.mock_llm import MockLLM, mixed_rule
from tests.conftest import mock_args, read_jsonl, write_seeds

ROOT = Path(__file__).resolve().parents[1]
PUBLIC_SEEDS = ROOT.parent / "shared" / "benchmarks" / "vicuna.jsonl"


def _seeds(folder: Path, n: int = 40) -> Path:
    if PUBLIC_SEEDS.is_file():
        lines = PUBLIC_SEEDS.read_text().splitlines()[:n]
        texts = [json.loads(line)["instruction"] for line in lines]
    else:  # a clone that is not beside ../shared
        texts = [f"Seed question {i} about topic {i * 7} and its trade-offs." for i in range(n)]
    return write_seeds(folder / "seeds.jsonl", texts)


def _figures(out: Path, requested: int) -> dict[str, object]:
    record = json.loads((out / "run.json").read_text())
    counts = record["counts"]
    total = counts["kept"] + counts["dropped"] + counts["failed"]
    pool = read_jsonl(out / "metadata.jsonl")
    return {
        "N": requested,
        "kept+dropped+failed": total,
        "exactly N": total == requested,
        "kept / dropped / failed": f"{counts['kept']} / {counts['dropped']} / {counts['failed']}",
        "missing, why": record["shortfall"] or record["prepare_failures"] or "-",
        "entries stalled in Self-Rubrics": sum(
            "Self-Rubrics stalled" in (e.get("note") or "") for e in pool
        ),
        "entries that ran dry": sum("no new unique" in (e.get("note") or "") for e in pool),
    }


def _options(n: int, concurrency: int) -> dict[str, object]:
    """The settings of the run of N: a pool of N/10 entries (at least 10)."""
    return {"instructions": n, "metadata": max(10, n // 10), "seed": 1, "concurrency": concurrency}


def _run(
    mock: MockLLM, seeds: Path, out: Path, *head: str, **options: object
) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "codeclm", *head]
    if head == ("run",):
        command += [str(seeds), *mock_args(mock, out, **options)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[40, 400, 1000])
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    os.environ.setdefault("OPENAI_API_KEY", "benchmark-key")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        seeds = _seeds(folder)
        for name, make in (("stingy", MockLLM), ("stingy + realistic", MockLLM.realistic)):
            mock = make(list_cap=3, judge_rule=mixed_rule, record=False).start()
            for n in args.sizes:
                out = folder / f"{name.replace(' + ', '_')}_{n}"
                options = _options(n, args.concurrency)
                before, faults = mock.received, Counter(mock.faults)
                started = time.monotonic()
                proc = _run(mock, seeds, out, "run", **options)
                _, err = proc.communicate()
                assert proc.returncode == 0, err.decode()[-2000:]
                figures = _figures(out, n)
                figures["calls"] = mock.received - before
                figures["faults"] = dict(Counter(mock.faults) - faults) or "-"
                figures["seconds"] = round(time.monotonic() - started, 1)
                rows.append((f"{name}, --instructions {n}", figures))
            if name == "stingy + realistic":  # the smallest run, killed half-way and resumed
                n = min(args.sizes)
                whole = folder / f"stingy_realistic_{n}"
                options = _options(n, args.concurrency)
                calls = int(rows[-len(args.sizes)][1]["calls"])  # type: ignore[call-overload]
                killed = folder / "killed"
                with mock.lock:
                    mock.received, mock.stop_at = 0, calls // 2
                proc = _run(mock, seeds, killed, "run", **options)
                mock.stop_pid = proc.pid
                proc.wait()
                mock.stop_at = None
                resumed = _run(mock, seeds, killed, "resume", str(killed), "--quiet")
                assert resumed.wait() == 0
                same = (killed / "dataset.jsonl").read_bytes() == (
                    whole / "dataset.jsonl"
                ).read_bytes()
                rows.append(
                    (
                        f"{name}, --instructions {n}, killed at call {calls // 2} and resumed",
                        {
                            "signal": "SIGKILL"
                            if -proc.returncode == signal.SIGKILL
                            else proc.returncode,
                            **_figures(killed, n),
                            "dataset.jsonl byte-identical to the uninterrupted run": same,
                        },
                    )
                )
            mock.stop()
    for name, figures in rows:
        print(name)
        for key, value in figures.items():
            print(f"  {key:55} {value}")


if __name__ == "__main__":
    main()

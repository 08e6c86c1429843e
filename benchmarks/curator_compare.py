"""codeclm beside curator on the same machine, mock and number of calls (issue #11's target:
at least 2x curator's calls per second).

    .venv/bin/python -m benchmarks.curator_compare [--instructions 1000] [--python PY]

1. ``codeclm bench``'s client-bound run (``--instructions`` through the whole method,
   checkpointed) against a fresh mock (50 ms, 64 slots); it counts the LLM calls it made.
2. bespokelabs-curator (``--curator-version``, 0.1.31 as in the issue) making as many
   calls against a fresh mock of the same kind, with 64 in flight: half free-text answers,
   half judge calls with a ``PairwiseScores`` JSON schema (curator's ``response_format``).
   It has no checkpoints nor multi-step threads: the simpler job.
3. The bare-client floor (``codeclm.bench.floor``), as ``codeclm bench`` measures it.

Each runs as a child process; its CPU time (user + sys, start-up included) comes from the
kernel (``wait4``). Curator is not a dependency of codeclm: unless ``--python`` names an
interpreter that has it, it is installed from the package index into
``.bench-venvs/curator-VERSION`` on the first run. This machine is offline, so the child
replaces tiktoken's downloaded encodings by a whitespace word count (cheaper than
tiktoken: if anything, curator's CPU is understated) and curator's telemetry upload fails
quietly.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
import venv
from pathlib import Path

from codeclm.bench.throughput import Workload, measure, start_mock

_CHILD = """
import os, sys, tempfile
base, calls, concurrency = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
os.environ["CURATOR_CACHE_DIR"] = tempfile.mkdtemp()
import tiktoken

class _Words:
    def encode(self, text, *args, **kwargs):
        return text.split()

tiktoken.get_encoding = lambda *a, **k: _Words()
tiktoken.encoding_for_model = lambda *a, **k: _Words()
from bespokelabs import curator
from pydantic import BaseModel

class PairwiseScores(BaseModel):
    assistant_1: int
    assistant_2: int

class Answer(curator.LLM):
    def prompt(self, row):
        return "Answer the instruction below helpfully.\\n\\nInstruction: " + row["i"]
    def parse(self, row, response):
        return {"i": row["i"], "response": response}

class Judge(curator.LLM):
    response_format = PairwiseScores
    def prompt(self, row):
        return "Rate both answers from 1 to 10 as JSON.\\n\\nInstruction: " + row["i"]
    def parse(self, row, response):
        return {"i": row["i"], "a": response.assistant_1}

params = {"base_url": base, "api_key": "bench", "max_requests_per_minute": 10_000_000,
          "max_tokens_per_minute": 10_000_000_000, "max_concurrent_requests": concurrency,
          "max_retries": 1, "require_all_responses": False}
rows = [{"i": f"Benchmark instruction {i}"} for i in range(calls // 2)]
answers = Answer(model_name="gpt-4o-mini", backend="openai", backend_params=params)(rows)
judged = Judge(model_name="gpt-4o-mini", backend="openai", backend_params=params)(rows)
print(len(answers.dataset) + len(judged.dataset))
"""


def curator_python(version: str) -> Path:
    """An interpreter with bespokelabs-curator ``version``, installed once beside the repo."""
    folder = Path(".bench-venvs") / f"curator-{version}"
    python = folder / "bin" / "python"
    if not python.exists():
        print(f"installing bespokelabs-curator=={version} into {folder} ...", flush=True)
        venv.create(folder, with_pip=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", f"bespokelabs-curator=={version}"],
            check=True,
        )
    return python


def _child(argv: list[str], calls: int) -> tuple[float, float, int]:
    """Wall time, CPU time and replies of one client run as a child process."""
    mock, base_url = start_mock(0.05, 64)
    try:
        env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "OPENAI_API_KEY": "bench"}
        started = time.monotonic()
        with tempfile.TemporaryFile("w+") as out:
            child = subprocess.Popen(
                [*argv, base_url, str(calls), "64"],
                env=env,
                stdout=out,
                stderr=subprocess.DEVNULL,
            )
            _, status, usage = os.wait4(child.pid, 0)
            wall = time.monotonic() - started
            if os.waitstatus_to_exitcode(status) != 0:
                raise RuntimeError(f"{argv[0]} exited {os.waitstatus_to_exitcode(status)}")
            out.seek(0)
            replies = int((out.read().split() or ["0"])[-1])
    finally:
        mock.terminate()
        mock.wait()
    return wall, usage.ru_utime + usage.ru_stime, replies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instructions", type=int, default=1000)
    parser.add_argument("--seeds", type=int, default=100, help="the issue's figures: 40")
    parser.add_argument("--metadata", type=int, default=200, help="the issue's figures: 40")
    parser.add_argument("--python", type=Path, help="an interpreter with curator installed")
    parser.add_argument("--curator-version", default="0.1.31")
    args = parser.parse_args()
    python = args.python or curator_python(args.curator_version)

    with tempfile.TemporaryDirectory() as work:
        workload = Workload(
            instructions=args.instructions, seeds=args.seeds, metadata=args.metadata
        )
        ours = measure(workload, Path(work))
    calls = ours.calls
    script = Path(tempfile.mkdtemp()) / "curator_child.py"
    script.write_text(_CHILD)
    curator_wall, curator_cpu, replies = _child([str(python), str(script)], calls)
    floor_cpu = ours.floor_cpu  # measured by ``measure`` against its mock, the same calls
    print(f"{calls:,} calls each, mock 50 ms per call, 64 slots, 64 in flight")
    print(f"{'client':<34}{'calls/s':>9}{'CPU ms/call':>13}{'x floor':>9}")
    rows = [
        (f"codeclm ({args.instructions:,} instructions)", f"{calls / ours.wall:.0f}", ours.cpu),
        (
            f"curator {args.curator_version} ({replies:,} replies)",
            f"{calls / curator_wall:.0f}",
            curator_cpu,
        ),
        ("bare aiohttp floor", "–", floor_cpu),
    ]
    for name, rate, cpu in rows:
        print(f"{name:<34}{rate:>9}{cpu / calls * 1000:>13.2f}{cpu / floor_cpu:>9.1f}")
    print(f"codeclm / curator calls per second: {curator_wall / ours.wall:.2f}x (target >= 2x)")


if __name__ == "__main__":
    main()

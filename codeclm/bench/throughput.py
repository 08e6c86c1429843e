"""``codeclm bench``: a real ``codeclm run`` against the loopback mock, measured from outside.

The mock runs in its own process with a fixed latency per call and a fixed number of slots,
like a serving engine's batch slots, so the best any client can do is
``calls × latency / slots`` seconds. The run is a child process, so its CPU time and peak
RSS come from the kernel (``wait4``), checkpointing included.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, replace
from pathlib import Path

from rich.console import Console
from rich.table import Table

from codeclm.bench.mock_llm import STRONG_MODEL, TARGET_MODEL
from codeclm.bench.replay import RecordingProxy, replay, run_argv, run_through
from codeclm.engine.run import RunError
from codeclm.handle import RunHandle
from codeclm.llm.embedded import EMBEDDED_MODEL_NAME, EmbeddedServer
from codeclm.outputs import CHECKPOINTS


@dataclass
class BenchResult:
    """What one measured run produced."""

    instructions: int
    finished: int
    calls: int
    wall: float
    pipeline_wall: float
    cpu: float
    peak_rss_mb: float
    bound: float
    checkpoint_seconds: float
    node_steps: int
    db_bytes: int
    floor_cpu: float = 0.0
    """CPU seconds of the bare client (``codeclm.bench.floor``) making the same calls."""
    first_call: float = 0.0
    """Seconds from the process's start to its first call at the mock."""
    calling: float = 0.0
    """Seconds from the first call's arrival to the last call's answer."""

    @property
    def efficiency(self) -> float:
        return self.bound / self.wall if self.wall else 0.0

    def rows(self) -> list[tuple[str, str]]:
        per_call = self.cpu / self.calls * 1000 if self.calls else 0.0
        return [
            ("instructions (finished)", f"{self.instructions:,} ({self.finished:,})"),
            ("LLM calls", f"{self.calls:,}"),
            ("wall time (process / pipeline)", f"{self.wall:.2f} s / {self.pipeline_wall:.2f} s"),
            ("lower bound calls × latency / slots", f"{self.bound:.2f} s"),
            (
                "efficiency = bound / wall (process / pipeline)",
                f"{self.efficiency:.3f} / {self.bound / self.pipeline_wall:.3f}",
            ),
            (
                "where the wall went: start to 1st call / calling / last answer to exit",
                f"{self.first_call:.2f} s / {self.calling:.2f} s"
                f" / {self.wall - self.first_call - self.calling:.2f} s",
            ),
            ("efficiency while calling = bound / calling", f"{self.bound / self.calling:.3f}"),
            ("LLM calls per second", f"{self.calls / self.wall:,.0f}"),
            ("client CPU per LLM call (user+sys)", f"{per_call:.2f} ms"),
            (
                "bare-client floor: CPU per call, same mock and calls (codeclm.bench.floor)",
                f"{self.floor_cpu / max(self.calls, 1) * 1000:.2f} ms",
            ),
            (
                "codeclm CPU per call / floor",
                f"{self.cpu / max(self.floor_cpu, 1e-9):.1f}x" if self.floor_cpu else "-",
            ),
            (
                "checkpoint wall time per node step (queueing included)",
                f"{self.checkpoint_seconds / max(self.node_steps, 1) * 1000:.2f} ms"
                f" ({self.node_steps:,} steps)",
            ),
            (
                "checkpoint DB per finished instruction",
                f"{self.db_bytes / max(self.finished, 1) / 1024:.1f} KB",
            ),
            ("peak RSS", f"{self.peak_rss_mb:.0f} MB"),
        ]


def start_mock(latency: float, slots: int) -> tuple[subprocess.Popen[str], str]:
    """The mock in its own process (its CPU is not the client's); and its base URL."""
    command = [sys.executable, "-m", "codeclm.bench.mock_cli"]
    command += ["--latency", str(latency), "--slots", str(slots)]
    mock = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert mock.stdout is not None
    return mock, mock.stdout.readline().strip()


def _seed_text(i: int) -> str:
    return f"Benchmark seed {i}: explain topic {i * 13}."


@dataclass(frozen=True)
class Workload:
    """What a benchmark run does: its size, and the mock serving it like an engine."""

    instructions: int = 1000
    latency: float = 0.05
    """Seconds per call."""
    slots: int = 64
    """Calls the mock serves at once."""
    concurrency: int = 64
    seeds: int = 100
    metadata: int = 200
    adaptive: bool = True
    """Adaptive concurrency (``--no-adaptive``: --concurrency fixed)."""
    seed: int = 0
    """The run's ``--seed`` (its sampling, and so which requests repeat)."""

    def describe(self) -> str:
        return (
            f"{self.instructions:,} instructions, mock {self.latency * 1000:g} ms per call, "
            f"{self.slots} slots, --concurrency {self.concurrency}"
            + ("" if self.adaptive else ", --no-adaptive")
        )

    def start_mock(self) -> tuple[subprocess.Popen[str], str]:
        return start_mock(self.latency, self.slots)

    def run_argv(self, workdir: Path, base_url: str) -> list[str]:
        """Seeds and settings written into ``workdir``; the ``codeclm run`` over them
        (output folder ``workdir/run``)."""
        workdir.mkdir(parents=True, exist_ok=True)
        lines = [
            json.dumps(
                {"id": f"b{i}", "instruction": f"Benchmark seed {i}: explain topic {i * 13}."}
            )
            for i in range(self.seeds)
        ]
        (workdir / "seeds.jsonl").write_text("\n".join(lines) + "\n")
        options = {
            "instructions": self.instructions,
            "metadata": self.metadata,
            "concurrency": self.concurrency,
            "adaptive": self.adaptive,
            "seed": self.seed,
        }
        settings = "".join(f"{key} = {json.dumps(value)}\n" for key, value in options.items())
        for role, model in (("strong", STRONG_MODEL), ("target", TARGET_MODEL)):
            settings += f'[{role}]\nmodel = "{model}"\nbase_url = "{base_url}"\n'
        (workdir / "bench.toml").write_text(settings)
        argv = [sys.executable, "-m", "codeclm", "run", str(workdir / "seeds.jsonl")]
        return [*argv, "--config", str(workdir / "bench.toml"), "--out", str(workdir / "run")]


def measure(workload: Workload, workdir: Path) -> BenchResult:
    """One ``codeclm run`` of the workload against a fresh mock; its figures."""
    mock, base_url = workload.start_mock()
    try:
        argv = [*workload.run_argv(workdir, base_url), "--quiet"]
        out = workdir / "run"
        env = {**os.environ, "OPENAI_API_KEY": "bench"}
        started = time.monotonic()
        child = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.monotonic() - started
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode != 0:
            raise RunError(f"codeclm run exited {child.returncode}")
        record = RunHandle.finished(out).recorded
        calls = sum(role.calls for role in record.usage.values())
        with urllib.request.urlopen(f"{base_url}/mock/stats") as answer:
            window = json.loads(answer.read())  # its clock is ours: CLOCK_MONOTONIC
        floor_cpu = _floor_cpu(base_url, calls, workload.concurrency)
    finally:
        mock.terminate()
        mock.wait()
    counts, checkpointing = record.counts, record.checkpointing or {}
    return BenchResult(
        instructions=counts.instructions,
        finished=counts.kept + counts.dropped + counts.failed,
        calls=calls,
        wall=wall,
        pipeline_wall=record.wall_seconds,
        cpu=usage.ru_utime + usage.ru_stime,
        peak_rss_mb=usage.ru_maxrss / 1024,
        bound=calls * workload.latency / workload.slots,
        checkpoint_seconds=checkpointing.get("seconds", 0.0),
        node_steps=checkpointing.get("checkpoints", 0),
        db_bytes=sum(p.stat().st_size for p in out.glob(f"{CHECKPOINTS}*")),
        floor_cpu=floor_cpu,
        first_call=window["first"] - started,
        calling=window["last"] - window["first"],
    )


def _floor_cpu(base_url: str, calls: int, concurrency: int) -> float:
    """CPU seconds (user + sys) of the bare client making ``calls`` calls to the same mock."""
    argv = [sys.executable, "-m", "codeclm.bench.floor", base_url, str(calls), str(concurrency)]
    child = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RunError("the bare-client floor run failed")
    return usage.ru_utime + usage.ru_stime


def _print(title: str, rows: list[tuple[str, str]], console: Console) -> None:
    table = Table(title=title, show_header=False)
    table.add_column("figure")
    table.add_column("value", justify="right")
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)


def run_bench(workload: Workload, *, scaling: bool, keep: Path | None) -> list[BenchResult]:
    """Print the figures of one run, or with ``scaling`` of 1k and 10k instructions."""
    console = Console()
    sizes = [1_000, 10_000] if scaling else [workload.instructions]
    results = []
    with tempfile.TemporaryDirectory(prefix="codeclm-bench-") as scratch:
        for size in sizes:
            sized = replace(workload, instructions=size)
            console.print(f"codeclm bench: {sized.describe()} ...", highlight=False)
            result = measure(sized, (keep or Path(scratch)) / f"bench-{size}")
            results.append(result)
            _print(f"{size:,} instructions", result.rows(), console)
    if scaling and len(results) == 2:
        small, large = results
        console.print(
            f"peak RSS {small.peak_rss_mb:.0f} MB at 1k, {large.peak_rss_mb:.0f} MB at 10k "
            f"(ratio {large.peak_rss_mb / small.peak_rss_mb:.2f}); CPU per instruction "
            f"{small.cpu / small.instructions * 1000:.2f} ms at 1k, "
            f"{large.cpu / large.instructions * 1000:.2f} ms at 10k",
            highlight=False,
        )
    return results


def run_embedded_bench(*, slots: int, instructions: int, keep: Path | None) -> None:
    """The pipeline's wall on the embedded model beside a replay of its own requests.

    One server serves both in turn: a real ``codeclm run`` (the demo's settings, this
    budget, ``slots`` requests at once) through a recording proxy, then the replay of what
    it asked (``codeclm.bench.replay``) at the same concurrency.
    """
    console = Console()
    with (
        EmbeddedServer(slots=slots) as server,
        tempfile.TemporaryDirectory(prefix="codeclm-bench-") as scratch,
    ):
        workdir = keep or Path(scratch)
        workdir.mkdir(parents=True, exist_ok=True)
        console.print(
            f"codeclm bench --embedded: codeclm run, {instructions} instructions, "
            f"{slots} at once, through a recording proxy ...",
            highlight=False,
        )
        proxy = RecordingProxy(server.base_url)
        argv = run_argv(workdir / "run", "", EMBEDDED_MODEL_NAME, slots, instructions)

        async def run() -> None:
            argv[argv.index("--strong-base-url") + 1] = await proxy.start()
            argv[argv.index("--target-base-url") + 1] = proxy.base_url
            try:
                await run_through(argv)
            finally:
                await proxy.stop()

        asyncio.run(run())
        record = RunHandle.finished(workdir / "run").recorded
        console.print(f"... and its {len(proxy.bodies)} requests replayed, {slots} at once ...")
        replayed = asyncio.run(replay(server.base_url, proxy.bodies, proxy.output_tokens, slots))
    output = sum(proxy.output_tokens)
    rows = [
        ("codeclm run: calls answered / output tokens", f"{len(proxy.bodies)} / {output:,}"),
        ("codeclm run: wall (pipeline)", f"{record.wall_seconds:.1f} s"),
        ("replay: calls / output tokens", f"{replayed.calls} / {replayed.output_tokens:,}"),
        ("replay: wall", f"{replayed.wall:.1f} s"),
        ("pipeline wall / replay wall", f"{record.wall_seconds / replayed.wall:.2f}"),
        (
            "output tokens/s: run / replay",
            f"{output / record.wall_seconds:.1f} / {replayed.output_tokens / replayed.wall:.1f}",
        ),
    ]
    for url, stats in record.endpoints.items():
        rows.append((f"limit at {url}", f"{stats.limit} (lowest {stats.lowest})"))
    _print(f"embedded SmolLM2-135M, {slots} slots", rows, console)

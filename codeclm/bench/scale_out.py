"""``codeclm bench --workers K``: one run on PostgreSQL, by 1 and by K worker processes.

The same client-bound workload as ``codeclm bench`` (the mock in its own process, many
slots, short latency), kept in a PostgreSQL store: ``codeclm run --store`` plus K - 1
``codeclm worker`` processes, all started together. Each process's CPU comes from the
kernel (``wait4``); the database's from its postmaster (a server this benchmark started),
so the figures say what a call costs the workers and what it costs the database.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import psycopg
from rich.console import Console
from rich.table import Table

from codeclm.bench.postgres_server import PostgresServer
from codeclm.bench.throughput import Workload
from codeclm.engine.run import RunError
from codeclm.handle import RunHandle


@dataclass
class WorkersResult:
    workers: int
    calls: int
    finished: int
    wall: float
    worker_cpu: float
    database_cpu: float | None
    database_bytes: int
    checkpoint_rows: int
    mock_cpu: float
    calling: float
    """Seconds from the first LLM call to the last answer (the mock's clock)."""
    before_calls: float
    """Seconds from the start to the first LLM call (start-up, preflight, store set-up)."""
    after_calls: float
    """Seconds from the last answer to the last exit (writing the outputs)."""

    def rows(self) -> list[str]:
        per_call = self.worker_cpu / max(self.calls, 1) * 1000
        db = self.database_cpu
        per_instruction = self.database_bytes / max(self.finished, 1) / 1024
        return [
            str(self.workers),
            f"{self.calls:,}",
            f"{self.wall:.2f} s",
            f"{self.calls / self.wall:,.0f}",
            f"{self.calling:.2f} s",
            f"{self.calls / self.calling:,.0f}",
            f"{self.before_calls:.2f} s / {self.after_calls:.2f} s",
            f"{per_call:.2f} ms",
            "-" if db is None else f"{db / max(self.calls, 1) * 1000:.2f} ms",
            f"{per_instruction:.1f} KB",
            f"{self.checkpoint_rows / max(self.finished, 1):.1f}",
            f"{self.mock_cpu / max(self.calls, 1) * 1000:.2f} ms",
        ]


def _wait_all(children: list[subprocess.Popen[bytes]]) -> float:
    """Wait for every child; their CPU seconds (user + sys), from the kernel."""
    cpu = 0.0
    for child in children:
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode != 0:
            raise RunError(f"a benchmark process exited {child.returncode}")
        cpu += usage.ru_utime + usage.ru_stime
    return cpu


def _database_figures(url: str, run: str) -> tuple[int, int]:
    """The run's schema: bytes on disk, and checkpoint rows (checkpoints + writes + blobs)."""
    schema = f"codeclm_{run}"
    with psycopg.connect(url) as conn:
        size = conn.execute(
            "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relkind = 'r'",
            (schema,),
        ).fetchone()
        conn.execute(f'SET search_path TO "{schema}"')
        rows = conn.execute(
            "SELECT (SELECT count(*) FROM checkpoints) + (SELECT count(*) FROM checkpoint_writes)"
            " + (SELECT count(*) FROM checkpoint_blobs)"
        ).fetchone()
    return int(size[0] if size else 0), int(rows[0] if rows else 0)


def measure_workers(
    workload: Workload,
    *,
    workers: int,
    url: str,
    server: PostgresServer | None,
    workdir: Path,
) -> WorkersResult:
    """One run of the workload by ``workers`` processes against a fresh mock."""
    mock, base_url = workload.start_mock()
    run = f"bench_{workers}_{int(time.time())}"
    try:
        store = ["--store", url, "--run", run, "--quiet"]
        run_argv = [*workload.run_argv(workdir, base_url), *store]
        worker_argv = [sys.executable, "-m", "codeclm", "worker", *store]
        worker_argv += ["--concurrency", str(workload.concurrency)]
        out = workdir / "run"
        env = {**os.environ, "OPENAI_API_KEY": "bench"}
        db_cpu_before = server.cpu_seconds() if server else None
        started = time.monotonic()
        children = [subprocess.Popen(run_argv, env=env, stdout=subprocess.DEVNULL)]
        children += [
            subprocess.Popen(worker_argv, env=env, stdout=subprocess.DEVNULL)
            for _ in range(workers - 1)
        ]
        cpu = _wait_all(children)
        ended = time.monotonic()
        wall = ended - started
        record = RunHandle.finished(out).recorded
        with urllib.request.urlopen(f"{base_url}/mock/stats") as answer:
            window = json.loads(answer.read())
    finally:
        mock.terminate()
        _, _, mock_usage = os.wait4(mock.pid, 0)
    db_cpu = server.cpu_seconds() - db_cpu_before if server and db_cpu_before is not None else None
    size, rows = _database_figures(url, run)
    counts = record.counts
    return WorkersResult(
        workers=workers,
        calls=sum(role.calls for role in record.usage.values()),
        finished=counts.kept + counts.dropped + counts.failed,
        wall=wall,
        worker_cpu=cpu,
        database_cpu=db_cpu,
        database_bytes=size,
        checkpoint_rows=rows,
        mock_cpu=mock_usage.ru_utime + mock_usage.ru_stime,
        calling=window["last"] - window["first"],
        # both processes read the same system-wide monotonic clock
        before_calls=window["first"] - started,
        after_calls=ended - window["last"],
    )


def _print_pair(results: list[WorkersResult], console: Console) -> tuple[float, float] | None:
    """One table of a 1-worker and a K-worker run; their ratios (while calling, wall)."""
    table = Table(title="one run on PostgreSQL, by worker processes")
    table.add_column("figure")
    for result in results:
        table.add_column(f"{result.workers} worker(s)", justify="right")
    names = (
        "LLM calls",
        "wall (first process start to last exit)",
        "LLM calls per second of wall",
        "calling (first LLM call to last answer)",
        "LLM calls per second while calling",
        "before the first call / after the last (start-up / outputs)",
        "worker CPU per call (user+sys, all workers)",
        "database CPU per call (the server's)",
        "database per finished instruction",
        "checkpoint rows per finished instruction",
        "mock server CPU per call",
    )
    for i, name in enumerate(names):
        table.add_row(name, *(result.rows()[i + 1] for result in results))
    console.print(table)
    if len(results) != 2:
        return None
    one, many = results
    calling = (many.calls / many.calling) / (one.calls / one.calling)
    wall = (many.calls / many.wall) / (one.calls / one.wall)
    console.print(
        f"{many.workers} workers: {calling:.2f}x the calls/s of one while calling "
        f"({wall:.2f}x over the whole wall time, start-up and output writing included)",
        highlight=False,
    )
    return calling, wall


def run_workers_bench(
    workload: Workload,
    *,
    workers: int,
    store: str | None,
    keep: Path | None,
    repeat: int = 1,
) -> list[WorkersResult]:
    """Print calls/s and CPU per call of one run by 1 and by ``workers`` processes; with
    ``repeat``, that many pairs back to back (a shared machine's speed drifts: a pair's
    two runs are measured close together) and the median ratio."""
    console = Console()
    server = None if store else PostgresServer().start()
    url = store or (server.url() if server else "")
    results: list[WorkersResult] = []
    ratios: list[tuple[float, float]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="codeclm-bench-") as scratch:
            for attempt in range(repeat):
                pair = []
                for k in sorted({1, workers}):
                    console.print(
                        f"codeclm bench: {workload.describe()} each, by {k} worker "
                        "process(es), PostgreSQL store ...",
                        highlight=False,
                    )
                    workdir = (keep or Path(scratch)) / f"workers-{k}-{attempt}"
                    pair.append(
                        measure_workers(
                            workload, workers=k, url=url, server=server, workdir=workdir
                        )
                    )
                results += pair
                if (ratio := _print_pair(pair, console)) is not None:
                    ratios.append(ratio)
    finally:
        if server is not None:
            server.stop()
    if len(ratios) > 1:
        calling = statistics.median(r[0] for r in ratios)
        wall = statistics.median(r[1] for r in ratios)
        console.print(
            f"median of {len(ratios)} pairs: {calling:.2f}x while calling, {wall:.2f}x over "
            f"the wall time (each: {', '.join(f'{r[0]:.2f}' for r in ratios)})",
            highlight=False,
        )
    return results

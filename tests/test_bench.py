"""``codeclm bench`` runs a real run against the mock in its own process and prints figures.

A smoke test of the command only: the figures themselves are for docs/performance.md.
"""

from __future__ import annotations

import re
import subprocess
import sys


def test_bench_prints_every_figure_of_a_small_run() -> None:
    args = ["--instructions", "20", "--latency", "0.01", "--slots", "8", "--concurrency", "8"]
    args += ["--seeds", "5", "--metadata", "4"]
    result = subprocess.run(
        [sys.executable, "-m", "codeclm", "bench", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={"COLUMNS": "160", "PATH": ""},
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for figure in ("LLM calls per second", "client CPU per LLM call", "peak RSS", "efficiency"):
        assert figure in out
    assert re.search(r"instructions \(finished\)\s*│\s*20 \(20\)", out), out
    calls = int(re.search(r"LLM calls\s*│\s*([\d,]+)", out).group(1).replace(",", ""))  # type: ignore[union-attr]
    assert calls >= 20 * 4, "every instruction was answered twice and judged twice"


def test_bench_workers_measures_one_run_by_one_and_by_two_processes(postgres: object) -> None:
    from codeclm.bench.postgres_server import PostgresServer

    assert isinstance(postgres, PostgresServer)
    args = ["--workers", "2", "--store", postgres.url(), "--instructions", "20"]
    args += ["--latency", "0.01", "--slots", "8", "--concurrency", "8", "--seeds", "5"]
    args += ["--metadata", "4"]
    result = subprocess.run(
        [sys.executable, "-m", "codeclm", "bench", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={"COLUMNS": "200", "PATH": ""},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    for figure in (
        "LLM calls per second while calling",
        "worker CPU per call",
        "database per finished instruction",
        "1 worker(s)",
        "2 worker(s)",
    ):
        assert figure in out, out
    assert re.search(r"2 workers: [\d.]+x the calls/s of one", out), out
    assert postgres.url() not in out and "pg-secret" not in out  # the password stays out

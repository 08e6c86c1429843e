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

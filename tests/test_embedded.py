"""End to end on the real embedded model: llama.cpp in-process serving SmolLM2-135M, via the CLI.

No mock here: real grammar-constrained decoding by a real (toy) model, so this proves the
schemas are bounded enough for a small model to terminate, and that every step's reply
parses or is recorded. Slow-ish (about a minute on 2 cores).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from codeclm.llm.embedded import find_gguf
from tests.conftest import read_jsonl


def _codeclm(*args: str) -> None:
    """The CLI in its own process, with no API key in the environment: all embedded."""
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    done = subprocess.run(
        [sys.executable, "-m", "codeclm", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.embedded
def test_the_embedded_model_runs_the_whole_method_through_the_cli(tmp_path: Path) -> None:
    try:
        find_gguf()
    except ValueError as exc:
        pytest.fail(f"the embedded model must be installed for this test: {exc}")
    seeds = tmp_path / "seeds.txt"
    seeds.write_text(
        "Write a short thank-you note to a colleague who covered my shift.\n"
        "How do I sort a dictionary by value in Python?\n"
    )
    config = tmp_path / "tiny.toml"
    config.write_text(
        "instructions = 2\nmetadata = 3\nmax_iterations = 2\nrubrics = 1\nconcurrency = 2\n"
        "[strong]\nmax_tokens = 256\nmax_tokens_ceiling = 512\n"  # the toy rambles: a low
        "[target]\nmax_tokens = 64\nmax_tokens_ceiling = 128\n"  # ceiling, so it ends soon
    )
    out = tmp_path / "out"
    _codeclm("run", str(seeds), "--config", str(config), "--out", str(out))
    summary = json.loads((out / "run.json").read_text())
    assert summary["models"]["strong"]["embedded"] is True
    assert summary["models"]["strong"]["base_url"].startswith("http://127.0.0.1:")
    counts = summary["counts"]
    assert counts["metadata_pool"] == 3
    assert counts["instructions"] == 2
    assert counts["kept"] + counts["dropped"] + counts["failed"] == 2
    pool = read_jsonl(out / "metadata.jsonl")
    assert all(entry["use_case"] and entry["skills"] for entry in pool)
    usage = summary["usage"]
    assert usage["strong"]["calls"] >= 2 + 1 + 1 + 3  # encode×2, rubrics, decode, answer+judge×2
    assert usage["target"]["calls"] >= 1
    assert usage["strong"]["output_tokens"] > 0 and usage["target"]["output_tokens"] > 0
    # whatever the toy model decided, every instruction is accounted for in the files
    rows = (
        read_jsonl(out / "dataset.jsonl")
        + read_jsonl(out / "dropped.jsonl")
        + read_jsonl(out / "failed.jsonl")
    )
    assert len({r["id"] for r in rows}) == len(rows) == 2


@pytest.mark.embedded
def test_the_embedded_model_evaluates_benchmark_items(tmp_path: Path) -> None:
    """``codeclm eval`` on the real toy model: real answers, real grammar-bound judge scores."""
    bench = tmp_path / "bench.jsonl"
    bench.write_text(
        '{"id": "q1", "instruction": "Name one planet of the solar system.", "category": "a"}\n'
        '{"id": "q2", "instruction": "What is 2 + 2?", "category": "b"}\n'
    )
    config = tmp_path / "eval.toml"
    config.write_text(
        "concurrency = 2\nself_judge = true\n[strong]\nmax_tokens = 64\nmax_tokens_ceiling = 128\n"
        "[target]\nmax_tokens = 32\nmax_tokens_ceiling = 64\n"
        "[judge]\nmax_tokens = 48\n"
    )
    out = tmp_path / "eval"
    _codeclm("eval", str(bench), "--config", str(config), "--out", str(out), "--quiet")
    record = json.loads((out / "eval.json").read_text())
    assert record["models"]["judge"]["embedded"] is True
    judged, failed = read_jsonl(out / "judgments.jsonl"), read_jsonl(out / "failed.jsonl")
    assert len(judged) + len(failed) == 2 and record["result"]["total"] == len(judged)
    for row in judged:
        assert row["outcome"] in ("win", "tie", "loss") and row["target_answer"]
        assert all(1 <= s <= 10 for s in row["scores_strong_first"] + row["scores_target_first"])

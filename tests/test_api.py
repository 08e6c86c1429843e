"""The Python API: ``codeclm.run``, ``resume`` and ``evaluate`` against the loopback mock,
as a notebook user would call them (no subprocess, settings as keyword arguments)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

import codeclm
from codeclm.bench.mock_llm import STRONG_MODEL, TARGET_MODEL, MockLLM
from codeclm.config import ConfigError
from codeclm.engine.threads import RunStats
from codeclm.handle import Folder
from codeclm.records import read_rows
from codeclm.rows import DatasetRow
from tests.conftest import read_jsonl


def _roles(mock: MockLLM) -> dict[str, dict[str, str]]:
    return {
        "strong": {"model": STRONG_MODEL, "base_url": mock.base_url},
        "target": {"model": TARGET_MODEL, "base_url": mock.base_url},
    }


def test_run_and_resume_from_python_with_progress(mock_llm: MockLLM, tmp_path: Path) -> None:
    seen: list[tuple[str, int]] = []

    def on_progress(stats: RunStats) -> None:
        seen.append((stats.phase, stats.finished))

    result = codeclm.run(
        ["How do I bake rye bread?", "Explain git rebase to a new hire."],
        out=tmp_path / "out",
        instructions=6,
        metadata=3,
        on_progress=on_progress,
        **_roles(mock_llm),
    )
    assert isinstance(result, codeclm.RunResult)
    assert result.kept + result.dropped + result.failed == 6 and result.missing == 0
    assert result.usage["strong"].calls > 0 and result.usage["target"].calls > 0
    assert len(read_jsonl(result.dataset)) == result.kept
    assert all(path.is_file() for path in result.files.values())
    assert seen and seen[-1][1] == 6, "the callback saw the run to its end"
    assert {"preparing", "running"} <= {phase for phase, _ in seen}, "short names to test"
    assert json.loads(result.files["run.json"].read_text())["inputs"]["seeds"] is None
    # The record is typed, and is what the file holds: one model for the writer and readers.
    assert Folder(result.out_dir).read_run() == result.record
    assert [row.model_dump(mode="json") for row in read_rows(result.dataset, DatasetRow)] == (
        read_jsonl(result.dataset)
    )

    sent = len(mock_llm.requests)
    again = codeclm.resume(tmp_path / "out")
    assert again.counts == result.counts and len(mock_llm.requests) == sent


def test_arun_inside_a_running_event_loop(mock_llm: MockLLM, tmp_path: Path) -> None:
    async def notebook_cell() -> codeclm.RunResult:
        return await codeclm.arun(
            ["Plan a week of vegetarian dinners."],
            out=tmp_path / "out",
            config={"instructions": 2, "metadata": 1, **_roles(mock_llm)},
        )

    assert asyncio.run(notebook_cell()).counts.instructions == 2


def test_evaluate_from_python(mock_llm: MockLLM, tmp_path: Path) -> None:
    bench = tmp_path / "bench.jsonl"
    bench.write_text(
        '{"id": "a", "instruction": "Name a prime.", "category": "math"}\n'
        '{"id": "b", "instruction": "Name a river.", "category": "geo"}\n'
    )
    record = codeclm.evaluate(bench, self_judge=True, out=tmp_path / "eval", **_roles(mock_llm))
    assert isinstance(record, codeclm.EvalRecord)
    assert record.result is not None and record.result.total == 2
    assert record.crr == 0.0  # (9, 2) judge
    assert Folder(tmp_path / "eval").read_eval() == record, "what eval.json holds"


def test_bad_settings_are_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="instructions: Input should be greater than 0"):
        codeclm.run(["x"], out=tmp_path / "out", instructions=0)
    with pytest.raises(ConfigError, match="unknown key"):
        codeclm.run(["x"], out=tmp_path / "out", instrutcions=5)
    assert not (tmp_path / "out").exists()

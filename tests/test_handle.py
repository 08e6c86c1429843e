"""The run handle: a run found once, by its folder, and every driver reading it through the
handle; a folder holds one run or one evaluation; both kinds refuse other settings alike.

Function calls against the loopback mock (no subprocess: the CLI is not what is tested).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

import codeclm
from codeclm import api
from codeclm.bench.mock_llm import STRONG_MODEL, TARGET_MODEL, MockLLM
from codeclm.config import ConfigError
from codeclm.debug.inspection import ThreadDetail, ThreadListing
from codeclm.handle import Folder, RunHandle
from codeclm.records import RunInputs


def _roles(mock: MockLLM) -> dict[str, dict[str, str]]:
    return {
        "strong": {"model": STRONG_MODEL, "base_url": mock.base_url},
        "target": {"model": TARGET_MODEL, "base_url": mock.base_url},
    }


@pytest.fixture
def finished(mock_llm: MockLLM, tmp_path: Path) -> Path:
    seeds = tmp_path / "seeds.txt"
    seeds.write_text("How do I bake rye bread?\nExplain git rebase to a new hire.\n")
    codeclm.run(seeds, out=tmp_path / "run", instructions=4, metadata=2, **_roles(mock_llm))
    return tmp_path / "run"


def test_a_run_is_found_once_with_its_typed_record_and_inputs(finished: Path) -> None:
    handle = codeclm.find_run(finished, concurrency=3)
    assert handle.record is not None and handle.record == Folder(finished).read_run()
    assert handle.config.instructions == 4 and handle.config.concurrency == 3, "pacing on top"
    assert isinstance(handle.inputs, RunInputs)
    assert handle.inputs.seeds == str((finished.parent / "seeds.txt").resolve())
    assert handle.where == str(finished) and not handle.spec.shared


def test_every_reader_takes_the_handle(finished: Path) -> None:
    listing = codeclm.inspect(finished)
    assert isinstance(listing, ThreadListing) and listing.prepare == "done"
    assert sum(listing.counts.values()) == len(listing.threads) == 4
    detail = codeclm.inspect(finished, listing.threads[0].id)
    assert isinstance(detail, ThreadDetail) and detail.history
    assert detail.as_json()["history"][0]["checkpoint"], "as --json prints it"
    path, rows = api.export(finished, "alpaca")
    assert rows == listing.counts.get("kept", 0) and path.is_file()
    page = api.report([finished], finished / "report")
    assert page.is_file()

    async def session() -> int:
        async with codeclm.review_session(finished) as opened:
            state = await opened.prepared()
            return len(state.pool) if state else 0

    assert asyncio.run(session()) == 2


def test_a_folder_holds_one_run_or_one_evaluation(
    finished: Path, mock_llm: MockLLM, tmp_path: Path
) -> None:
    bench = tmp_path / "bench.jsonl"
    bench.write_text('{"id": "a", "instruction": "Name a prime.", "category": "math"}\n')
    with pytest.raises(ConfigError, match="holds a run, not an evaluation; use another --out"):
        codeclm.evaluate(bench, self_judge=True, out=finished, **_roles(mock_llm))
    codeclm.evaluate(bench, self_judge=True, out=tmp_path / "eval", **_roles(mock_llm))
    with pytest.raises(ConfigError, match="holds an evaluation, not a run; use another --out"):
        codeclm.run(["Say hi."], out=tmp_path / "eval", **_roles(mock_llm))
    with pytest.raises(ConfigError, match="holds an evaluation, not a run"):
        codeclm.inspect(tmp_path / "eval")
    with pytest.raises(ConfigError, match="holds no run"):
        codeclm.inspect(tmp_path / "nothing")


def test_run_and_evaluation_refuse_other_settings_alike(
    finished: Path, mock_llm: MockLLM, tmp_path: Path
) -> None:
    seeds = finished.parent / "seeds.txt"
    with pytest.raises(ConfigError, match=r"holds a run with different settings \(threshold\)"):
        codeclm.run(seeds, out=finished, instructions=4, threshold=5.0, **_roles(mock_llm))
    bench = tmp_path / "bench.jsonl"
    bench.write_text('{"id": "a", "instruction": "Name a prime.", "category": "math"}\n')
    codeclm.evaluate(bench, self_judge=True, out=tmp_path / "eval", **_roles(mock_llm))
    bench.write_text('{"id": "b", "instruction": "Name a river.", "category": "geo"}\n')
    message = r"holds an evaluation with different settings or items \(benchmark_sha256\)"
    with pytest.raises(ConfigError, match=message):
        codeclm.evaluate(bench, self_judge=True, out=tmp_path / "eval", **_roles(mock_llm))


def test_a_broken_record_is_refused_in_one_line(finished: Path) -> None:
    record = json.loads((finished / "run.json").read_text())
    record["counts"]["kept"] = "many"
    (finished / "run.json").write_text(json.dumps(record))
    with pytest.raises(ConfigError, match=r"run.json is not a run record \(counts.kept"):
        codeclm.find_run(finished)
    with pytest.raises(ConfigError, match="is not a run record"):
        RunHandle.finished(finished)


def test_a_folder_names_its_store_and_run_and_no_other(
    finished: Path, mock_llm: MockLLM, tmp_path: Path
) -> None:
    url = "postgresql://codeclm@127.0.0.1:9/codeclm"
    with pytest.raises(ConfigError, match=r"holds a run kept in its folder, not in postgresql"):
        codeclm.resume(finished, store=url)
    bench = tmp_path / "bench.jsonl"
    bench.write_text('{"id": "a", "instruction": "Name a prime.", "category": "math"}\n')
    codeclm.evaluate(bench, self_judge=True, out=tmp_path / "eval", **_roles(mock_llm))
    with pytest.raises(ConfigError, match="holds an evaluation, not a run"):
        codeclm.resume(tmp_path / "eval", store=url, run_name="x")


def test_reading_a_run_lets_be_what_running_it_would_refuse(finished: Path) -> None:
    """A run.json of another version (a setting since retired) or a run copied without its
    prompts folder: inspect, review, report and export read it; resume says why not."""
    record = json.loads((finished / "run.json").read_text())
    record["config"]["retired_setting"] = 1
    record["config"]["prompts_dir"] = str(finished / "gone")
    (finished / "run.json").write_text(json.dumps(record))
    assert isinstance(codeclm.inspect(finished), ThreadListing)
    assert api.export(finished, "chat")[1] >= 0
    with pytest.raises(ConfigError, match=r"run.json"):
        codeclm.resume(finished)

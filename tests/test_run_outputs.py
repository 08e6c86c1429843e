"""A run on 20 Vicuna seeds against the mock: every output invariant, and no secret anywhere."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from codeclm.bench.mock_llm import MockLLM, iteration_of
from codeclm.state import InstructionState
from tests.conftest import BENCHMARKS, DATASET_ROW_KEYS, SECRET, read_jsonl, run_cli

VICUNA = BENCHMARKS / "vicuna.jsonl"


@pytest.fixture
def vicuna_20(tmp_path: Path) -> Path:
    if not VICUNA.is_file():
        pytest.skip("../shared/benchmarks is not beside this checkout")
    lines = VICUNA.read_text().splitlines()[:20]
    path = tmp_path / "vicuna20.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_vicuna_seeds_produce_outputs_that_hold_every_invariant(
    mock_llm: MockLLM, vicuna_20: Path, tmp_path: Path
) -> None:
    # A mix of all outcomes: strong kept at 1, improved then kept, target kept, dropped.
    def rule(text: str) -> tuple[int, int]:
        kind = sum(map(ord, text.split(" (harder:")[0])) % 4
        if kind == 0:
            return (9, 3)
        if kind == 1:
            return (9, 2) if iteration_of(text) >= 2 else (6, 5)
        if kind == 2:
            return (2, 9)
        return (5, 5)

    mock_llm.judge_rule = rule
    out = tmp_path / "out"
    assert run_cli(vicuna_20, mock_llm, out, instructions=40, metadata=30, seed=11) == 0
    names = sorted(p.name for p in out.iterdir() if not p.name.endswith(("-wal", "-shm")))
    assert names == [
        ".codeclm.lock",  # (the one working process's lock: its pid)
        "checkpoints.sqlite",
        "dataset.jsonl",
        "dropped.jsonl",
        "failed.jsonl",
        "llm_cache.sqlite",
        "metadata.jsonl",
        "run.json",
        "spend.sqlite",
    ]

    vicuna_ids = {json.loads(line)["id"] for line in vicuna_20.read_text().splitlines()}
    pool = read_jsonl(out / "metadata.jsonl")
    assert len(pool) == 30
    for entry in pool:
        assert entry["use_case"] and 1 <= len(entry["skills"]) <= 3
        assert len(entry["rubrics"]) == 4 and len(entry["actions"]) == 4
        assert set(entry["seed_ids"]) <= vicuna_ids

    kept = read_jsonl(out / "dataset.jsonl")
    dropped = read_jsonl(out / "dropped.jsonl")
    assert read_jsonl(out / "failed.jsonl") == []
    assert len(kept) + len(dropped) == 40
    assert {r["response_source"] for r in kept} == {"strong", "target"}
    assert {r["iteration"] for r in kept} >= {1, 2}
    ids = [r["id"] for r in kept + dropped]
    assert len(ids) == len(set(ids)), "no pair written twice"
    for row in kept:
        assert set(row) == DATASET_ROW_KEYS
        assert set(row["metadata"]) >= {"use_case", "skills"}
        assert set(row["scores"]) >= {"strong", "target", "gap"}
        gap = row["scores"]["strong"] - row["scores"]["target"]
        assert row["scores"]["gap"] == gap
        assert (gap > 3) if row["response_source"] == "strong" else (gap < -3)
        assert len(row["actions"]) == row["iteration"] - 1
        assert set(row["seed_ids"]) <= vicuna_ids and row["seed_ids"]
        assert [m["role"] for m in row["messages"]] == ["user", "assistant"]
        assert row["messages"][1]["content"] == row["response"]
    for row in dropped:
        assert row["reason"] and row["scores"] is not None and row["iteration"] == 4

    summary = json.loads((out / "run.json").read_text())
    counts = summary["counts"]
    assert counts["kept"] == len(kept) and counts["dropped"] == len(dropped)
    assert counts["kept_strong"] + counts["kept_target"] == len(kept)
    assert sum(counts["kept_by_iteration"].values()) == len(kept)
    assert summary["config"]["strong"]["api_key_env"] == "OPENAI_API_KEY"
    requests = len(mock_llm.requests)
    assert summary["usage"]["strong"]["calls"] + summary["usage"]["target"]["calls"] == requests
    assert summary["usage"]["target"]["input_tokens"] > 0

    # The API key is nowhere: not in outputs, not in any checkpoint blob.
    for path in out.iterdir():
        assert SECRET.encode() not in path.read_bytes(), path.name
    with sqlite3.connect(out / "checkpoints.sqlite") as db:
        threads = {row[0] for row in db.execute("SELECT DISTINCT thread_id FROM checkpoints")}
    assert threads == {"prepare", *ids}, "one checkpointed thread per instruction"


def test_state_models_come_back_from_checkpoints_as_models(
    mock_llm: MockLLM, vicuna_20: Path, tmp_path: Path
) -> None:
    import asyncio

    from codeclm.graph import build_instruction_graph, retry_policy
    from codeclm.store.sqlite import open_checkpointer

    out = tmp_path / "out"
    assert run_cli(vicuna_20, mock_llm, out, instructions=2, metadata=2) == 0
    row = read_jsonl(out / "dataset.jsonl")[0]

    async def load() -> object:
        async with open_checkpointer(out / "checkpoints.sqlite") as saver:
            graph = build_instruction_graph(retry_policy(1)).compile(checkpointer=saver)
            state = await graph.aget_state({"configurable": {"thread_id": row["id"]}})
            return state.values

    values = asyncio.run(load())
    state = InstructionState.model_validate(values)
    assert state.status == "kept" and state.scores is not None
    assert type(values["scores"]).__name__ == "JudgeScores", "not a plain dict"

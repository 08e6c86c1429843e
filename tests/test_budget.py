"""Exactly the budget, in one run, whatever the model gives (issues #20 and #21).

Against a stingy model (every list of 4 or more comes back with 1 to 3 items), alone and
with the realistic misbehaviours on top: ``kept + dropped + failed == N`` from one
``codeclm run``; Self-Rubrics that stall go on with what they have or give their share
away; ``--pairs N`` ends with exactly N kept pairs, killed and resumed or not.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from codeclm.bench.mock_llm import MockLLM, mixed_rule
from codeclm.prepare.planning import normalized
from tests.conftest import SECRET, read_jsonl, realistic, run_cli, write_seeds
from tests.test_real_models import _run_process


def _seeds(tmp_path: Path, n: int = 20) -> Path:
    topics = ["taxes", "sourdough", "chess", "rust lifetimes", "jazz", "tides", "orbits"]
    return write_seeds(
        tmp_path / "seeds.jsonl",
        [f"Request {i}: help me with {topics[i % len(topics)]}, case {i}." for i in range(n)],
    )


def _json(text: str) -> dict[str, list[str]]:
    """A reply the mock sent whole (not wrapped, cut or refused), else {}."""
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _counts(out: Path) -> dict[str, object]:
    return dict(json.loads((out / "run.json").read_text())["counts"])


@pytest.mark.parametrize("faulty", [False, True], ids=["stingy", "stingy and realistic"])
def test_one_run_delivers_the_whole_budget_from_a_stingy_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, faulty: bool
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    make = realistic if faulty else MockLLM
    mock = make(list_cap=3, judge_rule=mixed_rule, fault_seed=7).start()
    try:
        out = tmp_path / "out"
        options = dict(instructions=40, metadata=10, seed=1, concurrency=8, backoff=0)
        assert run_cli(_seeds(tmp_path), mock, out, **options) == 0
    finally:
        mock.stop()
    counts = _counts(out)
    assert counts["kept"] + counts["dropped"] + counts["failed"] == 40, counts  # type: ignore[operator]
    record = json.loads((out / "run.json").read_text())
    assert record["shortfall"] is None and record["prepare_failures"] == []
    lists = [c for c in mock.calls() if c.schema in ("SelfRubrics", "DecodedInstructions")]
    replies = [_json(c.reply) for c in lists]
    assert any(replies) and all(len(v) <= 3 for r in replies for v in r.values()), "stingy"
    rubric_asks = max(
        sum(c.prompt.split("- Skills:")[0] == p.prompt.split("- Skills:")[0] for c in lists)
        for p in lists
    )
    assert rubric_asks > 3, "an entry was asked more than a fixed three times"


def test_self_rubrics_that_stall_go_on_with_enough_actions_or_give_their_share_away(
    mock_llm: MockLLM, tmp_path: Path
) -> None:
    mock_llm.judge_rule = mixed_rule
    # entries of one use case have 2 distinct actions in them (half of k = 4: enough); of
    # another, 1 (too few: their instructions go to the other entries)
    mock_llm.rubrics_distinct = {"advice": 2, "coding help": 1}
    out = tmp_path / "out"
    assert run_cli(_seeds(tmp_path, 12), mock_llm, out, instructions=24, metadata=8) == 0
    counts = _counts(out)
    assert counts["kept"] + counts["dropped"] + counts["failed"] == 24, counts  # type: ignore[operator]
    pool = {e["id"]: e for e in read_jsonl(out / "metadata.jsonl")}
    two = [e for e in pool.values() if e["use_case"] == "advice"]
    one = [e for e in pool.values() if e["use_case"] == "coding help"]
    assert two and one, [e["use_case"] for e in pool.values()]
    for entry in two:
        assert len(entry["actions"]) == 2 and "goes on with them" in entry["note"]
    for entry in one:
        assert entry["n_instructions"] == 0 and "share went to other entries" in entry["note"]
    rows = read_jsonl(out / "dataset.jsonl") + read_jsonl(out / "dropped.jsonl")
    assert not {row["metadata"]["id"] for row in rows} & {e["id"] for e in one}
    used = {row["metadata"]["id"] for row in rows}
    assert used & {e["id"] for e in two}, "entries with 2 actions made instructions"
    assert all(len(pool[r["metadata"]["id"]]["actions"]) >= 2 for r in rows)
    assert len({normalized(r["basic_instruction"]) for r in rows}) == 24


def test_pairs_is_a_budget_in_kept_pairs(mock_llm: MockLLM, tmp_path: Path) -> None:
    mock_llm.judge_rule = mixed_rule  # about a third kept at once, a third later, a third never
    mock_llm.list_cap = 3
    out = tmp_path / "out"
    assert run_cli(_seeds(tmp_path), mock_llm, out, pairs=30, metadata=10) == 0
    counts = _counts(out)
    assert counts["kept"] == 30 == counts["pairs_requested"]
    assert len(read_jsonl(out / "dataset.jsonl")) == 30
    assert counts["instructions_requested"] > 30, "more instructions went in than pairs"
    # a first wave larger than needed: what it kept beyond N is surplus, in dropped.jsonl
    big = tmp_path / "big"
    assert run_cli(_seeds(tmp_path), mock_llm, big, pairs=10, instructions=40, metadata=10) == 0
    assert len(read_jsonl(big / "dataset.jsonl")) == 10
    surplus = [r for r in read_jsonl(big / "dropped.jsonl") if r["status"] == "surplus"]
    assert surplus and _counts(big)["surplus"] == len(surplus)
    # a pool that runs dry says so, with what it could keep
    mock_llm.decode_distinct = 1
    dry = tmp_path / "dry"
    assert run_cli(_seeds(tmp_path, 4), mock_llm, dry, pairs=50, metadata=4) == 0
    record = json.loads((dry / "run.json").read_text())
    assert record["counts"]["kept"] < 50 and "ran dry" in record["shortfall"]


def test_pairs_killed_and_resumed_keep_the_same_pairs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    mock = realistic(list_cap=3, judge_rule=mixed_rule, fault_seed=11).start()
    seeds = _seeds(tmp_path)
    options = dict(pairs=16, metadata=8, concurrency=4, backoff=0)
    try:
        whole = _run_process(mock, seeds, tmp_path / "whole", **options)
        assert whole.wait(timeout=300) == 0, whole.communicate()[1]
        total = mock.received
        with mock.lock:
            mock.received, mock.stop_at = 0, total * 2 // 3  # within the second wave
        killed = _run_process(mock, seeds, tmp_path / "killed", **options)
        mock.stop_pid = killed.pid
        assert killed.wait(timeout=300) == -signal.SIGKILL
        mock.stop_at = None
        again = _run_process(mock, seeds, tmp_path / "killed", **options)  # the same command
        assert again.wait(timeout=300) == 0, again.communicate()[1]
    finally:
        mock.stop()
    for name in ("dataset.jsonl", "metadata.jsonl"):
        assert (tmp_path / "killed" / name).read_text() == (tmp_path / "whole" / name).read_text()
    assert _counts(tmp_path / "killed")["kept"] == 16

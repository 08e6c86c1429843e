"""The signed gap rule in all three directions, the iteration cap, and order-swapped judging."""

from __future__ import annotations

import json
from pathlib import Path

from codeclm.bench.mock_llm import STRONG_PREFIX, TARGET_PREFIX, MockLLM, iteration_of
from tests.conftest import read_jsonl, run_cli


def test_gap_above_threshold_keeps_the_strong_answer(
    mock_llm: MockLLM, seeds_file: Path, tmp_path: Path
) -> None:
    mock_llm.judge_rule = lambda instruction: (9, 2)
    assert run_cli(seeds_file, mock_llm, tmp_path / "out", instructions=6, metadata=6) == 0
    rows = read_jsonl(tmp_path / "out" / "dataset.jsonl")
    assert len(rows) == 6
    for row in rows:
        assert row["response_source"] == "strong"
        assert row["response"].startswith(STRONG_PREFIX)
        assert row["iteration"] == 1 and row["actions"] == []
        assert row["scores"]["gap"] == 7
        assert row["messages"] == [
            {"role": "user", "content": row["instruction"]},
            {"role": "assistant", "content": row["response"]},
        ]
    assert not mock_llm.calls("ImprovedInstruction")


def test_gap_below_minus_threshold_keeps_the_target_answer(
    mock_llm: MockLLM, seeds_file: Path, tmp_path: Path
) -> None:
    mock_llm.judge_rule = lambda instruction: (2, 8)
    assert run_cli(seeds_file, mock_llm, tmp_path / "out", instructions=4, metadata=4) == 0
    rows = read_jsonl(tmp_path / "out" / "dataset.jsonl")
    assert len(rows) == 4
    assert {row["response_source"] for row in rows} == {"target"}
    assert all(row["response"].startswith(TARGET_PREFIX) for row in rows)
    assert all(row["scores"]["gap"] == -6 for row in rows)


def test_gap_exactly_at_threshold_improves_and_keeps_once_separated(
    mock_llm: MockLLM, seeds_file: Path, tmp_path: Path
) -> None:
    # |G| = θ is not enough (the rule is strict); the third iteration separates them.
    mock_llm.judge_rule = lambda text: (9, 2) if iteration_of(text) == 3 else (6, 3)
    assert run_cli(seeds_file, mock_llm, tmp_path / "out", instructions=4, metadata=4) == 0
    rows = read_jsonl(tmp_path / "out" / "dataset.jsonl")
    assert len(rows) == 4
    for row in rows:
        assert row["iteration"] == 3
        assert len(row["actions"]) == 2
        assert len(set(row["actions"])) == 2, "actions are drawn without replacement"
        assert row["instruction"] != row["basic_instruction"]
        # the instruction kept is the one that was judged, with its actions applied in order
        for action in row["actions"]:
            assert f"(harder: {action})" in row["instruction"]
        assert row["instruction"].index(row["actions"][0]) < row["instruction"].index(
            row["actions"][1]
        )
    assert len(mock_llm.calls("ImprovedInstruction")) == 4 * 2


def test_undecided_at_the_cap_is_dropped_with_its_reason(
    mock_llm: MockLLM, seeds_file: Path, tmp_path: Path
) -> None:
    mock_llm.judge_rule = lambda instruction: (6, 5)
    out = tmp_path / "out"
    assert run_cli(seeds_file, mock_llm, out, instructions=3, metadata=3, max_iterations=3) == 0
    assert read_jsonl(out / "dataset.jsonl") == []
    dropped = read_jsonl(out / "dropped.jsonl")
    assert len(dropped) == 3
    for row in dropped:
        assert row["status"] == "dropped"
        assert row["iteration"] == 3
        assert "after 3 iteration(s)" in row["reason"]
        assert row["scores"] == {
            "strong": 6.0,
            "target": 5.0,
            "gap": 1.0,
            "strong_first": [6, 5],
            "target_first": [6, 5],
        }
    # two rewrites each (the basic instruction is iteration 1), and no more
    assert len(mock_llm.calls("ImprovedInstruction")) == 3 * 2
    assert len(mock_llm.calls(model="target-model")) == 3 * 3
    summary = json.loads((out / "run.json").read_text())
    assert summary["counts"]["dropped"] == 3 and summary["counts"]["kept"] == 0


def test_judge_is_run_twice_with_the_answers_swapped_and_averaged(
    mock_llm: MockLLM, seeds_file: Path, tmp_path: Path
) -> None:
    mock_llm.judge_rule = lambda instruction: (8, 3)
    mock_llm.first_position_bias = 2  # the judge favours whichever answer it reads first
    out = tmp_path / "out"
    assert run_cli(seeds_file, mock_llm, out, instructions=2, metadata=2) == 0
    judge_calls = mock_llm.calls("PairwiseScores")
    assert len(judge_calls) == 2 * 2
    assert all(c.response_format is None for c in judge_calls), "a line, not a JSON schema"
    assert all("\n" not in c.reply for c in judge_calls), "two scores, no explanation"
    for row in read_jsonl(out / "dataset.jsonl"):
        asked = [c.values for c in judge_calls if c.values["instruction"] == row["instruction"]]
        firsts = sorted(values["answer_1"][:14] for values in asked)
        assert firsts == sorted([STRONG_PREFIX[:14], TARGET_PREFIX[:14]]), "both orders sent"
        assert all(c.temperature == 0 for c in judge_calls)
        # strong first: (8+2, 3); target first: (8, 3+2) → averages 9 and 4
        assert row["scores"]["strong_first"] == [10, 3]
        assert row["scores"]["target_first"] == [8, 5]
        assert row["scores"]["strong"] == 9.0 and row["scores"]["target"] == 4.0
        assert row["scores"]["gap"] == 5.0


def test_a_refusing_targets_answer_is_never_kept_even_when_it_scores_higher() -> None:
    """A judge may score a target's refusal above the strong answer (G < −θ): that pair is
    undecided, never kept with the refusal as its response."""
    from codeclm.nodes.instruction import gap_decision
    from codeclm.state import InstructionState, JudgeScores

    scores = JudgeScores(strong=2, target=8, gap=-6, strong_first=(2, 8), target_first=(2, 8))
    state = InstructionState(
        id="m0000-00",
        metadata_id="m0000",
        use_case="advice",
        skills=["tact"],
        seed_ids=[],
        candidate_actions=["add a constraint"],
        basic_instruction="Why?",
        instruction="Why?",
    )
    assert gap_decision(state, scores, 3, 4)["response_source"] == "target"
    refused = state.model_copy(update={"target_refused": True})
    assert gap_decision(refused, scores, 3, 4)["status"] == "improving"
    at_cap = refused.model_copy(update={"iteration": 4})
    assert gap_decision(at_cap, scores, 3, 4)["status"] == "dropped"


def test_a_cut_or_refusing_target_undecided_at_the_last_iteration_says_so() -> None:
    """A cut target answer is never data (G < −θ with it is undecided); at the last
    iteration a refusing or cut target gets its own reason, not '|gap| <= threshold'."""
    from codeclm.nodes.instruction import gap_decision
    from codeclm.state import InstructionState, JudgeScores

    wins = JudgeScores(strong=2, target=8, gap=-6, strong_first=(2, 8), target_first=(2, 8))
    close = JudgeScores(strong=5, target=6, gap=-1, strong_first=(5, 6), target_first=(5, 6))
    loses = JudgeScores(strong=9, target=2, gap=7, strong_first=(9, 2), target_first=(9, 2))
    state = InstructionState(
        id="m0000-00",
        metadata_id="m0000",
        use_case="support",
        skills=["billing"],
        seed_ids=[],
        candidate_actions=["add a constraint"],
        basic_instruction="I can't log in to the billing portal.",
        instruction="I can't log in to the billing portal.",
    )
    cut = state.model_copy(update={"target_cut": True})
    assert gap_decision(cut, wins, 3, 4)["status"] == "improving", "never kept as data"
    assert gap_decision(cut, loses, 3, 4)["response_source"] == "strong", "the strong answer"
    last = cut.model_copy(update={"iteration": 4})
    reason = gap_decision(last, wins, 3, 4)["reason"]
    assert reason.startswith("target won (gap -6) with an answer cut at its budget"), reason
    assert "target answer cut" not in reason
    assert gap_decision(last, close, 3, 4)["reason"].startswith("|gap| 1 <= threshold 3")
    refusing = state.model_copy(update={"target_refused": True, "iteration": 4})
    for scores in (wins, close):
        reason = gap_decision(refusing, scores, 3, 4)["reason"]
        assert reason.startswith("target refused at the last iteration"), reason

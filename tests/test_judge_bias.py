"""Know your judge (issue #35, item 1): the position flip rate and the length correlation
on every run, checked against values computed by hand from what a biased mock judge was
made to do; shown in run.json, the summary, the report and the dataset card."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

import codeclm
from codeclm.analysis.judge import flipped, ranks, spearman
from codeclm.bench.mock_llm import STRONG_MODEL, MockLLM
from codeclm.bench.mock_model import HARDER
from codeclm.cli import main
from tests.conftest import mock_roles, read_jsonl, run_cli, write_seeds

SEEDS = [f"Explain topic {i} to a new support agent, with one example." for i in range(6)]


def _spearman_by_hand(xs: list[int] | list[float], ys: list[float] | list[int]) -> float:
    """Pearson's r of pandas' average ranks: Spearman's ρ, computed apart from codeclm's."""
    return float(pd.Series(xs).rank().corr(pd.Series(ys).rank()))


def _states(out: Path) -> list[dict[str, object]]:
    """Every judged thread's final state."""
    ids = [
        row["id"] for name in ("dataset", "dropped") for row in read_jsonl(out / f"{name}.jsonl")
    ]
    states = [codeclm.inspect(out, thread).state or {} for thread in ids]
    return [state for state in states if state.get("scores")]


def test_the_flip_rate_is_the_share_of_pairs_a_first_position_bias_turns_around(
    mock_llm: MockLLM, tmp_path: Path
) -> None:
    # Close pairs (6 to 5) turn around when the target is shown first with 3 points for
    # being first; clear ones (9 to 2) do not. Which is which follows the instruction.
    def rule(instruction: str) -> tuple[int, int]:
        return (6, 5) if len(instruction) % 2 else (9, 2)

    mock_llm.judge_rule, mock_llm.first_position_bias = rule, 3
    seeds = write_seeds(tmp_path / "seeds.jsonl", SEEDS)
    result = codeclm.run(seeds, out=tmp_path / "run", instructions=16, metadata=4,
                         **mock_roles(mock_llm))  # fmt: skip
    judge = result.record.judge
    assert judge is not None and judge.self_judged and judge.judge_model == "strong-model"
    states = _states(tmp_path / "run")
    close = [len(str(s["instruction"])) % 2 == 1 for s in states]
    assert 0 < sum(close) < len(close), "both kinds of pair, or the test says nothing"
    assert judge.pairs == judge.untied_pairs == len(states)
    assert judge.position_flip_rate == pytest.approx(sum(close) / len(close))
    # every order preferred the first shown on a close pair, and one of two on a clear one
    assert judge.first_preferred_rate == pytest.approx(
        (2 * sum(close) + len(close) - sum(close)) / (2 * len(close))
    )
    by_use_case: dict[str, list[bool]] = {}
    for state, is_close in zip(states, close, strict=True):
        by_use_case.setdefault(str(state["use_case"]), []).append(is_close)
    assert judge.position_flip_rate_by_use_case == pytest.approx(
        {case: sum(v) / len(v) for case, v in by_use_case.items()}
    )
    on_file = json.loads((tmp_path / "run/run.json").read_text())["judge"]
    assert 0 <= on_file["position_flip_rate"] <= 1
    assert set(on_file["position_flip_rate_by_iteration"]) == {str(s["iteration"]) for s in states}


def test_a_judge_that_rewards_length_shows_a_strong_correlation_and_a_warning(
    mock_llm: MockLLM, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Equal on the merits (6 to 6), 3 points to the longer answer: the gap is length's.
    mock_llm.judge_rule, mock_llm.length_bias = (lambda instruction: (6, 6)), 3
    mock_llm.answer_tokens = 300  # answers of 150 to 450 tokens, each prompt its own
    seeds = write_seeds(tmp_path / "seeds.jsonl", SEEDS)
    out = tmp_path / "run"
    assert run_cli(seeds, mock_llm, out, instructions=24, metadata=4, threshold=1) == 0
    summary = capsys.readouterr().out
    judge = json.loads((out / "run.json").read_text())["judge"]
    states = _states(out)
    lengths = [len(str(s["strong_answer"])) - len(str(s["target_answer"])) for s in states]
    gaps = [float(s["scores"]["gap"]) for s in states]  # type: ignore[index]
    by_hand = _spearman_by_hand(lengths, gaps)
    assert judge["pairs"] == len(states) >= 20
    assert judge["length_correlation"] == pytest.approx(by_hand) and by_hand > 0.5
    assert judge["length_warning"] and judge["position_flip_rate"] == 0
    assert "warning: the judge's score gap follows the answers' length" in summary
    # the report's section and the dataset card say the same
    assert main(["report", str(out), "--out", str(tmp_path / "report")]) == 0
    report = (tmp_path / "report/report.md").read_text()
    assert "The judge: position and length biases" in report
    assert "![judge_position_flips](judge_position_flips.png)" in report
    assert (tmp_path / "report/judge_position_flips.png").stat().st_size > 1000
    assert f"{judge['length_correlation']:+.3f} — strong: the judge may reward length" in report
    assert main(["export", str(out), "--format", "hf", "--out", str(tmp_path / "hf")]) == 0
    card = (tmp_path / "hf/README.md").read_text()
    assert "## The judge" in card and "the strong model judges its own answers" in card


def test_flips_ranks_and_spearman_by_hand() -> None:
    assert flipped((7, 5), (4, 8)) is True and flipped((7, 5), (8, 4)) is False
    assert flipped((5, 5), (4, 8)) is None  # a tie in one order: apart
    assert ranks([10, 20, 20, 5]) == [2.0, 3.5, 3.5, 1.0]
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    xs, ys = [3, 1, 4, 1, 5, 9, 2, 6], [2, 7, 1, 8, 2, 8, 1, 8]
    assert spearman(xs, ys) == pytest.approx(_spearman_by_hand(xs, ys))
    assert spearman([1, 1, 1], [1, 2, 3]) is None and spearman([1, 2], [1, 2]) is None


def test_each_pair_counts_once_with_the_scores_of_its_own_answers(
    mock_llm: MockLLM, tmp_path: Path
) -> None:
    """An improved instruction's old scores go with its old answers: a thread improved, then
    dropped before a judge saw its new answers (the strong model refuses them), counts in
    no judge figure (a stale gap beside new answers would count a pair never judged)."""
    mock_llm.judge_rule = lambda instruction: (9, 2) if len(instruction) % 2 else (5, 5)
    mock_llm.refuse_answers = {STRONG_MODEL: HARDER}  # every improved instruction refused
    seeds = write_seeds(tmp_path / "seeds.jsonl", SEEDS)
    out = tmp_path / "run"
    result = codeclm.run(seeds, out=out, instructions=12, metadata=4, **mock_roles(mock_llm))
    dropped = [r for r in read_jsonl(out / "dropped.jsonl") if r["iteration"] > 1]
    assert dropped, "some threads were improved, then dropped at the answer step"
    assert all(row.get("scores") is None for row in dropped), "no stale scores in the rows"
    judged = _states(out)
    judge = result.record.judge
    assert judge is not None and judge.pairs == len(judged) > 0
    assert {s["status"] for s in judged} == {"kept"}
    assert set(judge.position_flip_rate_by_iteration) == {"1"}


def test_a_judge_that_tied_every_pair_says_so_rather_than_a_rate_of_nothing() -> None:
    from codeclm.analysis.judge import JudgeTally

    tally = JudgeTally()
    for _ in range(4):  # the toy judge: equal scores in one order at least
        tally.add((5, 5), (6, 4), (100, 90))
    figures = tally.figures(self_judged=True, judge_model="toy")
    assert (figures.pairs, figures.untied_pairs, figures.position_flip_rate) == (4, 0, 0.0)
    assert figures.length_correlation == 0.0  # every pair alike: length explains nothing
    assert "each tied in at least one order, so no flip to count" in figures.lines()[0]

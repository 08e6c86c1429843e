"""The paper's judges, pinned (issue #21, point 2).

The filter: the Vicuna-style pairwise comparison without its explanation: helpfulness,
relevance, accuracy and level of detail, one line with the two scores, run in both orders
and averaged (the orders: ``test_gap_rule.py``). The evaluation: the same comparison
*with* an explanation after the line, and a verdict only when both orders agree; a
one-line warning when the strong model judges its own answers. Self-Rubrics are zero-shot
and domain-specific; improve asks for a reasonable, self-consistent instruction.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from codeclm.bench.mock_llm import MockLLM
from codeclm.cli import main
from codeclm.llm.parsing import UnparseableReply
from codeclm.nodes.pairs import parse_score_line
from codeclm.prompts import load_prompts
from tests.conftest import read_jsonl

CRITERIA = ("helpfulness", "relevance", "accuracy", "level of detail")


def test_the_filter_judge_asks_for_one_line_of_two_scores_and_nothing_else() -> None:
    prompt = load_prompts().render("judge", instruction="Q?", answer_1="A1", answer_2="A2")
    lowered = " ".join(prompt.lower().split())
    assert all(criterion in lowered for criterion in CRITERIA)
    assert "single line containing only the two scores" in lowered
    assert "explain" not in lowered and "explanation" not in lowered
    assert "length" not in lowered, "no clause the paper does not have"
    assert prompt.index("A1") < prompt.index("A2")


def test_the_evaluation_judge_asks_for_the_line_then_an_explanation() -> None:
    prompt = load_prompts().render("judge_eval", instruction="Q?", answer_1="A1", answer_2="A2")
    lowered = " ".join(prompt.lower().split())
    assert all(criterion in lowered for criterion in CRITERIA)
    assert "first output a single line containing only the two scores" in lowered
    assert "explain your evaluation" in lowered
    assert "order in which the responses were presented" in lowered


@pytest.mark.parametrize(
    ("reply", "scores"),
    [("8 3", (8, 3)), ("8 3\nAssistant 1 is better because…", (8, 3)), ("7.5 6", (7.5, 6))],
)
def test_a_judge_reply_is_its_line_of_two_scores(reply: str, scores: tuple[float, float]) -> None:
    assert parse_score_line(reply) == scores


@pytest.mark.parametrize("reply", ["8", "Assistant 1 is better.", "8 3 9", "0 11"])
def test_a_reply_without_a_line_of_two_scores_from_1_to_10_is_unparseable(reply: str) -> None:
    with pytest.raises(UnparseableReply):
        parse_score_line(reply)


def test_eval_judges_with_an_explanation_and_warns_when_the_strong_model_judges(
    mock_llm: MockLLM,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bench = tmp_path / "bench.jsonl"
    bench.write_text('{"id": "q1", "instruction": "Name a planet."}\n')
    roles = [
        *("--strong-model", "strong-model", "--strong-base-url", mock_llm.base_url),
        *("--target-model", "target-model", "--target-base-url", mock_llm.base_url),
    ]
    with caplog.at_level(logging.WARNING, logger="codeclm"):
        args = ["eval", str(bench), "--out", str(tmp_path / "e1"), *roles, "--self-judge"]
        assert main([*args, "--quiet"]) == 0
    warned = [r.getMessage() for r in caplog.records if "judges its own answers" in r.getMessage()]
    assert len(warned) == 1 and "third model" in warned[0]
    judged = mock_llm.calls("PairwiseScores")
    assert len(judged) == 2 and all("explain your evaluation" in c.prompt for c in judged)
    assert all(len(c.reply.splitlines()) > 1 for c in judged), "the line, then why"
    (row,) = read_jsonl(tmp_path / "e1" / "judgments.jsonl")
    assert row["outcome"] == "loss"  # the strong answer won in both orders
    caplog.clear()
    third = ["--judge-model", "strong-model", "--judge-base-url", mock_llm.base_url + "/"]
    with caplog.at_level(logging.WARNING, logger="codeclm"):
        args = ["eval", str(bench), "--out", str(tmp_path / "e2"), *roles, *third, "--quiet"]
        assert main(args) == 0
    assert not [r for r in caplog.records if "judges its own answers" in r.getMessage()]


def test_self_rubrics_are_zero_shot_and_improve_asks_for_self_consistent() -> None:
    prompts = load_prompts()
    rubrics = prompts.render("rubrics", k=4, use_case="tax filing", skills="receipts", avoid="")
    assert "specific to this domain" in rubrics and "for example" not in rubrics.lower()
    for generic in ("SWOT", "O(n log n)", "table", "multi-step reasoning"):
        assert generic not in rubrics
    improve = prompts.render(
        "improve", instruction="I", action="A", use_case="tax filing", skills="receipts"
    )
    assert "reasonable and self-consistent" in improve and "self-contained" not in improve

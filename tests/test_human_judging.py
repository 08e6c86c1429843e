"""People judge in the judge's blind protocol (issue #35, items 2 and 3): ``codeclm judge
DIR --sample N --out F`` gives nothing away, ``--import F`` refuses a bad line in one line
and records agreement, κ and the gaps' correlation, checked against values by hand."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import codeclm
from codeclm.analysis.judge import cohen_kappa, decision
from codeclm.bench.mock_llm import MockLLM
from codeclm.cli import main
from tests.conftest import mock_roles, read_jsonl, write_seeds
from tests.test_eval import eval_args, scripted, write_bench

SEEDS = [f"Explain topic {i} to a new support agent, with one example." for i in range(6)]
FIELDS = {"key", "instruction", "answer_a", "answer_b", "score_a", "score_b", "judge"}


@pytest.fixture
def run_dir(mock_llm: MockLLM, tmp_path: Path) -> Path:
    seeds = write_seeds(tmp_path / "seeds.jsonl", SEEDS)
    codeclm.run(seeds, out=tmp_path / "run", instructions=16, metadata=4, **mock_roles(mock_llm))
    return tmp_path / "run"


def _fill(lines: list[dict[str, Any]], person: str, scores: list[tuple[int, int]]) -> str:
    """The sample as a person filled it in: (score for the strong, for the target) each."""
    out = []
    for line, (strong, target) in zip(lines, scores, strict=True):
        strong_is_a = line["answer_a"].startswith("STRONG ANSWER")  # the mock's; people's eyes
        a, b = (strong, target) if strong_is_a else (target, strong)
        out.append({**line, "score_a": a, "score_b": b, "judge": person})
    return "".join(json.dumps(line) + "\n" for line in out)


def test_a_blind_sample_reveals_nothing_and_people_agree_as_computed_by_hand(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sample = tmp_path / "sample.jsonl"
    assert main(["judge", str(run_dir), "--sample", "10", "--out", str(sample)]) == 0
    lines = read_jsonl(sample)
    assert len(lines) == 10 and all(set(line) == FIELDS for line in lines)
    rows = {r["id"]: r for n in ("dataset", "dropped") for r in read_jsonl(run_dir / f"{n}.jsonl")}
    text = sample.read_text()
    assert not any(thread in text for thread in rows), "no thread id"
    assert "strong-model" not in text and "target-model" not in text, "no model name"
    assert all(line["score_a"] is None and line["judge"] == "" for line in lines)
    firsts = {line["answer_a"].startswith("STRONG ANSWER") for line in lines}
    assert firsts == {True, False}, "the strong answer is a in some lines, b in others"
    # the same seed gives the same sample; the keys stay
    again = tmp_path / "again.jsonl"
    assert main(["judge", str(run_dir), "--sample", "10", "--out", str(again)]) == 0
    assert again.read_text() == text

    # Two people; one scores the strong answer far ahead everywhere, one calls half a tie.
    ann = [(9, 2)] * 10
    bob = [(9, 2)] * 5 + [(5, 5)] * 5
    (tmp_path / "ann.jsonl").write_text(_fill(lines, "ann", ann))
    (tmp_path / "bob.jsonl").write_text(_fill(lines, "bob", bob))
    for person in ("ann", "bob"):
        assert main(["judge", str(run_dir), "--import", str(tmp_path / f"{person}.jsonl")]) == 0
    human = json.loads((run_dir / "run.json").read_text())["judge"]["human"]
    # By hand: the judge's decision per pair from its gap at θ (the run's threshold)
    threshold = json.loads((run_dir / "run.json").read_text())["config"]["threshold"]
    keys = json.loads((run_dir / "judge_sample.json").read_text())["keys"]
    ours = [decision(keys[line["key"]]["gap"], threshold) for line in lines] * 2
    theirs = [decision(s - t, threshold) for s, t in ann + bob]
    agree = sum(a == b for a, b in zip(theirs, ours, strict=True)) / 20
    observed_labels = set(theirs) | set(ours)
    expected = sum((theirs.count(c) / 20) * (ours.count(c) / 20) for c in observed_labels)
    assert (human["items"], human["people"], human["ratings"]) == (10, 2, 20)
    assert human["decision_agreement"] == pytest.approx(agree)
    assert expected < 1 and human["kappa"] == pytest.approx((agree - expected) / (1 - expected))
    ours_gaps = [keys[line["key"]]["gap"] for line in lines] * 2
    theirs_gaps = [float(s - t) for s, t in ann + bob]
    by_hand = pd.Series(theirs_gaps).rank().corr(pd.Series(ours_gaps).rank())
    if by_hand == by_hand:  # (NaN when one side is constant: then codeclm says None)
        assert human["gap_correlation"] == pytest.approx(by_hand)
    else:
        assert human["gap_correlation"] is None
    assert "people: 2 judged 10 pairs (20 ratings)" in capsys.readouterr().out
    # the report's judge section and the dataset card say it, with what it rests on
    assert main(["report", str(run_dir), "--out", str(tmp_path / "report")]) == 0
    assert (
        "people: 2 judged 10 pairs blind (20 ratings" in (tmp_path / "report/report.md").read_text()
    )
    assert main(["export", str(run_dir), "--format", "hf", "--out", str(tmp_path / "hf")]) == 0
    assert "people: 2 judged 10 pairs (20 ratings)" in (tmp_path / "hf/README.md").read_text()

    # Importing a person's file again replaces their ratings; a later run keeps them
    assert main(["judge", str(run_dir), "--import", str(tmp_path / "bob.jsonl")]) == 0
    assert json.loads((run_dir / "run.json").read_text())["judge"]["human"]["ratings"] == 20
    codeclm.resume(run_dir)
    assert json.loads((run_dir / "run.json").read_text())["judge"]["human"] == human


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ({"key": "0123456789abcdef"}, "key '0123456789abcdef' is not one of this folder's sample"),
        ({"score_a": 11}, "score_a 11 is not a score from 1 to 10"),
        ({"score_b": "7"}, "score_b '7' is not a score from 1 to 10"),
        ({"judge": ""}, 'no judge\'s name (the "judge" field)'),
        ({"key": ["not", "a", "key"]}, "key ['not', 'a', 'key'] is not one of this folder's"),
    ],
)
def test_a_bad_line_is_refused_in_one_line_naming_it(
    run_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    change: dict[str, Any],
    said: str,
) -> None:
    sample = tmp_path / "sample.jsonl"
    assert main(["judge", str(run_dir), "--sample", "3", "--out", str(sample)]) == 0
    lines = [{**line, "score_a": 7, "score_b": 3, "judge": "ann"} for line in read_jsonl(sample)]
    lines[1] = {**lines[1], **change}
    sample.write_text("".join(json.dumps(line) + "\n" for line in lines))
    capsys.readouterr()
    assert main(["judge", str(run_dir), "--import", str(sample)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{sample}:2: {said}" in err
    assert not (run_dir / "judge_people.jsonl").exists(), "nothing imported"


def test_what_a_person_may_write_is_taken(run_dir: Path, tmp_path: Path) -> None:
    """The refusals above touch nothing a person may write: scores at the ends of the scale
    and half points, a name with spaces and accents, JSON floats, lines left blank."""
    sample = tmp_path / "sample.jsonl"
    assert main(["judge", str(run_dir), "--sample", "4", "--out", str(sample)]) == 0
    lines = read_jsonl(sample)
    written = [(1, 10), (10.0, 1), (7.5, 6.5)]
    filled = [
        {**line, "score_a": a, "score_b": b, "judge": "  Zoë van Dijk "}
        for line, (a, b) in zip(lines, written, strict=False)
    ]
    filled.append(lines[3])  # not scored yet: skipped, not refused
    sample.write_text("".join(json.dumps(line) + "\n" for line in filled))
    assert main(["judge", str(run_dir), "--import", str(sample)]) == 0
    taken = read_jsonl(run_dir / "judge_people.jsonl")
    assert [(r["score_a"], r["score_b"]) for r in taken] == written
    assert {r["judge"] for r in taken} == {"Zoë van Dijk"}
    human = json.loads((run_dir / "run.json").read_text())["judge"]["human"]
    assert (human["ratings"], human["people"]) == (3, 1)


def test_an_evaluation_gets_the_crr_by_people_beside_the_judges(
    mock_llm: MockLLM, tmp_path: Path
) -> None:
    mock_llm.judge_rule, mock_llm.first_position_bias = scripted, 3
    bench = write_bench(tmp_path / "bench.jsonl")
    out = tmp_path / "eval"
    assert main(eval_args(mock_llm, bench, out)) == 0
    outcomes = {r["id"]: r["outcome"] for r in read_jsonl(out / "judgments.jsonl")}
    assert codeclm.api.judge_sample(out, 8, tmp_path / "s.jsonl") == 8
    lines = read_jsonl(tmp_path / "s.jsonl")
    keys = json.loads((out / "judge_sample.json").read_text())["keys"]
    # a person who prefers the strong answer on the first three lines, the target's on the
    # next three, and calls the last two a tie: CRR by people (3 + 2) / 8
    scores = [(8, 3)] * 3 + [(3, 8)] * 3 + [(5, 5)] * 2
    (tmp_path / "s.jsonl").write_text(_fill(lines, "ann", scores))
    record = codeclm.api.judge_import(out, tmp_path / "s.jsonl")
    assert record.judge is not None and record.judge.human is not None
    human = record.judge.human
    judge_outcomes = [outcomes[keys[line["key"]]["id"]] for line in lines]
    assert human.crr_people == pytest.approx(5 / 8)
    assert human.crr_judge == pytest.approx(sum(o != "loss" for o in judge_outcomes) / 8)
    theirs = ["loss"] * 3 + ["win"] * 3 + ["tie"] * 2
    agree = sum(a == b for a, b in zip(theirs, judge_outcomes, strict=True)) / 8
    assert human.decision_agreement == pytest.approx(agree)


def test_kappa_by_hand() -> None:
    # 10 items, two raters: the textbook 2x2 (yes/no) example, po 0.7, pe 0.5: κ 0.4
    first = ["y"] * 5 + ["n"] * 5
    second = ["y"] * 4 + ["n"] + ["y"] * 2 + ["n"] * 3
    assert cohen_kappa(first, second) == pytest.approx(0.4)
    assert cohen_kappa(["y", "y"], ["y", "y"]) is None  # chance alone agrees: no κ
    assert cohen_kappa([], []) is None


def test_which_answer_is_a_comes_from_the_folders_secret_not_the_seed(run_dir: Path) -> None:
    def sides() -> tuple[set[str], str]:
        lines = codeclm.api.judge_sample(run_dir, 100, run_dir.parent / "s.jsonl")
        assert lines >= 12
        read = read_jsonl(run_dir.parent / "s.jsonl")
        return {r["key"] for r in read}, "".join(
            "a" if r["answer_a"].startswith("STRONG ANSWER") else "b" for r in read
        )

    keys, first = sides()
    assert sides() == (keys, first), "the same folder gives the same keys and sides again"
    (run_dir / "judge_sample.json").unlink()  # another folder's secret
    other_keys, other = sides()
    assert not keys & other_keys and other != first


def test_damaged_or_old_judging_files_never_break_a_run_and_are_said_in_one_line(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sample = tmp_path / "sample.jsonl"
    assert main(["judge", str(run_dir), "--sample", "4", "--out", str(sample)]) == 0
    lines = read_jsonl(sample)
    sample.write_text(_fill(lines, "ann", [(8, 3)] * 4))
    # a record from before the judge's figures: people's are recorded all the same
    record = json.loads((run_dir / "run.json").read_text())
    del record["judge"]
    (run_dir / "run.json").write_text(json.dumps(record))
    capsys.readouterr()
    assert main(["judge", str(run_dir), "--import", str(sample)]) == 0
    assert "people: 1 judged 4 pairs (4 ratings)" in capsys.readouterr().out
    assert json.loads((run_dir / "run.json").read_text())["judge"]["human"]["ratings"] == 4
    # a damaged scores file: the import says where in one line; a run goes on without them
    with (run_dir / "judge_people.jsonl").open("a") as people:
        people.write("{not json\n")
    assert main(["judge", str(run_dir), "--import", str(sample)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "judge_people.jsonl:5: not a score line" in err
    assert codeclm.resume(run_dir).record.counts.instructions == 16  # written, no traceback
    assert json.loads((run_dir / "run.json").read_text())["counts"]["instructions"] == 16
    # flags that do not go together, and a sample written over the folder's own files
    assert main(["judge", str(run_dir), "--import", str(sample), "--seed", "3"]) == 2
    own = run_dir / "judge_sample.json"
    assert main(["judge", str(run_dir), "--sample", "2", "--out", str(own)]) == 2
    assert "outside the run's folder" in capsys.readouterr().err

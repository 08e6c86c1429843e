"""``codeclm split`` and ``codeclm eval``: the CRR arithmetic on a scripted judge, the
both-orders rule, per-category results, every judged pair written, and resuming a kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from codeclm.bench.mock_llm import STRONG_MODEL, TARGET_MODEL, MockLLM
from codeclm.cli import main
from codeclm.nodes.benchmark_item import verdict
from codeclm.state import JudgeScores
from tests.conftest import BENCHMARKS, read_jsonl

#: Scripted judge: (strong, target) by instruction. With a first-position bias of 3 points:
#:   WIN   (2, 7): the target is ahead in both orders          -> win
#:   SPLIT (4, 5): each answer wins when shown first           -> tie (its mean favours the
#:                 target, 6.5 to 5.5: averaging alone would call it a win)
#:   EVEN  (5, 5): the first shown wins each time              -> tie
#:   LOSS  (8, 2): the strong answer is ahead in both orders   -> loss
SCRIPT = {"WIN": (2, 7), "SPLIT": (4, 5), "EVEN": (5, 5), "LOSS": (8, 2)}
ITEMS = [
    ("a1", "alpha", "WIN"),
    ("a2", "alpha", "SPLIT"),
    ("a3", "alpha", "LOSS"),
    ("b1", "beta", "WIN"),
    ("b2", "beta", "WIN"),
    ("b3", "beta", "EVEN"),
    ("b4", "beta", "LOSS"),
    ("c1", "gamma", "LOSS"),
]


def scripted(instruction: str) -> tuple[int, int]:
    return SCRIPT[instruction.split(":")[0]]


@pytest.fixture
def bench(tmp_path: Path) -> Path:
    return write_bench(tmp_path / "bench.jsonl")


def write_bench(path: Path) -> Path:
    """The scripted benchmark (``ITEMS``) as a JSONL file."""
    path.write_text(
        "".join(
            json.dumps({"id": i, "instruction": f"{kind}: question {i}", "category": c}) + "\n"
            for i, c, kind in ITEMS
        )
    )
    return path


def eval_args(mock: MockLLM, bench: Path, out: Path, *extra: str) -> list[str]:
    return [
        "eval",
        str(bench),
        "--out",
        str(out),
        "--target-model",
        TARGET_MODEL,
        "--target-base-url",
        mock.base_url,
        "--strong-model",
        STRONG_MODEL,
        "--strong-base-url",
        mock.base_url,
        "--judge-model",
        "judge-model",
        "--judge-base-url",
        mock.base_url,
        "--quiet",
        *extra,
    ]


def test_verdict_needs_both_orders() -> None:
    def scores(strong_first: tuple[int, int], target_first: tuple[int, int]) -> JudgeScores:
        return JudgeScores(
            strong=0, target=0, gap=0, strong_first=strong_first, target_first=target_first
        )

    assert verdict(scores((3, 8), (2, 9))) == "win"
    assert verdict(scores((8, 3), (9, 2))) == "loss"
    assert verdict(scores((7, 5), (4, 8))) == "tie"  # each order prefers the first shown
    assert verdict(scores((5, 5), (4, 8))) == "tie"  # one order even
    assert verdict(scores((5, 5), (5, 5))) == "tie"


def test_eval_crr_on_a_scripted_judge(mock_llm: MockLLM, bench: Path, tmp_path: Path) -> None:
    mock_llm.judge_rule = scripted
    mock_llm.first_position_bias = 3
    out = tmp_path / "eval"
    assert main(eval_args(mock_llm, bench, out)) == 0

    record = json.loads((out / "eval.json").read_text())
    result = record["result"]
    assert (result["wins"], result["ties"], result["losses"], result["total"]) == (3, 2, 3, 8)
    assert result["crr"] == pytest.approx(5 / 8)
    by_category = {c: (t["wins"], t["ties"], t["losses"]) for c, t in result["by_category"].items()}
    assert by_category == {"alpha": (1, 1, 1), "beta": (2, 1, 1), "gamma": (0, 0, 1)}
    assert result["by_category"]["gamma"]["crr"] == 0
    assert result["by_category"]["beta"]["crr"] == pytest.approx(3 / 4)
    # The judge's figures, by hand: SPLIT and EVEN flip with the order (2 of 8 items); the
    # first shown is preferred in 1 order of 2 for WIN and LOSS, in both for SPLIT and
    # EVEN: (3 + 2 + 2 + 3) of 16; every answer pair differs in length alike: ρ is 0.
    judge = record["judge"]
    assert judge["judge_model"] == "judge-model" and not judge["self_judged"]
    assert (judge["pairs"], judge["untied_pairs"]) == (8, 8)
    assert judge["position_flip_rate"] == pytest.approx(2 / 8)
    assert judge["position_flip_rate_by_use_case"] == pytest.approx(
        {"alpha": 1 / 3, "beta": 1 / 4, "gamma": 0.0}
    )
    assert judge["first_preferred_rate"] == pytest.approx(10 / 16)
    assert judge["length_correlation"] == 0 and not judge["length_warning"]

    judgments = {row["id"]: row for row in read_jsonl(out / "judgments.jsonl")}
    assert set(judgments) == {i for i, _, _ in ITEMS}
    split = judgments["a2"]
    assert split["outcome"] == "tie"
    assert split["scores_strong_first"] == [7, 5] and split["scores_target_first"] == [4, 8]
    assert split["mean_scores"]["target"] > split["mean_scores"]["strong"]
    assert split["target_answer"].startswith("TARGET ANSWER")

    # Every judge call went to the judge, at temperature 0, twice per item (both orders).
    judge_calls = mock_llm.calls(schema="PairwiseScores")
    assert len(judge_calls) == 2 * len(ITEMS)
    assert {c.model for c in judge_calls} == {"judge-model"}
    assert {c.temperature for c in judge_calls} == {0}
    answers = [c for c in mock_llm.calls() if c.schema is None]
    assert sorted(c.model for c in answers) == sorted([STRONG_MODEL, TARGET_MODEL] * len(ITEMS))


def test_eval_needs_a_named_judge_or_self_judge(
    mock_llm: MockLLM, bench: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The paper's CRR is judged by a third model: no judge named is refused in one line
    naming both ways out; ``--self-judge`` runs, recorded and said with the result."""
    args = eval_args(mock_llm, bench, tmp_path / "eval", "--limit", "2")
    cut = args.index("--judge-model")
    del args[cut : cut + 4]  # no judge flags
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--judge-model" in err and "--self-judge" in err, err
    assert not mock_llm.calls() and not (tmp_path / "eval" / "eval.json").exists()
    assert main([*args, "--self-judge", "--judge-model", "x"]) == 2, "one judge, not both"
    assert "choose one judge" in capsys.readouterr().err
    assert main([*args, "--self-judge"]) == 0
    said = capsys.readouterr().out
    assert "judged by strong-model, the strong model itself" in " ".join(said.split())
    assert {c.model for c in mock_llm.calls(schema="PairwiseScores")} == {STRONG_MODEL}
    record = json.loads((tmp_path / "eval" / "eval.json").read_text())
    assert record["result"]["total"] == 2 and record["self_judged"] is True
    third = eval_args(mock_llm, bench, tmp_path / "third", "--limit", "2")
    assert main(third) == 0
    assert json.loads((tmp_path / "third" / "eval.json").read_text())["self_judged"] is False


def test_eval_killed_midway_resumes_without_redoing_finished_items(
    mock_llm: MockLLM, tmp_path: Path
) -> None:
    """A 252-item evaluation killed at item ~200 goes on from there."""
    bench = synthetic_benchmark(tmp_path / "bench252.jsonl", 252)
    out = tmp_path / "eval"
    args = [sys.executable, "-m", "codeclm", *eval_args(mock_llm, bench, out, "--concurrency", "4")]
    mock_llm.stop_at = 200 * 4  # 4 calls per item: two answers, two judge orders
    proc = subprocess.Popen(args, stderr=subprocess.PIPE, text=True, env=os.environ.copy())
    mock_llm.stop_pid = proc.pid
    proc.communicate(timeout=300)
    assert proc.returncode == -signal.SIGKILL
    calls_before = mock_llm.received
    mock_llm.stop_at = None

    done = subprocess.run(args, capture_output=True, text=True, env=os.environ.copy(), timeout=300)
    assert done.returncode == 0, done.stderr
    record = json.loads((out / "eval.json").read_text())
    assert record["result"]["total"] == 252 and record["failed"] == 0
    rows = read_jsonl(out / "judgments.jsonl")
    assert len(rows) == len({r["id"] for r in rows}) == 252
    resumed_calls = mock_llm.received - calls_before
    # Only the ~52 items left, and the few calls in flight at the kill, were sent again.
    assert resumed_calls <= (252 - 200) * 4 + 4 * 4, resumed_calls


def test_eval_refuses_other_settings_in_the_same_folder(
    mock_llm: MockLLM, bench: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "eval"
    assert main(eval_args(mock_llm, bench, out, "--limit", "1")) == 0
    other = eval_args(mock_llm, bench, out)
    other[other.index("judge-model")] = "another-judge"
    assert main(other) == 2
    assert "different settings" in capsys.readouterr().err


def test_an_evaluation_folder_in_use_is_refused_in_one_line(
    mock_llm: MockLLM, bench: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """As a run's: a second process on an evaluation's folder is refused, naming the one
    that holds it; once it lets go, the evaluation runs."""
    from codeclm.handle.folder import folder_lock

    out = tmp_path / "eval"
    with folder_lock(out):  # (the holder: this test's process)
        assert main(eval_args(mock_llm, bench, out, "--limit", "1")) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "in use" in err and f"pid {os.getpid()}" in err
    assert main(eval_args(mock_llm, bench, out, "--limit", "1")) == 0


def test_eval_bad_benchmark_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x", "instruction": "fine"}\n{"id": "y"}\n')
    assert main(["eval", str(bad), "--out", str(tmp_path / "e"), "--self-judge"]) == 2
    err = capsys.readouterr().err
    assert err.strip().endswith("bad.jsonl:2: no 'instruction' text") and len(err.splitlines()) == 1


def synthetic_benchmark(path: Path, items: int) -> Path:
    """A benchmark in the normalized schema, so these tests need no ../shared checkout."""
    categories = ["writing", "coding", "math", "roleplay", "fermi", "rare"]
    path.write_text(
        "".join(
            json.dumps(
                {
                    "id": f"syn-{i}",
                    "instruction": f"Synthetic question number {i}?",
                    "category": categories[0 if i > items - 3 else i % len(categories)],
                }
            )
            + "\n"
            for i in range(items)
        )
    )
    return path


def _benchmark(name: str, tmp_path: Path) -> Path:
    if name == "synthetic":
        return synthetic_benchmark(tmp_path / "synthetic.jsonl", 97)
    bench = BENCHMARKS / f"{name}.jsonl"
    if not bench.is_file():
        pytest.skip("../shared/benchmarks is not beside this checkout")
    return bench


@pytest.mark.parametrize(
    "name", ["synthetic", "vicuna", "evol_instruct", "self_instruct", "mt_bench"]
)
def test_split_is_reproducible_stratified_and_complete(name: str, tmp_path: Path) -> None:
    bench = _benchmark(name, tmp_path)
    lines = [line for line in bench.read_text().splitlines() if line.strip()]
    args = ["split", str(bench), "--seed-fraction", "0.2", "--seed", "7", "--out"]
    assert main([*args, str(tmp_path / "one")]) == 0
    assert main([*args, str(tmp_path / "two")]) == 0
    for part in ("seeds.jsonl", "eval.jsonl"):
        assert (tmp_path / "one" / part).read_bytes() == (tmp_path / "two" / part).read_bytes()
    seeds = (tmp_path / "one" / "seeds.jsonl").read_text().splitlines()
    rest = (tmp_path / "one" / "eval.jsonl").read_text().splitlines()
    assert sorted(seeds + rest) == sorted(lines) and not set(seeds) & set(rest)
    assert [line for line in lines if line in set(rest)] == rest  # in the original order

    def per_category(rows: list[str]) -> Counter[str]:
        return Counter(json.loads(row).get("category") or "uncategorized" for row in rows)

    for category, total in per_category(lines).items():  # each category at the fraction
        assert per_category(seeds)[category] == round(total * 0.2), category
    assert main([*args[:-2], "8", "--out", str(tmp_path / "three")]) == 0
    assert (tmp_path / "three" / "seeds.jsonl").read_text().splitlines() != seeds


def test_split_rejects_a_fraction_outside_0_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bench = synthetic_benchmark(tmp_path / "bench.jsonl", 10)
    out = str(tmp_path / "split")
    assert main(["split", str(bench), "--seed-fraction", "1.5", "--out", out]) == 2
    assert "--seed-fraction must be between 0 and 1" in capsys.readouterr().err


def test_judge_inherits_the_strong_settings_unless_it_names_its_own_model() -> None:
    from codeclm.config import EvalConfig

    strong = {"model": "big", "base_url": "http://big/v1", "max_tokens": 4096}
    inherited = EvalConfig.model_validate(
        {"strong": strong, "judge": {"max_tokens": 64}, "self_judge": True}
    )
    assert (inherited.judge.model, inherited.judge.base_url) == ("big", "http://big/v1")
    assert inherited.judge.max_tokens == 64
    own = EvalConfig.model_validate({"strong": strong, "judge": {"model": "judge"}})
    assert (own.judge.model, own.judge.base_url, own.judge.max_tokens) == ("judge", None, 2048)


def test_a_run_and_an_evaluation_never_share_a_folder(
    mock_llm: MockLLM, bench: Path, seeds_file: Path, tmp_path: Path
) -> None:
    from tests.conftest import run_cli

    out = tmp_path / "eval"
    assert main(eval_args(mock_llm, bench, out, "--limit", "1")) == 0
    assert run_cli(seeds_file, mock_llm, out, instructions=2, metadata=2) == 2
    assert run_cli(seeds_file, mock_llm, tmp_path / "run", instructions=2, metadata=2) == 0
    assert main(eval_args(mock_llm, bench, tmp_path / "run")) == 2


def test_eval_judges_each_models_first_answer_and_counts_refusals_and_cut_answers(
    mock_llm: MockLLM, bench: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Best-of-three would hide a target that over-refuses: eval asks each model once, at
    its budget; a refusal is judged as the answer it is, a cut answer as it stands."""
    mock_llm.judge_rule = scripted
    mock_llm.refuse_answers = {TARGET_MODEL: "WIN"}  # the target refuses three items
    mock_llm.long_answer_roles = (STRONG_MODEL,)
    mock_llm.long_answer_rate = 1.0  # every strong answer runs past its budget
    out = tmp_path / "eval"
    assert main([*eval_args(mock_llm, bench, out), "--quiet"]) == 0
    answers = [c for c in mock_llm.calls() if c.schema is None]
    assert len(answers) == 2 * len(ITEMS), "one ask per model and item"
    assert {c.max_tokens for c in answers} == {2048}, "no larger budget"
    record = json.loads((out / "eval.json").read_text())
    assert record["refused"] == {"strong": 0, "target": 3}
    assert record["cut"] == {"strong": len(ITEMS), "target": 0}
    assert record["result"]["total"] == len(ITEMS)
    rows = {r["id"]: r for r in read_jsonl(out / "judgments.jsonl")}
    assert rows["a1"]["target_answer"].startswith("I'm sorry"), "judged as the answer it is"
    said = " ".join(capsys.readouterr().out.split())
    assert "target refused 3, cut 0; strong refused 0, cut 8" in said


def test_eval_refuses_more_turns_than_the_benchmark_has(
    mock_llm: MockLLM, bench: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*eval_args(mock_llm, bench, tmp_path / "e"), "--turns", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--turns 2" in err and "at most 1" in err, err


def test_an_evaluation_that_asked_again_is_not_mixed_with_first_answers(
    mock_llm: MockLLM, bench: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An evaluation made before first answers (it asked again while a model refused, and
    a cut answer with a larger budget) is refused, naming the setting, not mixed in."""
    out = tmp_path / "eval"
    assert main(eval_args(mock_llm, bench, out, "--limit", "2")) == 0
    record = json.loads((out / "eval.json").read_text())
    assert record["fingerprint"]["settings"]["answers"] == "first"
    del record["fingerprint"]["settings"]["answers"]  # as the previous version wrote it
    (out / "eval.json").write_text(json.dumps(record))
    capsys.readouterr()
    assert main(eval_args(mock_llm, bench, out)) == 2
    err = capsys.readouterr().err
    assert "different settings" in err and "answers" in err, err

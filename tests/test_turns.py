"""Conversations (``--turns``): written, answered, judged and filtered turn by turn, and
everything downstream (rows, export, resume, report, eval) keeps every turn."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from codeclm.bench.mock_llm import (
    REFUSAL,
    STRONG_MODEL,
    STRONG_PREFIX,
    TARGET_MODEL,
    TARGET_PREFIX,
    MockLLM,
    mixed_rule,
    paper_rule,
)
from codeclm.cli import main
from codeclm.config import RunConfig
from codeclm.nodes.benchmark_item import verdict
from codeclm.nodes.pairs import mean_scores
from codeclm.state import JudgeScores
from tests.conftest import mock_args, read_jsonl, realistic, run_cli

SETTINGS = {"instructions": 8, "metadata": 6, "concurrency": 4, "seed": 5, "backoff": 0}
PREFIX = {STRONG_MODEL: STRONG_PREFIX, TARGET_MODEL: TARGET_PREFIX}
MT_BENCH = Path(__file__).resolve().parents[2] / "shared" / "benchmarks" / "mt_bench.jsonl"


@pytest.fixture
def mt_bench(tmp_path: Path) -> Path:
    """MT-Bench (``../shared/benchmarks``), or, in a checkout without it, items of its
    shape: an instruction, a follow-up and a category."""
    if MT_BENCH.is_file():
        return MT_BENCH
    path = tmp_path / "mt_bench.jsonl"
    lines = [
        {"id": f"mt-{i}", "instruction": f"Task {i}: write about topic {i}.",
         "followup": f"Now rewrite it for reader {i}.", "category": ["writing", "math"][i % 2]}
        for i in range(12)
    ]  # fmt: skip
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def _roles(row: dict[str, Any]) -> list[str]:
    return [message["role"] for message in row["messages"]]


def _later_turn_judges(mock: MockLLM) -> list[str]:
    return [r.prompt for r in mock.calls("PairwiseScores") if "Conversation with User]" in r.prompt]


def _first_answer_in(prompt: str, position: int) -> str:
    """The last answer of the conversation shown at ``position`` (1 or 2) in a judge prompt."""
    block = prompt.split(f"[The Start of Assistant {position}'s Conversation with User]\n")[1]
    return block.split(f"### Assistant {position}:\n")[-1]


def test_two_turns_each_model_answers_after_its_own_answer_and_the_judge_sees_both_orders(
    mock_llm: MockLLM, seeds_file: Path, tmp_path: Path
) -> None:
    assert run_cli(seeds_file, mock_llm, tmp_path / "out", turns=2, **SETTINGS) == 0
    rows = read_jsonl(tmp_path / "out" / "dataset.jsonl")
    assert len(rows) == SETTINGS["instructions"]
    for row in rows:
        assert _roles(row) == ["user", "assistant", "user", "assistant"]
        assert len(row["turn_scores"]) == 2 and row["scores"]["gap"] > 0
        assert row["messages"][0]["content"] == row["instruction"]
        assert row["messages"][2]["content"].startswith("Turn 2 follow-up")

    # Each model answered turn 2 after the conversation with its own turn-1 answer in it.
    second = [r for r in mock_llm.calls(schema=None) if r.history]
    assert {r.model for r in second} == {STRONG_MODEL, TARGET_MODEL}
    for request in second:
        (user, first_prompt), (assistant, own_answer) = request.history
        assert (user, assistant) == ("user", "assistant")
        assert own_answer.startswith(PREFIX[request.model]), "its own answer, not the other's"
        assert own_answer == f"{PREFIX[request.model]}{first_prompt.strip()}"
    for row in rows:  # both models were asked this row's second turn
        asked = {r.model for r in second if r.prompt.strip() == row["messages"][2]["content"]}
        assert asked == {STRONG_MODEL, TARGET_MODEL}

    # The judge saw both conversations at turn 2, in both orders.
    judges = _later_turn_judges(mock_llm)
    assert len(judges) == 2 * len(rows)
    for row in rows:
        mine = [p for p in judges if f"[Question]\n{row['messages'][2]['content']}\n" in p]
        firsts = sorted(_first_answer_in(p, 1)[: len(STRONG_PREFIX)] for p in mine)
        assert firsts == sorted([STRONG_PREFIX, TARGET_PREFIX])
        for prompt in mine:  # the other conversation is the other model's, whole
            assert _first_answer_in(prompt, 2)[:6] != _first_answer_in(prompt, 1)[:6]


def test_turns_1_sends_exactly_the_single_turn_requests(
    mock_llm: MockLLM, seeds_file: Path, tmp_path: Path
) -> None:
    """--turns 1 is the run as it was: no follow-up, no history, the same rows."""
    assert run_cli(seeds_file, mock_llm, tmp_path / "a", turns=1, **SETTINGS) == 0
    one = [(r.model, r.schema or "", r.prompt) for r in mock_llm.requests]
    mock_llm.requests.clear()
    assert run_cli(seeds_file, mock_llm, tmp_path / "b", **SETTINGS) == 0
    assert sorted(one) == sorted((r.model, r.schema or "", r.prompt) for r in mock_llm.requests)
    assert not any(r.history or r.schema == "FollowUp" for r in mock_llm.requests)
    assert (tmp_path / "a" / "dataset.jsonl").read_text() == (
        tmp_path / "b" / "dataset.jsonl"
    ).read_text()
    assert "turn_scores" not in (tmp_path / "a" / "dataset.jsonl").read_text()


def test_an_action_rewrites_the_turn_told_apart_least_and_the_row_says_which(
    mock_llm: MockLLM, seeds_file: Path, tmp_path: Path
) -> None:
    mock_llm.judge_rule = mixed_rule  # some turns tie until rewritten twice
    options = {**SETTINGS, "instructions": 12, "max_iterations": 3}
    assert run_cli(seeds_file, mock_llm, tmp_path / "out", turns=3, **options) == 0
    rows = read_jsonl(tmp_path / "out" / "dataset.jsonl")
    rows += read_jsonl(tmp_path / "out" / "dropped.jsonl")
    rewritten = [row for row in rows if row.get("improved_turns")]
    assert rewritten, "mixed_rule leaves some turns tied: they are rewritten"
    assert {turn for row in rewritten for turn in row["improved_turns"]} - {1}, "a later turn"
    for row in rewritten:
        assert len(row["improved_turns"]) == len(row["actions"]) == row["iteration"] - 1
    kept = read_jsonl(tmp_path / "out" / "dataset.jsonl")
    for row in kept:
        assert _roles(row) == ["user", "assistant"] * 3
        for turn in row.get("improved_turns", []):  # the rewritten turn is the harder one
            assert "(harder: " in row["messages"][2 * (turn - 1)]["content"]


def test_the_misbehaving_mock_gives_only_whole_conversations(
    seeds_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Refusals, cut replies, short lists, 429s and 503s: every kept row still has every
    turn, each a real answer; what could not be made is accounted for."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    mock = realistic(answer_refusal_rate=0.1, list_cap=3).start()
    try:
        options = {**SETTINGS, "instructions": 10, "attempts": 6}
        assert run_cli(seeds_file, mock, tmp_path / "out", turns=2, **options) == 0
    finally:
        mock.stop()
    record = json.loads((tmp_path / "out" / "run.json").read_text())
    rows = read_jsonl(tmp_path / "out" / "dataset.jsonl")
    counts = record["counts"]
    assert counts["kept"] + counts["dropped"] + counts["failed"] == counts["instructions"] == 10
    assert rows
    for row in rows:
        assert _roles(row) == ["user", "assistant", "user", "assistant"]
        source = STRONG_PREFIX if row["response_source"] == "strong" else TARGET_PREFIX
        for message in row["messages"][1::2]:
            assert message["content"].startswith(source) and REFUSAL not in message["content"]


def _run(mock: MockLLM, seeds: Path, out: Path, **options: Any) -> subprocess.Popen[str]:
    args = [sys.executable, "-m", "codeclm", "run", str(seeds), *mock_args(mock, out, **options)]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_kill_mid_conversation_and_resume_gives_the_uninterrupted_dataset(
    mock_llm: MockLLM, seeds_file: Path, tmp_path: Path
) -> None:
    mock_llm.judge_rule = paper_rule
    options = {**SETTINGS, "turns": 2, "max_iterations": 3}
    whole = _run(mock_llm, seeds_file, tmp_path / "whole", **options)
    assert whole.wait(timeout=120) == 0, whole.communicate()[1]
    calls = len(mock_llm.requests)

    mock_llm.requests.clear()
    # killed as a target model's second turn is asked: mid-conversation
    mock_llm.stop_on = lambda body: len(body["messages"]) > 1 and body["model"] == TARGET_MODEL
    killed = _run(mock_llm, seeds_file, tmp_path / "killed", **options)
    mock_llm.stop_pid = killed.pid
    killed.communicate(timeout=120)
    assert killed.returncode == -signal.SIGKILL
    resumed = _run(mock_llm, seeds_file, tmp_path / "killed", **options)
    _, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, err

    dataset = (tmp_path / "whole" / "dataset.jsonl").read_text()
    assert (tmp_path / "killed" / "dataset.jsonl").read_text() == dataset
    # only the requests in flight at the kill are asked again
    assert len(mock_llm.requests) - calls <= options["concurrency"] + 1


@pytest.mark.parametrize(
    "method", ["self-instruct", "evol-instruct", "codeclm-rubrics", "codeclm-metadata"]
)
def test_baselines_and_ablations_make_conversations(
    method: str, mock_llm: MockLLM, seeds_file: Path, tmp_path: Path
) -> None:
    options = {**SETTINGS, "instructions": 4, "evol_rounds": 1}
    assert run_cli(seeds_file, mock_llm, tmp_path / "o", method=method, turns=2, **options) == 0
    rows = read_jsonl(tmp_path / "o" / "dataset.jsonl")
    assert rows and all(_roles(row) == ["user", "assistant"] * 2 for row in rows)
    assert all(row["response_source"] == "strong" for row in rows)


def test_export_keeps_every_turn_in_every_format(
    mock_llm: MockLLM, seeds_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    assert run_cli(seeds_file, mock_llm, out, turns=2, **{**SETTINGS, "instructions": 3}) == 0
    row = read_jsonl(out / "dataset.jsonl")[0]
    said = [m["content"] for m in row["messages"]]
    assert main(["export", str(out), "--format", "alpaca", "--out", str(tmp_path / "a")]) == 0
    alpaca = json.loads((tmp_path / "a").read_text())[0]
    assert [alpaca["instruction"], alpaca["output"]] == said[2:]
    assert alpaca["history"] == [said[:2]]
    assert main(["export", str(out), "--format", "sharegpt", "--out", str(tmp_path / "s")]) == 0
    shared = json.loads((tmp_path / "s").read_text())[0]["conversations"]
    assert [turn["value"] for turn in shared] == said
    assert main(["export", str(out), "--format", "chat", "--out", str(tmp_path / "c")]) == 0
    assert read_jsonl(tmp_path / "c")[0]["messages"] == row["messages"]


def test_turns_is_checked_and_changes_the_fingerprint(
    seeds_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ValueError):
        RunConfig(turns=5)
    assert RunConfig().fingerprint() == RunConfig(turns=1).fingerprint()
    assert RunConfig(turns=2).fingerprint() != RunConfig().fingerprint()
    code = main(["run", str(seeds_file), "--out", str(tmp_path / "o"), "--turns", "5"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "turns" in err, err


def _eval_args(mock: MockLLM, bench: Path, out: Path) -> list[str]:
    """``codeclm eval`` of the first 12 items, every role on the mock."""
    args = ["eval", str(bench), "--out", str(out), "--limit", "12"]
    for role in ("strong", "target", "judge"):
        model = TARGET_MODEL if role == "target" else STRONG_MODEL
        args += [f"--{role}-model", model, f"--{role}-base-url", mock.base_url]
    return args


def turn_scores(row: dict[str, Any]) -> list[JudgeScores]:
    """A judgment row's turns as the judge scored them (each order's (strong, target))."""
    return [
        JudgeScores(
            strong=(a[0] + b[0]) / 2,
            target=(a[1] + b[1]) / 2,
            gap=(a[0] + b[0] - a[1] - b[1]) / 2,
            strong_first=tuple(a),
            target_first=tuple(b),
        )
        for a, b in zip(
            row["turn_scores_strong_first"], row["turn_scores_target_first"], strict=True
        )
    ]


def _eval(mock: MockLLM, bench: Path, out: Path, *extra: str) -> dict[str, Any]:
    assert main([*_eval_args(mock, bench, out), "--concurrency", "8", *extra]) == 0
    return dict(json.loads((out / "eval.json").read_text())["result"])


def test_eval_judges_every_turn_of_mt_bench_and_turns_1_keeps_the_first(
    mock_llm: MockLLM, mt_bench: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mock_llm.judge_rule = paper_rule
    both = _eval(mock_llm, mt_bench, tmp_path / "both")
    shown = capsys.readouterr().out
    assert "turn 1" in shown and "turn 2" in shown
    assert set(both["by_turn"]) == {"1", "2"} and both["total"] == 12, "items, turns apart"
    for tally in both["by_turn"].values():
        assert tally["total"] == 12
    rows = read_jsonl(tmp_path / "both" / "judgments.jsonl")
    by_mean = Counter(verdict(mean_scores(turn_scores(row))) for row in rows)
    wins, ties, losses = by_mean["win"], by_mean["tie"], by_mean["loss"]
    assert (both["wins"], both["ties"], both["losses"]) == (wins, ties, losses)
    # the second turn was asked after each model's own first answer, and judged so
    second = [r for r in mock_llm.calls(schema=None) if r.history]
    assert len(second) == 24
    assert all(r.history[1][1].startswith(PREFIX[r.model]) for r in second)

    mock_llm.requests.clear()
    first = _eval(mock_llm, mt_bench, tmp_path / "first", "--turns", "1")
    assert not any(r.history for r in mock_llm.requests)
    assert "by_turn" not in first and first["total"] == 12
    turn_1 = both["by_turn"]["1"]
    assert (first["wins"], first["ties"], first["losses"]) == (
        turn_1["wins"],
        turn_1["ties"],
        turn_1["losses"],
    )
    row = read_jsonl(tmp_path / "both" / "judgments.jsonl")[0]
    assert len(row["turn_outcomes"]) == 2 and row["follow_ups"]


def test_the_report_shows_each_turn(mock_llm: MockLLM, seeds_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    mock_llm.judge_rule = mixed_rule
    options = {**SETTINGS, "max_iterations": 2}
    assert run_cli(seeds_file, mock_llm, out, turns=2, **options) == 0
    assert main(["report", str(out), "--out", str(tmp_path / "report")]) == 0
    report = (tmp_path / "report" / "report.md").read_text()
    assert "Conversations, turn by turn" in report
    figures = json.loads((tmp_path / "report" / "report.json").read_text())
    turns = figures["runs"][0]["turns"] if "runs" in figures else figures["turns"]
    assert [t["turn"] for t in turns] == [1, 2]
    assert all(t["judged"] for t in turns)


def test_inspect_shows_a_conversation_thread(
    mock_llm: MockLLM, seeds_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    mock_llm.judge_rule = mixed_rule
    options = {**SETTINGS, "max_iterations": 3, "instructions": 8}
    assert run_cli(seeds_file, mock_llm, out, turns=2, **options) == 0
    rows = read_jsonl(out / "dataset.jsonl") + read_jsonl(out / "dropped.jsonl")
    rewritten = next(row for row in rows if row.get("improved_turns"))
    capsys.readouterr()
    assert main(["inspect", str(out), rewritten["id"], "--json"]) == 0
    detail = json.loads(capsys.readouterr().out)
    assert detail["state"]["follow_ups"]
    assert "write_turns" in [n for step in detail["history"] for n in step["nodes"]]
    turns = [step["turn"] for step in detail["history"] if step.get("action")]
    assert turns == rewritten["improved_turns"]


def test_step_edits_a_later_turn_and_both_models_answer_it(
    mock_llm: MockLLM, seeds_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert run_cli(seeds_file, mock_llm, out, turns=2, **SETTINGS) == 0
    thread = read_jsonl(out / "dataset.jsonl")[0]["id"]
    capsys.readouterr()
    assert main(["inspect", str(out), thread, "--json"]) == 0
    after_turns = json.loads(capsys.readouterr().out)["history"][0]
    assert after_turns["nodes"] == ["write_turns"]
    edited = ["What if the budget were halved?"]
    flags = ["--from", after_turns["checkpoint"], "--set", f"follow_ups={json.dumps(edited)}"]
    assert main(["step", str(out), thread, *flags, "--until", "answer", "--json"]) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    answered = events[-1]["ran"]["answer"]
    assert answered["strong_follow_up_answers"] == [f"{STRONG_PREFIX}{edited[0]}"]
    assert answered["target_follow_up_answers"] == [f"{TARGET_PREFIX}{edited[0]}"]


def test_a_review_edits_the_first_turn_and_keeps_the_others() -> None:
    from codeclm.rows import DatasetRow, Message, PairReview

    said = ["first?", "first answer", "second?", "second answer"]
    row = DatasetRow(
        id="c1",
        instruction=said[0],
        response=said[1],
        messages=[
            Message(role=("user", "assistant")[i % 2], content=t) for i, t in enumerate(said)
        ],
    )
    edited = PairReview(id="c1", verdict="accepted", response="a better first answer")
    applied = edited.applied(row)
    assert [m.content for m in applied.messages] == [said[0], "a better first answer", *said[2:]]
    assert applied.turns == 2


@pytest.mark.parametrize("method", ["codeclm", "codeclm-rubrics"])
def test_a_thread_that_failed_writing_turns_resumes_as_if_it_never_had(
    method: str, mock_llm: MockLLM, seeds_file: Path, tmp_path: Path
) -> None:
    options = {**SETTINGS, "turns": 2, "method": method, "attempts": 1}
    assert run_cli(seeds_file, mock_llm, tmp_path / "whole", **options) == 0
    mock_llm.garbage_when = "says next in a conversation"  # every follow-up unreadable
    assert run_cli(seeds_file, mock_llm, tmp_path / "failed", **options) == 0
    failed = read_jsonl(tmp_path / "failed" / "failed.jsonl")
    assert len(failed) == SETTINGS["instructions"]
    assert all(row["reason"].startswith("write_turns") for row in failed)
    mock_llm.garbage_when = None
    assert run_cli(seeds_file, mock_llm, tmp_path / "failed", **options) == 0
    dataset = (tmp_path / "whole" / "dataset.jsonl").read_text()
    assert (tmp_path / "failed" / "dataset.jsonl").read_text() == dataset


def test_benchmark_turns_in_either_layout(tmp_path: Path) -> None:
    from codeclm.seeds import load_benchmark

    path = tmp_path / "bench.jsonl"
    lines = [
        {"id": "a", "instruction": "one?", "followup": "two?"},
        {"id": "b", "instruction": "one?", "followup": "  "},  # a blank one is no turn
        {"question_id": 7, "turns": ["first?", "second?", "third?"], "category": "x"},
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    items = load_benchmark(path)
    assert [item["follow_ups"] for item in items] == [["two?"], [], ["second?", "third?"]]
    assert items[2]["id"] == "7" and items[2]["instruction"] == "first?"
    path.write_text(json.dumps({"id": "c", "instruction": "x", "followup": ["no"]}) + "\n")
    with pytest.raises(ValueError, match="'followup' must be text"):
        load_benchmark(path)


def test_an_evaluation_of_the_first_turn_resumes_only_as_one(
    mock_llm: MockLLM, mt_bench: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An MT-Bench evaluation made before --turns judged the first turn: it goes on with
    --turns 1, and every turn is refused there rather than mixed in."""
    first = _eval(mock_llm, mt_bench, tmp_path / "ev", "--turns", "1")
    assert _eval(mock_llm, mt_bench, tmp_path / "ev", "--turns", "1") == first
    capsys.readouterr()
    assert main(_eval_args(mock_llm, mt_bench, tmp_path / "ev")) == 2
    assert "turns" in capsys.readouterr().err


def test_step_refuses_turns_the_run_does_not_have(
    mock_llm: MockLLM, seeds_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert run_cli(seeds_file, mock_llm, out, turns=2, **SETTINGS) == 0
    thread = read_jsonl(out / "dataset.jsonl")[0]["id"]
    for value in ('["a", "b"]', "[]", '[" "]'):
        capsys.readouterr()
        assert main(["step", str(out), thread, "--set", f"follow_ups={value}"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "1 non-blank texts" in err, err


def test_a_turn_the_strong_model_refuses_to_write_drops_the_instruction_for_good(
    mock_llm: MockLLM, seeds_file: Path, tmp_path: Path
) -> None:
    mock_llm.refuse_when = "says next in a conversation"
    assert run_cli(seeds_file, mock_llm, tmp_path / "o", turns=2, **SETTINGS) == 0
    dropped = read_jsonl(tmp_path / "o" / "dropped.jsonl")
    assert len(dropped) == SETTINGS["instructions"]
    assert all("refused to write the user's turn" in row["reason"] for row in dropped)
    asked = len(mock_llm.requests)
    assert run_cli(seeds_file, mock_llm, tmp_path / "o", turns=2, **SETTINGS) == 0
    assert len(mock_llm.requests) == asked, "dropped is final: nothing is asked again"


def test_a_conversations_gap_is_the_mean_of_its_turns_gaps() -> None:
    from codeclm.nodes.pairs import mean_scores
    from codeclm.state import JudgeScores

    def turn(strong: float, target: float) -> JudgeScores:
        pair = (strong, target)
        return JudgeScores(
            strong=strong, target=target, gap=strong - target, strong_first=pair, target_first=pair
        )

    scores = mean_scores([turn(9, 3), turn(5, 5), turn(9, 2)])
    assert scores.gap == 4.333 and (scores.strong, scores.target) == (7.667, 3.333)


def test_a_single_turns_cache_key_is_the_one_before_conversations() -> None:
    """A run begun before --turns resumes from its response cache: with no history, the
    key is built from the same parts as it always was; a turn after others has its own."""
    from codeclm.config import RoleConfig
    from codeclm.llm.cache import request_key
    from codeclm.llm.request import cache_key
    from codeclm.llm.roles import make_role_model

    config = RoleConfig(model=STRONG_MODEL, base_url="http://x/v1")
    model = make_role_model("strong", config, seed=0)
    before = {
        "model": STRONG_MODEL,
        "base_url": "http://x/v1",
        "prompt": "Explain tides.",
        "temperature": model.chat.temperature,
        "max_tokens": 2048,
        "seed": model.chat.seed,
        "response_format": None,
    }
    sender = model._sender
    assert cache_key(sender, "Explain tides.", {}, 2048, None) == request_key(before)
    history = (("user", "a"), ("assistant", "b"))
    later = cache_key(sender, "Explain tides.", {}, 2048, None, history)
    assert later != request_key(before)


def test_follow_up_plans_hold_whatever_was_answered() -> None:
    """Turns are written before any answer: no plan presumes an error, a claim or a choice
    that an answer may not have made (issue #31)."""
    from codeclm.nodes.turns import FOLLOW_UP_PLANS, follow_up_plans

    presumes = ("error", "wrong", "fix", "why", "justif", "choice", "claim", "problem")
    for plan in FOLLOW_UP_PLANS:
        assert not [word for word in presumes if word in plan.lower()], plan
    kinds = ("constraint", "new case", "extend", "edge case")
    assert all(any(kind in plan for plan in FOLLOW_UP_PLANS) for kind in kinds)
    assert len(set(follow_up_plans(0, "m0001-00", 3))) == 3, "drawn without repeats"

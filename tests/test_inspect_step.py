"""Inspecting a run, and stepping one instruction: edit a field, fork, continue."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import codeclm
from codeclm.bench.mock_llm import MockLLM
from codeclm.cli import main
from tests.conftest import read_jsonl, run_cli


@pytest.fixture
def dropped_run(mock_llm: MockLLM, seeds_file: Path, tmp_path: Path) -> Path:
    """A finished run where every instruction was dropped after 2 iterations."""
    mock_llm.judge_rule = lambda instruction: (5, 5)
    out = tmp_path / "run"
    assert run_cli(seeds_file, mock_llm, out, instructions=2, metadata=2, max_iterations=2) == 0
    return out


def _json_out(capsys: pytest.CaptureFixture[str], argv: list[str]) -> object:
    capsys.readouterr()
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def _checkpoints(capsys: pytest.CaptureFixture[str], run: Path, thread: str) -> list[str]:
    """The thread's checkpoint ids, oldest first, as ``inspect --json`` lists them."""
    detail = _json_out(capsys, ["inspect", str(run), thread, "--json"])
    return [step["checkpoint"] for step in detail["history"]]  # type: ignore[index]


def _step(capsys: pytest.CaptureFixture[str], run: Path, thread: str, *flags: str) -> list[dict]:
    """``codeclm step RUN THREAD FLAGS --json``: one event per step."""
    return _events(capsys, ["step", str(run), thread, *flags, "--json"])


def _events(capsys: pytest.CaptureFixture[str], argv: list[str]) -> list[dict]:
    capsys.readouterr()
    assert main(argv) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_inspect_lists_threads_and_shows_one_history(
    dropped_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    listing = _json_out(capsys, ["inspect", str(dropped_run), "--json"])
    assert listing["prepare"] == "done"
    assert listing["counts"] == {"dropped": 2}
    ids = [t["id"] for t in listing["threads"]]
    assert len(ids) == 2 and all(t["iteration"] == 2 for t in listing["threads"])

    detail = _json_out(capsys, ["inspect", str(dropped_run), ids[0], "--json"])
    assert detail["status"] == "dropped" and detail["next"] == []
    nodes = [step["nodes"] for step in detail["history"]]
    assert nodes == [["answer"], ["judge"], ["improve"], ["answer"], ["judge"]]
    judged = [s for s in detail["history"] if s["nodes"] == ["judge"]]
    assert [s["scores"]["gap"] for s in judged] == [0.0, 0.0]
    assert [s["status"] for s in judged] == ["improving", "dropped"]
    improved = detail["history"][2]
    assert improved["action"] == detail["state"]["actions_applied"][0]
    assert improved["iteration"] == 2

    capsys.readouterr()
    assert main(["inspect", str(dropped_run), ids[0]]) == 0
    text = capsys.readouterr().out
    assert "judge" in text and "action:" in text and "dropped" in text
    assert main(["inspect", str(dropped_run), "nope"]) == 2


def test_step_forks_from_a_checkpoint_with_an_edited_action_and_continues(
    dropped_run: Path, mock_llm: MockLLM, capsys: pytest.CaptureFixture[str]
) -> None:
    thread = read_jsonl(dropped_run / "dropped.jsonl")[0]["id"]
    after_first_judge = _checkpoints(capsys, dropped_run, thread)[1]

    # fork after the first judgement; replace the actions; run until improve has run
    events = _step(
        capsys,
        dropped_run,
        thread,
        "--from",
        after_first_judge,
        "--set",
        'candidate_actions=["add a twist ending"]',
        "--until",
        "improve",
    )
    assert events[0]["edited"] == {"candidate_actions": ["add a twist ending"]}
    assert list(events[1]["ran"]) == ["improve"]
    assert events[1]["ran"]["improve"]["actions_applied"] == ["add a twist ending"]
    assert events[1]["next"] == ["answer"]

    # one step at a time: the answers, then stop
    events = _step(capsys, dropped_run, thread)
    assert list(events[0]["ran"]) == ["answer"]
    assert events[0]["next"] == ["judge"]

    # the judge now separates them: continue to the end
    mock_llm.judge_rule = lambda instruction: (9, 2) if "twist" in instruction else (5, 5)
    events = _step(capsys, dropped_run, thread, "--until", "end")
    assert list(events[-1]["ran"]) == ["judge"] and events[-1]["next"] == ["end"]
    assert events[-1]["status"] == "kept"

    listing = _json_out(capsys, ["inspect", str(dropped_run), "--json"])
    assert listing["counts"] == {"kept": 1, "dropped": 1}


def test_step_edits_the_instruction_between_answers_and_judge(
    dropped_run: Path, mock_llm: MockLLM, capsys: pytest.CaptureFixture[str]
) -> None:
    thread = read_jsonl(dropped_run / "dropped.jsonl")[1]["id"]
    after_first_answers = _checkpoints(capsys, dropped_run, thread)[0]
    # after the first answers: edit the strong answer, then judge sees the edit
    events = _step(
        capsys,
        dropped_run,
        thread,
        "--from",
        after_first_answers,
        "--set",
        "strong_answer=STRONG ANSWER: edited by hand",
    )
    assert list(events[1]["ran"]) == ["judge"]
    judged = [c for c in mock_llm.calls("PairwiseScores") if "edited by hand" in c.prompt]
    assert len(judged) == 2, "the judge scored the edited answer, in both orders"


def test_step_rejects_unknown_fields_and_checkpoints(
    dropped_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    thread = read_jsonl(dropped_run / "dropped.jsonl")[0]["id"]
    assert main(["step", str(dropped_run), thread, "--set", "status=kept"]) == 2
    assert "not an editable field" in capsys.readouterr().err
    assert main(["step", str(dropped_run), thread, "--from", "nope", "--json"]) == 2
    assert main(["step", str(dropped_run), thread, "--set", "iteration=many"]) == 2


def test_replaying_a_fork_pays_for_no_call_already_paid_for(
    dropped_run: Path, mock_llm: MockLLM, capsys: pytest.CaptureFixture[str]
) -> None:
    thread = read_jsonl(dropped_run / "dropped.jsonl")[0]["id"]
    after_first_answers = _checkpoints(capsys, dropped_run, thread)[0]
    sent = len(mock_llm.requests)
    events = _step(capsys, dropped_run, thread, "--from", after_first_answers, "--until", "end")
    assert [list(e["ran"]) for e in events] == [["judge"], ["improve"], ["answer"], ["judge"]]
    assert events[-1]["status"] == "dropped"
    assert len(mock_llm.requests) == sent, "every replayed call came from the response cache"
    # ... and the bypass switch really sends them
    _step(
        capsys, dropped_run, thread, "--from", after_first_answers, "--until", "judge", "--no-cache"
    )
    assert len(mock_llm.requests) == sent + 2


def test_interactive_stepping_takes_edits_and_commands_between_steps(
    dropped_run: Path, mock_llm: MockLLM
) -> None:
    import asyncio

    thread = read_jsonl(dropped_run / "dropped.jsonl")[0]["id"]
    first = asyncio.run(_history(dropped_run, thread))[0]["checkpoint"]
    # after the judge: edit the actions, then step; step again; then continue to the end
    answers = iter(["set colour=red", 'set candidate_actions=["make it rhyme"]', "", "", "c"])
    events: list[dict] = []
    mock_llm.judge_rule = lambda text: (9, 1) if "rhyme" in text else (5, 5)
    final = codeclm.step(
        dropped_run, thread, from_checkpoint=first, emit=events.append, ask=lambda: next(answers)
    )
    ran = [list(e["ran"]) for e in events if "ran" in e]
    assert ran == [["judge"], ["improve"], ["answer"], ["judge"]]
    assert "not an editable field" in events[1]["error"], "a typo is reported, not fatal"
    assert events[2]["edited"] == {"candidate_actions": ["make it rhyme"]}
    improved = next(e for e in events if "improve" in e.get("ran", {}))
    assert improved["ran"]["improve"]["actions_applied"] == ["make it rhyme"]
    assert final["status"] == "kept"


async def _history(out: Path, thread: str) -> list[dict]:
    detail = await codeclm.ainspect(out, thread)
    return list(detail.as_json()["history"])

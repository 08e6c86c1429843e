"""Models as they really behave (issue #10): short and repeated lists, JSON in prose, fences or
after thinking, refusals, replies cut at max_tokens, 429s and 503s. The run must still deliver
the budget it was asked for, with no repeats and exactly k distinct actions per entry."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from codeclm.bench.mock_llm import MockLLM, mixed_rule
from codeclm.llm import limits
from codeclm.llm.parsing import Refusal, UnparseableReply, parse_reply
from codeclm.nodes.replies import ImprovedInstruction, decoded_instructions
from codeclm.prepare.planning import normalized
from tests.conftest import SECRET, mock_args, read_jsonl, realistic, run_cli, write_seeds

Decoded = decoded_instructions(4)


@pytest.mark.parametrize(
    "reply",
    [
        '{"instructions": ["a", "b"]}',
        'Sure! Here is the JSON you asked for:\n{"instructions": ["a", "b"]}\nAnything else?',
        '```json\n{"instructions": ["a", "b"]}\n```',
        '<think>\nThey want {"instructions": ["x"]}. Fine.\n</think>\n{"instructions": ["a", "b"]}',
        '["a", "b"]',  # the object left out
        '{"instructions": ["a", "", "b"]}',  # a blank item among good ones
    ],
)
def test_the_json_is_found_however_it_is_wrapped(reply: str) -> None:
    assert parse_reply(reply, Decoded).instructions == ["a", "b"]  # type: ignore[attr-defined]


def test_a_cut_list_keeps_its_complete_items_and_more_than_asked_is_trimmed() -> None:
    cut = '```json\n{"instructions": ["first one", "second one", "thi'
    assert parse_reply(cut, Decoded, cut=True).instructions == ["first one", "second one"]  # type: ignore[attr-defined]
    with pytest.raises(UnparseableReply, match="cut at max_tokens"):
        parse_reply('{"instruction": "Explain the tides and', ImprovedInstruction, cut=True)
    many = json.dumps({"instructions": [f"item {i}" for i in range(7)]})
    assert len(parse_reply(many, Decoded).instructions) == 4  # type: ignore[attr-defined]


def test_at_most_max_skills_distinct_skills_per_seed() -> None:
    from codeclm.analysis.labels import clean_skills
    from codeclm.nodes.replies import encoded_metadata

    reply = '{"use_case": "coding", "skills": ["Python", "python skills", "SQL", "git", "bash"]}'
    parsed = parse_reply(reply, encoded_metadata(3))  # five skills: the reply is not refused
    assert clean_skills(parsed.skills, 3) == ["python", "sql", "git"]  # type: ignore[attr-defined]
    assert encoded_metadata(3).model_json_schema()["properties"]["skills"]["maxItems"] == 3


def test_a_refusal_is_its_own_reason_and_prose_without_json_is_not_one() -> None:
    with pytest.raises(Refusal, match="refused: I'm sorry"):
        parse_reply("I'm sorry, but I can't help with that request.", Decoded)
    with pytest.raises(Refusal, match="refused: unsafe"):
        parse_reply("", Decoded, refusal="unsafe")  # OpenAI's own refusal field
    with pytest.raises(UnparseableReply) as caught:
        parse_reply("Here are some ideas: write more tests.", Decoded)
    assert not isinstance(caught.value, Refusal)


def _seeds(tmp_path: Path, n: int = 12) -> Path:
    topics = ["taxes", "sourdough", "chess openings", "rust lifetimes", "jazz chords", "tides"]
    return write_seeds(
        tmp_path / "seeds.jsonl",
        [f"Question {i}: how do I get better at {topics[i % len(topics)]}?" for i in range(n)],
    )


def _check_budget(out: Path, budget: int, k: int = 4) -> dict[str, int]:
    counts = json.loads((out / "run.json").read_text())["counts"]
    assert counts["kept"] + counts["dropped"] + counts["failed"] == budget, counts
    rows = [
        *read_jsonl(out / "dataset.jsonl"),
        *read_jsonl(out / "dropped.jsonl"),
        *read_jsonl(out / "failed.jsonl"),
    ]
    basics = Counter(normalized(row["basic_instruction"]) for row in rows)
    assert len(rows) == budget and max(basics.values()) == 1, "no instruction repeated"
    for entry in read_jsonl(out / "metadata.jsonl"):
        if entry["n_instructions"]:
            assert len({normalized(a) for a in entry["actions"]}) == k, entry
    return dict(counts)


def test_the_budget_holds_against_a_server_that_misbehaves_in_every_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    mock = realistic(judge_rule=mixed_rule, fault_seed=3, repeat_rate=0.4).start()
    try:
        out = tmp_path / "out"
        options = dict(instructions=60, metadata=8, backoff=0, concurrency=8)
        assert run_cli(_seeds(tmp_path), mock, out, **options) == 0
    finally:
        mock.stop()
    counts = _check_budget(out, 60)
    assert counts["failed"] <= 2, counts
    assert {"429", "503", "refusal", "wrap"} <= set(mock.faults), mock.faults
    decode_prompts = [c.prompt for c in mock.calls("DecodedInstructions")]
    asked = [int(p.split("Write ", 1)[1].split()[0]) for p in decode_prompts]
    assert max(asked) <= 5, "at most decode_batch instructions per call"
    assert any("do not repeat" in p for p in decode_prompts), "short lists were topped up"
    assert counts["repeats_dropped"] > 0, "repeats were dropped before any answer"


def test_a_list_cut_at_max_tokens_keeps_its_items_and_the_entry_is_asked_again(
    mock_llm: MockLLM, tmp_path: Path
) -> None:
    mock_llm.cut_rate = 1.0  # every list reply stops half-way through its last item
    out = tmp_path / "out"
    assert run_cli(_seeds(tmp_path, 4), mock_llm, out, instructions=12, metadata=4) == 0
    _check_budget(out, 12)
    assert json.loads((out / "run.json").read_text())["prepare_failures"] == []


def test_a_pool_that_runs_dry_says_so_plainly(
    mock_llm: MockLLM, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mock_llm.decode_distinct = 3  # each entry has only 3 distinct instructions in it
    out = tmp_path / "out"
    assert run_cli(_seeds(tmp_path, 4), mock_llm, out, instructions=20, metadata=4) == 0
    summary = json.loads((out / "run.json").read_text())
    counts = summary["counts"]
    assert counts["instructions"] == 12 and counts["kept"] + counts["dropped"] == 12
    assert summary["prepare_failures"] == [], "a dry pool is no failure to retry"
    assert "8 of 20 instructions missing: the metadata pool ran dry" in summary["shortfall"]
    printed = capsys.readouterr().out
    assert "the metadata pool ran dry" in printed and "again" not in printed
    decode_calls = len(mock_llm.calls("DecodedInstructions"))
    # per entry: at most 3 asks that bring one of its 3, and 2 empty ones per round (2 rounds)
    assert decode_calls <= 4 * (3 + 2 * 2), "asks while they bring something, then stop"
    notes = [entry["note"] for entry in read_jsonl(out / "metadata.jsonl")]
    assert all("no new unique instruction" in (note or "") for note in notes), notes
    # the same command again: the pool is as dry as it was, nothing is asked
    calls = len(mock_llm.calls())
    assert run_cli(_seeds(tmp_path, 4), mock_llm, out, instructions=20, metadata=4) == 0
    assert len(mock_llm.calls()) == calls


def test_rubrics_and_decodes_that_fail_are_retried_by_the_next_run(
    mock_llm: MockLLM, tmp_path: Path
) -> None:
    mock_llm.garbage_next["SelfRubrics"] = 1
    mock_llm.garbage_next["DecodedInstructions"] = 1
    out = tmp_path / "out"
    seeds = _seeds(tmp_path, 4)
    options = dict(instructions=12, metadata=4, attempts=1, backoff=0)
    assert run_cli(seeds, mock_llm, out, **options) == 0
    first = json.loads((out / "run.json").read_text())
    assert {f["step"] for f in first["prepare_failures"]} == {"write_rubrics", "decode"}
    assert first["counts"]["instructions"] < 12, "an entry waits for its rubrics"
    kept_before = read_jsonl(out / "dataset.jsonl")
    assert run_cli(seeds, mock_llm, out, **options) == 0
    assert json.loads((out / "run.json").read_text())["prepare_failures"] == []
    _check_budget(out, 12)
    after = {row["id"]: row for row in read_jsonl(out / "dataset.jsonl")}
    assert all(after[row["id"]] == row for row in kept_before), "finished pairs unchanged"


def test_a_run_grows_paying_only_for_the_new_work(mock_llm: MockLLM, tmp_path: Path) -> None:
    seeds, out = _seeds(tmp_path, 4), tmp_path / "out"
    assert run_cli(seeds, mock_llm, out, instructions=12, metadata=4) == 0
    before = read_jsonl(out / "dataset.jsonl")

    def answers() -> int:
        return sum(1 for request in mock_llm.calls() if request.schema is None)

    encodes, answered = len(mock_llm.calls("EncodedMetadata")), answers()
    rubrics = len(mock_llm.calls("SelfRubrics"))
    assert run_cli(seeds, mock_llm, out, instructions=20, metadata=6) == 0
    _check_budget(out, 20)
    after = {row["id"]: row for row in read_jsonl(out / "dataset.jsonl")}
    assert all(after[row["id"]] == row for row in before), "every finished pair kept as it was"
    assert len(mock_llm.calls("EncodedMetadata")) == encodes, "the encoded pool is reused"
    assert len(mock_llm.calls("SelfRubrics")) - rubrics == 2, "rubrics for the 2 new entries"
    assert answers() - answered == 2 * 8, (
        "strong and target answers for the 8 new instructions only"
    )
    pool = read_jsonl(out / "metadata.jsonl")
    assert len(pool) == 6 and sum(e["n_instructions"] for e in pool) == 20


def test_a_long_retry_after_is_capped(
    mock_llm: MockLLM, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server asks for 30 s twice; capped at 0.2 s the run takes a few seconds."""
    monkeypatch.setattr(limits, "RETRY_AFTER_CAP", 0.2)
    mock_llm.retry_after, mock_llm.rate_limit_next = 30, 2
    out = tmp_path / "out"
    started = time.monotonic()
    assert run_cli(_seeds(tmp_path, 2), mock_llm, out, instructions=2, metadata=2, backoff=0) == 0
    assert time.monotonic() - started < 20, "the 30 s Retry-After was waited out"
    assert mock_llm.faults["429"] == 2 and len(read_jsonl(out / "dataset.jsonl")) == 2


def _run_process(mock: MockLLM, seeds: Path, out: Path, **options: object) -> subprocess.Popen[str]:
    args = [sys.executable, "-m", "codeclm", "run", str(seeds), *mock_args(mock, out, **options)]
    return subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy()
    )


def test_killed_and_resumed_under_faults_gives_the_same_dataset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    # a stingy model too (lists of 1 to 3): the first run must come out whole, or a resume's
    # new pass would fill a gap the uninterrupted run left
    mock = realistic(judge_rule=mixed_rule, fault_seed=5, list_cap=3).start()
    seeds = _seeds(tmp_path)
    options = dict(instructions=40, metadata=8, concurrency=4, backoff=0, attempts=5)
    try:
        whole = _run_process(mock, seeds, tmp_path / "whole", **options)
        assert whole.wait(timeout=300) == 0, whole.communicate()[1]
        total = mock.received
        with mock.lock:
            mock.received, mock.stop_at = 0, total // 2
        killed = _run_process(mock, seeds, tmp_path / "killed", **options)
        mock.stop_pid = killed.pid
        assert killed.wait(timeout=300) == -signal.SIGKILL
        mock.stop_at = None
        resumed = subprocess.run(
            [sys.executable, "-m", "codeclm", "resume", str(tmp_path / "killed"), "--quiet"],
            capture_output=True,
            text=True,
            timeout=300,
            env=os.environ.copy(),
        )
        assert resumed.returncode == 0, resumed.stderr
    finally:
        mock.stop()
    for name in ("dataset.jsonl", "metadata.jsonl"):
        assert (tmp_path / "killed" / name).read_text() == (tmp_path / "whole" / name).read_text()
    _check_budget(tmp_path / "killed", 40)


def test_the_mock_answers_other_clients_as_a_server_would(mock_llm: MockLLM) -> None:
    """Another client's probes (curator's, in benchmarks/curator_compare.py): a malformed
    request gets OpenAI's 400 on a connection that stays usable, and a schema the mock has
    no step for gets an object with every property of its type."""
    import httpx

    with httpx.Client(base_url=mock_llm.base_url) as client:
        for body in ({"model": "m", "messages": []}, {"messages": [{"role": "user"}]}, []):
            reply = client.post("/chat/completions", json=body)
            assert reply.status_code == 400
            assert reply.json()["error"]["type"] == "invalid_request_error"
        schema = {"properties": {"name": {"type": "string"}, "age": {"type": "integer"}}}
        body = {
            "model": "m",
            "messages": [{"role": "user", "content": "Who?"}],
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "User", "schema": schema},
            },
        }
        content = client.post("/chat/completions", json=body).json()
        assert json.loads(content["choices"][0]["message"]["content"]) == {"name": "text", "age": 5}

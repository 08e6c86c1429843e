"""Unparseable replies are retried, then recorded as that instruction's failure; never a crash."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from codeclm.bench.mock_llm import MockLLM
from tests.conftest import read_jsonl, run_cli


def test_an_unparseable_reply_is_retried_and_then_succeeds(
    mock_llm: MockLLM, seeds_file: Path, tmp_path: Path
) -> None:
    mock_llm.garbage_next["PairwiseScores"] = 1
    mock_llm.garbage_next["DecodedInstructions"] = 1
    out = tmp_path / "out"
    assert run_cli(seeds_file, mock_llm, out, instructions=2, metadata=2, backoff=0) == 0
    assert len(read_jsonl(out / "dataset.jsonl")) == 2
    assert read_jsonl(out / "failed.jsonl") == []
    # one garbage judge reply → the judge node ran again; the order whose reply was valid
    # came from the response cache, so only the garbage one was sent again
    assert len(mock_llm.calls("PairwiseScores")) == 2 * 2 + 1
    assert len(mock_llm.calls("DecodedInstructions")) == 2 + 1


def test_a_reply_that_never_parses_fails_only_its_instruction(
    mock_llm: MockLLM, tmp_path: Path
) -> None:
    meta = tmp_path / "meta.jsonl"
    meta.write_text(
        '{"id": "ok", "use_case": "advice", "skills": ["cooking"]}\n'
        '{"id": "bad", "use_case": "poison", "skills": ["chemistry"]}\n'
    )
    options = dict(user_metadata=meta, instructions=4, metadata=2, attempts=3, backoff=0)
    assert run_cli(None, mock_llm, tmp_path / "clean", **options) == 0
    poisoned = next(
        r for r in read_jsonl(tmp_path / "clean" / "dataset.jsonl") if r["id"] == "bad-00"
    )
    mock_llm.garbage_when = poisoned["instruction"]  # every structured call about this one
    mock_llm.requests.clear()
    out = tmp_path / "out"
    assert run_cli(None, mock_llm, out, **options) == 0
    kept = read_jsonl(out / "dataset.jsonl")
    failed = read_jsonl(out / "failed.jsonl")
    assert sorted(r["id"] for r in kept) == ["bad-01", "ok-00", "ok-01"]
    assert [r["id"] for r in failed] == ["bad-00"]
    assert failed[0]["status"] == "failed"
    assert failed[0]["reason"].startswith("judge: UnparseableReply: the judge gave no line")
    judged_bad = [c for c in mock_llm.calls("PairwiseScores") if mock_llm.garbage_when in c.prompt]
    assert len(judged_bad) == 3 * 2, "three attempts, both orders each"
    counts = json.loads((out / "run.json").read_text())["counts"]
    assert (counts["kept"], counts["dropped"], counts["failed"]) == (3, 0, 1)
    assert counts["kept"] + counts["dropped"] + counts["failed"] == counts["instructions"]


def test_a_seed_that_fails_to_encode_holds_the_pool_back_until_a_rerun_encodes_it(
    mock_llm: MockLLM, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The pool mixes every seed's metadata, so it waits for a seed that failed in passing."""
    seeds = tmp_path / "seeds.txt"
    seeds.write_text("Plan a birthday party.\nPOISON seed that fails for now\nFix my bike.\n")
    mock_llm.garbage_when = "POISON"
    out = tmp_path / "out"
    assert run_cli(seeds, mock_llm, out, instructions=2, metadata=2, backoff=0) == 1
    err = capsys.readouterr().err
    assert "encode_seed seed-2: UnparseableReply" in err and "run the same command again" in err
    summary = json.loads((out / "run.json").read_text())
    assert [(f["step"], f["subject"]) for f in summary["prepare_failures"]] == [
        ("encode_seed", "seed-2")
    ]
    assert not mock_llm.calls("DecodedInstructions"), "nothing decoded from a partial pool"
    encoded = len(mock_llm.calls("EncodedMetadata"))

    mock_llm.garbage_when = None  # the server recovers
    assert run_cli(seeds, mock_llm, out, instructions=2, metadata=2, backoff=0) == 0
    summary = json.loads((out / "run.json").read_text())
    assert summary["prepare_failures"] == []
    assert summary["counts"]["metadata_encoded"] == 3
    assert len(mock_llm.calls("EncodedMetadata")) == encoded + 1, "only the failed seed again"
    assert len(read_jsonl(out / "dataset.jsonl")) == 2


def test_a_refused_seed_is_left_out_for_good_and_the_run_goes_on(
    mock_llm: MockLLM, tmp_path: Path
) -> None:
    seeds = tmp_path / "seeds.txt"
    seeds.write_text("Plan a birthday party.\nHow do I pick a lock?\nFix my bike.\n")
    mock_llm.refuse_when = "pick a lock"
    out = tmp_path / "out"
    assert run_cli(seeds, mock_llm, out, instructions=2, metadata=2, backoff=0) == 0
    summary = json.loads((out / "run.json").read_text())
    (failure,) = summary["prepare_failures"]
    assert (failure["step"], failure["subject"], failure["permanent"]) == (
        "encode_seed",
        "seed-2",
        True,
    )
    assert failure["reason"].startswith("refused: I'm sorry"), "a refusal, not bad JSON"
    assert summary["counts"]["metadata_encoded"] == 2
    assert len(read_jsonl(out / "dataset.jsonl")) == 2
    sent = len(mock_llm.requests)
    assert run_cli(seeds, mock_llm, out, instructions=2, metadata=2, backoff=0) == 0
    assert len(mock_llm.requests) == sent, "a refused seed is not asked again"

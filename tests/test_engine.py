"""The engine streams: an instruction's thread starts as soon as its own entry's first batch
is decoded (and its rubrics written), while other entries are still being decoded."""

from __future__ import annotations

import json
from pathlib import Path

from codeclm.bench.mock_llm import MockLLM
from tests.conftest import read_jsonl, run_cli


def test_an_entry_s_instructions_start_while_another_entry_is_still_decoding(
    mock_llm: MockLLM, tmp_path: Path
) -> None:
    meta = tmp_path / "meta.jsonl"
    meta.write_text(
        '{"id": "quick", "use_case": "advice", "skills": ["cooking"]}\n'
        '{"id": "slow", "use_case": "slowpoke", "skills": ["geology"]}\n'
    )
    mock_llm.slow_when, mock_llm.slow_seconds = "- Use case: slowpoke", 3.0
    out = tmp_path / "out"
    assert run_cli(None, mock_llm, out, user_metadata=meta, instructions=4, metadata=2) == 0
    (slow_decode,) = [c for c in mock_llm.calls("DecodedInstructions") if "slowpoke" in c.prompt]
    answered_at = [c.at for c in mock_llm.calls() if c.schema is None]
    decided = slow_decode.at + mock_llm.slow_seconds  # when the slow entry's decode came back
    # the quick entry's answers were asked before the slow decode came back (3 s: room
    # for the quick entry's chain on a busy machine)
    timeline = [  # (seconds after the slow decode was asked, step, entry)
        (round(c.at - slow_decode.at, 3), c.schema, "slow" if "slowpoke" in c.prompt else "")
        for c in mock_llm.calls()
    ]
    assert min(answered_at) < decided, f"the quick entry's answers waited: {timeline}"
    rows = read_jsonl(out / "dataset.jsonl")
    assert sorted(r["id"] for r in rows) == ["quick-00", "quick-01", "slow-00", "slow-01"]
    assert [r["id"] for r in rows] == sorted(r["id"] for r in rows), "outputs in order"


def test_an_entry_s_first_round_asks_one_batch_and_its_instructions_start_on_it(
    mock_llm: MockLLM, tmp_path: Path
) -> None:
    """An entry's first decode round asks one batch, so its instructions start after one
    reply while the rest of its share is decoded (asked one batch after another, a share
    of 50 kept 2,000 instructions from starting for nine round trips). What it must not
    touch: an entry whose first batch only repeats another entry's is asked for the rest,
    not counted as run dry."""
    meta = tmp_path / "meta.jsonl"
    meta.write_text(
        '{"id": "first", "use_case": "advice", "skills": ["cooking"]}\n'
        '{"id": "twin", "use_case": "advice", "skills": ["cooking"]}\n'
    )
    mock_llm.slow_when, mock_llm.slow_seconds = "You already wrote these", 2.0  # top-ups
    out = tmp_path / "out"
    options = dict(user_metadata=meta, instructions=8, metadata=2, decode_batch=2)
    assert run_cli(None, mock_llm, out, **options) == 0
    top_ups = [c for c in mock_llm.calls("DecodedInstructions") if "already wrote" in c.prompt]
    first_answer = min(c.at for c in mock_llm.calls() if c.schema is None)
    # asked in one round, the first entry's top-up comes back before its round ends
    assert first_answer < min(c.at for c in top_ups) + mock_llm.slow_seconds, "answers waited"
    rows = read_jsonl(out / "dataset.jsonl")
    by_entry = sorted(r["id"].rsplit("-", 1)[0] for r in rows)
    # the twin's first batch is the first's (the same prompt): dropped as repeats
    assert json.loads((out / "run.json").read_text())["counts"]["repeats_dropped"] == 2
    assert by_entry == ["first"] * 4 + ["twin"] * 4, "the twin was asked for its share"

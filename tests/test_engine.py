"""The engine streams: an instruction's thread starts as soon as its own entry is decoded
(and its rubrics written), while other entries are still being decoded."""

from __future__ import annotations

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
    # the quick entry's chain (rubrics, improve, answers) has 2.5 s: room on a busy machine
    assert min(answered_at) < decided - 0.5, "the quick entry's answers did not wait"
    rows = read_jsonl(out / "dataset.jsonl")
    assert sorted(r["id"] for r in rows) == ["quick-00", "quick-01", "slow-00", "slow-01"]
    assert [r["id"] for r in rows] == sorted(r["id"] for r in rows), "outputs in order"

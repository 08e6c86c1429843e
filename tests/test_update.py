"""``run NEW_SEEDS --out DIR --update`` (issue #14, point 4): a finished run meets shifted
traffic; it encodes only the new seeds, adds pool entries that follow them, pays only for
the new instructions, and keeps every finished pair; the report shows old vs new seeds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from codeclm.bench.mock_llm import MockLLM, mixed_rule
from codeclm.cli import main
from tests.conftest import mock_args, read_jsonl, run_cli, write_seeds

SETTINGS = {"instructions": 16, "metadata": 8, "seed": 1, "backoff": 0}


@pytest.fixture
def mock_llm(realistic_llm: MockLLM) -> MockLLM:
    """This module's runs meet the misbehaving mock (conftest's ``realistic_llm``)."""
    return realistic_llm


def _traffic(path: Path, mix: dict[str, int], tag: str) -> Path:
    texts = [
        f"{tag} request {i} about {use_case} [use case: {use_case}]"
        for use_case, n in mix.items()
        for i in range(n)
    ]
    return write_seeds(path, texts)


def _rows(out: Path) -> dict[str, dict[str, object]]:
    rows = read_jsonl(out / "dataset.jsonl") + read_jsonl(out / "dropped.jsonl")
    return {str(row["id"]): row for row in rows + read_jsonl(out / "failed.jsonl")}


def _subject(prompt: str) -> str:
    """The instruction a pair's request is about: an answer's whole prompt, the judge's
    question, the instruction an improve prompt rewrites (not its action, which a generic
    item of the realistic mock may share with an old instruction)."""
    if "[Question]\n" in prompt:
        return prompt.split("[Question]\n", 1)[1].split("\n\n[The Start", 1)[0]
    if "Improving action:" in prompt:
        return prompt.rsplit("Instruction: ", 1)[1].split("\n\nReply with", 1)[0]
    return prompt.strip()


def test_an_update_follows_the_new_seeds_pays_only_for_new_work_and_keeps_every_pair(
    mock_llm: MockLLM, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mock_llm.judge_rule = mixed_rule
    old_seeds = _traffic(tmp_path / "old.jsonl", {"billing": 6, "shipping": 2}, "old")
    new_seeds = _traffic(tmp_path / "new.jsonl", {"account security": 6, "billing": 2}, "new")
    out = tmp_path / "run"
    assert run_cli(old_seeds, mock_llm, out, **SETTINGS) == 0
    before = _rows(out)
    pool_before = read_jsonl(out / "metadata.jsonl")
    assert len(before) == 16
    sent = len(mock_llm.requests)

    assert main(["run", str(new_seeds), "--out", str(out), "--update", "--quiet"]) == 0
    update_requests = mock_llm.requests[sent:]
    encoded = {r.prompt for r in update_requests if r.schema == "EncodedMetadata"}
    assert len(encoded) == 8 and all("new request" in prompt for prompt in encoded)
    assert mock_llm.faults, "the update met the mock's faults (429s, 503s, wrapped JSON …)"
    # nothing asked again for the old entries (decode, Self-Rubrics) or their pairs
    old_labels = {(e["use_case"], ", ".join(e["skills"])) for e in pool_before}
    per_entry = [r for r in update_requests if r.schema in ("DecodedInstructions", "SelfRubrics")]
    assert per_entry and not [
        r for r in per_entry if (r.values["use_case"], r.values["skills"]) in old_labels
    ]
    old_texts = {str(row["instruction"]) for row in before.values()}
    old_texts |= {str(row["basic_instruction"]) for row in before.values()}
    per_pair = [_subject(r.prompt) for r in update_requests if r not in per_entry]
    assert not [p for p in per_pair if p in old_texts], "old pairs: no call"

    after = _rows(out)
    assert {ident: after[ident] for ident in before} == before, "every finished pair stays"
    pool = read_jsonl(out / "metadata.jsonl")
    assert pool[: len(pool_before)] == [
        {**entry, "n_instructions": pool[i]["n_instructions"]}
        for i, entry in enumerate(pool_before)
    ]
    added = pool[len(pool_before) :]
    assert len(added) == 8  # the run's own 8 entries per 8 seeds, for 8 new seeds
    share = sum(e["use_case"] == "account security" for e in added) / len(added)
    assert share >= 0.6, "what is added follows the new seeds (6 of 8 account security)"
    new_ids = {e["id"] for e in added}
    fresh = [row for ident, row in after.items() if ident not in before]
    assert len(fresh) == 16 and all(row["metadata"]["id"] in new_ids for row in fresh)

    record = json.loads((out / "run.json").read_text())
    assert record["config"]["instructions"] == 32 and len(record["updates"]) == 1
    assert main(["report", str(out), "--out", str(tmp_path / "report")]) == 0
    figures = json.loads((tmp_path / "report" / "report.json").read_text())["runs"][0]
    (shift,) = figures["updates"]
    assert shift["seeds"] == 8 and shift["entries"] == 8
    assert shift["old_seeds_vs_new_seeds"] > 0.3 > shift["new_seeds_vs_added_pool"]
    assert "Updates: old seeds vs new" in (tmp_path / "report" / "report.md").read_text()

    # the same update again, the run's own settings spelled out: nothing new to do, nothing
    # sent (a setting equal to the run's is accepted)
    sent = len(mock_llm.requests)
    same = mock_args(mock_llm, out, update=True, seed=SETTINGS["seed"], backoff=0)
    assert main(["run", str(new_seeds), *same]) == 0
    assert len(mock_llm.requests) == sent and _rows(out) == after

    # an update keeps the run's settings: a value that differs is refused, naming it; a
    # folder without a run has nothing to update
    capsys.readouterr()
    differing = [*same, "--threshold", "2", "--strong-model", "another"]
    assert main(["run", str(new_seeds), *differing]) == 2
    err = capsys.readouterr().err
    assert "keeps the run's own settings" in err and "--threshold 2.0 (the run's: 3.0)" in err
    assert "--strong-model another (the run's: strong-model)" in err and "--seed" not in err
    assert main(["run", str(new_seeds), "--out", str(tmp_path / "none"), "--update"]) == 2
    assert "holds no run" in capsys.readouterr().err
    evol = tmp_path / "evol"
    assert run_cli(old_seeds, mock_llm, evol, method="evol-instruct", **SETTINGS) == 0
    assert main(["run", str(new_seeds), "--out", str(evol), "--update", "--quiet"]) == 2
    assert "the method evol-instruct" in capsys.readouterr().err

"""Comparisons that are fair (issue #31): samples spread over the metadata entries, and no
evaluation item ever becomes training data."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from codeclm import api
from codeclm.analysis.contamination import Contamination
from codeclm.analysis.sampling import spread_sample
from codeclm.bench.mock_llm import MockLLM
from codeclm.cli import main
from tests.conftest import read_jsonl, run_cli, write_seeds

#: Evaluation items as a benchmark holds them (Vicuna-like questions, one short).
ITEMS = (
    "How can I improve my time management skills when working from home with small children?",
    "What are the most effective ways to deal with stress before an important job interview?",
    "Explain the main differences between Python 2 and Python 3 for someone maintaining "
    "an old codebase.",
    "Draft an apology email to a customer whose order was delayed by three weeks.",
    "What is the capital of France?",
)


def _benchmark(path: Path) -> Path:
    path.write_text(
        "".join(
            json.dumps({"id": f"q{i}", "instruction": text, "category": "generic"}) + "\n"
            for i, text in enumerate(ITEMS, 1)
        )
    )
    return path


def _seeds(tmp_path: Path, n: int = 8) -> Path:
    topics = ["taxes", "sourdough", "chess", "rust", "jazz", "tides", "printers", "billing"]
    return write_seeds(
        tmp_path / "seeds.jsonl",
        [f"Question {i}: how do I get better at {topics[i]}?" for i in range(n)],
    )


def test_a_spread_sample_takes_each_group_in_turn_and_is_seeded() -> None:
    groups = ["a"] * 10 + ["b"] * 10 + ["c"] * 2 + ["d"] * 1
    chosen = spread_sample(groups, 7, seed=0)
    counts = Counter(groups[i] for i in chosen)
    assert counts == {"a": 2, "b": 2, "c": 2, "d": 1}, (
        "no group above its share while others have rows"
    )
    assert chosen == sorted(chosen) and spread_sample(groups, 7, seed=0) == chosen
    assert spread_sample(groups, 7, seed=1) != chosen, "another seed, another sample"
    assert Counter(groups[i] for i in spread_sample(groups, 3, 5)).most_common(1)[0][1] == 1
    assert spread_sample(groups, 99, 0) == list(range(len(groups)))


def test_export_limit_and_the_pairs_surplus_spread_over_entries(
    mock_llm: MockLLM, tmp_path: Path
) -> None:
    """``export --limit 6`` of an 80-instruction run over 20 entries: rows of 6 entries
    (the first 6 rows came from 3 or fewer); ``--pairs 10``: 10 entries."""
    out = tmp_path / "out"
    assert run_cli(_seeds(tmp_path), mock_llm, out, instructions=80, metadata=20) == 0
    rows = read_jsonl(out / "dataset.jsonl")
    assert len(rows) == 80 and len({r["metadata"]["id"] for r in rows}) == 20
    assert len({r["metadata"]["id"] for r in rows[:6]}) <= 3, "the first rows: few entries"
    entry = {r["instruction"]: r["metadata"]["id"] for r in rows}
    path, n = api.export(out, "chat", tmp_path / "six.jsonl", limit=6)
    exported = [
        json.loads(line)["messages"][0]["content"] for line in path.read_text().splitlines()
    ]
    assert n == 6 and len({entry[text] for text in exported}) == 6
    again, _ = api.export(out, "chat", tmp_path / "again.jsonl", limit=6)
    assert again.read_text() == path.read_text(), "seeded: the same sample every time"

    pairs = tmp_path / "pairs"
    assert run_cli(_seeds(tmp_path), mock_llm, pairs, pairs=10, instructions=80, metadata=20) == 0
    kept = read_jsonl(pairs / "dataset.jsonl")
    surplus = [r for r in read_jsonl(pairs / "dropped.jsonl") if r["status"] == "surplus"]
    assert len(kept) == 10 and len(surplus) == 70
    assert len({r["metadata"]["id"] for r in kept}) == 10, "one pair from each of 10 entries"


def test_decontaminate_keeps_no_benchmark_item_and_pairs_fill_up(
    mock_llm: MockLLM, tmp_path: Path, capsys
) -> None:
    """A server that writes benchmark items as instructions: with ``--decontaminate`` on
    the benchmark, none is kept, each is 'contaminated' in dropped.jsonl, and under
    ``--pairs`` the next instructions take their places."""
    bench = _benchmark(tmp_path / "bench.jsonl")
    mock_llm.copied_items = ITEMS
    mock_llm.copy_rate = 0.3
    plain = tmp_path / "plain"
    assert run_cli(_seeds(tmp_path), mock_llm, plain, instructions=24, metadata=6) == 0
    copied = [r for r in read_jsonl(plain / "dataset.jsonl") if r["instruction"] in ITEMS]
    assert copied, "without the flag, copies become data"

    out = tmp_path / "clean"
    options = dict(pairs=16, instructions=24, metadata=6, decontaminate=bench)
    assert run_cli(_seeds(tmp_path), mock_llm, out, **options) == 0
    kept = read_jsonl(out / "dataset.jsonl")
    assert len(kept) == 16 and not [r for r in kept if r["instruction"] in ITEMS]
    left = [r for r in read_jsonl(out / "dropped.jsonl") if r["status"] == "contaminated"]
    assert left and all(r["instruction"] in ITEMS for r in left)
    assert all(r["reason"].startswith("contaminated:") for r in left)
    assert {r["instruction"] for r in left} >= {r["instruction"] for r in copied} - {ITEMS[4]}
    record = json.loads((out / "run.json").read_text())
    assert record["counts"]["contaminated"] == len(left)
    assert record["decontamination"]["items"] == len(ITEMS)
    assert "13-word n-gram" in record["decontamination"]["rule"]
    said = " ".join(capsys.readouterr().out.split())
    assert f"{len(left)} pairs left out (dropped.jsonl: contaminated)" in said


def test_the_13_gram_rule_and_what_it_must_not_touch() -> None:
    found = Contamination({"q1": [ITEMS[0]], "q5": [ITEMS[4]]}, use_embeddings=False)
    long_copy = "Please help: " + ITEMS[0].lower() + " Thanks!"
    assert found.check([[long_copy]])[0] == "contaminated: shares 13 words with q1"
    assert found.check([["First turn.", ITEMS[0]]])[0] is not None, "any user turn"
    on_topic = "How can I manage my time better when I work from home with children around?"
    assert found.check([[on_topic], [ITEMS[4]]]) == [None, None], "similar topic; short item"
    assert "MiniLM" not in found.rule


def test_a_run_on_split_seeds_is_checked_against_the_split_s_test_part(
    mock_llm: MockLLM, tmp_path: Path, capsys
) -> None:
    bench = tmp_path / "bench.jsonl"
    questions = [f"{text} (variant {i})" for i in range(4) for text in ITEMS[:4]]
    bench.write_text(
        "".join(
            json.dumps({"id": f"q{i}", "instruction": q, "category": "generic"}) + "\n"
            for i, q in enumerate(questions)
        )
    )
    split = tmp_path / "split"
    assert main(["split", str(bench), "--out", str(split)]) == 0
    record = json.loads((split / "split.json").read_text())
    assert record["test_file"] == str((split / "eval.jsonl").resolve())
    test_items = [json.loads(line)["instruction"] for line in (split / "eval.jsonl").open()]
    mock_llm.copied_items = tuple(test_items)
    mock_llm.copy_rate = 0.3
    out = tmp_path / "out"
    assert run_cli(split / "seeds.jsonl", mock_llm, out, instructions=16, metadata=4) == 0
    said = " ".join(capsys.readouterr().out.split())
    assert "decontaminated against 13 items of the evaluation part codeclm split wrote" in said
    assert not [r for r in read_jsonl(out / "dataset.jsonl") if r["instruction"] in test_items]
    run = json.loads((out / "run.json").read_text())
    assert run["decontamination"]["from_split"] and run["counts"]["contaminated"] > 0


def test_a_run_whose_waves_stalled_adds_none_when_run_again(
    mock_llm: MockLLM, tmp_path: Path
) -> None:
    """Every instruction contaminated: the waves stall, the record says so, and the same
    command run again asks the model for nothing more."""
    bench = _benchmark(tmp_path / "bench.jsonl")
    seeds = write_seeds(tmp_path / "seeds.jsonl", list(ITEMS[:3]))  # the seeds are test items
    out = tmp_path / "out"
    options = dict(pairs=6, instructions=6, method="tree-instruct", decontaminate=bench)
    assert run_cli(seeds, mock_llm, out, **options) == 0
    record = json.loads((out / "run.json").read_text())
    assert record["counts"]["kept"] == 0 and record["counts"]["contaminated"] > 0
    assert record["waves_stalled"] and record["shortfall"] is None
    asked, instructions = len(mock_llm.requests), record["counts"]["instructions"]
    assert run_cli(seeds, mock_llm, out, **options) == 0
    again = json.loads((out / "run.json").read_text())
    assert len(mock_llm.requests) == asked, "nothing asked again"
    assert again["counts"]["instructions"] == instructions and again["waves_stalled"]

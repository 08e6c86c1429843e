"""``codeclm report`` (rendered in headless Chromium) and ``codeclm export`` in every format,
on real runs against the loopback mock; and the analysis behind them."""

from __future__ import annotations

import base64
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from codeclm.analysis.embeddings import embedding_model
from codeclm.analysis.metrics import distinct_n, jensen_shannon, near_duplicates, rouge_l, spread
from codeclm.bench.mock_llm import MockLLM, mixed_rule
from codeclm.cli import main
from tests.conftest import read_jsonl, run_cli

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SETTINGS = {"instructions": 16, "metadata": 8, "seed": 2}


@pytest.fixture
def two_runs(mock_llm: MockLLM, seeds_file: Path, tmp_path: Path) -> list[Path]:
    """The full method (some pairs kept at later iterations, some dropped) and Evol-Instruct."""
    mock_llm.judge_rule = mixed_rule
    mock_llm.numbered_decode = True  # alike in meaning: near-duplicates for the report to find
    runs = [tmp_path / "codeclm", tmp_path / "evol"]
    assert run_cli(seeds_file, mock_llm, runs[0], **SETTINGS) == 0
    assert run_cli(seeds_file, mock_llm, runs[1], method="evol-instruct", **SETTINGS) == 0
    return runs


@pytest.mark.browser
def test_report_renders_in_headless_chromium_with_its_plots(
    two_runs: list[Path], tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    out = tmp_path / "report"
    assert main(["report", *map(str, two_runs), "--out", str(out)]) == 0
    page_html = (out / "report.html").read_text()
    assert "<script" not in page_html and "http" not in page_html  # self-contained
    images = re.findall(r"src='data:image/png;base64,([^']+)'", page_html)
    assert len(images) >= 8
    assert all(base64.b64decode(data).startswith(b"\x89PNG") for data in images)

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.goto((out / "report.html").as_uri())
        loaded = page.evaluate(
            "[...document.images].map(i => [i.alt, i.complete && i.naturalWidth > 0])"
        )
        shot = page.screenshot(full_page=True)
        height = page.evaluate("document.body.scrollHeight")
        browser.close()
    names = {alt for alt, _ in loaded}
    assert all(ok for _, ok in loaded), loaded
    assert {
        "use_case_distribution",
        "skills_distribution",
        "provenance",
        "gap_histogram",
        "embedding_spread",
        "usage_by_node",
    } <= names
    assert shot.startswith(b"\x89PNG") and len(shot) > 50_000 and height > 3000
    (out / "screenshot.png").write_bytes(shot)


def test_report_figures_match_the_run(two_runs: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "report"
    assert main(["report", *map(str, two_runs), "--out", str(out)]) == 0
    full, evol = json.loads((out / "report.json").read_text())["runs"]
    run = json.loads((two_runs[0] / "run.json").read_text())
    kept = read_jsonl(two_runs[0] / "dataset.jsonl")
    assert full["counts"]["kept"] == run["counts"]["kept"] == len(kept)
    assert full["counts"]["dropped"] == run["counts"]["dropped"] > 0
    assert full["kept_by_iteration"] == run["counts"]["kept_by_iteration"]
    assert len(full["kept_by_iteration"]) > 1  # the mixed judge keeps some after improving
    assert len(full["gaps"]) == run["counts"]["kept"] + run["counts"]["dropped"]
    assert sum(full["metadata"]["use_case"]["kept"].values()) == len(kept)
    assert sum(full["metadata"]["use_case"]["seeds"].values()) == 4  # one per seed
    assert 0 <= full["jensen_shannon"]["use_case"]["seeds_vs_kept"] <= 1
    assert (
        full["usage_by_node"]["judge/strong"]["calls"]
        == run["usage_by_node"]["judge/strong"]["calls"]
    )
    assert full["diversity"]["near_duplicate_threshold"] == 0.9
    # The mock's tasks are all alike ("Task j on USE CASE needing SKILLS"): at a low
    # threshold nearly every one repeats an earlier one; at 1 none does.
    for threshold, expected in (("0.5", lambda n: n >= len(kept) - 3), ("1", lambda n: n == 0)):
        single = tmp_path / f"single-{threshold}"
        assert (
            main(["report", str(two_runs[0]), "--out", str(single), "--near-dup", threshold]) == 0
        )
        figures = json.loads((single / "report.json").read_text())["runs"][0]["diversity"]
        assert expected(figures["near_duplicates"]), (threshold, figures)
    assert evol["method"] == "evol-instruct" and evol["metadata"]["use_case"]["kept"] == {}
    markdown = (out / "report.md").read_text()
    assert (
        "| codeclm | codeclm |" in markdown and "![gap_histogram](1_gap_histogram.png)" in markdown
    )
    assert (out / "1_gap_histogram.png").read_bytes().startswith(b"\x89PNG")


def test_report_of_a_folder_without_a_run_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", str(tmp_path)]) == 2
    assert "holds no finished run" in capsys.readouterr().err


def test_export_every_format(two_runs: list[Path], tmp_path: Path) -> None:
    from datasets import load_from_disk

    run = two_runs[0]
    kept = read_jsonl(run / "dataset.jsonl")
    out = tmp_path / "export"

    assert main(["export", str(run), "--format", "chat", "--out", str(out / "c.jsonl")]) == 0
    chat = read_jsonl(out / "c.jsonl")
    assert [c["messages"] for c in chat] == [r["messages"] for r in kept]

    assert main(["export", str(run), "--format", "alpaca", "--out", str(out / "a.json")]) == 0
    alpaca = json.loads((out / "a.json").read_text())
    assert alpaca[0] == {
        "instruction": kept[0]["instruction"],
        "input": "",
        "output": kept[0]["response"],
    }

    assert main(["export", str(run), "--format", "sharegpt", "--out", str(out / "s.json")]) == 0
    turns = json.loads((out / "s.json").read_text())[0]["conversations"]
    assert [t["from"] for t in turns] == ["human", "gpt"] and turns[1]["value"] == kept[0][
        "response"
    ]

    assert main(["export", str(run), "--format", "parquet", "--out", str(out / "p.parquet")]) == 0
    import pyarrow.parquet as pq

    table = pq.read_table(out / "p.parquet")
    assert table.num_rows == len(kept) and {"instruction", "response", "gap"} <= set(
        table.column_names
    )

    assert (
        main(["export", str(run), "--format", "hf", "--out", str(out / "hf"), "--limit", "3"]) == 0
    )
    dataset = load_from_disk(str(out / "hf"))
    assert len(dataset) == 3 and all(
        row["messages"] in [r["messages"] for r in kept] for row in dataset
    )
    card = (out / "hf" / "README.md").read_text()
    config = json.loads(card.split("```json\n", 1)[1].split("```", 1)[0])
    assert config == json.loads((run / "run.json").read_text())["config"]


def test_export_default_path_and_bad_format(
    two_runs: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["export", str(two_runs[1]), "--format", "chat"]) == 0
    assert (two_runs[1] / "export" / "chat.jsonl").is_file()
    assert main(["export", str(two_runs[1]), "--format", "csv"]) == 2
    assert "invalid choice: 'csv'" in capsys.readouterr().err


def test_minilm_matches_sentence_transformers() -> None:
    """Our NumPy forward pass against embeddings made by sentence-transformers itself."""
    reference = json.loads((Path(__file__).parent / "data" / "minilm_reference.json").read_text())
    ours = embedding_model().encode(reference["texts"])
    assert np.abs(ours - np.array(reference["embeddings"])).max() < 1e-4


def test_metrics() -> None:
    assert distinct_n(["a b a b"], 1) == 0.5 and distinct_n(["a b", "a b"], 2) == 0.5
    assert rouge_l(["the", "cat", "sat"], ["the", "cat", "sat"]) == 1
    assert rouge_l(["a", "b", "c", "d"], ["a", "c"]) == pytest.approx(2 * 1 * 0.5 / 1.5)
    from collections import Counter

    assert jensen_shannon(Counter("aab"), Counter("aab")) == 0
    assert jensen_shannon(Counter("aa"), Counter("bb")) == pytest.approx(1)
    vectors = embedding_model().encode(
        ["How do I reverse a list in Python?", "How can I reverse a Python list?", "Bake bread."]
    )
    assert near_duplicates(vectors, 0.9) == {1: (0, pytest.approx(float(vectors[0] @ vectors[1])))}
    assert spread(vectors[:1]) == 0 and 0 < spread(vectors) < 1


def test_novelty_filter_gives_the_verdicts_of_plain_rouge_l() -> None:
    """The indexed filter only skips pairs that cannot reach the threshold."""
    import random

    from codeclm.analysis.metrics import NoveltyFilter, tokens

    rng = random.Random(1)
    vocab = [f"w{i}" for i in range(30)]
    texts = []
    for _ in range(80):
        words = [rng.choice(vocab) for _ in range(rng.randint(3, 12))]
        texts.append(" ".join(words))
        for _ in range(2):  # near copies: one word changed
            copy = list(words)
            copy[rng.randrange(len(copy))] = rng.choice(vocab)
            texts.append(" ".join(copy))
    rng.shuffle(texts)
    novelty = NoveltyFilter(0.7)
    indexed = [novelty.add_if_novel(text) for text in texts]
    known: list[list[str]] = []
    plain = []
    for text in texts:
        words = tokens(text)
        plain.append(all(rouge_l(words, other) < 0.7 for other in known))
        if plain[-1]:
            known.append(words)
    assert indexed == plain and 0 < sum(plain) < len(texts)


def test_model_text_is_text_in_report_md_too(mock_llm: MockLLM, tmp_path: Path) -> None:
    """A label or reason holding markup (``<img src=x onerror=…>``) is escaped in
    report.md as in report.html: a Markdown viewer that renders HTML shows it as text."""
    from tests.conftest import write_seeds

    payload = "<img src=x onerror=alert(1)>"
    seeds = write_seeds(tmp_path / "seeds.jsonl", [f"Question {i}: {payload}?" for i in range(4)])
    mock_llm.refuse_answers = {"strong-model": "Question 1"}
    out = tmp_path / "run"
    assert run_cli(seeds, mock_llm, out, instructions=8, method="evol-instruct") == 0
    dropped = read_jsonl(out / "dropped.jsonl")
    assert dropped, "a refused answer"
    for row in dropped:  # a model whose refusal holds markup: its reason quotes it
        row["reason"] = f"strong refused: {payload}"
    (out / "dropped.jsonl").write_text("".join(json.dumps(r) + "\n" for r in dropped))
    assert main(["report", str(out), "--out", str(tmp_path / "report")]) == 0
    for page in ("report.md", "report.html"):
        text = (tmp_path / "report" / page).read_text()
        assert "<img src=x" not in text and "&lt;img src=x" in text, page

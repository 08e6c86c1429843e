"""Canonical labels (the real MiniLM encoder) and a pool that follows the seeds'
distribution (issue #14, points 1 and 2)."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import pytest

from codeclm.analysis.labels import canonical_labels
from codeclm.analysis.metrics import jensen_shannon
from codeclm.bench.mock_llm import MockLLM
from codeclm.bench.mock_model import USE_CASE_VARIANTS
from codeclm.cli import main
from codeclm.prepare.pool import augment_pool
from codeclm.state import MetadataEntry
from tests.conftest import read_jsonl, run_cli, write_seeds


@pytest.fixture
def mock_llm(realistic_llm: MockLLM) -> MockLLM:
    """This module's runs meet the misbehaving mock (conftest's ``realistic_llm``)."""
    return realistic_llm


def test_minilm_merges_spellings_of_one_label_and_keeps_different_ones_apart() -> None:
    counts = Counter(
        {
            "customer service": 5,
            "customers service": 1,
            "question answering": 4,
            "question-answering": 1,
            "answering questions": 2,
            "coding help": 3,
            "coding assistance": 1,
            "travel planning": 2,
            "trip planning": 1,
            "creative writing": 2,
            "technical writing": 2,
            "data analysis": 1,
            "data visualization": 1,
            "coding": 1,
            "code generation": 1,
        }
    )
    merged = canonical_labels(counts, 0.8)
    assert merged == {
        "customers service": "customer service",
        "question-answering": "question answering",
        "answering questions": "question answering",
        "coding assistance": "coding help",
        "coding": "coding help",
        "trip planning": "travel planning",
    }  # creative/technical writing, data analysis/visualization, code generation: apart
    # 1: spelling only (case, punctuation, spaces); meaning is not looked at
    assert canonical_labels(counts, 1.0) == {"question-answering": "question answering"}
    # the most frequent spelling names the group
    assert canonical_labels(Counter({"Trip planning": 3, "travel planning": 1}), 0.8) == {
        "Trip planning": "trip planning",
        "travel planning": "trip planning",
    }


def _seeds(tmp_path: Path, n: int) -> Path:
    topics = ["refunds", "passwords", "invoices", "shipping", "sql", "poems", "loans"]
    return write_seeds(
        tmp_path / "seeds.jsonl",
        [f"Question {i} about {topics[i % len(topics)]} number {i * 7}" for i in range(n)],
    )


def test_the_encoders_spelling_variants_merge_into_canonical_labels(
    mock_llm: MockLLM, tmp_path: Path
) -> None:
    mock_llm.label_variants = True
    seeds = _seeds(tmp_path, 24)
    settings = {"instructions": 8, "metadata": 30, "seed": 4, "backoff": 0}
    assert run_cli(seeds, mock_llm, tmp_path / "merged", **settings) == 0
    canonical = set(USE_CASE_VARIANTS)
    pool = read_jsonl(tmp_path / "merged" / "metadata.jsonl")
    assert {entry["use_case"] for entry in pool} <= canonical
    assert all(skill == skill.strip(".").lower() for e in pool for skill in e["skills"])
    record = json.loads((tmp_path / "merged" / "run.json").read_text())
    merged = record["label_map"]["use_case"]
    assert merged["answering questions"] == "question answering"
    assert merged["coding assistance"] == "coding help"
    assert record["label_map"]["threshold"] == 0.8
    rows = read_jsonl(tmp_path / "merged" / "dataset.jsonl")
    assert {row["metadata"]["use_case"] for row in rows} <= canonical

    # spelling alone cannot merge a reworded label: it stays a use case of its own
    assert run_cli(seeds, mock_llm, tmp_path / "spelling", label_similarity=1, **settings) == 0
    apart = {e["use_case"] for e in read_jsonl(tmp_path / "spelling" / "metadata.jsonl")}
    assert "answering questions" in apart or "coding assistance" in apart
    assert "question-answering" not in apart, "punctuation is normalised all the same"

    # the report names the merges and counts canonical labels
    assert main(["report", str(tmp_path / "merged"), "--out", str(tmp_path / "report")]) == 0
    figures = json.loads((tmp_path / "report" / "report.json").read_text())["runs"][0]
    assert "answering questions" in figures["labels"]["use_case"]["question answering"]
    assert set(figures["metadata"]["use_case"]["seeds"]) <= canonical
    assert "Canonical labels" in (tmp_path / "report" / "report.md").read_text()


def _skewed_base(rng: random.Random) -> list[MetadataEntry]:
    """40 seeds as a narrow domain gives them: mostly coding help, a few skills in most."""
    skills = [f"skill {chr(97 + i)}" for i in range(15)]
    zipf = [1 / (rank + 1) for rank in range(len(skills))]
    base: dict[tuple[str, frozenset[str]], MetadataEntry] = {}
    for i in range(40):
        use_case = rng.choices(["coding help", "creative writing", "advice"], [6, 3, 1])[0]
        chosen = sorted(set(rng.choices(skills, zipf, k=rng.randint(1, 3))))
        key = (use_case, frozenset(chosen))
        if key in base:
            base[key].seed_ids.append(f"s{i}")
            continue
        base[key] = MetadataEntry(
            id=f"m{len(base):04d}",
            use_case=use_case,
            skills=chosen,
            origin="encoded",
            seed_ids=[f"s{i}"],
        )
    return list(base.values())


def test_the_augmented_pool_follows_the_seeds_use_case_and_skill_distribution() -> None:
    base = _skewed_base(random.Random(11))
    seeds_use_case: Counter[str] = Counter()
    seeds_skills: Counter[str] = Counter()
    for e in base:
        seeds_use_case[e.use_case] += len(e.seed_ids)
        seeds_skills.update({skill: len(e.seed_ids) for skill in e.skills})
    pool = augment_pool(base, size=200, max_skills=3, rng=random.Random(5))
    assert len(pool) == 200 and pool[: len(base)] == base
    use_cases = Counter(e.use_case for e in pool)
    skills = Counter(skill for e in pool for skill in e.skills)
    # measured: 0.0010 and 0.0102 here; the draw before #14 (a use case from a uniformly
    # chosen base entry, skills uniform over the union) gives 0.0044 and 0.1062
    assert jensen_shannon(seeds_use_case, use_cases) < 0.003
    assert jensen_shannon(seeds_skills, skills) < 0.03
    assert all(len(set(e.skills)) == len(e.skills) for e in pool)
    assert len({e.key() for e in pool}) == 200

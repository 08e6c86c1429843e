"""Encoding, augmentation, Self-Rubrics caching, decoding shares, and user-written metadata."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import pytest

from codeclm.analysis.labels import clean_skills
from codeclm.bench.mock_llm import MockLLM
from codeclm.prepare.planning import shares
from codeclm.prepare.pool import augment_pool
from codeclm.state import MetadataEntry
from tests.conftest import read_jsonl, run_cli


def _base() -> list[MetadataEntry]:
    return [
        MetadataEntry(
            id="a",
            use_case="coding help",
            skills=["python", "testing"],
            origin="encoded",
            seed_ids=["s1"],
        ),
        MetadataEntry(
            id="b", use_case="coding help", skills=["sql"], origin="encoded", seed_ids=["s2"]
        ),
        MetadataEntry(
            id="c",
            use_case="creative writing",
            skills=["poetry", "humour", "rhyme"],
            origin="encoded",
            seed_ids=["s3"],
        ),
    ]


def test_augmentation_reaches_the_pool_size_with_skills_drawn_without_replacement() -> None:
    base = _base()
    pool = augment_pool(base, size=20, max_skills=3, rng=random.Random(7))
    assert len(pool) == 20
    assert pool[:3] == base
    union = {s for e in base for s in e.skills}
    keys = set()
    for entry in pool[3:]:
        assert entry.origin == "augmented"
        assert entry.use_case in {"coding help", "creative writing"}
        assert set(entry.skills) <= union
        assert len(entry.skills) == len(set(entry.skills)), "no skill drawn twice"
        assert 1 <= len(entry.skills) <= 3
        assert entry.seed_ids and set(entry.seed_ids) <= {"s1", "s2", "s3"}
        keys.add(entry.key())
    assert len(keys) == 17, "no two augmented entries are the same pair"
    # the seeds' use-case mix is kept: 'coding help' was 2 of 3 seeds
    assert Counter(e.use_case for e in pool)["coding help"] > 10


def test_augmentation_is_reproducible_and_keeps_a_larger_base_whole() -> None:
    first = augment_pool(_base(), size=12, max_skills=2, rng=random.Random(1))
    again = augment_pool(_base(), size=12, max_skills=2, rng=random.Random(1))
    assert first == again
    assert all(len(e.skills) <= 2 for e in first[3:])
    assert augment_pool(_base(), size=2, max_skills=3, rng=random.Random(1)) == _base()


def test_instructions_are_shared_equally_and_an_exhausted_entry_gives_up_its_part() -> None:
    pool = augment_pool(_base(), size=7, max_skills=3, rng=random.Random(3))
    equal = shares(pool, {}, set(), 23, seed=3)
    assert sum(equal.values()) == 23 and set(equal.values()) == {3, 4}
    assert equal == shares(pool, {}, set(), 23, seed=3), "the remainder lands the same way"
    # entry 'a' could give only one instruction: the others share its part
    capped = shares(pool, {"a": 1}, {"a"}, 23, seed=3)
    assert capped["a"] == 1 and sum(capped.values()) == 23
    assert set(capped.values()) - {1} == {4} or set(capped.values()) - {1} == {3, 4}
    # a grown budget tops the smallest up first and takes nothing from anyone
    grown = shares(pool, equal, set(), 30, seed=3)
    assert all(grown[k] >= equal[k] for k in equal) and set(grown.values()) <= {4, 5}


def test_skills_never_say_skill_or_knowledge() -> None:
    assert clean_skills(["Python skills", "Domain Knowledge", "SQL", "sql", "x"], 3) == [
        "python",
        "domain",
        "sql",
    ]


def test_rubrics_are_written_once_per_metadata_entry_and_reused(
    mock_llm: MockLLM, seeds_file: Path, tmp_path: Path
) -> None:
    # 3 instructions per entry, each improved twice: rubrics must still be asked once per entry
    mock_llm.judge_rule = lambda instruction: (5, 5)
    out = tmp_path / "out"
    assert run_cli(seeds_file, mock_llm, out, instructions=12, metadata=4, max_iterations=3) == 0
    pool = read_jsonl(out / "metadata.jsonl")
    assert len(pool) == 4
    rubric_calls = mock_llm.calls("SelfRubrics")
    assert len(rubric_calls) == 4
    assert len({c.prompt for c in rubric_calls}) == 4, "one call per distinct entry"
    assert len(mock_llm.calls("ImprovedInstruction")) == 12 * 2
    for entry in pool:
        assert entry["n_instructions"] == 3
        assert len(entry["rubrics"]) == 4 and len(entry["actions"]) == 4
    actions_by_entry = {e["id"]: set(e["actions"]) for e in pool}
    for row in read_jsonl(out / "dropped.jsonl"):
        assert set(row["actions"]) <= actions_by_entry[row["metadata"]["id"]]
    assert len(mock_llm.calls("EncodedMetadata")) == 4  # one per seed
    assert len(mock_llm.calls("DecodedInstructions")) == 4  # one per entry, N=3 each


def test_pool_is_augmented_to_the_configured_size(
    mock_llm: MockLLM, seeds_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    assert run_cli(seeds_file, mock_llm, out, instructions=10, metadata=10) == 0
    pool = read_jsonl(out / "metadata.jsonl")
    assert len(pool) == 10
    origins = Counter(e["origin"] for e in pool)
    assert origins["encoded"] + origins["augmented"] == 10 and origins["augmented"] >= 6
    assert sum(e["n_instructions"] for e in pool) == 10
    counts = json.loads((out / "run.json").read_text())["counts"]
    assert counts["metadata_pool"] == 10 and counts["instructions"] == 10


def test_user_written_metadata_runs_without_seeds(mock_llm: MockLLM, tmp_path: Path) -> None:
    meta = tmp_path / "meta.jsonl"
    meta.write_text(
        '{"id": "billing", "use_case": "customer support", "skills": ["billing", "empathy"]}\n'
        '{"use_case": "code review", "skills": ["python", "security"]}\n'
    )
    out = tmp_path / "out"
    assert run_cli(None, mock_llm, out, user_metadata=meta, instructions=8, metadata=4) == 0
    assert not mock_llm.calls("EncodedMetadata"), "no seeds, nothing to encode"
    pool = read_jsonl(out / "metadata.jsonl")
    assert [e["origin"] for e in pool] == ["user", "user", "augmented", "augmented"]
    assert pool[0]["id"] == "billing" and pool[0]["skills"] == ["billing", "empathy"]
    rows = read_jsonl(out / "dataset.jsonl")
    assert len(rows) == 8
    assert {r["metadata"]["use_case"] for r in rows} <= {"customer support", "code review"}
    assert all(r["seed_ids"] for r in rows)


def test_the_same_seed_reproduces_the_run_and_another_seed_does_not(
    mock_llm: MockLLM, seeds_file: Path, tmp_path: Path
) -> None:
    mock_llm.judge_rule = lambda text: (9, 2) if text.count("(harder:") == 2 else (5, 4)

    def run(name: str, seed: int) -> tuple[str, str]:
        out = tmp_path / name
        assert run_cli(seeds_file, mock_llm, out, instructions=6, metadata=9, seed=seed) == 0
        return (out / "metadata.jsonl").read_text(), (out / "dataset.jsonl").read_text()

    first, again, other = run("a", 5), run("b", 5), run("c", 6)
    assert first == again
    assert first[0] != other[0], "another seed augments differently"
    assert len(first[1].splitlines()) == 6


def test_acceptance_drops_exact_repeats_anywhere_and_near_ones_within_an_entry() -> None:
    from codeclm.prepare.planning import Acceptance
    from codeclm.state import BasicInstruction

    def item(entry: str, index: int, text: str) -> BasicInstruction:
        return BasicInstruction(
            id=f"{entry}-{index}", metadata_id=entry, instruction=text, index=index
        )

    acceptance = Acceptance(0.9, {"a": 2, "b": 2})
    base = "Write a haiku about the first snow falling on a quiet mountain village at dawn"
    offers = [
        (item("a", 0, base), True),
        (item("a", 1, "1. " + base.upper() + "!"), False),  # exact once normalised
        (item("a", 2, base + " today"), False),  # near copy in the same entry
        (item("b", 0, base + " today"), True),  # near copy in another entry: kept
        (item("b", 1, base), False),  # exact repeat across entries
        (item("a", 3, "Explain how tides work to a ten-year-old"), True),
        (item("a", 4, "Summarise the causes of the First World War"), False),  # share of 2 used
    ]
    for offered, expected in offers:
        assert acceptance.offer(offered) is expected, offered.id
    assert acceptance.repeats == 3


def test_a_round_adds_to_what_earlier_rounds_accepted_as_ranking_all_again_would() -> None:
    """``collect`` offers only its round's items: the same answer as ranking every round's
    items again, since earlier rounds rank first; and the index of an entry is built only
    when one of its items is offered."""
    from codeclm.prepare.planning import Acceptance, accept_round
    from codeclm.state import BasicInstruction

    rng = random.Random(3)
    words = ["plan", "trip", "bake", "bread", "debug", "code", "write", "poem", "sell", "car"]
    items = [
        BasicInstruction(
            id=f"{entry}-{i}",
            metadata_id=entry,
            instruction=" ".join(rng.choice(words) for _ in range(6)),
            round=i // 4,
            index=i,
        )
        for entry in ("a", "b", "c")
        for i in range(12)
    ]
    order, targets = {"a": 0, "b": 1, "c": 2}, {"a": 6, "b": 6, "c": 6}
    everything, _ = accept_round([], items, order, targets, 0.7)
    accepted: list[BasicInstruction] = []
    for round_ in range(3):
        this_round = [item for item in items if item.round == round_]
        new, _ = accept_round(accepted, this_round, order, targets, 0.7)
        accepted += new
    assert accepted == everything and 0 < len(accepted) < len(items)
    lazy = Acceptance(0.7, {"a": 99, "b": 99, "c": 99}, everything)
    lazy.offer(items[0].model_copy(update={"instruction": "Sing about the sea"}))
    assert set(lazy.novelty) == {"a"}


def test_a_prepare_checkpoint_of_an_earlier_version_reads_with_accepted_ids() -> None:
    """Checkpoints of codeclm 0.4 held the accepted instructions themselves."""
    from codeclm.state import BasicInstruction, PrepareState

    item = BasicInstruction(id="m1-00", metadata_id="m1", instruction="Plan a trip")
    old = PrepareState.model_validate({"decoded": [item], "accepted": [item]})
    assert old.accepted == ["m1-00"] and old.accepted_items() == [item]
    assert PrepareState.model_validate({"accepted": [item.model_dump()]}).accepted == ["m1-00"]


def test_a_decoded_instruction_is_the_validated_one_and_survives_a_checkpoint() -> None:
    """``BasicInstruction.decoded`` skips validation to save memory: the same value, and the
    checkpoint serializer writes and reads it back alike."""
    from codeclm.state import BasicInstruction, serializer

    fields = {"id": "m1-03", "metadata_id": "m1", "instruction": "Plan it", "round": 2, "index": 3}
    built, validated = BasicInstruction.decoded(**fields), BasicInstruction(**fields)
    assert built == validated and built.model_dump() == validated.model_dump()
    serde = serializer()
    assert serde.loads_typed(serde.dumps_typed(built)) == validated


def test_checkpoints_naming_the_models_old_module_still_read_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Checkpoints written before the state models were split name every class as one of
    ``codeclm.state.models``; they come back as the same models, not as plain dicts (a
    channel holds the models themselves: a list of seeds, one decoded instruction)."""
    from codeclm.state import BasicInstruction, Seed, serializer
    from codeclm.state.serde import LEGACY_MODULE

    values = [
        [Seed(id="s1", instruction="Say hi.")],
        BasicInstruction(id="m1-00", metadata_id="m1", index=0, instruction="Hi"),
    ]
    for model in (Seed, BasicInstruction):  # written as the earlier version wrote them
        monkeypatch.setattr(model, "__module__", LEGACY_MODULE)
    written = [serializer().dumps_typed(value) for value in values]
    assert all(LEGACY_MODULE.encode() in data for _, data in written)
    monkeypatch.undo()
    assert Seed.__module__ != LEGACY_MODULE, "the models live elsewhere now"
    seeds, item = (serializer().loads_typed(data) for data in written)
    assert isinstance(seeds[0], Seed) and seeds == values[0]
    assert isinstance(item, BasicInstruction) and item == values[1]

"""``run --method``: the paper's baselines and ablations, each a graph of shared nodes, with
the same budget of instructions and the same output format; and ``run --dedup``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import codeclm
from codeclm.analysis.metrics import rouge_l, tokens
from codeclm.bench.mock_llm import MockLLM
from codeclm.methods import METHODS
from tests.conftest import DATASET_ROW_KEYS, read_jsonl, run_cli

BUDGET = {"instructions": 12, "metadata": 6, "seed": 5}


def _run(mock: MockLLM, seeds: Path, out: Path, method: str, **extra: Any) -> dict[str, Any]:
    assert run_cli(seeds, mock, out, method=method, **BUDGET, **extra) == 0
    return dict(json.loads((out / "run.json").read_text()))


def _by_node(summary: dict[str, Any]) -> dict[str, int]:
    return {key: u["calls"] for key, u in summary["usage_by_node"].items()}


@pytest.mark.parametrize("method", list(METHODS))
def test_the_registry_describes_each_methods_graph(method: str) -> None:
    from typing import get_args

    from codeclm.methods import Method

    assert set(METHODS) == set(get_args(Method)), "every --method choice has its spec"
    """One place says what a method does: every node of its graph that calls a model
    declares its step, and the restart table derived from the graph's edges leads back
    to each of them (an edge from the node it resets as to the failed node)."""
    from langgraph.constants import START

    from codeclm.graph import build_instruction_graph, declared_steps, restart_table, retry_policy

    spec = METHODS[method]
    for turns in (1, 2):  # a conversation's graph has write_turns too
        builder = build_instruction_graph(retry_policy(1), method, turns=turns)
        nodes = {n for n in builder.compile().get_graph().nodes if not n.startswith("__")}
        assert set(declared_steps(builder)) == nodes
        table = restart_table(builder)
        assert set(table) == nodes
        for node, (as_node, _) in table.items():
            successors = {t for s, t in builder.edges if s == as_node} | {
                target
                for branch in builder.branches.get(as_node, {}).values()
                for target in (branch.ends or {}).values()
            }
            assert as_node in nodes | {START} and node in successors, (node, as_node)
        assert ("judge" in nodes) == spec.judges
        assert ("write_turns" in nodes) == (turns > 1)
    assert spec.makes_metadata == (method.startswith("codeclm") or method == "wizardlm-plus")


def test_a_record_from_an_earlier_version_still_reads(tmp_path: Path) -> None:
    """run.json written before methods, inputs or checkpointing figures existed."""
    from codeclm.config import ConfigError
    from codeclm.handle import Folder
    from codeclm.records import RunInputs

    old = tmp_path / "run.json"
    old.write_text(json.dumps({"fingerprint": "abc", "config": {"threshold": 3.0}, "x": 1}))
    record = Folder(tmp_path).read_run()
    assert record is not None and record.method.name == "codeclm" and record.counts.kept == 0
    assert record.inputs == RunInputs()
    old.write_text('{"counts": {"kept": "many"}}')
    with pytest.raises(ConfigError, match=r"run.json is not a run record \(counts.kept"):
        Folder(tmp_path).read_run()
    from codeclm.records import read_rows
    from codeclm.rows import DatasetRow

    rows = tmp_path / "dataset.jsonl"
    rows.write_text('{"id": "a", "instruction": "x", "response": "y", "extra": 1}\n\n{"id": "b"\n')
    with pytest.raises(ConfigError, match=r"dataset.jsonl:3: not a DatasetRow row"):
        read_rows(rows, DatasetRow)
    rows.write_text('{"id": "a", "instruction": "x", "response": "y", "extra": 1}\n')
    assert read_rows(rows, DatasetRow)[0].metadata.skills == []


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_spends_the_same_budget_and_writes_the_same_format(
    mock_llm: MockLLM, seeds_file: Path, tmp_path: Path, method: str
) -> None:
    summary = _run(mock_llm, seeds_file, tmp_path / method, method)
    counts = summary["counts"]
    assert counts["instructions"] == BUDGET["instructions"]
    assert counts["kept"] + counts["dropped"] + counts["failed"] == BUDGET["instructions"]
    rows = read_jsonl(tmp_path / method / "dataset.jsonl")
    keys = DATASET_ROW_KEYS | ({"rating"} if method == "alpagasus" else set())
    assert rows and all(set(row) == keys for row in rows)
    assert all(row["messages"][1]["content"] == row["response"] for row in rows)
    assert summary["config"]["method"] == method
    # Per node, the calls add up to the role's, and each matches what the server received.
    for role, usage in summary["usage"].items():
        by_node = [u for key, u in summary["usage_by_node"].items() if key.endswith(f"/{role}")]
        assert sum(u["calls"] for u in by_node) == usage["calls"]
    assert sum(u["calls"] for u in summary["usage_by_node"].values()) == len(mock_llm.requests)


def test_metadata_ablation_decodes_but_never_judges_nor_improves(
    mock_llm: MockLLM, seeds_file: Path, tmp_path: Path
) -> None:
    summary = _run(mock_llm, seeds_file, tmp_path / "run", "codeclm-metadata")
    assert set(_by_node(summary)) == {"encode_seed/strong", "decode/strong", "answer_strong/strong"}
    rows = read_jsonl(tmp_path / "run" / "dataset.jsonl")
    assert all(r["response_source"] == "strong" and r["iteration"] == 1 for r in rows)
    assert all(r["metadata"]["use_case"] for r in rows)  # metadata kept for report


def test_rubrics_ablation_improves_once_with_a_self_rubrics_action_and_no_judge(
    mock_llm: MockLLM, seeds_file: Path, tmp_path: Path
) -> None:
    summary = _run(mock_llm, seeds_file, tmp_path / "run", "codeclm-rubrics")
    calls = _by_node(summary)
    assert calls["improve/strong"] == BUDGET["instructions"]
    assert "judge/strong" not in calls and "answer/target" not in calls
    rows = read_jsonl(tmp_path / "run" / "dataset.jsonl")
    assert all(r["iteration"] == 2 and len(r["actions"]) == 1 for r in rows)
    assert all(r["actions"][0].startswith("action ") for r in rows)  # from Self-Rubrics


def test_self_instruct_bootstraps_with_a_rouge_l_novelty_filter(
    mock_llm: MockLLM, seeds_file: Path, tmp_path: Path
) -> None:
    summary = _run(mock_llm, seeds_file, tmp_path / "run", "self-instruct")
    # The mock copies one in-context task into every reply: the filter must reject it.
    assert summary["counts"]["self_instruct_rejected"] >= 1
    prompts = [r.prompt for r in mock_llm.calls(schema="BootstrappedInstructions")]
    assert prompts and all("Task 1: " in p for p in prompts)
    seeds = [json.loads(line)["instruction"] for line in seeds_file.read_text().splitlines()]
    instructions = [r["instruction"] for r in read_jsonl(tmp_path / "run" / "dataset.jsonl")]
    assert len(instructions) == BUDGET["instructions"]
    known = [tokens(t) for t in seeds]
    for text in instructions:
        assert all(rouge_l(tokens(text), other) < 0.7 for other in known), text
        known.append(tokens(text))
    assert set(_by_node(summary)) == {"bootstrap/strong", "answer_strong/strong"}
    # Its bookkeeping is its own, typed by its entry in the registry.
    prepared = codeclm.inspect(tmp_path / "run")  # (the thread is readable as ever)
    assert prepared.prepare == "done"


def test_a_method_keeps_its_own_bookkeeping_typed_by_the_registry() -> None:
    from codeclm.methods import BootstrapProgress, MethodProgress
    from codeclm.state import PrepareState

    fresh = PrepareState(method="self-instruct", progress={"rounds": 3, "rejected": 5})
    assert fresh.method_progress() == BootstrapProgress(rounds=3, rejected=5)
    assert fresh.method_progress().counts() == {"self_instruct_rejected": 5}
    older = PrepareState(method="self-instruct", bootstrap_rounds=2, rejected=4)  # 0.1's fields
    assert older.method_progress() == BootstrapProgress(rounds=2, rejected=4)
    assert PrepareState().method_progress() == MethodProgress(), "codeclm keeps none"


def test_evol_instruct_evolves_each_seed_four_rounds_in_depth_and_breadth(
    mock_llm: MockLLM, seeds_file: Path, tmp_path: Path
) -> None:
    summary = _run(mock_llm, seeds_file, tmp_path / "run", "evol-instruct")
    rows = read_jsonl(tmp_path / "run" / "dataset.jsonl")
    assert _by_node(summary)["evolve/strong"] == 4 * BUDGET["instructions"]
    assert all(len(r["actions"]) == 4 and r["iteration"] == 5 for r in rows)
    operators = [a.split(" (eliminated")[0] for r in rows for a in r["actions"]]
    assert "in-breadth" in operators and "add constraints" in operators
    # The mock returns "increase reasoning steps" unchanged: WizardLM's elimination.
    assert any("(eliminated: no change)" in a for r in rows for a in r["actions"])
    seeds = {json.loads(line)["instruction"] for line in seeds_file.read_text().splitlines()}
    assert {r["basic_instruction"] for r in rows} == seeds  # the seeds, taken in turn


def test_a_failed_baseline_answer_is_retried_by_a_rerun(
    mock_llm: MockLLM, seeds_file: Path, tmp_path: Path
) -> None:
    """Restarting from START (no node before the failed one) works like the others."""
    mock_llm.answer_errors_next, mock_llm.answer_error_status = 3, 500  # to the graph's retry
    out = tmp_path / "run"
    first = _run(mock_llm, seeds_file, out, "codeclm-metadata", attempts=1, backoff=0)
    assert first["counts"]["failed"] == 3
    failed_ids = {r["id"] for r in read_jsonl(out / "failed.jsonl")}
    before = read_jsonl(out / "dataset.jsonl")
    again = _run(mock_llm, seeds_file, out, "codeclm-metadata", attempts=1, backoff=0)
    assert again["counts"]["failed"] == 0 and again["counts"]["kept"] == BUDGET["instructions"]
    after = read_jsonl(out / "dataset.jsonl")
    assert [r for r in after if r["id"] not in failed_ids] == before
    assert {r["id"] for r in after} - {r["id"] for r in before} == failed_ids


def test_dedup_moves_near_duplicate_kept_pairs_to_dropped(
    mock_llm: MockLLM, seeds_file: Path, tmp_path: Path
) -> None:
    """'Task j on USE CASE needing SKILLS.': alike in meaning (embeddings), not in words."""
    mock_llm.numbered_decode = True
    plain = _run(mock_llm, seeds_file, tmp_path / "plain", "codeclm-metadata")
    deduped = _run(mock_llm, seeds_file, tmp_path / "dedup", "codeclm-metadata", dedup=0.95)
    assert plain["counts"]["duplicates"] == 0
    duplicates = deduped["counts"]["duplicates"]
    assert 0 < duplicates < BUDGET["instructions"]
    assert deduped["counts"]["kept"] == BUDGET["instructions"] - duplicates
    rows = [r for r in read_jsonl(tmp_path / "dedup" / "dropped.jsonl")]
    assert len(rows) == duplicates and all(r["status"] == "duplicate" for r in rows)
    kept_ids = {r["id"] for r in read_jsonl(tmp_path / "dedup" / "dataset.jsonl")}
    for row in rows:  # each names the kept pair it repeats, with the cosine
        assert row["reason"].split()[2] in kept_ids and "cosine" in row["reason"]


def test_unknown_method_is_a_usage_error(
    seeds_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from codeclm.cli import main

    assert main(["run", str(seeds_file), "--out", str(tmp_path), "--method", "magpie"]) == 2
    assert "invalid choice: 'magpie'" in capsys.readouterr().err


def test_fingerprint_names_only_the_settings_a_method_uses() -> None:
    """So a codeclm run begun before methods existed keeps its fingerprint (and resumes)."""
    from codeclm.config import RunConfig

    added = {"method", "dedup", "evol_rounds", "rouge_threshold"}
    assert not added & set(RunConfig().fingerprint_fields())
    evol = RunConfig(method="evol-instruct").fingerprint_fields()
    assert {"method", "evol_rounds"} <= set(evol) and "rouge_threshold" not in evol
    assert RunConfig(evol_rounds=2).fingerprint() == RunConfig().fingerprint()  # unused
    assert RunConfig(dedup=0.9).fingerprint() != RunConfig().fingerprint()


def test_baselines_need_seeds(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from codeclm.cli import main

    meta = tmp_path / "meta.jsonl"
    meta.write_text('{"use_case": "support", "skills": ["billing"]}\n')
    args = ["run", "--user-metadata", str(meta), "--out", str(tmp_path / "o")]
    assert main([*args, "--method", "evol-instruct"]) == 2
    assert "method evol-instruct starts from seeds" in capsys.readouterr().err


def test_alpagasus_keeps_self_instruct_pairs_the_strong_model_rates_highly(
    mock_llm: MockLLM, seeds_file: Path, tmp_path: Path
) -> None:
    """AlpaGasus: Self-Instruct's pairs, each rated 0 to 5 for accuracy by the strong model
    at temperature 0; only those rated 4.5 or more are kept (the mock rates half so)."""
    summary = _run(mock_llm, seeds_file, tmp_path / "run", "alpagasus")
    calls = _by_node(summary)
    assert set(calls) == {"bootstrap/strong", "answer_strong/strong", "rate/strong"}
    assert calls["rate/strong"] == BUDGET["instructions"]
    kept = read_jsonl(tmp_path / "run" / "dataset.jsonl")
    dropped = read_jsonl(tmp_path / "run" / "dropped.jsonl")
    assert kept and all(r["rating"] >= 4.5 for r in kept)
    assert dropped and all("(AlpaGasus)" in r["reason"] for r in dropped)
    assert all(c.temperature == 0 for c in mock_llm.calls("QualityRating"))
    # with --pairs, waves of Self-Instruct data until enough pairs pass the rating
    pairs = _run(mock_llm, seeds_file, tmp_path / "pairs", "alpagasus", pairs=10)
    assert pairs["counts"]["kept"] == 10


def test_tree_instruct_grows_each_seeds_tree_by_the_nodes_asked(
    mock_llm: MockLLM, seeds_file: Path, tmp_path: Path
) -> None:
    summary = _run(mock_llm, seeds_file, tmp_path / "run", "tree-instruct", tree_nodes=6)
    calls = _by_node(summary)
    assert set(calls) == {"grow_tree/strong", "answer_strong/strong"}
    rows = read_jsonl(tmp_path / "run" / "dataset.jsonl")
    seeds = {json.loads(line)["instruction"] for line in seeds_file.read_text().splitlines()}
    assert len(rows) == BUDGET["instructions"]
    assert all(r["basic_instruction"] in seeds for r in rows), "from the seeds"
    assert all(r["instruction"].endswith("[with 6 more nodes]") for r in rows)
    assert all(r["actions"] == ["6 tree nodes added"] for r in rows)
    prompts = [c.prompt for c in mock_llm.calls("TreeInstruction")]
    assert prompts and all("Add exactly 6 new nodes" in p for p in prompts)
    assert len({c.seed for c in mock_llm.calls("TreeInstruction")}) == len(prompts), "own seeds"


def test_wizardlm_plus_evolves_codeclms_basic_instructions(
    mock_llm: MockLLM, seeds_file: Path, tmp_path: Path
) -> None:
    """WizardLM+: Evol-Instruct started from the instructions CodecLM decodes from its
    metadata (no Self-Rubrics, no judge), not from the seeds."""
    summary = _run(mock_llm, seeds_file, tmp_path / "run", "wizardlm-plus", evol_rounds=2)
    calls = _by_node(summary)
    assert set(calls) == {
        "encode_seed/strong",
        "decode/strong",
        "evolve/strong",
        "answer_strong/strong",
    }
    assert calls["evolve/strong"] == 2 * BUDGET["instructions"]
    rows = read_jsonl(tmp_path / "run" / "dataset.jsonl")
    assert all(r["metadata"]["use_case"] and len(r["actions"]) == 2 for r in rows)
    seeds = {json.loads(line)["instruction"] for line in seeds_file.read_text().splitlines()}
    assert not [r for r in rows if r["basic_instruction"] in seeds], "decoded, not the seeds"


def test_the_new_baselines_run_at_equal_pairs_and_sit_in_the_reports_comparison(
    mock_llm: MockLLM, seeds_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The paper compares every method at the same number of pairs: each new baseline
    reaches ``--pairs`` and appears in ``run --help`` and in the report's comparison."""
    from codeclm.cli import main

    runs = []
    for method in ("alpagasus", "tree-instruct", "wizardlm-plus"):
        summary = _run(mock_llm, seeds_file, tmp_path / method, method, pairs=8)
        assert summary["counts"]["kept"] == 8, method
        runs.append(str(tmp_path / method))
    assert main(["run", "--help"]) == 0
    shown = " ".join(capsys.readouterr().out.split())
    assert all(m in shown for m in ("alpagasus:", "tree-instruct:", "wizardlm-plus:"))
    assert main(["report", *runs, "--out", str(tmp_path / "report")]) == 0
    table = (tmp_path / "report" / "report.md").read_text().split("\n## ")[0]
    for method in ("alpagasus", "tree-instruct", "wizardlm-plus"):
        assert f"| {method} |" in table, method

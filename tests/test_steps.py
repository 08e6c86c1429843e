"""Each step of the method is declared once, beside its node (``codeclm/steps.py``): a new
step is its module, its prompt file and its graph edge, and everything else (the estimate,
the mock, the report, ``inspect``, the restart table) reads its declaration. No prompt's
wording is restated in Python."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from langgraph.graph import END

from codeclm import api
from codeclm.bench.mock_llm import STRONG_PREFIX, MockLLM
from codeclm.config import RunConfig
from tests.conftest import read_jsonl, run_cli
from tests.toy.polish import polish

ROOT = Path(__file__).resolve().parents[1]
TOY = Path(__file__).parent / "toy"


def test_no_prompt_line_is_restated_in_python() -> None:
    """The mock, the tests and the code read prompts from their files: a line of a prompt
    file (30 characters or more) written again in Python would be a second home for it."""
    lines = {
        line.strip()
        for prompt in (ROOT / "codeclm" / "prompts").glob("*.md")
        for line in prompt.read_text(encoding="utf-8").splitlines()
        if len(line.strip()) >= 30
    }
    assert len(lines) > 100, "the prompt files were read"
    found = [
        f"{path.relative_to(ROOT)}: {line[:50]!r}"
        for folder in ("codeclm", "tests", "benchmarks")
        for path in (ROOT / folder).rglob("*.py")
        for line in lines
        if line in path.read_text(encoding="utf-8")
    ]
    assert not found, found


def with_polish(monkeypatch: pytest.MonkeyPatch) -> None:
    """The toy step's edge (what ``graph/instruction.py`` would say): codeclm-metadata's
    instructions go answer_strong → polish → END."""
    from codeclm.graph import instruction as shapes

    original = shapes.build_instruction_graph

    def build(retry: Any, method: str = "codeclm", **options: Any) -> Any:
        builder = original(retry, method, **options)
        if method == "codeclm-metadata":
            builder.add_node("polish", polish)
            builder.edges.discard(("answer_strong", END))
            builder.add_edge("answer_strong", "polish")
            builder.add_edge("polish", END)
        return builder

    for where in ("codeclm.graph.steps", "codeclm.handle"):
        monkeypatch.setattr(f"{where}.build_instruction_graph", build)


def test_a_new_step_is_its_module_its_prompt_and_its_edge(
    monkeypatch: pytest.MonkeyPatch, mock_llm: MockLLM, seeds_file: Path, tmp_path: Path
) -> None:
    from codeclm.graph import instruction_steps, restart_table
    from codeclm.graph.steps import instruction_builder

    with_polish(monkeypatch)
    settings = {"method": "codeclm-metadata", "instructions": 4, "metadata": 2}
    config = RunConfig(**settings, prompts_dir=str(TOY))  # type: ignore[arg-type]
    # the restart table and the nodes ``step`` can stop at: from the graph and the declaration
    assert "polish" in instruction_steps(config)
    assert restart_table(instruction_builder(config))["polish"] == ("answer_strong", "kept")
    # the estimate: its calls (one per instruction) and its prompt, rendered
    seeds = [line["instruction"] for line in read_jsonl(seeds_file)]
    estimate = api.estimate(seeds, **settings, prompts_dir=str(TOY))
    assert estimate.steps["polish/strong"].calls == 4
    assert estimate.steps["polish/strong"].input_tokens > 4 * 40

    # the mock answers it by what it declares: its prompt file read back, its reply schema
    mock_llm.prompts_dir = TOY
    out = tmp_path / "out"
    assert run_cli(seeds_file, mock_llm, out, prompts=TOY, **settings) == 0
    asked = mock_llm.calls("PolishedAnswer")
    assert len(asked) == 4
    assert all(r.read.name == "polish" for r in asked)
    assert all(r.values["answer"].startswith(STRONG_PREFIX) for r in asked)
    rows = read_jsonl(out / "dataset.jsonl")
    assert len(rows) == 4 and all(row["response"] == "text" for row in rows), "polished"

    # the run's record, the report and inspect count and show it
    record = json.loads((out / "run.json").read_text())
    assert record["usage_by_node"]["polish/strong"]["calls"] == 4
    page = api.report([out])
    summary = (page.parent / "report.md").read_text()
    assert "| polish/strong | 4 |" in summary, "its calls and tokens"
    history = api.inspect(out, rows[0]["id"]).history
    assert ["polish"] in [step.nodes for step in history]


@pytest.mark.parametrize(
    ("method", "turns", "reply"),
    [
        ("codeclm", 1, "PairwiseScores"),
        ("codeclm", 1, "ImprovedInstruction"),
        ("codeclm", 2, "FollowUp"),
        ("codeclm-rubrics", 1, "ImprovedInstruction"),
        ("codeclm-metadata", 2, "FollowUp"),
        ("alpagasus", 1, "QualityRating"),
        ("evol-instruct", 1, "EvolvedInstruction"),
        ("tree-instruct", 1, "TreeInstruction"),
    ],
)
def test_the_restart_table_from_the_edges_brings_each_failed_step_back(
    mock_llm: MockLLM, seeds_file: Path, tmp_path: Path, method: str, turns: int, reply: str
) -> None:
    """A thread whose step failed (its replies unusable, one attempt) is reset as the node
    before it with the status its step is entered with (``graph.steps.restart_table``): a
    re-run runs that step again and the thread ends as the others do."""
    from codeclm.bench.mock_llm import mixed_rule
    from codeclm.graph import all_steps

    mock_llm.judge_rule = mixed_rule  # pairs kept, improved and dropped: every path
    mock_llm.garbage_next[reply] = 2
    out = tmp_path / "out"
    options: dict[str, Any] = dict(
        method=method, turns=turns, instructions=6, metadata=2, attempts=1, backoff=0
    )
    assert run_cli(seeds_file, mock_llm, out, **options) == 0
    failed = read_jsonl(out / "failed.jsonl")
    assert failed, "the step failed for some thread"
    node = next(s.name for s in all_steps().values() if s.reply == reply and s.roles != ("judge",))
    assert all(row["reason"].startswith(f"{node}: ") for row in failed), failed[0]["reason"]
    asked_before = len(mock_llm.calls(reply))
    assert run_cli(seeds_file, mock_llm, out, **options) == 0
    assert len(mock_llm.calls(reply)) > asked_before, "the failed step ran again"
    counts = json.loads((out / "run.json").read_text())["counts"]
    assert counts["failed"] == 0
    assert counts["kept"] + counts["dropped"] == counts["instructions"] == 6


@pytest.mark.parametrize(
    "method", ["codeclm", "codeclm-rubrics", "alpagasus", "wizardlm-plus", "tree-instruct"]
)
def test_every_request_is_the_reply_its_step_declares(
    mock_llm: MockLLM, seeds_file: Path, tmp_path: Path, method: str
) -> None:
    """What a node asks for (the schema it sends) is what its step declares (``Step.reply``):
    each request's prompt, read back to its file, names the step, whose reply it is."""
    out = tmp_path / "out"
    options: dict[str, Any] = dict(method=method, turns=2, instructions=4, metadata=2)
    assert run_cli(seeds_file, mock_llm, out, **options) == 0
    read = [r for r in mock_llm.requests if r.read.name is not None]
    assert len(read) == len(mock_llm.requests)
    structured = [r for r in read if r.response_format == "json_schema"]
    assert structured, "structured steps were asked"
    # A structured request read back as the answer's file (its prompt no step's own, the
    # catch-all "$instruction") would declare no reply: the schema sent would differ.
    assert all(r.schema == r.read.reply for r in read), {
        (r.read.name, r.schema, r.read.reply) for r in read if r.schema != r.read.reply
    }
    answers = [r for r in read if r.read.name == "answer"]
    assert answers and all(r.response_format is None for r in answers), "answers only"
    if method == "codeclm":  # the judges (a line, no schema) read back to their own files
        judged = {r.read.name for r in read if r.schema == "PairwiseScores"}
        assert judged == {"judge", "judge_turn"}

"""Only a real, complete answer is ever judged or kept (issues #20 and #21).

Against the loopback mock misbehaving as real servers do: refusals in both roles (in the
text and in OpenAI's ``refusal`` field), reasoning in ``reasoning_content`` / ``reasoning``
and in ``<think>`` blocks, answers longer than ``max_tokens``, servers without
``response_format`` json_schema (or json_object), and an error no retry can fix.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from codeclm import api
from codeclm.bench.mock_llm import STRONG_MODEL, TARGET_MODEL, MockLLM, mixed_rule
from codeclm.bench.mock_model import digest
from codeclm.llm.parsing import is_refusal
from codeclm.prompts import load_prompts
from tests.conftest import read_jsonl, run_cli, write_seeds

JUDGED_OR_ANSWER = (None, "PairwiseScores")
"""Requests sent without a schema: the answers, and the judges' line of two scores."""


def _seeds(tmp_path: Path, n: int = 6) -> Path:
    topics = ["taxes", "sourdough", "chess openings", "rust lifetimes", "jazz chords", "tides"]
    return write_seeds(
        tmp_path / "seeds.jsonl",
        [f"Question {i}: how do I get better at {topics[i % len(topics)]}?" for i in range(n)],
    )


def _rows(out: Path) -> tuple[list[dict], list[dict], list[dict]]:
    return (
        read_jsonl(out / "dataset.jsonl"),
        read_jsonl(out / "dropped.jsonl"),
        read_jsonl(out / "failed.jsonl"),
    )


def _answered(mock: MockLLM, model: str) -> list[str]:
    """The instructions a role was asked to answer, one per request."""
    return [c.prompt.strip() for c in mock.calls(model=model) if c.schema is None]


@pytest.mark.parametrize("in_field", [False, True], ids=["in the text", "in the refusal field"])
def test_refusals_never_become_data_in_either_role(
    mock_llm: MockLLM, tmp_path: Path, in_field: bool
) -> None:
    mock_llm.judge_rule = mixed_rule
    mock_llm.refusal_field = in_field
    mock_llm.answer_refusal_rate = 0.3  # either role, for that prompt and sampling seed
    out = tmp_path / "out"
    assert run_cli(_seeds(tmp_path), mock_llm, out, instructions=24, metadata=6) == 0
    kept, dropped, _ = _rows(out)
    pool = {r["basic_instruction"] for r in kept + dropped}
    # one instruction the strong model always refuses, one the target always refuses
    strong_refuses, target_refuses = sorted(pool)[:2]
    mock_llm.refuse_answers = {STRONG_MODEL: strong_refuses, TARGET_MODEL: target_refuses}
    first_run = len(mock_llm.requests)
    again = tmp_path / "again"
    assert run_cli(_seeds(tmp_path), mock_llm, again, instructions=24, metadata=6) == 0
    kept, dropped, failed = _rows(again)
    assert len(kept) + len(dropped) + len(failed) == 24
    assert not [r for r in kept if is_refusal(r["response"]) or not r["response"]]
    # a refusal is asked again with another sampling seed: most come back answered
    second_run = mock_llm.requests[first_run:]
    seeds_per_prompt: dict[str, set[int | None]] = {}
    for call in second_run:
        if call.schema is None:
            seeds_per_prompt.setdefault(f"{call.model}|{call.prompt}", set()).add(call.seed)
    assert max(len(seeds) for seeds in seeds_per_prompt.values()) >= 2
    (refused,) = [r for r in dropped if r["basic_instruction"] == strong_refuses]
    assert refused["reason"].startswith("strong refused: I'm sorry"), refused
    assert refused["scores"] is None, "never judged"
    judged = [c.prompt for c in second_run if c.schema == "PairwiseScores"]
    assert not [p for p in judged if f"[Question]\n{strong_refuses}" in p]
    flagged = [r for r in kept if r["target_refused"]]
    assert flagged and all(r["response_source"] == "strong" for r in flagged)
    assert target_refuses in {r["basic_instruction"] for r in flagged}
    counts = json.loads((again / "run.json").read_text())["counts"]
    assert counts["target_refused"] == len(flagged)
    _, exported = api.export(again, "chat", target_refusals=False)
    assert exported == len(kept) - len(flagged)


@pytest.mark.parametrize("where", ["reasoning_content", "reasoning"])
def test_reasoning_never_becomes_data_and_is_kept_apart_on_request(
    mock_llm: MockLLM, tmp_path: Path, where: str
) -> None:
    mock_llm.judge_rule = mixed_rule  # kept at once, after rewrites, and dropped
    mock_llm.reasoning_field = where  # every reply carries its reasoning apart …
    mock_llm.think_rate = 0.5  # … and half of them in a <think> block too
    out = tmp_path / "out"
    options = dict(instructions=12, metadata=4, keep_reasoning=True)
    assert run_cli(_seeds(tmp_path), mock_llm, out, **options) == 0
    kept, dropped, _ = _rows(out)
    assert any(r["iteration"] > 1 for r in kept), "improved instructions among them"
    assert sum("<think>" in c.reply for c in mock_llm.calls()) > 5
    for row in kept + dropped:
        for text in (row["instruction"], row.get("response") or ""):
            assert "<think>" not in text and "Let me think about" not in text
    for call in mock_llm.calls("PairwiseScores") + mock_llm.calls("ImprovedInstruction"):
        assert "<think>" not in call.prompt and "Let me think about" not in call.prompt
    assert kept and all(r["reasoning"].startswith("Let me think about") for r in kept)
    usage = json.loads((out / "run.json").read_text())["usage"]
    assert usage["strong"]["reasoning_tokens"] > 0, "counted with the output"
    assert usage["strong"]["output_tokens"] > usage["strong"]["reasoning_tokens"]
    # without --keep-reasoning the rows carry none
    plain = tmp_path / "plain"
    assert run_cli(_seeds(tmp_path), mock_llm, plain, instructions=12, metadata=4) == 0
    assert all("reasoning" not in row for row in read_jsonl(plain / "dataset.jsonl"))


def test_an_answer_cut_at_max_tokens_is_asked_again_and_never_data(
    mock_llm: MockLLM, tmp_path: Path
) -> None:
    mock_llm.long_answer_rate = 0.3  # these answers need ~3,000 tokens: cut at 2,048
    out = tmp_path / "out"
    assert run_cli(_seeds(tmp_path), mock_llm, out, instructions=16, metadata=4) == 0
    kept, dropped, failed = _rows(out)
    assert len(kept) + len(dropped) + len(failed) == 16
    budgets = {c.max_tokens for c in mock_llm.calls() if c.schema is None}
    assert budgets == {2048, 4096}, "a cut answer is asked again with twice the budget"
    long = [r for r in kept if len(r["response"]) > 4 * 2048]
    assert long, "the long answers came back whole"
    assert all(r["response"].endswith(".") for r in kept)
    # with no room to grow, a cut answer drops its instruction, never judged or kept
    capped = tmp_path / "capped"
    config = tmp_path / "capped.toml"
    config.write_text("[strong]\nmax_tokens_ceiling = 2048\n[target]\nmax_tokens_ceiling = 2048\n")
    options = dict(instructions=16, metadata=4, config=config)
    assert run_cli(_seeds(tmp_path), mock_llm, capped, **options) == 0
    kept, dropped, _ = _rows(capped)
    cut = [r for r in dropped if "answer cut at 2048 tokens" in (r["reason"] or "")]
    assert cut and all(r["scores"] is None for r in cut)
    assert all(len(r["response"]) < 4 * 2048 for r in kept)


def test_a_target_answer_cut_at_its_budget_is_judged_as_it_stands_and_never_data(
    mock_llm: MockLLM, tmp_path: Path
) -> None:
    """Issue #31: a fifth of the answers run past 9,000 tokens. The target answers within
    its budget (never asked again larger); a cut target answer is judged, flagged, and
    never the response; no instruction is dropped because the target's answer was cut."""
    mock_llm.long_answer_rate = 0.2
    mock_llm.long_answer_tokens = 9_500  # past every budget, the strong ceiling too
    mock_llm.judge_rule = lambda text: (2, 9) if digest(text) % 2 else (9, 2)
    out = tmp_path / "out"
    options = dict(instructions=30, metadata=6, max_iterations=1)
    assert run_cli(_seeds(tmp_path), mock_llm, out, **options) == 0
    kept, dropped, failed = _rows(out)
    assert len(kept) + len(dropped) + len(failed) == 30
    reasons = [r["reason"] or "" for r in dropped]
    assert not [r for r in reasons if "target answer cut" in r or r.startswith("target cut")]
    target_budgets = {c.max_tokens for c in mock_llm.calls(model=TARGET_MODEL) if c.schema is None}
    assert target_budgets == {2048}, "the target answers within its budget, never larger"
    assert all(r["response"].endswith(".") for r in kept), "no kept response is cut"
    flagged = [r for r in kept if r["target_cut"]]
    assert flagged and all(r["response_source"] == "strong" for r in flagged)
    assert all(r["response_source"] == "strong" for r in kept if r["target_cut"])
    judged = " ".join(c.prompt for c in mock_llm.calls("PairwiseScores"))
    assert all(r["messages"][0]["content"] in judged for r in flagged), "judged as it stood"
    won_cut = [r for r in reasons if r.startswith("target won (gap")]
    assert won_cut and all("cut at its budget, never data" in r for r in won_cut)
    counts = json.loads((out / "run.json").read_text())["counts"]
    assert counts["target_cut"] == len(flagged)
    # the long strong answers (the data) are still asked again up to the ceiling
    strong_budgets = {c.max_tokens for c in mock_llm.calls(model=STRONG_MODEL) if c.schema is None}
    assert {2048, 4096} < strong_budgets and max(strong_budgets) > 8000  # (within the context)


def test_a_server_without_json_schema_gets_json_object_then_plain_prompts(
    mock_llm: MockLLM, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    mock_llm.json_schema_ok = False
    out = tmp_path / "out"
    with caplog.at_level(logging.WARNING, logger="codeclm"):
        assert run_cli(_seeds(tmp_path), mock_llm, out, instructions=8, metadata=4) == 0
    said = [r.getMessage() for r in caplog.records if "rejects response_format" in r.getMessage()]
    assert len(said) == 1 and "json_object" in said[0], said
    formats = [c.response_format for c in mock_llm.calls() if c.schema not in JUDGED_OR_ANSWER]
    assert formats.count("json_schema") >= 1 and formats[-1] == "json_object"
    assert len(read_jsonl(out / "dataset.jsonl")) + len(read_jsonl(out / "dropped.jsonl")) == 8
    # and a server that takes neither: the prompts ask for the JSON, the replies are parsed
    mock_llm.json_object_ok = False
    caplog.clear()
    plain = tmp_path / "plain"
    with caplog.at_level(logging.WARNING, logger="codeclm"):
        assert run_cli(_seeds(tmp_path), mock_llm, plain, instructions=8, metadata=4) == 0
    said = [r.getMessage() for r in caplog.records if "rejects response_format" in r.getMessage()]
    assert len(said) == 2 and "plain prompting" in said[1]
    run = json.loads((plain / "run.json").read_text())
    assert run["counts"]["kept"] + run["counts"]["dropped"] == 8
    assert run["models"]["strong"]["structured_output"] == "prompt"


def test_a_rewrite_too_long_for_the_context_goes_on_from_the_last_version(
    mock_llm: MockLLM, tmp_path: Path
) -> None:
    """Never a failed thread for its length: recorded with its action, the instruction goes
    on as it was, and the next iteration draws another action."""
    mock_llm.judge_rule = lambda instruction: (5, 5)  # never separated: every one improves
    mock_llm.rewrite_chars = 30_000  # more than both models' context leaves (8,192 tokens)
    out = tmp_path / "out"
    options = dict(instructions=4, metadata=2, max_iterations=3)
    assert run_cli(_seeds(tmp_path, 2), mock_llm, out, **options) == 0
    kept, dropped, failed = _rows(out)
    assert not kept
    assert not failed and len(dropped) == 4
    for row in dropped:
        assert row["instruction"] == row["basic_instruction"], "the last good version"
        assert len(row["actions"]) == 2 and all("no usable rewrite" in a for a in row["actions"])
        assert "characters, over the" in row["actions"][0]
        assert row["actions"][0].split(" (no usable")[0] != row["actions"][1].split(" (no")[0]


def test_a_reply_cut_with_nothing_usable_is_kept_in_the_cache_so_a_resume_pays_nothing(
    mock_llm: MockLLM, tmp_path: Path
) -> None:
    """A structured reply cut at max_tokens with no complete item is asked again, larger;
    the cut one is cached (as a mark), so a node run again after a kill goes straight to
    the larger budget. Still cut at the ceiling: ``CutReply``, which no retry fixes."""
    import asyncio

    from codeclm.config import RoleConfig
    from codeclm.llm.parsing import CutReply
    from codeclm.llm.reply import is_permanent, is_transient
    from codeclm.llm.roles import make_role_model
    from codeclm.nodes.replies import ImprovedInstruction
    from codeclm.store.cache import SqliteResponseCache

    mock_llm.cut_rate, mock_llm.cut_objects = 1.0, True  # every reply cut, at any budget
    prompt = load_prompts().render(
        "improve", instruction="Explain tides.", action="add a map", use_case="tax", skills="x"
    )
    config = RoleConfig(model=STRONG_MODEL, base_url=mock_llm.base_url, max_tokens_ceiling=8192)

    async def ask() -> BaseException:
        cache = await SqliteResponseCache(tmp_path / "cache.sqlite").open()
        model = make_role_model("strong", config, seed=0, cache=cache)
        try:
            await model.structured(prompt, ImprovedInstruction)
        except CutReply as exc:
            return exc
        finally:
            await model.aclose()
            await cache.close()
        raise AssertionError("a reply cut every time must end as CutReply")

    first = asyncio.run(ask())
    budgets = [c.max_tokens for c in mock_llm.calls("ImprovedInstruction")]
    assert budgets == [2048, 4096, 8192], "asked again with twice the budget, to the ceiling"
    assert "cut at 8192 tokens" in str(first) and is_permanent(first) and not is_transient(first)
    asyncio.run(ask())
    assert len(mock_llm.calls("ImprovedInstruction")) == 3, "the cut ones came from the cache"


def test_a_rewrite_cut_at_the_ceiling_is_no_failure(mock_llm: MockLLM, tmp_path: Path) -> None:
    """The toy model's improve reply loops to max_tokens (issue #20, point 7): asked again
    with larger budgets, still cut, the instruction goes on from its last good version, and
    the run ends with no failure in its first invocation."""
    mock_llm.judge_rule = lambda instruction: (5, 5)  # undecided: every one is improved
    mock_llm.cut_when = "Improving action:"
    out = tmp_path / "out"
    config = tmp_path / "c.toml"
    config.write_text("[strong]\nmax_tokens = 256\nmax_tokens_ceiling = 512\n")
    options = dict(instructions=4, metadata=2, max_iterations=2, config=config)
    assert run_cli(_seeds(tmp_path, 2), mock_llm, out, **options) == 0
    kept, dropped, failed = _rows(out)
    assert not failed and not kept and len(dropped) == 4
    for row in dropped:
        (action,) = row["actions"]
        assert "no usable rewrite: reply cut at 512 tokens" in action
        assert row["instruction"] == row["basic_instruction"]
    budgets = sorted({c.max_tokens for c in mock_llm.calls("ImprovedInstruction")})
    assert budgets == [256, 512]


def test_a_run_that_dropped_cut_target_answers_answers_them_again(
    mock_llm: MockLLM, tmp_path: Path
) -> None:
    """A run made by the previous version dropped an instruction whose target answer was
    cut ('target answer cut at N tokens'): run again, such a thread is answered and judged
    now, and nothing in dropped.jsonl reads so any more."""
    import asyncio

    from codeclm.graph import thread_config
    from codeclm.handle import RunHandle

    out = tmp_path / "out"
    assert run_cli(_seeds(tmp_path), mock_llm, out, instructions=6, metadata=3) == 0
    ident = read_jsonl(out / "dataset.jsonl")[0]["id"]

    async def drop_as_before() -> None:  # what the previous version wrote for such a pair
        handle = await RunHandle.find(out)
        async with handle.read() as view:
            old = {"status": "dropped", "reason": "target answer cut at 8192 tokens"}
            await view.instructions.aupdate_state(thread_config(ident), old, as_node="answer")

    asyncio.run(drop_as_before())
    assert run_cli(_seeds(tmp_path), mock_llm, out, instructions=6, metadata=3) == 0
    kept, dropped, _ = _rows(out)
    assert ident in {r["id"] for r in kept}
    assert not [r for r in dropped if "answer cut" in (r["reason"] or "")]

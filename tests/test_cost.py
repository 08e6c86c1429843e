"""What a run costs: prices (database, override, local, unknown), the ledger of paid
requests (never counted twice, never un-counted), the cap, and the figures in run.json."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

import codeclm
from codeclm import api
from codeclm.bench.mock_llm import MockLLM
from codeclm.cli import main
from codeclm.config import ConfigError, Price
from codeclm.cost import prices
from codeclm.cost.meter import CostCapReached, dollars
from codeclm.cost.prices import is_local, role_price
from codeclm.records import TokenUsage
from codeclm.view.data import take_snapshot
from tests.conftest import (
    STRONG_PRICE,
    TARGET_PRICE,
    mock_args,
    mock_roles,
    priced_roles,
    write_seeds,
)

SEEDS = ["How do I bake rye bread?", "Explain git rebase to a new hire.", "Plan a trip to Rome."]


def _calls(usage: dict[str, TokenUsage]) -> dict[str, int]:
    return {key: u.calls for key, u in usage.items() if u.calls}


def assert_figures_agree(out: Path, record: Any) -> None:
    """Each node's cost sums to the total; each role's and each node's calls and tokens
    are the ledger's (``spend.sqlite``), which holds every paid request once."""
    assert record.cost.total is not None
    assert sum(record.cost.by_node.values()) == pytest.approx(record.cost.total)
    ledger = _ledger(out)
    for role, usage in record.usage.items():
        calls, input_tokens, _, output_tokens = ledger.get(role, (0, 0, 0, 0))
        assert (usage.calls, usage.input_tokens, usage.output_tokens) == (
            calls, input_tokens, output_tokens
        ), role  # fmt: skip
    for role in ledger:
        nodes = [u for key, u in record.usage_by_node.items() if key.endswith(f"/{role}")]
        assert sum(u.calls for u in nodes) == ledger[role][0], role
    on_file = json.loads((out / "run.json").read_text())
    assert on_file["cost"]["total"] == pytest.approx(record.cost.total)


def _ledger(out: Path) -> dict[str, tuple[int, ...]]:
    with sqlite3.connect(out / "spend.sqlite") as db:
        rows = db.execute(
            "SELECT role, COUNT(*), SUM(input_tokens), SUM(cached_input_tokens), "
            "SUM(output_tokens) FROM spend GROUP BY role"
        ).fetchall()
    return {role: tuple(values) for role, *values in rows}


def test_prices_come_from_the_database_an_override_or_a_local_server() -> None:
    table = role_price("gpt-4o-mini", "https://api.openai.com/v1", None)
    assert table is not None and table.source == "table" and table.input > 0
    assert table.cached_input < table.input, "the provider's prompt cache is billed lower"
    override = role_price("gpt-4o-mini", "https://api.openai.com/v1", Price(input=1, output=2))
    assert override is not None and (override.source, override.cached_input) == ("config", 1)
    local = role_price("llama3.2:3b", "http://localhost:11434/v1", None)
    assert local is not None and local.source == "local" and local.input == local.output == 0
    assert role_price("no-such-model-anywhere", "https://api.example.com/v1", None) is None
    assert is_local(None) and is_local("http://127.0.0.1:8000/v1")
    assert not is_local("https://api.openai.com/v1")
    assert not is_local("http://10.0.0.5:4000/v1"), "a gateway on the LAN may be paid"
    usage = TokenUsage(input_tokens=1_000_000, cached_input_tokens=400_000, output_tokens=10)
    assert override.cost(usage) == pytest.approx(600_000 / 1e6 * 1 + 400_000 / 1e6 * 1 + 20e-6)


def test_the_cost_in_run_json_is_the_ledgers_tokens_times_the_price(
    mock_llm: MockLLM, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    roles = priced_roles(mock_llm)
    result = codeclm.run(SEEDS, out=out, instructions=6, metadata=3, **roles)
    cost = json.loads((out / "run.json").read_text())["cost"]
    assert cost["table"].startswith("genai-prices ")
    for role, price in (("strong", STRONG_PRICE), ("target", TARGET_PRICE)):
        calls, fresh_and_cached, cached, output = _ledger(out)[role]
        assert calls == cost["paid"][role]["calls"] == result.usage[role].calls
        cached_price = price.get("cached_input", price["input"])
        expected = (
            (fresh_and_cached - cached) * price["input"]
            + cached * cached_price
            + output * price["output"]
        ) / 1e6
        assert round(cost["by_role"][role], 2) == round(expected, 2)
        assert cost["by_role"][role] == pytest.approx(expected, rel=1e-12)
    assert cost["total"] == pytest.approx(sum(cost["by_role"].values()))
    assert result.record.cost is not None and result.record.cost.total == cost["total"]
    assert cost["per_kept_pair"] == pytest.approx(cost["total"] / result.kept)
    by_node = sum(value for value in cost["by_node"].values())
    assert by_node == pytest.approx(cost["total"]), "every call belongs to a node"
    # report and view show it: per role, per node, per kept pair, the estimate beside it
    page = api.report([out], tmp_path / "report")
    markdown = (page.parent / "report.md").read_text()
    assert "Cost (USD, from the ledger of paid requests)" in markdown
    assert dollars(cost["total"]) in markdown and "per kept pair" in markdown
    figures = json.loads((page.parent / "report.json").read_text())["runs"][0]["cost"]
    assert figures["estimate"]["expected"] > 0 and figures["total"] == cost["total"]

    async def shown() -> str:
        async with codeclm.review_session(out) as session:
            return str((await take_snapshot(session)).progress()["cost"])

    assert asyncio.run(shown()) == dollars(cost["total"])


def test_a_resume_pays_nothing_again_and_a_fork_is_never_uncounted(
    mock_llm: MockLLM, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    roles = priced_roles(mock_llm)
    mock_llm.judge_rule = lambda instruction: (5, 5)  # every instruction improved, then dropped
    options = {"instructions": 2, "metadata": 2, "max_iterations": 2}
    codeclm.run(SEEDS[:2], out=out, **options, **roles)
    first_run = json.loads((out / "run.json").read_text())
    before = first_run["cost"]
    again = codeclm.resume(out)
    assert again.record.cost is not None and again.record.cost.total == before["total"]
    # A fork from the first judge makes new calls; the branch it leaves is forgotten by the
    # threads' usage, never by the ledger.
    thread = json.loads((out / "dropped.jsonl").read_text().splitlines()[0])["id"]
    detail = codeclm.inspect(out, thread)
    first = detail.history[0].checkpoint
    mock_llm.judge_rule = lambda instruction: (9, 1)
    patch = {"instruction": "Write a haiku about rye bread."}  # new requests, not cached ones
    codeclm.step(
        out, thread, from_checkpoint=first, patch=patch, until="end", emit=lambda event: None
    )
    after = codeclm.resume(out).record
    assert after.cost is not None and after.cost.total is not None
    assert after.cost.total > before["total"], "what the fork paid is added"
    assert after.cost.paid["strong"].calls > before["paid"]["strong"]["calls"]
    # every figure counts what the fork paid: the usage, each step's share and the total
    assert after.usage["strong"].calls == after.cost.paid["strong"].calls
    judged = first_run["usage_by_node"]["judge/strong"]["calls"]
    assert after.usage_by_node["judge/strong"].calls > judged
    assert sum(after.cost.by_node.values()) == pytest.approx(after.cost.total)


def test_a_cap_stops_below_it_and_a_higher_one_finishes_the_same_dataset(
    mock_llm: MockLLM, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    roles = priced_roles(mock_llm)
    mock_llm.answer_tokens = 1500  # answers long enough that the run costs many bounds
    options = {"instructions": 8, "metadata": 3, "concurrency": 2}
    seeds = write_seeds(tmp_path / "seeds.jsonl", SEEDS)
    free = codeclm.run(seeds, out=tmp_path / "free", **options, **roles)
    assert free.record.cost is not None and free.record.cost.total is not None
    cap = free.record.cost.total / 2
    assert cap > 0.05, "room for a request's bound (2,048 output tokens at $10/M: $0.02)"
    capped = tmp_path / "capped"
    with pytest.raises(
        CostCapReached, match=r"could pass --max-cost \$0\.\d+: spent \$0\.\d+ of"
    ) as stop:
        codeclm.run(seeds, out=capped, max_cost=cap, **options, **roles)
    record = json.loads((capped / "run.json").read_text())
    assert record["cost"]["total"] <= cap and record["cost"]["stopped_at_cap"]
    # near the cap it sends fewer at once: it stops only when one request alone cannot fit
    next_bound = float(str(stop.value).split("may cost ($", 1)[1].split(")")[0])
    assert record["cost"]["total"] + next_bound > cap, (record["cost"]["total"], cap)
    assert record["counts"]["kept"] < free.kept, "it stopped before the end"
    # The CLI: the same stop in one line, exit 3; then resume with a higher cap finishes.
    argv = ["run", str(seeds), *mock_args(mock_llm, tmp_path / "cli", **options)]
    prices_file = tmp_path / "prices.toml"
    prices_file.write_text(
        "[strong.price]\ninput = 2.5\noutput = 10.0\n"
        "[target.price]\ninput = 0.5\noutput = 1.5\ncached_input = 0.25\n"
    )
    assert main([*argv, "--config", str(prices_file), "--max-cost", f"{cap:.4f}"]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "higher cap" in err
    assert main(["resume", str(tmp_path / "cli"), "--max-cost", "5", "--quiet"]) == 0
    finished = codeclm.run(seeds, out=capped, max_cost=5.0, **options, **roles)
    assert finished.record.cost is not None
    assert finished.record.cost.total == pytest.approx(free.record.cost.total), "none twice"
    saved = finished.record.cost.cache_saved
    assert saved is not None and saved > 0, "the stopped nodes ran again from the cache"
    # every paid request counted once in every figure, as the uninterrupted run counts them
    assert_figures_agree(capped, finished.record)
    assert _calls(finished.record.usage) == _calls(free.record.usage)
    assert _calls(finished.record.usage_by_node) == _calls(free.record.usage_by_node)
    for out in (capped, tmp_path / "cli"):
        assert (out / "dataset.jsonl").read_bytes() == (
            tmp_path / "free/dataset.jsonl"
        ).read_bytes()


def test_an_unknown_price_is_said_and_shown_never_a_zero_nor_a_crash(
    mock_llm: MockLLM, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    monkeypatch.setattr(prices, "is_local", lambda url: False)  # the mock as a remote server
    roles = mock_roles(mock_llm, strong=STRONG_PRICE)
    roles["target"]["model"] = "gpt-4o-mini"  # (the mock answers any other name as the target)
    result = codeclm.run(SEEDS[:1], out=tmp_path / "known", instructions=2, metadata=1, **roles)
    cost = result.record.cost
    assert cost is not None and cost.prices["target"] is not None
    assert cost.prices["target"].source == "table" and (cost.by_role["target"] or 0) > 0
    roles = mock_roles(mock_llm)
    result = codeclm.run(SEEDS[:1], out=tmp_path / "unknown", instructions=2, metadata=1, **roles)
    cost = result.record.cost
    assert cost is not None and cost.total is None and cost.by_role["strong"] is None
    said = [r.getMessage() for r in caplog.records if "is unknown" in r.getMessage()]
    assert said and "[strong.price]" in said[0]
    with pytest.raises(ConfigError, match=r"--max-cost needs every role's price"):
        codeclm.run(SEEDS[:1], out=tmp_path / "capped", max_cost=1.0, **roles)
    assert not (tmp_path / "capped" / "run.json").exists(), "refused before anything is written"


def test_an_evaluation_records_its_cost(mock_llm: MockLLM, tmp_path: Path) -> None:
    bench = tmp_path / "bench.jsonl"
    bench.write_text('{"id": "a", "instruction": "Name a prime.", "category": "math"}\n')
    roles = priced_roles(mock_llm)
    record = codeclm.evaluate(bench, self_judge=True, out=tmp_path / "eval", **roles)
    assert record.cost is not None and record.cost.total and record.cost.total > 0
    assert set(record.cost.by_role) == {"strong", "target", "judge"}


def test_an_estimate_before_paying_and_a_pilot_within_30_percent(
    mock_llm: MockLLM, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from codeclm.bench.mock_llm import mixed_rule
    from codeclm.cost.estimate import expected_iterations

    assert expected_iterations(1) == 1 and expected_iterations(4) == pytest.approx(1.417, 1e-3)
    mock_llm.judge_rule = mixed_rule
    seeds = write_seeds(tmp_path / "seeds.jsonl", SEEDS)
    roles = priced_roles(mock_llm)
    options = {"instructions": 30, "metadata": 6}
    sent = len(mock_llm.requests)
    prior = codeclm.estimate(seeds, **options, **roles)
    assert len(mock_llm.requests) == sent, "no model is called"
    assert prior.total_usd and prior.worst_total_usd and prior.worst_total_usd > prior.total_usd
    assert prior.expected["strong"].calls > prior.expected["target"].calls > 0
    piloted = codeclm.estimate(seeds, pilot=6, **options, **roles)
    assert piloted.pilot_usd and piloted.source == "pilot of 6 instructions"
    actual = codeclm.run(seeds, out=tmp_path / "run", **options, **roles).record.cost
    assert actual is not None and actual.total
    assert 0.7 <= (piloted.total_usd or 0) / actual.total <= 1.3
    assert prior.worst_total_usd >= actual.total
    argv = ["run", str(seeds), *mock_args(mock_llm, tmp_path / "never", **options)]
    assert main([*argv, "--estimate"]) == 0
    printed = capsys.readouterr().out
    assert "expected" in printed and "worst case" in printed and "strong" in printed
    assert not (tmp_path / "never").exists(), "an estimate writes nothing"


def test_the_estimate_from_the_prompts_is_within_30_percent_for_a_model_like_the_papers(
    mock_llm: MockLLM, tmp_path: Path
) -> None:
    """A model that writes answers of 150 to 450 tokens and a judge that decides 70% of
    pairs at each iteration: what the estimate assumes, so the calls and prompts it counts
    decide how close it is (``benchmarks.cost_estimate`` prints three sizes)."""
    from codeclm.bench.mock_llm import paper_rule

    mock_llm.judge_rule, mock_llm.answer_tokens = paper_rule, 300
    seeds = write_seeds(tmp_path / "seeds.jsonl", SEEDS)
    roles = priced_roles(mock_llm)
    options = {"instructions": 40, "metadata": 6}
    prior = codeclm.estimate(seeds, **options, **roles)
    actual = codeclm.run(seeds, out=tmp_path / "run", **options, **roles).record.cost
    assert actual is not None and actual.total
    assert 0.7 <= (prior.total_usd or 0) / actual.total <= 1.3, (prior.total_usd, actual.total)


def test_an_evaluation_stops_at_its_cap_too(mock_llm: MockLLM, tmp_path: Path) -> None:
    bench = tmp_path / "bench.jsonl"
    bench.write_text(
        "".join(
            f'{{"id": "q{i}", "instruction": "Name a prime above {i}.", "category": "math"}}\n'
            for i in range(6)
        )
    )
    roles = priced_roles(mock_llm)
    mock_llm.answer_tokens = 1500  # answers that cost: the six items cost more than the cap
    with pytest.raises(CostCapReached, match="--max-cost"):
        codeclm.evaluate(bench, self_judge=True, out=tmp_path / "eval", max_cost=0.05, **roles)
    record = json.loads((tmp_path / "eval/eval.json").read_text())
    assert record["cost"]["total"] <= 0.05 and record["cost"]["stopped_at_cap"]


def test_a_run_with_failed_nodes_counts_every_paid_request_once(tmp_path: Path) -> None:
    """Refusals, cut replies, 503s and bad JSON make nodes fail and retry: the calls their
    failed attempts paid are in the figures (the retry answers them from the cache)."""
    from tests.conftest import realistic

    mock = realistic(refusal_rate=0.1, error_rate=0.1).start()
    try:
        roles = priced_roles(mock)
        out = tmp_path / "run"
        result = codeclm.run(
            SEEDS, out=out, instructions=8, metadata=3, backoff=0, attempts=2, **roles
        )
    finally:
        mock.stop()
    assert result.record.counts.failed or result.record.prepare_failures or mock.statuses[503]
    assert_figures_agree(out, result.record)


def test_a_killed_run_resumed_counts_what_the_first_process_paid(
    mock_llm: MockLLM, tmp_path: Path
) -> None:
    import os
    import signal
    import subprocess
    import sys

    roles = priced_roles(mock_llm)
    options = {"instructions": 8, "metadata": 3, "concurrency": 2, "seed": 4}
    seeds = write_seeds(tmp_path / "seeds.jsonl", SEEDS)
    free = codeclm.run(seeds, out=tmp_path / "free", **options, **roles)
    calls = mock_llm.received
    mock_llm.received, mock_llm.stop_at = 0, calls // 2
    out = tmp_path / "killed"
    prices_file = tmp_path / "prices.toml"
    prices_file.write_text(
        "[strong.price]\ninput = 2.5\noutput = 10.0\n"
        "[target.price]\ninput = 0.5\noutput = 1.5\ncached_input = 0.25\n"
    )
    argv = [sys.executable, "-m", "codeclm", "run", str(seeds), "--config", str(prices_file)]
    argv += mock_args(mock_llm, out, **options)
    killed = subprocess.Popen(argv, env=os.environ.copy(), stderr=subprocess.DEVNULL)
    mock_llm.stop_pid = killed.pid
    assert killed.wait(timeout=120) == -signal.SIGKILL
    mock_llm.stop_at = None
    resumed = codeclm.resume(out)
    assert_figures_agree(out, resumed.record)
    # the requests in flight at the kill were paid twice at most; nothing else
    extra = resumed.record.usage["strong"].calls - free.record.usage["strong"].calls
    extra += resumed.record.usage["target"].calls - free.record.usage["target"].calls
    assert 0 <= extra <= options["concurrency"]


def test_a_ledger_moved_aside_leaves_the_threads_figures(mock_llm: MockLLM, tmp_path: Path) -> None:
    """The advice for a damaged spend.sqlite is to move it aside: the new ledger then lacks
    what was paid before, and the figures per role and per step stay the threads'."""
    out = tmp_path / "run"
    first = codeclm.run(SEEDS[:2], out=out, instructions=2, metadata=2, **priced_roles(mock_llm))
    (out / "spend.sqlite").rename(tmp_path / "spend.sqlite.damaged")
    again = codeclm.resume(out).record
    assert _calls(again.usage) == _calls(first.record.usage)
    assert _calls(again.usage_by_node) == _calls(first.record.usage_by_node)
    assert again.cost is not None and again.cost.total == 0.0  # (what is paid from now on)


def test_the_ledger_files_each_request_under_its_step_and_turn(
    mock_llm: MockLLM, tmp_path: Path
) -> None:
    """A conversation's requests are filed turn by turn (``answer turn 2`` …), so the
    figures per step are the ledger's own, not a fallback to the threads'."""
    mock_llm.judge_rule = lambda instruction: (5, 5)  # improved, then dropped: every step
    out = tmp_path / "run"
    options = {"instructions": 2, "metadata": 2, "max_iterations": 2, "turns": 3}
    record = codeclm.run(SEEDS[:2], out=out, **options, **priced_roles(mock_llm)).record
    with sqlite3.connect(out / "spend.sqlite") as db:
        steps = dict(db.execute("SELECT step || '/' || role, COUNT(*) FROM spend GROUP BY 1"))
    assert "" not in {key.split("/")[0] for key in steps}
    for step in ("answer turn 2", "answer turn 3", "judge turn 3", "write_turns turn 3"):
        assert f"{step}/strong" in steps, sorted(steps)
    assert {key: u.calls for key, u in record.usage_by_node.items() if u.calls} == steps
    assert_figures_agree(out, record)

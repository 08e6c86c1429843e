"""Near the cap (issue #33, item 2): the run sends one request at a time with the budget
the cap leaves room for, spends most of the cap and never passes it; a reply that budget
cut is paid for, not kept, and asked again whole once the cap is raised."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

import codeclm
from codeclm.bench.mock_llm import MockLLM
from codeclm.config import Price
from codeclm.cost import meter as meter_module
from codeclm.cost.meter import CostCapReached, Meter
from codeclm.cost.prices import role_price
from codeclm.records import TokenUsage
from codeclm.store.ledger import SqliteLedger
from tests.conftest import STRONG_PRICE, priced_roles, write_seeds

SEEDS = ["How do I bake rye bread?", "Explain git rebase to a new hire.", "Plan a trip to Rome."]
OPTIONS = {"instructions": 24, "metadata": 3, "concurrency": 4}


def _calls(usage: dict[str, TokenUsage]) -> dict[str, int]:
    return {key: u.calls for key, u in usage.items() if u.calls}


def test_near_the_cap_it_spends_at_least_nine_tenths_and_never_more(
    mock_llm: MockLLM, tmp_path: Path
) -> None:
    mock_llm.answer_tokens = 350  # answers of 175 to 525 tokens against max_tokens 2048
    roles = priced_roles(mock_llm)
    seeds = write_seeds(tmp_path / "seeds.jsonl", SEEDS)
    free = codeclm.run(seeds, out=tmp_path / "free", **OPTIONS, **roles)
    assert free.record.cost is not None and free.record.cost.total is not None
    cap = 0.1
    assert free.record.cost.total > 2 * cap
    with pytest.raises(CostCapReached, match=r"spent \$0\.0\d+ of \$0\.10, \$0\.0\d+ left"):
        codeclm.run(seeds, out=tmp_path / "capped", max_cost=cap, **OPTIONS, **roles)
    spent = json.loads((tmp_path / "capped/run.json").read_text())["cost"]["total"]
    assert 0.9 * cap <= spent <= cap, spent  # a whole bound ($0.021) below it before
    finished = codeclm.run(seeds, out=tmp_path / "capped", max_cost=5.0, **OPTIONS, **roles)
    assert finished.record.cost is not None
    assert finished.record.cost.total == pytest.approx(free.record.cost.total), "none twice"
    assert _calls(finished.record.usage_by_node) == _calls(free.record.usage_by_node)
    assert (tmp_path / "capped/dataset.jsonl").read_bytes() == (
        tmp_path / "free/dataset.jsonl"
    ).read_bytes()


def test_a_reply_cut_by_the_cap_is_paid_not_kept_and_asked_again_whole(
    mock_llm: MockLLM, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The target's own cap, and the first budget it lowers made 100 tokens: the target only
    # answers (500 to 1,500 tokens here), so that answer is cut by the cap, whatever the
    # order the threads run in; one request at a time, so the room never jumps past it.
    fit = Meter._fit
    monkeypatch.setattr(Meter, "_fit", lambda *args: min(100, fit(*args)))
    monkeypatch.setattr(meter_module, "LEAST_BUDGET", 1)
    monkeypatch.setattr(meter_module, "BUDGET_MARGIN", 0)
    mock_llm.answer_tokens = 1000
    roles = priced_roles(mock_llm)
    options = {**OPTIONS, "concurrency": 1}
    seeds = write_seeds(tmp_path / "seeds.jsonl", SEEDS)
    free = codeclm.run(seeds, out=tmp_path / "free", **options, **roles)
    assert free.record.cost is not None and free.record.cost.by_role["target"]
    cap = free.record.cost.by_role["target"] / 2
    capped_roles = {**roles, "target": {**roles["target"], "max_cost": cap}}
    with pytest.raises(CostCapReached, match=r"stopped at a reply cut at 100 tokens") as stop:
        codeclm.run(seeds, out=tmp_path / "capped", **options, **capped_roles)
    assert "target's max_cost" in str(stop.value)
    assert "only the cut reply is paid again" in str(stop.value)
    spent = json.loads((tmp_path / "capped/run.json").read_text())["cost"]["by_role"]["target"]
    assert spent <= cap
    finished = codeclm.run(seeds, out=tmp_path / "capped", **options, **roles)
    assert finished.record.cost is not None
    # the cut reply was not cached: asked again whole, so paid once more (and only it)
    paid, paid_free = finished.record.cost.paid, free.record.cost.paid
    assert paid["target"].calls == paid_free["target"].calls + 1
    assert paid["strong"].calls == paid_free["strong"].calls
    assert (tmp_path / "capped/dataset.jsonl").read_bytes() == (
        tmp_path / "free/dataset.jsonl"
    ).read_bytes()


def test_the_budget_near_the_cap_is_the_room_left_within_its_margin(tmp_path: Path) -> None:
    asyncio.run(_budgets_near_the_cap(tmp_path))


async def _budgets_near_the_cap(tmp_path: Path) -> None:
    price = role_price("m", None, Price(**STRONG_PRICE))
    ledger = await SqliteLedger(tmp_path / "spend.sqlite").open()
    try:
        meter = await Meter.open({"strong": price}, ledger, cap=0.05)
        prompt = "x" * 2000  # 1,016 tokens at most: $0.00254 of input
        async with meter.request("strong", prompt, 2048) as admitted:
            assert admitted.max_tokens == 2048  # far from the cap
            await admitted.settle(TokenUsage(calls=1, input_tokens=500, output_tokens=300), False)
        # Room for 1,000 output tokens beside this prompt: a step whose longest reply was 300
        # is sent with that room (at least one and a half times its longest) ...
        meter.cap = (meter.total() or 0) + 0.00254 + 1000 * 10 / 1e6
        async with meter.request("strong", prompt, 2048) as admitted:
            assert 995 <= admitted.max_tokens <= 1000
            await admitted.settle(TokenUsage(calls=1, input_tokens=500, output_tokens=200), False)
        # ... and not below one and a half times the longest: here 450 tokens ($0.00254 +
        # $0.0045), when 400 are left
        meter.cap = (meter.total() or 0) + 0.00254 + 400 * 10 / 1e6
        with pytest.raises(
            CostCapReached, match=r"less than the next request may cost \(\$0\.007\)"
        ):
            async with meter.request("strong", prompt, 2048):
                pass
        assert (meter.total() or 0) <= meter.cap
    finally:
        await ledger.close()

"""The report's cost: what the run paid per role and per node, per kept pair, what the
response cache saved, and the estimate beside it (from the run's settings and prompts)."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from codeclm.config import ConfigError, RunConfig
from codeclm.cost.estimate import from_settings
from codeclm.cost.meter import dollars, role_of
from codeclm.graph import method_steps
from codeclm.prompts import load_prompts
from codeclm.records import RunRecord


def cost_figures(record: RunRecord, seed_texts: list[str]) -> dict[str, Any] | None:
    """The record's cost, with the estimate its settings give (None for a run recorded
    before codeclm counted dollars)."""
    cost = record.cost
    if cost is None:
        return None
    figures: dict[str, Any] = cost.model_dump(mode="json")
    try:
        config = RunConfig.model_validate(record.config)
        prompts = load_prompts(config.prompts_dir)
        steps = method_steps(config)
        estimate = from_settings(config, prompts, seed_texts or [""], steps)
    except (ConfigError, ValidationError):  # settings of another version: no estimate
        figures["estimate"] = None
        return figures
    priced = estimate.priced(cost.prices, batch=config.batch)  # the actual's pricing mode
    figures["estimate"] = {
        "batch": config.batch,
        "source": priced.source,
        "expected": priced.total_usd,
        "worst": priced.worst_total_usd,
        "by_role": priced.expected_usd,
    }
    return figures


def cost_table(figures: dict[str, Any] | None) -> tuple[str, list[str], list[list[str]]] | None:
    """(title, header, rows): per role, then the run's totals, then per node."""
    if figures is None:
        return None
    estimate = figures.get("estimate") or {}
    rows = []
    for role, spent in figures["by_role"].items():
        price = figures["prices"].get(role)
        calls = sum(
            u.get("calls", 0) for key, u in figures["paid"].items() if role_of(key)[0] == role
        )
        where = (
            f"{price['source']}: ${price['input']:g} / ${price['output']:g}" if price else "unknown"
        )
        rows.append(
            [
                role,
                where,
                f"{calls:,}",
                dollars(spent),
                dollars((estimate.get("by_role") or {}).get(role)),
            ]
        )
    rows.append(
        [
            "all",
            figures.get("price_source") or figures["table"],
            "",
            dollars(figures["total"]),
            dollars(estimate.get("expected")),
        ]
    )
    rows.append(["per kept pair", "", "", dollars(figures["per_kept_pair"]), ""])
    rows.append(["saved by the response cache", "", "", dollars(figures["cache_saved"]), ""])
    if estimate:
        rows.append(["estimate's worst case", "", "", "", dollars(estimate.get("worst"))])
    rows += [[node, "", "", dollars(value), ""] for node, value in figures["by_node"].items()]
    header = [
        "role, or node/role",
        "price (per million in / out)",
        "calls paid",
        "cost",
        "estimate (batch prices)" if estimate.get("batch") else "estimate",
    ]
    mode = ", at batch prices" if estimate.get("batch") else ""
    return f"Cost (USD, from the ledger of paid requests{mode})", header, rows

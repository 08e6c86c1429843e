"""What a run paid, as its record shows it: the ledger's figures, per role and per step,
priced; the threads' own usage only for what the cache answered.

Apart from the meter, which admits and records requests while the run goes on: these read
it (``Meter.latest``) once the run stops, for ``run.json``, ``eval.json`` and the report.
"""

from __future__ import annotations

from codeclm.cost.meter import BATCHED, Meter, role_of
from codeclm.records import CostRecord
from codeclm.state import TokenUsage

PAID_FIELDS = ("calls", "input_tokens", "output_tokens", "reasoning_tokens", "cached_input_tokens")
"""``TokenUsage``'s figures a provider bills: the ledger's count them."""


def paid_usage(
    meter: Meter, usage: dict[str, TokenUsage], usage_by_node: dict[str, TokenUsage]
) -> tuple[dict[str, TokenUsage], dict[str, TokenUsage]]:
    """The threads' usage per role and per ``node/role`` with what was paid taken from the
    ledger (as of ``latest``): every paid request counted once, in the step that made it,
    including requests whose step failed or was cut by a stop and later answered from the
    cache. What the cache answered (``cached_calls``, the tokens it saved) stays the
    threads'. A ledger with requests of no step (begun by an earlier version): as is."""
    if meter.by_step is None:
        return usage, usage_by_node
    by_role: dict[str, TokenUsage] = {}
    for key, paid in meter.paid.items():
        role = role_of(key)[0]
        by_role[role] = by_role.get(role, TokenUsage()) + paid
    by_node: dict[str, TokenUsage] = {}
    for key, paid in meter.by_step.items():
        node = key.removesuffix(BATCHED)
        by_node[node] = by_node.get(node, TokenUsage()) + paid
    if _short(usage, by_role) or _short(usage_by_node, by_node):
        # a ledger that lacks what the threads paid (moved aside, as a damaged one may be):
        # the threads' figures, and no step's cost from it
        meter.by_step = None
        return usage, usage_by_node
    return _with_paid(usage, by_role), _with_paid(usage_by_node, by_node)


def _short(counted: dict[str, TokenUsage], paid: dict[str, TokenUsage]) -> bool:
    """The ledger holds fewer calls than the threads paid for (never so for a whole one:
    the threads count their current branches' paid calls, the ledger every paid call)."""
    return any(u.calls > paid.get(key, TokenUsage()).calls for key, u in counted.items())


def _with_paid(
    counted: dict[str, TokenUsage], paid: dict[str, TokenUsage]
) -> dict[str, TokenUsage]:
    merged = {}
    for key in sorted(counted.keys() | paid.keys()):
        ledger = paid.get(key, TokenUsage())
        update = {name: getattr(ledger, name) for name in PAID_FIELDS}
        merged[key] = counted.get(key, TokenUsage()).model_copy(update=update)
    return merged


def cost_record(
    meter: Meter,
    usage: dict[str, TokenUsage],
    usage_by_node: dict[str, TokenUsage],
    kept: int | None = None,
) -> CostRecord:
    """The cost of a run as of now: the ledger's figures priced (``paid``, ``by_role``,
    ``total``, and each step's share when the ledger names the steps; else the threads'
    usage per node), and what the cache saved, from the threads' usage."""
    from codeclm.cost.prices import price_sources, price_table

    def priced(role: str, tokens: TokenUsage, batch: bool = meter.batch) -> float | None:
        price = meter.prices.get(role)
        if price is None:
            return None
        return price.cost(tokens) * (price.batch_discount if batch else 1.0)

    if meter.by_step is not None:  # the ledger's, each request at the price it was paid
        by_node: dict[str, float | None] = {}
        for key, tokens in sorted(meter.by_step.items()):
            step, ledger_key = key.split("/", 1)
            role, batch = role_of(ledger_key)
            node = f"{step}/{role}"
            cost = priced(role, tokens, batch)
            before = by_node.get(node, 0.0)
            by_node[node] = None if cost is None or before is None else before + cost
        for key in usage_by_node.keys() - by_node.keys():  # (answered from the cache only)
            by_node[key] = 0.0
        by_node = dict(sorted(by_node.items()))
    else:
        by_node = {
            key: priced(key.rsplit("/", 1)[-1], u) for key, u in sorted(usage_by_node.items())
        }
    saved = [priced(role, u.saved()) for role, u in usage.items() if u.cached_calls]
    total = meter.total()
    return CostRecord(
        table=price_table(),
        price_source=price_sources(meter.prices),
        prices=dict(sorted(meter.prices.items())),
        paid=dict(sorted(meter.paid.items())),
        by_role={role: meter.spent(role) for role in sorted(meter.prices)},
        total=total,
        by_node=by_node,
        cache_saved=None if None in saved else sum(s or 0.0 for s in saved),
        per_kept_pair=total / kept if total is not None and kept else None,
        cap=meter.cap,
        stopped_at_cap=meter.why or None,
    )

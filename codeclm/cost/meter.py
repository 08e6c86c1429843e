"""The cost meter: every answered request priced and recorded in the ledger, and the run's
spending cap (``--max-cost``, and a role's ``max_cost``) held before each request is sent.

A request is admitted only if what was paid, what the requests in flight may still cost
(each at its ``max_tokens`` bound) and this request's own bound stay within every cap.
Near the cap the run sends fewer at once: a request that would fit once the requests in
flight have settled (they mostly cost far less than their bound) waits for them. One that
would not fit even alone is never sent: the meter says so (``capped``); the engine lets
the requests in flight finish (they are paid for: their replies are kept), then stops the
run as Ctrl-C does, writing what is finished. Run again with a higher cap, the run goes
on and pays nothing twice.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from codeclm.cost.ledger import Ledger
from codeclm.records import CostRecord, RolePrice
from codeclm.state import TokenUsage, current_step

Settle = Callable[[TokenUsage], Awaitable[None]]

BATCHED = "/batch"
"""The ledger's name for a role's Batch API requests (``strong/batch``): priced at its
``batch_discount``."""


def role_of(key: str) -> tuple[str, bool]:
    """A ledger key's role, and whether its requests went through the Batch API."""
    return (key.removesuffix(BATCHED), True) if key.endswith(BATCHED) else (key, False)


class CostCapReached(RuntimeError):
    """The next request would have passed a spending cap: the run stopped before it."""


def dollars(value: float | None) -> str:
    """$12.34 from a dollar up, $0.0042 below one, 'unknown' when a price is."""
    if value is None:
        return "unknown"
    if value >= 1 or value == 0:
        return f"${value:,.2f}"
    whole, _, cents = f"{value:.4f}".rstrip("0").partition(".")
    return f"${whole}.{cents.ljust(2, '0')}"


@dataclass
class Meter:
    """Prices, the ledger, the caps, and this process's requests in flight."""

    prices: dict[str, RolePrice | None]
    ledger: Ledger
    cap: float | None = None
    role_caps: dict[str, float] = field(default_factory=dict)
    paid: dict[str, TokenUsage] = field(default_factory=dict)
    """What each role was paid for: the ledger at start, and every request since."""
    in_flight: dict[str, float] = field(default_factory=dict)
    """The most this process's requests in flight may still cost, per role."""
    sent: int = 0
    """This process's requests in flight."""
    drained: asyncio.Event = field(default_factory=asyncio.Event)
    """Set while no request is in flight (after a cap: every admitted one has settled)."""
    capped: asyncio.Event = field(default_factory=asyncio.Event)
    why: str = ""
    halted: bool = False
    """The run is stopping for another reason (an endpoint broke): no request is admitted,
    those in flight finish (``drained``) and the run is cancelled."""
    stops_run: bool = False
    """A run is watching ``capped`` to stop as Ctrl-C does (``engine.stops``); else (eval,
    step) a refused request raises ``CostCapReached`` at once."""
    read_at: float = 0.0
    """When ``paid`` was last read from the ledger (other workers pay into it too)."""
    by_step: dict[str, TokenUsage] | None = None
    """What was paid per ``step/ledger key``, as of ``latest`` (None: not read, or a
    ledger with requests of no step)."""
    batch: bool = False
    """The run sends its requests through the Batch API (``--batch``)."""
    refused_bound: float = 0.0
    """The most the request the run stopped before could have cost."""
    settled: asyncio.Condition = field(default_factory=asyncio.Condition)
    """Notified as each request in flight settles: a request waiting for room wakes."""

    def __post_init__(self) -> None:
        self.drained.set()

    @classmethod
    async def open(
        cls,
        prices: dict[str, RolePrice | None],
        ledger: Ledger,
        cap: float | None = None,
        role_caps: dict[str, float] | None = None,
    ) -> Meter:
        meter = cls(prices, ledger, cap, role_caps or {}, paid=await ledger.totals())
        meter.read_at = time.monotonic()
        return meter

    async def _refresh(self, every: float = 2.0) -> None:
        """What every worker paid, read again from the ledger at most every ``every``
        seconds: workers on one PostgreSQL run share its caps."""
        if time.monotonic() - self.read_at >= every:
            totals = await self.ledger.totals()
            # Never backwards: a read begun before one of this process's requests settled
            # lacks it, while that request's bound is already released.
            self.paid = {
                key: _most(totals.get(key), self.paid.get(key))
                for key in totals.keys() | self.paid.keys()
            }
            self.read_at = time.monotonic()

    async def latest(self) -> Meter:
        """The meter with what every worker paid until now, in all and per step (for a
        record)."""
        await self._refresh(every=0.0)
        self.by_step = await self.ledger.by_step()
        return self

    def stop_message(self) -> str:
        """What was spent, what is left, and why the run stopped."""
        spent = self.total()
        left = ""
        if self.cap is not None and spent is not None:
            left = (
                f" of {dollars(self.cap)}, {dollars(max(self.cap - spent, 0.0))} left: less "
                f"than the next request may cost ({dollars(self.refused_bound)})"
            )
        return (
            f"stopped before a request that could pass {self.why}: spent "
            f"{dollars(spent)}{left}; what is finished is written out. Run again with a "
            "higher cap to go on (nothing is paid twice)"
        )

    def spent(self, role: str) -> float | None:
        """USD paid for ``role``, online and in batches (None: its price is unknown)."""
        price = self.prices.get(role)
        online = self.paid.get(role, TokenUsage())
        batched = self.paid.get(role + BATCHED, TokenUsage())
        if price is None:
            return None if online.calls or batched.calls else 0.0
        return price.cost(online) + price.cost(batched) * price.batch_discount

    def total(self) -> float | None:
        """USD paid in all (None when a role that was called has no price)."""
        roles = set(self.prices) | {role_of(key)[0] for key in self.paid}
        parts = [self.spent(role) for role in sorted(roles)]
        return None if any(part is None for part in parts) else sum(p or 0.0 for p in parts)

    def _bound(self, role: str, prompt: str, max_tokens: int, batch: bool) -> float:
        """The most this request can cost: its prompt (at most a token per two bytes: a
        token per character of CJK text, twice what English takes) and every output token
        it may use."""
        price = self.prices.get(role)
        if price is None:
            return 0.0
        prompt_tokens = len(prompt.encode()) // 2 + 16
        usage = TokenUsage(input_tokens=prompt_tokens, output_tokens=max_tokens)
        return price.cost(usage) * (price.batch_discount if batch else 1.0)

    def _refusal(self, role: str, bound: float, alone: bool = False) -> str | None:
        """Why the request must not be sent, or None (``alone``: were nothing in flight)."""
        role_cap = self.role_caps.get(role)
        if role_cap is not None:
            flying = 0.0 if alone else self.in_flight.get(role, 0.0)
            if (self.spent(role) or 0.0) + flying + bound > role_cap:
                return f"{role}'s max_cost {dollars(role_cap)}"
        if self.cap is not None:
            flying = 0.0 if alone else sum(self.in_flight.values())
            if (self.total() or 0.0) + flying + bound > self.cap:
                return f"--max-cost {dollars(self.cap)}"
        return None

    async def _admit(self, role: str, bound: float) -> str | None:
        """Wait while the request would fit once those in flight settle; why it can never
        be sent within the caps, or None: it is admitted."""
        while True:
            refusal = self.why or self._refusal(role, bound)
            if not refusal or self.why or not self.sent:
                return refusal
            if self._refusal(role, bound, alone=True) is not None:
                return refusal
            async with self.settled:  # fewer at once near the cap: wait for room
                await self.settled.wait()

    @asynccontextmanager
    async def request(
        self, role: str, prompt: str, max_tokens: int, batch: bool = False
    ) -> AsyncIterator[Settle]:
        """Admit one request (or stop the run here: it is never sent), and ``settle`` it
        with the usage its reply reported: priced, added, and recorded in the ledger
        (``batch``: a Batch API request, at the batch discount)."""
        bound = self._bound(role, prompt, max_tokens, batch)
        key = role + BATCHED if batch else role
        step = current_step()  # (the node asking: its task's context)
        if self.cap is not None or self.role_caps:
            await self._refresh()
        if self.halted:  # the run is stopping (an endpoint broke): nothing more is sent
            await asyncio.Event().wait()
        refusal = await self._admit(role, bound)  # once stopped, nothing more is sent
        if refusal:
            if not self.capped.is_set():
                self.why, self.refused_bound = refusal, bound
                self.capped.set()
            if not self.stops_run:
                raise CostCapReached(self.stop_message())
            await asyncio.Event().wait()  # the engine cancels the run, and this with it
        self.in_flight[role] = self.in_flight.get(role, 0.0) + bound
        self.sent += 1
        self.drained.clear()

        async def settle(usage: TokenUsage) -> None:
            await self.ledger.record(key, usage, step)
            self.paid[key] = self.paid.get(key, TokenUsage()) + usage

        try:
            yield settle
        finally:
            self.in_flight[role] -= bound
            self.sent -= 1
            if not self.sent:
                self.drained.set()
            async with self.settled:
                self.settled.notify_all()


def _most(one: TokenUsage | None, other: TokenUsage | None) -> TokenUsage:
    """Each figure's larger of two readings of what a role paid."""
    first, second = one or TokenUsage(), other or TokenUsage()
    return TokenUsage(
        **{
            name: max(getattr(first, name), getattr(second, name))
            for name in type(first).model_fields
        }
    )


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

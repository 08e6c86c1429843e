"""The cost meter: every answered request priced and recorded in the ledger, and the run's
spending cap (``--max-cost``, and a role's ``max_cost``) held before each request is sent.

A request is admitted only if what was paid, what the requests in flight may still cost
(each at its ``max_tokens`` bound) and this request's own bound stay within every cap.
Near the cap the run sends fewer at once: a request that does not fit waits for the
requests in flight to settle (they mostly cost far less than their bound). Alone, and
still not fitting, it is sent with a smaller ``max_tokens``, as many output tokens as the
caps leave room for, if that is at least ``BUDGET_MARGIN`` times the longest reply its
step has had (and ``LEAST_BUDGET``): replies mostly end well before their budget, so the
run spends up to its cap rather than stopping a whole bound below it. A reply that still
reaches that smaller budget was cut by the cap: it is paid for but not kept, and the run
stops there. One that would not fit even at its least budget is never sent: the meter
says so (``capped``); the engine lets the requests in flight finish (they are paid for:
their replies are kept), then stops the run as Ctrl-C does, writing what is finished. Run
again with a higher cap, the run goes on and pays nothing twice (but a reply cut by the
cap, asked again whole).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import NoReturn

from codeclm.cost.ledger import Ledger
from codeclm.records import RolePrice
from codeclm.state import TokenUsage, current_step

Settle = Callable[[TokenUsage, bool], Awaitable[None]]
"""Records a reply's usage (and whether it was cut at its budget) in the ledger."""

#: The smallest output budget a request is sent with near the cap ...
LEAST_BUDGET = 256
#: ... and at least this many times the longest reply its step and role have had in this
#: process (a step not seen yet: its role's longest; none: not lowered): a reply cut by
#: the cap is paid for and asked again. Twice was too wide near a small cap: with answers
#: of up to 525 tokens at $10/M, a run stopped $0.0105 short of $0.10 (89.5%) whenever its
#: last request was an answer.
BUDGET_MARGIN = 1.5

BATCHED = "/batch"
"""The ledger's name for a role's Batch API requests (``strong/batch``): priced at its
``batch_discount``."""


def role_of(key: str) -> tuple[str, bool]:
    """A ledger key's role, and whether its requests went through the Batch API."""
    return (key.removesuffix(BATCHED), True) if key.endswith(BATCHED) else (key, False)


class CostCapReached(RuntimeError):
    """The next request would have passed a spending cap: the run stopped before it."""


@dataclass(frozen=True)
class Admitted:
    """A request the meter let through: how to settle it, and the budget it may use."""

    settle: Settle
    """Records the reply's usage in the ledger (paid, whatever becomes of the reply); a
    reply cut at a budget the cap lowered stops the run there (not kept)."""
    max_tokens: int
    """The request's own ``max_tokens``, or fewer near the cap (what the caps leave room for)."""


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
    sent_by: dict[str, int] = field(default_factory=dict)
    """This process's requests in flight, per role."""
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
    cut_at: int = 0
    """The budget of the reply the cap cut, when that is what stopped the run."""
    longest: dict[str, int] = field(default_factory=dict)
    """The most output tokens a reply of each ``step/ledger key`` has had in this process."""
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
        if self.cut_at:
            return (
                f"stopped at a reply cut at {self.cut_at} tokens, all the room {self.why} "
                f"left: spent {dollars(spent)}{left}; what is finished is written out. Run "
                "again with a higher cap to go on (only the cut reply is paid again)"
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

    def _fit(self, role: str, prompt: str, max_tokens: int, batch: bool) -> int:
        """The most output tokens (up to ``max_tokens``) a request alone may use within
        every cap."""
        fixed = self._bound(role, prompt, 0, batch)
        per_token = (self._bound(role, prompt, 1_000_000, batch) - fixed) / 1_000_000
        room = min(
            [self.cap - (self.total() or 0.0)] if self.cap is not None else [],
            default=float("inf"),
        )
        if role in self.role_caps:
            room = min(room, self.role_caps[role] - (self.spent(role) or 0.0))
        if per_token <= 0:
            return max_tokens
        budget = min(max_tokens, int((room - fixed) / per_token))
        while budget > 0 and self._refusal(role, self._bound(role, prompt, budget, batch), True):
            budget -= 1  # (rounding)
        return budget

    def _longest(self, kind: str) -> int:
        """The longest reply of ``kind`` (``step/ledger key``) so far; of a step not seen
        yet, the longest of its role's (none yet: infinite, not lowered)."""
        if kind in self.longest:
            return self.longest[kind]
        key = kind.rsplit("/", 1)[-1]
        seen = [n for name, n in self.longest.items() if name.rsplit("/", 1)[-1] == key]
        return max(seen, default=1 << 30)

    def _room_to_come(self, role: str, bound: float) -> bool:
        """Whether requests in flight may leave room for this one as they settle: the
        role's own, when its ``max_cost`` is what it does not fit (others' settling frees
        none of that); any, for ``--max-cost``."""
        everyone = sum(self.in_flight.values())
        if self.cap is not None and (self.total() or 0.0) + everyone + bound > self.cap:
            return self.sent > 0
        return self.sent_by.get(role, 0) > 0  # (only its max_cost is what it does not fit)

    async def _admit(
        self, role: str, prompt: str, max_tokens: int, batch: bool, kind: str
    ) -> tuple[str | None, int]:
        """Wait while the request would fit once those in flight settle; why it can never
        be sent within the caps and the least budget it needed, or None and the budget it
        is sent with (its own, or the room left alone near the cap, at least
        ``LEAST_BUDGET`` and ``BUDGET_MARGIN`` times the longest reply of its ``kind``)."""
        bound = self._bound(role, prompt, max_tokens, batch)
        while True:
            refusal = self.why or self._refusal(role, bound)
            if not refusal:
                return None, max_tokens
            if self.why:
                return refusal, max_tokens
            if self._room_to_come(role, bound):  # fewer at once near the cap: wait for room
                async with self.settled:
                    await self.settled.wait()
                continue
            if batch:  # a batch line outlives the run: the next would take a cut as the model's
                return refusal, max_tokens
            wide = math.ceil(BUDGET_MARGIN * self._longest(kind))
            least = min(max(LEAST_BUDGET, wide), max_tokens)
            budget = self._fit(role, prompt, max_tokens, batch)
            return (None, budget) if budget >= least else (refusal, least)

    @asynccontextmanager
    async def request(
        self, role: str, prompt: str, max_tokens: int, batch: bool = False
    ) -> AsyncIterator[Admitted]:
        """Admit one request (or stop the run here: it is never sent), with the budget it
        may use; ``settle`` it with the usage its reply reported: priced, added, and
        recorded in the ledger (``batch``: a Batch API request, at the batch discount)."""
        key = role + BATCHED if batch else role
        step = current_step()  # (the node asking: its task's context)
        if self.cap is not None or self.role_caps:
            await self._refresh()
        if self.halted:  # the run is stopping (an endpoint broke): nothing more is sent
            await asyncio.Event().wait()
        kind = f"{step}/{key}"
        refusal, budget = await self._admit(role, prompt, max_tokens, batch, kind)
        if refusal:  # once stopped, nothing more is sent
            await self.stop(refusal, self._bound(role, prompt, budget, batch))
        bound = self._bound(role, prompt, budget, batch)
        self.in_flight[role] = self.in_flight.get(role, 0.0) + bound
        self.sent += 1
        self.sent_by[role] = self.sent_by.get(role, 0) + 1
        self.drained.clear()
        settled = False

        async def release() -> None:
            nonlocal settled
            if not settled:
                settled = True
                self.in_flight[role] -= bound
                self.sent -= 1
                self.sent_by[role] -= 1
                if not self.sent:
                    self.drained.set()
                async with self.settled:
                    self.settled.notify_all()

        async def settle(usage: TokenUsage, cut: bool) -> None:
            await self.ledger.record(key, usage, step)
            self.paid[key] = self.paid.get(key, TokenUsage()) + usage
            self.longest[kind] = max(self.longest.get(kind, 0), usage.output_tokens)
            if cut and budget < max_tokens:  # cut by the cap: not the model's whole reply
                whole = self._bound(role, prompt, max_tokens, batch)
                if not self.capped.is_set():
                    self.cut_at = budget
                await release()  # (the run stops once the others settle: not waiting on it)
                await self.stop(self._refusal(role, whole, alone=True) or "a cap", whole)

        try:
            yield Admitted(settle, budget)
        finally:
            await release()

    async def stop(self, why: str, bound: float) -> NoReturn:
        """Stop the run before a request that could cost ``bound`` (``why``: the cap it
        would pass): a run stops as Ctrl-C does, anything else raises ``CostCapReached``."""
        if not self.capped.is_set():
            self.why, self.refused_bound = why, bound
            self.capped.set()
        if not self.stops_run:
            raise CostCapReached(self.stop_message())
        await asyncio.Event().wait()  # the engine cancels the run, and this with it
        raise AssertionError("unreachable")


def _most(one: TokenUsage | None, other: TokenUsage | None) -> TokenUsage:
    """Each figure's larger of two readings of what a role paid."""
    first, second = one or TokenUsage(), other or TokenUsage()
    return TokenUsage(
        **{
            name: max(getattr(first, name), getattr(second, name))
            for name in type(first).model_fields
        }
    )

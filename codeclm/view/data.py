"""What the page shows, read from the run's store as it is now (a run may be writing it).

One ``Snapshot`` holds the pool, every instruction thread's latest values and the reviews;
the server keeps it for ``FRESH_SECONDS`` so a burst of requests reads the store once.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from codeclm.cost.meter import dollars, role_of
from codeclm.cost.prices import config_prices
from codeclm.debug.inspection import history_steps, thread_status
from codeclm.graph import started_values, thread_config
from codeclm.prepare.passes import ready
from codeclm.review import PoolStatus, RunSession
from codeclm.rows import PairReview
from codeclm.state import InstructionState, MetadataEntry, PrepareState, TokenUsage, add_usage

FRESH_SECONDS = 1.5
READ_AHEAD = 32


@dataclass
class ThreadRow:
    """One instruction as the list shows it (and filters and searches it)."""

    id: str
    metadata_id: str
    status: str
    use_case: str
    skills: list[str]
    iteration: int | None
    source: str
    """The model whose answer a kept pair carries (strong or target); '' otherwise."""
    gap: float | None
    reason: str
    instruction: str
    review: str
    """'accepted' or 'rejected', with ' (edited)' when a person edited it; '' for a kept
    pair no one reviewed yet."""
    search_text: str


@dataclass
class PoolRow:
    entry: MetadataEntry
    instructions: int
    kept: int


@dataclass
class Snapshot:
    prepare: str
    """pending, running, waiting for review, or done."""
    pool: PoolStatus
    pool_rows: list[PoolRow]
    threads: list[ThreadRow]
    counts: Counter[str]
    budget: int
    usage: dict[str, TokenUsage]
    reviews: dict[str, PairReview]
    failures: list[str]
    cost: str = "unknown"
    """What the run has paid so far (its ledger, priced as the run prices it)."""
    taken_at: float = field(default_factory=time.monotonic)
    load_seconds: float = 0.0
    """How long reading it took."""

    def progress(self) -> dict[str, Any]:
        """The figures the page refreshes while the run goes on."""
        return {
            "prepare": self.prepare,
            "pool": self.pool.phase,
            "budget": self.budget,
            "instructions": len(self.threads),
            "counts": dict(self.counts),
            "usage": {role: u.model_dump() for role, u in sorted(self.usage.items())},
            "calls": sum(u.calls for u in self.usage.values()),
            "tokens": sum(u.input_tokens + u.output_tokens for u in self.usage.values()),
            "reviewed": len(self.reviews),
            "cost": self.cost,
        }


def _row(
    ident: str, metadata_id: str, state: InstructionState | None, review: PairReview | None
) -> ThreadRow:
    if state is None:
        return ThreadRow(ident, metadata_id, "pending", "", [], None, "", None, "", "", "", "")
    status = thread_status(state.model_dump())
    texts = [state.instruction, state.basic_instruction, state.strong_answer or ""]
    texts += [state.target_answer or "", state.reason or "", state.use_case, *state.skills]
    if review is not None:  # a person's edits and note are searched too
        texts += [review.instruction or "", review.response or "", review.note]
    shown = ""
    if review is not None:
        shown = review.verdict + (" (edited)" if review.edited else "")
    return ThreadRow(
        id=state.id,
        metadata_id=state.metadata_id,
        status=status,
        use_case=state.use_case,
        skills=state.skills,
        iteration=state.iteration,
        source=(state.response_source or "") if status == "kept" else "",
        gap=state.scores.gap if state.scores else None,
        reason=state.reason or "",
        instruction=state.instruction,
        review=shown,
        search_text=" ".join(texts).lower(),
    )


async def take_snapshot(session: RunSession) -> Snapshot:
    """The run as its store holds it now."""
    started = time.monotonic()
    prepared = await session.prepared() or PrepareState()
    pool = await session.pool_status()
    reviews = await session.reviews.pairs()
    items = [item for _, item in ready(prepared)] if prepared.pool or prepared.decoded else []
    threads: list[ThreadRow] = []
    usage = dict(prepared.usage)
    for start in range(0, len(items), READ_AHEAD):
        chunk = items[start : start + READ_AHEAD]
        states = await asyncio.gather(*(session.instruction_state(i.id) for i in chunk))
        for item, state in zip(chunk, states, strict=True):
            threads.append(_row(item.id, item.metadata_id, state, reviews.get(item.id)))
            if state is not None:
                usage = add_usage(usage, state.usage)
    counts = Counter(t.status for t in threads)
    per_entry = Counter(t.metadata_id for t in threads)
    kept_per_entry = Counter(t.metadata_id for t in threads if t.status == "kept")
    pool_rows = [
        PoolRow(entry, per_entry[entry.id], kept_per_entry[entry.id]) for entry in pool.preview
    ]
    if pool.phase == "waiting":
        phase = "waiting for review"
    elif prepared.done:
        phase = "done"
    else:
        phase = "running" if prepared.seeds or prepared.user_metadata else "pending"
    return Snapshot(
        prepare=phase,
        pool=pool,
        pool_rows=pool_rows,
        threads=threads,
        counts=counts,
        budget=prepared.budget,
        usage=usage,
        reviews=reviews,
        failures=[f"{f.step} {f.subject}: {f.reason}" for f in prepared.failures],
        cost=await _paid(session),
        load_seconds=time.monotonic() - started,
    )


async def _paid(session: RunSession) -> str:
    """The run's ledger priced: by the prices its record holds, else its settings'."""
    handle = session.view.handle
    record_cost = handle.record.cost if handle.record else None
    prices = record_cost.prices if record_cost else config_prices(handle.config)
    spent = []
    for key, usage in (await session.store.ledger.totals()).items():
        role, batched = role_of(key)
        price = prices.get(role)
        share = price.batch_discount if price is not None and batched else 1.0
        spent.append(price.cost(usage) * share if price is not None else None)
    return dollars(None if None in spent else sum(x or 0.0 for x in spent))


@dataclass
class Iteration:
    """One turn of an instruction's loop: the instruction judged, and how."""

    number: int
    instruction: str
    action: str | None
    """The Self-Rubrics action that made this instruction from the one before (None: the
    basic instruction)."""
    scores: dict[str, Any] | None = None
    turn: int | None = None
    """The conversation's turn the action rewrote (None: a single instruction)."""


async def chain(session: RunSession, ident: str) -> list[Iteration]:
    """From the basic instruction through each action to the final one, with each
    iteration's judge scores in both orders (the steps ``codeclm inspect DIR ID`` shows)."""
    snapshots = [s async for s in session.instructions.aget_state_history(thread_config(ident))]
    snapshots.reverse()
    first = next((started_values(s.values) for s in snapshots if started_values(s.values)), {})
    if not first:
        return []
    iterations = [Iteration(1, first.get("basic_instruction", ""), None)]
    for step in history_steps(snapshots, session.instructions):
        if step.action is not None:
            iteration = Iteration(step.iteration or 0, step.instruction or "", step.action)
            iteration.turn = step.turn
            iterations.append(iteration)
        if step.scores is not None:
            iterations[-1].scores = step.scores
    return iterations

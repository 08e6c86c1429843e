"""The 'prepare' thread, one pass at a time, as a stream of instructions ready to run.

Every run takes the thread up: an interrupted pass is resumed; a finished one starts a new
pass when something is left to do (``needs_another_pass``). While the pass runs, each
instruction whose entry is ready (decoded, repeats removed, Self-Rubrics written) is handed
on at once, so its thread starts while other entries are still being decoded.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from langgraph.types import Command, Overwrite

from codeclm.config import ConfigError, RunConfig
from codeclm.context import PipelineContext
from codeclm.engine.threads import Graph, RunStats, stream_thread
from codeclm.graph import PREPARE_THREAD, build_prepare_graph, retry_policy, thread_config
from codeclm.methods import method_spec
from codeclm.nodes.planning import (
    Acceptance,
    ready_instructions,
    with_rubrics,
)
from codeclm.state import (
    BasicInstruction,
    InstructionState,
    MetadataEntry,
    PoolReview,
    PrepareState,
    Seed,
    Update,
)
from codeclm.store import StoreSpec, open_store
from codeclm.store.reviews import Reviews

log = logging.getLogger("codeclm")


def initial_state(entry: MetadataEntry | None, instruction: BasicInstruction) -> InstructionState:
    """A thread's first state; the baselines have no metadata entry (``entry`` is None)."""
    return InstructionState(
        id=instruction.id,
        metadata_id=instruction.metadata_id,
        use_case=entry.use_case if entry else "",
        skills=entry.skills if entry else [],
        seed_ids=entry.seed_ids if entry else instruction.seed_ids,
        candidate_actions=entry.actions if entry else [],
        extra=entry.extra if entry else {},
        basic_instruction=instruction.instruction,
        instruction=instruction.instruction,
    )


def needs_another_pass(state: PrepareState, config: RunConfig) -> bool:
    """A finished pass left work a new one can do: failures to retry (a passing reason), or
    a budget or pool the user grew. A pool that ran dry stays dry for the same settings, so
    running the same command again changes nothing: what a run delivers does not depend on
    how many times it was run."""
    return (
        any(not f.permanent for f in state.failures)
        or state.budget < config.instructions
        or (bool(state.pool) and len(state.pool) < config.metadata and not state.pool_review)
    )


def ready(state: PrepareState) -> list[tuple[MetadataEntry | None, BasicInstruction]]:
    """The instructions of ``state`` whose threads can start, in the order of the outputs:
    accepted ones whose entry has its rubrics (derived, never stored: the state stays small)."""
    baseline = not method_spec(state.method).makes_metadata
    accepted = sorted(state.decoded, key=lambda i: i.id) if baseline else state.accepted_items()
    return ready_instructions(state.method, state.pool, accepted, state.rubric_sets)


Ready = list[tuple[MetadataEntry | None, BasicInstruction]]


class RoundWatch:
    """A decode round's instructions that can start before the round's join (``collect``).

    Whether an item counts depends only on the items ranked before it (``Acceptance``):
    earlier rounds, and this round's entries earlier in pool order. So as soon as every
    entry before it has reported, it is decided exactly as ``collect`` will decide it, and
    its thread can start (once its entry's rubrics are written) while later entries are
    still being decoded. Only what became ready since the last ``fresh()`` is handed on.
    """

    def __init__(self, state: PrepareState, similarity: float) -> None:
        self.state = state
        targets = {entry.id: entry.n_instructions for entry in state.pool}
        self.acceptance = Acceptance(similarity, targets, state.accepted_items())
        written = with_rubrics(state.pool, state.rubric_sets)
        has_rubrics = {r.metadata_id for r in state.rubric_sets if r.usable}
        self.entries = {e.id: e for e in written}
        uses_rubrics = method_spec(state.method).uses_rubrics
        self.ready_entries = {e.id for e in written if e.id in has_rubrics or not uses_rubrics}
        self.held: dict[str, list[BasicInstruction]] = {}
        self.unusable: set[str] = set()
        self.reported: dict[str, list[BasicInstruction]] = {}
        self.waiting = list(state.pending_decode)  # in pool order, as ``plan`` lists them
        self._fresh: Ready = []

    def update(self, node: str, update: Any) -> None:
        """One finished task's writes: an entry's decoded items, rubrics, or its failure."""
        if not isinstance(update, dict):
            return
        for rubric_set in update.get("rubric_sets") or []:
            ident = rubric_set.metadata_id
            held = self.held.pop(ident, [])
            if not rubric_set.usable:  # stalled short: its items never start (``collect``)
                self.unusable.add(ident)
                continue
            self.entries[ident] = with_rubrics([self.entries[ident]], [rubric_set])[0]
            self.ready_entries.add(ident)
            self._fresh += [(self.entries[ident], item) for item in held]
        items: list[BasicInstruction] = update.get("decoded") or []
        if node == "decode" and items:
            self.reported[items[0].metadata_id] = items
        for failure in update.get("failures") or []:
            if failure.step == "decode":
                self.reported[failure.subject] = []
        while self.waiting and self.waiting[0] in self.reported:
            ident = self.waiting.pop(0)
            for item in sorted(self.reported[ident], key=lambda i: i.index):
                if not self.acceptance.offer(item):
                    continue
                if ident in self.ready_entries:
                    self._fresh.append((self.entries[ident], item))
                elif ident not in self.unusable:
                    self.held.setdefault(ident, []).append(item)

    def fresh(self) -> Ready:
        """The instructions that became ready since the last call."""
        ready, self._fresh = self._fresh, []
        return ready


async def prepare_stream(
    graph: Graph,
    context: PipelineContext,
    seeds: list[Seed],
    user_metadata: list[MetadataEntry],
    stats: RunStats,
    reviews: Reviews,
    update: list[Seed] | None = None,
) -> AsyncIterator[tuple[PrepareState, Ready]]:
    """Encode, augment, write rubrics, decode: the thread's latest state as the pass
    advances, with the instructions ready to run (some ahead of their round's end).

    The last state yielded is the pass's end (``done``), or the state a finished thread
    was left in when no new pass is needed. A pass that stops for the pool's review
    (``--review metadata``) waits here for the approval in ``reviews``, then goes on.
    ``update``: ``run --update``'s seeds; those the run lacks start a new pass that adds
    them (and ``cfg``'s grown budget and pool).
    """
    cfg = context.config
    config = thread_config(PREPARE_THREAD, max_concurrency=cfg.concurrency)
    snapshot = await graph.aget_state(config)
    graph_input: object = None
    if not snapshot.values:
        graph_input = PrepareState(
            method=cfg.method, budget=cfg.instructions, seeds=seeds, user_metadata=user_metadata
        )
    else:
        state = PrepareState.model_validate(snapshot.values)
        yield state, ready(state)
        fresh = new_seeds(state, update or [])
        if fresh and not state.done:
            raise ConfigError(
                "the run has not finished its last pass: resume it first, then --update"
            )
        if fresh:  # run --update: the new seeds, and the budget and pool they add
            number = len(state.updates) + 1
            added = Update(
                number=number,
                seed_ids=[seed.id for seed in fresh],
                instructions=cfg.instructions,
                metadata=cfg.metadata,
            )
            graph_input = {
                **_new_pass(state, cfg),
                "seeds": state.seeds + fresh,
                "updates": [*state.updates, added],
            }
        # Judge by our own flag, not ``snapshot.next``: when every task of a step had
        # finished but the step's checkpoint was not yet written, ``next`` is empty.
        elif state.done:
            if not needs_another_pass(state, cfg):
                return
            graph_input = _new_pass(state, cfg)
    while True:
        watch: RoundWatch | None = None
        async for mode, event in stream_thread(graph, graph_input, config, context, stats):
            if mode == "values":
                state = PrepareState.model_validate(event)
                if not state.pending_decode:
                    watch = None
                elif watch is None or watch.state.decode_round != state.decode_round:
                    watch = RoundWatch(state, cfg.repeat_similarity)  # one per round
                yield state, ready(state)
            elif watch is not None:
                for node, writes in event.items():
                    watch.update(node, writes)
                yield watch.state, watch.fresh()
        if not (await graph.aget_state(config)).interrupts:
            return
        # review_pool is waiting for a person: resume with their decision once they approve
        decision = await wait_for_approval(reviews, stats)
        graph_input = Command(resume=decision.model_dump(mode="json"))


def _new_pass(state: PrepareState, cfg: RunConfig) -> dict[str, Any]:
    """The input that starts a new pass over a finished 'prepare' thread."""
    return {
        "done": False,
        "budget": cfg.instructions,
        "passes": state.passes + 1,
        "rounds_this_pass": 0,
        "exhausted": [],
        "shortfall": None,
        "failures": Overwrite([f for f in state.failures if f.permanent]),
    }


def new_seeds(state: PrepareState, seeds: list[Seed]) -> list[Seed]:
    """``run --update``'s seeds that the run does not hold yet (by text). One whose id the
    run uses for another text is renamed ``uN-ID`` (N: the update's number)."""
    texts = {seed.text for seed in state.seeds}
    ids = {seed.id for seed in state.seeds}
    number = len(state.updates) + 1
    fresh: list[Seed] = []
    for seed in seeds:
        if seed.text in texts:
            continue
        if seed.id in ids:
            seed = seed.model_copy(update={"id": f"u{number}-{seed.id}"})
        texts.add(seed.text)
        ids.add(seed.id)
        fresh.append(seed)
    return fresh


async def plan_update(
    config: RunConfig,
    out_dir: Path,
    spec: StoreSpec,
    seeds: list[Seed],
    instructions: int | None,
    metadata: int | None,
) -> tuple[RunConfig, list[Seed]]:
    """``run --update``: the new seeds among ``seeds``, and the run's settings grown by what
    they add (``instructions`` and ``metadata``; default: the run's own per seed). No new
    seed (the same update run again): the settings as they are, nothing to add."""
    async with open_store(spec, out_dir, fenced=False) as store:
        graph = build_prepare_graph(retry_policy(1)).compile(checkpointer=store.saver)
        snapshot = await graph.aget_state(thread_config(PREPARE_THREAD))
    if not snapshot.values:
        raise ConfigError(f"{out_dir} holds no run to update: start it with codeclm run")
    state = PrepareState.model_validate(snapshot.values)
    if state.user_metadata or not method_spec(state.method).makes_metadata:
        raise ConfigError(
            "--update adds seeds to a run whose pool comes from seeds (this one's comes from "
            + ("--user-metadata)" if state.user_metadata else f"the method {state.method})")
        )
    fresh = new_seeds(state, seeds)
    if not fresh:
        return config, []
    per_seed = len(fresh) / max(len(state.seeds), 1)
    added = instructions or max(1, round(state.budget * per_seed))
    entries = metadata or max(1, round(len(state.pool) * per_seed))
    grown = {"instructions": state.budget + added, "metadata": len(state.pool) + entries}
    return config.model_copy(update=grown), fresh


REVIEW_POLL_SECONDS = 1.0
"""How often a run waiting for the pool's review looks for the approval."""


async def wait_for_approval(reviews: Reviews, stats: RunStats) -> PoolReview:
    """The reviewer's approved decision on the pool, when it comes (stored by ``codeclm
    view`` or ``codeclm review``, from any process); the run waits until then."""
    stats.enter("waiting_for_review")
    log.warning(
        "%s: codeclm view %s (or codeclm review %s --approve-all)",
        stats.activity,
        reviews.where,
        reviews.where,
    )
    while (decision := await reviews.approved_pool()) is None:
        await asyncio.sleep(REVIEW_POLL_SECONDS)
    stats.enter("preparing")
    log.info("the metadata pool was approved; %s", stats.activity)
    return decision

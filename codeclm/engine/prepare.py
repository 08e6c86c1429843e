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

from langgraph.types import Command

from codeclm.config import ConfigError
from codeclm.context import PipelineContext
from codeclm.engine.threads import RunStats, stream_thread
from codeclm.graph import Graph, thread_config
from codeclm.handle import RunHandle
from codeclm.methods import method_spec
from codeclm.prepare.passes import Ready, needs_another_pass, new_pass, new_seeds, ready
from codeclm.prepare.watch import RoundWatch, prepare_events
from codeclm.state import PREPARE_THREAD, MetadataEntry, PoolReview, PrepareState, Seed, Update
from codeclm.store.reviews import Reviews

log = logging.getLogger("codeclm")


def check_same_seeds(state: PrepareState, seeds: list[Seed]) -> None:
    """The seeds given again must be the ones the run began with: the run's pool and
    pairs come from those, and would not follow an edited file (refused, naming the first
    changed seed; ``--update`` adds seeds, a new ``--out`` starts afresh)."""
    added = {ident for update in state.updates for ident in update.seed_ids}
    began = [seed for seed in state.seeds if seed.id not in added]
    if not seeds or not began:
        return
    for number, (now, was) in enumerate(zip(seeds, began, strict=False), start=1):
        if (now.id, now.text) != (was.id, was.text):
            raise ConfigError(
                f"the seeds differ from those the run began with: seed {number} ({was.id}) "
                f"was {_quoted(was.text)}, is now {_quoted(now.text)} ({now.id}); a run keeps "
                "its seeds: run --update adds seeds, a new --out starts afresh"
            )
    if len(seeds) != len(began):
        raise ConfigError(
            f"the seeds differ from those the run began with: {len(seeds)} now, "
            f"{len(began)} then; a run keeps its seeds: run --update adds seeds, a new --out "
            "starts afresh"
        )


def _quoted(text: str) -> str:
    short = " ".join(text.split())
    return repr(short if len(short) <= 60 else short[:57] + "...")


async def prepare_stream(
    graph: Graph,
    context: PipelineContext,
    seeds: list[Seed],
    user_metadata: list[MetadataEntry],
    stats: RunStats,
    reviews: Reviews,
    update: list[Seed] | None = None,
    check_seeds: bool = True,
) -> AsyncIterator[tuple[PrepareState, Ready]]:
    """Encode, augment, write rubrics, decode: the thread's latest state as the pass
    advances, with the instructions ready to run (some ahead of their round's end).

    The last state yielded is the pass's end (``done``), or the state a finished thread
    was left in when no new pass is needed. A pass that stops for the pool's review
    (``--review metadata``) waits here for the approval in ``reviews``, then goes on.
    ``update``: ``run --update``'s seeds; those the run lacks start a new pass that adds
    them (and ``cfg``'s grown budget and pool). ``check_seeds``: the seeds given must be the
    run's own (a shared run's workers take theirs from the store, which ``--update`` grows).
    """
    cfg = context.config
    config = thread_config(PREPARE_THREAD, max_concurrency=cfg.workers)
    snapshot = await graph.aget_state(config)
    graph_input: object = None
    if not snapshot.values:
        graph_input = PrepareState(
            method=cfg.method, budget=cfg.instructions, seeds=seeds, user_metadata=user_metadata
        )
    else:
        state = PrepareState.model_validate(snapshot.values)
        if update is None and check_seeds:
            check_same_seeds(state, seeds)
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
                **new_pass(state, cfg),
                "seeds": state.seeds + fresh,
                "updates": [*state.updates, added],
            }
        # Judge by our own flag, not ``snapshot.next``: when every task of a step had
        # finished but the step's checkpoint was not yet written, ``next`` is empty.
        elif state.done:
            if not needs_another_pass(state, cfg):
                return
            graph_input = new_pass(state, cfg)
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
                    for prepare_event in prepare_events(node, writes):
                        watch.see(prepare_event)
                yield watch.state, watch.fresh()
        if not (await graph.aget_state(config)).interrupts:
            return
        # review_pool is waiting for a person: resume with their decision once they approve
        decision = await wait_for_approval(reviews, stats)
        graph_input = Command(resume=decision.model_dump(mode="json"))


async def plan_update(
    handle: RunHandle, seeds: list[Seed], instructions: int | None, metadata: int | None
) -> list[Seed]:
    """``run --update``: the new seeds among ``seeds``; the handle's settings grow by what
    they add (``instructions`` and ``metadata``; default: the run's own per seed). No new
    seed (the same update run again): the settings as they are, nothing to add."""
    async with handle.read() as view:
        state = await view.prepared()
    if state is None:
        raise ConfigError(f"{handle.where} holds no run to update: start it with codeclm run")
    if state.user_metadata or not method_spec(state.method).makes_metadata:
        raise ConfigError(
            "--update adds seeds to a run whose pool comes from seeds (this one's comes from "
            + ("--user-metadata)" if state.user_metadata else f"the method {state.method})")
        )
    fresh = new_seeds(state, seeds)
    if not fresh:
        return []
    per_seed = len(fresh) / max(len(state.seeds), 1)
    added = instructions or max(1, round(state.budget * per_seed))
    entries = metadata or max(1, round(len(state.pool) * per_seed))
    grown = {"instructions": state.budget + added, "metadata": len(state.pool) + entries}
    handle.config = handle.config.model_copy(update=grown)
    return fresh


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

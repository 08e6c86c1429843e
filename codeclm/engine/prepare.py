"""The 'prepare' thread, one pass at a time, as a stream of instructions ready to run.

Every run takes the thread up: an interrupted pass is resumed; a finished one starts a new
pass when something is left to do (``needs_another_pass``). While the pass runs, each
instruction whose entry is ready (decoded, repeats removed, Self-Rubrics written) is handed
on at once, so its thread starts while other entries are still being decoded.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from langgraph.types import Overwrite

from codeclm.config import RunConfig
from codeclm.context import PipelineContext
from codeclm.engine.threads import Graph, RunStats, stream_thread
from codeclm.graph import thread_config
from codeclm.nodes.planning import ready_instructions
from codeclm.state import BasicInstruction, InstructionState, MetadataEntry, PrepareState, Seed

PREPARE_THREAD = "prepare"


def initial_state(entry: MetadataEntry | None, instruction: BasicInstruction) -> InstructionState:
    """A thread's first state; the baselines have no metadata entry (``entry`` is None)."""
    return InstructionState(
        id=instruction.id,
        metadata_id=instruction.metadata_id,
        use_case=entry.use_case if entry else "",
        skills=entry.skills if entry else [],
        seed_ids=entry.seed_ids if entry else instruction.seed_ids,
        candidate_actions=entry.actions if entry else [],
        basic_instruction=instruction.instruction,
        instruction=instruction.instruction,
    )


def needs_another_pass(state: PrepareState, config: RunConfig) -> bool:
    """A finished pass left work a new one can do: failures to retry, a shortfall to ask
    again for, or a budget or pool the user grew."""
    return (
        any(not f.permanent for f in state.failures)
        or len(state.instructions) < config.instructions
        or (bool(state.pool) and len(state.pool) < config.metadata)
    )


def ready(state: PrepareState) -> list[tuple[MetadataEntry | None, BasicInstruction]]:
    """The instructions of ``state`` whose threads can start, in the order of the outputs."""
    if state.done:
        entries = {entry.id: entry for entry in state.pool}
        return [(entries.get(item.metadata_id), item) for item in state.instructions]
    baseline = state.method in ("self-instruct", "evol-instruct")
    accepted = sorted(state.decoded, key=lambda i: i.id) if baseline else state.accepted
    return ready_instructions(state.method, state.pool, accepted, state.rubric_sets)


async def prepare_states(
    graph: Graph,
    context: PipelineContext,
    seeds: list[Seed],
    user_metadata: list[MetadataEntry],
    stats: RunStats,
) -> AsyncIterator[PrepareState]:
    """Encode, augment, write rubrics, decode: the thread's states as the pass advances.

    The last one yielded is the pass's end (``done``), or the state a finished thread was
    left in when no new pass is needed.
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
        yield state
        # Judge by our own flag, not ``snapshot.next``: when every task of a step had
        # finished but the step's checkpoint was not yet written, ``next`` is empty.
        if state.done:
            if not needs_another_pass(state, cfg):
                return
            graph_input = {
                "done": False,
                "budget": cfg.instructions,
                "passes": state.passes + 1,
                "rounds_this_pass": 0,
                "exhausted": [],
                "failures": Overwrite([f for f in state.failures if f.permanent]),
            }
    async for values in stream_thread(graph, graph_input, config, context, stats):
        yield PrepareState.model_validate(values)

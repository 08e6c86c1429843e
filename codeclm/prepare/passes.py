"""What one pass of the 'prepare' thread hands on: the instructions ready to run, each
thread's first state, whether a finished pass leaves work for a new one, and the input that
starts it (a re-run, a grown budget, or ``run --update``'s new seeds).
"""

from __future__ import annotations

from typing import Any

from langgraph.types import Overwrite

from codeclm.config import RunConfig
from codeclm.methods import method_spec
from codeclm.prepare.planning import ready_instructions
from codeclm.state import BasicInstruction, InstructionState, MetadataEntry, PrepareState, Seed

Ready = list[tuple[MetadataEntry | None, BasicInstruction]]
"""Instructions whose threads can start, each with its metadata entry (None: a baseline)."""


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


def ready(state: PrepareState) -> Ready:
    """The instructions of ``state`` whose threads can start, in the order of the outputs:
    accepted ones whose entry has its rubrics (derived, never stored: the state stays small)."""
    baseline = not method_spec(state.method).makes_metadata
    accepted = sorted(state.decoded, key=lambda i: i.id) if baseline else state.accepted_items()
    return ready_instructions(state.method, state.pool, accepted, state.rubric_sets)


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


def new_pass(state: PrepareState, cfg: RunConfig) -> dict[str, Any]:
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

"""Read a run's checkpoints: the status of every thread, and one thread's history node by node.

Nothing here calls a model: the run is opened to read (``RunHandle.read``), its graphs
compiled with the checkpointer only, which is all ``aget_state`` and
``aget_state_history`` need. The results are typed (``ThreadListing``, ``ThreadDetail``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from itertools import pairwise
from typing import Any

from pydantic import BaseModel, Field

from codeclm.config import ConfigError
from codeclm.engine.threads import FINISHED
from codeclm.graph import Graph, declared_steps, started_values, thread_config
from codeclm.handle import RunHandle
from codeclm.prepare.passes import ready
from codeclm.state import InstructionState, PrepareState
from codeclm.steps import Step


def thread_status(values: dict[str, Any]) -> str:
    """pending (never started), running (partial), or its final status."""
    if not values:
        return "pending"
    status = str(values.get("status", "pending"))
    return status if status in FINISHED else "running"


def _scores(values: dict[str, Any]) -> dict[str, Any] | None:
    scores = values.get("scores")
    return scores.model_dump(mode="json") if scores is not None else None


class ThreadSummary(BaseModel):
    """One instruction thread in ``codeclm inspect``'s list."""

    id: str
    status: str
    iteration: int | None = None
    gap: float | None = None
    use_case: str | None = None
    reason: str | None = None


class ThreadListing(BaseModel):
    """``codeclm inspect DIR``: the 'prepare' pass, every instruction thread, the counts."""

    prepare: str
    metadata_pool: int = 0
    budget: int = 0
    missing: int = 0
    missing_why: str | None = None
    counts: dict[str, int] = Field(default_factory=dict)
    threads: list[ThreadSummary] = Field(default_factory=list)


class ThreadStep(BaseModel):
    """One super-step of a thread: the nodes that ran and what they left."""

    checkpoint: str
    nodes: list[str]
    iteration: int | None = None
    status: str | None = None
    scores: dict[str, Any] | None = None
    action: str | None = None
    instruction: str | None = None
    """After improve: the user turn it rewrote, as rewritten."""
    turn: int | None = Field(None, exclude_if=lambda value: value is None)
    """After improve in a conversation: the turn it rewrote."""
    reason: str | None = None


class ThreadDetail(BaseModel):
    """``codeclm inspect DIR --id ID``: a thread's current state and its history."""

    id: str
    status: str
    next: list[str]
    state: dict[str, Any] | None
    history: list[ThreadStep]

    def as_json(self) -> dict[str, Any]:
        """As ``--json`` prints it: each step with only the fields it set."""
        steps = [step.model_dump(exclude_unset=True) for step in self.history]
        return {**self.model_dump(), "history": steps}


async def list_threads(handle: RunHandle) -> ThreadListing:
    """Every instruction thread's status, iteration and last gap, and the counts."""
    async with handle.read() as view:
        snapshot = await view.prepare_snapshot()
        prepared = PrepareState.model_validate(snapshot.values) if snapshot.values else None
        threads = []
        for _, instruction in ready(prepared) if prepared else []:
            values = await view.thread_values(instruction.id)
            scores = _scores(values)
            threads.append(
                ThreadSummary(
                    id=instruction.id,
                    status=thread_status(values),
                    iteration=values.get("iteration"),
                    gap=scores["gap"] if scores else None,
                    use_case=values.get("use_case"),
                    reason=values.get("reason"),
                )
            )
    if snapshot.interrupts:
        phase = "waiting for review of the metadata pool (codeclm review / codeclm view)"
    else:
        phase = "done" if prepared and prepared.done else ("running" if prepared else "pending")
    budget = prepared.budget if prepared else 0
    missing = max(0, budget - len(threads)) if prepared and prepared.done else 0
    why = None
    if missing and prepared:
        why = prepared.shortfall or "; ".join(
            f"{f.step} {f.subject}: {f.reason}" for f in prepared.failures if not f.permanent
        )
    return ThreadListing(
        prepare=phase,
        metadata_pool=len(prepared.pool) if prepared else 0,
        budget=budget,
        missing=missing,
        missing_why=why,
        counts=dict(Counter(t.status for t in threads)),
        threads=threads,
    )


def _step_record(
    node_names: list[str], values: dict[str, Any], checkpoint_id: str, steps: Mapping[str, Step]
) -> ThreadStep:
    actions = values.get("actions_applied") or []
    shows = {field for name in node_names if name in steps for field in steps[name].shows}
    step = ThreadStep(
        checkpoint=checkpoint_id,
        nodes=node_names,
        iteration=values.get("iteration"),
        status=values.get("status"),
    )
    if "scores" in shows:
        step.scores = _scores(values)
    if "action" in shows and actions:
        step.action = actions[-1]
        step.instruction = values.get("instruction")
        turns = values.get("improved_turns") or []
        if turns and len(turns) == len(actions):  # a conversation: the turn it rewrote
            step.turn = turns[-1]
            if step.turn > 1:
                step.instruction = (values.get("follow_ups") or [])[step.turn - 2]
    if any(name.startswith("__error_handler__") for name in node_names):
        step.reason = values.get("reason")
    return step


def history_steps(snapshots: list[Any], graph: Graph) -> list[ThreadStep]:
    """A thread's steps, oldest first, from its snapshots (oldest first) in ``graph``: the
    nodes that ran and what they left, as each step declares (``Step.shows``): scores after
    a judge, action and instruction after improve."""
    steps = declared_steps(graph.builder)
    found = []
    for before, after in pairwise(snapshots):
        names = [task.name for task in before.tasks if task.name != "__start__"]
        if names:
            checkpoint = str(after.config["configurable"]["checkpoint_id"])
            found.append(_step_record(names, after.values, checkpoint, steps))
    return found


async def thread_history(handle: RunHandle, thread_id: str) -> ThreadDetail:
    """One instruction's current state and its history, oldest step first."""
    async with handle.read() as view:
        graph = view.instructions
        snapshots = [s async for s in graph.aget_state_history(thread_config(thread_id))]
    if not snapshots:
        raise ConfigError(f"no thread {thread_id!r} in {handle.where} (see: codeclm inspect)")
    snapshots.reverse()
    current = snapshots[-1]
    values = started_values(current.values)
    state = InstructionState.model_validate(values).model_dump(mode="json") if values else None
    return ThreadDetail(
        id=thread_id,
        status=thread_status(values),
        next=list(current.next),
        state=state,
        history=history_steps(snapshots, graph),
    )

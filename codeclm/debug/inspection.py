"""Read a run's checkpoints: the status of every thread, and one thread's history node by node.

Nothing here calls a model: the graphs are compiled with the checkpointer only, which is
all ``aget_state`` and ``aget_state_history`` need.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from itertools import pairwise
from pathlib import Path
from typing import Any

from langgraph.graph.state import CompiledStateGraph

from codeclm.config import ConfigError
from codeclm.engine.prepare import ready
from codeclm.engine.threads import FINISHED
from codeclm.graph import (
    PREPARE_THREAD,
    build_instruction_graph,
    build_prepare_graph,
    started_values,
    thread_config,
)
from codeclm.graph import retry_policy as _retry
from codeclm.outputs import CHECKPOINTS
from codeclm.state import InstructionState, PrepareState
from codeclm.store import Store, StoreSpec, open_store

Graph = CompiledStateGraph[Any, Any, Any, Any]


def thread_status(values: dict[str, Any]) -> str:
    """pending (never started), running (partial), or its final status."""
    if not values:
        return "pending"
    status = str(values.get("status", "pending"))
    return status if status in FINISHED else "running"


def _scores(values: dict[str, Any]) -> dict[str, Any] | None:
    scores = values.get("scores")
    return scores.model_dump(mode="json") if scores is not None else None


@asynccontextmanager
async def open_recorded(
    out_dir: Path | None, spec: StoreSpec | None = None
) -> AsyncIterator[tuple[Store, str]]:
    """A run's store, to read (no lease is taken), and its method's name."""
    spec = spec or StoreSpec()
    if not spec.shared and (out_dir is None or not (out_dir / CHECKPOINTS).is_file()):
        raise ConfigError(f"{out_dir} holds no run (no {CHECKPOINTS})")
    async with open_store(spec, out_dir, fenced=False) as store:
        record = await store.read_record()
        if spec.shared and record is None:
            raise ConfigError(f"no run {spec.run!r} in {spec.describe()}")
        yield store, record.method.name if record else "codeclm"


async def list_threads(out_dir: Path | None, spec: StoreSpec | None = None) -> dict[str, Any]:
    """Every instruction thread's status, iteration and last gap, and the counts."""
    async with open_recorded(out_dir, spec) as (store, method):
        prepare: Graph = build_prepare_graph(_retry(1)).compile(checkpointer=store.saver)
        graph: Graph = build_instruction_graph(_retry(1), method).compile(checkpointer=store.saver)
        snapshot = await prepare.aget_state(thread_config(PREPARE_THREAD))
        prepared = PrepareState.model_validate(snapshot.values) if snapshot.values else None
        threads = []
        for _, instruction in ready(prepared) if prepared else []:
            values = started_values((await graph.aget_state(thread_config(instruction.id))).values)
            scores = _scores(values)
            threads.append(
                {
                    "id": instruction.id,
                    "status": thread_status(values),
                    "iteration": values.get("iteration"),
                    "gap": scores["gap"] if scores else None,
                    "use_case": values.get("use_case"),
                    "reason": values.get("reason"),
                }
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
    return {
        "prepare": phase,
        "metadata_pool": len(prepared.pool) if prepared else 0,
        "budget": budget,
        "missing": missing,
        "missing_why": why,
        "counts": dict(Counter(t["status"] for t in threads)),
        "threads": threads,
    }


def _step_record(
    node_names: list[str], values: dict[str, Any], checkpoint_id: str
) -> dict[str, Any]:
    actions = values.get("actions_applied") or []
    record: dict[str, Any] = {
        "checkpoint": checkpoint_id,
        "nodes": node_names,
        "iteration": values.get("iteration"),
        "status": values.get("status"),
    }
    if "judge" in node_names:
        record["scores"] = _scores(values)
    if "improve" in node_names and actions:
        record["action"] = actions[-1]
        record["instruction"] = values.get("instruction")
    if any(name.startswith("__error_handler__") for name in node_names):
        record["reason"] = values.get("reason")
    return record


def history_steps(snapshots: list[Any]) -> list[dict[str, Any]]:
    """A thread's steps, oldest first, from its snapshots (oldest first): the nodes that
    ran and what they left: scores after a judge, action and instruction after improve."""
    steps = []
    for before, after in pairwise(snapshots):
        names = [task.name for task in before.tasks if task.name != "__start__"]
        if names:
            checkpoint = str(after.config["configurable"]["checkpoint_id"])
            steps.append(_step_record(names, after.values, checkpoint))
    return steps


async def thread_history(
    out_dir: Path | None, thread_id: str, spec: StoreSpec | None = None
) -> dict[str, Any]:
    """One instruction's current state and its history, oldest step first."""
    async with open_recorded(out_dir, spec) as (store, method):
        graph: Graph = build_instruction_graph(_retry(1), method).compile(checkpointer=store.saver)
        snapshots = [s async for s in graph.aget_state_history(thread_config(thread_id))]
    if not snapshots:
        where = spec.describe() if spec and spec.shared else out_dir
        raise ConfigError(f"no thread {thread_id!r} in {where} (see: codeclm inspect)")
    snapshots.reverse()
    steps = history_steps(snapshots)
    current = snapshots[-1]
    values = started_values(current.values)
    state = InstructionState.model_validate(values).model_dump(mode="json") if values else None
    return {
        "id": thread_id,
        "status": thread_status(values),
        "next": list(current.next),
        "state": state,
        "history": steps,
    }

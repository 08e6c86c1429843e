"""Read a run's checkpoints: the status of every thread, and one thread's history node by node.

Nothing here calls a model: the graphs are compiled with the checkpointer only, which is
all ``aget_state`` and ``aget_state_history`` need.
"""

from __future__ import annotations

from collections import Counter
from itertools import pairwise
from pathlib import Path
from typing import Any

from langgraph.graph.state import CompiledStateGraph

from codeclm.config import ConfigError
from codeclm.engine.prepare import PREPARE_THREAD, ready
from codeclm.engine.threads import FINISHED
from codeclm.graph import (
    build_instruction_graph,
    build_prepare_graph,
    open_checkpointer,
    thread_config,
)
from codeclm.graph import retry_policy as _retry
from codeclm.outputs import CHECKPOINTS, RUN_JSON
from codeclm.records import RunRecord
from codeclm.state import InstructionState, PrepareState

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


def _checkpoints_path(out_dir: Path) -> Path:
    path = out_dir / CHECKPOINTS
    if not path.is_file():
        raise ConfigError(f"{out_dir} holds no run (no {CHECKPOINTS})")
    return path


def _method(out_dir: Path) -> str:
    """The run's method (its threads' graph), from run.json."""
    path = out_dir / RUN_JSON
    return RunRecord.read(path).method.name if path.is_file() else "codeclm"


async def list_threads(out_dir: Path) -> dict[str, Any]:
    """Every instruction thread's status, iteration and last gap, and the counts."""
    async with open_checkpointer(_checkpoints_path(out_dir)) as saver:
        prepare: Graph = build_prepare_graph(_retry(1)).compile(checkpointer=saver)
        graph: Graph = build_instruction_graph(_retry(1), _method(out_dir)).compile(
            checkpointer=saver
        )
        snapshot = await prepare.aget_state(thread_config(PREPARE_THREAD))
        prepared = PrepareState.model_validate(snapshot.values) if snapshot.values else None
        threads = []
        for _, instruction in ready(prepared) if prepared else []:
            values = (await graph.aget_state(thread_config(instruction.id))).values
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
    return {
        "prepare": "done" if prepared and prepared.done else ("running" if prepared else "pending"),
        "metadata_pool": len(prepared.pool) if prepared else 0,
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


async def thread_history(out_dir: Path, thread_id: str) -> dict[str, Any]:
    """One instruction's current state and its history, oldest step first."""
    async with open_checkpointer(_checkpoints_path(out_dir)) as saver:
        graph: Graph = build_instruction_graph(_retry(1), _method(out_dir)).compile(
            checkpointer=saver
        )
        snapshots = [s async for s in graph.aget_state_history(thread_config(thread_id))]
    if not snapshots:
        raise ConfigError(f"no thread {thread_id!r} in {out_dir} (see: codeclm inspect {out_dir})")
    snapshots.reverse()
    steps = []
    for before, after in pairwise(snapshots):
        names = [task.name for task in before.tasks if task.name != "__start__"]
        if names:
            steps.append(
                _step_record(
                    names, after.values, str(after.config["configurable"]["checkpoint_id"])
                )
            )
    current = snapshots[-1]
    state = InstructionState.model_validate(current.values)
    return {
        "id": thread_id,
        "status": thread_status(current.values),
        "next": list(current.next),
        "state": state.model_dump(mode="json"),
        "history": steps,
    }

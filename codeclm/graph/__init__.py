"""Graph wiring, and what every checkpointer of the graphs shares: thread configs, the
serializer of the state models and the retry policy (the savers live in ``codeclm.store``)."""

from __future__ import annotations

from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import RetryPolicy

from codeclm.graph.instruction import build_instruction_graph
from codeclm.graph.steps import (
    all_steps,
    declared_steps,
    instruction_steps,
    method_steps,
    restart_table,
    thread_steps,
)
from codeclm.llm.reply import is_transient
from codeclm.prepare.graph import build_prepare_graph
from codeclm.state import PREPARE_THREAD, serializer

__all__ = [
    "PREPARE_THREAD",
    "Graph",
    "all_steps",
    "build_instruction_graph",
    "build_prepare_graph",
    "declared_steps",
    "instruction_steps",
    "method_steps",
    "restart_table",
    "retry_policy",
    "serializer",
    "started_values",
    "thread_config",
    "thread_steps",
]

Graph = CompiledStateGraph[Any, Any, Any, Any]
"""A compiled graph (its state, context, input and output types are the state models)."""


def started_values(values: dict[str, Any]) -> dict[str, Any]:
    """A thread's values once its first step is checkpointed; {} before. A thread stopped
    between its input checkpoint and its first step's holds only its reducers' defaults
    (``usage``), no ``id``: like a thread never started, it is not a state yet."""
    return values if values.get("id") else {}


def thread_config(
    thread_id: str, checkpoint_id: str | None = None, max_concurrency: int | None = None
) -> RunnableConfig:
    """The config naming a thread, or one checkpoint of it (to fork or replay from there)."""
    configurable = {"thread_id": thread_id}
    if checkpoint_id:  # the SQLite saver needs the namespace with an explicit checkpoint
        configurable.update(checkpoint_id=checkpoint_id, checkpoint_ns="")
    config: RunnableConfig = {"configurable": configurable}
    if max_concurrency is not None:
        config["max_concurrency"] = max_concurrency
    return config


def retry_policy(attempts: int, backoff: float = 1.0) -> RetryPolicy:
    """The one retry layer: transient HTTP failures and unparseable replies, with backoff."""
    return RetryPolicy(
        max_attempts=attempts, initial_interval=backoff, max_interval=30.0, retry_on=is_transient
    )

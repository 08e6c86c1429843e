"""Running checkpointed threads: one to its end, or many through a fixed pool of workers.

Used by a run's instruction threads and by ``codeclm eval``'s item threads alike. A thread
that finished in an earlier run is counted and skipped; one that failed is reset to run its
failed node again (``durability="sync"``: after a hard kill only the node in flight re-runs).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from langchain_core.runnables import RunnableConfig
from langgraph.graph.state import CompiledStateGraph
from pydantic import BaseModel

from codeclm.graph import thread_config
from codeclm.state import TokenUsage, add_usage

FINISHED = ("kept", "dropped", "failed")
"""An instruction thread's final statuses."""

Graph = CompiledStateGraph[Any, Any, Any, Any]
Job = tuple[str, Callable[[], BaseModel]]
"""A thread id and how to build its first state (called only for a thread never started)."""


@dataclass
class RunStats:
    """Live counters, read by a progress display or an ``on_progress`` callback."""

    total: int = 0
    kept: int = 0
    dropped: int = 0
    failed: int = 0
    in_flight: int = 0
    phase: str = "starting"
    usage: dict[str, TokenUsage] = field(default_factory=dict)
    listener: Callable[[RunStats], None] | None = None
    """Told at once of a new phase (a progress display polls the counters in between)."""

    def enter(self, phase: str) -> None:
        """A new phase of the run begins."""
        self.phase = phase
        if self.listener is not None:
            self.listener(self)

    @property
    def finished(self) -> int:
        return self.kept + self.dropped + self.failed

    def count(self, values: dict[str, Any]) -> None:
        """A thread ended (now, or in an earlier run) with these final values."""
        status = values.get("status")
        if status in FINISHED:
            setattr(self, status, getattr(self, status) + 1)

    def add_usage(self, usage: dict[str, TokenUsage]) -> None:
        self.usage = add_usage(self.usage, usage)


async def stream_thread(
    graph: Graph, graph_input: Any, config: RunnableConfig, context: Any, stats: RunStats
) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """Run a thread: ``("updates", {node: writes})`` as each task finishes, then
    ``("values", state)`` after each step; token usage goes to ``stats`` as nodes finish."""
    async for mode, data in graph.astream(
        graph_input,
        config,
        context=context,
        stream_mode=["updates", "values"],
        durability="sync",
    ):
        event = cast(dict[str, Any], data)
        if mode == "updates":
            for update in event.values():
                if isinstance(update, dict) and update.get("usage"):
                    stats.add_usage(update["usage"])
        yield mode, event


async def finish_thread(
    graph: Graph, graph_input: Any, config: RunnableConfig, context: Any, stats: RunStats
) -> dict[str, Any]:
    """Run a thread to its end; its final values (no second read of the checkpoint)."""
    final: dict[str, Any] = {}
    async for mode, event in stream_thread(graph, graph_input, config, context, stats):
        if mode == "values":
            final = event
    return final


async def reset_failed(
    graph: Graph,
    config: RunnableConfig,
    failed_node: str | None,
    restart_from: Mapping[str, tuple[str, str]],
) -> None:
    """Make a failed thread's next step its failed node again, as if that node never ran."""
    first = next(iter(restart_from.values()))
    as_node, status = restart_from.get(failed_node or "", first)
    reset = {"status": status, "reason": None, "failed_node": None}
    await graph.aupdate_state(config, reset, as_node=as_node)


async def run_threads(
    graph: Graph,
    context: Any,
    jobs: Iterable[Job] | asyncio.Queue[Job | None],
    stats: RunStats,
    restart_from: Mapping[str, tuple[str, str]],
    finished: tuple[str, ...],
    workers: int,
) -> None:
    """Each job's thread to its end, ``workers`` of them taking jobs in turn.

    ``jobs`` is a list, or a queue fed while the workers run (``None`` ends it: put one per
    worker). A fixed set of workers, not one task per job: memory does not grow with the run.
    """
    queue = iter(jobs) if not isinstance(jobs, asyncio.Queue) else None

    async def next_job() -> Job | None:
        if queue is not None:
            return next(queue, None)
        return await cast(asyncio.Queue[Job | None], jobs).get()

    async def worker() -> None:
        while (job := await next_job()) is not None:
            await one(*job)

    async def one(thread_id: str, start_state: Callable[[], BaseModel]) -> None:
        config = thread_config(thread_id)
        snapshot = await graph.aget_state(config)
        status = snapshot.values.get("status")
        if status == "failed":  # retried: a failure may be gone by now (dropped is final)
            await reset_failed(graph, config, snapshot.values.get("failed_node"), restart_from)
        # Finished means our stored status says so. ``snapshot.next`` is empty too when a
        # kill fell after a step's tasks wrote their results but before its checkpoint.
        elif status in finished:
            stats.count(snapshot.values)  # finished in an earlier run
            return
        start = None if snapshot.values else start_state()
        stats.in_flight += 1
        try:
            final = await finish_thread(graph, start, config, context, stats)
        finally:
            stats.in_flight -= 1
        stats.count(final)

    await asyncio.gather(*(worker() for _ in range(workers)))

"""Running checkpointed threads: one to its end, or many through a fixed pool of workers.

Used by a run's instruction threads and by ``codeclm eval``'s item threads alike. A thread
that finished in an earlier run is counted and skipped; one that failed is reset to run its
failed node again (``durability="sync"``: after a hard kill only the node in flight re-runs,
its finished calls answered from the response cache). The threads come from the store's
board: an in-process queue, or leases in PostgreSQL shared by many worker processes.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from langchain_core.runnables import RunnableConfig
from pydantic import BaseModel

from codeclm.cost.meter import Meter
from codeclm.graph import Graph, thread_config
from codeclm.llm.batch import BatchCounts
from codeclm.records import EndpointStats
from codeclm.state import TokenUsage, add_usage
from codeclm.store import Board, LeaseLost, StoreUnavailable

log = logging.getLogger("codeclm")

FINISHED = ("kept", "dropped", "failed")
"""An instruction thread's final statuses."""


Phase = Literal[
    "starting",
    "preparing",
    "running",
    "waiting_for_review",
    "waiting_for_run",
    "working",
    "evaluating",
]
"""Where a run stands, as a short name a script can test (``RunStats.phase``)."""

ACTIVITY: dict[str, str] = {
    "starting": "starting",
    "preparing": "preparing metadata, rubrics and instructions",
    "running": "answering, judging and improving instructions",
    "waiting_for_review": "waiting for review of the metadata pool",
    "waiting_for_run": "waiting for the run to start",
    "working": "working on the run's threads",
    "evaluating": "evaluating",
}
"""Each phase in words, as the progress display shows it (``RunStats.activity``)."""


@dataclass
class RunStats:
    """Live counters, read by a progress display or an ``on_progress`` callback."""

    total: int = 0
    kept: int = 0
    dropped: int = 0
    failed: int = 0
    in_flight: int = 0
    phase: Phase = "starting"
    usage: dict[str, TokenUsage] = field(default_factory=dict)
    meter: Meter | None = None
    """The run's cost meter (dollars paid per role, and the caps), once it is open."""
    batches: list[BatchCounts] = field(default_factory=list)
    """``--batch``: each endpoint's batches submitted, in progress and completed."""
    servers: dict[str, EndpointStats] = field(default_factory=dict)
    """Each server's adaptive limit of requests in flight, live (``llm.admission``)."""
    listener: Callable[[RunStats], None] | None = None
    """Told at once of a new phase (a progress display polls the counters in between)."""

    def enter(self, phase: Phase) -> None:
        """A new phase of the run begins."""
        self.phase = phase
        if self.listener is not None:
            self.listener(self)

    @property
    def activity(self) -> str:
        """The phase in words."""
        return ACTIVITY[self.phase]

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
    # A node it does not know (a record of before): where a thread first goes.
    as_node, status = restart_from.get(failed_node or "", next(iter(restart_from.values())))
    reset = {"status": status, "reason": None, "failed_node": None}
    await graph.aupdate_state(config, reset, as_node=as_node)


#: How an earlier version dropped an instruction whose target answer was cut: such a pair
#: is judged now (the target's answer as it stands), so a re-run answers it again.
_CUT_TARGET_DROP = re.compile(r"^target(?: \(turn \d+\))? answer cut at \d+ tokens")


def dropped_for_a_cut_target(values: dict[str, Any]) -> bool:
    """A thread an earlier version dropped for its target's cut answer."""
    return bool(_CUT_TARGET_DROP.match(str(values.get("reason") or "")))


async def run_threads(
    graph: Graph,
    context: Any,
    board: Board,
    stats: RunStats,
    restart_from: Mapping[str, tuple[str, str]],
    finished: tuple[str, ...],
    workers: int,
) -> None:
    """Each thread the board hands out, to its end; ``workers`` of them at a time.

    A fixed set of workers, not one task per thread: memory does not grow with the run.
    A thread whose lease ran out (another worker has it now) is left alone.
    """

    async def worker() -> None:
        while (job := await board.claim()) is not None:
            thread_id, start_state = job
            try:
                outcome = await one(thread_id, start_state)
            except LeaseLost as exc:  # another worker has it now
                log.warning("%s", exc)
                continue
            except StoreUnavailable as exc:  # let it go: it is taken up again
                log.warning("thread %s: %s", thread_id, exc)
                await board.release(thread_id)
                continue
            await board.finish(thread_id, outcome)

    async def one(thread_id: str, start_state: Callable[[], BaseModel | dict[str, Any]]) -> str:
        config = thread_config(thread_id)
        snapshot = await graph.aget_state(config)
        status = snapshot.values.get("status")
        if status == "failed":  # retried: a failure may be gone by now (dropped is final)
            await reset_failed(graph, config, snapshot.values.get("failed_node"), restart_from)
        elif status == "dropped" and dropped_for_a_cut_target(snapshot.values):
            await reset_failed(graph, config, "answer", restart_from)
        # Finished means our stored status says so. ``snapshot.next`` is empty too when a
        # kill fell after a step's tasks wrote their results but before its checkpoint.
        elif status in finished:
            stats.count(snapshot.values)  # finished in an earlier run
            return str(status)
        start = None if snapshot.values else start_state()
        stats.in_flight += 1
        try:
            final = await finish_thread(graph, start, config, context, stats)
        finally:
            stats.in_flight -= 1
        stats.count(final)
        return str(final.get("status"))

    await gather_or_cancel(*(worker() for _ in range(workers)))


async def gather_or_cancel(*work: Coroutine[Any, Any, Any]) -> None:
    """Run ``work`` together; when one raises (or all are cancelled), cancel the rest and
    wait for them, so nothing runs on after the store it writes to is closed."""
    tasks = [asyncio.ensure_future(w) for w in work]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise

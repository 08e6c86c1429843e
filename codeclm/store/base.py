"""What every store offers the engine (see ``codeclm.store``)."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver

from codeclm.cost.ledger import Ledger
from codeclm.llm.batch_book import BatchBook
from codeclm.llm.cache import ResponseCache
from codeclm.records import RunRecord, StoredInputs
from codeclm.store.board import Board


class Store(ABC):
    """A run's checkpoints (``saver``), response cache, record and work board."""

    saver: StoreSaver
    cache: ResponseCache
    ledger: Ledger
    """Every paid request (``codeclm.cost.ledger``): what the run's cost is read from."""
    batch_book: BatchBook
    """The batches out at the providers (``--batch``), for whichever process collects them."""
    board: Board
    shared: bool = False

    async def read_record(self) -> RunRecord | None:
        """The run's record kept in a shared store (a run kept in its folder has its
        record there, read by ``codeclm.handle``), or None for a new run."""
        return None

    async def save_record(self, record: RunRecord) -> None:
        """Keep the run's record where other workers read its settings (shared stores)."""
        return None

    async def save_inputs(self, inputs: StoredInputs) -> None:
        """Keep what a worker needs to start the 'prepare' thread (shared stores only)."""
        return None

    async def read_inputs(self) -> StoredInputs:
        return StoredInputs()

    @abstractmethod
    async def read_reviews(self, kind: str) -> dict[str, dict[str, Any]]:
        """A person's reviews of one kind ('pool', 'pair'), by subject: what they last said."""

    @abstractmethod
    async def save_review(self, kind: str, subject: str, body: dict[str, Any] | None) -> None:
        """Keep a review (None takes it back). Only people write these: a run reads them."""

    async def write_alone(self) -> None:
        """This process alone writes the store from now on (it holds the run folder's
        lock): a store may then keep what it holds in memory. Shared stores never are."""
        return None

    def checkpoint_stats(self) -> dict[str, float]:
        """Checkpoint writes and the seconds they took (for run.json)."""
        return self.saver.stats()


_NULL_TASK = "00000000-0000-0000-0000-000000000000"
"""LangGraph's id for writes that belong to no task (input, ``update_state``)."""


class CachedRedo(BaseCheckpointSaver[Any]):
    """Keeps a finished task's ordinary writes out of the store while the response cache is
    on: after a crash the task runs again and every call it makes is answered from the
    cache, so the writes would only be a costlier copy of that answer. They are most of a
    run's store rows (pending writes: 7.6 rows per LLM call, measured with
    pg_stat_statements), so this halves the database's work per call.

    Kept as LangGraph stores them: writes to its own channels (``__error__``, interrupts,
    sends, ...) and writes of no task; and everything when the cache is off (``--no-cache``),
    where a task run again would pay its calls again.
    """

    cache_answers_redo: bool = False

    async def aput_writes(
        self, config: RunnableConfig, writes: Any, task_id: str, task_path: str = ""
    ) -> None:
        if (
            self.cache_answers_redo
            and task_id != _NULL_TASK
            and not any(channel.startswith("__") for channel, _ in writes)
        ):
            return
        await super().aput_writes(config, writes, task_id, task_path)


class TimedWrites(BaseCheckpointSaver[Any]):
    """A saver mixin counting checkpoint writes and the wall time they take (for run.json).

    The time includes waiting for a connection, which the run's threads share.
    """

    checkpoints: int = 0
    write_batches: int = 0
    seconds: float = 0.0

    async def aput(self, *args: Any, **kwargs: Any) -> RunnableConfig:
        started = time.perf_counter()
        try:
            return await super().aput(*args, **kwargs)
        finally:
            self.checkpoints += 1
            self.seconds += time.perf_counter() - started

    async def aput_writes(self, *args: Any, **kwargs: Any) -> None:
        started = time.perf_counter()
        try:
            await super().aput_writes(*args, **kwargs)
        finally:
            self.write_batches += 1
            self.seconds += time.perf_counter() - started

    def stats(self) -> dict[str, float]:
        return {
            "checkpoints": self.checkpoints,
            "write_batches": self.write_batches,
            "seconds": round(self.seconds, 3),
        }


class StoreSaver(CachedRedo, TimedWrites):
    """What both stores' savers add to LangGraph's: pending writes a cache can redo are
    kept out (first, so they are not counted), then every write is counted and timed."""

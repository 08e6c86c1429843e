"""What every store offers the engine (see ``codeclm.store``)."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver

from codeclm.llm.cache import ResponseCache
from codeclm.records import RunRecord
from codeclm.store.board import Board


class Store(ABC):
    """A run's checkpoints (``saver``), response cache, record and work board."""

    saver: BaseCheckpointSaver[Any]
    cache: ResponseCache
    board: Board
    shared: bool = False

    @abstractmethod
    async def read_record(self) -> RunRecord | None:
        """The run's record (settings, fingerprint), or None for a new run."""

    @abstractmethod
    async def save_record(self, record: RunRecord) -> None:
        """Keep the run's record (a later run or worker reads its settings from it)."""

    async def save_inputs(self, inputs: dict[str, Any]) -> None:
        """Keep what a worker needs to start the 'prepare' thread (shared stores only)."""
        return None

    async def read_inputs(self) -> dict[str, Any]:
        return {}

    @abstractmethod
    def checkpoint_stats(self) -> dict[str, float]:
        """Checkpoint writes and the seconds they took (for run.json)."""


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

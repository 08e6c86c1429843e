"""The work board: who runs the 'prepare' thread and which instruction threads, and when a
run has no work left.

One process (SQLite): the board is an in-memory queue. Many processes (PostgreSQL): a
table of leases (``store/leases.py``), so each thread has exactly one writer.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import BaseModel

Job = tuple[str, Callable[[], BaseModel | dict[str, Any]]]
"""A thread id and how to build its first state (called only for a thread never started):
a state model, or its fields (from a shared board), which the graph validates."""


class LeaseLost(RuntimeError):
    """This process no longer holds the thread it tried to write (its lease expired and
    another worker may have taken it): the write was refused, the thread is left alone."""


class StoreUnavailable(RuntimeError):
    """A store write failed for a reason that may pass (a dropped connection, a fail-over):
    the thread is let go, so this or another worker takes it up again."""


class Board(ABC):
    """What a worker asks before it runs a thread, and tells when it is done."""

    poll_seconds = 0.25

    @abstractmethod
    async def take_prepare(self) -> bool:
        """Whether this process may run the 'prepare' pass now (it then holds it)."""

    @abstractmethod
    async def prepare_done(self) -> bool:
        """The pass has ended for this run: no more instructions will be published."""

    @abstractmethod
    async def prepare_finished(self) -> None:
        """This process's pass ended: every instruction it makes has been published."""

    @abstractmethod
    async def publish(self, jobs: Sequence[Job]) -> None:
        """Threads ready to run (one already published is left as it is). A shared board
        builds each first state now, to store it; a local one only when a worker starts it."""

    @abstractmethod
    async def claim(self) -> Job | None:
        """The next thread to run, or None once the run has no work left."""

    @abstractmethod
    async def finish(self, thread_id: str, outcome: str) -> None:
        """The thread ended (kept, dropped, failed, …); this process lets it go."""

    async def hold(self, thread_id: str) -> bool:
        """Hold one thread outside the run's flow (``step``); False while a worker has it."""
        return True

    async def release(self, thread_id: str) -> None:
        """Let go of a thread taken with ``hold``."""
        return None

    async def reopen(self) -> None:
        """A new ``run`` of the same run: failed threads and the pass may run again."""
        return None

    async def close(self) -> None:
        """Let go of everything this process holds (on any exit)."""
        return None


class LocalBoard(Board):
    """One process: the pass is always ours; instructions go through an asyncio queue."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.queue: asyncio.Queue[Job | None] = asyncio.Queue()
        self._taken = False
        self._done = False

    async def take_prepare(self) -> bool:
        taken, self._taken = self._taken, True
        return not taken

    async def prepare_done(self) -> bool:
        return self._done

    async def prepare_finished(self) -> None:
        self._done = True
        for _ in range(self.workers):  # one end-marker per worker
            self.queue.put_nowait(None)

    async def publish(self, jobs: Sequence[Job]) -> None:
        for job in jobs:
            self.queue.put_nowait(job)

    async def claim(self) -> Job | None:
        return await self.queue.get()

    async def finish(self, thread_id: str, outcome: str) -> None:
        return None

    async def reopen(self) -> None:
        """Another wave of the same run (``--pairs``): the pass and the queue start over."""
        self.queue = asyncio.Queue()
        self._taken = self._done = False

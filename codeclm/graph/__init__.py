"""Graph wiring and the SQLite checkpointer both graphs share."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.types import RetryPolicy

from codeclm.graph.instruction import build_instruction_graph
from codeclm.graph.prepare import build_prepare_graph
from codeclm.llm.client import is_transient
from codeclm.state import STATE_MODELS

__all__ = [
    "TimedSqliteSaver",
    "build_instruction_graph",
    "build_prepare_graph",
    "open_checkpointer",
    "retry_policy",
    "thread_config",
]


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


def serializer() -> JsonPlusSerializer:
    """Every state model registered, so none comes back from a checkpoint as a plain dict."""
    return JsonPlusSerializer(
        allowed_msgpack_modules=[(m.__module__, m.__name__) for m in STATE_MODELS]
    )


class TimedSqliteSaver(AsyncSqliteSaver):
    """The SQLite saver, counting its writes and the wall time they take (for run.json).

    The time includes waiting for the saver's one connection, which every thread shares.
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


@asynccontextmanager
async def open_checkpointer(path: Path) -> AsyncIterator[TimedSqliteSaver]:
    """An AsyncSqliteSaver on ``path``, tuned as LANGGRAPH_NOTES.md measured.

    A 30 s busy timeout (the 5 s default gave 'database is locked' under another writer)
    and ``synchronous=NORMAL`` (half the write cost, still safe with WAL).
    """
    async with aiosqlite.connect(str(path), timeout=30) as conn:
        saver = TimedSqliteSaver(conn, serde=serializer())
        await saver.setup()
        await conn.execute("PRAGMA synchronous=NORMAL")
        yield saver

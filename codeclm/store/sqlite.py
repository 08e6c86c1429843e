"""The default store: SQLite files in the run folder, for one process.

``checkpoints.sqlite`` (both graphs' threads), ``llm_cache.sqlite`` (the response cache) and
``run.json`` (the record). The board is an in-memory queue: this process runs everything.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiosqlite
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

from codeclm.graph import serializer
from codeclm.llm.cache import SqliteResponseCache
from codeclm.outputs import CACHE, CHECKPOINTS, RUN_JSON, write_json
from codeclm.records import RunRecord
from codeclm.store.base import Store, StoreSaver
from codeclm.store.board import LocalBoard


class TimedSqliteSaver(StoreSaver, AsyncSqliteSaver):
    """The SQLite saver, its writes counted and timed."""


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


class SqliteStore(Store):
    def __init__(
        self, out_dir: Path, saver: TimedSqliteSaver, cache: SqliteResponseCache, workers: int
    ) -> None:
        self.out_dir = out_dir
        self.saver = saver
        self.cache = cache
        self.board = LocalBoard(workers)

    async def read_record(self) -> RunRecord | None:
        path = self.out_dir / RUN_JSON
        return RunRecord.read(path) if path.is_file() else None

    async def save_record(self, record: RunRecord) -> None:
        write_json(self.out_dir / RUN_JSON, record)


@asynccontextmanager
async def open_sqlite_store(out_dir: Path, workers: int) -> AsyncIterator[SqliteStore]:
    out_dir.mkdir(parents=True, exist_ok=True)
    cache = await SqliteResponseCache(out_dir / CACHE).open()
    try:
        async with open_checkpointer(out_dir / CHECKPOINTS) as saver:
            yield SqliteStore(out_dir, saver, cache, workers)
    finally:
        await cache.close()

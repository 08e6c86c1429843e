"""The default store: SQLite files in the run folder, for one process.

``checkpoints.sqlite`` (both graphs' threads), ``llm_cache.sqlite`` (the response cache),
``reviews.sqlite`` (a person's reviews) and ``spend.sqlite`` (every paid request); the
run's record is the folder's ``run.json`` (``codeclm.handle``). The board is an in-memory
queue: this process runs everything.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

from codeclm.cost.ledger import SqliteLedger
from codeclm.llm.batch_book import SqliteBatchBook
from codeclm.llm.cache import SqliteResponseCache
from codeclm.outputs import CACHE, CHECKPOINTS, REVIEWS, SPEND, make_folder
from codeclm.state import serializer
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
        self,
        out_dir: Path,
        saver: TimedSqliteSaver,
        cache: SqliteResponseCache,
        ledger: SqliteLedger,
        batch_book: SqliteBatchBook,
        workers: int,
    ) -> None:
        self.out_dir = out_dir
        self.saver = saver
        self.cache = cache
        self.ledger = ledger
        self.batch_book = batch_book
        self.board = LocalBoard(workers)

    @asynccontextmanager
    async def _reviews(self) -> AsyncIterator[aiosqlite.Connection]:
        """A short connection: the run, ``codeclm view`` and ``codeclm review`` share the
        file from their own processes, and none of them keeps it open."""
        async with aiosqlite.connect(str(self.out_dir / REVIEWS), timeout=30) as conn:
            await conn.execute(_REVIEWS_TABLE)
            yield conn

    async def read_reviews(self, kind: str) -> dict[str, dict[str, Any]]:
        if not (self.out_dir / REVIEWS).is_file():
            return {}
        async with self._reviews() as conn:
            cursor = await conn.execute(
                "SELECT subject, body FROM reviews WHERE kind = ? ORDER BY subject", (kind,)
            )
            return {subject: json.loads(body) for subject, body in await cursor.fetchall()}

    async def save_review(self, kind: str, subject: str, body: dict[str, Any] | None) -> None:
        async with self._reviews() as conn:
            if body is None:
                await conn.execute(
                    "DELETE FROM reviews WHERE kind = ? AND subject = ?", (kind, subject)
                )
            else:
                await conn.execute(
                    "INSERT INTO reviews (kind, subject, body) VALUES (?, ?, ?) "
                    "ON CONFLICT (kind, subject) DO UPDATE SET body = excluded.body",
                    (kind, subject, json.dumps(body, ensure_ascii=False)),
                )
            await conn.commit()


_REVIEWS_TABLE = (
    "CREATE TABLE IF NOT EXISTS reviews ("
    "kind TEXT NOT NULL, subject TEXT NOT NULL, body TEXT NOT NULL, PRIMARY KEY (kind, subject))"
)


@asynccontextmanager
async def open_sqlite_store(out_dir: Path, workers: int) -> AsyncIterator[SqliteStore]:
    make_folder(out_dir)
    cache = await SqliteResponseCache(out_dir / CACHE).open()
    ledger = await SqliteLedger(out_dir / SPEND).open()
    book = await SqliteBatchBook(out_dir / SPEND).open()
    try:
        async with open_checkpointer(out_dir / CHECKPOINTS) as saver:
            yield SqliteStore(out_dir, saver, cache, ledger, book, workers)
    finally:
        await book.close_book()
        await ledger.close()
        await cache.close()

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

from codeclm.config import ConfigError
from codeclm.outputs import (
    CACHE,
    CHECKPOINTS,
    REVIEWS,
    SPEND,
    check_sqlite,
    make_folder,
    open_sqlite,
    sqlite_uri,
    writable,
)
from codeclm.state import serializer
from codeclm.store.base import Store, StoreSaver
from codeclm.store.batch_book import SqliteBatchBook
from codeclm.store.blobs import SplitBlobsSaver
from codeclm.store.board import LocalBoard
from codeclm.store.cache import SqliteResponseCache
from codeclm.store.ledger import SqliteLedger


class TimedSqliteSaver(StoreSaver, SplitBlobsSaver):
    """The SQLite saver (each channel's value stored once per version), its writes
    counted and timed."""


@asynccontextmanager
async def open_checkpointer(path: Path, read_only: bool = False) -> AsyncIterator[TimedSqliteSaver]:
    """The SQLite saver on ``path``, tuned as LANGGRAPH_NOTES.md measured.

    A 30 s busy timeout (the 5 s default gave 'database is locked' under another writer)
    and ``synchronous=NORMAL`` (half the write cost, still safe with WAL). ``read_only``:
    the folder cannot be written; the saver reads what is there and sets nothing up.
    """
    uri = sqlite_uri(path, read_only, probe=False)  # (probed by the store's opening)
    async with aiosqlite.connect(uri, uri=True, timeout=30) as conn:
        saver = TimedSqliteSaver(conn, serde=serializer())
        if read_only and path.exists():
            saver.is_setup = True  # (its set-up writes: the tables are there)
        else:
            await saver.setup()
            await conn.execute("PRAGMA synchronous=NORMAL")
        yield saver


class SqliteStore(Store):
    saver: TimedSqliteSaver

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
        self.read_only = not writable(out_dir)
        """A read-only folder: what is there is read; a review cannot be kept."""

    async def write_alone(self) -> None:
        await self.saver.write_alone()

    @asynccontextmanager
    async def _reviews(self) -> AsyncIterator[aiosqlite.Connection]:
        """A short connection: the run, ``codeclm view`` and ``codeclm review`` share the
        file from their own processes, and none of them keeps it open."""
        conn = await open_sqlite(self.out_dir / REVIEWS, self.read_only, "reviews", _REVIEWS_TABLE)
        try:
            yield conn
        finally:
            await conn.close()

    async def read_reviews(self, kind: str) -> dict[str, dict[str, Any]]:
        if not (self.out_dir / REVIEWS).is_file():
            return {}
        async with self._reviews() as conn:
            cursor = await conn.execute(
                "SELECT subject, body FROM reviews WHERE kind = ? ORDER BY subject", (kind,)
            )
            return {subject: json.loads(body) for subject, body in await cursor.fetchall()}

    async def save_review(self, kind: str, subject: str, body: dict[str, Any] | None) -> None:
        if self.read_only:
            raise ConfigError(f"{self.out_dir} is read-only: a review cannot be kept there")
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
    """The run folder's files, opened; a folder this process cannot write (a read-only copy
    or mount) is opened read-only: inspect, export, report and view work on it."""
    if not out_dir.exists():
        make_folder(out_dir)
    read_only = not writable(out_dir)
    for name in (CHECKPOINTS, CACHE, SPEND, REVIEWS):  # each damaged file said in a line
        if (out_dir / name).exists():
            check_sqlite(out_dir / name)
    cache = await SqliteResponseCache(out_dir / CACHE).open(read_only)
    ledger = await SqliteLedger(out_dir / SPEND).open(read_only)
    book = await SqliteBatchBook(out_dir / SPEND).open(read_only)
    try:
        async with open_checkpointer(out_dir / CHECKPOINTS, read_only) as saver:
            yield SqliteStore(out_dir, saver, cache, ledger, book, workers)
    finally:
        await book.close_book()
        await ledger.close()
        await cache.close()

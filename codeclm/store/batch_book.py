"""The book of batches out at the providers (``llm.batch_book.BatchBook``), in both stores
side by side: a table of a run folder's ``spend.sqlite``, and the ``codeclm_batches`` table
of a shared run's PostgreSQL schema (created with the schema, ``store/postgres.py``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiosqlite

from codeclm.llm.batch_book import BatchBook, SubmittedBatch
from codeclm.outputs import open_sqlite

if TYPE_CHECKING:
    from psycopg_pool import AsyncConnectionPool


class SqliteBatchBook(BatchBook):
    """A table beside the ledger (``DIR/spend.sqlite``)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn: aiosqlite.Connection | None = None

    async def open(self, read_only: bool = False) -> SqliteBatchBook:
        ddl = (
            "CREATE TABLE IF NOT EXISTS batches (id TEXT PRIMARY KEY, endpoint TEXT NOT NULL,"
            " lines TEXT NOT NULL)"
        )
        self._conn = await open_sqlite(self.path, read_only, "batches", ddl)
        return self

    async def close_book(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    async def add(self, batch: SubmittedBatch) -> None:
        assert self._conn is not None
        await self._conn.execute(
            "INSERT OR IGNORE INTO batches (id, endpoint, lines) VALUES (?, ?, ?)",
            (batch.id, batch.endpoint, json.dumps(batch.lines)),
        )
        await self._conn.commit()

    async def out(self, endpoint: str) -> list[SubmittedBatch]:
        assert self._conn is not None
        async with self._conn.execute(
            "SELECT id, lines FROM batches WHERE endpoint = ? ORDER BY id", (endpoint,)
        ) as cursor:
            rows = await cursor.fetchall()
        return [SubmittedBatch(str(i), endpoint, tuple(json.loads(lines))) for i, lines in rows]

    async def close(self, batch_id: str) -> None:
        assert self._conn is not None
        await self._conn.execute("DELETE FROM batches WHERE id = ?", (batch_id,))
        await self._conn.commit()

    async def carrying(self, endpoint: str, key: str) -> SubmittedBatch | None:
        assert self._conn is not None
        async with self._conn.execute(
            "SELECT id, lines FROM batches WHERE endpoint = ? AND lines LIKE ?",
            (endpoint, f'%"{key}"%'),
        ) as cursor:
            row = await cursor.fetchone()
        return SubmittedBatch(str(row[0]), endpoint, tuple(json.loads(row[1]))) if row else None


class PostgresBatchBook(BatchBook):
    """The batches out, in the run's schema: any worker, or a later run, collects them."""

    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self.pool = pool

    async def add(self, batch: SubmittedBatch) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(
                "INSERT INTO codeclm_batches (id, endpoint, lines) VALUES (%s, %s, %s) "
                "ON CONFLICT (id) DO NOTHING",
                (batch.id, batch.endpoint, json.dumps(batch.lines)),
            )

    async def out(self, endpoint: str) -> list[SubmittedBatch]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT id, lines FROM codeclm_batches WHERE endpoint = %s ORDER BY id",
                (endpoint,),
            )
            rows = await cur.fetchall()
        return [SubmittedBatch(r["id"], endpoint, tuple(json.loads(r["lines"]))) for r in rows]

    async def close(self, batch_id: str) -> None:
        async with self.pool.connection() as conn:
            await conn.execute("DELETE FROM codeclm_batches WHERE id = %s", (batch_id,))

    async def carrying(self, endpoint: str, key: str) -> SubmittedBatch | None:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT id, lines FROM codeclm_batches WHERE endpoint = %s AND lines LIKE %s",
                (endpoint, f'%"{key}"%'),
            )
            row = await cur.fetchone()
        return SubmittedBatch(row["id"], endpoint, tuple(json.loads(row["lines"]))) if row else None

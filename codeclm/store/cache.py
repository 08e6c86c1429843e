"""The response cache (``llm.cache.ResponseCache``), in both stores side by side: a run
folder's ``llm_cache.sqlite``, and the ``codeclm_responses`` table of a shared run's
PostgreSQL schema (created with the schema, ``store/postgres.py``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiosqlite

from codeclm.llm.cache import ResponseCache
from codeclm.outputs import open_sqlite
from codeclm.state import TokenUsage

if TYPE_CHECKING:
    from psycopg_pool import AsyncConnectionPool


class SqliteResponseCache(ResponseCache):
    """SQLite-backed; one connection, WAL, each write committed as it runs (autocommit).

    Every call of a run looks up and writes here, so each is one trip to aiosqlite's
    thread (a lookup's rows fetched with its statement; no separate commit): a trip
    costs the event loop a thread hand-over both ways."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn: aiosqlite.Connection | None = None

    async def open(self, read_only: bool = False) -> SqliteResponseCache:
        ddl = (
            "CREATE TABLE IF NOT EXISTS responses ("
            " key TEXT PRIMARY KEY, content TEXT NOT NULL, usage TEXT NOT NULL)"
        )
        self._conn = await open_sqlite(self.path, read_only, "responses", ddl, isolation_level=None)
        if not read_only:
            await self._conn.execute("PRAGMA journal_mode=WAL")
            await self._conn.execute("PRAGMA synchronous=NORMAL")
        return self

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    async def get(self, key: str) -> tuple[str, TokenUsage] | None:
        assert self._conn is not None
        rows = await self._conn.execute_fetchall(
            "SELECT content, usage FROM responses WHERE key = ?", (key,)
        )
        for content, usage in rows:  # the key is the primary key: at most one
            return content, TokenUsage.model_validate_json(usage)
        return None

    async def put(self, key: str, content: str, usage: TokenUsage) -> None:
        assert self._conn is not None
        await self._conn.execute(
            "INSERT OR REPLACE INTO responses (key, content, usage) VALUES (?, ?, ?)",
            (key, content, usage.model_dump_json()),
        )


class PostgresResponseCache(ResponseCache):
    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self.pool = pool

    async def get(self, key: str) -> tuple[str, TokenUsage] | None:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT content, usage FROM codeclm_responses WHERE key = %s", (key,)
            )
            row = await cur.fetchone()
        if row is None:
            return None
        return row["content"], TokenUsage.model_validate_json(row["usage"])

    async def put(self, key: str, content: str, usage: TokenUsage) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(
                "INSERT INTO codeclm_responses (key, content, usage) VALUES (%s, %s, %s) "
                "ON CONFLICT (key) DO NOTHING",
                (key, content, usage.model_dump_json()),
            )

"""A prompt-keyed response cache beside the checkpoints (``DIR/llm_cache.sqlite``, or a
table of the PostgreSQL store).

Any node may run twice: after a kill mid-node, on a retry of its sibling, on a replay or a
fork. The cache makes the second run free: a request identical to one already answered
(same model, endpoint, prompt, and sampling and schema parameters) is answered from disk.

Why not LangChain's ``BaseCache``: it stores a reply *before* we validate it, so a retry of
an unparseable reply would replay the same bad reply forever. Here a structured reply is
stored only once it has validated, and every entry is committed as soon as it is written,
so a ``kill -9`` right after a call completed still finds it.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import aiosqlite

from codeclm.llm.reply import Reply
from codeclm.outputs import open_sqlite
from codeclm.state import TokenUsage


async def cached_reply(
    cache: ResponseCache | None, key: str | None, structured: bool, max_tokens: int
) -> tuple[Reply, TokenUsage] | None:
    """The cache's reply to a request (a structured one: its validated JSON), and what it
    saved; None: not there, or cached by an older codeclm in a form it cannot read."""
    if cache is None or key is None or (hit := await cache.get(key)) is None:
        return None
    text, paid = hit
    if structured:
        reply: Reply | None = Reply(text, "stop", max_tokens=max_tokens)
    else:
        reply = Reply.from_cache(text, max_tokens)
    if reply is None:
        return None
    saved = TokenUsage(
        cached_calls=1, saved_input_tokens=paid.input_tokens, saved_output_tokens=paid.output_tokens
    )
    return reply, saved


def request_key(parts: dict[str, Any]) -> str:
    """A stable digest of everything that determines the reply."""
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


class ResponseCache(ABC):
    """Replies by request key; every write is durable when ``put`` returns."""

    @abstractmethod
    async def get(self, key: str) -> tuple[str, TokenUsage] | None:
        """The stored reply and its usage, or None."""

    @abstractmethod
    async def put(self, key: str, content: str, usage: TokenUsage) -> None:
        """Store a validated reply (a second put of the same key keeps one)."""


class SqliteResponseCache(ResponseCache):
    """SQLite-backed; one connection, WAL, each write committed at once."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn: aiosqlite.Connection | None = None

    async def open(self, read_only: bool = False) -> SqliteResponseCache:
        ddl = (
            "CREATE TABLE IF NOT EXISTS responses ("
            " key TEXT PRIMARY KEY, content TEXT NOT NULL, usage TEXT NOT NULL)"
        )
        self._conn = await open_sqlite(self.path, read_only, "responses", ddl)
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
        async with self._conn.execute(
            "SELECT content, usage FROM responses WHERE key = ?", (key,)
        ) as cursor:
            row = await cursor.fetchone()
        if row is None:
            return None
        return row[0], TokenUsage.model_validate_json(row[1])

    async def put(self, key: str, content: str, usage: TokenUsage) -> None:
        assert self._conn is not None
        await self._conn.execute(
            "INSERT OR REPLACE INTO responses (key, content, usage) VALUES (?, ?, ?)",
            (key, content, usage.model_dump_json()),
        )
        await self._conn.commit()

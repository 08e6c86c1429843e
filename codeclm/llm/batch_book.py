"""The batches a run has out at its providers, kept in its store: a process may stop while
they run, and whichever process asks for one of their lines next collects them.

A batch is recorded twice over: before it is created, as its uploaded file (``PENDING`` and
the file id: a process killed between the two steps leaves that, and the next one finds the
batch the provider made of the file, or learns that none was made); then as the batch.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import aiosqlite

from codeclm.outputs import open_sqlite

PENDING = "file:"
"""The id of a batch recorded before it was created: its input file's id after this."""


@dataclass(frozen=True)
class SubmittedBatch:
    """A batch out at the provider: which endpoint, and the lines it carries."""

    id: str
    endpoint: str
    lines: tuple[str, ...]


class BatchBook(ABC):
    """The batches a run has out, kept in its store (a process may stop while they run)."""

    @abstractmethod
    async def add(self, batch: SubmittedBatch) -> None: ...

    @abstractmethod
    async def out(self, endpoint: str) -> list[SubmittedBatch]: ...

    @abstractmethod
    async def close(self, batch_id: str) -> None: ...

    @abstractmethod
    async def carrying(self, endpoint: str, key: str) -> SubmittedBatch | None:
        """The batch out that carries the line ``key`` (another worker's, or an earlier
        process's), if any."""


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

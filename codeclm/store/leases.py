"""The work board of a shared run: a table of leases in PostgreSQL.

One row per thread: the 'prepare' thread and every published instruction thread, with its
first state. A worker claims rows with ``SELECT … FOR UPDATE SKIP LOCKED`` (no two workers
get the same row), holds them with a lease it renews every third of ``lease_seconds``, and
sets the thread's outcome when it ends. A worker that dies stops renewing; once its leases
expire, any other worker takes the threads up from their last checkpoint. Checkpoint
writes check the lease in their own transaction (``store/postgres.py``), so a worker whose
lease ran out cannot write behind its successor.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
from collections.abc import Sequence
from types import TracebackType
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from pydantic import BaseModel

from codeclm.state import PREPARE_THREAD
from codeclm.store.board import Board, Job, StoreUnavailable

log = logging.getLogger("codeclm")

LEASES_TABLE = """
CREATE TABLE IF NOT EXISTS codeclm_leases (
    thread_id text PRIMARY KEY,
    position bigserial,
    start_state text,
    owner text,
    expires_at timestamptz,
    outcome text);
CREATE INDEX IF NOT EXISTS codeclm_leases_open ON codeclm_leases (position)
    WHERE outcome IS NULL;
"""

_CLAIM = """
UPDATE codeclm_leases SET owner = %(me)s, expires_at = now() + %(ttl)s * interval '1 second'
WHERE thread_id IN (
    SELECT thread_id FROM codeclm_leases
    WHERE outcome IS NULL AND thread_id <> %(prepare)s
      AND (owner IS NULL OR expires_at < now())
    ORDER BY position LIMIT %(n)s
    FOR UPDATE SKIP LOCKED)
RETURNING thread_id, position, start_state
"""

_TAKE_PREPARE = """
UPDATE codeclm_leases SET owner = %(me)s, expires_at = now() + %(ttl)s * interval '1 second'
WHERE thread_id = %(prepare)s AND outcome IS NULL
  AND (owner IS NULL OR owner = %(me)s OR expires_at < now())
RETURNING 1
"""


def _json(state: BaseModel | dict[str, Any]) -> str:
    if isinstance(state, BaseModel):
        return state.model_dump_json()
    return json.dumps(state, ensure_ascii=False)


class PostgresBoard(Board):
    """Leases on the rows of ``codeclm_leases``; used as ``async with`` (heartbeat, release)."""

    def __init__(
        self,
        pool: AsyncConnectionPool[Any],
        owner: str,
        lease_seconds: float,
        workers: int,
    ) -> None:
        self.pool = pool
        self.owner = owner
        self.lease_seconds = lease_seconds
        self.max_claim = max(1, min(workers, 32))
        self._buffer: collections.deque[Job] = collections.deque()
        self._lock = asyncio.Lock()
        self._waiting = 0
        self._heartbeat: asyncio.Task[None] | None = None

    async def _execute(self, sql: str, params: Any = None) -> list[dict[str, Any]]:
        try:
            async with self.pool.connection() as conn:
                cur = await conn.execute(sql, params)
                return list(await cur.fetchall()) if cur.description else []
        except (psycopg.OperationalError, PoolTimeout) as exc:
            raise StoreUnavailable(f"the store is unreachable: {exc}") from exc

    def _params(self, **more: Any) -> dict[str, Any]:
        return {"me": self.owner, "ttl": self.lease_seconds, "prepare": PREPARE_THREAD, **more}

    async def __aenter__(self) -> PostgresBoard:
        self._heartbeat = asyncio.create_task(self._renew_forever())
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        await self.close()

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            try:
                await self._execute(
                    "UPDATE codeclm_leases SET expires_at = now() + %(ttl)s * interval '1 second' "
                    "WHERE owner = %(me)s",  # a finished thread held by ``step`` too
                    self._params(),
                )
            except Exception as exc:  # the database is away: the leases may run out
                log.warning("could not renew this worker's leases: %s", exc)

    async def close(self) -> None:
        """Stop renewing, and hand back what this worker holds so others take it at once."""
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
            self._heartbeat = None
            with contextlib.suppress(Exception):
                await self._execute(
                    "UPDATE codeclm_leases SET owner = NULL, expires_at = NULL "
                    "WHERE owner = %(me)s",
                    self._params(),
                )

    async def take_prepare(self) -> bool:
        return bool(await self._execute(_TAKE_PREPARE, self._params()))

    async def prepare_done(self) -> bool:
        rows = await self._execute(
            "SELECT outcome FROM codeclm_leases WHERE thread_id = %(prepare)s", self._params()
        )
        return not rows or rows[0]["outcome"] is not None

    async def prepare_finished(self) -> None:
        await self.finish(PREPARE_THREAD, "done")

    async def publish(self, jobs: Sequence[Job]) -> None:
        if not jobs:
            return
        async with self.pool.connection() as conn, conn.cursor() as cur:
            await cur.executemany(
                "INSERT INTO codeclm_leases (thread_id, start_state) VALUES (%s, %s) "
                "ON CONFLICT (thread_id) DO UPDATE SET start_state = excluded.start_state, "
                "outcome = NULL WHERE codeclm_leases.outcome = 'stepped'",  # see ``hold``
                [(thread_id, _json(start())) for thread_id, start in jobs],
            )

    @staticmethod
    def _job(row: dict[str, Any]) -> Job:
        text = row["start_state"]  # the graph validates it into its own state model
        return row["thread_id"], lambda: json.loads(text)

    async def claim(self) -> Job | None:
        """Claims as many rows as this process has idle workers; polls while none is free."""
        self._waiting += 1
        try:
            async with self._lock:
                while not self._buffer:
                    n = min(self._waiting, self.max_claim)
                    rows = await self._execute(_CLAIM, self._params(n=n))
                    if rows:
                        rows.sort(key=lambda row: row["position"])
                        self._buffer.extend(self._job(row) for row in rows)
                        break
                    if await self._all_done():
                        return None
                    await asyncio.sleep(self.poll_seconds)
                return self._buffer.popleft()
        finally:
            self._waiting -= 1

    async def _all_done(self) -> bool:
        rows = await self._execute(
            "SELECT NOT EXISTS (SELECT 1 FROM codeclm_leases WHERE outcome IS NULL) AS done"
        )
        return bool(rows[0]["done"])

    async def finish(self, thread_id: str, outcome: str) -> None:
        await self._execute(
            "UPDATE codeclm_leases SET outcome = %(outcome)s, owner = NULL, expires_at = NULL "
            "WHERE thread_id = %(thread)s AND owner = %(me)s",
            self._params(outcome=outcome, thread=thread_id),
        )

    async def reopen(self) -> None:
        """A new ``codeclm run``: the pass runs again if it has work, failures are retried."""
        await self._execute(
            "INSERT INTO codeclm_leases (thread_id, position) VALUES (%(prepare)s, 0) "
            "ON CONFLICT (thread_id) DO UPDATE SET outcome = NULL",
            self._params(),
        )
        await self._execute("UPDATE codeclm_leases SET outcome = NULL WHERE outcome = 'failed'")

    async def hold(self, thread_id: str) -> bool:
        """Refused while another worker's lease on the thread is live. A thread never
        published gets a row of its own that no worker claims (outcome 'stepped')."""
        rows = await self._execute(
            "INSERT INTO codeclm_leases (thread_id, owner, expires_at, outcome) "
            "VALUES (%(thread)s, %(me)s, now() + %(ttl)s * interval '1 second', 'stepped') "
            "ON CONFLICT (thread_id) DO UPDATE SET owner = excluded.owner, "
            "expires_at = excluded.expires_at "
            "WHERE codeclm_leases.owner IS NULL OR codeclm_leases.owner = %(me)s "
            "OR codeclm_leases.expires_at < now() RETURNING 1",
            self._params(thread=thread_id),
        )
        return bool(rows)

    async def release(self, thread_id: str) -> None:
        await self._execute(
            "UPDATE codeclm_leases SET owner = NULL, expires_at = NULL "
            "WHERE thread_id = %(thread)s AND owner = %(me)s",
            self._params(thread=thread_id),
        )

"""The SQLite saver with each channel's value stored once per version, apart from the
checkpoint, as LangGraph's PostgreSQL saver stores them.

LangGraph's SQLite saver writes the whole state into every checkpoint. A step changes a
few channels, so most of each checkpoint repeated the one before it: an instruction thread
wrote its instruction, metadata and rubrics nine times over, and the 'prepare' thread its
whole seed file at every step (issue #32: 100,000 seeds grew the store by 192 MB before a
request went out; #33: 46 KB per instruction). Here a checkpoint keeps its channels'
versions, and ``blobs`` the value of each (thread, channel, version) once. Every
checkpoint is still whole to LangGraph (``aget_tuple``, ``alist``), so stepping, forking
and the history read as before; checkpoints written whole by earlier versions load as
they were.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Sequence
from contextlib import aclosing, asynccontextmanager
from typing import Any, cast

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    get_checkpoint_metadata,
)
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

from codeclm.config import ConfigError
from codeclm.outputs import CHECKPOINTS, DAMAGED_ADVICE

SPLIT = "codeclm_blobs"
"""The mark of a checkpoint whose larger values are in ``blobs``: the channels stored there
(each at the version ``channel_versions`` names)."""
INLINE_CHARS = 64
"""A string this short stays in the checkpoint: a row of its own costs more than that."""

_BLOBS_TABLE = (
    "CREATE TABLE IF NOT EXISTS blobs (thread_id TEXT NOT NULL, checkpoint_ns TEXT NOT NULL, "
    "channel TEXT NOT NULL, version TEXT NOT NULL, type TEXT NOT NULL, blob BLOB, "
    "PRIMARY KEY (thread_id, checkpoint_ns, channel, version)) WITHOUT ROWID"
)


def inline(value: Any) -> bool:
    """Whether a channel's value stays in the checkpoint: small scalars and empty
    collections. Decided by the value alone, so a version is always kept in one place."""
    if value is None or isinstance(value, bool | int | float):
        return True
    if isinstance(value, str):
        return len(value) <= INLINE_CHARS
    return isinstance(value, list | dict | tuple) and not value


BlobKey = tuple[str, str, str, str]
"""(thread, namespace, channel, version): a value's place in ``blobs``."""


def _split(stored: Any, thread: str, ns: str) -> tuple[dict[str, Any], dict[str, BlobKey], bool]:
    """A checkpoint as stored, copied to be filled: the channels kept in ``blobs`` and
    where, and whether it listed them (a development version marked 1: every channel not
    in the values, maybe none)."""
    checkpoint: dict[str, Any] = dict(stored)
    mark: list[str] | int = checkpoint.pop(SPLIT)
    checkpoint["channel_values"] = values = dict(checkpoint["channel_values"])
    versions = checkpoint["channel_versions"]
    apart = mark if isinstance(mark, list) else [c for c in versions if c not in values]
    wanted = {c: (thread, ns, c, str(versions[c])) for c in apart}
    return checkpoint, wanted, isinstance(mark, list)


RECENT_BLOBS = 8192
"""Serialized values kept in memory: the threads in flight's latest values."""
RECENT_BLOB_BYTES = 64 * 1024
KEYS_AT_ONCE = 200
"""Values asked for in one query: 800 variables, under the 999 of SQLite before 3.32."""
"""A larger value is not kept (at most 8,192 × 64 KB; in practice a few MB)."""


class MissingBlobs(ConfigError):
    """A checkpoint names a value the ``blobs`` table does not hold: one line, as for any
    damaged file of the run."""


class SplitBlobsSaver(AsyncSqliteSaver):
    """``AsyncSqliteSaver`` writing only the channels a step changed (see the module)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._recent: OrderedDict[BlobKey, tuple[str, bytes]] = OrderedDict()
        """The values last written or read, serialized: most reads are of a checkpoint
        just written, and each read of the store is a trip to its thread."""
        self._whole: set[tuple[str, str]] = set()
        """(thread, checkpoint id) of checkpoints read back whole, written so by an earlier
        version: the first checkpoint after one stores every value, not only the new."""
        self._threads: set[tuple[str, str]] | None = None
        """(thread, namespace) of every thread the file holds, while this process is its
        only writer (``write_alone``); None: not known, each read asks the file."""

    async def write_alone(self) -> None:
        """This process holds the run folder (its lock): no other writes the file, so the
        threads it holds are known from now on, and a thread not among them reads as new
        without a trip to the file (each new thread is read twice before its first step:
        the engine's look at its status, and LangGraph's own)."""
        await self.setup()
        async with self.lock:
            rows = await self.conn.execute_fetchall(
                "SELECT DISTINCT thread_id, checkpoint_ns FROM checkpoints"
            )
        self._threads = {(str(thread), str(ns)) for thread, ns in rows}

    async def setup(self) -> None:
        if self.is_setup:
            return
        await super().setup()
        async with self.lock:
            await self.conn.execute(_BLOBS_TABLE)
            await self.conn.commit()

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """The changed channels' values and the checkpoint naming them, in one transaction
        (as LangGraph's own ``aput`` writes a checkpoint, with one commit)."""
        await self.setup()
        configurable = config["configurable"]
        thread_id = str(configurable["thread_id"])
        namespace = str(configurable.get("checkpoint_ns", ""))
        parent = configurable.get("checkpoint_id")
        after_whole = (thread_id, str(parent)) in self._whole
        values = checkpoint["channel_values"]
        versions = checkpoint["channel_versions"]
        apart = sorted(c for c, value in values.items() if c in versions and not inline(value))
        rows = [
            (thread_id, namespace, c, str(versions[c]), *self.serde.dumps_typed(values[c]))
            for c in apart
            if after_whole or c in new_versions
        ]
        for thread, ns, channel, version, kind, blob in rows:
            self._remember((thread, ns, channel, version), (kind, blob))
        kept = {channel: value for channel, value in values.items() if channel not in apart}
        split: Any = {**checkpoint, "channel_values": kept, SPLIT: apart}
        kind, serialized = self.serde.dumps_typed(split)
        meta = json.dumps(get_checkpoint_metadata(config, metadata), ensure_ascii=False)
        if self._threads is not None:
            self._threads.add((thread_id, namespace))
        async with self.lock, self._transaction():
            if rows:
                await self.conn.executemany(
                    "INSERT OR IGNORE INTO blobs (thread_id, checkpoint_ns, channel, version, "
                    "type, blob) VALUES (?, ?, ?, ?, ?, ?)",
                    rows,
                )
            await self.conn.execute(
                "INSERT OR REPLACE INTO checkpoints (thread_id, checkpoint_ns, checkpoint_id, "
                "parent_checkpoint_id, type, checkpoint, metadata) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    thread_id, namespace, checkpoint["id"], parent, kind, serialized,
                    meta.encode("utf-8", "ignore"),
                ),
            )  # fmt: skip
        return {
            "configurable": {
                "thread_id": thread_id,
                "checkpoint_ns": namespace,
                "checkpoint_id": checkpoint["id"],
            }
        }

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        configurable = config["configurable"]
        if (
            self._threads is not None
            and (str(configurable["thread_id"]), str(configurable.get("checkpoint_ns", "")))
            not in self._threads
        ):
            return None  # a thread this file does not hold (and only we write it)
        found = await super().aget_tuple(config)
        if found is None or SPLIT not in found.checkpoint:
            self._note_whole(found)
            return found
        async with self.lock:
            return await self._joined(found)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        listing = cast(
            AsyncGenerator[CheckpointTuple, None],
            super().alist(config, filter=filter, before=before, limit=limit),
        )
        async with aclosing(listing):  # (a caller that stops early frees the saver's lock)
            async for found in listing:
                # (the listing holds the saver's lock while it yields: the blobs are read on
                # the same connection without it, as the listing reads its pending writes)
                if SPLIT in found.checkpoint:
                    yield await self._joined(found)
                else:
                    self._note_whole(found)
                    yield found

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[None]:
        """Committed when the block ends, rolled back if it raises (a full disk, say): no
        half-written checkpoint is left for the next commit to carry."""
        try:
            yield
        except BaseException:
            await self.conn.rollback()
            raise
        await self.conn.commit()

    def _remember(self, key: BlobKey, serialized: tuple[str, bytes]) -> None:
        if len(serialized[1]) > RECENT_BLOB_BYTES:  # (the 'prepare' thread's seeds, say)
            return
        self._recent[key] = serialized
        self._recent.move_to_end(key)
        if len(self._recent) > RECENT_BLOBS:
            self._recent.popitem(last=False)

    def _note_whole(self, found: CheckpointTuple | None) -> None:
        if found is not None:
            configurable = found.config["configurable"]
            self._whole.add((str(configurable["thread_id"]), str(configurable["checkpoint_id"])))

    async def _joined(self, found: CheckpointTuple) -> CheckpointTuple:
        """The checkpoint with its channels' values read back from ``blobs``."""
        configurable = found.config["configurable"]
        thread, ns = str(configurable["thread_id"]), str(configurable.get("checkpoint_ns", ""))
        checkpoint, wanted, listed = _split(found.checkpoint, thread, ns)
        stored = await self._blobs(list(wanted.values()))
        self._fill(checkpoint, wanted, stored, listed, str(configurable["checkpoint_id"]))
        return found._replace(checkpoint=cast(Checkpoint, checkpoint))

    async def _blobs(
        self, wanted: Iterable[BlobKey], remember: bool = True
    ) -> dict[BlobKey, tuple[str, bytes]]:
        """The stored values of ``wanted``, from memory or in a query per ``KEYS_AT_ONCE``
        (the caller holds the saver's lock); ``remember``: kept in memory (not a bulk
        read's, which would only push out the threads in flight's)."""
        stored = {key: known for key in wanted if (known := self._recent.get(key))}
        unknown = [key for key in wanted if key not in stored]
        for start in range(0, len(unknown), KEYS_AT_ONCE):  # (SQLite's bound on variables)
            some = unknown[start : start + KEYS_AT_ONCE]
            rows = ", ".join("(?, ?, ?, ?)" for _ in some)
            found = await self.conn.execute_fetchall(
                f"WITH wanted (thread_id, checkpoint_ns, channel, version) AS (VALUES {rows}) "
                "SELECT b.thread_id, b.checkpoint_ns, b.channel, b.version, b.type, b.blob "
                "FROM wanted JOIN blobs b ON b.thread_id = wanted.thread_id AND "
                "b.checkpoint_ns = wanted.checkpoint_ns AND b.channel = wanted.channel "
                "AND b.version = wanted.version",
                [item for key in some for item in key],
            )
            for thread, ns, channel, version, kind, blob in found:
                key = (str(thread), str(ns), str(channel), str(version))
                stored[key] = (kind, blob)
                if remember:
                    self._remember(key, (kind, blob))
        return stored

    def _fill(
        self,
        checkpoint: dict[str, Any],
        wanted: dict[str, BlobKey],
        stored: dict[BlobKey, tuple[str, bytes]],
        listed: bool,
        checkpoint_id: str,
    ) -> None:
        """Put each wanted channel's stored value into the checkpoint; a value the file
        does not hold (of a checkpoint that lists its channels) is a damaged file."""
        values = checkpoint["channel_values"]
        for channel, key in wanted.items():
            if key in stored:
                values[channel] = self.serde.loads_typed(stored[key])
        if listed and (missing := [c for c in wanted if c not in values]):
            thread = next(iter(wanted.values()))[0]
            raise MissingBlobs(
                f"{CHECKPOINTS} is damaged (checkpoint {checkpoint_id} of thread {thread!r} "
                f"names values it does not hold: {', '.join(missing)}): "
                f"{DAMAGED_ADVICE[CHECKPOINTS]}"
            )

    async def alatest_values(self, threads: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Each thread's channel values at its latest checkpoint (the channels written),
        in a few queries for them all (writing a run's outputs reads every thread: one
        ``aget_tuple`` each took 1.6 ms). ``threads``: at most 999, SQLite's oldest bound
        on variables. A thread with pending writes at that checkpoint, or none, is not in
        the result: ``aget_state`` reads it as LangGraph does."""
        await self.setup()
        if not threads:
            return {}
        wanted_threads = ", ".join("(?)" for _ in threads)
        async with self.lock:
            rows = await self.conn.execute_fetchall(
                f"WITH wanted (thread_id) AS (VALUES {wanted_threads}) "
                "SELECT c.thread_id, c.checkpoint_id, c.type, c.checkpoint FROM wanted "
                "JOIN checkpoints c ON c.thread_id = wanted.thread_id AND c.checkpoint_ns = '' "
                "WHERE c.checkpoint_id = (SELECT MAX(m.checkpoint_id) FROM checkpoints m "
                "WHERE m.thread_id = c.thread_id AND m.checkpoint_ns = '') AND NOT EXISTS "
                "(SELECT 1 FROM writes w WHERE w.thread_id = c.thread_id AND "
                "w.checkpoint_ns = '' AND w.checkpoint_id = c.checkpoint_id)",
                list(threads),
            )
            parts = {}
            for thread, checkpoint_id, kind, serialized in rows:
                checkpoint = self.serde.loads_typed((kind, serialized))
                if SPLIT not in checkpoint:  # written whole by an earlier version: none apart
                    checkpoint = {**checkpoint, SPLIT: []}
                parts[str(thread)] = (str(checkpoint_id), *_split(checkpoint, str(thread), ""))
            keys = [key for _, _, wanted, _ in parts.values() for key in wanted.values()]
            stored = await self._blobs(keys, remember=False)
        found = {}
        for thread, (checkpoint_id, checkpoint, wanted, listed) in parts.items():
            self._fill(checkpoint, wanted, stored, listed, checkpoint_id)
            found[thread] = checkpoint["channel_values"]
        return found

    async def adelete_thread(self, thread_id: str) -> None:
        await super().adelete_thread(thread_id)
        if self._threads is not None:
            self._threads = {held for held in self._threads if held[0] != str(thread_id)}
        async with self.lock:
            await self.conn.execute("DELETE FROM blobs WHERE thread_id = ?", (str(thread_id),))
            await self.conn.commit()

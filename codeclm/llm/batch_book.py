"""The batches a run has out at its providers, kept in its store: a process may stop while
they run, and whichever process asks for one of their lines next collects them.

A batch is recorded twice over: before it is created, as its uploaded file (``PENDING`` and
the file id: a process killed between the two steps leaves that, and the next one finds the
batch the provider made of the file, or learns that none was made); then as the batch.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

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

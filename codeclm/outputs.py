"""The run's files, each written atomically (a temp file, then ``os.replace``).

They are derived from the checkpoints, not appended as the run goes, so a crash can
neither truncate them nor write a pair twice: re-running rebuilds them whole.
"""

from __future__ import annotations

import json
import os
import sqlite3
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

from pydantic import BaseModel

from codeclm.config import ConfigError
from codeclm.rows import DatasetRow, DroppedRow, Message, RowMetadata
from codeclm.state import InstructionState

DATASET = "dataset.jsonl"
DROPPED = "dropped.jsonl"
FAILED = "failed.jsonl"
METADATA = "metadata.jsonl"
RUN_JSON = "run.json"
CHECKPOINTS = "checkpoints.sqlite"
CACHE = "llm_cache.sqlite"
SPEND = "spend.sqlite"
"""Every request a model answered, with its tokens: what the run paid (``cost.ledger``)."""
REVIEWS = "reviews.sqlite"
"""A person's reviews of the pool and the pairs (SQLite store; a table in PostgreSQL)."""
EVAL_JSON = "eval.json"
"""An evaluation's record (``codeclm eval``): a folder holds a run or an evaluation."""
RUN_FILES = (DATASET, DROPPED, FAILED, METADATA, RUN_JSON)
"""What a run writes into its folder for people (the stores' files aside)."""


def make_folder(path: Path, flag: str = "--out") -> Path:
    """``path`` as a folder (made with its parents if missing); one line when it cannot be."""
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{flag} {path}: exists and is not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{flag} {path}: cannot create it ({exc.strerror})") from None
    return path


def _plain(row: dict[str, Any] | BaseModel) -> dict[str, Any]:
    """A row as JSON data: a model (``codeclm/records.py``) dumped, a dict as it is."""
    return row.model_dump(mode="json") if isinstance(row, BaseModel) else row


@contextmanager
def naming(path: Path) -> Iterator[None]:
    """An error writing ``path`` names it (a full disk's ``No space left on device`` says
    no file of its own)."""
    try:
        yield
    except OSError as exc:
        if exc.filename is None:
            exc.filename = str(path)
        raise


def remove_empty_outputs(out_dir: Path) -> None:
    """The result files that hold no row, removed: a detached run has not finished them."""
    for name in (DATASET, DROPPED, FAILED):
        path = out_dir / name
        if path.is_file() and path.stat().st_size == 0:
            path.unlink()


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so a reader sees the old file or the new one, never half."""
    with naming(path):
        _write_atomic(path, text)


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; outputs are ordinary files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class JsonlWriter:
    """Rows streamed to a temp file that replaces ``path`` only when all were written.

    For outputs too large to build in memory first (one row per instruction of a run).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        fd, self._tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        self._handle = os.fdopen(fd, "w", encoding="utf-8")
        self.rows = 0

    def write(self, row: dict[str, Any] | BaseModel) -> None:
        with naming(self.path):
            self._handle.write(json.dumps(_plain(row), ensure_ascii=False) + "\n")
        self.rows += 1

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> None:
        try:
            with naming(self.path):
                self._handle.flush()
                os.fsync(self._handle.fileno())
        finally:
            self._handle.close()
        if kind is not None:
            Path(self._tmp).unlink(missing_ok=True)
            return
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(self._tmp, 0o666 & ~umask)
        os.replace(self._tmp, self.path)


def write_jsonl(path: Path, rows: Iterable[dict[str, Any] | BaseModel]) -> int:
    lines = [
        json.dumps(
            row.model_dump(mode="json") if isinstance(row, BaseModel) else row, ensure_ascii=False
        )
        for row in rows
    ]
    write_atomic(path, "".join(f"{line}\n" for line in lines))
    return len(lines)


def write_json(path: Path, data: dict[str, Any] | BaseModel) -> None:
    write_atomic(path, json.dumps(_plain(data), indent=2, ensure_ascii=False) + "\n")


def _provenance(state: InstructionState) -> dict[str, Any]:
    """Where an instruction came from and how it was judged: the fields every row shares."""
    return {
        "metadata": RowMetadata(
            use_case=state.use_case, skills=state.skills, id=state.metadata_id, **state.extra
        ),
        "iteration": state.iteration,
        "scores": state.scores,
        "seed_ids": state.seed_ids,
        "actions": state.actions_applied,
        "basic_instruction": state.basic_instruction,
        "turn_scores": state.turn_scores,
        "improved_turns": state.improved_turns,
    }


def dataset_row(state: InstructionState) -> DatasetRow:
    """A kept pair, with the chat ``messages`` fine-tuning tools read directly."""
    strong = state.response_source == "strong"
    answers = state.answers("strong" if strong else "target") or [""]
    reasoning = state.strong_reasoning if strong else state.target_reasoning
    messages = []
    for text, answer in zip(state.user_turns, answers, strict=False):
        messages += [Message(role="user", content=text), Message(role="assistant", content=answer)]
    return DatasetRow(
        id=state.id,
        instruction=state.instruction,
        response=answers[0],
        response_source=state.response_source,
        **_provenance(state),
        messages=messages,
        target_refused=state.target_refused,
        target_cut=state.target_cut,
        rating=state.rating,
        reasoning=reasoning or None,
    )


def dropped_row(state: InstructionState) -> DroppedRow:
    """An instruction the gap rule never separated (or that failed), with why."""
    return DroppedRow(
        id=state.id,
        status=state.status,
        reason=state.reason,
        instruction=state.instruction,
        follow_ups=state.follow_ups,
        **_provenance(state),
    )


# ---- the run's SQLite files: opened writable, or read-only where the folder is ----------

#: What to do about each damaged file of a run folder.
DAMAGED_ADVICE = {
    CHECKPOINTS: "restore it from a backup, or start the run again in a new --out",
    CACHE: "move it aside: the run then asks again (and pays again for) the replies it held",
    SPEND: "move it aside: the run's cost record then counts only what is paid from now on",
    REVIEWS: "restore it from a backup, or move it aside to start the reviews afresh",
}


def writable(folder: Path) -> bool:
    """Whether this process may write in ``folder`` (a read-only copy or mount: no)."""
    return os.access(folder, os.W_OK)


def sqlite_uri(path: Path, read_only: bool, probe: bool = True) -> str:
    """How to open one of the run's SQLite files: read-only in a folder this process cannot
    write (immutable only when no write-ahead log holds pages the file lacks: SQLite would
    not read them), else as usual.

    ``probe``: a damaged file is a ``ConfigError`` naming it and what to do, found before
    any connection thread starts (a failed aiosqlite connect leaves its thread running, and
    the process would never exit)."""
    if probe and path.exists():
        check_sqlite(path)
    if not read_only:
        return str(path)
    if not path.exists():
        return ":memory:"
    wal = path.with_name(path.name + "-wal")
    frozen = "" if wal.exists() and wal.stat().st_size else "&immutable=1"
    return f"file:{quote(str(path))}?mode=ro{frozen}"


def check_sqlite(path: Path) -> None:
    """A SQLite file that is not one, or is cut short, is one line naming it."""
    header = path.read_bytes()[:100] if path.stat().st_size < 100 else _head(path)
    wal = path.with_name(path.name + "-wal")
    if len(header) == 100 and header.startswith(b"SQLite format 3\x00") and not wal.exists():
        page_size = int.from_bytes(header[16:18], "big") or 65536
        pages = int.from_bytes(header[28:32], "big")
        valid = header[24:28] == header[92:96]  # the size in the header is current
        if valid and pages and path.stat().st_size < page_size * pages:
            size, whole = path.stat().st_size, page_size * pages
            raise _damaged(path, f"cut short: {size:,} of its {whole:,} bytes")
    try:
        connection = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True, timeout=30)
        try:
            connection.execute("SELECT count(*) FROM sqlite_master").fetchall()
            if path.stat().st_size < 64 * 1024**2:  # a small file is read through
                (verdict,) = connection.execute("PRAGMA quick_check(1)").fetchone()
                if verdict != "ok":
                    raise sqlite3.DatabaseError(verdict)
        finally:
            connection.close()
    except sqlite3.OperationalError as exc:
        if not any(word in str(exc) for word in ("readonly", "unable to open", "locked")):
            raise _damaged(path, str(exc)) from None
    except sqlite3.DatabaseError as exc:
        raise _damaged(path, str(exc)) from None


def _head(path: Path) -> bytes:
    with path.open("rb") as file:
        return file.read(100)


async def open_sqlite(path: Path, read_only: bool, table: str, ddl: str, **options: Any) -> Any:
    """An aiosqlite connection to one of the run's files, its table set up (``ddl``); read
    only, a file without the table (written by an older version) reads as empty."""
    import aiosqlite

    uri = sqlite_uri(path, read_only, probe=False)
    connection = await aiosqlite.connect(uri, uri=True, timeout=30, **options)
    if read_only and uri != ":memory:":
        found = await connection.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
        )
        if await found.fetchone() is not None:
            return connection
        await connection.close()
        connection = await aiosqlite.connect(":memory:", **options)
    await connection.execute(ddl)
    await connection.commit()
    return connection


def _damaged(path: Path, why: str) -> ConfigError:
    advice = DAMAGED_ADVICE.get(path.name, "restore it or move it aside")
    return ConfigError(f"{path} is damaged ({why}): {advice}")

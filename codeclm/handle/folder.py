"""A run's or an evaluation's folder: the one place ``run.json`` and ``eval.json`` are read
and written, the folder's kind, and the fingerprint check both kinds share.

A folder holds one run or one evaluation, never both; a record written by another version
or by hand is refused with one line naming the file.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ValidationError

from codeclm.analysis.judge import human_agreement
from codeclm.config import ConfigError, differing_keys
from codeclm.judge_figures import JudgeFigures
from codeclm.outputs import (
    CACHE,
    CHECKPOINTS,
    DAMAGED_ADVICE,
    EVAL_JSON,
    RUN_JSON,
    SPEND,
    make_folder,
    writable,
    write_json,
)
from codeclm.records import EvalRecord, RunRecord
from codeclm.store import redact_url
from codeclm.store import run_name as run_name_of

Kind = Literal["run", "evaluation"]
Record = TypeVar("Record", bound=BaseModel)

log = logging.getLogger(__name__)

_FILES: dict[Kind, str] = {"run": RUN_JSON, "evaluation": EVAL_JSON}
JUDGE_SAMPLE, JUDGE_PEOPLE = "judge_sample.json", "judge_people.jsonl"
"""``codeclm judge``'s keys (the pairs behind a blind sample) and people's ratings of them."""


def _a(kind: Kind) -> str:
    return f"an {kind}" if kind == "evaluation" else f"a {kind}"


def _read(path: Path, model: type[Record], kind: Kind) -> Record:
    try:
        return model.model_validate_json(path.read_bytes())
    except OSError as error:
        raise ConfigError(f"{path}: {error.strerror}") from None
    except ValidationError as error:
        where = ".".join(str(p) for p in error.errors()[0]["loc"])
        reason = error.errors()[0]["msg"]
        raise ConfigError(
            f"{path} is not {_a(kind)} record ({where or 'file'}: {reason})"
        ) from None


@dataclass(frozen=True)
class Folder:
    """A folder that holds (or will hold) one run or one evaluation."""

    path: Path

    def kind(self) -> Kind | None:
        """What the folder holds, by its record; None: nothing yet."""
        for kind, name in _FILES.items():
            if (self.path / name).is_file():
                return kind
        return None

    def expect(self, kind: Kind, flag: str = "--out") -> None:
        """Refuse a path that is a file, or a folder holding the other kind."""
        if self.path.exists() and not self.path.is_dir():
            raise ConfigError(f"{flag} {self.path}: exists and is not a folder")
        held = self.kind()
        if held is not None and held != kind:
            raise ConfigError(f"{self.path} holds {_a(held)}, not {_a(kind)}; use another {flag}")

    def read_run(self) -> RunRecord | None:
        """The run's record, or None when the folder holds none."""
        path = self.path / RUN_JSON
        return _read(path, RunRecord, "run") if path.is_file() else None

    def write_run(self, record: RunRecord) -> None:
        make_folder(self.path)
        threshold = float(record.config.get("threshold") or 0)
        write_json(self.path / RUN_JSON, self._with_people(record, threshold))

    def read_eval(self) -> EvalRecord | None:
        """The evaluation's record, or None when the folder holds none."""
        path = self.path / EVAL_JSON
        return _read(path, EvalRecord, "evaluation") if path.is_file() else None

    def write_eval(self, record: EvalRecord) -> None:
        make_folder(self.path)
        write_json(self.path / EVAL_JSON, self._with_people(record, 0.0))

    def _with_people(self, record: Record, threshold: float) -> Record:
        """The record with what people who judged a sample agreed with (``judge.human``),
        read again each time it is written: later runs of the folder keep it."""
        sample, people = self.path / JUDGE_SAMPLE, self.path / JUDGE_PEOPLE
        if not (sample.is_file() and people.is_file()):
            return record
        judge = getattr(record, "judge", None) or JudgeFigures()  # (a record of before)
        try:
            keys = json.loads(sample.read_text())["keys"]
            rows = [row for row in read_people(people) if row["key"] in keys]
        except (ConfigError, ValueError, KeyError) as exc:  # never the record's failure
            log.warning("people's scores left out of the record: %s", exc)
            return record
        human = human_agreement(keys, rows, threshold)
        return record.model_copy(update={"judge": judge.model_copy(update={"human": human})})

    def file(self, name: str) -> Path:
        return self.path / name

    @property
    def eval_record(self) -> Path:
        """Where the evaluation's record is (for messages)."""
        return self.path / EVAL_JSON


def check_same(
    kind: Kind,
    where: str,
    before: dict[str, Any] | None,
    now: dict[str, Any],
    again: str,
    what: str = "settings",
) -> None:
    """Refuse to continue a run or an evaluation (fingerprinted ``before``) with settings
    or inputs (``now``) that differ: the outputs would mix two configurations. ``again``:
    what the user can do instead (said after the differing keys); ``what``: what the
    fingerprint covers, in words."""
    if before is None or before == now:
        return
    keys = differing_keys(before, now)
    raise ConfigError(
        f"{where} holds {_a(kind)} with different {what} ({', '.join(keys) or 'unknown'}); {again}"
    )


def check_folder(out_dir: Path | None, record: RunRecord | None, writing: bool) -> None:
    """A SQLite run's folder: one that lost its checkpoints while its record says it ran is
    refused (taken as a new run it would replay the cache and say nothing was paid);
    ``writing`` (run, resume, step): a read-only folder is said in one line."""
    if out_dir is None or not out_dir.exists():
        return
    checkpoints = out_dir / CHECKPOINTS
    ran = record is not None and record.counts.instructions > 0
    if ran and not checkpoints.exists():
        raise ConfigError(
            f"{checkpoints} is gone, but {RUN_JSON} records a run: restore the checkpoints "
            "from a backup, or start the run again in a new --out"
        )
    for name in (CHECKPOINTS, CACHE, SPEND):  # emptied: what they held is lost
        path = out_dir / name
        if ran and path.exists() and path.stat().st_size == 0:
            advice = DAMAGED_ADVICE[name]
            raise ConfigError(f"{path} is empty, but {RUN_JSON} records a run: {advice}")
    if writing and not writable(out_dir):
        raise ConfigError(
            f"{out_dir} is read-only: run, resume and step write there (inspect, export, "
            "report and view read it as it is)"
        )


LOCK = ".codeclm.lock"
"""The lock file of a run folder's one working process (its pid inside)."""


class FolderInUse(ConfigError):
    """Another process works on the folder (``folder_lock``)."""


def read_people(path: Path) -> list[dict[str, Any]]:
    """People's scores as ``codeclm judge`` keeps them (none yet: []); a line that is not
    one, said in one line naming it."""
    rows = []
    for number, line in enumerate(path.read_text().splitlines() if path.is_file() else [], 1):
        try:
            row = json.loads(line)
            float(row["score_a"]), float(row["score_b"]), str(row["key"]), str(row["judge"])
        except (ValueError, KeyError, TypeError):
            raise ConfigError(f"{path}:{number}: not a score line codeclm judge wrote") from None
        rows.append(row)
    return rows


@contextmanager
def folder_lock(out_dir: Path) -> Iterator[None]:
    """Hold the run folder for this process while it works on it: a second ``run``,
    ``resume``, ``step`` or ``eval`` on the folder is refused in one line naming this one. The
    operating system lets go of the lock when the process ends, even by kill -9; the
    read-only commands never take it. (A PostgreSQL run is shared by ``codeclm worker``
    processes by design: its store's leases keep them apart.)"""
    created = not out_dir.exists()
    make_folder(out_dir)
    path = out_dir / LOCK
    handle = path.open("a+", encoding="utf-8")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise FolderInUse(
                f"{out_dir} is in use by codeclm {holder}: wait for it to end (or stop it), "
                "or use another --out; what only reads it (inspect, report, view, export) "
                "works meanwhile"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}")
        handle.flush()
        yield
    finally:
        handle.close()  # (closing lets go of the lock)
        if created and [p.name for p in out_dir.iterdir()] == [LOCK]:  # nothing else came
            path.unlink(missing_ok=True)
            out_dir.rmdir()


def same_store(
    folder: Folder, record: RunRecord | None, store: str | None, run_name: str | None
) -> None:
    """A folder names the store and run it holds: ``--store``/``--run`` may repeat them
    (the URL with its password), never name others."""
    if record is None:
        return
    if store is not None and redact_url(store) != record.store:
        kept = record.store or "its folder"
        raise ConfigError(
            f"{folder.path} holds a run kept in {kept}, not in {redact_url(store)}; "
            "drop --store, or give the run's own"
        )
    if run_name is not None and record.run_name and run_name_of(run_name) != record.run_name:
        raise ConfigError(
            f"{folder.path} holds the run {record.run_name!r}, not {run_name!r}; drop --run"
        )

"""A damaged or read-only run folder (issue #32): read-only commands work on a read-only
folder, a command that writes says so in one line, and every damaged store file is one
line naming it and what to do: never a traceback, never a hang."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from codeclm.bench.mock_llm import MockLLM
from tests.conftest import run_cli


@pytest.fixture
def finished(mock_llm: MockLLM, seeds_file: Path, tmp_path: Path) -> Path:
    out = tmp_path / "run"
    assert run_cli(seeds_file, mock_llm, out, instructions=6, metadata=3) == 0
    return out


def _codeclm(*args: str) -> subprocess.CompletedProcess[str]:
    """A command in its own process: a hang is a failure (the timeout), not a stuck suite."""
    env = os.environ.copy()
    return subprocess.run(
        [sys.executable, "-m", "codeclm", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def _damage(path: Path, kind: str) -> None:
    size = path.stat().st_size
    if kind == "truncated":
        with path.open("r+b") as file:
            file.truncate(size // 2)
    elif kind == "random bytes":
        path.write_bytes(os.urandom(size))
    else:
        path.write_bytes(b"")


@pytest.mark.parametrize("kind", ["truncated", "random bytes", "zero bytes"])
@pytest.mark.parametrize("name", ["checkpoints.sqlite", "llm_cache.sqlite", "spend.sqlite"])
def test_a_damaged_store_file_is_one_line_naming_it(
    finished: Path, tmp_path: Path, name: str, kind: str
) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(finished, copy)
    for extra in copy.glob("*.sqlite-*"):  # the WAL's pages would mend the damage
        extra.unlink()
    _damage(copy / name, kind)
    for command in (["inspect", str(copy)], ["resume", str(copy)]):
        done = _codeclm(*command)
        err = done.stderr.strip()
        assert done.returncode == 2 and len(err.splitlines()) == 1, (command, err)
        assert "Traceback" not in err and str(copy / name) in err, err
        assert ("damaged" if kind != "zero bytes" else "is empty, but run.json") in err, err


@pytest.fixture
def read_only(finished: Path, tmp_path: Path) -> Iterator[Path]:
    """The finished run seen through a read-only bind mount (root only: the tests run as
    root in CI; elsewhere skipped)."""
    mount = tmp_path / "read-only"
    mount.mkdir()
    made = subprocess.run(["mount", "--bind", str(finished), str(mount)], capture_output=True)
    if made.returncode != 0:
        pytest.skip("a read-only bind mount needs root")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(mount)], check=True)
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_a_read_only_folder_is_read_and_never_written(read_only: Path, tmp_path: Path) -> None:
    assert not os.access(read_only, os.W_OK)
    done = _codeclm("inspect", str(read_only))
    assert done.returncode == 0 and "6 instructions" in done.stdout, done.stderr
    out = tmp_path / "pairs.jsonl"
    done = _codeclm("export", str(read_only), "--format", "chat", "--out", str(out))
    assert done.returncode == 0 and len(out.read_text().splitlines()) > 0, done.stderr
    done = _codeclm("report", str(read_only), "--out", str(tmp_path / "report"))
    assert done.returncode == 0 and (tmp_path / "report" / "report.md").exists(), done.stderr
    done = _codeclm("resume", str(read_only))
    err = done.stderr.strip()
    assert done.returncode == 2 and len(err.splitlines()) == 1 and "read-only" in err, err
    view = subprocess.Popen(
        [sys.executable, "-m", "codeclm", "view", str(read_only), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert view.stdout is not None
        assert "?token=" in view.stdout.readline()
    finally:
        view.terminate()
        view.communicate(timeout=10)


def test_a_read_only_copy_reads_what_its_write_ahead_log_holds_and_older_files(
    finished: Path, tmp_path: Path
) -> None:
    """Read-only, a file whose write-ahead log holds pages is read with them (never a
    frozen older state), and a ledger written before the batch book reads as empty."""
    import sqlite3

    from codeclm.outputs import sqlite_uri

    path = tmp_path / "wal.sqlite"
    writer = sqlite3.connect(path)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("PRAGMA wal_autocheckpoint=0")
    writer.execute("CREATE TABLE t (x)")
    writer.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(100)])
    writer.commit()  # the rows are in the WAL only (the writer stays open)
    reader = sqlite3.connect(sqlite_uri(path, read_only=True), uri=True)
    assert reader.execute("SELECT count(*) FROM t").fetchone() == (100,)
    reader.close()
    writer.close()
    old = tmp_path / "old"
    shutil.copytree(finished, old)
    ledger = sqlite3.connect(old / "spend.sqlite")
    ledger.execute("DROP TABLE batches")  # as a version before the batch book wrote it
    ledger.commit()
    ledger.close()
    import asyncio

    from codeclm.store.batch_book import SqliteBatchBook

    os.chmod(old, 0o555)  # (root writes anyway: the read-only mode is what is tested)
    try:

        async def listed() -> int:
            book = await SqliteBatchBook(old / "spend.sqlite").open(read_only=True)
            try:
                return len(await book.out("http://127.0.0.1:9/v1"))
            finally:
                await book.close_book()

        assert asyncio.run(listed()) == 0
    finally:
        os.chmod(old, 0o755)

"""The checkpoint store: each channel's value written once per version, compressed, and
every checkpoint still whole when read (history, step, fork); runs checkpointed whole by
earlier versions resume and step as before (issues #32, item 11, and #33, item 5)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from codeclm.bench.mock_llm import MockLLM, mixed_rule
from codeclm.cli import main
from codeclm.graph import thread_config
from codeclm.handle import RunHandle
from codeclm.outputs import CHECKPOINTS
from tests.conftest import mock_args, read_jsonl, run_cli

SETTINGS = {"instructions": 12, "metadata": 4, "concurrency": 4, "seed": 5, "backoff": 0}

WHOLE_CHECKPOINTS = """
import sys
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from codeclm.state.serde import CompactSerializer
from codeclm.store.blobs import SplitBlobsSaver
SplitBlobsSaver.aput = AsyncSqliteSaver.aput  # as codeclm 0.x wrote them: whole, plain
CompactSerializer.dumps_typed = JsonPlusSerializer.dumps_typed
from codeclm.cli import main
from codeclm.graph import thread_config
from codeclm.handle import RunHandle
sys.exit(main(sys.argv[1:]))
"""


def _json(capsys: pytest.CaptureFixture[str], argv: list[str]) -> dict:
    capsys.readouterr()
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_a_value_is_stored_once_per_version_and_every_checkpoint_reads_whole(
    mock_llm: MockLLM, seeds_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mock_llm.judge_rule = lambda instruction: (5, 5)  # dropped after 2 iterations: 5 steps
    out = tmp_path / "run"
    assert run_cli(seeds_file, mock_llm, out, instructions=2, metadata=2, max_iterations=2) == 0
    thread = read_jsonl(out / "dropped.jsonl")[0]["id"]
    with sqlite3.connect(out / CHECKPOINTS) as db:
        stored = dict(
            db.execute(
                "SELECT channel, count(*) FROM blobs WHERE thread_id = ? GROUP BY channel",
                (thread,),
            ).fetchall()
        )
        whole = db.execute(
            "SELECT count(*) FROM checkpoints WHERE thread_id = ?", (thread,)
        ).fetchone()[0]
    assert whole >= 6
    # written once though every checkpoint holds them; rewritten only where a step changed it
    assert stored["basic_instruction"] == 1 and stored["candidate_actions"] == 1
    assert stored["instruction"] == 2, "the first, then the improved instruction"

    history = _json(capsys, ["inspect", str(out), thread, "--json"])["history"]
    assert [step["nodes"] for step in history] == [
        ["answer"],
        ["judge"],
        ["improve"],
        ["answer"],
        ["judge"],
    ]
    # what a step did not change is still in its checkpoint, as LangGraph wrote it
    snapshots = asyncio.run(_history(out, thread))[1:]  # (after the input's)
    assert len(snapshots) == whole - 1
    for values in snapshots:
        assert values["instruction"] and values["basic_instruction"], values.keys()
        assert values["candidate_actions"] and values["metadata_id"]
    assert snapshots[0]["instruction"] != snapshots[-1]["instruction"]


async def _history(out: Path, thread: str) -> list[dict[str, Any]]:
    """The thread's states, oldest first, as LangGraph reads them back."""
    async with RunHandle.finished(out).read() as view:
        graph = view.instructions
        return [s.values async for s in graph.aget_state_history(thread_config(thread))][::-1]


def test_a_process_writing_alone_knows_new_threads_without_reading_the_file(
    mock_llm: MockLLM, seeds_file: Path, tmp_path: Path
) -> None:
    """Held by its lock, a run's saver reads a thread it does not hold as new without a
    trip to the file; the threads the file held when it opened, and those written since,
    read back as they are."""
    from codeclm.store.sqlite import open_checkpointer

    out = tmp_path / "run"
    assert run_cli(seeds_file, mock_llm, out, instructions=2, metadata=2) == 0
    thread = read_jsonl(out / "dataset.jsonl")[0]["id"]

    async def reads() -> tuple[bool, bool, bool, int]:
        async with open_checkpointer(out / CHECKPOINTS) as saver:
            await saver.write_alone()
            trips = 0
            execute = saver.conn._execute

            async def counted(fn: Any, *args: Any, **kwargs: Any) -> Any:
                nonlocal trips
                trips += 1
                return await execute(fn, *args, **kwargs)

            saver.conn._execute = counted  # type: ignore[method-assign]
            held = await saver.aget_tuple(thread_config(thread)) is not None
            before = trips
            new = await saver.aget_tuple(thread_config("never-written")) is None
            asked = trips - before
            found = await saver.aget_tuple(thread_config(thread))
            assert found is not None
            copy, versions = found.checkpoint, found.checkpoint["channel_versions"]
            written = await saver.aput(thread_config("written-now"), copy, found.metadata, versions)
            again = await saver.aget_tuple(written) is not None
            return held, new, again, asked

    held, new, again, asked = asyncio.run(reads())
    assert held and new and again
    assert asked == 0, "a thread the file does not hold is known new without asking it"


def test_step_forks_a_finished_thread_from_its_first_checkpoint(
    mock_llm: MockLLM, seeds_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mock_llm.judge_rule = lambda instruction: (5, 5)
    out = tmp_path / "run"
    assert run_cli(seeds_file, mock_llm, out, instructions=2, metadata=2, max_iterations=2) == 0
    thread = read_jsonl(out / "dropped.jsonl")[0]["id"]
    first = _json(capsys, ["inspect", str(out), thread, "--json"])["history"][0]["checkpoint"]

    capsys.readouterr()
    argv = ["step", str(out), thread, "--from", first, "--until", "end", "--json"]
    assert main(argv) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    # the judge, improve, answers and judge again, answered from the cache as first run
    assert [list(e["ran"]) for e in events] == [["judge"], ["improve"], ["answer"], ["judge"]]
    assert events[-1]["status"] == "dropped" and events[-1]["next"] == ["end"]


def test_every_thread_read_together_is_its_state_as_langgraph_reads_it(
    mock_llm: MockLLM, seeds_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The outputs read the threads' latest values many at a time, straight from the
    store: for every thread (kept, dropped, forked by ``step``) they are ``aget_state``'s
    values; a thread with writes pending at its latest checkpoint is left to it."""
    mock_llm.judge_rule = mixed_rule
    out = tmp_path / "run"
    assert run_cli(seeds_file, mock_llm, out, instructions=6, metadata=2, max_iterations=2) == 0
    forked = read_jsonl(out / "dataset.jsonl")[0]["id"]
    first = _json(capsys, ["inspect", str(out), forked, "--json"])["history"][0]["checkpoint"]
    assert main(["step", str(out), forked, "--from", first, "--until", "judge", "--json"]) == 0

    async def compare() -> tuple[int, set[str], str]:
        async with RunHandle.finished(out).read() as view:
            graph = view.instructions
            saver = graph.checkpointer
            ids = [t async for t in _thread_ids(saver)]
            pending = ids[1]
            latest = await saver.aget_tuple(thread_config(pending))
            await saver.aput_writes(latest.config, [("__error__", "x")], "task-1")
            together = await saver.alatest_values(ids)
            for thread in ids:
                state = (await graph.aget_state(thread_config(thread))).values
                if thread in together:
                    keys = graph.stream_channels_asis
                    values = together[thread]
                    assert {k: values[k] for k in keys if k in values} == state, thread
            return len(ids), set(ids) - set(together), pending

    threads, left, pending = asyncio.run(compare())
    assert threads >= 7 and left == {pending}, (threads, left)


async def _thread_ids(saver: Any) -> Any:
    cursor = await saver.conn.execute("SELECT DISTINCT thread_id FROM checkpoints ORDER BY 1")
    for (thread,) in await cursor.fetchall():
        yield thread


def _run(argv: list[str], whole: bool) -> subprocess.Popen[str]:
    head = [sys.executable, "-c", WHOLE_CHECKPOINTS] if whole else [sys.executable, "-m", "codeclm"]
    return subprocess.Popen(
        [*head, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=os.environ.copy(),
    )  # fmt: skip


def test_a_run_checkpointed_whole_by_an_earlier_version_resumes_and_steps(
    mock_llm: MockLLM, seeds_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mock_llm.judge_rule = mixed_rule
    baseline = tmp_path / "baseline"
    done = _run(["run", str(seeds_file), *mock_args(mock_llm, baseline, **SETTINGS)], False)
    assert done.wait(timeout=120) == 0
    calls = mock_llm.received

    mock_llm.received = 0
    mock_llm.stop_at, mock_llm.stop_signal = calls // 2, signal.SIGINT
    old = tmp_path / "old"
    stopped = _run(["run", str(seeds_file), *mock_args(mock_llm, old, **SETTINGS)], True)
    mock_llm.stop_pid = stopped.pid
    assert stopped.wait(timeout=120) == 130
    mock_llm.stop_at = None
    with sqlite3.connect(old / CHECKPOINTS) as db:
        assert db.execute("SELECT count(*) FROM blobs").fetchone() == (0,), "all whole"

    resumed = _run(["resume", str(old), "--quiet"], False)
    _, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, err
    assert (old / "dataset.jsonl").read_text() == (baseline / "dataset.jsonl").read_text()

    # a thread begun whole and finished split: its history reads through, and it forks
    listing = _json(capsys, ["inspect", str(old), "--json"])
    for thread in (t["id"] for t in listing["threads"]):
        for values in asyncio.run(_history(old, thread))[1:]:
            assert values["instruction"] and values["candidate_actions"], thread
    thread = listing["threads"][0]["id"]
    first = _json(capsys, ["inspect", str(old), thread, "--json"])["history"][0]["checkpoint"]
    capsys.readouterr()
    assert main(["step", str(old), thread, "--from", first, "--until", "end", "--json"]) == 0


def test_a_checkpoint_naming_a_value_the_store_lost_is_one_line(
    mock_llm: MockLLM, seeds_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert run_cli(seeds_file, mock_llm, out, instructions=2, metadata=2) == 0
    with sqlite3.connect(out / CHECKPOINTS) as db:
        db.execute("DELETE FROM blobs WHERE channel = 'instruction' AND thread_id != 'prepare'")
    capsys.readouterr()
    assert main(["inspect", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "checkpoints.sqlite is damaged" in err
    assert "names values it does not hold: instruction" in err

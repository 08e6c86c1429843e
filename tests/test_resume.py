"""Resume after kill -9 or Ctrl-C at any point: nothing lost, nothing written twice, and no
completed LLM call sent again (the response cache answers it; only calls in flight repeat)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from codeclm.bench.mock_llm import MockLLM, mixed_rule
from codeclm.cli import main
from tests.conftest import mock_args, read_jsonl, run_cli

SETTINGS = {"instructions": 24, "metadata": 8, "concurrency": 4, "seed": 3, "backoff": 0}


def _start(mock: MockLLM, seeds: Path, out: Path) -> subprocess.Popen[str]:
    args = [sys.executable, "-m", "codeclm", "run", str(seeds), *mock_args(mock, out, **SETTINGS)]
    return subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy()
    )


def _finish(mock: MockLLM, seeds: Path, out: Path) -> None:
    proc = _start(mock, seeds, out)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err


@pytest.fixture
def baseline(mock_llm: MockLLM, seeds_file: Path, tmp_path: Path) -> tuple[str, int]:
    """The uninterrupted run: its dataset and how many calls it needed."""
    mock_llm.judge_rule = mixed_rule
    _finish(mock_llm, seeds_file, tmp_path / "baseline")
    dataset = (tmp_path / "baseline" / "dataset.jsonl").read_text()
    assert len(dataset.splitlines()) >= 8 and read_jsonl(tmp_path / "baseline" / "dropped.jsonl")
    return dataset, len(mock_llm.requests)


def _reset(mock: MockLLM) -> None:
    with mock.lock:
        mock.requests.clear()
        mock.received = 0
        mock.stop_at = None


@pytest.mark.parametrize("fraction", [0.1, 0.25, 0.5, 0.75, 0.95])
def test_kill_9_then_rerun_loses_nothing_and_repeats_only_calls_in_flight(
    mock_llm: MockLLM,
    seeds_file: Path,
    tmp_path: Path,
    baseline: tuple[str, int],
    fraction: float,
) -> None:
    dataset, total_calls = baseline
    _reset(mock_llm)
    out = tmp_path / "killed"
    mock_llm.stop_at = int(total_calls * fraction)
    proc = _start(mock_llm, seeds_file, out)
    mock_llm.stop_pid = proc.pid
    proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL
    mock_llm.stop_at = None
    _finish(mock_llm, seeds_file, out)

    assert (out / "dataset.jsonl").read_text() == dataset, "same pairs, none lost, none twice"
    # Only requests in flight at the kill (sent, reply not yet saved) may be sent again:
    # at most --concurrency of them, since a reply is saved before its slot is released.
    extra = len(mock_llm.requests) - total_calls
    assert 0 <= extra <= SETTINGS["concurrency"], f"{extra} calls sent again"


def test_ctrl_c_stops_cleanly_writes_what_is_done_and_resume_finishes(
    mock_llm: MockLLM, seeds_file: Path, tmp_path: Path, baseline: tuple[str, int]
) -> None:
    dataset, total_calls = baseline
    _reset(mock_llm)
    out = tmp_path / "interrupted"
    mock_llm.stop_at = int(total_calls * 0.6)
    mock_llm.stop_signal = signal.SIGINT
    proc = _start(mock_llm, seeds_file, out)
    mock_llm.stop_pid = proc.pid
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert err.strip().endswith(f"Resume with: codeclm resume {out}"), err
    assert "Traceback" not in err
    partial = (out / "dataset.jsonl").read_text().splitlines()
    assert partial and set(partial) < set(dataset.splitlines()), "finished pairs flushed"

    mock_llm.stop_at = None
    done = subprocess.run(
        [sys.executable, "-m", "codeclm", "resume", str(out), "--quiet"],
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ.copy(),
    )
    assert done.returncode == 0, done.stderr
    assert (out / "dataset.jsonl").read_text() == dataset
    assert len(mock_llm.requests) - total_calls <= SETTINGS["concurrency"]


def test_no_cache_sends_every_request_again(
    mock_llm: MockLLM, seeds_file: Path, tmp_path: Path
) -> None:
    from tests.conftest import run_cli

    out = tmp_path / "out"
    assert run_cli(seeds_file, mock_llm, out, instructions=2, metadata=2) == 0
    first = len(mock_llm.requests)
    # a fresh folder replaying the same requests: answered from a copied cache, or not
    cached, bypassed = tmp_path / "cached", tmp_path / "bypassed"
    for folder in (cached, bypassed):
        folder.mkdir()
        (folder / "llm_cache.sqlite").write_bytes((out / "llm_cache.sqlite").read_bytes())
    assert run_cli(seeds_file, mock_llm, cached, instructions=2, metadata=2) == 0
    assert len(mock_llm.requests) == first, "every request answered from the cache"
    assert run_cli(seeds_file, mock_llm, bypassed, instructions=2, metadata=2, no_cache=True) == 0
    assert len(mock_llm.requests) == 2 * first
    assert (cached / "dataset.jsonl").read_text() == (out / "dataset.jsonl").read_text()


def test_a_thread_stopped_after_its_input_checkpoint_counts_as_not_started(
    tmp_path: Path,
) -> None:
    """A stop between a thread's input checkpoint and its first step's (the start task's
    writes are not stored: the cache makes it free to run again) leaves a checkpoint that
    holds only reducer defaults. Outputs and inspect treat it as not started, not as a
    state that fails to validate; running it again starts it from its input."""
    import asyncio
    from typing import Any

    from codeclm.config import RunConfig
    from codeclm.debug.inspection import thread_history
    from codeclm.graph import build_instruction_graph, retry_policy, thread_config
    from codeclm.handle import Folder, RunHandle
    from codeclm.handle.results import write_outputs
    from codeclm.state import BasicInstruction, InstructionState
    from codeclm.store import StoreSpec
    from codeclm.store.sqlite import TimedSqliteSaver, open_checkpointer

    first = InstructionState(
        id="t1",
        metadata_id="m1",
        use_case="u",
        skills=[],
        seed_ids=[],
        candidate_actions=[],
        basic_instruction="Say hi.",
        instruction="Say hi.",
    )
    out = tmp_path / "run"
    out.mkdir()

    class Crash(RuntimeError):
        """The process dies here."""

    class CrashAfterInput(TimedSqliteSaver):
        async def aput(self, *args: Any, **kwargs: Any) -> Any:
            if self.checkpoints:  # the second checkpoint: the first step's
                raise Crash
            return await super().aput(*args, **kwargs)

    async def scenario() -> tuple[int, dict[str, Any], tuple[str, ...]]:
        async with open_checkpointer(out / "checkpoints.sqlite") as saver:
            saver.__class__ = CrashAfterInput
            saver.cache_answers_redo = True
            graph = build_instruction_graph(retry_policy(1)).compile(checkpointer=saver)
            with pytest.raises(Crash):
                await graph.ainvoke(first, thread_config("t1"), durability="sync")
            assert (await graph.aget_state(thread_config("t1"))).values.get("id") is None
            item = BasicInstruction(id="t1", metadata_id="m1", index=0, instruction="Say hi.")
            totals = await write_outputs(graph, [item], out)
            saver.__class__ = TimedSqliteSaver  # the next run: the thread goes on from its input
            async for _ in graph.astream(
                None, thread_config("t1"), durability="sync", interrupt_before=["answer"]
            ):
                pass
            resumed = await graph.aget_state(thread_config("t1"))
        return totals.counts.instructions, resumed.values, resumed.next

    counted, values, next_nodes = asyncio.run(scenario())
    assert counted == 0  # left out, as a thread never started
    assert (out / "dataset.jsonl").read_text() == ""
    assert values["id"] == "t1" and next_nodes == ("answer",)
    handle = RunHandle(StoreSpec(), Folder(out), RunConfig())  # a folder with checkpoints only
    detail = asyncio.run(thread_history(handle, "t1"))
    assert detail.status == "running" and detail.state is not None and detail.state["id"] == "t1"


def test_seeds_changed_after_a_kill_are_refused_naming_the_first_change(
    mock_llm: MockLLM, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The stored seeds are the run's: an edited seed file is refused (run or resume),
    naming the first changed seed, never silently ignored."""
    from tests.conftest import write_seeds

    seeds = write_seeds(
        tmp_path / "seeds.jsonl", [f"How do I grow tomatoes, part {i}?" for i in range(4)]
    )
    out = tmp_path / "out"
    assert run_cli(seeds, mock_llm, out, instructions=4, metadata=2) == 0
    asked = len(mock_llm.requests)
    write_seeds(seeds, ["How do I grow tomatoes, part 0?", "How do I bake bread?", "c", "d"])
    capsys.readouterr()
    assert run_cli(seeds, mock_llm, out, instructions=4, metadata=2) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "seed 2 (s1)" in err and "bake bread" in err, err
    assert main(["resume", str(out)]) == 2
    assert "the seeds differ" in capsys.readouterr().err
    assert len(mock_llm.requests) == asked, "nothing asked"
    write_seeds(seeds, [f"How do I grow tomatoes, part {i}?" for i in range(5)])
    assert run_cli(seeds, mock_llm, out, instructions=4, metadata=2) == 2
    assert "5 now, 4 then" in capsys.readouterr().err


def test_a_second_process_on_a_folder_in_use_is_refused_naming_the_first(
    mock_llm: MockLLM, tmp_path: Path
) -> None:
    """One process per run folder: a second ``run`` (or ``resume``) exits non-zero in one
    line naming the first, while the first still works (it never waits for it); the
    first's outputs are an uninterrupted run's; the lock goes with the process, even
    killed by kill -9."""
    import threading

    from tests.conftest import write_seeds

    seeds = write_seeds(
        tmp_path / "seeds.jsonl", [f"How do I fix leak number {i}?" for i in range(4)]
    )
    settings = dict(instructions=8, metadata=2)
    alone = tmp_path / "alone"
    assert run_cli(seeds, mock_llm, alone, **settings) == 0
    release = threading.Event()
    mock_llm.hold = release  # the first run's calls wait until the checks are done
    out = tmp_path / "out"
    args = [
        sys.executable,
        "-m",
        "codeclm",
        "run",
        str(seeds),
        *mock_args(mock_llm, out, **settings),
    ]
    working = threading.Event()  # the first run's first request: it holds the folder
    mock_llm.stop_on = lambda request: working.set() or False  # (never stops anything)
    first = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert working.wait(timeout=120), first.stderr
        second = subprocess.run(args, capture_output=True, text=True, timeout=60)
        assert first.poll() is None, "refused while the first works: it did not wait for it"
        err = second.stderr.strip()
        assert second.returncode == 2 and len(err.splitlines()) == 1, err
        assert f"pid {first.pid}" in err and "in use" in err, err
        resumed = subprocess.run(
            [sys.executable, "-m", "codeclm", "resume", str(out)], capture_output=True, text=True
        )
        assert resumed.returncode == 2 and "in use" in resumed.stderr
        mock_llm.stop_on = None
        release.set()
        assert first.wait(timeout=120) == 0, first.stderr
    finally:
        release.set()
        if first.poll() is None:
            first.kill()
    assert (out / "dataset.jsonl").read_text() == (alone / "dataset.jsonl").read_text()
    # killed with -9, its lock goes with it
    mock_llm.stop_at, mock_llm.stop_signal = mock_llm.received + 3, signal.SIGKILL
    third = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    mock_llm.stop_pid = third.pid
    out.joinpath("dataset.jsonl").unlink()
    third.wait(timeout=60)
    mock_llm.stop_at = None
    assert subprocess.run(args, capture_output=True, text=True, timeout=120).returncode == 0

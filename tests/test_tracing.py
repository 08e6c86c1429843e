"""LangSmith tracing, the LangGraph convention (``LANGSMITH_TRACING=true``), checked offline
against a loopback endpoint that keeps what the tracer sends (issue #24)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import langsmith.run_trees
import langsmith.utils
import pytest
from langchain_core.tracers.langchain import wait_for_all_tracers

from codeclm.bench.mock_langsmith import MockLangSmith
from codeclm.bench.mock_llm import MockLLM
from tests.conftest import mock_args, run_cli, write_seeds


def _forget_langsmith_settings() -> None:
    """langsmith reads its environment once (cached) and keeps one client: start afresh."""
    langsmith.utils.get_env_var.cache_clear()
    langsmith.run_trees._CLIENT = None


@pytest.fixture
def tracer(monkeypatch: pytest.MonkeyPatch) -> Iterator[MockLangSmith]:
    server = MockLangSmith().start()
    monkeypatch.setenv("LANGSMITH_TRACING", "true")
    monkeypatch.setenv("LANGSMITH_ENDPOINT", server.url)
    monkeypatch.setenv("LANGSMITH_API_KEY", "lsv2-test-key")
    monkeypatch.setenv("LANGSMITH_PROJECT", "codeclm-tests")
    _forget_langsmith_settings()
    yield server
    _forget_langsmith_settings()
    server.stop()


def test_a_traced_run_shows_every_node_and_every_model_call_with_role_and_tokens(
    tracer: MockLangSmith, mock_llm: MockLLM, tmp_path: Path
) -> None:
    texts = [f"How do I reset password {i}?" for i in range(4)]
    seeds = write_seeds(tmp_path / "seeds.jsonl", texts)
    mock_llm.rate_limit_next = 1  # one call asked again after a 429: the trace says so
    assert run_cli(seeds, mock_llm, tmp_path / "out", instructions=4, metadata=2) == 0
    wait_for_all_tracers()
    runs = tracer.runs()
    by_id = {run["id"]: run for run in runs}
    calls = [run for run in runs if run.get("run_type") == "llm"]
    paid = [c for c in calls if not c["extra"]["metadata"]["cached"]]
    assert len(paid) == len(mock_llm.requests) - 1, "every call the server answered"
    nodes = {by_id[c["parent_run_id"]]["name"] for c in calls}
    assert {"encode_seed", "write_rubrics", "decode", "answer", "judge"} <= nodes
    for call in paid:
        metadata = call["extra"]["metadata"]
        assert metadata["codeclm_role"] in ("strong", "target")
        assert metadata["ls_model_name"] in ("strong-model", "target-model")
        tokens = call["outputs"]["usage_metadata"]
        assert tokens["input_tokens"] > 0 and tokens["output_tokens"] > 0
        assert call["end_time"] and call["start_time"], "its latency"
    again = [c for c in calls if c["extra"]["metadata"]["asked_again"]]
    assert len(again) == 1 and "429" in again[0]["extra"]["metadata"]["asked_again"][0]
    assert all("lsv2-test-key" not in str(run) for run in runs)


def test_unreachable_tracing_is_said_and_holds_the_exit_at_most_5_seconds(
    mock_llm: MockLLM, tmp_path: Path
) -> None:
    """An endpoint that cannot be reached: the start says where traces go, the end says in
    one line what could not be sent, and the exit waits no longer than 5 s for it."""
    import os
    import socket
    import subprocess
    import sys
    import time

    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there
    env = {
        **os.environ,
        "LANGSMITH_TRACING": "true",
        "LANGSMITH_ENDPOINT": f"http://127.0.0.1:{port}",
        "LANGSMITH_API_KEY": "lsv2-test-key",
    }
    seeds = write_seeds(tmp_path / "seeds.jsonl", ["How do I reset my password?"])
    args = [sys.executable, "-m", "codeclm", "run", str(seeds)]
    args += mock_args(mock_llm, tmp_path / "out", instructions=2, metadata=1)
    proc = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    assert proc.stdout is not None
    finished_at = None
    for line in proc.stdout:
        if "codeclm run finished" in line:
            finished_at = time.monotonic()
    proc.wait(timeout=60)
    assert finished_at is not None and proc.returncode == 0
    # at most 5 s of flushing (LangSmith's own retries held it about a minute): a bound
    # wide enough for a busy machine's interpreter exit
    assert time.monotonic() - finished_at <= 5 + 15, "the exit held at most about 5 s"
    err = proc.stderr.read() if proc.stderr else ""
    assert f"tracing to http://127.0.0.1:{port}" in err
    assert "Failed to multipart" not in err and len(err) < 2000, err

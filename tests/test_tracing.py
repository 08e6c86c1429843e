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
from tests.conftest import run_cli, write_seeds


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

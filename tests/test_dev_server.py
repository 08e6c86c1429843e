"""`langgraph dev` serves the graph offline on loopback; the SDK drives one instruction:
stream node updates, interrupt before the judge, edit state, resume."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from codeclm.bench.mock_llm import STRONG_MODEL, TARGET_MODEL, MockLLM
from codeclm.state import InstructionState

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def dev_server(mock_llm: MockLLM, tmp_path: Path) -> Iterator[str]:
    langgraph = Path(sys.executable).with_name("langgraph")
    if not langgraph.exists():
        langgraph = Path(shutil.which("langgraph") or "langgraph")
    config = tmp_path / "codeclm.toml"
    config.write_text(
        f'[strong]\nmodel = "{STRONG_MODEL}"\nbase_url = "{mock_llm.base_url}"\n'
        f'[target]\nmodel = "{TARGET_MODEL}"\nbase_url = "{mock_llm.base_url}"\n'
    )
    port = _free_port()
    env = {
        **os.environ,
        "CODECLM_CONFIG": str(config),
        "LANGGRAPH_CLI_NO_ANALYTICS": "1",
        "LANGSMITH_TRACING": "false",
    }
    log = (tmp_path / "server.log").open("w")
    proc = subprocess.Popen(
        [
            str(langgraph),
            "dev",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-browser",
            "--no-reload",
            "--config",
            str(ROOT / "langgraph.json"),
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/ok", timeout=2) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(
                    "langgraph dev did not start:\n" + (tmp_path / "server.log").read_text()
                )
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_the_sdk_streams_interrupts_edits_and_resumes_one_instruction(
    dev_server: str, mock_llm: MockLLM
) -> None:
    from langgraph_sdk import get_client

    mock_llm.judge_rule = lambda text: (9, 2) if "edited" in text else (5, 5)
    start = InstructionState(
        id="demo-1",
        metadata_id="m",
        use_case="advice",
        skills=["cooking"],
        seed_ids=["s"],
        candidate_actions=["add a budget"],
        basic_instruction="Plan a dinner.",
        instruction="Plan a dinner.",
    ).model_dump(mode="json")

    async def drive() -> tuple[list[str], list[str], dict]:
        client = get_client(url=dev_server)
        thread = await client.threads.create()
        first: list[str] = []
        async for part in client.runs.stream(
            thread["thread_id"],
            "instruction",
            input=start,
            stream_mode="updates",
            interrupt_before=["judge"],
        ):
            if part.event == "updates":
                first += list(part.data)
        state = await client.threads.get_state(thread["thread_id"])
        assert state["next"] == ["judge"]
        await client.threads.update_state(
            thread["thread_id"],
            {"instruction": "Plan a dinner (edited)."},
            as_node="answer",
        )
        second: list[str] = []
        async for part in client.runs.stream(
            thread["thread_id"], "instruction", input=None, stream_mode="updates"
        ):
            if part.event == "updates":
                second += list(part.data)
        final = await client.threads.get_state(thread["thread_id"])
        return first, second, final["values"]

    first, second, values = asyncio.run(drive())
    assert first == ["answer", "__interrupt__"]
    assert second == ["judge"]
    assert values["status"] == "kept" and values["response_source"] == "strong"
    judged = [c.prompt for c in mock_llm.calls("PairwiseScores")]
    assert len(judged) == 2 and all("Plan a dinner (edited)." in p for p in judged)

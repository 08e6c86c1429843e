"""Batch mode (``--batch``): every request through the mock's Batch API, the dataset an
online run makes, half the price; expired batches and failed lines submitted again (only
those); a process killed while its batch runs, or detached, leaves it for the next run to
collect, and no line is ever submitted twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import codeclm
from codeclm import api
from codeclm.bench.mock_llm import MockLLM, mixed_rule
from codeclm.cli import main
from codeclm.engine.run import RunError
from tests.conftest import mock_args, priced_roles, write_seeds

SEEDS = ["How do I bake rye bread?", "Explain git rebase to a new hire.", "Plan a trip to Rome."]
OPTIONS = {"instructions": 8, "metadata": 3}
FAST = {"batch_poll_seconds": 0.02, "batch_quiet_seconds": 0.05}
PRICES = "[strong.price]\ninput = 2.5\noutput = 10.0\n[target.price]\ninput = 0.5\noutput = 1.5\n"


@pytest.fixture
def online(mock_llm: MockLLM, tmp_path: Path) -> Path:
    """The dataset of the same run, each request sent on its own."""
    mock_llm.judge_rule = mixed_rule
    seeds = write_seeds(tmp_path / "seeds.jsonl", SEEDS)
    codeclm.run(seeds, out=tmp_path / "online", **OPTIONS, **priced_roles(mock_llm))
    mock_llm.requests.clear()
    return tmp_path / "online"


def test_a_batched_run_is_the_online_run_at_half_the_price(
    mock_llm: MockLLM, online: Path, tmp_path: Path
) -> None:
    received = mock_llm.received
    result = codeclm.run(
        tmp_path / "seeds.jsonl",
        out=tmp_path / "batched",
        batch=True,
        **FAST,
        **OPTIONS,
        **priced_roles(mock_llm),
    )
    assert mock_llm.received == received, "no request went out on its own"
    submitted = mock_llm.batch_api.lines_submitted
    assert submitted and set(submitted.values()) == {1}, "each line in one batch"
    assert (tmp_path / "batched/dataset.jsonl").read_bytes() == (
        online / "dataset.jsonl"
    ).read_bytes()
    cost, first = result.record.cost, codeclm.find_run(online).record
    assert cost is not None and first is not None and first.cost is not None
    assert cost.total == pytest.approx(first.cost.total / 2), "the batch discount"
    assert set(cost.paid) == {"strong/batch", "target/batch"}
    # the report sets the estimate beside the actual at the same (batch) prices
    batched, plain = (
        json.loads(
            (api.report([run], tmp_path / f"report-{run.name}").parent / "report.json").read_text()
        )["runs"][0]["cost"]["estimate"]
        for run in (tmp_path / "batched", online)
    )
    assert batched["batch"] and batched["expected"] == pytest.approx(plain["expected"] / 2)
    assert cost.price_source == "the config", "every price came from the config"


def test_an_expired_batch_and_failed_lines_are_submitted_again_and_only_those(
    mock_llm: MockLLM, online: Path, tmp_path: Path
) -> None:
    mock_llm.batch_api.expire_next, mock_llm.batch_api.fail_lines = 1, 3
    codeclm.run(
        tmp_path / "seeds.jsonl",
        out=tmp_path / "batched",
        batch=True,
        **FAST,
        **OPTIONS,
        **priced_roles(mock_llm),
    )
    batches = list(mock_llm.batch_api.batches.values())
    assert [b["status"] for b in batches].count("expired") == 1
    assert mock_llm.batch_api.fail_lines == 0, "three lines failed"
    failed = sum(b["request_counts"]["failed"] for b in batches)  # expired ones among them
    extra = sum(times - 1 for times in mock_llm.batch_api.lines_submitted.values())
    assert failed >= 4 and extra == failed, "every unfinished line once more, and no other"
    assert (tmp_path / "batched/dataset.jsonl").read_bytes() == (
        online / "dataset.jsonl"
    ).read_bytes()


def test_a_batch_the_provider_fails_fails_its_requests_with_the_reason(
    mock_llm: MockLLM, tmp_path: Path
) -> None:
    mock_llm.batch_api.fail_next = 100  # every batch: an enqueued-token quota, say
    seeds = write_seeds(tmp_path / "seeds.jsonl", SEEDS)
    with pytest.raises(RunError, match="token_limit_exceeded"):
        codeclm.run(
            seeds, out=tmp_path / "failed", batch=True, **FAST, **OPTIONS, **priced_roles(mock_llm)
        )
    assert set(mock_llm.batch_api.lines_submitted.values()) == {1}, "not submitted again"


def _batch_cli(mock: MockLLM, tmp_path: Path, out: Path, *flags: str) -> subprocess.Popen[str]:
    config = tmp_path / "batch.toml"
    config.write_text(
        "batch = true\nbatch_poll_seconds = 0.02\nbatch_quiet_seconds = 0.05\n" + PRICES
    )
    argv = [sys.executable, "-m", "codeclm", "run", str(tmp_path / "seeds.jsonl")]
    argv += [*mock_args(mock, out, **OPTIONS), "--config", str(config), *flags]
    return subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy()
    )


def test_killed_while_a_batch_runs_the_next_run_collects_it_and_sends_no_line_twice(
    mock_llm: MockLLM, online: Path, tmp_path: Path
) -> None:
    mock_llm.batch_api.delay = 600.0  # the batch runs until the test lets it end
    out = tmp_path / "killed"
    proc = _batch_cli(mock_llm, tmp_path, out)
    assert mock_llm.batch_api.created.wait(120), "no batch was submitted"
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    mock_llm.batch_api.delay = 0.01
    assert main(["resume", str(out), "--quiet"]) == 0
    assert set(mock_llm.batch_api.lines_submitted.values()) == {1}, "no line submitted twice"
    assert (out / "dataset.jsonl").read_bytes() == (online / "dataset.jsonl").read_bytes()


def test_detached_the_run_exits_and_resume_collects_its_batches(
    mock_llm: MockLLM, online: Path, tmp_path: Path
) -> None:
    mock_llm.batch_api.delay = 600.0
    out = tmp_path / "detached"
    proc = _batch_cli(mock_llm, tmp_path, out, "--detach")
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 5, stderr  # detached: its own exit code, never a finished run's
    said = " ".join(stdout.split())
    assert "detached" in said and "not finished" in said and f"codeclm resume {out}" in said
    assert "run finished" not in said
    assert not (out / "dataset.jsonl").exists(), "no empty outputs that read as a finished run"
    assert mock_llm.batch_api.batches, "it left a batch out"
    mock_llm.batch_api.delay = 0.01
    assert main(["resume", str(out), "--quiet"]) == 0
    assert set(mock_llm.batch_api.lines_submitted.values()) == {1}
    assert (out / "dataset.jsonl").read_bytes() == (online / "dataset.jsonl").read_bytes()


def test_two_workers_on_postgresql_one_killed_while_its_batches_run(
    mock_llm: MockLLM, online: Path, tmp_path: Path, postgres: Any
) -> None:
    """A run and a worker sharing a PostgreSQL run in batch mode; the process that submitted
    the first batch is killed while it runs. The batch is in the store: the other process
    takes the threads up and collects it, and no line is submitted twice; the dataset is
    the online run's."""
    mock_llm.batch_api.delay = 600.0
    url = postgres.url()
    common = ["--lease-seconds", "2", "--store", url, "--run", "batched"]
    runner = _batch_cli(mock_llm, tmp_path, tmp_path / "shared", *common)
    log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen(
        [sys.executable, "-m", "codeclm", "worker", *common, "--out", str(tmp_path / "other")],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=os.environ.copy(),
    )
    assert mock_llm.batch_api.created.wait(120), "no batch was submitted"
    first = next(iter(mock_llm.batch_api.batches.values()))
    victim, survivor = (
        (runner, worker) if first["worker"].endswith(f":{runner.pid}") else (worker, runner)
    )
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=60)
    mock_llm.batch_api.delay = 0.01
    assert survivor.wait(timeout=300) == 0, (tmp_path / "worker.log").read_text()
    assert set(mock_llm.batch_api.lines_submitted.values()) == {1}, "no line submitted twice"
    out = tmp_path / ("other" if survivor is worker else "shared")
    assert (out / "dataset.jsonl").read_bytes() == (online / "dataset.jsonl").read_bytes()

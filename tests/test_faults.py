"""Flaky endpoints and provider limits: faults are retried or recorded, limits are kept.

The loopback mock injects HTTP 503s, replies that are not JSON, hung requests and 429s with
``Retry-After``; a run must finish with every instruction accounted for, and a re-run must
retry exactly the failed ones.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from codeclm.bench.mock_llm import STRONG_MODEL, TARGET_MODEL, MockLLM
from codeclm.cli import main
from tests.conftest import mock_args, read_jsonl, run_cli, write_seeds


def _role_config(tmp_path: Path, **roles: str) -> Path:
    """A config file with one ``[role]`` table of TOML lines per keyword."""
    path = tmp_path / "limits.toml"
    path.write_text("".join(f"[{role}]\n{lines}\n" for role, lines in roles.items()))
    return path


def _outcome(out: Path) -> tuple[dict[str, int], dict[str, list[dict]]]:
    counts = json.loads((out / "run.json").read_text())["counts"]
    rows = {name: read_jsonl(out / f"{name}.jsonl") for name in ("dataset", "dropped", "failed")}
    return counts, rows


@pytest.fixture
def faulty_seeds(tmp_path: Path) -> Path:
    return write_seeds(
        tmp_path / "seeds.jsonl", [f"Seed task number {i} about topic {i * 7}." for i in range(12)]
    )


def test_faults_leave_every_instruction_accounted_for_and_a_rerun_retries_the_failed(
    mock_llm: MockLLM, faulty_seeds: Path, tmp_path: Path
) -> None:
    mock_llm.error_rate, mock_llm.invalid_json_rate, mock_llm.hang_rate = 0.05, 0.05, 0.01
    mock_llm.fault_seed = 7
    config = _role_config(tmp_path, strong="timeout = 1.0", target="timeout = 1.0")
    out = tmp_path / "out"
    # One attempt per step, so this run is sure to have failures to retry afterwards.
    options = dict(config=config, instructions=60, metadata=8, backoff=0, concurrency=16)
    assert run_cli(faulty_seeds, mock_llm, out, attempts=1, **options) == 0

    assert {"503", "invalid_json", "hang"} <= set(mock_llm.faults)
    counts, rows = _outcome(out)
    assert counts["kept"] + counts["dropped"] + counts["failed"] == counts["instructions"]
    assert counts["unfinished"] == 0
    assert len(rows["dataset"]) == counts["kept"] and len(rows["failed"]) == counts["failed"]
    assert counts["failed"] > 0
    reasons = {row["reason"].split(":")[0] for row in rows["failed"]}
    assert reasons <= {"answer", "judge", "improve"}
    assert all(
        any(kind in row["reason"] for kind in ("Error code: 503", "Unparseable", "timed out"))
        for row in rows["failed"]
    ), [row["reason"] for row in rows["failed"]]

    # The endpoint recovers; the same command retries the failed ones (instructions, and the
    # preparation steps whose share of the budget is missing) and only those.
    mock_llm.error_rate = mock_llm.invalid_json_rate = mock_llm.hang_rate = 0.0
    mock_llm.requests.clear()
    assert run_cli(faulty_seeds, mock_llm, out, attempts=1, **options) == 0
    again, rows_again = _outcome(out)
    assert again["failed"] == 0 and again["kept"] + again["dropped"] == 60, "the whole budget"
    missing = 60 - counts["instructions"]
    retried = {row["id"] for row in rows["failed"]}
    answered = {c.prompt for c in mock_llm.calls(model=TARGET_MODEL)}
    assert 0 < len(answered) <= len(retried) + missing, "only the failed and the missing ones"
    before = {row["id"]: row for row in rows["dataset"]}
    after = {row["id"]: row for row in rows_again["dataset"]}
    assert {k: after[k] for k in before} == before, "kept rows are kept as they were"
    assert len(after) == len(rows_again["dataset"]), "no row written twice"
    assert len(set(after) - set(before) - retried) <= missing


def test_with_retries_a_faulty_endpoint_still_yields_every_instruction(
    mock_llm: MockLLM, faulty_seeds: Path, tmp_path: Path
) -> None:
    mock_llm.error_rate, mock_llm.invalid_json_rate, mock_llm.hang_rate = 0.05, 0.05, 0.01
    config = _role_config(tmp_path, strong="timeout = 1.0", target="timeout = 1.0")
    out = tmp_path / "out"
    assert (
        run_cli(faulty_seeds, mock_llm, out, config=config, instructions=40, metadata=8, backoff=0)
        == 0
    )
    counts, _ = _outcome(out)
    assert counts["instructions"] == 40
    assert counts["kept"] + counts["dropped"] + counts["failed"] == 40
    faults = sum(mock_llm.faults.values())
    assert faults > 0 and counts["failed"] <= 2, (faults, counts)


def test_http_429_pauses_the_role_for_its_retry_after(
    mock_llm: MockLLM, seeds_file: Path, tmp_path: Path
) -> None:
    mock_llm.rate_limit_next, mock_llm.retry_after = 1, 1.5
    out = tmp_path / "out"
    assert (
        run_cli(seeds_file, mock_llm, out, instructions=2, metadata=2, backoff=0, concurrency=1)
        == 0
    )
    refused = [c for c in mock_llm.requests if c.fault == "429"]
    assert len(refused) == 1
    # sent again once its Retry-After is out (others may use the slot meanwhile: two threads
    # a slot)
    again = [c for c in mock_llm.requests if c.at > refused[0].at and c.prompt == refused[0].prompt]
    assert again, "the refused request is sent again"
    assert again[0].at - refused[0].at >= 1.5
    assert len(read_jsonl(out / "dataset.jsonl")) == 2


def test_each_role_keeps_its_own_concurrency_and_request_rate(
    mock_llm: MockLLM, seeds_file: Path, tmp_path: Path
) -> None:
    mock_llm.latency = 0.05
    config = _role_config(
        tmp_path, strong="max_concurrency = 2", target="requests_per_minute = 300"
    )
    out = tmp_path / "out"
    code = run_cli(
        seeds_file, mock_llm, out, config=config, instructions=16, metadata=4, concurrency=8
    )
    assert code == 0
    assert mock_llm.peak_in_flight[STRONG_MODEL] == 2
    # 300 a minute is 5 a second, at most 5 at once: 16 answers take at least 2.2 s from
    # the first one's admission; its arrival at the mock may lag that by one interval on a
    # loaded machine (the window seen here was 2.0 s once under the full suite)
    target = sorted(c.at for c in mock_llm.calls(model=TARGET_MODEL))
    assert len(target) == 16
    assert target[-1] - target[0] >= (16 - 5 - 1) / 5 - 0.05
    assert sum(1 for t in target if t - target[0] < 0.5) <= 5 + 2  # burst, then 1 per 0.2 s


def _error_of(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("codeclm: error: "), err
    return err


def test_an_unreachable_endpoint_or_refused_key_stops_the_run_at_once(
    mock_llm: MockLLM, seeds_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    args = ["run", str(seeds_file), *mock_args(mock_llm, out)]
    dead = "http://127.0.0.1:9/v1"  # the discard port: nothing listens
    err = _error_of(capsys, [*args, "--target-base-url", dead])
    assert f"target model: cannot reach {dead}" in err
    mock_llm.api_key = "another-key"
    err = _error_of(capsys, args)
    assert "refused the API key in $OPENAI_API_KEY (HTTP 401)" in err
    assert not out.exists(), "nothing written"
    assert mock_llm.calls() == []


def test_an_instruction_longer_than_the_context_is_named_by_line(
    mock_llm: MockLLM, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mock_llm.context_tokens = 4096  # reported by GET /v1/models, as vLLM does
    seeds = write_seeds(tmp_path / "seeds.jsonl", ["Say hi.", "word " * 3000, "Bye."])
    out = tmp_path / "out"
    err = _error_of(capsys, ["run", str(seeds), *mock_args(mock_llm, out)])
    assert "seeds.jsonl:2: instruction is about 3,749 tokens" in err
    assert "strong model's context of 4,096" in err
    assert not out.exists()
    # a context set in the config wins over the server's
    config = _role_config(tmp_path, strong="context_tokens = 100000")
    argv = ["run", str(seeds), *mock_args(mock_llm, out, config=config, instructions=2, metadata=2)]
    assert main(argv) == 0

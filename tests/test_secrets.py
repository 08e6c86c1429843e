"""API keys never reach run.json, checkpoints, the cache, logs, or error messages."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from codeclm.bench.mock_llm import MockLLM
from codeclm.cli import main
from tests.conftest import SECRET, mock_args, run_cli


def test_the_key_is_in_no_file_log_or_error_even_when_calls_fail(
    mock_llm: MockLLM,
    seeds_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)  # everything openai, httpx and langchain log
    mock_llm.answer_errors_next = 3  # HTTP 500s, recorded as failures with their reasons
    mock_llm.answer_error_status = 500
    mock_llm.garbage_next["PairwiseScores"] = 2
    out = tmp_path / "out"
    assert (
        run_cli(seeds_file, mock_llm, out, instructions=6, metadata=3, attempts=1, backoff=0) == 0
    )
    assert (out / "failed.jsonl").read_text(), "some calls failed and their reasons were written"

    mock_llm.api_key = "the-server-wants-another-key"  # the key is refused at start-up
    assert main(["run", str(seeds_file), *mock_args(mock_llm, tmp_path / "refused")]) == 2

    captured = capsys.readouterr()
    assert "HTTP Request: GET" in caplog.text, "the debug logs were captured"
    for where, text in (("stdout", captured.out), ("stderr", captured.err), ("logs", caplog.text)):
        assert SECRET not in text, where
    for path in out.iterdir():  # run.json, outputs, checkpoints.sqlite, llm_cache.sqlite
        assert SECRET.encode() not in path.read_bytes(), path.name


@pytest.mark.parametrize(
    ("url", "written"),
    [
        ("postgresql://u:pw-4242@h:5432/db", "postgresql://u@h:5432/db"),
        (
            "postgresql://u@127.0.0.1:55432/db?password=pw-4242&sslmode=disable",
            "postgresql://u@127.0.0.1:55432/db?sslmode=disable",
        ),
        (
            "postgresql://u@h/db?sslpassword=pw-4242&application_name=a",
            "postgresql://u@h/db?application_name=a",
        ),
        ("https://gw.example/v1?api_key=pw-4242&model=m", "https://gw.example/v1?model=m"),
        ("https://gw.example/v1?key=pw-4242", "https://gw.example/v1"),
        ("https://gw.example/v1?token=pw-4242&Password=pw-4242", "https://gw.example/v1"),
    ],
)
def test_every_url_is_written_without_its_secrets(url: str, written: str) -> None:
    """One redaction for every URL written anywhere: passwords in the user info or in a
    query parameter (password, sslpassword, api_key, key, token) never leave."""
    from codeclm.redact import redact_url

    assert redact_url(url) == written


def test_a_store_password_in_the_query_is_written_nowhere(
    mock_llm: MockLLM, postgres, seeds_file: Path, tmp_path: Path, capsys
) -> None:
    from codeclm.bench.postgres_server import PASSWORD

    plain = postgres.url()
    user_at = plain.replace(f":{PASSWORD}@", "@")
    url = f"{user_at}?password={PASSWORD}&sslmode=disable"
    out = tmp_path / "out"
    assert run_cli(seeds_file, mock_llm, out, store=url, run="query_pw", instructions=4) == 0
    said = capsys.readouterr()
    written = (out / "run.json").read_text() + said.out + said.err
    assert PASSWORD not in written and "sslmode=disable" in (out / "run.json").read_text()

"""What a new user met on a tour of every command (issue #20, point 9): each fixed, and
each one a script can check is checked here."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

import codeclm
from codeclm.bench.mock_llm import MockLLM
from codeclm.cli import build_parser, main
from tests.conftest import mock_args, read_jsonl, run_cli, write_seeds


def _error_of(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_an_out_that_is_a_file_or_cannot_be_made_is_one_line(
    mock_llm: MockLLM, seeds_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    afile = tmp_path / "afile"
    afile.write_text("")
    err = _error_of(capsys, ["run", str(seeds_file), *mock_args(mock_llm, afile)])
    assert err == f"codeclm: error: --out {afile}: exists and is not a folder"
    inside = afile / "out"  # a folder under a file cannot be made
    err = _error_of(capsys, ["run", str(seeds_file), *mock_args(mock_llm, inside)])
    assert f"--out {inside}" in err


def test_bad_input_says_where_and_what(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"instruction": "a"}\n{"instruction": "abc\n')
    err = _error_of(capsys, ["run", str(broken), "--out", str(tmp_path / "o")])
    assert "broken.jsonl:2: malformed JSON: Unterminated string starting at column 17" in err
    table = tmp_path / "t.csv"
    table.write_text("question_text,answer\nWhy?,Because\n")
    err = _error_of(capsys, ["run", str(table), "--out", str(tmp_path / "o")])
    assert "its fields are 'question_text', 'answer'" in err and "--field" in err
    seeds = write_seeds(tmp_path / "ok.jsonl", ["Say hi."])
    dead = ["--strong-model", "m", "--strong-base-url", "https://127.0.0.1:9/v1"]
    err = _error_of(capsys, ["run", str(seeds), "--out", str(tmp_path / "o"), *dead])
    assert "cannot reach https://127.0.0.1:9/v1" in err and "ssl:" not in err


def test_every_flag_has_help_and_the_store_flag_fits_its_command() -> None:
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    missing = [
        f"{name} {action.option_strings or action.dest}"
        for name, sub in commands.items()
        for action in sub._actions
        if not action.help and action.dest != "help"
    ]
    assert not missing, missing
    for name in ("resume", "inspect"):
        assert commands[name].description
    run_help = commands["run"].format_help()
    assert "embedded toy model" in run_help and "strong model's model" not in run_help
    for name in ("inspect", "step", "review", "view", "resume"):
        assert "workers on any machine" not in commands[name].format_help(), name


def test_one_table_of_commands_each_with_its_flags_and_its_function() -> None:
    from codeclm.cli.commands import COMMANDS
    from codeclm.cli.parser import COMMAND_FLAGS

    assert list(COMMAND_FLAGS) == list(build_parser()._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    assert set(COMMANDS) == set(COMMAND_FLAGS)


def test_a_pool_larger_than_asked_and_a_short_run_say_why(
    mock_llm: MockLLM, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seeds = write_seeds(tmp_path / "s.jsonl", [f"Question {i} about topic {i}?" for i in range(12)])
    out = tmp_path / "out"
    mock_llm.decode_distinct = 1  # every entry has one instruction in it: the pool runs dry
    assert run_cli(seeds, mock_llm, out, instructions=30, metadata=2) == 0
    record = json.loads((out / "run.json").read_text())
    assert record["counts"]["metadata_pool"] > 2
    (note,) = [n for n in record["notes"] if "more than --metadata 2" in n]
    printed = capsys.readouterr().out
    assert "more than --metadata 2" in printed
    assert main(["inspect", str(out)]) == 0
    listing = capsys.readouterr().out
    missing = 30 - record["counts"]["instructions"]
    assert f"{missing} of the budget's 30 instructions are missing" in listing
    assert "ran dry" in listing
    assert note


def test_the_python_api_in_a_running_loop_says_what_to_call(tmp_path: Path) -> None:
    async def notebook() -> str:
        with pytest.raises(RuntimeError) as caught:
            codeclm.run(["x"], out=tmp_path / "o")
        return str(caught.value)

    message = asyncio.run(notebook())
    assert "await codeclm.arun(...)" in message


def test_export_counts_in_words(
    mock_llm: MockLLM, seeds_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert run_cli(seeds_file, mock_llm, out, instructions=2, metadata=2) == 0
    assert len(read_jsonl(out / "dataset.jsonl")) == 2
    target = tmp_path / "one.jsonl"
    capsys.readouterr()
    assert main(["export", str(out), "--format", "chat", "--limit", "1", "--out", str(target)]) == 0
    assert "1 pair as chat" in capsys.readouterr().out


def test_labels_merged_by_spelling_only_say_why(
    mock_llm: MockLLM, seeds_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Installed without the MiniLM weights, --label-similarity cannot merge by meaning:
    the run says so (run.json notes, the summary), rather than ignoring the setting."""
    from codeclm.analysis import embeddings

    def missing() -> Path:
        raise embeddings.EmbeddingsUnavailable("the embedding model is not installed")

    monkeypatch.setattr(embeddings, "model_dir", missing)
    embeddings.embedding_model.cache_clear()
    out = tmp_path / "out"
    try:
        assert run_cli(seeds_file, mock_llm, out, instructions=2, metadata=2) == 0
    finally:
        embeddings.embedding_model.cache_clear()
    record = json.loads((out / "run.json").read_text())
    assert record["label_map"]["threshold"] == 1.0
    assert any("merged by spelling only" in note for note in record["notes"])

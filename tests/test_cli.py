"""The command line: bad input is one line and exit 2; re-runs resume; the console script works."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from codeclm.bench.mock_llm import MockLLM
from codeclm.cli import main
from tests.conftest import mock_args, read_jsonl, run_cli, write_seeds


def _error_of(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("codeclm: error: "), err
    assert "Traceback" not in err
    return err


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "the file is empty"),
        (b'{"instruction": "ok"}\n{"instruction": \n', "seeds.jsonl:2: malformed JSON"),
        (b'{"instruction": "ok"}\n{"id": "x"}\n', "seeds.jsonl:2: no seed text: looked for"),
        (b'{"instruction": "caf\xe9"}\n', "seeds.jsonl:1: not UTF-8"),
        (
            b'{"id": "a", "instruction": "x"}\n{"id": "a", "instruction": "y"}\n',
            "seeds.jsonl:2: duplicate id 'a' (first at ",
        ),
    ],
)
def test_bad_seed_files_get_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, content: bytes, expected: str
) -> None:
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_bytes(content)
    out = tmp_path / "out"
    assert expected in _error_of(capsys, ["run", str(seeds), "--out", str(out)])
    assert not out.exists(), "nothing written"


def test_bad_options_and_config_get_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seeds = write_seeds(tmp_path / "s.jsonl", ["Say hi."])
    out = str(tmp_path / "out")
    assert "no such file" in _error_of(capsys, ["run", str(tmp_path / "nope"), "--out", out])
    assert "argument --instructions: must be greater than 0, not 0" in _error_of(
        capsys, ["run", str(seeds), "--out", out, "--instructions", "0"]
    )  # named by its flag, not by the config key
    assert "invalid int value" in _error_of(
        capsys, ["run", str(seeds), "--out", out, "--metadata", "many"]
    )
    config = tmp_path / "c.toml"
    config.write_text("instructions = 5\ncolour = 'blue'\n")
    assert "c.toml: colour: unknown key" in _error_of(
        capsys, ["run", str(seeds), "--out", out, "--config", str(config)]
    )
    config.write_text("[strong]\nmodel = 'gpt-4o'\ntemprature = 0.2\n")
    assert "strong.temprature: unknown key" in _error_of(
        capsys, ["run", str(seeds), "--out", out, "--config", str(config)]
    )
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert "environment variable OPENAI_API_KEY is not set" in _error_of(
        capsys, ["run", str(seeds), "--out", out, "--strong-model", "gpt-4o"]
    )
    assert "exactly one" in _error_of(capsys, ["run", "--out", out])
    assert not Path(out).exists()


def test_a_config_file_sets_what_flags_do_and_flags_win(
    mock_llm: MockLLM, seeds_file: Path, tmp_path: Path
) -> None:
    config = tmp_path / "run.toml"
    config.write_text(
        f'instructions = 3\nmetadata = 3\nthreshold = 1.5\n[target]\nmodel = "target-model"\n'
        f'base_url = "{mock_llm.base_url}"\nmax_tokens = 77\n'
    )
    out = tmp_path / "out"
    args = ["run", str(seeds_file), "--config", str(config), *mock_args(mock_llm, out)]
    args += ["--instructions", "2"]
    assert main(args) == 0
    resolved = json.loads((out / "run.json").read_text())["config"]
    assert resolved["instructions"] == 2 and resolved["metadata"] == 3
    assert resolved["threshold"] == 1.5 and resolved["target"]["max_tokens"] == 77
    assert len(read_jsonl(out / "dataset.jsonl")) == 2


def test_rerunning_into_the_same_folder_resumes_and_other_settings_are_refused(
    mock_llm: MockLLM, seeds_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert run_cli(seeds_file, mock_llm, out, instructions=4, metadata=4) == 0
    first = (out / "dataset.jsonl").read_text()
    sent = len(mock_llm.requests)
    assert run_cli(seeds_file, mock_llm, out, instructions=4, metadata=4, concurrency=2) == 0
    assert len(mock_llm.requests) == sent, "a finished run costs nothing to re-run"
    assert (out / "dataset.jsonl").read_text() == first
    capsys.readouterr()
    assert run_cli(seeds_file, mock_llm, out, instructions=5, rubrics=3, threshold=2) == 2
    err = capsys.readouterr().err
    assert "different settings (rubrics, threshold)" in err
    assert run_cli(seeds_file, mock_llm, out, instructions=3, metadata=4) == 2
    err = capsys.readouterr().err
    assert "can grow but not shrink (--instructions 3)" in err
    assert len(mock_llm.requests) == sent and (out / "dataset.jsonl").read_text() == first


def test_the_console_script_runs_headless(
    mock_llm: MockLLM, seeds_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    script = Path(sys.executable).with_name("codeclm")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "codeclm"]
    args = mock_args(mock_llm, out, instructions=2, metadata=2)
    args.remove("--quiet")
    done = subprocess.run(
        [*command, "run", str(seeds_file), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ.copy(),
    )
    assert done.returncode == 0, done.stderr
    assert "codeclm run finished" in done.stdout
    assert "2 kept" in done.stdout and "strong:" in done.stdout
    assert "preparing metadata" in done.stderr  # phase lines when not at a terminal
    assert len(read_jsonl(out / "dataset.jsonl")) == 2


def test_the_progress_display_shows_outcomes_in_flight_and_tokens_per_role() -> None:
    from rich.console import Console

    from codeclm.cli.display import status_table
    from codeclm.engine.threads import RunStats
    from codeclm.state import TokenUsage

    stats = RunStats(total=10, kept=3, dropped=2, failed=1, in_flight=4, phase="running")
    stats.add_usage({"strong": TokenUsage(calls=7, input_tokens=1200, output_tokens=340)})
    stats.add_usage({"target": TokenUsage(calls=2, input_tokens=50, output_tokens=80)})
    console = Console(width=160, record=True)
    console.print(status_table(stats, started=0.0))
    screen = console.export_text()
    for text in (
        "answering, judging and improving instructions",
        "6/10 done",
        "kept 3",
        "dropped 2",
        "failed 1",
        "in flight 4",
        "strong",
        "7 calls",
        "1,200 in",
        "340 out tokens",
        "target",
        "80 out tokens",
    ):
        assert text in screen, text


@pytest.mark.parametrize(
    ("setting", "named"),
    [
        ("instructions = true", "instructions"),
        ("concurrency = true", "concurrency"),
        ('instructions = "4"', "instructions"),
        ("threshold = inf", "threshold"),
        ("threshold = nan", "threshold"),
        ('strong = "gpt-4o"', "strong"),
        ('[strong]\nbase_url = "http://user:pw@127.0.0.1:9/v1"', "strong.base_url"),
        ("[strong]\nmax_tokens = 1.5", "strong.max_tokens"),
    ],
)
def test_a_config_file_is_as_strict_as_the_flags(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], setting: str, named: str
) -> None:
    """A wrong type or an infinite number is one line naming the key, exit 2; nothing runs."""
    seeds = tmp_path / "seeds.txt"
    seeds.write_text("How do I bake bread?\n")
    config = tmp_path / "c.toml"
    config.write_text(setting + "\n")
    assert main(["run", str(seeds), "--config", str(config), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{named}:" in err and "Traceback" not in err, err
    assert "pw" not in err.replace("password", ""), "no credential echoed"
    assert not (tmp_path / "o" / "run.json").exists()


def test_deeply_nested_json_seeds_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, text in (("deep.jsonl", '{"a":' * 100_000), ("deep.json", "[" * 100_000)):
        seeds = tmp_path / name
        seeds.write_text(text + "\n")
        assert main(["run", str(seeds), "--out", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "nested too deeply" in err, err


def test_a_full_disk_names_the_file(tmp_path: Path) -> None:
    """``No space left on device`` says which file could not be written."""
    from codeclm.outputs import naming

    target = tmp_path / "dataset.jsonl"
    with pytest.raises(OSError) as raised, naming(target), open("/dev/full", "w") as full:
        full.write("x" * 65536)
        full.flush()
    assert raised.value.filename == str(target) and "No space" in str(raised.value.strerror)

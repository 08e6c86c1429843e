"""Seeds as users have them (JSONL, JSON, CSV, parquet, a datasets folder; prompt, question,
chat turns, a named column), one-line errors for unusable files, and every --help."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from codeclm.bench.mock_llm import MockLLM
from codeclm.cli import build_parser, main
from codeclm.seeds import load_located_seeds
from tests.conftest import read_jsonl, run_cli

TEXTS = ["How do I bake rye bread?", "Explain git rebase to a new hire."]


def _jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def _parquet(path: Path, rows: list[dict[str, object]]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def _hf_folder(path: Path, rows: list[dict[str, object]]) -> Path:
    from datasets import Dataset, DatasetDict

    DatasetDict({"train": Dataset.from_list(rows)}).save_to_disk(str(path))
    return path


def _csv(path: Path, rows: list[dict[str, object]]) -> Path:
    columns = list(rows[0])
    lines = [",".join(columns)] + [",".join(f'"{row[c]}"' for c in columns) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


Writer = Callable[[Path, list[dict[str, object]]], Path]
CASES: list[tuple[str, Writer, list[dict[str, object]], str | None]] = [
    ("seeds.jsonl", _jsonl, [{"prompt": t} for t in TEXTS], None),
    ("seeds.jsonl", _jsonl, [{"question": t, "id": f"q{i}"} for i, t in enumerate(TEXTS)], None),
    (
        "seeds.json",
        lambda p, rows: (p.write_text(json.dumps({"data": rows})), p)[1],
        [{"text": t} for t in TEXTS],
        None,
    ),
    (
        "chat.jsonl",
        _jsonl,
        [
            {
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": t},
                ]
            }
            for t in TEXTS
        ],
        None,
    ),
    (
        "sharegpt.json",
        lambda p, rows: (p.write_text(json.dumps(rows)), p)[1],
        [
            {"conversations": [{"from": "human", "value": t}, {"from": "gpt", "value": "…"}]}
            for t in TEXTS
        ],
        None,
    ),
    ("seeds.csv", _csv, [{"query": t, "label": "x"} for t in TEXTS], "query"),
    ("seeds.parquet", _parquet, [{"instruction": t, "source": "web"} for t in TEXTS], None),
    ("hf_seeds", _hf_folder, [{"prompt": t} for t in TEXTS], None),
]


@pytest.mark.parametrize(("name", "write", "rows", "field"), CASES)
def test_seeds_are_read_from_the_formats_users_have(
    tmp_path: Path, name: str, write: Writer, rows: list[dict[str, object]], field: str | None
) -> None:
    located = load_located_seeds(write(tmp_path / name, rows), field)
    assert [seed.instruction for _, seed in located] == TEXTS
    assert all(where.startswith(str(tmp_path / name)) for where, _ in located)


def test_a_run_takes_a_named_column_and_resume_remembers_it(
    mock_llm: MockLLM, tmp_path: Path
) -> None:
    seeds = _parquet(tmp_path / "s.parquet", [{"query": t} for t in TEXTS])
    out = tmp_path / "out"
    assert run_cli(seeds, mock_llm, out, field="query", instructions=2, metadata=2) == 0
    assert json.loads((out / "run.json").read_text())["inputs"]["field"] == "query"
    assert len(read_jsonl(out / "dataset.jsonl")) == 2
    assert main(["resume", str(out), "--quiet"]) == 0


@pytest.mark.parametrize(
    ("name", "content", "field", "message"),
    [
        (
            "seeds.jsonl",
            '{"prompt": "ok"}\n{"body": "no text here"}\n',
            None,
            ":2: no seed text: looked for 'instruction', 'prompt', 'question', 'text'",
        ),
        ("seeds.csv", "a,b\n1,2\n", "query", ":2: no text in field 'query'"),
        ("seeds.parquet", "not a parquet file", None, ": not a parquet file ("),
        ("seeds.json", '{"data": [1, 2]}', None, ": record 1 is not a JSON object"),
    ],
)
def test_an_unusable_seeds_file_is_one_line_and_nothing_is_written(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    name: str,
    content: str,
    field: str | None,
    message: str,
) -> None:
    seeds = tmp_path / name
    seeds.write_text(content)
    out = tmp_path / "out"
    args = ["run", str(seeds), "--out", str(out)] + (["--field", field] if field else [])
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"codeclm: error: {seeds}") and message in err, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()


def test_a_folder_that_is_no_dataset_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "empty"
    folder.mkdir()
    assert main(["run", str(folder), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "not a Hugging Face dataset folder" in err and err.count("\n") == 1


def _subcommands() -> list[str]:
    parser = build_parser()
    (commands,) = [a for a in parser._actions if a.dest == "command"]
    return sorted(commands.choices)  # type: ignore[arg-type]


@pytest.mark.parametrize("command", ["", *_subcommands()])
def test_every_help_works(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([command, "--help"] if command else ["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: codeclm") and (command in out)


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("codeclm 0.")

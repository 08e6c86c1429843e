"""Declared metadata fields (issue #14, point 3): from the config through the encoder's
schema and prompt, the pool (a hierarchy kept), the decode and Self-Rubrics prompts, to the
dataset rows, the report and export; and the paper's two fields unchanged without them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from codeclm.bench.mock_llm import MockLLM
from codeclm.bench.mock_model import field_of
from codeclm.cli import main
from tests.conftest import read_jsonl, run_cli

FIELDS = """
[[metadata_fields]]
name = "domain"
description = "the industry the request comes from"
values = ["finance", "health", "retail"]

[[metadata_fields]]
name = "formats"
description = "the forms the answer should take"
multiple = true

[[metadata_fields]]
name = "sub_use_case"
description = "the narrower kind of task within the use case"
within = "use_case"
"""
SETTINGS = {"instructions": 12, "metadata": 10, "seed": 3, "backoff": 0}


@pytest.fixture
def mock_llm(realistic_llm: MockLLM) -> MockLLM:
    """This module's runs meet the misbehaving mock (conftest's ``realistic_llm``)."""
    return realistic_llm


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "fields.toml"
    path.write_text(text)
    return path


def test_declared_fields_flow_from_the_encoder_to_the_dataset_rows(
    mock_llm: MockLLM, seeds_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    config = _config(tmp_path, FIELDS)
    assert run_cli(seeds_file, mock_llm, out, config=config, **SETTINGS) == 0

    encode = [r for r in mock_llm.requests if r.schema == "EncodedMetadata"]
    assert encode and all("Also give these fields:" in r.prompt for r in encode)
    assert "- domain: the industry the request comes from (one of: finance, health, retail)" in (
        encode[0].prompt
    )
    pool = read_jsonl(out / "metadata.jsonl")
    assert all(e["extra"]["domain"] in ("finance", "health", "retail") for e in pool)
    assert all(isinstance(e["extra"]["formats"], list) and e["extra"]["formats"] for e in pool)
    # the hierarchy: an augmented entry's sub use case was seen under its use case
    seen = {(e["use_case"], e["extra"]["sub_use_case"]) for e in pool if e["origin"] == "encoded"}
    augmented = [e for e in pool if e["origin"] == "augmented"]
    assert augmented and all((e["use_case"], e["extra"]["sub_use_case"]) in seen for e in augmented)

    decode = [r for r in mock_llm.requests if r.schema == "DecodedInstructions"]
    rubrics = [r for r in mock_llm.requests if r.schema == "SelfRubrics"]
    for request in decode + rubrics:
        assert field_of(request.values["fields"], "- Domain:") in ("finance", "health", "retail")
        assert field_of(request.values["fields"], "- Sub use case:")

    rows = read_jsonl(out / "dataset.jsonl") + read_jsonl(out / "dropped.jsonl")
    kept = read_jsonl(out / "dataset.jsonl")
    assert rows and kept
    by_id = {e["id"]: e for e in pool}
    for row in kept:
        entry = by_id[row["metadata"]["id"]]
        assert {k: row["metadata"][k] for k in ("domain", "formats", "sub_use_case")} == entry[
            "extra"
        ]

    assert main(["report", str(out), "--out", str(tmp_path / "report")]) == 0
    figures = json.loads((tmp_path / "report" / "report.json").read_text())["runs"][0]
    assert {"domain", "formats", "sub_use_case"} <= set(figures["jensen_shannon"])
    assert sum(figures["metadata"]["domain"]["pool"].values()) == len(pool)
    target = tmp_path / "rows.parquet"
    assert main(["export", str(out), "--format", "parquet", "--out", str(target)]) == 0
    from datasets import Dataset

    assert {"domain", "formats", "sub_use_case"} <= set(
        Dataset.from_parquet(str(target)).column_names
    )


def test_without_declared_fields_the_prompts_are_the_papers_two_field_ones(
    mock_llm: MockLLM, seeds_file: Path, tmp_path: Path
) -> None:
    assert run_cli(seeds_file, mock_llm, tmp_path / "out", **SETTINGS) == 0
    encode = next(r for r in mock_llm.requests if r.schema == "EncodedMetadata")
    assert "Also give" not in encode.prompt
    assert "each 2–3 words).\n\nRules:" in encode.prompt
    decode = next(r for r in mock_llm.requests if r.schema == "DecodedInstructions")
    assert "\n- Skills: " in decode.prompt and "\n\nRules:" in decode.prompt.split("- Skills: ")[1]
    assert all(
        "extra" not in e or not e["extra"] for e in read_jsonl(tmp_path / "out" / "metadata.jsonl")
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[metadata_fields]]\nname = "skills"\ndescription = "x"\n', "already has"),
        ('[[metadata_fields]]\nname = "d"\ndescription = "x"\nvalues = []\n', "at least one"),
        ('[[metadata_fields]]\nname = "d"\n', "description"),
        ('[[metadata_fields]]\nname = "d"\ndescription = "x"\nwithin = "skills"\n', "within"),
    ],
)
def test_a_malformed_field_declaration_is_one_line(
    mock_llm: MockLLM,
    seeds_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    text: str,
    message: str,
) -> None:
    config = _config(tmp_path, text)
    assert run_cli(seeds_file, mock_llm, tmp_path / "out", config=config, **SETTINGS) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1

"""``codeclm export``: a run's kept pairs in the formats fine-tuning tools read.

People's reviews (``codeclm review``, ``codeclm view``) are honoured: rejected pairs are
left out, edited ones exported as edited; ``--reviewed-only`` keeps only accepted ones.
``--no-target-refusals`` leaves out the pairs whose target model refused.

chat (JSONL of ``messages``), alpaca (JSON), sharegpt (JSON), parquet, and hf: a
Hugging Face ``datasets`` dataset saved to disk, with a dataset card (README.md) that
carries the run's config. parquet and hf are written by the datasets library. A
conversation (``run --turns``) keeps every turn in each: alpaca puts the turns before the
last in ``history``, as LLaMA-Factory reads it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from codeclm.analysis.sampling import spread_sample
from codeclm.config import ConfigError
from codeclm.handle import RunHandle
from codeclm.outputs import DATASET, make_folder, write_atomic, write_json, write_jsonl
from codeclm.records import RunRecord
from codeclm.review import pair_reviews
from codeclm.rows import DatasetRow, PairReview

FORMATS = ("chat", "alpaca", "sharegpt", "parquet", "hf")
_SUFFIX = {"chat": ".jsonl", "alpaca": ".json", "sharegpt": ".json", "parquet": ".parquet"}


def _exchanges(row: DatasetRow) -> list[tuple[str, str]]:
    """(user, assistant) per turn: a conversation's every turn, a pair's one."""
    said = [message.content for message in row.messages]
    if len(said) < 2:  # a row of a version before messages
        return [(row.instruction, row.response)]
    return list(zip(said[::2], said[1::2], strict=False))


def _alpaca(row: DatasetRow) -> dict[str, Any]:
    """Alpaca's record; a conversation's last turn as the instruction and output, the turns
    before it in ``history`` (the convention of LLaMA-Factory and FastChat's converters)."""
    *before, (instruction, output) = _exchanges(row)
    item: dict[str, Any] = {"instruction": instruction, "input": "", "output": output}
    if before:
        item["history"] = [[user, assistant] for user, assistant in before]
    return item


def _sharegpt(row: DatasetRow) -> dict[str, Any]:
    turns = [
        message
        for user, assistant in _exchanges(row)
        for message in ({"from": "human", "value": user}, {"from": "gpt", "value": assistant})
    ]
    return {"id": row.id, "conversations": turns}


def _messages(row: DatasetRow) -> list[dict[str, str]]:
    return [message.model_dump() for message in row.messages]


def _flat(row: DatasetRow) -> dict[str, Any]:
    """One table row: nested metadata and scores as plain columns (for parquet and hf)."""
    return {
        "id": row.id,
        "instruction": row.instruction,
        "response": row.response,
        "messages": _messages(row),
        "response_source": row.response_source,
        "use_case": row.metadata.use_case,
        "skills": row.metadata.skills,
        **(row.metadata.model_extra or {}),  # the run's declared metadata fields
        "iteration": row.iteration,
        "turns": row.turns,
        "gap": row.scores.gap if row.scores else None,
        "seed_ids": row.seed_ids,
    }


def _decontamination_lines(record: RunRecord) -> list[str]:
    """What the card says of the evaluation items the pairs were checked against."""
    found = record.decontamination
    if found is None:
        return ["- not checked against any evaluation set (`codeclm run --decontaminate`)"]
    return [
        f"- decontaminated against {found.items} evaluation items ({found.rule}): "
        f"{record.counts.contaminated} pairs left out as contaminated"
    ]


def dataset_card(record: RunRecord, rows: int) -> str:
    """README.md of the exported dataset: what made it, and the run's full config."""
    counts = record.counts
    models = {role: m.model for role, m in record.models.items()}
    turns = int(record.config.get("turns") or 1)
    what = f"conversations of {turns} user turns" if turns > 1 else "instruction–response pairs"
    lines = [
        "---",
        "task_categories:",
        "- text-generation",
        "tags:",
        "- synthetic",
        "- instruction-tuning",
        f"- {record.method.name}",
        "---",
        "",
        "# Synthetic instruction-tuning data made by codeclm",
        "",
        f"{rows} {what}, made by codeclm {record.codeclm_version}"
        f" with the method `{record.method.name}` (CodecLM: Wang et al., NAACL 2024).",
        "",
        f"- strong model: `{models.get('strong')}`",
        f"- target model: `{models.get('target')}`",
        f"- instructions: {counts.instructions}, kept: {counts.kept}, "
        f"dropped: {counts.dropped}, failed: {counts.failed}",
        *_decontamination_lines(record),
        "",
        "Columns: `instruction`, `response` (a conversation's first turn), `messages` (chat "
        "format, every turn), `response_source` (which model wrote the responses), "
        "`use_case` and `skills` (the metadata it was decoded from), `iteration`, `turns`, "
        "`gap` (the judge's strong − target score), `seed_ids`.",
        "",
        *_judge_section(record),
        "## Run configuration",
        "",
        "```json",
        json.dumps(record.config, indent=2, ensure_ascii=False),
        "```",
        "",
    ]
    return "\n".join(lines)


def _judge_section(record: RunRecord) -> list[str]:
    """What the card says of the judge that kept the pairs: its biases, in figures."""
    judge = record.judge
    if judge is None or not judge.pairs:
        return []
    by_design = " (by the method's design: the strong model judges its own answers)"
    flips, first = judge.position_flip_rate, judge.first_preferred_rate
    return [
        "## The judge",
        "",
        f"- judge: `{judge.judge_model}`{by_design if judge.self_judged else ''}",
        f"- pairs judged in both orders: {judge.pairs}",
        "- position flip rate (the preferred answer changed when the order was swapped): "
        + ("–" if flips is None else f"{flips:.3f} of {judge.untied_pairs} untied pairs"),
        "- the answer shown first preferred: " + ("–" if first is None else f"{first:.3f}"),
        "- length correlation (Spearman, length difference against score gap): "
        + ("–" if judge.length_correlation is None else f"{judge.length_correlation:+.3f}")
        + (" — strong: the judge may reward length" if judge.length_warning else ""),
        *([f"- {judge.human.line()}"] if judge.human and judge.human.ratings else []),
        "",
    ]


def reviewed_rows(
    rows: list[DatasetRow], reviews: dict[str, PairReview], reviewed_only: bool
) -> list[DatasetRow]:
    """The pairs as people reviewed them: rejected ones left out, edits applied;
    ``reviewed_only``: only the accepted ones."""
    kept = []
    for row in rows:
        review = reviews.get(row.id)
        if review is None:
            if not reviewed_only:
                kept.append(row)
        elif review.verdict == "accepted":
            kept.append(review.applied(row))
    return kept


def export_run(
    handle: RunHandle,
    fmt: str,
    out: Path | None,
    limit: int | None,
    reviewed_only: bool = False,
    target_refusals: bool = True,
) -> tuple[Path, int]:
    """Write the run's kept pairs as ``fmt``, as reviewed (``codeclm review``); returns
    where, and how many pairs. ``target_refusals`` False: leave out the pairs whose target
    refused (their response is the strong answer; some users want only pairs where the
    target tried)."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r} (one of {', '.join(FORMATS)})")
    record, rows = handle.record, handle.rows(DATASET, DatasetRow)
    assert record is not None and handle.out_dir is not None
    reviews = asyncio.run(pair_reviews(handle))
    if reviewed_only and not reviews:
        raise ConfigError(f"--reviewed-only: no pair of {handle.where} was reviewed yet")
    rows = reviewed_rows(rows, reviews, reviewed_only)
    if not target_refusals:
        rows = [row for row in rows if not row.target_refused]
    if limit:  # a seeded sample spread over the metadata entries, in the rows' order
        seed = int(record.config.get("seed", 0))
        groups = [row.metadata.id or row.id for row in rows]
        rows = [rows[i] for i in spread_sample(groups, limit, seed)]
    target = out or handle.out_dir / "export" / f"{fmt}{_SUFFIX.get(fmt, '')}"
    make_folder(target.parent)
    writers: dict[str, Callable[[], object]] = {
        "chat": lambda: write_jsonl(target, ({"messages": _messages(r)} for r in rows)),
        "alpaca": lambda: _write_json_list(target, [_alpaca(r) for r in rows]),
        "sharegpt": lambda: _write_json_list(target, [_sharegpt(r) for r in rows]),
        "parquet": lambda: _hf_dataset(rows).to_parquet(str(target)),
        "hf": lambda: _save_hf(target, record, rows),
    }
    writers[fmt]()
    return target, len(rows)


def _write_json_list(path: Path, items: list[dict[str, Any]]) -> None:
    write_atomic(path, json.dumps(items, indent=1, ensure_ascii=False) + "\n")


def _hf_dataset(rows: list[DatasetRow]) -> Any:
    from datasets import Dataset  # imported only here: it takes about a second
    from datasets.utils.logging import disable_progress_bar

    disable_progress_bar()  # one line of our own says what was written
    return Dataset.from_list([_flat(r) for r in rows])


def _save_hf(target: Path, record: RunRecord, rows: list[DatasetRow]) -> None:
    _hf_dataset(rows).save_to_disk(str(target))
    (target / "README.md").write_text(dataset_card(record, len(rows)), encoding="utf-8")
    write_json(target / "codeclm_run.json", record)


__all__ = ["FORMATS", "export_run"]

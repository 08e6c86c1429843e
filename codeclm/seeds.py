"""Reading the user's seed instructions or hand-written metadata, with one-line errors.

Every problem is reported as ``InputError`` naming the file and line, before anything is
written, so a bad file never leaves a half-started run behind.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from codeclm.state import MetadataEntry, Seed


class InputError(ValueError):
    """Bad input file; the CLI prints it as one line and exits 2."""


def _read_lines(path: Path) -> list[str]:
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if not path.is_file():
        raise InputError(f"{path}: not a file")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise InputError(f"{path}:{line}: not UTF-8 text (byte {exc.start})") from None
    lines = text.splitlines()
    if not any(line.strip() for line in lines):
        raise InputError(f"{path}: the file is empty")
    return lines


def _is_jsonl(path: Path, lines: list[str]) -> bool:
    if path.suffix in (".jsonl", ".json", ".ndjson"):
        return True
    first = next(line for line in lines if line.strip())
    return first.lstrip().startswith("{")


def _json_records(path: Path, lines: list[str]) -> list[tuple[int, dict[str, Any]]]:
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}:{number}: malformed JSON ({exc.msg})") from None
        if not isinstance(record, dict):
            raise InputError(f"{path}:{number}: expected a JSON object")
        records.append((number, record))
    return records


def _check_unique(path: Path, ids: list[tuple[int, str]]) -> None:
    seen: dict[str, int] = {}
    for number, ident in ids:
        if ident in seen:
            raise InputError(
                f"{path}:{number}: duplicate id {ident!r} (first on line {seen[ident]})"
            )
        seen[ident] = number


def load_seeds(path: Path) -> list[Seed]:
    """Seeds from JSONL (``instruction``, optional ``id`` and ``input``) or one per line."""
    lines = _read_lines(path)
    seeds: list[tuple[int, Seed]] = []
    if _is_jsonl(path, lines):
        for number, record in _json_records(path, lines):
            instruction = record.get("instruction")
            if not isinstance(instruction, str) or not instruction.strip():
                raise InputError(f"{path}:{number}: no 'instruction' text")
            extra = record.get("input", "")
            if not isinstance(extra, str):
                raise InputError(f"{path}:{number}: 'input' must be text")
            ident = str(record.get("id", f"seed-{number}"))
            seeds.append((number, Seed(id=ident, instruction=instruction.strip(), input=extra)))
    else:
        for number, line in enumerate(lines, start=1):
            if line.strip():
                seeds.append((number, Seed(id=f"seed-{number}", instruction=line.strip())))
    _check_unique(path, [(n, s.id) for n, s in seeds])
    return [seed for _, seed in seeds]


def load_user_metadata(path: Path, max_skills: int) -> list[MetadataEntry]:
    """Scenario 2 of the paper: metadata written by the user, no seeds at all."""
    lines = _read_lines(path)
    entries: list[tuple[int, MetadataEntry]] = []
    for number, record in _json_records(path, lines):
        use_case = record.get("use_case")
        skills = record.get("skills")
        if not isinstance(use_case, str) or not use_case.strip():
            raise InputError(f"{path}:{number}: no 'use_case' text")
        if (
            not isinstance(skills, list)
            or not skills
            or not all(isinstance(s, str) and s.strip() for s in skills)
        ):
            raise InputError(f"{path}:{number}: 'skills' must be a non-empty list of text")
        if len(skills) > max_skills:
            raise InputError(f"{path}:{number}: {len(skills)} skills, at most {max_skills}")
        ident = str(record.get("id", f"user-{number}"))
        entries.append(
            (
                number,
                MetadataEntry(
                    id=ident,
                    use_case=use_case.strip(),
                    skills=[s.strip() for s in skills],
                    origin="user",
                    seed_ids=[ident],
                ),
            )
        )
    _check_unique(path, [(n, e.id) for n, e in entries])
    return [entry for _, entry in entries]


def estimate_tokens(text: str) -> int:
    """About 4 bytes of UTF-8 a token: close for English, low for code and other scripts."""
    return len(text.encode("utf-8")) // 4


def check_fits_context(
    path: Path, seeds: list[Seed], overhead: str, context_tokens: int, reply_tokens: int, role: str
) -> None:
    """Reject a seed whose encode request (prompt ``overhead`` + seed + reply) cannot fit.

    Servers refuse a request whose prompt plus ``max_tokens`` exceeds the context, so such a
    seed would only fail later, after its retries.
    """
    budget = context_tokens - reply_tokens - estimate_tokens(overhead)
    lines = [n for n, line in enumerate(_read_lines(path), start=1) if line.strip()]
    for number, seed in zip(lines, seeds, strict=False):
        tokens = estimate_tokens(seed.text)
        if tokens > budget:
            raise InputError(
                f"{path}:{number}: instruction is about {tokens:,} tokens; the {role} model's "
                f"context of {context_tokens:,} leaves {max(budget, 0):,} for it "
                f"(after the prompt and max_tokens {reply_tokens:,})"
            )


def load_benchmark(path: Path) -> list[dict[str, str]]:
    """A benchmark JSONL (``id``, ``instruction``, optional ``input`` and ``category``).

    Each item's text is its instruction, then its input if any (as a seed's). Multi-turn
    items (MT-Bench's ``followup``) are evaluated on their first turn.
    """
    items: list[tuple[int, dict[str, str]]] = []
    for number, record in _json_records(path, _read_lines(path)):
        instruction, extra = record.get("instruction"), record.get("input") or ""
        if not isinstance(instruction, str) or not instruction.strip():
            raise InputError(f"{path}:{number}: no 'instruction' text")
        if not isinstance(extra, str):
            raise InputError(f"{path}:{number}: 'input' must be text")
        text = f"{instruction.strip()}\n\n{extra}" if extra.strip() else instruction.strip()
        items.append(
            (
                number,
                {
                    "id": str(record.get("id", f"item-{number}")),
                    "instruction": text,
                    "category": str(record.get("category") or "uncategorized"),
                },
            )
        )
    _check_unique(path, [(n, item["id"]) for n, item in items])
    return [item for _, item in items]

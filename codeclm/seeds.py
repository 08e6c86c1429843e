"""Reading the user's seed instructions or hand-written metadata, with one-line errors.

Every problem is reported as ``InputError`` naming the file and line, before anything is
written, so a bad file never leaves a half-started run behind.
"""

from __future__ import annotations

import csv
import io
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


TOO_DEEP = "JSON nested too deeply to be a record"


def json_records(path: Path, lines: list[str]) -> list[tuple[int, dict[str, Any]]]:
    """Each non-blank line of a JSONL file as an object, with its number; a line that is not
    one refused in one line naming the file and the line."""
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}:{number}: {_json_error(exc)}") from None
        except RecursionError:
            raise InputError(f"{path}:{number}: {TOO_DEEP}") from None
        if not isinstance(record, dict):
            raise InputError(f"{path}:{number}: expected a JSON object")
        records.append((number, record))
    return records


def _json_error(exc: json.JSONDecodeError) -> str:
    """The decoder's reason in full, with where on the line: its ``msg`` alone stops at
    'Unterminated string starting at' without saying where."""
    return f"malformed JSON: {exc.msg} column {exc.colno}"


def _check_unique(path: Path, ids: list[tuple[int, str]]) -> None:
    seen: dict[str, int] = {}
    for number, ident in ids:
        if ident in seen:
            raise InputError(
                f"{path}:{number}: duplicate id {ident!r} (first on line {seen[ident]})"
            )
        seen[ident] = number


#: Where a seed's text may be, in the order looked at (``--field`` names another).
TEXT_FIELDS = ("instruction", "prompt", "question", "text")
#: Chat lists whose first user turn is the seed: OpenAI ``messages``, ShareGPT ``conversations``.
CHAT_FIELDS = ("messages", "conversations")
TABLE_SUFFIXES = (".parquet", ".csv", ".tsv")


def _looked_for(field: str | None, record: dict[str, Any]) -> str:
    found = ", ".join(repr(str(name)) for name in record) or "none"
    if field:
        return f"no text in field {field!r} (its fields: {found})"
    names = ", ".join(repr(name) for name in TEXT_FIELDS)
    return (
        f"no seed text: looked for {names}, or a user turn in 'messages' / 'conversations'; "
        f"its fields are {found}: name the one with the text with --field"
    )


def _first_user_turn(turns: Any) -> str | None:
    """The first user message of an OpenAI (role/content) or ShareGPT (from/value) chat."""
    if not isinstance(turns, list):
        return None
    for turn in turns:
        if not isinstance(turn, dict):
            continue
        speaker = turn.get("role", turn.get("from"))
        text = turn.get("content", turn.get("value"))
        if speaker in ("user", "human") and isinstance(text, str) and text.strip():
            return text
    return None


def seed_text(record: dict[str, Any], field: str | None = None) -> str | None:
    """A record's seed text: ``field`` if given, else the first of the usual places."""
    for name in (field,) if field else (*TEXT_FIELDS, *CHAT_FIELDS):
        value = record.get(name)
        text = value if isinstance(value, str) else _first_user_turn(value)
        if text and text.strip():
            return text
    return None


def _table_records(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """Rows of a CSV/TSV, parquet file or ``datasets`` folder, each with where it stands."""
    if path.suffix in (".csv", ".tsv"):
        try:
            text = path.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError:
            raise InputError(f"{path}: not UTF-8 text") from None
        reader = csv.DictReader(io.StringIO(text), delimiter="\t" if path.suffix == ".tsv" else ",")
        rows = [(f"{path}:{reader.line_num}", dict(row)) for row in reader]
    else:
        try:
            if path.is_dir():
                from datasets import Dataset, DatasetDict, load_from_disk

                data = load_from_disk(str(path))
                if isinstance(data, DatasetDict):
                    split = "train" if "train" in data else next(iter(data))
                    data = data[split]
                table: list[dict[str, Any]] = list(data) if isinstance(data, Dataset) else []
            else:
                import pyarrow.parquet as pq

                table = pq.read_table(path).to_pylist()
        except Exception as exc:  # any unreadable file or folder: one line, no traceback
            kind = "a Hugging Face dataset folder" if path.is_dir() else "a parquet file"
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InputError(f"{path}: not {kind} ({first[:200]})") from None
        rows = [(f"{path}: row {n}", row) for n, row in enumerate(table, start=1)]
    if not rows:
        raise InputError(f"{path}: no rows")
    return rows


def _json_document(path: Path, data: Any) -> list[tuple[str, dict[str, Any]]]:
    """A ``.json`` file holding a list of records (or an object with one list of them)."""
    if isinstance(data, dict):
        lists = [value for value in data.values() if isinstance(value, list)]
        data = lists[0] if len(lists) == 1 else [data]
    if not isinstance(data, list):
        raise InputError(f"{path}: expected a list of records")
    records = []
    for n, record in enumerate(data, start=1):
        if not isinstance(record, dict):
            raise InputError(f"{path}: record {n} is not a JSON object")
        records.append((f"{path}: record {n}", record))
    return records


def seed_records(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """Every record of a seeds file, each with where it stands (``file:line``, or row)."""
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir() or path.suffix == ".parquet":
        return _table_records(path)
    if path.suffix in (".csv", ".tsv"):
        return _table_records(path)
    lines = _read_lines(path)
    if path.suffix == ".json":
        try:
            return _json_document(path, json.loads("\n".join(lines)))
        except RecursionError:
            raise InputError(f"{path}: {TOO_DEEP}") from None
        except json.JSONDecodeError as exc:
            if exc.msg != "Extra data":  # JSON lines in a .json file are read below
                raise InputError(f"{path}:{exc.lineno}: {_json_error(exc)}") from None
    if _is_jsonl(path, lines):
        return [(f"{path}:{n}", record) for n, record in json_records(path, lines)]
    return [
        (f"{path}:{n}", {"instruction": line}) for n, line in enumerate(lines, 1) if line.strip()
    ]


def load_located_seeds(path: Path, field: str | None = None) -> list[tuple[str, Seed]]:
    """Seeds from JSONL, JSON, CSV/TSV, parquet, a ``datasets`` folder or plain text lines.

    The text is in ``field``, else ``instruction``, ``prompt``, ``question`` or ``text``, else
    the first user turn of ``messages`` / ``conversations``; ``input`` and ``id`` are optional.
    """
    located: list[tuple[str, Seed]] = []
    for number, (where, record) in enumerate(seed_records(path), start=1):
        text = seed_text(record, field)
        if text is None:
            raise InputError(f"{where}: {_looked_for(field, record)}")
        extra = record.get("input") or ""
        if not isinstance(extra, str):
            raise InputError(f"{where}: 'input' must be text")
        ident = record.get("id")
        ident = str(ident) if ident not in (None, "") else f"seed-{number}"
        located.append((where, Seed(id=ident, instruction=text.strip(), input=extra)))
    seen: dict[str, str] = {}
    for where, seed in located:
        if seed.id in seen:
            raise InputError(f"{where}: duplicate id {seed.id!r} (first at {seen[seed.id]})")
        seen[seed.id] = where
    return located


def load_seeds(path: Path, field: str | None = None) -> list[Seed]:
    """The seeds of ``load_located_seeds``, without where they stand."""
    return [seed for _, seed in load_located_seeds(path, field)]


def load_user_metadata(path: Path, max_skills: int) -> list[MetadataEntry]:
    """Scenario 2 of the paper: metadata written by the user, no seeds at all."""
    lines = _read_lines(path)
    entries: list[tuple[int, MetadataEntry]] = []
    for number, record in json_records(path, lines):
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
    located: list[tuple[str, Seed]],
    overhead: str,
    context_tokens: int,
    reply_tokens: int,
    role: str,
) -> None:
    """Reject a seed whose encode request (prompt ``overhead`` + seed + reply) cannot fit.

    Servers refuse a request whose prompt plus ``max_tokens`` exceeds the context, so such a
    seed would only fail later, after its retries.
    """
    budget = context_tokens - reply_tokens - estimate_tokens(overhead)
    for where, seed in located:
        tokens = estimate_tokens(seed.text)
        if tokens > budget:
            raise InputError(
                f"{where}: instruction is about {tokens:,} tokens; the {role} model's "
                f"context of {context_tokens:,} leaves {max(budget, 0):,} for it "
                f"(after the prompt and max_tokens {reply_tokens:,})"
            )


def _follow_ups(record: dict[str, Any], where: str) -> list[str]:
    """An item's later user turns: MT-Bench's ``followup`` here, or FastChat's ``turns``
    (all of them, the first being the instruction)."""
    followup, turns = record.get("followup"), record.get("turns")
    if followup is not None and not isinstance(followup, str):
        raise InputError(f"{where}: 'followup' must be text")
    if turns is not None and not (
        isinstance(turns, list) and all(isinstance(t, str) for t in turns)
    ):
        raise InputError(f"{where}: 'turns' must be a list of texts")
    if followup is not None and turns is not None:
        raise InputError(f"{where}: 'followup' or 'turns', not both")
    later = [followup] if followup is not None else (turns or [])[1:]
    return [text.strip() for text in later if text.strip()]  # (a blank one is no turn)


def split_test_files(seeds: str) -> list[str]:
    """The evaluation part ``codeclm split`` wrote beside these seeds (its ``split.json``
    names it), which a run on them is checked against; [] for other seeds."""
    path = Path(seeds)
    record = path.parent / "split.json"
    if path.name != "seeds.jsonl" or not record.is_file():
        return []
    try:
        test_file = json.loads(record.read_text(encoding="utf-8")).get("test_file")
    except (ValueError, OSError, AttributeError):
        return []
    found = Path(test_file) if isinstance(test_file, str) else path.parent / "eval.jsonl"
    return [str(found.resolve())] if found.is_file() else []


def load_benchmark(path: Path) -> list[dict[str, Any]]:
    """A benchmark JSONL (``id``, ``instruction``, optional ``input``, ``category`` and
    later turns: MT-Bench's ``followup``, or a ``turns`` list).

    Each item's text is its instruction, then its input if any (as a seed's); its later
    turns are in ``follow_ups``.
    """
    items: list[tuple[int, dict[str, Any]]] = []
    for number, record in json_records(path, _read_lines(path)):
        instruction, extra = record.get("instruction"), record.get("input") or ""
        follow_ups = _follow_ups(record, f"{path}:{number}")
        turns = record.get("turns")
        if instruction is None and turns:  # FastChat's layout: the first turn is the task
            instruction = turns[0]
        if not isinstance(instruction, str) or not instruction.strip():
            raise InputError(f"{path}:{number}: no 'instruction' text")
        if not isinstance(extra, str):
            raise InputError(f"{path}:{number}: 'input' must be text")
        text = f"{instruction.strip()}\n\n{extra}" if extra.strip() else instruction.strip()
        items.append(
            (
                number,
                {
                    "id": str(record.get("id", record.get("question_id", f"item-{number}"))),
                    "instruction": text,
                    "category": str(record.get("category") or "uncategorized"),
                    "follow_ups": follow_ups,
                },
            )
        )
    _check_unique(path, [(n, item["id"]) for n, item in items])
    return [item for _, item in items]

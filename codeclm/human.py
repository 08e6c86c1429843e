"""``codeclm judge``: people judge a blind sample of a run's (or an evaluation's) judged
pairs in the judge's own protocol, in any tool, and their scores come back beside the
LLM judge's (``analysis.judge.human_agreement``; docs/method.md, "Know your judge").

Two files in the folder, never in what people get:

- ``judge_sample.json``: each opaque key, the pair it stands for, which of ``answer_a``
  and ``answer_b`` is the strong model's, and the judge's gap and decision. Sampling again
  keeps the keys and orders already given out.
- ``judge_people.jsonl``: every rating imported, one per key and person (importing a
  person's file again replaces their ratings: a file filled in over several sittings).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import random
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from codeclm.analysis.judge import decision
from codeclm.analysis.sampling import spread_sample
from codeclm.config import ConfigError
from codeclm.debug.inspection import thread_history
from codeclm.handle import Folder, RunHandle
from codeclm.handle.folder import (
    JUDGE_PEOPLE,
    JUDGE_SAMPLE,
    FolderInUse,
    folder_lock,
    read_people,
)
from codeclm.outputs import write_atomic
from codeclm.records import EvalRecord, RunRecord
from codeclm.rows import JudgmentRow
from codeclm.seeds import InputError, json_records

SAMPLE, PEOPLE = JUDGE_SAMPLE, JUDGE_PEOPLE
OUTCOME_DECISION = {"win": "target", "loss": "strong", "tie": "undecided"}
"""An evaluation's verdict as a decision: the target's win keeps its answer."""


@dataclass(frozen=True)
class Pair:
    """One judged pair, as people see it and as the judge decided it."""

    id: str
    group: str
    """Its use case (a run) or category (an evaluation): the sample is spread over them."""
    instruction: str
    strong: str
    target: str
    gap: float
    decision: str
    outcome: str | None = None


def _turns(user: list[str], answers: list[str] | None = None) -> str:
    """A conversation as text: the user's turns, or one model's answers, turn by turn."""
    texts = answers if answers is not None else user
    if len(user) == 1:
        return texts[0]
    return "\n\n".join(f"[Turn {n}] {text}" for n, text in enumerate(texts, 1))


def _eval_pairs(folder: Folder) -> list[Pair]:
    pairs = []
    for line in folder.file("judgments.jsonl").read_text().splitlines():
        row = JudgmentRow.model_validate_json(line)
        if not row.mean_scores:
            continue
        user = [row.instruction, *row.follow_ups]
        strong = [row.strong_answer or "", *row.strong_follow_up_answers][: len(user)]
        target = [row.target_answer or "", *row.target_follow_up_answers][: len(user)]
        outcome = row.item_outcome or row.outcome or "tie"
        pairs.append(
            Pair(
                row.id,
                row.category,
                _turns(user),
                _turns(user, strong),
                _turns(user, target),
                row.mean_scores["strong"] - row.mean_scores["target"],
                OUTCOME_DECISION[outcome],
                outcome,
            )
        )
    return pairs


async def _run_pairs(folder: Folder, chosen: set[str] | None) -> list[Pair]:
    """The run's judged pairs; ``chosen``: only these read whole (their threads' states)."""
    record = folder.read_run()
    assert record is not None
    threshold = float(record.config.get("threshold") or 0)
    rows = []
    for name in ("dataset.jsonl", "dropped.jsonl"):
        path = folder.file(name)
        lines = path.read_text().splitlines() if path.is_file() else []
        rows += [json.loads(line) for line in lines if line.strip()]
    rows = [row for row in rows if row.get("scores")]
    handle = (
        await RunHandle.find(folder.path, store=None, run_name=None, overrides={}, strict=False)
        if chosen
        else None
    )
    pairs = []
    for row in rows:
        group = str((row.get("metadata") or {}).get("use_case") or "")
        gap = float(row["scores"]["gap"])
        strong = target = instruction = ""
        if handle is not None and row["id"] in (chosen or ()):
            state = (await thread_history(handle, row["id"])).state or {}
            if state.get("strong_answer") is None or state.get("target_answer") is None:
                continue  # (a run of before kept old scores beside answers cleared since)
            user = [str(state["instruction"]), *state.get("follow_ups", [])]
            instruction = _turns(user)
            strong = _turns(
                user, [state["strong_answer"], *state.get("strong_follow_up_answers", [])]
            )
            target = _turns(
                user, [state["target_answer"], *state.get("target_follow_up_answers", [])]
            )
        pairs.append(
            Pair(row["id"], group, instruction, strong, target, gap, decision(gap, threshold))
        )
    return pairs


def _folder(out_dir: Path) -> Folder:
    folder = Folder(out_dir)
    if folder.kind() is None:
        raise ConfigError(
            f"{out_dir}: no run.json or eval.json here: not a run's or an evaluation's folder"
        )
    return folder


def _sampled(folder: Folder) -> dict[str, Any]:
    path = folder.file(SAMPLE)
    return (
        json.loads(path.read_text())
        if path.is_file()
        else {"salt": secrets.token_hex(8), "keys": {}}
    )


async def write_sample(out_dir: Path, n: int, dest: Path, seed: int = 0) -> int:
    """A blind, seeded sample of ``n`` judged pairs spread over use cases (categories),
    written to ``dest`` for people to fill in; how many lines it has."""
    lines = await draw_sample(out_dir, n, seed)
    write_atomic(dest, "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines))
    return len(lines)


async def draw_sample(out_dir: Path, n: int, seed: int = 0) -> list[dict[str, Any]]:
    """The sample's lines, each as people get it; its keys (and what the page shows of
    them) kept in the folder."""
    folder = _folder(out_dir)
    kind = folder.kind()
    pairs = _eval_pairs(folder) if kind == "evaluation" else await _run_pairs(folder, None)
    if not pairs:
        raise ConfigError(f"{out_dir}: no pair was judged in both orders yet: nothing to sample")
    picked = [pairs[i] for i in spread_sample([p.group for p in pairs], n, seed)]
    if kind != "evaluation":  # the answers of the sampled pairs only, from their threads
        whole = {p.id: p for p in await _run_pairs(folder, {p.id for p in picked})}
        picked = [whole[p.id] for p in picked if p.id in whole]
    random.Random(seed).shuffle(picked)  # not in the run's order either
    with _judging(folder):
        return _give_out(folder, picked)


def _give_out(folder: Folder, picked: list[Pair]) -> list[dict[str, Any]]:
    """The picked pairs' lines; their keys (the same as before for a pair given out before,
    with the same side) and what people see of them kept in the folder."""
    sample = _sampled(folder)
    by_id = {entry["id"]: key for key, entry in sample["keys"].items()}
    lines = []
    for pair in picked:
        key = (
            by_id.get(pair.id)
            or hashlib.sha256(f"{sample['salt']}|{pair.id}".encode()).hexdigest()[:16]
        )
        side = _side(sample["salt"], pair.id)
        entry = sample["keys"].get(key) or {"id": pair.id, "strong": side}
        a, b = (pair.strong, pair.target) if entry["strong"] == "a" else (pair.target, pair.strong)
        shown = {"instruction": pair.instruction, "answer_a": a, "answer_b": b}
        entry.update(gap=pair.gap, decision=pair.decision, outcome=pair.outcome, group=pair.group)
        sample["keys"][key] = {**entry, **shown}
        lines.append({"key": key, **shown, "score_a": None, "score_b": None, "judge": ""})
    write_atomic(folder.file(SAMPLE), json.dumps(sample, indent=1, ensure_ascii=False))
    return lines


def _side(salt: str, ident: str) -> str:
    """Which of a and b shows the strong answer: from the folder's secret salt, so neither
    the code nor the seed tells it (each pair its own, about half each way)."""
    return "ab"[hashlib.sha256(f"{salt}|{ident}|side".encode()).digest()[0] % 2]


def _score(value: object, where: str, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 1 <= value <= 10:
        raise InputError(f"{where}: {name} {value!r} is not a score from 1 to 10")
    return float(value)


def read_ratings(path: Path, keys: dict[str, Any]) -> list[dict[str, Any]]:
    """The filled-in lines of a sample file (lines not scored yet are skipped); a line with
    a bad key, a score out of range or no judge's name is refused in one line naming it."""
    ratings = []
    for number, item in json_records(path, path.read_text().splitlines()):
        where = f"{path}:{number}"
        if item.get("score_a") in (None, "") and item.get("score_b") in (None, ""):
            continue  # not judged yet
        if not isinstance(item.get("key"), str) or item["key"] not in keys:
            raise InputError(f"{where}: key {item.get('key')!r} is not one of this folder's sample")
        judge = item.get("judge")
        if not isinstance(judge, str) or not judge.strip():
            raise InputError(f'{where}: no judge\'s name (the "judge" field)')
        ratings.append({"key": item["key"], "judge": judge.strip(),
                        "score_a": _score(item.get("score_a"), where, "score_a"),
                        "score_b": _score(item.get("score_b"), where, "score_b")})  # fmt: skip
    return ratings


def import_ratings(out_dir: Path, source: Path) -> RunRecord | EvalRecord:
    """People's ratings from ``source`` kept in the folder (a person's earlier ratings of the
    same keys replaced), and the record rewritten with their agreement with the judge."""
    folder = _folder(out_dir)
    return add_ratings(folder, read_ratings(source, _given_out(folder)))


def rate(out_dir: Path, key: str, person: str, score_a: object, score_b: object) -> None:
    """One rating from the page (``codeclm view``), checked as an imported line is."""
    folder = _folder(out_dir)
    if key not in _given_out(folder):
        raise InputError(f"{key!r} is not one of this folder's sample")
    if not person.strip():
        raise InputError("give your name (judge), so the scores record who gave them")
    scores = [
        _score(_number(value), "the page", name)
        for name, value in (("score_a", score_a), ("score_b", score_b))
    ]
    add_ratings(
        folder,
        [{"key": key, "judge": person.strip()[:80], "score_a": scores[0], "score_b": scores[1]}],
    )


def _number(value: object) -> object:
    """A form's text as a number where it is one (else as it came, to be refused)."""
    try:
        return float(str(value))
    except ValueError:
        return value


def next_pair(out_dir: Path, person: str) -> tuple[dict[str, Any] | None, int, int]:
    """The sample's next pair ``person`` has not scored (its key and what people see, None
    when all are), how many they scored, and the sample's size (0: none given out)."""
    folder = _folder(out_dir)
    keys = _sampled(folder)["keys"] if folder.file(SAMPLE).is_file() else {}
    scored = {key for key, who in _ratings(folder) if who == person.strip()}
    for key, entry in keys.items():
        if key not in scored and "answer_a" in entry:
            shown = {name: entry[name] for name in ("instruction", "answer_a", "answer_b")}
            return {"key": key, **shown}, len(scored & keys.keys()), len(keys)
    return None, len(scored & keys.keys()), len(keys)


def _ratings(folder: Folder) -> dict[tuple[str, str], dict[str, Any]]:
    return {(row["key"], row["judge"]): row for row in read_people(folder.file(PEOPLE))}


@contextmanager
def _judging(folder: Folder) -> Iterator[None]:
    """One writer of the sample's keys and the people's scores at a time (a command line
    importing while someone scores in the page): each read, changed and written whole."""
    with folder.file(".judge.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _given_out(folder: Folder) -> dict[str, Any]:
    if not folder.file(SAMPLE).is_file():
        raise ConfigError(
            f"{folder.path}: no sample given out yet: first codeclm judge {folder.path} "
            "--sample N --out FILE"
        )
    return dict(_sampled(folder)["keys"])


def add_ratings(folder: Folder, ratings: list[dict[str, Any]]) -> RunRecord | EvalRecord:
    """``ratings`` kept (each replacing the same person's of the same key), and the record
    rewritten: ``Folder.write_run`` (``write_eval``) sets people's agreement in it."""
    with _judging(folder):
        kept = _ratings(folder)
        kept.update({(row["key"], row["judge"]): row for row in ratings})
        lines = "".join(json.dumps(row) + "\n" for row in kept.values())
        write_atomic(folder.file(PEOPLE), lines)
    try:
        with folder_lock(folder.path):
            return _rewrite_record(folder)
    except FolderInUse:  # the run at work there records them when it writes its record
        record = folder.read_eval() or folder.read_run()
        assert record is not None
        return record


def _rewrite_record(folder: Folder) -> RunRecord | EvalRecord:
    if folder.kind() == "evaluation":
        record = folder.read_eval()
        assert record is not None
        folder.write_eval(record)
        return folder.read_eval() or record
    run = folder.read_run()
    assert run is not None
    folder.write_run(run)
    return folder.read_run() or run

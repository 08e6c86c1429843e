"""The flags of the commands that work on a benchmark: ``split`` (seeds and evaluation
items) and ``eval`` (the Capacity Recovery Ratio)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from codeclm.cli.flags import (
    ROLE_FLAGS,
    add_cache_flags,
    add_role_flags,
    add_setting_flags,
    add_store_flags,
    positive,
)
from codeclm.config import EvalConfig

#: The evaluation settings that are also flags (from ``EvalConfig``); a benchmark's fields.
_EVAL_FLAGS = ("concurrency", "attempts", "backoff", "seed", "max_cost", "turns")
_BENCH_HELP = "JSONL: 'instruction', 'category', later turns in 'followup' or a 'turns' list"


def add_split(commands: Any) -> None:
    split = commands.add_parser(
        "split",
        help="split a benchmark into seeds and evaluation items (the paper's 20%% / 80%%)",
        description="Reproducible and stratified by category: the same file, fraction and "
        "--seed always give the same split. Writes DIR/seeds.jsonl, DIR/eval.jsonl and "
        "DIR/split.json.",
    )
    split.add_argument("benchmark", type=Path, help=_BENCH_HELP)
    split.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    split.add_argument("--seed-fraction", type=float, default=0.2, help="default 0.2")
    split.add_argument("--seed", type=int, default=0, help="random seed (default 0)")


def add_eval(commands: Any) -> None:
    evaluate = commands.add_parser(
        "eval",
        help="Capacity Recovery Ratio of a target model against a strong one on a benchmark",
        description="Target and strong model answer each item; the judge scores the pair "
        "twice with the order swapped; the target wins (or loses) only if it does in both "
        "orders, else a tie. CRR = (wins + ties) / total. Resumable like a run.",
    )
    evaluate.add_argument("benchmark", type=Path, help=_BENCH_HELP)
    evaluate.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    evaluate.add_argument("--config", type=Path, metavar="FILE", help="TOML or JSON settings")
    evaluate.add_argument("--prompts", type=Path, metavar="DIR", help="folder of prompt overrides")
    evaluate.add_argument("--limit", type=positive(int), help="evaluate only the first N items")
    add_setting_flags(evaluate, EvalConfig, _EVAL_FLAGS)
    evaluate.add_argument(
        "--self-judge",
        action="store_true",
        default=None,
        help="let the strong model judge its own answers; without it, --judge-model names "
        "the judge (a third model, as the paper's)",
    )
    for role in ("target", "strong", "judge"):
        add_role_flags(evaluate, role)
    add_cache_flags(evaluate)
    add_store_flags(evaluate, keep=True)
    evaluate.add_argument("--quiet", action="store_true", help="no progress display")


def eval_overrides(args: argparse.Namespace) -> dict[str, Any]:
    values: dict[str, Any] = {name: getattr(args, name) for name in _EVAL_FLAGS}
    values.update(cache=args.cache, adaptive=args.adaptive, limit=args.limit)
    if args.self_judge:
        values["self_judge"] = True
    if args.prompts is not None:
        values["prompts_dir"] = str(args.prompts)
    for role in ("strong", "target", "judge"):
        role_values = {n: getattr(args, f"{role}_{n}") for n in ROLE_FLAGS}
        values[role] = {k: v for k, v in role_values.items() if v is not None} or None
    return values

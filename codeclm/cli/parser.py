"""The argument parser of ``codeclm``: each setting's flag, type, help and default come
from its config field (``codeclm/config/``), never written twice; the rest are here."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from codeclm.api import (
    FORMATS,
    METHODS,
    RunConfig,
    __version__,
    load_config_file,
    methods_help,
    resolve_config,
)
from codeclm.cli.benchmarks import add_bench, add_eval, add_split
from codeclm.cli.flags import (
    ROLE_FLAGS,
    Parser,
    add_batch_flags,
    add_cache_flag,
    add_cache_flags,
    add_estimate_flags,
    add_role_flags,
    add_setting_flags,
    add_store_flags,
    positive,
)
from codeclm.cli.judging import add_judge
from codeclm.cli.reviewing import add_review, add_view

#: The run settings that are also flags; type, help and default come from ``RunConfig``.
_RUN_FLAGS = (
    "instructions",
    "pairs",
    "metadata",
    "threshold",
    "max_iterations",
    "turns",
    "rubrics",
    "decode_batch",
    "concurrency",
    "seed",
    "attempts",
    "backoff",
    "dedup",
    "label_similarity",
    "evol_rounds",
    "tree_nodes",
    "rating_threshold",
    "max_cost",
)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="codeclm",
        description="Tailored synthetic instruction-tuning data by the CodecLM method.",
    )
    parser.add_argument("--version", action="version", version=f"codeclm {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for add_flags in COMMAND_FLAGS.values():
        add_flags(commands)
    return parser


def _add_run(commands: Any) -> None:
    run = commands.add_parser(
        "run",
        help="generate a tailored instruction dataset from seeds",
        description="Encode seeds into metadata, decode, improve with Self-Rubrics, and keep "
        "the pairs the strong model answers much better (or worse) than the target.",
    )
    run.add_argument(
        "seeds",
        nargs="?",
        type=Path,
        help="JSONL, JSON, CSV/TSV, parquet or a Hugging Face dataset folder, with the text in "
        "'instruction', 'prompt', 'question' or 'text' (or the first user turn of 'messages' / "
        "'conversations'); or plain text, one instruction per line",
    )
    run.add_argument("--field", metavar="NAME", help="the column or key holding each seed's text")
    run.add_argument("--out", type=Path, required=True, help="output folder (resumable)")
    run.add_argument(
        "--user-metadata",
        type=Path,
        metavar="FILE",
        help="JSONL of {'use_case', 'skills'} written by you, instead of seeds",
    )
    run.add_argument("--config", type=Path, metavar="FILE", help="TOML or JSON settings file")
    run.add_argument(
        "--method",
        choices=list(METHODS),
        help=f"default codeclm. {methods_help()}",
    )
    run.add_argument("--prompts", type=Path, metavar="DIR", help="folder of prompt overrides")
    add_setting_flags(run, RunConfig, _RUN_FLAGS)
    for role in ("strong", "target"):
        add_role_flags(run, role)
    run.add_argument(
        "--review",
        choices=["none", "metadata"],
        help="metadata: wait after augmentation for a person to review the pool "
        "(codeclm view DIR, or codeclm review DIR), then decode from the approved pool",
    )
    run.add_argument(
        "--keep-reasoning",
        action="store_true",
        default=None,
        help="save each kept response's reasoning (reasoning models) in its row, beside the "
        "response; reasoning is never part of the data itself",
    )
    run.add_argument(
        "--decontaminate",
        type=Path,
        action="append",
        metavar="FILE",
        help="a benchmark JSONL or text file (an item a line) whose items are never data "
        "(repeatable): a pair copying one goes to dropped.jsonl as contaminated; seeds "
        "written by codeclm split are checked against its eval.jsonl without it",
    )
    add_cache_flags(run)
    add_store_flags(run, lease=True, keep=True)
    run.add_argument(
        "--update",
        action="store_true",
        help="add SEEDS to the finished run in --out (a shifted distribution): encode them, "
        "add entries following them, run only the new instructions (--instructions and "
        "--metadata: how many to add); every finished pair stays",
    )
    add_estimate_flags(run)
    add_batch_flags(run)
    run.add_argument("--quiet", action="store_true", help="no progress display")


def _add_worker(commands: Any) -> None:
    worker = commands.add_parser(
        "worker",
        help="join a run kept in PostgreSQL and work on it until nothing is left",
        description="Takes the run's settings and seeds from the store; claims the 'prepare' "
        "thread or instruction threads with leases, so each has one writer; a dead worker's "
        "threads are taken up by the others. Any number of workers, on any machines.",
    )
    worker.add_argument("--store", metavar="URL", required=True, help="the run's PostgreSQL URL")
    worker.add_argument(
        "--run",
        dest="run_name",
        metavar="NAME",
        required=True,
        help="the run's name in the store (codeclm run … --run NAME, or its folder's name)",
    )
    worker.add_argument(
        "--out", type=Path, metavar="DIR", help="write the run's outputs here at the end"
    )
    worker.add_argument("--concurrency", type=int, help="LLM requests in flight at once")
    worker.add_argument(
        "--lease-seconds",
        type=float,
        default=30.0,
        metavar="S",
        help="a dead worker's threads are taken up by others after this long (default 30)",
    )
    worker.add_argument(
        "--wait",
        type=float,
        default=60.0,
        metavar="S",
        help="wait this long for a run that has not started yet (default 60)",
    )
    worker.add_argument("--quiet", action="store_true", help="no progress display")


def _add_resume(commands: Any) -> None:
    resume = commands.add_parser(
        "resume",
        help="continue a stopped or crashed run, with the settings it was started with",
        description="Continue the run in DIR with the settings and inputs its run.json "
        "recorded: finished instructions are skipped, unfinished ones go on from their last "
        "checkpoint, and replies already paid for come from the response cache.",
    )
    resume.add_argument("out", type=Path, metavar="DIR", help="the run's output folder")
    resume.add_argument("--concurrency", type=int, help="LLM requests in flight at once")
    resume.add_argument(
        "--max-cost",
        type=positive(float),
        metavar="USD",
        help="a new spending cap for the whole run (one it stopped at is raised this way)",
    )
    add_batch_flags(resume, batch=False)
    add_cache_flags(resume)
    add_store_flags(resume)
    resume.add_argument("--quiet", action="store_true", help="no progress display")


def _add_inspect(commands: Any) -> None:
    inspect = commands.add_parser(
        "inspect",
        help="a run's threads and their status, or one instruction's history",
        description="Without ID: every instruction's status, iteration, gap and reason, and "
        "how the run stands. With ID: that instruction's state and its checkpoint history "
        "(the checkpoint ids codeclm step --from takes).",
    )
    inspect.add_argument("out", type=Path, metavar="DIR", help="the run's output folder")
    inspect.add_argument("id", nargs="?", help="an instruction id: show its state and history")
    inspect.add_argument("--json", action="store_true", help="machine-readable output")
    add_store_flags(inspect)


def _add_step(commands: Any) -> None:
    step = commands.add_parser(
        "step", help="run one instruction node by node: show, edit, fork, continue"
    )
    step.add_argument("out", type=Path, metavar="DIR", help="the run's output folder")
    step.add_argument("id", help="the instruction id (see: codeclm inspect DIR)")
    step.add_argument(
        "--from",
        dest="from_checkpoint",
        metavar="CHECKPOINT",
        help="fork from this earlier checkpoint (ids in: codeclm inspect DIR ID)",
    )
    step.add_argument(
        "--set",
        action="append",
        metavar="FIELD=VALUE",
        help="edit a field before running (JSON values for lists); repeatable",
    )
    step.add_argument("--until", metavar="NODE", help="run until NODE has run ('end': to the end)")
    step.add_argument("--json", action="store_true", help="one JSON event per step")
    add_cache_flag(step)
    add_store_flags(step)


def _add_report(commands: Any) -> None:
    report = commands.add_parser(
        "report",
        help="HTML page and markdown summary of one run, or of several side by side",
    )
    report.add_argument("runs", type=Path, nargs="+", metavar="DIR", help="run output folders")
    report.add_argument(
        "--out", type=Path, metavar="DIR", help="where to write it (default: FIRST_DIR/report)"
    )
    report.add_argument(
        "--near-dup",
        type=float,
        default=0.9,
        help="embedding cosine at which two instructions count as near-duplicates (0.9)",
    )


def _add_export(commands: Any) -> None:
    export = commands.add_parser("export", help="a run's kept pairs in a fine-tuning format")
    export.add_argument("run", type=Path, metavar="DIR", help="the run's output folder")
    export.add_argument(
        "--format",
        required=True,
        choices=FORMATS,
        help="chat (JSONL of messages), alpaca (JSON), sharegpt (JSON), parquet, or hf (a "
        "Hugging Face dataset folder with a dataset card)",
    )
    export.add_argument(
        "--reviewed-only",
        action="store_true",
        help="only pairs a person accepted (rejected ones are always left out)",
    )
    export.add_argument(
        "--no-target-refusals",
        dest="target_refusals",
        action="store_false",
        help="leave out pairs whose target model refused (the strong answer is kept)",
    )
    export.add_argument(
        "--out", type=Path, metavar="PATH", help="file (folder for hf); default DIR/export/"
    )
    export.add_argument(
        "--limit",
        type=positive(int),
        help="N pairs only: a sample seeded by the run's --seed, spread evenly over the "
        "metadata entries (in the rows' order)",
    )


def run_overrides(args: argparse.Namespace) -> dict[str, Any]:
    values: dict[str, Any] = {name: getattr(args, name) for name in _RUN_FLAGS}
    values["cache"] = args.cache
    values["adaptive"] = args.adaptive
    values["method"] = args.method
    values["review"] = args.review
    values["keep_reasoning"] = args.keep_reasoning
    values["batch"] = args.batch
    if args.decontaminate:
        values["decontaminate"] = [str(path) for path in args.decontaminate]
    if args.prompts is not None:
        values["prompts_dir"] = str(args.prompts)
    for role in ("strong", "target"):
        role_values = {n: getattr(args, f"{role}_{n}") for n in ROLE_FLAGS}
        values[role] = {k: v for k, v in role_values.items() if v is not None}
    return values


def run_config(args: argparse.Namespace) -> RunConfig:
    file_values = load_config_file(args.config) if args.config else {}
    source = str(args.config) if args.config else "options"
    return resolve_config(file_values, run_overrides(args), source)


#: Every subcommand and its flags, in the order ``codeclm --help`` lists them; what each
#: does is ``cli/commands.py``'s ``COMMANDS`` (a test checks the two name the same ones).
COMMAND_FLAGS: dict[str, Callable[[Any], None]] = {
    "run": _add_run,
    "worker": _add_worker,
    "resume": _add_resume,
    "inspect": _add_inspect,
    "step": _add_step,
    "split": add_split,
    "eval": add_eval,
    "report": _add_report,
    "review": add_review,
    "judge": add_judge,
    "view": add_view,
    "export": _add_export,
    "bench": add_bench,
}

"""The commands that work on a benchmark: ``split`` (seeds and evaluation items), ``eval``
(the Capacity Recovery Ratio) and ``bench`` (codeclm itself against the loopback mock):
their flags, what they do over the API, and what eval prints."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from codeclm import api
from codeclm.api import (
    EVAL_FAILED,
    JUDGMENTS,
    EvalConfig,
    EvalRecord,
    EvalResult,
    EvalStats,
    Folder,
    load_config_file,
    resolve_settings,
)
from codeclm.cli.display import LiveProgress, cost_lines
from codeclm.cli.flags import (
    ROLE_FLAGS,
    add_adaptive_flag,
    add_cache_flags,
    add_role_flags,
    add_setting_flags,
    add_store_flags,
    positive,
)

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


def print_eval(record: EvalRecord, folder: Folder) -> None:
    result = record.result or EvalResult()
    turns = [(f"turn {turn}", tally) for turn, tally in result.by_turn.items()]
    # items, then (several turns) each turn of them apart
    table = Table("category", "items", "wins", "ties", "losses", "CRR")
    for name, tally in [*result.by_category.items(), ("all", result), *turns]:
        crr = tally.crr
        if name in ("turn 1", "all"):
            table.add_section()
        table.add_row(
            f"[bold]{name}[/]" if name == "all" else name,
            str(tally.total),
            str(tally.wins),
            str(tally.ties),
            str(tally.losses),
            "–" if crr is None else f"{100 * crr:.2f}%",
        )
    console = Console()
    models = record.models
    judge = "the strong model itself" if record.self_judged else "a third model"
    if models["judge"].model == models["target"].model and not record.self_judged:
        judge = "the target model itself"
    console.print(
        f"[bold]codeclm eval[/]: target {models['target'].model} vs strong "
        f"{models['strong'].model}, judged by {models['judge'].model}, {judge}"
    )
    console.print(table)
    if turns:
        console.print("  an item's outcome is from its turns' mean scores; each turn's apart")
    said = [
        f"{role} refused {record.refused.get(role, 0)}, cut {record.cut.get(role, 0)}"
        for role in ("target", "strong")
    ]
    console.print(f"  first answers judged as they were: {'; '.join(said)}", highlight=False)
    if record.failed or record.unfinished:
        console.print(
            f"  {record.failed} failed (in {folder.file(EVAL_FAILED)}), "
            f"{record.unfinished} unfinished: not counted; run the same command again "
            "to retry them"
        )
    for line in cost_lines(record.cost):
        console.print(f"  {line}", highlight=False)
    for line in record.judge.lines() if record.judge and record.judge.pairs else []:
        console.print(f"  {line}", highlight=False, soft_wrap=True)
    console.print(
        f"  every judged pair in {folder.file(JUDGMENTS)}; summary in {folder.eval_record}"
    )


def add_bench(commands: Any) -> None:
    """``codeclm bench``: a real run against the loopback mock, measured."""
    bench = commands.add_parser(
        "bench", help="measure a real run against the loopback mock (throughput, CPU, memory)"
    )
    bench.add_argument(
        "--instructions", type=positive(int), help="the run's budget (1000; 8 with --embedded)"
    )
    bench.add_argument("--latency", type=positive(float), default=0.05, help="mock s per call")
    bench.add_argument("--slots", type=positive(int), default=64, help="mock calls at once")
    bench.add_argument(
        "--concurrency", type=positive(int), default=64, help="codeclm's requests in flight (64)"
    )
    bench.add_argument("--seeds", type=positive(int), default=100, help="synthetic seeds")
    bench.add_argument(
        "--metadata", type=positive(int), default=200, help="the metadata pool's size (200)"
    )
    bench.add_argument("--scaling", action="store_true", help="1k then 10k instructions")
    bench.add_argument(
        "--embedded",
        action="store_true",
        help="the pipeline's tokens/s on the embedded model beside llama.cpp's own",
    )
    bench.add_argument(
        "--workers",
        type=positive(int),
        metavar="K",
        help="one run on PostgreSQL by 1 and by K worker processes (docs/scaling.md)",
    )
    bench.add_argument(
        "--store",
        metavar="URL",
        help="with --workers: this PostgreSQL database (default: a throwaway local server)",
    )
    bench.add_argument(
        "--repeat",
        type=positive(int),
        default=1,
        metavar="N",
        help="with --workers: N pairs of runs, and the median ratio",
    )
    bench.add_argument("--keep", type=Path, metavar="DIR", help="keep the runs in DIR")
    add_adaptive_flag(bench)


def cmd_split(args: argparse.Namespace) -> int:
    record = api.split(args.benchmark, args.out, args.seed_fraction, args.seed)
    print(
        f"codeclm split: {len(record['seeds'])} seeds -> {args.out / 'seeds.jsonl'}, "
        f"{len(record['eval'])} evaluation items -> {args.out / 'eval.jsonl'}"
    )
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    file_values = load_config_file(args.config) if args.config else {}
    source = str(args.config) if args.config else "options"
    config = resolve_settings(EvalConfig, file_values, eval_overrides(args), source)

    def render(stats: EvalStats) -> str:
        o = stats.outcomes
        return (
            f"evaluating: {stats.kept + stats.failed}/{stats.total} · target wins "
            f"{o['win']}, ties {o['tie']}, losses {o['loss']} · failed {stats.failed}"
        )

    with LiveProgress(args.quiet, render) as progress:
        record = api.evaluate(
            args.benchmark,
            out=args.out,
            config=config,
            on_progress=progress,
            store=args.store,
            run_name=args.run_name,
        )
    print_eval(record, Folder(args.out))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    api.bench(
        instructions=args.instructions,
        latency=args.latency,
        slots=args.slots,
        concurrency=args.concurrency,
        seeds=args.seeds,
        metadata=args.metadata,
        embedded=args.embedded,
        workers=args.workers,
        store=args.store,
        scaling=args.scaling,
        repeat=args.repeat,
        keep=args.keep,
        adaptive=args.adaptive is not False,
    )
    return 0

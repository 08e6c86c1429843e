"""The ``codeclm`` command.

Bad input or settings end with one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, get_args

from pydantic import BaseModel
from rich.console import Console, RenderableType
from rich.live import Live
from rich.table import Table

from codeclm import __version__, api
from codeclm.config import (
    ConfigError,
    EvalConfig,
    RunConfig,
    load_config_file,
    resolve_config,
    resolve_settings,
)
from codeclm.debug.inspection import list_threads, thread_history
from codeclm.debug.step import parse_assignment, step_thread
from codeclm.engine.run import RunError, RunResult
from codeclm.engine.threads import RunStats
from codeclm.evaluation import EvalStats
from codeclm.export import FORMATS, export_run
from codeclm.methods import METHODS, methods_help
from codeclm.report import write_report
from codeclm.seeds import InputError
from codeclm.split import split_benchmark

EXIT_USAGE = 2

#: The run settings that are also flags; type, help and default come from ``RunConfig``.
_RUN_FLAGS = (
    "instructions",
    "metadata",
    "threshold",
    "max_iterations",
    "rubrics",
    "decode_batch",
    "concurrency",
    "seed",
    "attempts",
    "backoff",
    "dedup",
    "evol_rounds",
)
_ROLE_FLAGS = ("model", "base_url", "api_key_env")


class _Parser(argparse.ArgumentParser):
    """argparse, but its errors are one line and exit 2 (argparse prints usage too)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"codeclm: error: {message}\n")
        raise SystemExit(EXIT_USAGE)


def _add_cache_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-cache",
        dest="cache",
        action="store_false",
        default=None,
        help="bypass the response cache (DIR/llm_cache.sqlite): send every request again",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="codeclm",
        description="Tailored synthetic instruction-tuning data by the CodecLM method.",
    )
    parser.add_argument("--version", action="version", version=f"codeclm {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

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
    _add_setting_flags(run, RunConfig, _RUN_FLAGS)
    for role in ("strong", "target"):
        for name in _ROLE_FLAGS:
            run.add_argument(
                f"--{role}-{name.replace('_', '-')}",
                help=f"{role} model's {name.replace('_', ' ')}"
                + (" (default OPENAI_API_KEY)" if name == "api_key_env" else ""),
            )
    _add_cache_flag(run)
    run.add_argument("--quiet", action="store_true", help="no progress display")

    resume = commands.add_parser(
        "resume",
        help="continue a stopped or crashed run, with the settings it was started with",
    )
    resume.add_argument("out", type=Path, metavar="DIR", help="the run's output folder")
    resume.add_argument("--concurrency", type=int, help="LLM requests in flight at once")
    _add_cache_flag(resume)
    resume.add_argument("--quiet", action="store_true", help="no progress display")

    inspect = commands.add_parser(
        "inspect", help="a run's threads and their status, or one instruction's history"
    )
    inspect.add_argument("out", type=Path, metavar="DIR", help="the run's output folder")
    inspect.add_argument("id", nargs="?", help="an instruction id: show its state and history")
    inspect.add_argument("--json", action="store_true", help="machine-readable output")

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
    _add_cache_flag(step)

    split = commands.add_parser(
        "split",
        help="split a benchmark into seeds and evaluation items (the paper's 20%% / 80%%)",
        description="Reproducible and stratified by category: the same file, fraction and "
        "--seed always give the same split. Writes DIR/seeds.jsonl, DIR/eval.jsonl and "
        "DIR/split.json.",
    )
    split.add_argument("benchmark", type=Path, help="JSONL with 'instruction' (and 'category')")
    split.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    split.add_argument("--seed-fraction", type=float, default=0.2, help="default 0.2")
    split.add_argument("--seed", type=int, default=0, help="random seed (default 0)")

    evaluate = commands.add_parser(
        "eval",
        help="Capacity Recovery Ratio of a target model against a strong one on a benchmark",
        description="Target and strong model answer each item; the judge scores the pair "
        "twice with the order swapped; the target wins (or loses) only if it does in both "
        "orders, else a tie. CRR = (wins + ties) / total. Resumable like a run.",
    )
    evaluate.add_argument("benchmark", type=Path, help="JSONL with 'instruction' (and 'category')")
    evaluate.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    evaluate.add_argument("--config", type=Path, metavar="FILE", help="TOML or JSON settings")
    evaluate.add_argument("--prompts", type=Path, metavar="DIR", help="folder of prompt overrides")
    evaluate.add_argument("--limit", type=_positive(int), help="evaluate only the first N items")
    _add_setting_flags(evaluate, EvalConfig, ("concurrency", "attempts", "backoff", "seed"))
    for role in ("target", "strong", "judge"):
        for name in _ROLE_FLAGS:
            evaluate.add_argument(
                f"--{role}-{name.replace('_', '-')}",
                help=f"{role} model's {name.replace('_', ' ')}"
                + (" (default: the strong model's)" if role == "judge" and name == "model" else ""),
            )
    _add_cache_flag(evaluate)
    evaluate.add_argument("--quiet", action="store_true", help="no progress display")

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

    export = commands.add_parser("export", help="a run's kept pairs in a fine-tuning format")
    export.add_argument("run", type=Path, metavar="DIR", help="the run's output folder")
    export.add_argument("--format", required=True, choices=FORMATS)
    export.add_argument(
        "--out", type=Path, metavar="PATH", help="file (folder for hf); default DIR/export/"
    )
    export.add_argument("--limit", type=_positive(int), help="the first N pairs only")

    bench = commands.add_parser(
        "bench", help="measure a real run against the loopback mock (throughput, CPU, memory)"
    )
    bench.add_argument("--instructions", type=_positive(int), default=1000)
    bench.add_argument("--latency", type=_positive(float), default=0.05, help="mock s per call")
    bench.add_argument("--slots", type=_positive(int), default=64, help="mock calls at once")
    bench.add_argument("--concurrency", type=_positive(int), default=64)
    bench.add_argument("--seeds", type=_positive(int), default=100, help="synthetic seeds")
    bench.add_argument("--metadata", type=_positive(int), default=200)
    bench.add_argument("--scaling", action="store_true", help="1k then 10k instructions")
    bench.add_argument(
        "--embedded",
        action="store_true",
        help="the pipeline's tokens/s on the embedded model beside llama.cpp's own",
    )
    bench.add_argument("--keep", type=Path, metavar="DIR", help="keep the runs in DIR")
    return parser


def _add_setting_flags(
    parser: argparse.ArgumentParser, model: type[BaseModel], names: tuple[str, ...]
) -> None:
    """One flag per config field, its type, help and default taken from the field itself."""
    for name in names:
        field = model.model_fields[name]
        kind = next(t for t in (int, float) if t in (field.annotation, *get_args(field.annotation)))
        default = "unset" if field.default is None else f"{field.default:g}"
        text = f"{field.description} (default {default})".replace("%", "%%")
        parser.add_argument(f"--{name.replace('_', '-')}", type=kind, help=text)


def _positive(kind: type[int] | type[float]) -> Callable[[str], float]:
    def parse(text: str) -> float:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be greater than 0, not {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its error
    return parse


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    values: dict[str, Any] = {name: getattr(args, name) for name in _RUN_FLAGS}
    values["cache"] = args.cache
    values["method"] = args.method
    if args.prompts is not None:
        values["prompts_dir"] = str(args.prompts)
    for role in ("strong", "target"):
        role_values = {n: getattr(args, f"{role}_{n}") for n in _ROLE_FLAGS}
        values[role] = {k: v for k, v in role_values.items() if v is not None}
    return values


def _status_table(stats: RunStats, started: float) -> Table:
    table = Table.grid(padding=(0, 2))
    elapsed = time.monotonic() - started
    done = f"{stats.finished}/{stats.total}" if stats.total else "-"
    table.add_row(
        f"[bold]{stats.phase}[/]",
        f"{done} done",
        f"[green]kept {stats.kept}[/]",
        f"[yellow]dropped {stats.dropped}[/]",
        f"[red]failed {stats.failed}[/]",
        f"in flight {stats.in_flight}",
        f"{elapsed:,.0f}s",
    )
    for role, usage in sorted(stats.usage.items()):
        table.add_row(
            f"  {role}",
            f"{usage.calls} calls",
            f"{usage.input_tokens:,} in",
            f"{usage.output_tokens:,} out tokens",
        )
    return table


class _Progress:
    """``on_progress`` for the API: a live table at a terminal, one line per phase elsewhere.

    ``--quiet`` shows neither.
    """

    def __init__(self, quiet: bool, render: Callable[[Any], RenderableType]) -> None:
        self.console = Console(stderr=True)
        self.render = render
        self.live: Live | None = None
        self.quiet = quiet
        self.phase = "starting"  # RunStats' first phase: nothing to say yet

    def __enter__(self) -> _Progress:
        if not self.quiet and self.console.is_terminal:
            self.live = Live(console=self.console, refresh_per_second=4)
            self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.__exit__(None, None, None)

    def __call__(self, stats: Any) -> None:
        if self.live is not None:
            self.live.update(self.render(stats))
        elif not self.quiet and stats.phase != self.phase:
            self.console.print(f"codeclm: {stats.phase}")
        self.phase = stats.phase


def _print_summary(result: RunResult) -> None:
    record, counts = result.record, result.counts
    console = Console()
    console.print(
        f"[bold]codeclm run finished[/] in {record.wall_seconds}s: "
        f"{counts.kept} kept ({counts.kept_strong} strong, {counts.kept_target} target), "
        f"{counts.dropped} dropped, {counts.failed} failed "
        f"of {counts.instructions} instructions from {counts.metadata_pool} metadata entries"
    )
    if counts.missing > 0:
        failures = record.prepare_failures
        why = "; ".join(f"{f.step} {f.subject}: {f.reason}" for f in failures[:3])
        more = f" (and {len(failures) - 3} more in run.json)" if len(failures) > 3 else ""
        console.print(
            f"  [yellow]{counts.missing} of {counts.instructions_requested} instructions are "
            f"missing[/]: {why or 'see run.json'}{more}. Run the same command again to retry."
        )
    for role, u in record.usage.items():
        console.print(
            f"  {role}: {u.calls} calls, {u.input_tokens:,} input + {u.output_tokens:,} output "
            "tokens" + (f", {u.cached_calls} answered from the cache" if u.cached_calls else "")
        )
    if all(m.embedded for m in record.models.values()):
        console.print(
            "  note: both roles ran on the embedded toy model (SmolLM2-135M)"
            + (
                ", which cannot judge; expect most instructions dropped"
                if record.method.judges
                else ""
            )
            + ". Point --strong-model at a real model for real data."
        )
    console.print(
        f"  outputs in {result.out_dir}/ (dataset.jsonl, dropped.jsonl, failed.jsonl, "
        "metadata.jsonl, run.json)"
    )


def _run_config(args: argparse.Namespace) -> RunConfig:
    file_values = load_config_file(args.config) if args.config else {}
    source = str(args.config) if args.config else "options"
    return resolve_config(file_values, _overrides(args), source)


def cmd_run(args: argparse.Namespace) -> int:
    started = time.monotonic()
    with _Progress(args.quiet, lambda stats: _status_table(stats, started)) as progress:
        result = api.run(
            args.seeds,
            out=args.out,
            config=_run_config(args),
            user_metadata=args.user_metadata,
            field=args.field,
            on_progress=progress,
        )
    _print_summary(result)
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    """``run`` again with the settings and inputs recorded in ``DIR/run.json``."""
    started = time.monotonic()
    overrides = {"concurrency": args.concurrency, "cache": args.cache}
    with _Progress(args.quiet, lambda stats: _status_table(stats, started)) as progress:
        result = api.resume(
            args.out, on_progress=progress, **{k: v for k, v in overrides.items() if v is not None}
        )
    _print_summary(result)
    return 0


def cmd_step(args: argparse.Namespace) -> int:
    """Step one instruction node by node (interactive at a terminal, or by flags)."""
    config, _ = api.recorded_run(args.out, {"cache": args.cache})
    patch = dict(parse_assignment(text) for text in args.set or [])
    interactive = args.until is None and not args.json and sys.stdin.isatty()
    console = Console()

    def emit(event: dict[str, Any]) -> None:
        if args.json:
            print(json.dumps(event, ensure_ascii=False), flush=True)
        elif "error" in event:
            console.print(f"[red]{event['error']}[/]")
        elif "edited" in event:
            console.print(f"edited {event['edited']} -> checkpoint {event['checkpoint']}")
        else:
            for node, values in event["ran"].items():
                console.print(f"[bold]{node}[/] produced:")
                for key, value in values.items():
                    console.print(f"  {key}: {value}", soft_wrap=True, highlight=False)
            console.print(
                f"checkpoint {event['checkpoint']}; status {event['status']}; "
                f"next: {', '.join(event['next'])}"
            )

    def ask() -> str:
        try:
            return input("[enter] next step · set FIELD=VALUE · c(ontinue) · q(uit) > ")
        except EOFError:  # Ctrl-D
            return "quit"

    final = asyncio.run(
        step_thread(
            config,
            args.out,
            args.id,
            from_checkpoint=args.from_checkpoint,
            patch=patch,
            until=args.until,
            emit=emit,
            ask=ask if interactive else None,
        )
    )
    if not args.json:
        console.print(
            f"{final['id']}: {final['status']}; next: {', '.join(final['next']) or 'end'}"
        )
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    if args.id is None:
        listing = asyncio.run(list_threads(args.out))
        if args.json:
            print(json.dumps(listing, indent=2, ensure_ascii=False))
            return 0
        table = Table("id", "status", "iteration", "gap", "use case", "reason")
        for thread in listing["threads"]:
            gap = thread["gap"]
            table.add_row(
                thread["id"],
                thread["status"],
                str(thread["iteration"] or ""),
                "" if gap is None else f"{gap:+g}",
                thread["use_case"] or "",
                thread["reason"] or "",
            )
        console = Console()
        console.print(table)
        counts = ", ".join(f"{n} {status}" for status, n in sorted(listing["counts"].items()))
        console.print(
            f"prepare: {listing['prepare']}; {listing['metadata_pool']} metadata entries; "
            f"{len(listing['threads'])} instructions: {counts or 'none yet'}"
        )
        return 0
    detail = asyncio.run(thread_history(args.out, args.id))
    if args.json:
        print(json.dumps(detail, indent=2, ensure_ascii=False))
        return 0
    _print_thread(detail)
    return 0


def _print_thread(detail: dict[str, Any]) -> None:
    console = Console()
    state = detail["state"]
    console.print(
        f"[bold]{detail['id']}[/] {detail['status']}, iteration {state['iteration']}; "
        f"next: {', '.join(detail['next']) or '(end)'}"
    )
    console.print(f"  metadata: {state['use_case']} / {', '.join(state['skills'])}")
    console.print(f"  instruction: {state['instruction']}")
    if state.get("reason"):
        console.print(f"  reason: {state['reason']}")
    console.print("history:")
    for step in detail["history"]:
        line = f"  {step['checkpoint']}  {' + '.join(step['nodes'])}  iteration {step['iteration']}"
        if step.get("scores"):
            sc = step["scores"]
            line += f"  scores strong {sc['strong']:g} target {sc['target']:g} gap {sc['gap']:+g}"
            line += f" -> {step['status']}"
        if step.get("action"):
            line += f"  action: {step['action']}"
        if step.get("reason"):
            line += f"  failed: {step['reason']}"
        console.print(line, soft_wrap=True, highlight=False)


def cmd_split(args: argparse.Namespace) -> int:
    record = split_benchmark(args.benchmark, args.out, args.seed_fraction, args.seed)
    print(
        f"codeclm split: {len(record['seeds'])} seeds -> {args.out / 'seeds.jsonl'}, "
        f"{len(record['eval'])} evaluation items -> {args.out / 'eval.jsonl'}"
    )
    return 0


def _eval_overrides(args: argparse.Namespace) -> dict[str, Any]:
    values: dict[str, Any] = {
        name: getattr(args, name) for name in ("concurrency", "attempts", "backoff", "seed")
    }
    values.update(cache=args.cache, limit=args.limit)
    if args.prompts is not None:
        values["prompts_dir"] = str(args.prompts)
    for role in ("strong", "target", "judge"):
        role_values = {n: getattr(args, f"{role}_{n}") for n in _ROLE_FLAGS}
        values[role] = {k: v for k, v in role_values.items() if v is not None} or None
    return values


def cmd_eval(args: argparse.Namespace) -> int:
    file_values = load_config_file(args.config) if args.config else {}
    source = str(args.config) if args.config else "options"
    config = resolve_settings(EvalConfig, file_values, _eval_overrides(args), source)

    def render(stats: EvalStats) -> str:
        o = stats.outcomes
        return (
            f"evaluating: {stats.kept + stats.failed}/{stats.total} · target wins "
            f"{o['win']}, ties {o['tie']}, losses {o['loss']} · failed {stats.failed}"
        )

    with _Progress(args.quiet, render) as progress:
        record = api.evaluate(args.benchmark, out=args.out, config=config, on_progress=progress)
    _print_eval(record, args.out)
    return 0


def _print_eval(record: dict[str, Any], out: Path) -> None:
    result = record["result"]
    table = Table("category", "items", "wins", "ties", "losses", "CRR")
    for name, tally in [*result["by_category"].items(), ("all", result)]:
        crr = tally["crr"]
        table.add_row(
            f"[bold]{name}[/]" if name == "all" else name,
            str(tally["total"]),
            str(tally["wins"]),
            str(tally["ties"]),
            str(tally["losses"]),
            "–" if crr is None else f"{100 * crr:.2f}%",
        )
    console = Console()
    models = record["models"]
    console.print(
        f"[bold]codeclm eval[/]: target {models['target']['model']} vs strong "
        f"{models['strong']['model']}, judged by {models['judge']['model']}"
    )
    console.print(table)
    if record["failed"] or record["unfinished"]:
        console.print(
            f"  {record['failed']} failed (in {out / 'failed.jsonl'}), "
            f"{record['unfinished']} unfinished: not counted; run the same command again "
            "to retry them"
        )
    console.print(
        f"  every judged pair in {out / 'judgments.jsonl'}; summary in {out / 'eval.json'}"
    )


def cmd_report(args: argparse.Namespace) -> int:
    if not 0 < args.near_dup <= 1:
        raise ConfigError(f"--near-dup must be in (0, 1], not {args.near_dup:g}")
    out = args.out or args.runs[0] / "report"
    page = write_report(args.runs, out, args.near_dup)
    print(f"codeclm report: {page} (and report.md, report.json, PNG plots in {out})")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    path, rows = export_run(args.run, args.format, args.out, args.limit)
    print(f"codeclm export: {rows} pairs as {args.format} -> {path}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from codeclm.bench.throughput import run_bench, run_embedded_bench  # only bench needs them

    if args.embedded:
        run_embedded_bench(slots=min(args.concurrency, 8), keep=args.keep)
        return 0
    run_bench(
        instructions=args.instructions,
        latency=args.latency,
        slots=args.slots,
        concurrency=args.concurrency,
        seeds=args.seeds,
        metadata=args.metadata,
        scaling=args.scaling,
        keep=args.keep,
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    # On Ctrl-C, LangGraph's cancelled tasks leave coroutines that Python reports as "never
    # awaited" while shutting down: noise to a user who just asked the run to stop.
    warnings.filterwarnings("ignore", "coroutine .* was never awaited", RuntimeWarning)
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error already printed
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        if args.command == "run":
            return cmd_run(args)
        if args.command == "resume":
            return cmd_resume(args)
        if args.command == "inspect":
            return cmd_inspect(args)
        if args.command == "step":
            return cmd_step(args)
        if args.command == "bench":
            return cmd_bench(args)
        if args.command == "split":
            return cmd_split(args)
        if args.command == "eval":
            return cmd_eval(args)
        if args.command == "report":
            return cmd_report(args)
        if args.command == "export":
            return cmd_export(args)
    except (ConfigError, InputError) as exc:
        sys.stderr.write(f"codeclm: error: {exc}\n")
        return EXIT_USAGE
    except RunError as exc:
        sys.stderr.write(f"codeclm: run failed: {exc}\n")
        return 1
    except KeyboardInterrupt:
        out = getattr(args, "out", None)
        again = "the same command again" if args.command == "eval" else f"codeclm resume {out}"
        sys.stderr.write(
            f"codeclm: interrupted; finished work is checkpointed and written out. "
            f"Resume with: {again}\n"
        )
        return 130
    return EXIT_USAGE


if __name__ == "__main__":
    raise SystemExit(main())

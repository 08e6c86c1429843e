"""The ``codeclm`` subcommands, each a thin layer over the Python API (``codeclm/api/``).

Bad input or settings end with one line on stderr and exit code 2, never a traceback; a run
stopped at its cost cap exits 3.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
import warnings
from collections.abc import Callable

from codeclm import api
from codeclm.api import (
    ConfigError,
    CostCapReached,
    EndpointBroken,
    InputError,
    LeaseLost,
    RunError,
    StoreUnavailable,
    finish_tracing,
    tracing_destination,
)
from codeclm.cli.benchmarks import cmd_bench, cmd_eval, cmd_split
from codeclm.cli.display import (
    LiveProgress,
    print_estimate,
    print_run_summary,
    print_worker_summary,
    status_table,
)
from codeclm.cli.flags import EXIT_BROKEN, EXIT_CAPPED, EXIT_DETACHED, EXIT_USAGE
from codeclm.cli.inspecting import cmd_inspect, cmd_step
from codeclm.cli.judging import cmd_judge
from codeclm.cli.parser import build_parser, run_config, run_overrides
from codeclm.cli.reviewing import cmd_review, cmd_view


def cmd_run(args: argparse.Namespace) -> int:
    if args.update:
        return _update(args)
    if args.estimate or args.pilot:
        if args.seeds is None:
            raise ConfigError("--estimate: give the seeds file")
        pilot = args.pilot or 0
        estimate = api.estimate(args.seeds, config=run_config(args), field=args.field, pilot=pilot)
        print_estimate(estimate)
        return 0
    started = time.monotonic()
    with LiveProgress(args.quiet, lambda stats: status_table(stats, started)) as progress:
        result = api.run(
            args.seeds,
            out=args.out,
            config=run_config(args),
            user_metadata=args.user_metadata,
            field=args.field,
            on_progress=progress,
            store=args.store,
            run_name=args.run_name,
            lease_seconds=args.lease_seconds,
            detach=args.detach,
        )
    print_run_summary(result)
    return EXIT_DETACHED if result.detached else 0


def _update(args: argparse.Namespace) -> int:
    """``run --update``: the run's recorded settings, so only the amounts may differ; a
    setting given with the value the run already has is accepted."""
    if args.user_metadata or args.store:
        raise ConfigError(
            "--update adds seeds to a run kept in its folder (no --user-metadata or --store)"
        )
    recorded = api.find_run(args.out).config.model_dump(mode="json")
    given = api.load_config_file(args.config) if args.config else {}
    for key, value in run_overrides(args).items():
        if isinstance(value, dict):
            given[key] = {**given.get(key, {}), **value}
        elif value is not None:
            given[key] = value
    api.check_update(recorded, given)
    if args.seeds is None:
        raise ConfigError("--update: give the new seeds file")
    started = time.monotonic()
    with LiveProgress(args.quiet, lambda stats: status_table(stats, started)) as progress:
        result = api.update(
            args.seeds,
            out=args.out,
            instructions=args.instructions,
            metadata=args.metadata,
            field=args.field,
            on_progress=progress,
            **({"concurrency": args.concurrency} if args.concurrency else {}),
        )
    print_run_summary(result)
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    """Join a run kept in PostgreSQL; work until it has nothing left."""
    started = time.monotonic()
    overrides = {"concurrency": args.concurrency} if args.concurrency else {}
    stats = api.RunStats()
    with LiveProgress(args.quiet, lambda stats: status_table(stats, started)) as progress:
        result = api.work(
            args.store,
            args.run_name,
            out=args.out,
            on_progress=progress,
            stats=stats,
            lease_seconds=args.lease_seconds,
            wait_seconds=args.wait,
            **overrides,
        )
    if result is not None:
        print_run_summary(result)
    print_worker_summary(args.run_name, stats, time.monotonic() - started)
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    """``run`` again with the settings and inputs recorded in ``DIR/run.json``."""
    started = time.monotonic()
    overrides = {
        "concurrency": args.concurrency,
        "cache": args.cache,
        "adaptive": args.adaptive,
        "max_cost": args.max_cost,
    }
    with LiveProgress(args.quiet, lambda stats: status_table(stats, started)) as progress:
        result = api.resume(
            args.out,
            on_progress=progress,
            store=args.store,
            run_name=args.run_name,
            detach=args.detach,
            **{k: v for k, v in overrides.items() if v is not None},
        )
    print_run_summary(result)
    return EXIT_DETACHED if result.detached else 0


def cmd_report(args: argparse.Namespace) -> int:
    if not 0 < args.near_dup <= 1:
        raise ConfigError(f"--near-dup must be in (0, 1], not {args.near_dup:g}")
    page = api.report(args.runs, args.out, args.near_dup)
    print(f"codeclm report: {page} (and report.md, report.json, PNG plots in {page.parent})")
    if (missing := api.embedding_model_missing()) is not None:  # the figures that need it
        print(f"  note: no embedding figures (near-duplicates, spread, PCA): {missing}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    path, rows = api.export(
        args.run,
        args.format,
        args.out,
        limit=args.limit,
        reviewed_only=args.reviewed_only,
        target_refusals=args.target_refusals,
    )
    print(f"codeclm export: {rows} pair{'s' if rows != 1 else ''} as {args.format} -> {path}")
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "run": cmd_run,
    "resume": cmd_resume,
    "worker": cmd_worker,
    "inspect": cmd_inspect,
    "step": cmd_step,
    "bench": cmd_bench,
    "split": cmd_split,
    "eval": cmd_eval,
    "report": cmd_report,
    "export": cmd_export,
    "review": cmd_review,
    "judge": cmd_judge,
    "view": cmd_view,
}


def console() -> int:
    """The ``codeclm`` program: ``main`` in a process of its own, its collector tuned.

    What the imports made (some 200,000 objects of LangChain, LangGraph, OpenAI and
    pydantic) lives as long as the process: frozen out of the cyclic collector's sight, and
    its first generation made larger, a run spends far less time collecting (0.86x the
    CPU of a 400-instruction run; docs/performance.md). Only the program does
    this: a caller of ``main`` in its own process keeps its collector as it set it.
    """
    gc.collect()  # what the imports left as garbage is not kept for good
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)
    return main()


def main(argv: list[str] | None = None) -> int:
    # On Ctrl-C, LangGraph's cancelled tasks leave coroutines that Python reports as "never
    # awaited" while shutting down: noise to a user who just asked the run to stop.
    warnings.filterwarnings("ignore", "coroutine .* was never awaited", RuntimeWarning)
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error already printed
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if (tracing := tracing_destination()) is not None:
        sys.stderr.write(f"codeclm: {tracing}\n")
    try:
        return COMMANDS[args.command](args)
    except (ConfigError, InputError) as exc:
        sys.stderr.write(f"codeclm: error: {exc}\n")
        return EXIT_USAGE
    except RunError as exc:
        sys.stderr.write(f"codeclm: run failed: {exc}\n")
        return 1
    except CostCapReached as exc:
        sys.stderr.write(f"codeclm: {exc}\n")
        return EXIT_CAPPED
    except EndpointBroken as exc:
        sys.stderr.write(f"codeclm: {exc}\n")
        return EXIT_BROKEN
    except (StoreUnavailable, LeaseLost) as exc:  # the database went away, or another
        # worker holds the thread now: what was checkpointed stays
        message = " ".join(str(exc).split())
        sys.stderr.write(f"codeclm: {message}; run the same command again to continue\n")
        return 1
    except OSError as exc:  # a file or folder the command could not use, said in a line
        where = f" {exc.filename}" if exc.filename else ""
        sys.stderr.write(f"codeclm: error:{where} {exc.strerror or exc}\n")
        return 1
    except KeyboardInterrupt:
        out = getattr(args, "out", None)
        again = (
            f"codeclm resume {out}"
            if args.command in ("run", "resume")
            else "the same command again"
        )
        sys.stderr.write(
            f"codeclm: interrupted; finished work is checkpointed and written out. "
            f"Resume with: {again}\n"
        )
        return 130
    finally:
        if (unsent := finish_tracing()) is not None:
            sys.stderr.write(f"codeclm: {unsent}\n")


if __name__ == "__main__":
    raise SystemExit(main())

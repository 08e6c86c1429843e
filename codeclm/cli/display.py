"""What ``codeclm`` shows in the terminal: a live table (or one line per phase) while a
run goes, and the summaries at its end. The engine knows nothing of it: it reports
through the API's ``on_progress`` callback."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from rich.console import Console, RenderableType
from rich.live import Live
from rich.table import Table

from codeclm.api import (
    ANSWER_TOKENS,
    KEPT_AT_EACH_ITERATION,
    CostRecord,
    Estimate,
    Meter,
    RunRecord,
    RunResult,
    RunStats,
    dollars,
    grouped_failures,
)


def status_table(stats: RunStats, started: float) -> Table:
    table = Table.grid(padding=(0, 2))
    elapsed = time.monotonic() - started
    done = f"{stats.finished}/{stats.total}" if stats.total else "-"
    table.add_row(
        f"[bold]{stats.activity}[/]",
        f"{done} done",
        f"[green]kept {stats.kept}[/]",
        f"[yellow]dropped {stats.dropped}[/]",
        f"[red]failed {stats.failed}[/]",
        f"in flight {stats.in_flight}",
        f"{elapsed:,.0f}s",
    )
    meter = stats.meter
    for role, usage in sorted(stats.usage.items()):
        table.add_row(
            f"  {role}",
            f"{usage.calls} calls",
            f"{usage.input_tokens:,} in",
            f"{usage.output_tokens:,} out tokens",
            dollars(meter.spent(role)) if meter is not None else "",
        )
    if meter is not None:
        table.add_row("  cost", *_cost_cells(meter, stats))
    for server, limit in stats.servers.items():
        if limit.adaptive and limit.limit < limit.ceiling:
            cuts = ", ".join(f"{n} on {why}" for why, n in limit.cuts.items())
            table.add_row(
                "  in flight",
                f"≤ {limit.limit} of {limit.ceiling}",
                server,
                f"cut {cuts}" if cuts else "ramping up",
            )
    for counts in stats.batches:
        table.add_row(
            "  batches",
            f"{counts.submitted} submitted",
            f"{counts.in_progress} in progress",
            f"{counts.completed} completed",
            f"{counts.lines_done:,}/{counts.lines_out:,} lines",
            f"{counts.resubmitted} again",
        )
    return table


def _cost_cells(meter: Meter, stats: RunStats) -> list[str]:
    """Dollars paid, the run's projected total (paid so far, scaled to the budget), the cap."""
    spent = meter.total()
    cells = [dollars(spent)]
    if spent is not None and stats.finished and stats.total:
        cells.append(f"projected {dollars(spent * stats.total / stats.finished)}")
    if meter.cap is not None:
        cells.append(f"cap {dollars(meter.cap)}")
    return cells


def cost_lines(cost: CostRecord | None) -> list[str]:
    """A run's or an evaluation's cost, per role, for its summary."""
    if cost is None:
        return []
    roles = ", ".join(f"{role} {dollars(value)}" for role, value in cost.by_role.items())
    lines = [f"cost {dollars(cost.total)} ({roles}; prices: {cost.price_source or cost.table})"]
    unknown = [role for role, price in cost.prices.items() if price is None]
    if unknown:
        lines.append(
            f"the price of {', '.join(unknown)} is unknown: set [{unknown[0]}.price] input "
            "and output (USD per million tokens) in the config"
        )
    if cost.cache_saved:
        lines.append(f"the response cache saved {dollars(cost.cache_saved)}")
    if cost.stopped_at_cap:
        lines.append(f"stopped before a request that could pass {cost.stopped_at_cap}")
    return lines


class LiveProgress:
    """``on_progress`` for the API: a live table at a terminal, one line per phase elsewhere.

    ``--quiet`` shows neither.
    """

    def __init__(self, quiet: bool, render: Callable[[Any], RenderableType]) -> None:
        self.console = Console(stderr=True)
        self.render = render
        self.live: Live | None = None
        self.quiet = quiet
        self.phase = "starting"  # RunStats' first phase: nothing to say yet

    def __enter__(self) -> LiveProgress:
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
            self.console.print(f"codeclm: {stats.activity}")
        self.phase = stats.phase


def _left_out_lines(record: RunRecord) -> list[str]:
    """What the summary says of pairs left out or flagged: contaminated ones, and kept
    pairs whose target's answer was cut or refused."""
    counts, lines = record.counts, []
    if (found := record.decontamination) is not None:
        named = "the evaluation part codeclm split wrote" if found.from_split else "--decontaminate"
        lines.append(
            f"decontaminated against {found.items} items of {named} ({found.rule}): "
            f"{counts.contaminated} pairs left out (dropped.jsonl: contaminated)"
        )
    if counts.target_cut:
        lines.append(
            f"{counts.target_cut} kept pairs had a target answer cut at its budget (judged "
            "as it stood; the strong answer is their response)"
        )
    if counts.target_refused:
        lines.append(
            f"{counts.target_refused} kept pairs had a refusing target (the strong answer is "
            "their response; export --no-target-refusals leaves them out)"
        )
    return lines


def _finished_line(record: RunRecord) -> str:
    """The summary's first line: every instruction's outcome, kept pairs left out apart."""
    counts = record.counts
    left_out = ", ".join(
        f"{n} {what}"
        for n, what in (
            (counts.contaminated, "contaminated"),
            (counts.duplicates, "duplicates"),
            (counts.surplus, "surplus"),
        )
        if n
    )
    return (
        f"[bold]codeclm run finished[/] in {record.wall_seconds}s: "
        f"{counts.kept} kept ({counts.kept_strong} strong, {counts.kept_target} target), "
        f"{counts.dropped} dropped, {counts.failed} failed"
        + (f", left out: {left_out}" if left_out else "")
        + f" of {counts.instructions} instructions"
        + (f" from {counts.metadata_pool} metadata entries" if counts.metadata_pool else "")
    )


def print_run_summary(result: RunResult) -> None:
    record, counts = result.record, result.counts
    console = Console()
    if result.detached:  # not finished: its own words (and exit code 5)
        finished = counts.kept + counts.dropped + counts.failed
        console.print(
            f"[bold]codeclm: detached[/] after {record.wall_seconds}s, not finished: "
            f"{finished} instructions finished so far ({counts.kept} kept); the others wait "
            f"on batches out at the providers; codeclm resume {result.out_dir} collects them "
            "(and submits the next ones)",
            soft_wrap=True,
        )
        return
    console.print(_finished_line(record))
    if counts.pairs_requested:
        reached = counts.kept >= counts.pairs_requested
        console.print(
            f"  {'[green]' if reached else '[yellow]'}{counts.kept} of --pairs "
            f"{counts.pairs_requested} pairs kept[/] from {counts.instructions_requested} "
            "instructions"
            + (
                f"; {counts.surplus} more kept are in dropped.jsonl (surplus: the pairs kept "
                "are a seeded sample spread over the metadata entries)"
                if counts.surplus
                else ""
            )
            + ("" if reached else f": {_pairs_short(result)}")
        )
    if record.shortfall:
        console.print(f"  [yellow]{record.shortfall}[/]")
    for note in record.notes:
        console.print(f"  note: {note}")
    failures = record.prepare_failures
    if counts.missing > 0 and failures:
        passing = [f for f in failures if not f.permanent]
        console.print(
            f"  [yellow]{counts.missing} of {counts.instructions_requested} instructions are "
            f"missing[/]: {grouped_failures(failures)}."
            + (" Run the same command again to retry what failed." if passing else "")
        )
    for line in _left_out_lines(record):
        console.print(f"  {line}", highlight=False)
    for role, u in record.usage.items():
        console.print(
            f"  {role}: {u.calls} calls, {u.input_tokens:,} input + {u.output_tokens:,} output "
            "tokens" + (f", {u.cached_calls} answered from the cache" if u.cached_calls else "")
        )
    for line in cost_lines(record.cost):
        console.print(f"  {line}", highlight=False)
    for line in record.judge.lines() if record.judge and record.judge.pairs else []:
        console.print(f"  {line}", highlight=False, soft_wrap=True)
    for server, limit in record.endpoints.items():
        if limit.cuts or limit.refused:
            cuts = ", ".join(f"{n} on {why}" for why, n in limit.cuts.items()) or "never"
            cuts += f" ({limit.undone} undone: a rate limit)" if limit.undone else ""
            rate = f", {limit.rate_limited} of them a rate limit" if limit.rate_limited else ""
            console.print(
                f"  {server} took {limit.lowest} to {limit.highest} requests at once "
                f"(--concurrency {limit.ceiling}; ended at {limit.limit}; cut {cuts}; "
                f"{limit.refused} answered 429{rate})",
                highlight=False,
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


def _pairs_short(result: RunResult) -> str:
    """Why ``--pairs`` ended short: what ended the waves."""
    record = result.record
    if any(not f.permanent for f in record.prepare_failures):
        return "steps failed (below); run the same command again to go on"
    if record.shortfall:
        return "the metadata pool ran dry (a larger --metadata gives it more)"
    if record.counts.contaminated:
        return (
            "the last wave kept no new pair: its pairs were contaminated or filtered out "
            "(are the seeds themselves in the --decontaminate file?)"
        )
    return "the last wave kept no new pair (the filter keeps none of what the pool gives)"


def print_worker_summary(run: str, stats: RunStats, seconds: float) -> None:
    """What this worker did for a shared run (the run's whole figures: its run.json)."""
    calls = sum(u.calls for u in stats.usage.values())
    cached = sum(u.cached_calls for u in stats.usage.values())
    Console().print(
        f"[bold]codeclm worker[/]: run {run} has no work left; this worker finished "
        f"{stats.finished} instructions in {seconds:,.0f}s ({stats.kept} kept, {stats.dropped} "
        f"dropped, {stats.failed} failed) with {calls:,} calls"
        + (f" ({cached:,} answered from the cache)" if cached else "")
    )


def print_estimate(estimate: Estimate) -> None:
    """``run --estimate``: per role, expected and worst-case calls, tokens and dollars."""
    table = Table("role", "calls", "input tokens", "output tokens", "expected", "worst case")
    for role, usage in sorted(estimate.expected.items()):
        worst = estimate.worst[role]
        table.add_row(
            role,
            f"{usage.calls:,} (≤ {worst.calls:,})",
            f"{usage.input_tokens:,}",
            f"{usage.output_tokens:,} (≤ {worst.output_tokens:,})",
            dollars(estimate.expected_usd.get(role)),
            dollars(estimate.worst_usd.get(role)),
        )
    table.add_row(
        "[bold]all[/]", "", "", "", dollars(estimate.total_usd), dollars(estimate.worst_total_usd)
    )
    console = Console()
    console.print(f"[bold]codeclm run --estimate[/] (from the {estimate.source})")
    console.print(table)
    if estimate.pilot_usd is not None:
        console.print(f"  the pilot itself cost {dollars(estimate.pilot_usd)}")
    else:
        console.print(
            f"  assumes answers of about {ANSWER_TOKENS} tokens and "
            f"{KEPT_AT_EACH_ITERATION:.0%} of pairs decided at each iteration (the paper's); "
            "--pilot N measures both on your models",
            highlight=False,
        )
    if None in estimate.expected_usd.values():
        console.print(
            "  a role's price is unknown: set [ROLE.price] input and output in the config"
        )

"""The commands that look into a run's threads: ``inspect`` (the threads, or one
instruction's history) and ``step`` (one instruction node by node): what they ask of the
API and what they print."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from rich.console import Console
from rich.table import Table

from codeclm import api
from codeclm.api import ThreadDetail, ThreadListing, parse_assignment


def cmd_inspect(args: argparse.Namespace) -> int:
    found = api.inspect(args.out, args.id, store=args.store, run_name=args.run_name)
    if args.json:
        data = found.as_json() if isinstance(found, ThreadDetail) else found.model_dump()
        print(json.dumps(data, indent=2, ensure_ascii=False))
    elif isinstance(found, ThreadDetail):
        print_thread(found)
    else:
        print_listing(found)
    return 0


def cmd_step(args: argparse.Namespace) -> int:
    """Step one instruction node by node (interactive at a terminal, or by flags)."""
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

    final = api.step(
        args.out,
        args.id,
        store=args.store,
        run_name=args.run_name,
        cache=args.cache,
        from_checkpoint=args.from_checkpoint,
        patch=patch,
        until=args.until,
        emit=emit,
        ask=ask if interactive else None,
    )
    if not args.json:
        console.print(
            f"{final['id']}: {final['status']}; next: {', '.join(final['next']) or 'end'}"
        )
    return 0


def print_listing(listing: ThreadListing) -> None:
    """``codeclm inspect DIR``: a table of the threads, the pass and what is missing."""
    table = Table("id", "status", "iteration", "gap", "use case", "reason")
    for thread in listing.threads:
        gap = thread.gap
        table.add_row(
            thread.id,
            thread.status,
            str(thread.iteration or ""),
            "" if gap is None else f"{gap:+g}",
            thread.use_case or "",
            thread.reason or "",
        )
    console = Console()
    console.print(table)
    counts = ", ".join(f"{n} {status}" for status, n in sorted(listing.counts.items()))
    console.print(
        f"prepare: {listing.prepare}; {listing.metadata_pool} metadata entries; "
        f"{len(listing.threads)} instructions: {counts or 'none yet'}"
    )
    if listing.missing:
        console.print(
            f"[yellow]{listing.missing} of the budget's {listing.budget} "
            f"instructions are missing[/]: {listing.missing_why or 'see run.json'}"
        )


def print_thread(detail: ThreadDetail) -> None:
    console = Console()
    state = detail.state
    if state is None:  # its first step is not checkpointed yet
        console.print(f"[bold]{detail.id}[/] {detail.status}: not started yet")
        return
    console.print(
        f"[bold]{detail.id}[/] {detail.status}, iteration {state['iteration']}; "
        f"next: {', '.join(detail.next) or '(end)'}"
    )
    console.print(f"  metadata: {state['use_case']} / {', '.join(state['skills'])}")
    console.print(f"  instruction: {state['instruction']}")
    for turn, text in enumerate(state.get("follow_ups") or [], start=2):
        console.print(f"  turn {turn}: {text}")
    if state.get("reason"):
        console.print(f"  reason: {state['reason']}")
    console.print("history:")
    for step in detail.history:
        line = f"  {step.checkpoint}  {' + '.join(step.nodes)}  iteration {step.iteration}"
        if step.scores:
            sc = step.scores
            line += f"  scores strong {sc['strong']:g} target {sc['target']:g} gap {sc['gap']:+g}"
            line += f" -> {step.status}"
        if step.action:
            line += f"  action: {step.action}"
            line += f" (turn {step.turn})" if step.turn else ""
        if step.reason:
            line += f"  failed: {step.reason}"
        console.print(line, soft_wrap=True, highlight=False)

"""``codeclm review`` (a person's review from a script) and ``codeclm view`` (the page).

Both are thin layers over ``codeclm.review``, which checks every change before it is kept.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from codeclm import api
from codeclm.api import EntryEdit, PoolStatus, ReviewError, RunSession, Verdict, entry_edit
from codeclm.cli.flags import add_store_flags


def add_review(commands: Any) -> None:
    """``codeclm review`` (scripts); ``codeclm view`` is the page: one review, two doors."""
    review = commands.add_parser(
        "review",
        help="review a run: its metadata pool before decoding, its kept pairs after",
        description="Without an action: where the review stands. Pool (a run started with "
        "--review metadata waits for it): --drop, --keep, --edit ENTRY, --add change a draft; "
        "--approve or --approve-all resume the run with that pool. Pairs: --accept, --reject, "
        "--edit PAIR instruction=... or response=..., with --note.",
    )
    review.add_argument("out", type=Path, metavar="DIR", help="the run's output folder")
    review.add_argument("--drop", nargs="+", default=[], metavar="ID", help="pool entries")
    review.add_argument("--keep", nargs="+", default=[], metavar="ID", help="undo a --drop")
    review.add_argument(
        "--edit",
        nargs="+",
        action="append",
        default=[],
        metavar=("ID", "FIELD=VALUE"),
        help="an entry's use_case= or skills=a,b; a pair's instruction= or response=",
    )
    review.add_argument(
        "--add",
        nargs="+",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="a new pool entry: use_case=... skills=a,b",
    )
    approve = review.add_mutually_exclusive_group()
    approve.add_argument("--approve", action="store_true", help="approve the pool as drafted")
    approve.add_argument(
        "--approve-all",
        action="store_true",
        help="approve every entry as the model made it (refused over a draft that changes "
        "the pool, unless --discard-draft)",
    )
    review.add_argument(
        "--discard-draft",
        action="store_true",
        help="with --approve-all: set the draft's drops, edits and additions aside on purpose",
    )
    review.add_argument("--accept", nargs="+", default=[], metavar="ID", help="kept pairs")
    review.add_argument("--reject", nargs="+", default=[], metavar="ID", help="kept pairs")
    review.add_argument("--note", help="a note kept with the pool's draft or the pairs' reviews")
    review.add_argument(
        "--reviewer",
        metavar="NAME",
        default=_user(),
        help="who is reviewing, kept with each review (default: your login name)",
    )
    review.add_argument("--json", action="store_true", help="machine-readable output")
    add_store_flags(review)


def add_view(commands: Any) -> None:
    """``codeclm view``: the page over a run (and its review)."""
    view = commands.add_parser(
        "view",
        help="a local web page over a run, live while it runs; review the pool and the pairs",
    )
    view.add_argument("out", type=Path, metavar="DIR", help="the run's output folder")
    view.add_argument("--port", type=int, default=8765, help="default 8765 (0: any free port)")
    view.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to serve on (default 127.0.0.1: this machine only). The page opens "
        "with the token in the address it prints at start, on loopback too; served wider, "
        "for a team, each review records the reviewer's name",
    )
    add_store_flags(view)


def _user() -> str:
    """This machine's login name, or '' when it has none."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return ""


def _fields(ident: str, assignments: list[str]) -> dict[str, Any]:
    """``FIELD=VALUE`` words (values are plain text) into a dict; one-line errors."""
    if not assignments:
        raise ReviewError(f"--edit {ident}: give FIELD=VALUE after the id")
    fields: dict[str, Any] = {}
    for text in assignments:
        name, sep, value = text.partition("=")
        if not sep or not name.strip():
            raise ReviewError(f"--edit {ident} {text!r}: expected FIELD=VALUE")
        fields[name.strip()] = value
    return fields


def cmd_review(args: argparse.Namespace) -> int:
    async def review() -> int:
        async with api.review_session(
            args.out, store=args.store, run_name=args.run_name
        ) as session:
            return await _review(args, session)

    return asyncio.run(review())


async def _review(args: argparse.Namespace, session: RunSession) -> int:
    status = await session.pool_status()
    entry_ids = {e.id for e in status.pool} | {e.id for e in status.draft.added}
    pool_edits: dict[str, EntryEdit] = {}
    pair_edits: dict[str, dict[str, Any]] = {}
    for ident, *assignments in args.edit:
        fields = _fields(ident, assignments)
        if ident in entry_ids:
            pool_edits[ident] = entry_edit(fields)
        elif not set(fields) - {"use_case", "skills"}:
            raise ReviewError(f"no metadata entry {ident!r} in the pool")
        elif set(fields) - {"instruction", "response"}:
            raise ReviewError(f"--edit {ident}: a pair's fields are instruction and response")
        else:
            pair_edits[ident] = fields
    added = [entry_edit(_fields("--add", words)) for words in args.add]
    pool_change = bool(args.drop or args.keep or pool_edits or added)
    accept, reject = set(args.accept), set(args.reject)
    if both := sorted(accept & reject):
        raise ReviewError(f"{', '.join(both)}: both accepted and rejected")
    pairs = sorted(accept | reject | set(pair_edits))
    approving = args.approve or args.approve_all
    if args.discard_draft and not args.approve_all:
        raise ReviewError("--discard-draft goes with --approve-all")
    if args.note is not None and not (pool_change or pairs or approving):
        raise ReviewError("--note goes with a change: of the pool, or of pairs")

    for ident in pairs:  # every pair checked before anything is kept
        await session.check_pair(ident, **pair_edits.get(ident, {}))
    if pool_change or (approving and args.note is not None):
        status = await session.edit_pool(
            drop=args.drop,
            keep=args.keep,
            edit=pool_edits,
            add=added,
            note=args.note,
            reviewer=args.reviewer,
        )
        draft = status.draft
        print(
            f"codeclm review: the draft leaves {len(status.preview)} entries "
            f"({len(draft.dropped)} dropped, {len(draft.edited)} edited, "
            f"{len(draft.added)} added)"
        )
    if approving:
        approved = await session.approve_pool(
            as_built=args.approve_all, discard_draft=args.discard_draft, reviewer=args.reviewer
        )
        print(
            f"codeclm review: the pool of {len(approved)} entries is approved; "
            "the waiting run goes on (or starts decoding at its next resume)"
        )
        status = await session.pool_status()
    for ident in pairs:
        verdict: Verdict | None = (
            "accepted" if ident in accept else "rejected" if ident in reject else None
        )
        review = await session.review_pair(
            ident, verdict, note=args.note, reviewer=args.reviewer, **pair_edits.get(ident, {})
        )
        edited = " (edited)" if review.edited else ""
        print(f"codeclm review: {ident} {review.verdict}{edited}")
    if args.json:
        print(json.dumps(await _summary(session, status), indent=2, ensure_ascii=False))
    elif not (pool_change or approving or pairs):
        await _print_status(session, status)
    return 0


async def _summary(session: RunSession, status: PoolStatus) -> dict[str, Any]:
    reviews = await session.reviews.pairs()
    return {
        "pool": {
            "phase": status.phase,
            "entries": [e.model_dump(mode="json") for e in status.preview],
            "draft": status.draft.model_dump(mode="json"),
            "problem": status.problem,
        },
        "pairs": {ident: r.model_dump(mode="json") for ident, r in reviews.items()},
    }


async def _print_status(session: RunSession, status: PoolStatus) -> None:
    console = Console()
    where = session.reviews.where
    if status.phase == "waiting":
        draft = status.draft
        table = Table("id", "change", "use case", "skills", "origin", "seeds")
        entries = {e.id: e for e in status.preview}
        for entry in [*status.pool, *draft.added]:
            shown = entries.get(entry.id, entry)
            change = (
                "drop"
                if entry.id in draft.dropped
                else "add"
                if entry.origin == "review"
                else "edit"
                if entry.id in draft.edited
                else ""
            )
            table.add_row(
                entry.id,
                change,
                shown.use_case,
                ", ".join(shown.skills),
                entry.origin,
                ", ".join(entry.seed_ids),
            )
        console.print(table)
        console.print(
            f"pool: waiting for review; {len(status.preview)} entries after the draft. "
            f"Approve: codeclm review {where} --approve (or --approve-all)"
        )
        if status.problem:
            console.print(f"the draft no longer applies: {status.problem}")
    else:
        console.print(f"pool: {status.phase} ({len(status.pool)} entries)")
    reviews = await session.reviews.pairs()
    verdicts = [r.verdict for r in reviews.values()]
    edited = sum(r.edited for r in reviews.values())
    console.print(
        f"pairs: {verdicts.count('accepted')} accepted ({edited} edited), "
        f"{verdicts.count('rejected')} rejected"
    )


def cmd_view(args: argparse.Namespace) -> int:
    return api.view(
        args.out, store=args.store, run_name=args.run_name, host=args.host, port=args.port
    )

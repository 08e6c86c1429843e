"""``codeclm judge``: a blind sample of a run's (or an evaluation's) judged pairs for
people to score, and their scores read back beside the LLM judge's."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.console import Console

from codeclm import api
from codeclm.cli.flags import positive


def add_judge(commands: Any) -> None:
    judge = commands.add_parser(
        "judge",
        help="people judge a blind sample of the judged pairs; their agreement with the judge",
        description="--sample N --out FILE writes N judged pairs (seeded, spread over use "
        "cases) as JSON lines: key, instruction, answer_a, answer_b in a random order, and "
        "score_a, score_b (1-10) and judge (your name) to fill in, in any tool. --import "
        "FILE reads them back (again as often as you like; several people) and records "
        "their agreement with the LLM judge in run.json or eval.json (judge.human).",
    )
    judge.add_argument("out", type=Path, metavar="DIR", help="the run's or evaluation's folder")
    action = judge.add_mutually_exclusive_group(required=True)
    action.add_argument("--sample", type=positive(int), metavar="N", help="pairs to sample")
    action.add_argument("--import", dest="source", type=Path, metavar="FILE",
                        help="a sample file filled in")  # fmt: skip
    judge.add_argument("--out", dest="dest", type=Path, metavar="FILE",
                       help="with --sample: where to write it")  # fmt: skip
    judge.add_argument("--seed", type=int, help="with --sample: the sample's seed (0)")


def cmd_judge(args: argparse.Namespace) -> int:
    console = Console()
    if args.sample is not None:
        if args.dest is None:
            raise api.ConfigError("--sample needs --out FILE: where to write the sample")
        if args.dest.resolve().parent == args.out.resolve():
            raise api.ConfigError(f"--out {args.dest}: write the sample outside the run's folder")
        lines = api.judge_sample(args.out, int(args.sample), args.dest, args.seed or 0)
        console.print(
            f"{lines} pairs to judge in {args.dest}: fill in score_a, score_b (1-10) and "
            f"judge, then codeclm judge {args.out} --import {args.dest}",
            highlight=False, soft_wrap=True,
        )  # fmt: skip
        return 0
    if args.dest is not None or args.seed is not None:
        raise api.ConfigError("--out and --seed go with --sample, not --import")
    record = api.judge_import(args.out, args.source)
    human = record.judge.human if record.judge else None
    if human is None or not human.ratings:
        console.print(f"no scores in {args.source} yet: nothing imported", highlight=False)
        return 0
    console.print(human.line(), highlight=False, soft_wrap=True)
    return 0

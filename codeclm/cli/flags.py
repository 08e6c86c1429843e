"""Flags several commands share, each defined once: the one-line error parser, the role
flags, the store flags, the cache flag, and setting flags derived from a config model's
field (its type, bounds, help and default)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any, get_args

from pydantic import BaseModel

EXIT_USAGE = 2
EXIT_CAPPED = 3
"""The run stopped at its cost cap (``--max-cost``): run again with a higher one."""
EXIT_BROKEN = 4
"""An endpoint failed every request (its breaker tripped): fix it and run again."""
EXIT_DETACHED = 5
"""``--detach``: the run stopped while its requests wait on batches at the providers (not
finished): ``codeclm resume DIR`` collects them."""


ROLE_FLAGS = ("model", "base_url", "api_key_env")


class Parser(argparse.ArgumentParser):
    """argparse, but its errors are one line and exit 2 (argparse prints usage too)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"codeclm: error: {message}\n")
        raise SystemExit(EXIT_USAGE)


def add_cache_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-cache",
        dest="cache",
        action="store_false",
        default=None,
        help="bypass the response cache (DIR/llm_cache.sqlite): send every request again",
    )


def add_adaptive_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-adaptive",
        dest="adaptive",
        action="store_false",
        default=None,
        help="keep --concurrency requests in flight at every endpoint instead of adapting "
        "to what each takes (docs/performance.md)",
    )


def add_cache_flags(parser: argparse.ArgumentParser) -> None:
    """``--no-cache``, and ``--no-adaptive`` beside it: every command that calls models
    takes both."""
    add_cache_flag(parser)
    add_adaptive_flag(parser)


_ROLE_HELP = {
    "model": "the {role} model's name at its endpoint (default: the embedded toy model, "
    "SmolLM2-135M, served in this process)",
    "base_url": "the {role} model's OpenAI-compatible endpoint (default: OpenAI's, or the "
    "embedded server when no model is named)",
    "api_key_env": "the environment variable holding the {role} model's API key (default "
    "OPENAI_API_KEY; a local endpoint needs none)",
}


def add_role_flags(parser: argparse.ArgumentParser, role: str) -> None:
    """``--ROLE-model``, ``--ROLE-base-url``, ``--ROLE-api-key-env``."""
    for name in ROLE_FLAGS:
        text = _ROLE_HELP[name].format(role=role)
        if role == "judge" and name == "model":
            text = "the judge's model (default: the strong model, which then judges its own "
            text += "answers; the paper's evaluation uses a third model)"
        parser.add_argument(f"--{role}-{name.replace('_', '-')}", metavar=name.upper(), help=text)


def add_store_flags(
    parser: argparse.ArgumentParser, lease: bool = False, keep: bool = False
) -> None:
    """``--store``/``--run``: where the run lives. ``keep``: a new run (``run``, ``eval``)
    chooses its store; the other commands only find a run kept there."""
    parser.add_argument(
        "--store",
        metavar="URL",
        help="keep the run in PostgreSQL (postgresql://user@host/db; the password from "
        "PGPASSWORD or ~/.pgpass) instead of SQLite files in DIR; workers on any machine "
        "can join it (codeclm worker)"
        if keep
        else "the PostgreSQL store of a run kept there (default: the one DIR/run.json names)",
    )
    parser.add_argument(
        "--run",
        dest="run_name",
        metavar="NAME",
        help="the run's name in the store (default: the output folder's name)",
    )
    if lease:
        parser.add_argument(
            "--lease-seconds",
            type=float,
            default=30.0,
            metavar="S",
            help="a dead worker's threads are taken up by others after this long (default 30)",
        )


def add_setting_flags(
    parser: argparse.ArgumentParser, model: type[BaseModel], names: tuple[str, ...]
) -> None:
    """One flag per config field, its type, help and default taken from the field itself."""
    for name in names:
        field = model.model_fields[name]
        kind = next(t for t in (int, float) if t in (field.annotation, *get_args(field.annotation)))
        default = "unset" if field.default is None else f"{field.default:g}"
        text = f"{field.description} (default {default})".replace("%", "%%")
        parser.add_argument(f"--{name.replace('_', '-')}", type=_bounded(kind, field), help=text)


def _bounded(kind: type[int] | type[float], field: Any) -> Callable[[str], float]:
    """A flag's type that checks the field's bounds itself, so a bad value is named by its
    flag ("argument --instructions: must be greater than 0, not 0"), not by its config key."""
    checks = [
        (bound, test, words)
        for constraint in field.metadata
        for attr, test, words in (
            ("gt", lambda v, b: v > b, "greater than"),
            ("ge", lambda v, b: v >= b, "at least"),
            ("lt", lambda v, b: v < b, "less than"),
            ("le", lambda v, b: v <= b, "at most"),
        )
        if (bound := getattr(constraint, attr, None)) is not None
    ]

    def parse(text: str) -> float:
        value = kind(text)
        for bound, test, words in checks:
            if not test(value, bound):
                raise argparse.ArgumentTypeError(f"must be {words} {bound:g}, not {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its error
    return parse


def positive(kind: type[int] | type[float]) -> Callable[[str], float]:
    def parse(text: str) -> float:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be greater than 0, not {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its error
    return parse


def add_estimate_flags(parser: argparse.ArgumentParser) -> None:
    """``run --estimate [--pilot N]``: what the run will cost, before paying (docs/cost.md)."""
    parser.add_argument(
        "--estimate",
        action="store_true",
        help="print the run's calls, tokens and dollars per role, expected and at worst, "
        "and stop: no model is called (nothing is written)",
    )
    parser.add_argument(
        "--pilot",
        type=positive(int),
        metavar="N",
        help="with --estimate: measure every step on a pilot run of N instructions (paid "
        "for; in a temporary folder) and scale it to the run",
    )


def add_batch_flags(parser: argparse.ArgumentParser, *, batch: bool = True) -> None:
    """``--batch`` (a run's setting) and ``--detach``: batch mode (docs/cost.md)."""
    if batch:
        parser.add_argument(
            "--batch",
            action="store_true",
            default=None,
            help="send the requests through the providers' Batch API: half price, replies "
            "within hours (the run waits, or --detach)",
        )
    parser.add_argument(
        "--detach",
        action="store_true",
        help="with --batch: stop once every request waits on a batch out at the provider; "
        "codeclm resume DIR collects them",
    )

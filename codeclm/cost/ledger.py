"""What a run paid: one row for every request a model answered, appended as the reply
arrives, whichever process, branch, step or re-run made it, with the step that asked it.

The threads' states follow their current branches (a thread forked by ``codeclm step``
forgets the calls of the branch it left; a step that failed forgets what it paid); the
ledger never forgets a call and never counts one twice, so its sums never go down, and
``run.json``'s paid figures are its own (``cost.figures.paid_usage``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from codeclm.state import TokenUsage

#: The token columns of a ledger row (``TokenUsage``'s fields that a provider bills).
COLUMNS = ("input_tokens", "cached_input_tokens", "output_tokens", "reasoning_tokens")


class Ledger(ABC):
    """Every paid request's tokens, by role and by the step that made it."""

    @abstractmethod
    async def record(self, role: str, usage: TokenUsage, step: str = "") -> None:
        """One answered request (durable when this returns); ``step``: the node (and turn)
        it was made in, as ``usage_by_node`` names it."""

    @abstractmethod
    async def totals(self) -> dict[str, TokenUsage]:
        """What each role was paid for, over the run's whole life."""

    @abstractmethod
    async def by_step(self) -> dict[str, TokenUsage] | None:
        """What was paid per ``step/role-key``; None when some request has no step (a
        ledger begun by a version that did not record them)."""


def steps_of(rows: list[tuple[object, ...]]) -> dict[str, TokenUsage] | None:
    """``by_step`` from rows of step, role, ``COUNT(*)`` and the ``SUMS``."""
    if any(not row[0] for row in rows):
        return None
    return {f"{row[0]}/{row[1]}": ledger_usage(tuple(row[2:])) for row in rows}


def ledger_usage(row: tuple[object, ...]) -> TokenUsage:
    """A row of ``COUNT(*)`` and the ``SUMS`` as usage."""
    calls, *tokens = (int(value or 0) for value in row)  # type: ignore[call-overload]
    return TokenUsage(calls=calls, **dict(zip(COLUMNS, tokens, strict=True)))


SUMS = ", ".join(f"SUM({column}) AS {column}" for column in COLUMNS)

"""Calls and tokens spent, per role and per node: what every thread's state adds up."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Annotated, Literal

from langgraph.config import get_config
from pydantic import BaseModel

Role = Literal["strong", "target"]


class TokenUsage(BaseModel):
    """Calls and tokens spent by one role."""

    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    """Every token generated, reasoning included (providers bill reasoning as output)."""
    reasoning_tokens: int = 0
    """Of ``output_tokens``, those the server says went to reasoning."""
    cached_input_tokens: int = 0
    """Of ``input_tokens``, those the provider read from its prompt cache (billed lower)."""
    cached_calls: int = 0
    """Requests answered from the response cache: nothing sent, no tokens spent."""
    saved_input_tokens: int = 0
    saved_output_tokens: int = 0
    """The tokens the response cache's answers would have cost (what the cache saved)."""

    def __add__(self, other: TokenUsage) -> TokenUsage:
        # (sums of ints need no validation: every reply and every step adds usage, and
        # building the model through its validator was a twentieth of a run's loop time)
        return TokenUsage.model_construct(
            **{name: getattr(self, name) + getattr(other, name) for name in _COUNTS}
        )

    def saved(self) -> TokenUsage:
        """What the cache's answers saved, as usage (to price it)."""
        return TokenUsage(
            input_tokens=self.saved_input_tokens, output_tokens=self.saved_output_tokens
        )


_COUNTS = tuple(TokenUsage.model_fields)


def add_usage(left: dict[str, TokenUsage], right: dict[str, TokenUsage]) -> dict[str, TokenUsage]:
    """Reducer: sum usage per role, so parallel nodes can each report their own (a usage
    is a value, never changed in place: a role seen first is taken as it is)."""
    merged = dict(left)
    for role, usage in right.items():
        known = merged.get(role)
        merged[role] = usage if known is None else known + usage
    return merged


Usage = Annotated[dict[str, TokenUsage], add_usage]


def spent(node: str, **by_role: TokenUsage) -> dict[str, dict[str, TokenUsage]]:
    """A node's update of both usage fields: per role, and per ``node/role`` (for report)."""
    return {
        "usage": dict(by_role),
        "usage_by_node": {f"{node}/{role}": usage for role, usage in by_role.items()},
    }


TURN: ContextVar[int] = ContextVar("codeclm_turn", default=1)
"""The turn of a conversation the current requests belong to (set where a node asks turn
by turn): the ledger files each paid request under its step (``current_step``)."""


@contextmanager
def in_turn(turn: int) -> Iterator[None]:
    """The requests made inside belong to turn ``turn`` (for the ledger's steps)."""
    token = TURN.set(turn)
    try:
        yield
    finally:
        TURN.reset(token)


def current_step() -> str:
    """The step a request is made in, as ``usage_by_node`` names it (``turn_node``): the
    LangGraph node running, and the turn; "" outside a node."""
    try:
        node = get_config().get("metadata", {}).get("langgraph_node", "")
    except RuntimeError:  # (called outside a runnable)
        return ""
    return turn_node(str(node), TURN.get()) if node else ""


def turn_node(node: str, turn: int) -> str:
    """A node's name in the per-node usage for one turn of a conversation: the node's own
    for the first turn (as a single instruction's), ``node turn N`` for a later one."""
    return node if turn == 1 else f"{node} turn {turn}"


def spent_per_turn(node: str, **by_role: list[TokenUsage]) -> dict[str, dict[str, TokenUsage]]:
    """``spent``, with each role's usage given turn by turn (``by_role``: a list per role):
    per node and turn in ``usage_by_node``, so the report shows what each turn cost."""
    by_node: dict[str, TokenUsage] = {}
    for role, turns in by_role.items():
        for turn, usage in enumerate(turns, 1):
            by_node[f"{turn_node(node, turn)}/{role}"] = usage
    return {
        "usage": {role: sum(turns, TokenUsage()) for role, turns in by_role.items()},
        "usage_by_node": by_node,
    }

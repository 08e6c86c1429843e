"""What a step of a method is, declared once beside its node: the prompts it renders, the
reply it asks for, the calls it makes and how long their replies run, the status a thread
has on its way in.

A node module declares its step (``JUDGE = Step(...)``) and marks its node function with
it (``@JUDGE.node``); the graphs are built from those functions, so the steps of a method
are the declarations of its graphs' nodes (``codeclm.graph.steps``). Everything that needs
to know a step reads its declaration there: the cost estimate (calls, tokens, prompt
sizes), the restart table (``entered_as``), the report's per-turn tables, ``inspect``, the
loopback mock (``reply`` and ``prompts``). Like ``methods.py``'s registry, and like the
column-generator registries of data-design tools, a step is data first: adding one is its
module, its prompt file and its graph edge.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from codeclm.config import RunConfig
from codeclm.methods import MethodSpec
from codeclm.prompts import Prompts

#: What a step's calls grow with: the seeds, the metadata pool's entries or the instructions.
Unit = Literal["seeds", "entries", "instructions"]

#: Which turns of a conversation (``--turns`` above 1) a step is asked for: the first only
#: (its later-turn work is recorded under its own name), each turn again, or the later ones.
Turns = Literal["first", "each", "later"]

#: A typical instruction's and answer's length in tokens (a capable model): the estimate
#: renders prompts with text this long.
INSTRUCTION_TOKENS = 30
ANSWER_TOKENS = 350

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Scale:
    """What the estimate knows of a run before it starts, handed to each step's ``calls``."""

    config: RunConfig
    method: MethodSpec
    seeds: int
    entries: int
    #: Iterations an instruction runs: (expected, at most); (1, 1) without a judge loop.
    iterations: tuple[float, float]

    @property
    def instructions(self) -> int:
        return self.config.instructions

    @property
    def per_entry(self) -> int:
        """Instructions decoded from each metadata entry."""
        return math.ceil(self.instructions / max(self.entries, 1))

    def per_iteration(self, calls: float) -> tuple[float, float]:
        """``calls`` per instruction at each iteration, over the run: (expected, at most)."""
        expected, most = self.iterations
        return self.instructions * expected * calls, self.instructions * most * calls

    def rewrites(self) -> tuple[float, float]:
        """Improvements over the run: one per iteration after the first, with a judge loop;
        one per instruction without (Self-Rubrics once); none for a method without rubrics."""
        if self.method.judges:
            expected, most = self.iterations
            return self.instructions * (expected - 1), self.instructions * (most - 1)
        n = self.instructions if self.method.uses_rubrics else 0
        return n, n


@dataclass(frozen=True)
class Typical:
    """Texts of typical length to render a step's prompt with, for the estimate."""

    config: RunConfig
    prompts: Prompts
    seed: str
    instruction: str = "word " * (INSTRUCTION_TOKENS * 4 // 5)
    answer: str = "word " * (ANSWER_TOKENS * 4 // 5)

    @property
    def labels(self) -> dict[str, str]:
        """A metadata entry's placeholders (use case, skills, no extra fields)."""
        skills = ", ".join(f"skill {i}" for i in range(self.config.max_skills))
        return {"use_case": "a use case", "skills": skills, "fields": ""}

    def render(self, prompt: str, **values: object) -> str:
        return self.prompts.render(prompt, **values)


def _once(scale: Scale) -> tuple[float, float]:
    return scale.instructions, scale.instructions


def _every_method(method: MethodSpec) -> bool:
    return True


@dataclass(frozen=True)
class Step:
    """One step of a method: a node of its graphs, and what it asks of the models."""

    name: str
    """The node's name, and the first part of its usage's ``node/role`` key."""
    prompts: tuple[str, ...]
    """The prompt files (``codeclm/prompts/NAME.md``) it renders, its main one first."""
    output_tokens: int
    """A typical reply's length (a capable model), per item when ``items`` is set."""
    reply: str | None = None
    """The name its structured reply's schema goes by (a judge's line of two scores:
    'PairwiseScores'); None: free text (an answer)."""
    parse: Callable[[str], Any] | None = None
    """How a free-text reply is read (the judges' line of two scores), where it is not a
    schema's JSON."""
    grammar: str | None = None
    """A llama.cpp grammar holding its reply, for a server that takes one (the embedded
    toy model cannot follow the judge's format unaided)."""
    roles: tuple[str, ...] = ("strong",)
    unit: Unit = "instructions"
    calls: Callable[[Scale], tuple[float, float]] = _once
    """Each role's calls over the whole run: (expected, at most)."""
    items: Callable[[RunConfig], int] | None = None
    """Items per reply (a list reply: instructions, rubrics), each ``output_tokens`` long."""
    typical: Callable[[Typical], str] | None = None
    """Its main prompt, rendered with text of typical length (default: every placeholder
    an instruction's length)."""
    turns: Turns = "first"
    later_turn: Callable[[Typical, int], str] | None = None
    """Its prompt at a later turn (``turns`` 'each' or 'later')."""
    entered_as: str = "pending"
    """A thread's status as it comes to this step: a failed thread's reset sets it."""
    shows: tuple[str, ...] = ()
    """State fields ``inspect`` shows after it ran ('scores', 'action')."""
    runs_for: Callable[[MethodSpec], bool] = field(default=_every_method)
    """A 'prepare' step (one graph for every method): the methods it runs for."""

    def node(self, function: F) -> F:
        """Mark ``function`` as this step's node (the graphs read it back: ``step_of``)."""
        function.step = self  # type: ignore[attr-defined]
        return function

    def typical_prompt(self, typical: Typical) -> str:
        if self.typical is not None:
            return self.typical(typical)
        main = self.prompts[0]
        values = dict.fromkeys(typical.prompts.placeholders(main), typical.instruction)
        return typical.render(main, **values)


def step_of(function: Callable[..., Any]) -> Step | None:
    """The step a node function declares (``Step.node``); None: a node of bookkeeping."""
    step = getattr(function, "step", None)
    return step if isinstance(step, Step) else None

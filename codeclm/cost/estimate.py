"""What a run will cost, before it is paid: calls, tokens and dollars per role, expected and
at worst, without calling a model.

Each step declares its own calls and reply length (``codeclm.steps.Step``); this module
only adds them up. A step's calls follow from the settings (seeds, ``--metadata``,
``--instructions``, ``--rubrics``, ``--decode-batch``, ``--max-iterations``) and an expected
share of pairs kept at each iteration (the paper: over 70% at the first). Each call's input
is its prompt, rendered with the seeds' own length; its output is the step's typical reply,
which real models vary most: a small pilot run measures every step's calls and tokens
instead (``from_pilot``). The worst case takes every instruction through every iteration
and every reply to its ``max_tokens``.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, Field

from codeclm.config import RunConfig
from codeclm.methods import method_spec
from codeclm.prompts import Prompts
from codeclm.records import RolePrice, RunRecord
from codeclm.state import TokenUsage
from codeclm.steps import ANSWER_TOKENS, Scale, Step, Typical

__all__ = ["ANSWER_TOKENS", "KEPT_AT_EACH_ITERATION", "Estimate", "from_pilot", "from_settings"]

#: The share of instructions the gap rule keeps (or drops) at each iteration; the paper
#: reports over 70% of pairs kept at the first.
KEPT_AT_EACH_ITERATION = 0.7


def tokens(text: str) -> int:
    """About four characters a token, as providers' limiters count."""
    return max(1, len(text) // 4)


class StepEstimate(BaseModel):
    """One step's calls for one role (``node/role``), expected and at worst."""

    calls: float
    input_tokens: float
    output_tokens: float
    worst_calls: float
    worst_output_tokens: float


class Estimate(BaseModel):
    """The run's expected and worst-case calls, tokens and dollars per role."""

    source: str
    """'prompts' (the settings, the prompts and typical reply lengths) or 'pilot of N'."""
    steps: dict[str, StepEstimate] = Field(default_factory=dict)
    expected: dict[str, TokenUsage] = Field(default_factory=dict)
    worst: dict[str, TokenUsage] = Field(default_factory=dict)
    expected_usd: dict[str, float | None] = Field(default_factory=dict)
    worst_usd: dict[str, float | None] = Field(default_factory=dict)
    total_usd: float | None = None
    worst_total_usd: float | None = None
    pilot_usd: float | None = None
    """What the pilot run itself cost (paid to make this estimate)."""

    def priced(self, prices: dict[str, RolePrice | None], batch: bool = False) -> Estimate:
        """The same estimate in dollars (``batch``: at each role's batch discount)."""

        def usd(usage: dict[str, TokenUsage]) -> dict[str, float | None]:
            return {
                role: (
                    p.cost(u) * (p.batch_discount if batch else 1.0)
                    if (p := prices.get(role)) is not None
                    else None
                )
                for role, u in usage.items()
            }

        expected, worst = usd(self.expected), usd(self.worst)
        return self.model_copy(
            update={
                "expected_usd": expected,
                "worst_usd": worst,
                "total_usd": _sum(expected),
                "worst_total_usd": _sum(worst),
            }
        )


def _sum(values: dict[str, float | None]) -> float | None:
    return None if None in values.values() else sum(v or 0.0 for v in values.values())


def expected_iterations(max_iterations: int, kept: float = KEPT_AT_EACH_ITERATION) -> float:
    """Iterations an instruction runs on average, when each one ends the loop with
    probability ``kept`` (and the last one always does)."""
    return sum((1 - kept) ** t for t in range(max_iterations))


def _turn_keys(step: Step, turns: int) -> list[tuple[str, int]]:
    """A step's ``node`` names and turns: ``node`` for the first, ``node turn N`` later."""
    first = [] if step.turns == "later" else [(step.name, 1)]
    later = (
        [] if step.turns == "first" else [(f"{step.name} turn {t}", t) for t in range(2, turns + 1)]
    )
    return first + later


def _scale(config: RunConfig, seeds: int) -> Scale:
    method = method_spec(config.method)
    # Every distinct seed's entry is kept, so the pool is at least as large as the seeds.
    entries = max(config.metadata, seeds if method.makes_metadata else 0)
    t = config.max_iterations
    iterations = (expected_iterations(t), float(t)) if method.judges else (1.0, 1.0)
    return Scale(config, method, seeds, entries, iterations)


def from_settings(
    config: RunConfig, prompts: Prompts, seed_texts: list[str], steps: Mapping[str, Step]
) -> Estimate:
    """The estimate from the settings, the prompts and each step's declared calls and
    typical reply (``steps``: the run's, ``codeclm.graph.method_steps``)."""
    seed_tokens = sum(tokens(t) for t in seed_texts) // max(len(seed_texts), 1)
    typical = Typical(config, prompts, seed="word " * (seed_tokens * 4 // 5))
    scale = _scale(config, len(seed_texts))
    prompt: dict[str, int] = {}
    keyed: list[tuple[int, str, StepEstimate]] = []  # (turn, node/role, estimate)
    for step in steps.values():
        calls, worst = step.calls(scale)
        output = step.output_tokens * (step.items(config) if step.items else 1)
        for node, turn in _turn_keys(step, config.turns):
            prompt[node] = tokens(_prompt(step, typical, turn))
            for role in step.roles:
                ceiling = config.role(role).max_tokens
                estimate = StepEstimate(
                    calls=calls,
                    input_tokens=calls * prompt[node],
                    output_tokens=calls * min(output, ceiling),
                    worst_calls=worst,
                    worst_output_tokens=worst * ceiling,
                )
                keyed.append((turn, f"{node}/{role}", estimate))
    keyed.sort(key=lambda item: item[0])  # the first turn's steps, then each later turn's
    return _totals("prompts", {key: estimate for _, key, estimate in keyed}, prompt)


def _prompt(step: Step, typical: Typical, turn: int) -> str:
    if turn == 1:
        return step.typical_prompt(typical)
    if step.later_turn is None:
        raise ValueError(f"step {step.name} is asked at later turns but declares no later_turn")
    return step.later_turn(typical, turn)


def from_pilot(
    config: RunConfig,
    pilot: RunRecord,
    seed_texts: list[str],
    prompts: Prompts,
    steps: Mapping[str, Step],
) -> Estimate:
    """The estimate from a small pilot run of the same settings: each step's calls and
    tokens per seed, per entry or per instruction (as the step declares), as measured,
    scaled to the run."""
    counts = pilot.counts
    have = {
        "seeds": counts.seeds or 1,
        "entries": counts.metadata_pool or 1,
        "instructions": counts.instructions or 1,
    }
    seeds = len(seed_texts)
    encoded = round(counts.metadata_encoded / (counts.seeds or 1) * seeds)
    entries = max(config.metadata, encoded)  # every distinct seed's entry is kept
    want = {"seeds": seeds, "entries": entries, "instructions": config.instructions}
    worst = from_settings(config, prompts, seed_texts, steps).steps
    paid: dict[str, TokenUsage] = {}
    for key, usage in pilot.usage_by_node.items():
        node, role = key.rsplit("/", 1)
        name = node.split(" turn ")[0]
        if name in steps and steps[name].turns == "first":  # a later turn's rewrites
            key = f"{name}/{role}"
        paid[key] = paid.get(key, TokenUsage()) + usage
    found = {}
    for key, usage in paid.items():
        name = key.split("/")[0].split(" turn ")[0]
        unit = steps[name].unit if name in steps else "instructions"
        scale = want[unit] / have[unit]
        calls = (usage.calls + usage.cached_calls) * scale
        bound = worst.get(key)
        found[key] = StepEstimate(
            calls=calls,
            input_tokens=(usage.input_tokens + usage.saved_input_tokens) * scale,
            output_tokens=(usage.output_tokens + usage.saved_output_tokens) * scale,
            worst_calls=bound.worst_calls if bound else calls,
            worst_output_tokens=bound.worst_output_tokens if bound else calls * 0,
        )
    return _totals(f"pilot of {counts.instructions} instructions", found, None)


def _totals(source: str, steps: dict[str, StepEstimate], prompt: dict[str, int] | None) -> Estimate:
    expected: dict[str, TokenUsage] = {}
    worst: dict[str, TokenUsage] = {}
    for key, step in steps.items():
        node, role = key.split("/")
        per_call_in = step.input_tokens / step.calls if step.calls else 0
        if prompt is not None:
            per_call_in = prompt[node]
        expected[role] = expected.get(role, TokenUsage()) + TokenUsage(
            calls=round(step.calls),
            input_tokens=round(step.input_tokens),
            output_tokens=round(step.output_tokens),
        )
        worst[role] = worst.get(role, TokenUsage()) + TokenUsage(
            calls=round(step.worst_calls),
            input_tokens=round(step.worst_calls * per_call_in),
            output_tokens=round(step.worst_output_tokens),
        )
    return Estimate(source=source, steps=steps, expected=expected, worst=worst)

"""What a run will cost, before it is paid: calls, tokens and dollars per role, expected and
at worst, without calling a model.

Each step's calls follow from the settings (seeds, ``--metadata``, ``--instructions``,
``--rubrics``, ``--decode-batch``, ``--max-iterations``, the method) and an expected share
of pairs kept at each iteration (the paper: over 70% at the first). Each call's input is
its prompt, rendered with the seeds' own length; its output is a typical length for the
step (``OUTPUT_TOKENS``), which real models vary most: a small pilot run measures every
step's calls and tokens instead (``from_pilot``). The worst case takes every instruction
through every iteration and every reply to its ``max_tokens``.
"""

from __future__ import annotations

import math

from pydantic import BaseModel, Field

from codeclm.config import RunConfig
from codeclm.methods import method_spec
from codeclm.prompts import Prompts, conversation_text
from codeclm.records import RolePrice, RunRecord
from codeclm.state import TokenUsage

#: The share of instructions the gap rule keeps (or drops) at each iteration; the paper
#: reports over 70% of pairs kept at the first.
KEPT_AT_EACH_ITERATION = 0.7

#: A typical reply's length per step, in tokens (a capable model; the toy and the mock
#: write shorter ones: a pilot measures them).
OUTPUT_TOKENS = {
    "encode_seed": 60,
    "write_rubrics": 40,  # per rubric-and-action pair
    "decode": 30,  # per instruction
    "answer": 350,
    "answer_strong": 350,
    "judge": 12,
    "improve": 60,
    "write_turns": 60,
    "evolve": 60,
    "grow_tree": 250,  # the tree, the grown tree and the new instruction
    "rate": 60,
    "bootstrap": 30,  # per instruction
}

#: How a step's calls grow: per seed, per metadata entry, or per instruction.
UNIT = {"encode_seed": "seeds", "write_rubrics": "entries"}


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


def _prompt_tokens(config: RunConfig, prompts: Prompts, seed_tokens: int) -> dict[str, int]:
    """Each step's prompt, rendered with text of typical lengths."""
    seed = "word " * (seed_tokens * 4 // 5)
    instruction = "word " * (OUTPUT_TOKENS["decode"] * 4 // 5)
    answer = "word " * (OUTPUT_TOKENS["answer"] * 4 // 5)
    skills = ", ".join(f"skill {i}" for i in range(config.max_skills))
    base = {"use_case": "a use case", "skills": skills, "fields": ""}
    rendered = {
        "encode_seed": prompts.render("encode", instruction=seed, max_skills=config.max_skills),
        "write_rubrics": prompts.render("rubrics", k=config.rubrics, avoid="", **base),
        "decode": prompts.render("decode", n=config.decode_batch, avoid="", **base),
        "answer": prompts.render("answer", instruction=instruction),
        "judge": prompts.render("judge", instruction=instruction, answer_1=answer, answer_2=answer),
        "improve": prompts.render("improve", instruction=instruction, action="an action", **base),
        "evolve": prompts.render("evolve_depth", instruction=instruction, method="a method"),
        "bootstrap": prompts.render("self_instruct", examples=instruction * 8, n=8),
        "grow_tree": prompts.render("tree_instruct", instruction=instruction, nodes=10),
        "rate": prompts.render("rate_quality", instruction=instruction, answer=answer),
    }
    rendered["answer_strong"] = rendered["answer"]
    for turn in range(2, config.turns + 1):  # a conversation's later turns: more to read
        users, answers = [instruction] * turn, [answer] * turn
        rendered[f"write_turns turn {turn}"] = prompts.render(
            "follow_up", user_turns=instruction * (turn - 1), turn=turn, plan="a plan", **base
        )
        rendered[f"answer turn {turn}"] = rendered["answer"] * turn + answer * (turn - 1)
        rendered[f"answer_strong turn {turn}"] = rendered[f"answer turn {turn}"]
        conversation = conversation_text(users, answers, "Assistant 1")
        rendered[f"judge turn {turn}"] = prompts.render(
            "judge_turn",
            instruction=instruction,
            conversation_1=conversation,
            conversation_2=conversation,
            turn=turn,
        )
    return {step: tokens(text) for step, text in rendered.items()}


def _calls(config: RunConfig, seeds: int) -> dict[str, tuple[float, float]]:
    """Each ``node/role``'s calls for the whole run: (expected, worst)."""
    spec = method_spec(config.method)
    # Every distinct seed's entry is kept, so the pool is at least as large as the seeds.
    n, m = config.instructions, max(config.metadata, seeds if spec.makes_metadata else 0)
    per_entry = math.ceil(n / max(m, 1))
    calls: dict[str, tuple[float, float]] = {}
    if spec.makes_metadata:
        calls["encode_seed/strong"] = (seeds, seeds)
        asks = m * math.ceil(per_entry / config.decode_batch)
        calls["decode/strong"] = (asks, asks * 2)  # at worst every ask stalls once
        if spec.uses_rubrics:
            calls["write_rubrics/strong"] = (m, m * 3)
    elif spec.prepare == "bootstrap":
        rounds = math.ceil(n / 8)
        calls["bootstrap/strong"] = (rounds, rounds * 4)
    if spec.shape == "judge_loop":
        t = config.max_iterations
        it = expected_iterations(t)
        calls["answer/strong"] = calls["answer/target"] = (n * it, n * t)
        calls["judge/strong"] = (2 * n * it, 2 * n * t)
        calls["improve/strong"] = (n * (it - 1), n * (t - 1))
    else:
        calls["answer_strong/strong"] = (n, n)
        if spec.shape == "improve_once":
            calls["improve/strong"] = (n, n)
        elif spec.shape == "evolve":
            calls["evolve/strong"] = (n * config.evol_rounds, n * config.evol_rounds)
        elif spec.shape == "tree":
            calls["grow_tree/strong"] = (n, n)
        elif spec.shape == "rate":
            calls["rate/strong"] = (n, n)
    written = calls.get("improve/strong", (0, 0))  # a rewrite writes the turns after it anew
    for turn in range(2, config.turns + 1):  # each later turn: written, answered and judged
        calls[f"write_turns turn {turn}/strong"] = (n + written[0], n + written[1])
        for key in [k for k in calls if k.split("/")[0] in ("answer", "answer_strong", "judge")]:
            node, role = key.split("/")
            calls[f"{node} turn {turn}/{role}"] = calls[key]
    return calls


def from_settings(config: RunConfig, prompts: Prompts, seed_texts: list[str]) -> Estimate:
    """The estimate from the settings, the prompts and typical reply lengths."""
    seed_tokens = sum(tokens(t) for t in seed_texts) // max(len(seed_texts), 1)
    prompt = _prompt_tokens(config, prompts, seed_tokens)
    per_call_output = {
        "write_rubrics": OUTPUT_TOKENS["write_rubrics"] * config.rubrics,
        "decode": OUTPUT_TOKENS["decode"] * config.decode_batch,
        "bootstrap": OUTPUT_TOKENS["bootstrap"] * 8,
    }
    steps = {}
    for key, (calls, worst) in _calls(config, len(seed_texts)).items():
        node, role = key.split("/")
        step = node.split(" turn ")[0]  # a conversation's later turn writes as its first
        output = per_call_output.get(step, OUTPUT_TOKENS[step])
        ceiling = config.role(role).max_tokens
        steps[key] = StepEstimate(
            calls=calls,
            input_tokens=calls * prompt[node],
            output_tokens=calls * min(output, ceiling),
            worst_calls=worst,
            worst_output_tokens=worst * ceiling,
        )
    return _totals("prompts", steps, prompt)


def from_pilot(
    config: RunConfig, pilot: RunRecord, seed_texts: list[str], prompts: Prompts
) -> Estimate:
    """The estimate from a small pilot run of the same settings: each step's calls and
    tokens per seed, per entry or per instruction, as measured, scaled to the run."""
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
    worst = from_settings(config, prompts, seed_texts).steps
    paid: dict[str, TokenUsage] = {}
    for key, usage in pilot.usage_by_node.items():  # a later turn's rewrites: improve's
        node, role = key.rsplit("/", 1)
        key = f"improve/{role}" if node.startswith("improve turn ") else key
        paid[key] = paid.get(key, TokenUsage()) + usage
    steps = {}
    for key, usage in paid.items():
        node = key.split("/")[0]
        unit = UNIT.get(node, "instructions")
        scale = want[unit] / have[unit]
        calls = (usage.calls + usage.cached_calls) * scale
        bound = worst.get(key)
        steps[key] = StepEstimate(
            calls=calls,
            input_tokens=(usage.input_tokens + usage.saved_input_tokens) * scale,
            output_tokens=(usage.output_tokens + usage.saved_output_tokens) * scale,
            worst_calls=bound.worst_calls if bound else calls,
            worst_output_tokens=bound.worst_output_tokens if bound else calls * 0,
        )
    return _totals(f"pilot of {counts.instructions} instructions", steps, None)


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

"""The 'prepare' steps of the paper's baselines: Self-Instruct and Evol-Instruct.

Both start from the same seeds as CodecLM and hand their instructions to the same
instruction threads (``answer_strong``; Evol-Instruct's ``evolve`` first), so their
outputs have the same format and the same budget of instructions.
"""

from __future__ import annotations

import asyncio
import math
import random
from typing import Any

from langgraph.runtime import Runtime

from codeclm.analysis.metrics import NoveltyFilter
from codeclm.context import PipelineContext, pipeline_context
from codeclm.llm.parsing import declines_task
from codeclm.methods import BootstrapProgress
from codeclm.nodes.replies import bootstrapped_instructions
from codeclm.state import BasicInstruction, Failure, PrepareState, TokenUsage, spent
from codeclm.steps import Scale, Step

#: Self-Instruct's prompt: 8 in-context tasks, 6 human-written and 2 machine-made.
IN_CONTEXT, FROM_SEEDS, PER_REQUEST = 8, 6, 8


def _rounds(scale: Scale) -> tuple[float, float]:
    """A request per PER_REQUEST instructions; at worst the novelty filter turns away
    three quarters of them."""
    rounds = math.ceil(scale.instructions / PER_REQUEST)
    return rounds, rounds * 4


BOOTSTRAP = Step(
    name="bootstrap",
    prompts=("self_instruct",),
    output_tokens=30,  # per instruction
    reply="BootstrappedInstructions",
    calls=_rounds,
    items=lambda config: PER_REQUEST,
    typical=lambda t: t.render("self_instruct", examples=t.instruction * 8, n=PER_REQUEST),
    runs_for=lambda method: method.prepare == "bootstrap",
)


def sample_seeds(state: PrepareState, runtime: Runtime[PipelineContext]) -> dict[str, Any]:
    """Evol-Instruct: the seeds, taken in turn until the budget of instructions is filled.

    A grown budget adds the instructions after those the run already has.
    """
    budget = pipeline_context(runtime).config.instructions
    seeds = state.seeds
    have = len(state.decoded)
    instructions = [
        BasicInstruction(
            id=f"ev{i:05d}",
            metadata_id="",
            instruction=seeds[i % len(seeds)].text,
            seed_ids=[seeds[i % len(seeds)].id],
        )
        for i in range(have, budget if seeds else 0)
    ]
    return {"decoded": instructions}


def max_bootstrap_rounds(budget: int, requests_per_round: int) -> int:
    """Enough rounds to fill the budget four times over; then the novelty filter has won."""
    return 4 * math.ceil(budget / (PER_REQUEST * requests_per_round)) + 4


def _examples(pool_seeds: list[str], generated: list[str], rng: random.Random) -> str:
    machine = rng.sample(generated, min(IN_CONTEXT - FROM_SEEDS, len(generated)))
    human = rng.sample(pool_seeds, min(IN_CONTEXT - len(machine), len(pool_seeds)))
    tasks = human + machine
    return "\n".join(f"Task {i}: {' '.join(text.split())}" for i, text in enumerate(tasks, 1))


@BOOTSTRAP.node
async def bootstrap(state: PrepareState, runtime: Runtime[PipelineContext]) -> dict[str, Any]:
    """One Self-Instruct round: new tasks from sampled ones, kept only if novel.

    ``concurrency`` prompts go out at once, each with its own sample of in-context tasks;
    a new instruction is kept when its ROUGE-L with every instruction so far (seeds and
    generated) is below ``rouge_threshold`` (0.7 in Self-Instruct).
    """
    ctx = pipeline_context(runtime)
    cfg = ctx.config
    progress = state.method_progress()
    assert isinstance(progress, BootstrapProgress)
    rng = random.Random(f"{cfg.seed}:bootstrap:{progress.rounds}")
    seeds = [seed.text for seed in state.seeds]
    generated = [item.instruction for item in state.decoded]
    needed = cfg.instructions - len(generated)
    requests = max(1, min(cfg.concurrency, math.ceil(needed / PER_REQUEST)))
    schema = bootstrapped_instructions(PER_REQUEST)
    prompts = [
        ctx.prompts.render(
            "self_instruct", examples=_examples(seeds, generated, rng), n=PER_REQUEST
        )
        for _ in range(requests)
    ]
    replies = await asyncio.gather(*(ctx.strong.structured(p, schema) for p in prompts))
    novelty = NoveltyFilter(cfg.rouge_threshold, seeds + generated)
    new: list[BasicInstruction] = []
    rejected = 0
    usage = TokenUsage()
    for reply, call_usage in replies:
        usage = usage + call_usage
        for text in reply.instructions:  # type: ignore[attr-defined]
            if len(generated) + len(new) >= cfg.instructions:
                break
            if declines_task(text) or not novelty.add_if_novel(text):
                rejected += 1
                continue
            new.append(
                BasicInstruction(
                    id=f"si{len(generated) + len(new):05d}", metadata_id="", instruction=text
                )
            )
    rounds = progress.rounds + 1
    failures = []
    short = len(generated) + len(new) < cfg.instructions
    if short and rounds >= max_bootstrap_rounds(cfg.instructions, cfg.concurrency):
        failures.append(
            Failure(
                step="bootstrap",
                subject="pool",
                reason=f"stopped after {rounds} rounds with {len(generated) + len(new)} of "
                f"{cfg.instructions} instructions: the ROUGE-L filter rejected the rest",
            )
        )
    return {
        "decoded": new,
        "progress": BootstrapProgress(
            rounds=rounds, rejected=progress.rejected + rejected
        ).model_dump(),
        "failures": failures,
        **spent("bootstrap", strong=usage),
    }


def route_bootstrap(state: PrepareState) -> str:
    """Another round until the budget is filled, or the stop recorded as a failure."""
    if any(f.step == "bootstrap" for f in state.failures):
        return "finalize"
    return "finalize" if len(state.decoded) >= state.budget else "bootstrap"

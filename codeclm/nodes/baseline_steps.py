"""Steps of the baselines' instruction threads: Evol-Instruct's evolution (WizardLM, and
WizardLM+ from CodecLM's basic instructions), Tree-Instruct's tree of added nodes, and
AlpaGasus's quality rating of a pair.

Each is the paper's own step, with the choices its source leaves open stated in
``docs/method.md``; what the answers and rows look like is shared with every method.
"""

from __future__ import annotations

import random
from typing import Any

from langgraph.graph import END
from langgraph.runtime import Runtime

from codeclm.context import PipelineContext, pipeline_context
from codeclm.llm.parsing import declines_task
from codeclm.llm.reply import sampling_seed
from codeclm.nodes.replies import EvolvedInstruction, QualityRating, TreeInstruction
from codeclm.prompts import conversation_text
from codeclm.state import InstructionState, spent
from codeclm.steps import Step

EVOLVE = Step(
    name="evolve",
    prompts=("evolve_depth", "evolve_breadth"),
    output_tokens=60,
    reply="EvolvedInstruction",
    calls=lambda scale: (scale.instructions * scale.config.evol_rounds,) * 2,
    typical=lambda t: t.render("evolve_depth", instruction=t.instruction, method="a method"),
)
GROW_TREE = Step(
    name="grow_tree",
    prompts=("tree_instruct",),
    output_tokens=250,  # the tree, the grown tree and the new instruction
    reply="TreeInstruction",
    typical=lambda t: t.render("tree_instruct", instruction=t.instruction, nodes=10),
)
RATE = Step(
    name="rate",
    prompts=("rate_quality",),
    output_tokens=60,
    reply="QualityRating",
    typical=lambda t: t.render("rate_quality", instruction=t.instruction, answer=t.answer),
    entered_as="kept",  # the pair was answered
)

# ---- Evol-Instruct (WizardLM): in-depth and in-breadth evolution -------------------------

#: WizardLM's in-depth operators, as the ``$method`` of evolve_depth.md ("complicate the
#: input" is left out: it needs a structured input, such as a table, to rewrite).
DEPTH_OPERATORS: dict[str, str] = {
    "add constraints": "Please add one more constraint or requirement into #The Given Prompt#.",
    "deepening": "If #The Given Prompt# contains inquiries about certain issues, the depth "
    "and breadth of the inquiry can be increased.",
    "concretizing": "Please replace general concepts with more specific concepts.",
    "increase reasoning steps": "If #The Given Prompt# can be solved with just a few simple "
    "thinking processes, you can rewrite it to explicitly request multiple-step reasoning.",
}
BREADTH = "in-breadth"
_COPIED_MARKERS = ("given prompt", "rewritten prompt", "#rewritten", "#created")


def choose_evolution(state: InstructionState, seed: int) -> str:
    """One of the four in-depth operators or in-breadth, uniformly, seeded per round."""
    rng = random.Random(f"{seed}:{state.id}:evolve:{state.iteration}")
    return rng.choice([*DEPTH_OPERATORS, BREADTH])


def eliminated(before: str, after: str) -> str | None:
    """WizardLM's elimination rules that need no extra call: why an evolution failed, if it did.

    An evolution that changed nothing (no information gain), that copied the rewriting
    prompt's own words, or that declines the task (``declines_task``, the rule of every
    method's user-voice text) is thrown away, and the instruction stays as it was.
    """
    if " ".join(after.lower().split()) == " ".join(before.lower().split()):
        return "no change"
    if any(marker in after.lower() for marker in _COPIED_MARKERS):
        return "copied the rewriting prompt"
    if declines_task(after):
        return "refused"
    return None


@EVOLVE.node
async def evolve(state: InstructionState, runtime: Runtime[PipelineContext]) -> dict[str, Any]:
    """One Evol-Instruct round: rewrite the instruction in depth or in breadth."""
    ctx = pipeline_context(runtime)
    operator = choose_evolution(state, ctx.config.seed)
    if operator == BREADTH:
        prompt = ctx.prompts.render("evolve_breadth", instruction=state.instruction)
    else:
        prompt = ctx.prompts.render(
            "evolve_depth", instruction=state.instruction, method=DEPTH_OPERATORS[operator]
        )
    # Threads evolving the same seed send the same prompt: a sampling seed of their own
    # keeps their replies apart (and apart in the response cache).
    sampling_seed = random.Random(f"{ctx.config.seed}:{state.id}:{state.iteration}").getrandbits(31)
    reply, usage = await ctx.strong.structured(prompt, EvolvedInstruction, seed=sampling_seed)
    why = eliminated(state.instruction, reply.instruction)
    return {
        "instruction": state.instruction if why else reply.instruction,
        "iteration": state.iteration + 1,
        "actions_applied": [
            *state.actions_applied,
            f"{operator} (eliminated: {why})" if why else operator,
        ],
        **spent("evolve", strong=usage),
    }


def route_after_evolve(state: InstructionState, rounds: int, answers: str = "answer_strong") -> str:
    """``rounds`` evolutions (iteration 1 is the seed itself), then the strong answer
    (``answers``: the node before it, writing the user's later turns)."""
    return "evolve" if state.iteration <= rounds else answers


# ---- Tree-Instruct: the instruction as a semantic tree, with nodes added -----------------


@GROW_TREE.node
async def grow_tree(state: InstructionState, runtime: Runtime[PipelineContext]) -> dict[str, Any]:
    """Tree-Instruct (Zhao et al., 2023): one call writes the instruction's semantic tree,
    adds ``tree_nodes`` nodes to it and writes the new instruction from the larger tree. A
    new instruction that changed nothing or declines the task is eliminated, as an
    evolution is (the instruction stays as it was)."""
    ctx = pipeline_context(runtime)
    nodes = ctx.config.tree_nodes
    prompt = ctx.prompts.render("tree_instruct", instruction=state.instruction, nodes=nodes)
    # Threads growing the same seed send the same prompt: their own sampling seeds.
    seed = sampling_seed(ctx.config.seed, state.id, "tree")
    reply, usage = await ctx.strong.structured(prompt, TreeInstruction, seed=seed)
    why = eliminated(state.instruction, reply.instruction)
    action = f"{nodes} tree nodes added" + (f" (eliminated: {why})" if why else "")
    return {
        "instruction": state.instruction if why else reply.instruction,
        "iteration": state.iteration + 1,
        "actions_applied": [*state.actions_applied, action],
        **spent("grow_tree", strong=usage),
    }


# ---- AlpaGasus: the strong model rates each pair; only the best are kept -----------------


@RATE.node
async def rate(state: InstructionState, runtime: Runtime[PipelineContext]) -> dict[str, Any]:
    """AlpaGasus (Chen et al., ICLR 2024): the strong model rates the pair's accuracy from
    0 to 5; a pair rated below ``rating_threshold`` (4.5, the paper's) is dropped with its
    rating. A conversation is rated as a whole."""
    ctx = pipeline_context(runtime)
    users, answers = state.user_turns, state.answers("strong")
    if len(users) > 1:
        instruction = conversation_text(users[:-1], answers[:-1], "Assistant")
        instruction = f"{instruction}\n\n### User:\n{users[-1]}"
    else:
        instruction = users[0]
    prompt = ctx.prompts.render("rate_quality", instruction=instruction, answer=answers[-1])
    reply, usage = await ctx.strong.structured(prompt, QualityRating, temperature=0)
    threshold = ctx.config.rating_threshold
    update: dict[str, Any] = {"rating": reply.score, **spent("rate", strong=usage)}
    if reply.score < threshold:
        reason = f"rated {reply.score:g} < {threshold:g} for accuracy (AlpaGasus)"
        return update | {"status": "dropped", "response_source": None, "reason": reason}
    return update


def route_after_answer_strong(state: InstructionState) -> str:
    """Trivial on purpose: a pair with an answer goes on to be rated."""
    return "rate" if state.status == "kept" else END

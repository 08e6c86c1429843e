"""One instruction's graph, in each method's shape (``codeclm/methods.py`` names it);
the shapes share their nodes where they overlap.

judge_loop (codeclm, the full method: Self-Rubrics and Contrastive Filtering)::

    START ─▶ answer ─▶ judge ─(kept / dropped)─▶ END
               ▲  └─(no complete answer: dropped)─▶ END
               │          └─(improving)─▶ improve ─┐
               └───────────────────────────────────┘

answer (codeclm-metadata, self-instruct):  START ─▶ answer_strong ─▶ END
improve_once (codeclm-rubrics):  START ─▶ improve (if there are actions) ─▶ answer_strong ─▶ END
evolve (evol-instruct, wizardlm-plus):  START ─▶ evolve ×rounds ─▶ answer_strong ─▶ END
tree (tree-instruct):  START ─▶ grow_tree ─▶ answer_strong ─▶ END
rate (alpagasus):  START ─▶ answer_strong ─▶ rate (if answered) ─▶ END

``answer`` sends the strong and the target request at once; ``judge`` sends both orders.

With ``--turns T`` above 1, ``write_turns`` (the user's turns 2 to T) comes before the
first answer of every shape, and after each ``improve``: it rewrites one turn, and the
turns after it are written anew from it. ``answer`` then answers every turn, ``judge``
scores each turn.
"""

from __future__ import annotations

from functools import partial

from langgraph.graph import END, START, StateGraph
from langgraph.types import RetryPolicy

from codeclm.context import PipelineContext
from codeclm.methods import method_spec
from codeclm.nodes.baseline_steps import (
    evolve,
    grow_tree,
    rate,
    route_after_answer_strong,
    route_after_evolve,
)
from codeclm.nodes.instruction import (
    answer,
    answer_strong,
    improve,
    judge,
    record_failure,
    route_after_answer,
    route_after_judge,
    route_start_rubrics_only,
)
from codeclm.nodes.turns import route_after_write_turns, write_turns
from codeclm.state import InstructionState


def build_instruction_graph(
    retry: RetryPolicy,
    method: str = "codeclm",
    *,
    evol_rounds: int = 4,
    turns: int = 1,
    served: bool = False,
) -> StateGraph[InstructionState, PipelineContext, InstructionState, InstructionState]:
    """The uncompiled builder of the method's shape; compile it with or without a checkpointer.

    ``served``: for ``langgraph dev``, which would build the context from a run's JSON; the
    nodes then fall back to the context from ``$CODECLM_CONFIG``.
    """
    builder = StateGraph(InstructionState, context_schema=None if served else PipelineContext)
    builder.set_node_defaults(retry_policy=retry, error_handler=record_failure)  # type: ignore[arg-type]
    shape = method_spec(method).shape
    answers = "answer" if shape == "judge_loop" else "answer_strong"
    first = answers  # the node the user's turns are all there for
    if turns > 1:
        builder.add_node("write_turns", write_turns)
        route = partial(route_after_write_turns, answers=answers)
        builder.add_conditional_edges("write_turns", route, [answers, END])
        first = "write_turns"
    if shape == "judge_loop":
        builder.add_node("answer", answer)
        builder.add_node("judge", judge)
        builder.add_node("improve", improve)
        builder.add_edge(START, first)
        builder.add_conditional_edges("answer", route_after_answer, ["judge", END])
        builder.add_conditional_edges("judge", route_after_judge, ["improve", END])
        builder.add_edge("improve", first)  # (the turns after the rewritten one, anew)
        return builder
    builder.add_node("answer_strong", answer_strong)
    if shape == "rate":
        builder.add_node("rate", rate)
        builder.add_conditional_edges("answer_strong", route_after_answer_strong, ["rate", END])
        builder.add_edge("rate", END)
    else:
        builder.add_edge("answer_strong", END)
    if shape == "improve_once":
        builder.add_node("improve", improve)
        start = partial(route_start_rubrics_only, answers=first)
        builder.add_conditional_edges(START, start, ["improve", first])
        builder.add_edge("improve", first)
    elif shape == "evolve":
        builder.add_node("evolve", evolve)
        builder.add_edge(START, "evolve")
        route = partial(route_after_evolve, rounds=evol_rounds, answers=first)
        builder.add_conditional_edges("evolve", route, ["evolve", first])
    elif shape == "tree":
        builder.add_node("grow_tree", grow_tree)
        builder.add_edge(START, "grow_tree")
        builder.add_edge("grow_tree", first)
    else:  # "answer", "rate"
        builder.add_edge(START, first)
    return builder

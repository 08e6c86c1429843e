"""One instruction's graph, per method; the methods share their nodes where they overlap.

codeclm (the full method: Self-Rubrics and Contrastive Filtering)::

    START ─▶ answer ─▶ judge ─(kept / dropped)─▶ END
               ▲          └─(improving)─▶ improve ─┐
               └───────────────────────────────────┘

codeclm-metadata and self-instruct:  START ─▶ answer_strong ─▶ END
codeclm-rubrics:  START ─▶ improve (once, if there are actions) ─▶ answer_strong ─▶ END
evol-instruct:    START ─▶ evolve ×rounds ─▶ answer_strong ─▶ END

``answer`` sends the strong and the target request at once; ``judge`` sends both orders.
"""

from __future__ import annotations

from functools import partial

from langgraph.graph import END, START, StateGraph
from langgraph.types import RetryPolicy

from codeclm.config import Method
from codeclm.context import PipelineContext
from codeclm.nodes.instruction import (
    answer,
    answer_strong,
    evolve,
    improve,
    judge,
    record_failure,
    route_after_evolve,
    route_after_judge,
    route_start_rubrics_only,
)
from codeclm.state import InstructionState

#: For a failed thread to run its failed node again, per method: the node to write the
#: reset as (so the graph's own edges lead to the failed node next) and the status to set.
RESTART_FROM: dict[str, dict[str, tuple[str, str]]] = {
    "codeclm": {
        "answer": ("improve", "pending"),
        "judge": ("answer", "pending"),
        "improve": ("judge", "improving"),
    },
    "codeclm-metadata": {"answer_strong": (START, "pending")},
    "self-instruct": {"answer_strong": (START, "pending")},
    "codeclm-rubrics": {"improve": (START, "pending"), "answer_strong": ("improve", "pending")},
    "evol-instruct": {"evolve": ("evolve", "pending"), "answer_strong": ("evolve", "pending")},
}


def build_instruction_graph(
    retry: RetryPolicy, method: Method = "codeclm", *, evol_rounds: int = 4, served: bool = False
) -> StateGraph[InstructionState, PipelineContext, InstructionState, InstructionState]:
    """The uncompiled builder; compile it with or without a checkpointer.

    ``served``: for ``langgraph dev``, which would build the context from a run's JSON; the
    nodes then fall back to the context from ``$CODECLM_CONFIG``.
    """
    builder = StateGraph(InstructionState, context_schema=None if served else PipelineContext)
    builder.set_node_defaults(retry_policy=retry, error_handler=record_failure)
    if method == "codeclm":
        builder.add_node("answer", answer)
        builder.add_node("judge", judge)
        builder.add_node("improve", improve)
        builder.add_edge(START, "answer")
        builder.add_edge("answer", "judge")
        builder.add_conditional_edges("judge", route_after_judge, ["improve", END])
        builder.add_edge("improve", "answer")
        return builder
    builder.add_node("answer_strong", answer_strong)
    builder.add_edge("answer_strong", END)
    if method == "codeclm-rubrics":
        builder.add_node("improve", improve)
        builder.add_conditional_edges(START, route_start_rubrics_only, ["improve", "answer_strong"])
        builder.add_edge("improve", "answer_strong")
    elif method == "evol-instruct":
        builder.add_node("evolve", evolve)
        builder.add_edge(START, "evolve")
        route = partial(route_after_evolve, rounds=evol_rounds)
        builder.add_conditional_edges("evolve", route, ["evolve", "answer_strong"])
    else:  # codeclm-metadata, self-instruct
        builder.add_edge(START, "answer_strong")
    return builder

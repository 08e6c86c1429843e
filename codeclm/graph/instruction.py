"""One instruction's graph: the rubric-refinement loop with contrastive filtering.

    START ─▶ answer ─▶ judge ─(kept / dropped)─▶ END
               ▲          └─(improving)─▶ improve ─┐
               └───────────────────────────────────┘

``answer`` sends the strong and the target request at once; ``judge`` sends both orders.
"""

from __future__ import annotations

from langgraph.graph import END, START, StateGraph
from langgraph.types import RetryPolicy

from codeclm.context import PipelineContext
from codeclm.nodes.instruction import (
    answer,
    improve,
    judge,
    record_failure,
    route_after_judge,
)
from codeclm.state import InstructionState


def build_instruction_graph(
    retry: RetryPolicy, *, served: bool = False
) -> StateGraph[InstructionState, PipelineContext, InstructionState, InstructionState]:
    """The uncompiled builder; compile it with or without a checkpointer.

    ``served``: for ``langgraph dev``, which would build the context from a run's JSON; the
    nodes then fall back to the context from ``$CODECLM_CONFIG``.
    """
    builder = StateGraph(InstructionState, context_schema=None if served else PipelineContext)
    builder.set_node_defaults(retry_policy=retry, error_handler=record_failure)
    builder.add_node("answer", answer)
    builder.add_node("judge", judge)
    builder.add_node("improve", improve)
    builder.add_edge(START, "answer")
    builder.add_edge("answer", "judge")
    builder.add_conditional_edges("judge", route_after_judge, ["improve", END])
    builder.add_edge("improve", "answer")
    return builder

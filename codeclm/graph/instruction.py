"""One instruction's graph: the rubric-refinement loop with contrastive filtering.

START ─▶ answer_strong ─┐
  └───▶ answer_target ──┴▶ judge ─(kept/dropped)─▶ END
             ▲                └─(improving)─▶ improve ─▶ both answers again
"""

from __future__ import annotations

from langgraph.graph import END, START, StateGraph
from langgraph.types import RetryPolicy

from codeclm.context import PipelineContext
from codeclm.nodes.instruction import (
    answer_strong,
    answer_target,
    improve,
    judge,
    record_failure,
    route_after_judge,
)
from codeclm.state import InstructionState


def build_instruction_graph(
    retry: RetryPolicy,
) -> StateGraph[InstructionState, PipelineContext, InstructionState, InstructionState]:
    """The uncompiled builder; compile it with or without a checkpointer."""
    builder = StateGraph(InstructionState, context_schema=PipelineContext)
    builder.set_node_defaults(retry_policy=retry, error_handler=record_failure)
    builder.add_node("answer_strong", answer_strong)
    builder.add_node("answer_target", answer_target)
    builder.add_node("judge", judge)
    builder.add_node("improve", improve)
    builder.add_edge(START, "answer_strong")
    builder.add_edge(START, "answer_target")
    builder.add_edge(["answer_strong", "answer_target"], "judge")
    builder.add_conditional_edges("judge", route_after_judge, ["improve", END])
    builder.add_edge("improve", "answer_strong")
    builder.add_edge("improve", "answer_target")
    return builder

"""One benchmark item's graph in ``codeclm eval``::

START ─▶ answer_item ─▶ judge_item ─▶ END
"""

from __future__ import annotations

from langgraph.graph import END, START, StateGraph
from langgraph.types import RetryPolicy

from codeclm.context import EvalContext
from codeclm.nodes.benchmark_item import answer_item, judge_item, record_eval_failure
from codeclm.state import EvalItemState


def build_eval_graph(
    retry: RetryPolicy,
) -> StateGraph[EvalItemState, EvalContext, EvalItemState, EvalItemState]:
    builder = StateGraph(EvalItemState, context_schema=EvalContext)
    # LangGraph's overloads do not type error handlers (NodeError is injected).
    builder.set_node_defaults(retry_policy=retry, error_handler=record_eval_failure)  # type: ignore[arg-type]
    builder.add_node("answer_item", answer_item)
    builder.add_node("judge_item", judge_item)
    builder.add_edge(START, "answer_item")
    builder.add_edge("answer_item", "judge_item")
    builder.add_edge("judge_item", END)
    return builder

"""The 'prepare' graph: seeds (or user metadata) → metadata pool → rubrics + instructions.

START ─Send per seed─▶ encode_seed ─▶ augment ─Send per entry─▶ write_rubrics ─┐
  ├─(user metadata)──────────────────▲        └─Send per entry─▶ decode ───────┴▶ finalize
  ├─(self-instruct)─▶ bootstrap ⟲ ──────────────────────────────────────────────▶ finalize
  └─(evol-instruct)─▶ sample_seeds ─────────────────────────────────────────────▶ finalize

codeclm-metadata skips ``write_rubrics``: it has no use for them.
"""

from __future__ import annotations

from langgraph.graph import END, START, StateGraph
from langgraph.types import RetryPolicy, Send

from codeclm.context import PipelineContext
from codeclm.nodes.baselines import bootstrap, route_bootstrap, sample_seeds
from codeclm.nodes.prepare import (
    augment,
    decode,
    encode_seed,
    finalize,
    record_prepare_failure,
    write_rubrics,
)
from codeclm.state import EncodeTask, MetadataTask, PrepareState


def route_seeds(state: PrepareState) -> list[Send] | str:
    """One encode task per seed; user-written metadata (scenario 2) skips encoding."""
    if state.method == "self-instruct":
        return "bootstrap"
    if state.method == "evol-instruct":
        return "sample_seeds"
    if state.user_metadata or not state.seeds:
        return "augment"
    return [
        Send("encode_seed", EncodeTask(seed_index=i, seed=seed))
        for i, seed in enumerate(state.seeds)
    ]


def route_entries(state: PrepareState) -> list[Send] | str:
    """Self-Rubrics and decoding for every entry that was given instructions to decode."""
    sends = []
    for entry in state.pool:
        if entry.n_instructions > 0:
            if state.method != "codeclm-metadata":
                sends.append(Send("write_rubrics", MetadataTask(entry=entry)))
            sends.append(Send("decode", MetadataTask(entry=entry)))
    return sends or "finalize"


def build_prepare_graph(
    retry: RetryPolicy, *, served: bool = False
) -> StateGraph[PrepareState, PipelineContext, PrepareState, PrepareState]:
    """The uncompiled builder; compile it with or without a checkpointer.

    ``served``: for ``langgraph dev``, which would build the context from a run's JSON; the
    nodes then fall back to the context from ``$CODECLM_CONFIG``.
    """
    builder = StateGraph(PrepareState, context_schema=None if served else PipelineContext)
    # LangGraph's overloads do not type error handlers (NodeError is injected) nor Send nodes
    # whose input schema differs from the state; the calls are as its docs show.
    builder.set_node_defaults(retry_policy=retry, error_handler=record_prepare_failure)  # type: ignore[arg-type]
    builder.add_node("encode_seed", encode_seed, input_schema=EncodeTask)  # type: ignore[call-overload]
    builder.add_node("augment", augment)
    builder.add_node("write_rubrics", write_rubrics, input_schema=MetadataTask)  # type: ignore[call-overload]
    builder.add_node("decode", decode, input_schema=MetadataTask)  # type: ignore[call-overload]
    builder.add_node("bootstrap", bootstrap)
    builder.add_node("sample_seeds", sample_seeds)
    builder.add_node("finalize", finalize)
    builder.add_conditional_edges(
        START, route_seeds, ["encode_seed", "augment", "bootstrap", "sample_seeds"]
    )
    builder.add_edge("encode_seed", "augment")
    builder.add_conditional_edges("augment", route_entries, ["write_rubrics", "decode", "finalize"])
    builder.add_conditional_edges("bootstrap", route_bootstrap, ["bootstrap", "finalize"])
    builder.add_edge("sample_seeds", "finalize")
    builder.add_edge("write_rubrics", "finalize")
    builder.add_edge("decode", "finalize")
    builder.add_edge("finalize", END)
    return builder

"""The 'prepare' graph: seeds (or user metadata) → metadata pool → rubrics + instructions.

START ─Send per seed─▶ encode_seed ─▶ augment ─▶ review_pool ─▶ plan ─Send─▶ write_rubrics ─┐
  ├─(user metadata)──────────────────▲   │                       ▲  └─Send─▶ decode ───────┤
  │                                      │                       └─────── collect ◀────────┘
  │                                      └─(no pool yet) ─▶ finalize    plan ─(done)─▶ finalize
  ├─(self-instruct)─▶ bootstrap ⟲ ──────────────────────────────────────────────▶ finalize
  └─(evol-instruct)─▶ sample_seeds ─────────────────────────────────────────────▶ finalize

A run of more seeds than ``MAX_ENCODE_TASKS`` sends each encode task a few seeds.
``review_pool`` waits for a person's approval of the pool (an ``interrupt``) when the run
asks for one (``--review metadata``); otherwise it passes. ``plan`` gives each entry its
share and picks the entries a round asks (one ``Send`` per entry); ``collect`` drops
repeats across the pool. codeclm-metadata skips ``write_rubrics``: it has no use for them.
Every run takes the thread up again (a *pass*): seeds, rubrics and decodes that failed are
asked again, and a grown budget or pool is filled; what is done stays done.
"""

from __future__ import annotations

import math
from collections import Counter

from langgraph.graph import END, START, StateGraph
from langgraph.types import RetryPolicy, Send

from codeclm.context import PipelineContext
from codeclm.methods import method_spec
from codeclm.nodes.baselines import bootstrap, route_bootstrap, sample_seeds
from codeclm.nodes.review import review_pool
from codeclm.prepare.encoding import augment, encode_seed_node
from codeclm.prepare.nodes import (
    collect,
    decode,
    finalize,
    plan,
    record_prepare_failure,
    write_rubrics,
)
from codeclm.state import EncodeTask, MetadataTask, PrepareState

MAX_ENCODE_TASKS = 1024
"""The most encode tasks a pass sends: a run with more seeds gives each task several. A
step's tasks are prepared from its list of ``Send``s, which LangGraph copies for each task,
so one task per seed is quadratic in the seeds (100,000 seeds sent nothing in 45 s)."""


def route_seeds(state: PrepareState) -> list[Send] | str:
    """One encode task per seed; user-written metadata (scenario 2) skips encoding."""
    route = method_spec(state.method).prepare
    if route == "bootstrap":
        return "bootstrap"
    if route == "seeds":
        return "sample_seeds"
    encoded = {item.seed_id for item in state.encoded}
    left_out = {f.subject for f in state.failures if f.step == "encode_seed" and f.permanent}
    todo = [
        (i, seed)
        for i, seed in enumerate(state.seeds)
        if seed.id not in encoded and seed.id not in left_out
    ]
    size = math.ceil(len(todo) / MAX_ENCODE_TASKS)
    sends = [
        Send("encode_seed", EncodeTask.of(todo[start : start + size]))
        for start in range(0, len(todo), max(size, 1))
    ]
    return sends or "augment"


def route_after_augment(state: PrepareState) -> str:
    """No pool yet (a seed still to encode, or none encoded): this pass ends here."""
    return "review_pool" if state.pool else "finalize"


def route_round(state: PrepareState) -> list[Send] | str:
    """The Self-Rubrics and decode tasks ``plan`` chose; none left: the pass is over."""
    entries = {entry.id: entry for entry in state.pool}
    have: dict[str, list[str]] = {}
    for item in sorted(state.decoded, key=lambda i: i.index):
        have.setdefault(item.metadata_id, []).append(item.instruction)
    accepted = Counter(item.metadata_id for item in state.accepted_items())
    sends = [
        Send("write_rubrics", MetadataTask(entry=entries[i], salt=state.came_up_short.count(i)))
        for i in state.pending_rubrics
    ]
    sends += [
        Send(
            "decode",
            MetadataTask(
                entry=entries[i],
                want=entries[i].n_instructions - accepted[i],
                have=have.get(i, []),
                round=state.decode_round,
                salt=state.ran_dry.count(i),
            ),
        )
        for i in state.pending_decode
    ]
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
    encode_seed = encode_seed_node(retry.max_attempts)
    builder.add_node("encode_seed", encode_seed, input_schema=EncodeTask)  # type: ignore[call-overload]
    builder.add_node("augment", augment)
    builder.add_node("write_rubrics", write_rubrics, input_schema=MetadataTask)  # type: ignore[call-overload]
    builder.add_node("decode", decode, input_schema=MetadataTask)  # type: ignore[call-overload]
    builder.add_node("review_pool", review_pool)
    builder.add_node("plan", plan)
    builder.add_node("collect", collect)
    builder.add_node("bootstrap", bootstrap)
    builder.add_node("sample_seeds", sample_seeds)
    builder.add_node("finalize", finalize)
    builder.add_conditional_edges(
        START, route_seeds, ["encode_seed", "augment", "bootstrap", "sample_seeds"]
    )
    builder.add_edge("encode_seed", "augment")
    builder.add_conditional_edges("augment", route_after_augment, ["review_pool", "finalize"])
    builder.add_edge("review_pool", "plan")
    builder.add_conditional_edges("plan", route_round, ["write_rubrics", "decode", "finalize"])
    builder.add_edge("write_rubrics", "collect")
    builder.add_edge("decode", "collect")
    builder.add_edge("collect", "plan")
    builder.add_conditional_edges("bootstrap", route_bootstrap, ["bootstrap", "finalize"])
    builder.add_edge("sample_seeds", "finalize")
    builder.add_edge("finalize", END)
    return builder

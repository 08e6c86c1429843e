"""The steps of a method, read off its graphs: each node function declares its step
(``codeclm.steps``), and the edges say how a failed thread gets back to it.

This is the one place that answers "which steps does this run make?": the estimate, the
report, ``inspect``, ``step`` and the mock ask here, so a new step is its module, its prompt
file and its edge in ``graph/instruction.py`` (or ``prepare/graph.py``).
"""

from __future__ import annotations

from typing import Any

from langgraph.constants import END, START
from langgraph.graph import StateGraph
from langgraph.types import RetryPolicy

from codeclm.config import RunConfig
from codeclm.graph.benchmark_item import build_eval_graph
from codeclm.graph.instruction import build_instruction_graph
from codeclm.methods import METHODS, method_spec
from codeclm.prepare.graph import build_prepare_graph
from codeclm.steps import Step, step_of

Builder = StateGraph[Any, Any, Any, Any]

#: The graphs are only read here, never run: a retry policy to build them with.
_READ_ONLY = RetryPolicy(max_attempts=1)


def declared_steps(builder: Builder) -> dict[str, Step]:
    """The steps of a graph's nodes, in the order they were added (bookkeeping nodes, which
    call no model, declare none)."""
    found = {}
    for name, node in builder.nodes.items():
        runnable = node.runnable
        function = getattr(runnable, "afunc", None) or getattr(runnable, "func", None)
        if function is not None and (step := step_of(function)) is not None:
            found[name] = step
    return found


def instruction_builder(config: RunConfig) -> Builder:
    """The run's instruction graph, uncompiled (as its settings shape it)."""
    return build_instruction_graph(
        _READ_ONLY, config.method, evol_rounds=config.evol_rounds, turns=config.turns
    )


def thread_steps(method: str, turns: int) -> dict[str, Step]:
    """The steps of an instruction's thread for a method and a number of turns (all a
    graph's nodes depend on: a run's record is read so without its whole settings)."""
    return declared_steps(build_instruction_graph(_READ_ONLY, method, turns=turns))


def instruction_steps(config: RunConfig) -> dict[str, Step]:
    """The steps of one instruction's thread in this run."""
    return thread_steps(config.method, config.turns)


def method_steps(config: RunConfig) -> dict[str, Step]:
    """Every step this run makes: its 'prepare' steps (one graph serves every method, each
    step says which it runs for), then its instruction graph's."""
    method = method_spec(config.method)
    prepare = declared_steps(build_prepare_graph(_READ_ONLY))
    ran = {name: step for name, step in prepare.items() if step.runs_for(method)}
    return ran | instruction_steps(config)


def all_steps() -> dict[str, Step]:
    """Every step of every graph: each method's, a conversation's and an evaluation's."""
    found = declared_steps(build_prepare_graph(_READ_ONLY))
    for method in METHODS:
        found |= declared_steps(build_instruction_graph(_READ_ONLY, method, turns=2))
    return found | declared_steps(build_eval_graph(_READ_ONLY))


def _predecessors(builder: Builder, node: str) -> list[str]:
    """Nodes with an edge into ``node``: plain edges first, then routers that may lead there;
    START last (a step in a loop is re-entered from inside the loop)."""
    plain = sorted(source for source, target in builder.edges if target == node)
    routed = sorted(
        source
        for source, branches in builder.branches.items()
        for branch in branches.values()
        if branch.ends and node in branch.ends.values()
    )
    found = list(dict.fromkeys(plain + routed))
    return [n for n in found if n != START] + [n for n in found if n == START]


def restart_table(builder: Builder) -> dict[str, tuple[str, str]]:
    """For a failed thread to run its failed node again, per node: the node to write the
    reset as (so the graph's own edges lead to the failed node next) and the status to set:
    the one the step is entered with, or 'pending' from START (a thread at its start). The
    entries go in the order a thread first reaches the nodes: the first is where a failure
    whose node is unknown (a record of before) restarts."""
    steps = declared_steps(builder)
    order = _from_start(builder)
    table = {}
    for node in sorted(steps, key=lambda n: order.index(n) if n in order else len(order)):
        before = _predecessors(builder, node)
        as_node = before[0] if before else START
        table[node] = (as_node, "pending" if as_node == START else steps[node].entered_as)
    return table


def _from_start(builder: Builder) -> list[str]:
    """The nodes in the order a thread first reaches them (breadth first from START)."""
    order, frontier = [START], [START]
    while frontier:
        nxt = []
        for source in frontier:
            targets = sorted(t for s, t in builder.edges if s == source)
            for branch in builder.branches.get(source, {}).values():
                targets += list((branch.ends or {}).values())  # as the router lists them
            for target in targets:
                if target not in order and target != END:
                    order.append(target)
                    nxt.append(target)
        frontier = nxt
    return order[1:]

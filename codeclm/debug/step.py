"""Step one instruction through its graph, node by node: see, edit, fork, continue.

Built on LangGraph's own machinery: ``interrupt_after="*"`` for one super-step per call,
``aupdate_state`` to edit a field (creating a new checkpoint), and a ``checkpoint_id`` in the
config to fork from an earlier checkpoint. The response cache makes a replayed step free.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from langchain_core.runnables import RunnableConfig
from pydantic import ValidationError

from codeclm.config import ConfigError
from codeclm.graph import instruction_steps, thread_config
from codeclm.handle import OpenRun, RunHandle
from codeclm.prepare.passes import initial_state, ready
from codeclm.state import InstructionState, PrepareState

END_NAME = "end"
#: Fields a user may edit; the rest are bookkeeping the graph owns.
EDITABLE = frozenset(
    {
        "instruction",
        "follow_ups",
        "candidate_actions",
        "strong_answer",
        "target_answer",
        "strong_follow_up_answers",
        "target_follow_up_answers",
        "use_case",
        "skills",
        "iteration",
        "actions_applied",
    }
)


def parse_assignment(text: str) -> tuple[str, Any]:
    """``FIELD=VALUE``; VALUE is read as JSON when it is JSON (lists, numbers), else text."""
    field, sep, raw = text.partition("=")
    field = field.strip()
    if not sep or not field:
        raise ConfigError(f"--set {text!r}: expected FIELD=VALUE")
    if field not in EDITABLE:
        raise ConfigError(f"--set {field}: not an editable field ({', '.join(sorted(EDITABLE))})")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return field, value


def _brief(value: Any, width: int = 160) -> Any:
    """A short, one-line preview of a field for the step display."""
    if hasattr(value, "model_dump"):
        value = value.model_dump(mode="json")
    if isinstance(value, list):
        value = [v.model_dump(mode="json") if hasattr(v, "model_dump") else v for v in value]
    if isinstance(value, str):
        value = " ".join(value.split())  # a one-line preview
        if len(value) > width:
            return value[: width - 1] + "…"
    return value


async def _start_input(run: OpenRun, thread_id: str) -> InstructionState:
    """A thread that never started: its initial state, from the prepared instructions."""
    prepared = await run.prepared() or PrepareState()
    for entry, instruction in ready(prepared):
        if instruction.id == thread_id:
            return initial_state(entry, instruction)
    raise ConfigError(f"no instruction {thread_id!r} in this run (see: codeclm inspect)")


def check_turns(patch: dict[str, Any], turns: int) -> None:
    """A conversation's later turns, edited, are exactly the run's ``--turns`` − 1 texts."""
    if "follow_ups" not in patch:
        return
    value = patch["follow_ups"]
    if turns == 1:
        raise ConfigError("--set follow_ups: this run's conversations have one turn (--turns 1)")
    if not (
        isinstance(value, list)
        and len(value) == turns - 1
        and all(isinstance(text, str) and text.strip() for text in value)
    ):
        raise ConfigError(
            f"--set follow_ups: a JSON list of {turns - 1} non-blank texts (turns 2 to {turns})"
        )


async def _apply_edits(
    run: OpenRun, config: RunnableConfig, patch: dict[str, Any]
) -> RunnableConfig:
    """Write ``patch`` as a new checkpoint, leaving what runs next unchanged."""
    current = await run.instructions.aget_state(config)
    check_turns(patch, run.config.turns)
    try:
        InstructionState.model_validate({**current.values, **patch})
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConfigError(f"--set {first['loc'][0]}: {first['msg']}") from None
    return await run.instructions.aupdate_state(config, patch)


async def step_thread(
    handle: RunHandle,
    thread_id: str,
    *,
    from_checkpoint: str | None = None,
    patch: dict[str, Any] | None = None,
    until: str | None = None,
    emit: Callable[[dict[str, Any]], None],
    ask: Callable[[], str] | None = None,
) -> dict[str, Any]:
    """Run ``thread_id`` one super-step at a time and ``emit`` what each step produced.

    Without ``until`` and ``ask``: one step. ``until=NODE``: steps until NODE has run
    (``end``: until the thread finishes). ``ask`` (interactive): asked after every step,
    answers 'next' / 'continue' / 'quit' / 'set FIELD=VALUE'.
    """
    nodes = {*instruction_steps(handle.config), END_NAME}
    if until is not None and until not in nodes:
        raise ConfigError(f"--until {until}: not a node ({', '.join(sorted(nodes))})")
    async with handle.open() as run:
        if not await run.store.board.hold(thread_id):
            raise ConfigError(
                f"thread {thread_id} is being run by a worker; step it once the run is over"
            )
        try:
            return await _step(run, thread_id, from_checkpoint, patch, until, emit, ask)
        finally:
            await run.store.board.release(thread_id)


async def _step(
    run: OpenRun,
    thread_id: str,
    from_checkpoint: str | None,
    patch: dict[str, Any] | None,
    until: str | None,
    emit: Callable[[dict[str, Any]], None],
    ask: Callable[[], str] | None,
) -> dict[str, Any]:
    graph = run.instructions
    snapshot = await graph.aget_state(thread_config(thread_id))
    graph_input: Any = None
    if not snapshot.values:
        graph_input = await _start_input(run, thread_id)
        if patch:
            check_turns(patch, run.config.turns)
            graph_input = graph_input.model_copy(update=patch)
            patch = None
    thread = thread_config(thread_id, from_checkpoint)
    if from_checkpoint and not (await graph.aget_state(thread)).values:
        raise ConfigError(f"no checkpoint {from_checkpoint} in thread {thread_id}")
    if patch:
        thread = await _apply_edits(run, thread, patch)
        emit({"edited": patch, "checkpoint": thread["configurable"]["checkpoint_id"]})

    while True:
        ran: dict[str, Any] = {}
        async for update in graph.astream(
            graph_input,
            thread,
            context=run.context,
            stream_mode="updates",
            interrupt_after="*",
            durability="sync",
        ):
            for node, values in update.items():
                if node != "__interrupt__" and isinstance(values, dict):
                    ran[node] = {
                        k: _brief(v)
                        for k, v in values.items()
                        if k not in ("usage", "usage_by_node")
                    }
        graph_input, thread = None, thread_config(thread_id)  # on from the newest checkpoint
        snapshot = await graph.aget_state(thread)
        nxt = list(snapshot.next)
        emit(
            {
                "ran": ran,
                "next": nxt or [END_NAME],
                "checkpoint": snapshot.config["configurable"]["checkpoint_id"],
                "status": snapshot.values.get("status"),
            }
        )
        if not nxt:
            break
        if until is not None:
            if until in ran:
                break
            continue
        if ask is None:
            break
        answer = ask().strip()
        while answer.startswith("set "):
            try:
                field, value = parse_assignment(answer[4:])
                thread = await _apply_edits(run, thread, {field: value})
            except ConfigError as exc:  # a typo at the prompt: say so, ask again
                emit({"error": str(exc)})
            else:
                checkpoint = thread["configurable"]["checkpoint_id"]
                emit({"edited": {field: value}, "checkpoint": checkpoint})
            answer = ask().strip()
        if answer in ("q", "quit"):
            break
        if answer in ("c", "continue"):
            until = END_NAME
    final = await graph.aget_state(thread_config(thread_id))
    return {"id": thread_id, "status": final.values.get("status"), "next": list(final.next)}

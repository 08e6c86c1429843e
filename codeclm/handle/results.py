"""The run's result files, rebuilt whole from the checkpoints at the end of every run.

A few threads' states at a time are read and written out, so memory stays flat as runs grow;
each file replaces the old one atomically, so no pair is ever written twice or half.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from codeclm.graph import Graph, started_values, thread_config
from codeclm.handle.record import Totals
from codeclm.handle.screening import Screener, Screens, left_out
from codeclm.outputs import DATASET, DROPPED, FAILED, JsonlWriter, dataset_row, dropped_row
from codeclm.state import BasicInstruction, InstructionState
from codeclm.store.blobs import SplitBlobsSaver

READ_AHEAD = 32
"""Thread states read at once while writing the outputs (a shared store serves them in
parallel; SQLite in turn), in the outputs' order."""
READ_TOGETHER = 256
"""Thread states the SQLite saver reads in one go (``SplitBlobsSaver.alatest_values``)."""


async def _states(graph: Graph, instructions: Sequence[BasicInstruction]) -> AsyncIterator[Any]:
    """Each instruction's thread values, in order: from the SQLite saver ``READ_TOGETHER``
    at a time (what it cannot read so, and a shared store's, ``READ_AHEAD`` reads of the
    graph's state in flight)."""
    saver = graph.checkpointer
    size = READ_TOGETHER if isinstance(saver, SplitBlobsSaver) else READ_AHEAD
    keys = graph.stream_channels_asis
    for start in range(0, len(instructions), size):
        chunk = instructions[start : start + size]
        together: dict[str, dict[str, Any]] = {}
        if isinstance(saver, SplitBlobsSaver):
            together = await saver.alatest_values([item.id for item in chunk])
        rest = [item for item in chunk if item.id not in together]
        states: dict[str, dict[str, Any]] = {}
        for first in range(0, len(rest), READ_AHEAD):
            some = rest[first : first + READ_AHEAD]
            snapshots = await asyncio.gather(*(graph.aget_state(thread_config(i.id)) for i in some))
            pairs = zip(some, snapshots, strict=True)
            states.update((item.id, snapshot.values) for item, snapshot in pairs)
        for item in chunk:
            if item.id in together:  # its state's channels written (a reducer's never
                # written, which ``aget_state`` gives as its empty default, is left to
                # the state model's default)
                values = together[item.id]
                yield started_values({key: values[key] for key in keys if key in values})
            else:
                yield started_values(states[item.id])


async def write_outputs(
    graph: Graph,
    instructions: Sequence[BasicInstruction],
    out_dir: Path,
    screens: Screens | None = None,
) -> Totals:
    """The three result files, rebuilt whole from the checkpoints (never appended).

    A few threads' states at a time are read and written out; threads never started are
    left out. A kept pair that ``screens`` leave out goes to dropped.jsonl with its status
    ('contaminated', 'duplicate', 'surplus') and reason.
    """
    totals = Totals()
    screener = Screener(screens or Screens())
    if screener.screens.any:
        await screener.first_pass(_states(graph, instructions))
    with (
        JsonlWriter(out_dir / DATASET) as dataset,
        JsonlWriter(out_dir / DROPPED) as dropped,
        JsonlWriter(out_dir / FAILED) as failed,
    ):
        async for values in _states(graph, instructions):
            if not values:
                continue
            state = InstructionState.model_validate(values)
            if state.status == "kept" and (reason := screener.reason(state)) is not None:
                state = state.model_copy(update={"status": left_out(reason), "reason": reason})
            totals.add(state)
            if state.status == "kept":
                dataset.write(dataset_row(state))
            elif state.status in ("dropped", "failed", "duplicate", "surplus", "contaminated"):
                (failed if state.status == "failed" else dropped).write(dropped_row(state))
    return totals

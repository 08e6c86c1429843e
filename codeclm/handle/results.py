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

READ_AHEAD = 32
"""Thread states read at once while writing the outputs (a shared store serves them in
parallel; SQLite in turn), in the outputs' order."""


async def _states(graph: Graph, instructions: Sequence[BasicInstruction]) -> AsyncIterator[Any]:
    """Each instruction's thread values, in order, ``READ_AHEAD`` reads in flight."""
    for start in range(0, len(instructions), READ_AHEAD):
        chunk = instructions[start : start + READ_AHEAD]
        snapshots = await asyncio.gather(
            *(graph.aget_state(thread_config(item.id)) for item in chunk)
        )
        for snapshot in snapshots:
            yield started_values(snapshot.values)


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

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
from codeclm.outputs import DATASET, DROPPED, FAILED, JsonlWriter, dataset_row, dropped_row
from codeclm.state import BasicInstruction, InstructionState


class NearDuplicates:
    """``run --dedup``: a kept pair whose instruction repeats an earlier kept one, by meaning.

    Greedy in instruction order: each kept instruction is compared (embedding cosine) with
    the kept instructions before it that were not duplicates themselves.
    """

    def __init__(self, threshold: float) -> None:
        from codeclm.analysis.embeddings import embedding_model

        self.model = embedding_model()
        self.threshold = threshold
        self.ids: list[str] = []
        self.vectors: list[Any] = []

    def check(self, states: list[InstructionState]) -> list[str | None]:
        """For each state: why it is a duplicate, or None; the others join the kept set."""
        import numpy as np

        reasons: list[str | None] = []
        for state, vector in zip(
            states, self.model.encode([s.instruction for s in states]), strict=True
        ):
            if self.vectors:
                sims = np.stack(self.vectors) @ vector
                best = int(np.argmax(sims))
                if sims[best] >= self.threshold:
                    reasons.append(
                        f"near-duplicate of {self.ids[best]} (cosine {sims[best]:.3f} >= "
                        f"{self.threshold:g})"
                    )
                    continue
            self.ids.append(state.id)
            self.vectors.append(vector)
            reasons.append(None)
        return reasons


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
    dedup: float | None = None,
    pairs: int | None = None,
) -> Totals:
    """The three result files, rebuilt whole from the checkpoints (never appended).

    A few threads' states at a time are read and written out; threads never started are
    left out. With ``dedup``, kept near-duplicates go to dropped.jsonl as 'duplicate'; with
    ``pairs``, kept pairs beyond the first N (in the outputs' order) as 'surplus'.
    """
    totals = Totals()
    duplicates = NearDuplicates(dedup) if dedup else None
    with (
        JsonlWriter(out_dir / DATASET) as dataset,
        JsonlWriter(out_dir / DROPPED) as dropped,
        JsonlWriter(out_dir / FAILED) as failed,
    ):

        def flush(kept: list[InstructionState]) -> None:
            reasons = duplicates.check(kept) if duplicates else [None] * len(kept)
            for state, reason in zip(kept, reasons, strict=True):
                if reason is None and pairs is not None and totals.counts.kept >= pairs:
                    reason = f"surplus: kept beyond --pairs {pairs}"
                if reason is None:
                    totals.add(state)
                    dataset.write(dataset_row(state))
                else:
                    status = "surplus" if reason.startswith("surplus") else "duplicate"
                    state = state.model_copy(update={"status": status, "reason": reason})
                    totals.add(state)
                    dropped.write(dropped_row(state))

        batch: list[InstructionState] = []
        async for values in _states(graph, instructions):
            if not values:
                continue
            state = InstructionState.model_validate(values)
            if state.status == "kept":
                batch.append(state)
                if len(batch) == 64:
                    flush(batch)
                    batch = []
                continue
            totals.add(state)
            if state.status in ("dropped", "failed"):
                (dropped if state.status == "dropped" else failed).write(dropped_row(state))
        flush(batch)
    return totals

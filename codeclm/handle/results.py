"""The run's result files, rebuilt whole from the checkpoints at the end of every run.

A few threads' states at a time are read and written out, so memory stays flat as runs grow;
each file replaces the old one atomically, so no pair is ever written twice or half.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from codeclm.analysis.contamination import Contamination, load_items
from codeclm.analysis.sampling import spread_sample
from codeclm.config import RunConfig
from codeclm.graph import Graph, started_values, thread_config
from codeclm.handle.record import Totals
from codeclm.outputs import DATASET, DROPPED, FAILED, JsonlWriter, dataset_row, dropped_row
from codeclm.records import Decontamination, RunInputs
from codeclm.seeds import split_test_files
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


@cache
def _loaded(files: tuple[str, ...]) -> Contamination:
    items: dict[str, list[str]] = {}
    for name in files:
        items.update(load_items(Path(name)))
    return Contamination(items)


def test_items(
    config: RunConfig, inputs: RunInputs
) -> tuple[Contamination | None, Decontamination | None]:
    """The evaluation items no pair may copy (``--decontaminate``; loaded once per
    process), and what the run's record says of them."""
    if not config.decontaminate:
        return None, None
    found = _loaded(tuple(config.decontaminate))
    record = Decontamination(
        files=list(config.decontaminate),
        items=found.items,
        rule=found.rule,
        from_split=config.decontaminate == split_test_files(inputs.seeds or ""),
    )
    return found, record


@dataclass
class Screens:
    """What keeps a kept pair out of the dataset, checked in this order: an evaluation
    item it copies (``contamination``), an earlier kept pair it repeats (``dedup``), and,
    with ``pairs``, a seeded sample spread over metadata entries (the rest: 'surplus')."""

    contamination: Contamination | None = None
    dedup: float | None = None
    pairs: int | None = None
    seed: int = 0

    @property
    def any(self) -> bool:
        return self.contamination is not None or self.dedup is not None or self.pairs is not None


async def screened(
    graph: Graph, instructions: Sequence[BasicInstruction], screens: Screens
) -> dict[str, str]:
    """Why each kept pair that is not data is left out, by id: a first pass over the
    states, so that the ``--pairs`` sample is drawn from every pair left."""
    reasons: dict[str, str] = {}
    duplicates = NearDuplicates(screens.dedup) if screens.dedup else None
    candidates: list[tuple[str, str]] = []  # (id, metadata entry) of the pairs left

    def flush(kept: list[InstructionState]) -> None:
        if screens.contamination is not None:
            found = screens.contamination.check([state.user_turns for state in kept])
            reasons.update((s.id, why) for s, why in zip(kept, found, strict=True) if why)
            kept = [state for state in kept if state.id not in reasons]
        if duplicates is not None and kept:
            found = duplicates.check(kept)
            reasons.update((s.id, why) for s, why in zip(kept, found, strict=True) if why)
        candidates.extend(
            (state.id, state.metadata_id or state.id) for state in kept if state.id not in reasons
        )

    batch: list[InstructionState] = []
    async for values in _states(graph, instructions):
        if values and values.get("status") == "kept":
            batch.append(InstructionState.model_validate(values))
            if len(batch) == 64:
                flush(batch)
                batch = []
    flush(batch)
    if screens.pairs is not None and len(candidates) > screens.pairs:
        chosen = set(spread_sample([group for _, group in candidates], screens.pairs, screens.seed))
        surplus = f"surplus: kept beyond --pairs {screens.pairs} (sampled across entries)"
        reasons.update(
            (ident, surplus) for i, (ident, _) in enumerate(candidates) if i not in chosen
        )
    return reasons


def _left_out(reason: str) -> str:
    """The status a screened pair is written with in dropped.jsonl."""
    return (
        reason.split(":", 1)[0] if reason.startswith(("surplus", "contaminated")) else "duplicate"
    )


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
    reasons = await screened(graph, instructions, screens) if screens and screens.any else {}
    with (
        JsonlWriter(out_dir / DATASET) as dataset,
        JsonlWriter(out_dir / DROPPED) as dropped,
        JsonlWriter(out_dir / FAILED) as failed,
    ):
        async for values in _states(graph, instructions):
            if not values:
                continue
            state = InstructionState.model_validate(values)
            if state.status == "kept" and state.id in reasons:
                reason = reasons[state.id]
                state = state.model_copy(update={"status": _left_out(reason), "reason": reason})
            totals.add(state)
            if state.status == "kept":
                dataset.write(dataset_row(state))
            elif state.status in ("dropped", "failed", "duplicate", "surplus", "contaminated"):
                (failed if state.status == "failed" else dropped).write(dropped_row(state))
    return totals

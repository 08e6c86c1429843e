"""What keeps a kept pair out of ``dataset.jsonl``: an evaluation item it copies
(``--decontaminate``), an earlier kept pair it repeats (``--dedup``), or the ``--pairs``
budget (a seeded sample spread over the metadata entries stays; the rest is surplus)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from codeclm.analysis.contamination import Contamination, load_items
from codeclm.analysis.sampling import spread_sample
from codeclm.config import ConfigError, RunConfig
from codeclm.records import Decontamination, RunInputs
from codeclm.seeds import split_test_files
from codeclm.state import InstructionState


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


@cache
def _loaded(files: tuple[str, ...]) -> Contamination:
    items: dict[str, list[str]] = {}
    for name in files:
        if not Path(name).is_file():
            raise ConfigError(
                f"--decontaminate {name}: no such file (the run records it: put it back, "
                "or start the run in a new --out)"
            )
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


class Screener:
    """The screens applied to one writing of the outputs. A first pass over the kept pairs
    decides each one's fate, so that the ``--pairs`` sample is drawn from every pair left;
    a pair kept after that pass (another worker's, finishing meanwhile) is screened alone,
    and is surplus once the sample is full."""

    def __init__(self, screens: Screens) -> None:
        self.screens = screens
        self.duplicates = NearDuplicates(screens.dedup) if screens.dedup else None
        self.reasons: dict[str, str] = {}
        self.seen: set[str] = set()
        self.data = 0
        """Pairs kept as data so far."""

    def _screen(self, kept: list[InstructionState]) -> list[InstructionState]:
        """Contamination, then repeats: the pairs left (the others get their reasons)."""
        if self.screens.contamination is not None:
            found = self.screens.contamination.check([state.user_turns for state in kept])
            self.reasons.update((s.id, why) for s, why in zip(kept, found, strict=True) if why)
            kept = [state for state in kept if state.id not in self.reasons]
        if self.duplicates is not None and kept:
            found = self.duplicates.check(kept)
            self.reasons.update((s.id, why) for s, why in zip(kept, found, strict=True) if why)
        return [state for state in kept if state.id not in self.reasons]

    async def first_pass(self, states: AsyncIterator[Any]) -> None:
        candidates: list[tuple[str, str]] = []  # (id, metadata entry) of the pairs left
        batch: list[InstructionState] = []
        async for values in states:
            if values and values.get("status") == "kept":
                batch.append(InstructionState.model_validate(values))
            if len(batch) == 64:
                candidates += [(s.id, s.metadata_id or s.id) for s in self._screen(batch)]
                self.seen.update(state.id for state in batch)
                batch = []
        candidates += [(s.id, s.metadata_id or s.id) for s in self._screen(batch)]
        self.seen.update(state.id for state in batch)
        pairs = self.screens.pairs
        chosen = set(range(len(candidates)))
        if pairs is not None and len(candidates) > pairs:
            chosen = set(
                spread_sample([group for _, group in candidates], pairs, self.screens.seed)
            )
            self.reasons.update(
                (ident, self.surplus) for i, (ident, _) in enumerate(candidates) if i not in chosen
            )
        self.data = len(chosen)

    @property
    def surplus(self) -> str:
        return f"surplus: kept beyond --pairs {self.screens.pairs} (sampled across entries)"

    def reason(self, state: InstructionState) -> str | None:
        """Why this kept pair is not data; None: it is."""
        if state.id in self.seen or not self.screens.any:
            return self.reasons.get(state.id)
        self.seen.add(state.id)
        if not self._screen([state]):
            return self.reasons[state.id]
        if self.screens.pairs is not None and self.data >= self.screens.pairs:
            self.reasons[state.id] = self.surplus
            return self.surplus
        self.data += 1
        return None


def left_out(reason: str) -> str:
    """The status a screened pair is written with in dropped.jsonl."""
    return (
        reason.split(":", 1)[0] if reason.startswith(("surplus", "contaminated")) else "duplicate"
    )

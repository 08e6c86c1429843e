"""A decode round watched as it goes: which instructions can start before the round ends.

The 'prepare' graph's tasks report as LangGraph updates (dicts keyed by state field); they
are read here once, into typed events, and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from codeclm.methods import method_spec
from codeclm.prepare.passes import Ready
from codeclm.prepare.planning import Acceptance, with_rubrics
from codeclm.state import BasicInstruction, PrepareState, RubricSet


@dataclass(frozen=True)
class RubricsWritten:
    """Self-Rubrics finished for an entry (``usable`` or stalled short)."""

    rubric_set: RubricSet


@dataclass(frozen=True)
class EntryDecoded:
    """A decode ask of an entry came back: its items, or none when the ask failed."""

    metadata_id: str
    items: list[BasicInstruction]


PrepareEvent = RubricsWritten | EntryDecoded


def prepare_events(node: str, update: Any) -> list[PrepareEvent]:
    """One finished task's writes as events (other nodes' writes say nothing to a watch)."""
    if not isinstance(update, dict):
        return []
    events: list[PrepareEvent] = [RubricsWritten(r) for r in update.get("rubric_sets") or []]
    items: list[BasicInstruction] = update.get("decoded") or []
    if node == "decode" and items:
        events.append(EntryDecoded(items[0].metadata_id, items))
    events += [
        EntryDecoded(failure.subject, [])
        for failure in update.get("failures") or []
        if failure.step == "decode"
    ]
    return events


class RoundWatch:
    """A decode round's instructions that can start before the round's join (``collect``).

    Whether an item counts depends only on the items ranked before it (``Acceptance``):
    earlier rounds, and this round's entries earlier in pool order. So as soon as every
    entry before it has reported, it is decided exactly as ``collect`` will decide it, and
    its thread can start (once its entry's rubrics are written) while later entries are
    still being decoded. Only what became ready since the last ``fresh()`` is handed on.
    """

    def __init__(self, state: PrepareState, similarity: float) -> None:
        self.state = state
        targets = {entry.id: entry.n_instructions for entry in state.pool}
        self.acceptance = Acceptance(similarity, targets, state.accepted_items())
        written = with_rubrics(state.pool, state.rubric_sets)
        has_rubrics = {r.metadata_id for r in state.rubric_sets if r.usable}
        self.entries = {e.id: e for e in written}
        uses_rubrics = method_spec(state.method).uses_rubrics
        self.ready_entries = {e.id for e in written if e.id in has_rubrics or not uses_rubrics}
        self.held: dict[str, list[BasicInstruction]] = {}
        self.unusable: set[str] = set()
        self.reported: dict[str, list[BasicInstruction]] = {}
        self.waiting = list(state.pending_decode)  # in pool order, as ``plan`` lists them
        self._fresh: Ready = []

    def see(self, event: PrepareEvent) -> None:
        """An entry's rubrics written, or its decode ask back (items, or none: failed)."""
        if isinstance(event, RubricsWritten):
            rubric_set = event.rubric_set
            ident = rubric_set.metadata_id
            held = self.held.pop(ident, [])
            if not rubric_set.usable:  # stalled short: its items never start (``collect``)
                self.unusable.add(ident)
                return
            self.entries[ident] = with_rubrics([self.entries[ident]], [rubric_set])[0]
            self.ready_entries.add(ident)
            self._fresh += [(self.entries[ident], item) for item in held]
            return
        self.reported[event.metadata_id] = event.items
        while self.waiting and self.waiting[0] in self.reported:
            ident = self.waiting.pop(0)
            for item in sorted(self.reported[ident], key=lambda i: i.index):
                if not self.acceptance.offer(item):
                    continue
                if ident in self.ready_entries:
                    self._fresh.append((self.entries[ident], item))
                elif ident not in self.unusable:
                    self.held.setdefault(ident, []).append(item)

    def fresh(self) -> Ready:
        """The instructions that became ready since the last call."""
        ready, self._fresh = self._fresh, []
        return ready

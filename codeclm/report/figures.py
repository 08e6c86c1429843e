"""The figures of one run, read from its output files: distributions, diversity, where
the kept data came from, why the rest was not kept (also written to report.json)."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from codeclm.analysis.embeddings import Vectors
from codeclm.analysis.metrics import distinct_n, jensen_shannon, near_duplicates, spread
from codeclm.config import ConfigError
from codeclm.graph import thread_steps
from codeclm.handle import RunHandle
from codeclm.outputs import DATASET, DROPPED, FAILED, METADATA
from codeclm.records import RunRecord
from codeclm.report.cost import cost_figures
from codeclm.review import pair_reviews
from codeclm.rows import DatasetRow, DroppedRow, PairReview
from codeclm.seeds import load_seeds
from codeclm.state import MetadataEntry

TOP = 15  # labels shown per distribution plot


@dataclass
class RunData:
    """One run's outputs, as the report needs them."""

    name: str
    record: RunRecord
    kept: list[DatasetRow]
    dropped: list[DroppedRow]
    failed: list[DroppedRow]
    metadata: list[MetadataEntry]
    seed_texts: list[str] = field(default_factory=list)
    reviews: dict[str, PairReview] = field(default_factory=dict)

    @property
    def method(self) -> str:
        return self.record.method.name


def load_run(handle: RunHandle) -> RunData:
    """A finished run's record, rows and reviews, for the report."""
    record, inputs = handle.record, handle.inputs
    assert record is not None and handle.out_dir is not None
    seed_texts: list[str] = []
    if inputs.seeds and Path(inputs.seeds).exists():
        try:
            seed_texts = [seed.text for seed in load_seeds(Path(inputs.seeds), inputs.field)]
        except ValueError:
            seed_texts = []
    return RunData(
        name=handle.out_dir.resolve().name,
        record=record,
        kept=handle.rows(DATASET, DatasetRow),
        dropped=handle.rows(DROPPED, DroppedRow),
        failed=handle.rows(FAILED, DroppedRow),
        metadata=handle.rows(METADATA, MetadataEntry),
        seed_texts=seed_texts,
        reviews=asyncio.run(pair_reviews(handle)),
    )


# ---- the figures ------------------------------------------------------------------------


def metadata_distributions(run: RunData) -> dict[str, dict[str, Counter[str]]]:
    """Use-case and skill counts (and each declared metadata field's) of the seeds, the
    metadata pool and the kept data.

    Seeds: each encoded (or user-written) entry counts once per seed it came from.
    """
    extra = sorted({name for entry in run.metadata for name in entry.extra})
    kinds = ("use_case", "skills", *extra)
    found = {kind: {part: Counter[str]() for part in ("seeds", "pool", "kept")} for kind in kinds}

    def add(part: str, labels: dict[str, Any], weight: int) -> None:
        for kind in kinds:
            value = labels.get(kind)
            for label in value if isinstance(value, list) else [value] if value else []:
                found[kind][part][label] += weight

    for entry in run.metadata:
        labels = {"use_case": entry.use_case, "skills": entry.skills, **entry.extra}
        if entry.origin in ("encoded", "user"):
            add("seeds", labels, len(entry.seed_ids) or 1)
        add("pool", labels, 1)
    for row in run.kept:
        add("kept", row.metadata.model_dump(), 1)
    return found


def _reason_group(reason: str | None) -> str:
    """Reasons with their numbers taken out, so like ones count together."""
    if not reason:
        return "(none)"
    text = re.sub(r"-?\d+(\.\d+)?", "N", reason)
    text = re.sub(r" (with|of|of all) \S+$", r" \1 an item", text)  # contaminated: which item
    return text.split(" (reply starts")[0][:120]


def _counts(run: RunData) -> dict[str, Any]:
    """What became of the run's instructions, as the report's tables count them."""
    return {
        "instructions": run.record.counts.instructions,
        "kept": len(run.kept),
        "dropped": sum(r.status == "dropped" for r in run.dropped),
        "duplicates": sum(r.status == "duplicate" for r in run.dropped),
        "contaminated": sum(r.status == "contaminated" for r in run.dropped),
        "target_cut": sum(r.target_cut for r in run.kept),
        "failed": len(run.failed),
        "target_refused": sum(r.target_refused for r in run.kept),
        "instructions_requested": run.record.counts.instructions_requested,
        "pairs_requested": run.record.counts.pairs_requested,
        "surplus": run.record.counts.surplus,
    }


def figures(run: RunData, near_dup: float) -> dict[str, Any]:
    """Every number the report shows for one run (also written to report.json)."""
    distributions = metadata_distributions(run)
    jsd = {
        kind: {
            "seeds_vs_pool": jensen_shannon(d["seeds"], d["pool"]),
            "seeds_vs_kept": jensen_shannon(d["seeds"], d["kept"]),
        }
        for kind, d in distributions.items()
    }
    texts = [row.instruction for row in run.kept]
    diversity: dict[str, Any] = {
        "distinct_1": distinct_n(texts, 1) if texts else None,
        "distinct_2": distinct_n(texts, 2) if texts else None,
        "near_duplicate_threshold": near_dup,
    }
    kept_vectors = seed_vectors = None
    try:
        from codeclm.analysis.embeddings import embedding_model

        model = embedding_model()
        kept_vectors = model.encode(texts)
        seed_vectors = model.encode(run.seed_texts)
        diversity["near_duplicates"] = len(near_duplicates(kept_vectors, near_dup))
        diversity["embedding_spread"] = spread(kept_vectors) if len(texts) > 1 else None
        if run.seed_texts:
            diversity["seed_embedding_spread"] = spread(seed_vectors)
    except ConfigError as exc:  # the embedding model is not installed
        diversity["embeddings_unavailable"] = str(exc)
    by_iteration = Counter(str(row.iteration) for row in run.kept)
    gaps = [r.scores.gap for r in run.kept if r.scores]
    gaps += [r.scores.gap for r in run.dropped if r.scores]
    return {
        "name": run.name,
        "method": run.method,
        "counts": _counts(run),
        "shortfall": run.record.shortfall,
        "judge": run.record.judge.model_dump() if run.record.judge else None,
        "decontamination": (
            run.record.decontamination.model_dump() if run.record.decontamination else None
        ),
        "kept_by_iteration": dict(sorted(by_iteration.items(), key=lambda kv: int(kv[0]))),
        "kept_at_iteration_1": by_iteration.get("1", 0) / len(run.kept) if run.kept else None,
        "gaps": gaps,
        "threshold": run.record.config.get("threshold"),
        "reasons": {
            status: Counter(
                _reason_group(r.reason)
                for r in (run.failed if status == "failed" else run.dropped)
                if r.status == status
            ).most_common()
            for status in ("dropped", "duplicate", "contaminated", "failed")
        },
        "prepare_failures": [f.model_dump() for f in run.record.prepare_failures],
        "metadata": {
            kind: {part: dict(c.most_common()) for part, c in d.items()}
            for kind, d in distributions.items()
        },
        "jensen_shannon": jsd,
        "diversity": diversity,
        "usage": {role: u.model_dump() for role, u in run.record.usage.items()},
        "usage_by_node": {node: u.model_dump() for node, u in run.record.usage_by_node.items()},
        "pca": _pca(kept_vectors, seed_vectors),
        "reviews": review_figures(run),
        "labels": label_figures(run.record),
        "updates": update_figures(run),
        "cost": cost_figures(run.record, run.seed_texts),
        "turns": turn_figures(run),
    }


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def turn_figures(run: RunData) -> list[dict[str, Any]] | None:
    """A conversation run's figures turn by turn: the gaps the judge saw at each turn (the
    pairs kept, and all judged), the scores, the actions that rewrote it, what it cost
    (its ``node turn N`` usage priced; the first turn's is the nodes' own); None for
    single instructions."""
    rows: list[DatasetRow | DroppedRow] = [*run.kept, *run.dropped]
    counted = [row.turns for row in run.kept] + [1 + len(row.follow_ups) for row in run.dropped]
    turns = max(counted, default=1)
    if turns < 2:
        return None
    judged = [row for row in rows if row.turn_scores]  # (none for the baselines)
    cost = run.record.cost
    by_node = cost.by_node if cost else {}
    threads = _thread_steps(run.record)
    figures = []
    for turn in range(1, turns + 1):
        scores = [row.turn_scores[turn - 1] for row in judged if len(row.turn_scores) >= turn]
        kept = [row.turn_scores[turn - 1] for row in run.kept if len(row.turn_scores) >= turn]
        paid = [
            value or 0.0
            for key, value in by_node.items()
            if _turn_of(key.rsplit("/", 1)[0], threads) == turn
        ]
        figures.append(
            {
                "turn": turn,
                "judged": len(scores),
                "mean_gap": _mean([s.gap for s in scores]),
                "mean_gap_kept": _mean([s.gap for s in kept]),
                "strong": _mean([s.strong for s in scores]),
                "target": _mean([s.target for s in scores]),
                "rewritten": sum(row.improved_turns.count(turn) for row in rows),
                "cost": sum(paid) if cost else None,
            }
        )
    return figures


def _thread_steps(record: RunRecord) -> set[str]:
    """The steps of the run's instruction threads, from its method and turns (its other
    settings may not read any more: a prompts folder gone, a setting of another version)."""
    return set(thread_steps(record.method.name, int(record.config.get("turns") or 1)))


def _turn_of(node: str, threads: set[str]) -> int | None:
    """The turn a node's usage is for (``node turn N``; the first turn's work of the
    instruction threads' steps, ``threads``, goes by the nodes' own names); None: not a
    turn's (the prepare pass)."""
    name, _, turn = node.partition(" turn ")
    if turn:
        return int(turn)
    return 1 if name in threads else None


def update_figures(run: RunData) -> list[dict[str, Any]]:
    """Each ``run --update``: its seeds against the run's earlier ones (the shift), and
    against the pool entries and kept pairs it added (the tailoring), on use cases."""
    figures = []
    updates = run.record.updates
    for number, update in enumerate(updates):
        if update.pool_start < 0:
            continue
        end = updates[number + 1].pool_start if number + 1 < len(updates) else None
        old, new = run.metadata[: update.pool_start], run.metadata[update.pool_start : end]
        ids = {entry.id for entry in new}

        def seeds_of(entries: list[MetadataEntry]) -> Counter[str]:
            counts: Counter[str] = Counter()
            for entry in entries:
                if entry.origin == "encoded":
                    counts[entry.use_case] += len(entry.seed_ids)
            return counts

        new_seeds = seeds_of(new)
        kept = Counter(r.metadata.use_case or "" for r in run.kept if r.metadata.id in ids)
        figures.append(
            {
                "update": update.number,
                "seeds": len(update.seed_ids),
                "entries": len(new),
                "kept": sum(kept.values()),
                "old_seeds_vs_new_seeds": jensen_shannon(seeds_of(old), new_seeds),
                "new_seeds_vs_added_pool": jensen_shannon(
                    new_seeds, Counter(e.use_case for e in new)
                ),
                "new_seeds_vs_added_kept": jensen_shannon(new_seeds, kept),
                "new_seeds": dict(new_seeds.most_common()),
            }
        )
    return figures


def label_figures(record: RunRecord) -> dict[str, Any] | None:
    """Which raw labels the run merged into each canonical one (None: no map recorded)."""
    labels = record.label_map
    if labels is None:
        return None
    merged: dict[str, dict[str, list[str]]] = {"use_case": {}, "skills": {}}
    for kind, mapping in (("use_case", labels.use_case), ("skills", labels.skills)):
        for raw, canonical in sorted(mapping.items()):
            merged[kind].setdefault(canonical, []).append(raw)
    return {"threshold": labels.threshold, **merged}


def review_figures(run: RunData) -> dict[str, Any]:
    """What people said: the pool's review (if the run had one), and the kept pairs'."""
    kept = {row.id for row in run.kept}
    reviews = [r for ident, r in run.reviews.items() if ident in kept]
    pool = run.record.pool_review
    return {
        "pool": None
        if pool is None
        else {
            "dropped": len(pool.dropped),
            "edited": len(pool.edited),
            "added": len(pool.added),
            "note": pool.note,
        },
        "pairs": {
            "accepted": sum(r.verdict == "accepted" for r in reviews),
            "rejected": sum(r.verdict == "rejected" for r in reviews),
            "edited": sum(r.edited for r in reviews),
            "not_reviewed": len(kept) - len(reviews),
        },
        "notes": [[r.id, r.verdict, r.note] for r in reviews if r.note],
    }


def _pca(kept: Vectors | None, seeds: Vectors | None) -> dict[str, Any] | None:
    """Kept instructions and seeds projected on their two main axes, for the spread plot."""
    import numpy as np

    if kept is None or seeds is None or len(kept) + len(seeds) < 3:
        return None
    vectors = np.concatenate([seeds, kept])
    centered = vectors - vectors.mean(axis=0)
    _, _, axes = np.linalg.svd(centered, full_matrices=False)
    points = centered @ axes[:2].T
    return {"seeds": points[: len(seeds)].tolist(), "kept": points[len(seeds) :].tolist()}


def fmt(value: Any) -> str:
    """A figure as the report prints it: 3 decimals, whole numbers with thousands
    separators (1,382), a dash for none."""
    if value is None:
        return "–"
    if isinstance(value, float):
        return "n/a" if value != value else f"{value:.3f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)

"""Canonical labels: the encoder's spellings of one use case (or skill) merged into one.

A model labels the same kind of seed "customer service" once and "customers service" the
next time; left apart, mix-and-match counts them as two use cases and the pool drifts from
the seeds' distribution. Labels are normalised (case, punctuation, spacing), then merged
greedily by MiniLM embedding cosine: the most frequent label of a group names it.
"""

from __future__ import annotations

import re
from collections import Counter

_PUNCTUATION = re.compile(r"[^\w\s]|_")

_BANNED_WORDS = re.compile(r"\b(skills?|knowledge)\b", re.IGNORECASE)


def clean_label(label: str) -> str:
    """Lower-case a label and strip the words the paper forbids ('skill', 'knowledge')."""
    return " ".join(_BANNED_WORDS.sub(" ", label).lower().split())


def clean_skills(skills: list[str], max_skills: int) -> list[str]:
    cleaned: list[str] = []
    for skill in skills:
        label = clean_label(skill)
        if label and label not in cleaned:
            cleaned.append(label)
    return cleaned[:max_skills]


def normalise(label: str) -> str:
    """Lower case, punctuation and underscores as spaces, single spaces."""
    return " ".join(_PUNCTUATION.sub(" ", label.lower()).split())


def canonical_labels(counts: Counter[str], threshold: float) -> dict[str, str]:
    """Each label's canonical label, for the labels that change (the others stay as they are).

    ``counts``: how many seeds gave each raw label. In order of frequency (then shorter,
    then alphabetical), each normalised label joins the first canonical label whose MiniLM
    cosine with it reaches ``threshold``, or becomes one. ``threshold`` 1: normalisation
    only. Raises ``EmbeddingsUnavailable`` when the embedding model is not installed.
    """
    by_normal: Counter[str] = Counter()
    spelling: dict[str, str] = {}
    for raw, n in counts.items():
        normal = normalise(raw) or raw
        by_normal[normal] += n
        spelling[raw] = normal
    order = sorted(by_normal, key=lambda label: (-by_normal[label], len(label), label))
    merged = {label: label for label in order}
    if threshold < 1 and len(order) > 1:
        merged = _merge_by_meaning(order, threshold)
    mapping = {raw: merged[normal] for raw, normal in spelling.items()}
    return {raw: canonical for raw, canonical in mapping.items() if raw != canonical}


def _merge_by_meaning(order: list[str], threshold: float) -> dict[str, str]:
    from codeclm.analysis.embeddings import embedding_model

    vectors = embedding_model().encode(order)
    canonical: list[int] = []
    merged: dict[str, str] = {}
    for i, label in enumerate(order):
        best = max(canonical, key=lambda c: float(vectors[c] @ vectors[i]), default=None)
        if best is not None and float(vectors[best] @ vectors[i]) >= threshold:
            merged[label] = order[best]
        else:
            canonical.append(i)
            merged[label] = label
    return merged

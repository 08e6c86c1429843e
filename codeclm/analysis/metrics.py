"""Diversity and distribution measures of instruction sets; pure functions, no I/O."""

from __future__ import annotations

import math
import re
from array import array
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np
from numpy.typing import NDArray

_TOKEN = re.compile(r"[a-z0-9]+")


def tokens(text: str) -> list[str]:
    """Lower-cased alphanumeric words: rouge-score's default tokenizer (no stemming)."""
    return _TOKEN.findall(text.lower())


def distinct_n(texts: Iterable[str], n: int) -> float:
    """Distinct-n (Li et al. 2016): unique n-grams / all n-grams over the whole set."""
    total, unique = 0, set()
    for text in texts:
        words = tokens(text)
        grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
        total += len(grams)
        unique.update(grams)
    return len(unique) / total if total else 0.0


def _lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    if len(a) < len(b):
        a, b = b, a
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b, start=1):
            current.append(previous[j - 1] + 1 if x == y else max(previous[j], current[j - 1]))
        previous = current
    return previous[-1]


def rouge_l(a: Sequence[str], b: Sequence[str]) -> float:
    """ROUGE-L F-measure of two token lists (as rouge-score's ``rougeL``)."""
    if not a or not b:
        return 0.0
    lcs = _lcs_length(a, b)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(b), lcs / len(a)
    return 2 * precision * recall / (precision + recall)


def near_duplicates(vectors: NDArray[np.float32], threshold: float) -> dict[int, tuple[int, float]]:
    """Greedy, in order: row i → (earlier row it repeats, cosine) when cosine ≥ ``threshold``.

    A row is compared only with earlier rows that were not themselves duplicates, so
    removing the returned rows leaves a set with no pair above the threshold.
    """
    duplicates: dict[int, tuple[int, float]] = {}
    kept: list[int] = []
    for i in range(len(vectors)):
        if kept:
            sims = vectors[kept] @ vectors[i]
            best = int(np.argmax(sims))
            if sims[best] >= threshold:
                duplicates[i] = (kept[best], float(sims[best]))
                continue
        kept.append(i)
    return duplicates


def spread(vectors: NDArray[np.float32]) -> float:
    """Mean pairwise cosine distance (1 − cosine) of unit vectors: 0 when all are the same."""
    n = len(vectors)
    if n < 2:
        return 0.0
    total = vectors.sum(axis=0)
    # Σ_{i≠j} v_i·v_j = |Σ v|² − Σ |v_i|², and |v_i| = 1.
    mean_similarity = (float(total @ total) - n) / (n * (n - 1))
    return 1.0 - mean_similarity


def distribution(labels: Iterable[str]) -> Counter[str]:
    return Counter(labels)


def jensen_shannon(p: Counter[str], q: Counter[str]) -> float:
    """Jensen–Shannon divergence (base 2: 0 = identical, 1 = disjoint) of two label counts."""
    p_total, q_total = sum(p.values()), sum(q.values())
    if not p_total or not q_total:
        return math.nan
    divergence = 0.0
    for label in set(p) | set(q):
        pi, qi = p[label] / p_total, q[label] / q_total
        mi = (pi + qi) / 2
        if pi:
            divergence += 0.5 * pi * math.log2(pi / mi)
        if qi:
            divergence += 0.5 * qi * math.log2(qi / mi)
    return max(0.0, divergence)


class NoveltyFilter:
    """Self-Instruct's filter: a text is novel when its ROUGE-L with every known one is below
    ``threshold``.

    ROUGE-L is bounded by the multiset word overlap (an LCS cannot be longer than it), so
    an inverted index finds the few known texts that could reach the threshold, and only
    those get the quadratic LCS: thousands of instructions take seconds, not minutes.
    """

    def __init__(self, threshold: float, texts: Iterable[str] = ()) -> None:
        self.threshold = threshold
        # Compact, as a run holds an index per metadata entry: each known text as one string
        # of its words, and the postings as packed integers (index << 16 | count).
        self.known: list[str] = []
        self.lengths = array("I")
        self.postings: dict[str, array[int]] = {}
        for text in texts:
            self.add(tokens(text))

    def add(self, words: list[str]) -> None:
        index = len(self.known)
        self.known.append(" ".join(words))
        self.lengths.append(len(words))
        for word, count in Counter(words).items():
            self.postings.setdefault(word, array("Q")).append(index << 16 | min(count, 0xFFFF))

    def is_novel(self, words: list[str]) -> bool:
        if not words:
            return False
        overlap: Counter[int] = Counter()
        for word, count in Counter(words).items():
            for packed in self.postings.get(word, ()):
                overlap[packed >> 16] += min(count, packed & 0xFFFF)
        for index, shared in overlap.items():
            bound = 2 * shared / (len(words) + self.lengths[index])
            if bound >= self.threshold and rouge_l(words, self.known[index].split(" ")) >= (
                self.threshold
            ):
                return False
        return True

    def add_if_novel(self, text: str) -> bool:
        """Add ``text`` when it is novel; whether it was."""
        words = tokens(text)
        if not self.is_novel(words):
            return False
        self.add(words)
        return True

"""Decontamination: a pair that copies or nearly copies an evaluation item is never data.

The usual rule (GPT-3's report): a training text sharing a 13-word n-gram with a test item
is contaminated. An item shorter than 13 words counts when all of it (8 words at least)
appears in the text: a copied short question shares no 13-gram. Where the MiniLM encoder is
installed, a cosine of 0.9 or more with an item counts too (a paraphrase shares no n-gram).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from codeclm.analysis.metrics import tokens

NGRAM = 13
"""Words in the shared n-gram that makes a text contaminated."""
SHORT_ITEM = 8
"""An item of this many words or more (under ``NGRAM``) counts when it appears whole."""
COSINE = 0.9
"""MiniLM cosine from which a text is a paraphrase of an item."""


def _grams(words: Sequence[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


class Contamination:
    """The evaluation items' n-grams (and embeddings, where the encoder is installed)."""

    def __init__(self, items: dict[str, list[str]], use_embeddings: bool = True) -> None:
        """``items``: each item's id and its texts (its turns)."""
        self.grams: dict[tuple[str, ...], str] = {}
        self.short: dict[int, dict[tuple[str, ...], str]] = {}
        for ident, texts in items.items():
            for text in texts:
                words = tokens(text)
                if len(words) >= NGRAM:
                    self.grams.update(dict.fromkeys(_grams(words, NGRAM), ident))
                elif len(words) >= SHORT_ITEM:
                    self.short.setdefault(len(words), {})[tuple(words)] = ident
        self.items = len(items)
        self.model: Any = None
        self.ids: list[str] = []
        self.vectors: Any = None
        if use_embeddings:
            self._embed(items)

    def _embed(self, items: dict[str, list[str]]) -> None:
        from codeclm.analysis.embeddings import EmbeddingsUnavailable, embedding_model

        try:
            self.model = embedding_model()
        except EmbeddingsUnavailable:
            return
        pairs = [(ident, text) for ident, texts in items.items() for text in texts]
        self.ids = [ident for ident, _ in pairs]
        self.vectors = self.model.encode([text for _, text in pairs]) if pairs else None

    @property
    def rule(self) -> str:
        """The rule in force, as the run's record says it."""
        embedded = f" or MiniLM cosine >= {COSINE:g}" if self.model is not None else ""
        return f"a shared {NGRAM}-word n-gram (a shorter item whole){embedded}"

    def check(self, texts: list[list[str]]) -> list[str | None]:
        """For each pair (its user turns): the reason it is contaminated, or None."""
        reasons = [self._ngram(turns) for turns in texts]
        if self.vectors is None or self.model is None:
            return reasons
        flat = [(i, text) for i, turns in enumerate(texts) if reasons[i] is None for text in turns]
        if not flat:
            return reasons
        sims = self.model.encode([text for _, text in flat]) @ self.vectors.T
        for (i, _), row in zip(flat, sims, strict=True):
            best = int(row.argmax())
            if reasons[i] is None and row[best] >= COSINE:
                reasons[i] = f"contaminated: MiniLM cosine {row[best]:.3f} with {self.ids[best]}"
        return reasons

    def _ngram(self, turns: list[str]) -> str | None:
        for text in turns:
            words = tokens(text)
            for gram in _grams(words, NGRAM):
                if gram in self.grams:
                    return f"contaminated: shares {NGRAM} words with {self.grams[gram]}"
            for length, short in self.short.items():
                for gram in _grams(words, length):
                    if gram in short:
                        return f"contaminated: holds all of {short[gram]}"
        return None


def load_items(path: Path) -> dict[str, list[str]]:
    """A test file's items: a benchmark JSONL (each item's turns), or a text file (an
    item a line)."""
    from codeclm.seeds import load_benchmark

    if path.suffix == ".jsonl":
        return {
            f"{path.name}:{item['id']}": [item["instruction"], *item["follow_ups"]]
            for item in load_benchmark(path)
        }
    lines = path.read_text(encoding="utf-8").splitlines()
    return {f"{path.name}:{n}": [line] for n, line in enumerate(lines, 1) if line.strip()}

"""How fast the measuring parts are, on instruction-like text (no model server needed).

    .venv/bin/python -m benchmarks.analysis_speed [--sizes 1000 2000 10000]

Prints, per size: MiniLM embeddings per second (NumPy, the CPU's cores), the Self-Instruct
ROUGE-L novelty filter over the whole set (indexed, and the plain all-pairs check up to
2,000), greedy near-duplicate search, and the peak RSS of the process.
"""

from __future__ import annotations

import argparse
import random
import resource
import time

from rich.console import Console
from rich.table import Table

from codeclm.analysis.embeddings import embedding_model
from codeclm.analysis.metrics import NoveltyFilter, near_duplicates, rouge_l, tokens

VERBS = ["Explain", "Summarize", "Compare", "Write", "Plan", "Describe", "List", "Critique"]
TOPICS = ["tax forms", "sourdough", "compilers", "jazz", "tides", "chess openings", "SQL joins"]
WORDS = [
    "for",
    "a",
    "beginner",
    "with",
    "examples",
    "in",
    "short",
    "steps",
    "and",
    "a",
    "table",
    "of",
    "the",
    "main",
    "trade-offs",
]


def instructions(n: int, rng: random.Random) -> list[str]:
    """Synthetic instructions with realistic lengths and plenty of shared words."""
    return [
        f"{rng.choice(VERBS)} {rng.choice(TOPICS)} "
        + " ".join(rng.sample(WORDS, rng.randint(3, 12)))
        + f" (case {i})"
        for i in range(n)
    ]


def seconds(action: object) -> float:
    started = time.perf_counter()
    action()  # type: ignore[operator]
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 2000, 10000])
    args = parser.parse_args()
    rng = random.Random(0)
    model = embedding_model()
    table = Table(
        "texts",
        "embed s",
        "texts/s",
        "novelty filter s",
        "plain all-pairs s",
        "near-dups s",
        "near-dups",
    )
    for size in args.sizes:
        texts = instructions(size, rng)
        vectors = []
        embed = seconds(lambda: vectors.append(model.encode(texts)))  # noqa: B023
        novelty_filter = NoveltyFilter(0.7)
        novelty = seconds(lambda: [novelty_filter.add_if_novel(t) for t in texts])  # noqa: B023
        plain = "–"
        if size <= 2000:

            def all_pairs() -> None:
                known: list[list[str]] = []
                for text in texts:  # noqa: B023
                    words = tokens(text)
                    if all(rouge_l(words, other) < 0.7 for other in known):
                        known.append(words)

            plain = f"{seconds(all_pairs):.1f}"
        found: list[int] = []
        dups = seconds(lambda: found.append(len(near_duplicates(vectors[0], 0.9))))  # noqa: B023
        table.add_row(
            f"{size:,}",
            f"{embed:.1f}",
            f"{size / embed:,.0f}",
            f"{novelty:.2f}",
            plain,
            f"{dups:.2f}",
            str(found[0]),
        )
    console = Console()
    console.print(table)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    console.print(f"peak RSS {peak:,.0f} MB")


if __name__ == "__main__":
    main()

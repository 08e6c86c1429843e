"""``codeclm split``: the paper's seed / evaluation split of a benchmark, reproducible.

Stratified by category (each category split at the same fraction, rounded), so a small
category is not left out of the seeds by chance; the same file, fraction and seed always
give the same split. Lines are copied byte for byte, in their original order.
"""

from __future__ import annotations

import random
from collections import defaultdict
from pathlib import Path
from typing import Any

from codeclm.config import ConfigError
from codeclm.outputs import make_folder, write_atomic, write_json
from codeclm.seeds import _read_lines, load_benchmark


def split_benchmark(benchmark: Path, out_dir: Path, fraction: float, seed: int) -> dict[str, Any]:
    """Write ``seeds.jsonl``, ``eval.jsonl`` and ``split.json`` (the ids of each part)."""
    if not 0 < fraction < 1:
        raise ConfigError(f"--seed-fraction must be between 0 and 1, not {fraction:g}")
    items = load_benchmark(benchmark)  # validates every line, one-line errors
    lines = [line for line in _read_lines(benchmark) if line.strip()]
    by_category: dict[str, list[int]] = defaultdict(list)
    for index, item in enumerate(items):
        by_category[item["category"]].append(index)
    rng = random.Random(f"codeclm-split:{seed}")
    seed_indexes: set[int] = set()
    for category in sorted(by_category):
        members = by_category[category]
        take = round(len(members) * fraction)
        seed_indexes.update(rng.sample(members, take))
    if not seed_indexes or len(seed_indexes) == len(items):
        raise ConfigError(
            f"{benchmark}: a fraction of {fraction:g} of {len(items)} items leaves one part empty"
        )
    make_folder(out_dir)
    seeds = [lines[i] for i in range(len(items)) if i in seed_indexes]
    rest = [lines[i] for i in range(len(items)) if i not in seed_indexes]
    write_atomic(out_dir / "seeds.jsonl", "".join(f"{line}\n" for line in seeds))
    write_atomic(out_dir / "eval.jsonl", "".join(f"{line}\n" for line in rest))
    record = {
        "benchmark": str(benchmark.resolve()),
        # a run on seeds.jsonl is checked against it (run --decontaminate, without the flag)
        "test_file": str((out_dir / "eval.jsonl").resolve()),
        "seed_fraction": fraction,
        "seed": seed,
        "seeds": [items[i]["id"] for i in sorted(seed_indexes)],
        "eval": [items[i]["id"] for i in range(len(items)) if i not in seed_indexes],
    }
    write_json(out_dir / "split.json", record)
    return record

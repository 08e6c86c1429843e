"""Does the pool follow the seeds' distribution? (issue #14's "done when")

    .venv/bin/python -m benchmarks.label_divergence [--before DIR] [--keep DIR]

One fixed mock run: 48 seeds, the mock's encoder spelling a use case (and a skill)
differently for about two seeds in three (``label_variants``), ``--instructions 48
--metadata 60 --seed 2``. It is made by this codeclm, by this codeclm with
``--label-similarity 1`` (spelling normalised, no merging by meaning), and, with
``--before DIR``, by the codeclm checked out in DIR (``git worktree add DIR COMMIT``, run
with ``PYTHONPATH=DIR``), all against the same loopback mock.

Every run is measured in one label space: each raw label any run used is mapped by
``canonical_labels`` at 0.8, so a spelling counts as its use case whichever run wrote it.
Printed per run: the Jensen–Shannon divergence of the seeds' use cases and skills against
the pool's and the kept pairs', and how many distinct use cases the pool holds.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from codeclm.analysis.labels import canonical_labels
from codeclm.analysis.metrics import jensen_shannon
from codeclm.bench.mock_llm import MockLLM, mixed_rule
from tests.conftest import mock_args, read_jsonl, write_seeds

SETTINGS = {"instructions": 48, "metadata": 60, "seed": 2, "concurrency": 8}
TOPICS = ["refunds", "passwords", "invoices", "shipping", "sql", "poems", "loans", "maps"]


def _run(mock: MockLLM, seeds: Path, out: Path, code: Path | None, *extra: str) -> None:
    env = os.environ.copy()
    if code is not None:  # (from there: `-m` looks in the working folder first)
        env["PYTHONPATH"] = str(code)
    args = [sys.executable, "-m", "codeclm", "run", str(seeds), *mock_args(mock, out, **SETTINGS)]
    done = subprocess.run(
        [*args, *extra], env=env, capture_output=True, text=True, cwd=code or Path.cwd()
    )
    if done.returncode != 0:
        raise SystemExit(f"{out.name}: {done.stderr.strip().splitlines()[-1]}")


def _distributions(run: Path) -> dict[str, dict[str, Counter[str]]]:
    """Raw use-case and skill counts: seeds (encoded entries, by seed), pool, kept."""
    found = {
        kind: {part: Counter[str]() for part in ("seeds", "pool", "kept")}
        for kind in ("use_case", "skills")
    }
    for entry in read_jsonl(run / "metadata.jsonl"):
        if entry["origin"] == "encoded":
            found["use_case"]["seeds"][entry["use_case"]] += len(entry["seed_ids"])
            for skill in entry["skills"]:
                found["skills"]["seeds"][skill] += len(entry["seed_ids"])
        found["use_case"]["pool"][entry["use_case"]] += 1
        found["skills"]["pool"].update(entry["skills"])
    for row in read_jsonl(run / "dataset.jsonl"):
        found["use_case"]["kept"][row["metadata"]["use_case"]] += 1
        found["skills"]["kept"].update(row["metadata"]["skills"])
    return found


def _canonical(counts: Counter[str], mapping: dict[str, str]) -> Counter[str]:
    merged: Counter[str] = Counter()
    for label, n in counts.items():
        merged[mapping.get(label, label)] += n
    return merged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", type=Path, help="a checkout of an earlier codeclm")
    parser.add_argument("--keep", type=Path, help="keep the runs in this folder")
    args = parser.parse_args()
    os.environ.setdefault("OPENAI_API_KEY", "mock")
    folder = args.keep or Path(tempfile.mkdtemp(prefix="codeclm-labels-"))
    folder.mkdir(parents=True, exist_ok=True)
    texts = [f"Help me with {TOPICS[i % len(TOPICS)]}, case {i * 13}" for i in range(48)]
    seeds = write_seeds(folder / "seeds.jsonl", texts)
    mock = MockLLM(judge_rule=mixed_rule, label_variants=True).start()
    runs: dict[str, Path] = {}
    try:
        if args.before:
            runs["before (--before)"] = folder / "before"
            _run(mock, seeds, runs["before (--before)"], args.before.resolve())
        runs["spelling only (--label-similarity 1)"] = folder / "spelling"
        _run(mock, seeds, folder / "spelling", None, "--label-similarity", "1")
        runs["this codeclm (default 0.8)"] = folder / "now"
        _run(mock, seeds, folder / "now", None)
    finally:
        mock.stop()

    found = {name: _distributions(path) for name, path in runs.items()}
    space: dict[str, dict[str, str]] = {}
    for kind in ("use_case", "skills"):
        raw: Counter[str] = Counter()
        for dists in found.values():
            raw.update(dists[kind]["seeds"])
            raw.update({label: 1 for label in dists[kind]["pool"]})
        space[kind] = canonical_labels(raw, 0.8)
    header = [
        "run",
        "use case: seeds–pool",
        "seeds–kept",
        "skills: seeds–pool",
        "seeds–kept",
        "use cases in pool",
    ]
    print(" | ".join(header))
    for name, dists in found.items():
        cells = [name]
        for kind in ("use_case", "skills"):
            seeds_counts = _canonical(dists[kind]["seeds"], space[kind])
            for part in ("pool", "kept"):
                other = _canonical(dists[kind][part], space[kind])
                cells.append(f"{jensen_shannon(seeds_counts, other):.4f}")
        cells.append(str(len(dists["use_case"]["pool"])))
        print(" | ".join(cells))
    print(
        f"runs in {folder}; label map of this codeclm's run:",
        json.dumps(
            json.loads((runs["this codeclm (default 0.8)"] / "run.json").read_text())["label_map"][
                "use_case"
            ]
        ),
    )


if __name__ == "__main__":
    main()

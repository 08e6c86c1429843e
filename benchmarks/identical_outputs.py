"""Whether a change leaves codeclm's outputs byte for byte as they were: every method, a
conversation run and an evaluation against the loopback mock (judging by ``mixed_rule``, so
pairs are kept at once, kept after rewrites and dropped), each output file's SHA-256.

    .venv/bin/python -m benchmarks.identical_outputs > before.txt
    (change the code)
    .venv/bin/python -m benchmarks.identical_outputs > after.txt && diff before.txt after.txt

A change that also changes the mock is compared against one mock: run the older checkout
with ``--mock-source NEWER`` (the mock served from the newer checkout's codeclm).

``run.json`` and ``eval.json`` are hashed without what differs from run to run by design
(times, the mock's port, folders, the pace the gate took). A refactoring that changes
no behaviour prints the same lines.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from codeclm.bench.mock_model import STRONG_MODEL, TARGET_MODEL

#: Keys of run.json / eval.json that vary between identical runs by design: times, the
#: mock's port (and the fingerprint it enters), the input's folder, the pace the gate took.
VOLATILE = {
    "seconds",
    "wall_seconds",
    "base_url",
    "fingerprint",
    "endpoints",
    "inputs",
    "benchmark",
}

SEEDS = [
    "How do I reverse a list in Python?",
    "Write a limerick about a cat who loves rain.",
    "What should I consider when renting my first flat?",
    "Explain compound interest to a teenager.",
    "I can't log in to my account after the update, what can I do?",
    "Draft a polite email asking my landlord to fix the heating.",
]

#: (name, extra flags) of each run.
RUNS: list[tuple[str, list[str]]] = [
    ("codeclm", ["--max-iterations", "3"]),
    ("codeclm turns 2", ["--turns", "2", "--max-iterations", "2"]),
    ("codeclm-metadata", ["--method", "codeclm-metadata"]),
    ("codeclm-rubrics", ["--method", "codeclm-rubrics"]),
    ("self-instruct", ["--method", "self-instruct"]),
    ("alpagasus", ["--method", "alpagasus"]),
    ("evol-instruct", ["--method", "evol-instruct", "--evol-rounds", "2"]),
    ("wizardlm-plus", ["--method", "wizardlm-plus", "--evol-rounds", "2"]),
    ("tree-instruct", ["--method", "tree-instruct"]),
]


def _stable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in sorted(value.items()) if k not in VOLATILE}
    if isinstance(value, list):
        return [_stable(v) for v in value]
    return value


def digest(path: Path) -> str:
    """The file's SHA-256; a JSON record's without its volatile keys."""
    if not path.exists():
        return "absent"
    data = path.read_bytes()
    if path.suffix == ".json":
        data = json.dumps(_stable(json.loads(data)), sort_keys=True).encode()
    return hashlib.sha256(data).hexdigest()[:16]


def _roles(base_url: str) -> list[str]:
    return [
        "--strong-model",
        STRONG_MODEL,
        "--strong-base-url",
        base_url,
        "--target-model",
        TARGET_MODEL,
        "--target-base-url",
        base_url,
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.identical_outputs")
    parser.add_argument("--instructions", type=int, default=24)
    parser.add_argument(
        "--keep", type=Path, help="write the runs here (default: a temporary folder)"
    )
    parser.add_argument(
        "--mock-source",
        type=Path,
        help="serve the mock from this checkout's codeclm (to compare two versions of the "
        "product against one mock); default: this one",
    )
    args = parser.parse_args(argv)
    mock = subprocess.Popen(
        [sys.executable, "-m", "codeclm.bench.mock_cli", "--mixed"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=args.mock_source,
    )
    try:
        assert mock.stdout is not None
        base_url = mock.stdout.readline().strip()
        with tempfile.TemporaryDirectory() as scratch:
            tmp = args.keep or Path(scratch)
            tmp.mkdir(parents=True, exist_ok=True)
            seeds = Path(tmp) / "seeds.jsonl"
            seeds.write_text(
                "".join(
                    json.dumps({"id": f"s{i}", "instruction": t}) + "\n"
                    for i, t in enumerate(SEEDS)
                )
            )
            for name, flags in RUNS:
                out = Path(tmp) / name.replace(" ", "-")
                command = [sys.executable, "-m", "codeclm", "run", str(seeds), "--out", str(out)]
                command += [*_roles(base_url), "--quiet", "--instructions", str(args.instructions)]
                code = subprocess.run(command + flags, capture_output=True, text=True).returncode
                files = ("dataset.jsonl", "dropped.jsonl", "run.json")
                print(name, f"exit {code}", *(f"{f}:{digest(out / f)}" for f in files))
            items = Path(tmp) / "items.jsonl"
            items.write_text(
                "".join(
                    json.dumps(
                        {"instruction": text, "category": f"c{i % 3}", "followup": "And why?"}
                    )
                    + "\n"
                    for i, text in enumerate(SEEDS)
                )
            )
            for name, flags in [("eval", ["--turns", "1"]), ("eval turns 2", ["--turns", "2"])]:
                out = Path(tmp) / name.replace(" ", "-")
                command = [sys.executable, "-m", "codeclm", "eval", str(items), "--out", str(out)]
                command += [*_roles(base_url), "--quiet", "--self-judge", *flags]
                code = subprocess.run(command, capture_output=True, text=True).returncode
                print(name, f"exit {code}", f"eval.json:{digest(out / 'eval.json')}")
    finally:
        mock.terminate()
        mock.wait()


if __name__ == "__main__":
    main()

"""How close is ``codeclm run --estimate`` to what a run then costs? (issue #23)

    .venv/bin/python -m benchmarks.cost_estimate [--sizes 40 120 300] [--pilot 10]

For each size N (``--metadata`` N/10, at least 4), on public seeds (Vicuna's, beside the
project in ../shared), against the loopback mock with a judge that keeps some pairs at once,
improves others and drops the rest, and with the tests' prices (strong $2.50 / $10 per
million input / output tokens, target $0.50 / $1.50), it prints:

- the estimate from the settings and the prompts (typical reply lengths of a capable model:
  the mock writes far shorter answers, so this one is high);
- the estimate from a pilot of ``--pilot`` instructions, measured and scaled to N;
- the run's actual cost (its ledger), and each estimate's ratio to it.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import codeclm
from benchmarks.realistic_budget import _seeds
from codeclm.bench.mock_llm import MockLLM, mixed_rule
from codeclm.cost.meter import dollars
from tests.conftest import priced_roles


def measure(size: int, pilot: int, folder: Path) -> tuple[float, float, float, float]:
    """(estimate from the prompts, its worst case, estimate from a pilot, actual) in USD."""
    folder.mkdir(parents=True)
    mock = MockLLM(judge_rule=mixed_rule).start()
    try:
        seeds = _seeds(folder)
        options = {"instructions": size, "metadata": max(4, size // 10), "concurrency": 16}
        roles = priced_roles(mock)
        prior = codeclm.estimate(seeds, **options, **roles)
        piloted = codeclm.estimate(seeds, pilot=pilot, **options, **roles)
        result = codeclm.run(seeds, out=folder / f"run{size}", **options, **roles)
    finally:
        mock.stop()
    assert result.record.cost is not None and result.record.cost.total is not None
    return (
        prior.total_usd or 0.0,
        prior.worst_total_usd or 0.0,
        piloted.total_usd or 0.0,
        result.record.cost.total,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[40, 120, 300])
    parser.add_argument("--pilot", type=int, default=10)
    args = parser.parse_args()
    print(f"{'N':>6} {'prompts':>10} {'worst':>10} {'pilot':>10} {'actual':>10}  ratios")
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            prior, worst, piloted, actual = measure(size, args.pilot, Path(tmp) / str(size))
            print(
                f"{size:>6} {dollars(prior):>10} {dollars(worst):>10} {dollars(piloted):>10} "
                f"{dollars(actual):>10}  prompts/actual {prior / actual:.2f}, "
                f"pilot/actual {piloted / actual:.2f}, worst ≥ actual: {worst >= actual}"
            )


if __name__ == "__main__":
    main()

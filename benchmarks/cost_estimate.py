"""How close is ``codeclm run --estimate`` to what a run then costs? (issue #23)

    .venv/bin/python -m benchmarks.cost_estimate [--sizes 40 120 300] [--pilot 10]

For each size N (``--metadata`` N/10, at least 4), on public seeds (Vicuna's, beside the
project in ../shared), against the loopback mock, with the tests' prices (strong $2.50 /
$10 per million input / output tokens, target $0.50 / $1.50), it prints the estimate from
the settings and the prompts, its worst case, the estimate from a pilot of ``--pilot``
instructions (measured and scaled to N), the run's actual cost (its ledger), and the ratios.

It does so for two mocks:

- ``capable``: answers of 150 to 450 tokens (300 on average; the estimate assumes 350) and
  a judge that decides 70% of pairs at each iteration, as the paper reports;
- ``echo``: answers that echo the instruction (a few tokens) and a judge that keeps a third
  at once, a third after two rewrites and drops the rest. The estimate from the prompts
  cannot know either; this is what a pilot is for.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import codeclm
from benchmarks.realistic_budget import _seeds
from codeclm.bench.mock_llm import MockLLM, mixed_rule, paper_rule
from codeclm.cost.meter import dollars
from tests.conftest import priced_roles

MOCKS = {
    "capable": lambda: MockLLM(judge_rule=paper_rule, answer_tokens=300),
    "echo": lambda: MockLLM(judge_rule=mixed_rule),
}


def measure(mock: MockLLM, size: int, pilot: int, folder: Path) -> tuple[float, ...]:
    """(estimate from the prompts, its worst case, estimate from a pilot, actual) in USD."""
    folder.mkdir(parents=True)
    mock.start()
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
    parser.add_argument("--mocks", nargs="+", choices=sorted(MOCKS), default=list(MOCKS))
    args = parser.parse_args()
    print(f"{'mock':<8} {'N':>5} {'prompts':>9} {'worst':>9} {'pilot':>9} {'actual':>9}  ratios")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.mocks:
            for size in args.sizes:
                where = Path(tmp) / name / str(size)
                prior, worst, piloted, actual = measure(MOCKS[name](), size, args.pilot, where)
                print(
                    f"{name:<8} {size:>5} {dollars(prior):>9} {dollars(worst):>9} "
                    f"{dollars(piloted):>9} {dollars(actual):>9}  "
                    f"prompts/actual {prior / actual:.2f}, pilot/actual {piloted / actual:.2f}, "
                    f"worst ≥ actual: {worst >= actual}"
                )


if __name__ == "__main__":
    main()

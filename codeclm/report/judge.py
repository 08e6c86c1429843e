"""The report's section on the judge: how far to trust the filter's decisions, from its
position and length biases (``run.json``'s ``judge``; docs/method.md, "Know your judge")."""

from __future__ import annotations

from typing import Any

from codeclm.report.figures import fmt

MOST_USE_CASES = 10
"""Use cases listed one by one in the tables (all of them in report.json)."""


def judge_table(judge: dict[str, Any]) -> tuple[str, list[str], list[list[str]]]:
    """(title, header, rows) of the judge's figures."""
    model = f"{judge['judge_model']}" + (
        " — the strong model, judging its own answers (the method's design)"
        if judge["self_judged"]
        else ""
    )
    flips = judge["position_flip_rate"]
    rows = [
        ["judge", model],
        ["pairs judged in both orders", str(judge["pairs"])],
        [
            "position flip rate: the preferred answer changed when the order was swapped "
            "(0: never; ties apart)",
            "–" if flips is None else f"{fmt(flips)} of {judge['untied_pairs']} pairs",
        ],
    ]
    for key, rate in judge["position_flip_rate_by_iteration"].items():
        rows.append([f"  at iteration {key}", fmt(rate)])
    by_use_case = list(judge["position_flip_rate_by_use_case"].items())
    for key, rate in by_use_case[:MOST_USE_CASES]:
        rows.append([f"  use case {key}", fmt(rate)])
    if len(by_use_case) > MOST_USE_CASES:
        rows.append([f"  {len(by_use_case) - MOST_USE_CASES} more use cases", "in report.json"])
    first = judge["first_preferred_rate"]
    rows.append(
        [
            "the answer shown first preferred (0.5: no side taken)",
            "–" if first is None else fmt(first),
        ]
    )
    correlation = judge["length_correlation"]
    rows.append(
        [
            "length correlation: Spearman's ρ, length difference against score gap",
            ("–" if correlation is None else f"{correlation:+.3f}")
            + (" — strong: the judge may reward length" if judge["length_warning"] else ""),
        ]
    )
    human = judge.get("human") or {}
    if human.get("ratings"):
        rows += [
            [
                f"people: {human['people']} judged {human['items']} pairs blind "
                f"({human['ratings']} ratings; codeclm judge)",
                "",
            ],
            [
                f"  their decision at θ {human['threshold']:g} is the judge's",
                fmt(human["decision_agreement"]),
            ],
            ["  Cohen's κ of those decisions", fmt(human["kappa"])],
            ["  Spearman's ρ of their score gaps and the judge's", fmt(human["gap_correlation"])],
        ]
    return "The judge: position and length biases", ["figure", "value"], rows

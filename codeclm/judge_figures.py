"""How far to trust the judge, as ``run.json`` and ``eval.json`` keep it under ``judge``:
its position and length biases (``analysis.judge``), and how often people who judged a
sample in the same blind protocol agreed with it (``codeclm judge``; docs/method.md,
"Know your judge")."""

from __future__ import annotations

from pydantic import BaseModel, Field


class HumanAgreement(BaseModel):
    """People's judgments of a blind sample, against the LLM judge's on the same pairs."""

    items: int = 0
    """Pairs people judged (each counted once, however many people judged it)."""
    people: int = 0
    ratings: int = 0
    """(pair, person) judgments: what the figures below count."""
    threshold: float = 0.0
    """θ of the decision: a gap above it keeps strong, below minus it keeps target."""
    decision_agreement: float | None = None
    """The share of ratings whose decision at θ (keep strong, keep target, undecided) is
    the judge's."""
    kappa: float | None = None
    """Cohen's κ of those decisions (agreement beyond chance; None when chance is all)."""
    gap_correlation: float | None = None
    """Spearman's ρ between people's score gap (strong minus target) and the judge's."""
    crr_people: float | None = None
    crr_judge: float | None = None
    """An evaluation's CRR over the rated items: by people, and by the judge."""

    def line(self) -> str:
        """The agreement in words."""

        def share(value: float | None) -> str:
            return "–" if value is None else f"{value:.0%}"

        def figure(value: float | None) -> str:
            return "–" if value is None else f"{value:+.2f}"

        said = (
            f"people: {self.people} judged {self.items} pairs ({self.ratings} ratings); "
            f"their decision at θ {self.threshold:g} is the judge's in "
            f"{share(self.decision_agreement)} (Cohen's κ {figure(self.kappa)}); "
            f"score gaps correlate {figure(self.gap_correlation)}"
        )
        if self.crr_people is not None:
            said += (
                f"; CRR by people {share(self.crr_people)}, by the judge {share(self.crr_judge)}"
            )
        return said


class JudgeFigures(BaseModel):
    """How far to trust the judge, from the order-swapped comparisons (docs/method.md,
    "Know your judge")."""

    judge_model: str = ""
    self_judged: bool = False
    """The judge is the strong model, judging its own answers (in the filter always, by
    the paper's design; in an evaluation with ``--self-judge``)."""
    pairs: int = 0
    """Pairs judged in both orders."""
    untied_pairs: int = 0
    """Of those, the pairs with a preferred answer in both orders: the flip rate's base."""
    position_flip_rate: float | None = None
    """The share of untied pairs whose preferred answer changed when the order was swapped
    (0 when every pair tied in an order; None only when no pair was judged)."""
    position_flip_rate_by_iteration: dict[str, float] = Field(default_factory=dict)
    position_flip_rate_by_use_case: dict[str, float] = Field(default_factory=dict)
    first_preferred_rate: float | None = None
    """Of the orders that preferred an answer, the share preferring the one shown first
    (0.5: no side taken; above: the first position is favoured)."""
    length_correlation: float | None = None
    """Spearman's ρ between the length difference (strong minus target) and the score
    gap; 0 when either is the same for every pair; None with fewer than 3 pairs."""
    length_warning: bool = False
    """|ρ| is strong (≥ 0.5, over at least 20 pairs): the judge may reward length."""
    human: HumanAgreement | None = None
    """People's judgments of a sample, once imported (``codeclm judge DIR --import``)."""

    def lines(self) -> list[str]:
        """The figures in words: a line, and a warning when the gap follows length."""
        who = self.judge_model or "the judge"
        if self.self_judged:
            who += " (the strong model, judging its own answers)"
        parts = [f"judge {who}: {self.pairs} pairs judged in both orders"]
        if self.pairs and not self.untied_pairs:
            parts.append("each tied in at least one order, so no flip to count")
        elif self.position_flip_rate is not None:
            parts.append(
                f"the preferred answer changed with the order in {self.position_flip_rate:.0%} "
                f"of {self.untied_pairs}"
            )
        if self.first_preferred_rate is not None:
            parts.append(f"the first shown preferred {self.first_preferred_rate:.0%} of the time")
        if self.length_correlation is not None:
            parts.append(f"length correlation {self.length_correlation:+.2f}")
        lines = ["; ".join(parts)]
        if self.length_warning:
            lines.append(
                f"warning: the judge's score gap follows the answers' length (Spearman "
                f"{self.length_correlation:+.2f} over {self.pairs} pairs): it may reward "
                "length itself; docs/method.md says what to do"
            )
        if self.human is not None and self.human.ratings:
            lines.append(self.human.line())
        return lines

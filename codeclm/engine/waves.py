"""``--pairs N``: the paper's budget, in kept pairs. The run goes in *waves*: each decodes
more basic instructions (the grow mechanism a larger ``--instructions`` uses: a new pass of
the 'prepare' thread), runs them all to their end, and counts what the filter kept. The
next wave is sized by the share kept so far; the waves stop once N pairs are kept, or when
the metadata pool can give no more instructions (said, as any dry pool is).

Every decision is taken on finished threads only, counted as the outputs count them (after
``--decontaminate`` and ``--dedup``), so a run killed and resumed (or run again) takes the
same waves and keeps the same pairs; only a thread that failed for a passing reason (a 503
burst outlasting its retries) can make two runs differ, and a pass that leaves such
failures ends the waves (the next run retries them). A wave that keeps no new pair ends
them too. When more than N pairs are kept, a seeded sample of N spread over the metadata
entries stays (``handle/screening.py``); the rest go to ``dropped.jsonl`` as ``surplus``.
"""

from __future__ import annotations

import math

from codeclm.config import RunConfig
from codeclm.records import Counts
from codeclm.state import PrepareState

LEAST_SHARE = 0.1
"""The share kept that sizes the next wave when none (or too few) were kept so far: a wave
at most ten times what is still missing."""
EXPECTED_KEPT = 4
"""A wave is large enough to keep at least this many pairs at the share kept so far, so a
wave that keeps none is a real stall, not the bad luck of a small wave (a filter keeping
half of the pairs fails a wave of two a quarter of the time; of eight, 0.4% of the time)."""


def next_wave(
    config: RunConfig, prepared: PrepareState, counts: Counts, kept_before: int | None
) -> int | None:
    """The budget of instructions the next wave brings the run to, or None: enough pairs
    are kept; the pool ran dry (the last pass could not decode its whole budget); the last
    pass left failures to retry (a provider in trouble: the next run retries them); or the
    last wave kept no new pair (``kept_before``: what was kept before it), so another would
    only pay for more of the same."""
    assert config.pairs is not None
    missing = config.pairs - counts.kept
    stalled = kept_before is not None and counts.kept <= kept_before
    retry = any(not failure.permanent for failure in prepared.failures)
    if missing <= 0 or prepared.shortfall is not None or retry or stalled:
        return None
    judged = counts.kept + counts.dropped
    share = max(counts.kept / judged if judged else 0.0, LEAST_SHARE)
    return config.instructions + math.ceil(max(missing, EXPECTED_KEPT) / share)

"""The report's PNG plots (matplotlib, headless), from the figures of ``figures.py``."""

from __future__ import annotations

import io
from collections import Counter
from typing import Any

from codeclm.report.figures import TOP, fmt

# ---- plots ------------------------------------------------------------------------------


def short(label: str, width: int = 40) -> str:
    return label if len(label) <= width else label[: width - 1] + "…"


def png(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buffer.getvalue()


def plots(fig_data: dict[str, Any]) -> dict[str, bytes]:
    """name → PNG bytes, for one run."""
    import matplotlib

    matplotlib.use("Agg")
    out: dict[str, bytes] = {}
    for kind, parts in fig_data["metadata"].items():
        if any(parts.values()):
            out[f"{kind}_distribution"] = _distribution(kind, parts, fig_data)
    out["provenance"] = _provenance(fig_data)
    if fig_data["gaps"]:
        out["gap_histogram"] = _gaps(fig_data)
    if fig_data.get("pca"):
        out["embedding_spread"] = _spread(fig_data)
    if fig_data["usage_by_node"]:
        out["usage_by_node"] = _usage(fig_data["usage_by_node"])
    judge = fig_data.get("judge") or {}
    if judge.get("position_flip_rate_by_use_case") or judge.get("position_flip_rate_by_iteration"):
        out["judge_position_flips"] = _judge_flips(judge)
    return out


def _distribution(kind: str, parts: dict[str, dict[str, int]], fig_data: dict[str, Any]) -> bytes:
    """One label kind's shares in the seeds, the pool and the kept pairs."""
    import matplotlib.pyplot as plt

    totals: Counter[str] = Counter()
    for counts in parts.values():
        totals.update(counts)
    labels = [label for label, _ in totals.most_common(TOP)][::-1]
    fig, ax = plt.subplots(figsize=(8, 0.32 * len(labels) + 1.5))
    height = 0.27
    for offset, part in enumerate(("seeds", "pool", "kept")):
        total = sum(parts[part].values()) or 1
        shares = [parts[part].get(label, 0) / total for label in labels]
        positions = [i + (offset - 1) * height for i in range(len(labels))]
        ax.barh(positions, shares, height=height, label=part)
    ax.set_yticks(range(len(labels)), [short(label) for label in labels])
    ax.set_xlabel("share")
    jsd = fig_data["jensen_shannon"][kind]
    shown = (
        f"; the {len(labels)} most frequent of {len(totals)} labels"
        if len(totals) > len(labels)
        else ""
    )
    ax.set_title(
        f"{kind.replace('_', ' ')}: seeds vs pool vs kept "
        f"(JSD seeds–pool {fmt(jsd['seeds_vs_pool'])}, "
        f"seeds–kept {fmt(jsd['seeds_vs_kept'])}{shown})"
    )
    ax.legend()
    return png(fig)


def _provenance(fig_data: dict[str, Any]) -> bytes:
    """Kept pairs per iteration, and every instruction's outcome."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.5))
    iterations = fig_data["kept_by_iteration"]
    left.bar(list(iterations), list(iterations.values()), color="tab:green")
    if not iterations:
        left.text(0.5, 0.5, "no pair kept", ha="center", va="center", transform=left.transAxes)
    left.set_xlabel("iteration")
    left.set_ylabel("kept pairs")
    left.set_title("kept pairs per iteration")
    counts = fig_data["counts"]
    statuses = ["kept", "dropped", "duplicates", "failed"]
    right.bar(
        statuses,
        [counts[s] for s in statuses],
        color=["tab:green", "tab:orange", "tab:purple", "tab:red"],
    )
    right.set_title("outcome of every instruction")
    for axis in (left, right):  # counts: whole ticks only
        axis.yaxis.set_major_locator(MaxNLocator(integer=True))
    return png(fig)


def _gaps(fig_data: dict[str, Any]) -> bytes:
    """The judge's final gaps, with the keep thresholds."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(8, 3.5))
    ax.hist(fig_data["gaps"], bins=list(range(-9, 11)), color="tab:blue", edgecolor="white")
    if fig_data["threshold"] is not None:
        for x in (fig_data["threshold"], -fig_data["threshold"]):
            ax.axvline(x, color="tab:red", linestyle="--")
    ax.set_xlabel("gap: strong − target score (final iteration)")
    ax.set_ylabel("instructions")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title("judge gap; dashed lines at ±θ")
    return png(fig)


def _spread(fig_data: dict[str, Any]) -> bytes:
    """Seeds and kept instructions on the embeddings' first two principal axes."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 5))
    for part, color in (("seeds", "tab:orange"), ("kept", "tab:blue")):
        points = fig_data["pca"][part]
        if points:
            xs, ys = [p[0] for p in points], [p[1] for p in points]
            ax.scatter(xs, ys, s=12, alpha=0.7, label=part, color=color)
    ax.set_title("instruction embeddings (MiniLM), first two principal axes")
    ax.legend()
    return png(fig)


def _usage(by_node: dict[str, dict[str, int]]) -> bytes:
    """Calls and tokens per node, stacked by role."""
    import matplotlib.pyplot as plt

    nodes = sorted({key.split("/")[0] for key in by_node})
    roles = sorted({key.split("/")[1] for key in by_node})
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    calls_below, tokens_below = [0] * len(nodes), [0] * len(nodes)
    for role in roles:  # stacked: a node's bar is the sum over roles
        usage = [by_node.get(f"{n}/{role}", {}) for n in nodes]
        calls = [u.get("calls", 0) for u in usage]
        tokens = [u.get("input_tokens", 0) + u.get("output_tokens", 0) for u in usage]
        left.bar(nodes, calls, bottom=calls_below, label=role)
        right.bar(nodes, tokens, bottom=tokens_below, label=role)
        calls_below = [a + b for a, b in zip(calls_below, calls, strict=True)]
        tokens_below = [a + b for a, b in zip(tokens_below, tokens, strict=True)]
    left.set_title("calls per node and role")
    right.set_title("tokens (input + output) per node and role")
    for ax in (left, right):
        ax.tick_params(axis="x", rotation=30)
        ax.legend()
    return png(fig)


def _judge_flips(judge: dict[str, Any]) -> bytes:
    """The position flip rate per use case and per iteration, beside the overall rate: where
    the judge's decisions rest on the order it read the answers in."""
    import matplotlib.pyplot as plt

    by_case = list(judge["position_flip_rate_by_use_case"].items())[:TOP]
    by_iteration = [
        (f"iteration {k}", v) for k, v in judge["position_flip_rate_by_iteration"].items()
    ]
    rows = [*by_iteration, *by_case][::-1]
    fig, ax = plt.subplots(figsize=(8, 0.3 * len(rows) + 1.6))
    ax.barh(range(len(rows)), [rate for _, rate in rows], color="#2956b2")
    ax.set_yticks(range(len(rows)), [short(label) for label, _ in rows])
    overall = judge["position_flip_rate"]
    if overall is not None:
        ax.axvline(overall, color="#a3262a", linestyle="--", label=f"all pairs: {overall:.2f}")
        ax.legend(loc="lower right")
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of pairs whose preferred answer changed when the order was swapped")
    ax.set_title("The judge's position flips, per iteration and use case")
    return png(fig)

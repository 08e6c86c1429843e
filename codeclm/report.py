"""``codeclm report``: the pictures of a run (or of several, side by side).

Writes ``report.html`` (self-contained: its PNG plots are embedded as data URIs),
``report.md`` (a summary that links the same plots, saved beside it as PNG files), and the
figures as ``report.json``. Everything is read from the run's output files; no model is
called, except the small local embedding model for the diversity figures.
"""

from __future__ import annotations

import base64
import html
import io
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from codeclm.analysis.embeddings import Vectors
from codeclm.analysis.metrics import distinct_n, jensen_shannon, near_duplicates, spread
from codeclm.config import ConfigError
from codeclm.export import read_run
from codeclm.methods import method_spec
from codeclm.outputs import DROPPED, FAILED, METADATA, write_atomic, write_json
from codeclm.records import DatasetRow, DroppedRow, RunRecord, read_rows
from codeclm.seeds import load_seeds
from codeclm.state import MetadataEntry

TOP = 15  # labels shown per distribution plot


@dataclass
class RunData:
    """One run's outputs, as the report needs them."""

    name: str
    record: RunRecord
    kept: list[DatasetRow]
    dropped: list[DroppedRow]
    failed: list[DroppedRow]
    metadata: list[MetadataEntry]
    seed_texts: list[str] = field(default_factory=list)

    @property
    def method(self) -> str:
        return self.record.method.name


def load_run(run_dir: Path) -> RunData:
    record, kept = read_run(run_dir)
    inputs = record.inputs
    seeds_path = inputs.get("seeds")
    seed_texts: list[str] = []
    if seeds_path and Path(seeds_path).exists():
        try:
            seed_texts = [seed.text for seed in load_seeds(Path(seeds_path), inputs.get("field"))]
        except ValueError:
            seed_texts = []
    return RunData(
        name=run_dir.resolve().name,
        record=record,
        kept=kept,
        dropped=read_rows(run_dir / DROPPED, DroppedRow),
        failed=read_rows(run_dir / FAILED, DroppedRow),
        metadata=read_rows(run_dir / METADATA, MetadataEntry),
        seed_texts=seed_texts,
    )


# ---- the figures ------------------------------------------------------------------------


def metadata_distributions(run: RunData) -> dict[str, dict[str, Counter[str]]]:
    """Use-case and skill counts of the seeds, the metadata pool and the kept data.

    Seeds: each encoded (or user-written) entry counts once per seed it came from.
    """
    seeds: dict[str, Counter[str]] = {"use_case": Counter(), "skills": Counter()}
    pool: dict[str, Counter[str]] = {"use_case": Counter(), "skills": Counter()}
    kept: dict[str, Counter[str]] = {"use_case": Counter(), "skills": Counter()}
    for entry in run.metadata:
        weight = len(entry.seed_ids) or 1
        if entry.origin in ("encoded", "user"):
            seeds["use_case"][entry.use_case] += weight
            for skill in entry.skills:
                seeds["skills"][skill] += weight
        pool["use_case"][entry.use_case] += 1
        for skill in entry.skills:
            pool["skills"][skill] += 1
    for row in run.kept:
        if row.metadata.use_case:
            kept["use_case"][row.metadata.use_case] += 1
        for skill in row.metadata.skills:
            kept["skills"][skill] += 1
    return {
        kind: {"seeds": seeds[kind], "pool": pool[kind], "kept": kept[kind]}
        for kind in ("use_case", "skills")
    }


def _reason_group(reason: str | None) -> str:
    """Reasons with their numbers taken out, so like ones count together."""
    if not reason:
        return "(none)"
    text = re.sub(r"-?\d+(\.\d+)?", "N", reason)
    return text.split(" (reply starts")[0][:120]


def figures(run: RunData, near_dup: float) -> dict[str, Any]:
    """Every number the report shows for one run (also written to report.json)."""
    distributions = metadata_distributions(run)
    jsd = {
        kind: {
            "seeds_vs_pool": jensen_shannon(d["seeds"], d["pool"]),
            "seeds_vs_kept": jensen_shannon(d["seeds"], d["kept"]),
        }
        for kind, d in distributions.items()
    }
    texts = [row.instruction for row in run.kept]
    diversity: dict[str, Any] = {
        "distinct_1": distinct_n(texts, 1) if texts else None,
        "distinct_2": distinct_n(texts, 2) if texts else None,
        "near_duplicate_threshold": near_dup,
    }
    kept_vectors = seed_vectors = None
    try:
        from codeclm.analysis.embeddings import embedding_model

        model = embedding_model()
        kept_vectors = model.encode(texts)
        seed_vectors = model.encode(run.seed_texts)
        diversity["near_duplicates"] = len(near_duplicates(kept_vectors, near_dup))
        diversity["embedding_spread"] = spread(kept_vectors) if len(texts) > 1 else None
        if run.seed_texts:
            diversity["seed_embedding_spread"] = spread(seed_vectors)
    except ConfigError as exc:  # the embedding model is not installed
        diversity["embeddings_unavailable"] = str(exc)
    by_iteration = Counter(str(row.iteration) for row in run.kept)
    gaps = [r.scores.gap for r in run.kept if r.scores]
    gaps += [r.scores.gap for r in run.dropped if r.scores]
    return {
        "name": run.name,
        "method": run.method,
        "counts": {
            "instructions": run.record.counts.instructions,
            "kept": len(run.kept),
            "dropped": sum(r.status == "dropped" for r in run.dropped),
            "duplicates": sum(r.status == "duplicate" for r in run.dropped),
            "failed": len(run.failed),
        },
        "kept_by_iteration": dict(sorted(by_iteration.items(), key=lambda kv: int(kv[0]))),
        "kept_at_iteration_1": by_iteration.get("1", 0) / len(run.kept) if run.kept else None,
        "gaps": gaps,
        "threshold": run.record.config.get("threshold"),
        "reasons": {
            status: Counter(
                _reason_group(r.reason)
                for r in (run.failed if status == "failed" else run.dropped)
                if r.status == status
            ).most_common()
            for status in ("dropped", "duplicate", "failed")
        },
        "prepare_failures": [f.model_dump() for f in run.record.prepare_failures],
        "metadata": {
            kind: {part: dict(c.most_common()) for part, c in d.items()}
            for kind, d in distributions.items()
        },
        "jensen_shannon": jsd,
        "diversity": diversity,
        "usage": {role: u.model_dump() for role, u in run.record.usage.items()},
        "usage_by_node": {node: u.model_dump() for node, u in run.record.usage_by_node.items()},
        "pca": _pca(kept_vectors, seed_vectors),
    }


def _pca(kept: Vectors | None, seeds: Vectors | None) -> dict[str, Any] | None:
    """Kept instructions and seeds projected on their two main axes, for the spread plot."""
    import numpy as np

    if kept is None or seeds is None or len(kept) + len(seeds) < 3:
        return None
    vectors = np.concatenate([seeds, kept])
    centered = vectors - vectors.mean(axis=0)
    _, _, axes = np.linalg.svd(centered, full_matrices=False)
    points = centered @ axes[:2].T
    return {"seeds": points[: len(seeds)].tolist(), "kept": points[len(seeds) :].tolist()}


# ---- plots ------------------------------------------------------------------------------


def _short(label: str, width: int = 40) -> str:
    return label if len(label) <= width else label[: width - 1] + "…"


def _png(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buffer.getvalue()


def plots(fig_data: dict[str, Any]) -> dict[str, bytes]:
    """name → PNG bytes, for one run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out: dict[str, bytes] = {}
    for kind, parts in fig_data["metadata"].items():
        if not any(parts.values()):
            continue
        totals: Counter[str] = Counter()
        for part in parts.values():
            totals.update(part)
        labels = [label for label, _ in totals.most_common(TOP)][::-1]
        fig, ax = plt.subplots(figsize=(8, 0.32 * len(labels) + 1.5))
        height = 0.27
        for offset, part in enumerate(("seeds", "pool", "kept")):
            total = sum(parts[part].values()) or 1
            shares = [parts[part].get(label, 0) / total for label in labels]
            positions = [i + (offset - 1) * height for i in range(len(labels))]
            ax.barh(positions, shares, height=height, label=part)
        ax.set_yticks(range(len(labels)), [_short(label) for label in labels])
        ax.set_xlabel("share")
        jsd = fig_data["jensen_shannon"][kind]
        ax.set_title(
            f"{kind.replace('_', ' ')}: seeds vs pool vs kept "
            f"(JSD seeds–pool {_fmt(jsd['seeds_vs_pool'])}, "
            f"seeds–kept {_fmt(jsd['seeds_vs_kept'])})"
        )
        ax.legend()
        out[f"{kind}_distribution"] = _png(fig)

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
    out["provenance"] = _png(fig)

    if fig_data["gaps"]:
        fig, ax = plt.subplots(figsize=(8, 3.5))
        ax.hist(fig_data["gaps"], bins=list(range(-9, 11)), color="tab:blue", edgecolor="white")
        if fig_data["threshold"] is not None:
            for x in (fig_data["threshold"], -fig_data["threshold"]):
                ax.axvline(x, color="tab:red", linestyle="--")
        ax.set_xlabel("gap: strong − target score (final iteration)")
        ax.set_ylabel("instructions")
        ax.set_title("judge gap; dashed lines at ±θ")
        out["gap_histogram"] = _png(fig)

    if fig_data.get("pca"):
        fig, ax = plt.subplots(figsize=(6, 5))
        for part, color in (("seeds", "tab:orange"), ("kept", "tab:blue")):
            points = fig_data["pca"][part]
            if points:
                xs, ys = [p[0] for p in points], [p[1] for p in points]
                ax.scatter(xs, ys, s=12, alpha=0.7, label=part, color=color)
        ax.set_title("instruction embeddings (MiniLM), first two principal axes")
        ax.legend()
        out["embedding_spread"] = _png(fig)

    by_node = fig_data["usage_by_node"]
    if by_node:
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
        out["usage_by_node"] = _png(fig)
    return out


# ---- writing ----------------------------------------------------------------------------


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return "n/a" if value != value else f"{value:.3f}"
    return str(value)


def comparison_rows(all_figures: list[dict[str, Any]]) -> list[list[str]]:
    """One row per run: the figures to compare methods side by side."""
    rows = []
    for f in all_figures:
        d, c = f["diversity"], f["counts"]
        tokens = sum(
            u.get("input_tokens", 0) + u.get("output_tokens", 0) for u in f["usage"].values()
        )
        calls = sum(u.get("calls", 0) for u in f["usage"].values())
        rows.append(
            [
                f["name"],
                f["method"],
                _fmt(c["instructions"]),
                _fmt(c["kept"]),
                _fmt(c["dropped"]),
                _fmt(c["duplicates"]),
                _fmt(c["failed"]),
                _fmt(d["distinct_2"]),
                _fmt(d.get("near_duplicates")),
                _fmt(d.get("embedding_spread")),
                _fmt(f["jensen_shannon"]["use_case"]["seeds_vs_kept"]),
                f"{calls:,}",
                f"{tokens:,}",
            ]
        )
    return rows


COMPARISON_HEADER = [
    "run",
    "method",
    "instructions",
    "kept",
    "dropped",
    "duplicates",
    "failed",
    "distinct-2",
    "near-dups",
    "spread",
    "JSD use case (seeds–kept)",
    "calls",
    "tokens",
]


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _run_tables(f: dict[str, Any]) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) of one run's tables, shared by the HTML and the markdown."""
    tables = []
    jsd = f["jensen_shannon"]
    tables.append(
        (
            "Metadata: Jensen–Shannon divergence (0 = same distribution, 1 = disjoint)",
            ["labels", "seeds vs pool", "seeds vs kept"],
            [
                [k.replace("_", " "), _fmt(v["seeds_vs_pool"]), _fmt(v["seeds_vs_kept"])]
                for k, v in jsd.items()
            ],
        )
    )
    d = f["diversity"]
    diversity_rows = [
        ["distinct-1 of kept instructions", _fmt(d["distinct_1"])],
        ["distinct-2 of kept instructions", _fmt(d["distinct_2"])],
    ]
    if "embeddings_unavailable" in d:
        diversity_rows.append(["embeddings", d["embeddings_unavailable"]])
    else:
        diversity_rows += [
            [
                f"near-duplicates: kept instructions with cosine ≥ "
                f"{d['near_duplicate_threshold']:g} to an earlier one",
                _fmt(d["near_duplicates"]),
            ],
            ["embedding spread of kept (mean cosine distance)", _fmt(d["embedding_spread"])],
        ]
        if "seed_embedding_spread" in d:
            diversity_rows.append(["embedding spread of seeds", _fmt(d["seed_embedding_spread"])])
    tables.append(("Diversity", ["measure", "value"], diversity_rows))
    at_one = f["kept_at_iteration_1"]
    provenance = [[f"kept at iteration {k}", str(v)] for k, v in f["kept_by_iteration"].items()]
    if method_spec(f["method"]).judges:  # the others have no judge loop to iterate
        provenance.append(["share kept at iteration 1 (paper: over 70%)", _fmt(at_one)])
    tables.append(("Where the data came from", ["", "pairs"], provenance))
    reasons = [
        [status, reason, str(n)] for status, groups in f["reasons"].items() for reason, n in groups
    ]
    reasons += [
        ["prepare failure", f"{p['step']} {p['subject']}: {p['reason']}", "1"]
        for p in f["prepare_failures"]
    ]
    tables.append(
        (
            "Why instructions were not kept",
            ["status", "reason", "count"],
            reasons or [["–", "every instruction was kept", "0"]],
        )
    )
    usage = [
        [
            key,
            str(u.get("calls", 0)),
            f"{u.get('input_tokens', 0):,}",
            f"{u.get('output_tokens', 0):,}",
            str(u.get("cached_calls", 0)),
        ]
        for key, u in [*f["usage"].items(), *f["usage_by_node"].items()]
    ]
    tables.append(
        (
            "Calls and tokens, per role and per node/role",
            ["role or node/role", "calls", "input tokens", "output tokens", "from cache"],
            usage,
        )
    )
    return tables


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }
th { background: #f2f2f2; }
img { max-width: 100%; display: block; margin: 0.5em 0 1.5em; }
h2 { border-bottom: 2px solid #ddd; padding-bottom: 0.2em; }
"""


def write_report(run_dirs: list[Path], out_dir: Path, near_dup: float = 0.9) -> Path:
    """Write report.html, report.md, report.json and the PNG plots into ``out_dir``."""
    runs = [load_run(d) for d in run_dirs]
    all_figures = [figures(run, near_dup) for run in runs]
    out_dir.mkdir(parents=True, exist_ok=True)
    html_parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        "<title>codeclm report</title>",
        f"<style>{_STYLE}</style></head><body>",
        "<h1>codeclm report</h1>",
        _html_table(COMPARISON_HEADER, comparison_rows(all_figures)),
    ]
    md_parts = [
        "# codeclm report",
        "",
        _md_table(COMPARISON_HEADER, comparison_rows(all_figures)),
        "",
    ]
    for index, f in enumerate(all_figures):
        prefix = f"{index + 1}_" if len(all_figures) > 1 else ""
        html_parts.append(f"<h2>{html.escape(f['name'])} ({html.escape(f['method'])})</h2>")
        md_parts += [f"## {f['name']} ({f['method']})", ""]
        images = plots(f)
        for title, header, rows in _run_tables(f):
            html_parts += [f"<h3>{html.escape(title)}</h3>", _html_table(header, rows)]
            md_parts += [f"### {title}", "", _md_table(header, rows), ""]
        for name, png in images.items():
            file_name = f"{prefix}{name}.png"
            (out_dir / file_name).write_bytes(png)
            data = base64.b64encode(png).decode()
            html_parts.append(
                f"<img class='plot' alt='{html.escape(name)}' src='data:image/png;base64,{data}'>"
            )
            md_parts += [f"![{name}]({file_name})", ""]
        if not any(f["metadata"]["use_case"].values()):
            note = "This method makes no metadata (use case, skills): no distribution plots."
            html_parts.append(f"<p><em>{note}</em></p>")
            md_parts += [f"_{note}_", ""]
    html_parts.append("</body></html>")
    write_atomic(out_dir / "report.html", "\n".join(html_parts))
    write_atomic(out_dir / "report.md", "\n".join(md_parts))
    write_json(
        out_dir / "report.json",
        {"runs": [{k: v for k, v in f.items() if k != "pca"} for f in all_figures]},
    )
    return out_dir / "report.html"

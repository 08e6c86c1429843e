"""report.html (plots embedded), report.md (plots beside it) and report.json: one run, or
several side by side."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

from codeclm.cost.meter import dollars
from codeclm.handle import RunHandle
from codeclm.methods import method_spec
from codeclm.outputs import make_folder, write_atomic, write_json
from codeclm.report.cost import cost_table
from codeclm.report.figures import figures, fmt, load_run
from codeclm.report.judge import judge_table
from codeclm.report.plots import plots

# ---- writing ----------------------------------------------------------------------------


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
                fmt(c["instructions"]),
                fmt(c["kept"]),
                fmt(c["dropped"]),
                fmt(c["duplicates"]),
                fmt(c["failed"]),
                fmt(d["distinct_2"]),
                fmt(d.get("near_duplicates")),
                fmt(d.get("embedding_spread")),
                fmt(f["jensen_shannon"]["use_case"]["seeds_vs_kept"]),
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


def md_text(text: str) -> str:
    """Text as a Markdown page shows it, never as markup: model text such as
    ``<img src=x onerror=…>`` stays text in any viewer that renders HTML in Markdown."""
    escaped = html.escape(text, quote=False)
    for mark in "\\`[]!|":  # no link, image or code of the model's making
        escaped = escaped.replace(mark, "\\" + mark)
    return " ".join(escaped.splitlines())


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(md_text(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _label_table(labels: dict[str, Any]) -> tuple[str, list[str], list[list[str]]]:
    """The encoder's spellings merged into each canonical label (the distributions and the
    divergences above count canonical labels)."""
    rows = [
        [kind.replace("_", " "), canonical, ", ".join(raws)]
        for kind in ("use_case", "skills")
        for canonical, raws in labels[kind].items()
    ]
    threshold = labels["threshold"]
    how = "spelling normalised only" if threshold >= 1 else f"MiniLM cosine ≥ {threshold:g}"
    return (
        f"Canonical labels ({how})",
        ["labels", "canonical", "merged from"],
        rows or [["–", "no two labels merged", "–"]],
    )


def _update_table(updates: list[dict[str, Any]]) -> tuple[str, list[str], list[list[str]]]:
    """Each ``run --update``: how far its seeds moved from the run's, and how closely what
    it added follows them (use cases, Jensen–Shannon divergence)."""
    rows = [
        [
            str(u["update"]),
            str(u["seeds"]),
            str(u["entries"]),
            str(u["kept"]),
            fmt(u["old_seeds_vs_new_seeds"]),
            fmt(u["new_seeds_vs_added_pool"]),
            fmt(u["new_seeds_vs_added_kept"]),
        ]
        for u in updates
    ]
    header = [
        "update",
        "new seeds",
        "entries added",
        "kept from them",
        "old vs new seeds",
        "new seeds vs added pool",
        "new seeds vs added kept",
    ]
    return ("Updates: old seeds vs new (use cases, Jensen–Shannon)", header, rows)


def _review_table(reviews: dict[str, Any]) -> tuple[str, list[str], list[list[str]]]:
    """What people said about the pool and the pairs (codeclm review / codeclm view)."""
    p = reviews["pairs"]
    rows = [
        ["kept pairs accepted", str(p["accepted"])],
        ["kept pairs rejected (left out of export)", str(p["rejected"])],
        ["kept pairs edited (export applies the edits)", str(p["edited"])],
        ["kept pairs not reviewed", str(p["not_reviewed"])],
    ]
    if (pool := reviews["pool"]) is not None:
        rows.insert(
            0,
            [
                "metadata pool, approved by a person",
                f"{pool['dropped']} dropped, {pool['edited']} edited, {pool['added']} added",
            ],
        )
    rows += [[f"note on {ident} ({verdict})", note] for ident, verdict, note in reviews["notes"]]
    return ("Reviews", ["", "count"], rows)


def _turn_table(turns: list[dict[str, Any]]) -> tuple[str, list[str], list[list[str]]]:
    """A conversation run's turns: what the judge saw at each, what rewrote it, its cost."""
    header = [
        "turn",
        "judged",
        "mean gap",
        "mean gap, kept",
        "strong",
        "target",
        "rewritten by an action",
        "cost",
    ]
    rows = [
        [
            str(t["turn"]),
            str(t["judged"]),
            fmt(t["mean_gap"]),
            fmt(t["mean_gap_kept"]),
            fmt(t["strong"]),
            fmt(t["target"]),
            str(t["rewritten"]),
            dollars(t["cost"]),
        ]
        for t in turns
    ]
    return "Conversations, turn by turn (gap: strong − target, at the last iteration)", header, rows


def _provenance_rows(f: dict[str, Any]) -> list[list[str]]:
    """The budget asked for and where the kept pairs came from."""
    c = f["counts"]
    rows = [
        [
            "instructions asked for (--instructions, or what --pairs took)",
            fmt(c.get("instructions_requested")),
        ]
    ]
    if c.get("pairs_requested"):
        rows.append(["pairs asked for (--pairs)", fmt(c["pairs_requested"])])
        rows.append(["kept beyond --pairs (surplus, in dropped.jsonl)", fmt(c["surplus"])])
    if f.get("decontamination"):
        found = f["decontamination"]
        rows.append(
            [
                f"left out as contaminated: copies of {found['items']} evaluation items "
                f"({found['rule']})",
                fmt(c.get("contaminated", 0)),
            ]
        )
    rows += [[f"kept at iteration {k}", f"{v:,}"] for k, v in f["kept_by_iteration"].items()]
    if method_spec(f["method"]).judges:  # the others have no judge loop to iterate
        rows.append(["share kept at iteration 1 (paper: over 70%)", fmt(f["kept_at_iteration_1"])])
        refused = c.get("target_refused", 0)
        rows.append(["kept where the target refused (strong answer kept)", fmt(refused)])
        cut = c.get("target_cut", 0)
        rows.append(["kept where the target's answer was cut (judged as it stood)", fmt(cut)])
    return rows


def _reason_rows(f: dict[str, Any]) -> list[list[str]]:
    """Why instructions were not kept, and what is missing."""
    rows = [
        [status, reason, f"{n:,}"]
        for status, groups in f["reasons"].items()
        for reason, n in groups
    ]
    rows += [
        ["prepare failure", f"{p['step']} {p['subject']}: {p['reason']}", "1"]
        for p in f["prepare_failures"]
    ]
    if f.get("shortfall"):
        rows.append(["missing", f["shortfall"], ""])
    return rows


def _run_tables(f: dict[str, Any]) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) of one run's tables, shared by the HTML and the markdown."""
    tables = []
    jsd = f["jensen_shannon"]
    tables.append(
        (
            "Metadata: Jensen–Shannon divergence (0 = same distribution, 1 = disjoint)",
            ["labels", "seeds vs pool", "seeds vs kept"],
            [
                [k.replace("_", " "), fmt(v["seeds_vs_pool"]), fmt(v["seeds_vs_kept"])]
                for k, v in jsd.items()
            ],
        )
    )
    d = f["diversity"]
    diversity_rows = [
        ["distinct-1 of kept instructions", fmt(d["distinct_1"])],
        ["distinct-2 of kept instructions", fmt(d["distinct_2"])],
    ]
    if "embeddings_unavailable" in d:
        diversity_rows.append(["embeddings", d["embeddings_unavailable"]])
    else:
        diversity_rows += [
            [
                f"near-duplicates: kept instructions with cosine ≥ "
                f"{d['near_duplicate_threshold']:g} to an earlier one",
                fmt(d["near_duplicates"]),
            ],
            ["embedding spread of kept (mean cosine distance)", fmt(d["embedding_spread"])],
        ]
        if "seed_embedding_spread" in d:
            diversity_rows.append(["embedding spread of seeds", fmt(d["seed_embedding_spread"])])
    tables.append(("Diversity", ["measure", "value"], diversity_rows))
    tables.append(("Where the data came from", ["", "pairs"], _provenance_rows(f)))
    if f.get("judge") and f["judge"]["pairs"]:
        tables.append(judge_table(f["judge"]))
    reasons = _reason_rows(f)
    if f.get("labels"):
        tables.append(_label_table(f["labels"]))
    if f.get("updates"):
        tables.append(_update_table(f["updates"]))
    tables.append(_review_table(f["reviews"]))
    if f.get("turns"):
        tables.append(_turn_table(f["turns"]))
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
            f"{u.get('calls', 0):,}",
            f"{u.get('input_tokens', 0):,}",
            f"{u.get('output_tokens', 0):,}",
            f"{u.get('cached_calls', 0):,}",
        ]
        for key, u in [*f["usage"].items(), *f["usage_by_node"].items()]
    ]
    cost = cost_table(f.get("cost"))
    if cost is not None:
        tables.append(cost)
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


def write_report(handles: list[RunHandle], out_dir: Path, near_dup: float = 0.9) -> Path:
    """Write report.html, report.md, report.json and the PNG plots into ``out_dir``."""
    runs = [load_run(handle) for handle in handles]
    all_figures = [figures(run, near_dup) for run in runs]
    make_folder(out_dir)
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
        md_parts += [f"## {md_text(f['name'])} ({f['method']})", ""]
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

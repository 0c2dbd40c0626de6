"""The tables of ``reports/index.html``: the summary a user reads first, the metrics per variant, the
chosen eps and why, and the overlap between sets (:func:`neardup.render.html.write_html_report`)."""
from __future__ import annotations

import html

import pandas as pd

from neardup.render.quality import SUMMARY, cell


def text_cell(value) -> str:
    """``value`` as escaped HTML text ('-' for None, '' and NaN)."""
    return html.escape(cell(value))


def _table(header: list[str], rows: list[list[str]], *, name_cols: int = 1) -> str:
    """An HTML table; cells are already-escaped HTML (a cell may be a ``(html, css class)`` tuple)."""
    out = ["<table>", "<tr>" + "".join(f'<th class="name">{h}</th>' if i < name_cols else f"<th>{h}</th>"
                                       for i, h in enumerate(header)) + "</tr>"]
    for row in rows:
        cells = []
        for i, value in enumerate(row):
            text, cls = value if isinstance(value, tuple) else (value, "name" if i < name_cols else "")
            cells.append(f'<td class="{cls}">{text}</td>' if cls else f"<td>{text}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    return "\n".join(out + ["</table>"])


def _count(n: int, one: str, many: str | None = None) -> str:
    return f"{n:,} {one if n == 1 else (many or one + 's')}"


def headline_section(metrics: dict, primary: str, groups: pd.DataFrame | None) -> str:
    """What a user came for, first: duplicate groups and images to remove, groups across sets (leakage)
    and with two labels, and how sure (planted copies found, reviewed precision)."""
    m = metrics.get(primary, {})
    n_groups = int(groups["group"].nunique()) if groups is not None and len(groups) else 0
    n_remove = (len(groups) - n_groups) if n_groups else 0
    sets = list(m.get("overlap", {}))
    items = [f"<b>{_count(n_groups, 'duplicate group')}</b>: {_count(n_remove, 'image')} to remove "
             "(the remove list), one kept per group",
             f"<b>{_count(int(m.get('n_cross_set_groups', 0)), 'group')}</b> across the sets "
             f"{html.escape(', '.join(sets))} (leakage)" if len(sets) > 1
             else "one set: no leakage between sets to check",
             f"<b>{_count(int(m.get('n_label_conflicts', 0)), 'group')}</b> whose images carry different labels"]
    sure = []
    planted = metrics.get("dataset", {}).get("n_planted", 0)
    if planted and m.get("planted_recall") is not None:
        sure.append(f"found {round(float(m['planted_recall']) * planted):,} of {planted:,} planted copies "
                    f"(recall {float(m['planted_recall']):.2f})")
    reviewed = int(m.get("n_duplicate", 0)) + int(m.get("n_different", 0))
    if reviewed:
        sure.append(f"{_count(reviewed, 'reviewed pair')}: precision {float(m['reviewed_precision']):.2f}")
    else:
        sure.append('no pair reviewed yet (<a href="#review">review</a> some to measure precision)')
    if m.get("precision") is not None and m.get("recall") is not None:
        sure.append(f"against the ground truth: precision {float(m['precision']):.2f}, recall "
                    f"{float(m['recall']):.2f}")
    items.append("How sure: " + "; ".join(sure))
    eps = f" at eps {text_cell(m.get('eps'))}" if m.get("eps") is not None else ""
    return (f'<section id="summary"><p>{html.escape(primary)}{eps}:</p>\n<ul>'
            + "".join(f"<li>{item}</li>" for item in items) + "</ul></section>")


def summary_section(metrics: dict, variants: list[str]) -> str:
    """The summary table: one row per ``SUMMARY`` metric that any variant has ('-' where one lacks it;
    rows that need a ground truth appear only with one), one column per variant."""
    rows = [[html.escape(label)] + [text_cell(metrics.get(v, {}).get(key)) for v in variants] for key, label in SUMMARY
            if any(cell(metrics.get(v, {}).get(key)) != "-" for v in variants)]
    return "<h2>Summary per variant</h2>\n" + _table(["metric"] + [html.escape(r) for r in variants], rows)


def eps_section(reasons: dict[str, str], metrics: dict, variants: list[str]) -> str:
    """Why each variant's eps was chosen (the rule that applied), and the primary variant's table judging every
    eps of the sweep (``reason.txt``: a sentence, then a markdown table)."""
    if not reasons:
        return ""
    items = "".join(f"<li><b>{html.escape(v)}</b>: eps {text_cell(metrics.get(v, {}).get('eps'))}: "
                    f"{html.escape(reasons[v].splitlines()[0])}</li>" for v in variants if v in reasons)
    lines = [line for line in reasons.get(variants[0], "").splitlines() if line.startswith("|")]
    table = ""
    if len(lines) > 2:
        cells = [[c.strip() for c in line.strip().strip("|").split("|")] for line in lines]
        rows = [[html.escape(c.replace("**", "")) for c in row] for row in cells[2:]]
        table = (f"<p>Every eps of the sweep for {html.escape(variants[0])}:</p>\n"
                 + _table([html.escape(c) for c in cells[0]], rows))
    return f"<h2>The chosen eps and why</h2>\n<ul>{items}</ul>\n{table}"


def overlap_section(overlap: pd.DataFrame | None, variant: str) -> str:
    """The set-overlap matrix of ``variant``; off-diagonal non-zero cells (leakage between sets) highlighted."""
    head = f"<h2>Overlap between sets ({html.escape(variant)})</h2>\n"
    if overlap is None or overlap.empty:
        return head + '<p class="muted">No overlap table for this variant.</p>'
    rows, leaks = [], 0
    for a in overlap.index:
        row = [html.escape(str(a))]
        for b in overlap.columns:
            value = overlap.loc[a, b]
            number = pd.to_numeric(value, errors="coerce")
            cls = "diag" if a == b else ("leak" if pd.notna(number) and number != 0 else "")
            leaks += cls == "leak"
            row.append((text_cell(value), cls))
        rows.append(row)
    note = (f'<p class="note">{leaks} pair(s) of sets share duplicates (highlighted): possible leakage.</p>'
            if leaks else '<p class="muted">No duplicates across sets.</p>')
    return (head + "<p>Cell (A, B): number of images of set A (row) that have a duplicate in set B (column); "
            "the diagonal counts duplicates within a set.</p>\n"
            + _table(["images of \\ with a duplicate in"] + [html.escape(str(c)) for c in overlap.columns], rows)
            + "\n" + note)

"""``reports/quality.md``: the numbers a user chooses a model, size and eps by, on their own data."""
from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from neardup.render import plain

log = logging.getLogger(__name__)

SUMMARY = [("eps", "chosen eps"), ("precision", "precision"), ("recall", "recall"), ("f1", "F1"),
           ("pair_precision", "pair precision"), ("pair_recall", "pair recall"), ("pair_f1", "pair F1"), ("ap", "AP"),
           ("recall_at_p90", "recall @ P>=0.9"), ("planted_recall", "planted recall"),
           ("planted_with_unrelated", "planted with unrelated"), ("reviewed_precision", "reviewed precision"),
           ("precision_lower", "precision lower bound"), ("precision_upper", "precision upper bound"),
           ("n_pending", "pending pairs"), ("n_queue_left_out", "pairs left out of the review queue"),
           ("n_groups", "groups"), ("n_to_remove", "images to remove"), ("largest_group", "largest group"),
           ("grouped_share", "share of images grouped"),
           ("n_label_conflicts", "label-conflict groups"), ("n_cross_set_groups", "groups across sets"),
           ("input_size", "input size (px)")]


def cell(value) -> str:
    if value is None or value == "" or (isinstance(value, float) and value != value):
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def markdown_table(frame: pd.DataFrame) -> str:
    """A GitHub-flavoured markdown table of ``frame`` (index as the first column)."""
    header = [frame.index.name or ""] + [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for index, row in frame.iterrows():
        lines.append("| " + " | ".join([str(index)] + [cell(v) for v in row]) + " |")
    return "\n".join(lines)


def pr_curve_figure(sweeps: dict, variants, out: Path) -> None:
    """Precision against recall over the eps sweep, one line per variant, when there is a ground truth;
    and planted recall against eps, when there are planted copies (a chart is drawn only with data).
    ``sweeps``: variant -> its ``eps`` curve (:data:`neardup.layout.CURVES`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    numeric = {v: sweeps[v].apply(pd.to_numeric, errors="coerce") for v in variants}
    truth = [v for v in variants if numeric[v]["precision"].notna().any()]
    planted = [v for v in variants if "planted_recall" in numeric[v] and numeric[v]["planted_recall"].notna().any()]
    panels = [p for p, lines in (("truth", truth), ("planted", planted)) if lines] or ["none"]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        if panel == "truth":
            for v in truth:
                ax.plot(numeric[v]["recall"], numeric[v]["precision"], marker="o", label=plain(v))
            ax.set(xlabel="recall", ylabel="precision", title="ground truth, over the eps sweep", xlim=(0, 1.02),
                   ylim=(0, 1.02))
        elif panel == "planted":
            for v in planted:
                ax.plot(numeric[v]["eps"], numeric[v]["planted_recall"], marker="o", label=plain(v))
            ax.set(xlabel="eps (distance)", ylabel="recall of planted copies", title="planted copies",
                   ylim=(0, 1.02))
        else:
            ax.text(0.5, 0.5, "no ground truth and no planted copies:\nnothing to draw", ha="center", va="center")
            ax.set_axis_off()
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80, metadata={"Software": None})
    plt.close(fig)


def write_quality_report(metrics: dict, reasons: dict, sweeps: dict, out: Path, *, variants, figure: Path) -> str:
    """Write the quality report (markdown) and its figure; returns the markdown.

    ``metrics``: ``{"dataset": {...}, variant: {...}}``; ``reasons``: variant -> why its eps was chosen.
    """
    pr_curve_figure(sweeps, variants, figure)
    # built row by row as objects: a count stays an int (84, not 84.0)
    summary = pd.DataFrame([[metrics[variant].get(key) for variant in variants] for key, _ in SUMMARY],
                           index=[label for _, label in SUMMARY], columns=variants, dtype=object)
    summary.index.name = "metric"
    transforms = pd.DataFrame({variant: metrics[variant].get("planted", {}) for variant in variants})
    transforms.index.name = "transform"
    data = metrics["dataset"]
    parts = [
        "# Duplicate-detection quality",
        f"Dataset: {data['n_images']} images ({data['n_skipped']} files skipped), "
        f"{data['n_truth_copies']} known duplicates in the ground truth, {data['n_planted']} planted copies.",
        "Precision / recall / F1 / AP are pairwise, against the dataset's ground truth (when it has one): "
        "precision / recall / F1 count every pair inside the DBSCAN groups, pair precision / recall / F1 the "
        "candidate pairs within eps before grouping (the gap between them is what chaining costs). AP ranks "
        "each image's nearest neighbours (`cluster.candidates`), a set that does not depend on the eps sweep. "
        "Planted recall: share of planted copies grouped with their original; planted with unrelated: share "
        "landing in a group with an image outside their family (the original, the images directly within eps "
        "of it, their copies). Reviewed precision counts your verdicts "
        "(`neardup review`); the bounds count pending and unsure pairs as all wrong / all right.",
        "## Summary per variant", markdown_table(summary),
        "## Recall per transform (planted copies, at the chosen eps)",
        markdown_table(transforms) if len(transforms) else "No planted copies (plant.n is 0).",
        f"## Precision-recall over the eps sweep\n\n![precision-recall]({Path(figure).relative_to(out.parent)})",
        "## The chosen eps and why",
        "\n".join(f"- **{v}**: eps {metrics[v]['eps']:g}: {reasons[v].splitlines()[0]}" for v in variants),
        *[f"### {v}: every eps judged\n\n" + "\n".join(reasons[v].splitlines()[1:]).strip() for v in variants
          if len(reasons[v].splitlines()) > 1],
    ]
    text = "\n\n".join(parts) + "\n"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return text

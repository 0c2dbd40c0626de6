"""The render stage: group figures, label conflicts, review figures of the primary variant, the
quality report and the self-contained HTML report (with the review view of the primary variant's
pairs), from every variant's evaluation (:func:`run`)."""
from __future__ import annotations

import json


from neardup.contract import (GROUPS, QUEUE, REASON, read_groups, read_manifest, read_queue, read_table,
                              variant_keys)
from neardup.layout import Layout
from neardup.params import params_from_dict
from neardup.render import render_all
from neardup.render.html import write_html_report
from neardup.render.pairs import draw_pair_figures
from neardup.render.quality import write_quality_report
from neardup.verify import queue_matches


#: The caption of the quality figure in the HTML report.
CAPTION = "Over the eps sweep: precision-recall (with a ground truth) and planted copies found"


def run(params: dict, layout: Layout) -> None:
    """Render every variant of the sweep (``embed.models`` x ``embed.sizes``, then ``hash.methods``;
    the first is the primary variant) of ``layout``. Reads ``render``, ``embed``, ``hash``,
    ``cluster.verify`` and ``cache``."""
    embed, hashes, render = (params_from_dict(params, g) for g in ("embed", "hash", "render"))
    verify, cache_dir = params_from_dict(params, "cluster").verify, params_from_dict(params, "cache").dir
    variants = variant_keys(embed.models, embed.sizes, hashes.methods)
    manifest = read_manifest(layout.manifest())
    per_variant = {v: json.loads(layout.metrics(v).read_text()) for v in variants}
    metrics = {"dataset": per_variant[variants[0]]["dataset"], **per_variant}
    reasons = {v: (layout.evaluation(v) / REASON).read_text().strip() for v in variants}
    groups = {v: read_groups(layout.evaluation(v) / GROUPS) for v in variants}  # at each variant's chosen eps
    out = layout.path("groups")
    render_all(groups, manifest, metrics, out, variants=variants, max_groups=render.max_groups,
               thumb_size=render.thumb_size)
    figures = layout.path("review_figures")
    figures.mkdir(parents=True, exist_ok=True)  # an output even when nothing is proposed
    queue = read_queue(layout.evaluation(variants[0]) / QUEUE)
    # the primary variant is a CNN variant (the first model): its verified pairs show the agreeing keypoints
    matches = queue_matches(queue, manifest, verify, cache_dir=cache_dir)
    draw_pair_figures(queue, manifest, figures, max_figures=render.max_pair_figures, matches=matches)
    figure = out / "precision_recall.png"
    sweeps = {v: read_table(layout.curve("eps", v)) for v in variants}
    write_quality_report(metrics, reasons, sweeps, layout.path("quality"), variants=variants, figure=figure)
    write_html_report(layout.path("html"), metrics=metrics, variants=variants, groups=groups, manifest=manifest,
                      figures={CAPTION: figure},
                      thumb_size=render.thumb_size, max_groups=render.max_groups, reasons=reasons,
                      review_queue=queue, max_review_pairs=render.max_pair_figures, matches=matches)

"""How the eps to act on is chosen, and why: a rule that cannot collapse the dataset into one group.

Each eps of the sweep is judged on what a user would accept (docs/pipeline.md, "How the eps is
chosen"):

- **growth guards** (always): an eps is never chosen when its largest group holds more than
  ``max_group_share`` of the images (groups of up to :data:`ALWAYS_ALLOWED` always pass), when
  more than ``max_grouped_share`` of the images are in groups, or when the groups propose more than
  ``max_pairs_per_image`` pairs per image. Images with the same pixels, and images proven copies
  of one another by geometric verification, count once, so a folder holding many copies of one
  picture does not trip them;
- **with ground truth**: the best pairwise F1 among the eps with precision >= ``min_precision``;
- **without it, with planted copies**: most copies found while at most ``max_unrelated`` of them land
  with an image outside their family (the original, the images directly within eps of it and their
  copies; an image only chained in through others is unrelated). Of several, the smallest eps: a
  larger one finds no more copies, only more pairs that no copy vouches for (as with ground truth,
  where ties of F1 also go to the smallest eps);
- **otherwise**: the largest eps up to ``fallback_eps`` that passes the guards.

When no eps passes the guards, the smallest eps of the sweep is used and the reason says so.
"""
from __future__ import annotations

import pandas as pd

from neardup.contract import content_keys, groups_at
from neardup.params import EvaluateParams

#: Groups of up to this many distinct images pass the largest-group guard on any dataset size.
ALWAYS_ALLOWED = 5


def growth_sweep(groups: pd.DataFrame, manifest: pd.DataFrame, eps_values, *, present=None,
                 proven=None) -> pd.DataFrame:
    """How the groups grow over the sweep, counting images with the same content once.

    Parameters
    ----------
    groups : DataFrame with columns ``eps, group, id`` (real images)
    manifest : DataFrame with ``id, sha256`` (and ``pixel_sha256`` when fetch recorded it)
    eps_values : sequence of float
    present : iterable of str, optional
        The ids that were embedded (default: every manifest id).
    proven : iterable of (str, str), optional
        Pairs proven copies by geometric verification (``pairs.csv`` rows with ``verified == 1``).

    Returns
    -------
    DataFrame with columns ``eps, groups, largest_group, grouped_share, pairs_per_image``: the groups,
    the largest group in distinct images, the share of distinct images in a group, and the pairs of
    distinct images the groups propose per distinct image; the same counting every image (files with the
    same content too), prefixed ``images_``, as the groups and the lists show them; and the same with
    each set of proven copies counted once as well, prefixed ``guard_``, with ``guard_n_contents`` the
    distinct images so counted (what the growth guards judge).
    """
    key_of = dict(zip(manifest["id"].astype(str), content_keys(manifest)))
    ids = manifest["id"].astype(str) if present is None else pd.Series(sorted(map(str, present)))
    parent: dict[str, str] = {}

    def root(key):
        while parent.get(key, key) != key:
            key = parent[key]
        return key

    for a, b in proven if proven is not None else ():
        ra, rb = root(key_of.get(a, a)), root(key_of.get(b, b))
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    keyings = (("", lambda i: key_of.get(i, i)), ("images_", lambda i: i), ("guard_", lambda i: root(key_of.get(i, i))))
    n_contents = {prefix: max(1, len({key(i) for i in ids})) for prefix, key in keyings}  # once, not per eps
    rows = []
    for eps in sorted(float(e) for e in eps_values):
        at = groups_at(groups, eps)
        row = {"eps": eps, "groups": int(at["group"].nunique()), "guard_n_contents": n_contents["guard_"]}
        for prefix, key in keyings:
            keyed = pd.DataFrame({"group": at["group"].to_numpy(),
                                  "key": [key(i) for i in at["id"].astype(str)]}).drop_duplicates()
            sizes = keyed.groupby("group").size().to_numpy()
            sizes = sizes[sizes > 1]
            row.update({f"{prefix}largest_group": int(sizes.max()) if len(sizes) else 0,
                        f"{prefix}grouped_share": float(sizes.sum() / n_contents[prefix]),
                        f"{prefix}pairs_per_image": float((sizes * (sizes - 1) / 2).sum() / n_contents[prefix])})
        rows.append(row)
    return pd.DataFrame(rows)


#: Columns of :func:`growth_sweep` that only the guards read (not written out).
GUARD_COLUMNS = ["guard_largest_group", "guard_grouped_share", "guard_pairs_per_image", "guard_n_contents"]


def guard_failures(row, rule: EvaluateParams) -> list[str]:
    """Why one eps of the sweep (a row of the evaluate sweep) is never chosen; empty when it may be.
    Judged on the ``guard_`` columns: proven copies of one picture count as one image."""
    out = []
    largest, n = row["guard_largest_group"], row["guard_n_contents"]
    if largest > max(ALWAYS_ALLOWED, rule.max_group_share * n):
        out.append(f"one group holds {int(largest)} images ({largest / n:.0%}; max_group_share "
                   f"{rule.max_group_share:g})")
    if row["guard_grouped_share"] > rule.max_grouped_share:
        out.append(f"{row['guard_grouped_share']:.0%} of the images are grouped (max_grouped_share "
                   f"{rule.max_grouped_share:g})")
    if row["guard_pairs_per_image"] > rule.max_pairs_per_image:
        out.append(f"{row['guard_pairs_per_image']:.2f} pairs per image (max_pairs_per_image "
                   f"{rule.max_pairs_per_image:g})")
    return out


def _table(sweep: pd.DataFrame, verdicts: dict) -> list[str]:
    planted = "planted_recall" in sweep and sweep["planted_recall"].notna().any()
    truth = "f1" in sweep and sweep["f1"].notna().any()
    head = "| eps | " + ("precision | recall | F1 | " if truth else "") + \
        ("copies found | with unrelated | " if planted else "") + \
        "groups | largest group (images) | share of images grouped | pairs per image | verdict |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for _, row in sweep.iterrows():
        cells = [f"{row['eps']:g}"]
        if truth:
            cells += [f"{row['precision']:.3f}", f"{row['recall']:.3f}", f"{row['f1']:.3f}"]
        if planted:
            cells += [f"{row['planted_recall']:.3f}", f"{row['planted_with_unrelated']:.3f}"]
        cells += [str(int(row["groups"])), str(int(row["images_largest_group"])), f"{row['images_grouped_share']:.3f}",
                  f"{row['images_pairs_per_image']:.3f}", verdicts[float(row["eps"])]]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def pick_eps(sweep: pd.DataFrame, rule: EvaluateParams, *, has_truth: bool) -> tuple[float, str]:
    """The eps to act on, and why: a sentence, then a markdown table judging every eps.

    Parameters
    ----------
    sweep : DataFrame, one row per eps, with ``eps``, the :func:`growth_sweep` columns, ``precision``
        / ``f1`` (NaN without truth) and ``planted_recall`` / ``planted_with_unrelated`` (when copies
        were planted)
    rule : EvaluateParams
        The ``evaluate`` params (``min_precision``, ``max_unrelated``, the growth guards, ``fallback_eps``).
    has_truth : bool

    Returns
    -------
    eps : float, one of the sweep
    reason : str
    """
    sweep = sweep.sort_values("eps", ignore_index=True)
    failures = {float(r["eps"]): guard_failures(r, rule) for _, r in sweep.iterrows()}
    ok = sweep[[not failures[float(e)] for e in sweep["eps"]]]
    verdicts = {e: "never: " + "; ".join(f) if f else "may be chosen" for e, f in failures.items()}
    planted = "planted_recall" in sweep and sweep["planted_recall"].notna().any()
    eps, why = None, ""
    if not len(ok):
        eps = float(sweep["eps"].min())
        why = ("no eps of the sweep passes the growth guards; the smallest is used: add smaller values to "
               "cluster.eps")
    elif has_truth:
        scored = ok.dropna(subset=["f1"])
        scored = scored[scored["precision"] >= rule.min_precision]
        if len(scored):
            eps = float(scored.sort_values(["f1", "eps"], ascending=[False, True]).iloc[0]["eps"])
            why = (f"best pairwise F1 on the ground truth among eps with precision >= {rule.min_precision:g} "
                   "that pass the growth guards")
    elif planted:
        clean = ok[ok["planted_with_unrelated"] <= rule.max_unrelated]
        if len(clean):
            eps = float(clean.sort_values(["planted_recall", "eps"], ascending=[False, True]).iloc[0]["eps"])
            why = (f"most planted copies found (the smallest such eps) while at most {rule.max_unrelated:.0%} of "
                   "them land with an image outside their family, among eps that pass the growth guards")
        else:
            eps = float(ok["eps"].min())
            why = (f"the smallest eps that passes the growth guards: at every eps more than {rule.max_unrelated:.0%} "
                   "of the planted copies land with an image outside their family")
        for _, row in sweep.iterrows():
            if not failures[float(row["eps"])] and row["planted_with_unrelated"] > rule.max_unrelated:
                verdicts[float(row["eps"])] = (f"no: {row['planted_with_unrelated']:.1%} of the copies land with an unrelated "
                                      f"image (max_unrelated {rule.max_unrelated:g})")
    if eps is None:
        below = ok[ok["eps"] <= rule.fallback_eps + 1e-12]
        eps = float(below["eps"].max() if len(below) else ok["eps"].min())
        why = (f"the largest eps up to evaluate.fallback_eps ({rule.fallback_eps:g}) that passes the growth guards "
               + (f"(no eps reaches precision {rule.min_precision:g} on the ground truth)" if has_truth else
                  "(no ground truth and no usable planted copies)"))
    verdicts[eps] = "**chosen**"
    return eps, "\n".join([why, "", *_table(sweep, verdicts)])

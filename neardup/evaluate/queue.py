"""The review queue: every proposed pair with its verdict, and the reviewed-pairs file.

Verdicts live in ``data/reviewed_pairs.csv`` (:data:`REVIEW_COLUMNS`), keyed by the two images'
sha256, so a verdict holds across models, sizes, eps, renamed files and re-runs. The queue
(:data:`QUEUE_COLUMNS`) lists the pairs inside one variant's groups at its chosen eps.
"""
from __future__ import annotations

import itertools
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from neardup.contract import QUEUE_COLUMNS, REVIEW_COLUMNS, atomic_write, escape_cells, unescape_cells  # noqa: F401 (re-exported)

log = logging.getLogger(__name__)

VERDICTS = ("duplicate", "different", "unsure")


def pair_key(sha1: str, sha2: str) -> tuple[str, str]:
    """The order-free key of a pair of images: their two content hashes, sorted."""
    return (sha1, sha2) if sha1 <= sha2 else (sha2, sha1)


def _normalise_reviews(reviews: pd.DataFrame, source: str) -> pd.DataFrame:
    missing = [c for c in REVIEW_COLUMNS if c not in reviews.columns]
    if missing:
        raise ValueError(f"{source}: missing column(s) {missing}; expected columns {REVIEW_COLUMNS}")
    out = reviews[REVIEW_COLUMNS].astype(str).reset_index(drop=True)
    for i, row in out.iterrows():
        where = f"{source}: row {i + 1} (CSV line {i + 2}: {row['sha_a'][:12]}.. {row['sha_b'][:12]}..)"
        if row["verdict"] not in VERDICTS:
            raise ValueError(f"{where} has verdict {row['verdict']!r}; expected one of {list(VERDICTS)}")
        if not row["sha_a"] or not row["sha_b"]:
            raise ValueError(f"{where} has an empty sha_a or sha_b")
    swap = out["sha_a"] > out["sha_b"]
    out.loc[swap, ["sha_a", "sha_b", "id_a", "id_b"]] = out.loc[swap, ["sha_b", "sha_a", "id_b", "id_a"]].to_numpy()
    out = out.drop_duplicates(["sha_a", "sha_b"], keep="last")  # the last verdict on a pair wins
    return out.sort_values(["sha_a", "sha_b"], kind="stable", ignore_index=True)


def load_reviews(path) -> pd.DataFrame:
    """Read the reviewed-pairs CSV (columns ``REVIEW_COLUMNS``, all str).

    Returns an empty frame when ``path`` does not exist. Raises ``ValueError`` naming the file and the
    row for a missing column, an empty hash or a verdict outside ``VERDICTS``. Rows whose hashes are
    not in order are swapped into ``sha_a < sha_b``; for a repeated key the last row wins; rows come
    sorted by ``(sha_a, sha_b)``.
    """
    path = Path(path)
    if not path.is_file():
        return pd.DataFrame({c: pd.Series(dtype=str) for c in REVIEW_COLUMNS})
    return _normalise_reviews(unescape_cells(pd.read_csv(path, dtype=str, keep_default_na=False)), str(path))


def save_reviews(reviews: pd.DataFrame, path) -> None:
    """Write ``reviews`` atomically (temporary file + ``os.replace``): one row per key, the last verdict
    winning, sorted by ``(sha_a, sha_b)``. Validates as :func:`load_reviews` does."""
    path = Path(path)
    out = _normalise_reviews(reviews, f"reviews for {path}")
    atomic_write(path, escape_cells(out).to_csv(index=False, lineterminator="\n"))


def capped_group_pairs(groups: pd.DataFrame, manifest: pd.DataFrame, *, variant: str, pairs: pd.DataFrame | None = None,
                       max_pairs: int) -> tuple[pd.DataFrame, int]:
    """The pairs inside each group, closest first, at most ``max_pairs`` of them, as queue rows
    without verdict and figure; the pairs left out are counted, never built.

    Scored pairs (in ``pairs``, with a distance) come first by distance; then pairs only chained into
    one group (distance NaN), smallest groups first. Memory and output stay O(``max_pairs``) however
    large a group is.

    Parameters
    ----------
    groups : DataFrame
        One grouping (columns ``group, id``; an ``eps`` column, if any, must hold one value).
    manifest : DataFrame
        The dataset manifest (``id, sha256``); every grouped id must be in it.
    variant : str
        Value of the ``variant`` column (e.g. ``efficientnet-lite0_224``).
    pairs : DataFrame with columns ``a, b, distance``, optional
        The variant's scored pairs (``a < b``); pairs of it that do not share a group are ignored.
    max_pairs : int

    Returns
    -------
    table : DataFrame with columns ``variant, a, b, sha_a, sha_b, distance``; ``a < b``, ``sha_a`` is a's hash.
    left_out : int, the pairs inside groups not in ``table``.
    """
    if "eps" in groups.columns and groups["eps"].nunique() > 1:
        raise ValueError(f"groups hold several eps {sorted(groups['eps'].unique())}; select one first")
    sha = manifest.set_index("id")["sha256"]
    unknown = sorted(set(groups["id"]) - set(sha.index))
    if unknown:
        raise ValueError(f"{len(unknown)} grouped id(s) not in the manifest, e.g. {unknown[:5]}")
    group_of = dict(zip(groups["id"], groups["group"]))
    members = {g: sorted(set(ids)) for g, ids in groups.groupby("group")["id"]}
    total = sum(len(m) * (len(m) - 1) // 2 for m in members.values())
    rows: list[tuple[str, str, float]] = []
    if pairs is not None and len(pairs):
        group_a, group_b = pairs["a"].astype(str).map(group_of), pairs["b"].astype(str).map(group_of)
        scored = pairs[(group_a == group_b) & group_a.notna()]
        scored = scored.sort_values(["distance", "a", "b"], kind="stable").head(max_pairs)
        rows = list(zip(scored["a"].astype(str), scored["b"].astype(str), scored["distance"].astype(float)))
    taken = {(x, y) for x, y, _ in rows}
    for g in sorted(members, key=lambda g: (len(members[g]), members[g][0])):
        if len(rows) >= max_pairs:
            break
        for x, y in itertools.combinations(members[g], 2):
            if (x, y) not in taken:
                rows.append((x, y, np.nan))
                if len(rows) >= max_pairs:
                    break
    a, b = [r[0] for r in rows], [r[1] for r in rows]
    out = pd.DataFrame({"variant": variant, "a": a, "b": b, "sha_a": sha.reindex(a).to_numpy(dtype=object),
                        "sha_b": sha.reindex(b).to_numpy(dtype=object), "distance": [r[2] for r in rows]},
                       columns=QUEUE_COLUMNS[:6])
    log.info("%s: %d of %d pairs in %d groups", variant, len(out), total, len(members))
    return out, total - len(out)


def build_queue(pairs: pd.DataFrame, reviews: pd.DataFrame) -> pd.DataFrame:
    """Queue rows (``QUEUE_COLUMNS``) for ``pairs``: the verdict from ``reviews`` by :func:`pair_key`,
    ``'duplicate'`` for byte-identical pairs, ``''`` when pending; sorted by ``(distance, a, b)``, NaN
    distances last. ``figure`` is kept when ``pairs`` has one, else ``''`` (:func:`draw_pair_figures`)."""
    known = {pair_key(r.sha_a, r.sha_b): r.verdict for r in reviews.itertuples()}
    queue = pairs.copy()
    queue["verdict"] = [known.get(pair_key(x, y), "") for x, y in zip(queue["sha_a"], queue["sha_b"])]
    queue.loc[queue["sha_a"] == queue["sha_b"], "verdict"] = "duplicate"
    queue["figure"] = queue["figure"].fillna("").astype(str) if "figure" in queue.columns else ""
    queue["distance"] = pd.to_numeric(queue["distance"], errors="coerce")
    queue = queue.sort_values(["distance", "a", "b"], na_position="last", kind="stable")
    return queue[QUEUE_COLUMNS].reset_index(drop=True)


def reviewed_precision(queue: pd.DataFrame, *, n_total: int | None = None) -> dict:
    """Counts and precision of the queue's rows (pass one variant's rows for that variant's precision).

    ``reviewed_precision`` = duplicate / (duplicate + different), NaN when neither; ``precision_lower``
    counts pending and unsure pairs as wrong, ``precision_upper`` as right; both 1.0 with no pairs.
    ``n_total``: the pairs proposed when the queue was capped (the pairs left out count as pending).
    """
    verdicts = queue["verdict"].fillna("").astype(str)
    bad = sorted(set(verdicts) - set(VERDICTS) - {""})
    if bad:
        raise ValueError(f"unknown verdict(s) {bad} in the queue; expected one of {list(VERDICTS)} or ''")
    n = max(len(verdicts), n_total or 0)
    dup, diff = int((verdicts == "duplicate").sum()), int((verdicts == "different").sum())
    return {"n_pairs": n, "n_duplicate": dup, "n_different": diff, "n_unsure": int((verdicts == "unsure").sum()),
            "n_pending": int((verdicts == "").sum()) + n - len(verdicts),
            "reviewed_precision": dup / (dup + diff) if dup + diff else float("nan"),
            "precision_lower": dup / n if n else 1.0, "precision_upper": (n - diff) / n if n else 1.0}

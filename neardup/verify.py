"""Geometric verification of candidate pairs: shared local features that agree on one similarity
transform (rotation, scale, shift; mirrored too) are proof of a copy.

Each image's SIFT keypoints and its mirror's come from :mod:`neardup.keypoints` (cached by content,
streamed); each pair is matched by :mod:`neardup.geometry` (ratio test, RANSAC fit); the inliers,
counted once per keypoint location, are the evidence. A pair with at least ``min_inliers`` of them, making up at
least ``min_ratio`` of the matches (a repeated pattern gives a few inliers among many matches that
disagree), and whose pixels, aligned by the fitted transform, agree on at least ``min_agreement`` of
what the two images share (:func:`proof`: an overlay both carry, or a patch of scenery, is no copy),
is proven and moves closer (its distance times ``factor``). A pair that is not proven
although both images have ``refute_keypoints`` keypoints moves away (its distance over ``factor``);
other pairs keep their distance (a low-texture copy has few features, so there no agreement is no
proof of a different photo: measured in docs/quality.md). Images whose short side is under
``min_side`` are not verified (too few features: CIFAR's 32 x 32).
"""
from __future__ import annotations

import logging
import time

import numpy as np
from scipy import sparse

from neardup.engine import ordered_map, tqdm
from neardup.geometry import MAX_STRETCH, Match, agreement, distinct_points, fit, match  # noqa: F401 (the API)
from neardup.keypoints import FeatureStore

log = logging.getLogger(__name__)


def proof(m: Match, path_a: str, path_b: str, params) -> bool:
    """Whether ``m`` (the match of the images at ``path_a`` and ``path_b``) proves a copy: its
    keypoints do (:meth:`Match.proves`), and aligned by its transform the images' pixels agree on at
    least ``params.min_agreement`` of what they share (:func:`neardup.geometry.agreement`; a flat
    pair the pixels cannot judge keeps the keypoints' verdict). Two photos that share an overlay or a
    patch of scenery have keypoints that agree there, and pixels that agree nowhere else."""
    if not m.proves(params):
        return False
    if params.min_agreement <= 0:
        return True
    share = agreement(path_a, path_b, m)
    return share is None or share >= params.min_agreement


def queue_matches(queue, manifest, params, *, cache_dir: str) -> dict:
    """:func:`pair_matches` of a review queue's pairs (columns ``a, b``): the proofs a report draws;
    empty when verification is off (``params.enabled``)."""
    if not params.enabled:
        return {}
    return pair_matches(list(zip(queue["a"].astype(str), queue["b"].astype(str))), manifest, params,
                        cache_dir=cache_dir)


def pair_matches(pairs, manifest, params, *, cache_dir: str = "") -> dict:
    """``{(a, b): Match}`` for the id pairs ``pairs`` whose match is a proof (:meth:`Match.proves`), from the
    images of ``manifest`` (``id, path, sha256``, ``pixel_sha256``): the proof drawn in the report."""
    from neardup.contract import content_keys

    rows = manifest.drop_duplicates("id").set_index("id")
    ids = sorted({i for pair in pairs for i in pair if i in rows.index})
    if not ids:
        return {}
    index = {i: k for k, i in enumerate(ids)}
    chosen = rows.loc[ids]
    found = {}
    with FeatureStore(chosen["path"].astype(str).to_numpy(), content_keys(chosen), params,
                      cache_dir=cache_dir) as store:
        for a, b in pairs:
            if a in index and b in index:
                try:
                    m = match(store.get(index[a]), store.get(index[b]))
                    proven = proof(m, str(chosen.at[a, "path"]), str(chosen.at[b, "path"]), params)
                except Exception as exc:  # noqa: BLE001 - one bad pair: no figure of its proof
                    log.warning("verifying %s and %s: %s: %s; no proof drawn", a, b, type(exc).__name__, exc)
                    continue
                if proven:
                    found[(a, b)] = m
    return found


def nearest_edges(coo: sparse.coo_matrix, graph: sparse.csr_matrix, n_reference: int | None = None) -> np.ndarray:
    """Mask over the entries of ``coo`` (the upper triangle of the symmetric ``graph``): the pair is
    some image's nearest neighbour among the first ``n_reference`` rows (the real images; default:
    all), other than its identical copies (distance 0; ties: the lower column). Planted copies
    (the rows after them) so never change which pairs of real images are verified."""
    n_reference = graph.shape[0] if n_reference is None else n_reference
    graph = graph.tocsr()[:, :n_reference].tocsr()
    graph.sort_indices()
    filled = np.flatnonzero(np.diff(graph.indptr))
    if not len(filled):
        return np.zeros(coo.nnz, bool)
    data = np.where(graph.data > 0, graph.data, np.inf)  # an identical copy is no neighbour to verify
    lowest = np.minimum.reduceat(data, graph.indptr[filled])
    rows = np.repeat(np.arange(graph.shape[0]), np.diff(graph.indptr))
    is_min = (data == np.repeat(lowest, np.diff(graph.indptr)[filled])) & np.isfinite(data)
    first = np.unique(rows[is_min], return_index=True)[1]
    a, b = rows[is_min][first], graph.indices[is_min][first]
    keys = np.minimum(a, b).astype(np.int64) * graph.shape[0] + np.maximum(a, b)
    return np.isin(coo.row.astype(np.int64) * graph.shape[0] + coo.col, keys)


#: Pairs matched per batch: the features they need are loaded, matched in one thread per core, released.
PAIR_BATCH = 256
#: A glance with this many inliers sends the pair to the full verification: twice what the glance
#: finds between different photos (at most 3 on the demo's random pairs; copies: 5 and up). A pair
#: within the radius whose glance has fewer, between two images at the glance's keypoint cap (both
#: textured), is refuted without the full check: the copies of the demo, the wallpapers and
#: imagededup's images that have those keypoints show 26 glance inliers and more (docs/quality.md).
GLANCE_INLIERS = 6


def _match_pairs(pairs: np.ndarray, store: FeatureStore, desc: str, bar=None) -> tuple[list, set]:
    """``(Match or error text, fewer keypoints of the two)`` for each ``(a, b)`` row of ``pairs``, in
    order, and the rows whose image is too small for features: the features stream from ``store`` a
    batch at a time, pairs ordered by image, matched on one thread per core. A pair that raises gets
    its error text and never stops the others. ``bar``: a progress bar of the caller's to advance
    (then nothing is logged here)."""
    out: list = [None] * len(pairs)
    small: set = set()
    if not len(pairs):
        return out, small
    store.prepare(np.unique(pairs).tolist(), progress=bar is None)
    order = np.lexsort((pairs[:, 1], pairs[:, 0]))  # by image: a batch needs few images, the LRU keeps them
    features: dict = {}

    def one(k: int):
        a, b = features[pairs[k, 0]], features[pairs[k, 1]]
        try:
            return match(a, b), min(len(a.points), len(b.points))
        except Exception as exc:  # noqa: BLE001 - one bad pair never kills the run
            return f"{type(exc).__name__}: {exc}", 0

    start = time.perf_counter()
    own = bar is None
    bar = tqdm(total=len(pairs), desc=desc, unit="pair", leave=False, disable=len(pairs) < 50) if own else bar
    for first in range(0, len(order), PAIR_BATCH):
        batch = order[first:first + PAIR_BATCH]
        features = {i: store.get(i) for i in np.unique(pairs[batch]).tolist()}
        small.update(i for i, f in features.items() if not f.usable and not store.failed(i))
        for k, result in zip(batch, ordered_map(one, batch)):  # one thread per core: OpenCV releases the GIL
            out[k] = result
        bar.update(len(batch))
    if own:
        bar.close()
        seconds = time.perf_counter() - start
        log.info("%s: %d pairs in %.1f s (%.1f pairs/s)", desc, len(pairs), seconds, len(pairs) / max(seconds, 1e-9))
    return out, small


def _glance(pairs: np.ndarray, distances: np.ndarray, store: FeatureStore, patience: int):
    """The glance at ``pairs`` (nearest pairs beyond every eps), closest first, a batch at a time,
    until ``patience`` pairs in a row showed nothing (a pair with :data:`GLANCE_INLIERS` resets the
    count): copies sit close to the largest eps, and on a folder of distinct photos the look stops
    after ``patience`` pairs. Returns the results (None: not looked at) and the rows too small."""
    order = np.argsort(distances, kind="stable")
    out: list = [None] * len(pairs)
    small: set = set()
    if patience <= 0:
        return out, small
    quiet, start = 0, time.perf_counter()
    with tqdm(total=len(pairs), desc="glance at nearest pairs", unit="pair", leave=False,
              disable=len(pairs) < 50) as bar:
        for first in range(0, len(order), PAIR_BATCH):
            batch = order[first:first + PAIR_BATCH]
            results, too_small = _match_pairs(pairs[batch], store, "", bar=bar)
            small |= too_small
            for k, (result, keypoints) in zip(batch, results):
                out[k] = (result, keypoints)
                seen = not isinstance(result, str) and result.inliers >= GLANCE_INLIERS
                quiet = 0 if seen else quiet + 1
            if quiet >= patience:
                break
    looked = sum(r is not None for r in out)
    seconds = time.perf_counter() - start
    log.info("glance at %d of %d nearest pairs beyond every eps, closest first (stopped after %d in a row showed "
             "nothing): %.1f s (%.1f pairs/s)", looked, len(pairs), quiet, seconds, looked / max(seconds, 1e-9))
    return out, small


def _verify_pairs(pairs: np.ndarray, distances: np.ndarray, glance: np.ndarray, paths, content, params, *,
                  cache_dir: str):
    """Verdicts on the ``(a, b)`` rows of ``pairs`` (at ``distances``): boolean masks ``proven`` and
    ``refuted`` and a summary. Pairs where ``glance`` is set (nearest neighbours beyond every eps, where
    only a proof changes anything) get the glance first (:func:`_glance`); only those with
    :data:`GLANCE_INLIERS` go on to the full verification. The others get a glance too: two textured
    images it sees under :data:`GLANCE_INLIERS` in are refuted there, the rest get the full check.
    Features stream through :class:`FeatureStore` (bounded memory). A pair whose verification fails, or an image that cannot
    be read, is logged, counted in ``errors`` and neither proven nor refuted."""
    start, cpu = time.perf_counter(), time.process_time()
    proven, refuted = np.zeros(len(pairs), bool), np.zeros(len(pairs), bool)
    failed, unreadable = [], set()
    full = ~glance
    with FeatureStore(paths, content, params, cache_dir=cache_dir, max_images=4 * PAIR_BATCH, glance=True) as store:
        looked, too_small = _glance(pairs[glance], distances[glance], store, params.glance_patience)
        near, small = _match_pairs(pairs[~glance], store, "glance at pairs within the radius")
        unreadable |= {p for p, _ in store.errors}
        textured = store.max_keypoints  # a glance at two images with this many keypoints each can refute
    too_small |= small
    for k, seen in zip(np.flatnonzero(glance), looked):
        if seen is not None and isinstance(seen[0], str):
            failed.append((k, seen[0]))
        elif seen is not None and seen[0].inliers >= GLANCE_INLIERS:
            full[k] = True
    can_refute = 0 < params.refute_keypoints <= textured
    for k, (result, keypoints) in zip(np.flatnonzero(~glance), near):
        if can_refute and not isinstance(result, str) and keypoints >= textured and result.inliers < GLANCE_INLIERS:
            refuted[k], full[k] = True, False  # two textured images the glance sees nothing shared in
    with FeatureStore(paths, content, params, cache_dir=cache_dir, max_images=4 * PAIR_BATCH) as store:
        checked, small = _match_pairs(pairs[full], store, "verify pairs")
        unreadable |= {p for p, _ in store.errors}
    too_small |= small
    unconfirmed = 0
    for k, (result, keypoints) in zip(np.flatnonzero(full), checked):
        if isinstance(result, str):
            failed.append((k, result))
            continue
        try:
            proven[k] = proof(result, str(paths[pairs[k, 0]]), str(paths[pairs[k, 1]]), params)
        except Exception as exc:  # noqa: BLE001 - one bad pair never kills the run
            failed.append((k, f"{type(exc).__name__}: {exc}"))
            continue
        unconfirmed += bool(result.proves(params) and not proven[k])
        refuted[k] = not proven[k] and params.refute_keypoints > 0 and keypoints >= params.refute_keypoints
    for k, reason in failed[:10]:
        log.warning("verifying %s and %s failed (%s): the pair keeps its distance", paths[pairs[k, 0]],
                    paths[pairs[k, 1]], reason)
    if len(failed) > 10:
        log.warning("... and %d more pairs failed verification", len(failed) - 10)
    n_looked = sum(seen is not None for seen in looked)
    summary = {"images": int(len(np.unique(pairs))), "glanced": n_looked, "unglanced": len(looked) - n_looked,
               "escalated": int((full & glance).sum()), "refuted_at_glance": int((refuted & ~full).sum()),
               "unconfirmed": unconfirmed, "too_small": len(too_small), "errors": len(failed) + len(unreadable)}
    log.info("verification of %d pairs took %.1f s, %.1f CPU s", len(pairs), time.perf_counter() - start,
             time.process_time() - cpu)
    return proven, refuted, summary


def verify_edges(graph: sparse.csr_matrix, paths, content, params, *, radius: float, cache_dir: str = "",
                 n_reference: int | None = None,
                 stats: dict | None = None) -> tuple[sparse.csr_matrix, sparse.csr_matrix]:
    """``graph`` with its candidate pairs verified: proven pairs move closer, refuted ones away.

    Verified: every pair within ``radius`` (the largest eps) and each image's nearest neighbour among
    the first ``n_reference`` rows (the real images, so planted copies change nothing about them)
    whatever its distance (a crop can sit beyond every eps, and the proof brings it in), except pairs
    of identical content (distance 0). A nearest pair beyond the radius, where only a proof changes
    anything, gets a glance first (small features, :data:`neardup.keypoints.GLANCE_SIDE`), and the full
    verification only when the glance sees :data:`GLANCE_INLIERS` agree: on a folder of distinct photos
    every image's nearest neighbour lies beyond the radius. A pair within the radius gets a glance too:
    where both images are textured (the glance's full keypoint count) and it sees under
    :data:`GLANCE_INLIERS` agree, the pair is refuted without the full check. Features stream
    (:func:`_verify_pairs`): memory stays bounded, and a pair or an image that fails is counted in
    ``errors`` and keeps its distance. A pair that :func:`proof` proves a copy moves to its distance
    times ``factor``; a pair that does not, of two images with at least ``refute_keypoints`` keypoints
    each (both textured enough that a copy would show), moves to its distance divided by ``factor``.

    Parameters
    ----------
    graph : csr_matrix, shape (n, n)
        The scored pair graph (symmetric).
    paths : sequence of str, length n
        Each row's image file.
    content : sequence of str, length n
        Each row's content key (features are cached and shared by it).
    params : VerifyParams
        ``max_side``, ``max_keypoints``, ``min_side``, ``min_inliers``, ``min_ratio``, ``min_agreement``, ``factor``,
        ``refute_keypoints``.
    n_reference : int, optional
        The real images are the first ``n_reference`` rows, planted copies the rest (default: all
        real): nearest neighbours are looked for among the real images only.
    stats : dict, optional
        Receives ``verify``: pairs verified, images they involve, pairs moved closer and away, images
        too small, errors (pairs or images that failed; timings go to the log only: outputs hold no
        timings).

    Returns
    -------
    graph : csr_matrix, shape (n, n)
        The graph with the moved distances.
    verdicts : csr_matrix of int8, shape (n, n), symmetric
        1 where a pair was proven, -1 where it was refuted (no entry: neither, or not verified).
    """
    coo = sparse.triu(graph, k=1).tocoo()
    chosen = np.flatnonzero(((coo.data <= radius) | nearest_edges(coo, graph, n_reference)) & (coo.data > 0))
    rows, cols = coo.row[chosen], coo.col[chosen]
    proven, refuted, summary = _verify_pairs(np.column_stack([rows, cols]).astype(np.int64), coo.data[chosen],
                                             coo.data[chosen] > radius, paths, content, params, cache_dir=cache_dir)
    data = coo.data.astype(float).copy()
    data[chosen[proven]] *= params.factor
    data[chosen[refuted]] /= params.factor
    log.info("verified %d pairs of %d images (within %g, or an image's nearest): %d beyond it glanced at first (%d "
             "not), %d of them verified; %d proven, moved closer; %d refuted, moved away (%d at a glance)", len(rows),
             summary["images"], radius, summary["glanced"], summary["unglanced"], summary["escalated"],
             int(proven.sum()), int(refuted.sum()), summary["refuted_at_glance"])
    if summary["too_small"]:
        log.info("%d of these images have a side under cluster.verify.min_side (%d px): their pairs are not verified",
                 summary["too_small"], params.min_side)
    if stats is not None:
        stats["verify"] = {"pairs": int(len(rows)), "verified": int(proven.sum()), "refuted": int(refuted.sum()),
                           **summary}
    moved = sparse.coo_matrix((np.r_[data, data], (np.r_[coo.row, coo.col], np.r_[coo.col, coo.row])),
                              shape=graph.shape).tocsr()
    verdict = proven.astype(np.int8) - refuted.astype(np.int8)
    keep = verdict != 0
    r, c, v = rows[keep], cols[keep], verdict[keep]
    verdicts = sparse.coo_matrix((np.r_[v, v], (np.r_[r, c], np.r_[c, r])), shape=graph.shape, dtype=np.int8).tocsr()
    return moved, verdicts

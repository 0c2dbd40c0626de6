"""hash: perceptual hashes (pHash, dHash, aHash, wHash), scored as baselines and mixed into CNN scores.

A ``k``-bit hash is turned into a ``k``-dimensional float32 vector of ``-1`` / ``+1`` (one
coordinate per bit). Every such vector has norm ``sqrt(k)`` and two of them differing in ``h``
bits have dot product ``k - 2h``, so their cosine distance is exactly ``2 * h / k``. The cosine
DBSCAN of the cluster stage and the evaluation therefore work on hashes unchanged: the usual
"Hamming distance <= 10 of 64 bits" rule is cosine distance ``<= 0.3125``.

The hashes are computed by :mod:`imagehash` on the decoded image converted to RGB (imagehash
converts to greyscale itself), so the bits are exactly imagehash's own.
"""
from __future__ import annotations

import logging
import os
import time

import numpy as np
import pandas as pd

from neardup.cache import vector_cache
from neardup.contract import Embeddings, read_table
from neardup.decode import open_rgb
from neardup.engine import map_on_dask, missing_from, ordered_map, require_cache_dir
from neardup.layout import Layout
from neardup.params import check_choice, params_from_dict
from neardup.stage import record_timing

log = logging.getLogger(__name__)

#: Hash methods, named as in :mod:`imagehash` (``phash``, ``dhash``, ``average_hash``, ``whash``).
HASH_METHODS = ("phash", "dhash", "ahash", "whash")

_IMAGEHASH_FUNCTIONS = {"phash": "phash", "dhash": "dhash", "ahash": "average_hash", "whash": "whash"}


def is_hash_method(name: str) -> bool:
    """Return whether ``name`` is one of :data:`HASH_METHODS` (as opposed to a neural model name)."""
    return isinstance(name, str) and name in HASH_METHODS


def _check_options(method: str, hash_size: int) -> None:
    if not is_hash_method(method):
        raise ValueError(f"unknown hash method {method!r}; valid methods are {', '.join(HASH_METHODS)}")
    if isinstance(hash_size, bool) or not isinstance(hash_size, (int, np.integer)) or hash_size < 2:
        raise ValueError(f"hash_size must be an integer >= 2, got {hash_size!r}")
    if method == "whash" and hash_size & (hash_size - 1):
        raise ValueError(f"whash needs a power of 2 as hash_size, got {hash_size}")


def hash_image(path: str | os.PathLike, *, method: str, hash_size: int) -> np.ndarray:
    """Perceptual hash of the image at ``path``.

    The image is decoded (a truncated file raises, it is not padded with grey; a JPEG at a reduced DCT
    scale, see below), converted to RGB and hashed by :mod:`imagehash`.

    Parameters
    ----------
    path : str or PathLike
        An image file Pillow can read.
    method : {'phash', 'dhash', 'ahash', 'whash'}
        The hash (see :data:`HASH_METHODS`).
    hash_size : int
        Side of the hash grid; the hash has ``hash_size ** 2`` bits. ``whash`` needs a power of 2.

    Returns
    -------
    ndarray of bool, shape (hash_size ** 2,)
        The hash bits in imagehash's (row-major) order.

    Raises
    ------
    ValueError
        Unknown ``method`` or bad ``hash_size``.
    OSError, Exception
        Whatever Pillow or imagehash raise on an unreadable image.
    """
    _check_options(method, hash_size)
    import imagehash

    function = getattr(imagehash, _IMAGEHASH_FUNCTIONS[method])
    # the shared decoder (upright, first frame; checked at fetch). A JPEG is decoded at the smallest DCT
    # scale keeping 8 x hash_size pixels a side, 4-5x faster for photos, since the hashes work on 9 x 8
    # to 32 x 32 pixels (docs/performance.md: 0.1-0.2 of 64 bits differ); whash takes its scale from the
    # image's size, so it gets the full image.
    rgb = open_rgb(path, max_pixels=None, min_side=None if method == "whash" else 8 * int(hash_size))
    bits = np.asarray(function(rgb, hash_size=int(hash_size)).hash, dtype=bool).reshape(-1)
    return bits


def hash_vectors(bits: np.ndarray) -> np.ndarray:
    """Turn hash bits into ``-1`` / ``+1`` vectors whose cosine distance is ``2 * hamming / k``.

    Parameters
    ----------
    bits : array_like of bool (or 0/1 integers), shape (n, k)
        One hash per row.

    Returns
    -------
    ndarray of float32, shape (n, k)
        ``+1.0`` where a bit is set, ``-1.0`` where it is not.
    """
    bits = np.asarray(bits)
    if bits.ndim != 2:
        raise ValueError(f"bits must have shape (n, k), got shape {bits.shape}")
    if bits.dtype != bool:
        if bits.size and not np.isin(bits, (0, 1)).all():
            raise ValueError("bits must be boolean or hold only 0 and 1")
        bits = bits.astype(bool)
    return np.where(bits, np.float32(1.0), np.float32(-1.0)).astype(np.float32, copy=False)


def hash_manifest(manifest: pd.DataFrame, *, method: str, hash_size: int, cache=None,
                  chunk_size: int = 4096) -> Embeddings:
    """Hash every image of ``manifest`` and return the hashes as ``-1`` / ``+1`` vectors.

    Parameters
    ----------
    manifest : DataFrame
        Columns ``id, path, sha256`` (others are ignored), one row per image.
    method : {'phash', 'dhash', 'ahash', 'whash'}
        The hash (see :data:`HASH_METHODS`).
    hash_size : int
        Side of the hash grid; vectors have ``d = hash_size ** 2`` coordinates.
    cache : neardup.cache.VectorCache, optional
        Hash vectors already computed with these settings, by content sha256: those images are not
        decoded again, and every ``chunk_size`` new hashes are stored at once.

    Returns
    -------
    Embeddings
        ``ids`` and ``sha256`` of shape (n_hashed,) and ``vectors`` float32 of shape
        (n_hashed, hash_size ** 2), in manifest order; images that cannot be opened or decoded are
        in ``skipped`` (``id``, ``reason`` = ``"could not be hashed: <error>"``);
        ``images_per_second`` is the measured rate over the images hashed in this call (NaN when
        all came from the cache).

    Raises
    ------
    ValueError
        Unknown ``method`` (the message lists :data:`HASH_METHODS`), bad ``hash_size`` or missing
        columns.
    """
    _check_options(method, hash_size)
    missing = [c for c in ("id", "path", "sha256") if c not in manifest.columns]
    if missing:
        raise ValueError(f"manifest lacks column(s) {', '.join(missing)}")
    ids = manifest["id"].astype(str).to_numpy()
    paths = manifest["path"].astype(str).to_numpy()
    digests = manifest["sha256"].astype(str).to_numpy()
    n_bits = int(hash_size) ** 2

    found: dict[int, np.ndarray] = {}
    if cache is not None:
        found = {i: cache.get(d) for i, d in enumerate(digests) if d in cache}
        if found:
            log.info("%d of %d hashes taken from the cache", len(found), len(paths))
    todo = [i for i in range(len(paths)) if i not in found]
    fresh: list[int] = []  # hashed in this call, not yet stored in the cache
    skipped_ids: list[str] = []
    reasons: list[str] = []

    def one(i: int):
        try:
            return hash_vectors(hash_image(paths[i], method=method, hash_size=hash_size)[None])[0]
        except Exception as exc:  # noqa: BLE001 - decoders raise many types (OSError, SyntaxError, ...)
            return exc

    start = time.perf_counter()
    hashed = ordered_map(one, todo, desc=f"hash {method}@{hash_size}", unit="image")  # one thread per core
    for position, (i, result) in enumerate(zip(todo, hashed)):
        if isinstance(result, Exception):
            reason = f"could not be hashed: {type(result).__name__}: {result}"
            log.error("skipped %s: %s", ids[i], reason)
            skipped_ids.append(ids[i])
            reasons.append(reason)
        else:
            found[i] = result
            fresh.append(i)
        if cache is not None and fresh and (len(fresh) >= chunk_size or position == len(todo) - 1):
            cache.add(digests[fresh], [found[k] for k in fresh])
            fresh = []
    elapsed = time.perf_counter() - start
    n_new = len(todo) - len(skipped_ids)
    kept = sorted(found)
    vectors = np.stack([found[i] for i in kept]).astype(np.float32) if kept else np.zeros((0, n_bits), np.float32)
    rate = n_new / elapsed if elapsed > 0 and n_new else float("nan")
    log.info("hashed %d images with %s@%d in %.1f s (%.1f images/s), %d skipped", n_new, method,
             hash_size, elapsed, rate, len(skipped_ids))
    index = np.asarray(kept, dtype=int)
    return Embeddings(ids=ids[index].astype(str), sha256=digests[index].astype(str), vectors=vectors,
                      skipped=pd.DataFrame({"id": pd.Series(skipped_ids, dtype=object),
                                            "reason": pd.Series(reasons, dtype=object)}),
                      images_per_second=rate)


def hash_cache(cache_dir: str, method: str, hash_size: int):
    """The content cache of one hash's vectors ('' = none)."""
    return vector_cache(cache_dir, hash=method, hash_size=hash_size, decode="dct-scaled")


def _hash_shard(shard: pd.DataFrame, method: str, hash_size: int, cache_dir: str) -> int:
    """On a Dask worker: hash ``shard`` into the hash cache."""
    hash_manifest(shard, method=method, hash_size=hash_size, cache=hash_cache(cache_dir, method, hash_size),
                  chunk_size=len(shard))
    return len(shard)


def hash_images(method: str, manifest: pd.DataFrame, *, hash_size: int, cache_dir: str, engine=None) -> Embeddings:
    """One hash over every image of ``manifest`` through the content cache (``cache.dir``; '' = none), as
    the ``hash`` stage and :func:`neardup.find_duplicates` make it; see :func:`hash_manifest`. With
    ``engine.kind: dask`` the images the cache lacks are hashed on Dask workers first
    (one task per ``engine.shard_size`` images), and the output is assembled from the cache as here."""
    check_choice(method, HASH_METHODS, "hash.methods")
    if engine is not None and engine.kind == "dask":
        require_cache_dir(cache_dir, "hashes")
        map_on_dask(_hash_shard, missing_from(manifest, hash_cache(cache_dir, method, hash_size)), engine=engine,
                    what=f"hash {method}", method=method, hash_size=hash_size, cache_dir=cache_dir)
    return hash_manifest(manifest, method=method, hash_size=hash_size, cache=hash_cache(cache_dir, method, hash_size))


def run(params: dict, layout: Layout, *, method: str) -> None:
    """The hash stage: ``method`` over the real images and over the planted copies, into
    ``layout.hashes(method)`` and ``layout.hashes(method, plants=True)``. Reads ``hash``, ``cache``,
    ``engine``."""
    size, engine = params_from_dict(params, "hash").size, params_from_dict(params, "engine")
    cache_dir = params_from_dict(params, "cache").dir
    for plants in (False, True):
        start = time.perf_counter()
        hashed = hash_images(method, read_table(layout.manifest(plants=plants)), hash_size=size, cache_dir=cache_dir,
                             engine=engine)
        out = layout.hashes(method, plants=plants)
        hashed.save(out)
        record_timing(layout.root, "hash", out.stem, images=len(hashed.ids),
                      seconds=time.perf_counter() - start, rate=hashed.images_per_second)

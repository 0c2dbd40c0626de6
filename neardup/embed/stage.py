"""The embed stage: one model at one size over the real images, or over their planted copies, through
the content cache (:func:`run`)."""
from __future__ import annotations

import time

import pandas as pd

from neardup.cache import vector_cache
from neardup.contract import Embeddings, read_manifest, read_table, variant_key
from neardup.embed import Embedder
from neardup.embed.models import MODEL_NAMES
from neardup.embed.pixels import INPUT
from neardup.layout import Layout
from neardup.params import EmbedParams, EngineParams, check_choice, params_from_dict
from neardup.stage import record_timing


def run(params: dict, layout: Layout, *, model: str, size, plants: bool = False) -> None:
    """Embed the real images (or, ``plants``, the planted copies) with ``model`` at ``size`` into
    ``layout.embeddings(<model>_<size>)``. ``size``: pixels or ``auto``, which fits the real images'
    sizes in both cases. Reads the ``embed``, ``cache`` and ``engine`` groups of ``params``."""
    embed, engine = params_from_dict(params, "embed"), params_from_dict(params, "engine")
    size = size if size == "auto" else int(size)
    real = read_manifest(layout.manifest())  # an empty dataset: one clear line
    manifest = read_table(layout.manifest(plants=True)) if plants else real
    start = time.perf_counter()
    emb = embed_images(model, size, manifest, params=embed, cache_dir=params_from_dict(params, "cache").dir,
                       engine=engine, size_from=real)
    out = layout.embeddings(variant_key(model, size), plants=plants)
    emb.save(out)
    record_timing(layout.root, "embed", out.stem, images=len(emb.ids), seconds=time.perf_counter() - start,
                  rate=emb.images_per_second, runtime=emb.runtime)


def variant_cache(cache_dir: str, settings: dict):
    """The vector cache of one variant's resolved ``settings`` (model, size, weights, pooling, runtime; the
    batch size is not part of the key) and of how the pixels are made (:data:`neardup.embed.pixels.INPUT`).
    The runtime is part of it: the two agree to a cosine of 0.9999, not to the bit."""
    return vector_cache(cache_dir, input=INPUT,
                        **{key: settings[key] for key in ("model", "size", "pooling", "weights", "runtime")})


def embed_images(model: str, size, manifest: pd.DataFrame, *, params: EmbedParams, cache_dir: str,
                 size_from: pd.DataFrame | None = None, engine: EngineParams | None = None) -> Embeddings:
    """Embed every image of ``manifest`` with ``model`` at ``size``.

    Parameters
    ----------
    model : str
        One of :data:`neardup.embed.models.MODEL_NAMES`.
    size : int or 'auto'
        Input side in pixels; ``auto`` fits the image sizes of ``size_from`` (default: ``manifest``).
    manifest : DataFrame
        The images (``id, path, sha256, format, width, height``, ...).
    params : EmbedParams
        ``weights``, ``pooling``, ``batch_size``, ``runtime``.
    cache_dir : str
        ``cache.dir``: vectors by content hash, so only new images are embedded, and converted TFLite
        models ('' = no cache).
    size_from : DataFrame, optional
        The manifest whose sizes ``auto`` fits (the real images, when embedding planted copies).
    engine : EngineParams, optional
        ``kind: dask``: the images the cache lacks are embedded on Dask workers first
        (:func:`_embed_on_dask`); the output is then assembled from the cache as here.

    Returns
    -------
    Embeddings, one row per image embedded (the rest in ``skipped``).
    """
    check_choice(model, MODEL_NAMES, "embed.models")
    embedder = Embedder(model, size=size, weights=params.weights, batch_size=params.batch_size,
                        pooling=params.pooling, runtime=params.runtime, cache_dir=cache_dir,
                        manifest=manifest if size_from is None else size_from)
    settings = {"model": model, "size": embedder.size, "weights": params.weights, "pooling": params.pooling,
                "runtime": embedder.runtime, "batch_size": params.batch_size}
    if engine is not None and engine.kind == "dask":
        _embed_on_dask(manifest, settings=settings, cache_dir=cache_dir, engine=engine)
    emb = embedder.embed_manifest(manifest, cache=variant_cache(cache_dir, settings))
    emb.runtime = embedder.runtime
    return emb


#: Per Dask worker process: Embedder by settings, built on a worker's first task.
_EMBEDDERS: dict = {}


def _embed_shard(shard: pd.DataFrame, settings: dict, cache_dir: str) -> int:
    """On a Dask worker: embed ``shard`` into the vector cache; returns how many images it holds."""
    key = tuple(sorted(settings.items()))
    if key not in _EMBEDDERS:
        _EMBEDDERS[key] = Embedder(settings["model"], size=settings["size"], weights=settings["weights"],
                                   batch_size=settings["batch_size"], pooling=settings["pooling"],
                                   runtime=settings["runtime"], cache_dir=cache_dir)
    _EMBEDDERS[key].embed_manifest(shard, cache=variant_cache(cache_dir, settings), chunk_size=len(shard))
    return len(shard)


def _embed_on_dask(manifest: pd.DataFrame, *, settings: dict, cache_dir: str, engine: EngineParams) -> None:
    """Fill the vector cache for ``manifest`` on Dask workers, ``engine.shard_size`` images per task
    (only the images the cache lacks; ``settings`` resolved: ``size`` an int). The workers must see
    ``cache_dir``."""
    from neardup.engine import map_on_dask, missing_from, require_cache_dir

    require_cache_dir(cache_dir, "vectors")
    map_on_dask(_embed_shard, missing_from(manifest, variant_cache(cache_dir, settings)), engine=engine,
                what="embedding", settings=settings, cache_dir=cache_dir)

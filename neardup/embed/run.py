"""One embedding run as the ``embed`` stage and :func:`neardup.find_duplicates` make it: a model at a
size over one manifest, through the content cache."""
from __future__ import annotations

import pandas as pd

from neardup.cache import vector_cache
from neardup.contract import Embeddings
from neardup.embed import Embedder
from neardup.embed.models import MODEL_NAMES
from neardup.params import EmbedParams, EngineParams, check_choice


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
        (:func:`neardup.engine.embed_on_dask`); the output is then assembled from the cache as here.

    Returns
    -------
    Embeddings, one row per image embedded (the rest in ``skipped``).
    """
    check_choice(model, MODEL_NAMES, "embed.models")
    embedder = Embedder(model, size=size, weights=params.weights, batch_size=params.batch_size,
                        pooling=params.pooling, runtime=params.runtime, cache_dir=cache_dir,
                        manifest=manifest if size_from is None else size_from)
    if engine is not None and engine.kind == "dask":
        from neardup.engine import embed_on_dask

        embed_on_dask(manifest, model=model, size=embedder.size, params=params, runtime=embedder.runtime,
                      cache_dir=cache_dir, engine=engine)
    # the runtime is part of the key: the two agree to a cosine of 0.9999, not to the last bit
    cache = vector_cache(cache_dir, model=model, size=embedder.size, pooling=params.pooling, weights=params.weights,
                         runtime=embedder.runtime)
    emb = embedder.embed_manifest(manifest, cache=cache)
    emb.runtime = embedder.runtime
    return emb

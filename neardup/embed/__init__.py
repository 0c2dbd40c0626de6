"""embed: every image of a manifest through an EfficientNet, via a ``tf.data`` input pipeline.

Aspect ratio: each image is centre-cropped to a square (the short side times the model family's
crop fraction: ``size / (size + 32)`` for EfficientNet-Lite, the whole short side for B0-B7) and
resized to ``size x size`` with bicubic interpolation, so nothing is stretched.
"""
from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from neardup.contract import Embeddings, UserError

log = logging.getLogger(__name__)

#: Formats that ``tf.io.decode_image`` reads natively; others are decoded with Pillow.
TF_FORMATS = frozenset({"JPEG", "PNG", "GIF", "BMP"})


def import_tensorflow():
    """``import tensorflow``, or a :class:`~neardup.contract.UserError` that says which extra installs it."""
    try:
        import tensorflow as tf
    except ModuleNotFoundError as exc:
        if exc.name != "tensorflow":
            raise
        raise UserError("TensorFlow is not installed: pip install 'neardup[cpu]' (CPU only) or "
                        "'neardup[gpu]' (NVIDIA GPUs, CUDA included); see README.md#install") from exc
    return tf


def detect_strategy():
    """Return the strategy embedding runs under: TPU, every GPU mirrored, or the default (CPU).

    * A TPU is only looked for when the environment announces one (``TPU_NAME``, ``COLAB_TPU_ADDR``
      or ``/dev/accel0``), so an offline CPU machine never waits on a metadata server.
    * With one GPU or more, a ``MirroredStrategy`` over all of them: the model is replicated on each
      GPU and every global batch is split across them (one GPU: the same, on that GPU). GPU memory
      is allocated as needed rather than all at once, so a notebook's other work keeps its share
      (only possible before TensorFlow first touches the GPUs; otherwise left as it is).
    * Otherwise TensorFlow's default strategy: one replica on the CPU.

    Which one was chosen is logged by :class:`Embedder` (see :func:`describe_strategy`).
    """
    tf = import_tensorflow()

    if os.environ.get("TPU_NAME") or os.environ.get("COLAB_TPU_ADDR") or Path("/dev/accel0").exists():
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
            return tf.distribute.TPUStrategy(resolver)
        except (ValueError, RuntimeError) as exc:  # pragma: no cover - needs a TPU
            log.warning("TPU announced but not usable (%s); falling back", exc)
    for gpu in tf.config.list_physical_devices("GPU"):  # pragma: no cover - needs a GPU
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except (RuntimeError, ValueError):  # already initialised, or a virtual-device setup
            pass
    gpus = tf.config.list_logical_devices("GPU")
    if gpus:
        return tf.distribute.MirroredStrategy(devices=[gpu.name for gpu in gpus])
    return tf.distribute.get_strategy()


def describe_strategy(strategy) -> str:
    """Where ``strategy`` runs the model, for the log: ``'2 GPU(s): GPU:0 (Tesla T4), GPU:1 (...)'``,
    ``'TPU (8 cores)'`` or ``'CPU'``."""
    import tensorflow as tf

    if isinstance(strategy, tf.distribute.TPUStrategy):  # pragma: no cover - needs a TPU
        return f"TPU ({strategy.num_replicas_in_sync} cores)"
    try:
        devices = list(strategy.extended.worker_devices)
    except RuntimeError:  # the default strategy: TensorFlow places ops on GPU:0 if it sees one
        gpus = tf.config.list_logical_devices("GPU")
        devices = [gpus[0].name] if gpus else []
    names = {}
    for i, gpu in enumerate(tf.config.list_physical_devices("GPU")):  # pragma: no cover - needs a GPU
        try:
            names[f"GPU:{i}"] = tf.config.experimental.get_device_details(gpu).get("device_name", "")
        except (RuntimeError, ValueError):
            pass
    shown = []
    for device in devices:
        short = device.split("device:")[-1]
        shown.append(f"{short} ({names[short]})" if names.get(short) else short)
    gpus = [d for d in shown if d.startswith("GPU")]
    if gpus:
        return f"{len(gpus)} GPU(s): " + ", ".join(gpus)
    if len(shown) > 1:  # several logical devices of another kind (e.g. CPUs split for testing)
        return f"{len(shown)} replicas: " + ", ".join(shown)
    return "CPU"


def _pil_decode(path):
    from neardup.decode import open_rgb

    # the decoder every stage shares: first frame, EXIF orientation applied, RGB (checked at fetch: no cap)
    return np.asarray(open_rgb(path.decode() if isinstance(path, bytes) else path, max_pixels=None), dtype=np.uint8)


#: Decode modes, one per image: Pillow, ``tf.io.decode_image``, or JPEG with DCT downscaling 1/2/4/8.
PIL_DECODE, TF_DECODE = 0, 1
JPEG_RATIOS = (1, 2, 4, 8)


def decode_modes(formats, widths, heights, *, size: int, crop_fraction: float, orientations=None) -> np.ndarray:
    """Choose how each image is decoded.

    JPEGs are decoded at the largest DCT scale 1/r (r in 1, 2, 4, 8) that still leaves the crop at
    least ``size`` pixels, which skips most of the decoding work for photos much larger than the
    model input; other TensorFlow formats use ``decode_image``; the rest go through Pillow. Images
    with an EXIF orientation other than 1 (``orientations``, the manifest column) always go through
    Pillow (:func:`neardup.decode.open_rgb`): TensorFlow's decoders ignore EXIF, and every stage must
    see the same upright pixels.

    Returns
    -------
    ndarray of int, shape (n,): ``PIL_DECODE``, ``TF_DECODE`` or ``2 + k`` for ``JPEG_RATIOS[k]``.
    """
    formats = np.asarray(formats, dtype=str)
    short = np.minimum(np.asarray(widths, dtype=float), np.asarray(heights, dtype=float)) * crop_fraction
    modes = np.where(np.isin(formats, sorted(TF_FORMATS)), TF_DECODE, PIL_DECODE)
    for k, ratio in enumerate(JPEG_RATIOS):
        modes = np.where((formats == "JPEG") & (short / ratio >= size), 2 + k, modes)
    modes = np.where((formats == "JPEG") & (modes == TF_DECODE), 2, modes)  # small JPEGs: ratio 1
    if orientations is not None:
        modes = np.where(np.asarray(orientations, dtype=int) != 1, PIL_DECODE, modes)
    return modes.astype(np.int32)


def image_dataset(paths, *, size: int, crop_fraction: float, batch_size: int, modes=None,
                  threads: int = 0, keep_going: bool = True):
    """Build the input pipeline: parallel read + decode + centre crop + bicubic resize, batched.

    Parameters
    ----------
    paths : sequence of str, length n
        Image files, in the order the batches must keep (no shuffle).
    size : int
        Output side in pixels.
    crop_fraction : float
        Fraction of the short side kept by the centre crop (1.0 keeps the whole short side).
    batch_size : int
        Global batch size.
    modes : sequence of int, length n, optional
        Per image decode mode from :func:`decode_modes`. Default: ``decode_image`` for all.
    threads : int
        Size of a private thread pool for the input pipeline; 0 uses TensorFlow's shared pool.
    keep_going : bool
        Drop images that fail to decode instead of stopping; their index is then missing from
        the batches, so callers can list them.

    Returns
    -------
    tf.data.Dataset yielding ``(index, images)``: int64 ``(b,)`` and float32 ``(b, size, size, 3)``
    RGB pixels in [0, 255].
    """
    import tensorflow as tf

    n = len(paths)
    modes = np.full(n, TF_DECODE, np.int32) if modes is None else np.asarray(modes, np.int32)

    def load(index, path, mode):
        data = tf.io.read_file(path)
        branches = [lambda: tf.numpy_function(_pil_decode, [path], tf.uint8, stateful=False),
                    lambda: tf.io.decode_image(data, channels=3, expand_animations=False)]
        branches += [lambda r=r: tf.io.decode_jpeg(data, channels=3, ratio=r) for r in JPEG_RATIOS]
        image = tf.ensure_shape(tf.switch_case(mode, branches), [None, None, 3])
        shape = tf.shape(image)
        side = tf.cast(tf.cast(tf.minimum(shape[0], shape[1]), tf.float32) * crop_fraction, tf.int32)
        side = tf.maximum(side, 1)
        top = (shape[0] - side) // 2
        left = (shape[1] - side) // 2
        image = image[top:top + side, left:left + side]
        image = tf.image.resize(tf.cast(image, tf.float32), [size, size], method="bicubic", antialias=True)
        return index, tf.clip_by_value(image, 0.0, 255.0)

    ds = tf.data.Dataset.from_tensor_slices((np.arange(n, dtype=np.int64), np.asarray(paths, dtype=str), modes))
    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if keep_going:
        ds = ds.ignore_errors()
    ds = ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
    if threads:
        options = tf.data.Options()
        options.threading.private_threadpool_size = threads
        ds = ds.with_options(options)
    return ds


class Embedder:
    """A model built once under the detected strategy, with its input pipeline settings.

    Parameters
    ----------
    model_name : str
        A name from :data:`neardup.embed.models.MODEL_NAMES`.
    size : int or 'auto'
        Square input side in pixels; ``'auto'`` picks it from ``manifest`` (see
        :meth:`neardup.embed.models.ModelSpec.auto_size`).
    weights : str
        See :func:`neardup.embed.models.build_embedder`.
    batch_size : int
        Per replica; the global batch is ``batch_size * replicas``.
    pooling : {'avg', 'max'}
        Global pooling of the last feature map.
    manifest : DataFrame with columns ``width, height``, optional
        The images whose sizes ``size='auto'`` fits.
    """

    def __init__(self, model_name: str, *, size, weights: str, batch_size: int, pooling: str, strategy=None,
                 manifest: pd.DataFrame | None = None):
        tf = import_tensorflow()
        from neardup.embed.models import build_embedder, get_spec

        if size == "auto":
            if manifest is None:
                raise ValueError("size='auto' needs the manifest whose image sizes it fits")
            size = get_spec(model_name).auto_size(manifest["width"].astype(int), manifest["height"].astype(int))
            log.info("%s: size auto -> %d px", model_name, size)
        self.model_name, self.size = model_name, size
        self.crop_fraction = get_spec(model_name).crop_fraction(size)
        self.strategy = strategy or detect_strategy()
        self.replicas = self.strategy.num_replicas_in_sync
        self.global_batch = batch_size * self.replicas
        log.info("embedding on %s; batch %d per replica, %d global", describe_strategy(self.strategy),
                 batch_size, self.global_batch)
        with self.strategy.scope():
            self.model = build_embedder(model_name, size=size, weights=weights, pooling=pooling)
        self.dim = int(self.model.output_shape[-1])
        # On CPU the model and the decoders share the cores: give decoding its own pool of half of
        # them, which keeps the two from oversubscribing (measured: 0.55 -> 0.9 of model-only speed
        # on 2 cores). With an accelerator the cores are all the decoders'.
        on_cpu = not tf.config.list_logical_devices("GPU") and not tf.config.list_logical_devices("TPU")
        self.decode_threads = max(1, (os.cpu_count() or 2) // 2) if on_cpu else 0
        model, strategy = self.model, self.strategy
        self.forward = tf.function(lambda images: model(images, training=False))  # one device
        # every replica's forward pass in one traced function: no Python thread per replica per batch
        self.step = tf.function(lambda images: strategy.run(lambda x: model(x, training=False), args=(images,)))

    def dataset(self, paths, modes):
        """The batched ``(index, images)`` input pipeline for ``paths`` (see :func:`image_dataset`)."""
        return image_dataset(paths, size=self.size, crop_fraction=self.crop_fraction,
                             batch_size=self.global_batch, modes=modes,
                             threads=self.decode_threads)

    def _local(self, value) -> np.ndarray:
        """A per-replica value as one host array, replicas in order (no device-to-device gather)."""
        return np.concatenate([np.asarray(part) for part in self.strategy.experimental_local_results(value)])

    def batches(self, dataset, *, total: int | None = None, desc: str = "embed"):
        """Run the model over a dataset of ``(index, images)``; yield ``(index, vectors)`` as numpy.

        Each global batch is split across the strategy's replicas (each GPU gets ``batch_size``
        images; the last, short batch may leave some replicas with none), and the pieces come back
        in replica order, so indices and vectors stay paired.
        """
        ds = self.strategy.experimental_distribute_dataset(dataset)
        for index, images in tqdm(ds, total=total, desc=desc, unit="batch", leave=False):
            yield self._local(index), self._local(self.step(images))

    def infer(self, images) -> np.ndarray:
        """Vectors of one global batch already in memory (``(b, size, size, 3)``), split across the
        replicas like :meth:`batches` does; for timing the model without the input pipeline."""
        if self.replicas == 1:
            return np.asarray(self.forward(images))
        per = -(-int(images.shape[0]) // self.replicas)

        def piece(context):
            first = context.replica_id_in_sync_group * per
            return images[first:first + per]

        values = self.strategy.experimental_distribute_values_from_function(piece)
        return self._local(self.step(values))

    def embed_manifest(self, manifest: pd.DataFrame, *, cache=None, chunk_size: int = 1024) -> Embeddings:
        """Embed every image of ``manifest`` (columns ``id, path, sha256, format, width, height``).

        Images TensorFlow cannot decode are retried with Pillow; those that still fail land in
        ``Embeddings.skipped`` with the reason. Row order follows the manifest (no shuffle).

        Parameters
        ----------
        cache : neardup.cache.VectorCache, optional
            Vectors already computed for these settings, by content sha256: those images are not
            decoded again, and every finished chunk of ``chunk_size`` new images is stored at once,
            so a killed run resumes where it stopped.

        Returns
        -------
        Embeddings with ``vectors`` of shape (n_embedded, d), float32; ``images_per_second``
        counts the images embedded in this call (NaN when all came from the cache).
        """
        paths = manifest["path"].astype(str).to_numpy()
        sha = manifest["sha256"].astype(str).to_numpy()
        modes = decode_modes(manifest["format"], manifest["width"].astype(int), manifest["height"].astype(int),
                             size=self.size, crop_fraction=self.crop_fraction,
                             orientations=manifest["orientation"] if "orientation" in manifest else None)
        vectors: dict[int, np.ndarray] = {}

        def run(indices, modes, desc):
            total = math.ceil(len(indices) / self.global_batch)
            for index, feats in self.batches(self.dataset(paths[indices], modes), total=total, desc=desc):
                vectors.update((int(indices[i]), f) for i, f in zip(index, feats))
            if cache is not None:
                done = [int(i) for i in indices if int(i) in vectors]
                cache.add(sha[done], [vectors[i] for i in done])

        everything = np.arange(len(paths))
        if cache is not None:
            vectors.update((int(i), cache.get(sha[i])) for i in everything if sha[i] in cache)
            if vectors:
                log.info("%d of %d images taken from the vector cache", len(vectors), len(paths))
        todo = np.array([i for i in everything if i not in vectors], dtype=int)
        start = time.perf_counter()
        step = max(1, int(chunk_size)) if cache is not None else max(1, len(todo))
        for first in range(0, len(todo), step):
            chunk = todo[first:first + step]
            run(chunk, modes[chunk], f"embed {self.model_name}@{self.size} [{first + len(chunk)}/{len(todo)}]")
        elapsed = time.perf_counter() - start
        n_new = sum(1 for i in todo if i in vectors)
        missing = np.array([i for i in everything if i not in vectors], dtype=int)
        if len(missing):
            log.warning("%d images failed TensorFlow decoding; retrying with Pillow", len(missing))
            run(missing, np.full(len(missing), PIL_DECODE), "retry with Pillow")
        failed = [i for i in everything if i not in vectors]
        skipped = pd.DataFrame({"id": manifest["id"].to_numpy()[failed].astype(str),
                                "reason": ["could not be decoded for embedding"] * len(failed)})
        for image_id in skipped["id"]:
            log.error("skipped %s: could not be decoded for embedding", image_id)
        kept = np.array(sorted(vectors), dtype=int)
        matrix = (np.stack([vectors[i] for i in kept]).astype(np.float32) if len(kept)
                  else np.zeros((0, self.dim), np.float32))
        rate = n_new / elapsed if n_new and elapsed > 0 else float("nan")
        log.info("embedded %d new images with %s@%d in %.1f s (%.1f images/s)", n_new, self.model_name,
                 self.size, elapsed, rate)
        return Embeddings(ids=manifest["id"].to_numpy()[kept].astype(str),
                          sha256=manifest["sha256"].to_numpy()[kept].astype(str),
                          vectors=matrix, skipped=skipped, images_per_second=rate, input_size=self.size)


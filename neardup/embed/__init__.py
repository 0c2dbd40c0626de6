"""embed: every image of a manifest through an EfficientNet, on one of two runtimes.

* ``tflite`` (the default on a CPU): the model converted to TFLite and run by TensorFlow's
  interpreter with XNNPACK (:mod:`neardup.embed.tflite`), about twice as fast as Keras, same vectors.
* ``keras`` (the default with GPUs or a TPU): the Keras model under a ``tf.distribute`` strategy,
  every global batch split across the accelerators.

Both read the same pixels (:mod:`neardup.embed.pixels`): each image centre-cropped to a square (the
short side times the model family's crop fraction: ``size / (size + 32)`` for EfficientNet-Lite, the
whole short side for B0-B7) and resized to ``size x size`` with bicubic interpolation, so nothing is
stretched.
"""
from __future__ import annotations

import logging
import math
import os
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from neardup.engine import cpu_cores, tqdm
from neardup.contract import Embeddings, UserError
from neardup.embed.pixels import pixel_batches
from neardup.params import RUNTIMES, check_choice

log = logging.getLogger(__name__)


#: Start-up notices TensorFlow's C++ side writes to stderr whatever ``TF_CPP_MIN_LOG_LEVEL`` says
#: (TensorFlow 2.21: the oneDNN notice through absl before its logging starts; TFLite's XNNPACK note).
NATIVE_NOTICES = ("oneDNN custom operations are on", "All log messages before absl::InitializeLog()",
                  "Created TensorFlow Lite XNNPACK delegate")


@contextmanager
def native_notices_kept_off_stderr():
    """Run the block with file descriptor 2 (native code's stderr) captured; afterwards every captured
    line but the :data:`NATIVE_NOTICES` is written to stderr, so errors and warnings still show.
    ``NEARDUP_LOG_LEVEL=DEBUG`` lets everything through as it comes."""
    if os.environ.get("NEARDUP_LOG_LEVEL", "").upper() == "DEBUG":
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            lines = captured.read().decode("utf-8", "replace").splitlines()
            rest = [line for line in lines if line.strip() and not any(n in line for n in NATIVE_NOTICES)]
            if rest:
                sys.stderr.write("\n".join(rest) + "\n")


def import_tensorflow():
    """``import tensorflow``, or a :class:`~neardup.contract.UserError` that says which extra installs it.
    TensorFlow's C++ start-up notices are kept off stderr (:func:`native_notices_kept_off_stderr`)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        if "tensorflow" not in sys.modules:
            with native_notices_kept_off_stderr():
                import tensorflow  # noqa: F401
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

    if tpu_announced():
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


def tpu_announced() -> bool:
    """Whether the environment announces a TPU (``TPU_NAME``, ``COLAB_TPU_ADDR`` or ``/dev/accel0``)."""
    return bool(os.environ.get("TPU_NAME") or os.environ.get("COLAB_TPU_ADDR") or Path("/dev/accel0").exists())


def has_accelerator() -> bool:
    """Whether TensorFlow sees a GPU, or the environment announces a TPU (without initialising either)."""
    return bool(import_tensorflow().config.list_physical_devices("GPU") or tpu_announced())


class Embedder:
    """A model built once, on the chosen runtime, with its input pipeline settings.

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
        Images per batch (``keras``: per replica, the global batch is ``batch_size * replicas``;
        ``tflite`` runs them one by one, XNNPACK's fastest).
    pooling : {'avg', 'max'}
        Global pooling of the last feature map.
    runtime : {'auto', 'tflite', 'keras'}
        ``auto``: ``keras`` when a GPU or TPU is present (or ``strategy`` is given), else ``tflite``.
    cache_dir : str
        ``cache.dir``: where the ``tflite`` runtime keeps converted models ('' = convert every time).
    strategy : tf.distribute.Strategy, optional
        ``keras`` only; default: :func:`detect_strategy`.
    manifest : DataFrame with columns ``width, height``, optional
        The images whose sizes ``size='auto'`` fits.
    """

    def __init__(self, model_name: str, *, size, weights: str, batch_size: int, pooling: str,
                 runtime: str = "auto", cache_dir: str = "", strategy=None, manifest: pd.DataFrame | None = None):
        from neardup.embed.models import build_embedder, get_spec
        from neardup.embed.tflite import TFLiteModel, cached_flatbuffer

        check_choice(runtime, RUNTIMES, "embed.runtime")
        import_tensorflow()
        if size == "auto":
            if manifest is None:
                raise ValueError("size='auto' needs the manifest whose image sizes it fits")
            size = get_spec(model_name).auto_size(manifest["width"].astype(int), manifest["height"].astype(int))
            log.info("%s: size auto -> %d px", model_name, size)
        self.model_name, self.size = model_name, size
        self.crop_fraction = get_spec(model_name).crop_fraction(size)
        accelerated = has_accelerator()
        if runtime == "auto":
            runtime = "keras" if accelerated or strategy is not None else "tflite"
        self.runtime, cores = runtime, cpu_cores()

        def build():
            return build_embedder(model_name, size=size, weights=weights, pooling=pooling)

        if runtime == "tflite":
            self.strategy, self.replicas, self.global_batch = None, 1, batch_size
            content = cached_flatbuffer(model_name, size=size, pooling=pooling, weights=weights,
                                        cache_dir=cache_dir, build=build)
            self.model = TFLiteModel(content, threads=cores)
            self.dim = self.model.dim
            where = f"CPU with TFLite/XNNPACK, {cores} threads"
        else:
            self.strategy = strategy or detect_strategy()
            self.replicas = self.strategy.num_replicas_in_sync
            self.global_batch = batch_size * self.replicas
            with self.strategy.scope():
                self.model = build()
            self.dim = int(self.model.output_shape[-1])
            self._keras_step()
            where = (f"{describe_strategy(self.strategy)} with Keras, batch {batch_size} per replica, "
                     f"{self.global_batch} global")
        # Decoding runs in one thread per core. On a CPU it alternates with the model, each phase on
        # every core, so the two never oversubscribe the cores: the model keeps every core busy, so
        # end to end / model alone is its CPU time / (its CPU time + the input's), 0.83-0.93 on 2 cores
        # (docs/performance.md#end-to-end-against-model-alone); one decode thread beside the model
        # measured 0.72-0.80. With an accelerator the next batches are decoded while the model runs.
        self.decode_threads, self.overlap = cores, accelerated and runtime == "keras"
        log.info("embedding %s@%d on %s; decoding in %d threads%s", model_name, size, where, self.decode_threads,
                 ", beside the model" if self.overlap else ", between batches")

    def _keras_step(self) -> None:
        import tensorflow as tf

        model, strategy = self.model, self.strategy
        self.forward = tf.function(lambda images: model(images, training=False))  # one device
        # every replica's forward pass in one traced function: no Python thread per replica per batch
        self.step = tf.function(lambda images: strategy.run(lambda x: model(x, training=False), args=(images,)))

    def _local(self, value) -> np.ndarray:
        """A per-replica value as one host array, replicas in order (no device-to-device gather)."""
        return np.concatenate([np.asarray(part) for part in self.strategy.experimental_local_results(value)])

    def infer(self, pixels: np.ndarray) -> np.ndarray:
        """Vectors ``(b, dim)`` float32 of pixels ``(b, size, size, 3)`` (uint8 or float, RGB in [0, 255]).

        ``keras``: each global batch is padded to the full global batch (one traced shape) and split
        across the replicas, the pieces back in replica order."""
        if self.runtime == "tflite":
            return self.model(pixels)
        if len(pixels) > self.global_batch:
            return np.concatenate([self.infer(pixels[i:i + self.global_batch])
                                   for i in range(0, len(pixels), self.global_batch)])
        b = len(pixels)
        images = np.zeros((self.global_batch,) + pixels.shape[1:], np.float32)
        images[:b] = pixels
        if self.replicas == 1:
            return np.asarray(self.forward(images))[:b]
        per = self.global_batch // self.replicas

        def piece(context):
            first = context.replica_id_in_sync_group * per
            return images[first:first + per]

        values = self.strategy.experimental_distribute_values_from_function(piece)
        return self._local(self.step(values))[:b]

    def batches(self, paths, *, failed: list | None = None, desc: str = "embed"):
        """Decode, preprocess and embed ``paths``; yield ``(indices, vectors)`` per batch, in order.

        Images that cannot be decoded are left out, their index appended to ``failed``."""
        total = math.ceil(len(paths) / self.global_batch)
        pixels = pixel_batches(paths, size=self.size, crop_fraction=self.crop_fraction, batch_size=self.global_batch,
                               threads=self.decode_threads, failed=failed, overlap=self.overlap)
        for index, images in tqdm(pixels, total=total, desc=desc, unit="batch", leave=False):
            yield index, self.infer(images)

    def embed_manifest(self, manifest: pd.DataFrame, *, cache=None, chunk_size: int = 1024) -> Embeddings:
        """Embed every image of ``manifest`` (columns ``id, path, sha256``).

        Images that cannot be decoded land in ``Embeddings.skipped`` with the reason. Row order
        follows the manifest (no shuffle).

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
        # one preallocated array: every vector is written once, never kept per image nor stacked again
        matrix = np.zeros((len(paths), self.dim), np.float32)
        have = np.zeros(len(paths), bool)
        if cache is not None:
            for i in range(len(paths)):
                if sha[i] in cache:
                    matrix[i], have[i] = cache.get(sha[i]), True
            if have.any():
                log.info("%d of %d images taken from the vector cache", int(have.sum()), len(paths))
        todo = np.flatnonzero(~have)
        start, cpu = time.perf_counter(), time.process_time()
        step = max(1, int(chunk_size)) if cache is not None else max(1, len(todo))
        for first in range(0, len(todo), step):
            chunk = todo[first:first + step]
            desc = f"embed {self.model_name}@{self.size} [{first + len(chunk)}/{len(todo)}]"
            done = []
            for index, feats in self.batches(paths[chunk], desc=desc):
                rows = chunk[index]
                matrix[rows], have[rows] = feats, True
                done.extend(rows.tolist())
            if cache is not None and done:
                contiguous = done == list(range(done[0], done[0] + len(done)))  # a view: the cache keeps no copy
                cache.add(sha[done], matrix[done[0]:done[0] + len(done)] if contiguous else matrix[done])
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
        n_new = int(have[todo].sum())
        failed = np.flatnonzero(~have)
        skipped = pd.DataFrame({"id": manifest["id"].to_numpy()[failed].astype(str),
                                "reason": ["could not be decoded for embedding"] * len(failed)})
        for image_id in skipped["id"]:
            log.error("skipped %s: could not be decoded for embedding", image_id)
        kept = np.flatnonzero(have)
        if len(failed):
            matrix = matrix[kept]
        rate = n_new / elapsed if n_new and elapsed > 0 else float("nan")
        log.info("embedded %d new images with %s@%d in %.1f s, %.1f CPU s (%.1f images/s, runtime %s)", n_new,
                 self.model_name, self.size, elapsed, cpu, rate, self.runtime)
        return Embeddings(ids=manifest["id"].to_numpy()[kept].astype(str),
                          sha256=manifest["sha256"].to_numpy()[kept].astype(str),
                          vectors=matrix, skipped=skipped, images_per_second=rate, input_size=self.size)

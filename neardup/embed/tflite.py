"""The ``tflite`` runtime: each embedder converted once to a TFLite flatbuffer and run by TensorFlow's
own interpreter with XNNPACK on every core.

Same weights, same vectors (cosine >= 0.9999 against the Keras model, tested), about twice the speed
of the Keras model on a CPU (``make bench``). The flatbuffer is cached in ``<cache.dir>/tflite/`` under a
key of model, size, pooling, the sha256 of the weights file, TensorFlow's version and the cache version,
with a sidecar holding its own sha256: a file that does not match is deleted with a warning and
converted again. No new dependency: the converter, the interpreter and XNNPACK ship with TensorFlow.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
import warnings
from pathlib import Path

import numpy as np

from neardup.contract import atomic_write
from neardup.cache import CACHE_VERSION, descriptor_key, sha256_file

log = logging.getLogger(__name__)


def weights_digest(model_name: str, weights) -> str:
    """The sha256 of the file ``weights`` resolves to for ``model_name`` ('none': ``'none'``), so a cached
    flatbuffer is never reused for other weights under the same name."""
    from neardup.embed.lite_weights import lite_weights_path
    from neardup.embed.models import _check_args, cached_b_weights, get_spec

    spec, weights = _check_args(model_name, get_spec(model_name).native_size, weights)
    if weights == "none":
        return "none"
    if weights in ("imagenet", "noisy-student"):
        weights = (lite_weights_path(int(spec.name[-1])) if spec.family == "lite"
                   else cached_b_weights(spec.name, weights))
    return sha256_file(weights)


def convert(model) -> bytes:
    """A Keras embedder as a float32 TFLite flatbuffer with input ``(1, size, size, 3)``.

    The forward pass is traced for one image and its variables frozen into constants first:
    converting the Keras 3 model's concrete function as it is keeps the weights as variables (a
    186 KiB file), and the SavedModel route (``model.export``) gives the same vectors in 20 s
    instead of 5 s (measured)."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    size = int(model.input_shape[1])
    forward = tf.function(lambda images: model(images, training=False))
    frozen = convert_variables_to_constants_v2(
        forward.get_concrete_function(tf.TensorSpec([1, size, size, 3], tf.float32)))
    absl = logging.getLogger("absl")  # "consider providing the trackable_obj argument": the frozen route is chosen
    level = absl.level
    absl.setLevel(logging.ERROR)
    try:
        return tf.lite.TFLiteConverter.from_concrete_functions([frozen]).convert()
    finally:
        absl.setLevel(level)


def cached_flatbuffer(model_name: str, *, size: int, pooling: str, weights, cache_dir: str, build) -> bytes:
    """The flatbuffer of ``model_name`` at ``size``, from ``<cache_dir>/tflite/`` or converted from
    ``build()`` (the Keras model) and stored there; ``cache_dir`` empty: converted every time."""
    import tensorflow as tf

    settings = {"model": model_name, "size": size, "pooling": pooling, "weights": str(weights),
                "weights_sha256": weights_digest(model_name, weights), "tensorflow": tf.__version__,
                "version": CACHE_VERSION}
    folder = Path(cache_dir) / "tflite" if cache_dir else None
    key = descriptor_key(**settings)
    if folder is not None:
        content = _read_verified(folder / f"{key}.tflite", folder / f"{key}.json")
        if content is not None:
            log.info("%s@%d: TFLite model from %s", model_name, size, folder / f"{key}.tflite")
            return content
    start = time.perf_counter()
    content = convert(build())
    log.info("%s@%d: converted to TFLite in %.1f s", model_name, size, time.perf_counter() - start)
    if folder is not None:
        for name, data in ((f"{key}.tflite", content),
                           (f"{key}.json", json.dumps({**settings, "sha256": hashlib.sha256(content).hexdigest()},
                                                      indent=1).encode())):
            atomic_write(folder / name, data)
    return content


def _read_verified(path: Path, sidecar: Path) -> bytes | None:
    """The cached flatbuffer if it and its sidecar exist and its sha256 matches; otherwise None (a
    file that fails the check is deleted with a warning)."""
    if not path.is_file():
        return None
    try:
        expected = json.loads(sidecar.read_text())["sha256"]
        content = path.read_bytes()
    except (OSError, ValueError, KeyError, TypeError) as exc:
        why = f"has no readable sidecar {sidecar.name} ({type(exc).__name__})"
    else:
        if hashlib.sha256(content).hexdigest() == expected:
            return content
        why = "fails its checksum (changed after it was written)"
    log.warning("cached TFLite model %s %s: deleted it; converting again", path, why)
    path.unlink(missing_ok=True)
    sidecar.unlink(missing_ok=True)
    return None


class TFLiteModel:
    """A flatbuffer in TensorFlow's interpreter (XNNPACK on ``threads`` cores), one image per call:
    on a CPU, XNNPACK runs batch 1 fastest (measured, ``make bench``).

    Parameters
    ----------
    content : bytes
        The flatbuffer, input ``(1, size, size, 3)`` float32 pixels in [0, 255].
    threads : int
        Interpreter threads.
    """

    def __init__(self, content: bytes, *, threads: int):
        import tensorflow as tf

        from neardup.embed import native_notices_kept_off_stderr

        with warnings.catch_warnings(), native_notices_kept_off_stderr():  # same kernels as ai_edge_litert
            warnings.simplefilter("ignore")  # "tf.lite.Interpreter is deprecated"
            self.interpreter = tf.lite.Interpreter(model_content=content, num_threads=threads)
            self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]["index"]
        self.output = self.interpreter.get_output_details()[0]["index"]
        self.dim = int(self.interpreter.get_output_details()[0]["shape"][-1])

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        """Vectors ``(b, dim)`` float32 of ``pixels`` ``(b, size, size, 3)`` (uint8 or float)."""
        out = np.empty((len(pixels), self.dim), np.float32)
        for i, image in enumerate(pixels):
            self.interpreter.set_tensor(self.input, image[None].astype(np.float32))
            self.interpreter.invoke()
            out[i] = self.interpreter.get_tensor(self.output)[0]
        return out

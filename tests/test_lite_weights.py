"""Tests for neardup.embed.lite_weights: the torch-free reader of the EfficientNet-Lite .pth files."""
import io
import os
import pickle

import numpy as np
import pytest

from neardup.embed.lite_weights import lite_weights_path, load_torch_state_dict


def test_lite_weights_path_finds_packaged_files():
    for variant in (0, 1, 2):
        path = lite_weights_path(variant)
        assert path.is_file() and path.name.startswith(f"efficientnet-lite{variant}-") and path.suffix == ".pth"
    with pytest.raises(ValueError, match="variant"):
        lite_weights_path(3)


def test_load_lite0_state_dict():
    state = load_torch_state_dict(lite_weights_path(0))
    assert len(state) == 296
    assert sum(a.size for a in state.values()) == 4_694_073
    assert next(iter(state)) == "_conv_stem.weight"
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_conv_stem.weight"].dtype == np.float32
    assert state["_fc.weight"].shape == (1000, 1280)
    assert state["_blocks.15._depthwise_conv.weight"].shape == (1152, 1, 3, 3)
    assert not any("_se_" in name for name in state)  # Lite has no squeeze-excite
    assert all(np.isfinite(a).all() for a in state.values())
    assert (state["_bn1.running_var"] > 0).all()


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _legacy_header():
    buf = io.BytesIO()
    for obj in (0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001, "little_endian": True}):
        pickle.dump(obj, buf, protocol=2)
    return buf.getvalue()


@pytest.mark.parametrize("with_header", [False, True], ids=["first-pickle", "state-dict-pickle"])
def test_malicious_pickle_is_refused(tmp_path, with_header):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    path.write_bytes((_legacy_header() if with_header else b"") + pickle.dumps({"w": _Evil(marker)}, protocol=2))
    with pytest.raises(pickle.UnpicklingError, match=r"(posix|os)\.system"):
        load_torch_state_dict(path)
    assert not marker.exists()


def test_not_a_torch_file(tmp_path):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"\x00\x01 definitely not a pickle")
    with pytest.raises(ValueError, match="not a legacy torch"):
        load_torch_state_dict(junk)
    zipped = tmp_path / "zipped.pth"
    zipped.write_bytes(b"PK\x03\x04" + b"\x00" * 40)
    with pytest.raises(ValueError, match="zip-format"):
        load_torch_state_dict(zipped)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(lite_weights_path(0).read_bytes()[:100_000])
    with pytest.raises(ValueError, match="truncated"):
        load_torch_state_dict(truncated)
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        load_torch_state_dict(tmp_path / "missing.pth")

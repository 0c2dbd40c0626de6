"""A proof that a shared overlay cannot fake (issue 25): different real photos that carry the same
camera-trap bar, date stamp, watermark or UI frame have keypoints that agree on one transform there,
and are never proven copies; their real copies (crop, strong JPEG, thumbnail, mirror), made after the
overlay, still are. The set is benchmarks/overlays.py's, smaller."""
from __future__ import annotations

import sys
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))

from overlays import judge, make_overlay_set, overlay, photos  # noqa: E402


@pytest.fixture(scope="module")
def params():
    from neardup.params import default_params
    from neardup.params import params_from_dict

    return params_from_dict(default_params(), "cluster").verify


def test_a_shared_overlay_never_proves_a_copy_and_real_copies_stay_proven(tmp_path, params):
    table = make_overlay_set(tmp_path / "set", n_photos=6, n_copied=2)
    judged = judge(table, params)
    different, copies = judged[judged["kind"] == "different"], judged[judged["kind"] == "copy"]
    assert len(different) == 4 * 15 and len(copies) == 4 * 2 * 4
    # the keypoints alone are fooled (that is the trap), the pixels are not
    assert different["keypoints"].sum() >= 30 and set(different[different["keypoints"]]["overlay"]) >= {
        "trap", "watermark", "frame"}
    assert not different["proven"].any(), different[different["proven"]]
    assert copies["proven"].all(), copies[~copies["proven"]]
    assert different["agreement"].max() < params.min_agreement <= copies["agreement"].min()
    # with the pixel check off, keypoints alone prove the overlays again: the check is what holds
    from neardup.verify import proof

    off = replace(params, min_agreement=0.0)
    fooled = different[different["keypoints"]].iloc[0]
    from neardup.keypoints import extract
    from neardup.verify import match

    a, b = (table.at[fooled[k], "path"] for k in ("a", "b"))
    m = match(extract(a), extract(b))
    assert proof(m, a, b, off) and not proof(m, a, b, params)


def test_a_dark_photo_and_a_textured_one_sharing_a_bar_are_no_copy(tmp_path, params):
    """The bar is all the dark photo shows: its own cells agree, the textured photo's do not."""
    from neardup.keypoints import extract
    from neardup.verify import agreement, match, proof

    night, day = list(photos(4).values())[1:3]
    dark = Image.fromarray((np.asarray(night, dtype=np.float32) * 0.03).astype(np.uint8))
    paths = []
    for k, image in enumerate((dark, day)):
        paths.append(str(tmp_path / f"{k}.jpg"))
        overlay(image, "trap", 7).save(paths[-1], quality=92)
    m = match(extract(paths[0]), extract(paths[1]))
    assert m.proves(params)  # the bar's keypoints agree
    assert agreement(*paths, m) < params.min_agreement and not proof(m, *paths, params)


def test_agreement_without_a_shared_part_is_zero_and_flat_images_keep_the_keypoints_verdict(tmp_path, params):
    from neardup.geometry import Match, agreement

    flat = tmp_path / "flat.png"
    Image.new("RGB", (320, 240), (120, 160, 200)).save(flat)
    identity = np.float64([[1, 0, 0], [0, 1, 0]])
    assert agreement(str(flat), str(flat), Match(20, 20, False, None, np.zeros((0, 4)))) == 0.0
    assert agreement(str(flat), str(flat), Match(20, 20, False, identity, np.zeros((0, 4)))) is None
    far = np.float64([[1, 0, 300], [0, 1, 220]])  # a's corner onto b's corner: nothing real shared
    photo = tmp_path / "photo.jpg"
    list(photos(1).values())[0].save(photo)
    assert agreement(str(photo), str(photo), Match(20, 20, False, far, np.zeros((0, 4)))) == 0.0
    assert agreement(str(photo), str(photo), Match(20, 20, False, identity, np.zeros((0, 4)))) == 1.0

"""Ids, labels and run names that matplotlib would read as mathtext are drawn as they are, never fail a figure."""
import io

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from PIL import Image

from neardup.render import group_figure, plain
from neardup.render.pairs import draw_pair_figures
from neardup.render.quality import pr_curve_figure

LABELS = [r"$x^2$ \frac{a}", r"$\frac{a}$", "$$", r"$x^$"]
IDS = ["a$b$.jpg", "=1+1.jpg", r"$\foo$.jpg", "plain.jpg"]


def test_such_text_fails_matplotlib_unless_escaped():
    for text in (r"$\frac{a}$", "$$", r"$\foo$"):
        fig = Figure()
        fig.suptitle(text)
        with pytest.raises(ValueError):
            fig.savefig(io.BytesIO(), format="png")
        fig = Figure()
        fig.suptitle(plain(text))
        fig.savefig(io.BytesIO(), format="png")
        assert fig.texts[0].get_text() == text.replace("$", r"\$")
    assert plain("a$b$") == r"a\$b\$" and plain(3) == "3"


@pytest.fixture
def images(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for k in range(len(IDS)):
        path = tmp_path / "img" / f"{k}.png"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    return pd.DataFrame({"id": IDS, "path": paths, "label": ["0", "1", "2", "3"], "label_name": LABELS,
                         "set": ["$train$", "t", "t", "t"], "sha256": [f"{k:064x}" for k in range(4)],
                         "width": "50", "height": "40", "format": "PNG"})


def test_group_and_pair_figures_with_mathtext_names_are_written(tmp_path, images):
    members = images.assign(label=images["label_name"], distance=[0.0, 0.1, 0.2, np.nan])
    out = tmp_path / "groups" / "group_0000.png"
    group_figure(members, out, title="r$un  eps=0.5  group 0", thumb_size=32)
    assert Image.open(out).size[0] > 100
    queue = pd.DataFrame({"variant": "r$un$", "a": IDS[:3], "b": IDS[1:], "sha_a": images["sha256"][:3].to_numpy(),
                          "sha_b": images["sha256"][1:].to_numpy(), "distance": [0.1, np.nan, 0.3],
                          "verdict": ["", "$different$", ""]})
    drawn = draw_pair_figures(queue, images, tmp_path / "review", max_figures=10, thumb_size=32)
    assert (drawn["figure"] != "").all()
    assert all(Image.open(tmp_path / "review" / name).size[0] > 100 for name in drawn["figure"])


def test_quality_figure_with_mathtext_run_names_is_written(tmp_path):
    runs = ["a$b$", r"$\frac{a}$"]
    sweep = pd.DataFrame({"eps": [0.1, 0.2], "precision": [1.0, 0.5], "recall": [0.5, 0.8], "planted_recall": [0.2, 0.9]})
    pr_curve_figure({run: sweep for run in runs}, runs, tmp_path / "pr.png")
    assert Image.open(tmp_path / "pr.png").size[0] > 100


def test_long_names_are_cut_in_the_middle_and_figures_are_reproducible(tmp_path, images):
    from neardup.render.sheet import _font, fit

    font = _font(11)
    name = "a_very_long_folder_name/with_a_very_long_file_name_indeed_0001.jpg"
    short = fit(name, font, 120)
    assert font.getlength(short) <= 120 < font.getlength(name)
    assert short.startswith("a_very") and short.endswith(".jpg") and "\u2026" in short
    assert fit("plain.jpg", font, 120) == "plain.jpg"
    members = images.assign(id=[name] * 4, label=images["label_name"], distance=[0.0, 0.1, 0.2, 0.3])
    first, again = tmp_path / "a.png", tmp_path / "b.png"
    group_figure(members, first, title="run  eps=0.5  group 0", thumb_size=32)
    group_figure(members, again, title="run  eps=0.5  group 0", thumb_size=32)
    assert first.read_bytes() == again.read_bytes()  # same inputs, same bytes (DVC outputs)
    assert Image.open(first).size[1] > 32 + 3 * 11  # title, three caption lines and the thumbnails


def test_the_quality_figure_draws_only_the_charts_it_has_data_for(tmp_path):
    """Without a ground truth the precision-recall chart would be empty: only the planted-copies chart."""
    planted = pd.DataFrame({"eps": [0.1, 0.2], "precision": [np.nan, np.nan], "recall": [np.nan, np.nan],
                            "planted_recall": [0.5, 0.9]})
    truth = planted.assign(precision=[1.0, 0.8], recall=[0.4, 0.7])
    widths = {}
    for name, sweep in (("planted", planted), ("both", truth)):
        pr_curve_figure({"v": sweep}, ["v"], tmp_path / f"{name}.png")
        widths[name] = Image.open(tmp_path / f"{name}.png").size[0]
    assert widths["both"] == 2 * widths["planted"]  # two charts, or one


def test_a_proof_draws_at_most_thirty_sampled_lines_and_says_how_many_agree():
    from neardup.render.pairs import MAX_LINES, match_lines, proof_text
    from neardup.verify import Match

    pairs = np.arange(318 * 4, dtype=np.float32).reshape(318, 4)
    match = Match(inliers=318, matches=330, mirrored=False, transform=None, pairs=pairs)
    thumbs = [np.zeros((100, 100, 3), np.uint8)] * 2
    lines = match_lines(match, thumbs, [100, 100])
    assert len(lines) == MAX_LINES == 30 and (lines[0] == pairs[0]).all() and (lines[-1] == pairs[-1]).all()
    assert proof_text(match) == "verified: 318 keypoints agree, 30 of them drawn"
    few = Match(inliers=12, matches=12, mirrored=True, transform=None, pairs=pairs[:12])
    assert len(match_lines(few, thumbs, [100, 100])) == 12
    assert proof_text(few) == "verified: 12 keypoints agree (mirrored)"

import base64
import io
import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from neardup.render.html import write_html_report

RUNS = ["efficientnet-lite0_auto", "phash"]
URI = re.compile(r'src="(data:image/jpeg;base64,([A-Za-z0-9+/=]+))"')


def make_inputs(tmp_path, *, ids=None):
    """Six small JPEGs in three groups: group 0 a label conflict but the farthest, group 2 a missing file."""
    rng = np.random.default_rng(0)
    ids = ids or ["a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg", "gone.jpg"]
    rows = []
    for i, image_id in enumerate(ids):
        path = tmp_path / "images" / f"img{i}.jpg"
        if image_id != "gone.jpg":
            path.parent.mkdir(parents=True, exist_ok=True)
            size = (40 + 10 * i, 300 - 20 * i, 3)
            Image.fromarray(rng.integers(0, 255, size, dtype=np.uint8)).save(path, quality=90)
        label, name = [("0", "cat"), ("1", "dog"), ("0", "cat"), ("0", "cat"), ("2", ""), ("2", "")][i]
        rows.append({"id": image_id, "path": str(path), "label": label, "label_name": name,
                     "set": "train" if i % 2 == 0 else "test", "sha256": f"{i:064x}", "width": "1", "height": "1",
                     "format": "JPEG"})
    manifest = pd.DataFrame(rows)
    groups = pd.DataFrame({"eps": 0.5, "group": [0, 0, 1, 1, 2, 2], "id": ids,
                           "label": manifest["label"], "distance": [0.4, 0.45, 0.01, 0.02, 0.1, np.nan]})
    overlap = {"train": {"train": 2, "test": 7}, "test": {"train": 0, "test": 3}}
    metrics = {"dataset": {"n_images": 6, "n_skipped": 0},
               RUNS[0]: {"eps": 0.5, "precision": 0.9, "recall": 0.8, "n_groups": 3, "n_label_conflicts": 1,
                         "overlap": overlap},
               RUNS[1]: {"eps": 0.3}}
    return dict(metrics=metrics, variants=RUNS, groups={RUNS[0]: groups, RUNS[1]: groups.iloc[:0]},
                manifest=manifest, figures=None, thumb_size=128, max_groups=50)


@pytest.fixture
def report(tmp_path):
    inputs = make_inputs(tmp_path)
    out = tmp_path / "reports" / "index.html"
    text = write_html_report(out, **{**inputs, "thumb_size": 64})
    return text, out, inputs


def test_written_and_self_contained(report):
    text, out, _ = report
    assert out.read_text(encoding="utf-8") == text
    for bad in ("http://", "https://", 'src="/', "<link", "@import", "url("):
        assert bad not in text
    srcs = re.findall(r'src="([^"]*)"', text)
    assert srcs and all(s.startswith("data:image/") for s in srcs)
    assert "imagesOk" in text and f'data-n-images="{len(srcs)}"' in text


def test_every_image_is_a_valid_inline_jpeg(report):
    text, _, inputs = report
    found = URI.findall(text)
    assert len(found) == len(inputs["manifest"])  # all six grouped images shown, the missing one too
    for _, payload in found:
        with Image.open(io.BytesIO(base64.b64decode(payload))) as im:
            im.load()
            assert im.format == "JPEG" and max(im.size) <= 64
    for image_id in inputs["manifest"]["id"]:
        assert f"<div>{image_id}</div>" in text


def test_sections_order_and_conflicts_first(report):
    text, _, _ = report
    order = ["Summary per variant", "Overlap between sets", "Label conflicts", "Other groups"]
    assert [text.index(s) for s in order] == sorted(text.index(s) for s in order)
    positions = {g: text.index(f'data-group="{g}"') for g in (0, 1, 2)}
    assert positions[0] < positions[1] < positions[2]  # conflict first though farthest, then closest first
    assert 'class="group conflict" data-group="0"' in text and "labels: cat, dog" in text
    assert text.index("a.jpg") < text.index("c.jpg")


def test_summary_and_overlap_tables(report):
    text, _, _ = report
    assert "<th>efficientnet-lite0_auto</th><th>phash</th>" in text
    assert "<td>0.900</td>" in text and "<td>-</td>" in text  # missing metric of phash
    assert '<td class="leak">7</td>' in text  # off-diagonal leakage highlighted
    assert '<td class="leak">0</td>' not in text and '<td class="diag">2</td>' in text


def test_missing_image_gets_placeholder(report):
    text, _, _ = report
    assert "cannot open image" in text


def test_text_is_escaped(tmp_path):
    ids = ["<script>alert(1)</script>", "b&b", "c.jpg", "d.jpg", "e.jpg", "gone.jpg"]
    inputs = make_inputs(tmp_path, ids=ids)
    inputs["figures"] = {"<b>pr</b>": tmp_path / "nope.png"}
    text = write_html_report(tmp_path / "index.html", **inputs)
    assert "<script>alert(1)</script>" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text and "b&amp;b" in text
    assert "<b>pr</b>" not in text and "figure not available" in text
    assert text.count("<script>") == 1  # only the report's own check


def test_figures_embedded(tmp_path):
    inputs = make_inputs(tmp_path)
    figure = tmp_path / "pr.png"
    Image.new("RGB", (20, 10), (255, 0, 0)).save(figure)
    text = write_html_report(tmp_path / "index.html", **{**inputs, "figures": {"precision-recall": figure}})
    assert "data:image/png;base64," + base64.b64encode(figure.read_bytes()).decode() in text
    assert text.index("Other groups") < text.index("<figcaption>precision-recall</figcaption>")


def test_deterministic_and_max_groups(tmp_path):
    inputs = make_inputs(tmp_path)
    first = write_html_report(tmp_path / "1.html", **inputs)
    second = write_html_report(tmp_path / "2.html", **inputs)
    assert first == second and (tmp_path / "1.html").read_bytes() == (tmp_path / "2.html").read_bytes()
    capped = write_html_report(tmp_path / "3.html", **{**inputs, "max_groups": 1})
    assert 'data-group="0"' in capped and 'data-group="1"' in capped and 'data-group="2"' not in capped


def test_no_groups_no_overlap(tmp_path):
    inputs = make_inputs(tmp_path)
    inputs["variants"] = ["phash"]
    text = write_html_report(tmp_path / "index.html", **inputs)
    assert "No overlap table" in text and "No groups for phash" in text and "<img" not in text


def test_small_images_are_shown_large_pixel_for_pixel(tmp_path):
    from neardup.render.html import thumbnail_uri

    rng = np.random.default_rng(0)
    path = tmp_path / "tiny.png"
    Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(path)
    uri, note = thumbnail_uri(str(path), 160)
    shown = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
    assert note == "" and shown.size == (160, 160)  # 5x, nearest: 32 px would be unreadable
    big = tmp_path / "big.png"
    Image.fromarray(rng.integers(0, 255, (300, 400, 3), dtype=np.uint8)).save(big)
    assert Image.open(io.BytesIO(base64.b64decode(thumbnail_uri(str(big), 160)[0].split(",", 1)[1]))).size == (160, 120)


def test_the_report_opens_with_what_a_user_came_for_and_hides_truth_rows_without_truth(tmp_path):
    inputs = make_inputs(tmp_path)
    for variant in inputs["variants"]:  # no ground truth: precision / recall / AP absent
        for key in ("precision", "recall", "f1", "ap", "pair_precision", "pair_recall", "pair_f1", "recall_at_p90"):
            inputs["metrics"][variant].pop(key, None)
    primary = inputs["variants"][0]
    inputs["metrics"][primary].update(planted_recall=0.75, n_label_conflicts=1, n_cross_set_groups=2,
                                      overlap={"train": {"train": 1, "test": 2}, "test": {"train": 2, "test": 0}})
    inputs["metrics"]["dataset"] = {"n_images": 10, "n_planted": 8}
    text = write_html_report(tmp_path / "index.html", **inputs)
    summary = text[text.index('<section id="summary">'):text.index("</section>")]
    n_groups = inputs["groups"][primary]["group"].nunique()
    n_remove = len(inputs["groups"][primary]) - n_groups
    assert f"{n_groups} duplicate group" in summary and f"{n_remove} image" in summary
    assert "2 groups</b> across the sets train, test (leakage)" in summary
    assert "1 group</b> whose images carry different labels" in summary
    assert "found 6 of 8 planted copies (recall 0.75)" in summary and "no pair reviewed yet" in summary
    assert text.index('<section id="summary">') < text.index("Summary per variant")  # first thing on the page
    table = text[text.index("Summary per variant"):text.index("</table>", text.index("Summary per variant"))]
    assert "planted recall" in table and ">precision<" not in table and ">AP<" not in table

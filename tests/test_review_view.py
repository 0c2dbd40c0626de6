"""The review view of the HTML report, driven in headless Chromium with real key presses and mouse clicks
(DevTools protocol, tools/browser.py ``Page``): verdicts, progress, localStorage per report, the export in
the reviewed-pairs format, its import (``python -m neardup.review --import``) and the evaluation counting it.
"""
from __future__ import annotations

import base64
import io
import json
import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from browser import Page, have_chromium
from conftest import save
from neardup.cluster import cluster_vectors
from neardup.contract import GROUPS, MANIFEST, PAIRS, PLANTED, SKIPPED, STATS, TRUTH, read_queue, write_table
from neardup.evaluate import evaluate_variant, write_variant
from neardup.evaluate.queue import REVIEW_COLUMNS, build_queue, load_reviews, pair_key, save_reviews
from neardup.images import scan_files
from neardup.layout import Layout
from neardup.params import EvaluateParams
from neardup.render.html import write_html_report
from neardup.render.review_view import REVIEW_SIZE, select_pairs
from neardup.review import main as review_main
from neardup.verify import Match

RUN = "efficientnet-lite0_auto"
RULE = EvaluateParams(min_precision=0.0, max_unrelated=0.02, max_group_share=0.5, max_grouped_share=1.0,
                      max_pairs_per_image=10.0, fallback_eps=0.1, max_queue=1000)
OPTIONS = dict(metric="cosine", candidates=5, search="exact", nprobe=16, block=256)
ODD = '-chelsea, "copy".jpg'  # a formula-like id with a comma and quotes: escaped and quoted in the export
# (original, its near-copy, cosine distance of their vectors): the queue's order, closest first
PAIRS_MADE = [("astronaut.png", "astronaut_q50.jpg", 0.01), ("chelsea.png", ODD, 0.02),
              ("coffee.png", "coffee_crop.png", 0.03), ("rocket.png", "rocket_small.png", 0.04)]

needs_chromium = pytest.mark.skipif(not have_chromium(), reason="needs Chromium (/usr/bin/chromium; Debian "
                                    "package `chromium`) to drive the review view; .ci/run installs it")


def small(array, side=96):
    im = Image.fromarray(array)
    im.thumbnail((side, side))
    return np.asarray(im)


def make_images(root, photos) -> pd.DataFrame:
    """Ten real small images: six photos and four altered copies (JPEG, crop, resize); their manifest."""
    names = ("astronaut", "coffee", "chelsea", "rocket", "china", "flower")
    for name in names:
        save(small(photos[name]), root / f"{name}.png")
    save(small(photos["astronaut"]), root / "astronaut_q50.jpg", quality=50)
    save(small(photos["chelsea"]), root / ODD, quality=70)
    save(small(photos["coffee"])[4:-4, 4:-4], root / "coffee_crop.png")
    save(small(photos["rocket"], 64), root / "rocket_small.png")
    labels = {p.name: next(n for n in names if n in p.name) for p in root.iterdir()}
    return scan_files(sorted(root.iterdir()), root=root, set_name="train", labels=labels).manifest


def vectors_for(ids: list[str]) -> np.ndarray:
    """Unit vectors: each copy at its pair's distance from its original, everything else far apart."""
    rng = np.random.default_rng(0)
    out = {i: v / np.linalg.norm(v) for i, v in zip(ids, rng.normal(size=(len(ids), 64)))}
    for original, copy, distance in PAIRS_MADE:
        u = rng.normal(size=64)
        u -= (u @ out[original]) * out[original]
        u /= np.linalg.norm(u)
        out[copy] = (1 - distance) * out[original] + np.sqrt(1 - (1 - distance) ** 2) * u
    return np.array([out[i] for i in ids], np.float32)


def evaluate(tmp_path, manifest, reviews_path):
    """cluster_vectors, the contract files, evaluate_variant and write_variant, as the stages do; returns
    (metrics, the review queue as the render stage reads it)."""
    ids = list(manifest["id"])
    groups, pairs, outcomes = cluster_vectors(vectors_for(ids), ids, list(manifest["label"]), eps_values=[0.1],
                                              normalize_k=0, content=list(manifest["sha256"]), **OPTIONS)
    dataset, clusters = tmp_path / "dataset", tmp_path / "clusters"
    write_table(manifest, dataset / MANIFEST)
    write_table(pd.DataFrame(columns=["path", "reason"]), dataset / SKIPPED)
    write_table(pd.DataFrame(columns=["id", "original", "transform"]), dataset / TRUTH)
    for table, name in ((groups, GROUPS), (pairs, PAIRS), (outcomes, PLANTED)):
        write_table(table, clusters / name)
    (clusters / STATS).write_text(json.dumps({"eps": [0.1], "input_size": 0, "n_embedded": len(ids),
                                              "skipped_ids": [], "search": "exact"}))
    metrics, sweep, at, queue, reason = evaluate_variant(RUN, dataset=dataset, plants_truth=tmp_path / "none.csv",
                                                         clusters=clusters, reviews_path=reviews_path, params=RULE)
    layout = Layout.at(tmp_path)
    write_variant(RUN, layout, metrics=metrics, sweep=sweep, at=at, queue=queue, reason=reason)
    return metrics, read_queue(layout.evaluation(RUN) / "queue.csv"), at


def report(path, manifest, queue, groups, *, max_review_pairs=200, matches=None):
    return write_html_report(path, metrics={"dataset": {"n_images": len(manifest)}}, variants=[RUN],
                             groups={RUN: groups}, manifest=manifest, figures=None, thumb_size=64,
                             max_groups=10, review_queue=queue, max_review_pairs=max_review_pairs, matches=matches)


def embedded(text: str) -> dict:
    return json.loads(re.search(r'<script type="application/json" id="review-data">(.*?)</script>', text, re.S)[1])


def state(page) -> dict:
    return page.evaluate("""(() => ({progress: document.getElementById('review-progress').textContent,
        status: document.getElementById('review-status').textContent,
        id_a: document.getElementById('review-id-a').textContent,
        id_b: document.getElementById('review-id-b').textContent,
        distance: document.getElementById('review-distance').textContent,
        export: document.getElementById('review-export').value,
        pressed: Array.from(document.querySelectorAll('#review [aria-pressed=true]')).map(b => b.dataset.verdict),
        images_ok: document.body.dataset.imagesOk,
        proof: document.getElementById('review-proof').hidden ? null : [
            document.getElementById('review-proof-text').textContent,
            document.getElementById('review-proof-img').naturalWidth]}))()""")


@pytest.fixture
def case(tmp_path, photos):
    manifest = make_images(tmp_path / "images", photos)
    metrics, queue, groups = evaluate(tmp_path, manifest, tmp_path / "none.csv")
    return manifest, metrics, queue, groups


def test_queue_and_embedded_pairs(case, tmp_path):
    """The view embeds the queue's pending pairs closest first, every image once, and says how many it left out."""
    manifest, metrics, queue, groups = case
    assert metrics["n_pending"] == 4 and metrics["n_duplicate"] == 0
    assert [(a, b) for a, b in zip(queue["a"], queue["b"])] == [tuple(sorted(p[:2])) for p in PAIRS_MADE]
    text = report(tmp_path / "index.html", manifest, queue, groups)
    data = embedded(text)
    assert [data["images"][p["a"]]["id"] for p in data["pairs"]] == list(queue["a"])
    assert [p["distance"] for p in data["pairs"]] == pytest.approx([p[2] for p in PAIRS_MADE], abs=1e-3)
    assert len(data["images"]) == 8 and all(i["uri"].startswith("data:image/jpeg;base64,") for i in data["images"])
    with Image.open(io.BytesIO(base64.b64decode(data["images"][0]["uri"].split(",", 1)[1]))) as im:
        assert max(im.size) <= REVIEW_SIZE
    assert "http://" not in text and "https://" not in text and "not embedded" not in text
    assert text == report(tmp_path / "again.html", manifest, queue, groups)  # deterministic

    # a cap of 2 keeps the two closest pending pairs and says how many pending pairs were left out
    capped = embedded(report(tmp_path / "capped.html", manifest, queue, groups, max_review_pairs=2))
    assert [p["sha_a"] for p in capped["pairs"]] == list(queue["sha_a"][:2]) and capped["report"] == data["report"]
    assert "2 pending pairs not embedded" in (tmp_path / "capped.html").read_text()

    # reviewed pairs come after the pending ones; byte-identical and same-content rows are not asked twice
    reviewed = pd.DataFrame([[*pair_key(queue["sha_a"][0], queue["sha_b"][0]), "different", "", ""]],
                            columns=REVIEW_COLUMNS)
    twin = queue.iloc[[1]].assign(a="zz_twin.png", distance=0.5)  # same content key as pair 2
    same = queue.iloc[[2]].assign(sha_b=queue["sha_a"][2], distance=0.0)  # byte-identical
    pairs, left_out, _ = select_pairs(build_queue(pd.concat([queue, twin, same]), reviewed), max_pairs=3)
    assert list(pairs["a"]) == list(queue["a"][1:4]) and left_out == 0
    pairs, left_out, _ = select_pairs(build_queue(queue, reviewed), max_pairs=10)
    assert list(pairs["verdict"]) == ["", "", "", "different"] and list(pairs["a"]) == list(queue["a"][[1, 2, 3, 0]])


def test_text_cannot_break_out_of_the_script(case, tmp_path):
    manifest, _, queue, groups = case
    evil = "</script><script>alert(1)</script>&.png"
    manifest = manifest.assign(id=manifest["id"].replace({"china.png": evil}))
    queue = pd.concat([queue, queue.iloc[[3]].assign(b=evil, sha_b="f" * 64)], ignore_index=True)
    text = report(tmp_path / "index.html", manifest, queue, groups)
    assert "<script>alert(1)" not in text and text.count("</script>") == 2  # the data block and the page's script
    assert evil in [i["id"] for i in embedded(text)["images"]]


@needs_chromium
def test_review_in_the_browser_export_import_and_evaluate(case, tmp_path):
    manifest, _, queue, groups = case
    page_a, page_b = tmp_path / "a" / "index.html", tmp_path / "b" / "index.html"
    a, b = sorted(PAIRS_MADE[0][:2])  # pair 1 was verified geometrically: 15 keypoints agree
    proven = Match(15, 20, False, np.float64([[1, 0, 2], [0, 1, 4]]), np.tile(np.float32([[10, 10, 12, 14]]), (15, 1)))
    report(page_a, manifest, queue, groups, matches={(a, b): proven})
    report(page_b, manifest, queue.iloc[1:], groups)  # another report: other pairs, its own verdicts
    downloads = tmp_path / "downloads"
    with Page(size=(1200, 900), download_dir=downloads) as page:
        page.goto(page_a)
        s = state(page)
        assert s["images_ok"] == "true" and s["progress"] == "0 of 4 reviewed" and s["status"] == "pending"
        assert (s["id_a"], s["id_b"]) == tuple(sorted(PAIRS_MADE[0][:2])) and s["distance"] == "distance 0.0100"
        assert s["export"] == "sha_a,sha_b,verdict,id_a,id_b\n"
        assert s["proof"][0].startswith("verified: 15 keypoints agree on one rotation") and s["proof"][1] > 100

        page.press("d")  # pair 1: duplicate, by key; the view moves on to pair 2
        s = state(page)
        assert s["progress"] == "1 of 4 reviewed" and s["id_a"] == ODD and s["status"] == "pending"
        assert s["proof"] is None  # pair 2 has no proof
        page.click('#review [data-verdict="different"]')  # pair 2: different, by mouse
        assert state(page)["id_a"] == "coffee.png"
        page.press("ArrowLeft")  # back to pair 2: its verdict is shown
        s = state(page)
        assert s["id_a"] == ODD and s["status"] == "different (in this browser)" and s["pressed"] == ["different"]
        page.press("j")
        page.press("u")  # pair 3: unsure; on to pair 4, the last pending one
        s = state(page)
        assert s["progress"] == "3 of 4 reviewed" and s["id_a"] == "rocket.png" and s["status"] == "pending"
        exported = s["export"]
        page.screenshot(tmp_path / "review_view.png", "#review")

        since = len(page.events)
        page.click("#review-download")
        page.wait_download(since)
        assert (downloads / "reviewed_pairs_export.csv").read_text() == exported

        page.reload()  # the verdicts are kept in the page's localStorage
        assert state(page)["progress"] == "3 of 4 reviewed" and state(page)["export"] == exported
        page.goto(page_b)  # the other report keeps its own verdicts: none yet
        s = state(page)
        assert s["progress"] == "0 of 3 reviewed" and s["export"] == "sha_a,sha_b,verdict,id_a,id_b\n"
        assert page.requests == [] and page.errors == []

    # the export is the reviewed-pairs file format, byte for byte (sorted keys, escaped and quoted cells)
    verdicts = dict(zip([(a, b) for a, b, _ in PAIRS_MADE[:3]], ["duplicate", "different", "unsure"]))
    sha = manifest.set_index("id")["sha256"]
    rows = pd.DataFrame([[sha[a], sha[b], v, a, b] for (a, b), v in verdicts.items()], columns=REVIEW_COLUMNS)
    save_reviews(rows, tmp_path / "expected.csv")
    assert exported == (tmp_path / "expected.csv").read_text()
    assert "\"'-chelsea, \"\"copy\"\".jpg\"" in exported  # formula-escaped, then quoted
    export_file = tmp_path / "export.csv"
    export_file.write_text(exported)

    # import: an older verdict on pair 1 is replaced, two are added
    reviews = tmp_path / "data" / "reviewed_pairs.csv"
    save_reviews(rows.iloc[[0]].assign(verdict="different"), reviews)
    assert review_main(["--import", str(export_file), "--reviews", str(reviews)]) == 0
    got = load_reviews(reviews)
    assert {(a, b): v for a, b, v in zip(got["id_a"], got["id_b"], got["verdict"])} == {
        tuple(sorted((a, b), key=lambda i: sha[i])): v for (a, b), v in verdicts.items()}

    # the evaluation counts the verdicts, and the next report shows them as done
    metrics, queue2, groups2 = evaluate(tmp_path / "second", manifest, reviews)
    assert (metrics["n_duplicate"], metrics["n_different"], metrics["n_unsure"], metrics["n_pending"]) == (1, 1, 1, 1)
    assert metrics["reviewed_precision"] == pytest.approx(0.5)
    report(page_a, manifest, queue2, groups2)
    with Page(size=(1200, 900)) as page:  # a fresh profile: nothing in localStorage
        page.goto(page_a)
        s = state(page)
        assert s["progress"] == "3 of 4 reviewed" and s["id_a"] == "rocket.png" and s["status"] == "pending"
        page.press("ArrowRight")
        s = state(page)
        assert s["id_a"] == "astronaut.png" and s["status"] == "duplicate (already reviewed)"
        assert s["pressed"] == ["duplicate"] and s["export"] == "sha_a,sha_b,verdict,id_a,id_b\n"
        assert page.requests == [] and page.errors == []
    with Image.open(tmp_path / "review_view.png") as shot:
        assert shot.width > 2 * REVIEW_SIZE and shot.height > REVIEW_SIZE
        assert len(np.unique(np.asarray(shot.convert("L")))) > 50  # the photos, not a blank page


def test_import_counts_and_errors(tmp_path, capsys):
    dest = tmp_path / "reviewed_pairs.csv"
    save_reviews(pd.DataFrame([["aa", "bb", "duplicate", "a", "b"], ["aa", "cc", "unsure", "a", "c"]],
                              columns=REVIEW_COLUMNS), dest)
    src = tmp_path / "export.csv"
    src.write_text("sha_a,sha_b,verdict,id_a,id_b\nbb,aa,different,b,a\naa,cc,unsure,a,c\ncc,dd,duplicate,c,d\n")
    assert review_main(["--import", str(src), "--reviews", str(dest)]) == 0
    assert "3 verdict(s)" in capsys.readouterr().out
    got = load_reviews(dest)
    assert got.values.tolist() == [["aa", "bb", "different", "a", "b"], ["aa", "cc", "unsure", "a", "c"],
                                   ["cc", "dd", "duplicate", "c", "d"]]
    from neardup.review import import_reviews
    assert import_reviews(src, dest) == {"imported": 3, "added": 0, "changed": 0, "unchanged": 3, "total": 3}

    before = dest.read_bytes()
    for text, pattern in (("sha_a,sha_b,verdict,id_a,id_b\naa,bb,maybe,a,b\n", r"row 1 .*'maybe'"),
                          ("sha_a,sha_b,id_a,id_b\naa,bb,a,b\n", r"missing column.*verdict"), ("", "not a reviewed")):
        src.write_text(text)
        with pytest.raises(SystemExit) as info:
            review_main(["--import", str(src), "--reviews", str(dest)])
        err = capsys.readouterr().err
        assert info.value.code == 2 and len(err.strip().splitlines()) == 1 and re.search(pattern, err), err
        assert dest.read_bytes() == before  # a bad file changes nothing
    with pytest.raises(SystemExit) as info:
        review_main(["--import", str(tmp_path / "missing.csv"), "--reviews", str(dest)])
    assert info.value.code == 2 and "no such file" in capsys.readouterr().err

"""``reports/index.html``: one self-contained page with the metrics, the set overlap and the duplicate groups.

Everything is inline (CSS, the scripts, every image as a base64 ``data:`` URI), so the file
can be opened offline, mailed or attached to a CI run. Same inputs give a byte-identical file.
"""
from __future__ import annotations

import base64
import html
import io
import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from neardup.contract import label_conflict_groups
from neardup.render import review_view, thumbnail
from neardup.render.sections import eps_section, headline_section, overlap_section, summary_section, text_cell

log = logging.getLogger(__name__)

MIME = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif",
        ".svg": "image/svg+xml", ".webp": "image/webp"}

CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222;max-width:1400px}
h1{margin-bottom:.2em} h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right} th{background:#f3f3f3}
td.name,th.name{text-align:left}
td.leak{background:#f8c4c4;font-weight:bold} td.diag{color:#777}
.group{margin:.8em 0;padding:.5em;border:1px solid #ddd;border-radius:4px}
.group.conflict{border-color:#d33;background:#fff6f6}
.group h3{margin:.1em 0 .4em;font-size:1em}
.cards{display:flex;flex-wrap:wrap;gap:.5em}
.card{width:var(--thumb);font-size:.75em;word-break:break-all}
.card img{display:block;max-width:100%;border:1px solid #ccc}
.note{color:#a00} .muted{color:#777} figure{margin:1em 0} figcaption{font-size:.9em;color:#555}
"""

SCRIPT = """
(function(){
  function check(){
    // every image with a source has loaded (the review view's proof image has none while hidden)
    var imgs=Array.prototype.slice.call(document.images).filter(function(im){return im.hasAttribute("src");});
    var ok=imgs.every(function(im){return im.complete&&im.naturalWidth>0;});
    document.body.dataset.imagesOk=ok?"true":"false";
    document.body.dataset.nImages=String(imgs.length);
  }
  if(document.readyState==="complete"){check();}else{window.addEventListener("load",check);}
})();
"""


def _jpeg_uri(array: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="JPEG", quality=85, optimize=False)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def thumbnail_uri(path: str, size: int) -> tuple[str, str]:
    """A JPEG ``data:`` URI of ``path`` whose longest side is at most ``size``, and a note ('' when fine).
    An image smaller than half of ``size`` is enlarged by a whole factor, pixel for pixel (nearest).

    An image that cannot be read gives a grey ``size x size`` placeholder and the reason as note.
    """
    try:
        return _jpeg_uri(thumbnail(path, size, enlarge=True)), ""
    except Exception as err:  # noqa: BLE001 - any unreadable file becomes a placeholder
        log.debug("cannot thumbnail %r: %s", path, err)
        return _jpeg_uri(np.full((size, size, 3), 160, np.uint8)), f"cannot open image: {type(err).__name__}"


def file_uri(path: Path) -> str:
    """A base64 ``data:`` URI of a whole file (type from the suffix)."""
    mime = MIME.get(Path(path).suffix.lower(), "application/octet-stream")
    return f"data:{mime};base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def _members(groups: pd.DataFrame, manifest: pd.DataFrame) -> pd.DataFrame:
    """Group rows joined with the manifest: adds ``path, set, label_name, shown`` (the label to compare)."""
    info = manifest.drop_duplicates("id").set_index("id")
    at = groups.reset_index(drop=True).copy()
    at["distance"] = pd.to_numeric(at["distance"], errors="coerce").astype(float)
    for column in ("path", "set", "label_name", "label"):
        known = info[column].reindex(at["id"]).fillna("").astype(str).to_numpy() if column in info else ""
        if column == "label":
            own = at["label"].fillna("").astype(str) if "label" in at else pd.Series("", index=at.index)
            at["label"] = np.where(own != "", own, known)
        else:
            at[column] = known
    at["shown"] = np.where(at["label_name"] != "", at["label_name"], at["label"])
    return at.sort_values(["group", "distance", "id"], na_position="last", kind="stable")


def split_groups(members: pd.DataFrame, *, max_groups: int) -> tuple[list, list]:
    """Group ids with a label conflict (ascending) and, of the others, the ``max_groups`` closest.

    "Closest" orders groups by their smallest member distance (NaN last, then group id).
    """
    conflicts = label_conflict_groups(members.assign(label=members["shown"]))
    rest = members[~members["group"].isin(conflicts)]
    closest = rest.groupby("group")["distance"].min().reset_index()
    closest = closest.sort_values(["distance", "group"], na_position="last", kind="stable")
    return conflicts, closest["group"].tolist()[:max(0, max_groups)]


def _card(row, thumb: tuple[str, str]) -> str:
    uri, note = thumb
    label = row["label"] if row["label_name"] in ("", row["label"]) else f"{row['label']} ({row['label_name']})"
    distance = "-" if math.isnan(row["distance"]) else f"{row['distance']:.4f}"
    return ('<div class="card">'
            f'<img src="{uri}" alt="{html.escape(str(row["id"]))}">'
            f'<div>{html.escape(str(row["id"]))}</div>'
            f"<div>label: {html.escape(label or '-')}</div>"
            f"<div>set: {html.escape(row['set'] or '-')}</div>"
            f"<div>d = {distance}</div>"
            + (f'<div class="note">{html.escape(note)}</div>' if note else "") + "</div>")


def gallery(members: pd.DataFrame, group, *, conflict: bool, thumbs: dict, thumb_size: int) -> str:
    """One group as a row of cards (thumbnail, id, label, set, distance); ``thumbs`` caches by path."""
    rows = members[members["group"] == group]
    cards = []
    for _, row in rows.iterrows():
        if row["path"] not in thumbs:
            thumbs[row["path"]] = thumbnail_uri(row["path"], thumb_size)
        cards.append(_card(row, thumbs[row["path"]]))
    labels = sorted(set(rows["shown"]) - {""})
    title = (f"group {html.escape(str(group))}: {len(rows)} images"
             + (f"; labels: {html.escape(', '.join(labels))}" if conflict else ""))
    return (f'<div class="group{" conflict" if conflict else ""}" data-group="{html.escape(str(group))}">'
            f"<h3>{title}</h3>\n<div class=\"cards\">\n" + "\n".join(cards) + "\n</div></div>")


def figures_section(figures: dict[str, Path] | None) -> str:
    """Each figure embedded as a ``data:`` URI with its caption; a missing file gets a note."""
    if not figures:
        return ""
    parts = ["<h2>Figures</h2>"]
    for caption, path in figures.items():
        try:
            body = f'<img src="{file_uri(Path(path))}" alt="{html.escape(str(caption))}">'
        except OSError as err:
            log.warning("figure %s not embedded: %s", path, err)
            body = f'<p class="note">figure not available: {html.escape(type(err).__name__)}</p>'
        parts.append(f"<figure>{body}<figcaption>{html.escape(str(caption))}</figcaption></figure>")
    return "\n".join(parts)


def write_html_report(out: Path, *, metrics: dict, variants: list[str], groups: dict[str, pd.DataFrame],
                      manifest: pd.DataFrame, figures: dict[str, Path] | None,
                      thumb_size: int, max_groups: int, reasons: dict[str, str] | None = None,
                      review_queue: pd.DataFrame | None = None, max_review_pairs: int = 200,
                      matches: dict | None = None, rerun: str = "dvc repro") -> str:
    """Write the self-contained HTML report to ``out`` (parent folders created) and return it.

    Parameters
    ----------
    out : Path
        The HTML file, e.g. ``reports/index.html``.
    metrics : dict
        ``{"dataset": {...}, variant: {metric: value}}``; missing keys show '-'. The primary variant's
        ``overlap`` (``{set A: {set B: images of A with a duplicate in B}}``) is the overlap table.
    variants : list of str
        Variant names in column order; the first is the primary variant, whose groups get galleries.
    groups : dict of str to DataFrame
        Per variant, its groups at the chosen eps (columns ``eps, group, id, label, distance``).
    manifest : DataFrame
        The dataset manifest (``id, path, label, label_name, set, ...``, all str).
    figures : dict of str to Path, optional
        ``{caption: image file}`` embedded at the end.
    thumb_size : int
        Longest side of the thumbnails in pixels.
    max_groups : int
        Most galleries of groups without a label conflict (closest first); conflicts are all shown.
    reasons : dict of str to str, optional
        Per variant, why its eps was chosen (``reason.txt``); the primary variant's table of every eps is shown.
    review_queue : DataFrame, optional
        The primary variant's review queue (``QUEUE_COLUMNS``): adds the review view
        (:mod:`neardup.render.review_view`) with at most ``max_review_pairs`` pairs, pending first.
    matches : dict, optional
        ``{(a, b): Match}`` of the verified review pairs (:func:`neardup.verify.pair_matches`): the
        review view shows their agreeing keypoints joined by lines, the proof of a copy.

    Returns
    -------
    str, the HTML written.
    rerun : str
        The command that counts verdicts imported with ``neardup review --import`` where this report
        lives: ``dvc repro`` in a project, ``neardup find`` again on a ``find`` output.
    """
    out = Path(out)
    primary = variants[0] if variants else ""
    data = metrics.get("dataset", {})
    parts = ["<h1>neardup: duplicate report</h1>", headline_section(metrics, primary, groups.get(primary)),
             "<p>" + "; ".join(f"{html.escape(str(k))}: {text_cell(v)}" for k, v in data.items()) + "</p>"
             if data else '<p class="muted">No dataset counts.</p>',
             summary_section(metrics, variants), eps_section(reasons or {}, metrics, variants),
             overlap_section(pd.DataFrame(metrics.get(primary, {}).get("overlap", {})).T, primary)]
    n_conflicts = 0
    if primary in groups and len(groups[primary]):
        at = groups[primary]
        members = _members(at, manifest)
        conflicts, closest = split_groups(members, max_groups=max_groups)
        n_conflicts, thumbs = len(conflicts), {}
        n_other = members["group"].nunique() - len(conflicts)
        parts.append(f"<h2>Label conflicts ({len(conflicts)} groups, {html.escape(primary)})</h2>\n"
                     "<p>Groups whose members carry different labels: a duplicate with two labels, "
                     "or a false match.</p>")
        parts += [gallery(members, g, conflict=True, thumbs=thumbs, thumb_size=thumb_size) for g in conflicts]
        if not conflicts:
            parts.append('<p class="muted">None.</p>')
        parts.append(f"<h2>Other groups ({len(closest)} of {n_other}, closest first, {html.escape(primary)})</h2>")
        parts += [gallery(members, g, conflict=False, thumbs=thumbs, thumb_size=thumb_size) for g in closest]
        failed = sum(1 for _, note in thumbs.values() if note)
        if failed:
            log.warning("%d image(s) could not be opened; shown as grey placeholders", failed)
    else:
        parts.append(f'<h2>Groups</h2>\n<p class="muted">No groups for {html.escape(primary or "any variant")}.</p>')
    def proof(row):
        from neardup.render.pairs import pair_figure, proof_text, transform_text

        match = (matches or {}).get((str(row.a), str(row.b)))
        if match is None:
            return None
        sheet = pair_figure(row._asdict(), manifest, None, thumb_size=review_view.REVIEW_SIZE, match=match)
        return _jpeg_uri(np.asarray(sheet)), f"{proof_text(match)} on {transform_text(match)}: the proof of a copy"

    review, review_js = review_view.review_section(review_queue, manifest, variant=primary, max_pairs=max_review_pairs,
                                                   thumb=thumbnail_uri, rerun=rerun, proof=proof)
    if review:
        parts.insert(2, '<p><a href="#review">Review the proposed pairs</a></p>')
    parts += [review, figures_section(figures)]
    body = "\n".join(p for p in parts if p)
    n_images = body.count("<img ")
    text = ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<title>neardup report</title>\n"
            f"<style>{CSS}{review_view.CSS if review else ''}:root{{--thumb:{int(thumb_size)}px}}\n</style>\n"
            f"</head>\n<body data-n-images=\"{n_images}\">\n{body}\n<script>{SCRIPT}{review_js}</script>\n</body>\n"
            "</html>\n")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    log.info("wrote %s: %d images, %d label-conflict groups", out, n_images, n_conflicts)
    return text

"""The review view of ``reports/index.html``: judge the primary variant's proposed pairs in the browser.

The view shows one pair at a time (two images, ids, labels, sets, distance) with buttons and keys for
a verdict (``d`` duplicate, ``n`` different, ``u`` unsure, ``x`` clear; ``j`` / ``→`` next, ``k`` /
``←`` previous). Verdicts are kept in the page's ``localStorage`` under a key of this report (its variant
and its pairs), so two reports never mix. The export is the ``data/reviewed_pairs.csv`` format
(:data:`neardup.evaluate.queue.REVIEW_COLUMNS`, ``sha_a < sha_b``, rows sorted by the two hashes,
cells escaped as :func:`neardup.contract.escape_cells` does), by download or copy; ``python -m
neardup.review --import FILE`` merges it into the reviewed-pairs file.

Everything is inline: the pairs and their images (JPEG ``data:`` URIs, each image once) are a JSON
block read by the view's script. Same inputs give the same HTML.
"""
from __future__ import annotations

import hashlib
import html
import json
import math

import pandas as pd

REVIEW_SIZE = 256  # longest side of the images shown, as in the review figures (neardup.render.pairs)
EXPORT_NAME = "reviewed_pairs_export.csv"

CSS = """
#review .review-pair{display:flex;gap:1em;align-items:flex-start;margin:.5em 0}
#review .review-side{width:%(size)dpx;font-size:.85em;word-break:break-all}
#review .review-side img{display:block;width:%(size)dpx;height:%(size)dpx;object-fit:contain;background:#eee;
  border:1px solid #ccc}
#review figure{margin:.4em 0} #review figure img{max-width:100%%;border:1px solid #ccc}
#review .bar{margin:.4em 0} #review button{margin:.1em .2em .1em 0;padding:.3em .7em}
#review button[aria-pressed=true]{background:#246;color:#fff}
#review .status-pending{color:#a60} #review .status-done{color:#060}
#review textarea{width:100%%;box-sizing:border-box;font-family:monospace}
""" % {"size": REVIEW_SIZE}

SCRIPT = r"""
(function(){
  var el = document.getElementById("review-data");
  if (!el) return;
  var data = JSON.parse(el.textContent), pairs = data.pairs, images = data.images;
  var VERDICTS = ["duplicate", "different", "unsure"];
  var storeKey = "neardup-review/" + data.report, saved = {}, storageOk = true, cur = 0;
  function $(id){ return document.getElementById(id); }
  function keyOf(p){ return p.sha_a <= p.sha_b ? p.sha_a + " " + p.sha_b : p.sha_b + " " + p.sha_a; }
  var byKey = {};
  pairs.forEach(function(p){ byKey[keyOf(p)] = p; });
  try { saved = JSON.parse(window.localStorage.getItem(storeKey) || "{}") || {}; }
  catch (e) { storageOk = false; saved = {}; }
  Object.keys(saved).forEach(function(k){ if (!byKey[k] || VERDICTS.indexOf(saved[k]) < 0) delete saved[k]; });
  function persist(){
    if (!storageOk) return;
    try { window.localStorage.setItem(storeKey, JSON.stringify(saved)); } catch (e) { storageOk = false; }
  }
  function verdictOf(p){ return saved[keyOf(p)] || p.verdict || ""; }
  // one CSV cell as neardup.contract.escape_cells + pandas write it (a bare CR is quoted too)
  function cell(v){
    v = String(v);
    if (/^'*[=+\-@\t\r]/.test(v) && !/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(v)) v = "'" + v;
    return /[",\r\n]/.test(v) ? '"' + v.replace(/"/g, '""') + '"' : v;
  }
  function exportText(){
    var lines = ["sha_a,sha_b,verdict,id_a,id_b"];
    Object.keys(saved).sort().forEach(function(k){
      var p = byKey[k], a = images[p.a].id, b = images[p.b].id;
      var row = p.sha_a <= p.sha_b ? [p.sha_a, p.sha_b, saved[k], a, b] : [p.sha_b, p.sha_a, saved[k], b, a];
      lines.push(row.map(cell).join(","));
    });
    return lines.join("\n") + "\n";
  }
  function side(s, im){
    $("review-img-" + s).src = im.uri;
    $("review-img-" + s).alt = im.id;
    $("review-id-" + s).textContent = im.id;
    $("review-label-" + s).textContent = "label: " + (im.label || "-") + " \u00b7 set: " + (im.set || "-") +
      (im.size ? " \u00b7 " + im.size : "");
    $("review-note-" + s).textContent = im.note;
  }
  function show(){
    var p = pairs[cur], v = verdictOf(p), mine = saved[keyOf(p)];
    side("a", images[p.a]); side("b", images[p.b]);
    $("review-proof").hidden = !p.proof;
    if (p.proof) $("review-proof-img").src = p.proof; else $("review-proof-img").removeAttribute("src");
    $("review-proof-text").textContent = p.proof_text || "";
    $("review-distance").textContent = p.distance === null ? "joined through other group members"
                                                           : "distance " + p.distance.toFixed(4);
    var status = $("review-status");
    status.textContent = !v ? "pending" : mine ? v + " (in this browser" + (p.verdict && p.verdict !== mine
      ? "; was " + p.verdict : "") + ")" : v + " (already reviewed)";
    status.className = v ? "status-done" : "status-pending";
    Array.prototype.forEach.call(document.querySelectorAll("#review [data-verdict]"), function(b){
      b.setAttribute("aria-pressed", String(b.getAttribute("data-verdict") === v));
    });
    var done = pairs.filter(verdictOf).length, n = Object.keys(saved).length;
    $("review-progress").textContent = done + " of " + pairs.length + " reviewed";
    $("review-position").textContent = "pair " + (cur + 1) + " of " + pairs.length;
    $("review-to-export").textContent = n + " verdict" + (n === 1 ? "" : "s") + " in this browser to export" +
      (storageOk ? "" : " (this browser does not keep them: export before closing the page)");
    $("review-export").value = exportText();
    root.dataset.current = String(cur);
    root.dataset.reviewed = String(done);
  }
  function decide(v){
    saved[keyOf(pairs[cur])] = v;
    persist();
    for (var i = 1; i < pairs.length; i++) {  // on to the next pair without a verdict
      var j = (cur + i) % pairs.length;
      if (!verdictOf(pairs[j])) { cur = j; break; }
    }
    show();
  }
  function clear(){ delete saved[keyOf(pairs[cur])]; persist(); show(); }
  function move(d){ cur = Math.max(0, Math.min(pairs.length - 1, cur + d)); show(); }
  function download(){
    var url = URL.createObjectURL(new Blob([exportText()], {type: "text/csv"}));
    var a = document.createElement("a");
    a.href = url; a.download = data.export_name; document.body.appendChild(a); a.click(); a.remove();
    setTimeout(function(){ URL.revokeObjectURL(url); }, 1000);
  }
  function copy(){
    var text = $("review-export"), note = $("review-copy-note");
    function fallback(){ text.focus(); text.select(); note.textContent = "selected: press Ctrl+C (Cmd+C) to copy"; }
    if (!navigator.clipboard) return fallback();
    navigator.clipboard.writeText(text.value).then(function(){ note.textContent = "copied"; }, fallback);
  }
  var root = $("review");
  Array.prototype.forEach.call(document.querySelectorAll("#review [data-verdict]"), function(b){
    b.addEventListener("click", function(){ decide(b.getAttribute("data-verdict")); });
  });
  $("review-clear").addEventListener("click", clear);
  $("review-prev").addEventListener("click", function(){ move(-1); });
  $("review-next").addEventListener("click", function(){ move(1); });
  $("review-download").addEventListener("click", download);
  $("review-copy").addEventListener("click", copy);
  $("review-copy").hidden = !navigator.clipboard;
  $("review-export").addEventListener("focus", function(e){ e.target.select(); });
  var KEYS = {d: function(){ decide("duplicate"); }, n: function(){ decide("different"); },
              u: function(){ decide("unsure"); }, x: clear, j: function(){ move(1); }, k: function(){ move(-1); },
              ArrowRight: function(){ move(1); }, ArrowLeft: function(){ move(-1); }};
  document.addEventListener("keydown", function(e){
    var t = e.target, tag = t && t.tagName;
    if (e.ctrlKey || e.metaKey || e.altKey || tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT" ||
        (t && t.isContentEditable) || !KEYS.hasOwnProperty(e.key)) return;
    e.preventDefault();
    KEYS[e.key]();
  });
  $("review-keys").hidden = false;
  show();
})();
"""


def _json_for_html(value) -> str:
    """JSON that cannot end its ``<script>`` element early, whatever the strings hold."""
    text = json.dumps(value, ensure_ascii=True, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def select_pairs(queue: pd.DataFrame, *, max_pairs: int) -> tuple[pd.DataFrame, int, str]:
    """The queue's pairs to embed: unique by their content key (the two hashes sorted, as
    :func:`neardup.evaluate.queue.pair_key`; the closest row of a key is kept; byte-identical
    pairs need no review), pending first, each part closest first, at most ``max_pairs``.

    Returns the pairs, the number of pending pairs left out, and the report's id (a hash of the variant
    and every reviewable pair of the queue: the ``localStorage`` key of its verdicts).
    """
    q = queue.reset_index(drop=True).copy()
    q["distance"] = pd.to_numeric(q["distance"], errors="coerce")
    q["verdict"] = q["verdict"].fillna("").astype(str)
    q["key"] = [" ".join(sorted((str(x), str(y)))) for x, y in zip(q["sha_a"], q["sha_b"])]
    q = q[q["sha_a"].astype(str) != q["sha_b"].astype(str)]
    q = q.sort_values(["distance", "a", "b"], na_position="last", kind="stable").drop_duplicates("key")
    variants = "\n".join(sorted(set(q["variant"].astype(str))))
    report = hashlib.sha256(f"{variants}\n{chr(10).join(sorted(q['key']))}".encode()).hexdigest()[:16]
    q = q.assign(_done=q["verdict"] != "").sort_values("_done", kind="stable")
    kept = q.head(max(0, int(max_pairs)))
    left_out = int((q["verdict"] == "").sum() - (kept["verdict"] == "").sum())
    return kept.drop(columns=["_done"]).reset_index(drop=True), left_out, report


def _proof(proof, row) -> dict:
    """``{"proof": uri, "proof_text": text}`` for a verified pair, ``{}`` otherwise."""
    found = proof(row) if proof is not None else None
    return {} if found is None else {"proof": found[0], "proof_text": found[1]}


def review_section(queue: pd.DataFrame | None, manifest: pd.DataFrame, *, variant: str, max_pairs: int,
                   thumb, rerun: str, proof=None) -> tuple[str, str]:
    """The review view: (HTML of the section, its script); ``thumb(path, size) -> (uri, note)`` makes
    an image's ``data:`` URI (:func:`neardup.render.html.thumbnail_uri`); ``proof(row) -> (uri, text)``
    or None draws a verified pair's agreeing keypoints (shown under the pair). ``rerun``: the command
    that counts imported verdicts where the report lives (``dvc repro``, or ``neardup find`` again)."""
    head = f'<section id="review">\n<h2>Review pairs ({html.escape(variant)})</h2>\n'
    if queue is None:
        return "", ""
    pairs, left_out, report = select_pairs(queue, max_pairs=max_pairs)
    left = (f'<p class="note" id="review-left-out">{left_out} pending pair{"s" if left_out != 1 else ""} not '
            "embedded here (render.max_pair_figures); review them with <code>neardup review</code> "
            f"or after importing these verdicts and running <code>{html.escape(rerun)}</code>.</p>" if left_out else "")
    if not len(pairs):
        return head + '<p class="muted">No pairs to review.</p>' + left + "\n</section>", ""
    info = manifest.drop_duplicates("id").set_index("id")
    index, images = {}, []
    for image_id in list(pairs["a"].astype(str)) + list(pairs["b"].astype(str)):
        if image_id not in index:
            m = info.loc[image_id] if image_id in info.index else pd.Series(dtype=object)
            label, name = str(m.get("label", "") or ""), str(m.get("label_name", "") or "")
            uri, note = thumb(str(m.get("path", "") or ""), REVIEW_SIZE)
            index[image_id] = len(images)
            size = f"{m.get('width', '')}x{m.get('height', '')}" if m.get("width", "") != "" else ""
            images.append({"id": image_id, "uri": uri, "note": note, "set": str(m.get("set", "") or ""),
                           "label": label if name in ("", label) else f"{label} ({name})", "size": size})
    data = {"report": report, "variant": variant, "export_name": EXPORT_NAME, "images": images,
            "pairs": [{"a": index[str(r.a)], "b": index[str(r.b)], "sha_a": str(r.sha_a), "sha_b": str(r.sha_b),
                       "distance": None if math.isnan(r.distance) else round(float(r.distance), 6),
                       "verdict": r.verdict, **_proof(proof, r)} for r in pairs.itertuples()]}
    sides = "".join(f'<div class="review-side"><img id="review-img-{s}" alt=""><div id="review-id-{s}"></div>'
                    f'<div id="review-label-{s}"></div><div class="note" id="review-note-{s}"></div></div>'
                    for s in "ab")
    buttons = "".join(f'<button type="button" data-verdict="{v}" aria-pressed="false">{text}</button>'
                      for v, text in (("duplicate", "Duplicate (d)"), ("different", "Different (n)"),
                                      ("unsure", "Unsure (u)")))
    body = (f'<div id="review-view" data-report="{report}">\n'
            "<noscript><p class=\"note\">The review view needs JavaScript.</p></noscript>\n"
            f'<p class="muted" id="review-keys" hidden>{len(pairs)} pairs of the review queue, pending first, '
            "closest first. Keys: <b>d</b> duplicate, <b>n</b> different, <b>u</b> unsure, <b>x</b> clear, "
            "<b>j</b> / <b>&rarr;</b> next, <b>k</b> / <b>&larr;</b> previous. Verdicts stay in this browser "
            "until you export them: download or copy the CSV below, then run <code>neardup review "
            f"--import FILE</code> in its folder, then <code>{html.escape(rerun)}</code>.</p>\n" + left +
            '<p class="bar"><b id="review-progress"></b> &middot; <span id="review-position"></span> &middot; '
            '<span id="review-to-export"></span></p>\n'
            f'<div class="review-pair">{sides}</div>\n'
            '<p class="bar"><span id="review-distance"></span> &middot; <span id="review-status"></span></p>\n'
            f'<p class="bar">{buttons}<button type="button" id="review-clear">Clear (x)</button>'
            '<button type="button" id="review-prev">&larr; Previous (k)</button>'
            '<button type="button" id="review-next">Next (j) &rarr;</button></p>\n'
            '<figure id="review-proof" hidden><img id="review-proof-img" alt="matched keypoints">'
            '<figcaption id="review-proof-text"></figcaption></figure>\n'
            f'<h3>Export</h3>\n<p class="bar"><button type="button" id="review-download">Download {EXPORT_NAME}'
            '</button><button type="button" id="review-copy">Copy to clipboard</button> '
            '<span id="review-copy-note" class="muted"></span></p>\n'
            '<textarea id="review-export" rows="6" wrap="off" readonly spellcheck="false"></textarea>\n</div>\n'
            f'<script type="application/json" id="review-data">{_json_for_html(data)}</script>\n</section>')
    return head + body, SCRIPT

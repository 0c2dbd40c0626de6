"""`dvc plots show` pages work offline: vega, vega-lite and vega-embed come inlined from the
committed `.dvc/plots_template.html` (built by tools/build_plots_template.py), not from a CDN."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from browser import have_chromium, load_page
from conftest import REPO

TEMPLATE = REPO / ".dvc" / "plots_template.html"
PLOT_CSV = "eps,precision\n0.05,0.99\n0.10,0.97\n0.15,0.93\n0.20,0.86\n0.25,0.74\n"
DVC_YAML = """\
plots:
- plots/eps/run.csv:
    x: eps
    y: precision
"""


def sh(cmd, cwd, env) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc.stdout


def dvc(*args, cwd, env) -> str:
    return sh([sys.executable, "-m", "dvc", *args], cwd, env)


class Tags(HTMLParser):
    """Collects external resource references and, per plot div, the classes rendered inside it."""

    def __init__(self):
        super().__init__()
        self.refs: list[tuple[str, str]] = []  # (tag, src or href)
        self.plots: dict[str, set[str]] = {}  # top-level div id -> classes of its descendants
        self._stack: list[str | None] = []  # open divs: the plot id each one belongs to

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for name in ("src", "href"):
            if attrs.get(name):
                self.refs.append((tag, attrs[name]))
        owner = next((plot for plot in reversed(self._stack) if plot), None)
        if owner is not None:
            self.plots[owner].update((attrs.get("class") or "").split())
        if tag == "div":
            if owner is None and attrs.get("id"):
                owner = attrs["id"]
                self.plots[owner] = set((attrs.get("class") or "").split())
            self._stack.append(owner)

    def handle_endtag(self, tag):
        if tag == "div" and self._stack:
            self._stack.pop()


def parse(html: str) -> Tags:
    tags = Tags()
    tags.feed(html)
    tags.close()
    return tags


@pytest.fixture
def plots_page(tmp_path, dvc_env) -> Path:
    """`dvc plots show` in a tiny DVC project that uses the repo's offline template."""
    project = tmp_path / "project"
    (project / "plots" / "eps").mkdir(parents=True)
    (project / "plots" / "eps" / "run.csv").write_text(PLOT_CSV)
    (project / "dvc.yaml").write_text(DVC_YAML)
    sh(["git", "init", "-q"], project, dvc_env)
    dvc("init", "-q", cwd=project, env=dvc_env)
    shutil.copy(TEMPLATE, project / ".dvc" / "plots_template.html")
    dvc("config", "plots.html_template", "plots_template.html", cwd=project, env=dvc_env)
    dvc("plots", "show", "-o", "out", cwd=project, env=dvc_env)
    page = project / "out" / "index.html"
    assert page.is_file()
    return page


def test_template_matches_dvc_render():
    """The committed template inlines the versions dvc_render's default page loads from the CDN."""
    from dvc_render.vega import VegaRenderer

    html = TEMPLATE.read_text(encoding="utf-8")
    assert html.count("{plot_divs}") == 1
    assert "{scripts}" not in html, "DVC would insert its CDN <script> tags there"
    wanted = re.findall(r"cdn\.jsdelivr\.net/npm/([\w-]+@[\w.-]+)", VegaRenderer.SCRIPTS)
    assert len(wanted) == 3, VegaRenderer.SCRIPTS
    inlined = re.findall(r"^/\*! ([\w-]+@[\w.-]+),", html, re.MULTILINE)
    assert inlined == wanted, "rebuild it: python tools/build_plots_template.py"
    assert html.count("<script") == 3 and not any(src for _, src in parse(html).refs)


def test_repo_config_uses_template(dvc_env):
    out = dvc("config", "--project", "plots.html_template", cwd=REPO, env=dvc_env)
    assert out.strip() == "plots_template.html"


def test_plots_page_has_no_cdn_scripts(plots_page):
    html = plots_page.read_text(encoding="utf-8")
    refs = parse(html).refs
    remote = [(tag, ref) for tag, ref in refs if re.match(r"(https?:|wss?:)?//", ref.strip(), re.I)]
    assert remote == [], f"page loads remote resources: {remote}"
    assert "cdn.jsdelivr.net" not in html
    for lib in ("vega@", "vega-lite@", "vega-embed@"):
        assert f"/*! {lib}" in html, f"{lib} is not inlined"
    assert "vegaEmbed(" in html and "plots_eps_run_csv" in html


@pytest.mark.skipif(not have_chromium(), reason="needs Chromium (/usr/bin/chromium; Debian package "
                    "`chromium`) to render the page; .ci/run installs it")
def test_plots_page_renders_offline(plots_page, tmp_path):
    from PIL import Image

    result = load_page(plots_page, wait_ms=5000, screenshot_png=tmp_path / "page.png")
    assert result["requests"] == [], f"the page made network requests: {result['requests']}"
    plots = parse(result["dom"]).plots
    assert plots, f"no plot div in the rendered page:\n{result['dom'][-3000:]}"
    for plot_id, classes in plots.items():
        # vega-embed adds class "vega-embed" to the target div, then vega draws its marks into a
        # <canvas class="marks"> (default renderer; <svg class="marks"> with the svg renderer).
        assert {"vega-embed", "marks"} <= classes, f"plot {plot_id!r} was not rendered: {classes}"

    # And the canvas is not blank: the line, axes and labels put plenty of dark pixels on it.
    gray = Image.open(result["screenshot"]).convert("L")
    dark = sum(gray.histogram()[:200])
    assert dark > 2000, f"only {dark} non-background pixels in the screenshot"

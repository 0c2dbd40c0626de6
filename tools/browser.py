"""Load a local HTML page in headless Chromium (Debian's ``/usr/bin/chromium``): offline checks and
screenshots of the reports. Used by the tests, and from the command line::

    python tools/browser.py reports/index.html --screenshot reports/index.png

Each call starts a fresh browser with a new, temporary profile, lets the page run for a fixed
amount of *virtual* time (``--virtual-time-budget``: timers and animation frames advance
deterministically, and the process exits as soon as the page is idle), and records Chromium's
net log, from which we read every URL that was requested over the network.

The browser is pointed at a proxy that does not exist (``127.0.0.1:9``), so nothing the page
asks for can reach the network, whatever the machine's connectivity: requests are still
attempted, and so still logged, but fail at once.
"""
from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
NETWORK_SCHEMES = ("http:", "https:", "ws:", "wss:")
# Chromium's own requests (network time, account and search prefetches, ...) are logged with this
# initiator; requests made by a page carry the page's origin ("null" for a file:// page).
BROWSER_INITIATOR = "not an origin"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-features=NetworkTimeServiceQuerying", "--hide-scrollbars",
         "--proxy-server=http://127.0.0.1:9")
TIMEOUT_S = 60  # on top of the page's virtual time budget


def have_chromium() -> bool:
    """Whether the Chromium binary is installed (``/usr/bin/chromium``, or ``$CHROMIUM``)."""
    return CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)


def _run(url: str, extra: list[str], wait_ms: int, tmp: Path) -> subprocess.CompletedProcess:
    args = [str(CHROMIUM), *FLAGS, f"--user-data-dir={tmp / 'profile'}",
            f"--virtual-time-budget={int(wait_ms)}", *extra, url]
    proc = subprocess.run(args, capture_output=True, text=True, cwd=tmp,
                          timeout=TIMEOUT_S + wait_ms / 1000)
    if proc.returncode != 0:
        raise RuntimeError(f"chromium exited with {proc.returncode}:\n{proc.stderr[-3000:]}")
    return proc


def network_requests(net_log: Path) -> tuple[list[str], list[str]]:
    """URLs requested over the network, read from a ``--log-net-log`` file.

    Returns (page_requests, browser_requests), each sorted and without duplicates: URLs the page
    asked for (scripts, styles, images, fetch/XHR, web sockets, navigations), and URLs that only
    Chromium itself asked for in the background. Only URL_REQUEST sources count (every fetch,
    web socket included, is one); connection-level events such as Chromium's own preconnects are
    not requests. A request is the browser's when its URL_REQUEST_START_JOB event says so
    (``initiator``); one without that event counts as the page's. ``file:`` and ``data:`` URLs
    never count.
    """
    log = json.loads(net_log.read_text(encoding="utf-8"))
    constants = log["constants"]
    url_request = constants["logSourceType"]["URL_REQUEST"]
    start_job = constants["logEventTypes"]["URL_REQUEST_START_JOB"]
    urls_by_source: dict[int, set[str]] = {}
    browser_sources = set()
    for event in log["events"]:
        params = event.get("params") or {}
        url = params.get("url")
        if (event["source"]["type"] != url_request or not isinstance(url, str)
                or not url.lower().startswith(NETWORK_SCHEMES)):
            continue
        source = event["source"]["id"]
        urls_by_source.setdefault(source, set()).add(url)
        if event["type"] == start_job and params.get("initiator") == BROWSER_INITIATOR:
            browser_sources.add(source)
    page, browser = set(), set()
    for source, urls in urls_by_source.items():
        (browser if source in browser_sources else page).update(urls)
    return sorted(page), sorted(browser - page)


def load_page(html_path: Path, *, wait_ms: int = 3000, screenshot_png: Path | None = None) -> dict:
    """Open ``html_path`` (as a file:// URL), let its scripts run, and report what happened.

    Returns a dict:
      dom: the document's HTML after ``wait_ms`` ms of virtual time (``--dump-dom``);
      requests: URLs the page requested over the network (http, https, ws, wss; see
        ``network_requests``), an empty list for a page that works offline;
      browser_requests: Chromium's own background requests, which say nothing about the page;
      screenshot: ``screenshot_png`` if one was asked for (taken in a second run), else None.
    """
    url = Path(html_path).resolve().as_uri()
    with tempfile.TemporaryDirectory(prefix="chromium-") as tmp:
        net_log = Path(tmp) / "net-log.json"
        proc = _run(url, ["--dump-dom", f"--log-net-log={net_log}"], wait_ms, Path(tmp))
        requests, browser_requests = network_requests(net_log)
    shot = screenshot(html_path, screenshot_png, wait_ms=wait_ms) if screenshot_png else None
    return {"dom": proc.stdout, "requests": requests, "browser_requests": browser_requests,
            "screenshot": shot}


def screenshot(html_path: Path, out_png: Path, *, size: tuple[int, int] = (1280, 2000),
               wait_ms: int = 3000) -> Path:
    """Save a PNG of ``html_path`` rendered in a ``size`` (width, height) window; returns its path."""
    out_png = Path(out_png).resolve()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    url = Path(html_path).resolve().as_uri()
    with tempfile.TemporaryDirectory(prefix="chromium-") as tmp:
        _run(url, [f"--screenshot={out_png}", f"--window-size={size[0]},{size[1]}"], wait_ms,
             Path(tmp))
    if not out_png.is_file():
        raise RuntimeError(f"chromium wrote no screenshot to {out_png}")
    return out_png


def main(argv=None) -> int:
    """Check that a page works offline (every image loads, no network request); optionally screenshot it."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("page", type=Path)
    parser.add_argument("--screenshot", type=Path, help="write a PNG of the page here")
    parser.add_argument("--size", default="1280x2000", help="window WIDTHxHEIGHT for the screenshot")
    args = parser.parse_args(argv)
    if not have_chromium():
        parser.error(f"no Chromium at {CHROMIUM}: install Debian's chromium package (or set $CHROMIUM)")
    loaded = load_page(args.page)
    print(f"{args.page}: {len(loaded['requests'])} network request(s) {loaded['requests']}")
    if args.screenshot:
        width, height = (int(v) for v in args.size.lower().split("x"))
        print(f"screenshot: {screenshot(args.page, args.screenshot, size=(width, height))}")
    return 1 if loaded["requests"] else 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Load a local HTML page in headless Chromium (Debian's ``/usr/bin/chromium``): offline checks and
screenshots of the reports, and (:class:`Page`) driving a page with real input events over the
DevTools protocol. Used by the tests, and from the command line::

    python tools/browser.py reports/index.html --screenshot reports/index.png
    python tools/browser.py reports/index.html --screenshot reports/review_view.png --element '#review'

Each call starts a fresh browser with a new, temporary profile, lets the page run for a fixed
amount of *virtual* time (``--virtual-time-budget``: timers and animation frames advance
deterministically, and the process exits as soon as the page is idle), and records Chromium's
net log, from which we read every URL that was requested over the network.

The browser is pointed at a proxy that does not exist (``127.0.0.1:9``), so nothing the page
asks for can reach the network, whatever the machine's connectivity: requests are still
attempted, and so still logged, but fail at once.
"""
from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import subprocess
import sys
import tempfile
import time
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


# --- driving a page over the DevTools protocol -------------------------------------------------------
# Chromium started with --remote-debugging-pipe reads protocol messages (JSON, each ended by a NUL
# byte) from its fd 3 and writes answers and events to its fd 4: no port, no websocket client.
_TRAMPOLINE = ("import os, sys; r, w = int(sys.argv[1]), int(sys.argv[2]); os.dup2(r, 3); os.dup2(w, 4); "
               "os.close(r); os.close(w); os.execv(sys.argv[3], sys.argv[3:])")
KEYS = {"ArrowLeft": ("ArrowLeft", 37), "ArrowUp": ("ArrowUp", 38), "ArrowRight": ("ArrowRight", 39),
        "ArrowDown": ("ArrowDown", 40), "Enter": ("Enter", 13), "Escape": ("Escape", 27), "Tab": ("Tab", 9)}


def _high_fd(fd: int) -> int:
    """``fd`` moved to a number >= 10 (so it cannot clash with 3 and 4 in the child), close-on-exec."""
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return moved


class Page:
    """One page in a fresh headless Chromium, driven over the DevTools protocol (a pipe).

    ::

        with Page(size=(1280, 900)) as page:
            page.goto("reports/index.html")
            page.press("d"); page.click("#some-button")
            text = page.evaluate("document.querySelector('textarea').value")

    Keys and clicks are real input events (``Input.dispatchKeyEvent`` / ``Input.dispatchMouseEvent``),
    so the page's own listeners handle them as they would a person's. ``profile`` keeps the browser
    profile (localStorage included) across instances; by default it is a fresh temporary folder.
    With ``download_dir``, downloads are allowed and saved there under their own names
    (:meth:`wait_download`).
    ``requests`` lists every http(s)/ws(s) URL the page asked for (``Network.requestWillBeSent``), and
    ``errors`` every uncaught exception of the page's scripts. Every wait is bounded by ``timeout`` s.
    """

    def __init__(self, *, size: tuple[int, int] = (1280, 1000), profile: Path | None = None,
                 download_dir: Path | None = None, timeout: float = TIMEOUT_S):
        self.timeout, self.requests, self.errors, self.events = timeout, [], [], []
        self._tmp = tempfile.TemporaryDirectory(prefix="chromium-")
        self._buf, self._next_id, self.session = b"", 0, None
        profile = Path(profile) if profile else Path(self._tmp.name) / "profile"
        to_chrome_r, self._to_chrome = map(_high_fd, os.pipe())
        self._from_chrome, from_chrome_w = map(_high_fd, os.pipe())
        args = [str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}", "--remote-debugging-pipe",
                f"--window-size={size[0]},{size[1]}", "about:blank"]
        self._log = Path(self._tmp.name) / "stderr.txt"  # a file, not a pipe: a chatty browser never blocks
        with open(self._log, "wb") as log:
            self._proc = subprocess.Popen([sys.executable, "-c", _TRAMPOLINE, str(to_chrome_r), str(from_chrome_w),
                                           *args], pass_fds=(to_chrome_r, from_chrome_w), stdin=subprocess.DEVNULL,
                                          stdout=subprocess.DEVNULL, stderr=log, cwd=self._tmp.name)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        try:
            target = self.send("Target.createTarget", {"url": "about:blank"}, browser=True)["targetId"]
            self.session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True},
                                     browser=True)["sessionId"]
            for domain in ("Page", "Runtime", "Network"):
                self.send(f"{domain}.enable")
            self.send("Emulation.setFocusEmulationEnabled", {"enabled": True})  # keys reach a headless page
            if download_dir is not None:
                Path(download_dir).mkdir(parents=True, exist_ok=True)
                self.send("Browser.setDownloadBehavior", {"behavior": "allow", "eventsEnabled": True,
                                                          "downloadPath": str(Path(download_dir).resolve())},
                          browser=True)
        except BaseException:
            self.close()
            raise

    # protocol
    def _read_message(self, deadline: float) -> dict:
        while b"\0" not in self._buf:
            ready, _, _ = select.select([self._from_chrome], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise TimeoutError(f"no answer from Chromium within {self.timeout} s")
            chunk = os.read(self._from_chrome, 1 << 20)
            if not chunk:
                raise RuntimeError(f"Chromium closed the pipe:\n{self._stderr()}")
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        message = json.loads(raw)
        if "method" in message:  # an event
            self.events.append(message)
            params = message.get("params", {})
            if message["method"] == "Network.requestWillBeSent":
                url = params.get("request", {}).get("url", "")
                if url.lower().startswith(NETWORK_SCHEMES):
                    self.requests.append(url)
            elif message["method"] == "Runtime.exceptionThrown":
                details = params.get("exceptionDetails", {})
                self.errors.append(details.get("exception", {}).get("description") or details.get("text", ""))
        return message

    def _stderr(self) -> str:
        return self._log.read_text(errors="replace")[-3000:]

    def send(self, method: str, params: dict | None = None, *, browser: bool = False) -> dict:
        """Send one protocol command (to the page, or to the browser) and return its result."""
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if not browser and self.session:
            message["sessionId"] = self.session
        data = json.dumps(message).encode() + b"\0"
        while data:
            data = data[os.write(self._to_chrome, data):]
        deadline = time.monotonic() + self.timeout
        while True:
            answer = self._read_message(deadline)
            if answer.get("id") == self._next_id:
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error']}")
                return answer.get("result", {})

    def wait_event(self, method: str, where=lambda params: True, *, since: int = 0) -> dict:
        """The params of the first event ``method`` (from index ``since`` of :attr:`events` on) for which
        ``where(params)`` holds, reading more messages until it comes."""
        deadline, seen = time.monotonic() + self.timeout, since
        while True:
            for event in self.events[seen:]:
                if event["method"] == method and where(event.get("params", {})):
                    return event.get("params", {})
            seen = len(self.events)
            self._read_message(deadline)

    # page
    def goto(self, path_or_url) -> None:
        """Load a local file (or a URL) and wait for its load event."""
        url = str(path_or_url)
        if "://" not in url:
            url = Path(url).resolve().as_uri()
        since = len(self.events)
        result = self.send("Page.navigate", {"url": url})
        if result.get("errorText"):
            raise RuntimeError(f"cannot load {url}: {result['errorText']}")
        self.wait_event("Page.loadEventFired", since=since)

    def reload(self) -> None:
        since = len(self.events)
        self.send("Page.reload")
        self.wait_event("Page.loadEventFired", since=since)

    def evaluate(self, expression: str):
        """The value of a JavaScript expression in the page (promises awaited); raises on an exception."""
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                "awaitPromise": True, "userGesture": True})
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise RuntimeError(f"{expression[:200]}: {details.get('exception', {}).get('description') or details}")
        return result.get("result", {}).get("value")

    def text(self, selector: str) -> str:
        """The text of the first element matching a CSS selector."""
        return self.evaluate(f"document.querySelector({json.dumps(selector)}).textContent")

    def press(self, key: str) -> None:
        """Press and release one key: a printable character (``"d"``) or a name of :data:`KEYS`."""
        if key in KEYS:
            name, code = KEYS[key]
            down = {"type": "rawKeyDown", "key": name, "code": name, "windowsVirtualKeyCode": code}
        elif len(key) == 1:
            code = ord(key.upper())
            down = {"type": "keyDown", "key": key, "text": key, "unmodifiedText": key,
                    "code": f"Key{key.upper()}" if key.isalpha() else "", "windowsVirtualKeyCode": code}
        else:
            raise ValueError(f"unknown key {key!r}; use one character or one of {sorted(KEYS)}")
        self.send("Input.dispatchKeyEvent", down)
        self.send("Input.dispatchKeyEvent", {**{k: v for k, v in down.items() if k not in ("text", "unmodifiedText")},
                                             "type": "keyUp"})

    def click(self, selector: str) -> None:
        """Scroll the first element matching ``selector`` into view and click its centre with the mouse."""
        box = self.evaluate(f"""(() => {{ const el = document.querySelector({json.dumps(selector)});
            if (!el) return null; el.scrollIntoView({{block: "center"}});
            const r = el.getBoundingClientRect();
            return [r.left + r.width / 2, r.top + r.height / 2, r.width]; }})()""")
        if not box or box[2] == 0:
            raise RuntimeError(f"no visible element {selector!r} to click")
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", {"type": kind, "x": box[0], "y": box[1], "button": "left",
                                                   "clickCount": 0 if kind == "mouseMoved" else 1})

    def wait_download(self, since: int = 0) -> dict:
        """The ``Browser.downloadProgress`` params of the first finished download (see ``download_dir``)."""
        params = self.wait_event("Browser.downloadProgress",
                                 lambda p: p.get("state") in ("completed", "canceled"), since=since)
        if params["state"] != "completed":
            raise RuntimeError(f"download canceled: {params}")
        return params

    def screenshot(self, out_png: Path, selector: str | None = None) -> Path:
        """Save a PNG of the viewport, or of the element matching ``selector`` (whole, even if taller)."""
        params = {"format": "png"}
        if selector:
            box = self.evaluate(f"""(() => {{ const el = document.querySelector({json.dumps(selector)});
                if (!el) return null; const r = el.getBoundingClientRect();
                return [r.left + window.scrollX, r.top + window.scrollY, r.width, r.height]; }})()""")
            if not box or box[2] == 0 or box[3] == 0:
                raise RuntimeError(f"no visible element {selector!r} to screenshot")
            params.update(clip={"x": box[0], "y": box[1], "width": box[2], "height": box[3], "scale": 1},
                          captureBeyondViewport=True)
        out_png = Path(out_png)
        out_png.parent.mkdir(parents=True, exist_ok=True)
        out_png.write_bytes(base64.b64decode(self.send("Page.captureScreenshot", params)["data"]))
        return out_png

    def close(self) -> None:
        """Close the browser (politely, then by force) and remove the temporary profile."""
        try:
            if self._proc.poll() is None:
                try:
                    self.send("Browser.close", browser=True)
                except (OSError, RuntimeError, TimeoutError):
                    pass
                try:
                    self._proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait()
        finally:
            for fd in (self._to_chrome, self._from_chrome):
                try:
                    os.close(fd)
                except OSError:
                    pass
            self._tmp.cleanup()

    def __enter__(self) -> "Page":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def element_screenshot(html_path: Path, out_png: Path, selector: str, *, size: tuple[int, int] = (1280, 1000)) -> Path:
    """Save a PNG of one element (e.g. ``#review``) of ``html_path`` after it loaded."""
    with Page(size=size) as page:
        page.goto(html_path)
        shot = page.screenshot(out_png, selector)
        if page.requests:
            raise RuntimeError(f"{html_path} made network requests: {page.requests}")
    return shot


def main(argv=None) -> int:
    """Check that a page works offline (every image loads, no network request); optionally screenshot it."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("page", type=Path)
    parser.add_argument("--screenshot", type=Path, help="write a PNG of the page here")
    parser.add_argument("--size", default="1280x2000", help="window WIDTHxHEIGHT for the screenshot")
    parser.add_argument("--element", metavar="CSS", help="screenshot only this element, e.g. '#review' (the "
                                                        "review view of reports/index.html)")
    args = parser.parse_args(argv)
    if not have_chromium():
        parser.error(f"no Chromium at {CHROMIUM}: install Debian's chromium package (or set $CHROMIUM)")
    loaded = load_page(args.page)
    print(f"{args.page}: {len(loaded['requests'])} network request(s) {loaded['requests']}")
    if args.screenshot:
        width, height = (int(v) for v in args.size.lower().split("x"))
        shot = (element_screenshot(args.page, args.screenshot, args.element, size=(width, height)) if args.element
                else screenshot(args.page, args.screenshot, size=(width, height)))
        print(f"screenshot: {shot}")
    return 1 if loaded["requests"] else 0


if __name__ == "__main__":
    raise SystemExit(main())

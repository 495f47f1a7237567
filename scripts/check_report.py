#!/usr/bin/env python3
"""Open an HTML report in headless chromium and check that it renders cleanly.

    python scripts/check_report.py runs/demo/report.html [--screenshot shot.png] [--json]

Checks: the page loads; it has a body with text, a verdict and at least one chart; every
<img> decoded (``naturalWidth > 0``); no console error, no uncaught exception, no failed
resource; no request leaves the machine (only ``file:`` and ``data:`` URLs); no table wider
than the page (columns a reader could only reach by scrolling sideways). Exit status 0
when everything holds, 1 when a check failed, 2 when chromium could not be run.

Talks to chromium over the DevTools protocol through a pipe (``--remote-debugging-pipe``:
file descriptors 3 and 4, messages separated by NUL bytes), so it needs only the Python
standard library and Debian's ``chromium`` package. Set ``S2R_CHROMIUM`` to use another
binary.
"""

from __future__ import annotations

import argparse
import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-dev-shm-usage",
    "--mute-audio",
    "--hide-scrollbars",
    "--remote-debugging-pipe",
]

PAGE_CHECK_JS = r"""
(() => {
  const imgs = Array.from(document.images).map(i => ({
    alt: i.alt, src: i.currentSrc.slice(0, 60), complete: i.complete, width: i.naturalWidth}));
  return JSON.stringify({
    title: document.title,
    text: document.body ? document.body.innerText.length : 0,
    verdict: !!document.querySelector('#verdict'),
    svgs: document.querySelectorAll('svg').length,
    tables: document.querySelectorAll('table').length,
    images: imgs,
    height: Math.ceil(document.documentElement.scrollHeight),
    // tables wider than their box: columns only reachable by scrolling sideways
    hidden: Array.from(document.querySelectorAll('table')).filter(t => {
      const box = t.closest('.tablewrap') || t.parentElement;
      return box.scrollWidth > box.clientWidth + 1;
    }).map(t => (t.querySelector('th') || {}).innerText || 'table'),
    // the per-class tables' column heads, as shown
    columns: Array.from(document.querySelectorAll('.tablewrap.metrics th')).map(th => th.innerText),
  });
})()
"""


def find_chromium() -> str | None:
    env = os.environ.get("S2R_CHROMIUM")
    if env:
        return env if shutil.which(env) or Path(env).is_file() else None
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


class Browser:
    """A headless chromium driven over the DevTools pipe."""

    def __init__(self, binary: str, timeout: float = 60.0):
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="s2r-chromium-")
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()

        def wire() -> None:  # runs in the child: DevTools pipe on fds 3 (in) and 4 (out)
            # move both ends above 10 first, so that neither overwrites the other
            a = fcntl.fcntl(to_chrome_r, fcntl.F_DUPFD, 10)
            b = fcntl.fcntl(from_chrome_w, fcntl.F_DUPFD, 10)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.proc = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            preexec_fn=wire,
            close_fds=False,  # keeps the wired fds 3 and 4; Python's own fds are not inheritable
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buf = b""
        self._id = 0
        self.events: list[dict] = []

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self._id += 1
        msg: dict = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._to_chrome, json.dumps(msg).encode() + b"\0")
        want = self._id
        deadline = time.monotonic() + self.timeout
        while True:
            m = self._read(deadline)
            if m.get("id") == want:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m.get("result", {})
            self.events.append(m)

    def wait_event(self, method: str, session: str | None, timeout: float) -> dict | None:
        for i, e in enumerate(self.events):
            if e.get("method") == method and e.get("sessionId") == session:
                return self.events.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            try:
                m = self._read(deadline)
            except TimeoutError:
                return None
            if m.get("method") == method and m.get("sessionId") == session:
                return m
            self.events.append(m)

    def drain(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while True:
            try:
                self.events.append(self._read(deadline))
            except TimeoutError:
                return

    def _read(self, deadline: float) -> dict:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no answer from chromium")
            ready, _, _ = select.select([self._from_chrome], [], [], left)
            if not ready:
                continue
            chunk = os.read(self._from_chrome, 1 << 20)
            if not chunk:
                err = (
                    self.proc.stderr.read().decode(errors="replace")[-2000:]
                    if self.proc.stderr
                    else ""
                )
                raise RuntimeError(
                    f"chromium closed the DevTools pipe (exit {self.proc.poll()}): {err}"
                )
            self._buf += chunk
        raw, _, self._buf = self._buf.partition(b"\0")
        return json.loads(raw)

    def close(self) -> None:
        try:
            if self.proc.poll() is None:
                try:
                    os.write(
                        self._to_chrome,
                        json.dumps({"id": 0, "method": "Browser.close"}).encode() + b"\0",
                    )
                    self.proc.wait(timeout=10)
                except (OSError, subprocess.TimeoutExpired):
                    self.proc.kill()
                    self.proc.wait()
        finally:
            for fd in (self._to_chrome, self._from_chrome):
                try:
                    os.close(fd)
                except OSError:
                    pass
            shutil.rmtree(self.profile, ignore_errors=True)


def check_report(
    path: str | Path,
    screenshot: str | Path | None = None,
    width: int = 1280,
    binary: str | None = None,
    timeout: float = 60.0,
) -> dict:
    """Load ``path`` in headless chromium; returns ``{"ok": bool, "problems": [...], ...}``."""
    path = Path(path).resolve()
    if not path.is_file():
        return {"ok": False, "problems": [f"{path}: no such file"]}
    binary = binary or find_chromium()
    if binary is None:
        raise FileNotFoundError(
            "chromium not found (apt-get install chromium, or set S2R_CHROMIUM)"
        )
    b = Browser(binary, timeout=timeout)
    problems: list[str] = []
    try:
        target = b.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        sid = b.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            b.send(f"{domain}.enable", session=sid)
        b.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": False},
            session=sid,
        )
        nav = b.send("Page.navigate", {"url": path.as_uri()}, session=sid)
        if nav.get("errorText"):
            problems.append(f"navigation failed: {nav['errorText']}")
        if b.wait_event("Page.loadEventFired", sid, timeout) is None:
            problems.append(f"page did not finish loading within {timeout:.0f} s")
        b.drain(0.5)  # late console messages and failed loads
        res = b.send(
            "Runtime.evaluate", {"expression": PAGE_CHECK_JS, "returnByValue": True}, session=sid
        )
        page = json.loads(res["result"]["value"])
        if page["text"] < 200:
            problems.append(f"page shows almost no text ({page['text']} characters)")
        if not page["verdict"]:
            problems.append("no verdict section (#verdict)")
        if page["svgs"] < 1:
            problems.append("no chart (svg)")
        for head in page.get("hidden", []):
            problems.append(
                f"table wider than the page (columns hidden behind a scroll bar): {head}"
            )
        broken = [i for i in page["images"] if not i["complete"] or i["width"] <= 0]
        for i in broken:
            problems.append(f"image did not load: {i['alt'] or i['src']}")
        b.drain(0.2)
        for e in b.events:
            m, p = e.get("method"), e.get("params", {})
            if m == "Runtime.exceptionThrown":
                d = p.get("exceptionDetails", {})
                problems.append(
                    f"uncaught exception: {d.get('text')} {d.get('exception', {}).get('description', '')}"
                )
            elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                args = " ".join(
                    str(a.get("value", a.get("description", ""))) for a in p.get("args", [])
                )
                problems.append(f"console.{p['type']}: {args}")
            elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                ent = p["entry"]
                problems.append(
                    f"console error ({ent.get('source')}): {ent.get('text')} {ent.get('url', '')}"
                )
            elif m == "Network.requestWillBeSent":
                url = p.get("request", {}).get("url", "")
                if not url.startswith(("file:", "data:", "about:")):
                    problems.append(f"request leaves the machine: {url[:120]}")
            elif m == "Network.loadingFailed":
                problems.append(f"resource failed to load: {p.get('errorText')}")
        shot = None
        if screenshot is not None:
            b.send(
                "Emulation.setDeviceMetricsOverride",
                {
                    "width": width,
                    "height": min(max(page["height"], 600), 16000),
                    "deviceScaleFactor": 1,
                    "mobile": False,
                },
                session=sid,
            )
            data = b.send(
                "Page.captureScreenshot",
                {"format": "png", "captureBeyondViewport": True},
                session=sid,
            )["data"]
            shot = Path(screenshot)
            shot.parent.mkdir(parents=True, exist_ok=True)
            shot.write_bytes(base64.b64decode(data))
        return {
            "ok": not problems,
            "problems": problems,
            "images": len(page["images"]),
            "svgs": page["svgs"],
            "tables": page["tables"],
            "columns": page.get("columns", []),
            "title": page["title"],
            "height": page["height"],
            "screenshot": str(shot) if shot else None,
        }
    finally:
        b.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("report", type=Path, help="the HTML file to check")
    ap.add_argument("--screenshot", type=Path, help="also save a full-page PNG here")
    ap.add_argument(
        "--width", type=int, default=1280, help="viewport width in pixels (default 1280)"
    )
    ap.add_argument(
        "--timeout", type=float, default=60.0, help="seconds to wait for chromium (default 60)"
    )
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    args = ap.parse_args(argv)
    try:
        result = check_report(args.report, args.screenshot, args.width, timeout=args.timeout)
    except (FileNotFoundError, RuntimeError, TimeoutError, OSError) as e:
        print(f"check_report: cannot run chromium: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        status = "OK" if result["ok"] else "FAILED"
        print(
            f"{status}: {args.report} ({result.get('images', 0)} images, {result.get('svgs', 0)} charts, "
            f"{result.get('tables', 0)} tables)"
        )
        for p in result["problems"]:
            print(f"  - {p}")
        if result.get("screenshot"):
            print(f"screenshot: {result['screenshot']}")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())

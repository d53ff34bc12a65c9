"""Headless Chromium for the tests: load a local page, act on it, read back what it shows.

It speaks the DevTools protocol over a pipe (--remote-debugging-pipe: NUL-terminated JSON on fds 3 and 4), so it
needs no websocket library: console errors, uncaught exceptions, failed loads, network requests, each <img>'s
natural size, values the page's script computes, synthetic mouse clicks and screenshots.
As a script: `python -m tests.browser PAGE.html --screenshot page.png` lists a page's problems.
"""

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

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--remote-debugging-pipe", "--hide-scrollbars", "--mute-audio"]

_IMAGES = """JSON.stringify(Array.from(document.images).map(i => ({alt: i.alt, complete: i.complete,
  naturalWidth: i.naturalWidth, naturalHeight: i.naturalHeight, src: i.src.slice(0, 30)})))"""


def find_chromium() -> str | None:
    """The Chromium executable, or None."""
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


class _Pipe:
    """DevTools messages over Chromium's --remote-debugging-pipe (fd 3 in, fd 4 out; NUL-terminated JSON)."""

    def __init__(self, binary: str, user_dir: str) -> None:
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()
        # Chromium's ends, copied above 9: putting them on 3 and 4 below then cannot overwrite one with the other
        for fd in (to_chrome_r, from_chrome_w):
            high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
            os.close(fd)
            to_chrome_r, from_chrome_w = (high, from_chrome_w) if fd == to_chrome_r else (to_chrome_r, high)

        # A Python trampoline puts them on fds 3 and 4 and execs Chromium (no preexec_fn, no shell fd limits).
        hop = ("import os, sys; os.dup2(int(sys.argv[1]), 3); os.dup2(int(sys.argv[2]), 4); "
               "os.execv(sys.argv[3], sys.argv[3:])")
        args = [binary, *FLAGS, f"--user-data-dir={user_dir}", "about:blank"]
        self.proc = subprocess.Popen([sys.executable, "-c", hop, str(to_chrome_r), str(from_chrome_w), *args],
                                     pass_fds=(to_chrome_r, from_chrome_w),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buffer = b""
        self._id = 0
        self.events: list[dict] = []

    def send(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float = 60.0) -> dict:
        self._id += 1
        message = {"id": self._id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._next(timeout)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, timeout: float = 60.0) -> dict:
        for i, event in enumerate(self.events):
            if event.get("method") == method:
                return self.events[i]
        while True:
            event = self._next(timeout)
            self.events.append(event)
            if event.get("method") == method:
                return event

    def _next(self, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from_chrome], [], [], left)[0]:
                raise TimeoutError("Chromium did not answer in time")
            chunk = os.read(self._from_chrome, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed the DevTools pipe")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=10)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_chrome)
        os.close(self._from_chrome)


class Browser:
    """One headless Chromium with one tab: `with Browser() as b: b.open(page); b.evaluate(...); b.click(x, y)`."""

    def __init__(self, width: int = 1240, height: int = 900, binary: str | None = None) -> None:
        self.binary = binary or find_chromium()
        if self.binary is None:
            raise FileNotFoundError("no chromium executable on PATH")
        self.width, self.height = width, height

    def __enter__(self) -> "Browser":
        self._user_dir = tempfile.TemporaryDirectory(prefix="sagan-chromium-")
        self.pipe = _Pipe(self.binary, self._user_dir.name)
        try:
            target = self.pipe.send("Target.createTarget", {"url": "about:blank"})["targetId"]
            self.session = self.pipe.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            for domain in ("Page", "Runtime", "Log", "Network"):
                self.send(f"{domain}.enable")
            self.resize(self.width, self.height)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.pipe.close()
        self._user_dir.cleanup()

    def send(self, method: str, params: dict | None = None, timeout: float = 60.0) -> dict:
        return self.pipe.send(method, params, session=self.session, timeout=timeout)

    def resize(self, width: int, height: int) -> None:
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})

    def open(self, html_path: str | Path) -> None:
        """Navigate to a local file and wait for its load event."""
        self.pipe.events.clear()
        self.send("Page.navigate", {"url": Path(html_path).resolve().as_uri()})
        self.pipe.wait_for("Page.loadEventFired")

    def evaluate(self, expression: str, await_promise: bool = False, timeout: float = 60.0):
        """The value of a JavaScript expression (awaited when it is a promise); RuntimeError if it throws."""
        reply = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                               "awaitPromise": await_promise}, timeout=timeout)
        if "exceptionDetails" in reply:
            details = reply["exceptionDetails"]
            raise RuntimeError(f"{expression[:60]}: {details.get('exception', {}).get('description') or details}")
        return reply["result"].get("value")

    def click(self, x: float, y: float) -> None:
        """A real mouse click (move, press, release) at viewport coordinates."""
        for kind, extra in (("mouseMoved", {}), ("mousePressed", {"button": "left", "clickCount": 1}),
                            ("mouseReleased", {"button": "left", "clickCount": 1})):
            self.send("Input.dispatchMouseEvent", {"type": kind, "x": x, "y": y, **extra})

    def screenshot(self, path: str | Path, full_page: bool = True) -> None:
        if full_page:
            metrics = self.send("Page.getLayoutMetrics")
            self.resize(self.width, int(metrics["cssContentSize"]["height"]) + 1)
        shot = self.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": full_page})
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(base64.b64decode(shot["data"]))
        if full_page:
            self.resize(self.width, self.height)

    def problems(self) -> tuple[list[str], list[str]]:
        """Errors (exceptions, console errors, error log entries, failed loads) and non-local requests so far."""
        errors, requests = [], []
        for event in self.pipe.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.exceptionThrown":
                errors.append(f"exception: {params['exceptionDetails'].get('text')}")
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                errors.append("console.error: " + " ".join(str(a.get("value", a.get("description")))
                                                           for a in params.get("args", [])))
            elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                errors.append(f"log ({params['entry'].get('source')}): {params['entry'].get('text')}")
            elif method == "Network.loadingFailed":
                errors.append(f"load failed: {params.get('errorText')}")
            elif method == "Network.requestWillBeSent":
                req_url = params["request"]["url"]
                if not req_url.startswith(("data:", "file:", "about:", "blob:")):
                    requests.append(req_url)
        return errors, requests


def render(html_path: str | Path, screenshot: str | Path | None = None, width: int = 1240,
           binary: str | None = None) -> dict:
    """Load a local HTML file in headless Chromium; what went wrong, the images, and the page's title.

    Returns {"title", "errors": [...], "requests": [non-file, non-data URLs requested], "images": [...]}.
    """
    with Browser(width, binary=binary) as browser:
        browser.open(html_path)
        title = browser.evaluate("document.title")
        images = json.loads(browser.evaluate(_IMAGES))
        if screenshot is not None:
            browser.screenshot(screenshot)
        errors, requests = browser.problems()
    return {"title": title, "errors": errors, "requests": requests, "images": images}


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Render a page in headless Chromium; list its problems.")
    parser.add_argument("html")
    parser.add_argument("--screenshot", metavar="PNG", help="also save a full-page screenshot")
    parser.add_argument("--width", type=int, default=1240)
    args = parser.parse_args()
    result = render(args.html, args.screenshot, args.width)
    print(json.dumps({**result, "images": len(result["images"]),
                      "images_loaded": sum(i["naturalWidth"] > 0 for i in result["images"])}, indent=2))
    sys.exit(1 if result["errors"] or result["requests"] else 0)

"""`sagan report`: a self-contained page that renders in headless Chromium with every image loaded.

The Chromium check speaks the DevTools protocol over a pipe (--remote-debugging-pipe: NUL-terminated JSON on
fds 3 and 4), so it needs no websocket library: console errors, uncaught exceptions, failed loads, network
requests and each <img>'s natural size come back, and a full-page screenshot. As a script:
`python tests/test_report.py RUN/report.html --screenshot report.png`.
"""

import base64
import fcntl
import io
import json
import os
import re
import select
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

from sagan.cli import main
from sagan.config import TrainConfig, apply_overrides
from sagan.report import _last_per_step, build_report
from sagan.stats import read_metrics
from sagan.train import train
from sagan.viz import attention_study

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


def render(html_path: str | Path, screenshot: str | Path | None = None, width: int = 1240,
           binary: str | None = None) -> dict:
    """Load a local HTML file in headless Chromium; what went wrong, the images, and the page's title.

    Returns {"title", "errors": [...], "requests": [non-file, non-data URLs requested], "images": [...]}.
    """
    binary = binary or find_chromium()
    if binary is None:
        raise FileNotFoundError("no chromium executable on PATH")
    url = Path(html_path).resolve().as_uri()
    with tempfile.TemporaryDirectory(prefix="sagan-chromium-") as user_dir:
        pipe = _Pipe(binary, user_dir)
        try:
            target = pipe.send("Target.createTarget", {"url": "about:blank"})["targetId"]
            session = pipe.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            for domain in ("Page", "Runtime", "Log", "Network"):
                pipe.send(f"{domain}.enable", session=session)
            pipe.send("Emulation.setDeviceMetricsOverride",
                      {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": False}, session=session)
            pipe.events.clear()
            pipe.send("Page.navigate", {"url": url}, session=session)
            pipe.wait_for("Page.loadEventFired")
            title = pipe.send("Runtime.evaluate", {"expression": "document.title", "returnByValue": True},
                              session=session)["result"]["value"]
            images = json.loads(pipe.send("Runtime.evaluate", {"expression": _IMAGES, "returnByValue": True},
                                          session=session)["result"]["value"])
            if screenshot is not None:
                metrics = pipe.send("Page.getLayoutMetrics", session=session)
                height = int(metrics["cssContentSize"]["height"]) + 1
                pipe.send("Emulation.setDeviceMetricsOverride",
                          {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}, session=session)
                shot = pipe.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True},
                                 session=session)
                Path(screenshot).parent.mkdir(parents=True, exist_ok=True)
                Path(screenshot).write_bytes(base64.b64decode(shot["data"]))
        finally:
            pipe.close()
    errors, requests = [], []
    for event in pipe.events:
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
            if not req_url.startswith(("data:", "file:", "about:")):
                requests.append(req_url)
    return {"title": title, "errors": errors, "requests": requests, "images": images}


# ----------------------------------------------------------------------------------------------------------
# A tiny trained run, and its report


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, tiny_folder):
    """`sagan train` for 6 steps of a tiny sagan_32, plus an eval record and an alarm as later steps would add."""
    tmp = tmp_path_factory.mktemp("report")
    data, run = tiny_folder, tmp / "run"
    cfg = apply_overrides(TrainConfig(), {
        "model": "sagan_32", "model_args": {"g_ch": 8, "d_ch": 8}, "data": str(data), "out": str(run),
        "max_steps": 6, "batch_size": 8, "log_every": 2, "sample_every": 3, "checkpoint_every": 3,
        "precision": "fp32", "threads": 1, "channels_last": False})
    train(cfg)
    with open(run / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"step": 6, "time": 0.0, "kind": "eval", "fd_fmnist": 123.4, "kid_fmnist": 0.12,
                            "kid_fmnist_std": 0.01, "is_fmnist": 2.5, "is_fmnist_std": 0.1}) + "\n")
        f.write(json.dumps({"step": 4, "time": 0.0, "kind": "alarm",
                            "event": "possible mode collapse: sample diversity 0.010 is below 0.25x ..."}) + "\n")
    record = {"scores": {"fd_fmnist": 98.7, "kid_fmnist": 0.05, "kid_fmnist_std": 0.004},
              "provenance": {"reference_source": "fashion-mnist test split (idx files)", "extractor": "fmnist",
                             "generated_count": 1000, "seed": 0, "checkpoint": "checkpoints/step_000000006.pt",
                             "metrics": {"fd_fmnist": "Frechet distance, fmnist penultimate, 1000 gen vs 10000"}}}
    (run / "eval-fashion-mnist-fmnist.json").write_text(json.dumps(record))
    return run


@pytest.fixture(scope="module")
def report(trained_run, tmp_path_factory):
    return build_report(trained_run, tmp_path_factory.mktemp("html") / "report.html")


def test_metrics_hold_the_health_signals(trained_run):
    train_records = [r for r in read_metrics(trained_run) if r["kind"] == "train"]
    # every 2 steps (log_every), and at 3 and 6, where G_ema is published (samples and checkpoints every 3)
    assert [r["step"] for r in train_records] == [2, 3, 4, 6]
    for r in train_records:
        keys = ["loss_d", "loss_g", "d_real", "d_fake", "gamma/G.16", "gamma/D.16",
                *(f"sigma/{n}.{s}" for n in "GD" for s in ("max", "mean", "min"))]
        keys += ["grad_norm_g", "grad_norm_d"] if r["step"] % 2 == 0 else []
        keys += ["diversity"] if r["step"] % 3 == 0 else []  # measured on the published G_ema
        for key in keys:
            assert isinstance(r[key], float), key
        assert ("diversity" in r) == (r["step"] % 3 == 0)
    assert list((trained_run / "tensorboard").glob("events.out.tfevents.*"))


def test_maps_of_distant_points_differ_after_training(trained_run):
    study = attention_study(trained_run, points=[(1, 1), (30, 30)], seed=0, num=2)
    assert [m.name for m in study.layers] == ["G.16", "D.16"]
    for layer in study.layers:
        torch.testing.assert_close(layer.maps.sum((-1, -2)), torch.ones(2, 2))
    g = study.layers[0].maps
    assert all(0.5 * float((g[b, 0] - g[b, 1]).abs().sum()) > 1e-3 for b in range(2))


def _images(page: str) -> list[str]:
    return re.findall(r'<img[^>]*\ssrc="([^"]*)"', page)


def test_report_is_self_contained(report):
    page = report.read_text()
    sources = _images(page)
    assert len(sources) >= 3 + 8 + 1 + 1  # sample grids, health curves, attention figure, eval curve
    for src in sources:
        assert src.startswith("data:image/png;base64,")
        with Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))) as im:
            im.verify()
    assert not re.search(r'(src|href)="(https?:)?//', page)  # nothing to fetch
    assert "default-src 'none'" in page  # and the page forbids fetching anything
    for text in ("Samples over training", "Attention gain gamma", "Spectral norm", "Gradient norms",
                 "Sample diversity", "G.16", "D.16", "possible mode collapse", "fd_fmnist", "123.4",
                 "eval-fashion-mnist-fmnist.json", "fashion-mnist test split (idx files)", "batch_size: 8",
                 "Model (generator.json)", "g_attention"):
        assert text in page, text


def test_report_renders_in_chromium(report, tmp_path):
    if find_chromium() is None:
        pytest.skip("chromium is not installed (CI installs Debian's chromium)")
    shot = tmp_path / "report.png"
    result = render(report, screenshot=shot)
    assert result["title"].startswith("sagan report")
    assert result["errors"] == []
    assert result["requests"] == []
    images = result["images"]
    assert len(images) == len(_images(report.read_text()))
    assert all(i["complete"] and i["naturalWidth"] > 0 and i["naturalHeight"] > 0 for i in images), images
    with Image.open(shot) as im:
        assert im.size[0] == 1240 and im.size[1] > 2000  # the whole page, not one screen


def test_resumed_runs_plot_each_step_once():
    records = [{"step": 2, "v": 1}, {"step": 4, "v": 2}, {"step": 6, "v": 3}, {"step": 4, "v": 4}, {"v": 5}]
    assert _last_per_step(records) == [{"step": 2, "v": 1}, {"step": 4, "v": 4}, {"step": 6, "v": 3}]


def test_report_cli(trained_run, tmp_path, capsys):
    out = tmp_path / "r.html"
    assert main(["report", str(trained_run), "--out", str(out), "--no-attention", "--samples", "2"]) == 0
    assert "self-contained" in capsys.readouterr().err
    page = out.read_text()
    assert "Left out (--no-attention)" in page
    assert page.count("<figcaption>step ") == 2
    assert main(["report", str(tmp_path / "nowhere")]) == 2
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 2
    assert "not a run folder" in capsys.readouterr().err


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Render a report in headless Chromium; list its problems.")
    parser.add_argument("html")
    parser.add_argument("--screenshot", metavar="PNG", help="also save a full-page screenshot")
    parser.add_argument("--width", type=int, default=1240)
    args = parser.parse_args()
    result = render(args.html, args.screenshot, args.width)
    print(json.dumps({**result, "images": len(result["images"]),
                      "images_loaded": sum(i["naturalWidth"] > 0 for i in result["images"])}, indent=2))
    sys.exit(1 if result["errors"] or result["requests"] else 0)

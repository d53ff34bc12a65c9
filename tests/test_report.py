"""`sagan report`: a self-contained page that renders in headless Chromium with every image loaded.

The Chromium driver (DevTools over a pipe) is tests/browser.py; to check a page by hand:
`python -m tests.browser RUN/report.html --screenshot report.png`.
"""

import base64
import io
import json
import re

import pytest
import torch
from PIL import Image

from sagan.cli import main
from sagan.config import TrainConfig, apply_overrides
from sagan.report import build_report
from sagan.report.build import _last_per_step
from sagan.stats import read_metrics
from sagan.train import train
from sagan.viz import attention_study
from tests.browser import find_chromium, render

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


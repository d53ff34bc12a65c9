"""`sagan explore`: the page loads in headless Chromium, answers clicks, and shows the rows Python computes."""

import json
import re

import numpy as np
import pytest
import torch

from sagan.checkpoint import load_generator
from sagan.cli import main
from sagan.config import TrainConfig, apply_overrides
from sagan.explore import class_mix, dequantise, quantise
from sagan.report import build_report
from sagan.sampling import sample_labels, sample_latents
from sagan.train import train
from sagan.viz import discriminator_attention, generator_attention, load_discriminator
from tests.browser import Browser, find_chromium
from tests.conftest import tiny_train_args

NUM, FRAMES, SEED = 4, 3, 5


def _train(folder, out, steps, **extra):
    train(apply_overrides(TrainConfig(), tiny_train_args(folder, out, steps, **extra)))
    return out


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_folder):
    """A tiny conditional sagan_32 (attention at 16x16 in G and D) after 6 steps."""
    return _train(tiny_folder, tmp_path_factory.mktemp("explore") / "run", 6)


@pytest.fixture(scope="module")
def page(run):
    assert main(["explore", str(run), "--num", str(NUM), "--frames", str(FRAMES), "--seed", str(SEED)]) == 0
    return run / "explore.html"


@pytest.fixture(scope="module")
def browser(page):
    if find_chromium() is None:
        pytest.skip("chromium is not installed (CI installs Debian's chromium)")
    with Browser(1240, 900) as b:
        b.open(page)
        b.evaluate("explorer.ready.then(() => true)", await_promise=True)
        yield b


def _meta(page) -> dict:
    raw = re.search(r'<script type="application/json" id="meta">(.*?)</script>', page.read_text(), re.S).group(1)
    return json.loads(raw)


def _click_image(b: Browser, x: int, y: int, canvas: str = "#query-image") -> None:
    """A mouse click on image pixel (x, y) of a canvas that shows the whole image."""
    box = b.evaluate(f"JSON.stringify(document.querySelector('{canvas}').getBoundingClientRect())")
    box, size = json.loads(box), b.evaluate("explorer.meta.resolution")
    b.click(box["x"] + (x + 0.5) * box["width"] / size, box["y"] + (y + 0.5) * box["height"] / size)


def _shown(b: Browser) -> list[dict]:
    return b.evaluate("explorer.shown()")


def _overlays(b: Browser) -> list[str]:
    return b.evaluate("Array.from(document.querySelectorAll('.panels canvas.map'), c => c.toDataURL())")


def _set_view(b: Browser, smooth: bool, opacity: float) -> None:
    """Set the smoothing checkbox and the overlay slider as a person would (events included)."""
    b.evaluate(f"""{{ const s = document.getElementById('smooth'); if (s.checked !== {str(smooth).lower()}) s.click();
                     const o = document.getElementById('opacity'); o.value = {opacity};
                     o.dispatchEvent(new Event('input')); }}""")


def test_rows_are_packed_within_half_a_step():
    rows = torch.softmax(torch.randn(3, 256, 64) * 3, dim=-1)
    codes, scale = quantise(rows)
    assert codes.dtype == np.uint8 and scale.dtype == np.float32
    error = np.abs(dequantise(codes, scale) - rows.double().numpy())
    assert (error <= scale[..., None] / 510 * (1 + 1e-6)).all()
    assert (codes.max(-1) == 255).all()  # every row uses the full range


def test_page_says_what_it_holds(page, run):
    text, meta = page.read_text(), _meta(page)
    assert meta["model"] == "sagan_32" and meta["step"] == 6 and meta["ema"] is True and meta["seed"] == SEED
    words = " ".join(re.sub(r"<[^>]+>", "", text).split())
    for phrase in ("Model sagan_32 (32 px, 2 classes: circles, squares), step 6, generator G_ema, seed 5",
                   "largest error of any weight"):
        assert phrase in words, phrase
    assert 0 < meta["max_error"] < 1 / 510 + 1e-9
    assert [s["key"] for s in meta["sets"]] == ["generated", "real", "latents", "classes"]
    assert [layer["name"] for layer in meta["sets"][0]["layers"]] == ["G.16", "D.16"]
    assert [layer["name"] for layer in meta["sets"][1]["layers"]] == ["D.16"]
    assert meta["sets"][2]["images"]["shape"] == [FRAMES, 32, 32, 3]
    assert meta["sets"][0]["layers"][0]["codes"]["shape"] == [NUM, 256, 64]  # every query, every key
    assert "default-src 'none'" in text and not re.search(r'(src|href)="(https?:)?//', text)


def test_page_loads_draws_and_answers_clicks(browser):
    errors, requests = browser.problems()
    assert errors == [] and requests == []
    canvases = browser.evaluate("""Array.from(document.querySelectorAll('canvas'), c => {
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let drawn = 0, first = d.slice(0, 4).join();
        let varied = false;
        for (let i = 0; i < d.length; i += 4) {
          if (d[i + 3] > 0) drawn++;
          if (!varied && d.slice(i, i + 4).join() !== first) varied = true;
        }
        return {drawn: drawn / (d.length / 4), varied, cls: c.className};
    })""")
    # query image, G.16 and D.16 maps with their colour bars, every thumbnail
    assert len(canvases) == 1 + 2 * 2 + NUM * 2 + FRAMES * 2
    assert all(c["drawn"] == 1 and c["varied"] for c in canvases), canvases
    _click_image(browser, 3, 4)
    first, first_rows = _overlays(browser), _shown(browser)
    assert browser.evaluate("JSON.stringify(explorer.state.pinned)") == '{"x":3,"y":4}'
    _click_image(browser, 27, 22)
    second, second_rows = _overlays(browser), _shown(browser)
    assert [r["cell"] for r in first_rows] == [[2, 1]] * 2 and [r["cell"] for r in second_rows] == [[11, 13]] * 2
    assert all(a != b for a, b in zip(first, second))  # every layer's overlay moved
    box = json.loads(browser.evaluate("JSON.stringify(document.querySelector('#query-image').getBoundingClientRect())"))
    browser.send("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": box["x"] + 2, "y": box["y"] + 2})
    assert [r["cell"] for r in _shown(browser)] == [[0, 0]] * 2  # hovering shows the pixel under the mouse
    browser.send("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": 1, "y": 1})
    assert [r["cell"] for r in _shown(browser)] == [[11, 13]] * 2  # and leaving returns to the pinned one
    assert browser.problems()[0] == []


def test_shown_map_is_the_row_python_computes(browser, page, run):
    meta = _meta(page)
    stated = float(browser.evaluate("document.getElementById('max-error').dataset.value"))
    assert stated == meta["max_error"]
    tolerance = stated + 1e-6  # float32 rounding between the page's batch and this one
    generator, info = load_generator(run)
    classes = info["model"]["num_classes"]
    z = sample_latents(NUM, info["model"]["z_dim"], torch.Generator().manual_seed(SEED))
    y = sample_labels(NUM, classes)
    discriminator, _ = load_discriminator(run)
    for image, (x, yy) in ((0, (20, 9)), (2, (5, 30))):
        browser.evaluate(f"explorer.select(0, {image})")
        _click_image(browser, x, yy)
        shown = {r["name"]: r for r in _shown(browser)}
        images, g_layers = generator_attention(generator, z, y, [(x, yy)])
        d_layers = discriminator_attention(discriminator, images, y, [(x, yy)])
        for layer in g_layers + d_layers:
            expected = layer.maps[image, 0].flatten().double().numpy()  # (64,) keys of the 8x8 grid
            got = np.array(shown[layer.name]["weights"])
            assert got.shape == expected.shape
            assert np.abs(got - expected).max() <= tolerance, layer.name
            assert np.abs(got - expected).max() > 0  # they went through the 8-bit packing
    # the colours drawn, read back from the canvases and inverted through the colour map, say the same
    _set_view(browser, smooth=False, opacity=1)
    lut = np.array(browser.evaluate("explorer.meta.colour_maps.inferno")).reshape(256, 3)
    pixels = browser.evaluate("Array.from(document.querySelectorAll('.panels canvas.map'), c => "
                              "Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data))")
    _set_view(browser, smooth=True, opacity=0.6)
    cell = 224 // 8  # display side / keys per side
    checked = 0
    for layer, drawn in zip(g_layers + d_layers, pixels):
        drawn = np.array(drawn).reshape(224, 224, 4)[..., :3]
        weights = np.array(shown[layer.name]["weights"])
        lo, hi = weights.min(), weights.max()
        for k, expected in enumerate(layer.maps[image, 0].flatten().tolist()):
            px, py = (k % 8 + 0.5) * cell, (k // 8 + 0.5) * cell
            if np.hypot(px - (x + 0.5) * 7, py - (yy + 0.5) * 7) < 24:
                continue  # under the query marker
            index = np.abs(lut - drawn[int(py), int(px)]).sum(1).argmin()
            value = lo + index / 255 * (hi - lo)
            assert abs(value - expected) <= tolerance + 2 * (hi - lo) / 255, (layer.name, k)
            checked += 1
    assert checked > 100
    # the relative view divides by the image's mean map over every query
    rows = {r["name"]: r for r in _shown(browser)}
    browser.evaluate("document.getElementById('relative').click()")
    relative = {r["name"]: r for r in _shown(browser)}
    browser.evaluate("document.getElementById('relative').click()")
    for name, row in rows.items():
        np.testing.assert_allclose(relative[name]["values"], np.array(row["weights"]) / np.array(row["mean"]))
    assert browser.problems()[0] == []


def test_interpolation_frames_show_their_own_maps(browser, run):
    generator, info = load_generator(run)
    z = sample_latents(NUM, info["model"]["z_dim"], torch.Generator().manual_seed(SEED))
    y = sample_labels(NUM, info["model"]["num_classes"])
    frame = "document.querySelector('canvas.thumb[data-set=\"2\"][data-image=\"1\"]')"
    browser.evaluate(f"{frame}.scrollIntoView({{block: 'end'}})")  # below the sticky view, not under it
    box = json.loads(browser.evaluate(f"JSON.stringify({frame}.getBoundingClientRect())"))
    browser.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    assert browser.evaluate("[explorer.state.set, explorer.state.image]") == [2, 1]
    browser.evaluate("window.scrollTo(0, 0)")
    _click_image(browser, 16, 16)
    t = torch.linspace(0, 1, FRAMES)
    zs = (1 - t[:, None]) * z[0] + t[:, None] * z[1]
    _, layers = generator_attention(generator, zs, y[:1].repeat(FRAMES), [(16, 16)])
    (shown,) = _shown(browser)
    tolerance = browser.evaluate("explorer.meta.max_error") + 1e-6
    assert np.abs(np.array(shown["weights"]) - layers[0].maps[1, 0].flatten().numpy()).max() <= tolerance


def test_class_mix_moves_g_from_one_class_to_the_other(run):
    generator, info = load_generator(run)
    z = sample_latents(1, info["model"]["z_dim"], torch.Generator().manual_seed(0)).repeat(3, 1)
    with torch.no_grad():
        ends = generator(z[:2], torch.tensor([0, 1]))
        with class_mix(generator, 0, 1, torch.tensor([0.0, 1.0, 0.5])):
            mixed = generator(z, torch.zeros(3, dtype=torch.long))
    torch.testing.assert_close(mixed[:2], ends)
    assert not torch.allclose(mixed[2], ends[0]) and not torch.allclose(mixed[2], ends[1])


def test_report_links_to_the_explorer(page, run, tmp_path):
    assert 'href="explore.html"' in build_report(run, attention=False).read_text()
    assert "explore.html" not in build_report(run, tmp_path / "elsewhere.html", attention=False).read_text()


def test_errors_are_one_line(run, tiny_folder, tmp_path, capsys):
    no_attention = _train(tiny_folder, tmp_path / "sngan", 1, model="sngan_32")
    cases = [([str(no_attention), "--out", str(tmp_path / "a.html")], "nothing to explore"),
             ([str(tmp_path / "missing")], "no such run folder"),
             ([str(run), "--out", "/proc/sagan-cannot-write-here/e.html"], "cannot write"),
             ([str(run), "--out", str(tmp_path)], "it is a folder"),
             ([str(run), "--class", "7"], "class 7")]
    capsys.readouterr()
    for args, words in cases:
        assert main(["explore", *args]) == 2, args
        err = capsys.readouterr().err
        assert words in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "missing").exists() and not (tmp_path / "a.html").exists()


@pytest.mark.parametrize("model", ["sagan_32", "sagan_64"])
def test_default_page_stays_under_20_mb(model, tiny_folder, tmp_path):
    """Every row of 16 generated and 16 real images and two 8-frame strips: 32 px (16x16 attention, as in
    sagan_32_cpu) and 64 px (32x32 attention in G and D, 1,024 queries x 256 keys per image and layer)."""
    run = _train(tiny_folder, tmp_path / model, 1, model=model, batch_size=4, standing_samples=8)
    assert main(["explore", str(run)]) == 0
    page = run / "explore.html"
    meta, size = _meta(page), page.stat().st_size
    queries = (16 if model == "sagan_32" else 32) ** 2
    assert meta["payload_bytes"] >= (16 * 3 + 8 * 2) * queries * queries // 4  # nothing was left out
    assert size < 20e6, size


def test_a_page_over_budget_holds_fewer_images_and_says_so(run, tmp_path, capsys):
    out = tmp_path / "small.html"
    assert main(["explore", str(run), "--out", str(out), "--num", "8", "--frames", "8", "--max-mb", "0.4"]) == 0
    meta = _meta(out)
    assert out.stat().st_size <= 0.4e6
    counts = {s["key"]: s["images"]["shape"][0] for s in meta["sets"]}
    assert counts["generated"] == 8 and "classes" not in counts  # the class strip goes first, generated last
    assert "fewer images than asked" in meta["notes"][-1] and "fewer images than asked" in out.read_text()
    capsys.readouterr()
    assert main(["explore", str(run), "--out", str(tmp_path / "none.html"), "--max-mb", "0.01"]) == 2
    err = capsys.readouterr().err
    assert "raise --max-mb" in err and len(err.strip().splitlines()) == 1 and not (tmp_path / "none.html").exists()


def test_an_exported_unconditional_generator_has_g_maps_only(tiny_folder, tmp_path, capsys):
    run = _train(tiny_folder, tmp_path / "uncond", 1, conditional=False)
    out = tmp_path / "g.html"
    assert main(["explore", str(run / "generator.safetensors"), "--out", str(out), "--num", "2", "--frames", "2"]) == 0
    meta = _meta(out)
    assert meta["num_classes"] == 0 and [s["key"] for s in meta["sets"]] == ["generated", "latents"]
    assert [layer["name"] for s in meta["sets"] for layer in s["layers"]] == ["G.16", "G.16"]
    assert "No discriminator maps" in meta["notes"][0] and "unconditional" in out.read_text()

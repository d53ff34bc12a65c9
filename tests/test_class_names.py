"""A labelled run keeps its class names, every command shows them, and `--class` takes a name.

The run: a flat-ish folder of solid red, green and blue images in two sub-folders ("a", "b") that are NOT the
classes; the classes come from a labels CSV. A command that forgot the labels file would see 2 classes.
"""

import base64
import json
import re
import zlib

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from sagan.checkpoint import latest_checkpoint, load_generator
from sagan.cli import main
from sagan.config import TrainConfig, apply_overrides
from sagan.data.run import RunData, class_name, load_run_data, resolve_class
from sagan.errors import ConfigError, DataError
from sagan.explore import render_page
from sagan.train import train
from tests.conftest import tiny_train_args
from tests.test_labels import COLOURS, make_folder, write_csv

NAMES = ["blue", "green", "red"]  # sorted label values: class i is NAMES[i]


@pytest.fixture(scope="module")
def labelled_run(tmp_path_factory):
    """A tiny conditional sagan_32 trained 2 steps on the colour labels of labels.csv."""
    base = tmp_path_factory.mktemp("names")
    root = base / "images"
    rows = make_folder(root, per_class=8)
    labels = write_csv(base / "labels.csv", rows)
    cfg = apply_overrides(TrainConfig(), tiny_train_args(root, base / "run", 2, labels=str(labels),
                                                         label_column="colour", standing_samples=8))
    train(cfg)
    return base / "run"


def _meta(page) -> dict:
    raw = re.search(r'<script type="application/json" id="meta">(.*?)</script>', page.read_text(), re.S).group(1)
    return json.loads(raw)


def _set_images(page, key: str) -> np.ndarray:
    """The uint8 (B, H, W, 3) images of one set of an explorer page, read back from its embedded payload."""
    text = page.read_text()
    blob = re.search(r'id="payload">(.*?)</script>', text, re.S).group(1)
    payload = zlib.decompress(base64.b64decode(blob))
    entry = next(s for s in _meta(page)["sets"] if s["key"] == key)["images"]
    n = int(np.prod(entry["shape"]))
    return np.frombuffer(payload, np.uint8, n, entry["offset"]).reshape(entry["shape"])


def test_the_run_keeps_its_class_names_in_config_checkpoint_and_export(labelled_run):
    assert yaml.safe_load((labelled_run / "config.yaml").read_text())["class_names"] == NAMES
    _, state = latest_checkpoint(labelled_run)
    assert state["train_config"]["class_names"] == NAMES
    assert json.loads((labelled_run / "generator.json").read_text())["class_names"] == NAMES
    for target in (labelled_run, labelled_run / "generator.safetensors"):
        generator, info = load_generator(target)
        assert info["class_names"] == NAMES and generator.num_classes == 3
        assert RunData.from_info(info).label_options()["label_column"] == "colour"


def test_sample_takes_a_class_name_and_says_it(labelled_run, tmp_path, capsys):
    out = tmp_path / "green.npz"
    assert main(["sample", str(labelled_run), "--class", "Green", "--num", "4", "--out", str(out)]) == 0
    assert "green (class 1)" in capsys.readouterr().err
    with np.load(out) as z:
        assert z["labels"].tolist() == [1] * 4 and z["class_names"].tolist() == NAMES
    by_index = tmp_path / "one.npz"
    assert main(["sample", str(labelled_run), "--class", "1", "--num", "4", "--out", str(by_index)]) == 0
    with np.load(out) as a, np.load(by_index) as b:
        assert np.array_equal(a["images"], b["images"])  # the name and the index draw the same class


def test_an_unknown_class_name_is_one_line_listing_the_names(labelled_run, capsys):
    capsys.readouterr()
    assert main(["sample", str(labelled_run), "--class", "gren", "--num", "2", "--out", "x.npz"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "did you mean: green" in err and "blue, green, red" in err
    assert main(["sample", str(labelled_run), "--class", "3", "--num", "2", "--out", "x.npz"]) == 2
    assert "classes 0..2 (blue, green, red)" in capsys.readouterr().err


def test_per_class_grid_names_its_rows(labelled_run, tmp_path):
    grid = tmp_path / "grid.png"
    assert main(["sample", str(labelled_run), "--per-class", "2", "--grid", str(grid)]) == 0
    with Image.open(grid) as im:
        width, height = im.size
        margin = np.asarray(im.convert("L"))[:, : width - (2 * 33 + 1)]
    assert height == 3 * 33 + 1 and width > 2 * 33 + 1 + 10  # a margin on the left of the 3 x 2 images
    rows = [margin[1 + 33 * r: 33 * (r + 1)] for r in range(3)]
    assert all((row < 128).any() for row in rows)  # each row has its name written beside it


def test_explore_captions_and_real_labels_come_from_the_labels_file(labelled_run, tmp_path):
    page = tmp_path / "e.html"
    assert main(["explore", str(labelled_run), "--num", "6", "--frames", "2", "--out", str(page)]) == 0
    meta = _meta(page)
    assert meta["class_names"] == NAMES
    generated = next(s for s in meta["sets"] if s["key"] == "generated")
    assert generated["captions"] == [f"#{i} {NAMES[i % 3]}" for i in range(6)] and generated["labels"] == [
        0, 1, 2, 0, 1, 2]
    real = next(s for s in meta["sets"] if s["key"] == "real")
    assert "labels 'colour'" in real["title"]
    # each real image's label (what D's projection head was fed) is the colour its pixels show
    pixels = _set_images(page, "real")
    for image, label, caption in zip(pixels, real["labels"], real["captions"]):
        closest = min(COLOURS, key=lambda c: np.abs(image[16, 16].astype(int) - COLOURS[c]).sum())
        assert NAMES[label] == closest and caption.endswith(closest)
    assert "3 classes: blue, green, red" in page.read_text()
    strip = next(s for s in meta["sets"] if s["key"] == "classes")
    assert strip["title"] == "Between blue and green at latent #0"


def test_explore_and_attention_take_a_class_name(labelled_run, tmp_path, capsys):
    page = tmp_path / "red.html"
    assert main(["explore", str(labelled_run / "generator.safetensors"), "--class", "red", "--num", "2",
                 "--frames", "0", "--out", str(page)]) == 0
    assert [s["captions"] for s in _meta(page)["sets"]] == [["#0 red", "#1 red"]]
    capsys.readouterr()
    assert main(["attention", str(labelled_run), "--class", "blue", "--out", str(tmp_path / "a.png")]) == 0
    assert "class blue" in capsys.readouterr().err
    assert main(["attention", str(labelled_run), "--class", "purple", "--out", str(tmp_path / "b.png")]) == 2
    assert "blue, green, red" in capsys.readouterr().err


def test_report_names_the_classes(labelled_run, tmp_path):
    assert main(["report", str(labelled_run), "--no-attention", "--out", str(tmp_path / "r.html")]) == 0
    text = (tmp_path / "r.html").read_text()
    assert "3: blue, green, red" in text and "Row by row, the classes blue, green, red." in text


def test_run_data_applies_the_labels_file_and_checks_the_classes(labelled_run, tmp_path):
    _, info = load_generator(labelled_run)
    data = load_run_data(info, 16)
    assert data.class_names == NAMES and data.num_classes == 3  # not the 2 sub-folders
    assert RunData.from_info(info).label_options(str(tmp_path))["labels"] is None  # other data: its own labels
    changed = RunData.from_info({**info, "class_names": ["cyan", "magenta", "yellow"]})
    with pytest.raises(DataError, match="the run trained on cyan, magenta, yellow"):
        load_run_data(changed, 16)


def test_a_run_from_before_class_names_still_loads(labelled_run, tmp_path, capsys):
    """Strip the names from every place this change writes them: the run loads and speaks in indices."""
    import shutil

    old = tmp_path / "old"
    shutil.copytree(labelled_run, old)
    for path in (old / "checkpoints").glob("*.pt"):
        state = torch.load(path, weights_only=True)
        del state["train_config"]["class_names"]
        torch.save(state, path)
    meta = json.loads((old / "generator.json").read_text())
    del meta["class_names"]
    (old / "generator.json").write_text(json.dumps(meta))
    config = yaml.safe_load((old / "config.yaml").read_text())
    del config["class_names"]
    (old / "config.yaml").write_text(yaml.safe_dump(config))

    for target in (old, old / "generator.safetensors"):
        _, info = load_generator(target)
        assert info["class_names"] is None and info["model"]["num_classes"] == 3
    capsys.readouterr()
    assert main(["sample", str(old), "--class", "2", "--num", "2", "--out", str(tmp_path / "s.npz")]) == 0
    assert "class 2" in capsys.readouterr().err
    assert main(["sample", str(old), "--class", "red", "--num", "2", "--out", str(tmp_path / "s.npz")]) == 2
    assert "does not record class names" in capsys.readouterr().err
    page = tmp_path / "old.html"
    assert main(["explore", str(old), "--num", "3", "--frames", "0", "--out", str(page)]) == 0
    sets = _meta(page)["sets"]
    assert sets[0]["captions"] == ["#0 class 0", "#1 class 1", "#2 class 2"]
    assert len(sets[1]["labels"]) == 3 and max(sets[1]["labels"]) <= 2  # the labels file still applies
    assert main(["report", str(old), "--no-attention", "--out", str(tmp_path / "r.html")]) == 0


def test_resolve_class():
    names = ["Animals & Nature", "Flags", "3"]
    assert resolve_class("Flags", 3, names) == 1 and resolve_class("flags", 3, names) == 1
    assert resolve_class("3", 3, names) == 2  # a name first, whatever its index
    assert resolve_class("0", 3, names) == 0 and resolve_class(1, 3, names) == 1 and resolve_class(None, 3) is None
    with pytest.raises(ConfigError, match=r"did you mean: Flags\?\); its classes are Animals & Nature, Flags, 3"):
        resolve_class("Flag", 3, names)
    with pytest.raises(ConfigError, match="unconditional"):
        resolve_class("Flags", 0, [])
    assert class_name(1, names) == "Flags" and class_name(1, None) == "class 1"


def test_explore_json_escapes_every_less_than_sign():
    nasty = "</script><script>alert(1)</script><!-- <b>"
    meta = {"model": "m", "resolution": 32, "num_classes": 1, "class_names": [nasty], "step": 1, "ema": True,
            "seed": 0, "path": nasty, "notes": [], "sets": [{"key": "g", "title": nasty, "captions": [nasty]}],
            "max_error": 0.0, "colour_maps": {}}
    page = render_page(meta, b"\0" * 8)
    raw = re.search(r'<script type="application/json" id="meta">(.*?)</script>', page, re.S).group(1)
    assert "<" not in raw and "\\u003c" in raw
    back = json.loads(raw)
    assert back["class_names"] == [nasty] and back["sets"][0]["captions"] == [nasty] and back["path"] == nasty
    assert "<script>alert(1)" not in page


def test_eval_names_the_classes_and_keeps_the_runs_labels_file(labelled_run, tmp_path, capsys):
    data = yaml.safe_load((labelled_run / "config.yaml").read_text())["data"]
    for against in ([], ["--against", data]):  # the run's own folder, named or by default, keeps its labels file
        out = tmp_path / "scores.json"
        assert main(["eval", str(labelled_run), *against, "--features", "classifier", "--metrics", "fd",
                     "--num", "12", "--out", str(out), "--cache-dir", str(tmp_path / "cache")]) == 0
        prov = json.loads(out.read_text())["provenance"]
        assert prov["class_names"] == NAMES and prov["generated_class_names"] == NAMES
        assert prov["generated_labels"] == "balanced: the 3 classes (blue, green, red) in turn"
        table = capsys.readouterr().out
        assert re.search(r"blue [\d.]+/[\d.]+, green [\d.]+/[\d.]+, red", table), table


def test_class_names_in_a_config_are_a_list_of_names():
    assert apply_overrides(TrainConfig(), {"class_names": ["a", "b"]}).class_names == ["a", "b"]
    with pytest.raises(ConfigError, match="class_names is a list of names"):
        apply_overrides(TrainConfig(), {"class_names": "a,b"})

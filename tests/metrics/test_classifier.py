"""`--features classifier`: a small CNN trained on a labelled reference, its cache, the real-vs-real floor."""

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

from sagan.cli import main
from sagan.metrics import classifier as classifier_module
from sagan.metrics import reference as reference_module
from sagan.metrics.classifier import ClassifierSettings, classifier_key, train_classifier
from sagan.metrics.floor import real_floor

COLOURS = {"blue": (40, 40, 210), "green": (40, 190, 40), "red": (210, 40, 40)}
SCORES = ("fd_classifier", "kid_classifier", "is_classifier", "precision_classifier", "recall_classifier",
          "density_classifier", "coverage_classifier", "class_tv_classifier", "class_ratio_classifier_min")


def _image(rng, colour) -> np.ndarray:
    """A 16x16 square of the class's colour, at a random place and size, on white with a little noise."""
    img = np.full((16, 16, 3), 255, np.int16)
    lo, side = rng.integers(0, 6), rng.integers(6, 10)
    img[lo:lo + side, lo:lo + side] = colour
    return np.clip(img + rng.integers(-12, 13, img.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    """A flat folder of 72 images (no class sub-folders) and a labels CSV; and 24 'generated' red-only images."""
    root = tmp_path_factory.mktemp("labelled")
    rng = np.random.default_rng(0)
    (root / "ref").mkdir()
    (root / "gen").mkdir()
    rows = []
    for i in range(72):
        name = list(COLOURS)[i % 3]
        Image.fromarray(_image(rng, COLOURS[name])).save(root / "ref" / f"{i:03d}.png")
        rows.append((f"{i:03d}.png", name))
    with open(root / "labels.csv", "w", newline="") as f:
        csv.writer(f).writerows([("file", "colour"), *rows])
    for i in range(24):
        Image.fromarray(_image(rng, COLOURS["red"])).save(root / "gen" / f"{i:03d}.png")
    return root


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """On top of conftest's isolated_cache (memos cleared, one thread): the cache at tmp_path/cache, offline, and
    the trained classifiers forgotten between tests."""
    monkeypatch.setenv("SAGAN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("SAGAN_OFFLINE", "1")
    classifier_module._MEMO.clear()


def _eval(root, out, *extra):
    return main(["eval", str(root / "gen"), "--against", str(root / "ref"), "--labels", str(root / "labels.csv"),
                 "--label-column", "colour", "--features", "classifier", "--out", str(out), *extra])


def test_classifier_learns_the_labels_and_reports_held_out_accuracy():
    rng = np.random.default_rng(1)
    names = list(COLOURS)
    images = torch.from_numpy(np.stack([_image(rng, COLOURS[names[i % 3]]) for i in range(120)])).permute(0, 3, 1, 2)
    labels = torch.arange(120) % 3
    net, meta = train_classifier(images.contiguous(), labels, 3, ClassifierSettings(epochs=15, batch_size=16))
    assert meta["heldout_count"] == 12 and meta["train_count"] == 108
    assert meta["heldout_accuracy"] >= 0.9 and meta["heldout_balanced_accuracy"] >= 0.9
    feats, logits = net.forward_features(images[:5])
    assert feats.shape == (5, 128) and logits.shape == (5, 3)
    # any size is read: it is resized to the training size
    assert net.forward_features(torch.zeros(2, 3, 32, 32, dtype=torch.uint8))[0].shape == (2, 128)


def test_scorer_end_to_end_then_from_the_cache(labelled, tmp_path, capsys, monkeypatch):
    out = tmp_path / "first.json"
    assert _eval(labelled, out) == 0
    printed = capsys.readouterr()
    assert "training the classifier extractor" in printed.err
    doc = json.loads(out.read_text())
    scores, prov, floor = doc["scores"], doc["provenance"], doc["floor"]
    assert set(SCORES) <= set(scores) and not {"fid", "kid", "is"} & set(scores)
    assert prov["extractor"] == "classifier" and 0 <= prov["extractor_heldout_accuracy"] <= 1
    assert prov["extractor_cache_hit"] is False and prov["class_names"] == ["blue", "green", "red"]
    assert prov["real_class_shares"] == pytest.approx([1 / 3] * 3)
    assert set(SCORES) <= set(floor["scores"]) and "held-out" in floor["how"]
    assert all(r["metric"] != "fid" for r in doc["records"])
    table = printed.out
    assert "fd_classifier" in table and "floor" in table and "held-out accuracy" in table and "red" in table

    # The second call trains nothing and gives the same numbers.
    reference_module._REFERENCE_MEMO.clear()
    classifier_module._MEMO.clear()

    def no_training(*a, **k):
        raise AssertionError("trained again")

    monkeypatch.setattr(classifier_module, "train_classifier", no_training)
    again = tmp_path / "second.json"
    assert _eval(labelled, again) == 0
    assert "cached" in capsys.readouterr().out
    doc2 = json.loads(again.read_text())
    assert doc2["provenance"]["extractor_cache_hit"] is True
    assert doc2["scores"] == doc["scores"] and doc2["floor"] == doc["floor"]
    assert doc2["provenance"]["extractor_weights_sha256"] == prov["extractor_weights_sha256"]
    assert list((tmp_path / "cache" / "classifiers").glob("classifier-*.safetensors"))


def test_cache_key_follows_pixels_labels_and_settings():
    images = torch.zeros(6, 3, 8, 8, dtype=torch.uint8)
    labels = torch.tensor([0, 1, 0, 1, 0, 1])
    base = classifier_key(images, labels, ["a", "b"], ClassifierSettings())
    other_pixels = images.clone()
    other_pixels[0, 0, 0, 0] = 1
    assert classifier_key(other_pixels, labels, ["a", "b"], ClassifierSettings()) != base
    assert classifier_key(images, labels.flip(0), ["a", "b"], ClassifierSettings()) != base
    assert classifier_key(images, labels, ["a", "c"], ClassifierSettings()) != base
    assert classifier_key(images, labels, ["a", "b"], ClassifierSettings(epochs=7)) != base
    assert classifier_key(images, labels, ["a", "b"], ClassifierSettings()) == base


def test_floor_is_a_fixed_split_and_beats_a_collapsed_generator(labelled, tmp_path):
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(400, 8, generator=g)
    logits = torch.randn(400, 3, generator=g)
    labels = torch.arange(400) % 3
    held_out = torch.arange(200, 400)
    floor = real_floor(feats, logits, labels, 3, "_x", held_out)
    assert floor == real_floor(feats, logits, labels, 3, "_x", held_out)  # the same draw every time
    assert floor["fd_x"] < 0.5 and floor["precision_x"] > 0.6 and floor["recall_x"] > 0.6
    assert floor["class_tv_x"] < 0.2
    # the red-only 'generator' scores worse than the floor: the classifier's shares and distances show the collapse
    out = tmp_path / "scores.json"
    assert _eval(labelled, out, "--metrics", "fd,pr") == 0
    doc = json.loads(out.read_text())
    assert doc["scores"]["fd_classifier"] > doc["floor"]["scores"]["fd_classifier"]
    assert doc["scores"]["recall_classifier"] < doc["floor"]["scores"]["recall_classifier"]


def test_the_floor_scores_images_the_extractor_never_saw():
    """Features of the images an extractor was trained on sit apart from those of new images (here by a shift);
    the floor must show that gap, as a perfect generator's new images would meet it."""
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(600, 8, generator=g)
    held_out = torch.arange(500, 600)
    feats[held_out] += 1.0  # unseen images: their features differ
    logits = torch.zeros(600, 3)
    logits[torch.arange(600), torch.arange(600) % 3] = 5.0  # seen images: the labels, learnt
    logits[held_out, 0] = 9.0  # unseen ones: the classifier says class 0 to all
    labels = torch.arange(600) % 3
    floor = real_floor(feats, logits, labels, 3, "_x", held_out)
    assert floor["fd_x"] > 4  # about 8 x 1^2: the shift, in every dimension
    assert floor["class_tv_x"] == pytest.approx(2 / 3, abs=0.02)  # the held-out argmax, not the learnt one
    seen_only = real_floor(feats[:500], logits[:500], labels[:500], 3, "_x", torch.arange(250, 500))
    assert seen_only["fd_x"] < 0.5 and seen_only["class_tv_x"] < 0.05


def test_the_extractors_floor_is_on_its_held_out_images_and_an_old_cached_floor_is_redone(labelled, tmp_path,
                                                                                          monkeypatch):
    from sagan.metrics.classifier import _predict, classifier_extractor, holdout_split
    from sagan.metrics.reference import load_reference

    ref = load_reference(str(labelled / "ref"), 16, labels=str(labelled / "labels.csv"), label_column="colour")
    settings = ClassifierSettings(epochs=2)
    ex = classifier_extractor(ref, settings=settings)
    hold, fit, _ = holdout_split(len(ref.images), settings)
    assert len(hold) == ex.meta["heldout_count"] and not set(hold.tolist()) & set(fit.tolist())
    feats, logits = _predict(ex.net, ref.images)
    assert ex.meta["floor"] == real_floor(feats, logits, ref.labels, 3, "_classifier", hold)
    assert "held-out" in ex.meta["floor_how"]
    # a classifier cached with the old floor keeps its weights; only its floor is computed again
    meta_path = next((tmp_path / "cache" / "classifiers").glob("*.json"))
    old = json.loads(meta_path.read_text())
    old.pop("floor_format")
    old["floor"] = {"fd_classifier": 0.0}
    meta_path.write_text(json.dumps(old))
    classifier_module._MEMO.clear()
    monkeypatch.setattr(classifier_module, "train_classifier", lambda *a, **k: pytest.fail("trained again"))
    again = classifier_extractor(ref, settings=settings)
    assert again.cache_hit and again.meta["floor"] == ex.meta["floor"]
    assert json.loads(meta_path.read_text())["floor"] == ex.meta["floor"]


def test_bad_inputs_exit_2_with_one_line(labelled, tmp_path, capsys):
    root = labelled
    gen, ref = str(root / "gen"), str(root / "ref")
    cases = [
        (["--against", ref, "--features", "classifier"], "--labels FILE.csv"),  # flat folder, no labels
        (["--against", ref, "--labels", str(root / "labels.csv"), "--label-column", "colr", "--features",
          "classifier"], "did you mean: colour"),
        (["--against", ref, "--labels", str(root / "nope.csv"), "--features", "classifier"], "labels file not found"),
        (["--against", str(tmp_path / "no" / "such"), "--features", "classifier"], "does not exist"),
        (["--against", str(tmp_path / "no" / "such")], "does not exist"),  # before any Inception weights
        (["--against", "fashion-mnist", "--labels", str(root / "labels.csv")], "labels of its own"),
    ]
    for extra, words in cases:
        assert main(["eval", gen, "--out", str(tmp_path / "x.json"), *extra]) == 2, extra
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and words in err, (extra, err)
        assert "Inception" not in err
    np.savez(tmp_path / "ref.npz", images=np.zeros((8, 16, 16, 3), np.uint8))
    assert main(["eval", gen, "--against", str(tmp_path / "ref.npz"), "--features", "classifier"]) == 2
    assert "no labels" in capsys.readouterr().err


def test_python_api_without_the_cache_writes_nothing(labelled, tmp_path):
    from sagan.metrics import evaluate
    from sagan.metrics.targets import load_samples

    images, _ = load_samples(str(labelled / "gen"))
    out = evaluate(images, str(labelled / "ref"), "fd,is", "classifier", labels=str(labelled / "labels.csv"),
                   label_column="colour", use_cache=False)
    assert {"fd_classifier", "is_classifier", "class_tv_classifier"} <= set(out)
    assert out["provenance"]["extractor_weights"].startswith("(not cached")
    assert not (tmp_path / "cache").exists()


class _ColourGenerator(torch.nn.Module):
    """A 'conditional generator' that draws the square of class (y + shift) % 3: shift 0 obeys its labels."""

    def __init__(self, shift: int) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(()))
        self.z_dim, self.num_classes, self.resolution, self.shift = 4, 3, 16, shift
        # class indices follow the sorted names, as a labels file's classes do: blue, green, red
        self.colours = torch.tensor([COLOURS[n] for n in sorted(COLOURS)], dtype=torch.float32) / 127.5 - 1

    def forward(self, z, y):
        img = torch.ones(len(z), 3, 16, 16)
        img[:, :, 4:12, 4:12] = self.colours[(y + self.shift) % 3][:, :, None, None]
        return img + 0 * self.weight


def test_a_conditional_model_is_scored_in_the_references_class_shares(labelled, tmp_path):
    """Against an unbalanced labelled set, a conditional generator draws its classes in the set's label shares
    (not balanced), and class_match tells a generator that obeys its labels from one that does not."""
    from sagan.metrics.evaluation import evaluate_generator

    rows = list(csv.reader(open(labelled / "labels.csv")))[1:]
    keep = [r for r in rows if r[1] == "red"] + [r for r in rows if r[1] != "red"][:12]  # 24 red, 12 others
    unbalanced = tmp_path / "unbalanced.csv"
    with open(unbalanced, "w", newline="") as f:
        csv.writer(f).writerows([("file", "colour"), *keep])
    options = dict(num=60, metrics="fd", features="classifier", labels=str(unbalanced), label_column="colour",
                   allow_unlabelled=True)
    obeys = evaluate_generator(_ColourGenerator(0), str(labelled / "ref"), **options)
    assert "label shares" in obeys["provenance"]["generated_labels"]
    real = np.array(obeys["provenance"]["real_class_shares"])
    assert real[2] == pytest.approx(24 / 36)
    assert obeys["class_match_classifier"] > 0.9
    assert obeys["class_tv_classifier"] < 0.1, "the generated classes follow the real shares, not 1/3 each"
    disobeys = evaluate_generator(_ColourGenerator(1), str(labelled / "ref"), **options)
    assert disobeys["class_match_classifier"] < 0.1
    assert disobeys["class_tv_classifier"] > 0.3

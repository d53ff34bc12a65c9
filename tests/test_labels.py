"""Labels from a CSV file (sagan.data.labels) through load_data, the config and `sagan train`."""

import csv
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from sagan.cli import main
from sagan.config import TrainConfig, apply_overrides
from sagan.data import load_data
from sagan.errors import ConfigError, DataError


def find_emoji64() -> Path | None:
    """shared/data/emoji64 beside the clone or any folder above it (a worktree sits deeper than the main clone)."""
    for parent in Path(__file__).resolve().parents:
        candidate = parent / "shared" / "data" / "emoji64"
        if candidate.is_dir():
            return candidate
    return None


EMOJI = find_emoji64()
COLOURS = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220)}


def make_folder(root: Path, per_class: int = 4, size: int = 12) -> list[tuple[str, str]]:
    """Flat folder of solid-colour images named by index (no class sub-folders); returns (file, colour) rows."""
    rows = []
    for i in range(per_class * len(COLOURS)):
        name = list(COLOURS)[i % len(COLOURS)]
        sub = "a" if i % 2 else "b"  # two sub-folders that are NOT the classes
        (root / sub).mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((size, size, 3), COLOURS[name], np.uint8)).save(root / sub / f"{i:03d}.png")
        rows.append((f"{sub}/{i:03d}.png", name))
    return rows


def write_csv(path: Path, rows, header=("file", "colour", "shade")) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for r in rows:
            w.writerow([*r, "light"][: len(header)])
    return path


@pytest.fixture
def labelled(tmp_path):
    root = tmp_path / "images"
    rows = make_folder(root)
    return root, rows, write_csv(tmp_path / "labels.csv", rows)


def test_labels_come_from_the_csv_not_the_sub_folders(labelled):
    root, rows, labels = labelled
    data = load_data(str(root), 12, labels=str(labels), label_column="colour")
    assert data.class_names == ["blue", "green", "red"]  # sorted label values
    assert len(data) == len(rows) and data.labels.bincount().tolist() == [4, 4, 4]
    # every image carries its own colour's label: the dominant channel names the class
    dominant = data.images.float().mean((2, 3)).argmax(1)  # 0 red, 1 green, 2 blue
    expected = torch.tensor([{0: 2, 1: 1, 2: 0}[int(d)] for d in dominant])
    assert torch.equal(data.labels, expected)
    assert "labels 'colour'" in data.source


def test_default_label_column_and_path_forms(tmp_path):
    root = tmp_path / "images"
    rows = make_folder(root, per_class=2)
    rows = [(f"./{f}" if i % 2 else f, c) for i, (f, c) in enumerate(rows)]  # ./a/001.png is the same file
    labels = write_csv(tmp_path / "l.csv", rows, header=("path", "category"))
    data = load_data(str(root), 12, labels=str(labels))
    assert data.class_names == ["blue", "green", "red"] and len(data) == 6


@pytest.mark.parametrize("problem, words", [
    ("no_row", ["2 image(s) have no row", "--allow-unlabelled"]),
    ("no_image", ["1 row(s) name no image", "ghost.png"]),
    ("empty", ["1 row(s) have an empty 'colour'"]),
    ("conflict", ["1 image(s) have rows with different labels", "fix the file"]),
])
def test_every_mismatch_is_counted_in_one_message(labelled, tmp_path, problem, words):
    root, rows, _ = labelled
    if problem == "no_row":
        rows = rows[2:]
    elif problem == "no_image":
        rows = rows + [("b/ghost.png", "red")]
    elif problem == "empty":
        rows = [(rows[0][0], "")] + rows[1:]
    else:
        rows = rows + [(rows[0][0], "other")]
    labels = write_csv(tmp_path / "bad.csv", rows)
    with pytest.raises(DataError) as err:
        load_data(str(root), 12, labels=str(labels), label_column="colour")
    message = str(err.value)
    assert "\n" not in message
    for w in words:
        assert w in message


def test_allow_unlabelled_keeps_only_labelled_images_and_says_so(labelled, tmp_path):
    root, rows, _ = labelled
    rows = [(rows[0][0], "")] + rows[2:] + [("b/ghost.png", "red")]
    labels = write_csv(tmp_path / "partial.csv", rows)
    with pytest.warns(UserWarning, match=r"using the 10 labelled images.*1 image\(s\) have no row.*1 row\(s\) have an "
                                         r"empty.*1 row\(s\) name no image"):
        data = load_data(str(root), 12, labels=str(labels), label_column="colour", allow_unlabelled=True)
    assert len(data) == 10 and data.num_classes == 3


def test_unknown_column_missing_file_and_misuse(labelled, tmp_path):
    root, _, labels = labelled
    with pytest.raises(DataError, match=r"no column 'color' \(did you mean: colour\?\).*file, colour, shade"):
        load_data(str(root), 12, labels=str(labels), label_column="color")
    with pytest.raises(DataError, match="labels file not found"):
        load_data(str(root), 12, labels=str(tmp_path / "nope.csv"))
    with pytest.raises(DataError, match="column of image paths"):
        load_data(str(root), 12, labels=str(labels), label_column="file")
    with pytest.raises(DataError, match="without a labels file"):
        load_data(str(root), 12, label_column="colour")
    (tmp_path / "one.csv").write_text("file\na/001.png\n")
    with pytest.raises(DataError, match="header row"):
        load_data(str(root), 12, labels=str(tmp_path / "one.csv"))
    with pytest.raises(DataError, match="labels of its own"):
        load_data("fashion-mnist", 28, labels=str(labels))
    with pytest.raises(ConfigError, match="needs a labels file"):
        apply_overrides(TrainConfig(), {"label_column": "colour"})


def test_train_cli_bad_labels_exit_2_in_one_line(labelled, tmp_path, capsys):
    root, rows, _ = labelled
    bad = write_csv(tmp_path / "bad.csv", rows[3:])
    rc = main(["train", "--data", str(root), "--labels", str(bad), "--label-column", "colour", "--out",
               str(tmp_path / "run"), "--model", "sagan_32", "--max-steps", "1", "--threads", "1"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "3 image(s) have no row" in err


def test_conditional_training_on_csv_labels_stores_the_keys(labelled, tmp_path):
    from sagan.checkpoint import load_generator
    from sagan.commands.train import resolve_config
    from sagan.train import train
    from tests.conftest import tiny_train_args

    root, rows, labels = labelled
    for i in range(24):  # batch 8 needs a few more images
        Image.fromarray(np.full((12, 12, 3), COLOURS["red"], np.uint8)).save(root / "a" / f"x{i}.png")
        rows.append((f"a/x{i}.png", "red"))
    write_csv(labels, rows)
    cfg = apply_overrides(TrainConfig(), tiny_train_args(root, tmp_path / "run", 3, labels=str(labels),
                                                         label_column="colour"))
    train(cfg)
    stored = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert stored["labels"] == str(labels) and stored["label_column"] == "colour" and not stored["allow_unlabelled"]
    generator, info = load_generator(tmp_path / "run")
    assert info["model"]["num_classes"] == 3 and info["labels"]["label_column"] == "colour"
    # `sagan eval RUN --features classifier` scores against the run's data with the run's own labels
    out = tmp_path / "scores.json"
    assert main(["eval", str(tmp_path / "run"), "--features", "classifier", "--num", "24", "--out", str(out),
                 "--cache-dir", str(tmp_path / "cache")]) == 0
    prov = yaml.safe_load(out.read_text())["provenance"]
    assert prov["class_names"] == ["blue", "green", "red"] and "labels 'colour'" in prov["reference_source"]
    # the CLI flags reach the same keys
    import argparse

    from sagan.commands import train as train_cmd

    p = argparse.ArgumentParser()
    train_cmd.add_arguments(p)
    args = p.parse_args(["--data", str(root), "--labels", str(labels), "--label-column", "colour",
                         "--allow-unlabelled"])
    c = resolve_config(args)
    assert (c.labels, c.label_column, c.allow_unlabelled) == (str(labels), "colour", True)


@pytest.mark.skipif(EMOJI is None, reason="shared/data/emoji64 not beside the repository")
def test_emoji64_categories_from_labels_csv():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the shipped file matches the folder exactly
        data = load_data(str(EMOJI), 16, labels=str(EMOJI / "labels.csv"), label_column="category")
    assert len(data) == 7572 and data.num_classes == 10
    counts = dict(zip(data.class_names, data.labels.bincount().tolist()))
    assert counts["People & Body"] == 4522 and counts["Flags"] == 540 and counts["Component"] == 10
    assert data.class_names == sorted(data.class_names)

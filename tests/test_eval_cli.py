"""`sagan eval` end to end on an .npz and a folder of images, against fashion-mnist, with small counts."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from sagan.cli import main
from sagan.metrics import reference as reference_module

PROVENANCE_KEYS = (
    "metric", "value", "how", "extractor", "extractor_weights_sha256", "reference_dataset", "reference_split",
    "reference_count", "generated_count", "seed", "resize", "target", "checkpoint", "step", "ema",
)  # fmt: skip


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("SAGAN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("SAGAN_OFFLINE", "1")
    reference_module._REFERENCE_MEMO.clear()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def real_images():
    from sagan.data import load_data

    return load_data("fashion-mnist", 32, split="train", download=False).images[:120].numpy()  # padded 32x32


def _check_record(path, n):
    doc = json.loads(path.read_text())
    assert doc["scores"]["fd_fmnist"] >= 0 and "fid" not in doc["scores"]
    assert doc["provenance"]["generated_count"] == n
    assert doc["records"]
    for record in doc["records"]:
        for key in PROVENANCE_KEYS:
            assert key in record, key
    return doc


def test_eval_npz_against_fashion_mnist(tmp_path, real_images, capsys):
    target = tmp_path / "samples.npz"
    np.savez(target, images=real_images)
    out = tmp_path / "scores.json"
    rc = main(["eval", str(target), "--against", "fashion-mnist", "--metrics", "fd,kid,is,pr,dc",
               "--num", "100", "--ref-num", "500", "--seed", "7", "--out", str(out)])
    assert rc == 0
    doc = _check_record(out, 100)
    prov = doc["provenance"]
    assert prov["target_kind"] == "npz" and prov["seed"] == 7 and prov["reference_count"] == 500
    assert "centre crop" in prov["resize"]["generated_to_reference"]
    table = capsys.readouterr().out
    assert "fd_fmnist" in table and "kid_fmnist" in table and "±" in table and "Sneaker" in table


def test_eval_image_folder_writes_next_to_target(tmp_path, real_images):
    folder = tmp_path / "samples"
    folder.mkdir()
    for i, image in enumerate(real_images[:60]):
        Image.fromarray(image[0]).save(folder / f"{i:04d}.png")
    rc = main(["eval", str(folder), "--against", "fashion-mnist", "--metrics", "fd,pr", "--ref-num", "300"])
    assert rc == 0
    doc = _check_record(tmp_path / "samples.eval-fashion-mnist-fmnist.json", 60)
    assert doc["provenance"]["target_kind"] == "images"
    assert set(doc["scores"]) >= {"fd_fmnist", "precision_fmnist", "recall_fmnist", "class_frac_fmnist_min"}


def test_eval_user_errors_exit_2(tmp_path, real_images, capsys):
    target = tmp_path / "samples.npz"
    np.savez(target, images=real_images[:20])
    assert main(["eval", str(target)]) == 2
    assert "--against" in capsys.readouterr().err
    assert main(["eval", str(target), "--against", "fashion-mnist", "--metrics", "fdd"]) == 2
    assert main(["eval", str(tmp_path / "missing.npz"), "--against", "fashion-mnist"]) == 2
    assert main(["eval", str(target), "--against", "fashion-mnist", "--num", "50"]) == 2  # only 20 inside
    rc = main(["eval", str(target), "--against", "fashion-mnist", "--features", "inception",
               "--inception-weights", str(tmp_path / "inception.pth")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "Inception-v3 weights file" in err and "--inception-weights" in err


def test_eval_checkpoint_records_step_and_ema(tmp_path, real_images, monkeypatch):
    """The checkpoint path with stand-ins for sagan.checkpoint/sagan.sampling: only the wiring is tested here."""
    import sys
    import types

    import torch

    ckpt = tmp_path / "run" / "checkpoints" / "step-1234.pt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"")
    seen = {}

    def load_generator(target, ema=True, map_location="cpu"):
        seen["ema"] = ema
        meta = {"model": {"name": "sagan_32"}, "step": 1234, "path": str(ckpt), "ema": ema, "data": "fashion-mnist"}
        stand_in = torch.nn.Identity()
        stand_in.num_classes, stand_in.resolution = 0, 32  # what every generator has (StagedGenerator)
        return stand_in, meta

    def generate(generator, num, seed=0, batch_size=256, class_index=None, truncation=None, labels=None):
        seen["num"], seen["seed"], seen["labels"] = num, seed, labels
        return torch.from_numpy(real_images[:num])

    import sagan.metrics.conditional  # noqa: F401 - imported with the real sagan.sampling, before it is stubbed

    monkeypatch.setitem(sys.modules, "sagan.checkpoint", types.SimpleNamespace(load_generator=load_generator))
    monkeypatch.setitem(sys.modules, "sagan.sampling", types.SimpleNamespace(generate=generate))
    out = tmp_path / "ckpt.json"
    rc = main(["eval", str(ckpt), "--num", "80", "--seed", "5", "--ref-num", "300", "--metrics", "fd",
               "--no-ema", "--out", str(out)])
    assert rc == 0
    assert seen == {"ema": False, "num": 80, "seed": 5, "labels": None}  # unconditional: no labels asked for
    prov = _check_record(out, 80)["provenance"]
    assert prov["step"] == 1234 and prov["ema"] is False and prov["checkpoint"] == str(ckpt)
    assert prov["target_kind"] == "checkpoint" and prov["reference_dataset"] == "fashion-mnist"
    assert prov["model"] == "sagan_32"


def _small_generator():
    from sagan.models import create_model

    return create_model("dcgan_32", img_channels=1, g_ch=8).generator  # untrained, tiny: wiring only


def test_eval_exported_generator_end_to_end(tmp_path):
    from sagan.checkpoint import export_generator
    from sagan.models import model_config

    g = _small_generator()
    extra = {"step": 321, "ema": True, "data": "fashion-mnist"}
    path = export_generator(g, model_config("dcgan_32", img_channels=1, g_ch=8), tmp_path / "generator", extra)
    rc = main(["eval", str(path), "--num", "40", "--ref-num", "200", "--metrics", "fd,is"])
    assert rc == 0
    doc = _check_record(tmp_path / "generator.eval-fashion-mnist-fmnist.json", 40)
    prov = doc["provenance"]
    assert prov["step"] == 321 and prov["ema"] is True and prov["target_kind"] == "checkpoint"
    assert "undo_fit 32x32 -> 28x28" in prov["resize"]["generated_to_reference"]


def test_evaluate_generator_is_what_the_trainer_calls():
    from sagan.metrics import evaluate_generator, scores_only

    g = _small_generator().train()
    out = evaluate_generator(g, "fashion-mnist", num=30, seed=1, metrics="fd,kid", ref_num=200, step=5, ema=True)
    assert g.training  # mode restored
    assert set(scores_only(out)) >= {"fd_fmnist", "kid_fmnist", "kid_fmnist_std", "class_frac_fmnist_min"}
    assert out["provenance"]["step"] == 5 and out["provenance"]["target_kind"] == "generator"

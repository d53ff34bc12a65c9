"""Tests for sagan.data: tiny folders built with PIL, fake named-set files, the real sets when present."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sagan.data import (
    DATASETS,
    ImageData,
    InfiniteBatches,
    load_data,
    to_model_range,
    to_uint8,
    undo_fit,
)
from sagan.errors import DataError

torch.set_num_threads(1)

EMOJI = Path(__file__).resolve().parents[2] / "shared" / "data" / "emoji64"
FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(autouse=True)
def _hermetic(tmp_path_factory, monkeypatch):
    """No test may see the user's own $SAGAN_DATA or download cache."""
    monkeypatch.delenv("SAGAN_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path_factory.mktemp("home")))


def _save(path: Path, image: Image.Image, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **kw)
    return path


def _solid(mode: str, color, size=(8, 8)) -> Image.Image:
    return Image.new(mode, size, color)


# ---------------------------------------------------------------------------------------------------------
# Image folders


def test_rgba_transparency_becomes_white(tmp_path):
    im = Image.new("RGBA", (8, 8), (0, 0, 0, 0))  # fully transparent black
    im.putpixel((3, 3), (255, 0, 0, 255))  # opaque red
    im.putpixel((4, 4), (0, 0, 255, 128))  # half-transparent blue
    _save(tmp_path / "a.png", im)
    data = load_data(str(tmp_path), 8)
    x = data.images[0]  # (3, 8, 8)
    assert data.images.dtype == torch.uint8 and data.images.shape == (1, 3, 8, 8)
    assert x[:, 0, 0].tolist() == [255, 255, 255]
    assert x[:, 3, 3].tolist() == [255, 0, 0]
    r, g, b = x[:, 4, 4].tolist()
    assert b == 255 and abs(r - 127) <= 1 and abs(g - 127) <= 1  # blue over white at alpha 0.5
    assert data.labels is None and data.class_names == [] and data.num_classes == 0


def test_palette_la_and_grey_are_converted(tmp_path):
    p = Image.new("P", (8, 8), 0)
    p.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    p.putpixel((1, 1), 1)
    _save(tmp_path / "p_trans.png", p, transparency=0)  # index 0 transparent
    _save(tmp_path / "p_plain.png", p)  # palette without transparency keeps its colours
    _save(tmp_path / "grey.png", _solid("L", 77))
    la = Image.new("LA", (8, 8), (0, 0))
    la.putpixel((2, 2), (40, 255))
    _save(tmp_path / "la.png", la)
    data = load_data(str(tmp_path), 8)
    by_name = dict(zip(["grey", "la", "p_plain", "p_trans"], data.images))  # sorted file names
    assert by_name["p_trans"][:, 0, 0].tolist() == [255, 255, 255]
    assert by_name["p_trans"][:, 1, 1].tolist() == [200, 100, 50]
    assert by_name["p_plain"][:, 0, 0].tolist() == [10, 20, 30]
    assert torch.all(by_name["grey"] == 77)
    assert by_name["la"][:, 0, 0].tolist() == [255, 255, 255] and by_name["la"][:, 2, 2].tolist() == [40] * 3
    grey = load_data(str(tmp_path), 8, channels=1)
    assert grey.images.shape == (4, 1, 8, 8)
    assert grey.images[3, 0, 1, 1].item() == round(0.299 * 200 + 0.587 * 100 + 0.114 * 50)


def test_mixed_sizes_are_centre_cropped_and_resized(tmp_path):
    wide = np.zeros((20, 60, 3), np.uint8)
    wide[:, :20] = (255, 0, 0)
    wide[:, 20:40] = (0, 255, 0)  # only the centre square survives the crop
    wide[:, 40:] = (0, 0, 255)
    tall = np.zeros((60, 20, 3), np.uint8)
    tall[:20], tall[20:40], tall[40:] = (255, 0, 0), (0, 0, 255), (0, 255, 0)
    _save(tmp_path / "a_wide.png", Image.fromarray(wide))
    _save(tmp_path / "b_tall.jpg", Image.fromarray(tall), quality=100, subsampling=0)
    _save(tmp_path / "c_small.webp", _solid("RGB", (0, 200, 0), (4, 4)), lossless=True)
    _save(tmp_path / "d_big.BMP", _solid("RGB", (9, 9, 9), (33, 33)))
    data = load_data(str(tmp_path), 16)
    assert data.images.shape == (4, 3, 16, 16)
    assert data.native_size is None  # varied sizes: nothing to undo
    wide_g, tall_b = data.images[0], data.images[1]
    assert wide_g[1].min() >= 250 and wide_g[0].max() <= 5 and wide_g[2].max() <= 5
    assert tall_b[2].min() >= 240 and tall_b[0].max() <= 15 and tall_b[1].max() <= 15  # jpeg is lossy
    assert data.images[2, :, 5, 5].tolist() == [0, 200, 0] and data.images[3, :, 8, 8].tolist() == [9, 9, 9]


def test_labels_from_subfolders_recursive(tmp_path):
    _save(tmp_path / "dogs" / "x.png", _solid("RGB", (1, 1, 1)))
    _save(tmp_path / "cats" / "b.png", _solid("RGB", (2, 2, 2)))
    _save(tmp_path / "cats" / "deep" / "er" / "a.png", _solid("RGB", (3, 3, 3)))
    _save(tmp_path / ".ipynb_checkpoints" / "junk.png", _solid("RGB", (4, 4, 4)))  # hidden: ignored
    (tmp_path / "cats" / "notes.txt").write_text("not an image")
    data = load_data(str(tmp_path), 8)
    assert data.class_names == ["cats", "dogs"] and data.num_classes == 2
    assert data.labels.dtype == torch.int64 and data.labels.tolist() == [0, 0, 1]
    assert data.images[:, 0, 0, 0].tolist() == [2, 3, 1]  # cats/b, cats/deep/er/a, dogs/x
    assert data.native_size == 8 and data.fit == "resize"
    images, labels = data.get(torch.tensor([2, 0]))
    assert labels.tolist() == [1, 0] and images[:, 0, 0, 0].tolist() == [1, 2]


def test_corrupt_files_are_skipped_and_counted(tmp_path):
    for i in range(3):
        _save(tmp_path / f"ok{i}.png", _solid("RGB", (i, i, i)))
    good = (tmp_path / "ok0.png").read_bytes()
    big = tmp_path / "big.png"
    _save(big, Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)))
    (tmp_path / "truncated.png").write_bytes(big.read_bytes()[:300])
    big.unlink()
    (tmp_path / "text.png").write_text("hello, I am not a PNG")
    (tmp_path / "empty.jpg").write_bytes(b"")
    assert good
    with pytest.warns(UserWarning, match="skipped 3 unreadable") as record:
        data = load_data(str(tmp_path), 8)
    message = str(record[0].message)
    assert "empty.jpg" in message and "text.png" in message and "truncated.png" in message
    assert len(data) == 3 and data.skipped == 3
    assert data.images[:, 0, 0, 0].tolist() == [0, 1, 2]
    assert "3 unreadable skipped" in data.source


def test_folder_errors(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("x")
    with pytest.raises(DataError, match=r"no images \(png, jpg, jpeg, webp, bmp\) found under"):
        load_data(str(empty), 8)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.png").write_text("nope")
    (bad / "b.jpg").write_bytes(b"\xff\xd8\xff garbage")
    with pytest.raises(DataError, match="all 2 image files .* are unreadable"):
        load_data(str(bad), 8)
    with pytest.raises(DataError, match="no such file or folder: .*missing"):
        load_data(str(tmp_path / "missing"), 8)
    (tmp_path / "file.png").write_text("x")
    with pytest.raises(DataError, match="is a file"):
        load_data(str(tmp_path / "file.png"), 8)
    _save(tmp_path / "ok" / "a.png", _solid("RGB", (0, 0, 0)))
    with pytest.raises(DataError, match="no 'test' split"):
        load_data(str(tmp_path / "ok"), 8, split="test")


def test_unknown_name_suggests(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match="did you mean: fashion-mnist") as info:
        load_data("fashon-mnist", 32)
    assert all(name in str(info.value) for name in DATASETS)
    with pytest.raises(DataError, match="did you mean: cifar10"):
        load_data("cifar", 32)
    with pytest.raises(DataError, match="channels must be 1"):
        load_data("mnist", 32, channels=2)


def test_streamed_matches_in_memory(tmp_path):
    rng = np.random.default_rng(1)
    for cls in ("a", "b"):
        for i in range(5):
            pixels = rng.integers(0, 256, (12, 10, 4), dtype=np.uint8)
            _save(tmp_path / cls / f"{i}.png", Image.fromarray(pixels, "RGBA"))
    (tmp_path / "b" / "broken.png").write_text("x")
    with pytest.warns(UserWarning):
        memory = load_data(str(tmp_path), 8)
    with pytest.warns(UserWarning):
        streamed = load_data(str(tmp_path), 8, max_in_memory_bytes=100)
    assert memory.images is not None and streamed.images is None and streamed.streamed
    assert len(streamed) == len(memory) == 10 and streamed.skipped == memory.skipped == 1
    assert streamed.shape == memory.shape == (3, 8, 8)
    idx = torch.tensor([9, 0, 4, 5])
    s_images, s_labels = streamed.get(idx)
    m_images, m_labels = memory.get(idx)
    assert torch.equal(s_images, m_images) and torch.equal(s_labels, m_labels)
    batches_s = InfiniteBatches(streamed, 3, seed=5)
    batches_m = InfiniteBatches(memory, 3, seed=5)
    for _ in range(7):  # crosses epoch boundaries, with prefetching in the streamed loader
        (a, la), (b, lb) = next(batches_s), next(batches_m)
        assert torch.equal(a, b) and torch.equal(la, lb)


@pytest.mark.slow
@pytest.mark.skipif(not EMOJI.is_dir(), reason="shared/data/emoji64 not beside the repository")
def test_emoji64_folder():
    data = load_data(str(EMOJI), 64)
    assert len(data) == 7572 and data.skipped == 0
    assert data.class_names == ["google", "twitter"] and data.labels.bincount().tolist() == [3786, 3786]
    assert data.images.shape == (7572, 3, 64, 64) and data.native_size == 64
    corners = data.images[:, :, 0, 0].float()
    assert corners.mean() > 250  # transparent backgrounds composited on white, not black


# ---------------------------------------------------------------------------------------------------------
# Named sets (fakes in tmp_path, the real Fashion-MNIST when installed)


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = struct.pack(">BBBB", 0, 0, 8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def _fake_mnist(folder: Path, n_train: int = 6, n_test: int = 4, value: int = 200) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for part, n in (("train", n_train), ("t10k", n_test)):
        images = np.full((n, 28, 28), value, np.uint8)
        _write_idx(folder / f"{part}-images-idx3-ubyte.gz", images)
        _write_idx(folder / f"{part}-labels-idx1-ubyte.gz", np.arange(n) % 10)


def test_named_sets_found_in_root_and_env(tmp_path, monkeypatch):
    _fake_mnist(tmp_path / "root" / "fashion-mnist", value=200)
    data = load_data("FMNIST", 32, root=str(tmp_path / "root"))
    assert len(data) == 6 and data.class_names[0] == "T-shirt/top" and data.labels.tolist() == [0, 1, 2, 3, 4, 5]
    assert "fashion-mnist train" in data.source and str(tmp_path / "root") in data.source
    _fake_mnist(tmp_path / "env" / "mnist", value=100)
    monkeypatch.setenv("SAGAN_DATA", str(tmp_path / "env"))
    test = load_data("mnist", 32, split="test")
    assert len(test) == 4 and test.class_names == [str(d) for d in range(10)] and test.images.max() == 100
    assert len(load_data("mnist", 28, split="all")) == 10
    # MNIST files must never be taken for Fashion-MNIST just because the file names match
    _fake_mnist(tmp_path / "shared", value=50)
    monkeypatch.setenv("SAGAN_DATA", str(tmp_path / "shared"))
    with pytest.raises(DataError, match="mnist not found"):
        load_data("mnist", 32, download=False)  # a folder not named after the set could be either
    small = load_data("mnist", 14, root=str(tmp_path / "shared"))  # an explicit root is taken as is
    assert small.fit == "resize" and small.images.shape == (6, 1, 14, 14) and small.native_size == 28
    with pytest.raises(DataError, match="no split 'valid'"):
        load_data("mnist", 32, split="valid")


def test_missing_named_set_without_download(tmp_path, monkeypatch):
    monkeypatch.setenv("SAGAN_DATA", str(tmp_path))
    with pytest.raises(DataError, match="cifar10 not found .*cifar-10-batches-py"):
        load_data("cifar10", 32, download=False)
    with pytest.raises(DataError, match="celeba not found"):
        load_data("celeba", 64, download=False)


def test_cifar10_files(tmp_path, monkeypatch):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {"data": rng.integers(0, 256, (3, 3072), dtype=np.uint8), "labels": [1, 2, 3]}
        (folder / name).write_bytes(pickle.dumps(batch))
    monkeypatch.setenv("SAGAN_DATA", str(tmp_path))
    data = load_data("cifar10", 32)
    assert data.images.shape == (15, 3, 32, 32) and data.class_names[1] == "automobile"
    assert data.native_size == 32 and data.fit == "resize"
    assert torch.equal(undo_fit(data.images, data), data.images)
    grey = load_data("CIFAR-10", 16, channels=1, split="test")
    assert grey.images.shape == (3, 1, 16, 16)
    # tensor sources and image folders agree on luminance (PIL's integer ITU-R 601 formula)
    full_grey = load_data("cifar10", 32, channels=1, split="test").images[0, 0]
    rgb = load_data("cifar10", 32, split="test").images[0].permute(1, 2, 0).numpy()
    assert np.array_equal(full_grey.numpy(), np.asarray(Image.fromarray(rgb).convert("L")))
    streamed = load_data("cifar10", 16, split="test", max_in_memory_bytes=10)
    assert streamed.images is None and torch.equal(streamed.get(torch.arange(3))[0], load_data(
        "cifar10", 16, split="test").images)


def test_celeba_files(tmp_path, monkeypatch):
    folder = tmp_path / "celeba" / "img_align_celeba"
    lines = []
    for i in range(5):
        face = np.zeros((218, 178, 3), np.uint8)
        face[20:198] = (10 * i, 100, 200)  # the 178x178 centre square; bands above and below are black
        _save(folder / f"{i + 1:06d}.jpg", Image.fromarray(face), quality=95)
        lines.append(f"{i + 1:06d}.jpg {[0, 0, 0, 1, 2][i]}")
    (tmp_path / "celeba" / "list_eval_partition.txt").write_text("\n".join(lines) + "\n")
    monkeypatch.setenv("SAGAN_DATA", str(tmp_path))
    train = load_data("CelebA", 16)
    assert train.images.shape == (3, 3, 16, 16) and train.labels is None and train.native_size is None
    assert train.images[:, 1].float().mean().item() == pytest.approx(100, abs=3)  # no black band left
    assert len(load_data("celeba", 16, split="valid")) == 1 and len(load_data("celeba", 16, split="all")) == 5
    streamed = load_data("celeba", 16, max_in_memory_bytes=10)
    assert streamed.images is None and torch.equal(streamed.get(torch.arange(3))[0], train.images)


@pytest.mark.skipif(not FASHION.is_dir(), reason="dataset-fashion-mnist is not installed")
def test_fashion_mnist_padded_and_undo_fit():
    train = load_data("fashion-mnist", 32)
    test = load_data("fashion_mnist", 32, split="test")
    assert len(train) == 60000 and len(test) == 10000 and train.num_classes == 10
    assert train.class_names[0] == "T-shirt/top" and train.class_names[-1] == "Ankle boot"
    assert train.images.shape == (60000, 1, 32, 32) and train.images.dtype == torch.uint8
    assert train.fit == "pad" and train.native_size == 28
    assert train.labels.bincount().tolist() == [6000] * 10
    assert train.images[:, :, :2].max() == 0 and train.images[:, :, :, 30:].max() == 0  # zero border
    native = load_data("fashion-mnist", 28, split="test")
    assert torch.equal(undo_fit(test.images, test), native.images)  # padding is undone exactly
    as_float = to_model_range(test.images[:50])
    assert torch.equal(to_uint8(undo_fit(as_float, test)), native.images[:50])
    rgb = load_data("fashion-mnist", 32, channels=3, split="test")
    assert rgb.images.shape == (10000, 3, 32, 32) and torch.equal(rgb.images[:, 2], test.images[:, 0])


def test_undo_fit_resize_and_ranges():
    data = ImageData(torch.zeros(2, 3, 16, 16, dtype=torch.uint8), None, [], "x", native_size=32, fit="resize")
    up = undo_fit(torch.full((2, 3, 16, 16), 100, dtype=torch.uint8), data)
    assert up.shape == (2, 3, 32, 32) and up.dtype == torch.uint8 and torch.all(up == 100)
    assert undo_fit(torch.rand(1, 3, 16, 16), ImageData(None, None, [], "x", native_size=None)).shape[-1] == 16
    every = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16)
    x = to_model_range(every)
    assert x.dtype == torch.float32 and x.min() == -1 and x.max() == 1
    assert torch.equal(to_uint8(x), every)
    assert to_uint8(torch.tensor([-3.0, 3.0, float("nan")])).tolist() == [0, 255, 0]


# ---------------------------------------------------------------------------------------------------------
# InfiniteBatches


def _ids(n: int) -> ImageData:
    """Labels are the indices themselves, so batches tell which items they hold."""
    images = (torch.arange(n) % 256).to(torch.uint8).view(n, 1, 1, 1).expand(n, 1, 2, 2).contiguous()
    return ImageData(images, torch.arange(n), [str(i) for i in range(n)], "ids")


def _take(batches: InfiniteBatches, k: int) -> list[list[int]]:
    return [next(batches)[1].tolist() for _ in range(k)]


def _flat(batches: list[list[int]]) -> list[int]:
    return [i for batch in batches for i in batch]


def test_each_epoch_is_a_permutation():
    batches = InfiniteBatches(_ids(40), 8, seed=0)
    assert batches.batches_per_epoch == 5
    epochs = [_flat(_take(batches, 5)) for _ in range(3)]
    for e in epochs:
        assert sorted(e) == list(range(40))
    assert epochs[0] != epochs[1] != epochs[2]  # reshuffled every epoch
    images, labels = next(InfiniteBatches(_ids(40), 8, seed=0))
    assert images.dtype == torch.uint8 and images.shape == (8, 1, 2, 2)
    assert images[:, 0, 0, 0].tolist() == labels.tolist()


def test_drop_last_and_small_data():
    assert InfiniteBatches(_ids(10), 4, seed=0).batches_per_epoch == 2
    keep = InfiniteBatches(_ids(10), 4, seed=0, drop_last=False)
    assert [len(b) for b in _take(keep, 4)] == [4, 4, 2, 4]
    with pytest.raises(DataError, match="cannot fill one batch"):
        InfiniteBatches(_ids(10), 8, seed=0, world_size=2)


def test_ranks_get_disjoint_shards_covering_the_data():
    data = _ids(48)
    for epoch in range(2):
        shards = []
        for rank in range(2):
            batches = InfiniteBatches(data, 6, seed=3, rank=rank, world_size=2)
            batches.load_state_dict({"epoch": epoch, "position": 0})
            shards.append(_flat(_take(batches, batches.batches_per_epoch)))
        assert not set(shards[0]) & set(shards[1])
        assert sorted(shards[0] + shards[1]) == list(range(48))


def test_resume_continues_exactly():
    data = _ids(30)
    reference = InfiniteBatches(data, 4, seed=11)  # 7 batches per epoch
    first = _take(reference, 10)
    state = reference.state_dict()
    assert state == {"epoch": 1, "position": 3}
    rest = _take(reference, 12)  # crosses into a third epoch
    resumed = InfiniteBatches(data, 4, seed=11)
    resumed.load_state_dict(dict(state))
    assert _take(resumed, 12) == rest
    assert first[:3] == _take(InfiniteBatches(data, 4, seed=11), 3)  # same seed, same order
    assert _take(InfiniteBatches(data, 4, seed=12), 7) != first[:7]  # another seed, another order
    with pytest.raises(DataError, match="does not fit"):
        resumed.load_state_dict({"epoch": 0, "position": 99})

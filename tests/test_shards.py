"""Tar shards through webdataset: brace patterns, disjoint shards per rank, exact resume, one-line errors."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("webdataset")
import webdataset as wds  # noqa: E402

from sagan.checkpoint import load_checkpoint  # noqa: E402
from sagan.config import TrainConfig, apply_overrides  # noqa: E402
from sagan.data import load_data  # noqa: E402
from sagan.data.shards import ShardBatches, is_shard_spec, load_shards  # noqa: E402
from sagan.errors import DataError  # noqa: E402
from sagan.train import train  # noqa: E402
from tests.conftest import tiny_train_args  # noqa: E402


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """6 shards of 7 samples: 12x12 PNGs, each a different flat colour, with a class 0..2."""
    root = tmp_path_factory.mktemp("shards")
    rng = np.random.default_rng(0)
    n = 0
    for s in range(6):
        with wds.TarWriter(str(root / f"part-{s:03d}.tar")) as sink:
            for _ in range(7):
                buf = io.BytesIO()
                Image.fromarray(np.full((12, 12, 3), rng.integers(0, 256, 3), np.uint8)).save(buf, format="png")
                sink.write({"__key__": f"{n:05d}", "png": buf.getvalue(), "cls": str(n % 3).encode()})
                n += 1
    return root


def test_a_brace_pattern_names_the_shards(shards):
    spec = str(shards / "part-{000..005}.tar")
    assert is_shard_spec(spec) and is_shard_spec(f"{shards}/part-000.tar,{shards}/part-001.tar")
    assert not is_shard_spec("cifar10") and not is_shard_spec(str(shards))
    data = load_shards(spec, 8)
    assert len(data) == 42 and len(data.shards) == 6 and data.num_classes == 3
    assert len(load_shards(f"{shards}/part-000.tar,{shards}/part-001.tar", 8)) == 14


def test_missing_shards_and_too_few_shards_are_user_errors(shards):
    with pytest.raises(DataError, match="not found"):
        load_shards(str(shards / "part-{000..009}.tar"), 8)
    with pytest.raises(DataError, match="cannot give each"):
        ShardBatches(load_shards(str(shards / "part-000.tar"), 8), 3, seed=0, rank=0, world_size=2)


def _key(images):
    return [tuple(img[:, 0, 0].tolist()) for img in images]  # each sample has its own flat colour


def test_ranks_read_disjoint_shards_and_resume_exactly(shards):
    data = load_shards(str(shards / "part-{000..005}.tar"), 8)
    epoch = {}
    for rank in (0, 1):
        straight = ShardBatches(data, 3, seed=4, rank=rank, world_size=2, workers=2)
        first = [next(straight) for _ in range(5)]  # 6 batches an epoch per rank here; stop inside it
        images, labels = first[0]
        assert images.shape == (3, 3, 8, 8) and images.dtype == torch.uint8 and labels.tolist()[0] in (0, 1, 2)
        state = straight.state_dict()
        rest = [next(straight) for _ in range(9)]  # over the end of the epoch, into the next
        epoch[rank] = {k for imgs, _ in first + rest[:1] for k in _key(imgs)}
        resumed = ShardBatches(data, 3, seed=4, rank=rank, world_size=2, workers=2)
        resumed.load_state_dict(state)
        for (a, la), (b, lb) in zip(rest, (next(resumed) for _ in range(9))):
            assert torch.equal(a, b) and torch.equal(la, lb)
    assert len(epoch[0]) == len(epoch[1]) == 18 and not epoch[0] & epoch[1], "the ranks' shards overlap"


def test_training_on_shards_resumes_bitwise(shards, tmp_path):
    """sagan train --data 'part-{000..005}.tar': 6 steps in one go == 3 steps, stop, resume, 3 steps."""
    spec = str(shards / "part-{000..005}.tar")

    def run(out, steps):
        return train(apply_overrides(TrainConfig(), tiny_train_args(spec, tmp_path / out, steps, checkpoint_every=3,
                                                                    standing_samples=0)))

    assert run("straight", 6)["steps"] == 6
    run("split", 3)
    run("split", 6)
    a = load_checkpoint(tmp_path / "straight" / "checkpoints" / "step_000000006.pt")
    b = load_checkpoint(tmp_path / "split" / "checkpoints" / "step_000000006.pt")
    assert a["model"]["num_classes"] == 3 and a["batches"] == b["batches"] == {"batches": 6, "epoch": 1}
    for part in ("generator", "discriminator", "generator_ema"):
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), f"{part}.{key} differs"


def test_rank_zeros_state_resumes_a_rank_with_other_shard_sizes(shards):
    """3 shards over 2 ranks: one rank reads two shards an epoch, the other one (which changes every epoch)."""
    data = load_shards(",".join(str(shards / f"part-{i:03d}.tar") for i in range(3)), 8)
    ranks = [ShardBatches(data, 3, seed=1, rank=r, world_size=2) for r in (0, 1)]
    for loader in ranks:
        for _ in range(7):
            next(loader)
    assert ranks[0].epoch != ranks[1].epoch  # the ranks' epochs have drifted apart
    state = ranks[0].state_dict()
    resumed = ShardBatches(data, 3, seed=1, rank=1, world_size=2)
    resumed.load_state_dict(state)
    for _ in range(6):
        (a, la), (b, lb) = next(ranks[1]), next(resumed)
        assert torch.equal(a, b) and torch.equal(la, lb)


@pytest.fixture(scope="module")
def partly_labelled(tmp_path_factory):
    """4 shards of 6 samples; every third sample has no .cls, the others a class 0..1."""
    root = tmp_path_factory.mktemp("partly_labelled")
    for s in range(4):
        with wds.TarWriter(str(root / f"part-{s:03d}.tar")) as sink:
            for i in range(6):
                buf = io.BytesIO()
                Image.fromarray(np.full((12, 12, 3), 40 * s + i, np.uint8)).save(buf, format="png")
                sample = {"__key__": f"{s}-{i}", "png": buf.getvalue()}
                if i % 3:
                    sample["cls"] = str(i % 2).encode()
                sink.write(sample)
    return root


def test_shards_with_unlabelled_samples_are_refused_before_training(partly_labelled, tmp_path):
    spec = str(partly_labelled / "part-{000..003}.tar")
    with pytest.raises(DataError, match=r"8 of 24 samples .* have no \.cls .*--allow-unlabelled"):
        load_shards(spec, 8)
    with pytest.raises(DataError, match=r"have no \.cls"):
        train(apply_overrides(TrainConfig(), tiny_train_args(spec, tmp_path / "run", 2, standing_samples=0)))
    assert not list((tmp_path / "run").rglob("*.pt"))  # refused before the first step


def test_allow_unlabelled_shards_use_only_the_labelled_samples(partly_labelled):
    spec = str(partly_labelled / "part-{000..003}.tar")
    with pytest.warns(UserWarning, match="left out 8 samples without a .cls"):
        data = load_data(spec, 8, allow_unlabelled=True)
    assert len(data) == 16 and data.counts == [4, 4, 4, 4] and data.num_classes == 2
    loader = ShardBatches(data, 4, seed=0, workers=2)
    seen = [next(loader) for _ in range(8)]  # two epochs of 4 batches
    labels = torch.cat([y for _, y in seen])
    assert labels.tolist().count(0) == labels.tolist().count(1) == 16  # never -1
    colours = {int(img[0, 0, 0]) for imgs, _ in seen[:4] for img in imgs}
    assert colours == {40 * s + i for s in range(4) for i in range(6) if i % 3}
    state, rest = loader.state_dict(), [next(loader) for _ in range(3)]
    resumed = ShardBatches(data, 4, seed=0, workers=2)
    resumed.load_state_dict(state)
    for (a, la), (b, lb) in zip(rest, (next(resumed) for _ in range(3))):
        assert torch.equal(a, b) and torch.equal(la, lb)


def test_shards_without_any_label_give_unlabelled_batches(tmp_path):
    bare = tmp_path / "bare.tar"
    with wds.TarWriter(str(bare)) as sink:
        for i in range(3):
            buf = io.BytesIO()
            Image.fromarray(np.full((12, 12, 3), i, np.uint8)).save(buf, format="png")
            sink.write({"__key__": f"{i}", "png": buf.getvalue()})
    data = load_shards(str(bare), 8)
    assert len(data) == 3 and data.num_classes == 0
    images, labels = next(ShardBatches(data, 3, seed=0, workers=1))
    assert images.shape == (3, 3, 8, 8) and labels is None


def test_a_cls_that_is_not_a_class_number_is_a_user_error(tmp_path):
    with wds.TarWriter(str(tmp_path / "bad.tar")) as sink:
        buf = io.BytesIO()
        Image.fromarray(np.zeros((12, 12, 3), np.uint8)).save(buf, format="png")
        sink.write({"__key__": "cat-1", "png": buf.getvalue(), "cls": b"cat"})
    with pytest.raises(DataError, match=r"cat-1 .* \.cls 'cat' is not a class number"):
        load_shards(str(tmp_path / "bad.tar"), 8)
    with pytest.raises(DataError, match="labels file applies to a folder"):
        load_data(str(tmp_path / "bad.tar"), 8, labels=str(tmp_path / "labels.csv"))

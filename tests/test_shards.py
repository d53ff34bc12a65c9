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

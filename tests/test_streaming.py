"""A folder streamed from disk by the decoding workers: disjoint shards per rank, and exact mid-epoch resume."""

import numpy as np
import torch
from PIL import Image

import sagan.data.files as image_files
from sagan.data import InfiniteBatches, load_data


def _folder(root, n=40):
    rng = np.random.default_rng(3)
    for i in range(n):
        (root / f"c{i % 2}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (20, 16, 3), dtype=np.uint8)).save(root / f"c{i % 2}" / f"{i:03d}.png")
    return root


def test_each_rank_resumes_its_own_streamed_shard_exactly(tmp_path, monkeypatch):
    # decode in the forked worker pool even for this small folder and small batches
    monkeypatch.setattr(image_files, "_PARALLEL_MIN_FILES", 1)
    monkeypatch.setattr(image_files, "_STREAM_PARALLEL_MIN_BATCH", 1)
    folder = _folder(tmp_path / "images")
    memory = load_data(str(folder), 8)
    seen = []
    for rank in (0, 1):
        straight = InfiniteBatches(load_data(str(folder), 8, max_in_memory_bytes=0), 3, seed=7, rank=rank,
                                   world_size=2)
        assert straight.data.streamed and straight.data.images is None  # nothing held in memory
        first = [next(straight) for _ in range(8)]  # 6 batches an epoch per rank: crosses an epoch
        state = straight.state_dict()
        rest = [next(straight) for _ in range(5)]
        # a new process: a new data object, a new pool of decoders, the state from the checkpoint
        resumed = InfiniteBatches(load_data(str(folder), 8, max_in_memory_bytes=0), 3, seed=7, rank=rank,
                                  world_size=2)
        resumed.load_state_dict(state)
        for (a, la), (b, lb) in zip(rest, (next(resumed) for _ in range(5))):
            assert torch.equal(a, b) and torch.equal(la, lb)
        # the streamed batches are the in-memory loader's, image for image
        in_memory = InfiniteBatches(memory, 3, seed=7, rank=rank, world_size=2)
        for a, _ in first:
            assert torch.equal(a, next(in_memory)[0])
        seen.append({bytes(x.numpy()) for batch, _ in first[:6] for x in batch})  # one epoch of this rank
    assert len(seen[0]) == len(seen[1]) == 18 and not seen[0] & seen[1], "the ranks' shards overlap"

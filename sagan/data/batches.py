"""The endless, resumable loader: `InfiniteBatches` over images that can be indexed, `batches_for` choosing it or
the tar-shard loader (sagan/data/shards.py).

`InfiniteBatches(data, batch_size, seed, rank, world_size)`: endless shuffled batches, the same order on every run
for a seed, a disjoint shard per rank, `state_dict()` to resume mid-epoch exactly.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor

import torch

from sagan.data.images import ImageData
from sagan.data.shards import ShardBatches, ShardData
from sagan.errors import DataError


class InfiniteBatches:
    """Endless batches of indices into an ImageData, reshuffled every epoch from (seed, epoch);
    each rank of a distributed run takes its own disjoint shard; state_dict()/load_state_dict()
    ({"epoch": e, "position": p}) restore the exact same order after resume.

    Every rank builds the same permutation and takes every `world_size`-th index from `rank`; each rank
    gets `len(data) // world_size` indices per epoch so all ranks run the same number of steps (up to
    `world_size - 1` images sit out each epoch, a different few every time). The state is the same on every
    rank, so rank 0's state_dict() resumes them all. Streamed data is decoded one batch ahead in a
    background thread.
    """

    def __init__(self, data: ImageData, batch_size: int, seed: int, rank: int = 0, world_size: int = 1,
                 drop_last: bool = True):
        if batch_size < 1:
            raise DataError(f"batch size must be at least 1, got {batch_size}")
        if not 0 <= rank < world_size:
            raise DataError(f"rank {rank} is outside 0..{world_size - 1} for world size {world_size}")
        self.data, self.batch_size, self.seed = data, batch_size, seed
        self.rank, self.world_size, self.drop_last = rank, world_size, drop_last
        self.per_rank = len(data) // world_size
        full, rest = divmod(self.per_rank, batch_size)
        self.batches_per_epoch = full + (1 if rest and not drop_last else 0)
        if self.batches_per_epoch == 0:
            raise DataError(f"{len(data)} images cannot fill one batch of {batch_size} on each of {world_size} "
                            f"rank(s); lower the batch size or use more images")
        self.epoch, self.position = 0, 0
        self._shard_epoch: int | None = None
        self._shard: torch.Tensor | None = None
        self._prefetcher = ThreadPoolExecutor(max_workers=1) if data.streamed else None
        self._pending: tuple[tuple[int, int], Future] | None = None

    def _indices(self, epoch: int, position: int) -> torch.Tensor:
        if self._shard_epoch != epoch:
            # A seed per (seed, epoch) rather than one running generator: any epoch can be rebuilt alone.
            g = torch.Generator().manual_seed((self.seed * 1_000_003 + epoch) % (1 << 63))
            perm = torch.randperm(len(self.data), generator=g)
            self._shard = perm[self.rank: self.per_rank * self.world_size: self.world_size]
            self._shard_epoch = epoch
        start = position * self.batch_size
        return self._shard[start: start + self.batch_size]  # type: ignore[index]

    def _next_key(self, epoch: int, position: int) -> tuple[int, int]:
        return (epoch + 1, 0) if position + 1 >= self.batches_per_epoch else (epoch, position + 1)

    def __iter__(self) -> InfiniteBatches:
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The next (uint8 images (B, C, H, W), labels (B,) or None)."""
        key = (self.epoch, self.position)
        if self._pending is not None and self._pending[0] == key:
            batch = self._pending[1].result()
        else:
            batch = self.data.get(self._indices(*key))
        self._pending = None
        self.epoch, self.position = self._next_key(*key)
        if self._prefetcher is not None:
            nxt = (self.epoch, self.position)
            self._pending = (nxt, self._prefetcher.submit(self.data.get, self._indices(*nxt)))
        return batch

    def state_dict(self) -> dict:
        """{"epoch": e, "position": p}: the next batch to be returned."""
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        """Continue from a state_dict() so the following batches are exactly those of the saved run."""
        epoch, position = int(state["epoch"]), int(state["position"])
        if epoch < 0 or not 0 <= position <= self.batches_per_epoch:
            raise DataError(f"loader state {state} does not fit {self.batches_per_epoch} batches per epoch; "
                            "the data set or batch size changed since the checkpoint")
        self.epoch, self.position = (epoch + 1, 0) if position == self.batches_per_epoch else (epoch, position)


def batches_for(data: ImageData | ShardData, batch_size: int, seed: int, rank: int = 0,
                world_size: int = 1) -> InfiniteBatches | ShardBatches:
    """The endless, resumable loader for `data`: ShardBatches for tar shards, InfiniteBatches otherwise."""
    if isinstance(data, ShardData):
        return ShardBatches(data, batch_size, seed, rank, world_size)
    return InfiniteBatches(data, batch_size, seed, rank, world_size)

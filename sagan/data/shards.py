"""Tar shards (webdataset layout) for data sets at cluster scale: read in order, never held in memory.

`--data 'shards-{000..009}.tar'` (a brace pattern) or `--data 'a.tar,b.tar'` (a list). A sample is the files of a
shard that share a base name: one image (jpg, jpeg, png, webp, bmp) and, optionally, its class as decimal text
(`.cls`). Shards are read with the `webdataset` package (`pip install 'sagan[shards]'`). As with a folder's labels
CSV, either every sample has a class or none has: shards where only some do are refused, unless `allow_unlabelled`,
which uses only the samples that have one.

Sharding: in each epoch the shards are shuffled from (seed, epoch) and rank r of W takes every W-th of them;
its decoding workers (a torch DataLoader) each take every K-th of the rank's shards and batch their own samples.
The main process takes the workers' batches in a fixed order (round robin over the workers that still have
batches this epoch) whatever order they arrive in, so a run's batches depend only on (seed, W, K, batch size).
Resume is exact at batch granularity: the state is the number of batches handed out since the start, the same on
every rank; each rank replays its epochs' round robin from the shards' sample counts to find how many batches each
of its workers had handed out, and a resumed worker skips those samples without decoding them (it still reads
their bytes).
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass

import torch
from PIL import Image

from sagan.data.files import to_array
from sagan.errors import ConfigError, DataError

IMAGE_KEYS = ("jpg", "jpeg", "png", "webp", "bmp")


def is_shard_spec(spec: str) -> bool:
    """Whether a --data value names tar shards (ends in .tar, possibly with a brace pattern or a comma list)."""
    return all(part.strip().endswith(".tar") for part in spec.split(",")) and spec.strip() != ""


def expand_shards(spec: str) -> list[str]:
    """The shard files of a brace pattern or comma list, checked to exist."""
    from braceexpand import braceexpand

    urls = [u for part in spec.split(",") for u in braceexpand(part.strip())]
    missing = [u for u in urls if not os.path.isfile(os.path.expanduser(u))]
    if missing:
        raise DataError(f"{len(missing)} of {len(urls)} shard(s) not found, e.g. {missing[0]}")
    return [os.path.expanduser(u) for u in urls]


def _require_webdataset():
    try:
        import webdataset
    except ModuleNotFoundError:
        raise ConfigError("tar shards need the webdataset package: pip install 'sagan[shards]' "
                          "(or pip install webdataset)") from None
    return webdataset


def _samples(shard: str):
    """Raw samples of one shard in file order: dicts of extension -> bytes, plus "__key__".

    A bare pipeline rather than wds.WebDataset, whose default node and worker splitters would split the one
    shard again (sharding by rank and worker is done here, over the shard list).
    """
    wds = _require_webdataset()
    yield from wds.DataPipeline(wds.SimpleShardList([shard]), wds.tarfile_to_samples())


def _class_of(sample: dict) -> int | None:
    """The class in a sample's .cls member (decimal text), None when it has none."""
    if "cls" not in sample:
        return None
    text = sample["cls"].decode("utf-8", "replace").strip()
    if not (text.isascii() and text.isdigit()):
        raise DataError(f"sample {sample.get('__key__')} in {sample.get('__url__')}: .cls {text[:20]!r} is not a "
                        "class number (0, 1, 2, ...); fix the shard")
    return int(text)


def _image_bytes(sample: dict) -> bytes:
    for key in IMAGE_KEYS:
        if key in sample:
            return sample[key]
    raise DataError(f"sample {sample.get('__key__')} in {sample.get('__url__')} has no image "
                    f"({', '.join(IMAGE_KEYS)})")


@dataclass
class ShardData:
    """What the training loop needs to know of a sharded data set; the images stay in the shards."""

    shards: list[str]
    counts: list[int]  # samples per shard (those with a class when `labelled_only`)
    resolution: int
    channels: int
    num_classes: int
    source: str
    skipped: int = 0
    streamed: bool = True
    images: None = None
    labels: None = None
    labelled_only: bool = False  # samples without a .cls are left out (allow_unlabelled)

    def __len__(self) -> int:
        return sum(self.counts)

    @property
    def class_names(self) -> list[str]:
        """A shard's .cls holds a class index and no name: the names are the indices."""
        return [str(i) for i in range(self.num_classes)]


def load_shards(spec: str, resolution: int, channels: int | None = None, allow_unlabelled: bool = False) -> ShardData:
    """Index shards once (sample counts and the largest class), reading headers and .cls members only.

    Samples without a .cls among samples with one are a DataError (a conditional model has no class to give them),
    unless `allow_unlabelled`: then only the samples with a class are used, and a warning counts the others.
    """
    shards = expand_shards(spec)
    counts, labelled, top, example = [], [], -1, ""
    for shard in shards:
        n = with_class = 0
        for sample in _samples(shard):
            _image_bytes(sample)
            cls = _class_of(sample)
            if cls is None:
                example = example or f"{sample.get('__key__')} in {shard}"
            else:
                top, with_class = max(top, cls), with_class + 1
            n += 1
        counts.append(n)
        labelled.append(with_class)
    total, unlabelled = sum(counts), sum(counts) - sum(labelled)
    partly = unlabelled and top >= 0
    if partly and not allow_unlabelled:
        raise DataError(f"{unlabelled} of {total} samples in {spec} have no .cls (e.g. {example}); give every "
                        "sample a class, or pass --allow-unlabelled to use only the samples that have one")
    data = ShardData(shards, labelled if partly else counts, resolution, channels or 3, top + 1, "",
                     labelled_only=bool(partly))
    if partly:
        warnings.warn(f"{spec}: using the {len(data)} samples with a class; left out {unlabelled} samples without "
                      f"a .cls (e.g. {example})", stacklevel=3)
    classes = f", {top + 1} classes" if top >= 0 else ""
    left_out = f", {unlabelled} without a class left out" if partly else ""
    data.source = f"{len(shards)} tar shard(s) {spec} ({len(data)} images{classes}{left_out}, streamed)"
    return data


class _WorkerBatches(torch.utils.data.IterableDataset):
    """In a DataLoader worker: its share of the rank's shards for one epoch, as (worker, batch, images, labels)."""

    def __init__(self, data: ShardData, shards: list[str], batch_size: int, skip: list[int]):
        self.data, self.shards, self.batch_size, self.skip = data, shards, batch_size, skip

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        mine = self.shards[worker::workers]
        to_skip = self.skip[worker] * self.batch_size
        images, labels, index = [], [], self.skip[worker]
        for shard in mine:
            for sample in _samples(shard):
                cls = _class_of(sample)
                if cls is None and self.data.labelled_only:
                    continue  # left out at load_shards, and not counted there
                if to_skip:
                    to_skip -= 1
                    continue
                with Image.open(io.BytesIO(_image_bytes(sample))) as image:
                    pixels = to_array(image, self.data.resolution, self.data.channels)  # (H, W, C) uint8
                images.append(torch.from_numpy(pixels.copy()))
                labels.append(-1 if cls is None else cls)  # -1 only when no sample has a class
                if len(images) == self.batch_size:
                    batch = torch.stack(images).permute(0, 3, 1, 2).contiguous()  # (B, C, H, W) uint8
                    yield worker, index, batch, torch.tensor(labels)
                    images, labels, index = [], [], index + 1
        yield worker, -1, None, None  # this worker is done for the epoch (a partial batch is dropped)


class ShardBatches:
    """Endless batches from tar shards for one rank; the same interface as sagan.data.batches.InfiniteBatches."""

    def __init__(self, data: ShardData, batch_size: int, seed: int, rank: int = 0, world_size: int = 1,
                 workers: int = 2):
        if len(data.shards) < world_size:
            raise DataError(f"{len(data.shards)} shard(s) cannot give each of {world_size} ranks one of its own; "
                            "write more, smaller shards")
        workers = max(1, min(workers, len(data.shards) // world_size))  # every worker needs a shard
        self.data, self.batch_size, self.seed = data, batch_size, seed
        self.rank, self.world_size, self.workers = rank, world_size, workers
        self.epoch, self.handed, self.done, self.total = 0, [0] * workers, [], 0
        self._iter = None
        self._count = dict(zip(data.shards, data.counts))

    def _epoch_shards(self, epoch: int | None = None) -> list[str]:
        epoch = self.epoch if epoch is None else epoch
        g = torch.Generator().manual_seed((self.seed * 1_000_003 + epoch) % (1 << 63))
        order = torch.randperm(len(self.data.shards), generator=g).tolist()
        return [self.data.shards[i] for i in order][self.rank::self.world_size]

    def _worker_batches(self, epoch: int) -> list[int]:
        """How many batches each of this rank's workers hands out in an epoch (a partial last one is dropped)."""
        shards = self._epoch_shards(epoch)
        return [sum(self._count[s] for s in shards[w::self.workers]) // self.batch_size for w in range(self.workers)]

    def _locate(self, total: int) -> tuple[int, list[int], list[int]]:
        """(epoch, batches handed out per worker, workers done) after `total` batches from the start: the same
        round robin as __next__, replayed from the sample counts without reading a shard."""
        epoch = 0
        while True:
            per_worker = self._worker_batches(epoch)
            if sum(per_worker) == 0:
                raise DataError(f"rank {self.rank}'s shards in epoch {epoch} hold fewer images than one batch of "
                                f"{self.batch_size} per worker; lower the batch size or write larger shards")
            if total < sum(per_worker):
                break
            total, epoch = total - sum(per_worker), epoch + 1
        handed, done, active, turn = [0] * self.workers, [], list(range(self.workers)), 0
        while total:
            want = active[turn % len(active)]
            if handed[want] == per_worker[want]:
                active.remove(want)
                done.append(want)
                continue
            handed[want], turn, total = handed[want] + 1, turn + 1, total - 1
        return epoch, handed, done

    def _start_epoch(self) -> None:
        dataset = _WorkerBatches(self.data, self._epoch_shards(), self.batch_size, list(self.handed))
        # a generator of its own: by default a DataLoader draws its workers' seed from the global RNG, which would
        # shift the training noise whenever an epoch starts (and differently after a resume)
        loader = torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=self.workers,
                                             multiprocessing_context="fork" if os.name == "posix" else None,
                                             generator=torch.Generator().manual_seed(self.seed))
        self._iter, self._queues = iter(loader), {w: [] for w in range(self.workers)}
        self._active = [w for w in range(self.workers) if w not in self.done]
        self._turn = sum(self.handed)  # the round robin's position, counted in batches handed out

    def __iter__(self) -> ShardBatches:
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The next (uint8 images (B, C, H, W), labels (B,) or None)."""
        while True:
            if self._iter is None:
                self._start_epoch()
            if not self._active:  # every worker is done: next epoch
                self.epoch, self.handed, self.done, self._iter = self.epoch + 1, [0] * self.workers, [], None
                continue
            want = self._active[self._turn % len(self._active)]
            while not self._queues[want]:
                worker, index, images, labels = next(self._iter)
                self._queues[worker].append((index, images, labels))
            index, images, labels = self._queues[want].pop(0)
            if index < 0:
                self._active.remove(want)
                self.done.append(want)
                continue
            self.handed[want] += 1
            self._turn += 1
            self.total += 1
            return images, (labels if self.data.num_classes else None)

    def state_dict(self) -> dict:
        """{"batches": batches handed out since the start, "epoch": this rank's epoch}. Every rank draws the same
        number of batches, so rank 0's state resumes every rank (each replays its own epochs from it)."""
        return {"batches": self.total, "epoch": self.epoch}

    def load_state_dict(self, state: dict) -> None:
        """Continue after the batches a state_dict() had handed out."""
        if "batches" not in state:
            raise DataError(f"loader state {state} is not a tar-shard loader's; the data changed since the checkpoint")
        self.total = int(state["batches"])
        self.epoch, self.handed, self.done = self._locate(self.total)
        self._iter = None

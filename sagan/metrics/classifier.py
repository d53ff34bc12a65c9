"""A feature extractor for any labelled reference set: a small CNN trained on it, offline, and cached.

Where no domain classifier is shipped and Inception weights cannot be downloaded, `--features classifier`
trains a small CNN (four conv blocks of torchvision's Conv2dNormActivation, global average pooling, a linear
head) to predict the reference set's labels, with random flips and shifts, on a fixed 90% of it; the other 10%
is held out and its accuracy reported (plain and class-balanced: the mean of per-class recalls). Generated images
are then scored in its penultimate feature space (`fd_classifier`, `kid_classifier`, ...; never `fid`), and its
argmax gives each class's share of the generated images, set against the real share.

The trained network is cached under $SAGAN_CACHE/classifiers (default ~/.cache/sagan/classifiers), keyed by the
reference's pixels, its labels and class names and the training settings, so a second evaluation trains nothing.
With it is stored the real-against-real floor (sagan.metrics.floor) in its feature space, computed on the
held-out images (a classifier cached before that is kept; its floor is recomputed once).

Inside `classifier_from(folder)` a classifier is read from that folder first (a study's record keeps the one that
scored its runs there, so a later session scores with the same weights instead of retraining, which on another
machine gives other weights).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import Conv2dNormActivation

from sagan.errors import SaganError
from sagan.metrics.extractors import FeatureExtractor

CLASSIFIER_FORMAT = 1
FLOOR_FORMAT = 2  # 2: the held-out images against as many training images (1: two halves of the training images)


@dataclass(frozen=True)
class ClassifierSettings:
    """How the classifier is trained; every field is part of its cache key."""

    epochs: int = 10  # 7,572 emoji at 64 px, 1 thread: ~3 min; held-out accuracy 0.80 after 6 epochs, 0.84 after 10
    batch_size: int = 64
    lr: float = 3e-3
    widths: tuple[int, ...] = (16, 32, 64, 128)  # 64 px emoji, 1 thread: ~36 s an epoch
    holdout: float = 0.1  # share of the reference held out for the reported accuracy
    max_shift: float = 0.0625  # random shifts of up to this share of the side, edges repeated
    # each class's loss weight is proportional to count^-class_balance: 0 plain cross-entropy, 1 fully balanced;
    # in between, rare classes (10 "Component" emoji among 7,572) are learnt without drowning the common ones
    class_balance: float = 0.5
    seed: int = 0


class ClassifierNet(nn.Module):
    """uint8 (B, C, S, S) -> features (B, widths[-1]) after global average pooling, logits (B, classes).

    Other sizes are resized (bicubic, antialiased) to S, the size it was trained at.
    """

    def __init__(self, channels: int, num_classes: int, size: int, widths: tuple[int, ...] = (16, 32, 64, 128)):
        super().__init__()
        layers: list[nn.Module] = []
        c = channels
        for i, w in enumerate(widths):
            layers.append(Conv2dNormActivation(c, w, 3))
            if i < len(widths) - 1:
                layers.append(nn.MaxPool2d(2))  # (B, w, S / 2^(i+1), ...)
            c = w
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(c, num_classes)
        self.size, self.channels = size, channels

    def forward_features(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = images.to(self.head.weight.device, torch.float32) / 127.5 - 1.0  # (B, C, H, W) in [-1, 1]
        if x.shape[-1] != self.size or x.shape[-2] != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bicubic", antialias=True, align_corners=False)
        feats = F.adaptive_avg_pool2d(self.body(x), 1).flatten(1)  # (B, widths[-1])
        return feats, self.head(feats)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.forward_features(images)[1]


def _augment(images: torch.Tensor, max_shift: int, gen: torch.Generator) -> torch.Tensor:
    """Random horizontal flips per image and one random shift per batch (edges repeated): uint8 in, float out."""
    x = images.float()
    flip = torch.rand(len(x), generator=gen) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    if max_shift:
        s = x.shape[-1]
        x = F.pad(x, (max_shift,) * 4, mode="replicate")
        dx, dy = torch.randint(0, 2 * max_shift + 1, (2,), generator=gen).tolist()
        x = x[..., dy:dy + s, dx:dx + s]
    return x.round().to(torch.uint8)


@torch.no_grad()
def _predict(net: ClassifierNet, images: torch.Tensor, batch: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
    net.eval()
    out = [net.forward_features(b) for b in images.split(batch)]
    return torch.cat([f for f, _ in out]).cpu(), torch.cat([lg for _, lg in out]).cpu()


def holdout_split(n: int, settings: ClassifierSettings) -> tuple[torch.Tensor, torch.Tensor, torch.Generator]:
    """The fixed split of n reference images: (held-out indices, training indices, the generator that drew them,
    which training goes on using)."""
    gen = torch.Generator().manual_seed(settings.seed)
    perm = torch.randperm(n, generator=gen)
    n_hold = max(1, round(n * settings.holdout))
    return perm[:n_hold], perm[n_hold:], gen


def train_classifier(images: torch.Tensor, labels: torch.Tensor, num_classes: int,
                     settings: ClassifierSettings = ClassifierSettings(), device: str | torch.device = "cpu",
                     log=None) -> tuple[ClassifierNet, dict]:
    """Train a ClassifierNet on uint8 images (N, C, S, S) and labels (N,); (net, metadata with held-out accuracy)."""
    hold, fit, gen = holdout_split(len(images), settings)
    n_hold = len(hold)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)
        net = ClassifierNet(images.shape[1], num_classes, images.shape[-1], settings.widths).to(device)
    batch = min(settings.batch_size, len(fit))
    steps = settings.epochs * (len(fit) // batch)
    opt = torch.optim.AdamW(net.parameters(), lr=settings.lr, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=settings.lr, total_steps=steps, pct_start=0.15)
    shift = round(settings.max_shift * images.shape[-1])
    counts = torch.bincount(labels[fit], minlength=num_classes).clamp(min=1).double()
    weight = counts.pow(-settings.class_balance)
    weight = (weight / (weight * counts).sum() * counts.sum()).float().to(device)  # mean weight per image: 1
    t0 = time.perf_counter()
    for epoch in range(settings.epochs):
        net.train()
        order = fit[torch.randperm(len(fit), generator=gen)]
        for i in range(0, len(order) - batch + 1, batch):
            idx = order[i:i + batch]
            loss = F.cross_entropy(net(_augment(images[idx], shift, gen)), labels[idx].to(device),
                                   weight=weight, label_smoothing=0.05)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        if log:
            log(f"classifier epoch {epoch + 1}/{settings.epochs}: loss {loss.item():.3f}, "
                f"{time.perf_counter() - t0:.0f} s")
    seconds = time.perf_counter() - t0
    pred = _predict(net, images[hold])[1].argmax(1)
    truth = labels[hold]
    recalls = [float((pred[truth == c] == c).float().mean()) for c in range(num_classes) if (truth == c).any()]
    meta = {"heldout_accuracy": round(float((pred == truth).float().mean()), 4),
            "heldout_balanced_accuracy": round(float(np.mean(recalls)), 4), "heldout_count": n_hold,
            "train_count": len(fit), "train_seconds": round(seconds, 1), "threads": torch.get_num_threads()}
    return net.eval(), meta


# ----------------------------------------------------------------------------------------------------------
# The extractor and its cache


def classifier_dir(cache_dir: str | Path | None = None) -> Path:
    """Where trained classifiers live: `cache_dir`/classifiers, else $SAGAN_CACHE/classifiers or ~/.cache/sagan/."""
    if cache_dir:
        return Path(cache_dir).expanduser() / "classifiers"
    env = os.environ.get("SAGAN_CACHE")
    return (Path(env).expanduser() if env else Path.home() / ".cache" / "sagan") / "classifiers"


def classifier_key(images: torch.Tensor, labels: torch.Tensor, class_names: list[str],
                   settings: ClassifierSettings) -> str:
    """A hex key of the reference's pixels, labels, class names and the training settings."""
    h = hashlib.sha256(json.dumps({"format": CLASSIFIER_FORMAT, "shape": list(images.shape), "classes": class_names,
                                   "settings": dataclasses.asdict(settings)}, sort_keys=True).encode())
    h.update(images.contiguous().numpy().tobytes())
    h.update(labels.to(torch.int64).numpy().tobytes())
    return h.hexdigest()[:20]


class ClassifierExtractor(FeatureExtractor):
    """A ClassifierNet trained on a reference set: its pooled features and logits, plus its provenance."""

    name = "classifier"
    suffix = "_classifier"

    def __init__(self, net: ClassifierNet, class_names: list[str], meta: dict, weights_path: str,
                 weights_sha256: str, real_shares: np.ndarray, device: str | torch.device = "cpu"):
        super().__init__(device, batch_size=500)
        self.net = net.eval().to(self.device)
        self.class_names = tuple(class_names)
        self.input_channels = (net.channels,)
        self.feature_layer = f"penultimate-{net.head.in_features} (global average pool)"
        self.meta, self.weights_path, self.weights_sha256 = meta, weights_path, weights_sha256
        self.real_shares = real_shares
        self.cache_hit = False

    def describe(self) -> dict:
        out = super().describe()  # stable fields only: this description keys the reference statistics cache
        out.update(extractor_heldout_accuracy=self.meta["heldout_accuracy"],
                   extractor_heldout_balanced_accuracy=self.meta["heldout_balanced_accuracy"],
                   extractor_trained_on=self.meta["trained_on"], extractor_settings=self.meta["settings"])
        return out

    def provenance(self) -> dict:
        """What `evaluate` adds to the record: cache use, training time, the floor."""
        return {"extractor_cache_hit": self.cache_hit, "extractor_train_seconds": self.meta["train_seconds"],
                "extractor_train_threads": self.meta["threads"], "real_class_shares": self.real_shares.tolist(),
                "floor": {"scores": self.meta["floor"], "how": self.meta["floor_how"]}}

    def preprocessing(self, size: int, channels: int) -> str:
        s = self.net.size
        resize = "" if size == s else f"{size}x{size} -> {s}x{s} bicubic antialiased, "
        return f"{resize}(x / 127.5 - 1), as in training"

    def _forward(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.net.forward_features(batch)


_MEMO: dict[tuple, ClassifierExtractor] = {}
_PINNED: list[Path] = []


@contextmanager
def classifier_from(folder: str | Path | None) -> Iterator[None]:
    """Inside it, a classifier is loaded from `folder` (classifier-KEY.safetensors and .json, as in the cache) when
    the folder holds the one for the reference, before the cache is looked at; None changes nothing."""
    if folder is None:
        yield
        return
    _PINNED.append(Path(folder))
    try:
        yield
    finally:
        _PINNED.pop()


def _floor(net: ClassifierNet, ref, settings: ClassifierSettings) -> dict:
    """The real-vs-real floor in the classifier's feature space, on the images it held out (sagan.metrics.floor)."""
    from sagan.metrics.floor import real_floor

    feats, logits = _predict(net, ref.images)
    hold, fit, _ = holdout_split(len(ref.images), settings)
    n = min(len(hold), len(fit))
    return {"floor": real_floor(feats, logits, ref.labels, len(ref.class_names), "_classifier", hold),
            "floor_format": FLOOR_FORMAT,
            "floor_how": f"{n} held-out reference images (never trained on: they stand in for a perfect generator's) "
                         f"against {n} of the {len(fit)} it was trained on (a fixed draw, seed 0), same metric "
                         "settings; class shares: the held-out images' argmax against the whole set's label shares"}


def _write_text(path: Path, text: str) -> None:
    """Write through a temporary file and a rename: a reader (another study worker) never sees half of it."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def classifier_extractor(ref, cache_dir: str | Path | None = None, use_cache: bool = True,
                         device: str | torch.device = "cpu",
                         settings: ClassifierSettings = ClassifierSettings()) -> ClassifierExtractor:
    """The classifier for a labelled `Reference` (sagan.metrics.evaluation): from the cache, or trained now."""
    from safetensors.torch import load_file, save

    if ref.labels is None or len(ref.class_names) < 2:
        found = "one class" if ref.labels is not None else "no labels"
        raise SaganError(f"--features classifier learns the reference's classes, and {ref.dataset} has {found}; "
                         "pass --labels FILE.csv [--label-column NAME], or put its images in one sub-folder per class")
    key = classifier_key(ref.images, ref.labels, list(ref.class_names), settings)
    real_shares = np.bincount(ref.labels.numpy(), minlength=len(ref.class_names)) / len(ref.labels)
    folder = classifier_dir(cache_dir)
    path = folder / f"classifier-{key}.safetensors"
    pinned = _PINNED[-1] / path.name if _PINNED else None
    pinned = pinned if pinned is not None and pinned.is_file() and pinned.with_suffix(".json").is_file() else None
    memo_key = (key, str(device), use_cache, str(pinned))
    if memo_key in _MEMO:
        return _MEMO[memo_key]
    c, s, k = ref.images.shape[1], ref.images.shape[-1], len(ref.class_names)
    net = ClassifierNet(c, k, s, settings.widths)
    source = pinned or path
    if (pinned or use_cache) and source.is_file() and source.with_suffix(".json").is_file():
        blob = source.read_bytes()
        net.load_state_dict(load_file(str(source)))
        meta = json.loads(source.with_suffix(".json").read_text())
        if meta.get("floor_format") != FLOOR_FORMAT:  # cached before the floor moved to the held-out images
            meta.update(_floor(net.eval(), ref, settings))
            try:
                if pinned is None:  # a pinned classifier's files are kept as they are
                    _write_text(path.with_suffix(".json"), json.dumps(meta, indent=2) + "\n")
            except OSError:
                pass  # a read-only cache: the floor is recomputed on each first use instead
        hit = True
    else:
        import sys

        print(f"training the classifier extractor on {len(ref.images)} images of {ref.dataset} ({k} classes, "
              f"{settings.epochs} epochs); cached for later calls", file=sys.stderr, flush=True)
        net, meta = train_classifier(ref.images, ref.labels, k, settings, device,
                                     log=lambda m: print(m, file=sys.stderr, flush=True))
        net = net.cpu()
        meta.update(format=CLASSIFIER_FORMAT, key=key, class_names=list(ref.class_names),
                    settings=dataclasses.asdict(settings), trained_on=f"{ref.source}, {len(ref.images)} images",
                    **_floor(net, ref, settings))
        state = {name: t.detach().contiguous() for name, t in net.state_dict().items()}
        blob = save(state)
        if use_cache:
            folder.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(blob)
            _write_text(path.with_suffix(".json"), json.dumps(meta, indent=2) + "\n")
            os.replace(tmp, path)  # the weights appear last: a file under the final name is complete
        hit = False
    where = str(source) if pinned or use_cache else "(not cached: --no-cache)"
    ex = ClassifierExtractor(net, list(ref.class_names), meta, where, hashlib.sha256(blob).hexdigest(), real_shares,
                             device)
    ex.cache_hit = hit
    if len(_MEMO) > 4:
        _MEMO.clear()
    _MEMO[memo_key] = ex
    return ex

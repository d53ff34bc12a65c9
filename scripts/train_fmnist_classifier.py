"""Train the Fashion-MNIST classifier that `sagan eval` uses as its domain feature extractor.

    python scripts/train_fmnist_classifier.py [--data /usr/share/datasets/fashion-mnist] [--epochs 12]

Writes `sagan/weights/fmnist_classifier.safetensors` (float16, a few hundred KB) and
`sagan/weights/fmnist_classifier.json` (architecture, test accuracy measured with the shipped float16 weights,
training command, sha256). The test split is used once, at the end, never for choosing anything.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import platform
import shlex
import struct
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from sagan.metrics.fmnist import FMNIST_CLASSES, FmnistNet

FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (optionally gzipped) as a numpy array."""
    if path.suffix == ".gz":
        with gzip.open(path, "rb") as f:
            raw = f.read()
    else:
        raw = path.read_bytes()
    ndim = raw[3]
    shape = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_split(root: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images (N, 1, 28, 28) and int64 labels (N,)."""
    img_file, lbl_file = FILES[split]
    images = torch.from_numpy(read_idx(root / img_file).copy()).unsqueeze(1)
    labels = torch.from_numpy(read_idx(root / lbl_file).astype(np.int64))
    return images, labels


def augment(images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random horizontal flips and shifts of up to 2 pixels (zero padding, as the data's background)."""
    B = images.shape[0]
    flip = torch.rand(B, generator=gen) < 0.5
    images = torch.where(flip[:, None, None, None], images.flip(-1), images)
    padded = F.pad(images, (2, 2, 2, 2))
    dx, dy = torch.randint(0, 5, (2,), generator=gen).tolist()  # one shift per batch: cheap, enough
    return padded[:, :, dy : dy + 28, dx : dx + 28]


@torch.no_grad()
def accuracy(model: FmnistNet, images: torch.Tensor, labels: torch.Tensor) -> float:
    model.eval()
    correct = sum(
        (model(images[i : i + 1000]).argmax(1) == labels[i : i + 1000]).sum().item()
        for i in range(0, len(images), 1000)
    )
    return correct / len(images)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    p.add_argument("--data", type=Path, default=Path("/usr/share/datasets/fashion-mnist"))
    p.add_argument("--out-dir", type=Path, default=Path(__file__).resolve().parents[1] / "sagan" / "weights")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=int, default=0, help="train on the first N images only (smoke tests)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)

    x_train, y_train = load_split(args.data, "train")
    x_test, y_test = load_split(args.data, "test")
    if args.limit:
        x_train, y_train = x_train[: args.limit], y_train[: args.limit]
    model = FmnistNet()
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=5e-4)
    steps = args.epochs * (len(x_train) // args.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=steps, pct_start=0.15)
    t0 = time.time()
    for epoch in range(args.epochs):
        model.train()
        perm = torch.randperm(len(x_train), generator=gen)
        total, n = 0.0, 0
        for i in range(0, len(perm) - args.batch_size + 1, args.batch_size):
            idx = perm[i : i + args.batch_size]
            logits = model(augment(x_train[idx], gen))
            loss = F.cross_entropy(logits, y_train[idx], label_smoothing=0.05)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total, n = total + loss.item(), n + 1
        print(f"epoch {epoch + 1}/{args.epochs}  loss {total / n:.4f}  {time.time() - t0:.0f}s", flush=True)
    train_seconds = time.time() - t0

    # Ship float16 weights; measure the accuracy of exactly what is shipped (upcast to float32).
    state = {k: v.half().contiguous() for k, v in model.state_dict().items() if v.is_floating_point()}
    shipped = FmnistNet()
    shipped.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)
    test_acc = accuracy(shipped, x_test, y_test)
    train_acc = accuracy(shipped, x_train[:10000], y_train[:10000])
    print(f"test accuracy {test_acc:.4f}  (train subset {train_acc:.4f})")

    command = "python " + " ".join(shlex.quote(a) for a in [Path(sys.argv[0]).as_posix(), *sys.argv[1:]])
    meta = {
        "architecture": "sagan.metrics.fmnist.FmnistNet(widths=(32, 64, 64, 128), num_classes=10)",
        "input": "uint8 (B, 1, 28, 28), scaled to [0, 1] then normalised with mean 0.2860, std 0.3530",
        "features": "128-d global-average-pooled output of the last conv block (penultimate layer)",
        "classes": list(FMNIST_CLASSES),
        "test_accuracy": round(test_acc, 4),
        "test_split": "Fashion-MNIST t10k (10,000 images), evaluated once after training",
        "train_subset_accuracy": round(train_acc, 4),
        "dtype": "float16 (computed in float32)",
        "parameters": sum(p.numel() for p in model.parameters()),
        "training_command": command,
        "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed,
        "train_seconds": round(train_seconds),
        "torch": torch.__version__, "python": platform.python_version(),
        "data_sha256": {name: sha256(args.data / name) for pair in FILES.values() for name in pair},
    }  # fmt: skip
    args.out_dir.mkdir(parents=True, exist_ok=True)
    weights = args.out_dir / "fmnist_classifier.safetensors"
    save_file(state, str(weights), metadata={k: json.dumps(v) for k, v in meta.items()})
    meta["file"] = weights.name
    meta["bytes"] = weights.stat().st_size
    meta["sha256"] = sha256(weights)
    (args.out_dir / "fmnist_classifier.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(f"wrote {weights} ({meta['bytes'] / 1024:.0f} KiB, sha256 {meta['sha256'][:12]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The streaming loader alone against the training step's demand, on a generated folder too big to hold.

    python benchmarks/bench_loader.py [--images 100000] [--folder /tmp/sagan_loader_bench] [--sizes 64,128]
        [--batch-size 64] [--batches 50] [--threads N] [--demand-batch 16] [--no-demand] [--json OUT]

A plain script, not a test. How each number is obtained:
- The folder: `--images` JPEGs of 178x218 px (CelebA's aligned size), smooth random colour fields with noise,
  in 10 class sub-folders, written once by forked workers and reused when the folder already holds that many.
- For each size, `load_data(folder, size, max_in_memory_bytes=0)`: the folder is streamed from disk, as any
  folder larger than 4 GiB at the requested size is (100,000 images are 4.9 GB at 128 px, 1.2 GB at 64 px).
  "open s" is its wall time: the scan plus the one validating decode of every file (found bad files are
  skipped now, not mid-run), in the loader's forked decoding workers.
- loader img/s: `InfiniteBatches` (the training loop's loader: a disjoint shard per rank, one batch decoded
  ahead in a background thread, each batch decoded across the worker processes) over `--batches` batches after
  2 warm-up batches, plus the uint8 -> [-1, 1] conversion the loop does; nothing else runs.
- step img/s (the demand): the loop's own training iteration from bench_train.py (sagan_64 / sagan_128 at
  paper widths, fp32, channels_last, one D step + one G step + EMA) at `--demand-batch`, median of 3 after 1
  warm-up, with `--threads` torch threads. The loop keeps up when loader img/s > step img/s.
- peak RSS: the largest sum of proportional resident memory (PSS, /proc/PID/smaps_rollup) of this process and
  its forked decoding workers, sampled every 50 ms while the folder is opened and read; it includes torch's
  own libraries (about 0.4 GB here). Against it: the bytes the images would take in memory as uint8.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _make_image(job: tuple[str, int]) -> None:
    from PIL import Image

    path, seed = job
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)  # a coarse colour field, upscaled smoothly
    img = np.asarray(Image.fromarray(small).resize((178, 218), Image.BILINEAR), dtype=np.int16)
    img = np.clip(img + rng.integers(-12, 13, img.shape), 0, 255).astype(np.uint8)
    Image.fromarray(img).save(path, quality=90)


def make_folder(folder: Path, images: int) -> float:
    """Write `images` JPEGs in 10 class folders (kept when already there); returns seconds spent."""
    import multiprocessing

    existing = sum(1 for _ in folder.rglob("*.jpg")) if folder.is_dir() else 0
    if existing == images:
        return 0.0
    if existing:
        raise SystemExit(f"{folder} holds {existing} images, not {images}; remove it or choose another --folder")
    t0 = time.perf_counter()
    for c in range(10):
        (folder / f"class_{c}").mkdir(parents=True, exist_ok=True)
    jobs = [(str(folder / f"class_{i % 10}" / f"{i:07d}.jpg"), i) for i in range(images)]
    with multiprocessing.get_context("fork").Pool() as pool:
        for _ in pool.imap_unordered(_make_image, jobs, chunksize=256):
            pass
    return time.perf_counter() - t0


def tree_rss_bytes(pid: int) -> int:
    """Proportional resident bytes (PSS: a page shared by k processes counts 1/k in each) of a process and all
    its descendants: forked decoding workers share most of their pages with the parent."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                total += next(int(line.split()[1]) * 1024 for line in f if line.startswith("Pss:"))
            with open(f"/proc/{p}/task/{p}/children") as f:
                todo += [int(c) for c in f.read().split()]
        except (FileNotFoundError, StopIteration, ProcessLookupError):
            continue
    return total


class PeakRSS:
    """Samples tree_rss_bytes(own pid) every 50 ms in a thread; .peak is the largest seen."""

    def __enter__(self):
        self.peak, self._stop = tree_rss_bytes(os.getpid()), threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, tree_rss_bytes(os.getpid()))

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def loader_rate(folder: Path, size: int, batch: int, batches: int) -> dict:
    import gc

    from sagan.data import InfiniteBatches, load_data, to_model_range

    with PeakRSS() as rss:
        t0 = time.perf_counter()
        data = load_data(str(folder), size, max_in_memory_bytes=0)
        opened = time.perf_counter() - t0
        loader = InfiniteBatches(data, batch, seed=0)
        for _ in range(2):
            next(loader)
        t0 = time.perf_counter()
        for _ in range(batches):
            images, _ = next(loader)
            to_model_range(images)
        seconds = time.perf_counter() - t0
    result = {"size": size, "images": len(data), "streamed": data.streamed, "open_s": round(opened, 1),
              "loader_img_s": round(batches * batch / seconds, 1), "peak_rss_mib": round(rss.peak / 2**20),
              "in_memory_mib": round(len(data) * 3 * size * size / 2**20)}
    del loader, data
    gc.collect()
    return result


def step_rate(size: int, batch: int) -> dict:
    import torch
    from bench_train import build_ours

    model = f"sagan_{size}"
    step, _, _ = build_ours(model, None, torch.channels_last, batch, 1, 0)
    step()
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return {"demand_model": model, "demand_batch": batch, "step_img_s": round(batch / statistics.median(times), 1)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=100_000)
    p.add_argument("--folder", type=Path, help="default: /tmp/sagan_loader_bench_IMAGES")
    p.add_argument("--sizes", default="64,128")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--batches", type=int, default=50)
    p.add_argument("--threads", type=int, default=0, help="torch threads for the demand (default: torch's)")
    p.add_argument("--demand-batch", type=int, default=16)
    p.add_argument("--no-demand", action="store_true", help="skip timing the training step")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    folder = args.folder or Path(f"/tmp/sagan_loader_bench_{args.images}")
    made = make_folder(folder, args.images)
    print(f"folder {folder}: {args.images} JPEGs (178x218)" + (f", written in {made:.0f} s" if made else ""),
          file=sys.stderr)
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):  # every loader first: the models' memory stays out
        rows.append(loader_rate(folder, size, args.batch_size, args.batches))
        print(json.dumps(rows[-1]), file=sys.stderr)
    for row in rows if not args.no_demand else []:
        row.update(step_rate(row["size"], args.demand_batch))
        row["loader_over_step"] = round(row["loader_img_s"] / row["step_img_s"], 2)
        print(json.dumps(row), file=sys.stderr)
    info = {"cpus": len(os.sched_getaffinity(0)), "torch_threads": torch.get_num_threads(),
            "loadavg": os.getloadavg()[0], "batch": args.batch_size, "batches": args.batches}
    print(f"{'px':>4} {'images':>8} {'open s':>7} {'loader img/s':>13} {'step img/s':>11} {'ratio':>6} "
          f"{'peak RSS MiB':>13} {'in-memory MiB':>14}")
    for r in rows:
        print(f"{r['size']:>4} {r['images']:>8} {r['open_s']:>7} {r['loader_img_s']:>13} "
              f"{r.get('step_img_s', '-'):>11} {r.get('loader_over_step', '-'):>6} {r['peak_rss_mib']:>13} "
              f"{r['in_memory_mib']:>14}")
    print(f"{info['cpus']} CPUs, {info['torch_threads']} torch threads, load average {info['loadavg']:.1f}; "
          f"batch {args.batch_size}, {args.batches} timed batches")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, **info}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

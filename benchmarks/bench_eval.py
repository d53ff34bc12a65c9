"""How long scoring N generated images takes on this machine, split into generation, features and metrics.

    python benchmarks/bench_eval.py [--num 10000] [--threads 1] [--inception-images 32] [--floor]

A plain script that prints tables; not a test. Generation uses an untrained `sagan_32_cpu` generator (speed
does not depend on the weights). Fashion-MNIST classifier features are timed on all N images; Inception-v3
(torch-fidelity) is timed on a few images at 299x299 and extrapolated, with the real weights when they are
available offline, otherwise random weights in the same layout (same cost). Metrics are timed on N x N
features of each extractor's width.

--floor also measures the numbers the README quotes: the real-vs-real floor (a fixed random 10,000 of the
training split against the 10,000 test images, fmnist features) and the same training images sent through
the project's training transform (pad to 32 or 64, or resize to 16) and brought back by `undo_fit`.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

# numpy's BLAS (KID, FD) gets the same thread count as torch; set before numpy is first imported.
_threads = sys.argv[sys.argv.index("--threads") + 1] if "--threads" in sys.argv[:-1] else "1"
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, _threads)

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sagan.data import load_data, to_model_range, to_uint8
from sagan.metrics import maths
from sagan.metrics.evaluation import METRICS, evaluate, scores_only
from sagan.metrics.extractors import FmnistExtractor, InceptionExtractor


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


@torch.no_grad()
def generate_untrained(num: int, batch_size: int = 250) -> torch.Tensor:
    """uint8 (num, 1, 32, 32) from an untrained sagan_32_cpu generator (through sagan.sampling if present)."""
    from sagan.models import create_model

    g = create_model("sagan_32_cpu", img_channels=1).generator.eval()
    try:
        from sagan.sampling import generate

        return generate(g, num, seed=0, batch_size=batch_size)
    except ImportError:
        gen = torch.Generator().manual_seed(0)
        out = [to_uint8(g(torch.randn(min(batch_size, num - i), g.z_dim, generator=gen)))
               for i in range(0, num, batch_size)]
        return torch.cat(out)


def inception_extractor() -> tuple[InceptionExtractor, str]:
    from sagan.errors import SaganError

    try:
        return InceptionExtractor(batch_size=16), "real weights"
    except SaganError:
        import tempfile
        from unittest import mock

        import torch_fidelity.feature_extractor_inceptionv3 as tfi

        with mock.patch.object(tfi, "load_state_dict_from_url", lambda *a, **k: {}), \
                mock.patch.object(tfi.FeatureExtractorInceptionV3, "load_state_dict", lambda *a, **k: None):
            state = tfi.FeatureExtractorInceptionV3("x", ["2048"]).state_dict()
        path = Path(tempfile.mkdtemp()) / "random-inception.pth"
        torch.save(state, path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return InceptionExtractor(weights=path, batch_size=16), "random weights, same cost"


def metric_times(real: torch.Tensor, fake: torch.Tensor) -> dict[str, float]:
    n = min(len(real), len(fake))
    kid = min(1000, n)
    return {
        "fd": timed(maths.frechet_distance, real, fake)[1],
        "kid (100 x 1000)": timed(maths.kernel_distance, real, fake, 100, kid)[1],
        "pr (k=3)": timed(maths.precision_recall, real, fake, 3)[1],
        "dc (k=5)": timed(maths.density_coverage, real, fake, 5)[1],
    }


def speed(args: argparse.Namespace) -> None:
    n = args.num
    rows: list[tuple[str, float, str]] = []
    fake32, t = timed(generate_untrained, n)
    rows.append(("generation", t, f"{n} images, untrained sagan_32_cpu (1 x 32 x 32), batch 250"))

    test = load_data("fashion-mnist", 28, split="test", download=False)
    fake28 = fake32[..., 2:30, 2:30]
    fm = FmnistExtractor()
    (ffeat, flog), t = timed(fm.extract, fake28)
    rows.append(("features: fmnist", t, f"{n} images, 28 x 28, 128-d"))
    (rfeat, _), t_ref = timed(fm.extract, test.images[:n])

    inc, which = inception_extractor()
    k = args.inception_images
    _, t = timed(inc.extract, fake28[:k])
    rows.append(("features: inception", t * n / k, f"extrapolated from {k} images at 299 x 299 ({which})"))

    for name, secs in metric_times(rfeat[:n], ffeat).items():
        rows.append((f"metric {name}: fmnist", secs, f"{n} vs {len(rfeat[:n])}, 128-d"))
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(n, 2048, generator=g).abs(), torch.randn(n, 2048, generator=g).abs()
    for name, secs in metric_times(a, b).items():
        rows.append((f"metric {name}: inception", secs, f"{n} vs {n}, 2048-d"))
    _, t = timed(maths.classifier_score, flog)
    rows.append(("metric is: any", t, "10 splits"))

    print(f"\nScoring {n} generated images on this CPU ({torch.get_num_threads()} torch thread(s)); "
          f"reference features are cached after the first run (fmnist: {t_ref:.1f} s for {n}).\n")
    print(f"| {'stage':<34} | {'seconds':>8} | note")
    print(f"|{'-' * 36}|{'-' * 10}|------")
    for stage, secs, note in rows:
        print(f"| {stage:<34} | {secs:8.1f} | {note}")
    fm_total = sum(s for st, s, _ in rows if st in ("generation", "features: fmnist")
                   or (st.startswith("metric") and ("fmnist" in st or "any" in st)))
    inc_total = sum(s for st, s, _ in rows if st in ("generation", "features: inception")
                    or (st.startswith("metric") and ("inception" in st or "any" in st)))
    print(f"\ntotal, fmnist features: {fm_total:.0f} s; inception features: {inc_total:.0f} s (cached reference)")


def floor(args: argparse.Namespace) -> None:
    """Real-vs-real floor and the pad/resize-and-back figures (fmnist features, all metrics)."""
    n = 10_000
    g = torch.Generator().manual_seed(1)
    train28 = load_data("fashion-mnist", 28, split="train", download=False)
    idx = torch.randperm(len(train28), generator=g)[:n]
    rows = []
    real = train28.images[idx]
    rows.append(("train 10k vs test 10k (floor)", evaluate(real, "fashion-mnist", METRICS, seed=0)))
    for res in args.floor_resolutions:
        data = load_data("fashion-mnist", res, split="train", download=False)
        # Through the training transform (fit, then to [-1, 1] and back to uint8) and back with undo_fit.
        images = to_uint8(to_model_range(data.images[idx]))
        rows.append((f"same, {data.fit} to {res} and back", evaluate(images, "fashion-mnist", METRICS, seed=0)))
    idx2 = torch.randperm(len(train28), generator=torch.Generator().manual_seed(2))[:n]
    rows.append(("another train 10k vs test 10k", evaluate(train28.images[idx2], "fashion-mnist", METRICS, seed=0)))
    keys = ["fd_fmnist", "kid_fmnist", "is_fmnist", "precision_fmnist", "recall_fmnist", "density_fmnist",
            "coverage_fmnist", "class_frac_fmnist_min"]
    print("\nReal-vs-real floor, fmnist classifier features, 10,000 vs the 10,000 Fashion-MNIST test images\n")
    print("| comparison | " + " | ".join(k.replace("_fmnist", "") for k in keys) + " |")
    print("|---" * (len(keys) + 1) + "|")
    for label, r in rows:
        s = scores_only(r)
        cells = [f"{s[k]:.4f}" if k != "kid_fmnist" else f"{s[k]:.5f} ± {s[k + '_std']:.5f}" for k in keys]
        print(f"| {label} | " + " | ".join(cells) + " |")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--num", type=int, default=10_000)
    p.add_argument("--threads", type=int, default=1, help="torch and BLAS threads (default: 1)")
    p.add_argument("--inception-images", type=int, default=32)
    p.add_argument("--floor", action="store_true", help="also measure the real-vs-real floor figures")
    p.add_argument("--floor-only", action="store_true")
    p.add_argument("--floor-resolutions", type=int, nargs="*", default=[32, 64, 16])
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if not args.floor_only:
        speed(args)
    if args.floor or args.floor_only:
        floor(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())

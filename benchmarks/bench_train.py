"""Speed and memory of one training iteration (n_dis D steps + one G step) per model and precision.

    python benchmarks/bench_train.py [--models sagan_32] [--precisions fp32,bf16] [--batch-size 64]
        [--threads N] [--iters 10] [--warmup 3] [--n-dis 1] [--num-classes 0] [--peer] [--json OUT]

A plain script that prints a table; not a test. One iteration is the training loop's own step, stripped of
data loading and bookkeeping: `generate` + `d_step` n_dis times, `generate` + `g_step`, then `update_ema`,
all imported from sagan.train, with `sagan train`'s default recipe (sagan.config.TrainConfig: hinge loss,
Adam lr 1e-4 / 4e-4, betas (0, 0.9), EMA, mode-seeking term), on random images in [-1, 1], channels_last as
`sagan train` runs by default.
By default the G step back-propagates through the last D step's fakes (`reuse_fakes`, one G forward less per
iteration); a model written NAME+fresh draws new fakes for the G step instead, as the peer does.

How each number is obtained:
- Every configuration (model x precision) runs in a worker process of its own, all started at once. The
  parent steps them in lockstep: one timed iteration of each worker per round (the order rotated every
  round), so all configurations share the same machine load; a median of --iters rounds is quoted with its
  interquartile range. Only one worker computes at any moment.
- images/s = batch * n_dis / median seconds per iteration (the real images D sees).
- FLOPs of one iteration come from torch.utils.flop_counter.FlopCounterMode over the first warm-up iteration
  (matmuls, convolutions and attention as executed, so the zero-padded q/k of the fused attention count).
- Peak rates, timed in the parent with the same thread count once per round between the workers' iterations
  (median of 3 per round; the quoted peak is the median of the rounds): a 2048x2048 @ 2048x2048 matmul in
  bf16 and fp32, and, as a second ceiling, a 3x3 convolution of 256 to 256 channels on a (32, 256, 32, 32)
  channels_last input (sagan_32's largest layer). Efficiency = achieved GFLOP/s / the peak. oneDNN's 3x3
  convolutions can beat the matmul (torch's fp32 matmul is MKL's sgemm, which on AMD CPUs runs well below
  the hardware's peak), so the conv ceiling is the tighter one for these networks.
- Memory, two ways. "tensor peak": the peak of tensor bytes allocated during one iteration above those
  live when it starts (weights, Adam state, the previous step's gradients), from the profiler's allocation
  events (torch.profiler, profile_memory=True) over the second of two iterations after the timed ones.
  "RSS growth": the worker's peak RSS (getrusage ru_maxrss, read before those profiled iterations) minus its
  RSS after building networks and optimisers; a high-water mark that also holds Adam state, gradients,
  allocator slack and one-time costs (oneDNN kernels and caches).
- Load: the 1-minute load average at start and end, and per configuration how many cores other processes
  kept busy during its timed iterations (/proc/stat busy time minus the worker's own CPU time).

--peer adds mimicry's SAGAN-32 (torch-mimicry 0.1.16, `pip install --no-deps torch-mimicry==0.1.16`), trained
by its own `train_step` methods (hinge loss, Adam with the same settings, same batch, same precision and
memory format, conditional on 10 classes as its SAGAN requires). Only `torch_mimicry.nets` and
`torch_mimicry.training.metric_log` are imported: the package's __init__ (which pulls the TensorFlow-based
metrics) is bypassed by registering bare package modules in sys.modules.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import (  # noqa: E402
    Worker,
    busy_seconds,
    check_precisions,
    cpu_seconds,
    rss_bytes,
    run_and_report,
    tensor_peak_bytes,
)
from peer_mimicry import PEER, PEER_PACKAGE, build_peer, import_mimicry_nets  # noqa: E402

from sagan.study.machine import cpu_name  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# name -> (autocast dtype name or None, channels_last)
PRECISIONS = {"fp32": (None, True), "bf16": ("bfloat16", True), "fp32-nchw": (None, False),
              "bf16-nchw": ("bfloat16", False)}


# ---------------------------------------------------------------------------------------------------------
# Worker side: build one configuration, then run iterations on command.
# ---------------------------------------------------------------------------------------------------------

def build_ours(model: str, dtype, memory_format, batch: int, n_dis: int, num_classes: int, device: str = "cpu"):
    """The training iteration of `model`: (step function, generator params, discriminator params)."""
    import copy

    import torch

    from sagan.config import TrainConfig
    from sagan.losses import LOSSES, mode_seeking
    from sagan.models import create_model
    from sagan.runtime import Runtime
    from sagan.train import d_step, fake_labels, g_step, generate, update_ema

    model, _, variant = model.partition("+")
    recipe = TrainConfig()  # lr, betas, loss, EMA, reuse_fakes and mode_seeking as `sagan train` uses them
    if variant == "fresh":
        recipe = dataclasses.replace(recipe, reuse_fakes=False)
    gan = create_model(model, num_classes=num_classes).to(device, memory_format=memory_format)
    g, d, cfg = gan.generator, gan.discriminator, gan.config
    g_ema = copy.deepcopy(g).eval().requires_grad_(False)
    opt_g = torch.optim.Adam(g.parameters(), recipe.lr_g, betas=(recipe.beta1, recipe.beta2))
    opt_d = torch.optim.Adam(d.parameters(), recipe.lr_d, betas=(recipe.beta1, recipe.beta2))
    d_loss, g_loss = LOSSES[recipe.loss]
    rt = Runtime(torch.device(device), dtype)
    real = (torch.rand(batch, cfg.img_channels, cfg.resolution, cfg.resolution, device=device) * 2 - 1)
    real = real.contiguous(memory_format=memory_format)

    def labels(paired: bool = False):
        return fake_labels(num_classes, batch, paired=paired and bool(recipe.mode_seeking), device=device)

    def step():  # the loop in sagan.train._train, without data loading and bookkeeping
        for i in range(n_dis):
            shared = recipe.reuse_fakes and i == n_dis - 1
            z, y_fake = torch.randn(batch, cfg.z_dim, device=device), labels(paired=True)
            fake = generate(g, z, y_fake, rt, keep_graph=shared)
            d_step(d, opt_d, d_loss, real, labels(), fake, y_fake, rt)
        if not recipe.reuse_fakes:
            z, y_fake = torch.randn(batch, cfg.z_dim, device=device), labels(paired=True)
            fake = generate(g, z, y_fake, rt, keep_graph=True)
        regulariser = recipe.mode_seeking * mode_seeking(fake, z) if recipe.mode_seeking else None
        g_step(d, opt_g, g_loss, fake, y_fake, rt, regulariser=regulariser)
        update_ema(g_ema, g, recipe.ema_decay)

    return step, sum(p.numel() for p in g.parameters()), sum(p.numel() for p in d.parameters())


def peak_rates(repeats: int = 3, device: str = "cpu") -> dict[str, float]:
    """Median GFLOP/s of the reference kernels: 2048^3 matmul and sagan_32's largest 3x3 conv, bf16 and fp32."""
    import torch
    import torch.nn.functional as F

    def rate(fn, flops):
        fn()
        times = []
        for _ in range(repeats):
            sync(device)
            t0 = time.perf_counter()
            fn()
            sync(device)
            times.append(time.perf_counter() - t0)
        return flops / statistics.median(times) / 1e9

    out, n = {}, 2048
    for name, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
        a, b = torch.randn(n, n, dtype=dtype, device=device), torch.randn(n, n, dtype=dtype, device=device)
        out[name] = rate(lambda a=a, b=b: a @ b, 2 * n**3)
        x = torch.randn(32, 256, 32, 32, dtype=dtype, device=device).contiguous(memory_format=torch.channels_last)
        w = torch.randn(256, 256, 3, 3, dtype=dtype, device=device).contiguous(memory_format=torch.channels_last)
        out["conv_" + name] = rate(lambda x=x, w=w: F.conv2d(x, w, padding=1), 2 * 32 * 32 * 32 * 256 * 256 * 9)
    return out


def sync(device: str) -> None:
    """Wait for the GPU's queued work, so wall-clock times cover it (no-op on the CPU)."""
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def cuda_tensor_peak_bytes(fn) -> int:
    """Peak CUDA bytes allocated during one call of fn() above those allocated when it starts."""
    import torch

    fn()
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - base


def worker(spec: dict) -> None:
    """Build the configuration in `spec`, then answer commands on stdin with one JSON line each."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    torch.set_num_threads(spec["threads"])
    torch.manual_seed(0)
    out = sys.stdout
    sys.stdout = sys.stderr  # anything a library prints must not corrupt the protocol

    def reply(**kw):
        out.write(json.dumps(kw) + "\n")
        out.flush()

    if spec["model"] == "peak":
        reply(ready=True, torch=torch.__version__, cpu_capability=torch.backends.cpu.get_cpu_capability(),
              threads=torch.get_num_threads())
        for line in sys.stdin:
            if line.strip() != "time":
                return
            reply(**peak_rates(device=spec.get("device", "cpu")))
        return
    dtype = getattr(torch, spec["dtype"]) if spec["dtype"] else None
    memory_format = torch.channels_last if spec["channels_last"] else torch.contiguous_format
    device = spec.get("device", "cpu")
    args = (dtype, memory_format, spec["batch"], spec["n_dis"], spec["num_classes"], device)
    if spec["model"] == PEER:
        step, params_g, params_d = build_peer(*args)
    else:
        step, params_g, params_d = build_ours(spec["model"], *args)
    reply(ready=True, params_g=params_g, params_d=params_d, rss_baseline=rss_bytes())
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "flops":
            with FlopCounterMode(display=False) as counter:
                step()
            reply(flops=counter.get_total_flops())
        elif cmd == "warmup":
            step()
            reply(ok=True)
        elif cmd == "time":
            sync(device)
            c0, t0 = cpu_seconds(), time.perf_counter()
            step()
            sync(device)
            t1, c1 = time.perf_counter(), cpu_seconds()
            reply(seconds=t1 - t0, cpu=c1 - c0)
        elif cmd == "memory":  # last: the profiler's own memory must not count in the RSS high-water mark
            peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
            measure = cuda_tensor_peak_bytes if device.startswith("cuda") else tensor_peak_bytes
            reply(peak_rss=peak_rss, tensor_peak=measure(step))
            return


# ---------------------------------------------------------------------------------------------------------
# Parent side: start the workers, step them in lockstep with the peak measurement, print the table.
# ---------------------------------------------------------------------------------------------------------

def quartiles(values: list[float]) -> tuple[float, float, float]:
    if len(values) < 2:
        return values[0], values[0], values[0]
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q2, q3


def run(args) -> dict:
    models = [m for m in args.models.split(",") if m]
    if args.peer and PEER not in models:
        models.append(PEER)
    if PEER in models:
        import_mimicry_nets()  # fail early with the install command
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    if args.omp_wait_policy:
        env["OMP_WAIT_POLICY"] = args.omp_wait_policy.upper()
    load_start, t_start = os.getloadavg()[0], time.time()
    peak_worker = Worker(__file__, dict(model="peak", threads=args.threads, device=args.device), env)
    workers = []
    for m in models:
        for p in args.precisions.split(","):
            dtype, channels_last = PRECISIONS[p]
            workers.append(Worker(__file__, dict(model=m, precision=p, dtype=dtype, channels_last=channels_last,
                                       threads=args.threads, batch=args.batch_size, n_dis=args.n_dis,
                                       device=args.device,
                                       num_classes=(args.num_classes or 10) if m == PEER else args.num_classes),
                                  env))
    info = peak_worker.read()
    for w in workers:
        w.info.update(w.read())
    print(f"{len(workers)} workers built; counting FLOPs and warming up ({args.warmup} iterations each)",
          file=sys.stderr)
    for w in workers:  # the first warm-up iteration counts FLOPs
        w.info.update(w.ask("flops"))
        for _ in range(args.warmup - 1):
            w.ask("warmup")
    peaks: dict[str, list[float]] = {}
    for r in range(args.iters):
        for name, value in peak_worker.ask("time").items():
            peaks.setdefault(name, []).append(value)
        for w in workers[r % len(workers):] + workers[:r % len(workers)]:
            b0, t0 = busy_seconds(), time.perf_counter()
            res = w.ask("time")
            b1, t1 = busy_seconds(), time.perf_counter()
            w.times.append(res["seconds"])
            w.others.append(max(0.0, (b1 - b0 - res["cpu"]) / (t1 - t0)))
        print(f"round {r + 1}/{args.iters}: " + ", ".join(f"{w.spec['model']} {w.spec['precision']} "
              f"{w.times[-1]:.2f}s" for w in workers), file=sys.stderr)
    peak_worker.close()
    for w in workers:
        w.info.update(w.ask("memory"))
        w.close()
    peak = {k: statistics.median(v) for k, v in peaks.items()}
    rows = []
    for w in workers:
        q1, med, q3 = quartiles(w.times)
        gflops = w.info["flops"] / 1e9 / med
        rows.append(dict(
            model=w.spec["model"], precision=w.spec["precision"],
            memory_format="channels_last" if w.spec["channels_last"] else "contiguous",
            batch=args.batch_size, n_dis=args.n_dis, threads=args.threads, num_classes=w.spec["num_classes"],
            params_g=w.info["params_g"], params_d=w.info["params_d"],
            s_per_iter=med, s_q1=q1, s_q3=q3, n=len(w.times),
            images_per_s=args.batch_size * args.n_dis / med, gflop_per_iter=w.info["flops"] / 1e9, gflops=gflops,
            frac_bf16_peak=gflops / peak["bf16"], frac_fp32_peak=gflops / peak["fp32"],
            frac_conv_peak=gflops / peak["conv_" + ("bf16" if w.spec["dtype"] else "fp32")],
            tensor_peak_mib=w.info["tensor_peak"] / 2**20, rss_baseline_mib=w.info["rss_baseline"] / 2**20,
            peak_rss_growth_mib=(w.info["peak_rss"] - w.info["rss_baseline"]) / 2**20,
            other_cores=statistics.median(w.others),
        ))
    ratios = []
    peer = {r["precision"]: r["images_per_s"] for r in rows if r["model"] == PEER}
    for r in rows:
        if r["model"] == "sagan_32" and peer:  # the peer's widths (G 256, D 128 channels); not sagan_32_cpu
            ratios.append(dict(model=r["model"], precision=r["precision"],
                               vs_peer_fp32=r["images_per_s"] / peer["fp32"] if "fp32" in peer else None,
                               vs_peer_same=(r["images_per_s"] / peer[r["precision"]]
                                             if r["precision"] in peer else None)))
    return dict(
        machine=dict(cpu=cpu_name(), cores=os.cpu_count(), torch=info["torch"], python=platform.python_version(),
                     cpu_capability=info["cpu_capability"]),
        settings=dict(threads=args.threads, batch=args.batch_size, n_dis=args.n_dis, iters=args.iters,
                      device=args.device,
                      warmup=args.warmup, num_classes=args.num_classes,
                      omp_wait_policy=env.get("OMP_WAIT_POLICY", "unset")),
        load=dict(loadavg_start=load_start, loadavg_end=os.getloadavg()[0], minutes=(time.time() - t_start) / 60),
        peak_gflops={**peak, **{k + "_iqr": quartiles(v)[::2] for k, v in peaks.items()}},
        rows=rows, ratios=ratios,
    )


def print_report(res: dict) -> None:
    s, ld, pk, m = res["settings"], res["load"], res["peak_gflops"], res["machine"]

    def rate(key):
        return f"{pk[key]:.0f} [{pk[key + '_iqr'][0]:.0f}-{pk[key + '_iqr'][1]:.0f}]"

    print(f"\nOne training iteration = {s['n_dis']} D step(s) + 1 G step + EMA; batch {s['batch']}; "
          f"{s['threads']} torch thread(s), OMP_WAIT_POLICY {s['omp_wait_policy']}; CPU {m['cpu']} ("
          f"{m['cpu_capability']}); torch {m['torch']}")
    print(f"Times: median [IQR] of {s['iters']} lockstep rounds after {s['warmup']} warm-up iterations; load average "
          f"{ld['loadavg_start']:.2f} at start, {ld['loadavg_end']:.2f} at end ({ld['minutes']:.1f} min)")
    print(f"Peaks, GFLOP/s, median [IQR] of the rounds: 2048^3 matmul bf16 {rate('bf16')}, fp32 {rate('fp32')}; "
          f"3x3 conv 256->256ch on (32, 256, 32, 32) bf16 {rate('conv_bf16')}, fp32 {rate('conv_fp32')}")
    header = (f"{'model':<17} {'precision':<9} {'G/D params':>10} {'s/iter [IQR]':>19} {'img/s':>6} "
              f"{'GFLOP/it':>8} {'GFLOP/s':>7} {'%bf16pk':>7} {'%fp32pk':>7} {'%convpk':>7} {'tensor MiB':>10} "
              f"{'RSS+ MiB':>8} {'others':>6}")
    print(header)
    print("-" * len(header))
    for r in res["rows"]:
        params = f"{r['params_g'] / 1e6:.1f}/{r['params_d'] / 1e6:.1f}M"
        spread = f"{r['s_per_iter']:.2f} [{r['s_q1']:.2f}-{r['s_q3']:.2f}]"
        print(f"{r['model']:<17} {r['precision']:<9} {params:>10} {spread:>19} {r['images_per_s']:>6.1f} "
              f"{r['gflop_per_iter']:>8.0f} {r['gflops']:>7.0f} {100 * r['frac_bf16_peak']:>6.0f}% "
              f"{100 * r['frac_fp32_peak']:>6.0f}% {100 * r['frac_conv_peak']:>6.0f}% {r['tensor_peak_mib']:>10.0f} "
              f"{r['peak_rss_growth_mib']:>8.0f} {r['other_cores']:>6.2f}")
    print("img/s = batch * n_dis / median s/iter. GFLOP/it: FlopCounterMode over one iteration. %bf16pk, %fp32pk: "
          "achieved GFLOP/s over the matmul peaks;\n%convpk: over the 3x3 conv peak in the row's precision. tensor "
          "MiB: peak tensor bytes allocated in one iteration above those live at its start\n(profiler). RSS+ MiB: "
          "peak RSS growth over the worker's RSS after building networks and optimisers. others: cores other "
          "processes\nkept busy during the row's timed iterations (median).")
    for q in res["ratios"]:
        same = f"{q['vs_peer_same']:.2f}x" if q["vs_peer_same"] is not None else "n/a"
        fp32 = f"{q['vs_peer_fp32']:.2f}x" if q["vs_peer_fp32"] is not None else "n/a"
        print(f"{q['model']} {q['precision']}: {fp32} the peer's fp32 images/s, {same} the peer's "
              f"{q['precision']} images/s")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog=__doc__.split("\n\n", 2)[2],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="sagan_32", help="comma-separated registry names, each optionally NAME+fresh "
                   "(new fakes for the G step: reuse_fakes off) (default: sagan_32)")
    p.add_argument("--precisions", default="fp32,bf16", help=f"comma-separated, of {', '.join(PRECISIONS)}; "
                   "fp32 and bf16 use channels_last as `sagan train` does (default: fp32,bf16)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=0, help="torch threads per worker (default: the CPUs this "
                   "process may use); on a machine shared with other jobs, 1 is often faster")
    p.add_argument("--omp-wait-policy", choices=["passive", "active"], help="set OMP_WAIT_POLICY for the workers "
                   "(default: the environment's); passive stops idle OpenMP threads spinning, which matters when "
                   "other processes share the cores")
    p.add_argument("--iters", type=int, default=10, help="timed rounds (default: 10)")
    p.add_argument("--warmup", type=int, default=3, help="untimed iterations per worker; the first counts FLOPs "
                   "(default: 3)")
    p.add_argument("--n-dis", type=int, default=1, help="D steps per iteration (default: 1, SAGAN's)")
    p.add_argument("--num-classes", type=int, default=0, help="build our models conditional on this many classes "
                   "(default: 0; the peer always uses 10 unless this is set)")
    p.add_argument("--peer", action="store_true", help=f"add mimicry's SAGAN-32 ({PEER_PACKAGE}) side by side")
    p.add_argument("--json", type=Path, help="also write the results to this JSON file")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]; on a GPU, times include torch.cuda.synchronize() "
                   "and tensor MiB is torch.cuda.max_memory_allocated's peak above the step's start (default: cpu)")
    p.add_argument("--_worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args._worker:
        sys.path.insert(0, str(ROOT))
        worker(json.loads(args._worker))
        return
    if args.warmup < 1 or args.iters < 1:
        p.error("--warmup and --iters must be at least 1 (the first warm-up iteration counts FLOPs)")
    check_precisions(p, args.precisions, PRECISIONS)
    run_and_report(args, run, print_report)


if __name__ == "__main__":
    main()

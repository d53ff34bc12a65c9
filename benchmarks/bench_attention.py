"""Peak memory and time of one SAGAN attention block, forward + backward: fused path against explicit one.

    python benchmarks/bench_attention.py [--resolution 64] [--batch-size 16] [--channels 64,128,256]
        [--precisions fp32,bf16] [--threads N] [--iters 5] [--json OUT]

A plain script that prints a table; not a test. The block is sagan.nn.SelfAttention with gamma set to 1, its
input a channels_last (B, C, H, W) tensor that needs a gradient (as inside a network); one pass is
`forward` (fused scaled_dot_product_attention) or `forward_explicit` (softmax over the materialised
(B, N, N/4) matrix), then backward of the output's sum. bf16 is autocast, as `sagan train` runs it, on a bf16
input (inside such a network the block's input is a bf16 conv output); fp32 is fp32 throughout.

How each number is obtained:
- Each case (channels x precision x path) runs in a process of its own. The fused and explicit processes of
  the same channels and precision are started together and stepped in lockstep (one pass of each per round,
  the order alternating), so the two paths share the machine's load; the time is the median of --iters
  rounds after one untimed pass. "others": how many cores other processes kept busy meanwhile (median of the
  rounds; /proc/stat busy time minus the case's own CPU time).
- Peak memory, two ways. "tensor peak": the peak of tensor bytes allocated during one pass above those live
  before it (block weights and input), from the profiler's allocation events (torch.profiler,
  profile_memory=True) over the second of two passes after the timed ones. "RSS growth": the process's peak
  RSS (getrusage ru_maxrss, read before those profiled passes) minus its RSS after building the block and
  input; a high-water mark that also holds allocator slack and one-time costs (oneDNN kernels and caches,
  thread buffers).
  "(N, N/4) fp32" is the size of one fp32 (B, N, N/4) attention matrix, the O(N^2) term of the explicit path.
"""

from __future__ import annotations

import argparse
import json
import os
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

ROOT = Path(__file__).resolve().parents[1]


def worker(spec: dict) -> None:
    """Build the block and its input, then answer "time" and, last, "memory" with one JSON line each."""
    import contextlib

    import torch

    from sagan.nn import SelfAttention, attention_memory_bytes

    torch.set_num_threads(spec["threads"])
    torch.manual_seed(0)
    block = SelfAttention(spec["channels"]).to(memory_format=torch.channels_last)
    with torch.no_grad():
        block.gamma.fill_(1.0)
    r = spec["resolution"]
    # Inside a bf16-autocast network the block's input is a conv output, so bf16 itself.
    dtype = torch.bfloat16 if spec["precision"] == "bf16" else torch.float32
    x = torch.randn(spec["batch"], spec["channels"], r, r, dtype=dtype).contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)
    fused = spec["path"] == "fused"

    def autocast():
        if spec["precision"] == "bf16":
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def one_pass() -> None:
        with autocast():
            y = block(x) if fused else block.forward_explicit(x)[0]
        y.float().sum().backward()
        block.zero_grad(set_to_none=True)
        x.grad = None

    out, sys.stdout = sys.stdout, sys.stderr  # anything a library prints must not corrupt the protocol

    def reply(**kw):
        out.write(json.dumps(kw) + "\n")
        out.flush()

    reply(rss_baseline=rss_bytes(), matrix_bytes=attention_memory_bytes(spec["batch"], r, r))
    for line in sys.stdin:
        if line.strip() == "time":
            c0, t0 = cpu_seconds(), time.perf_counter()
            one_pass()
            reply(seconds=time.perf_counter() - t0, cpu=cpu_seconds() - c0)
        elif line.strip() == "memory":  # last: the profiler's own memory must not count in the RSS high-water mark
            peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
            reply(peak_rss=peak_rss, tensor_peak=tensor_peak_bytes(one_pass))
            return


def run(args) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    if args.omp_wait_policy:
        env["OMP_WAIT_POLICY"] = args.omp_wait_policy.upper()
    rows, load_start, t_start = [], os.getloadavg()[0], time.time()
    for precision in args.precisions.split(","):
        for channels in (int(c) for c in args.channels.split(",")):
            base = dict(resolution=args.resolution, batch=args.batch_size, channels=channels, precision=precision,
                        threads=args.threads)
            pair = [Worker(__file__, {**base, "path": path}, env) for path in ("fused", "explicit")]
            for w in pair:
                w.info = w.read()
            for w in pair:
                w.ask("time")  # warm-up
            for i in range(args.iters):
                for w in (pair if i % 2 == 0 else pair[::-1]):
                    b0, t0 = busy_seconds(), time.perf_counter()
                    res = w.ask("time")
                    b1, t1 = busy_seconds(), time.perf_counter()
                    w.times.append(res["seconds"])
                    w.others.append(max(0.0, (b1 - b0 - res["cpu"]) / (t1 - t0)))
            for w in pair:
                w.info.update(w.ask("memory"))
                w.close()
                w.proc.wait()
                q = statistics.quantiles(w.times, n=4, method="inclusive") if len(w.times) > 1 else [w.times[0]] * 3
                rows.append(dict(**w.spec, n=args.resolution**2, ms=1e3 * q[1], ms_q1=1e3 * q[0], ms_q3=1e3 * q[2],
                                 iters=len(w.times), tensor_peak_mib=w.info["tensor_peak"] / 2**20,
                                 peak_growth_mib=(w.info["peak_rss"] - w.info["rss_baseline"]) / 2**20,
                                 matrix_mib=w.info["matrix_bytes"] / 2**20,
                                 other_cores=statistics.median(w.others)))
            print(f"done: C={channels} {precision}", file=sys.stderr)
    settings = {k: v for k, v in vars(args).items() if k not in ("json", "_worker")}
    settings["omp_wait_policy"] = env.get("OMP_WAIT_POLICY", "unset")
    return dict(settings=settings, rows=rows,
                load=dict(loadavg_start=load_start, loadavg_end=os.getloadavg()[0],
                          minutes=(time.time() - t_start) / 60))


def print_report(res: dict) -> None:
    s, ld = res["settings"], res["load"]
    n = s["resolution"] ** 2
    print(f"\nSelfAttention forward + backward at {s['resolution']}x{s['resolution']} (N = {n}), batch "
          f"{s['batch_size']}, channels_last input; {s['threads']} torch thread(s), OMP_WAIT_POLICY "
          f"{s['omp_wait_policy']}; time: median [IQR] of {s['iters']} lockstep rounds; load average "
          f"{ld['loadavg_start']:.2f} at start, {ld['loadavg_end']:.2f} at end ({ld['minutes']:.1f} min)")
    header = (f"{'C':>4} {'precision':<9} {'path':<9} {'ms [IQR]':>20} {'tensor MiB':>10} {'RSS+ MiB':>8} "
              f"{'(N,N/4) fp32 MiB':>16} {'others':>6}  explicit/fused")
    print(header)
    print("-" * (len(header) + 30))
    rows = res["rows"]
    for r in rows:
        other = next(o for o in rows if o["channels"] == r["channels"] and o["precision"] == r["precision"]
                     and o["path"] != r["path"])
        ratio = ""
        if r["path"] == "explicit":
            ratio = (f"{r['ms'] / other['ms']:.2f}x time, "
                     f"{r['tensor_peak_mib'] / max(other['tensor_peak_mib'], 1e-9):.1f}x tensor memory")
        spread = f"{r['ms']:.0f} [{r['ms_q1']:.0f}-{r['ms_q3']:.0f}]"
        print(f"{r['channels']:>4} {r['precision']:<9} {r['path']:<9} {spread:>20} {r['tensor_peak_mib']:>10.0f} "
              f"{r['peak_growth_mib']:>8.0f} {r['matrix_mib']:>16.0f} {r['other_cores']:>6.2f}  {ratio}")
    print("tensor MiB: peak tensor bytes allocated in one pass above the block and input (profiler). RSS+ MiB: the "
          "case's process\npeak RSS minus its RSS after building the block and input. others: cores other processes "
          "kept busy during the timed passes.")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog=__doc__.split("\n\n", 2)[2],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--resolution", type=int, default=64, help="feature-map height and width (default: 64, N=4096)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--channels", default="64,128,256", help="comma-separated block widths (default: 64,128,256)")
    p.add_argument("--precisions", default="fp32,bf16", help="fp32 and/or bf16 (autocast) (default: fp32,bf16)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: the CPUs this process may use)")
    p.add_argument("--omp-wait-policy", choices=["passive", "active"],
                   help="set OMP_WAIT_POLICY for the workers (default: the environment's)")
    p.add_argument("--iters", type=int, default=5, help="timed rounds (default: 5)")
    p.add_argument("--json", type=Path, help="also write the results to this JSON file")
    p.add_argument("--_worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args._worker:
        sys.path.insert(0, str(ROOT))
        worker(json.loads(args._worker))
        return
    check_precisions(p, args.precisions, ("fp32", "bf16"))
    if args.iters < 1:
        p.error("--iters must be at least 1")
    run_and_report(args, run, print_report)


if __name__ == "__main__":
    main()

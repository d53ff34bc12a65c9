"""Measurement helpers shared by the benchmarks: process RSS, CPU time, profiler tensor peaks, machine load."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path


def rss_bytes() -> int:
    """Current resident set size of this process."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

def tensor_peak_bytes(fn) -> int:
    """Peak bytes of tensors allocated during one call of fn(), above those live when that call starts.

    fn runs twice under torch.profiler (profile_memory=True) and the second call is measured, from the CPU
    allocator's running total stamped on each allocation event: the profiler sees only the frees of blocks
    allocated while it runs, and the second call frees what the first one left (gradients, say).
    """
    import tempfile

    from torch.profiler import ProfilerActivity, profile, record_function

    saved = os.dup(2)  # the profiler's C++ side logs to stderr (no GPU, untracked older blocks): keep it quiet
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            fn()
            with record_function("measured call"):
                fn()
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "trace.json"
            prof.export_chrome_trace(str(path))
            events = json.loads(path.read_text())["traceEvents"]
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    marker = next(e for e in events if e.get("name") == "measured call" and e.get("ph") == "X")
    t0, t1 = marker["ts"], marker["ts"] + marker["dur"]
    memory = sorted((e for e in events if e.get("name") == "[memory]"), key=lambda e: e["ts"])
    before = [e["args"]["Total Allocated"] for e in memory if e["ts"] < t0]
    inside = [e for e in memory if t0 <= e["ts"] <= t1]
    if not inside:
        return 0
    start = before[-1] if before else inside[0]["args"]["Total Allocated"] - inside[0]["args"]["Bytes"]
    return max(e["args"]["Total Allocated"] for e in inside) - start

def cpu_seconds() -> float:
    """CPU time (user + system, all threads) this process has used."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime

def busy_seconds() -> float:
    """CPU-seconds the whole machine has spent busy since boot (all but idle and iowait)."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


class Worker:
    """One benchmark case in a process of its own (`python SCRIPT --_worker SPEC`), driven line by line:
    each command written to its stdin is answered by one JSON line on its stdout."""

    def __init__(self, script: str, spec: dict, env: dict) -> None:
        self.spec = spec
        self.proc = subprocess.Popen([sys.executable, script, "--_worker", json.dumps(spec)],
                                     cwd=Path(script).resolve().parents[1], env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.info: dict = {}
        self.times: list[float] = []
        self.others: list[float] = []

    def read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"worker {self.spec} died (its stderr is above)")
        return json.loads(line)

    def ask(self, cmd: str) -> dict:
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()
        return self.read()

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


def check_precisions(parser, spec: str, allowed) -> None:
    """parser.error for any comma-separated precision in `spec` that is not in `allowed`."""
    for prec in spec.split(","):
        if prec not in allowed:
            parser.error(f"unknown precision {prec!r}; choose from {', '.join(allowed)}")


def run_and_report(args, run, print_report) -> None:
    """Default --threads to the CPUs this process may use, run, print the table, and write --json if asked."""
    args.threads = args.threads or len(os.sched_getaffinity(0))
    res = run(args)
    print_report(res)
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))
        print(f"wrote {args.json}")

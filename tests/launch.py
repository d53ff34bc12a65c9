"""Launching `sagan` under torchrun from tests: free ports, process groups that are always cleaned up."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(*sagan_args: str, nproc: int = 1, nnodes: int = 1, port: int | None = None, run_id: str = "test",
             max_restarts: int = 0) -> list[str]:
    """The command line of one torchrun agent running `python -m sagan ARGS` (this checkout's sagan: cwd is ROOT).

    nnodes > 1: a c10d rendezvous on 127.0.0.1:port that `nnodes` agents join, as on several machines.
    """
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc),
           "--max-restarts", str(max_restarts), "--monitor-interval", "0.2"]
    if nnodes == 1 and port is None:
        cmd += ["--standalone"]
    else:
        cmd += ["--nnodes", str(nnodes), "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}",
                "--rdzv-id", run_id, "--local-addr", "127.0.0.1", "--rdzv-conf", "join_timeout=40"]
    return [*cmd, "-m", "sagan", *sagan_args]


def start(cmd: list[str], log: Path, env: dict | None = None) -> subprocess.Popen:
    """Start `cmd` in a session of its own (so its whole process tree can be killed), output to `log`."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), **(env or {})}
    with open(log, "w") as out:
        return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def children(pid: int) -> list[int]:
    """The direct children of a process (torchrun's workers), oldest first."""
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return sorted(int(p) for p in found)


def descendants(pid: int) -> list[int]:
    """Every process below `pid`. torchrun starts each worker in a session of its own, so killing the agent's
    process group does not reach them."""
    found = children(pid)
    return found + [d for c in found for d in descendants(c)]


def wait_for(condition, timeout: float, what: str, procs: list[subprocess.Popen] = ()) -> None:
    """Poll `condition()` until true; AssertionError after `timeout` s or when a process has exited."""
    deadline = time.time() + timeout
    while not condition():
        if time.time() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        if any(p.poll() is not None for p in procs):
            raise AssertionError(f"a process exited while waiting for {what}")
        time.sleep(0.02)


@contextlib.contextmanager
def launched(*cmds: list[str], logs: list[Path], env: dict | None = None):
    """Start each command; on leaving, kill the process group of any that still runs (on failure too)."""
    procs = []
    try:
        for cmd, log in zip(cmds, logs):
            procs.append(start(cmd, log, env))
        yield procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                for pid in [proc.pid, *descendants(proc.pid)]:  # the agent first: it cannot restart them
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                proc.wait(timeout=10)

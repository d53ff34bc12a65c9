"""Running a study's jobs one at a time or in a process pool, and stopping them cleanly on SIGINT/SIGTERM.

A signal stops the study the way it stops `sagan train`: the run in training finishes its step, saves a
checkpoint and stops (train's own handler); a run being scored drops that score, which resuming computes again
from the checkpoint already saved. Then `Interrupted` reaches the caller, which writes the tables of what
finished and exits 128 + the signal. With a pool, every worker is told (a terminal's Ctrl-C reaches them all
anyway; `kill PID` reaches only the parent), jobs not started are cancelled, and the pool is waited for, so no
worker dies half-way through a write. Workers never send `Interrupted` itself back: its arguments (the signal's
name) do not rebuild it, which used to break the pool.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from functools import partial

from sagan.train import Interrupted

SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def _handlers(handler: Callable) -> Iterator[None]:
    """Install `handler` for SIGINT and SIGTERM (main thread only, where Python delivers signals); restore after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.signal(s, handler) for s in SIGNALS}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def run_serial(jobs: Sequence, run: Callable, done: Callable) -> None:
    """run(job) for each job in turn, done(i, job, result) after each; a signal raises `Interrupted`."""

    def on_signal(signum, frame):
        raise Interrupted(signum)

    with _handlers(on_signal):
        for i, job in enumerate(jobs, 1):
            done(i, job, run(job))


# ---- in a worker process -------------------------------------------------------------------------------------
_worker = {"signal": None, "busy": False}


def _on_signal_in_worker(signum, frame) -> None:
    first = _worker["signal"] is None
    _worker["signal"] = signum
    if first and _worker["busy"]:
        raise Interrupted(signum)  # outside training (scoring, writing a record): stop now


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    for s in SIGNALS:
        signal.signal(s, _on_signal_in_worker)


def _call_in_worker(run: Callable, job) -> dict:
    """run(job) in a worker: its result, or {"interrupted": signum} when a signal stopped it (or came first)."""
    if _worker["signal"] is not None:
        return {"interrupted": _worker["signal"]}
    try:
        _worker["busy"] = True
        return run(job)
    except (Interrupted, KeyboardInterrupt) as exc:
        # during training, train's own handler took the signal: the exception carries it
        signum = exc.exit_code - 128 if isinstance(exc, Interrupted) else signal.SIGINT
        _worker["signal"] = _worker["signal"] or signum  # later jobs of this worker do not start
        return {"interrupted": int(_worker["signal"])}
    finally:
        _worker["busy"] = False


# ---- in the parent -------------------------------------------------------------------------------------------
def _tell_workers(signum: int) -> None:
    for child in multiprocessing.active_children():
        try:
            os.kill(child.pid, signum)
        except (ProcessLookupError, TypeError):
            pass  # ended meanwhile (or not started: no pid yet)


def run_parallel(jobs: Sequence, run: Callable, done: Callable, workers: int, threads: int) -> None:
    """run(job) in `workers` spawned processes of `threads` torch threads each (`run` must be picklable: a
    module-level function or a partial of one); done(i, job, result) as each finishes. A signal, or an error in a
    job, stops every worker cleanly before it is raised here."""
    stop = {"signal": None}

    def on_signal(signum, frame):
        first = stop["signal"] is None
        stop["signal"] = signum
        _tell_workers(signum)
        if first:
            raise Interrupted(signum)

    with _handlers(on_signal), ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                                   initializer=_init_worker, initargs=(threads,)) as pool:
        futures: dict[Future, object] = {pool.submit(_call_in_worker, run, job): job for job in jobs}
        try:
            for i, future in enumerate(as_completed(futures), 1):
                result = future.result()
                if "interrupted" in result:  # a worker was signalled on its own: the study stops too
                    raise Interrupted(result["interrupted"])
                done(i, futures[future], result)
        except BaseException:
            for future in futures:
                future.cancel()
            if stop["signal"] is None:
                stop["signal"] = signal.SIGINT
                _tell_workers(signal.SIGINT)  # the running jobs save their checkpoint and stop
            raise  # after the pool's exit has waited for them


def threads_per_job(parallel: int) -> int:
    """The torch threads of each of `parallel` jobs at once: cores/parallel; 0 (the job's own setting) alone."""
    return max(1, (os.cpu_count() or 1) // parallel) if parallel > 1 else 0


def run_jobs(jobs: Sequence, run: Callable, done: Callable, parallel: int) -> None:
    """run(threads, job) for each job, done(i, job, result) after each: in this process (threads 0: the job's own
    setting) when `parallel` is 1, else in `parallel` worker processes of cores/parallel threads each."""
    threads = threads_per_job(parallel)
    if parallel == 1:
        run_serial(jobs, partial(run, threads), done)
    else:
        run_parallel(jobs, partial(run, threads), done, parallel, threads)

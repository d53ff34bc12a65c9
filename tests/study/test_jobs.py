"""Stopping a study's jobs on a signal: the one in progress stops, the rest never start, handlers come back."""

import os
import signal

import pytest

from sagan.study.jobs import run_serial
from sagan.train import Interrupted


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_while_scoring_stops_a_serial_study_with_that_signal(signum):
    """Outside training (scoring a run, writing its record) a signal used to be a KeyboardInterrupt, or a kill
    for SIGTERM, and no table was written; now it is `Interrupted`, which the command answers with the tables."""
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    finished = []

    def job(name: str) -> str:
        if name == "b":
            os.kill(os.getpid(), signum)  # arrives while this job is being scored
            for _ in range(10**6):  # Python runs the handler between these steps
                pass
            pytest.fail("the signal did not stop the job")
        return name

    with pytest.raises(Interrupted) as stopped:
        run_serial(["a", "b", "c"], job, lambda i, name, result: finished.append(result))
    assert stopped.value.exit_code == 128 + signum
    assert finished == ["a"]  # "c" never started
    assert {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)} == before

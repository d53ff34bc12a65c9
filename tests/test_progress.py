"""The plain progress line (logs, CI): the step limit and the minutes budget as the run has them."""

from sagan.config import NO_STEP_LIMIT
from sagan.training.progress import Progress

LOG = {"loss_d": 1.0, "loss_g": 2.0, "images_per_sec": 50.0}


def _line(capsys, progress: Progress) -> str:
    progress.update(50, LOG)
    return capsys.readouterr().err.strip()


def test_a_step_limit_is_shown_as_the_total(capsys):
    line = _line(capsys, Progress(800))
    assert line.startswith("step 50/800 | D 1.000 G 2.000 | 50 img/s (last window) | ")
    assert line.endswith(" min") and "/" not in line.split("|")[-1]


def test_a_run_only_the_clock_stops_shows_no_step_total_but_its_minutes(capsys):
    line = _line(capsys, Progress(NO_STEP_LIMIT, minutes=3.0))
    assert line.startswith("step 50 | ")
    assert str(NO_STEP_LIMIT) not in line
    assert line.endswith("/3 min")


def test_disabled_progress_prints_nothing(capsys):
    assert _line(capsys, Progress(800, enabled=False)) == ""


def test_a_terminal_bar_has_no_total_when_only_the_clock_stops_the_run(monkeypatch):
    monkeypatch.setattr("sys.stderr.isatty", lambda: True)
    progress = Progress(NO_STEP_LIMIT, minutes=3.0)
    try:
        assert progress.bar.total is None  # a counter, not a bar stuck at 0% of a billion steps
    finally:
        progress.close()

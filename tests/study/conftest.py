"""The study tests' shared parts: a real tiny search ranked by a deterministic stand-in score."""

from pathlib import Path

import pytest
import yaml

from sagan.checkpoint import load_generator
from sagan.cli import main
from sagan.study import runner, search


class Killed(BaseException):
    """What a SIGKILL leaves: the process stops where it is (not an exception the code could handle)."""


def _fingerprint(checkpoint: Path) -> float:
    g_ema, _ = load_generator(checkpoint, ema=True)
    return float(sum(p.detach().double().sum() for p in g_ema.parameters()))


def stand_in_scores(spec, cfg, checkpoint, state):
    """Lower is better; at 2 steps lr_d 2.6e-4 is best, from 4 steps on 2.0e-4; the final seeds add a little."""
    target = 2.6e-4 if state["step"] <= 2 else 2.0e-4
    fd = abs(cfg.lr_d - target) * 1e4 + 0.01 * cfg.seed
    return {"scores": {"fd_fake": fd, "precision_fake": 1 - fd / 10, "g_sum": _fingerprint(checkpoint)},
            "provenance": {"step": state["step"], "checkpoint": str(checkpoint)}}


@pytest.fixture
def stand_in(monkeypatch):
    monkeypatch.setattr(search, "score_checkpoint", stand_in_scores)
    monkeypatch.setattr(runner, "_evaluate", stand_in_scores)


def tiny_search_spec(data) -> dict:
    return {
        "name": "tiny-search", "seeds": [1, 2, 3],
        "base": {"data": str(data), "model": "sagan_32", "model_args": {"g_ch": 8, "d_ch": 8}, "batch_size": 8,
                 "threads": 1, "precision": "fp32", "deterministic": True, "channels_last": False,
                 "standing_samples": 32, "log_every": 2, "sample_every": 100, "checkpoint_every": 1,
                 "keep_checkpoints": 10},
        "eval": {"metrics": ["fd", "pr"], "num": 16, "fractions": [1.0]},
        "search": {"grid": {"lr_d": [1.0e-4, 2.0e-4, 3.0e-4, 5.0e-4]}, "metric": "fd_fake", "first_steps": 2,
                   "eta": 2, "rungs": 2, "finalists": 1},
    }


@pytest.fixture(scope="module")
def finished(tiny_folder, tmp_path_factory):
    """One uninterrupted search: 4 configurations x 2 steps, the best 2 to 4 steps, the best 1 and the base over
    3 seeds at 4 steps."""
    tmp = tmp_path_factory.mktemp("search")
    path = tmp / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_search_spec(tiny_folder)))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(search, "score_checkpoint", stand_in_scores)
        mp.setattr(runner, "_evaluate", stand_in_scores)
        assert main(["study", str(path), "--out", str(tmp / "out")]) == 0
    return path, tmp / "out"




def fresh_checkout(tmp_path, spec_text: str, record: Path, monkeypatch) -> Path:
    """A new checkout holding only the spec (s.yaml) and a copy of the record (rec), made the working directory;
    timing a configuration there fails the test (the record's seconds must be used)."""
    import shutil

    from sagan.study import cost

    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / "s.yaml").write_text(spec_text)
    shutil.copytree(record, fresh / "rec")
    monkeypatch.chdir(fresh)
    monkeypatch.setattr(cost, "seconds_per_step", lambda cfg: pytest.fail("measured again"))
    return fresh

"""Extra loss terms (sagan/training/terms.py): added to D's and G's losses, logged, checkpointed and resumed."""

import pytest
import torch

import sagan.train as loop
from sagan.checkpoint import list_checkpoints, load_checkpoint
from sagan.config import TrainConfig, apply_overrides
from sagan.errors import SaganError
from sagan.stats import read_metrics
from sagan.training.terms import LossTerm, LossTerms
from tests.conftest import tiny_train_args


class MovingAnchor(LossTerm):
    """A LeCam-like term: D(real) is pulled towards a moving mean of itself, which a resume must restore."""

    name = "anchor"

    def __init__(self, weight=0.5, poison_at=None):
        self.weight, self.poison_at = weight, poison_at
        self.mean, self.d_calls, self.g_calls = 0.0, 0, 0

    def d_loss(self, inputs):
        self.d_calls += 1
        term = self.weight * (inputs.real_logits.mean() - self.mean) ** 2
        self.mean = 0.9 * self.mean + 0.1 * float(inputs.real_logits.detach().mean())
        return term * float("nan") if inputs.step == self.poison_at else term

    def g_loss(self, inputs):
        self.g_calls += 1
        assert inputs.fake.requires_grad and inputs.z.shape[0] == inputs.fake.shape[0] == inputs.real.shape[0]
        return None  # a D-only term

    def stats(self):
        return {"anchor/mean": self.mean}

    def state_dict(self):
        return {"mean": self.mean, "d_calls": self.d_calls, "g_calls": self.g_calls}

    def load_state_dict(self, state):
        self.mean, self.d_calls, self.g_calls = state["mean"], state["d_calls"], state["g_calls"]


def _train(monkeypatch, folder, out, steps, term_args=None, **extra):
    args = tiny_train_args(folder, out, steps, checkpoint_every=100, log_every=1, standing_samples=0, **extra)
    terms = LossTerms([MovingAnchor(**(term_args or {}))]) if term_args is not None else LossTerms([])
    monkeypatch.setattr(loop, "loss_terms", lambda cfg, model: terms)
    return loop.train(apply_overrides(TrainConfig(), args))


def test_a_stateful_term_trains_logs_and_resumes_exactly(tiny_folder, tmp_path, monkeypatch):
    _train(monkeypatch, tiny_folder, tmp_path / "plain", 4, n_dis=2)
    _train(monkeypatch, tiny_folder, tmp_path / "straight", 4, {}, n_dis=2)
    _train(monkeypatch, tiny_folder, tmp_path / "split", 2, {}, n_dis=2)
    _train(monkeypatch, tiny_folder, tmp_path / "split", 4, {}, n_dis=2)
    plain, a, b = (load_checkpoint(list_checkpoints(tmp_path / run)[-1]) for run in ("plain", "straight", "split"))
    assert "loss_terms" not in plain, "a run without stateful terms writes no term state"
    assert a["loss_terms"] == b["loss_terms"]
    assert a["loss_terms"]["anchor"]["d_calls"] == 8 and a["loss_terms"]["anchor"]["g_calls"] == 4
    for key in a["discriminator"]:
        assert torch.equal(a["discriminator"][key], b["discriminator"][key]), key
    assert any(not torch.equal(a["discriminator"][k], plain["discriminator"][k]) for k in a["discriminator"]), \
        "the term's loss reaches D's update"
    records = [r for r in read_metrics(tmp_path / "straight") if r["kind"] == "train"]
    assert [r["anchor/mean"] for r in records][-1] == pytest.approx(a["loss_terms"]["anchor"]["mean"])


def test_a_non_finite_term_stops_the_run_like_a_non_finite_loss(tiny_folder, tmp_path, monkeypatch):
    with pytest.raises(SaganError, match="discriminator loss became NaN or infinite at step 3"):
        _train(monkeypatch, tiny_folder, tmp_path / "run", 5, {"poison_at": 2})

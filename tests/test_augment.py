"""DiffAugment (sagan/augment.py): the operations, the adaptive probability, and their place in the loop."""

import io
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import sagan.augment as aug
import sagan.train as loop
from sagan.augment import OPS, POLICIES, Augment, diff_augment, parse_policy
from sagan.checkpoint import list_checkpoints, load_checkpoint
from sagan.config import TrainConfig, apply_overrides
from sagan.errors import ConfigError
from sagan.report import build_report
from sagan.stats import read_metrics
from sagan.train import train
from tests.conftest import tiny_train_args

ROOT = Path(__file__).resolve().parents[1]
ALL = ",".join(POLICIES)
CASES = [*POLICIES, ALL]


def _images(n=16, c=3, size=16, seed=0):
    """Random images in [-1, 1], the extremes included."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, c, size, size, generator=g) * 2 - 1
    x[:, :, 0, 0], x[:, :, 0, 1] = -1.0, 1.0
    return x


def _apply(policy, x, p=1.0):
    return OPS[policy](x, p) if policy in OPS else diff_augment(x, policy, p)


@pytest.mark.parametrize("policy", CASES)
def test_gradients_reach_the_input_and_are_finite(policy):
    torch.manual_seed(0)
    x = _images().requires_grad_(True)
    weights = torch.randn(x.shape)
    (_apply(policy, x) * weights).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    moved = (x.grad != 0).flatten(1).any(1)
    assert moved.all(), "every image passes some gradient back"


@pytest.mark.parametrize("policy", CASES)
def test_images_stay_in_range(policy):
    torch.manual_seed(0)
    x = _images(n=64)
    x[: 32] = x[: 32].sign()  # saturated images: brightness and contrast push them furthest out
    y = _apply(policy, x)
    assert y.min() >= -1 and y.max() <= 1
    assert not torch.equal(y, x)


@pytest.mark.parametrize("policy", CASES)
def test_identity_at_p_zero(policy):
    x = _images()
    torch.manual_seed(0)
    assert torch.equal(_apply(policy, x, 0.0), x)
    assert torch.equal(diff_augment(x, policy, 0.0), x)
    state = torch.get_rng_state()
    diff_augment(x, policy, 0.0)
    assert torch.equal(torch.get_rng_state(), state), "p = 0 draws no random numbers: runs match un-augmented ones"
    assert torch.equal(diff_augment(x, "", 1.0), x)


@pytest.mark.parametrize("p", [0.25, 0.5, 0.8])
@pytest.mark.parametrize("policy", POLICIES)
def test_each_image_is_augmented_with_probability_p(policy, p):
    n, size = 2000, 16
    x = _images(n=n, size=size)
    if policy == "cutout":
        x = x.abs() + 0.01  # no zeros already there: every cut-out square changes its image
    torch.manual_seed(1)
    changed = (_apply(policy, x, p) != x).flatten(1).any(1).float().mean().item()
    expected = p
    if policy == "translation":  # a shift of (0, 0) leaves the image as it is
        k = int(size * 0.125 + 0.5)
        expected = p * (1 - 1 / (2 * k + 1) ** 2)
    assert abs(changed - expected) < 4 * (expected * (1 - expected) / n) ** 0.5, (changed, expected)


@pytest.mark.parametrize("channels_last", [False, True], ids=["contiguous", "channels_last"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_shape_dtype_and_memory_format_are_kept(dtype, channels_last):
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = _images(n=8, size=32).to(dtype).contiguous(memory_format=fmt)
    torch.manual_seed(0)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
        y = diff_augment(x, ALL, 1.0)
    assert y.shape == x.shape and y.dtype == dtype
    assert y.is_contiguous(memory_format=fmt)
    assert torch.isfinite(y.float()).all() and not torch.equal(y, x)


def test_policy_strings():
    assert parse_policy("translation, color") == ("translation", "color")
    assert parse_policy("") == () and parse_policy(None) == ()
    for bad, needle in [("flip", "'flip'"), ("translation,colour", "did you mean: color"),
                        ("color,color", "twice")]:
        with pytest.raises(ConfigError, match=needle) as info:
            parse_policy(bad)
        assert "\n" not in str(info.value)
    assert "translation, cutout, color" in str(pytest.raises(ConfigError, parse_policy, "flip").value)


def test_config_keys():
    cfg = apply_overrides(TrainConfig(), {"augment": "translation,cutout", "augment_p": "auto"})
    assert cfg.augment == "translation,cutout" and cfg.augment_p == "auto"
    assert TrainConfig().augment == "" and TrainConfig().augment_p == 1.0
    again = apply_overrides(cfg, {"augment_p": "0.3"})  # a number after "auto" is still a number
    assert again.augment_p == 0.3
    assert apply_overrides(TrainConfig(), {"augment_p": "AUTO"}).augment_p == "auto"
    for value, needle in [("1.5", r"augment_p must be in \[0, 1\] or auto"),
                          ("often", "augment_p expects a float or auto"), ("-0.1", "augment_p must be in")]:
        with pytest.raises(ConfigError, match=needle):
            apply_overrides(TrainConfig(), {"augment_p": value})
    with pytest.raises(ConfigError, match="ada_kimg must be positive"):
        apply_overrides(TrainConfig(), {"ada_kimg": "0"})
    with pytest.raises(ConfigError, match="unknown augment policy 'flip'"):
        TrainConfig(augment="flip").validate()


def test_bad_policy_through_the_cli_is_one_line_and_exit_2(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "sagan", "train", "--set", "augment=flip", "--out",
                           str(tmp_path / "run")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "'flip'" in lines[0] and all(name in lines[0] for name in POLICIES)
    assert not (tmp_path / "run").exists(), "rejected before anything runs"


def test_ada_steers_p_by_the_sign_of_d_on_reals():
    batch, kimg = 32, 0.64  # one adjustment (4 D steps, 128 images) moves p by 128 / 640 = 0.2
    ada = Augment("translation", "auto", kimg)
    assert ada.p == 0.0 and ada.stats() == {"augment_p": 0.0}
    confident, unsure = torch.ones(batch), torch.tensor([1.0, -1.0]).repeat(batch // 2)
    for _ in range(3):
        ada.observe(confident)
    assert ada.p == 0.0, "p moves only every ADA_INTERVAL D steps"
    ada.observe(confident)
    assert ada.p == pytest.approx(0.2) and ada.stats()["ada_rt"] == 1.0
    for _ in range(4 * 10):
        ada.observe(confident)
    assert ada.p == 1.0, "clamped at 1"
    for _ in range(4):
        ada.observe(unsure)  # r_t = 0 < 0.6: D is not overfitting, less augmentation
    assert ada.p == pytest.approx(0.8) and ada.rt == 0.0
    # from 0 to 1 in kimg thousand images
    slow = Augment("color", "auto", 20.0)
    for _ in range(20_000 // batch):
        slow.observe(confident)
    assert slow.p == pytest.approx(1.0, abs=4 * batch / 20_000)
    fixed = Augment("color", 0.5)
    fixed.observe(confident)
    assert fixed.p == 0.5 and fixed.stats() == {"augment_p": 0.5}


def _through_torch_save(state):
    """What a checkpoint gives back: plain values only (torch.save with weights_only loading)."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def test_ada_state_round_trips_mid_interval():
    a = Augment("color", "auto", 0.1)
    signs = [torch.ones(4)] * 5 + [torch.tensor([1.0, -1.0, 1.0, 1.0])] + [torch.ones(4)] * 5
    for s in signs[:6]:  # one adjustment (p 0.16), then two steps into the next interval
        a.observe(s)
    b = Augment("color", "auto", 0.1)
    b.load_state_dict(_through_torch_save(a.state_dict()))
    assert b.state_dict() == a.state_dict()
    for s in signs[6:]:
        a.observe(s)
        b.observe(s)
    assert a.state_dict() == b.state_dict() and a.p == pytest.approx(0.32) and a.rt == 0.875
    fixed = Augment("color", 0.3)
    fixed.load_state_dict(a.state_dict())
    assert fixed.p == 0.3, "a fixed p comes from the config, not the checkpoint"


def test_reals_and_fakes_are_augmented_in_both_steps(tiny_folder, tmp_path, monkeypatch):
    seen = []

    class Spy(Augment):
        def __call__(self, x):
            seen.append((x.shape[0], x.requires_grad))
            return super().__call__(x)

    monkeypatch.setattr(loop, "Augment", Spy)
    train(apply_overrides(TrainConfig(), tiny_train_args(tiny_folder, tmp_path / "run", 2, augment=ALL,
                                                         standing_samples=0)))
    # per step: D sees reals and fakes as one batch of 16 (no graph), G's step its 8 fakes (with G's graph)
    assert seen == [(16, False), (8, True)] * 2


def test_adaptive_run_resumes_exactly_and_logs_p(tiny_folder, tmp_path, monkeypatch):
    """9 steps straight == 6 steps + resume + 3 (the split falls inside an ADA interval), with p forced up."""
    monkeypatch.setattr(aug, "ADA_TARGET", -1.0)  # every r_t is above it: p rises at every adjustment
    args = dict(augment=ALL, augment_p="auto", ada_kimg=0.1, checkpoint_every=100, log_every=1)
    train(apply_overrides(TrainConfig(), tiny_train_args(tiny_folder, tmp_path / "straight", 9, **args)))
    train(apply_overrides(TrainConfig(), tiny_train_args(tiny_folder, tmp_path / "split", 6, **args)))
    assert load_checkpoint(list_checkpoints(tmp_path / "split")[-1])["augment"]["steps"] == 2
    train(apply_overrides(TrainConfig(), tiny_train_args(tiny_folder, tmp_path / "split", 9, **args)))
    a = load_checkpoint(list_checkpoints(tmp_path / "straight")[-1])
    b = load_checkpoint(list_checkpoints(tmp_path / "split")[-1])
    assert a["step"] == b["step"] == 9
    assert a["augment"] == b["augment"] and a["augment"]["p"] == pytest.approx(0.64)  # 2 x (4 x 8 images / 100)
    for part in ("generator", "discriminator", "generator_ema"):
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), f"{part}.{key} differs"
    records = [r for r in read_metrics(tmp_path / "straight") if r["kind"] == "train"]
    assert [r["augment_p"] for r in records] == pytest.approx([0.0] * 3 + [0.32] * 4 + [0.64] * 2)
    assert "ada_rt" not in records[2] and records[3]["ada_rt"] >= -1
    page = build_report(tmp_path / "straight", attention=False).read_text()
    assert re.search(r'<img[^>]+alt="Augmentation: p', page), "the report draws p over training"

"""Health signals (gains, sigmas, diversity) and the collapse alarm."""

import random

import pytest
import torch

from sagan import create_model
from sagan.training.health import CollapseAlarm, attention_gains, health_stats, sample_diversity, sigma_summary


def _healthy(rng: random.Random) -> dict:
    """A reading of a training run going well: diversity near 1, D ahead of G by a hinge-sized gap."""
    return {"diversity": 1.0 + rng.uniform(-0.15, 0.15), "d_real": 1.0 + rng.uniform(-0.5, 0.5),
            "d_fake": -0.8 + rng.uniform(-0.5, 0.5)}


def _feed(alarm: CollapseAlarm, readings: list[dict], start: int = 0) -> list[tuple[int, str]]:
    events = []
    for i, log in enumerate(readings, start):
        message = alarm.update(i, log)
        if message:
            events.append((i, message))
    return events


def test_healthy_run_raises_nothing():
    rng = random.Random(0)
    alarm = CollapseAlarm()
    assert _feed(alarm, [_healthy(rng) for _ in range(500)]) == []
    assert alarm.active is None


def test_fires_on_a_diversity_drop():
    rng = random.Random(1)
    alarm = CollapseAlarm(ratio=0.25, warmup=5)
    readings = [_healthy(rng) for _ in range(20)]
    readings += [dict(_healthy(rng), diversity=0.1) for _ in range(5)]  # below 0.25 x the early ~1.0
    events = _feed(alarm, readings)
    assert len(events) == 1
    step, message = events[0]
    assert step == 20
    assert "mode collapse" in message and "0.100" in message
    assert alarm.active == message


def test_a_moderate_decline_is_not_collapse():
    alarm = CollapseAlarm(ratio=0.25, warmup=5)
    readings = [{"diversity": 1.0}] * 5 + [{"diversity": 1.0 - 0.005 * i} for i in range(140)]  # down to 0.3
    assert _feed(alarm, readings) == []


def test_fires_on_sustained_separation_only():
    alarm = CollapseAlarm(margin=4.0, patience=10)
    rng = random.Random(2)
    separated = {"diversity": 1.0, "d_real": 3.0, "d_fake": -3.0}  # gap 6 > 4
    # a stretch shorter than `patience`, then a normal reading: the count starts again, no alarm
    readings = [_healthy(rng) for _ in range(10)] + [separated] * 9 + [_healthy(rng)]
    assert _feed(alarm, readings) == []
    events = _feed(alarm, [separated] * 15, start=len(readings))
    assert len(events) == 1
    step, message = events[0]
    assert step == len(readings) + 9  # the 10th separated reading in a row
    assert "separates real from fake" in message and "6.00" in message


def test_once_per_episode_and_again_after_recovery():
    rng = random.Random(3)
    alarm = CollapseAlarm(ratio=0.25, warmup=5, cooldown=3)
    low = {"diversity": 0.1, "d_real": 1.0, "d_fake": -1.0}
    readings = [_healthy(rng) for _ in range(10)]
    readings += [low] * 30  # one long episode
    readings += [low, _healthy(rng), low, _healthy(rng), _healthy(rng), low]  # flicker: never 3 clear in a row
    assert len(_feed(alarm, readings)) == 1
    assert alarm.active is not None
    recovered = [_healthy(rng) for _ in range(3)]
    assert _feed(alarm, recovered) == []
    assert alarm.active is None  # healthy for `cooldown` readings: the episode is over
    assert len(_feed(alarm, [low] * 5)) == 1  # a new episode is reported


def test_collapse_then_separation_are_two_events():
    rng = random.Random(4)
    alarm = CollapseAlarm(ratio=0.25, warmup=5, patience=3)
    readings = [_healthy(rng) for _ in range(5)]
    readings += [{"diversity": 0.1, "d_real": 3.0, "d_fake": -3.0}] * 5  # both: collapse is named first
    readings += [{"diversity": 1.0, "d_real": 3.0, "d_fake": -3.0}] * 5  # diversity back, D still wins
    events = _feed(alarm, readings)
    assert [("collapse" in m, "separates" in m) for _, m in events] == [(True, False), (False, True)]


def test_missing_signals_do_not_fire():
    alarm = CollapseAlarm()
    assert _feed(alarm, [{}] * 50 + [{"loss_d": 1.0}] * 50) == []


@pytest.fixture(scope="module")
def gan():
    torch.manual_seed(0)
    return create_model("sagan_32", g_ch=8, d_ch=8, img_channels=1, num_classes=10)


def test_health_stats_name_every_attention_layer_and_sigma(gan):
    stats = health_stats(gan.generator, gan.discriminator)
    assert attention_gains(gan.generator, "G") == {"gamma/G.16": 0.0}  # gamma starts at 0
    assert stats["gamma/D.16"] == 0.0
    for net in ("G", "D"):
        assert 0 < stats[f"sigma/{net}.min"] <= stats[f"sigma/{net}.mean"] <= stats[f"sigma/{net}.max"]
    assert sigma_summary(torch.nn.Linear(2, 2), "X") == {}  # no SN layers: nothing to report


def test_sample_diversity(gan):
    g = gan.generator
    z = torch.randn(8, g.z_dim, generator=torch.Generator().manual_seed(0))
    y = torch.arange(8)
    spread = sample_diversity(g, z, y, torch.device("cpu"))
    same = sample_diversity(g, z[:1].expand(8, -1), y[:1].expand(8), torch.device("cpu"))
    assert spread > 0.01
    assert same == pytest.approx(0.0, abs=1e-5)  # one image eight times: collapse
    assert g.training  # the generator's mode is restored


def _publishing(rng: random.Random, diversities: list[float], between: int = 9) -> list[dict]:
    """Readings as the trainer makes them: diversity only at publishing steps, `between` plain log records
    (losses, no diversity) before each."""
    readings = []
    for diversity in diversities:
        readings += [{k: v for k, v in _healthy(rng).items() if k != "diversity"} for _ in range(between)]
        readings.append(dict(_healthy(rng), diversity=diversity))
    return readings


def test_a_short_run_with_few_diversity_readings_is_judged():
    rng = random.Random(5)
    alarm = CollapseAlarm()  # as the trainer makes it
    events = _feed(alarm, _publishing(rng, [1.0, 1.1, 0.05]))  # a 1,500-step run publishing every 500
    assert len(events) == 1 and "mode collapse" in events[0][1] and events[0][0] == 29
    assert _feed(CollapseAlarm(), _publishing(rng, [1.0, 0.9, 1.05, 0.8])) == []


def test_a_lasting_collapse_between_publishing_steps_is_one_episode():
    rng = random.Random(6)
    alarm = CollapseAlarm()
    readings = _publishing(rng, [1.0, 1.0, 1.1] + [0.05] * 8)  # collapsed at 8 publishing steps in a row
    events = _feed(alarm, readings)
    assert len(events) == 1
    assert alarm.active is not None  # the plain records in between do not end it
    assert _feed(alarm, _publishing(rng, [1.0] * 3)) == [] and alarm.active is None  # 3 healthy readings do
    assert len(_feed(alarm, _publishing(rng, [0.05]))) == 1  # a new episode

"""evaluate(): fixed keys, honest names, provenance, and geometry that does not move the score."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sagan.errors import ConfigError, DataError, SaganError
from sagan.metrics import evaluate, parse_metrics, scores_only, to_records
from sagan.metrics.evaluation import METRICS, metric_keys

PROVENANCE_KEYS = (
    "extractor", "extractor_weights_sha256", "reference_dataset", "reference_split", "reference_count",
    "generated_count", "seed", "resize", "target", "checkpoint", "step", "ema", "metric_settings",
)  # fmt: skip


def test_parse_metrics_aliases_order_and_errors():
    assert parse_metrics("pr,fid,KID") == ("fd", "kid", "pr")
    assert parse_metrics(["all"]) == METRICS
    with pytest.raises(ConfigError, match="did you mean"):
        parse_metrics("fdd")
    with pytest.raises(ConfigError):
        parse_metrics(" , ")


def test_fmnist_scores_have_fixed_honest_keys_and_provenance(fmnist_test):
    images, _ = fmnist_test
    out = evaluate(images[:200], "fashion-mnist", "all", ref_num=400, seed=3)
    assert set(scores_only(out)) == set(metric_keys(METRICS, "_fmnist", 10))
    assert "fid" not in out and "is" not in out
    prov = out["provenance"]
    for key in PROVENANCE_KEYS:
        assert key in prov
    assert prov["extractor"] == "fmnist" and prov["reference_count"] == 400 and prov["generated_count"] == 200
    assert prov["seed"] == 3 and prov["reference_split"] == "test"
    assert abs(sum(out[f"class_frac_fmnist_{i}"] for i in range(10)) - 1) < 1e-9
    records = to_records(out)
    assert {r["metric"] for r in records} == set(scores_only(out))
    assert all(r["how"] and r["extractor_weights_sha256"] for r in records)


def test_real_images_score_as_real(fmnist_test):
    images, _ = fmnist_test
    out = evaluate(images[:500], "fashion-mnist", "fd,pr,is", ref_num=1000)
    assert out["precision_fmnist"] > 0.8 and out["recall_fmnist"] > 0.8
    assert out["is_fmnist"] > 5
    assert out["class_frac_fmnist_min"] > 0.05


def test_padding_and_cropping_back_does_not_move_the_score(fmnist_test):
    images, _ = fmnist_test
    native = images[:300]
    padded = F.pad(native, (2, 2, 2, 2))  # what training at 32x32 does to 28x28 data
    a = evaluate(native, "fashion-mnist", "fd,pr,dc", ref_num=600)
    b = evaluate(padded, "fashion-mnist", "fd,pr,dc", ref_num=600)
    assert scores_only(a) == scores_only(b)
    assert "centre crop" in b["provenance"]["resize"]["generated_to_reference"]
    assert a["provenance"]["resize"]["generated_to_reference"] == "none"


def test_rgb_generated_images_are_brought_to_grey(fmnist_test):
    images, _ = fmnist_test
    rgb = images[:100].expand(-1, 3, -1, -1)
    a = evaluate(images[:100], "fashion-mnist", "fd", ref_num=300)
    b = evaluate(rgb, "fashion-mnist", "fd", ref_num=300)
    assert a["fd_fmnist"] == b["fd_fmnist"]


def test_bad_inputs_are_user_errors(fmnist_test, tmp_path):
    images, _ = fmnist_test
    with pytest.raises(SaganError, match="uint8"):
        evaluate(images[:10].float(), "fashion-mnist")
    with pytest.raises(DataError, match="did you mean"):
        evaluate(images[:10], "fashion-mnst", "fd")
    ref = tmp_path / "ref.npz"
    np.savez(ref, images=np.zeros((20, 1, 20, 20), np.uint8))
    with pytest.raises(SaganError, match="28x28"):
        evaluate(torch.zeros(10, 1, 20, 20, dtype=torch.uint8), str(ref), "fd", features="fmnist")

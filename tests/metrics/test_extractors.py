"""Feature extractors: the shipped Fashion-MNIST classifier, and Inception's weights handling."""

import json
import time
import warnings

import pytest
import torch

from sagan.errors import SaganError
from sagan.metrics import extractors
from sagan.metrics.extractors import FmnistExtractor, InceptionExtractor, create_extractor, file_sha256


def test_shipped_classifier_weights_are_small_and_described():
    weights = extractors.WEIGHTS_DIR / "fmnist_classifier.safetensors"
    meta = json.loads((extractors.WEIGHTS_DIR / "fmnist_classifier.json").read_text())
    assert weights.stat().st_size < 512 * 1024
    assert meta["sha256"] == file_sha256(weights)
    assert meta["test_accuracy"] >= 0.90
    for key in ("architecture", "training_command", "classes", "parameters"):
        assert meta[key]


def test_fmnist_extractor_shapes_and_input_checks():
    ex = FmnistExtractor()
    feats, logits = ex.extract(torch.randint(0, 256, (7, 1, 28, 28), dtype=torch.uint8))
    assert feats.shape == (7, 128) and logits.shape == (7, 10)
    assert ex.describe()["extractor_weights_sha256"] == file_sha256(ex.weights_path)
    with pytest.raises(SaganError, match="28x28"):
        ex.extract(torch.zeros(2, 1, 32, 32, dtype=torch.uint8))
    with pytest.raises(SaganError, match="uint8"):
        ex.extract(torch.zeros(2, 1, 28, 28))
    with pytest.raises(SaganError, match="1-channel"):
        ex.extract(torch.zeros(2, 3, 28, 28, dtype=torch.uint8))


def test_fmnist_classifier_recognises_real_test_images():
    from sagan.data import load_data

    data = load_data("fashion-mnist", 28, split="test")
    _, logits = FmnistExtractor().extract(data.images[:500])
    assert (logits.argmax(1) == data.labels[:500]).float().mean() > 0.88


def test_unknown_extractor_suggests_names():
    with pytest.raises(SaganError, match="did you mean: inception"):
        create_extractor("incepton")


@pytest.fixture
def no_inception_anywhere(tmp_path, monkeypatch):
    """No cached weights, no environment variable, and a download that must never be attempted."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.delenv("SAGAN_INCEPTION_WEIGHTS", raising=False)

    def no_download(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    return tmp_path


def test_missing_inception_weights_file_is_a_clear_error(no_inception_anywhere):
    t0 = time.perf_counter()
    with pytest.raises(SaganError, match="--inception-weights"):
        InceptionExtractor(weights=no_inception_anywhere / "nope.pth")
    assert time.perf_counter() - t0 < 5


def test_offline_without_weights_fails_fast_without_downloading(no_inception_anywhere, monkeypatch):
    monkeypatch.setattr(extractors, "_online", lambda *a, **k: False)
    t0 = time.perf_counter()
    with pytest.raises(SaganError, match="cannot be reached.*--inception-weights"):
        create_extractor("inception")
    assert time.perf_counter() - t0 < 5


def test_offline_flag_skips_the_network_check(monkeypatch):
    monkeypatch.setenv("SAGAN_OFFLINE", "1")

    def no_socket(*args, **kwargs):
        raise AssertionError("the network was touched")

    monkeypatch.setattr(extractors.socket, "create_connection", no_socket)
    assert extractors._online() is False


def test_a_pickle_with_code_is_refused(tmp_path):
    bad = tmp_path / "evil.pth"
    torch.save({"f": print}, bad)  # not loadable with weights_only=True
    with pytest.raises(SaganError, match="not a plain PyTorch state dict"):
        InceptionExtractor(weights=bad)


@pytest.mark.slow
def test_inception_wrapper_runs_torch_fidelity_with_custom_weights(tmp_path, monkeypatch):
    """Random weights in torch-fidelity's layout: the wrapper works, and the scores are not called FID."""
    import torch_fidelity.feature_extractor_inceptionv3 as tf_inception

    with monkeypatch.context() as m:
        m.setattr(tf_inception, "load_state_dict_from_url", lambda *a, **k: {})
        m.setattr(tf_inception.FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd, *a, **k: None)
        torch.manual_seed(0)
        state = tf_inception.FeatureExtractorInceptionV3("x", ["2048"]).state_dict()
    path = tmp_path / "random-inception.pth"
    torch.save(state, path)
    del state
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        ex = InceptionExtractor(weights=path, batch_size=4)
    assert ex.suffix == "_inception_custom" and ex.name == "inception-custom"
    feats, logits = ex.extract(torch.randint(0, 256, (3, 1, 28, 28), dtype=torch.uint8))
    assert feats.shape == (3, 2048) and logits.shape == (3, 1008)
    assert torch.isfinite(feats).all()
    assert "299x299" in ex.preprocessing(28, 1) and "grey repeated" in ex.preprocessing(28, 1)

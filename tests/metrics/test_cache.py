"""The reference statistics cache: used on the second call, missed when anything it depends on changes."""

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from sagan.metrics import cache, evaluation, reference
from sagan.metrics.extractors import WEIGHTS_DIR, FmnistExtractor


def test_cache_dir_follows_sagan_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("SAGAN_CACHE", str(tmp_path / "c"))
    assert cache.cache_dir() == tmp_path / "c" / "stats"
    monkeypatch.delenv("SAGAN_CACHE")
    assert cache.cache_dir().parts[-3:] == (".cache", "sagan", "stats")


def test_key_depends_on_every_field():
    base = {"dataset": "fashion-mnist", "split": "test", "count": 10, "extractor": "fmnist",
            "extractor_weights_sha256": "ab", "preprocessing": "as is"}
    keys = {cache.cache_key(base)}
    for field, other in [("split", "train"), ("count", 11), ("extractor", "inception"),
                         ("extractor_weights_sha256", "cd"), ("preprocessing", "resize")]:
        keys.add(cache.cache_key({**base, field: other}))
    assert len(keys) == 6


def test_corrupt_entry_is_recomputed(tmp_path):
    desc = {"dataset": "x", "split": "all", "count": 3}
    entry = {"features": np.ones((3, 2), np.float32), "mu": np.ones(2), "sigma": np.eye(2)}
    path = cache.save_reference(desc, entry, tmp_path)
    assert cache.load_reference(desc, tmp_path)["features"].shape == (3, 2)
    path.write_bytes(b"garbage")
    assert cache.load_reference(desc, tmp_path) is None


def _count_extractions(monkeypatch):
    calls = []
    original = FmnistExtractor.extract

    def counting(self, images):
        calls.append(len(images))
        return original(self, images)

    monkeypatch.setattr(FmnistExtractor, "extract", counting)
    return calls


def test_second_call_uses_the_cache_and_a_new_extractor_misses_it(fmnist_test, tmp_path, monkeypatch):
    images, _ = fmnist_test
    ref = tmp_path / "ref.npz"
    np.savez(ref, images=images[:300].numpy())
    fake = images[300:400]
    calls = _count_extractions(monkeypatch)

    first = evaluation.evaluate(fake, str(ref), "fd", features="fmnist")
    assert first["provenance"]["reference_cache_hit"] is False
    assert sorted(calls) == [100, 300]
    reference._REFERENCE_MEMO.clear()  # as a new process would be
    calls.clear()
    second = evaluation.evaluate(fake, str(ref), "fd", features="fmnist")
    assert second["provenance"]["reference_cache_hit"] is True
    assert calls == [100]  # only the generated images
    assert second["fd_fmnist"] == first["fd_fmnist"]

    # Other weights for the same extractor name: a different hash, so the cache must not be reused.
    state = load_file(str(WEIGHTS_DIR / "fmnist_classifier.safetensors"))
    state["head.bias"] = state["head.bias"] + 0.5
    other = tmp_path / "other.safetensors"
    save_file(state, str(other))
    calls.clear()
    third = evaluation.evaluate(fake, str(ref), "fd", features="fmnist", weights=str(other))
    assert third["provenance"]["reference_cache_hit"] is False
    assert sorted(calls) == [100, 300]
    assert third["provenance"]["reference_cache"] != first["provenance"]["reference_cache"]

    # A changed reference file misses too.
    np.savez(ref, images=images[:301].numpy())
    reference._REFERENCE_MEMO.clear()
    assert evaluation.evaluate(fake, str(ref), "fd", features="fmnist")["provenance"]["reference_cache_hit"] is False


def test_no_cache_neither_reads_nor_writes(fmnist_test, tmp_path):
    images, _ = fmnist_test
    ref = tmp_path / "ref.npz"
    np.savez(ref, images=images[:50].numpy())
    out = evaluation.evaluate(images[50:80], str(ref), "fd", features="fmnist", use_cache=False)
    assert out["provenance"]["reference_cache"] is None
    assert not cache.cache_dir().exists() or not any(cache.cache_dir().iterdir())
    assert isinstance(out["fd_fmnist"], float) and torch.isfinite(torch.tensor(out["fd_fmnist"]))

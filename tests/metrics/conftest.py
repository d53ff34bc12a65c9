import pytest

from sagan.metrics import evaluation as evaluate_module


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    """Every test gets its own stats cache and forgets in-process memos."""
    monkeypatch.setenv("SAGAN_CACHE", str(tmp_path / "sagan-cache"))
    evaluate_module._REFERENCE_MEMO.clear()
    evaluate_module._EXTRACTOR_MEMO.clear()
    yield
    evaluate_module._REFERENCE_MEMO.clear()
    evaluate_module._EXTRACTOR_MEMO.clear()


@pytest.fixture(scope="session")
def fmnist_test():
    """Fashion-MNIST's test split at its native 28x28 (uint8 images, labels)."""
    from sagan.data import load_data

    data = load_data("fashion-mnist", 28, split="test", download=False)
    return data.images, data.labels

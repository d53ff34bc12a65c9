import pytest
import torch

from sagan.metrics import evaluation as evaluate_module
from sagan.metrics import reference as reference_module


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    """Every test gets its own stats cache, forgets in-process memos, and uses one torch thread (small
    tensors on a shared machine: more threads only wait for each other)."""
    monkeypatch.setenv("SAGAN_CACHE", str(tmp_path / "sagan-cache"))
    reference_module._REFERENCE_MEMO.clear()
    evaluate_module._EXTRACTOR_MEMO.clear()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    reference_module._REFERENCE_MEMO.clear()
    evaluate_module._EXTRACTOR_MEMO.clear()


@pytest.fixture(scope="session")
def fmnist_test():
    """Fashion-MNIST's test split at its native 28x28 (uint8 images, labels)."""
    from sagan.data import load_data

    data = load_data("fashion-mnist", 28, split="test", download=False)
    return data.images, data.labels

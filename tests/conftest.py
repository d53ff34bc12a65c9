import numpy as np
import pytest
import torch
from PIL import Image


@pytest.fixture
def one_thread():
    """Tiny networks run fastest on one thread, above all on a shared, busy CPU (torch's count restored after)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory):
    """48 small RGB images in two class folders: real files, built on the spot, no download."""
    root = tmp_path_factory.mktemp("tiny_images")
    rng = np.random.default_rng(0)
    for c, name in enumerate(["circles", "squares"]):
        (root / name).mkdir()
        for i in range(24):
            img = np.full((40, 40, 3), 255, np.uint8)
            lo, hi = 8 + rng.integers(0, 6), 28 + rng.integers(0, 6)
            color = rng.integers(0, 200, 3)
            if c:
                img[lo:hi, lo:hi] = color
            else:
                yy, xx = np.mgrid[:40, :40]
                img[(yy - 20) ** 2 + (xx - 20) ** 2 < (hi - lo) ** 2 // 4] = color
            Image.fromarray(img).save(root / name / f"{i:03d}.png")
    return root


def tiny_train_args(data, out, steps, **extra):
    """Overrides for a fast, deterministic CPU run of a tiny sagan_32."""
    cfg = dict(model="sagan_32", model_args={"g_ch": 8, "d_ch": 8}, data=str(data), out=str(out), max_steps=steps,
               batch_size=8, log_every=2, sample_every=4, checkpoint_every=3, precision="fp32", threads=1,
               deterministic=True, channels_last=False, standing_samples=32)
    cfg.update(extra)
    return cfg

"""Feature extractors: uint8 images in, (features, logits) out, with the provenance that makes scores comparable.

- "inception": torch-fidelity's port of the 2015-12-05 TensorFlow Inception-v3 (the FID protocol of Heusel
  et al.): 2048-d pool3 features and the 1008-way logits, after torch-fidelity's TF1-exact bilinear resize to
  299x299. Grey images are repeated to RGB. The weights come from `--inception-weights FILE`,
  $SAGAN_INCEPTION_WEIGHTS, torch's hub cache, or a download (only when the host answers quickly).
- "fmnist": the small Fashion-MNIST classifier shipped in `sagan/weights/` (see `sagan.metrics.fmnist`),
  128-d penultimate features and 10 logits of 28x28 grey images.

Each extractor has a `suffix` that its metric names carry, so FID is only ever called FID when it is one.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import warnings
from pathlib import Path

import torch

from sagan.errors import ConfigError, SaganError

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
INCEPTION_URL = (
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth"
)
INCEPTION_FILE = INCEPTION_URL.rsplit("/", 1)[1]
INCEPTION_SHA256_PREFIX = "6726825d"  # torch.hub's convention: the hash prefix is in the file name
_HOW_TO_GET_INCEPTION = (
    f"download {INCEPTION_URL} on a machine that is online and pass --inception-weights FILE "
    f"(or set $SAGAN_INCEPTION_WEIGHTS, or put it in {{hub}}); for Fashion-MNIST, --features fmnist needs no download; "
    "for a labelled folder, --features classifier"
)

_sha_memo: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | Path) -> str:
    """sha256 of a file, remembered per (path, size, mtime) for the life of the process."""
    st = os.stat(path)
    key = (str(Path(path).resolve()), st.st_size, st.st_mtime_ns)
    if key not in _sha_memo:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _sha_memo[key] = h.hexdigest()
    return _sha_memo[key]


class FeatureExtractor:
    """Base class: `extract(images)` maps uint8 (N, C, H, W) to float32 features (N, D) and logits (N, K)."""

    name: str = ""
    suffix: str = ""  # appended to metric names: "" gives fid/kid/is, "_fmnist" gives fd_fmnist/...
    weights_path: str = ""
    weights_sha256: str = ""
    feature_layer: str = ""
    input_channels: tuple[int, ...] = (1, 3)  # channel counts accepted (grey is repeated where RGB is needed)
    input_size: int | None = None  # the only size accepted, or None for any
    class_names: tuple[str, ...] = ()

    def __init__(self, device: str | torch.device = "cpu", batch_size: int = 100):
        self.device = torch.device(device)
        self.batch_size = batch_size

    def preprocessing(self, size: int, channels: int) -> str:
        """How images of this size and channel count are turned into the network's input, in words."""
        raise NotImplementedError

    def describe(self) -> dict:
        """Provenance of the extractor: name, weights and their hash, feature layer."""
        return {
            "extractor": self.name,
            "extractor_weights": self.weights_path,
            "extractor_weights_sha256": self.weights_sha256,
            "feature_layer": self.feature_layer,
        }

    def check_input(self, images: torch.Tensor) -> None:
        """Raise SaganError for images this extractor cannot read."""
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise SaganError(f"expected uint8 images (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
        if images.shape[1] not in self.input_channels:
            raise SaganError(f"the {self.name} extractor reads {' or '.join(map(str, self.input_channels))}-channel "
                             f"images, got {images.shape[1]}; compare against a data set of that kind or use "
                             "--features inception")
        if self.input_size is not None and tuple(images.shape[-2:]) != (self.input_size, self.input_size):
            raise SaganError(
                f"the {self.name} extractor reads {self.input_size}x{self.input_size} images, got "
                f"{images.shape[-2]}x{images.shape[-1]}; compare against a data set of that size or use "
                "--features inception"
            )

    def _forward(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    @torch.no_grad()
    def extract(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(features (N, D), logits (N, K)) of uint8 images (N, C, H, W), in float32 on the CPU."""
        self.check_input(images)
        feats, logits = [], []
        for batch in images.split(self.batch_size):
            f, lg = self._forward(batch.to(self.device))
            feats.append(f.float().cpu())
            logits.append(lg.float().cpu())
        return torch.cat(feats), torch.cat(logits)


# ----------------------------------------------------------------------------------------------------------
# The Fashion-MNIST classifier


class FmnistExtractor(FeatureExtractor):
    """The shipped Fashion-MNIST classifier: 128-d penultimate features, 10 logits, 28x28 grey input."""

    name = "fmnist"
    suffix = "_fmnist"
    feature_layer = "penultimate-128"  # global average pool of the last conv block
    input_channels = (1,)
    input_size = 28

    def __init__(self, weights: str | Path | None = None, device: str | torch.device = "cpu", batch_size: int = 500):
        super().__init__(device, batch_size)
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        from sagan.metrics.fmnist import FMNIST_CLASSES, FmnistNet

        path = Path(weights) if weights else WEIGHTS_DIR / "fmnist_classifier.safetensors"
        if not path.is_file():
            raise SaganError(
                f"Fashion-MNIST classifier weights not found at {path}; reinstall sagan, or train them with "
                "`python scripts/train_fmnist_classifier.py`"
            )
        try:
            state = load_file(str(path))
        except (SafetensorError, OSError) as e:
            raise SaganError(f"cannot read the classifier weights {path} ({e}); reinstall sagan") from e
        self.net = FmnistNet()
        missing, unexpected = self.net.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)
        if unexpected or [k for k in missing if not k.endswith("num_batches_tracked")]:
            raise SaganError(f"{path} does not hold FmnistNet weights (missing {missing}, unexpected {unexpected})")
        self.net.eval().to(self.device)
        self.weights_path = str(path)
        self.weights_sha256 = file_sha256(path)
        self.class_names = FMNIST_CLASSES
        meta_path = path.with_suffix(".json")
        self.metadata = json.loads(meta_path.read_text()) if meta_path.is_file() else {}

    def describe(self) -> dict:
        out = super().describe()
        if "test_accuracy" in self.metadata:
            out["extractor_test_accuracy"] = self.metadata["test_accuracy"]
        return out

    def preprocessing(self, size: int, channels: int) -> str:
        return "28x28 grey read as is (/255, normalised with the training set's mean and std)"

    def _forward(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.net.forward_features(batch)


# ----------------------------------------------------------------------------------------------------------
# Inception-v3 (torch-fidelity)


def _hub_inception_path() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE


def _online(host: str = "github.com", port: int = 443, timeout: float = 3.0) -> bool:
    """Whether `host` accepts a connection within `timeout` seconds; False when $SAGAN_OFFLINE is set."""
    if os.environ.get("SAGAN_OFFLINE", "") not in ("", "0"):
        return False
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def resolve_inception_weights(weights: str | Path | None = None) -> Path:
    """The Inception-v3 weights file to use, downloading it into torch's hub cache only when that is quick.

    Raises SaganError, never hangs, when the weights cannot be had.
    """
    how = _HOW_TO_GET_INCEPTION.format(hub=_hub_inception_path())
    explicit = weights or os.environ.get("SAGAN_INCEPTION_WEIGHTS") or None
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise SaganError(f"Inception-v3 weights file {path} does not exist; {how}")
        return path
    cached = _hub_inception_path()
    if cached.is_file():
        return cached
    if not _online():
        raise SaganError(f"Inception-v3 weights are not cached at {cached} and github.com cannot be reached; {how}")
    cached.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(INCEPTION_URL, str(cached), hash_prefix=INCEPTION_SHA256_PREFIX)
    except Exception as e:  # network drop, proxy, wrong hash: all mean "get the file another way"
        raise SaganError(f"downloading Inception-v3 weights failed ({type(e).__name__}: {e}); {how}") from e
    return cached


class InceptionExtractor(FeatureExtractor):
    """torch-fidelity's TF-compatible Inception-v3: 2048-d pool3 features and 1008 unbiased logits."""

    name = "inception"
    suffix = ""
    feature_layer = "pool3-2048"

    def __init__(self, weights: str | Path | None = None, device: str | torch.device = "cpu", batch_size: int = 50):
        super().__init__(device, batch_size)
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

        path = resolve_inception_weights(weights)
        # torch-fidelity unpickles the file with weights_only=False; load it safely first so that a file
        # holding code is refused rather than run.
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise SaganError(f"{path} is not a plain PyTorch state dict of Inception-v3 weights ({e}); "
                             + _HOW_TO_GET_INCEPTION.format(hub=_hub_inception_path())) from e
        if not isinstance(state, dict) or "Mixed_7c.branch_pool.conv.weight" not in state:
            raise SaganError(f"{path} does not hold Inception-v3 weights in torch-fidelity's layout")
        del state
        self.net = FeatureExtractorInceptionV3(
            "inception-v3-compat", ["2048", "logits_unbiased"], feature_extractor_weights_path=str(path)
        ).to(self.device)
        self.weights_path = str(path)
        self.weights_sha256 = file_sha256(path)
        if not self.weights_sha256.startswith(INCEPTION_SHA256_PREFIX):
            # Not the 2015-12-05 weights: the numbers are not FID and must not be called so.
            warnings.warn(f"{path} is not the 2015-12-05 Inception-v3 (sha256 {self.weights_sha256[:12]}); "
                          "scores are named *_inception_custom, not fid/kid/is", stacklevel=2)
            self.suffix = "_inception_custom"
            self.name = "inception-custom"

    def preprocessing(self, size: int, channels: int) -> str:
        grey = "grey repeated to RGB, " if channels == 1 else ""
        return f"{grey}{size}x{size} -> 299x299 TF1-compatible bilinear (torch-fidelity), (x - 128) / 128"

    def _forward(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if batch.shape[1] == 1:
            batch = batch.expand(-1, 3, -1, -1)
        return self.net(batch)


EXTRACTORS: dict[str, type[FeatureExtractor]] = {"inception": InceptionExtractor, "fmnist": FmnistExtractor}
# The data sets with a domain extractor of their own, used by default when scoring against them.
DEFAULT_FOR_DATASET = {"fashion-mnist": "fmnist"}


def create_extractor(
    name: str, weights: str | Path | None = None, device: str | torch.device = "cpu", batch_size: int | None = None
) -> FeatureExtractor:
    """An extractor by name ("inception" or "fmnist"), with optional weights file, device and batch size."""
    key = name.strip().lower()
    if key == "classifier":
        raise ConfigError("the classifier extractor is trained on a labelled reference set: use "
                          "evaluate(..., features='classifier') or `sagan eval --features classifier`")
    if key not in EXTRACTORS:
        from sagan.errors import did_you_mean

        raise ConfigError(f"unknown feature extractor '{name}'{did_you_mean(key, tuple(EXTRACTORS))}; "
                          f"use one of {', '.join(EXTRACTORS)}, or classifier (trained on a labelled reference)")
    cls = EXTRACTORS[key]
    kwargs = {} if batch_size is None else {"batch_size": batch_size}
    return cls(weights=weights, device=device, **kwargs)

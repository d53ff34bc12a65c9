"""Packing the explorer's rows: 8-bit codes with one float32 scale per row (the row's largest weight), laid
out in one byte buffer the page's script reads back."""

from __future__ import annotations

import numpy as np
import torch

from sagan.explore.rows import ImageSet
from sagan.viz import to_rgb_array

COLOUR_MAPS = ("inferno", "viridis", "magma", "gray")


def quantise(rows: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Rows (..., K) -> uint8 codes (..., K) and float32 scales (...): weight ~ code / 255 * scale."""
    scale = rows.amax(-1).clamp_min(1e-30).float()
    codes = torch.round(rows / scale[..., None] * 255).clamp(0, 255).to(torch.uint8)
    return codes.numpy(), scale.numpy()


def dequantise(codes: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """The weights the page shows: code / 255 * scale, in float64 as the page's script computes them."""
    return codes.astype(np.float64) / 255 * scale.astype(np.float64)[..., None]


class _Packer:
    """Arrays appended to one byte buffer at 4-byte-aligned offsets; each described as {offset, shape, type}."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0

    def add(self, array: np.ndarray) -> dict:
        array = np.ascontiguousarray(array)
        kind = {np.dtype(np.uint8): "u8", np.dtype(np.float32): "f32"}[array.dtype]
        pad = -self.size % 4
        self.parts.append(b"\0" * pad + array.tobytes())
        entry = {"offset": self.size + pad, "shape": list(array.shape), "type": kind}
        self.size += pad + array.nbytes
        return entry

    def bytes(self) -> bytes:
        return b"".join(self.parts)


def _colour_maps() -> dict[str, list[int]]:
    import matplotlib

    lut = np.linspace(0, 1, 256)
    return {name: (matplotlib.colormaps[name](lut)[:, :3] * 255).round().astype(int).ravel().tolist()
            for name in COLOUR_MAPS}


def pack(sets: list[ImageSet], info: dict) -> tuple[dict, bytes, float]:
    """The page's metadata, its binary payload (uncompressed) and the largest quantisation error of any weight."""
    packer, worst, meta_sets = _Packer(), 0.0, []
    for s in sets:
        rgb = np.stack([to_rgb_array(im) for im in s.images])  # (B, H, W, 3) uint8
        layers = []
        for layer in s.layers:
            codes, scale = quantise(layer.rows)
            worst = max(worst, float(np.abs(dequantise(codes, scale) - layer.rows.double().numpy()).max()))
            layers.append({"name": layer.name, "feature_size": layer.feature_size,
                           "codes": packer.add(codes), "scale": packer.add(scale),
                           "mean": packer.add(layer.rows.mean(1).numpy().astype(np.float32))})
        meta_sets.append({"key": s.key, "title": s.title, "captions": s.captions, "labels": s.labels,
                          "images": packer.add(rgb), "layers": layers})
    cfg = info["model"]
    meta = {"model": cfg["name"], "resolution": cfg["resolution"], "num_classes": cfg["num_classes"],
            "class_names": info.get("class_names"),
            "step": info.get("step"), "ema": bool(info.get("ema")), "seed": info.get("seed"),
            "path": str(info.get("path")), "notes": info.get("notes", []), "sets": meta_sets,
            "max_error": worst, "colour_maps": _colour_maps()}
    return meta, packer.bytes(), worst

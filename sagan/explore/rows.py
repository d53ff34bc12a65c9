"""An attention explorer: every attention row of G and D, packed into one self-contained HTML page.

SAGAN (Zhang et al., ICML 2019, arXiv:1805.08318), figure 1, shows where a few query points of a generated
image attend. The page generalises it: every query position of every attention layer is kept, so hovering or
clicking any pixel shows that query's full attention row, overlaid on the image. Rows come from the explicit
attention path (`SelfAttention.forward_explicit`), are quantised to 8 bits per weight with one float32 scale
per row (the row's largest weight), deflated and embedded as base64; the page's script (sagan/assets/explore.js)
inflates them with the browser's own DecompressionStream. No network, no server.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import html
import json
import math
import os
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from torch import nn

from sagan.errors import CheckpointError, ConfigError, DataError, SaganError
from sagan.viz import attention_blocks, block_inputs, to_rgb_array

COLOUR_MAPS = ("inferno", "viridis", "magma", "gray")


@dataclass
class Layer:
    """Every attention row of one layer for a batch of images."""

    name: str  # "G.16": network and feature-map resolution
    feature_size: int  # F: the layer sees an F x F feature map, so F*F queries
    rows: torch.Tensor  # (B, F*F, (F/2)*(F/2)) float32 on the CPU; each row sums to 1


@dataclass
class ImageSet:
    """Images shown together on the page, with the attention layers computed on them."""

    key: str
    title: str
    images: torch.Tensor  # (B, C, H, W) in [-1, 1]
    captions: list[str]
    layers: list[Layer] = field(default_factory=list)
    labels: list[int] | None = None  # each image's class index, where the set has classes


# ----------------------------------------------------------------------------------------------------------
# Attention rows


@torch.no_grad()
def attention_rows(net: nn.Module, forward: Callable[[], torch.Tensor],
                   prefix: str) -> tuple[torch.Tensor, list[Layer]]:
    """Run `forward()` (a call through `net`); its output and every attention row of each layer of `net`."""
    blocks = attention_blocks(net)
    output, inputs = block_inputs(net, forward)
    layers = []
    for key, block in blocks.items():
        if key in inputs:
            _, attn = block.forward_explicit(inputs[key].float())  # (B, N, N/4)
            layers.append(Layer(f"{prefix}.{key}", inputs[key].shape[-1], attn.float().cpu()))
    return output.float().cpu(), layers


@contextlib.contextmanager
def class_mix(generator: nn.Module, a: int, b: int, t: torch.Tensor) -> Iterator[None]:
    """Inside: every class embedding G looks up is (1 - t_i) E[a] + t_i E[b] for the i-th image of the batch.

    G's only use of the label is its conditional batch norms' gain and bias tables, so this moves it
    smoothly from class a to class b at a fixed latent.
    """
    def mix(module, args, out):
        w = module.weight
        return (1 - t.to(w))[:, None] * w[a] + t.to(w)[:, None] * w[b]  # (B, C)

    embeddings = [m for m in generator.modules() if isinstance(m, nn.Embedding)]
    hooks = [m.register_forward_hook(mix) for m in embeddings]
    try:
        yield
    finally:
        for h in hooks:
            h.remove()


def _real_images(info: dict, num: int, seed: int) -> tuple[torch.Tensor, torch.Tensor | None, str]:
    """`num` images of the run's data (its test split where it has one, with the run's labels file) in [-1, 1],
    their labels (None for an unconditional model) and a description."""
    from sagan.data import to_model_range
    from sagan.run_data import load_run_data

    cfg = info["model"]
    data = None
    for split in ("test", "train"):
        try:
            data = load_run_data(info, cfg["resolution"], cfg["img_channels"], split=split)
            break
        except DataError:
            if split == "train":
                raise
    if cfg["num_classes"] and data.num_classes != cfg["num_classes"]:
        raise DataError(f"{data.source} has {data.num_classes} classes, the model {cfg['num_classes']}: "
                        "its labels cannot be fed to D")
    pick = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:num]
    images, labels = data.get(pick)
    if not cfg["num_classes"]:
        labels = None
    source = data.source if split == "test" else f"{data.source}; it has no test split, so training images"
    return to_model_range(images), labels, source


def explore_sets(target: str | Path, num: int = 16, seed: int = 0, class_index: int | str | None = None,
                 frames: int = 8,
                 ema: bool = True, device: str | torch.device = "cpu") -> tuple[list[ImageSet], dict]:
    """The page's image sets with all their attention rows, and what they come from.

    Sets: `num` generated images (G's layers and, where the target has D, D's), `num` real images of the run's
    data through D (when the data is on this machine), a strip of `frames` images between two latents and, for
    a conditional model, between two classes at one latent (G's layers). `class_index`: a class index or name.
    """
    from sagan.checkpoint import load_discriminator, load_generator
    from sagan.run_data import class_name, resolve_class
    from sagan.sampling import sample_labels, sample_latents

    generator, info = load_generator(target, ema=ema, map_location=device)
    cfg = info["model"]
    classes, names = cfg["num_classes"], info.get("class_names")
    if not cfg.get("g_attention") and not cfg.get("d_attention"):
        raise ConfigError(f"model {cfg['name']} has no attention layers in G or D: nothing to explore "
                          "(use a sagan_* model)")
    class_index = resolve_class(class_index, classes, names, what=f"model {cfg['name']}")
    notes = []
    discriminator = None
    if cfg.get("d_attention"):
        try:
            discriminator, _ = load_discriminator(info["path"], device)
        except SaganError as exc:
            notes.append(f"No discriminator maps: {exc}")
    z = sample_latents(num, cfg["z_dim"], torch.Generator().manual_seed(seed))
    y = sample_labels(num, classes, class_index)

    def run_g(z: torch.Tensor, y: torch.Tensor | None) -> tuple[torch.Tensor, list[Layer]]:
        return attention_rows(generator, lambda: generator(z.to(device), None if y is None else y.to(device)), "G")

    def run_d(images: torch.Tensor, y: torch.Tensor | None) -> list[Layer]:
        if y is None and classes:
            y = torch.zeros(images.shape[0], dtype=torch.long)
        return attention_rows(discriminator, lambda: discriminator(
            images.to(device), None if y is None else y.to(device)), "D")[1]

    real = None
    if discriminator is not None:
        try:
            real, real_y, source = _real_images(info, num, seed)
        except SaganError as exc:
            notes.append(f"No real images: {exc}")

    def name(k: int) -> str:
        return class_name(k, names)

    def label(i: int) -> str:
        return "" if y is None else name(int(y[i]))

    def indices(t: torch.Tensor | None) -> list[int] | None:
        return None if t is None else [int(k) for k in t]

    images, g_layers = run_g(z, y)
    generated = ImageSet("generated", f"Generated images (seed {seed})", images,
                         [f"#{i} {label(i)}".strip() for i in range(num)], g_layers, indices(y))
    if discriminator is not None:
        generated.layers += run_d(images, y)
    sets = [generated]
    if real is not None:
        sets.append(ImageSet("real", f"Real images through D ({source})", real,
                             [f"real #{i}" + ("" if real_y is None else f" {name(int(real_y[i]))}")
                              for i in range(len(real))], run_d(real, real_y), indices(real_y)))
    if frames >= 2 and cfg.get("g_attention"):
        t = torch.linspace(0, 1, frames)
        end, other = (z[1], "#1") if num > 1 else (
            sample_latents(1, cfg["z_dim"], torch.Generator().manual_seed(seed + 1))[0], f"a latent of seed {seed + 1}")
        zs = (1 - t[:, None]) * z[0] + t[:, None] * end
        ys = None if y is None else y[:1].repeat(frames)
        images, layers = run_g(zs, ys)
        sets.append(ImageSet("latents", f"Between latent #0 and {other}" + (f" ({label(0)})" if y is not None else ""),
                             images, [f"t={v:.2f}" for v in t.tolist()], layers, indices(ys)))
        if classes > 1:
            a = int(y[0])
            b = int(y[1]) if num > 1 and int(y[1]) != a else (a + 1) % classes
            with class_mix(generator, a, b, t):
                images, layers = run_g(z[:1].repeat(frames, 1), torch.full((frames,), a, dtype=torch.long))
            sets.append(ImageSet("classes", f"Between {name(a)} and {name(b)} at latent #0", images,
                                 [f"t={v:.2f}" for v in t.tolist()], layers))
    info = {**info, "seed": seed, "notes": notes}
    return sets, info


# ----------------------------------------------------------------------------------------------------------
# Packing: 8-bit rows, one scale per row


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


def _asset(name: str) -> str:
    return resources.files("sagan").joinpath("assets", name).read_text(encoding="utf-8")


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def render_page(meta: dict, payload: bytes) -> str:
    """One HTML page: metadata as JSON, the payload deflated and base64-encoded, script and style inlined."""
    import sagan

    blob = base64.b64encode(zlib.compress(payload, 9)).decode("ascii")
    meta = {**meta, "payload_bytes": len(payload), "written": datetime.datetime.now().astimezone().isoformat(
        timespec="seconds"), "version": sagan.__version__}
    # every "<" escaped: no text of the data (a caption, a class name, a path) can close the <script> or open
    # a comment in it; JSON.parse reads \u003c back as "<"
    meta_json = json.dumps(meta, separators=(",", ":")).replace("<", "\\u003c")
    which = "G_ema" if meta["ema"] else "G (raw, not G_ema)"
    classes = f"{meta['num_classes']} classes" if meta["num_classes"] else "unconditional"
    if meta["num_classes"] and meta.get("class_names"):
        classes += ": " + ", ".join(meta["class_names"])
    title = f"sagan explore: {meta['model']} at step {meta['step']}"
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; script-src 'unsafe-inline'; \
style-src 'unsafe-inline'; img-src data: blob:">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title)}</title>
<style>{_asset("explore.css")}</style>
</head>
<body>
<h1>{_e(title)}</h1>
<p class="info" id="info">Model <b>{_e(meta['model'])}</b> ({meta['resolution']} px, {_e(classes)}), step \
<b>{_e(meta['step'])}</b>,
generator <b>{_e(which)}</b>, seed <b>{_e(meta['seed'])}</b>, from <code>{_e(meta['path'])}</code>.
Written {_e(meta['written'])} by sagan {_e(meta['version'])}; self-contained, works offline.</p>
<p class="info" id="quant">Attention rows are stored as 8-bit codes with one scale per row (the row's largest weight):
the largest error of any weight shown is <b id="max-error" data-value="{meta['max_error']!r}">{
        meta['max_error']:.3g}</b> (at most half a step: 1/510 of the row's largest weight; a row's weights sum
to 1).</p>
{"".join(f'<p class="note">{_e(n)}</p>' for n in meta['notes'])}
<div id="app"><p id="loading">Unpacking the attention rows...</p></div>
<noscript>This page needs JavaScript to draw the maps.</noscript>
<script type="application/json" id="meta">{meta_json}</script>
<script type="application/octet-stream" id="payload">{blob}</script>
<script>{_asset("explore.js")}</script>
</body>
</html>
"""


def _image_bytes(s: ImageSet) -> int:
    """Payload bytes one image of a set takes: its pixels, and per layer its codes, scales and mean map."""
    h, w = s.images.shape[-2:]
    return 3 * h * w + sum(layer.rows[0].numel() + 4 * sum(layer.rows.shape[1:]) for layer in s.layers)


def _trim(sets: list[ImageSet], excess: float, page_per_byte: float) -> bool:
    """Cut about `excess` page bytes, in place, from the least needed set: the class strip, the latent strip,
    the real images, then the generated ones (down to one). False when nothing is left to cut."""
    for key in ("classes", "latents", "real", "generated"):
        found = [s for s in sets if s.key == key]
        smallest = 2 if key in ("classes", "latents") else 1
        if not found or (key == "generated" and found[0].images.shape[0] <= 1):
            continue
        s, n = found[0], found[0].images.shape[0]
        cut = math.ceil(excess / (page_per_byte * _image_bytes(s)))
        if n - cut < smallest and key != "generated":
            sets.remove(s)
            return True
        keep = torch.linspace(0, n - 1, max(smallest, n - cut)).round().long()  # a strip keeps its ends
        s.images, s.captions = s.images[keep], [s.captions[i] for i in keep.tolist()]
        if s.labels is not None:
            s.labels = [s.labels[i] for i in keep.tolist()]
        for layer in s.layers:
            layer.rows = layer.rows[keep]
        return True
    return False


def default_out(target: str | Path) -> Path:
    """RUN/explore.html for a run folder (where `sagan report` links to it), else explore.html here."""
    return Path(target) / "explore.html" if Path(target).is_dir() else Path("explore.html")


def build_explorer(target: str | Path, out: str | Path | None = None, num: int = 16, seed: int = 0,
                   class_index: int | None = None, frames: int = 8, ema: bool = True,
                   device: str | torch.device = "cpu", max_mb: float = 20.0) -> tuple[Path, dict]:
    """Write the explorer page for a run folder, checkpoint or exported generator; its path and metadata."""
    from sagan.checkpoint import atomic_write

    if not Path(target).exists():
        raise CheckpointError(f"no such run folder, checkpoint or exported generator: {target}")
    out = Path(out) if out else default_out(target)
    if out.is_dir():
        raise SaganError(f"cannot write {out}: it is a folder; give a file name such as {out / 'explore.html'}")
    try:  # fail before the minutes of work, not after
        out.parent.mkdir(parents=True, exist_ok=True)
        if not os.access(out.parent, os.W_OK) or (out.exists() and not os.access(out, os.W_OK)):
            raise PermissionError(13, "permission denied")
    except OSError as exc:
        raise SaganError(f"cannot write {out}: {exc.strerror or exc}") from None
    sets, info = explore_sets(target, num, seed, class_index, frames, ema, device)
    asked, notes = [(s.key, s.title, s.images.shape[0]) for s in sets], info["notes"]
    while True:
        counts = {s.key: s.images.shape[0] for s in sets}
        cuts = [f"{title}: {counts.get(key, 0)} of {n}" for key, title, n in asked if counts.get(key, 0) < n]
        if cuts:
            info["notes"] = [*notes, f"To stay under {max_mb:g} MB the page holds fewer images than asked: "
                             + "; ".join(cuts) + "."]
        meta, payload, _ = pack(sets, info)
        page = render_page(meta, payload)
        size = len(page.encode("utf-8"))
        if size <= max_mb * 1e6:
            break
        if not _trim(sets, size - max_mb * 1e6, size / max(len(payload), 1)):
            raise SaganError(f"even one image's attention rows make a {size / 1e6:.1f} MB page, above --max-mb "
                             f"{max_mb:g}; raise --max-mb")
    try:
        atomic_write(out, lambda f: f.write(page.encode("utf-8")))
        umask = os.umask(0)
        os.umask(umask)
        out.chmod(0o666 & ~umask)  # a page to share, not a private temporary file
    except OSError as exc:
        raise SaganError(f"cannot write {out}: {exc.strerror or exc}") from None
    return out, meta

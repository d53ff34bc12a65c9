"""The explorer page: metadata and packed rows in one self-contained HTML file, trimmed to a size limit.

The payload is deflated and embedded as base64; the page's script (sagan/explore/assets/explore.js) inflates it with the
browser's own DecompressionStream. No network, no server.
"""

from __future__ import annotations

import base64
import datetime
import html
import json
import math
import os
import zlib
from importlib import resources
from pathlib import Path

import torch

from sagan.errors import CheckpointError, SaganError
from sagan.explore.pack import pack
from sagan.explore.rows import ImageSet, explore_sets


def _asset(name: str) -> str:
    return resources.files("sagan.explore").joinpath("assets", name).read_text(encoding="utf-8")


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

"""Images tiled as one PNG grid, with an optional name (e.g. a class) on the left of each row."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import torch


def image_grid(images: torch.Tensor, nrow: int = 8, path: str | Path | None = None,
               row_names: Sequence[str] | None = None) -> bytes:
    """Images (N, C, H, W), uint8 or in [-1, 1], tiled as a PNG grid (returned, and written to `path`).

    row_names: a name for each row of the grid (e.g. its class), written in a margin on its left.
    """
    from PIL import Image
    from torchvision.utils import make_grid

    if images.dtype != torch.uint8:
        images = (images.detach().float().clamp(-1, 1) + 1).mul(127.5).round().to(torch.uint8)
    grid = make_grid(images.cpu(), nrow=nrow, padding=1, pad_value=255)  # (3, H', W') uint8
    picture = Image.fromarray(grid.permute(1, 2, 0).numpy())
    if row_names:
        picture = _name_rows(picture, row_names, images.shape[-2] + 1)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    data = buffer.getvalue()
    if path is not None:
        Path(path).write_bytes(data)
    return data


def _name_rows(picture, names: Sequence[str], row_height: int):
    """A grid picture with a white margin on its left holding each row's name, centred on the row."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=max(8, min(14, row_height // 3)))
    draw = ImageDraw.Draw(picture)
    width = max(int(draw.textlength(n, font=font)) for n in names) + 8
    out = Image.new("RGB", (picture.width + width, picture.height), (255, 255, 255))
    out.paste(picture, (width, 0))
    draw = ImageDraw.Draw(out)
    for i, name in enumerate(names):
        draw.text((width - 4, 1 + i * row_height + row_height // 2), name, fill=(0, 0, 0), font=font, anchor="rm")
    return out

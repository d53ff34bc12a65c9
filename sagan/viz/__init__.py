"""Pictures of a GAN: image grids, attention maps (as tensors and as overlays), and training curves.

maps.py             query points and each attention layer's maps as tensors (G and D)
attention_study.py  a run's maps: load its networks, pick images and points (`sagan attention`)
overlays.py         maps drawn over their images: the SAGAN figure
grids.py            images tiled as a PNG grid, with row names
curves.py           metrics.jsonl keys against step
figure.py           the matplotlib backend and PNG output the drawings share
"""

from sagan.checkpoint import load_discriminator  # where it lives now; kept here for old callers
from sagan.viz.attention_study import AttentionStudy, attention_study, load_image
from sagan.viz.curves import plot_curves
from sagan.viz.grids import image_grid
from sagan.viz.maps import (
    LayerMaps,
    attention_blocks,
    block_inputs,
    capture_attention,
    discriminator_attention,
    feature_point,
    generator_attention,
    grid_points,
    query_spread,
)
from sagan.viz.overlays import POINT_COLOURS, draw_attention, overlay, peak_ratio, to_rgb_array, upsample_map

__all__ = ["POINT_COLOURS", "AttentionStudy", "LayerMaps", "attention_blocks", "attention_study", "block_inputs",
           "capture_attention", "discriminator_attention", "draw_attention", "feature_point", "generator_attention",
           "grid_points", "image_grid", "load_discriminator", "load_image", "overlay", "peak_ratio", "plot_curves",
           "query_spread", "to_rgb_array", "upsample_map"]

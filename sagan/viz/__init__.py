"""Pictures of a GAN: image grids, attention maps (as tensors and as overlays), and training curves."""

from sagan.viz.maps import (
    POINT_COLOURS,
    AttentionStudy,
    LayerMaps,
    attention_blocks,
    attention_study,
    block_inputs,
    capture_attention,
    discriminator_attention,
    draw_attention,
    feature_point,
    generator_attention,
    grid_points,
    image_grid,
    load_discriminator,
    load_image,
    overlay,
    peak_ratio,
    plot_curves,
    query_spread,
    to_rgb_array,
    upsample_map,
)

__all__ = ["POINT_COLOURS", "AttentionStudy", "LayerMaps", "attention_blocks", "attention_study", "block_inputs",
           "capture_attention", "discriminator_attention", "draw_attention", "feature_point", "generator_attention",
           "grid_points", "image_grid", "load_discriminator", "load_image", "overlay", "peak_ratio", "plot_curves",
           "query_spread", "to_rgb_array", "upsample_map"]

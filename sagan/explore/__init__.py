"""An attention explorer: every attention row of G and D, packed into one self-contained HTML page."""

from sagan.explore.rows import (
    COLOUR_MAPS,
    ImageSet,
    Layer,
    attention_rows,
    build_explorer,
    class_mix,
    default_out,
    dequantise,
    explore_sets,
    pack,
    quantise,
    render_page,
)

__all__ = ["COLOUR_MAPS", "ImageSet", "Layer", "attention_rows", "build_explorer", "class_mix", "default_out",
           "dequantise", "explore_sets", "pack", "quantise", "render_page"]

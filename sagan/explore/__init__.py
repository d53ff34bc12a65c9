"""An attention explorer: every attention row of G and D, packed into one self-contained HTML page.

SAGAN (Zhang et al., ICML 2019, arXiv:1805.08318), figure 1, shows where a few query points of a generated
image attend. The page generalises it: every query position of every attention layer is kept, so hovering or
clicking any pixel shows that query's full attention row, overlaid on the image. Rows come from the explicit
attention path (`SelfAttention.forward_explicit`), are quantised to 8 bits per weight with one float32 scale
per row (the row's largest weight), deflated and embedded as base64; the page's script (sagan/explore/assets/explore.js)
inflates them with the browser's own DecompressionStream. No network, no server.

rows.py  the image sets and every attention row of G and D on them
pack.py  8-bit rows with one scale per row, in one byte buffer
page.py  the self-contained HTML page (script and style from assets/), kept under a size limit
"""

from sagan.explore.pack import COLOUR_MAPS, dequantise, pack, quantise
from sagan.explore.page import build_explorer, default_out, render_page
from sagan.explore.rows import ImageSet, Layer, attention_rows, class_mix, explore_sets

__all__ = ["COLOUR_MAPS", "ImageSet", "Layer", "attention_rows", "build_explorer", "class_mix", "default_out",
           "dequantise", "explore_sets", "pack", "quantise", "render_page"]

"""One self-contained HTML page about a training run: samples, curves, attention maps, scores, config.

html.py      the frame every sagan page shares: inline styles, data-URI images, no scripts, no network
sections.py  the run report's sections, each an HTML fragment from what the run folder holds
build.py     build_report: the page from its sections
"""

from sagan.report.build import build_report
from sagan.report.html import data_uri, escape, html_page, html_table, img_tag

__all__ = ["build_report", "data_uri", "escape", "html_page", "html_table", "img_tag"]

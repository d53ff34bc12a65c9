"""One self-contained HTML page about a training run: samples, curves, attention maps, scores, config."""

# _img and _last_per_step: the study pages and the tests import them from here
from sagan.report.sections import _img, _last_per_step, build_report, data_uri, html_page  # noqa: F401

__all__ = ["build_report", "data_uri", "html_page"]

"""The frame every sagan HTML page shares (the run report, the study and search pages): one self-contained
file with its styles inline, images as base64 `data:` URIs, no scripts, and a Content-Security-Policy that
forbids any network load, so the page opens the same from a laptop, a mail attachment or an archive.
"""

from __future__ import annotations

import base64
import datetime
import html
from collections.abc import Sequence

CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto; max-width: 1180px;
       padding: 0 20px 40px; color: #1d2125; background: #fff; }
h1 { font-size: 22px; margin: 22px 0 4px; } h2 { font-size: 18px; margin: 28px 0 8px; border-bottom: 1px solid #ddd; }
h3 { font-size: 14px; margin: 14px 0 6px; }
.muted { color: #666; } .small { font-size: 12px; }
table { border-collapse: collapse; margin: 6px 0 12px; font-size: 13px; }
td, th { border: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f4f5f7; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.grid { display: flex; flex-wrap: wrap; gap: 12px; }
figure { margin: 0; } figcaption { font-size: 12px; color: #555; text-align: center; }
img.pixel { image-rendering: pixelated; }
img.wide { max-width: 100%; height: auto; }
pre { background: #f6f8fa; padding: 10px; overflow-x: auto; font-size: 12px; }
.alarm { background: #fff4f4; border-left: 4px solid #d33; padding: 6px 10px; margin: 6px 0; }
.ok { background: #f3fbf4; border-left: 4px solid #3a3; padding: 6px 10px; margin: 6px 0; }
nav a { margin-right: 12px; }
"""


def escape(value: object) -> str:
    """Any value as HTML text, quotes included."""
    return html.escape(str(value), quote=True)


def html_table(header: list[str], rows: list[list[str]]) -> str:
    """A plain <table> of escaped cells under a header row."""
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def data_uri(png: bytes) -> str:
    """PNG bytes as a `data:image/png;base64,...` URI."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def img_tag(png: bytes, alt: str, css: str = "wide", width: int | None = None) -> str:
    """An <img> tag showing PNG bytes inline (as a data URI); css: "wide" (scaled to fit) or "pixel" (crisp)."""
    size = f' width="{width}"' if width else ""
    return f'<img class="{css}" src="{data_uri(png)}" alt="{escape(alt)}"{size}>'


def html_page(title: str, source: str, sections: Sequence[tuple[str, str, str]]) -> str:
    """A self-contained page: a title, a line saying when and by what it was written (`source`: from what),
    a navigation bar, and (key, heading, html) sections; images only as data URIs, no scripts, no network."""
    import sagan

    now = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    nav = "".join(f'<a href="#{key}">{escape(heading)}</a>' for key, heading, _ in sections)
    body = "".join(f'<section id="{key}"><h2>{escape(heading)}</h2>{content}</section>'
                   for key, heading, content in sections)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)}</title>
<style>{CSS}</style>
</head>
<body>
<h1>{escape(title)}</h1>
<p class="muted small">Written {escape(now)} by sagan {escape(sagan.__version__)}{escape(source)};
self-contained (no network needed).</p>
<nav>{nav}</nav>
{body}
</body>
</html>
"""

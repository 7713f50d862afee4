"""HTML building blocks of the report page: escaped tables, sections, the page shell.

The page is self-contained: plotly.js is inlined once in ``<head>`` (the bundle of the installed
plotly), images are ``data:`` URIs, and there is no ``<link>``, web font or remote ``src``.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

__all__ = ["Html", "esc", "link", "fmt", "html_table", "kv_table", "frame_table", "page"]

CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222;
       padding: 0 1em; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2em;
       margin-top: 2em; }
table { border-collapse: collapse; margin: 0.5em 0 1.2em; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 2px 8px; vertical-align: top;
         overflow-wrap: anywhere; max-width: 40em; }
th { background: #f3f3f3; text-align: left; }
td.num { font-family: monospace; text-align: right; }
figure { display: inline-block; margin: 0 1em 1em 0; vertical-align: top; }
figure img { image-rendering: pixelated; border: 1px solid #ddd; max-width: 100%; }
figcaption { font-size: 0.8em; color: #555; }
pre { background: #f6f6f6; padding: 1em; font-size: 0.75em; overflow-x: auto; }
.meta, .no-runs { color: #666; font-size: 0.9em; }
.reproduced { background: #e3f6e3; } .not-reproduced { background: #fbe3e3; }
.within-noise { background: #fdf5d8; } .not-covered { color: #888; }
details { margin: 0.3em 0 1em; } summary { cursor: pointer; color: #335; }
"""


@dataclass(frozen=True)
class Html:
    """A table cell that is already HTML (built with :func:`link`); not escaped again. (Not a
    ``str`` subclass: pandas would turn a column of those back into plain, escaped strings.)"""

    html: str

    def __str__(self) -> str:
        return self.html


def esc(v: Any) -> str:
    return html.escape(str(v))


def link(text: Any, url: str | None) -> Html:
    """``text`` as a link to ``url`` (http(s) only, opens outside the page); plain escaped text
    when there is no such url."""
    if not url or not str(url).startswith(("https://", "http://")):
        return Html(esc(text))
    return Html(f'<a href="{esc(url)}" rel="noopener">{esc(text)}</a>')


def fmt(v: Any) -> str:
    """Numbers to 4 significant digits, whole numbers below a million (counts: parameters,
    steps, samples) in full; NaN/None as empty."""
    if v is None:
        return ""
    if isinstance(v, float):
        if v != v:
            return ""
        return f"{v:.0f}" if v.is_integer() and abs(v) < 1e6 else f"{v:.4g}"
    return str(v)


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def html_table(
    header: Sequence[str], rows: Iterable[Sequence[Any]], row_classes: Sequence[str] | None = None
) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        cls = f' class="{row_classes[i]}"' if row_classes else ""
        cells = "".join(
            f"<td>{v.html}</td>"
            if isinstance(v, Html)
            else f'<td class="num">{esc(fmt(v))}</td>'
            if _is_num(v)
            else f"<td>{esc(fmt(v))}</td>"
            for v in row
        )
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def kv_table(rows: Mapping[str, Any]) -> str:
    return html_table(["key", "value"], list(rows.items()))


def frame_table(
    df: pd.DataFrame, columns: Sequence[str] | None = None, row_classes: Sequence[str] | None = None
) -> str:
    cols = list(columns or df.columns)
    rows = [
        [None if (isinstance(v, float) and v != v) else v for v in r]
        for r in df[cols].itertuples(index=False)
    ]
    return html_table(cols, rows, row_classes)


def page(title: str, body: str, plotly_js: str) -> str:
    """The whole document; ``plotly_js`` is the plotly.js bundle's source, inlined."""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(title)}</title>
<style>{CSS}</style>
<script type="text/javascript">{plotly_js}</script>
</head><body>
{body}
</body></html>
"""

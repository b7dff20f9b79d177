"""A self-contained HTML report: sections of text, tables and PNG figures embedded as base64.

The page needs no network and no other file to view. Every table and figure carries the run (folder or
file) its numbers come from, so a reader can trace each number back.

>>> report = Report("senformer study")
>>> report.section("Accuracy")
>>> report.table(frame, caption="Pearson r per assay group", source="evaluate/metrics.json")
>>> report.write("report.html")
"""

from __future__ import annotations

import base64
import datetime as _datetime
import html
import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .. import __version__
from ..io import atomic_write_text
from ..plots import figure_png

STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1100px;
       color: #222; line-height: 1.45; padding: 0 1em; }
h1 { font-size: 1.7em; margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.88em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f3f3f3; } td.text, th.text { text-align: left; }
.table { overflow-x: auto; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption, .caption { font-size: 0.9em; color: #444; }
.source { font-size: 0.8em; color: #777; font-family: monospace; }
.meta { color: #666; font-size: 0.9em; }
.summary { background: #f6f8fa; border: 1px solid #dde3ea; padding: 0.2em 1.2em 0.6em; }
.summary h2 { border: none; margin-top: 0.6em; } .summary li { margin: 0.35em 0; }
"""


@dataclass
class _Block:
    kind: str
    html: str


class Report:
    """Builds one HTML page: ``section``, ``paragraph``, ``table``, ``figure``; ``write`` saves it atomically."""

    def __init__(self, title: str, subtitle: str = ""):
        self.title = title
        self.subtitle = subtitle
        self.blocks: list[_Block] = []
        self.summary_blocks: list[_Block] = []

    def summary(self, title: str, items: Sequence[str], note: str = "") -> None:
        """Bullets shown first, above every section, whenever they are added (a summary of findings is
        written last, from the numbers the sections read)."""
        bullets = "".join(f"<li>{html.escape(item)}</li>" for item in items)
        extra = f'<p class="meta">{html.escape(note)}</p>' if note else ""
        self.summary_blocks.append(_Block("summary", f'<div class="summary"><h2>{html.escape(title)}</h2>'
                                                     f"<ul>{bullets}</ul>{extra}</div>"))

    def opening(self, title: str, parts: Sequence[tuple[str, str]]) -> None:
        """The first block of the page, above the summary and every section: labelled paragraphs (the
        question, what was done, the verdict and how sure it is), before any table or figure."""
        paragraphs = "".join(f"<p><strong>{html.escape(label)}</strong> {html.escape(text)}</p>" for label, text in parts)
        self.summary_blocks.insert(0, _Block("opening", f'<div class="summary" id="opening"><h2>{html.escape(title)}'
                                                        f"</h2>{paragraphs}</div>"))

    def bullets(self, items: Sequence[str]) -> None:
        self.blocks.append(_Block("bullets", "<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in items) + "</ul>"))

    def section(self, title: str, text: str = "") -> None:
        self.blocks.append(_Block("section", f"<h2>{html.escape(title)}</h2>"))
        if text:
            self.paragraph(text)

    def paragraph(self, text: str) -> None:
        self.blocks.append(_Block("paragraph", f"<p>{html.escape(text)}</p>"))

    def table(self, frame: pd.DataFrame, caption: str, source: str | Sequence[str], digits: int = 4) -> None:
        """A table; floats shown with ``digits`` significant digits, NaN as an em dash."""
        header = "".join(f'<th class="{_cell_class(frame[c])}">{html.escape(str(c))}</th>' for c in frame.columns)
        rows = []
        for _, row in frame.iterrows():
            cells = "".join(
                f'<td class="{_cell_class(frame[c])}">{html.escape(_format(row[c], digits))}</td>' for c in frame.columns
            )
            rows.append(f"<tr>{cells}</tr>")
        self.blocks.append(_Block("table", (
            f'<div class="table"><p class="caption">{html.escape(caption)}</p>'
            f"<table><thead><tr>{header}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
            f"{_source(source)}</div>"
        )))

    def figure(self, figure: Figure | bytes, caption: str, source: str | Sequence[str], alt: str = "") -> None:
        """A figure (a matplotlib ``Figure`` or PNG bytes) embedded as a base64 data URI."""
        png = figure if isinstance(figure, (bytes, bytearray)) else figure_png(figure)
        if not bytes(png[:8]) == b"\x89PNG\r\n\x1a\n":
            raise ValueError(f"figure {caption!r} is not a PNG image")
        data = base64.b64encode(bytes(png)).decode("ascii")
        self.blocks.append(_Block("figure", (
            f'<figure><img alt="{html.escape(alt or caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(caption)}</figcaption>{_source(source)}</figure>"
        )))

    def to_html(self) -> str:
        created = _datetime.datetime.now(_datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        subtitle = f'<p class="meta">{html.escape(self.subtitle)}</p>' if self.subtitle else ""
        body = "\n".join(block.html for block in [*self.summary_blocks, *self.blocks])
        return (
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(self.title)}</title><style>{STYLE}</style></head><body>"
            f"<h1>{html.escape(self.title)}</h1>{subtitle}"
            f'<p class="meta">senformer {__version__}, written {created}</p>\n{body}\n</body></html>\n'
        )

    def write(self, path: str | os.PathLike) -> None:
        atomic_write_text(path, self.to_html())


def _source(source: str | Sequence[str]) -> str:
    sources = [source] if isinstance(source, str) else list(source)
    return f'<p class="source">source: {html.escape(", ".join(str(s) for s in sources))}</p>'


def _cell_class(column: pd.Series) -> str:
    return "num" if pd.api.types.is_numeric_dtype(column) else "text"


def _format(value, digits: int) -> str:
    if isinstance(value, (float, np.floating)):
        if not np.isfinite(value):
            return "—"
        return f"{value:.{digits}g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"
    return str(value)

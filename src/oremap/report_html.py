"""The blocks of the run report and their HTML: one self-contained page (inline CSS, images as
data URIs, no script), small enough to open anywhere.

A leaf module: :mod:`oremap.report` reads a run folder into these blocks.
"""

from __future__ import annotations

import ast
import base64
import functools
import html
import io as pyio
import math
import numbers
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from oremap.errors import InputDataError

__all__ = [
    "COORDINATE_COLUMNS",
    "Paragraph",
    "Preformatted",
    "Note",
    "Missing",
    "Table",
    "Image",
    "Row",
    "Columns",
    "Details",
    "Warning_",
    "Block",
    "Section",
    "IMAGE_WIDTH",
    "format_column",
    "readable",
    "optimise_png",
    "render_html",
]

# ---------------------------------------------------------------------------------------------
# blocks and sections
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Paragraph:
    """A paragraph of text, HTML-escaped unless ``trusted_html`` (then inserted verbatim)."""

    text: str
    trusted_html: bool = False


@dataclass(frozen=True)
class Preformatted:
    """Verbatim text in a ``<pre>`` block (escaped), e.g. the configuration file."""

    text: str


@dataclass(frozen=True)
class Note:
    """A highlighted plain-text note."""

    text: str


@dataclass(frozen=True)
class Missing:
    """Note that a stage, or one of its outputs, is absent from the run directory.

    ``ran=False``: "Stage "X" has not been run (PATH not found)."; ``ran=True``: the stage
    ran but did not write ``path``.
    """

    stage: str
    path: str = ""
    ran: bool = False

    @property
    def text(self) -> str:
        """The note shown in the report."""
        if self.ran:
            return f"Stage \u201c{self.stage}\u201d ran but did not write {self.path}."
        where = f" ({self.path} not found)" if self.path else ""
        return f"Stage \u201c{self.stage}\u201d has not been run{where}."


@dataclass(frozen=True)
class Table:
    """A table, at most ``max_rows`` rows: a column whose values are all whole numbers shows
    them without decimals, other numbers with 3 decimals (none from 10,000 up), NaN as a dash,
    lists as comma-separated text; snake_case headers are shown with spaces."""

    df: pd.DataFrame
    caption: str = ""
    max_rows: int = 200
    compact: bool = False


@dataclass(frozen=True)
class Image:
    """A PNG file embedded as a base64 data URI, with a caption.

    Images wider than ``width`` px are scaled down to it and stored with at most 256 colours
    when that makes them smaller; ``css_class`` is set on the ``<figure>``.
    """

    path: Path
    caption: str = ""
    css_class: str = ""
    width: int = 0  # 0: IMAGE_WIDTH


@dataclass(frozen=True)
class Row:
    """Blocks shown side by side (wrapping on narrow screens)."""

    blocks: Sequence[Block]


@dataclass(frozen=True)
class Columns:
    """Two columns (left wider), stacked on narrow screens: the report's first screen."""

    left: Sequence[Block]
    right: Sequence[Block]


@dataclass(frozen=True)
class Details:
    """Blocks folded under a one-line summary (``<details>``), for long or secondary content."""

    summary: str
    blocks: Sequence[Block]


@dataclass(frozen=True)
class Warning_:
    """A warning box: something that limits how far the results can be trusted."""

    text: str


Block = (Paragraph | Preformatted | Note | Missing | Table | Image | Row | Columns | Details
         | Warning_)


@dataclass
class Section:
    """A report section: ``anchor`` is its id for the table of contents (letters, digits, -)."""

    title: str
    anchor: str
    blocks: list[Block] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# rendering
# ---------------------------------------------------------------------------------------------

#: Images are scaled down to at most this width (px): the page's content width.
IMAGE_WIDTH = 1150

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;
margin:0 auto;max-width:1200px;padding:0 1.2em 3em;color:#1d1d1f;line-height:1.4}
header{border-bottom:2px solid #2c4f8f;display:flex;flex-wrap:wrap;align-items:baseline;
gap:0 1em}
h1{font-size:1.35em;margin:.35em 0 .2em}.subtitle{color:#666;margin:0 0 .3em;font-size:.8em}
h2{border-bottom:1px solid #ccc;padding-bottom:.15em;margin:1.6em 0 .5em;font-size:1.3em}
section:first-child h2{margin-top:.4em}
h3{margin:1em 0 .3em;font-size:1.05em}
nav{font-size:.8em}nav h2{display:none}nav ol{list-style:none;padding:0;margin:.3em 0}
nav li{display:inline;margin-right:.9em}nav a{text-decoration:none;color:#2c4f8f}
pre{background:#f5f5f7;padding:.8em;overflow-x:auto;font-size:.85em;border-radius:4px}
.note{background:#fff6e0;border-left:4px solid #e0a000;padding:.4em .8em;margin:.5em 0}
.missing{background:#f1f1f1;border-left:4px solid #999;padding:.4em .8em;margin:.5em 0;
color:#444}
.tablewrap{overflow-x:auto;margin:.5em 0}
table{border-collapse:collapse;font-size:.85em}
caption{caption-side:top;text-align:left;font-weight:600;padding:.3em 0}
th,td{border:1px solid #ddd;padding:.2em .5em;text-align:right}
th{background:#eef1f7;word-break:normal;overflow-wrap:normal;hyphens:none;max-width:14em;
vertical-align:bottom}
td.text,th.text{text-align:left}
td.text{overflow-wrap:break-word;max-width:24em}
.cols p{font-size:.92em;margin:.5em 0}
tbody tr:nth-child(even){background:#fafafa}
table.compact{font-size:.74em}table.compact td,table.compact th{padding:.12em .3em}
table.compact th{max-width:7em}.drivers{font-size:.85em}
figure{margin:.6em 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{color:#444;font-size:.85em}
.row{display:flex;flex-wrap:wrap;gap:1.2em;align-items:flex-start}
.row>div{min-width:0;max-width:100%;flex:1 1 22em}
.cols{display:grid;grid-template-columns:minmax(0,1fr) minmax(0,1.1fr);gap:1em;
align-items:start}
.cols>div{min-width:0}
@media (max-width:900px){.cols{grid-template-columns:minmax(0,1fr)}}
.cols figure{margin:0}.cols .warn{font-size:.85em}
.truncated{color:#777;font-size:.85em}
.warn{background:#fdecea;border-left:4px solid #c62828;padding:.35em .7em;margin:.4em 0}
.answer{font-size:1.12em;background:#eef5ec;border-left:4px solid #2e7d32;padding:.35em .8em;
margin:.3em 0 .6em}
details{margin:.5em 0}summary{cursor:pointer;color:#2c4f8f;font-weight:600}
main,section{max-width:100%}
"""

_ANCHOR = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_DASH = "\u2013"


def readable(name: Any) -> str:
    """A column or JSON key as a reader sees it: ``auc_drop_mean`` -> ``auc drop mean``."""
    return str(name).replace("_", " ").strip()


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(pd.isna(value)) if not isinstance(value, (list, tuple, dict)) else False
    except (TypeError, ValueError):
        return False


def _text_of(value: Any) -> str:
    """A non-numeric cell: lists and tuples as comma-separated text, dicts as "k: v" pairs."""
    if isinstance(value, (list, tuple, set, np.ndarray)):
        return ", ".join(_text_of(v) for v in value)
    if isinstance(value, dict):
        return "; ".join(f"{readable(k)}: {_text_of(v)}" for k, v in value.items())
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = str(value)
    if len(text) > 1 and text[0] + text[-1] in ("[]", "()"):  # a list written as its repr
        try:
            parsed = ast.literal_eval(text)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            return text
        if isinstance(parsed, (list, tuple)):
            return _text_of(parsed)
    return text


#: Coordinate columns: printed as a GIS reads them, without thousands separators.
COORDINATE_COLUMNS = frozenset({"x", "y", "centroid_x", "centroid_y", "xmin", "ymin", "xmax",
                                "ymax", "easting", "northing"})


def _number(v: float, integral: bool, grouping: bool = True) -> str:
    if not grouping:
        return f"{v:.0f}" if integral or abs(v) >= 1e4 else f"{v:.3f}"
    if integral or abs(v) >= 1e4:
        return f"{v:,.0f}"
    return f"{v:.3f}"


def format_column(values: Sequence[Any], *, grouping: bool = True) -> list[tuple[str, bool]]:
    """(escaped text, is_text) per cell of one column.

    Numbers: a column whose finite numbers are all whole renders them without decimals
    (thousands separated unless ``grouping`` is False, as for coordinates), else with 3
    decimals (none from 10,000 up); NaN and None as a dash;
    booleans, strings and lists as text (lists comma-separated).
    """
    nums = [float(v) for v in values
            if isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)]
    integral = bool(nums) and all(v.is_integer() for v in nums)
    out = []
    for v in values:
        if isinstance(v, bool):
            out.append((str(v), True))
        elif _is_missing(v):
            out.append((_DASH, False))
        elif isinstance(v, numbers.Real):
            f = float(v)
            out.append((_number(f, integral, grouping) if math.isfinite(f) else str(f),
                        False))
        else:
            out.append((_soft_breaks(_text_of(v)), True))
    return out


_LONG_TOKEN = re.compile(r"\S{25,}")


def _soft_breaks(text: str) -> str:
    """Escaped ``text`` whose long tokens (paths, checksums) may wrap: ``<wbr>`` after each
    "/", "_", "-" or "." in them and every 16 characters of an unbroken run; short words
    never break."""
    def breaks(m: re.Match[str]) -> str:
        parts = re.split(r"(?<=[/_.-])", m.group(0))
        return "<wbr>".join("<wbr>".join(html.escape(part[i:i + 16])
                                         for i in range(0, len(part), 16)) for part in parts)

    out, last = [], 0
    for m in _LONG_TOKEN.finditer(text):
        out += [html.escape(text[last:m.start()]), breaks(m)]
        last = m.end()
    return "".join(out) + html.escape(text[last:])


def _render_table(block: Table) -> str:
    df = block.df
    if not isinstance(df.index, pd.RangeIndex) or df.index.name is not None:
        df = df.reset_index()
    shown = df.head(block.max_rows)
    head = "".join(f'<th class="text">{html.escape(readable(c))}</th>' for c in shown.columns)
    columns = [format_column(list(shown.iloc[:, j]),
                             grouping=str(shown.columns[j]) not in COORDINATE_COLUMNS)
               for j in range(shown.shape[1])]
    rows = []
    for i in range(len(shown)):
        rows.append("<tr>" + "".join(
            f'<td class="text">{col[i][0]}</td>' if col[i][1] else f"<td>{col[i][0]}</td>"
            for col in columns) + "</tr>")
    caption = f"<caption>{html.escape(block.caption)}</caption>" if block.caption else ""
    more = ""
    if len(df) > block.max_rows:
        more = (f'<p class="truncated">First {block.max_rows} of {len(df)} rows shown; the '
                "full table is in the run directory.</p>")
    cls = ' class="compact"' if block.compact else ""
    return (f'<div class="tablewrap"><table{cls}>{caption}<thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table>{more}</div>")


@functools.lru_cache(maxsize=64)
def optimise_png(data: bytes, width: int = IMAGE_WIDTH) -> bytes:
    """``data`` (a PNG) scaled down to at most ``width`` px and stored with at most 256
    colours (transparency flattened onto white), or ``data`` itself when that is no smaller
    or Pillow cannot read it. Cached by content: the report stage renders twice."""
    try:
        from PIL import Image as PILImage
    except ImportError:  # pragma: no cover - Pillow comes with matplotlib
        return data
    try:
        with PILImage.open(pyio.BytesIO(data)) as im:
            im.load()
            if im.mode in ("RGBA", "LA", "P"):
                rgba = im.convert("RGBA")
                flat = PILImage.new("RGB", rgba.size, "white")
                flat.paste(rgba, mask=rgba.getchannel("A"))
            else:
                flat = im.convert("RGB")
        if flat.width > width:
            height = max(1, round(flat.height * width / flat.width))
            flat = flat.resize((width, height), PILImage.Resampling.LANCZOS)
        small = flat.quantize(colors=256, method=PILImage.Quantize.MEDIANCUT,
                              dither=PILImage.Dither.NONE)
        buf = pyio.BytesIO()
        small.save(buf, format="PNG", optimize=True)
    except (OSError, ValueError):
        return data
    out = buf.getvalue()
    return out if len(out) < len(data) else data


def _render_image(block: Image) -> str:
    path = Path(block.path)
    caption = html.escape(block.caption or path.stem)
    try:
        data = path.read_bytes()
    except OSError as exc:
        return f'<p class="note">Image {html.escape(str(path))} could not be read ({exc}).</p>'
    if not data.startswith(_PNG_MAGIC):
        return f'<p class="note">{html.escape(str(path))} is not a PNG image; not embedded.</p>'
    if len(data) > 40_000:  # small images are embedded as they are
        data = optimise_png(data, block.width or IMAGE_WIDTH)
    uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
    cls = f' class="{html.escape(block.css_class)}"' if block.css_class else ""
    return (f'<figure{cls}><img src="{uri}" alt="{caption}">'
            f"<figcaption>{caption}</figcaption></figure>")


def _render_block(block: Block) -> str:
    match block:
        case Paragraph(text=text, trusted_html=True):
            return text
        case Paragraph(text=text):
            return f"<p>{html.escape(text)}</p>"
        case Preformatted(text=text):
            return f"<pre>{html.escape(text)}</pre>"
        case Note(text=text):
            return f'<p class="note">{html.escape(text)}</p>'
        case Missing():
            return f'<p class="missing">{html.escape(block.text)}</p>'
        case Table():
            return _render_table(block)
        case Image():
            return _render_image(block)
        case Row(blocks=blocks):
            inner = "".join(f"<div>{_render_block(b)}</div>" for b in blocks)
            return f'<div class="row">{inner}</div>'
        case Columns(left=left, right=right):
            return ('<div class="cols"><div>' + "".join(_render_block(b) for b in left)
                    + "</div><div>" + "".join(_render_block(b) for b in right) + "</div></div>")
        case Details(summary=summary, blocks=blocks):
            inner = "".join(_render_block(b) for b in blocks)
            return f"<details><summary>{html.escape(summary)}</summary>{inner}</details>"
        case Warning_(text=text):
            return f'<p class="warn"><strong>Warning.</strong> {html.escape(text)}</p>'
        case _:
            raise InputDataError(f"cannot render report block of type {type(block).__name__}; "
                                 "use Paragraph, Preformatted, Note, Missing, Table, Image, Row, "
                                 "Columns, Details or Warning_.")


def render_html(title: str, sections: Sequence[Section], *, subtitle: str = "") -> str:
    """Render sections as one self-contained HTML page with a table of contents.

    Parameters
    ----------
    title, subtitle : str
        Page heading (escaped).
    sections : sequence of Section
        In display order; their anchors must be unique identifiers.

    Returns
    -------
    str
        HTML5 text with inline CSS, images as data URIs and no external links or scripts.

    Raises
    ------
    InputDataError
        If an anchor is not an identifier (letter first, then letters, digits, "_" or "-") or
        repeats, or a block is of an unknown type.
    """
    seen: set[str] = set()
    for s in sections:
        if not _ANCHOR.match(s.anchor) or s.anchor in seen:
            raise InputDataError(f"section {s.title!r}: anchor {s.anchor!r} must be unique and "
                                 "start with a letter followed by letters, digits, '_' or '-'.")
        seen.add(s.anchor)
    toc = "".join(f'<li><a href="#{s.anchor}">{html.escape(s.title)}</a></li>' for s in sections)
    body = "".join(
        f'<section id="{s.anchor}"><h2>{html.escape(s.title)}</h2>'
        + "".join(_render_block(b) for b in s.blocks) + "</section>"
        for s in sections
    )
    sub = f'<p class="subtitle">{html.escape(subtitle)}</p>' if subtitle else ""
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
            f"<header><h1>{html.escape(title)}</h1>{sub}</header>"
            f"<nav><h2>Contents</h2><ol>{toc}</ol></nav><main>{body}</main></body></html>\n")

"""The run report: one self-contained HTML file (inline CSS, images as data URIs, offline)."""

from __future__ import annotations

import base64
import html
import json
import math
import numbers
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from oremap import io
from oremap.contract import RUN_FILES
from oremap.contract import file as F
from oremap.errors import InputDataError
from oremap.recommend import recommend

__all__ = [
    "Paragraph",
    "Preformatted",
    "Note",
    "Missing",
    "Table",
    "Image",
    "Row",
    "Details",
    "Warning_",
    "Block",
    "Section",
    "render_html",
    "collect_sections",
    "build_report",
    "SECTION_TITLES",
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
    """A table: floats shown with 3 decimals, NaN as a dash, at most ``max_rows`` rows."""

    df: pd.DataFrame
    caption: str = ""
    max_rows: int = 200


@dataclass(frozen=True)
class Image:
    """A PNG file embedded as a base64 data URI, with a caption."""

    path: Path
    caption: str = ""


@dataclass(frozen=True)
class Row:
    """Blocks shown side by side (wrapping on narrow screens)."""

    blocks: Sequence[Block]


@dataclass(frozen=True)
class Details:
    """Blocks folded under a one-line summary (``<details>``), for long or secondary content."""

    summary: str
    blocks: Sequence[Block]


@dataclass(frozen=True)
class Warning_:
    """A warning box: something that limits how far the results can be trusted."""

    text: str


Block = Paragraph | Preformatted | Note | Missing | Table | Image | Row | Details | Warning_


@dataclass
class Section:
    """A report section: ``anchor`` is its id for the table of contents (letters, digits, -)."""

    title: str
    anchor: str
    blocks: list[Block] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# rendering
# ---------------------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;
margin:0 auto;max-width:1200px;padding:0 1.5em 3em;color:#1d1d1f;line-height:1.45}
header{border-bottom:2px solid #2c4f8f;margin-bottom:1em}
h1{margin-bottom:.1em}.subtitle{color:#555;margin-top:0}
h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
h3{margin-bottom:.3em}
nav{font-size:.9em}nav h2{display:none}nav ol{list-style:none;padding:0;margin:.4em 0}
nav li{display:inline;margin-right:1.1em}nav a{text-decoration:none;color:#2c4f8f}
pre{background:#f5f5f7;padding:.8em;overflow-x:auto;font-size:.85em;border-radius:4px}
.note{background:#fff6e0;border-left:4px solid #e0a000;padding:.5em .8em;margin:.6em 0}
.missing{background:#f1f1f1;border-left:4px solid #999;padding:.5em .8em;margin:.6em 0;
color:#444}
.tablewrap{overflow-x:auto;margin:.6em 0}
table{border-collapse:collapse;font-size:.85em}
caption{caption-side:top;text-align:left;font-weight:600;padding:.3em 0}
th,td{border:1px solid #ddd;padding:.25em .6em;text-align:right}
th{background:#eef1f7}td.text,th.text{text-align:left}
tbody tr:nth-child(even){background:#fafafa}
figure{margin:1em 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{color:#444;font-size:.9em}
.row{display:flex;flex-wrap:wrap;gap:2em;align-items:flex-start}
.row>div{min-width:0;max-width:100%}
.truncated{color:#777;font-size:.85em}
td.text{overflow-wrap:anywhere;max-width:22em}th{max-width:22em}
.warn{background:#fdecea;border-left:4px solid #c62828;padding:.5em .8em;margin:.6em 0}
.answer{font-size:1.08em;background:#eef5ec;border-left:4px solid #2e7d32;padding:.6em .9em}
details{margin:.6em 0}summary{cursor:pointer;color:#2c4f8f;font-weight:600}
main,section{max-width:100%}th{overflow-wrap:normal}
"""

_ANCHOR = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _cell(value: Any) -> tuple[str, bool]:
    """(escaped text, is_text) of one table cell; floats with 3 decimals, NaN as a dash."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "\u2013", False
    if isinstance(value, bool):
        return str(value), True
    if isinstance(value, numbers.Integral):
        return str(int(value)), False
    if isinstance(value, numbers.Real):
        v = float(value)
        if math.isnan(v):
            return "\u2013", False
        return (f"{v:,.0f}" if abs(v) >= 1e4 else f"{v:.3f}"), False
    return html.escape(str(value)), True


def _render_table(block: Table) -> str:
    df = block.df
    if not isinstance(df.index, pd.RangeIndex) or df.index.name is not None:
        df = df.reset_index()
    shown = df.head(block.max_rows)
    # long snake_case headers may break after each underscore, so columns narrow to their values
    head = "".join(f'<th class="text">{html.escape(str(c)).replace("_", "_<wbr>")}</th>'
                   for c in shown.columns)
    rows = []
    for record in shown.itertuples(index=False, name=None):
        cells = [_cell(v) for v in record]
        rows.append("<tr>" + "".join(
            f'<td class="text">{t}</td>' if is_text else f"<td>{t}</td>" for t, is_text in cells
        ) + "</tr>")
    caption = f"<caption>{html.escape(block.caption)}</caption>" if block.caption else ""
    more = ""
    if len(df) > block.max_rows:
        more = (f'<p class="truncated">First {block.max_rows} of {len(df)} rows shown; the '
                "full table is in the run directory.</p>")
    return (f'<div class="tablewrap"><table>{caption}<thead><tr>{head}</tr></thead><tbody>'
            f"{''.join(rows)}</tbody></table>{more}</div>")


def _render_image(block: Image) -> str:
    path = Path(block.path)
    caption = html.escape(block.caption or path.stem)
    try:
        data = path.read_bytes()
    except OSError as exc:
        return f'<p class="note">Image {html.escape(str(path))} could not be read ({exc}).</p>'
    if not data.startswith(_PNG_MAGIC):
        return f'<p class="note">{html.escape(str(path))} is not a PNG image; not embedded.</p>'
    uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
    return (f'<figure><img src="{uri}" alt="{caption}">'
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
        case Details(summary=summary, blocks=blocks):
            inner = "".join(_render_block(b) for b in blocks)
            return f"<details><summary>{html.escape(summary)}</summary>{inner}</details>"
        case Warning_(text=text):
            return f'<p class="warn"><strong>Warning.</strong> {html.escape(text)}</p>'
        case _:
            raise InputDataError(f"cannot render report block of type {type(block).__name__}; "
                                 "use Paragraph, Preformatted, Note, Missing, Table, Image, Row, "
                                 "Details or Warning_.")


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


# ---------------------------------------------------------------------------------------------
# collecting a run directory
# ---------------------------------------------------------------------------------------------

#: Report sections, in order: (anchor, title).
SECTION_TITLES: tuple[tuple[str, str], ...] = (
    ("summary", "Summary: which map to trust, where to drill"),
    ("data-summary", "Data summary"),
    ("evidence", "Evidence layers"),
    ("training", "Training"),
    ("evaluation", "Evaluation"),
    ("ensembles", "Ensembles and stability"),
    ("maps", "Maps"),
    ("targets", "Target areas"),
    ("success-rate", "Success-rate curves"),
    ("hidden-truth", "Hidden truth (demo only)"),
    ("timings", "Timings and versions"),
    ("configuration", "Configuration"),
)

#: Images that have a fixed place in the report; any other PNG in a stage folder is shown
#: at the end of that stage's section.
_PLACED_IMAGES = frozenset({
    "samples/cells.png", F("train", "loss_curves"), "evaluate/roc.png", "evaluate/pr.png",
    "evaluate/calibration.png", "evaluate/importance.png", "maps/maps_models.png",
    "maps/maps_rules.png", "maps/map_ensemble.png", "maps/uncertainty.png",
    "maps/success_rate.png", "maps/prediction_rate.png",
})


class _Run:
    """Reads whatever exists in a run directory and turns it into report blocks."""

    def __init__(self, run_dir: Path) -> None:
        self.dir = run_dir

    def ran(self, stage: str) -> bool:
        return (self.dir / stage).is_dir()

    def image(self, rel: str, caption: str, *, optional: bool = False) -> list[Block]:
        path = self.dir / rel
        if path.is_file():
            return [Image(path, caption)]
        return [] if optional else [Missing(rel.split("/")[0], rel, ran=True)]

    def table(self, rel: str, caption: str, *, optional: bool = False) -> list[Block]:
        path = self.dir / rel
        if not path.is_file():
            return [] if optional else [Missing(rel.split("/")[0], rel, ran=True)]
        try:
            df = pd.read_csv(path)
        except (OSError, ValueError) as exc:  # pandas' parser errors are ValueErrors
            return [Note(f"{rel} could not be read as a CSV table ({exc}).")]
        # a table written with its index has an unnamed first column
        return [Table(_merge_mean_std(df.rename(columns={"Unnamed: 0": ""})), caption)]

    def json(self, rel: str) -> tuple[Any, list[Block]]:
        """(parsed JSON or None, blocks with a note when absent or unreadable)."""
        path = self.dir / rel
        if not path.is_file():
            return None, [Missing(rel.split("/")[0], rel, ran=self.ran(rel.split("/")[0]))]
        try:
            return json.loads(path.read_text()), []
        except (OSError, ValueError) as exc:
            return None, [Note(f"{rel} could not be read as JSON ({exc}).")]

    def text(self, rel: str) -> str | None:
        path = self.dir / rel
        try:
            return path.read_text() if path.is_file() else None
        except (OSError, UnicodeDecodeError):
            return None

    def extra_images(self, stage: str, *, skip: Iterable[str] = ()) -> list[Block]:
        """Every PNG under ``stage/`` without a fixed place in the report, sorted by path."""
        if not self.ran(stage):
            return []
        skipped = set(skip) | _PLACED_IMAGES
        out: list[Block] = []
        for path in sorted((self.dir / stage).rglob("*.png")):
            rel = path.relative_to(self.dir).as_posix()
            if rel not in skipped:
                out.append(Image(path, rel))
        return out


def _merge_mean_std(df: pd.DataFrame) -> pd.DataFrame:
    """Columns ``X_mean`` and ``X_std`` (fold summaries) shown as one column ``X``:
    "mean ± std", so that fold tables fit the page."""
    out = df.copy()
    for col in list(df.columns):
        name = str(col)
        if not name.endswith("_mean") or f"{name[:-5]}_std" not in df.columns:
            continue
        base, std = name[:-5], f"{name[:-5]}_std"
        mean_v = pd.to_numeric(df[col], errors="coerce")
        std_v = pd.to_numeric(df[std], errors="coerce")
        if mean_v.isna().all():
            continue
        merged = [("\u2013" if pd.isna(m) else f"{m:.3f}" if pd.isna(sd) else
                   f"{m:.3f} \u00b1 {sd:.3f}") for m, sd in zip(mean_v, std_v)]
        out.insert(out.columns.get_loc(col), base, merged)
        out = out.drop(columns=[col, std])
    return out


def _heading(text: str) -> Paragraph:
    return Paragraph(f"<h3>{html.escape(text)}</h3>", trusted_html=True)


def _is_scalar(v: Any) -> bool:
    return v is None or isinstance(v, (str, bool, numbers.Number))


def _json_blocks(obj: Any, name: str = "", depth: int = 0) -> list[Block]:
    """Generic JSON -> blocks: flat dicts and lists of records become tables."""
    if _is_scalar(obj):
        return [Paragraph(f"{name}: {obj}" if name else str(obj))]
    if isinstance(obj, list):
        if obj and all(isinstance(x, dict) and all(_is_scalar(v) for v in x.values())
                       for x in obj):
            return [Table(pd.DataFrame(obj), name)]
        if all(_is_scalar(x) for x in obj):
            return [Paragraph(f"{name}: " + ", ".join(str(x) for x in obj))]
        return [Preformatted(json.dumps(obj, indent=2))]
    scalars = {k: v for k, v in obj.items() if _is_scalar(v)}
    nested = {k: v for k, v in obj.items() if not _is_scalar(v)}
    blocks: list[Block] = []
    if scalars:
        blocks.append(Table(pd.DataFrame({"item": list(scalars),
                                          "value": [_scalar_text(v) for v in scalars.values()]}),
                            name))
    records = {k: v for k, v in nested.items()
               if isinstance(v, dict) and v and all(_is_scalar(x) for x in v.values())}
    if len(records) > 1 and len({tuple(v) for v in records.values()}) == 1:  # same keys
        df = pd.DataFrame.from_dict(records, orient="index")
        df.index.name = name or "key"
        blocks.append(Table(df))
        nested = {k: v for k, v in nested.items() if k not in records}
    for k, v in nested.items():
        if depth >= 3:
            blocks.append(Preformatted(f"{k}: {json.dumps(v, indent=2)}"))
            continue
        blocks.append(_heading(str(k)))
        blocks.extend(_json_blocks(v, "", depth + 1))
    return blocks


def _scalar_text(v: Any) -> Any:
    """Keep numbers numeric (for 3-decimal formatting) but stringify the rest."""
    return v if isinstance(v, numbers.Number) and not isinstance(v, bool) else str(v)


# ------------------------------------------------------------------------------ the sections


def _configuration(run: _Run) -> list[Block]:
    text = run.text(RUN_FILES["config"])
    if text is None:
        return [Note("No config.toml in the run directory: the resolved configuration was not "
                     "saved (the pipeline writes it when a run starts).")]
    return [Details("Resolved configuration of this run (config.toml, verbatim)",
                    [Preformatted(text)])]


def _summary(run: _Run) -> list[Block]:

    try:
        rec = recommend(run.dir)
    except (OSError, ValueError, KeyError) as exc:
        return [Note(f"The summary could not be computed ({type(exc).__name__}: {exc}).")]
    if rec is None:
        if not run.ran("ensemble"):
            return [Missing("ensemble", F("ensemble", "comparison"))]
        return [Note("No recommendation: this run has no held-out comparison of members and "
                     f"rules ({F('ensemble', 'comparison')} with held-out ROC AUC per fold, "
                     f"and {F('ensemble', 'table')}); rerun the ensemble stage.")]
    blocks: list[Block] = [Paragraph(
        f'<p class="answer"><strong>Recommended map: {html.escape(rec.name)}</strong> '
        f"({html.escape(rec.map_file)}). {html.escape(rec.reason)}</p>", trusted_html=True)]
    if rec.capture:
        blocks.append(Paragraph(rec.capture))
    blocks += [Warning_(w) for w in rec.warnings]
    if rec.targets is not None and len(rec.targets):
        new = int((rec.targets["ground"] == "new ground").sum())
        source = f", drawn on {rec.target_map}" if rec.target_map else ""
        blocks.append(Table(rec.targets, f"Ranked target areas ({len(rec.targets)}; {new} on "
                                         f"new ground, without a known deposit{source})",
                            max_rows=12))
        if rec.drivers:
            blocks.append(Paragraph(
                "Drivers: the evidence layers with the largest permutation importance for "
                f"{rec.name} (drop of ROC AUC when the layer is shuffled): "
                + ", ".join(f"{k} {v:.3f}" for k, v in rec.drivers.items())
                + "; the percentile is the layer's mean in the target within the study "
                "area's values."))
    blocks.append(Details("Every member and rule by held-out ROC AUC",
                          [Table(rec.ranking, "Held-out ROC AUC (mean and std over folds), "
                                              "prediction-rate AUC")]))
    return blocks


def _data_summary(run: _Run) -> list[Block]:
    blocks: list[Block] = []
    if run.ran("samples"):
        manifest, notes = run.json(F("samples", "manifest"))
        blocks += [_heading("Samples: labels, splits, dropped cells, crops"), *notes]
        if manifest is not None:
            blocks.append(Details("Sample manifest (every count and option)",
                                  _json_blocks(manifest)))
        blocks += run.table(F("samples", "counts"), "Label and crop counts per class and split",
                            optional=True)
        blocks += run.image("samples/cells.png", "Cells and their labels")
        blocks += run.extra_images("samples")
        if run.ran("samples_random"):
            blocks.append(_heading("Samples for the random split protocol (comparison)"))
            blocks += run.extra_images("samples_random")
    else:
        blocks.append(Missing("samples", "samples/"))
    stack, notes = run.json(F("evidence", "stack"))
    if stack is not None and isinstance(stack, dict):
        layers = [{k: v for k, v in layer.items() if k not in ("path", "preview")}
                  for layer in stack.get("layers", []) if isinstance(layer, dict)]
        blocks.append(_heading("Evidence stack"))
        if layers:
            df = pd.DataFrame(layers)
            main = [c for c in ("name", "kind", "measure", "units", "min", "max", "mean",
                                "valid_fraction", "n_used", "n_dropped", "seconds")
                    if c in df.columns]
            rest = ["name", *[c for c in df.columns if c not in main]]
            blocks.append(Table(df[main], f"Evidence layers ({len(layers)})"))
            rasters = _raster_rows(layers)
            if rasters is not None:
                blocks.append(Table(rasters, f"Raster evidence ({len(rasters)} layers): source "
                                    "file, band, units and resampling"))
            blocks.append(Details("Sources, parameters and checksums of the evidence layers",
                                  [Table(df[rest])]))
        if isinstance(stack.get("grid"), dict):
            blocks.append(Details("Grid", _json_blocks(stack["grid"], "Grid")))
    elif run.ran("evidence"):
        blocks += notes
    return blocks


def _raster_rows(layers: list[dict[str, Any]]) -> pd.DataFrame | None:
    """One row per raster layer: file, band, units, resampling (as used), derived layer."""
    rows = []
    for layer in layers:
        if layer.get("kind") != "raster" or not isinstance(layer.get("parameters"), dict):
            continue
        p = layer["parameters"]
        what = {"gradient": "gradient magnitude", "texture": f"texture, radius {p.get('radius')}"
                }.get(p.get("derive"), "class fraction" if p.get("category") is not None
                      else "values")
        rows.append({"name": layer.get("name"), "file": Path(str(p.get("file", ""))).name,
                     "band": p.get("band"), "units": layer.get("units"),
                     "resampling": p.get("resampling_used"),
                     "file pixel": p.get("file_pixel_in_grid_units"), "layer": what,
                     "log10": "yes" if p.get("log10") else "no",
                     "clipped above": p.get("clip_value")})
    return pd.DataFrame(rows) if rows else None


def _evidence(run: _Run) -> list[Block]:
    if not run.ran("evidence"):
        return [Missing("evidence", "evidence/")]
    stack, blocks = run.json(F("evidence", "stack"))
    captions: dict[str, str] = {}
    for layer in (stack or {}).get("layers", []) if isinstance(stack, dict) else []:
        if isinstance(layer, dict) and layer.get("preview"):
            detail = ", ".join(str(layer[k]) for k in ("kind", "measure") if layer.get(k))
            captions[Path(str(layer["preview"])).name] = (
                f"{layer.get('name', '')}" + (f" ({detail})" if detail else ""))
    previews = sorted((run.dir / "evidence" / "previews").glob("*.png"))
    if not previews:
        blocks.append(Missing("evidence", "evidence/previews/*.png", ran=True))
    blocks += [Image(p, captions.get(p.name, p.stem)) for p in previews]
    return blocks + run.extra_images("evidence", skip=[
        p.relative_to(run.dir).as_posix() for p in previews])


def _training(run: _Run) -> list[Block]:
    if not run.ran("train"):
        return [Missing("train", "train/")]
    blocks = [*run.image(F("train", "loss_curves"), "Training and validation loss per epoch"),
              *run.table(F("train", "summary"), "Training summary per model and fold"),
              *run.extra_images("train")]
    if run.ran("train_random"):
        blocks += [_heading("Random split protocol (comparison)"),
                   *run.table(F("train", "random_summary"), "Training summary, random split",
                              optional=True),
                   *run.extra_images("train_random")]
    return blocks


def _evaluation(run: _Run) -> list[Block]:
    if not run.ran("evaluate"):
        return [Missing("evaluate", "evaluate/")]
    main = run.table(F("evaluate", "table1"), "Table 1: cell/block split protocol")
    random = run.table(F("evaluate", "table1_random"),
                       "Table 1: random split protocol (He et al.; optimistic)", optional=True)
    blocks: list[Block] = [Row([*main, *random])] if random else list(main)
    blocks += run.table(F("evaluate", "table1_folds"), "Table 1 per fold", optional=True)
    matrices = sorted((run.dir / "evaluate").glob("confusion_matrices*.png"))
    if not matrices:
        blocks.append(Missing("evaluate", "evaluate/confusion_matrices.png", ran=True))
    blocks += [Image(p, "Confusion matrices" + (
        " (random split)" if "random" in p.stem else "")) for p in matrices]
    for name, caption in (("roc", "ROC curves"), ("pr", "Precision-recall curves"),
                          ("calibration", "Calibration (reliability) diagram")):
        blocks += run.image(f"evaluate/{name}.png", caption)
    blocks += run.table(F("evaluate", "importance"), "Permutation importance of evidence layers")
    blocks += run.table(F("evaluate", "woe"), "Weights of evidence (fold 0): W+, W-, contrast C "
                        "and studentised contrast per layer, at the cutoff that maximises it",
                        optional=True)
    blocks += run.image("evaluate/importance.png", "Permutation importance")
    return blocks + run.extra_images("evaluate", skip=[
        p.relative_to(run.dir).as_posix() for p in matrices])


def _ensembles(run: _Run) -> list[Block]:
    if not run.ran("ensemble"):
        return [Missing("ensemble", "ensemble/")]
    blocks = run.table(F("ensemble", "table1"), "Table 1 for the ensembles")
    weights, notes = run.json(F("ensemble", "weights"))
    blocks += [_heading("Ensemble weights"), *notes]
    if weights is not None:
        blocks.append(Details("Ensemble weights and learned rules (weights.json)",
                              _json_blocks(weights)))
    blocks += run.table(F("ensemble", "table2"), "Table 2: ensembles")
    blocks += run.table(F("ensemble", "stability"), "Stability across folds")
    blocks += run.table(F("stability", "seed_stability"), "Stability across seeds", optional=True)
    blocks += run.table(F("ensemble", "comparison"),
                        "Models and rules: ROC AUC and success-rate AUC over folds",
                        optional=True)
    winner = run.text(F("ensemble", "comparison_md"))
    if winner:  # the verdict lines, as text (the table itself is shown above)
        for line in winner.splitlines():
            if line.strip() and not line.lstrip().startswith("|"):
                blocks.append(Paragraph(line.removeprefix("- ").replace("**", "")))
    return blocks + run.extra_images("ensemble")


def _maps(run: _Run) -> list[Block]:
    if not run.ran("maps"):
        return [Missing("maps", "maps/")]
    skip = {"maps/success_rate.png", "maps/prediction_rate.png"}
    return [*run.image("maps/maps_models.png", "Prospectivity map of each model"),
            *run.image("maps/maps_rules.png", "Prospectivity map of each ensemble rule",
                       optional=True),
            *run.image("maps/map_ensemble.png", "Ensemble prospectivity map with target areas"),
            *run.image("maps/uncertainty.png", "Model disagreement: std and vote entropy"),
            *run.extra_images("maps", skip=skip)]


def _targets(run: _Run) -> list[Block]:
    if not run.ran("maps"):
        return [Missing("maps", F("maps", "targets_csv"))]
    blocks = run.table(F("maps", "targets_csv"), "Ranked target areas (area in squared map "
                       "units; the full table, with bounds and deposit ids, is maps/targets.csv)")
    keep = ["rank", "score", "area", "area_share", "mean_prob", "max_prob", "mean_uncertainty",
            "n_orebodies", "x_centroid", "y_centroid"]
    out: list[Block] = []
    for b in blocks:
        if isinstance(b, Table):
            rest = ["rank", *[c for c in b.df.columns if c not in keep]]
            out += [Table(b.df[[c for c in keep if c in b.df.columns]], b.caption),
                    Details("The other columns (bounds, known deposit ids)",
                            [Table(b.df[rest])])]
        else:
            out.append(b)
    return out


def _success_rate(run: _Run) -> list[Block]:
    if not run.ran("maps"):
        return [Missing("maps", "maps/success_rate.png")]
    curves = [*run.image("maps/success_rate.png", "Success rate: all known deposits against "
                         "the final maps"),
              *run.image("maps/prediction_rate.png", "Prediction rate: held-out deposits, each "
                         "scored by the model that did not see it", optional=True)]
    return [Paragraph("Which curve to believe: the prediction rate. The success rate scores the "
                      "maps on the deposits they were trained on, so it flatters a model that "
                      "memorises them; the prediction rate scores each deposit cell with the "
                      "fold model that never saw it, as a new deposit would be. The table gives "
                      "both AUCs and the share of deposits inside the top 5, 10 and 20 % of "
                      "the area."),
            Row(curves) if len(curves) > 1 else curves[0] if curves else Missing(
                "maps", "maps/success_rate.png", ran=True),
            *run.table(F("maps", "success_rate"), "Success- and prediction-rate AUC and area "
                       "capture")]


def _hidden_truth(run: _Run) -> list[Block]:
    if (run.dir / F("maps", "hidden_truth")).is_file():
        return [Paragraph("Demo only: how well each model and rule ranks the unknown cells "
                          "against the synthetic area's hidden fertility (ROC AUC)."),
                *run.table(F("maps", "hidden_truth"), "Ranking of unknown cells vs hidden truth")]
    return [Note("No hidden truth: only the synthetic demo knows the fertility of unlabelled "
                 "cells (maps/hidden_truth.csv not found).")]


def _timings(run: _Run) -> list[Block]:
    info, blocks = run.json(RUN_FILES["info"])
    if info is None:
        return blocks
    if not isinstance(info, dict):
        return [Note("run.json is not a JSON object; cannot show timings.")]
    stages = info.get("stages")
    if isinstance(stages, dict) and stages:
        rows = [{"stage": k, **(v if isinstance(v, dict) else {"seconds": v})}
                for k, v in stages.items()]
        df = pd.DataFrame(rows)
        if "seconds" in df:
            total = pd.to_numeric(df["seconds"], errors="coerce").sum()
            df = pd.concat([df, pd.DataFrame([{"stage": "total", "seconds": total}])],
                           ignore_index=True)
        blocks.append(Table(df, "Wall time per stage (seconds)"))
    else:
        blocks.append(Note("run.json has no per-stage timings."))
    other = {k: v for k, v in info.items() if k not in ("stages", "versions")}
    if other:
        blocks.append(Details("Run record (run.json)", _json_blocks(other, "Run")))
    if isinstance(info.get("versions"), dict):
        versions = info["versions"]
        blocks.append(Table(pd.DataFrame({"package": list(versions),
                                          "version": [str(v) for v in versions.values()]}),
                            "Versions"))
    return blocks


_COLLECTORS = (_summary, _data_summary, _evidence, _training, _evaluation, _ensembles,
               _maps, _targets, _success_rate, _hidden_truth, _timings, _configuration)


def collect_sections(run_dir: str | os.PathLike) -> list[Section]:
    """The report sections for a run directory, in :data:`SECTION_TITLES` order.

    Every absent stage or output becomes a plain note; nothing is invented.
    """
    run = _Run(Path(run_dir))
    return [Section(title, anchor, collect(run))
            for (anchor, title), collect in zip(SECTION_TITLES, _COLLECTORS, strict=True)]


def build_report(run_dir: str | os.PathLike, *,
                 out_path: str | os.PathLike | None = None) -> Path:
    """Write the run's report as one self-contained HTML file and return its path.

    Parameters
    ----------
    run_dir : path
        A run directory (``config.toml``, ``run.json``, ``evidence/``, ``samples/``,
        ``train/``, ``evaluate/``, ``ensemble/``, ``maps/``); any of them may be absent.
    out_path : path or None
        Default ``run_dir/report/report.html``; written atomically.

    Raises
    ------
    InputDataError
        If ``run_dir`` is not a directory.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputDataError(f"run directory {run_dir} does not exist; run the pipeline first "
                             "or pass the folder it wrote (the one holding run.json).")
    out = Path(out_path) if out_path is not None else run_dir / F("report", "html")
    subtitle = f"Run directory: {run_dir.resolve()}"
    info = _Run(run_dir).json(RUN_FILES["info"])[0]
    info = info if isinstance(info, dict) else {}
    if info.get("finished"):
        subtitle += f" \u2014 finished {info['finished']}"
    name = info.get("name") or run_dir.resolve().name
    page = render_html(f"oremap report: {name}", collect_sections(run_dir), subtitle=subtitle)
    return io.write_text(out, page)

"""The run report: one self-contained HTML file (inline CSS, images as data URIs, offline).

The first screen answers: the recommended map (drawn by area-percentile class, with the target
areas), the ranked targets and the warnings; the rest is the evidence behind it, long tables
and full figures folded. Blocks and their HTML are in :mod:`oremap.report_html`.
"""

from __future__ import annotations

import html
import json
import numbers
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from oremap import io
from oremap.contract import RUN_FILES
from oremap.contract import file as F
from oremap.errors import InputDataError
from oremap.recommend import recommend
from oremap.report_figures import (
    curve_figure,
    evidence_thumbnails,
    featured_names,
    importance_figure,
)
from oremap.report_html import (
    Block,
    Columns,
    Details,
    Image,
    Missing,
    Note,
    Paragraph,
    Preformatted,
    Row,
    Section,
    Table,
    Warning_,
    readable,
    render_html,
)

__all__ = [
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
    "render_html",
    "collect_sections",
    "build_report",
    "refresh_timings",
    "SECTION_TITLES",
]

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
    "maps/success_rate.png", "maps/prediction_rate.png", "maps/decision_map.png",
})


class _Run:
    """Reads whatever exists in a run directory and turns it into report blocks."""

    def __init__(self, run_dir: Path) -> None:
        self.dir = run_dir
        self._recommendation: tuple[Any, ...] = ()

    def recommendation(self) -> Any:
        """:func:`recommend` of the run, computed once (it may raise; None before the
        ensemble stage)."""
        if not self._recommendation:
            try:
                self._recommendation = (recommend(self.dir), None)
            except (OSError, ValueError, KeyError) as exc:
                self._recommendation = (None, exc)
        rec, exc = self._recommendation
        if exc is not None:
            raise exc
        return rec

    def ran(self, stage: str) -> bool:
        return (self.dir / stage).is_dir()

    def image(self, rel: str, caption: str, *, optional: bool = False,
              width: int = 0) -> list[Block]:
        path = self.dir / rel
        if path.is_file():
            return [Image(path, caption, width=width)]
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
    """JSON as a reader sees it: key/value tables with readable keys (nested keys joined by
    " › "), records as tables, lists as comma-separated text; never raw JSON."""
    if _is_scalar(obj):
        return [Paragraph(f"{readable(name)}: {obj}" if name else str(obj))]
    if isinstance(obj, list):
        if obj and all(isinstance(x, dict) and all(_is_scalar(v) for v in x.values())
                       for x in obj):
            return [Table(pd.DataFrame(obj), readable(name))]
        if all(_is_scalar(x) for x in obj):
            return [Paragraph(f"{readable(name)}: " + ", ".join(str(x) for x in obj))]
        return [b for i, x in enumerate(obj) for b in _json_blocks(x, f"{name} {i + 1}", depth)]
    rows: list[tuple[str, Any]] = []
    blocks: list[Block] = []
    _flatten(obj, (), rows, blocks, depth)
    if rows:
        blocks.insert(0, Table(pd.DataFrame({"item": [k for k, _ in rows],
                                             "value": [v for _, v in rows]}),
                               readable(name)))
    return blocks


def _flatten(obj: dict[str, Any], prefix: tuple[str, ...], rows: list[tuple[str, Any]],
             blocks: list[Block], depth: int) -> None:
    """Scalars and lists of scalars of a (nested) dict as (readable key path, value) rows;
    groups of same-keyed records and lists of records as their own tables."""
    records = {k: v for k, v in obj.items()
               if isinstance(v, dict) and v and all(_is_scalar(x) for x in v.values())}
    same = len(records) > 1 and len({tuple(v) for v in records.values()}) == 1
    if same:
        df = pd.DataFrame.from_dict(records, orient="index")
        df.index.name = " › ".join(prefix) or "key"
        blocks.append(Table(df))
    for k, v in obj.items():
        key = (*prefix, readable(k))
        if same and k in records:
            continue
        if _is_scalar(v):
            rows.append((" › ".join(key), _scalar_text(v)))
        elif isinstance(v, dict) and depth < 4:
            _flatten(v, key, rows, blocks, depth + 1)
        elif isinstance(v, list) and all(_is_scalar(x) for x in v):
            rows.append((" › ".join(key), ", ".join(str(x) for x in v)))
        elif isinstance(v, list) and v and all(
                isinstance(x, dict) and all(_is_scalar(y) for y in x.values()) for x in v):
            blocks.append(Table(pd.DataFrame(v), " › ".join(key)))
        else:
            rows.append((" › ".join(key), _plain(v)))


def _plain(v: Any) -> str:
    """Any JSON value as plain text (no brackets, quotes or braces)."""
    if isinstance(v, dict):
        return "; ".join(f"{readable(k)}: {_plain(x)}" for k, x in v.items())
    if isinstance(v, list):
        return ", ".join(_plain(x) for x in v)
    return str(v)


def _scalar_text(v: Any) -> Any:
    """Keep numbers numeric (for the table's number format) but stringify the rest."""
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
    """The first screen: the recommended map's name; its decision map beside the ranked
    targets; the warnings; then why it is recommended."""
    try:
        rec = run.recommendation()
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
        f"<small>({html.escape(rec.map_file)})</small></p>", trusted_html=True)]
    left: list[Block] = []
    for rel, what in (("maps/decision_map.png", "top 5, 10 and 20 % of the study area"),
                      ("maps/map_ensemble.png", "P(ore)")):
        if (run.dir / rel).is_file():
            left.append(Image(run.dir / rel, f"{rec.name}: {what}, target areas and known "
                              f"deposits ({rel})", css_class="decision-map"))
            break
    left += [Warning_(w) for w in rec.warnings]
    right: list[Block] = []
    if rec.targets is not None and len(rec.targets):
        source = f"; drawn on {rec.target_map}" if rec.target_map else ""
        shown = rec.targets.head(10)
        long_text = [c for c in shown.columns if str(c).startswith("driver")]
        right.append(Table(shown.drop(columns=long_text), f"Target areas, best first "
                           f"({len(rec.targets)}{source})", compact=True))
        if long_text:  # drivers as a line per target: the table stays narrow
            label = shown.columns[0]
            right.append(Paragraph(
                '<p class="drivers"><strong>Drivers</strong> ' + "; ".join(
                    f"<strong>{html.escape(str(row[label]))}</strong>: " + html.escape(", ".join(
                        str(row[c]) for c in long_text if str(row[c]) not in ("", "nan")))
                    for _, row in shown.iterrows()) + "</p>", trusted_html=True))
        if len(rec.targets) > len(shown):
            right.append(Paragraph(f"The first {len(shown)} of {len(rec.targets)} targets; "
                                   "every one is under Target areas."))
    elif rec.targets is not None:
        right.append(Note("No target areas: no part of the map passed the target threshold."))
    if rec.capture:
        right.append(Paragraph(rec.capture))
    right.append(Paragraph(rec.reason))
    blocks.append(Columns(left, right))
    if rec.drivers:
        blocks.append(Paragraph(
            f"Drivers of {rec.name}: the evidence layers with the largest permutation "
            "importance (drop of held-out ROC AUC when the layer is shuffled"
            + (", mean over the rule's members" if rec.kind == "rule" else "") + "): "
            + ", ".join(f"{k} {v:.3f}" for k, v in rec.drivers.items())
            + ". Each target lists those whose mean in it lies furthest from the study "
            "area's median (weighted by importance), with its percentile of the study "
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
    try:
        grid = evidence_thumbnails(run.dir)
    except (OSError, ValueError) as exc:
        grid = None
        blocks.append(Note(f"The evidence layers could not be drawn ({exc})."))
    if grid is not None:
        blocks.append(Image(grid, "Every evidence layer (dark = low, each stretched between "
                            "its 2nd and 98th percentile); full-size previews are in "
                            "evidence/previews/"))
    elif previews:
        blocks.append(Row([Image(p, captions.get(p.name, p.stem), width=380)
                           for p in previews]))
    else:
        blocks.append(Missing("evidence", "evidence/layers/*.tif", ran=True))
    return blocks + run.extra_images("evidence", skip=[
        p.relative_to(run.dir).as_posix() for p in previews])


def _training(run: _Run) -> list[Block]:
    if not run.ran("train"):
        return [Missing("train", "train/")]
    loss = [Image(b.path, b.caption, width=860) if isinstance(b, Image) else b
            for b in run.image(F("train", "loss_curves"),
                               "Training and validation loss per epoch")]
    blocks = [*loss, *run.table(F("train", "summary"), "Training summary per model and fold"),
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
    folds = run.table(F("evaluate", "table1_folds"), "Table 1 per fold", optional=True)
    if folds:
        blocks.append(Details("Table 1 per fold", folds))
    rec_name, names = _featured(run)
    try:
        curves = curve_figure(run.dir, names, highlight=rec_name) if names else None
    except (OSError, ValueError, KeyError) as exc:
        curves = None
        blocks.append(Note(f"The curves could not be drawn ({exc})."))
    if curves is not None:
        blocks.append(Image(curves, f"Curves of the recommended map ({rec_name}, black) and "
                            f"the best network, baseline and rules: {', '.join(names[1:])}"))
    full = [*run.image("evaluate/roc.png", "ROC curves of every member"),
            *run.image("evaluate/pr.png", "Precision-recall curves", optional=True),
            *run.image("evaluate/calibration.png", "Calibration (reliability) diagram",
                       optional=True)]
    blocks.append(Details("Every member's ROC, precision-recall and calibration curves",
                          [Row([b]) if isinstance(b, Image) else b for b in full]))
    matrices = sorted((run.dir / "evaluate").glob("confusion_matrices*.png"))
    if not matrices:
        blocks.append(Missing("evaluate", "evaluate/confusion_matrices.png", ran=True))
    else:
        blocks.append(Details("Confusion matrices", [Image(p, "Confusion matrices" + (
            " (random split)" if "random" in p.stem else "")) for p in matrices]))
    try:
        chart = importance_figure(run.dir, highlight=rec_name)
    except (OSError, ValueError, KeyError) as exc:
        chart = None
        blocks.append(Note(f"The importance chart could not be drawn ({exc})."))
    if chart is not None:
        blocks.append(Image(chart, "Permutation importance: the top evidence layers, mean over "
                            "members (bars) and range over members (lines)", width=720))
    importance = run.table(F("evaluate", "importance"),
                           "Permutation importance of every layer and member")
    if chart is None:
        blocks += [*importance, *run.image("evaluate/importance.png", "Permutation importance",
                                           optional=True)]
    else:
        blocks.append(Details("Permutation importance: the full table", importance))
    woe = run.table(F("evaluate", "woe"), "Weights of evidence (fold 0): W+, W-, contrast C "
                    "and studentised contrast per layer, at the cutoff that maximises it",
                    optional=True)
    if woe:
        blocks.append(Details("Weights of evidence per layer", woe))
    return blocks + run.extra_images("evaluate", skip=[
        p.relative_to(run.dir).as_posix() for p in matrices])


def _featured(run: _Run) -> tuple[str, list[str]]:
    """(the recommended map, it and a few others whose curves are drawn)."""
    path = run.dir / F("ensemble", "comparison")
    if not path.is_file():
        return "", []
    try:
        comparison = pd.read_csv(path, index_col=0)
        rec = run.recommendation()
    except (OSError, ValueError, KeyError):
        return "", []
    name = rec.name if rec is not None else ""
    return name, featured_names(comparison, name)


def _ensembles(run: _Run) -> list[Block]:
    if not run.ran("ensemble"):
        return [Missing("ensemble", "ensemble/")]
    blocks = run.table(F("ensemble", "table1"), "Table 1 for the ensembles")
    weights, notes = run.json(F("ensemble", "weights"))
    blocks += [_heading("Ensemble weights"), *notes]
    if weights is not None:
        blocks += weight_blocks(weights)
        blocks.append(Details("Ensemble weights and learned rules (weights.json)",
                              _json_blocks(weights)))
    blocks += run.table(F("ensemble", "calibration"), "Calibration on the held-out cells: "
                        "expected calibration error (ECE) before and after, mean P(ore) "
                        "against the share of ore cells", optional=True)
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


def weight_blocks(weights: dict[str, Any]) -> list[Block]:
    """The effective weights of each fold and of the final map, how far they moved from equal
    weights, and a plain sentence when the members could not be told apart."""
    source = weights.get("source", "test")
    rows = []
    for label, d in [*((f"fold {k}", f) for k, f in enumerate(weights.get("folds", []))),
                     ("final map", weights)]:
        row: dict[str, Any] = {"parameters": label, **d.get("weights", {})}
        if "shrinkage" in d:
            row["shrinkage"] = d["shrinkage"]
        if "fitted_on" in d:
            row["ore cells"] = d["fitted_on"]["ore_cells"]
            row["barren cells"] = d["fitted_on"]["barren_cells"]
        rows.append(row)
    where = {"out_of_fold": "the held-out scores of each fold's whole training side (cross-"
                            "fitted: no fold's parameters saw its own labels)",
             "validation": "each fold's inner validation cells",
             "test": "Table 1 of the test split (optimistic)"}.get(source, source)
    out: list[Block] = [Paragraph(f"Weights, learned rules and calibrators were fitted on "
                                  f"{where}.")]
    if "shrinkage" in weights:
        s = float(weights["shrinkage"])
        metric = weights.get("metric", "auc")
        skill = "ROC AUC above chance" if metric == "auc" else metric
        out.append(Paragraph(
            "The members could not be told apart on those cells (shrinkage 0): the weighted "
            "rules use equal weights, so weighted_average is the simple average."
            if s == 0 else
            f"Shrinkage {s:.2f}: the weights moved {s:.0%} of the way from equal weights "
            f"toward the members' {skill}; the rest is what bootstrap noise of the cells "
            "could explain."))
    out.append(Table(pd.DataFrame(rows), "Effective weights per fold and of the final map"))
    return out


def _maps(run: _Run) -> list[Block]:
    if not run.ran("maps"):
        return [Missing("maps", "maps/")]
    skip = {"maps/success_rate.png", "maps/prediction_rate.png", "maps/decision_map.png"}
    panels = [*run.image("maps/maps_models.png", "Prospectivity map of each model"),
              *run.image("maps/maps_rules.png", "Prospectivity map of each ensemble rule",
                         optional=True)]
    return [*run.image("maps/map_ensemble.png", "Ensemble prospectivity map with target areas"),
            *run.image("maps/uncertainty.png", "Model disagreement: std and vote entropy"),
            Details("The map of every model and ensemble rule", panels),
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
                         "the final maps", width=560),
              *run.image("maps/prediction_rate.png", "Prediction rate: held-out deposits, each "
                         "scored by the model that did not see it", optional=True, width=560)]
    return [Paragraph("Which curve to believe: the prediction rate. The success rate scores the "
                      "maps on the deposits they were trained on, so it flatters a model that "
                      "memorises them; the prediction rate scores each deposit cell with the "
                      "fold model that never saw it, as a new deposit would be. The curves of "
                      "the recommended map and a few others are under Evaluation; the table "
                      "gives both AUCs and the share of deposits inside the top 5, 10 and 20 % "
                      "of the area."),
            *run.table(F("maps", "success_rate"), "Success- and prediction-rate AUC and area "
                       "capture"),
            Details("Success- and prediction-rate curves of every map", [Row(curves)])
            if curves else Missing("maps", "maps/success_rate.png", ran=True)]


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


def refresh_timings(run_dir: str | os.PathLike, sections: list[Section]) -> list[Section]:
    """``sections`` with the timings section read again (after the report stage's own time
    and the run's end were recorded); the other sections as they were."""
    fresh = _timings(_Run(Path(run_dir)))
    return [Section(s.title, s.anchor, fresh) if s.anchor == "timings" else s
            for s in sections]


def build_report(run_dir: str | os.PathLike, *,
                 out_path: str | os.PathLike | None = None,
                 sections: list[Section] | None = None) -> Path:
    """Write the run's report as one self-contained HTML file and return its path.

    Parameters
    ----------
    run_dir : path
        A run directory (``config.toml``, ``run.json``, ``evidence/``, ``samples/``,
        ``train/``, ``evaluate/``, ``ensemble/``, ``maps/``); any of them may be absent.
    out_path : path or None
        Default ``run_dir/report/report.html``; written atomically.
    sections : list of Section or None
        Sections already collected from ``run_dir`` (:func:`collect_sections`); default:
        collected now.

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
    if sections is None:
        sections = collect_sections(run_dir)
    page = render_html(f"oremap report: {name}", sections, subtitle=subtitle)
    return io.write_text(out, page)

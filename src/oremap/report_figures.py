"""Figures the report draws from a finished run folder: evidence layers as small multiples,
one compact permutation-importance chart, and the curves of the recommended map beside a few
others. Written under ``report/figures/``; each returns None when its inputs are absent.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import rasterio

from oremap.contract import file as F
from oremap.evaluate.figures import CurvePanel, plot_curve_panels, plot_importance_summary
from oremap.evaluate.metrics import roc_auc, roc_curve
from oremap.maps.figures import plot_thumbnails

__all__ = ["FEATURED", "curve_figure", "evidence_thumbnails", "featured_names",
           "importance_figure", "figures_dir"]

#: At most this many maps besides the recommended one get their curves drawn.
FEATURED = 4


def figures_dir(run_dir: Path) -> Path:
    """``run_dir/report/figures`` (created)."""
    out = Path(run_dir) / "report" / "figures"
    out.mkdir(parents=True, exist_ok=True)
    return out


def evidence_thumbnails(run_dir: Path, *, pixels: int = 240) -> Path | None:
    """Every evidence layer (``evidence/layers/*.tif``, in stack order) as one small-multiples
    figure, each decimated to about ``pixels`` px across; None without layers."""
    run_dir = Path(run_dir)
    layers_dir = run_dir / "evidence" / "layers"
    tifs = {p.stem: p for p in sorted(layers_dir.glob("*.tif"))} if layers_dir.is_dir() else {}
    if not tifs:
        return None
    order, captions = list(tifs), {}
    try:
        stack = json.loads((run_dir / F("evidence", "stack")).read_text())
        named = [layer for layer in stack.get("layers", []) if isinstance(layer, dict)]
        order = [str(x["name"]) for x in named if str(x.get("name")) in tifs] or order
        captions = {str(x["name"]): ", ".join(str(x[k]) for k in ("measure", "units")
                                                if x.get(k)) for x in named if x.get("name")}
    except (OSError, ValueError, AttributeError, KeyError):
        pass
    arrays = {}
    for name in order:
        with rasterio.open(tifs[name]) as src:
            factor = max(1, math.ceil(max(src.width, src.height) / pixels))
            shape = (max(1, src.height // factor), max(1, src.width // factor))
            arrays[name] = src.read(1, out_shape=shape, masked=True).astype(float).filled(np.nan)
    return plot_thumbnails(arrays, figures_dir(run_dir) / "evidence_layers.png",
                           captions=captions, ncols=6 if len(arrays) > 8 else 4)


def importance_figure(run_dir: Path, *, highlight: str = "") -> Path | None:
    """The top evidence layers by permutation importance, aggregated over members, as one
    chart; None without ``evaluate/importance.csv`` (or with an unusable one)."""
    path = Path(run_dir) / F("evaluate", "importance")
    if not path.is_file():
        return None
    try:
        table = pd.read_csv(path)
        if not {"layer", "member", "auc_drop_mean"} <= set(table.columns) or table.empty:
            return None
    except (OSError, ValueError):
        return None
    return plot_importance_summary(table, figures_dir(run_dir) / "importance_top.png",
                                   highlight=highlight,
                                   title="Permutation importance: the top evidence layers")


def featured_names(comparison: pd.DataFrame, recommended: str) -> list[str]:
    """The recommended map, then the best network, the best baseline, the simple average and
    the best other rule (by held-out ROC AUC), at most ``1 + FEATURED`` names."""
    metric = next((c for c in ("cell_roc_auc_mean", "roc_auc_mean") if c in comparison
                   and comparison[c].notna().any()), None)
    ranked = comparison.sort_values(metric, ascending=False) if metric else comparison
    names = [recommended] if recommended else []
    kinds = ranked["kind"] if "kind" in ranked else pd.Series("", index=ranked.index)
    for kind in ("network", "baseline"):
        best = [str(n) for n in ranked.index[kinds == kind] if n not in names]
        names += best[:1]
    if "simple_average" in ranked.index and "simple_average" not in names:
        names.append("simple_average")
    names += [str(n) for n in ranked.index[kinds == "rule"] if n not in names][:1]
    return names[:1 + FEATURED]


def _roc_curves(run_dir: Path, names: list[str]) -> dict[str, tuple[np.ndarray, np.ndarray,
                                                                     float]]:
    path = Path(run_dir) / "evaluate" / "test_probs.npz"
    if not path.is_file():
        return {}
    out = {}
    with np.load(path) as data:
        folds = sorted({k.split("_")[0] for k in data.files if k.endswith("_y")})
        for name in names:
            keys = [f"{f}_p_{name}" for f in folds]
            if not all(k in data.files for k in keys):
                continue
            y = np.concatenate([data[f"{f}_y"] for f in folds]).astype(int)
            p = np.concatenate([data[k] for k in keys]).astype(float)
            if len(np.unique(y)) < 2:
                continue
            fpr, tpr = roc_curve(y, p)
            out[name] = (np.asarray(fpr), np.asarray(tpr), float(roc_auc(y, p)))
    return out


def _rate_curves(run_dir: Path, names: list[str], curve: str
                 ) -> dict[str, tuple[np.ndarray, np.ndarray, float]]:
    path = Path(run_dir) / "maps" / "success_rate_points.csv"
    if not path.is_file():
        return {}
    points = pd.read_csv(path)
    if not {"name", "curve", "area_fraction", "captured_fraction"} <= set(points.columns):
        return {}
    aucs = pd.Series(dtype=float)
    table = Path(run_dir) / F("maps", "success_rate")
    if table.is_file():
        rates = pd.read_csv(table)
        if {"name", f"{curve}_rate_auc"} <= set(rates.columns):
            aucs = rates.set_index("name")[f"{curve}_rate_auc"]
    out = {}
    for name in names:
        rows = points.loc[(points["name"] == name) & (points["curve"] == curve)]
        if len(rows) < 2:
            continue
        x = rows["area_fraction"].to_numpy(float)
        y = rows["captured_fraction"].to_numpy(float)
        auc = aucs.get(name, np.nan)
        out[name] = (x, y, float(auc) if pd.notna(auc) else
                     float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2)))
    return out


def curve_figure(run_dir: Path, names: list[str], *, highlight: str = "") -> Path | None:
    """ROC (held-out crops of the members), success-rate and prediction-rate curves of
    ``names`` side by side; None when none of them has a curve."""
    panels = [
        CurvePanel("ROC, held-out test crops", "false positive rate", "true positive rate",
                   _roc_curves(run_dir, names),
                   note="" if highlight in _roc_curves(run_dir, [highlight]) or not highlight
                   else f"{highlight}: a rule, scored on cells, not crops"),
        CurvePanel("Success rate (all known deposits)", "share of the area",
                   "share of deposit cells captured", _rate_curves(run_dir, names, "success")),
        CurvePanel("Prediction rate (held-out deposits)", "share of the area",
                   "share of held-out deposit cells captured",
                   _rate_curves(run_dir, names, "prediction")),
    ]
    panels = [p for p in panels if p.curves]
    if not panels:
        return None
    return plot_curve_panels(panels, figures_dir(run_dir) / "curves_featured.png",
                             highlight=highlight)

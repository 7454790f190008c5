"""Stage writers of the evaluate and maps stages: figures, importance, rate curves, hidden truth."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rasterio.features import geometry_mask

from oremap import io
from oremap.compute import thread_map
from oremap.evaluate.figures import (
    plot_calibration,
    plot_confusion_matrices,
    plot_importance,
    plot_pr_curves,
    plot_roc_curves,
    plot_success_rate_curves,
)
from oremap.evaluate.importance import permutation_importance
from oremap.evaluate.metrics import confusion
from oremap.evaluate.rates import ranking_auc, success_rate_curve
from oremap.names import member_cost, member_kind

__all__ = [
    "write_held_out_figures",
    "write_importance",
    "CAPTURE_SHARES",
    "write_rate_curves",
    "hidden_truth_scores",
]


# --------------------------------------------------------------------------- the evaluate stage


def write_held_out_figures(pooled: Mapping[str, tuple[np.ndarray, np.ndarray]], out: Path, *,
                           threshold: float, suffix: str = "", curves: bool = True) -> None:
    """Confusion matrices (and ROC, PR, calibration curves) of pooled held-out crops.

    ``pooled`` maps each member to ``(y, p)`` over the held-out crops of all folds. Writes
    ``confusion_matrices<suffix>.png`` and, with ``curves``, ``roc.png``, ``pr.png`` and
    ``calibration.png`` into ``out``.
    """
    cms = {m: confusion(y, (p >= threshold).astype(int)) for m, (y, p) in pooled.items()}
    plot_confusion_matrices(cms, out / f"confusion_matrices{suffix}.png")
    if curves:
        plot_roc_curves(pooled, out / "roc.png")
        plot_pr_curves(pooled, out / "pr.png")
        plot_calibration(pooled, out / "calibration.png")


def write_importance(predict_fns: Mapping[str, Callable[[np.ndarray], np.ndarray]],
                     x: np.ndarray, y: np.ndarray, layer_names: Sequence[str], out: Path, *,
                     n_repeats: int, seed: int,
                     tables: Mapping[str, pd.DataFrame] | None = None) -> pd.DataFrame:
    """Permutation importance of every layer for every member -> ``importance.csv/.png``.

    The members run side by side (:func:`oremap.compute.thread_map`). ``tables``: the
    members' tables computed elsewhere (Dask tasks), used as they are.
    """
    if tables is not None:
        imp = dict(tables)
    else:
        members = list(predict_fns)
        imp = dict(zip(members, thread_map(
            lambda m: permutation_importance(predict_fns[m], x, y, layer_names=layer_names,
                                             n_repeats=n_repeats, seed=seed),
            members, costs=[member_cost(m) for m in members])))
    table = pd.concat([df.reset_index().assign(member=m) for m, df in imp.items()],
                      ignore_index=True)
    io.write_csv(out / "importance.csv", table)
    plot_importance(imp, out / "importance.png")
    return table


# ------------------------------------------------------------------------- the maps stage's curves


#: Shares of the area at which the capture of deposits is tabulated.
CAPTURE_SHARES = (0.05, 0.1, 0.2)


def write_rate_curves(table: pd.DataFrame, members: Sequence[str], rules: Sequence[str],
                      out: Path) -> pd.DataFrame:
    """Success-rate curves of every member and rule, prediction-rate curves of the members.

    Success rate: every known positive cell against the final map (optimistic: those cells
    were trained on). Prediction rate: held-out positive cells, scored by the fold model that
    did not see them (``oof_<member>``). Writes ``success_rate.csv`` (AUCs and the share of
    deposits captured in the top 5, 10 and 20 % of the area), ``success_rate_points.csv``
    (every point of every curve) and the figures into ``out``; returns the table.
    """
    curves, pcurves, rows = {}, {}, []
    labels = table["label"].to_numpy()
    for name in [*members, *rules]:
        col = f"p_{name}" if name in members else f"ens_{name}"
        curves[name] = success_rate_curve(table[col].to_numpy(), labels == 1)
        rows.append(dict(name=name, success_rate_auc=curves[name].auc))
    held = (table["test_fold"].to_numpy() >= 0) & (labels == 1)
    if held.any() and (labels[~held] != 1).any():
        for i, name in enumerate(members):
            oof = table[f"oof_{name}"].to_numpy()
            score = np.where(np.isfinite(oof), oof, table[f"p_{name}"].to_numpy())
            pcurves[name] = success_rate_curve(score, held)
            rows[i]["prediction_rate_auc"] = pcurves[name].auc
    points = []
    for kind, by_name in (("success", curves), ("prediction", pcurves)):
        for name, c in by_name.items():
            for share in CAPTURE_SHARES:
                row = next(r for r in rows if r["name"] == name)
                row[f"{kind}_captured_at_{round(100 * share)}pct_area"] = c.captured_at(share)
            points.append(pd.DataFrame({"name": name, "curve": kind,
                                        "area_fraction": c.area_fraction,
                                        "captured_fraction": c.captured_fraction,
                                        "threshold": c.thresholds}))
    df = pd.DataFrame(rows)
    io.write_csv(out / "success_rate.csv", df)
    if points:
        io.write_csv(out / "success_rate_points.csv", pd.concat(points, ignore_index=True))
    plot_success_rate_curves(curves, out / "success_rate.png",
                             title="Success-rate curves (known positive cells)")
    if pcurves:
        plot_success_rate_curves(pcurves, out / "prediction_rate.png",
                                 title="Prediction-rate curves (held-out positive cells)")
    return df


def hidden_truth_scores(truth_path: Path, table: pd.DataFrame, cells: Any,
                        members: Sequence[str], rules: Sequence[str]) -> pd.DataFrame:
    """How well unknown cells are ranked against a hidden truth raster (the demo's fertility).

    Each unknown cell's truth is the mean of the raster over the cell; the score of a member or
    rule is :func:`ranking_auc` of its P(ore) against that truth.
    """
    truth, tgrid = io.read_raster(truth_path)
    by_id = cells.set_index("id")
    unknown = table["label"].to_numpy() == -1
    values = []
    for cid in table.loc[unknown, "cell_id"]:
        geom = by_id.loc[cid, "geometry"]
        mask = ~geometry_mask([geom], out_shape=tgrid.shape, transform=tgrid.transform)
        values.append(float(np.nanmean(truth[mask])) if mask.any() else np.nan)
    truth_v = np.array(values)
    ok = np.isfinite(truth_v)
    rows = []
    for name in [*members, *rules]:
        col = f"p_{name}" if name in members else f"ens_{name}"
        score = table.loc[unknown, col].to_numpy()[ok]
        rows.append(dict(name=name, kind=member_kind(name), unknown_cells=int(ok.sum()),
                         auc=ranking_auc(score, truth_v[ok])))
    return pd.DataFrame(rows)

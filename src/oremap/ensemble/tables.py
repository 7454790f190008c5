"""Table 1 and Table 2 of the rules, and the comparison of members and rules."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from oremap import contract, io
from oremap.ensemble.calibration import expected_calibration_error
from oremap.ensemble.crossfit import out_of_fold_cells
from oremap.ensemble.params import EnsembleParams, _as_params, combine_columns
from oremap.ensemble.rules import combine
from oremap.errors import InputDataError
from oremap.evaluate.intervals import fold_interval
from oremap.evaluate.metrics import classification_report, roc_auc
from oremap.evaluate.rates import success_rate_curve
from oremap.labels import UNDECIDED, Label
from oremap.names import CALIBRATED_RULES, member_kind

if TYPE_CHECKING:
    from oremap.members import TestProbabilities

__all__ = [
    "COUNT_COLUMNS",
    "prediction_counts",
    "table2",
    "rule_table1",
    "compare_members",
    "held_out_cell_auc",
    "held_out_scores",
    "calibration_table",
    "write_calibration",
    "comparison_markdown",
]

#: Columns of :func:`table2` / keys of :func:`prediction_counts` (He et al. 2024, Table 2).
COUNT_COLUMNS: tuple[str, ...] = ("total", "known_positive", "unknown", "negative")


def prediction_counts(prediction: np.ndarray, labels: np.ndarray) -> dict[str, int]:
    """Number of cells predicted ore, overall and by known label.

    Parameters
    ----------
    prediction : array of int, any shape
        1 (ore), 0 (barren) or :data:`UNDECIDED`; undecided cells are not ore.
    labels : array of int, same shape
        1 (known ore), 0 (known barren / negative), -1 (unknown).

    Returns
    -------
    dict
        ``total`` (all cells), ``known_positive``, ``unknown``, ``negative``: counts of cells
        predicted ore among all cells and among the cells of each label.

    Raises
    ------
    InputDataError
        If the shapes differ or either array holds other values.
    """
    pred = np.asarray(prediction)
    lab = np.asarray(labels)
    if pred.shape != lab.shape:
        raise InputDataError(
            f"prediction has shape {pred.shape} but labels has {lab.shape}; "
            "pass both for the same cells."
        )
    for arr, name, allowed in (
        (pred, "prediction", (Label.POSITIVE, Label.NEGATIVE, UNDECIDED)),
        (lab, "labels", (Label.POSITIVE, Label.NEGATIVE, Label.UNKNOWN)),
    ):
        if not np.all(np.isin(arr, allowed)):
            bad = np.unique(arr[~np.isin(arr, allowed)])[:5].tolist()
            raise InputDataError(
                f"{name} must hold only {[int(a) for a in allowed]}; got {bad}. "
                "Mask nodata cells out before counting."
            )
    ore = pred == Label.POSITIVE
    return {
        "total": int(ore.sum()),
        "known_positive": int((ore & (lab == Label.POSITIVE)).sum()),
        "unknown": int((ore & (lab == Label.UNKNOWN)).sum()),
        "negative": int((ore & (lab == Label.NEGATIVE)).sum()),
    }


def table2(predictions: Mapping[str, np.ndarray], labels: np.ndarray) -> pd.DataFrame:
    """Predicted-ore counts of several models or rules, like He et al.'s Table 2.

    Parameters
    ----------
    predictions : dict of str -> int array
        Name -> prediction (1, 0 or UNDECIDED) for the same cells as ``labels``.
    labels : int array
        1, 0 or -1 per cell.

    Returns
    -------
    DataFrame
        Index ``model`` (input order), int columns :data:`COUNT_COLUMNS`.

    Raises
    ------
    InputDataError
        If ``predictions`` is empty or an entry is invalid (see :func:`prediction_counts`).
    """
    if not predictions:
        raise InputDataError("table2 got no predictions; pass {name: prediction array}.")
    rows = {name: prediction_counts(p, labels) for name, p in predictions.items()}
    df = pd.DataFrame.from_dict(rows, orient="index")[list(COUNT_COLUMNS)].astype(np.int64)
    df.index.name = "model"
    return df


def rule_table1(y: np.ndarray, results: dict[str, Any]) -> pd.DataFrame:
    """Table 1 of ensemble rules, classifying by each rule's own decision.

    Precision, recall, F1 and accuracy are computed on the crops the rule decided; the share of
    undecided crops (majority-voting refusals) is the column ``undecided``. The AUCs rank all
    crops by the rule's probability (the vote share for voting rules).
    """
    rows = {}
    for rule, res in results.items():
        decided = res.prediction != UNDECIDED
        row = classification_report(y[decided], res.prediction[decided].astype(float),
                                    threshold=0.5)
        full = classification_report(y, res.probability, threshold=0.5)
        row["roc_auc"], row["pr_auc"] = roc_auc(y, res.probability), full["pr_auc"]
        row["undecided"] = float(1.0 - decided.mean())
        rows[rule] = row
    df = pd.DataFrame.from_dict(rows, orient="index").drop(columns=["threshold"])
    df.index.name = "model"
    return df


def compare_members(table: pd.DataFrame, crops: TestProbabilities,
                    params: EnsembleParams | np.ndarray, members: Sequence[str],
                    rules: Sequence[str], *, threshold: float) -> pd.DataFrame:
    """Every member and rule by ROC AUC and prediction-rate AUC, per fold, mean and spread.

    Cell ROC AUC (the headline): each fold's held-out labelled cells, each scored by the model
    that did not see it (``oof_<member>``, the mean over the cell's crops; rules combine those
    held-out scores). ROC AUC: held-out crops of each fold. Prediction-rate AUC: all usable
    cells ranked by the
    fold's model (or rule), counting only the fold's held-out positive cells. Success-rate AUC:
    the final map (mean over folds) against every known positive cell (optimistic: those cells
    were trained on). Rules use each fold's own parameters (``params``; plain weights apply to
    every fold).
    """
    params = _as_ensemble_params(params)
    thr, n_folds = threshold, len(crops)
    labels, test_fold = table["label"].to_numpy(), table["test_fold"].to_numpy()
    rules = list(rules)
    roc = {n: [] for n in [*members, *rules]}
    pra = {n: [] for n in [*members, *rules]}
    cell = held_out_cell_auc(table, members, rules, params, threshold=thr)
    for k, f in enumerate(crops.folds):
        probs = f.stacked(members)
        for m, p in zip(members, probs):
            roc[m].append(roc_auc(f.y, p))
        for r in rules:
            roc[r].append(roc_auc(f.y, combine(r, probs, params=params.fold(k),
                                                  threshold=thr).probability))
        suffix = f"_f{k}" if n_folds > 1 else ""
        cell_probs = np.vstack([table[f"p_{m}{suffix}"].to_numpy() for m in members])
        held = (labels == 1) & (test_fold == k)
        scores = dict(zip(members, cell_probs))
        scores.update({r: combine(r, cell_probs, params=params.fold(k),
                                   threshold=thr).probability for r in rules})
        for name, sc in scores.items():
            pra[name].append(success_rate_curve(sc, held).auc if held.any() else np.nan)
    rows = {}
    for name in [*members, *rules]:
        kind = member_kind(name)
        col = f"p_{name}" if name in members else f"ens_{name}"
        row = {"kind": kind}
        for label, values in (("cell_roc_auc", cell[name]), ("roc_auc", roc[name]),
                              ("prediction_rate_auc", pra[name])):
            v = np.asarray(values, dtype=float)
            row[f"{label}_mean"] = float(np.nanmean(v)) if np.isfinite(v).any() else np.nan
            row[f"{label}_std"] = float(np.nanstd(v, ddof=1)) if np.isfinite(v).sum() > 1 \
                else np.nan
            row[f"{label}_folds"] = " ".join(f"{x:.3f}" for x in v)
        row["success_rate_auc"] = success_rate_curve(table[col].to_numpy(), labels == 1).auc
        rows[name] = row
    df = pd.DataFrame.from_dict(rows, orient="index")
    df.index.name = "name"
    return df


def held_out_cell_auc(table: pd.DataFrame, members: Sequence[str], rules: Sequence[str],
                      params: EnsembleParams | np.ndarray, *,
                      threshold: float) -> dict[str, list[float]]:
    """Per member and rule, the ROC AUC of each fold's held-out labelled cells.

    A cell's held-out score is ``oof_<member>`` (from the fold model that did not see it);
    rules combine the members' held-out scores with the fold's parameters. Folds whose
    held-out cells hold one class only are skipped.
    """
    params = _as_ensemble_params(params)
    out: dict[str, list[float]] = {n: [] for n in [*members, *rules]}
    labelled = table["label"].isin([0, 1]).to_numpy()
    for k in sorted(set(table["test_fold"]) - {-1}):
        rows = table.loc[labelled & (table["test_fold"] == k).to_numpy()]
        rows = rows.loc[rows[[f"oof_{m}" for m in members]].notna().all(axis=1)]
        y = rows["label"].to_numpy()
        if len(set(y)) < 2:
            continue
        for m in members:
            out[m].append(roc_auc(y, rows[f"oof_{m}"].to_numpy()))
        for r, res in combine_columns(rows, members, rules, params.fold(int(k)),
                                      threshold=threshold, prefix="oof_").items():
            out[r].append(roc_auc(y, res.probability))
    return out


def held_out_scores(table: pd.DataFrame, members: Sequence[str], rules: Sequence[str],
                    params: EnsembleParams, *, threshold: float, calibrated: bool = True
                    ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Labels and held-out scores of every labelled test cell, pooled over folds, per member
    and rule: each cell scored by the fold model that did not see it, mapped by the fold's
    calibrators (fitted without the fold's labels) when ``calibrated`` and the fold has
    them; rules combine them with the fold's parameters (``calibrated=False``: on the
    uncalibrated scores)."""
    rows = out_of_fold_cells(table, members)
    ys: list[np.ndarray] = []
    scores: dict[str, list[np.ndarray]] = {n: [] for n in [*members, *rules]}
    for k in sorted(int(v) for v in set(rows["test_fold"])):
        part = rows.loc[rows["test_fold"] == k]
        rp = params.fold(k)
        if not calibrated:
            rp = replace(rp, calibrators=None)
        ys.append(part["label"].to_numpy().astype(int))
        raw = np.vstack([part[f"oof_{m}"].to_numpy(dtype=float) for m in members])
        for i, m in enumerate(members):
            scores[m].append(raw[i] if rp.calibrators is None
                             else rp.calibrators[i].apply(raw[i]))
        for r in rules:
            scores[r].append(combine(r, raw, params=rp, threshold=threshold).probability)
    y = np.concatenate(ys) if ys else np.zeros(0, dtype=int)
    return {n: (y, np.concatenate(v) if v else np.zeros(0)) for n, v in scores.items()}


def calibration_table(table: pd.DataFrame, members: Sequence[str], rules: Sequence[str],
                      params: EnsembleParams, *, threshold: float) -> pd.DataFrame:
    """Expected calibration error of every member and rule on the held-out labelled cells,
    before (``ece_raw``) and after (``ece``) calibration, with the calibration method and the
    mean P(ore) against the observed share of ore cells."""
    return _calibration_rows(*_both_scores(table, members, rules, params, threshold),
                             members, rules, params)


Scores = dict[str, tuple[np.ndarray, np.ndarray]]


def _both_scores(table: pd.DataFrame, members: Sequence[str], rules: Sequence[str],
                 params: EnsembleParams, threshold: float) -> tuple[Scores, Scores]:
    """:func:`held_out_scores` uncalibrated, then calibrated."""
    return (held_out_scores(table, members, rules, params, threshold=threshold,
                            calibrated=False),
            held_out_scores(table, members, rules, params, threshold=threshold))


def _calibration_rows(raw: Scores, cal: Scores, members: Sequence[str], rules: Sequence[str],
                      params: EnsembleParams) -> pd.DataFrame:
    fold0 = params.fold(0).calibrators
    rows = {}
    for i, name in enumerate([*members, *rules]):
        y, p = cal[name]
        if name in members:
            method = fold0[i].method if fold0 is not None else "none"
        else:
            method = "calibrated members" if fold0 is not None and name in CALIBRATED_RULES \
                else "none"
        rows[name] = {"kind": member_kind(name), "calibration": method,
                      "ece_raw": expected_calibration_error(*raw[name]),
                      "ece": expected_calibration_error(y, p),
                      "mean_p_raw": float(np.mean(raw[name][1])) if len(y) else np.nan,
                      "mean_p": float(np.mean(p)) if len(y) else np.nan,
                      "ore_share": float(np.mean(y)) if len(y) else np.nan,
                      "cells": int(len(y))}
    df = pd.DataFrame.from_dict(rows, orient="index")
    df.index.name = "name"
    return df


def write_calibration(root: Path, table: pd.DataFrame, members: Sequence[str],
                      rules: Sequence[str], params: EnsembleParams, *,
                      threshold: float) -> pd.DataFrame | None:
    """``ensemble/calibration.csv`` (:func:`calibration_table`) and ``ensemble/reliability.png``
    (members before and after calibration, and the averaging rules), when the held-out cells
    hold both classes; returns the table (None without)."""
    # Local import: matplotlib loads only when the figure is drawn.
    from oremap.evaluate.figures import plot_reliability

    rows = out_of_fold_cells(table, members)
    if rows["label"].nunique() < 2:
        return None
    raw, cal = _both_scores(table, members, rules, params, threshold)
    df = _calibration_rows(raw, cal, members, rules, params)
    io.write_csv(root / contract.file("ensemble", "calibration"), df, index=True)
    shown = [r for r in rules if r in CALIBRATED_RULES and r != "stacking"]
    panels = {"members, as trained": {m: raw[m] for m in members}}
    if params.fold(0).calibrators is not None:
        panels["members, calibrated"] = {m: cal[m] for m in members}
    panels["averaging rules"] = {r: cal[r] for r in shown}
    plot_reliability(panels, root / contract.file("ensemble", "reliability"))
    return df


def _as_ensemble_params(params: EnsembleParams | np.ndarray) -> EnsembleParams:
    if isinstance(params, EnsembleParams):
        return params
    rp = _as_params(params)
    assert rp is not None
    return EnsembleParams(final=rp, folds=[rp])


def comparison_markdown(df: pd.DataFrame, n_folds: int) -> str:
    """The comparison table as Markdown, with a plain statement of which method wins."""
    lines = ["| name | kind | cell ROC AUC mean | cell ROC AUC std | crop ROC AUC mean | "
             "crop ROC AUC std | prediction-rate AUC mean | prediction-rate AUC std | "
             "success-rate AUC |", "|:---|:---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in df.iterrows():
        lines.append(f"| {name} | {r['kind']} | {r['cell_roc_auc_mean']:.3f} | "
                     f"{r['cell_roc_auc_std']:.3f} | {r['roc_auc_mean']:.3f} | "
                     f"{r['roc_auc_std']:.3f} | {r['prediction_rate_auc_mean']:.3f} | "
                     f"{r['prediction_rate_auc_std']:.3f} | {r['success_rate_auc']:.3f} |")
    text = "\n".join(lines) + "\n\n"
    scope = f"mean over {n_folds} folds" if n_folds > 1 else "single split"
    for metric, what in (("cell_roc_auc_mean", "ROC AUC on held-out cells"),
                         ("roc_auc_mean", "ROC AUC on held-out crops"),
                         ("prediction_rate_auc_mean", "prediction-rate AUC (held-out positive "
                                                      "cells)")):
        if not df[metric].notna().any():
            continue
        best = df[metric].idxmax()
        folds_col = metric.replace("_mean", "_folds")
        interval = ""
        if folds_col in df.columns:
            values = [float(x) for x in str(df.loc[best, folds_col]).split() if x != "nan"]
            low, high = fold_interval(values)
            if np.isfinite(low):
                interval = f" (95 % interval over folds {low:.3f} to {high:.3f})"
        per_kind = ", ".join(
            f"best {kind}: {df.loc[df['kind'] == kind, metric].idxmax()} "
            f"({df.loc[df['kind'] == kind, metric].max():.3f})"
            for kind in ("network", "baseline", "rule") if (df["kind"] == kind).any()
            and df.loc[df["kind"] == kind, metric].notna().any())
        text += (f"- By {what}, {scope}: **{best}** ({df.loc[best, 'kind']}) wins with "
                 f"{df.loc[best, metric]:.3f}{interval}; {per_kind}.\n")
    return text

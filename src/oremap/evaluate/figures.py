"""Evaluation figures: confusion matrices, success-rate, ROC, PR, calibration, importance."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from oremap import io
from oremap.errors import InputDataError
from oremap.evaluate.metrics import (
    Results,
    average_precision,
    calibration_bins,
    expected_calibration_error,
    pr_curve,
    roc_auc,
    roc_curve,
)
from oremap.evaluate.rates import SuccessRate

__all__ = [
    "CurvePanel",
    "plot_curve_panels",
    "plot_importance_summary",
    "plot_confusion_matrix",
    "plot_confusion_matrices",
    "plot_success_rate_curves",
    "plot_pr_curves",
    "plot_roc_curves",
    "plot_calibration",
    "plot_reliability",
    "plot_importance",
]


# ---------------------------------------------------------------------------------------------
# figures
# ---------------------------------------------------------------------------------------------

_CLASS_NAMES = ("barren", "ore")


def _draw_confusion(ax: Axes, cm: np.ndarray, title: str) -> None:
    cm = np.asarray(cm)
    if cm.shape != (2, 2):
        raise InputDataError(f"confusion matrix must be 2x2; got shape {cm.shape}.")
    row_sum = cm.sum(axis=1, keepdims=True)
    share = np.divide(cm, row_sum, out=np.zeros(cm.shape, dtype=float), where=row_sum > 0)
    ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    for i in range(2):
        for j in range(2):
            ax.text(j, i, f"{cm[i, j]}\n{100 * share[i, j]:.1f}%", ha="center", va="center",
                    color="white" if share[i, j] > 0.5 else "black")
    ax.set_xticks([0, 1], _CLASS_NAMES)
    ax.set_yticks([0, 1], _CLASS_NAMES)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)


def plot_confusion_matrix(cm: np.ndarray, path: str | os.PathLike, *, title: str) -> Path:
    """Write one confusion matrix (counts and row percentages) as a PNG.

    Parameters
    ----------
    cm : (2, 2) int array
        From :func:`confusion`.
    path : path-like
        Output PNG; parent folders are created.
    title : str

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    InputDataError
        If ``cm`` is not 2x2.
    """
    fig = Figure(figsize=(3.6, 3.4))
    _draw_confusion(fig.subplots(), cm, title)
    return io.save_figure(fig, path, fmt="png")


def plot_confusion_matrices(
    cms: Mapping[str, np.ndarray], path: str | os.PathLike, *, ncols: int = 3
) -> Path:
    """Write a grid of confusion matrices, one panel per model, as a PNG.

    Parameters
    ----------
    cms : dict of str -> (2, 2) int array
        Panel title -> confusion matrix.
    path : path-like
        Output PNG.
    ncols : int
        Panels per row, >= 1.

    Returns
    -------
    Path

    Raises
    ------
    InputDataError
        If ``cms`` is empty, ``ncols < 1`` or a matrix is not 2x2.
    """
    if not cms or ncols < 1:
        raise InputDataError(
            f"plot_confusion_matrices needs >= 1 matrix and ncols >= 1; got {len(cms)} "
            f"matrices, ncols={ncols}."
        )
    ncols = min(ncols, len(cms))
    nrows = -(-len(cms) // ncols)
    fig = Figure(figsize=(3.6 * ncols, 3.4 * nrows))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax, (name, cm) in zip(axes.flat, cms.items(), strict=False):
        _draw_confusion(ax, cm, name)
    for ax in list(axes.flat)[len(cms):]:
        ax.axis("off")
    fig.tight_layout()
    return io.save_figure(fig, path, fmt="png")


def plot_success_rate_curves(
    curves: Mapping[str, SuccessRate],
    path: str | os.PathLike,
    *,
    title: str = "Success-rate curves",
) -> Path:
    """Write success-rate curves with their AUC in the legend and the random diagonal.

    Parameters
    ----------
    curves : dict of str -> SuccessRate
    path : path-like
        Output PNG.
    title : str

    Returns
    -------
    Path
    """
    fig = Figure(figsize=(5, 5))
    ax = fig.subplots()
    for name, c in curves.items():
        ax.plot(c.area_fraction, c.captured_fraction, label=f"{name} (AUC {c.auc:.3f})")
    ax.plot([0, 1], [0, 1], "k--", lw=0.8, label="random (AUC 0.500)")
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="share of area flagged (ranked by score)",
           ylabel="share of known deposits captured", title=title)
    ax.legend(loc="lower right", fontsize="small")
    return io.save_figure(fig, path, fmt="png")


def plot_roc_curves(
    results: Results, path: str | os.PathLike, *, title: str = "ROC curves"
) -> Path:
    """Write ROC curves of several models with their AUC in the legend.

    Parameters
    ----------
    results : dict of str -> (y_true, y_prob)
        (n,) 0/1 labels with both classes and (n,) P(ore) per model.
    path : path-like
        Output PNG.
    title : str

    Returns
    -------
    Path
    """
    fig = Figure(figsize=(5, 5))
    ax = fig.subplots()
    for name, (y, p) in results.items():
        fpr, tpr = roc_curve(y, p)
        ax.plot(fpr, tpr, label=f"{name} (AUC {roc_auc(y, p):.3f})")
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="false positive rate",
           ylabel="true positive rate", title=title)
    ax.legend(loc="lower right", fontsize="small")
    return io.save_figure(fig, path, fmt="png")


def plot_pr_curves(
    results: Results, path: str | os.PathLike, *, title: str = "Precision-recall curves"
) -> Path:
    """Write precision-recall step curves with average precision in the legend.

    Parameters
    ----------
    results : dict of str -> (y_true, y_prob)
        (n,) 0/1 labels with at least one ore cell and (n,) P(ore) per model.
    path : path-like
        Output PNG.
    title : str

    Returns
    -------
    Path
    """
    fig = Figure(figsize=(5, 5))
    ax = fig.subplots()
    prevalence = []
    for name, (y, p) in results.items():
        recall, precision = pr_curve(y, p)
        ax.step(np.r_[0.0, recall], np.r_[precision[0], precision], where="pre",
                label=f"{name} (AP {average_precision(y, p):.3f})")
        prevalence.append(float(np.mean(y)))
    if prevalence:
        ax.axhline(float(np.mean(prevalence)), color="k", ls="--", lw=0.8,
                   label=f"ore share {np.mean(prevalence):.2f}")
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="recall (ore)", ylabel="precision (ore)",
           title=title)
    ax.legend(loc="lower left", fontsize="small")
    return io.save_figure(fig, path, fmt="png")


def plot_calibration(
    results: Results,
    path: str | os.PathLike,
    *,
    bins: int = 10,
    title: str = "Reliability diagram",
) -> Path:
    """Write a reliability diagram (observed ore frequency vs mean P(ore) per bin) and,
    below it, a histogram of the predicted probabilities.

    Parameters
    ----------
    results : dict of str -> (y_true, y_prob)
    path : path-like
        Output PNG.
    bins : int
        Equal-width probability bins (see :func:`calibration_bins`).
    title : str

    Returns
    -------
    Path
    """
    fig = Figure(figsize=(5, 7))
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    edges = np.linspace(0.0, 1.0, bins + 1)
    for name, (y, p) in results.items():
        cal = calibration_bins(y, p, bins=bins)
        filled = cal["count"] > 0
        top.plot(cal.loc[filled, "mean_predicted"], cal.loc[filled, "observed_frequency"],
                 "o-", label=name)
        bottom.hist(np.asarray(p, dtype=float), bins=edges, histtype="step", label=name)
    top.plot([0, 1], [0, 1], "k--", lw=0.8, label="perfect calibration")
    top.set(xlim=(0, 1), ylim=(0, 1.01), ylabel="observed ore frequency", title=title)
    top.legend(loc="upper left", fontsize="small")
    bottom.set(xlabel="predicted P(ore)", ylabel="cells")
    return io.save_figure(fig, path, fmt="png")


def plot_reliability(
    panels: Mapping[str, Results],
    path: str | os.PathLike,
    *,
    bins: int = 10,
) -> Path:
    """Reliability diagrams side by side (e.g. before and after calibration): per panel title,
    observed ore frequency against mean P(ore) per equal-width bin of every named result;
    the legend gives each one's expected calibration error (ECE)."""
    fig = Figure(figsize=(5 * len(panels), 5))
    axes = np.atleast_1d(fig.subplots(1, len(panels), sharey=True))
    for ax, (title, results) in zip(axes, panels.items()):
        for name, (y, p) in results.items():
            cal = calibration_bins(y, p, bins=bins)
            filled = cal["count"] > 0
            ece = expected_calibration_error(y, p, bins=bins)
            ax.plot(cal.loc[filled, "mean_predicted"], cal.loc[filled, "observed_frequency"],
                    "o-", ms=3, label=f"{name} (ECE {ece:.3f})")
        ax.plot([0, 1], [0, 1], "k--", lw=0.8, label="perfect calibration")
        ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="predicted P(ore)", title=title)
        ax.legend(loc="upper left", fontsize="x-small")
    axes[0].set(ylabel="observed share of ore cells")
    return io.save_figure(fig, path, fmt="png")


def plot_importance(
    df_by_model: Mapping[str, pd.DataFrame],
    path: str | os.PathLike,
    *,
    title: str = "Permutation importance (ROC AUC drop)",
) -> Path:
    """Write a grouped horizontal bar chart of permutation importances with error bars.

    Parameters
    ----------
    df_by_model : dict of str -> DataFrame
        Per model, the output of :func:`permutation_importance`.
    path : path-like
        Output PNG.
    title : str

    Returns
    -------
    Path

    Raises
    ------
    InputDataError
        If ``df_by_model`` is empty.
    """
    if not df_by_model:
        raise InputDataError("plot_importance got no models; pass {model: importance table}.")
    layers = list(dict.fromkeys(layer for df in df_by_model.values() for layer in df.index))
    n_models = len(df_by_model)
    height = 0.8 / n_models
    fig = Figure(figsize=(6, 0.4 * len(layers) * max(1, n_models / 2) + 1.5))
    ax = fig.subplots()
    base = np.arange(len(layers))
    for k, (name, df) in enumerate(df_by_model.items()):
        d = df.reindex(layers)
        ax.barh(base + k * height, d["auc_drop_mean"].to_numpy(), height=height,
                xerr=np.nan_to_num(d["auc_drop_std"].to_numpy()), label=name, capsize=2)
    ax.set_yticks(base + 0.4 - height / 2, layers)
    ax.invert_yaxis()
    ax.axvline(0.0, color="k", lw=0.8)
    ax.set(xlabel="mean drop in ROC AUC when the layer is shuffled", title=title)
    ax.legend(fontsize="small")
    return io.save_figure(fig, path, fmt="png")


@dataclass
class CurvePanel:
    """One panel of :func:`plot_curve_panels`: name -> (x, y, AUC) curves on shared axes."""

    title: str
    xlabel: str
    ylabel: str
    curves: dict[str, tuple[np.ndarray, np.ndarray, float]] = field(default_factory=dict)
    note: str = ""


def plot_curve_panels(panels: Sequence[CurvePanel], path: str | os.PathLike, *,
                      highlight: str = "", width: float = 11.5) -> Path:
    """Write a few curve panels side by side (e.g. ROC, success rate, prediction rate of the
    recommended map and a handful of others), each with the random diagonal and the AUC of
    each curve in its legend; the ``highlight`` curve is drawn thick and black, first in the
    legend. A compact figure (``width`` in wide, 100 dpi) meant for at most ~5 curves a panel.

    Raises
    ------
    InputDataError
        If ``panels`` is empty.
    """
    if not panels:
        raise InputDataError("plot_curve_panels needs at least one panel.")
    n = len(panels)
    fig = Figure(figsize=(width, width / n + 0.3), layout="constrained")
    axes = fig.subplots(1, n, squeeze=False)[0]
    colours = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf"]
    for ax, panel in zip(axes, panels, strict=True):
        others = iter(colours)
        names = sorted(panel.curves, key=lambda k: k != highlight)
        for name in names:
            x, y, auc = panel.curves[name]
            main = name == highlight
            ax.plot(x, y, color="black" if main else next(others), lw=2.2 if main else 1.1,
                    zorder=3 if main else 2, label=f"{name} ({auc:.3f})")
        ax.plot([0, 1], [0, 1], color="0.5", ls="--", lw=0.8, label="random (0.500)")
        ax.set(xlim=(0, 1), ylim=(0, 1.01))
        ax.set_xlabel(panel.xlabel, fontsize=8)
        ax.set_ylabel(panel.ylabel, fontsize=8)
        ax.set_title(panel.title, fontsize=9)
        ax.tick_params(labelsize=7)
        ax.legend(loc="lower right", fontsize=6.5, title="name (AUC)", title_fontsize=6.5)
        if panel.note:
            ax.text(0.02, 0.98, panel.note, transform=ax.transAxes, va="top", fontsize=6.5,
                    color="0.3")
    return io.save_figure(fig, path, fmt="png", dpi=100)


def plot_importance_summary(importance: pd.DataFrame, path: str | os.PathLike, *,
                            top: int = 12, highlight: str = "",
                            title: str = "Permutation importance") -> Path:
    """Write one compact bar chart: the ``top`` evidence layers by permutation importance,
    one bar per layer aggregated over members (the mean over members of the drop in ROC AUC
    when the layer is shuffled, a layer's context channels summed), with the range over
    members as a line; the ``highlight`` member's value as a dot.

    Parameters
    ----------
    importance : DataFrame
        ``evaluate/importance.csv``: columns ``layer``, ``member`` and ``auc_drop_mean``
        (``layer@channel`` counts for ``layer``).

    Raises
    ------
    InputDataError
        If a column is missing or the table is empty.
    """
    need = {"layer", "member", "auc_drop_mean"}
    if importance.empty or not need <= set(importance.columns):
        raise InputDataError(f"plot_importance_summary needs a non-empty table with columns "
                             f"{sorted(need)}; got {list(importance.columns)}.")
    t = importance.assign(layer=importance["layer"].astype(str).str.split("@").str[0])
    per = t.groupby(["layer", "member"])["auc_drop_mean"].sum().unstack("member")
    mean = per.mean(axis=1).sort_values(ascending=False).head(top)
    per = per.loc[mean.index]
    fig = Figure(figsize=(6.0, 0.24 * len(mean) + 0.9), layout="constrained")
    ax = fig.subplots()
    pos = np.arange(len(mean))
    ax.barh(pos, mean.to_numpy(), color="#4c72b0", height=0.7, label="mean over members")
    ax.hlines(pos, per.min(axis=1), per.max(axis=1), color="0.2", lw=0.9,
              label="range over members")
    if highlight and highlight in per.columns:
        ax.plot(per[highlight].to_numpy(), pos, "o", color="black", ms=3.5, label=highlight)
    ax.set_yticks(pos, list(mean.index), fontsize=7.5)
    ax.invert_yaxis()
    ax.axvline(0.0, color="k", lw=0.6)
    ax.tick_params(axis="x", labelsize=7)
    ax.set_xlabel("drop in ROC AUC when the layer is shuffled", fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=6.5, loc="lower right")
    return io.save_figure(fig, path, fmt="png", dpi=100)

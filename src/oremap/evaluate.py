"""Evaluation metrics, tables, curves and figures for prospectivity models."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from scipy.stats import rankdata

from oremap import io
from oremap.errors import DroppedDataWarning, InputDataError
from oremap.labels import Label
from oremap.names import member_kind

__all__ = [
    "Label",
    "TABLE1_COLUMNS",
    "SuccessRate",
    "confusion",
    "classification_report",
    "roc_auc",
    "average_precision",
    "roc_curve",
    "pr_curve",
    "table1",
    "table_to_markdown",
    "summarise_folds",
    "calibration_bins",
    "success_rate_curve",
    "ranking_auc",
    "permutation_importance",
    "plot_confusion_matrix",
    "plot_confusion_matrices",
    "plot_success_rate_curves",
    "plot_pr_curves",
    "plot_roc_curves",
    "plot_calibration",
    "plot_importance",
]


#: Columns of :func:`table1`, in He et al.'s (2024) Table 1 order.
TABLE1_COLUMNS: tuple[str, ...] = (
    "precision_barren",
    "recall_barren",
    "f1_barren",
    "precision_ore",
    "recall_ore",
    "f1_ore",
    "accuracy",
    "macro_precision",
    "macro_recall",
    "macro_f1",
    "roc_auc",
    "pr_auc",
)

Results = Mapping[str, tuple[np.ndarray, np.ndarray]]


# ---------------------------------------------------------------------------------------------
# input checks
# ---------------------------------------------------------------------------------------------


def _binary_labels(y: np.ndarray, name: str) -> np.ndarray:
    """Return ``y`` as a 1-D int64 array of 0/1, or raise InputDataError."""
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise InputDataError(f"{name} must be a 1-D array of labels; got shape {arr.shape}.")
    if arr.dtype == bool:
        return arr.astype(np.int64)
    if arr.size and not np.all(np.isin(arr, (Label.NEGATIVE, Label.POSITIVE))):
        bad = np.unique(arr[~np.isin(arr, (Label.NEGATIVE, Label.POSITIVE))])[:5]
        raise InputDataError(
            f"{name} must hold only 0 (barren) and 1 (ore); got values {bad.tolist()}. "
            "Evaluate on labelled cells only (drop label -1 = unknown first)."
        )
    return arr.astype(np.int64)


def _probabilities(p: np.ndarray, name: str, n: int) -> np.ndarray:
    """Return ``p`` as a 1-D float64 array of length ``n`` in [0, 1], or raise."""
    arr = np.asarray(p, dtype=np.float64)
    if arr.shape != (n,):
        raise InputDataError(
            f"{name} must have shape ({n},) to match the labels; got shape {arr.shape}."
        )
    finite = np.isfinite(arr)
    if not finite.all() or np.any((arr[finite] < 0) | (arr[finite] > 1)):
        lo, hi = (arr[finite].min(), arr[finite].max()) if finite.any() else (np.nan, np.nan)
        raise InputDataError(
            f"{name} must be finite probabilities in [0, 1]; got min {lo}, max {hi}, "
            f"{int((~finite).sum())} non-finite. "
            "Pass P(ore), e.g. the softmax output of the ore class."
        )
    return arr


def _scores(s: np.ndarray, name: str, n: int) -> np.ndarray:
    """Return ``s`` as a finite 1-D float64 array of length ``n`` (any real scale), or raise."""
    arr = np.asarray(s, dtype=np.float64)
    if arr.shape != (n,):
        raise InputDataError(
            f"{name} must have shape ({n},) to match the labels; got shape {arr.shape}."
        )
    if not np.all(np.isfinite(arr)):
        raise InputDataError(
            f"{name} has {int(np.sum(~np.isfinite(arr)))} non-finite values; "
            "drop or fill them before scoring."
        )
    return arr


# ---------------------------------------------------------------------------------------------
# metrics
# ---------------------------------------------------------------------------------------------


def confusion(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Count the 2x2 confusion matrix.

    Parameters
    ----------
    y_true, y_pred : (n,) int arrays
        True and predicted labels, each 0 (barren) or 1 (ore).

    Returns
    -------
    (2, 2) int64 array
        ``[[TN, FP], [FN, TP]]``: rows are the true class (0, 1), columns the predicted class.

    Raises
    ------
    InputDataError
        If either array is not 1-D 0/1, or they differ in length.
    """
    t = _binary_labels(y_true, "y_true")
    p = _binary_labels(y_pred, "y_pred")
    if t.shape != p.shape:
        raise InputDataError(
            f"y_true has {t.size} labels but y_pred has {p.size}; both must cover the same cells."
        )
    return np.bincount(2 * t + p, minlength=4).reshape(2, 2).astype(np.int64)


def _ratio(num: float, den: float) -> float:
    """``num / den``, or 0.0 when ``den`` is 0 (scikit-learn's ``zero_division=0``)."""
    return float(num) / float(den) if den else 0.0


def roc_auc(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney statistic; tied scores count one half).

    Parameters
    ----------
    y_true : (n,) int array
        0 (barren) or 1 (ore).
    y_score : (n,) float array
        Any finite score that increases with P(ore).

    Returns
    -------
    float
        ROC AUC in [0, 1]; NaN when ``y_true`` holds only one class. Equals
        ``sklearn.metrics.roc_auc_score``.
    """
    t = _binary_labels(y_true, "y_true")
    s = _scores(y_score, "y_score", t.size)
    n_pos = int(t.sum())
    n_neg = t.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(s)  # average ranks for ties
    return float((ranks[t == 1].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def _cumulative_counts(t: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True and false positives predicted at each distinct score, highest score first."""
    order = np.argsort(-s, kind="mergesort")
    s_sorted, t_sorted = s[order], t[order]
    last = np.r_[np.nonzero(np.diff(s_sorted))[0], t.size - 1]  # last index of each tie group
    tp = np.cumsum(t_sorted)[last]
    fp = (last + 1) - tp
    return tp.astype(np.float64), fp.astype(np.float64), s_sorted[last]


def roc_curve(y_true: np.ndarray, y_score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False and true positive rates at every distinct score, starting at (0, 0).

    Parameters
    ----------
    y_true : (n,) int array
        0/1 labels with both classes present.
    y_score : (n,) float array
        Scores increasing with P(ore).

    Returns
    -------
    fpr, tpr : (k + 1,) float arrays
        ``k`` is the number of distinct scores; the last point is (1, 1).

    Raises
    ------
    InputDataError
        If only one class is present.
    """
    t = _binary_labels(y_true, "y_true")
    s = _scores(y_score, "y_score", t.size)
    if t.sum() == 0 or t.sum() == t.size:
        raise InputDataError("roc_curve needs both classes in y_true; got only one.")
    tp, fp, _ = _cumulative_counts(t, s)
    return np.r_[0.0, fp / fp[-1]], np.r_[0.0, tp / tp[-1]]


def pr_curve(y_true: np.ndarray, y_score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Recall and precision at every distinct score, highest score first.

    Parameters
    ----------
    y_true : (n,) int array
        0/1 labels with at least one 1.
    y_score : (n,) float array
        Scores increasing with P(ore).

    Returns
    -------
    recall, precision : (k,) float arrays
        One point per distinct score (predict ore where score >= it).

    Raises
    ------
    InputDataError
        If ``y_true`` has no ore cells.
    """
    t = _binary_labels(y_true, "y_true")
    s = _scores(y_score, "y_score", t.size)
    if t.sum() == 0:
        raise InputDataError("pr_curve needs at least one ore cell (label 1) in y_true; got none.")
    tp, fp, _ = _cumulative_counts(t, s)
    return tp / tp[-1], tp / (tp + fp)


def average_precision(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """Area under the precision-recall curve as average precision.

    ``AP = sum_k (R_k - R_{k-1}) P_k`` over distinct score thresholds, highest first, with
    ``R_0 = 0`` (a step function, no interpolation), as ``sklearn.metrics.average_precision_score``.

    Parameters
    ----------
    y_true : (n,) int array
        0 (barren) or 1 (ore).
    y_score : (n,) float array
        Scores increasing with P(ore).

    Returns
    -------
    float
        In [0, 1]; NaN when ``y_true`` holds only one class.
    """
    t = _binary_labels(y_true, "y_true")
    s = _scores(y_score, "y_score", t.size)
    if t.sum() == 0 or t.sum() == t.size:
        return float("nan")
    recall, precision = pr_curve(t, s)
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def classification_report(
    y_true: np.ndarray, y_prob: np.ndarray, *, threshold: float = 0.5
) -> dict[str, float]:
    """Per-class and macro scores of P(ore) predictions against known labels.

    A cell is predicted ore where ``y_prob >= threshold``. Undefined ratios (e.g. precision of
    a class that is never predicted) are 0.0, like scikit-learn's ``zero_division=0``.

    Parameters
    ----------
    y_true : (n,) int array
        0 (barren) or 1 (ore); unknown cells (-1) must be dropped by the caller.
    y_prob : (n,) float array
        P(ore) in [0, 1].
    threshold : float
        Decision threshold on P(ore), in [0, 1].

    Returns
    -------
    dict
        The keys of :data:`TABLE1_COLUMNS` (``precision_barren`` ... ``pr_auc``; the AUCs are
        NaN when one class is absent) plus ``n_barren``, ``n_ore`` (supports) and
        ``threshold``.

    Raises
    ------
    InputDataError
        On labels other than 0/1, probabilities outside [0, 1], mismatched lengths or a
        threshold outside [0, 1].
    """
    if not 0.0 <= threshold <= 1.0:
        raise InputDataError(f"threshold must lie in [0, 1]; got {threshold}.")
    t = _binary_labels(y_true, "y_true")
    p = _probabilities(y_prob, "y_prob", t.size)
    (tn, fp), (fn, tp) = confusion(t, (p >= threshold).astype(np.int64))
    out: dict[str, float] = {}
    for name, hit, false_pred, missed in (("barren", tn, fn, fp), ("ore", tp, fp, fn)):
        prec = _ratio(hit, hit + false_pred)
        rec = _ratio(hit, hit + missed)
        out[f"precision_{name}"] = prec
        out[f"recall_{name}"] = rec
        out[f"f1_{name}"] = _ratio(2 * hit, 2 * hit + false_pred + missed)
    out["accuracy"] = _ratio(tn + tp, t.size)
    for m in ("precision", "recall", "f1"):
        out[f"macro_{m}"] = (out[f"{m}_barren"] + out[f"{m}_ore"]) / 2.0
    out["roc_auc"] = roc_auc(t, p)
    out["pr_auc"] = average_precision(t, p)
    out["n_barren"] = float(tn + fp)
    out["n_ore"] = float(fn + tp)
    out["threshold"] = float(threshold)
    return out


# ---------------------------------------------------------------------------------------------
# tables
# ---------------------------------------------------------------------------------------------


def table1(results: Results, *, threshold: float = 0.5) -> pd.DataFrame:
    """Scores of several models laid out like He et al.'s (2024) Table 1.

    Parameters
    ----------
    results : dict of str -> (y_true, y_prob)
        Per model: (n,) 0/1 labels and (n,) P(ore) on the same test cells.
    threshold : float
        Decision threshold on P(ore).

    Returns
    -------
    DataFrame
        One row per model (index ``model``, in the order given), columns
        :data:`TABLE1_COLUMNS`.

    Raises
    ------
    InputDataError
        If ``results`` is empty or any entry is invalid (see :func:`classification_report`).
    """
    if not results:
        raise InputDataError("table1 got no results; pass {model name: (y_true, y_prob)}.")
    rows = {
        name: classification_report(y, p, threshold=threshold)
        for name, (y, p) in results.items()
    }
    df = pd.DataFrame.from_dict(rows, orient="index")[list(TABLE1_COLUMNS)]
    df.index.name = "model"
    return df


def _format_cell(value: object, floatfmt: str) -> str:
    if isinstance(value, (float, np.floating)):
        return "nan" if np.isnan(value) else format(float(value), floatfmt)
    return str(value).replace("|", "\\|")


def table_to_markdown(df: pd.DataFrame, floatfmt: str = ".3f") -> str:
    """Render a DataFrame as a GitHub-flavoured markdown table (no ``tabulate`` needed).

    The index becomes the leading column(s) (one per level of a MultiIndex), unless it is an
    unnamed ``RangeIndex``. Floats use ``floatfmt``, NaN prints as ``nan``, ``|`` is escaped;
    numeric columns are right-aligned.

    Parameters
    ----------
    df : DataFrame
    floatfmt : str
        A ``format`` spec for floats, e.g. ``".3f"``.

    Returns
    -------
    str
        Header, alignment row and one line per row, joined by newlines (no trailing newline).
    """
    show_index = not (isinstance(df.index, pd.RangeIndex) and df.index.name is None)
    names: list[str] = []
    columns: list[np.ndarray] = []
    if show_index:
        for level, level_name in enumerate(df.index.names):
            names.append("" if level_name is None else str(level_name))
            columns.append(np.asarray(df.index.get_level_values(level)))
    for c in df.columns:
        names.append(str(c))
        columns.append(df[c].to_numpy())
    numeric = [np.issubdtype(col.dtype, np.number) and col.dtype != bool for col in columns]
    lines = [
        "| " + " | ".join(h.replace("|", "\\|") for h in names) + " |",
        "|" + "|".join("---:" if num else ":---" for num in numeric) + "|",
    ]
    for i in range(len(df)):
        lines.append("| " + " | ".join(_format_cell(col[i], floatfmt) for col in columns) + " |")
    return "\n".join(lines)


def summarise_folds(tables: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Mean and sample standard deviation of each score across block folds.

    NaN entries (e.g. ROC AUC of a fold with one class) are skipped and reported with a
    :class:`DroppedDataWarning`; ``n_folds`` counts the folds in which a model appears. With
    a single fold the standard deviation (ddof=1) is NaN.

    Parameters
    ----------
    tables : list of DataFrame
        One :func:`table1`-style table per fold: rows = models, numeric columns.

    Returns
    -------
    DataFrame
        Index ``model`` (first-seen order); for every column ``c``, ``c_mean`` and ``c_std``
        (sample std, ddof=1), then ``n_folds``.

    Raises
    ------
    InputDataError
        If ``tables`` is empty or the tables have different columns.
    """
    if not tables:
        raise InputDataError("summarise_folds got no tables; pass one table per fold.")
    columns = list(tables[0].columns)
    for i, t in enumerate(tables):
        if list(t.columns) != columns:
            raise InputDataError(
                f"fold table {i} has columns {list(t.columns)} but fold 0 has {columns}; "
                "build every fold's table with the same function."
            )
    stacked = pd.concat(tables)
    n_nan = int(stacked.isna().to_numpy().sum())
    if n_nan:
        warnings.warn(
            f"summarise_folds skipped {n_nan} NaN score(s) across {len(tables)} folds "
            "(e.g. an AUC in a fold with one class).",
            DroppedDataWarning,
            stacklevel=2,
        )
    order = list(dict.fromkeys(stacked.index))
    grouped = stacked.groupby(level=0, sort=False)
    mean, std = grouped.mean(), grouped.std(ddof=1)
    out = pd.DataFrame(index=pd.Index(order, name="model"))
    for c in columns:
        out[f"{c}_mean"] = mean.loc[order, c].to_numpy()
        out[f"{c}_std"] = std.loc[order, c].to_numpy()
    out["n_folds"] = grouped.size().loc[order].to_numpy()
    return out


def calibration_bins(y_true: np.ndarray, y_prob: np.ndarray, *, bins: int = 10) -> pd.DataFrame:
    """Reliability table: mean predicted P(ore) and observed ore frequency per bin.

    Bins split [0, 1] into ``bins`` equal intervals, closed on the left except the last,
    which also holds 1.0. Empty bins are kept with NaN means and count 0.

    Parameters
    ----------
    y_true : (n,) int array
        0/1 labels.
    y_prob : (n,) float array
        P(ore) in [0, 1].
    bins : int
        Number of bins, >= 1.

    Returns
    -------
    DataFrame
        Columns ``bin_lo``, ``bin_hi``, ``mean_predicted``, ``observed_frequency``, ``count``.

    Raises
    ------
    InputDataError
        If ``bins < 1`` or the inputs are invalid.
    """
    if bins < 1:
        raise InputDataError(f"bins must be >= 1; got {bins}.")
    t = _binary_labels(y_true, "y_true")
    p = _probabilities(y_prob, "y_prob", t.size)
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, bins - 1)
    count = np.bincount(idx, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_pred = np.bincount(idx, weights=p, minlength=bins) / count
        observed = np.bincount(idx, weights=t, minlength=bins) / count
    return pd.DataFrame(
        {
            "bin_lo": edges[:-1],
            "bin_hi": edges[1:],
            "mean_predicted": mean_pred,
            "observed_frequency": observed,
            "count": count,
        }
    )


# ---------------------------------------------------------------------------------------------
# success-rate curve and ranking
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SuccessRate:
    """A success-rate curve: share of known deposits captured vs share of area flagged.

    Attributes
    ----------
    area_fraction : (k + 1,) float array
        Cumulative share of the (scored) area, from 0 to 1.
    captured_fraction : (k + 1,) float array
        Cumulative share of known positives inside that area, from 0 to 1.
    thresholds : (k + 1,) float array
        Score at each point (cells with score >= it are flagged); ``+inf`` at (0, 0).
    auc : float
        Trapezoidal area under the curve; 0.5 for a random ranking, 1 - p/2 for a perfect
        ranking of positives covering area share ``p`` (with distinct scores).
    """

    area_fraction: np.ndarray
    captured_fraction: np.ndarray
    thresholds: np.ndarray
    auc: float

    def captured_at(self, area_fraction: float) -> float:
        """Share of known positives captured when flagging ``area_fraction`` of the area."""
        return float(np.interp(area_fraction, self.area_fraction, self.captured_fraction))


def success_rate_curve(
    scores: np.ndarray, is_positive: np.ndarray, *, area: np.ndarray | None = None
) -> SuccessRate:
    """Success-rate curve of a prospectivity score against known deposits.

    Cells are ranked by score, highest first. **Ties:** all cells with the same score form one
    step: the curve jumps from the point before the group to the point after it by a straight
    line, which is the expected curve over every ordering inside the group. The curve (and its
    AUC) therefore does not depend on the input order. Cells with a non-finite score are
    dropped with a :class:`DroppedDataWarning`; shares are of the remaining cells.

    Parameters
    ----------
    scores : (n,) float array
        Prospectivity score per cell (any scale, higher = more prospective).
    is_positive : (n,) bool or int array
        Known deposits: a boolean mask, or labels where 1 = ore (0 and -1 are not positives).
    area : (n,) float array or None
        Cell areas (any unit, >= 0, total > 0); ``None`` means equal areas.

    Returns
    -------
    SuccessRate

    Raises
    ------
    InputDataError
        On mismatched lengths, labels other than -1/0/1, negative or non-finite areas, zero
        total area, or no positive among the scored cells.
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    pos = _positive_mask(is_positive, s.size)
    a = np.ones_like(s) if area is None else np.asarray(area, dtype=np.float64).ravel()
    if a.shape != s.shape:
        raise InputDataError(f"area has {a.size} cells but scores has {s.size}; pass one each.")
    if not np.all(np.isfinite(a)) or np.any(a < 0):
        raise InputDataError("area must be finite and >= 0 for every cell.")
    keep = np.isfinite(s)
    if not keep.all():
        warnings.warn(
            f"success_rate_curve dropped {int((~keep).sum())} of {s.size} cells with "
            f"non-finite scores ({int(pos[~keep].sum())} of them known positives).",
            DroppedDataWarning,
            stacklevel=2,
        )
        s, pos, a = s[keep], pos[keep], a[keep]
    if a.sum() <= 0:
        raise InputDataError("total area of the scored cells is 0; pass positive cell areas.")
    if not pos.any():
        raise InputDataError(
            "success_rate_curve needs at least one known positive among the scored cells; "
            "got none."
        )
    order = np.argsort(-s, kind="mergesort")
    s_sorted = s[order]
    last = np.r_[np.nonzero(np.diff(s_sorted))[0], s.size - 1]
    x = np.cumsum(a[order])[last] / a.sum()
    y = np.cumsum(pos[order])[last] / pos.sum()
    x, y = np.r_[0.0, x], np.r_[0.0, y]
    x[-1], y[-1] = 1.0, 1.0  # remove rounding in the cumulative sums
    return SuccessRate(
        area_fraction=x,
        captured_fraction=y,
        thresholds=np.r_[np.inf, s_sorted[last]],
        auc=float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2.0)),
    )


def _positive_mask(is_positive: np.ndarray, n: int) -> np.ndarray:
    """Boolean (n,) mask from a bool mask or a -1/0/1 label array."""
    arr = np.asarray(is_positive).ravel()
    if arr.size != n:
        raise InputDataError(
            f"is_positive has {arr.size} cells but scores has {n}; pass one value per cell."
        )
    if arr.dtype == bool:
        return arr
    allowed = (Label.UNKNOWN, Label.NEGATIVE, Label.POSITIVE)
    if not np.all(np.isin(arr, allowed)):
        raise InputDataError(
            "is_positive must be a boolean mask or labels in {-1, 0, 1}; got values "
            f"{np.unique(arr[~np.isin(arr, allowed)])[:5].tolist()}."
        )
    return arr == Label.POSITIVE


def ranking_auc(scores: np.ndarray, truth: np.ndarray, *, quantile: float = 0.5) -> float:
    """ROC AUC of ``scores`` against a binary or continuous truth.

    Used to check how well a model ranks cells whose label is hidden (e.g. unknown cells of
    the demo against its secret fertility field). **Binary truth** (bool, or only the values
    0 and 1) is used as is. **Continuous truth** is split at its ``quantile`` (the median by
    default): cells with truth strictly above it are positives, so ties at the median count
    as negatives. Pairs where either value is non-finite are dropped with a
    :class:`DroppedDataWarning`.

    Parameters
    ----------
    scores : (n,) float array
        Model scores, higher = more prospective.
    truth : (n,) bool, int or float array
        Binary labels or a continuous field (higher = more fertile).
    quantile : float
        Split point of a continuous truth, in (0, 1).

    Returns
    -------
    float
        ROC AUC; 0.5 for random ranking, NaN if the split leaves one class only.

    Raises
    ------
    InputDataError
        If the arrays differ in size or ``quantile`` is outside (0, 1).
    """
    if not 0.0 < quantile < 1.0:
        raise InputDataError(f"quantile must lie in (0, 1); got {quantile}.")
    s = np.asarray(scores, dtype=np.float64).ravel()
    t_raw = np.asarray(truth).ravel()
    if s.size != t_raw.size:
        raise InputDataError(
            f"scores has {s.size} cells but truth has {t_raw.size}; pass one value per cell."
        )
    t = t_raw.astype(np.float64)
    keep = np.isfinite(s) & np.isfinite(t)
    if not keep.all():
        warnings.warn(
            f"ranking_auc dropped {int((~keep).sum())} of {s.size} cells with a non-finite "
            "score or truth.",
            DroppedDataWarning,
            stacklevel=2,
        )
        s, t = s[keep], t[keep]
    if t_raw.dtype == bool or np.all(np.isin(t, (0.0, 1.0))):
        positive = t == 1.0
    else:
        positive = t > np.quantile(t, quantile)
    return roc_auc(positive.astype(np.int64), s)


# ---------------------------------------------------------------------------------------------
# permutation importance
# ---------------------------------------------------------------------------------------------


def permutation_importance(
    predict_fn: Callable[[np.ndarray], np.ndarray],
    X: np.ndarray,
    y: np.ndarray,
    *,
    layer_names: Sequence[str],
    n_repeats: int = 5,
    seed: int = 0,
) -> pd.DataFrame:
    """Drop in ROC AUC when one evidence layer is shuffled across samples.

    For each layer ``c`` and each repeat, ``X[:, c]`` (the whole crop of that layer) is
    permuted across samples, keeping the other layers in place, and ROC AUC of
    ``predict_fn`` is recomputed. Positive drops mean the model relies on the layer.

    Parameters
    ----------
    predict_fn : callable
        Maps an array shaped like ``X`` to (n,) P(ore) (or any score increasing with it).
    X : (n, C, ...) array
        Crops ``(n, C, H, W)`` or per-cell features ``(n, C)``.
    y : (n,) int array
        0/1 labels with both classes present.
    layer_names : sequence of C str
        Names of the layers along axis 1.
    n_repeats : int
        Permutations per layer, >= 1.
    seed : int
        Seed of the ``numpy`` generator drawing the permutations.

    Returns
    -------
    DataFrame
        Index ``layer`` (input order); columns ``auc_drop_mean``, ``auc_drop_std`` (sample
        std over repeats, ddof=1, NaN when ``n_repeats == 1``) and ``baseline_auc``.

    Raises
    ------
    InputDataError
        If shapes disagree, ``y`` has one class, ``n_repeats < 1`` or ``predict_fn`` returns
        the wrong shape.
    """
    X = np.asarray(X)
    if X.ndim < 2 or X.shape[1] != len(layer_names):
        raise InputDataError(
            f"X must be (n, C, ...) with C = {len(layer_names)} layer names; got shape {X.shape}."
        )
    t = _binary_labels(y, "y")
    if t.size != X.shape[0]:
        raise InputDataError(f"y has {t.size} labels but X has {X.shape[0]} samples.")
    if t.sum() == 0 or t.sum() == t.size:
        raise InputDataError("permutation_importance needs both classes in y; got only one.")
    if n_repeats < 1:
        raise InputDataError(f"n_repeats must be >= 1; got {n_repeats}.")

    perms = importance_permutations(t.size, len(layer_names), n_repeats, seed)
    baseline = importance_score(predict_fn, X, t)
    drops = np.stack([layer_drops(predict_fn, X, t, c, perms[c], baseline)
                      for c in range(len(layer_names))])
    return importance_table(drops, baseline, layer_names)


def importance_permutations(n: int, layers: int, n_repeats: int, seed: int) -> np.ndarray:
    """The permutations of :func:`permutation_importance`, (layers, n_repeats, n): drawn
    layer by layer, repeat by repeat, from one generator seeded with ``seed``."""
    rng = np.random.default_rng(seed)
    return np.stack([np.stack([rng.permutation(n) for _ in range(n_repeats)])
                     for _ in range(layers)]).reshape(layers, n_repeats, n)


def importance_score(predict_fn: Callable[[np.ndarray], np.ndarray], X: np.ndarray,
                     t: np.ndarray) -> float:
    """ROC AUC of ``predict_fn`` on ``X`` against 0/1 labels ``t``."""
    return roc_auc(t, _scores(np.asarray(predict_fn(X)).ravel(), "predict_fn output", t.size))


def layer_drops(predict_fn: Callable[[np.ndarray], np.ndarray], X: np.ndarray, t: np.ndarray,
                c: int, perms: np.ndarray, baseline: float) -> np.ndarray:
    """Drops in ROC AUC, one per permutation of ``perms`` (repeats, n), when layer ``c`` of
    ``X`` is shuffled across samples and the other layers stay in place."""
    n = len(X)
    per_call = max(1, min(len(perms), _IMPORTANCE_BYTES // max(1, X.nbytes)))
    out = np.empty(len(perms))
    for r0 in range(0, len(perms), per_call):
        group = perms[r0:r0 + per_call]
        work = np.concatenate([X] * len(group))  # one call for several permutations
        for k, perm in enumerate(group):
            work[k * n:(k + 1) * n, c] = X[perm, c]
        scores = _scores(np.asarray(predict_fn(work)).ravel(), "predict_fn output", len(work))
        for k in range(len(group)):
            out[r0 + k] = baseline - roc_auc(t, scores[k * n:(k + 1) * n])
    return out


#: Crops predicted in one call of :func:`layer_drops`: as many permutations of the layer as
#: fit in this many bytes (at least one), so that a model with a cost per call (a random
#: forest walks its trees once per call) is called once per layer, not once per repeat.
_IMPORTANCE_BYTES = 256 * 1024**2


def importance_table(drops: np.ndarray, baseline: float,
                     layer_names: Sequence[str]) -> pd.DataFrame:
    """The table of :func:`permutation_importance` from its drops (layers, repeats)."""
    n_repeats = drops.shape[1]
    std = drops.std(axis=1, ddof=1) if n_repeats > 1 else np.full(len(layer_names), np.nan)
    return pd.DataFrame(
        {"auc_drop_mean": drops.mean(axis=1), "auc_drop_std": std, "baseline_auc": baseline},
        index=pd.Index(list(layer_names), name="layer"),
    )


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
        from oremap.compute import thread_map
        from oremap.names import member_cost

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
    from rasterio.features import geometry_mask

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

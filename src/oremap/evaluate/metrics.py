"""Evaluation metrics and tables: confusion, per-class scores, ROC/PR AUC, Table 1, calibration."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from oremap.errors import DroppedDataWarning, InputDataError
from oremap.labels import Label

__all__ = [
    "TABLE1_COLUMNS",
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
    "expected_calibration_error",
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


def expected_calibration_error(y_true: np.ndarray, y_prob: np.ndarray, *,
                               bins: int = 10) -> float:
    """Expected calibration error: the count-weighted mean of |mean predicted P(ore) -
    observed ore frequency| over the ``bins`` equal-width bins of :func:`calibration_bins`.
    Cells whose P(ore) is NaN are ignored; NaN without any cell."""
    y = np.asarray(y_true)
    p = np.asarray(y_prob, dtype=float)
    ok = np.isfinite(p)
    if not ok.any():
        return float("nan")
    b = calibration_bins(y[ok], p[ok], bins=bins)
    b = b.loc[b["count"] > 0]
    gap = (b["mean_predicted"] - b["observed_frequency"]).abs()
    return float((gap * b["count"]).sum() / b["count"].sum())

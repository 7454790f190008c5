"""Success-rate and prediction-rate curves, and ranking AUC against a hidden truth."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from oremap.errors import DroppedDataWarning, InputDataError
from oremap.evaluate.metrics import roc_auc
from oremap.labels import Label

__all__ = [
    "SuccessRate",
    "success_rate_curve",
    "ranking_auc",
]


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

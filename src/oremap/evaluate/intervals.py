"""Interval helpers: the t interval of per-fold scores and the bootstrap interval of ROC AUC."""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from oremap.evaluate.metrics import roc_auc

__all__ = [
    "BOOTSTRAP",
    "fold_interval",
    "bootstrap_interval",
    "paired_bootstrap_difference",
    "paired_fold_difference",
]

#: Bootstrap resamples for the interval of a single split.
BOOTSTRAP = 1000


def fold_interval(values: list[float]) -> tuple[float, float]:
    """95 % t interval of the mean of per-fold scores, clipped to [0, 1]."""
    v = np.asarray([x for x in values if math.isfinite(x)], dtype=float)
    if len(v) < 2:
        return float("nan"), float("nan")
    half = stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v))
    return max(0.0, float(v.mean() - half)), min(1.0, float(v.mean() + half))


def bootstrap_interval(y: np.ndarray, score: np.ndarray, *, seed: int = 0,
                       n: int = BOOTSTRAP) -> tuple[float, float]:
    """95 % percentile bootstrap interval of ROC AUC over cells (resamples with one class are
    skipped)."""
    rng = np.random.default_rng(seed)
    aucs = []
    for _ in range(n):
        idx = rng.integers(0, len(y), len(y))
        if 0 < y[idx].sum() < len(idx):
            aucs.append(roc_auc(y[idx], score[idx]))
    if not aucs:
        return float("nan"), float("nan")
    low, high = np.percentile(aucs, [2.5, 97.5])
    return float(low), float(high)


def paired_fold_difference(a: list[float], b: list[float]) -> tuple[float, float, float]:
    """Mean and 95 % t interval of the per-fold differences ``a - b`` over the folds where both
    are finite (the same folds, so the comparison is paired); NaN interval with < 2 folds. With
    identical differences on every fold the interval is that difference, width zero."""
    pairs = [(x, y) for x, y in zip(a, b) if math.isfinite(x) and math.isfinite(y)]
    if len(pairs) < 2:
        return float("nan"), float("nan"), float("nan")
    d = np.asarray([x - y for x, y in pairs], dtype=float)
    half = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d))
    return float(d.mean()), float(d.mean() - half), float(d.mean() + half)


def paired_bootstrap_difference(y: np.ndarray, a: np.ndarray, b: np.ndarray, *, seed: int = 0,
                                n: int = BOOTSTRAP) -> tuple[float, float, float]:
    """ROC AUC of scores ``a`` minus that of ``b`` on the same cells ``y``, with its 95 %
    percentile bootstrap interval: each resample draws the same cells for both (paired)."""
    y = np.asarray(y)
    if not 0 < y.sum() < len(y):
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(n):
        idx = rng.integers(0, len(y), len(y))
        if 0 < y[idx].sum() < len(idx):
            diffs.append(roc_auc(y[idx], a[idx]) - roc_auc(y[idx], b[idx]))
    mean = roc_auc(y, a) - roc_auc(y, b)
    if not diffs:
        return float(mean), float("nan"), float("nan")
    low, high = np.percentile(diffs, [2.5, 97.5])
    return float(mean), float(low), float(high)

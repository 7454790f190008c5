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

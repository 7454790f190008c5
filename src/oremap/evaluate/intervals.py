"""Interval helpers: the t interval of per-fold scores and the bootstrap interval of ROC AUC."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
from scipy import stats

from oremap.evaluate.metrics import roc_auc

__all__ = [
    "BOOTSTRAP",
    "fold_interval",
    "bootstrap_interval",
    "paired_bootstrap_difference",
    "paired_fold_difference",
    "weighted_aucs",
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


#: Cells x resamples held in memory at once by the vectorised bootstrap (about 40 MB).
_BATCH_CELLS = 5_000_000


def _resample_counts(n: int, *, seed: int, draws: int) -> Iterator[np.ndarray]:
    """(batch, n) multiplicities of ``draws`` bootstrap resamples of ``n`` cells, in batches
    that keep memory bounded however many cells there are."""
    rng = np.random.default_rng(seed)
    step = max(1, min(draws, _BATCH_CELLS // max(n, 1)))
    for start in range(0, draws, step):
        k = min(step, draws - start)
        idx = rng.integers(0, n, size=(k, n))
        flat = (np.arange(k)[:, None] * n + idx).ravel()
        yield np.bincount(flat, minlength=k * n).reshape(k, n).astype(np.float64)


def weighted_aucs(y: np.ndarray, score: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """ROC AUC of ``score`` on each row of cell multiplicities ``counts`` (ties count one
    half), all rows at once; NaN for a row with one class only. Equal to
    :func:`~oremap.evaluate.metrics.roc_auc` on the resampled cells."""
    y = np.asarray(y).astype(bool)
    s = np.asarray(score, dtype=np.float64)
    order = np.argsort(s, kind="stable")
    s_sorted = s[order]
    starts = np.r_[0, np.flatnonzero(np.diff(s_sorted)) + 1]
    w = counts[:, order]
    pos = np.add.reduceat(w * y[order], starts, axis=1)
    neg = np.add.reduceat(w * ~y[order], starts, axis=1)
    below = np.cumsum(neg, axis=1) - neg
    n_pos, n_neg = pos.sum(axis=1), neg.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (pos * (below + 0.5 * neg)).sum(axis=1) / (n_pos * n_neg)
    return np.where((n_pos > 0) & (n_neg > 0), auc, np.nan)


def bootstrap_interval(y: np.ndarray, score: np.ndarray, *, seed: int = 0,
                       n: int = BOOTSTRAP) -> tuple[float, float]:
    """95 % percentile bootstrap interval of ROC AUC over cells (resamples with one class are
    skipped)."""
    y = np.asarray(y)
    if len(y) == 0:
        return float("nan"), float("nan")
    aucs = np.concatenate([weighted_aucs(y, score, c)
                           for c in _resample_counts(len(y), seed=seed, draws=n)])
    aucs = aucs[np.isfinite(aucs)]
    if not aucs.size:
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
    diffs = np.concatenate([weighted_aucs(y, a, c) - weighted_aucs(y, b, c)
                            for c in _resample_counts(len(y), seed=seed, draws=n)])
    diffs = diffs[np.isfinite(diffs)]
    mean = roc_auc(y, a) - roc_auc(y, b)
    if not diffs.size:
        return float(mean), float("nan"), float("nan")
    low, high = np.percentile(diffs, [2.5, 97.5])
    return float(mean), float(low), float(high)

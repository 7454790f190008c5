"""Permutation importance of evidence layers (drop in ROC AUC when a layer is shuffled)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from oremap.errors import InputDataError
from oremap.evaluate.metrics import _binary_labels, _scores, roc_auc

__all__ = [
    "permutation_importance",
    "importance_permutations",
    "importance_score",
    "layer_drops",
    "importance_table",
]


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

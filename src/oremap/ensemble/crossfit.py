"""Rule parameters and calibrators fitted out of fold, over the whole training side.

With K-fold cross-validation every labelled cell has a held-out score from the fold model
that did not see it (``oof_<member>`` of the ensemble table). For test fold ``k`` the
*training side* is every labelled cell of the other folds: :func:`fit_out_of_fold` fits fold
``k``'s calibrators, weights and learned rules on those cells' held-out scores (cross-fitting:
no parameter of fold ``k`` saw a label of fold ``k``), and the final map's on every held-out
labelled cell. With a handful of deposits this pools all of them (about 14 of 17 in Central
Lapland) where one inner validation split holds two or three.

Weights are shrunk toward equal weights by :func:`separation`: the share of the spread of the
members' out-of-fold ROC AUC that is not bootstrap noise. Members that cannot be told apart
get equal weights (``weighted_average`` is then ``simple_average``). See
``docs/calibration.md``.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from oremap import contract
from oremap.config import Config
from oremap.ensemble.calibration import MIN_PER_CLASS, Calibrator, fit_calibrator
from oremap.ensemble.params import (
    EnsembleParams,
    RuleParams,
    fit_rule_params,
    mean_rule_params,
    metric_values,
    weights_from_table1,
)
from oremap.errors import DroppedDataWarning, InputDataError
from oremap.evaluate.intervals import _resample_counts, weighted_aucs
from oremap.evaluate.metrics import roc_auc
from oremap.members import TestProbabilities
from oremap.names import BASELINES
from oremap.runinfo import RunDir, stage_folder

__all__ = [
    "SEPARATION_DRAWS",
    "Separation",
    "calibration_methods",
    "fit_out_of_fold",
    "member_calibrators",
    "out_of_fold_cells",
    "run_rule_params",
    "separation",
    "shrunk_weights",
]

#: Bootstrap resamples of the training side's cells measuring how well members separate.
SEPARATION_DRAWS = 200


@dataclass(frozen=True)
class Separation:
    """How well the cells tell members apart by ROC AUC.

    Attributes
    ----------
    spread : float
        Mean squared deviation of the members' ROC AUC from their mean.
    noise : float
        The same expected from resampling the cells alone: the mean over members of the
        bootstrap variance of that deviation (paired resamples).
    shrinkage : float
        ``max(0, 1 - noise / spread)``: the share of the spread that is signal (positive-part
        empirical Bayes); 0 when the members cannot be told apart.
    """

    spread: float
    noise: float
    shrinkage: float


def separation(y: np.ndarray, probs: np.ndarray, *, seed: int = 0,
               draws: int = SEPARATION_DRAWS) -> Separation:
    """How much of the spread of the members' ROC AUC on labels ``y`` is more than noise.

    Parameters
    ----------
    y : (n_cells,) int array
        1 ore, 0 barren.
    probs : (n_members, n_cells) float array
    seed, draws
        Paired bootstrap over the cells (every member scored on the same resamples).
    """
    y = np.asarray(y).astype(int)
    probs = np.asarray(probs, dtype=float)
    if probs.shape[0] < 2:
        return Separation(0.0, 0.0, 0.0)
    auc = np.array([roc_auc(y, p) for p in probs])
    dev = auc - auc.mean()
    spread = float(np.mean(dev ** 2))
    boot = np.concatenate([np.vstack([weighted_aucs(y, p, c) for p in probs])
                           for c in _resample_counts(len(y), seed=seed, draws=draws)], axis=1)
    boot = boot[:, np.isfinite(boot).all(axis=0)]
    if boot.shape[1] < 2 or not np.isfinite(spread):
        return Separation(spread, float("nan"), 0.0)
    noise = float(np.mean(np.var(boot - boot.mean(axis=0), axis=1, ddof=1)))
    lam = 0.0 if spread <= 0 else float(np.clip(1.0 - noise / spread, 0.0, 1.0))
    return Separation(spread, noise, lam)


def shrunk_weights(y: np.ndarray, probs: np.ndarray, *, metric: str, threshold: float,
                   seed: int) -> tuple[np.ndarray, Separation]:
    """Weights of the weighted rules, shrunk toward equal weights by :func:`separation`.

    Before shrinking, weights are proportional to the members' skill: ROC AUC above chance
    (``AUC - 0.5``, at least 0) for ``metric = "auc"``; the metric itself (He et al.) for
    ``accuracy`` and ``f1``. ``w = s * skill_weights + (1 - s) / n``, with ``s`` the
    separation's shrinkage.
    """
    n = probs.shape[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DroppedDataWarning)
        values = metric_values(y, probs, metric, threshold=threshold)
    values = np.nan_to_num(values, nan=0.0)
    if metric == "auc":
        values = np.clip(values - 0.5, 0.0, None)
    raw = values / values.sum() if values.sum() > 0 else np.full(n, 1.0 / n)
    sep = separation(y, probs, seed=seed)
    w = sep.shrinkage * raw + (1.0 - sep.shrinkage) / n
    return w / w.sum(), sep


def member_calibrators(y: np.ndarray, probs: np.ndarray,
                       methods: Sequence[str | None]) -> tuple[Calibrator, ...]:
    """One calibrator per member fitted on ``(y, probs[i])`` by ``methods[i]`` (None: the
    identity). Too few ore or barren cells give the identity, with a warning."""
    n1 = int(np.sum(y == 1))
    if n1 < MIN_PER_CLASS or len(y) - n1 < MIN_PER_CLASS:
        if any(m is not None for m in methods):
            warnings.warn(f"{n1} ore and {len(y) - n1} barren cells: too few to calibrate "
                          f"the members ({MIN_PER_CLASS} of each needed); their P(ore) is "
                          "combined uncalibrated.", DroppedDataWarning, stacklevel=2)
        return tuple(Calibrator("identity") for _ in methods)
    return tuple(Calibrator("identity") if m is None else fit_calibrator(y, p, m)
                 for p, m in zip(probs, methods))


def out_of_fold_cells(table: pd.DataFrame, members: Sequence[str]) -> pd.DataFrame:
    """The labelled cells that every member scored while held out (``test_fold`` >= 0)."""
    need = [f"oof_{m}" for m in members]
    missing = [c for c in ("label", "test_fold", *need) if c not in table]
    if missing:
        raise InputDataError(f"the cell table ({contract.file('predict', 'predictions')}) has "
                             f"no column(s) {missing}; the ensemble needs the held-out "
                             "scores of the predict stage: rerun it (oremap predict, then "
                             "oremap ensemble)")
    rows = table.loc[table["label"].isin([0, 1]) & (table["test_fold"] >= 0)]
    return rows.loc[rows[need].notna().all(axis=1)]


def _fit(y: np.ndarray, raw: np.ndarray, methods: Sequence[str | None], *, metric: str,
         k: int, threshold: float, seed: int, out_of_fold: bool) -> RuleParams:
    """Calibrators, then the rules' parameters on the calibrated scores of cells ``y``; out of
    fold, the weights are shrunk (:func:`shrunk_weights`), on inner validation they are the
    metric's as before."""
    cal = member_calibrators(y, raw, methods)
    probs = np.vstack([c.apply(p) for c, p in zip(cal, raw)])
    calibrated = any(m is not None for m in methods)
    rp = fit_rule_params(y, probs, metric=metric, k=k, threshold=threshold, seed=seed,
                         balanced=not calibrated)
    n1 = int(np.sum(y == 1))
    rp = replace(rp, calibrators=cal if calibrated else None, fitted_on=(n1, len(y) - n1))
    if not out_of_fold:
        return rp
    w, sep = shrunk_weights(y, probs, metric=metric, threshold=threshold, seed=seed)
    return replace(rp, weights=w, source="out_of_fold", shrinkage=sep.shrinkage)


def fit_out_of_fold(table: pd.DataFrame, members: Sequence[str],
                    methods: Mapping[str, str | None], *, metric: str, k: int,
                    threshold: float, seed: int) -> EnsembleParams:
    """Calibrators, weights and learned rules of each fold from its training side's held-out
    scores, and of the final map from every held-out labelled cell.

    Parameters
    ----------
    table : DataFrame
        The cell table of the predict stage (``label``, ``test_fold``, ``oof_<member>``).
    members : sequence of str
    methods : mapping of member -> calibration method or None
    metric, k, threshold, seed
        As for :func:`~oremap.ensemble.params.fit_rule_params`.

    Raises
    ------
    InputDataError
        If a fold's training side holds one class only (too few labelled cells for
        cross-fitting; use ``[ensemble] fit_on = "validation"`` or fewer folds).
    """
    rows = out_of_fold_cells(table, members)
    y_all = rows["label"].to_numpy().astype(int)
    raw_all = np.vstack([rows[f"oof_{m}"].to_numpy(dtype=float) for m in members])
    fold_of = rows["test_fold"].to_numpy()
    how = [methods.get(m) for m in members]
    folds = []
    n_folds = int(table["test_fold"].max()) + 1
    for f in range(n_folds):
        side = fold_of != f
        y = y_all[side]
        if len(set(y.tolist())) < 2:
            raise InputDataError(
                f"the training side of test fold {f} holds {int(y.sum())} ore and "
                f"{int((y == 0).sum())} barren held-out cells; out-of-fold fitting needs both. "
                "Set [ensemble] fit_on = \"validation\" or use fewer [samples] folds.")
        folds.append(_fit(y, raw_all[:, side], how, metric=metric, k=k,
                          threshold=threshold, seed=seed, out_of_fold=True))
    final = _fit(y_all, raw_all, how, metric=metric, k=k, threshold=threshold, seed=seed,
                 out_of_fold=True)
    return EnsembleParams(final=final, folds=folds)


def calibration_methods(config: Config, members: Sequence[str]) -> dict[str, str | None]:
    """Each member's calibration method from ``[ensemble]`` (None: not calibrated)."""
    e = config.ensemble
    out: dict[str, str | None] = {}
    for m in members:
        method = e.calibration
        if m in BASELINES and e.baseline_calibration != "same":
            method = e.baseline_calibration
        out[m] = None if method == "none" else method
    return out


def run_rule_params(config: Config, run: RunDir, members: list[str]) -> Any:
    """What the rules learn, per fold and for the final map.

    With cross-validation and ``[ensemble] fit_on = "out_of_fold"``: :func:`fit_out_of_fold`
    on the held-out scores of the predict stage's cell table. Else, with inner validation:
    on each fold's inner validation cells (calibrators too; the final map's on all of them).
    Else (the paper's protocol): weights from Table 1 of the test split (optimistic), no
    learned rules and no calibration.
    """
    from oremap.samples import load_sample_set  # torch: off the light import path

    e, thr = config.ensemble, config.predict.threshold
    methods = calibration_methods(config, members)
    table_path = run.root / contract.file("predict", "predictions")
    if config.samples.folds > 1 and e.fit_on == "out_of_fold":
        return fit_out_of_fold(pd.read_csv(table_path), members, methods,
                               metric=e.weight_metric, k=e.top_k, threshold=thr,
                               seed=config.seed)
    if config.samples.validation > 0:
        cell_id = load_sample_set(stage_folder(run, "samples")).cell_id
        path = run.root / contract.file("evaluate", "validation_probs")
        how = [methods[m] for m in members]
        folds, ys, ps = [], [], []
        for f in TestProbabilities.load(path, members).folds:
            cells = f.by_cell(cell_id)
            y, raw = cells.y, cells.stacked(members)
            folds.append(_fit(y, raw, how, metric=e.weight_metric, k=e.top_k, threshold=thr,
                              seed=config.seed, out_of_fold=False))
            ys.append(y)
            ps.append(raw)
        final = mean_rule_params(folds, k=e.top_k)
        if len(folds) > 1 and any(how):
            y = np.concatenate(ys)
            final = replace(final, calibrators=member_calibrators(y, np.hstack(ps), how))
        return EnsembleParams(final=final, folds=folds)
    t1 = pd.read_csv(run.root / contract.file("evaluate", "table1"), index_col=0)
    final = RuleParams(weights=weights_from_table1(t1, members, e.weight_metric))
    return EnsembleParams(final=final, folds=[final])

"""Rule parameters: fitted on validation cells, metric weights, weights.json, combine_columns."""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from oremap import io
from oremap.ensemble.calibration import Calibrator
from oremap.ensemble.rules import (
    SELECTABLE,
    STACKING_C,
    EnsembleResult,
    _check_probs,
    _logit,
    combine,
)
from oremap.errors import DroppedDataWarning, InputDataError
from oremap.evaluate.metrics import classification_report, roc_auc

__all__ = [
    "EnsembleParams",
    "RuleParams",
    "combine_columns",
    "fit_rule_params",
    "fit_stacking",
    "mean_rule_params",
    "metric_values",
    "metric_weights",
    "read_params",
    "read_weights",
    "weights_from_table1",
    "write_params",
]


@dataclass(frozen=True)
class RuleParams:
    """What the ensemble rules take from data, for one set of members (one fold, or the map).

    Attributes
    ----------
    weights : (n_members,) float array
        Weights of ``weighted_average`` and ``weighted_voting``, summing to one.
    top : (n_members,) bool array or None
        Members averaged by ``top_k``.
    intercept : float or None
    coef : (n_members,) float array or None
        The ``stacking`` logistic regression on the members' logit P(ore).
    source : str
        Where they come from: ``"validation"`` (inner validation cells) or ``"test"`` (Table 1
        of the test split: optimistic for the weighted rules).
    choice : str or None
        The rule ``selected`` applies.
    scores : mapping or None
        Validation ROC AUC of each rule of :data:`SELECTABLE` (stacking's cross-fitted).
    calibrators : tuple of Calibrator or None
        One per member: applied to the members' P(ore) before the rules of
        :data:`~oremap.names.CALIBRATED_RULES` combine them (None: uncalibrated).
    shrinkage : float or None
        How far the weights moved from equal weights toward the metric's (0: equal weights,
        the members could not be told apart; 1: the metric's weights); see
        :func:`~oremap.ensemble.crossfit.separation`. None where not shrunk.
    fitted_on : (int, int) or None
        Ore and barren cells the parameters were fitted on.
    """

    weights: np.ndarray
    top: np.ndarray | None = None
    intercept: float | None = None
    coef: np.ndarray | None = None
    source: str = "test"
    choice: str | None = None
    scores: Mapping[str, float] | None = None
    calibrators: tuple[Calibrator, ...] | None = None
    shrinkage: float | None = None
    fitted_on: tuple[int, int] | None = None

    @property
    def learned(self) -> bool:
        """Whether the learned rules (stacking, top_k, selected) can run."""
        return self.top is not None and self.coef is not None and self.choice is not None

    def to_dict(self, members: Sequence[str]) -> dict[str, Any]:
        out: dict[str, Any] = {"source": self.source,
                               "weights": dict(zip(members, self.weights.tolist()))}
        if self.learned:
            assert self.top is not None and self.coef is not None
            out["top_k"] = [m for m, t in zip(members, self.top) if t]
            out["stacking"] = {"intercept": self.intercept,
                               "coef": dict(zip(members, self.coef.tolist()))}
            out["selected"] = self.choice
            if self.scores is not None:  # the ROC AUC of each rule on the cells fitted on
                key = "validation_roc_auc" if self.source == "validation" else \
                    "held_out_roc_auc"
                out[key] = dict(self.scores)
        if self.calibrators is not None:
            out["calibration"] = {m: json.loads(c.to_json())
                                  for m, c in zip(members, self.calibrators)}
        if self.shrinkage is not None:
            out["shrinkage"] = self.shrinkage
        if self.fitted_on is not None:
            out["fitted_on"] = {"ore_cells": self.fitted_on[0],
                                "barren_cells": self.fitted_on[1]}
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], members: Sequence[str], path: Path) -> RuleParams:
        missing = [m for m in members if m not in d["weights"]]
        if missing:
            raise InputDataError(f"{path} has no weight for {missing}; recompute the ensemble "
                                 "stage")
        weights = np.array([float(d["weights"][m]) for m in members])
        cal = d.get("calibration")
        calibrators = None if cal is None else tuple(
            Calibrator.from_json(json.dumps(cal[m])) for m in members)
        fitted = d.get("fitted_on")
        extra: dict[str, Any] = dict(
            calibrators=calibrators, shrinkage=d.get("shrinkage"),
            fitted_on=None if fitted is None else (int(fitted["ore_cells"]),
                                                   int(fitted["barren_cells"])))
        if "stacking" not in d:
            return cls(weights=weights, source=str(d.get("source", "test")), **extra)
        return cls(weights=weights, top=np.array([m in d["top_k"] for m in members]),
                   intercept=float(d["stacking"]["intercept"]),
                   coef=np.array([float(d["stacking"]["coef"][m]) for m in members]),
                   source=str(d.get("source", "validation")), choice=d.get("selected"),
                   scores=d.get("validation_roc_auc", d.get("held_out_roc_auc")), **extra)


@dataclass(frozen=True)
class EnsembleParams:
    """Rule parameters of each fold (for that fold's held-out figures) and of the final map
    (the mean over folds, as the final map is the mean of the fold models)."""

    final: RuleParams
    folds: list[RuleParams]

    def fold(self, k: int) -> RuleParams:
        return self.folds[k] if len(self.folds) > 1 else self.folds[0]


def metric_values(y: np.ndarray, probs: np.ndarray, metric: str, *,
                  threshold: float = 0.5) -> np.ndarray:
    """Each member's ``metric`` (accuracy | f1 | auc) on labels ``y``: (n_members,)."""
    column = {"accuracy": "accuracy", "f1": "macro_f1", "auc": "roc_auc"}[metric]
    return np.array([classification_report(y, p, threshold=threshold)[column] for p in probs])


def fit_rule_params(y: np.ndarray, probs: np.ndarray, *, metric: str, k: int,
                    threshold: float = 0.5, seed: int = 0,
                    balanced: bool = True) -> RuleParams:
    """Fit what the rules learn on inner validation cells.

    Parameters
    ----------
    y : (n_cells,) int array
        Labels (1 ore, 0 barren) of the validation cells; both classes needed.
    probs : (n_members, n_cells) float array
        The members' P(ore) of those cells (models that did not train on them).
    metric : {"accuracy", "f1", "auc"}
        Weights of the weighted rules are proportional to it (as in He et al.).
    k : int
        Members kept by ``top_k`` (the k best by ROC AUC; at most all).
    threshold, seed
    balanced : bool
        Stacking weighs the classes equally (its P(ore) is then a ranking, as the members'
        class-weighted losses); False fits it to the cells as they are, so that its P(ore)
        is calibrated (what the calibrated runs use).

    Returns
    -------
    RuleParams
        ``stacking``: :func:`fit_stacking`. ``selected``: the rule of :data:`SELECTABLE` with
        the best validation ROC AUC, stacking's measured by 5-fold cross-fitting.
    """
    probs = _check_probs(probs)
    y = np.asarray(y).astype(int)
    if len(set(y.tolist())) < 2:
        raise InputDataError(
            f"the inner validation cells hold one class only ({len(y)} cells); the rules cannot "
            "learn from them. Raise [samples] validation or use a smaller block_size.")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DroppedDataWarning)
        values = metric_values(y, probs, metric, threshold=threshold)
        if not np.isfinite(values).any() or np.nansum(values) <= 0:
            values = np.ones(len(probs))
        w = np.array(list(metric_weights(dict(enumerate(values))).values()))
    auc = metric_values(y, probs, "auc")
    order = np.argsort(-np.nan_to_num(auc, nan=-1.0), kind="stable")
    top = np.zeros(len(probs), dtype=bool)
    top[order[:max(1, min(k, len(probs)))]] = True
    intercept, coef = fit_stacking(y, probs, balanced=balanced)
    scores = {"simple_average": roc_auc(y, probs.mean(axis=0)),
              "weighted_average": roc_auc(y, w @ probs),
              "top_k": roc_auc(y, probs[top].mean(axis=0)),
              "stacking": _cross_fitted_stacking_auc(y, probs, seed=seed, balanced=balanced)}
    finite = {r: v for r, v in scores.items() if np.isfinite(v)}
    choice = max(finite, key=lambda r: (finite[r], -SELECTABLE.index(r))) if finite \
        else "simple_average"
    return RuleParams(weights=w, top=top, intercept=intercept, coef=coef, source="validation",
                      choice=choice, scores={r: float(v) for r, v in scores.items()})


def fit_stacking(y: np.ndarray, probs: np.ndarray, *,
                 balanced: bool = True) -> tuple[float, np.ndarray]:
    """Stacking weights: an L2 logistic regression (``C`` = :data:`STACKING_C`; with
    ``balanced``, balanced class weights as the members' losses, else the cells as they are,
    for a calibrated P(ore)) on the members' standardised logit P(ore), refitted
    without the members whose coefficient is negative until none is (a member that ranks ore
    below barren is not trusted). Returns the intercept and coefficients on the raw logits.
    """
    # Local import: scikit-learn loads only when stacking is fitted.
    from sklearn.linear_model import LogisticRegression

    logits = _logit(probs)
    mu, sd = logits.mean(axis=1), logits.std(axis=1)
    sd = np.where(sd > 0, sd, 1.0)
    z = ((logits.T - mu) / sd)
    keep = np.ones(len(probs), dtype=bool)
    coef = np.zeros(len(probs))
    intercept = 0.0
    for _ in range(len(probs)):
        lr = LogisticRegression(C=STACKING_C, class_weight="balanced" if balanced else None,
                                max_iter=1000)
        lr.fit(z[:, keep], y)
        coef = np.zeros(len(probs))
        coef[keep] = lr.coef_[0]
        intercept = float(lr.intercept_[0])
        if (coef >= 0).all():
            break
        if not (coef > 0).any():
            keep = np.zeros(len(probs), dtype=bool)
            keep[int(np.argmax(coef))] = True
            continue
        keep &= coef > 0
    raw = coef / sd
    return float(intercept - raw @ mu), raw


def _cross_fitted_stacking_auc(y: np.ndarray, probs: np.ndarray, *, seed: int,
                               folds: int = 5, balanced: bool = True) -> float:
    """ROC AUC of stacking on validation cells, each scored by a stacker not fitted on it."""
    # Local import: scikit-learn loads only when stacking is fitted.
    from sklearn.model_selection import StratifiedKFold

    n_splits = min(folds, int(np.bincount(y, minlength=2).min()))
    if n_splits < 2:
        return float("nan")
    scores = np.empty(len(y))
    for fit, held in StratifiedKFold(n_splits, shuffle=True, random_state=seed).split(
            probs.T, y):
        if len(set(y[fit].tolist())) < 2:
            return float("nan")
        b, c = fit_stacking(y[fit], probs[:, fit], balanced=balanced)
        scores[held] = b + c @ _logit(probs[:, held])
    return roc_auc(y, scores)


def mean_rule_params(folds: Sequence[RuleParams], *, k: int | None = None) -> RuleParams:
    """Parameters of the final map: the mean over folds of weights and stacking coefficients;
    ``top_k`` keeps the members chosen by the most folds (ties: by the first fold's order);
    ``selected`` the rule chosen by the most folds."""
    if len(folds) == 1:
        return folds[0]
    w = np.mean([f.weights for f in folds], axis=0)
    if not all(f.learned for f in folds):
        return RuleParams(weights=w / w.sum(), source=folds[0].source)
    votes = np.sum([f.top for f in folds], axis=0)
    n_top = int(k if k is not None else folds[0].top.sum())  # type: ignore[union-attr]
    order = np.argsort(-votes, kind="stable")
    top = np.zeros(len(w), dtype=bool)
    top[order[:n_top]] = True
    choices = [f.choice for f in folds]
    choice = max(SELECTABLE, key=lambda r: (choices.count(r), -SELECTABLE.index(r)))
    return RuleParams(weights=w / w.sum(), top=top,
                      intercept=float(np.mean([f.intercept for f in folds])),
                      coef=np.mean([f.coef for f in folds], axis=0), source=folds[0].source,
                      choice=choice)


def metric_weights(metric_values: Mapping[str, float]) -> dict[str, float]:
    """Model weights proportional to a validation metric (e.g. ROC AUC), summing to one.

    A model whose metric is NaN gets weight 0 and a :class:`DroppedDataWarning`.

    Parameters
    ----------
    metric_values : dict of str -> float
        Model name -> validation metric, >= 0 (higher is better).

    Returns
    -------
    dict of str -> float
        Same keys and order, ``w_m = v_m / sum(v)``.

    Raises
    ------
    InputDataError
        If the dict is empty, a metric is negative or infinite, or all weights are 0.
    """
    if not metric_values:
        raise InputDataError("metric_weights got no models; pass {model: validation metric}.")
    values = {k: float(v) for k, v in metric_values.items()}
    nan_models = [k for k, v in values.items() if np.isnan(v)]
    bad = {k: v for k, v in values.items() if not np.isnan(v) and (v < 0 or np.isinf(v))}
    if bad:
        raise InputDataError(
            f"metric values must be finite and >= 0 to serve as weights; got {bad}. "
            "Use a score such as ROC AUC or accuracy, not a loss."
        )
    if nan_models:
        warnings.warn(
            f"metric_weights gave weight 0 to {len(nan_models)} model(s) with a NaN metric: "
            f"{nan_models}.",
            DroppedDataWarning,
            stacklevel=2,
        )
    clean = {k: (0.0 if np.isnan(v) else v) for k, v in values.items()}
    total = sum(clean.values())
    if total <= 0:
        raise InputDataError(
            f"all metric values are 0 or NaN ({values}); no model can get a positive weight."
        )
    return {k: v / total for k, v in clean.items()}

# --------------------------------------------------------------------------- the ensemble stage


def weights_from_table1(table1: pd.DataFrame, members: Sequence[str],
                        metric: str) -> np.ndarray:
    """Weights of ``members`` proportional to ``metric`` (accuracy | f1 | auc) in Table 1.

    Table 1 of one split has the metric's column; of several folds, its ``_mean``.
    """
    column = {"accuracy": "accuracy", "f1": "macro_f1", "auc": "roc_auc"}[metric]
    if column not in table1.columns:
        column = f"{column}_mean"
    w = metric_weights({m: float(table1.loc[m, column]) for m in members})
    return np.array([w[m] for m in members])


def write_params(path: Path, members: Sequence[str], params: EnsembleParams,
                 metric: str) -> None:
    """``weights.json``: the weight metric, and the final and per-fold rule parameters."""
    io.write_json(path, {"metric": metric, **params.final.to_dict(members),
                         "folds": [f.to_dict(members) for f in params.folds]})


def read_params(path: Path, members: Sequence[str]) -> EnsembleParams:
    """The rule parameters of ``members`` from a ``weights.json`` (:func:`write_params`)."""
    stored = io.read_json(path)
    final = RuleParams.from_dict(stored, members, path)
    folds = [RuleParams.from_dict(f, members, path) for f in stored.get("folds", [])]
    return EnsembleParams(final=final, folds=folds or [final])


def read_weights(path: Path, members: Sequence[str]) -> np.ndarray:
    """The final weights of ``members`` from a ``weights.json`` (:func:`write_params`)."""
    return read_params(path, members).final.weights


def _as_params(params: RuleParams | np.ndarray | None) -> RuleParams | None:
    if params is None or isinstance(params, RuleParams):
        return params
    return RuleParams(weights=np.asarray(params, dtype=float))


def combine_columns(table: pd.DataFrame, members: Sequence[str], rules: Sequence[str],
                    params: RuleParams | np.ndarray, *, threshold: float,
                    prefix: str = "p_") -> dict[str, EnsembleResult]:
    """Every rule in ``rules`` applied to the ``<prefix><member>`` columns of a cell table
    (``params``: rule parameters, or just the weights of the weighted rules)."""
    probs = np.vstack([table[f"{prefix}{m}"].to_numpy() for m in members])
    rp = _as_params(params)
    return {rule: combine(rule, probs, params=rp, threshold=threshold) for rule in rules}

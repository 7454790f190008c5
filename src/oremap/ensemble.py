"""Ensemble rules combining several models' P(ore), and stability statistics."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from oremap import io
from oremap.errors import DroppedDataWarning, InputDataError, UnknownNameError
from oremap.labels import UNDECIDED, Label
from oremap.names import LEARNED_RULES, RULES, check_registered, member_kind

if TYPE_CHECKING:
    from oremap.members import TestProbabilities

__all__ = [
    "UNDECIDED",
    "COUNT_COLUMNS",
    "EnsembleResult",
    "register",
    "list_rules",
    "combine",
    "simple_average",
    "weighted_average",
    "majority_voting",
    "plurality_voting",
    "weighted_voting",
    "metric_weights",
    "prediction_counts",
    "table2",
    "dispersion",
    "stability_table",
    "seed_variability",
    "seed_variability_table",
]

#: Columns of :func:`table2` / keys of :func:`prediction_counts` (He et al. 2024, Table 2).
COUNT_COLUMNS: tuple[str, ...] = ("total", "known_positive", "unknown", "negative")

#: A rule maps (n_models, n_cells) P(ore), normalised (n_models,) weights and the threshold to
#: (n_cells,) probability and (n_cells,) prediction.
Rule = Callable[..., tuple[np.ndarray, np.ndarray]]
_RULES: dict[str, Rule] = {}

# Relative tolerance under which two summed vote weights count as exactly equal.
_WEIGHT_TIE_RTOL = 1e-12


@dataclass(frozen=True)
class EnsembleResult:
    """Output of :func:`combine`.

    Attributes
    ----------
    rule : str
        Name of the rule.
    probability : (n_cells,) float array
        Combined P(ore) for averaging rules; the (weighted, for weighted voting) share of
        "ore" votes for voting rules. In [0, 1].
    prediction : (n_cells,) int array
        1 (ore), 0 (barren) or :data:`UNDECIDED` (-2).
    weights : (n_models,) float array
        The normalised weights used (equal when none were given; ignored by unweighted rules).
    """

    rule: str
    probability: np.ndarray
    prediction: np.ndarray
    weights: np.ndarray


def register(name: str) -> Callable[[Rule], Rule]:
    """Decorator adding an ensemble rule under ``name``.

    Raises
    ------
    ValueError
        If ``name`` is already registered (a programming error).
    """

    def add(rule: Rule) -> Rule:
        if name in _RULES:
            raise ValueError(f"ensemble rule {name!r} registered twice")
        _RULES[name] = rule
        return rule

    return add


def list_rules() -> list[str]:
    """Names of the registered rules, in registration order.

    That is He et al.'s order, the order of :data:`oremap.names.RULES` (checked at import):
    ``simple_average, weighted_average, majority_voting, plurality_voting, weighted_voting``.
    """
    return list(_RULES)


def _check_probs(probs: np.ndarray) -> np.ndarray:
    arr = np.asarray(probs, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] < 1:
        raise InputDataError(
            f"probs must be (n_models, n_cells) with n_models >= 1; got shape {arr.shape}. "
            "Stack the models' P(ore) with np.stack(list_of_arrays)."
        )
    finite = np.isfinite(arr)
    if not finite.all() or np.any((arr[finite] < 0) | (arr[finite] > 1)):
        raise InputDataError(
            f"probs must be finite P(ore) in [0, 1]; got {int((~finite).sum())} non-finite and "
            f"{int(np.sum((arr[finite] < 0) | (arr[finite] > 1)))} out-of-range values. "
            "Mask nodata cells out before combining."
        )
    return arr


def _normalise_weights(weights: Sequence[float] | np.ndarray | None, n_models: int) -> np.ndarray:
    if weights is None:
        return np.full(n_models, 1.0 / n_models)
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (n_models,):
        raise InputDataError(
            f"weights must have shape ({n_models},), one per model; got shape {w.shape}."
        )
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise InputDataError(
            f"weights must be finite and non-negative; got {w.tolist()}. "
            "Use metric_weights() to derive them from a validation score."
        )
    if w.sum() <= 0:
        raise InputDataError(
            f"weights sum to 0 ({w.tolist()}); at least one model needs a positive weight."
        )
    return w / w.sum()


def combine(
    rule: str,
    probs: np.ndarray,
    *,
    weights: Sequence[float] | np.ndarray | None = None,
    threshold: float = 0.5,
    params: RuleParams | None = None,
) -> EnsembleResult:
    """Combine several models' P(ore) per cell with a named rule.

    Parameters
    ----------
    rule : str
        One of :func:`list_rules`.
    probs : (n_models, n_cells) float array
        P(ore) of each model, in [0, 1].
    weights : (n_models,) float array or None
        Non-negative model weights, normalised here to sum to one; ``None`` means equal
        weights. Used only by ``weighted_average`` and ``weighted_voting``; the other rules
        ignore them.
    threshold : float
        Decision threshold on P(ore), in [0, 1]; a model votes ore where ``p >= threshold``.
    params : RuleParams or None
        What the rules learned on the inner validation set (:func:`fit_rule_params`); its
        weights replace ``weights``. Needed by the learned rules (``stacking``, ``top_k``).

    Returns
    -------
    EnsembleResult

    Raises
    ------
    UnknownNameError
        If ``rule`` is not registered.
    InputDataError
        On a bad ``probs`` shape or values, bad weights or a threshold outside [0, 1].
    """
    if rule not in _RULES:
        raise UnknownNameError(f"unknown ensemble rule {rule!r}; choose from {sorted(_RULES)}")
    if not 0.0 <= threshold <= 1.0:
        raise InputDataError(f"threshold must lie in [0, 1]; got {threshold}.")
    p = _check_probs(probs)
    w = _normalise_weights(params.weights if params is not None else weights, p.shape[0])
    if rule in LEARNED_RULES:
        if params is None or not params.learned:
            raise InputDataError(
                f"ensemble rule {rule!r} learns from the inner validation set, and none was "
                "given; set [samples] validation > 0 (e.g. 0.2), or drop it from [ensemble] "
                "rules")
        probability, prediction = _RULES[rule](p, weights=w, threshold=threshold,
                                               params=params)
    else:
        probability, prediction = _RULES[rule](p, weights=w, threshold=threshold)
    return EnsembleResult(
        rule=rule,
        probability=np.asarray(probability, dtype=np.float64),
        prediction=np.asarray(prediction, dtype=np.int64),
        weights=w,
    )


def _threshold_classes(p: np.ndarray, threshold: float) -> np.ndarray:
    return np.where(p >= threshold, Label.POSITIVE, Label.NEGATIVE).astype(np.int64)


@register("simple_average")
def simple_average(
    probs: np.ndarray, *, weights: np.ndarray, threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """Simple averaging: ``p = mean_i p_i``; ore where ``p >= threshold`` (ties go to ore),
    else barren. Never undecided. ``weights`` are ignored.

    Parameters
    ----------
    probs : (n_models, n_cells) float array
    weights : (n_models,) float array
        Ignored.
    threshold : float

    Returns
    -------
    probability, prediction : (n_cells,) float and int arrays
    """
    mean = probs.mean(axis=0)
    return mean, _threshold_classes(mean, threshold)


@register("weighted_average")
def weighted_average(
    probs: np.ndarray, *, weights: np.ndarray, threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """Weighted averaging: ``p = sum_i w_i p_i`` with weights summing to one; ore where
    ``p >= threshold`` (ties go to ore), else barren. Never undecided.

    Parameters
    ----------
    probs : (n_models, n_cells) float array
    weights : (n_models,) float array
        Normalised to sum to one.
    threshold : float

    Returns
    -------
    probability, prediction : (n_cells,) float and int arrays
    """
    avg = np.clip(weights @ probs, 0.0, 1.0)
    return avg, _threshold_classes(avg, threshold)


@register("majority_voting")
def majority_voting(
    probs: np.ndarray, *, weights: np.ndarray, threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """Absolute-majority voting with refusal.

    Each of the ``n`` models votes ore where ``p_i >= threshold``. A cell is ore if more than
    ``n / 2`` models vote ore, barren if more than ``n / 2`` vote barren, otherwise
    :data:`UNDECIDED`. With two classes the refusal happens only for an even ``n`` with an
    exact split (``n / 2`` votes each). ``weights`` are ignored.

    Parameters
    ----------
    probs : (n_models, n_cells) float array
    weights : (n_models,) float array
        Ignored.
    threshold : float

    Returns
    -------
    probability, prediction : (n_cells,) float and int arrays
        ``probability`` is the share of ore votes.
    """
    n = probs.shape[0]
    n_ore = np.sum(probs >= threshold, axis=0)
    n_barren = n - n_ore
    pred = np.full(probs.shape[1], UNDECIDED, dtype=np.int64)
    pred[2 * n_ore > n] = Label.POSITIVE
    pred[2 * n_barren > n] = Label.NEGATIVE
    return n_ore / n, pred


@register("plurality_voting")
def plurality_voting(
    probs: np.ndarray, *, weights: np.ndarray, threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """Plurality voting with a probability tie-break.

    Each model votes ore where ``p_i >= threshold``; the class with more votes wins. With
    two classes this equals majority voting except on exact ties (even ``n``), which are
    broken by the mean probability: ore if ``mean_i p_i >= threshold``, else barren. Never
    undecided. ``weights`` are ignored.

    Parameters
    ----------
    probs : (n_models, n_cells) float array
    weights : (n_models,) float array
        Ignored.
    threshold : float

    Returns
    -------
    probability, prediction : (n_cells,) float and int arrays
        ``probability`` is the share of ore votes.
    """
    n = probs.shape[0]
    n_ore = np.sum(probs >= threshold, axis=0)
    n_barren = n - n_ore
    tie_break = _threshold_classes(probs.mean(axis=0), threshold)
    pred = np.where(
        n_ore > n_barren,
        Label.POSITIVE,
        np.where(n_barren > n_ore, Label.NEGATIVE, tie_break),
    ).astype(np.int64)
    return n_ore / n, pred


@register("weighted_voting")
def weighted_voting(
    probs: np.ndarray, *, weights: np.ndarray, threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """Weighted voting.

    Each model votes ore where ``p_i >= threshold``; ``W = sum of w_i over ore votes``
    (weights sum to one). A cell is ore where ``W > 1/2``, i.e. the ore votes carry more
    than half the total weight, else barren: exactly half goes to **barren** (two weight
    sums equal within a relative 1e-12 count as exactly half). Never undecided.

    Parameters
    ----------
    probs : (n_models, n_cells) float array
    weights : (n_models,) float array
        Normalised to sum to one.
    threshold : float

    Returns
    -------
    probability, prediction : (n_cells,) float and int arrays
        ``probability`` is ``W``, the weighted share of ore votes.
    """
    votes = (probs >= threshold).astype(np.float64)
    w_ore = weights @ votes
    w_barren = weights @ (1.0 - votes)
    ore = (w_ore - w_barren) > _WEIGHT_TIE_RTOL * weights.sum()
    pred = np.where(ore, Label.POSITIVE, Label.NEGATIVE).astype(np.int64)
    return np.clip(w_ore, 0.0, 1.0), pred


# --------------------------------------------------------------------------- learned rules

#: Probabilities are clipped to [EPS, 1 - EPS] before the logit of stacking.
_EPS = 1e-6
#: Inverse L2 strength of the stacking logistic regression (scikit-learn's ``C``).
STACKING_C = 0.1


def _logit(p: np.ndarray) -> np.ndarray:
    q = np.clip(p, _EPS, 1 - _EPS)
    return np.log(q / (1 - q))


@register("stacking")
def stacking(probs: np.ndarray, *, weights: np.ndarray, threshold: float,
             params: RuleParams) -> tuple[np.ndarray, np.ndarray]:
    """Stacking: ``p = sigmoid(b + sum_i c_i logit(p_i))``, a logistic regression fitted on the
    members' probabilities of the inner validation cells (:func:`fit_rule_params`); ore where
    ``p >= threshold``. Never undecided. ``weights`` are ignored.
    """
    assert params.coef is not None and params.intercept is not None
    z = params.intercept + params.coef @ _logit(probs)
    p = 1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))
    return p, _threshold_classes(p, threshold)


@register("top_k")
def top_k(probs: np.ndarray, *, weights: np.ndarray, threshold: float,
          params: RuleParams) -> tuple[np.ndarray, np.ndarray]:
    """Top k: the mean P(ore) of the k members with the highest ROC AUC on the inner
    validation cells (:func:`fit_rule_params`); ore where the mean ``>= threshold``. Never
    undecided. ``weights`` are ignored.
    """
    assert params.top is not None
    mean = probs[params.top].mean(axis=0)
    return mean, _threshold_classes(mean, threshold)


#: The rules ``selected`` chooses from, in order of preference on ties.
SELECTABLE: tuple[str, ...] = ("simple_average", "weighted_average", "top_k", "stacking")


@register("selected")
def selected(probs: np.ndarray, *, weights: np.ndarray, threshold: float,
             params: RuleParams) -> tuple[np.ndarray, np.ndarray]:
    """Selected: the rule of :data:`SELECTABLE` with the best ROC AUC on the inner validation
    cells (stacking's scored by cross-fitting, so that it is not judged on the cells it was
    fitted to); see :func:`fit_rule_params`.
    """
    assert params.choice is not None
    rule = _RULES[params.choice]
    if params.choice in LEARNED_RULES:
        return rule(probs, weights=weights, threshold=threshold, params=params)
    return rule(probs, weights=weights, threshold=threshold)


# The rules above, in He et al.'s order then the learned ones, are oremap.names.RULES.
check_registered("ensemble rule", RULES, _RULES, ordered=True)


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
    """

    weights: np.ndarray
    top: np.ndarray | None = None
    intercept: float | None = None
    coef: np.ndarray | None = None
    source: str = "test"
    choice: str | None = None
    scores: Mapping[str, float] | None = None

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
            if self.scores is not None:
                out["validation_roc_auc"] = dict(self.scores)
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], members: Sequence[str], path: Path) -> RuleParams:
        missing = [m for m in members if m not in d["weights"]]
        if missing:
            raise InputDataError(f"{path} has no weight for {missing}; recompute the ensemble "
                                 "stage")
        weights = np.array([float(d["weights"][m]) for m in members])
        if "stacking" not in d:
            return cls(weights=weights, source=str(d.get("source", "test")))
        return cls(weights=weights, top=np.array([m in d["top_k"] for m in members]),
                   intercept=float(d["stacking"]["intercept"]),
                   coef=np.array([float(d["stacking"]["coef"][m]) for m in members]),
                   source=str(d.get("source", "validation")), choice=d.get("selected"),
                   scores=d.get("validation_roc_auc"))


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
    from oremap.evaluate import classification_report

    column = {"accuracy": "accuracy", "f1": "macro_f1", "auc": "roc_auc"}[metric]
    return np.array([classification_report(y, p, threshold=threshold)[column] for p in probs])


def fit_rule_params(y: np.ndarray, probs: np.ndarray, *, metric: str, k: int,
                    threshold: float = 0.5, seed: int = 0) -> RuleParams:
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

    Returns
    -------
    RuleParams
        ``stacking``: :func:`fit_stacking`. ``selected``: the rule of :data:`SELECTABLE` with
        the best validation ROC AUC, stacking's measured by 5-fold cross-fitting.
    """
    from oremap.evaluate import roc_auc

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
    intercept, coef = fit_stacking(y, probs)
    scores = {"simple_average": roc_auc(y, probs.mean(axis=0)),
              "weighted_average": roc_auc(y, w @ probs),
              "top_k": roc_auc(y, probs[top].mean(axis=0)),
              "stacking": _cross_fitted_stacking_auc(y, probs, seed=seed)}
    finite = {r: v for r, v in scores.items() if np.isfinite(v)}
    choice = max(finite, key=lambda r: (finite[r], -SELECTABLE.index(r))) if finite \
        else "simple_average"
    return RuleParams(weights=w, top=top, intercept=intercept, coef=coef, source="validation",
                      choice=choice, scores={r: float(v) for r, v in scores.items()})


def fit_stacking(y: np.ndarray, probs: np.ndarray) -> tuple[float, np.ndarray]:
    """Stacking weights: an L2 logistic regression (``C`` = :data:`STACKING_C`, balanced class
    weights as the members' losses) on the members' standardised logit P(ore), refitted
    without the members whose coefficient is negative until none is (a member that ranks ore
    below barren is not trusted). Returns the intercept and coefficients on the raw logits.
    """
    from sklearn.linear_model import LogisticRegression

    logits = _logit(probs)
    mu, sd = logits.mean(axis=1), logits.std(axis=1)
    sd = np.where(sd > 0, sd, 1.0)
    z = ((logits.T - mu) / sd)
    keep = np.ones(len(probs), dtype=bool)
    coef = np.zeros(len(probs))
    intercept = 0.0
    for _ in range(len(probs)):
        lr = LogisticRegression(C=STACKING_C, class_weight="balanced", max_iter=1000)
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
                               folds: int = 5) -> float:
    """ROC AUC of stacking on validation cells, each scored by a stacker not fitted on it."""
    from sklearn.model_selection import StratifiedKFold

    from oremap.evaluate import roc_auc

    n_splits = min(folds, int(np.bincount(y, minlength=2).min()))
    if n_splits < 2:
        return float("nan")
    scores = np.empty(len(y))
    for fit, held in StratifiedKFold(n_splits, shuffle=True, random_state=seed).split(
            probs.T, y):
        if len(set(y[fit].tolist())) < 2:
            return float("nan")
        b, c = fit_stacking(y[fit], probs[:, fit])
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


# ---------------------------------------------------------------------------------------------
# stability statistics (He et al. 2024, Table 2)
# ---------------------------------------------------------------------------------------------


def prediction_counts(prediction: np.ndarray, labels: np.ndarray) -> dict[str, int]:
    """Number of cells predicted ore, overall and by known label.

    Parameters
    ----------
    prediction : array of int, any shape
        1 (ore), 0 (barren) or :data:`UNDECIDED`; undecided cells are not ore.
    labels : array of int, same shape
        1 (known ore), 0 (known barren / negative), -1 (unknown).

    Returns
    -------
    dict
        ``total`` (all cells), ``known_positive``, ``unknown``, ``negative``: counts of cells
        predicted ore among all cells and among the cells of each label.

    Raises
    ------
    InputDataError
        If the shapes differ or either array holds other values.
    """
    pred = np.asarray(prediction)
    lab = np.asarray(labels)
    if pred.shape != lab.shape:
        raise InputDataError(
            f"prediction has shape {pred.shape} but labels has {lab.shape}; "
            "pass both for the same cells."
        )
    for arr, name, allowed in (
        (pred, "prediction", (Label.POSITIVE, Label.NEGATIVE, UNDECIDED)),
        (lab, "labels", (Label.POSITIVE, Label.NEGATIVE, Label.UNKNOWN)),
    ):
        if not np.all(np.isin(arr, allowed)):
            bad = np.unique(arr[~np.isin(arr, allowed)])[:5].tolist()
            raise InputDataError(
                f"{name} must hold only {[int(a) for a in allowed]}; got {bad}. "
                "Mask nodata cells out before counting."
            )
    ore = pred == Label.POSITIVE
    return {
        "total": int(ore.sum()),
        "known_positive": int((ore & (lab == Label.POSITIVE)).sum()),
        "unknown": int((ore & (lab == Label.UNKNOWN)).sum()),
        "negative": int((ore & (lab == Label.NEGATIVE)).sum()),
    }


def table2(predictions: Mapping[str, np.ndarray], labels: np.ndarray) -> pd.DataFrame:
    """Predicted-ore counts of several models or rules, like He et al.'s Table 2.

    Parameters
    ----------
    predictions : dict of str -> int array
        Name -> prediction (1, 0 or UNDECIDED) for the same cells as ``labels``.
    labels : int array
        1, 0 or -1 per cell.

    Returns
    -------
    DataFrame
        Index ``model`` (input order), int columns :data:`COUNT_COLUMNS`.

    Raises
    ------
    InputDataError
        If ``predictions`` is empty or an entry is invalid (see :func:`prediction_counts`).
    """
    if not predictions:
        raise InputDataError("table2 got no predictions; pass {name: prediction array}.")
    rows = {name: prediction_counts(p, labels) for name, p in predictions.items()}
    df = pd.DataFrame.from_dict(rows, orient="index")[list(COUNT_COLUMNS)].astype(np.int64)
    df.index.name = "model"
    return df


def dispersion(values: Sequence[float] | np.ndarray) -> dict[str, float]:
    """Spread of a set of values (e.g. one count across models).

    Parameters
    ----------
    values : (n,) float array
        Finite values, n >= 1.

    Returns
    -------
    dict
        ``n``; ``mean``; ``std_sample`` = sqrt(sum (x - mean)^2 / (n - 1)), NaN when n = 1;
        ``mean_abs_dev`` = mean |x - mean|; ``coef_variation`` = std_sample / mean, NaN when
        the mean is 0.

    Raises
    ------
    InputDataError
        If ``values`` is empty, not 1-D or not finite.
    """
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1 or x.size == 0 or not np.all(np.isfinite(x)):
        raise InputDataError(
            f"dispersion needs a non-empty 1-D array of finite values; got shape {x.shape}."
        )
    mean = float(x.mean())
    std = float(x.std(ddof=1)) if x.size > 1 else float("nan")
    return {
        "n": int(x.size),
        "mean": mean,
        "std_sample": std,
        "mean_abs_dev": float(np.mean(np.abs(x - mean))),
        "coef_variation": std / mean if mean != 0 else float("nan"),
    }


def stability_table(table2_models: pd.DataFrame, table2_rules: pd.DataFrame) -> pd.DataFrame:
    """Dispersion of each Table 2 count across the single models and across the rules.

    A smaller spread across rules than across models means the ensemble conclusions depend
    less on which model was chosen.

    Parameters
    ----------
    table2_models, table2_rules : DataFrame
        :func:`table2` outputs for the single models and for the ensemble rules.

    Returns
    -------
    DataFrame
        MultiIndex (``group`` in {"models", "rules"}, ``count`` in the table's columns);
        columns ``n``, ``mean``, ``std_sample``, ``mean_abs_dev``, ``coef_variation``.

    Raises
    ------
    InputDataError
        If the two tables have different columns or either is empty.
    """
    if list(table2_models.columns) != list(table2_rules.columns):
        raise InputDataError(
            f"table2_models has columns {list(table2_models.columns)} but table2_rules has "
            f"{list(table2_rules.columns)}; build both with table2()."
        )
    rows = {}
    for group, table in (("models", table2_models), ("rules", table2_rules)):
        if table.empty:
            raise InputDataError(f"the {group} table is empty; pass at least one row.")
        for column in table.columns:
            rows[(group, column)] = dispersion(table[column].to_numpy())
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index = pd.MultiIndex.from_tuples(out.index, names=["group", "count"])
    return out


def seed_variability(
    preds_by_seed: np.ndarray,
    *,
    threshold: float = 0.5,
    predictions: np.ndarray | None = None,
) -> dict[str, object]:
    """How much a model's (or rule's) map changes when it is retrained with other seeds.

    The class of a cell in one seed is ``prediction`` when ``predictions`` is given (use
    this for voting rules, so that :data:`UNDECIDED` is its own class), else
    ``P(ore) >= threshold``. The flip rate of a cell is the share of seed pairs that give
    it different classes: with ``k_c`` seeds in class ``c`` out of ``m``,
    ``(m(m-1)/2 - sum_c k_c(k_c-1)/2) / (m(m-1)/2)``.

    Parameters
    ----------
    preds_by_seed : (n_seeds, n_cells) float array
        P(ore) (or vote share) per seed and cell, in [0, 1]; n_seeds >= 2.
    threshold : float
        Decision threshold, used when ``predictions`` is None.
    predictions : (n_seeds, n_cells) int array or None
        Classes per seed and cell (1, 0 or UNDECIDED).

    Returns
    -------
    dict
        ``n_seeds``; ``cell_prob_std_sample`` (n_cells,) sample std (ddof=1) of the
        probability across seeds; ``cell_flip_rate`` (n_cells,); ``mean_prob_std_sample``
        and ``mean_flip_rate`` (their means over cells); ``ore_counts`` (n_seeds,) cells of
        class ore per seed; ``ore_count_std_sample``, ``ore_count_min``, ``ore_count_max``.

    Raises
    ------
    InputDataError
        If fewer than two seeds, bad shapes or values outside [0, 1].
    """
    p = _check_probs(preds_by_seed)
    if p.shape[0] < 2:
        raise InputDataError(
            f"seed_variability needs >= 2 seeds (rows); got {p.shape[0]}. "
            "Retrain with several seeds first."
        )
    if predictions is None:
        classes = _threshold_classes(p, threshold)
    else:
        classes = np.asarray(predictions)
        if classes.shape != p.shape:
            raise InputDataError(
                f"predictions has shape {classes.shape} but preds_by_seed has {p.shape}."
            )
    m = p.shape[0]
    pairs = m * (m - 1) / 2.0
    same = sum(
        (k * (k - 1) / 2.0)
        for k in (np.sum(classes == c, axis=0) for c in np.unique(classes))
    )
    flip = (pairs - same) / pairs
    cell_std = p.std(axis=0, ddof=1)
    ore_counts = np.sum(classes == Label.POSITIVE, axis=1).astype(np.int64)
    return {
        "n_seeds": m,
        "cell_prob_std_sample": cell_std,
        "cell_flip_rate": flip,
        "mean_prob_std_sample": float(cell_std.mean()),
        "mean_flip_rate": float(flip.mean()),
        "ore_counts": ore_counts,
        "ore_count_std_sample": float(ore_counts.std(ddof=1)),
        "ore_count_min": int(ore_counts.min()),
        "ore_count_max": int(ore_counts.max()),
    }


def seed_variability_table(
    preds_by_name: Mapping[str, np.ndarray | tuple[np.ndarray, np.ndarray]],
    *,
    threshold: float = 0.5,
) -> pd.DataFrame:
    """Scalar :func:`seed_variability` statistics of several models or rules, one row each.

    Parameters
    ----------
    preds_by_name : dict of str -> (n_seeds, n_cells) float array, or a pair of them
        Name -> P(ore) per seed and cell. For voting rules pass a tuple
        ``(probability, prediction)`` of (n_seeds, n_cells) arrays (see ``predictions`` in
        :func:`seed_variability`).
    threshold : float

    Returns
    -------
    DataFrame
        Index ``model``; columns ``n_seeds``, ``mean_prob_std_sample``, ``mean_flip_rate``,
        ``ore_count_std_sample``, ``ore_count_min``, ``ore_count_max``.

    Raises
    ------
    InputDataError
        If ``preds_by_name`` is empty or an entry is invalid.
    """
    if not preds_by_name:
        raise InputDataError("seed_variability_table got no entries; pass {name: array}.")
    keys = ("n_seeds", "mean_prob_std_sample", "mean_flip_rate", "ore_count_std_sample",
            "ore_count_min", "ore_count_max")
    rows = {}
    for name, value in preds_by_name.items():
        if isinstance(value, tuple):
            stats = seed_variability(value[0], threshold=threshold, predictions=value[1])
        else:
            stats = seed_variability(value, threshold=threshold)
        rows[name] = {k: stats[k] for k in keys}
    df = pd.DataFrame.from_dict(rows, orient="index")[list(keys)]
    df.index.name = "model"
    return df


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


def rule_table1(y: np.ndarray, results: dict[str, Any]) -> pd.DataFrame:
    """Table 1 of ensemble rules, classifying by each rule's own decision.

    Precision, recall, F1 and accuracy are computed on the crops the rule decided; the share of
    undecided crops (majority-voting refusals) is the column ``undecided``. The AUCs rank all
    crops by the rule's probability (the vote share for voting rules).
    """
    from oremap.evaluate import classification_report, roc_auc

    rows = {}
    for rule, res in results.items():
        decided = res.prediction != UNDECIDED
        row = classification_report(y[decided], res.prediction[decided].astype(float),
                                    threshold=0.5)
        full = classification_report(y, res.probability, threshold=0.5)
        row["roc_auc"], row["pr_auc"] = roc_auc(y, res.probability), full["pr_auc"]
        row["undecided"] = float(1.0 - decided.mean())
        rows[rule] = row
    df = pd.DataFrame.from_dict(rows, orient="index").drop(columns=["threshold"])
    df.index.name = "model"
    return df


def compare_members(table: pd.DataFrame, crops: TestProbabilities,
                    params: EnsembleParams | np.ndarray, members: Sequence[str],
                    rules: Sequence[str], *, threshold: float) -> pd.DataFrame:
    """Every member and rule by ROC AUC and prediction-rate AUC, per fold, mean and spread.

    Cell ROC AUC (the headline): each fold's held-out labelled cells, each scored by the model
    that did not see it (``oof_<member>``, the mean over the cell's crops; rules combine those
    held-out scores). ROC AUC: held-out crops of each fold. Prediction-rate AUC: all usable
    cells ranked by the
    fold's model (or rule), counting only the fold's held-out positive cells. Success-rate AUC:
    the final map (mean over folds) against every known positive cell (optimistic: those cells
    were trained on). Rules use each fold's own parameters (``params``; plain weights apply to
    every fold).
    """
    from oremap.evaluate import roc_auc, success_rate_curve

    params = _as_ensemble_params(params)
    thr, n_folds = threshold, len(crops)
    labels, test_fold = table["label"].to_numpy(), table["test_fold"].to_numpy()
    rules = list(rules)
    roc = {n: [] for n in [*members, *rules]}
    pra = {n: [] for n in [*members, *rules]}
    cell = held_out_cell_auc(table, members, rules, params, threshold=thr)
    for k, f in enumerate(crops.folds):
        probs = f.stacked(members)
        for m, p in zip(members, probs):
            roc[m].append(roc_auc(f.y, p))
        for r in rules:
            roc[r].append(roc_auc(f.y, combine(r, probs, params=params.fold(k),
                                                  threshold=thr).probability))
        suffix = f"_f{k}" if n_folds > 1 else ""
        cell_probs = np.vstack([table[f"p_{m}{suffix}"].to_numpy() for m in members])
        held = (labels == 1) & (test_fold == k)
        scores = dict(zip(members, cell_probs))
        scores.update({r: combine(r, cell_probs, params=params.fold(k),
                                   threshold=thr).probability for r in rules})
        for name, sc in scores.items():
            pra[name].append(success_rate_curve(sc, held).auc if held.any() else np.nan)
    rows = {}
    for name in [*members, *rules]:
        kind = member_kind(name)
        col = f"p_{name}" if name in members else f"ens_{name}"
        row = {"kind": kind}
        for label, values in (("cell_roc_auc", cell[name]), ("roc_auc", roc[name]),
                              ("prediction_rate_auc", pra[name])):
            v = np.asarray(values, dtype=float)
            row[f"{label}_mean"] = float(np.nanmean(v)) if np.isfinite(v).any() else np.nan
            row[f"{label}_std"] = float(np.nanstd(v, ddof=1)) if np.isfinite(v).sum() > 1 \
                else np.nan
            row[f"{label}_folds"] = " ".join(f"{x:.3f}" for x in v)
        row["success_rate_auc"] = success_rate_curve(table[col].to_numpy(), labels == 1).auc
        rows[name] = row
    df = pd.DataFrame.from_dict(rows, orient="index")
    df.index.name = "name"
    return df


def held_out_cell_auc(table: pd.DataFrame, members: Sequence[str], rules: Sequence[str],
                      params: EnsembleParams | np.ndarray, *,
                      threshold: float) -> dict[str, list[float]]:
    """Per member and rule, the ROC AUC of each fold's held-out labelled cells.

    A cell's held-out score is ``oof_<member>`` (from the fold model that did not see it);
    rules combine the members' held-out scores with the fold's parameters. Folds whose
    held-out cells hold one class only are skipped.
    """
    from oremap.evaluate import roc_auc

    params = _as_ensemble_params(params)
    out: dict[str, list[float]] = {n: [] for n in [*members, *rules]}
    labelled = table["label"].isin([0, 1]).to_numpy()
    for k in sorted(set(table["test_fold"]) - {-1}):
        rows = table.loc[labelled & (table["test_fold"] == k).to_numpy()]
        rows = rows.loc[rows[[f"oof_{m}" for m in members]].notna().all(axis=1)]
        y = rows["label"].to_numpy()
        if len(set(y)) < 2:
            continue
        for m in members:
            out[m].append(roc_auc(y, rows[f"oof_{m}"].to_numpy()))
        for r, res in combine_columns(rows, members, rules, params.fold(int(k)),
                                      threshold=threshold, prefix="oof_").items():
            out[r].append(roc_auc(y, res.probability))
    return out


def _as_ensemble_params(params: EnsembleParams | np.ndarray) -> EnsembleParams:
    if isinstance(params, EnsembleParams):
        return params
    rp = _as_params(params)
    assert rp is not None
    return EnsembleParams(final=rp, folds=[rp])


def comparison_markdown(df: pd.DataFrame, n_folds: int) -> str:
    """The comparison table as Markdown, with a plain statement of which method wins."""
    lines = ["| name | kind | cell ROC AUC mean | cell ROC AUC std | crop ROC AUC mean | "
             "crop ROC AUC std | prediction-rate AUC mean | prediction-rate AUC std | "
             "success-rate AUC |", "|:---|:---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in df.iterrows():
        lines.append(f"| {name} | {r['kind']} | {r['cell_roc_auc_mean']:.3f} | "
                     f"{r['cell_roc_auc_std']:.3f} | {r['roc_auc_mean']:.3f} | "
                     f"{r['roc_auc_std']:.3f} | {r['prediction_rate_auc_mean']:.3f} | "
                     f"{r['prediction_rate_auc_std']:.3f} | {r['success_rate_auc']:.3f} |")
    text = "\n".join(lines) + "\n\n"
    scope = f"mean over {n_folds} folds" if n_folds > 1 else "single split"
    for metric, what in (("cell_roc_auc_mean", "ROC AUC on held-out cells"),
                         ("roc_auc_mean", "ROC AUC on held-out crops"),
                         ("prediction_rate_auc_mean", "prediction-rate AUC (held-out positive "
                                                      "cells)")):
        if not df[metric].notna().any():
            continue
        best = df[metric].idxmax()
        folds_col = metric.replace("_mean", "_folds")
        interval = ""
        if folds_col in df.columns:
            from oremap.recommend import fold_interval

            values = [float(x) for x in str(df.loc[best, folds_col]).split() if x != "nan"]
            low, high = fold_interval(values)
            if np.isfinite(low):
                interval = f" (95 % interval over folds {low:.3f} to {high:.3f})"
        per_kind = ", ".join(
            f"best {kind}: {df.loc[df['kind'] == kind, metric].idxmax()} "
            f"({df.loc[df['kind'] == kind, metric].max():.3f})"
            for kind in ("network", "baseline", "rule") if (df["kind"] == kind).any()
            and df.loc[df["kind"] == kind, metric].notna().any())
        text += (f"- By {what}, {scope}: **{best}** ({df.loc[best, 'kind']}) wins with "
                 f"{df.loc[best, metric]:.3f}{interval}; {per_kind}.\n")
    return text


def seed_stability_table(tables: Sequence[pd.DataFrame], members: Sequence[str],
                         rules: Sequence[str], params: RuleParams | np.ndarray, *,
                         threshold: float) -> pd.DataFrame:
    """How much members and rules vary across retraining seeds, one row per name.

    ``tables`` are the cell tables (``p_<member>`` columns, ``label``) of the same cells, one
    per seed. Per member and rule: the mean over cells of the sample std of P(ore) across
    seeds, the mean flip rate (voting rules count refusals as their own class), and the mean
    and sample std of each Table 2 count across seeds.
    """
    probs: dict[str, list[np.ndarray]] = {}
    classes: dict[str, list[np.ndarray]] = {}
    for table in tables:
        for m in members:
            probs.setdefault(m, []).append(table[f"p_{m}"].to_numpy())
            classes.setdefault(m, []).append((probs[m][-1] >= threshold).astype(int))
        for rule, res in combine_columns(table, members, rules, params,
                                         threshold=threshold).items():
            probs.setdefault(rule, []).append(res.probability)
            classes.setdefault(rule, []).append(res.prediction)
    labels = tables[-1]["label"].to_numpy()
    rows = []
    for name in probs:
        v = seed_variability(np.vstack(probs[name]), threshold=threshold,
                             predictions=np.vstack(classes[name]))
        counts = pd.DataFrame([prediction_counts(c, labels) for c in classes[name]])
        row = dict(name=name, kind=member_kind(name), seeds=len(tables),
                   mean_prob_std_sample=v["mean_prob_std_sample"],
                   mean_flip_rate=v["mean_flip_rate"])
        for col in counts.columns:
            row[f"{col}_mean"] = float(counts[col].mean())
            row[f"{col}_std_sample"] = float(counts[col].std(ddof=1))
        rows.append(row)
    return pd.DataFrame(rows)

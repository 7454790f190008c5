"""Ensemble rules: the registry, the five rules of He et al. 2024, the learned rules, combine."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from oremap.errors import InputDataError
from oremap.labels import UNDECIDED, Label
from oremap.names import CALIBRATED_RULES, LEARNED_RULES, RULES
from oremap.registry import Registry

if TYPE_CHECKING:
    from oremap.ensemble.params import RuleParams

__all__ = [
    "Rule",
    "EnsembleResult",
    "register",
    "list_rules",
    "combine",
    "simple_average",
    "weighted_average",
    "majority_voting",
    "plurality_voting",
    "weighted_voting",
    "STACKING_C",
    "stacking",
    "top_k",
    "SELECTABLE",
    "selected",
]

#: A rule maps (n_models, n_cells) P(ore), normalised (n_models,) weights and the threshold to
#: (n_cells,) probability and (n_cells,) prediction.
Rule = Callable[..., tuple[np.ndarray, np.ndarray]]
_RULES: Registry[Rule] = Registry("ensemble rule", RULES)

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
    return _RULES.register(name)


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
        What the rules learned (:func:`fit_rule_params`, or out of fold:
        :func:`~oremap.ensemble.crossfit.fit_out_of_fold`); its weights replace ``weights``;
        its calibrators, if any, map each member's P(ore) before the rules of
        :data:`~oremap.names.CALIBRATED_RULES` combine them (the voting rules count votes on
        the raw P(ore)). Needed by the learned rules (``stacking``, ``top_k``).

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
    _RULES.lookup(rule)  # UnknownNameError naming the choices
    if not 0.0 <= threshold <= 1.0:
        raise InputDataError(f"threshold must lie in [0, 1]; got {threshold}.")
    p = _check_probs(probs)
    w = _normalise_weights(params.weights if params is not None else weights, p.shape[0])
    if params is not None and params.calibrators is not None and rule in CALIBRATED_RULES:
        if len(params.calibrators) != p.shape[0]:
            raise InputDataError(f"{len(params.calibrators)} calibrators for {p.shape[0]} "
                                 "members; recompute the ensemble stage")
        p = np.vstack([c.apply(row) for c, row in zip(params.calibrators, p)])
    if rule in LEARNED_RULES:
        if params is None or not params.learned:
            raise InputDataError(
                f"ensemble rule {rule!r} learns from held-out cells, and no parameters "
                "learned from them were given; set [samples] validation > 0 (e.g. 0.2) or "
                "folds > 1, or drop it from [ensemble] rules")
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
_RULES.check_declared(ordered=True)

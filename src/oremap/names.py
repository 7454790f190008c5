"""Names of the registered networks, model profiles, baselines and ensemble rules.

This module is the one declaration of these names. It imports nothing heavy (no torch, no
scikit-learn, no pandas), so that :mod:`oremap.config` validates a configuration without
loading the libraries behind the registries. Each registry checks at import that it
registers exactly the names declared here (:func:`check_registered`):

* :mod:`oremap.models` (``list_models()``) against :data:`MODELS`, and its
  ``PROFILES`` is :data:`PROFILES`;
* :mod:`oremap.baselines` (``list_baselines()``) dispatches on :data:`BASELINES`;
* :mod:`oremap.ensemble` (``list_rules()``) against :data:`RULES`, in this order.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

__all__ = ["BASELINES", "CALIBRATED_RULES", "KINDS", "LEARNED_RULES", "MODELS", "PAPER_RULES",
           "PROFILES", "RULES", "check_registered", "member_cost", "member_kind"]

#: Networks of He et al. (2024), in the paper's order (the first is ``[train] models``'
#: default); :func:`oremap.models.list_models` lists the same names, sorted.
MODELS: tuple[str, ...] = ("lenet", "alexnet", "vgg16", "vgg8", "resnet50", "mobilenet_v2",
                           "vit")

#: Profiles of every network family (see :mod:`oremap.models.registry`).
PROFILES: tuple[str, ...] = ("paper", "fast", "reference")

#: Classic MPM baselines of :func:`oremap.baselines.fit_baseline`.
BASELINES: tuple[str, ...] = ("logistic", "random_forest", "woe")

#: Ensemble rules of He et al. (2024), in the paper's order (the order of
#: :func:`oremap.ensemble.list_rules` and of ``[ensemble] rules``' default).
PAPER_RULES: tuple[str, ...] = ("simple_average", "weighted_average", "majority_voting",
                                "plurality_voting", "weighted_voting")

#: Rules that learn from held-out cells (out of fold with cross-validation, else the inner
#: validation set, ``[samples] validation > 0``): a regularised logistic regression on the
#: members' held-out probabilities, the mean of the k members best on them, and the averaging
#: rule (simple or weighted average, top_k, stacking) with the best ROC AUC on them.
LEARNED_RULES: tuple[str, ...] = ("stacking", "top_k", "selected")

#: Every ensemble rule: the paper's five, then the learned ones.
RULES: tuple[str, ...] = PAPER_RULES + LEARNED_RULES

#: The rules that combine calibrated P(ore) when the run calibrates its members (the averaging
#: and learned rules); the voting rules count votes on the members' own P(ore) at the
#: threshold, as in He et al.
CALIBRATED_RULES: tuple[str, ...] = ("simple_average", "weighted_average", *LEARNED_RULES)


#: What a name in a results table is: one vocabulary for every table and report.
KINDS: tuple[str, ...] = ("network", "baseline", "rule")


def member_kind(name: str) -> str:
    """``"network"``, ``"baseline"`` or ``"rule"`` for a registered name (KeyError if none)."""
    for kind, names in zip(KINDS, (MODELS, BASELINES, RULES)):
        if name in names:
            return kind
    raise KeyError(f"{name!r} is neither a network, a baseline nor an ensemble rule")


#: Relative cost of one training step or prediction of each member (milliseconds of a training
#: step at batch 16, fast profile, 2 CPU cores; ``benchmarks/train.py``). It only orders the
#: work handed to parallel workers, the longest first, so that no worker is left with the
#: largest member at the end; it never changes a result.
_COST = {"resnet50": 79.0, "mobilenet_v2": 46.0, "vit": 18.0, "vgg16": 17.0, "alexnet": 17.0,
         "vgg8": 14.0, "lenet": 5.0, "random_forest": 3.0, "logistic": 1.0, "woe": 1.0}


def member_cost(name: str) -> float:
    """Relative cost of ``name`` for ordering parallel work (1 for a name not listed)."""
    return _COST.get(name, 1.0)


def check_registered(what: str, declared: Sequence[str], registered: Iterable[str], *,
                     ordered: bool = False) -> None:
    """Raise if a registry does not hold exactly the declared names.

    Parameters
    ----------
    what : str
        What the names are, for the message (``"model"``, ``"ensemble rule"``).
    declared : sequence of str
        The names declared in this module.
    registered : iterable of str
        The names the registry holds.
    ordered : bool
        Also require the same order.

    Raises
    ------
    RuntimeError
        If the two differ (a programming error: update this module and the registry
        together). Raised, not asserted, so that ``python -O`` keeps the check.
    """
    registered = list(registered)
    same = list(declared) == registered if ordered else sorted(declared) == sorted(registered)
    if not same or len(set(registered)) != len(registered):
        missing = [n for n in declared if n not in registered]
        extra = [n for n in registered if n not in declared]
        raise RuntimeError(
            f"{what} names registered {registered} differ from those declared in oremap.names "
            f"{list(declared)} (not registered: {missing}; not declared: {extra}"
            f"{'; order differs' if ordered and not missing and not extra else ''}); "
            "declare and register the same names"
        )

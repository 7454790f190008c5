"""Bounds and choices of the training settings, declared once.

:class:`oremap.config.TrainConfig` (the ``[train]`` table) turns every :class:`Bound` into
pydantic ``Field`` constraints and checks every :class:`AtMost` relation;
:func:`oremap.train.train_model` checks :class:`oremap.train.TrainSettings` against the same
tables, so the configuration and the training loop cannot disagree (``lr_min > lr`` once
passed the configuration and failed at training). Imports nothing heavy (no torch).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, get_args

__all__ = [
    "AUGMENTATIONS",
    "Augment",
    "IMBALANCE_MODES",
    "PRETRAIN_METHODS",
    "SETTINGS_BOUNDS",
    "TRAIN_BOUNDS",
    "TRAIN_PROFILES",
    "TRAIN_RELATIONS",
    "AtMost",
    "Bound",
    "Imbalance",
    "Pretrain",
    "TrainProfile",
    "available_cores",
]

#: Class-imbalance handling of ``[train] imbalance`` / ``TrainSettings.imbalance``.
Imbalance = Literal["weighted_loss", "balanced_sampler", "none"]
IMBALANCE_MODES: tuple[str, ...] = get_args(Imbalance)

#: Model profiles a run may train with (``[train] profile``): a subset of
#: :data:`oremap.names.PROFILES`; ``"reference"`` checks architectures, it is not for runs.
#: Training-time augmentation (and the matching test-time augmentation of predictions).
Augment = Literal["none", "dihedral"]
AUGMENTATIONS: tuple[str, ...] = get_args(Augment)

#: Self-supervised pretraining of the networks' trunks on every usable cell
#: (``[train] pretrain``, :mod:`oremap.train.pretrain`).
Pretrain = Literal["none", "masked", "contrastive"]
PRETRAIN_METHODS: tuple[str, ...] = get_args(Pretrain)

TrainProfile = Literal["paper", "fast"]
TRAIN_PROFILES: tuple[str, ...] = get_args(TrainProfile)

_OPERATORS = (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<="))


@dataclass(frozen=True)
class Bound:
    """Allowed values of one numeric setting.

    Attributes
    ----------
    gt, ge, lt, le : float or None
        Exclusive and inclusive lower and upper limits, as in :func:`pydantic.Field`;
        ``None``: no limit.
    integer : bool
        The training check also requires a Python ``int`` (not ``bool``); the configuration
        gets the type from its annotation.
    optional : bool
        ``None`` is allowed too.
    hint : str
        Appended to the problem message.
    """

    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None
    integer: bool = False
    optional: bool = False
    hint: str = ""

    def field_kwargs(self) -> dict[str, float]:
        """The limits as keyword arguments of :func:`pydantic.Field` (``{"ge": 1}``)."""
        return {key: getattr(self, key) for key, _ in _OPERATORS
                if getattr(self, key) is not None}

    def describe(self) -> str:
        """The bound in words: ``"an integer >= 1"``, ``"> 0 and < 1"``, ``"None or >= 1"``."""
        ops = dict(_OPERATORS)
        text = " and ".join(f"{ops[key]} {value:g}" for key, value in self.field_kwargs().items())
        if self.integer:
            text = f"an integer {text}"
        if self.optional:
            text = f"None or {text}"
        return text

    def admits(self, value: object) -> bool:
        """Whether ``value`` lies within the bound (NaN and non-numbers do not)."""
        if value is None:
            return self.optional
        if self.integer and (isinstance(value, bool) or not isinstance(value, int)):
            return False
        try:
            return bool((self.gt is None or value > self.gt)  # type: ignore[operator]
                        and (self.ge is None or value >= self.ge)  # type: ignore[operator]
                        and (self.lt is None or value < self.lt)  # type: ignore[operator]
                        and (self.le is None or value <= self.le))  # type: ignore[operator]
        except TypeError:
            return False

    def problem(self, name: str, value: object) -> str | None:
        """``None`` if ``value`` is admitted, else a message naming ``name`` and the bound."""
        if self.admits(value):
            return None
        text = f"{name} must be {self.describe()} (got {value!r})"
        return f"{text}; {self.hint}" if self.hint else text


@dataclass(frozen=True)
class AtMost:
    """The relation ``low <= high`` between two settings.

    Attributes
    ----------
    low, high : str
        Names of the two settings.
    why : str
        The reason, for the messages.
    """

    low: str
    high: str
    why: str

    def holds(self, values: Mapping[str, object]) -> bool:
        """Whether ``values[low] <= values[high]`` (True where they do not compare)."""
        try:
            return not values[self.low] > values[self.high]  # type: ignore[operator]
        except TypeError:
            return True  # a bad value of either setting is reported by its own bound

    def config_message(self, values: Mapping[str, float]) -> str:
        """Message for ``[train]``: names both keys and the fix."""
        lo, hi = values[self.low], values[self.high]
        return (f"{self.low} = {lo:g} is larger than {self.high} = {hi:g}; {self.why}, so set "
                f"[train] {self.low} <= [train] {self.high}")

    def settings_message(self, values: Mapping[str, object]) -> str:
        """Message for ``TrainSettings``."""
        lo, hi = values[self.low], values[self.high]
        return f"need {self.low} <= {self.high} (got {self.low}={lo}, {self.high}={hi}); {self.why}"


_ADAM_BETAS = "Adam's moment decay rates need beta1, beta2 < 1"

#: Bounds of the numbers of ``[train]``; the same names of ``TrainSettings`` (all but
#: ``jobs``, an argument of :func:`oremap.train.train_models`) obey the same bounds.
TRAIN_BOUNDS: dict[str, Bound] = {
    "epochs": Bound(ge=1, integer=True),
    "batch_size": Bound(ge=1, integer=True),
    "lr": Bound(gt=0),
    "lr_min": Bound(ge=0),
    "beta1": Bound(gt=0, lt=1, hint=_ADAM_BETAS),
    "weight_decay": Bound(ge=0),
    "workers": Bound(ge=0),
    "jobs": Bound(ge=1, integer=True),
    "patience": Bound(ge=1, integer=True, optional=True),
}

#: Bounds of ``TrainSettings`` fields that ``[train]`` does not expose.
SETTINGS_BOUNDS: dict[str, Bound] = {
    "beta2": Bound(ge=0, lt=1, hint=_ADAM_BETAS),
}

#: Relations between settings, checked by ``[train]`` and ``TrainSettings`` alike.
TRAIN_RELATIONS: tuple[AtMost, ...] = (
    AtMost("lr_min", "lr", "the cosine schedule decays from lr down to lr_min"),
)


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask, as set by ``taskset``, a batch
    scheduler or a container), else the machine's count; at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not on Linux
        return max(1, os.cpu_count() or 1)

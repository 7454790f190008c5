"""Training settings and outcome: :class:`TrainSettings`, :class:`TrainResult`, their checks."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from oremap.errors import ConfigError
from oremap.limits import (
    AUGMENTATIONS,
    IMBALANCE_MODES,
    SETTINGS_BOUNDS,
    TRAIN_BOUNDS,
    TRAIN_RELATIONS,
    Imbalance,
)

__all__ = ["TrainResult", "TrainSettings"]


@dataclass(frozen=True)
class TrainSettings:
    """Optimisation settings (defaults: He et al. 2024).

    Attributes
    ----------
    epochs : int
        Number of passes over the training patches.
    batch_size : int
        Patches per optimisation step; a final batch of one patch is merged into the
        previous batch (batch normalisation needs two).
    lr, lr_min : float
        Adam learning rate, cosine-annealed per epoch from ``lr`` to ``lr_min``.
    beta1, beta2, weight_decay : float
        Adam parameters.
    workers : int
        Upper bound on DataLoader workers (see the module docstring for the rule).
    imbalance : {"weighted_loss", "balanced_sampler", "none", "pu_bagging"}
        Class-imbalance handling. ``"pu_bagging"`` (set by ``[labels] negatives =
        "pu_bagging"``): label 0 means unlabelled; each epoch is a run of bags, each all the
        positives and a fresh bootstrap sample of ``pu_ratio`` unlabelled crops per positive,
        with an unweighted loss. Otherwise: cross-entropy weighted by inverse class frequency, a
        seeded :class:`torch.utils.data.WeightedRandomSampler`, or nothing.
    device : str
        ``"auto"`` (CUDA, then MPS, then CPU) or a torch device string.
    amp : bool
        Mixed precision (float16 autocast + gradient scaling); used on CUDA only.
    profile : str
        Model profile passed to :func:`oremap.models.create`.
    patience : int or None
        Stop after this many epochs without improvement of the monitored loss.
    augment : {"none", "dihedral"}
        ``"dihedral"``: each training crop is replaced, per epoch, by a seeded random one of
        its 8 rotations and reflections, and the model's predictions
        (:func:`predict_proba` via the checkpoint) average the 8.
    """

    epochs: int = 50
    batch_size: int = 16
    lr: float = 1e-4
    lr_min: float = 1e-5
    beta1: float = 0.9
    beta2: float = 0.999
    weight_decay: float = 0.0
    workers: int = 8
    imbalance: Imbalance = "weighted_loss"
    device: str = "auto"
    amp: bool = True
    profile: str = "paper"
    patience: int | None = None
    augment: str = "none"
    pu_ratio: float = 1.0


@dataclass
class TrainResult:
    """Outcome of :func:`train_model`.

    Attributes
    ----------
    name : str
        Model name.
    out_dir : Path
        The model's run folder ``out_dir/<name>``.
    history : pandas.DataFrame
        One row per epoch, columns :data:`HISTORY_COLUMNS` (losses: mean cross-entropy per
        patch; accuracies in [0, 1]; NaN test columns without a test set).
    best_epoch : int
        Epoch (1-based) whose weights are in ``best_path``.
    best_path, last_path : Path
        ``best.pt`` and ``last.pt``.
    samples_per_second : float
        Mean training throughput over the epochs, patches per second.
    device : str
        Device the model was trained on.
    seconds : float
        Wall-clock training time summed over epochs, s.
    """

    name: str
    out_dir: Path
    history: pd.DataFrame
    best_epoch: int
    best_path: Path
    last_path: Path
    samples_per_second: float
    device: str
    seconds: float


def _check_seed(seed: Any) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer; got {seed!r}.")


def _check_settings(s: TrainSettings) -> None:
    """Check ``s`` against the bounds, relations and choices of :mod:`oremap.limits`.

    The same tables declare ``[train]`` of :class:`oremap.config.TrainConfig`, so a valid
    configuration always gives valid settings. The profile is checked by
    :func:`oremap.models.create` (it accepts ``"reference"`` too).

    Raises
    ------
    ConfigError
        Listing every problem found.
    """
    values = dataclasses.asdict(s)
    bounds = {**TRAIN_BOUNDS, **SETTINGS_BOUNDS}
    problems = []
    for name, value in values.items():
        problem = bounds[name].problem(name, value) if name in bounds else None
        if problem is not None:
            problems.append(problem)
    for relation in TRAIN_RELATIONS:
        both_valid = all(bounds[n].admits(values[n]) for n in (relation.low, relation.high))
        if both_valid and not relation.holds(values):
            problems.append(relation.settings_message(values))
    if s.augment not in AUGMENTATIONS:
        problems.append(f"augment must be one of {list(AUGMENTATIONS)} (got {s.augment!r})")
    if s.imbalance not in (*IMBALANCE_MODES, "pu_bagging"):
        problems.append(f"imbalance must be one of {[*IMBALANCE_MODES, 'pu_bagging']} "
                        f"(got {s.imbalance!r})")
    if not s.pu_ratio > 0:
        problems.append(f"pu_ratio must be > 0 (got {s.pu_ratio!r})")
    if problems:
        raise ConfigError("invalid TrainSettings: " + "; ".join(problems) + ".")

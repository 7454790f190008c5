"""Train/test splits of labelled cells or crops: by cell, by spatial block, or at random."""

from __future__ import annotations

import warnings
from typing import Literal

import numpy as np

from oremap.errors import InputDataError, OptimisticSplitWarning, UnknownNameError
from oremap.labels import Label

__all__ = [
    "SPLITS",
    "SplitName",
    "check_split_options",
    "split_blocks",
    "split_cells",
    "split_random",
    "split_validation",
]

SplitName = Literal["cell", "block", "random"]
SPLITS: tuple[str, ...] = ("cell", "block", "random")

_CLASSES = (Label.POSITIVE, Label.NEGATIVE)


def check_split_options(split: str, *, test_fraction: float, folds: int,
                        block_size: int) -> None:
    """Raise before any work if the split options cannot work.

    Raises
    ------
    UnknownNameError
        If ``split`` is not one of :data:`SPLITS`.
    InputDataError
        If ``test_fraction`` is not in (0, 1), ``folds`` < 1 or ``block_size`` < 1.
    """
    if split not in SPLITS:
        raise UnknownNameError(f"unknown split {split!r}; choose from {list(SPLITS)}.")
    if not 0 < test_fraction < 1:
        raise InputDataError(
            f"test_fraction must be in (0, 1), got {test_fraction!r}; the default is 0.2."
        )
    for value, name in ((folds, "folds"), (block_size, "block_size")):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise InputDataError(f"{name} must be a whole number >= 1, got {value!r}.")


def split_cells(labels: np.ndarray, *, test_fraction: float = 0.2, folds: int = 1,
                seed: int = 0) -> np.ndarray:
    """Split cells, stratified by label: each labelled cell is on one side only.

    Parameters
    ----------
    labels : (n_cells,) int array
        Values of :class:`Label`; unknown cells are never in a test set.
    test_fraction : float
        With ``folds == 1``: share of each class's cells in the test set, rounded, at least one
        cell and at most all but one.
    folds : int
        ``1`` for a single split, K > 1 for K-fold cross-validation (each class's cells dealt
        round-robin to the folds after a seeded shuffle).
    seed : int

    Returns
    -------
    (n_cells,) int64 array
        The fold whose test set holds the cell; -1 if never in a test set.

    Raises
    ------
    InputDataError
        If a class has too few cells to appear on both sides of every fold.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    fold = np.full(labels.shape, -1, dtype=np.int64)
    for label in _CLASSES:
        members = rng.permutation(np.flatnonzero(labels == label))
        fold[members] = _deal(len(members), test_fraction, folds)
    _check_folds(labels, fold, folds, split="cell", unit="cells",
                 fix="use fewer folds or more labelled cells")
    return fold


def _deal(n: int, test_fraction: float, folds: int) -> np.ndarray:
    """Fold of each of ``n`` shuffled members: -1/0 for a single split, round-robin for K."""
    if folds > 1:
        return np.arange(n, dtype=np.int64) % folds
    n_test = min(max(round(test_fraction * n), 1), n - 1) if n >= 2 else 0
    out = np.full(n, -1, dtype=np.int64)
    out[:n_test] = 0
    return out


def split_blocks(labels: np.ndarray, rows: np.ndarray, cols: np.ndarray, *,
                 block_size: int = 4, test_fraction: float = 0.2, folds: int = 1,
                 seed: int = 0) -> np.ndarray:
    """Split by spatial blocks of ``block_size x block_size`` cells, so neighbours do not leak.

    Blocks are dealt greedily to groups: a seeded shuffle, then blocks with the most
    positives first, each to the group whose load relative to its target share grows least
    (positives for blocks holding positives, negatives for the others). Groups are the K
    folds (equal shares), or, with ``folds == 1``, a test group of share ``test_fraction`` and
    a training group, so the test fraction is met approximately.

    Parameters
    ----------
    labels, rows, cols : (n_cells,) int arrays
        Labels (:class:`Label`) and cell row/column indices.
    block_size : int
        Block side, in cells.
    test_fraction, folds, seed
        As in :func:`split_cells`.

    Returns
    -------
    (n_cells,) int64 array
        Test fold of each cell, -1 if never in a test set (unknown cells always -1). All
        labelled cells of a block share one value.

    Raises
    ------
    InputDataError
        If a fold's training or test side lacks a class (too few blocks with positives).
    """
    labels = np.asarray(labels)
    block = (np.asarray(rows) // block_size) * (int(np.max(cols)) // block_size + 1) + (
        np.asarray(cols) // block_size)
    labelled = np.isin(labels, _CLASSES)
    ids, inverse = np.unique(block[labelled], return_inverse=True)
    pos = np.bincount(inverse, weights=labels[labelled] == Label.POSITIVE, minlength=len(ids))
    neg = np.bincount(inverse, weights=labels[labelled] == Label.NEGATIVE, minlength=len(ids))
    targets = np.full(folds, 1.0 / folds) if folds > 1 else np.array([test_fraction,
                                                                       1 - test_fraction])
    group = _deal_blocks(pos, neg, targets, np.random.default_rng(seed))
    block_fold = group if folds > 1 else np.where(group == 0, 0, -1)
    fold = np.full(labels.shape, -1, dtype=np.int64)
    fold[labelled] = block_fold[inverse]
    _check_folds(labels, fold, folds, split="block", unit="cells",
                 fix="use a smaller block_size, fewer folds, or split='cell'")
    return fold


def _deal_blocks(pos: np.ndarray, neg: np.ndarray, targets: np.ndarray,
                 rng: np.random.Generator) -> np.ndarray:
    """Group of each block, balancing positives (then negatives) against ``targets``."""
    order = rng.permutation(len(pos))
    order = order[np.lexsort((-neg[order], -pos[order]))]
    tie_break = rng.permutation(len(targets))
    load_pos, load_neg = np.zeros(len(targets)), np.zeros(len(targets))
    group = np.empty(len(pos), dtype=np.int64)
    for b in order:
        if pos[b] > 0:
            key = ((load_pos + pos[b]) / targets, (load_neg + neg[b]) / targets)
        else:
            key = ((load_neg + neg[b]) / targets, (load_pos + pos[b]) / targets)
        g = min(range(len(targets)), key=lambda i: (key[0][i], key[1][i], tie_break[i]))
        group[b] = g
        load_pos[g] += pos[b]
        load_neg[g] += neg[b]
    return group


def split_random(labels: np.ndarray, *, test_fraction: float = 0.2, folds: int = 1,
                 seed: int = 0) -> np.ndarray:
    """The paper's protocol: crops split at random (stratified by label), ignoring cells.

    Overlapping crops of one cell land on both sides, so test accuracy is optimistic; an
    :class:`OptimisticSplitWarning` says so.

    Parameters
    ----------
    labels : (n_crops,) int array
        Label of each crop.
    test_fraction, folds, seed
        As in :func:`split_cells`, applied to crops.

    Returns
    -------
    (n_crops,) int64 array
        Test fold of each crop, -1 if never in a test set.
    """
    warnings.warn(
        "split='random' splits overlapping crops of the same cells between training and test "
        "(the paper's protocol): test accuracy will be optimistic. Use split='cell' or "
        "'block' for an honest estimate.",
        OptimisticSplitWarning, stacklevel=2,
    )
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    fold = np.full(labels.shape, -1, dtype=np.int64)
    for label in _CLASSES:
        members = rng.permutation(np.flatnonzero(labels == label))
        fold[members] = _deal(len(members), test_fraction, folds)
    _check_folds(labels, fold, folds, split="random", unit="crops",
                 fix="use fewer folds or more crops")
    return fold


def _check_folds(labels: np.ndarray, fold: np.ndarray, folds: int, *, split: str, unit: str,
                 fix: str) -> None:
    """Every fold needs each class in its training and its test side."""
    for f in range(folds):
        test = fold == f
        train = np.isin(labels, _CLASSES) & ~test
        for label in _CLASSES:
            name = label.name.lower()
            for side, mask in (("test", test), ("training", train)):
                if not (mask & (labels == label)).any():
                    raise InputDataError(
                        f"split {split!r}: fold {f} has no {name} {unit} in its {side} set "
                        f"({int((labels == label).sum())} {name} {unit} in all, {folds} "
                        f"fold(s)); expected each class on both sides. Fix: {fix}."
                    )


def split_validation(labels: np.ndarray, test_fold: np.ndarray, n_folds: int, *,
                     split: str, fraction: float, rows: np.ndarray | None = None,
                     cols: np.ndarray | None = None, block_size: int = 4,
                     seed: int = 0) -> np.ndarray:
    """Inner validation: for each fold, a share of its *training* side held out.

    The training side of fold ``k`` (labelled units whose ``test_fold`` is not ``k``) is split
    again with the fold's own rule: by spatial blocks for ``split="block"``, by cell,
    stratified, for ``"cell"``, at random for ``"random"`` (then the units are crops). The
    test fold is never touched, so epoch choice, ensemble weights and stacking fitted on the
    inner validation set leave the test figures honest.

    Parameters
    ----------
    labels : (n,) int array
        Labels (:class:`Label`) of the units (cells, or crops for ``split="random"``).
    test_fold : (n,) int array
        Test fold of each unit, -1 if never in a test set.
    n_folds : int
    split : {"cell", "block", "random"}
    fraction : float
        Share of each fold's training side held out, in (0, 0.5].
    rows, cols : (n,) int arrays or None
        Cell row/column indices (needed for ``split="block"``).
    block_size, seed
        As in :func:`split_blocks`; fold ``k`` uses ``seed + 7919 * (k + 1)``.

    Returns
    -------
    (n_folds, n) bool array
        True where the unit is in fold ``k``'s inner validation set.

    Raises
    ------
    InputDataError
        If a fold's validation or remaining training side lacks a class.
    """
    labels, test_fold = np.asarray(labels), np.asarray(test_fold)
    out = np.zeros((n_folds, len(labels)), dtype=bool)
    for k in range(n_folds):
        inner = np.where(np.isin(labels, _CLASSES) & (test_fold != k), labels,
                         int(Label.UNKNOWN))
        s = seed + 7919 * (k + 1)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", OptimisticSplitWarning)
                if split == "block":
                    if rows is None or cols is None:
                        raise ValueError("split_validation: split='block' needs rows and cols")
                    got = split_blocks(inner, rows, cols, block_size=block_size,
                                       test_fraction=fraction, seed=s)
                elif split == "cell":
                    got = split_cells(inner, test_fraction=fraction, seed=s)
                else:
                    got = split_random(inner, test_fraction=fraction, seed=s)
        except InputDataError as exc:
            raise InputDataError(
                f"inner validation of fold {k} ({fraction:.0%} of its training side, split "
                f"{split!r}) cannot hold both classes: {exc} Fix: lower or raise [samples] "
                "validation, use a smaller block_size or fewer folds, or set [samples] "
                "validation = 0 (epochs and ensemble weights then come from the full "
                "training run and the test split)."
            ) from None
        out[k] = got == 0
    return out

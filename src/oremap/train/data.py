"""Training data: class weights, epoch order, batches of patches, dihedral views, input checks."""

from __future__ import annotations

import multiprocessing
from typing import Any

import numpy as np
import torch

from oremap.errors import InputDataError
from oremap.limits import available_cores

__all__ = ["MEMMAP_WORKER_MIN_BYTES", "class_weights", "data_digest", "dihedral",
           "dihedral_batch", "epoch_order"]

MEMMAP_WORKER_MIN_BYTES = 64 * 2**20


def class_weights(y: np.ndarray, num_classes: int = 2) -> np.ndarray:
    """Inverse class frequency weights ``n / (num_classes * n_c)``.

    Parameters
    ----------
    y : (n,) int array
        Labels in ``0 .. num_classes-1``, each class present.

    Returns
    -------
    (num_classes,) float64 array
        Mean weight per sample is 1; a class half as frequent weighs twice as much.
    """
    counts = np.bincount(np.asarray(y, dtype=np.int64), minlength=num_classes)
    if (counts == 0).any():
        raise InputDataError(
            f"class counts are {counts.tolist()}; every class needs at least one sample."
        )
    return len(y) / (num_classes * counts.astype(np.float64))


def epoch_order(y: np.ndarray, imbalance: str, seed: int, epoch: int, *,
                pu_ratio: float = 1.0) -> np.ndarray:
    """Indices of the training samples in the order epoch ``epoch`` visits them.

    A random permutation (or, for ``"balanced_sampler"``, ``len(y)`` draws with
    replacement weighted by inverse class frequency; for ``"pu_bagging"``, about ``len(y)``
    samples in bags of every positive plus ``round(pu_ratio x n_positive)`` unlabelled samples
    drawn with replacement, shuffled) from a seed derived from ``(seed, epoch)``: the same
    epoch always gets the same order.

    Returns
    -------
    (n,) int64 array
        ``n = len(y)`` except for ``"pu_bagging"`` (whole bags).
    """
    if imbalance == "pu_bagging":
        rng = np.random.default_rng(_derive_seed(seed, epoch, 1))
        y = np.asarray(y)
        pos, unl = np.flatnonzero(y == 1), np.flatnonzero(y != 1)
        k = max(1, round(pu_ratio * len(pos)))
        bags = max(1, round(len(y) / (len(pos) + k)))
        order = np.concatenate([np.concatenate([pos, rng.choice(unl, size=k, replace=True)])
                                for _ in range(bags)])
        return rng.permutation(order).astype(np.int64)
    if imbalance == "balanced_sampler":
        generator = torch.Generator().manual_seed(_derive_seed(seed, epoch, 1))
        weights = class_weights(y)[np.asarray(y, dtype=np.int64)]
        sampler = torch.utils.data.WeightedRandomSampler(
            torch.as_tensor(weights, dtype=torch.double), len(y), replacement=True,
            generator=generator,
        )
        return np.fromiter(iter(sampler), dtype=np.int64, count=len(y))
    return np.random.default_rng(_derive_seed(seed, epoch, 1)).permutation(len(y))


def dihedral(x: torch.Tensor, k: int) -> torch.Tensor:
    """The ``k``-th (0-7) of the 8 rotations and reflections of square patches (n, C, S, S).

    ``k % 4`` quarter turns counter-clockwise, then a left-right reflection for ``k >= 4``;
    ``k = 0`` is the identity.
    """
    y = torch.rot90(x, k % 4, dims=(2, 3)) if k % 4 else x
    return torch.flip(y, dims=(3,)) if k >= 4 else y


def dihedral_batch(x: torch.Tensor, turns: np.ndarray) -> torch.Tensor:
    """Each patch ``x[i]`` replaced by its ``turns[i]``-th dihedral view (see :func:`dihedral`)."""
    out = x.clone()
    for k in np.unique(turns):
        rows = torch.from_numpy(np.flatnonzero(turns == k))
        out[rows] = dihedral(x[rows], int(k))
    return out


class _BatchDataset(torch.utils.data.Dataset):
    """Dataset whose items are whole batches, indexed by an array of sample indices."""

    def __init__(self, X: np.ndarray, y: np.ndarray):
        self.X, self.y = X, y

    def __getitem__(self, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return _fetch(self.X, self.y, idx)


def _fetch(X: np.ndarray, y: np.ndarray, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    idx = np.sort(idx)
    xb = torch.from_numpy(np.ascontiguousarray(X[idx], dtype=np.float32))
    if not torch.isfinite(xb).all():
        bad = idx[~torch.isfinite(xb).flatten(1).all(1).numpy()]
        raise InputDataError(
            f"patches {bad[:10].tolist()} contain NaN or infinite values; fill or drop "
            "them before training."
        )
    return xb, torch.from_numpy(y[idx])


def _split_batches(order: np.ndarray, batch_size: int) -> list[np.ndarray]:
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    if len(batches) > 1 and len(batches[-1]) == 1:
        batches[-2] = np.concatenate(batches[-2:])
        batches.pop()
    return batches


def _loader_workers(X: np.ndarray, requested: int) -> int:
    if (not isinstance(X, np.memmap) or X.nbytes < MEMMAP_WORKER_MIN_BYTES
            or "fork" not in multiprocessing.get_all_start_methods()):
        return 0
    return min(requested, available_cores())


def _derive_seed(seed: int, epoch: int, stream: int) -> int:
    return int(np.random.SeedSequence([seed, epoch, stream]).generate_state(1)[0])


def data_digest(*arrays: np.ndarray | None, rows: int = 4096) -> str:
    """SHA-256 of the values, shapes and dtypes of ``arrays`` (memmaps read in row chunks).

    Recorded in every checkpoint, so that a run resumes only on exactly the samples it started
    with: equal counts and settings are not enough (other layers give other values).
    """
    import hashlib

    h = hashlib.sha256()
    for a in arrays:
        if a is None:
            h.update(b"none|")
            continue
        h.update(f"{a.dtype.str}{tuple(a.shape)}|".encode())
        for start in range(0, len(a), rows):
            h.update(np.ascontiguousarray(a[start:start + rows]).tobytes())
    return h.hexdigest()


def _check_x(X: Any, what: str) -> tuple[int, ...]:
    shape = getattr(X, "shape", None)
    if shape is None or len(shape) != 4:
        raise InputDataError(
            f"{what} must be a 4-D array (n, C, S, S) of patches; got shape {shape}. "
            "Stack the crops as samples x layers x rows x columns."
        )
    if shape[2] != shape[3]:
        raise InputDataError(f"{what} patches must be square; got {shape[2]} x {shape[3]}.")
    return tuple(int(s) for s in shape)


def _check_xy(X: Any, y: Any, x_name: str, y_name: str) -> tuple[int, ...]:
    shape = _check_x(X, x_name)
    y = np.asarray(y)
    if y.ndim != 1 or len(y) != shape[0]:
        raise InputDataError(
            f"{x_name} has {shape[0]} patches but {y_name} has shape {y.shape}; give one "
            "label per patch."
        )
    if shape[0] == 0:
        raise InputDataError(f"{x_name} is empty (0 patches); nothing to train or evaluate on.")
    if not (np.issubdtype(y.dtype, np.integer) or y.dtype == bool) or not np.isin(y, (0, 1)).all():
        raise InputDataError(
            f"{y_name} must hold integer labels 0 or 1; got values {np.unique(y)[:10].tolist()}."
        )
    return shape


def _check_data(X: Any, y: Any, X_test: Any, y_test: Any) -> tuple[np.ndarray,
                                                                   np.ndarray | None]:
    """Check the training and test arrays; return the labels as int64 arrays."""
    shape = _check_xy(X, y, "X_train", "y_train")
    y = np.asarray(y).astype(np.int64)
    if len(np.unique(y)) < 2:
        raise InputDataError(
            f"y_train holds only class {int(y[0])} ({len(y)} samples); training needs both "
            "classes. Add negatives/positives or change the split."
        )
    if (X_test is None) != (y_test is None):
        raise InputDataError("give both X_test and y_test, or neither.")
    if X_test is None:
        return y, None
    test_shape = _check_xy(X_test, y_test, "X_test", "y_test")
    if test_shape[1:] != shape[1:]:
        raise InputDataError(
            f"X_test patches are {test_shape[1:]} but X_train patches are {shape[1:]}; "
            "both must have the same (C, S, S)."
        )
    return y, np.asarray(y_test).astype(np.int64)

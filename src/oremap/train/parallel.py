"""Several networks on the same data: one after another, or in spawned worker processes."""

from __future__ import annotations

import concurrent.futures
import mmap
import multiprocessing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from oremap.compute import set_threads
from oremap.errors import ConfigError, UnknownNameError
from oremap.limits import TRAIN_BOUNDS, available_cores
from oremap.models import list_models
from oremap.names import member_cost
from oremap.train.loop import train_model
from oremap.train.settings import TrainResult, TrainSettings

__all__ = ["train_models"]


def train_models(
    names: Sequence[str],
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_test: np.ndarray | None = None,
    y_test: np.ndarray | None = None,
    *,
    out_dir: Path,
    settings: TrainSettings,
    seed: int,
    resume: bool | Literal["matching"] = False,
    jobs: int = 1,
    progress: bool = True,
    monitor: Literal["test", "validation"] = "test",
    model_kwargs: Mapping[str, Mapping[str, Any]] | None = None,
    pretrained: Mapping[str, Path] | None = None,
) -> dict[str, TrainResult]:
    """Train several networks on the same data, one after another or in parallel.

    Parameters
    ----------
    names : sequence of str
        Model names, each trained into ``out_dir/<name>``.
    jobs : int
        Number of worker processes (spawned); each uses ``max(1, cores // jobs)`` torch and
        BLAS threads (``cores``: :func:`available_cores`), so the workers never start more
        threads than the process may use. ``1`` trains in this process. Memory-mapped
        inputs are re-opened in the workers, not copied; in-memory arrays are sent to each
        worker.
    model_kwargs : mapping of name -> mapping, or None
        Family options per model name.
    pretrained : mapping of name -> Path, or None
        Pretraining file per model name (:func:`oremap.train.pretrain_model`), passed to
        :func:`train_model`; a name not in it starts from random weights.
    X_train, y_train, X_test, y_test, out_dir, settings, seed, resume, progress
        As for :func:`train_model` (each model gets the same ``seed``).

    Returns
    -------
    dict of str -> TrainResult
        In the order of ``names``.

    Raises
    ------
    UnknownNameError
        If a name is unknown.
    ConfigError
        If ``jobs`` < 1 or a name repeats.
    """
    names = list(names)
    unknown = [n for n in names if n not in list_models()]
    if unknown:
        raise UnknownNameError(f"unknown model(s) {unknown}; choose from {list_models()}")
    if len(set(names)) != len(names):
        raise ConfigError(f"model names repeat in {names}; each model trains once per run.")
    if not TRAIN_BOUNDS["jobs"].admits(jobs):
        raise ConfigError(f"jobs must be {TRAIN_BOUNDS['jobs'].describe()}; got {jobs!r}.")
    kwargs = dict(model_kwargs or {})
    init = dict(pretrained or {})
    common = dict(out_dir=Path(out_dir), settings=settings, seed=seed, resume=resume,
                  monitor=monitor)
    if jobs == 1 or len(names) == 1:
        return {
            n: train_model(n, X_train, y_train, X_test, y_test, progress=progress,
                           model_kwargs=kwargs.get(n), pretrained=init.get(n), **common)
            for n in names
        }
    threads = max(1, available_cores() // jobs)
    arrays = tuple(_portable(a) for a in (X_train, y_train, X_test, y_test))
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(
        max_workers=min(jobs, len(names)), mp_context=context,
        initializer=_init_worker, initargs=(threads,),
    ) as pool:
        futures = {  # the costliest first, so that no worker is left alone with it at the end
            n: pool.submit(_train_in_worker, n, arrays, dict(kwargs.get(n) or {}), common,
                           init.get(n))
            for n in sorted(names, key=lambda n: -member_cost(n))
        }
        return {n: futures[n].result() for n in names}


@dataclass(frozen=True)
class _MappedArray:
    """Where a memory-mapped array lives in its file, to re-open it in another process."""

    filename: str
    dtype: str
    shape: tuple[int, ...]
    offset: int

    def open(self) -> np.ndarray:
        return np.memmap(self.filename, dtype=np.dtype(self.dtype), mode="r",
                         shape=self.shape, offset=self.offset)


def _portable(a: Any) -> Any:
    """A :class:`_MappedArray` for a C-contiguous file-backed memmap, else ``a`` itself."""
    mm = getattr(a, "_mmap", None)
    if not (isinstance(a, np.memmap) and a.filename and mm is not None
            and a.flags.c_contiguous and a.mode != "c"):
        return a
    try:
        base = np.frombuffer(mm, dtype=np.uint8).ctypes.data
    except (TypeError, ValueError, BufferError):
        return a
    start = a.offset - a.offset % mmap.ALLOCATIONGRANULARITY
    return _MappedArray(str(a.filename), a.dtype.str, tuple(a.shape),
                        start + a.ctypes.data - base)


def _init_worker(threads: int) -> None:
    """A training worker's threads: torch intra-op and the BLAS/OpenMP pools of numpy and
    scikit-learn, each at ``threads``."""
    set_threads(threads)


def _train_in_worker(name: str, arrays: tuple[Any, ...], options: dict[str, Any],
                     common: dict[str, Any], pretrained: Path | None = None) -> TrainResult:
    X, y, X_test, y_test = (a.open() if isinstance(a, _MappedArray) else a for a in arrays)
    return train_model(name, X, y, X_test, y_test, progress=False, model_kwargs=options,
                       pretrained=pretrained, **common)

"""Training loop for the networks of :mod:`oremap.models` on plain arrays of patches.

He et al. (2024) train every network with Adam (lr 1e-4 cosine-annealed to 1e-5), batch 16,
for 50 epochs; :class:`TrainSettings` holds these defaults. Every epoch writes
``out_dir/<name>/last.pt`` (everything needed to resume bit-for-bit), ``best.pt`` (the
weights of the epoch with the lowest test loss, or training loss without a test set) and
``history.csv`` (one row per epoch), all atomically (a temporary file, then :func:`os.replace`).

Determinism: the weights are initialised after ``torch.manual_seed(seed)``; the order of the
samples in epoch ``e`` and the dropout masks are drawn from seeds derived from ``(seed, e)``
(:class:`numpy.random.SeedSequence`), so a resumed run sees exactly the data of an
uninterrupted one. On CPU deterministic algorithms are switched on during training, and two
runs with the same seed and thread count give identical weights. On CUDA, mixed precision
and cuDNN make runs close but not bit-identical.

Data loading: ``X`` may be a :class:`numpy.memmap`; batches are read by index, never the
whole array. Rule for ``TrainSettings.workers``: in-memory arrays are batched in the main
process (a worker would only add pickling overhead); a memmap of at least
:data:`MEMMAP_WORKER_MIN_BYTES` uses ``min(workers, available_cores())`` forked DataLoader
workers that read their batches from the mapped file (0 workers where fork is unavailable).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import logging
import math
import mmap
import multiprocessing
import random
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from oremap import __version__
from oremap.errors import ConfigError, InputDataError, UnknownNameError
from oremap.io import atomic_path, save_figure
from oremap.limits import (
    AUGMENTATIONS,
    IMBALANCE_MODES,
    SETTINGS_BOUNDS,
    TRAIN_BOUNDS,
    TRAIN_RELATIONS,
    Imbalance,
    available_cores,
)
from oremap.models import create, list_models, model_options
from oremap.names import member_cost

logger = logging.getLogger("oremap.train")

HISTORY_COLUMNS = [
    "epoch", "lr", "train_loss", "train_acc", "test_loss", "test_acc", "seconds", "samples_per_s"
]
MEMMAP_WORKER_MIN_BYTES = 64 * 2**20
CHECKPOINT_FORMAT = 1
#: Crops per forward pass at evaluation and prediction. At 32 x 32 px on CPU, 64 is faster than
#: 256 for every network (activations stay in cache): x1.67 for the seven together, x2.1 for
#: ResNet50, identical probabilities (measured by benchmarks/inference.py).
EVAL_BATCH = 64
_LAST, _BEST, _HISTORY = "last.pt", "best.pt", "history.csv"
# Settings that change the trajectory: a resumed run must use the same values.
_RESUME_KEYS = ("epochs", "batch_size", "lr", "lr_min", "beta1", "beta2", "weight_decay",
                "imbalance", "profile", "patience", "augment", "pu_ratio")


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


def choose_device(requested: str = "auto") -> torch.device:
    """Resolve ``"auto"`` to CUDA, then MPS, then CPU; check an explicit device exists.

    Raises
    ------
    ConfigError
        If ``requested`` is not a device string or that device is not available.
    """
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(requested)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(
            f"device {requested!r} is not a torch device; use 'auto', 'cpu', 'cuda', "
            "'cuda:N' or 'mps'."
        ) from exc
    available = {
        "cpu": True,
        "cuda": torch.cuda.is_available()
        and (device.index is None or device.index < torch.cuda.device_count()),
        "mps": getattr(torch.backends, "mps", None) is not None
        and torch.backends.mps.is_available(),
    }
    if not available.get(device.type, False):
        raise ConfigError(f"device {requested!r} is not available here; use 'auto' or 'cpu'.")
    return device


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


def train_model(
    name: str,
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_test: np.ndarray | None = None,
    y_test: np.ndarray | None = None,
    *,
    out_dir: Path,
    settings: TrainSettings,
    seed: int,
    resume: bool | Literal["matching"] = False,
    progress: bool = True,
    monitor: Literal["test", "validation"] = "test",
    model_kwargs: Mapping[str, Any] | None = None,
) -> TrainResult:
    """Train one network and write its checkpoints and history to ``out_dir/<name>``.

    Parameters
    ----------
    name : str
        A name from :func:`oremap.models.list_models`.
    X_train : (n, C, S, S) float array or numpy.memmap
        Training patches (evidence layers x cells x cells); read batch by batch.
    y_train : (n,) int array
        Labels in {0, 1} (1 = mineralised), both classes present.
    X_test, y_test : arrays or None
        Held-out patches and labels evaluated after every epoch (both or neither).
    out_dir : Path
        Run folder; the model writes into ``out_dir/<name>/``.
    settings : TrainSettings
        Optimisation settings.
    seed : int
        Non-negative seed of initialisation, data order and dropout.
    resume : bool or "matching"
        ``True``: continue from ``last.pt`` if present (returning a finished run without
        retraining); a checkpoint made from other samples (compared by SHA-256), settings or
        seed is a ConfigError. ``"matching"``: continue where the checkpoint matches, start
        afresh where it does not (what ``oremap run`` does after an input changed).
        ``False``: existing checkpoints of ``name`` are replaced.
    progress : bool
        Show a progress bar.
    monitor : {"test", "validation"}
        What ``X_test`` is, recorded in the checkpoints: ``"validation"`` (an inner validation
        set: ``best.pt``, the epoch of lowest loss on it, is the model to use) or ``"test"``
        (the test split: ``best.pt`` would be chosen on the data that scores it, so the last
        epoch is the model to use).
    model_kwargs : mapping or None
        Family options for :func:`oremap.models.create` (e.g. ``{"patch_size": 4}``).

    Returns
    -------
    TrainResult

    Raises
    ------
    InputDataError
        Empty or one-class training set, mismatched lengths, wrong array shapes, labels
        outside {0, 1}, non-finite patch values.
    ConfigError
        Invalid settings or seed, or ``resume`` with settings that differ from the run on
        disk.
    UnknownNameError
        Unknown model name, profile or option.
    """
    model_options(name)  # raises UnknownNameError early
    _check_settings(settings)
    _check_seed(seed)
    y_train, y_test = _check_data(X_train, y_train, X_test, y_test)
    device = choose_device(settings.device)
    model_dir = Path(out_dir) / name
    meta = {
        "name": name,
        "profile": settings.profile,
        "options": dict(model_kwargs or {}),
        "in_channels": int(X_train.shape[1]),
        "input_size": int(X_train.shape[2]),
        "num_classes": 2,
        "settings": dataclasses.asdict(settings),
        "seed": int(seed),
        "n_train": len(y_train),
        "n_test": 0 if y_test is None else len(y_test),
        "monitor": monitor,
        "class_counts": np.bincount(y_train, minlength=2).tolist(),
        "data": data_digest(X_train, y_train, X_test, y_test),
        "torch_version": str(torch.__version__),
        "oremap_version": __version__,
    }
    with _deterministic(device):
        # Building the model first checks the profile, options and patch size.
        run = _Run(name, X_train, y_train, X_test, y_test, settings, seed, device, meta,
                   model_dir)
        model_dir.mkdir(parents=True, exist_ok=True)
        checkpoint = _prepare_run_dir(model_dir, meta, resume)
        if checkpoint is not None and checkpoint["finished"]:
            logger.info("%s: finished run found in %s; not retraining", name, model_dir)
            _write_history(checkpoint["history"], model_dir / _HISTORY)  # if cut before
            return _result(model_dir, checkpoint, str(device))
        final = run.fit(checkpoint, progress)
    return _result(model_dir, final, str(device))


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
    common = dict(out_dir=Path(out_dir), settings=settings, seed=seed, resume=resume,
                  monitor=monitor)
    if jobs == 1 or len(names) == 1:
        return {
            n: train_model(n, X_train, y_train, X_test, y_test, progress=progress,
                           model_kwargs=kwargs.get(n), **common)
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
            n: pool.submit(_train_in_worker, n, arrays, dict(kwargs.get(n) or {}), common)
            for n in sorted(names, key=lambda n: -member_cost(n))
        }
        return {n: futures[n].result() for n in names}


def load_trained(
    model_dir: Path, *, which: Literal["best", "last"] = "best", device: str = "cpu"
) -> nn.Module:
    """Rebuild a trained network from ``model_dir/best.pt`` or ``last.pt``, in eval mode.

    Raises
    ------
    UnknownNameError
        If ``which`` is not ``"best"`` or ``"last"``.
    InputDataError
        If the checkpoint does not exist or cannot be read (truncated, corrupt).
    """
    if which not in ("best", "last"):
        raise UnknownNameError(f"unknown checkpoint {which!r}; choose from ['best', 'last']")
    path = Path(model_dir) / (_BEST if which == "best" else _LAST)
    if not path.is_file():
        raise InputDataError(
            f"no checkpoint {path}; train the model first (oremap.train.train_model)."
        )
    try:
        checkpoint = _load(path, "cpu")
        meta = checkpoint["meta"]
    except Exception as exc:
        raise InputDataError(
            f"checkpoint {path} is damaged or truncated ({type(exc).__name__}: {exc}); retrain "
            f"this model: `oremap train RUN_DIR --resume` retrains only the models whose "
            "checkpoints are missing or damaged."
        ) from None
    model = create(meta["name"], in_channels=meta["in_channels"],
                   num_classes=meta["num_classes"], input_size=meta["input_size"],
                   profile=meta["profile"], **meta["options"])
    model.load_state_dict(checkpoint["model"])
    model.oremap_meta = meta  # how it was trained: predictions follow (e.g. dihedral TTA)
    return model.to(choose_device(device)).eval()


#: Model classes evaluated in ``channels_last`` memory format on CPU, where it is not slower
#: (``benchmarks/inference.py``, with BatchNorm folded: MobileNetV2 x2.2-3.5, VGG8 x1.9-2.3,
#: VGG16 x1.4-1.5, ResNet50 x1.5, AlexNet x1.0-1.5); LeNet and the ViT stay contiguous.
CHANNELS_LAST_CLASSES = frozenset({"AlexNet", "VGG", "ResNet", "MobileNetV2"})


def inference_model(model: nn.Module, device: torch.device) -> tuple[nn.Module, bool]:
    """The module :func:`predict_proba` runs, and whether it takes ``channels_last`` input.

    On CPU: every BatchNorm folded into the convolution before it, and the
    convolutional networks of :data:`CHANNELS_LAST_CLASSES` in ``channels_last`` memory
    format. Probabilities equal the plain module's within float32 round-off (tested). Built
    once per state of the weights and cached on the model (a weight changed in place, as by
    an optimiser step, rebuilds it); elsewhere (CUDA, MPS) the model itself.
    """
    if device.type != "cpu" or model.training:
        return model, False
    version = tuple(t._version for t in (*model.parameters(), *model.buffers()))
    cached = model.__dict__.get("_oremap_inference")
    if cached is not None and cached[0] == version:
        return cached[1]
    fast = model
    if any(isinstance(m, nn.BatchNorm2d) for m in model.modules()):
        fast = _fold_batchnorm(model)
    channels_last = type(model).__name__ in CHANNELS_LAST_CLASSES
    if channels_last:
        fast = fast.to(memory_format=torch.channels_last)
    model.__dict__["_oremap_inference"] = (version, (fast, channels_last))
    return fast, channels_last


def _batch_array(xb: np.ndarray) -> np.ndarray:
    """A batch as a writable, C-contiguous float32 array: the slice itself when it already is
    one, else a copy (memmap slices are read-only and would be paged in anyway)."""
    if (type(xb) is np.ndarray and xb.dtype == np.float32 and xb.flags.c_contiguous
            and xb.flags.writeable):
        return xb
    return np.array(xb, dtype=np.float32)


def _fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of ``model`` (eval mode) with each BatchNorm2d that only follows a Conv2d
    folded into that convolution's weights and bias, and replaced by an identity.

    Folded: a BatchNorm2d right after a Conv2d in an ``nn.Sequential``, and a child ``bn<k>``
    of a module that also has ``conv<k>`` (the bottleneck blocks of
    :mod:`oremap.models.resnet`, whose ``forward`` applies ``bn<k>`` to the output of
    ``conv<k>`` alone). The module tree is edited, not traced: ``torch.fx`` tracing patches
    ``nn.Module.__call__`` for the whole process and would break the other members' forward
    passes running side by side (:func:`oremap.compute.thread_map`).
    """
    import copy

    from torch.nn.utils.fusion import fuse_conv_bn_eval

    fast = copy.deepcopy(model)
    for module in list(fast.modules()):
        kids = module._modules
        if isinstance(module, nn.Sequential):
            pairs = list(zip(kids, list(kids)[1:]))
        else:
            pairs = [(f"conv{name[2:]}", name) for name in kids
                     if name.startswith("bn") and name[2:].isdigit()]
        for conv, bn in pairs:
            if isinstance(kids.get(conv), nn.Conv2d) and isinstance(kids[bn], nn.BatchNorm2d):
                kids[conv] = fuse_conv_bn_eval(kids[conv], kids[bn])
                kids[bn] = nn.Identity()
    return fast


def predict_proba(
    model: nn.Module, X: np.ndarray, *, batch_size: int = EVAL_BATCH, device: str = "cpu",
    tta: bool = False,
) -> np.ndarray:
    """Probability of class 1 (mineralised) for each patch.

    Parameters
    ----------
    model : torch.nn.Module
        A network returning two logits; it is moved to ``device`` and put in eval mode.
    X : (n, C, S, S) float array or numpy.memmap
        Patches, read ``batch_size`` at a time.
    tta : bool
        Average the probability over the 8 rotations and reflections of each patch (for a
        model trained with ``augment="dihedral"``).

    Returns
    -------
    (n,) float32 array in [0, 1]

    Raises
    ------
    InputDataError
        If ``X`` is not 4-D.
    """
    _check_x(X, "X")
    torch_device = choose_device(device)
    model = model.to(torch_device).eval()
    net, channels_last = inference_model(model, torch_device)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    out = np.empty(len(X), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, len(X), batch_size):
            xb = torch.from_numpy(_batch_array(X[start:start + batch_size])).to(torch_device)
            views = [dihedral(xb, k) for k in range(8)] if tta else [xb]
            p = sum(torch.softmax(net(v.contiguous(memory_format=fmt)).float(), 1)[:, 1]
                    for v in views) / len(views)
            out[start:start + len(xb)] = p.cpu().numpy()
    return out


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


def plot_loss_curves(histories: Mapping[str, pd.DataFrame], path: Path) -> None:
    """Training and test loss per epoch, one panel per model (He et al. 2024, Fig. 12).

    Parameters
    ----------
    histories : mapping of name -> DataFrame
        ``TrainResult.history`` (columns ``epoch``, ``train_loss``, ``test_loss``).
    path : Path
        Output image (PNG unless the suffix says otherwise), written atomically.

    Raises
    ------
    InputDataError
        If ``histories`` is empty.
    """
    from matplotlib.figure import Figure

    if not histories:
        raise InputDataError("no histories to plot; train at least one model first.")
    n = len(histories)
    ncols = min(3, n)
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(4 * ncols, 3 * nrows))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax, (name, h) in zip(axes.flat, histories.items(), strict=False):
        ax.plot(h["epoch"], h["train_loss"], label="train", color="tab:blue")
        if h["test_loss"].notna().any():
            ax.plot(h["epoch"], h["test_loss"], label="test", color="tab:orange")
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.set_ylabel("cross-entropy loss")
        ax.legend()
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    fig.tight_layout()
    save_figure(fig, path, dpi=120, bbox_inches=None)


# --------------------------------------------------------------------------- the loop


class _Run:
    """State of one training run (model, optimiser, data) and its epoch loop."""

    def __init__(self, name: str, X: np.ndarray, y: np.ndarray, X_test: np.ndarray | None,
                 y_test: np.ndarray | None, settings: TrainSettings, seed: int,
                 device: torch.device, meta: dict[str, Any], model_dir: Path):
        self.name, self.X, self.y, self.X_test, self.y_test = name, X, y, X_test, y_test
        self.s, self.seed, self.device = settings, seed, device
        self.meta, self.dir = meta, model_dir
        self.amp = settings.amp and device.type == "cuda"
        torch.manual_seed(seed)
        self.model = create(name, in_channels=meta["in_channels"], num_classes=2,
                            input_size=meta["input_size"], profile=settings.profile,
                            **meta["options"]).to(device)
        # channels_last and the fused Adam step: x1.4 per training step on CPU over the
        # contiguous layout and the per-parameter loop (benchmarks/train.py --compare)
        self.format = (torch.channels_last if device.type == "cpu"
                       and type(self.model).__name__ in CHANNELS_LAST_CLASSES
                       else torch.contiguous_format)
        self.model = self.model.to(memory_format=self.format)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=settings.lr,
                                          betas=(settings.beta1, settings.beta2),
                                          weight_decay=settings.weight_decay,
                                          fused=device.type in ("cpu", "cuda") or None)
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            self.optimizer, T_max=settings.epochs, eta_min=settings.lr_min)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        weights = class_weights(y) if settings.imbalance == "weighted_loss" else np.ones(2)
        self.weights = torch.as_tensor(weights, dtype=torch.float32, device=device)
        self.workers = _loader_workers(X, settings.workers)

    def fit(self, checkpoint: dict[str, Any] | None, progress: bool) -> dict[str, Any]:
        history: list[dict[str, float]] = []
        best = {"epoch": 0, "loss": math.inf}
        start = 1
        if checkpoint is not None:
            self._restore(checkpoint)
            history, best = checkpoint["history"], checkpoint["best"]
            start = checkpoint["epoch"] + 1
        state: dict[str, Any] = checkpoint or {}
        with _progress_bar(progress) as bar:
            for epoch in range(start, self.s.epochs + 1):
                row = self._epoch(epoch, bar)
                history.append(row)
                monitored = row["test_loss"] if self.X_test is not None else row["train_loss"]
                if monitored < best["loss"]:
                    best = {"epoch": epoch, "loss": float(monitored)}
                    _save({"format": CHECKPOINT_FORMAT, "model": self.model.state_dict(),
                           "epoch": epoch, "loss": float(monitored), "meta": self.meta},
                          self.dir / _BEST)
                stop = self.s.patience is not None and epoch - best["epoch"] >= self.s.patience
                state = self._checkpoint(epoch, history, best, stop or epoch == self.s.epochs)
                _save(state, self.dir / _LAST)
                _write_history(history, self.dir / _HISTORY)
                if stop:
                    logger.info("%s: no improvement for %d epochs; stopping at epoch %d",
                                self.name, self.s.patience, epoch)
                    break
        return state

    def _epoch(self, epoch: int, bar: Any) -> dict[str, float]:
        t0 = time.perf_counter()
        order = epoch_order(self.y, self.s.imbalance, self.seed, epoch,
                            pu_ratio=self.s.pu_ratio)
        batches = _split_batches(order, self.s.batch_size)
        torch.manual_seed(_derive_seed(self.seed, epoch, 2))  # dropout masks of this epoch
        lr = self.optimizer.param_groups[0]["lr"]
        self.model.train()
        loss_sum = weight_sum = correct = 0.0
        task = None
        if bar is not None:
            task = bar.add_task(f"{self.name} {epoch}/{self.s.epochs}", total=len(batches))
        turns = (np.random.default_rng(_derive_seed(self.seed, epoch, 3)).integers(
            0, 8, len(self.y)) if self.s.augment == "dihedral" else None)
        for idx, (xb, yb) in zip(batches, self._batches(self.X, self.y, batches)):
            if turns is not None:  # rows of xb are the crops np.sort(idx) (see _fetch)
                xb = dihedral_batch(xb, turns[np.sort(idx)])
            with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
                logits = self.model(xb.contiguous(memory_format=self.format))
            per_sample = F.cross_entropy(logits.float(), yb, reduction="none")
            w = self.weights[yb]
            loss = (per_sample * w).sum() / w.sum()
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            loss_sum += float((per_sample.detach() * w).sum())
            weight_sum += float(w.sum())
            correct += float((logits.detach().argmax(1) == yb).sum())
            if task is not None:
                bar.advance(task)
        train_seconds = time.perf_counter() - t0
        self.scheduler.step()
        test_loss, test_acc = self._evaluate()
        if task is not None:
            bar.remove_task(task)
        seconds = time.perf_counter() - t0
        row = {"epoch": epoch, "lr": lr, "train_loss": loss_sum / weight_sum,
               "train_acc": correct / len(order), "test_loss": test_loss, "test_acc": test_acc,
               "seconds": seconds, "samples_per_s": len(order) / train_seconds}
        logger.info("%s epoch %d/%d: train loss %.4f acc %.3f, test loss %.4f acc %.3f, "
                    "%.0f samples/s", self.name, epoch, self.s.epochs, row["train_loss"],
                    row["train_acc"], test_loss, test_acc, row["samples_per_s"])
        return row

    def _evaluate(self) -> tuple[float, float]:
        X, y = self.X_test, self.y_test
        if X is None or y is None:
            return math.nan, math.nan
        self.model.eval()
        n = len(y)
        step = max(EVAL_BATCH, self.s.batch_size)
        batches = [np.arange(i, min(i + step, n)) for i in range(0, n, step)]
        loss_sum = weight_sum = correct = 0.0
        with torch.no_grad():
            for xb, yb in self._batches(X, y, batches, workers=0):
                with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
                    logits = self.model(xb.contiguous(memory_format=self.format)).float()
                w = self.weights[yb]
                loss_sum += float((F.cross_entropy(logits, yb, reduction="none") * w).sum())
                weight_sum += float(w.sum())
                correct += float((logits.argmax(1) == yb).sum())
        return loss_sum / weight_sum, correct / n

    def _batches(self, X: np.ndarray, y: np.ndarray, batches: list[np.ndarray],
                 workers: int | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        workers = self.workers if workers is None else workers
        if workers == 0:
            source: Any = (_fetch(X, y, idx) for idx in batches)
        else:
            source = torch.utils.data.DataLoader(
                _BatchDataset(X, y), batch_size=None, sampler=batches, num_workers=workers,
                multiprocessing_context="fork", pin_memory=self.device.type == "cuda",
                # its own generator: the loader must not draw from the global torch RNG,
                # which drives dropout
                generator=torch.Generator().manual_seed(0))
        for xb, yb in source:
            yield (xb.to(self.device, non_blocking=True), yb.to(self.device, non_blocking=True))

    def _checkpoint(self, epoch: int, history: list[dict[str, float]], best: dict[str, Any],
                    finished: bool) -> dict[str, Any]:
        numpy_state = np.random.get_state()
        return {
            "format": CHECKPOINT_FORMAT,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                "numpy": {"key": torch.from_numpy(numpy_state[1].astype(np.int64)),
                          "pos": int(numpy_state[2]), "has_gauss": int(numpy_state[3]),
                          "cached_gaussian": float(numpy_state[4])},
                "python": random.getstate(),
                # The order of epoch e is drawn from a generator seeded with this value.
                "sampler_seed": _derive_seed(self.seed, epoch + 1, 1),
            },
            "epoch": epoch,
            "history": list(history),
            "best": dict(best),
            "finished": finished,
            "meta": self.meta,
        }

    def _restore(self, checkpoint: dict[str, Any]) -> None:
        self.model.load_state_dict(checkpoint["model"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.scheduler.load_state_dict(checkpoint["scheduler"])
        self.scaler.load_state_dict(checkpoint["scaler"])
        rng = checkpoint["rng"]
        torch.set_rng_state(rng["torch"])
        if rng["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        np_state = rng["numpy"]
        np.random.set_state(("MT19937", np_state["key"].numpy().astype(np.uint32),
                             np_state["pos"], np_state["has_gauss"], np_state["cached_gaussian"]))
        random.setstate(rng["python"])


# --------------------------------------------------------------------------- helpers


class _BatchDataset(torch.utils.data.Dataset):
    """Dataset whose items are whole batches, indexed by an array of sample indices."""

    def __init__(self, X: np.ndarray, y: np.ndarray):
        self.X, self.y = X, y

    def __getitem__(self, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return _fetch(self.X, self.y, idx)


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
    from oremap.compute import set_threads

    set_threads(threads)


def _train_in_worker(name: str, arrays: tuple[Any, ...], options: dict[str, Any],
                     common: dict[str, Any]) -> TrainResult:
    X, y, X_test, y_test = (a.open() if isinstance(a, _MappedArray) else a for a in arrays)
    return train_model(name, X, y, X_test, y_test, progress=False, model_kwargs=options,
                       **common)


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


@contextlib.contextmanager
def _deterministic(device: torch.device) -> Iterator[None]:
    """Deterministic algorithms on CPU for the duration of training; restored afterwards."""
    if device.type != "cpu":
        yield
        return
    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(enabled, warn_only=warn_only)


@contextlib.contextmanager
def _progress_bar(enabled: bool) -> Iterator[Any]:
    if not enabled:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    columns = (Progress.get_default_columns()[0], BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    with Progress(*columns, transient=True) as bar:
        yield bar


def _prepare_run_dir(model_dir: Path, meta: dict[str, Any],
                     resume: bool | str) -> dict[str, Any] | None:
    """Load ``last.pt`` when resuming (checking it matches ``meta``), else clear old files."""
    last = model_dir / _LAST
    if not last.is_file():
        return None
    if not resume:
        logger.warning("%s: replacing the checkpoints in %s (resume=False)", meta["name"],
                       model_dir)
        for f in (_LAST, _BEST, _HISTORY):
            (model_dir / f).unlink(missing_ok=True)
        return None
    try:
        checkpoint = _load(last, "cpu")
        old = checkpoint["meta"]
    except Exception as exc:  # truncated or corrupt: our own file, so start this model again
        logger.warning("%s: checkpoint %s is damaged (%s: %s); retraining this model from the "
                       "start", meta["name"], last, type(exc).__name__, exc)
        for f in (_LAST, _BEST, _HISTORY):
            (model_dir / f).unlink(missing_ok=True)
        return None
    keys = ("name", "profile", "options", "in_channels", "input_size", "seed", "n_train",
            "n_test", "class_counts", "data")
    diffs = [f"{k}: {old.get(k)!r} on disk, {meta[k]!r} now" for k in keys
             if old.get(k) != meta[k]]
    diffs += [f"settings.{k}: {old['settings'].get(k)!r} on disk, {meta['settings'][k]!r} now"
              for k in _RESUME_KEYS if old["settings"].get(k) != meta["settings"][k]]
    if diffs:
        diffs = [d if not d.startswith("data:") else
                 "data: the training or test samples differ from those it was trained on"
                 for d in diffs]
        if resume == "matching":
            logger.info("%s: checkpoint in %s was made from other inputs (%s); training "
                        "afresh", meta["name"], model_dir, "; ".join(diffs))
            for f in (_LAST, _BEST, _HISTORY):
                (model_dir / f).unlink(missing_ok=True)
            return None
        raise ConfigError(
            f"cannot resume {last}: the run differs ({'; '.join(diffs)}). Use the same "
            "data and settings, another out_dir, or resume=False to start again."
        )
    return checkpoint


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


def _result(model_dir: Path, checkpoint: dict[str, Any], device: str) -> TrainResult:
    history = pd.DataFrame(checkpoint["history"], columns=HISTORY_COLUMNS)
    return TrainResult(
        name=checkpoint["meta"]["name"],
        out_dir=model_dir,
        history=history,
        best_epoch=int(checkpoint["best"]["epoch"]),
        best_path=model_dir / _BEST,
        last_path=model_dir / _LAST,
        samples_per_second=float(history["samples_per_s"].mean()),
        device=device,
        seconds=float(history["seconds"].sum()),
    )


def _save(obj: dict[str, Any], path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def _load(path: Path, device: str) -> dict[str, Any]:
    return torch.load(path, map_location=device, weights_only=True)


def _write_history(history: list[dict[str, float]], path: Path) -> None:
    with atomic_path(path) as tmp:
        pd.DataFrame(history, columns=HISTORY_COLUMNS).to_csv(tmp, index=False)


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

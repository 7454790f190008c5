"""The training loop: :func:`train_model` and the epochs of one run (state, batches, RNG)."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import random
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from oremap import __version__
from oremap.device import choose_device
from oremap.models import create, model_options
from oremap.progress import progress as progress_bar
from oremap.train.checkpoints import (
    _BEST,
    _HISTORY,
    _LAST,
    CHECKPOINT_FORMAT,
    _load_trunk,
    _prepare_run_dir,
    _pretrained_trunk,
    _result,
    _save,
    _write_history,
)
from oremap.train.data import (
    _BatchDataset,
    _check_data,
    _derive_seed,
    _fetch,
    _loader_workers,
    _split_batches,
    class_weights,
    data_digest,
    dihedral_batch,
    epoch_order,
)
from oremap.train.inference import CHANNELS_LAST_CLASSES, EVAL_BATCH
from oremap.train.settings import TrainResult, TrainSettings, _check_seed, _check_settings

__all__ = ["train_model"]

logger = logging.getLogger("oremap.train")


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
    pretrained: Path | None = None,
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
        Held-out patches and labels evaluated after every epoch (both or neither): their loss
        and accuracy are the history's ``val_loss, val_acc`` with ``monitor="validation"``,
        its ``test_loss, test_acc`` with ``monitor="test"``.
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
        Show a progress bar of each epoch (:func:`oremap.progress.progress`).
    monitor : {"test", "validation"}
        What ``X_test`` is, recorded in the checkpoints: ``"validation"`` (an inner validation
        set: ``best.pt``, the epoch of lowest loss on it, is the model to use) or ``"test"``
        (the test split: ``best.pt`` would be chosen on the data that scores it, so the last
        epoch is the model to use).
    model_kwargs : mapping or None
        Family options for :func:`oremap.models.create` (e.g. ``{"patch_size": 4}``).
    pretrained : Path or None
        A pretraining file of this network (:func:`oremap.train.pretrain_model`): after the
        model is built (``torch.manual_seed(seed)``), every weight but those of the output
        layer (the last :class:`torch.nn.Linear`, which keeps its fresh initialisation) is
        replaced by the file's, before the optimiser starts. The checkpoints then record the
        method and the SHA-256 of those weights (``meta["pretrain"]``), so a run resumes only
        from the same pretraining. ``None``: random initialisation (no such record).

    Returns
    -------
    TrainResult

    Raises
    ------
    InputDataError
        Empty or one-class training set, mismatched lengths, wrong array shapes, labels
        outside {0, 1}, non-finite patch values; a ``pretrained`` file that is unreadable or
        made for another network, profile, options or crop shape.
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
    trunk = None
    if pretrained is not None:
        trunk = _pretrained_trunk(Path(pretrained), meta)
        meta["pretrain"] = trunk[2]
    with _deterministic(device):
        # Building the model first checks the profile, options and patch size.
        run = _Run(name, X_train, y_train, X_test, y_test, settings, seed, device, meta,
                   model_dir, trunk=None if trunk is None else trunk[:2])
        model_dir.mkdir(parents=True, exist_ok=True)
        checkpoint = _prepare_run_dir(model_dir, meta, resume)
        if checkpoint is not None:
            _name_history(checkpoint)
        if checkpoint is not None and checkpoint["finished"]:
            logger.info("%s: finished run found in %s; not retraining", name, model_dir)
            _write_history(checkpoint["history"], model_dir / _HISTORY)  # if cut before
            return _result(model_dir, checkpoint, str(device))
        final = run.fit(checkpoint, progress)
    return _result(model_dir, final, str(device))


class _Run:
    """State of one training run (model, optimiser, data) and its epoch loop."""

    def __init__(self, name: str, X: np.ndarray, y: np.ndarray, X_test: np.ndarray | None,
                 y_test: np.ndarray | None, settings: TrainSettings, seed: int,
                 device: torch.device, meta: dict[str, Any], model_dir: Path, *,
                 trunk: tuple[Mapping[str, torch.Tensor], str] | None = None):
        self.name, self.X, self.y, self.X_test, self.y_test = name, X, y, X_test, y_test
        self.s, self.seed, self.device = settings, seed, device
        self.meta, self.dir = meta, model_dir
        self.amp = settings.amp and device.type == "cuda"
        torch.manual_seed(seed)
        self.model = create(name, in_channels=meta["in_channels"], num_classes=2,
                            input_size=meta["input_size"], profile=settings.profile,
                            **meta["options"]).to(device)
        if trunk is not None:  # pretrained weights; the output layer stays as initialised
            _load_trunk(self.model, *trunk)
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
        # the history's columns and the log's word for the crops scored after every epoch
        self.held_out = _HELD_OUT[meta["monitor"] == "validation"]

    def fit(self, checkpoint: dict[str, Any] | None, progress: bool) -> dict[str, Any]:
        history: list[dict[str, float]] = []
        best = {"epoch": 0, "loss": math.inf}
        start = 1
        if checkpoint is not None:
            self._restore(checkpoint)
            history, best = checkpoint["history"], checkpoint["best"]
            start = checkpoint["epoch"] + 1
        state: dict[str, Any] = checkpoint or {}
        column = f"{self.held_out[0]}_loss" if self.X_test is not None else "train_loss"
        for epoch in range(start, self.s.epochs + 1):
            row = self._epoch(epoch, progress)
            history.append(row)
            monitored = row[column]
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

    def _epoch(self, epoch: int, progress: bool) -> dict[str, float]:
        t0 = time.perf_counter()
        order = epoch_order(self.y, self.s.imbalance, self.seed, epoch,
                            pu_ratio=self.s.pu_ratio)
        batches = _split_batches(order, self.s.batch_size)
        torch.manual_seed(_derive_seed(self.seed, epoch, 2))  # dropout masks of this epoch
        lr = self.optimizer.param_groups[0]["lr"]
        self.model.train()
        loss_sum = weight_sum = correct = 0.0
        turns = (np.random.default_rng(_derive_seed(self.seed, epoch, 3)).integers(
            0, 8, len(self.y)) if self.s.augment == "dihedral" else None)
        with progress_bar(len(batches), f"{self.name} {epoch}/{self.s.epochs}", "batch",
                          disable=not progress, transient=True) as bar:
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
                bar.update()
        train_seconds = time.perf_counter() - t0
        self.scheduler.step()
        held_loss, held_acc = self._evaluate()
        seconds = time.perf_counter() - t0
        key, label = self.held_out
        row = {"epoch": epoch, "lr": lr, "train_loss": loss_sum / weight_sum,
               "train_acc": correct / len(order), f"{key}_loss": held_loss,
               f"{key}_acc": held_acc, "seconds": seconds,
               "samples_per_s": len(order) / train_seconds}
        held = (f", {label} loss {held_loss:.4f} acc {held_acc:.3f}"
                if self.X_test is not None else "")
        logger.info("%s epoch %d/%d: train loss %.4f acc %.3f%s, %.0f samples/s", self.name,
                    epoch, self.s.epochs, row["train_loss"], row["train_acc"], held,
                    row["samples_per_s"])
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


#: (history column prefix, word in the log) of the crops scored after every epoch, by whether
#: they are an inner validation set (else the test split: the paper's protocol, where the
#: curve is shown only and never chooses the epoch)
_HELD_OUT = {True: ("val", "validation"), False: ("test", "test (paper's protocol)")}


def _name_history(checkpoint: dict[str, Any]) -> None:
    """Rename, in place, the ``test_loss, test_acc`` of a checkpoint written before the
    history named an inner validation set ``val_loss, val_acc``."""
    if checkpoint["meta"].get("monitor") != "validation":
        return
    for row in checkpoint["history"]:
        for stat in ("loss", "acc"):
            if f"test_{stat}" in row and f"val_{stat}" not in row:
                row[f"val_{stat}"] = row.pop(f"test_{stat}")

"""Run folder of one network: checkpoints and history written atomically, resume checks, reload."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import torch
from torch import nn

from oremap.device import choose_device
from oremap.errors import ConfigError, InputDataError, UnknownNameError
from oremap.io import atomic_path
from oremap.models import create
from oremap.train.settings import TrainResult

__all__ = ["CHECKPOINT_FORMAT", "HISTORY_COLUMNS", "load_trained"]

logger = logging.getLogger("oremap.train")

#: ``val_*``: the inner validation set scored after every epoch; ``test_*``: the test split
#: scored instead where there is none (the paper's protocol); the other pair is empty
HISTORY_COLUMNS = [
    "epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc",
    "seconds", "samples_per_s"
]
CHECKPOINT_FORMAT = 1
_LAST, _BEST, _HISTORY = "last.pt", "best.pt", "history.csv"
# Settings that change the trajectory: a resumed run must use the same values.
_RESUME_KEYS = ("epochs", "batch_size", "lr", "lr_min", "beta1", "beta2", "weight_decay",
                "imbalance", "profile", "patience", "augment", "pu_ratio")


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

"""Run folder of one network: checkpoints and history written atomically, resume checks, reload."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
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

__all__ = ["CHECKPOINT_FORMAT", "HISTORY_COLUMNS", "PRETRAIN_FORMAT", "load_pretrained",
           "load_trained", "trunk_digest"]

logger = logging.getLogger("oremap.train")

#: ``val_*``: the inner validation set scored after every epoch; ``test_*``: the test split
#: scored instead where there is none (the paper's protocol); the other pair is empty
HISTORY_COLUMNS = [
    "epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc",
    "seconds", "samples_per_s"
]
CHECKPOINT_FORMAT = 1
#: Format of the pretraining files of :mod:`oremap.train.pretrain`.
PRETRAIN_FORMAT = 1
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
    # absent from runs without pretraining (and from those made before it existed): equal
    if old.get("pretrain") != meta.get("pretrain"):
        diffs.append(f"pretrain: {old.get('pretrain')!r} on disk, {meta.get('pretrain')!r} now")
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


def load_pretrained(path: Path) -> dict[str, Any]:
    """Read a pretraining file written by :func:`oremap.train.pretrain.pretrain_model`.

    Returns
    -------
    dict
        ``trunk`` (state dict of every weight but the head's), ``head`` (qualified name of the
        head, the last :class:`torch.nn.Linear`), ``meta`` (how it was made), ``history``
        (loss per epoch) and ``digest`` (:func:`trunk_digest` of ``trunk``, recomputed here).

    Raises
    ------
    InputDataError
        If the file is missing, damaged or of another format.
    """
    path = Path(path)
    if not path.is_file():
        raise InputDataError(
            f"no pretraining file {path}; pretrain first (oremap.train.pretrain_model, or "
            "[train] pretrain in a run, which writes it before the per-fold training).")
    try:
        state = _load(path, "cpu")
        ok = state.get("format") == PRETRAIN_FORMAT and {"trunk", "head", "meta"} <= set(state)
    except Exception as exc:
        raise InputDataError(
            f"pretraining file {path} is damaged or truncated ({type(exc).__name__}: {exc}); "
            "delete it and run again: the pretraining is then recomputed.") from None
    if not ok:
        raise InputDataError(
            f"{path} is not a pretraining file of format {PRETRAIN_FORMAT}; delete it and run "
            "again: the pretraining is then recomputed.")
    state["digest"] = trunk_digest(state["trunk"])
    return state


def trunk_digest(state: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 of the names, dtypes, shapes and values of a state dict's tensors."""
    h = hashlib.sha256()
    for key in sorted(state):
        t = state[key].detach().cpu().contiguous()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _pretrained_trunk(pretrained: Path, meta: Mapping[str, Any]
                      ) -> tuple[dict[str, torch.Tensor], str, dict[str, Any]]:
    """The trunk weights of a pretraining file for the network ``meta`` describes, the head's
    name, and what the fine-tuned checkpoint records about it (``meta["pretrain"]``).

    Raises
    ------
    InputDataError
        If the file is unreadable or was made for another network, profile, options, number
        of layers or crop size.
    """
    state = load_pretrained(pretrained)
    made = state["meta"]
    keys = ("name", "profile", "options", "in_channels", "input_size")
    diffs = [f"{k}: {made.get(k)!r} in the file, {meta[k]!r} here" for k in keys
             if made.get(k) != meta[k]]
    if diffs:
        raise InputDataError(
            f"pretraining file {pretrained} was made for another network ({'; '.join(diffs)}); "
            "pretrain this network on these crops (oremap.train.pretrain_model) or train "
            "without pretrained=.")
    record = {"method": made["method"], "epochs": made["epochs"], "seed": made["seed"],
              "digest": state["digest"]}
    return state["trunk"], state["head"], record


def _load_trunk(model: nn.Module, trunk: Mapping[str, torch.Tensor], head: str) -> None:
    """Copy ``trunk`` into ``model``: every weight but those of the module ``head``, which
    keep their fresh initialisation; anything else missing or left over is an error."""
    own = model.state_dict()
    head_keys = {k for k in own if k.startswith(head + ".")}
    missing = sorted(set(own) - set(trunk) - head_keys)
    extra = sorted(set(trunk) - set(own))
    copied_head = sorted(set(trunk) & head_keys)
    problems = ([f"missing {missing[:5]}"] if missing else []) + (
        [f"unexpected {extra[:5]}"] if extra else []) + (
        [f"weights of the head {head!r} included"] if copied_head else []) + (
        [f"no head {head!r} in the network"] if not head_keys else [])
    if problems:
        raise InputDataError(
            f"pretrained trunk does not fit the network ({'; '.join(problems)}); delete the "
            "pretraining file and run again, so that it is made by this oremap version.")
    model.load_state_dict(trunk, strict=False)


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

"""Self-supervised pretraining of a network's trunk on unlabelled crops (masked or contrastive).

The *trunk* of a network is everything before its output layer: the last
:class:`torch.nn.Linear` its forward pass calls (:func:`find_head`), whose input is the
trunk's feature vector. :func:`pretrain_model` trains the trunk, with a small objective head
that is thrown away afterwards, on crops without labels:

``"masked"``
    Masked reconstruction in the manner of a masked autoencoder (He et al. 2022; for
    prospectivity, Daruna et al. 2024, GFM4MPM): :data:`MASK_RATIO` of the
    :data:`MASK_PATCH` x :data:`MASK_PATCH` pixel patches of each normalised crop are set to
    0 (the area's median) in every layer; a light decoder (a Linear layer from the feature
    vector to a 64-channel map of side ``ceil(S / 8)``, then three transposed convolutions that
    double the side) reconstructs the crop; the loss is the mean squared error over the
    masked pixels only.
``"contrastive"``
    SimCLR (Chen et al. 2020): two random views of each crop (a random one of the 8
    rotations/reflections, gaussian noise of std :data:`NOISE_STD`, each layer dropped with
    probability :data:`CHANNEL_DROP`, and with probability 1/2 a square of side
    :data:`CUTOUT_FRACTION` x S zeroed); a projection MLP (features -> 128 -> 64) and the
    NT-Xent loss at temperature :data:`TEMPERATURE`, the other crops of the batch being the
    negatives.

Both objectives also show each crop as a random one of its 8 rotations/reflections. Adam
(``settings.lr``, betas, weight decay) is cosine-annealed to ``settings.lr_min`` over the
pretraining epochs, with batches of ``max(settings.batch_size, PRETRAIN_BATCH_MIN)`` crops
(NT-Xent needs negatives). Determinism as in :func:`oremap.train.train_model`: weights after
``torch.manual_seed(seed)``, batch order, masks, views and dropout from seeds derived from
``(seed, epoch)``; on CPU two pretrainings give identical weights.

The result is one file per network (:func:`pretrain_path`: ``<train folder>/pretrain/
<name>.pt``, written atomically), holding the trunk's weights (all but the output layer's),
the head's name, the loss per epoch and ``meta``: method, epochs, seed, the network (name,
profile, options, layers, crop size), the optimiser settings, the objective's constants and
the SHA-256 of the crops and of the normalisation. A later call reuses the file only when
its ``meta`` equals the new one exactly, else pretrains again; an interrupted pretraining
starts again from its first epoch (the file is the unit of resumption, there are no
per-epoch checkpoints). :func:`oremap.train.train_model` (``pretrained=``) starts the
fine-tuning from those weights.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from oremap import __version__
from oremap.device import choose_device
from oremap.errors import ConfigError, InputDataError
from oremap.io import atomic_path
from oremap.limits import PRETRAIN_METHODS
from oremap.models import create, model_options
from oremap.progress import progress as progress_bar
from oremap.train.checkpoints import PRETRAIN_FORMAT, _save, load_pretrained, trunk_digest
from oremap.train.data import _check_x, _derive_seed, _split_batches, data_digest, dihedral_batch
from oremap.train.inference import CHANNELS_LAST_CLASSES
from oremap.train.loop import _deterministic
from oremap.train.settings import TrainSettings, _check_seed, _check_settings

__all__ = [
    "CHANNEL_DROP",
    "CUTOUT_FRACTION",
    "MASK_PATCH",
    "MASK_RATIO",
    "MAX_PRETRAIN_CROPS",
    "NOISE_STD",
    "PRETRAIN_BATCH_MIN",
    "PRETRAIN_DIR",
    "TEMPERATURE",
    "PretrainResult",
    "area_scaling",
    "find_head",
    "nt_xent",
    "patch_mask",
    "pretrain_model",
    "pretrain_path",
    "pretraining_indices",
]

logger = logging.getLogger("oremap.train")

#: Side, in pixels, of the square patches masked by ``"masked"``.
MASK_PATCH = 4
#: Share of the patches of a crop that ``"masked"`` hides.
MASK_RATIO = 0.6
#: NT-Xent temperature of ``"contrastive"`` (0.5: SimCLR's choice for small batches).
TEMPERATURE = 0.5
#: Std of the gaussian noise added to a contrastive view, in normalised units (IQRs).
NOISE_STD = 0.1
#: Probability that a contrastive view drops (zeroes) an evidence layer; one always stays.
CHANNEL_DROP = 0.2
#: Side of the cutout square of a contrastive view, as a share of the crop's side.
CUTOUT_FRACTION = 0.25
#: Fewest crops per pretraining batch (``batch_size`` when larger).
PRETRAIN_BATCH_MIN = 64
#: Most crops a pretraining uses; a larger area is subsampled (:func:`pretraining_indices`).
MAX_PRETRAIN_CROPS = 20_000
#: Folder of the pretraining files inside a train folder.
PRETRAIN_DIR = "pretrain"


@dataclass
class PretrainResult:
    """Outcome of :func:`pretrain_model`.

    Attributes
    ----------
    path : Path
        The pretraining file.
    method : str
        ``"masked"`` or ``"contrastive"``.
    history : pandas.DataFrame
        ``epoch, loss, seconds``: mean objective loss per crop of each epoch.
    seconds : float
        Time of the pretraining (0 when reused).
    reused : bool
        The file on disk matched and was used as it was.
    """

    path: Path
    method: str
    history: pd.DataFrame
    seconds: float
    reused: bool


def pretrain_path(train_dir: Path, name: str) -> Path:
    """The pretraining file of network ``name`` in a train folder."""
    return Path(train_dir) / PRETRAIN_DIR / f"{name}.pt"


def pretraining_indices(use: np.ndarray, seed: int, *,
                        cap: int = MAX_PRETRAIN_CROPS) -> np.ndarray:
    """Indices of the crops a pretraining uses: those flagged in ``use``, at most ``cap``.

    Parameters
    ----------
    use : (n,) bool array
        Candidate crops; :func:`oremap.members.train_members` flags the centred crop of every
        usable cell (``SampleSet.centre``), one per cell whatever its label.
    seed : int
        Seed of the subsample when there are more than ``cap``.

    Returns
    -------
    (k,) int64 array, ascending
        All flagged crops, or a seeded random ``cap`` of them.
    """
    idx = np.flatnonzero(np.asarray(use, dtype=bool))
    if len(idx) > cap:
        logger.info("pretraining on %d of the %d crops (at most %d)", cap, len(idx), cap)
        rng = np.random.default_rng(_derive_seed(seed, 0, 5))
        idx = np.sort(rng.choice(idx, cap, replace=False))
    return idx.astype(np.int64)


def area_scaling(norm_center: np.ndarray, norm_scale: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
    """One normalisation for the whole area: the per-layer median over folds of the folds'
    robust centres and scales.

    Parameters
    ----------
    norm_center, norm_scale : (n_folds, C) arrays
        ``SampleSet.norm_center``, ``SampleSet.norm_scale`` (median and IQR per fold).

    Returns
    -------
    center, scale : (C,) float32 arrays
    """
    return (np.median(np.asarray(norm_center, dtype=np.float64), axis=0).astype(np.float32),
            np.median(np.asarray(norm_scale, dtype=np.float64), axis=0).astype(np.float32))


def find_head(model: nn.Module, in_channels: int, input_size: int) -> str:
    """Qualified name of the output layer of ``model``: the last :class:`torch.nn.Linear` its
    forward pass calls, which must give the model's output width.

    One forward pass of two zero crops in eval mode (no random number is drawn).

    Raises
    ------
    ConfigError
        If the forward pass calls no Linear layer, or the last one is not the output layer.
    """
    calls: list[str] = []
    hooks = [m.register_forward_hook(lambda *_, n=n: calls.append(n))
             for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    training = model.training
    device = next(model.parameters()).device
    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.zeros(2, in_channels, input_size, input_size, device=device))
    finally:
        for h in hooks:
            h.remove()
        model.train(training)
    head = dict(model.named_modules()).get(calls[-1]) if calls else None
    if head is None or head.out_features != out.shape[-1]:
        raise ConfigError(
            f"{type(model).__name__} does not end in a Linear layer giving its {out.shape[-1]} "
            "outputs, so its trunk cannot be pretrained; use pretrain = 'none' for it.")
    return calls[-1]


def patch_mask(n: int, size: int, rng: np.random.Generator, *, patch: int = MASK_PATCH,
               ratio: float = MASK_RATIO) -> np.ndarray:
    """Masks of ``n`` crops: ``round(ratio x P^2)`` (at least 1) of the ``P x P`` patches of
    each (``P = ceil(size / patch)``), drawn from ``rng``.

    Returns
    -------
    (n, 1, size, size) bool array
        True where a pixel is hidden (in every layer).
    """
    side = -(-size // patch)
    k = max(1, round(ratio * side * side))
    ranks = rng.random((n, side * side)).argsort(axis=1).argsort(axis=1)
    grid = (ranks < k).reshape(n, side, side)
    return grid.repeat(patch, axis=1).repeat(patch, axis=2)[:, None, :size, :size]


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = TEMPERATURE) -> torch.Tensor:
    """NT-Xent loss of two views (n, d) of n crops: each view's partner is its positive,
    the other ``2n - 2`` views of the batch its negatives (Chen et al. 2020)."""
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    n = len(z1)
    sim = (z @ z.T / temperature).masked_fill(
        torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    return F.cross_entropy(sim, target)


class _Decoder(nn.Module):
    """Feature vector -> (C, S, S) crop: Linear to 64 x g x g (g = ceil(S / 8)), three
    transposed convolutions doubling the side, cropped to S."""

    def __init__(self, features: int, channels: int, size: int):
        super().__init__()
        self.g, self.size = -(-size // 8), size
        self.expand = nn.Linear(features, 64 * self.g * self.g)
        self.up = nn.Sequential(
            nn.GELU(), nn.ConvTranspose2d(64, 32, 4, stride=2, padding=1),
            nn.GELU(), nn.ConvTranspose2d(32, 16, 4, stride=2, padding=1),
            nn.GELU(), nn.ConvTranspose2d(16, channels, 4, stride=2, padding=1))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.up(self.expand(z).view(-1, 64, self.g, self.g))
        return x[:, :, :self.size, :self.size]


def _objective_meta(method: str) -> dict[str, Any]:
    """The objective's constants, recorded in the meta (a changed constant re-pretrains)."""
    if method == "masked":
        return {"mask_patch": MASK_PATCH, "mask_ratio": MASK_RATIO, "decoder": "linear+3deconv"}
    return {"temperature": TEMPERATURE, "noise_std": NOISE_STD, "channel_drop": CHANNEL_DROP,
            "cutout_fraction": CUTOUT_FRACTION, "projection": [128, 64]}


def pretrain_model(
    name: str,
    X: np.ndarray,
    *,
    center: np.ndarray,
    scale: np.ndarray,
    method: str,
    epochs: int,
    out_path: Path,
    settings: TrainSettings,
    seed: int,
    indices: np.ndarray | None = None,
    model_kwargs: dict[str, Any] | None = None,
    progress: bool = True,
) -> PretrainResult:
    """Pretrain the trunk of network ``name`` on crops without labels, or reuse the file.

    Parameters
    ----------
    name : str
        A name from :func:`oremap.models.list_models`.
    X : (n, C, S, S) float array or numpy.memmap
        Raw crops (``SampleSet.X``); read batch by batch.
    center, scale : (C,) float arrays
        Normalisation ``(x - center) / scale`` of every crop (:func:`area_scaling`);
        ``scale > 0``.
    method : {"masked", "contrastive"}
        The objective (see the module docstring).
    epochs : int
        Passes over the crops, >= 1.
    out_path : Path
        The pretraining file (:func:`pretrain_path`); reused when its meta matches, else
        replaced. It is the unit of resumption: an interrupted pretraining leaves no file (or
        the previous one) and starts again from its first epoch.
    settings : TrainSettings
        ``lr, lr_min, beta1, beta2, weight_decay, batch_size, device, amp, profile`` are used.
    seed : int
        Non-negative seed of initialisation, order, masks, views and dropout.
    indices : (k,) int array or None
        Crops of ``X`` to use (:func:`pretraining_indices`); None: all.
    model_kwargs : dict or None
        Family options for :func:`oremap.models.create`.
    progress : bool
        Show a progress bar of each epoch.

    Returns
    -------
    PretrainResult

    Raises
    ------
    ConfigError
        Unknown method, epochs < 1, invalid settings or seed, or a network without a Linear
        output layer.
    InputDataError
        Fewer than 2 crops, wrong shapes, a normalisation of the wrong length or with a
        scale <= 0, non-finite crop values.
    UnknownNameError
        Unknown model name, profile or option.
    """
    if method not in PRETRAIN_METHODS or method == "none":
        raise ConfigError(f"pretraining method must be 'masked' or 'contrastive'; got "
                          f"{method!r}.")
    if isinstance(epochs, bool) or not isinstance(epochs, int | np.integer) or epochs < 1:
        raise ConfigError(f"pretrain_epochs must be an integer >= 1; got {epochs!r}.")
    model_options(name)  # raises UnknownNameError early
    _check_settings(settings)
    _check_seed(seed)
    shape = _check_x(X, "X")
    idx = np.arange(shape[0]) if indices is None else np.sort(np.asarray(indices, np.int64))
    center, scale = _check_scaling(center, scale, shape[1])
    if len(idx) < 2:
        raise InputDataError(f"pretraining needs at least 2 crops; got {len(idx)}.")
    out_path = Path(out_path)
    meta = {
        "format": PRETRAIN_FORMAT, "method": method, "epochs": int(epochs), "seed": int(seed),
        "name": name, "profile": settings.profile, "options": dict(model_kwargs or {}),
        "in_channels": shape[1], "input_size": shape[2], "n_crops": len(idx),
        "batch_size": max(settings.batch_size, PRETRAIN_BATCH_MIN), "lr": settings.lr,
        "lr_min": settings.lr_min, "beta1": settings.beta1, "beta2": settings.beta2,
        "weight_decay": settings.weight_decay, "objective": _objective_meta(method),
        "data": data_digest(_Rows(X, idx), center, scale),
    }
    cached = _reusable(out_path, meta)
    if cached is not None:
        return cached
    device = choose_device(settings.device)
    t0 = time.perf_counter()
    with _deterministic(device):
        run = _Pretraining(X, idx, center, scale, meta, settings, device)
        history = [run.epoch(e, progress) for e in range(1, epochs + 1)]
    trunk = {k: v.detach().cpu() for k, v in run.model.state_dict().items()
             if not k.startswith(run.head + ".")}
    _save({"format": PRETRAIN_FORMAT, "trunk": trunk, "head": run.head, "meta": meta,
           "history": history, "made_with": {"oremap": __version__,
                                             "torch": str(torch.__version__)}}, out_path)
    frame = pd.DataFrame(history, columns=["epoch", "loss", "seconds"])
    with atomic_path(out_path.with_suffix(".csv")) as tmp:
        frame.to_csv(tmp, index=False)
    seconds = time.perf_counter() - t0
    logger.info("%s: %s pretraining on %d crops, %d epochs, %.1f s (trunk %s...)", name, method,
                len(idx), epochs, seconds, trunk_digest(trunk)[:12])
    return PretrainResult(out_path, method, frame, seconds, reused=False)


def _check_scaling(center: Any, scale: Any, channels: int) -> tuple[np.ndarray, np.ndarray]:
    center = np.asarray(center, dtype=np.float32).reshape(-1)
    scale = np.asarray(scale, dtype=np.float32).reshape(-1)
    if len(center) != channels or len(scale) != channels:
        raise InputDataError(
            f"center and scale need one value per layer ({channels}); got {len(center)} and "
            f"{len(scale)}. Pass area_scaling(ss.norm_center, ss.norm_scale).")
    if not (np.isfinite(center).all() and np.isfinite(scale).all() and (scale > 0).all()):
        raise InputDataError("center must be finite and scale finite and > 0 in every layer; "
                             f"got center {center.tolist()}, scale {scale.tolist()}.")
    return center, scale


def _reusable(path: Path, meta: dict[str, Any]) -> PretrainResult | None:
    """The pretraining in ``path`` if its meta equals ``meta``, else None (logged)."""
    if not path.is_file():
        return None
    try:
        state = load_pretrained(path)
    except InputDataError as exc:
        logger.warning("%s: %s; pretraining again", meta["name"], exc)
        return None
    old = state["meta"]
    if old != meta:
        keys = sorted(k for k in set(old) | set(meta) if old.get(k) != meta.get(k))
        logger.info("%s: pretraining %s was made with other %s; pretraining again",
                    meta["name"], path, ", ".join(keys))
        return None
    logger.info("%s: reusing the %s pretraining in %s", meta["name"], meta["method"], path)
    frame = pd.DataFrame(state.get("history", []), columns=["epoch", "loss", "seconds"])
    return PretrainResult(path, meta["method"], frame, 0.0, reused=True)


class _Rows:
    """Rows ``idx`` of ``X`` as an array-like for :func:`data_digest` (slices only)."""

    def __init__(self, X: np.ndarray, idx: np.ndarray):
        self.X, self.idx = X, idx
        self.dtype, self.shape = np.dtype(X.dtype), (len(idx), *X.shape[1:])

    def __len__(self) -> int:
        return len(self.idx)

    def __getitem__(self, rows: slice) -> np.ndarray:
        return np.asarray(self.X[self.idx[rows]])


class _Pretraining:
    """Model, objective head, optimiser and data of one pretraining, and its epochs."""

    def __init__(self, X: np.ndarray, idx: np.ndarray, center: np.ndarray, scale: np.ndarray,
                 meta: dict[str, Any], settings: TrainSettings, device: torch.device):
        self.X, self.idx, self.meta, self.device = X, idx, meta, device
        self.center = torch.from_numpy(center[:, None, None])
        self.scale = torch.from_numpy(scale[:, None, None])
        c, s = meta["in_channels"], meta["input_size"]
        torch.manual_seed(meta["seed"])  # the trunk's initial weights: as the fine-tuning's
        self.model = create(meta["name"], in_channels=c, num_classes=2, input_size=s,
                            profile=meta["profile"], **meta["options"]).to(device)
        self.head = find_head(self.model, c, s)
        width = self.model.get_submodule(self.head).in_features
        self.objective: nn.Module = (
            _Decoder(width, c, s) if meta["method"] == "masked" else
            nn.Sequential(nn.Linear(width, 128), nn.ReLU(), nn.Linear(128, 64))).to(device)
        self.format = (torch.channels_last if device.type == "cpu"
                       and type(self.model).__name__ in CHANNELS_LAST_CLASSES
                       else torch.contiguous_format)
        self.model = self.model.to(memory_format=self.format)
        params = [*self.model.parameters(), *self.objective.parameters()]
        self.optimizer = torch.optim.Adam(params, lr=settings.lr,
                                          betas=(settings.beta1, settings.beta2),
                                          weight_decay=settings.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            self.optimizer, T_max=meta["epochs"], eta_min=settings.lr_min)
        self.amp = settings.amp and device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.features: list[torch.Tensor] = []
        self.model.get_submodule(self.head).register_forward_pre_hook(
            lambda _, inputs: self.features.append(inputs[0]))

    def epoch(self, epoch: int, progress: bool) -> dict[str, float]:
        t0 = time.perf_counter()
        seed, n = self.meta["seed"], len(self.idx)
        order = np.random.default_rng(_derive_seed(seed, epoch, 1)).permutation(n)
        batches = _split_batches(order, self.meta["batch_size"])
        torch.manual_seed(_derive_seed(seed, epoch, 2))  # dropout masks of this epoch
        rng = np.random.default_rng(_derive_seed(seed, epoch, 4))  # views and masks
        self.model.train()
        self.objective.train()
        loss_sum = 0.0
        with progress_bar(len(batches), f"{self.meta['name']} pretrain {epoch}/"
                          f"{self.meta['epochs']}", "batch", disable=not progress,
                          transient=True) as bar:
            for rows in batches:
                xb = self._fetch(rows)
                xb = dihedral_batch(xb, rng.integers(0, 8, len(xb)))
                with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
                    loss = (self._masked(xb, rng) if self.meta["method"] == "masked"
                            else self._contrastive(xb, rng))
                self.optimizer.zero_grad(set_to_none=True)
                self.scaler.scale(loss).backward()
                self.scaler.step(self.optimizer)
                self.scaler.update()
                loss_sum += float(loss.detach()) * len(rows)
                bar.update()
        self.scheduler.step()
        row = {"epoch": epoch, "loss": loss_sum / n, "seconds": time.perf_counter() - t0}
        if not math.isfinite(row["loss"]):
            raise InputDataError(f"{self.meta['name']}: the pretraining loss is {row['loss']} "
                                 f"at epoch {epoch}; lower [train] lr.")
        logger.info("%s pretrain (%s) epoch %d/%d: loss %.4f, %.1f s", self.meta["name"],
                    self.meta["method"], epoch, self.meta["epochs"], row["loss"],
                    row["seconds"])
        return row

    def _fetch(self, rows: np.ndarray) -> torch.Tensor:
        """Normalised crops ``idx[rows]``, read in ascending order."""
        take = self.idx[np.sort(rows)]
        xb = torch.from_numpy(np.ascontiguousarray(self.X[take], dtype=np.float32))
        xb = (xb - self.center) / self.scale
        if not torch.isfinite(xb).all():
            bad = take[~torch.isfinite(xb).flatten(1).all(1).numpy()]
            raise InputDataError(f"crops {bad[:10].tolist()} contain NaN or infinite values; "
                                 "fill or drop them before pretraining.")
        return xb.to(self.device)

    def _trunk(self, x: torch.Tensor) -> torch.Tensor:
        """The feature vectors (the output layer's input) of a batch."""
        self.features.clear()
        self.model(x.contiguous(memory_format=self.format))
        return self.features.pop()

    def _masked(self, xb: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        mask = torch.from_numpy(patch_mask(len(xb), xb.shape[-1], rng)).to(xb.device)
        recon = self.objective(self._trunk(xb.masked_fill(mask, 0.0))).float()
        hidden = mask.expand_as(xb)
        return ((recon - xb) ** 2)[hidden].mean()

    def _contrastive(self, xb: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        views = torch.cat([_view(xb, rng), _view(xb, rng)])
        z = self.objective(self._trunk(views))
        return nt_xent(z[:len(xb)], z[len(xb):])


def _view(xb: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """A random view of normalised crops: dihedral turn, noise, layer dropout, cutout."""
    n, c, s, _ = xb.shape
    out = dihedral_batch(xb, rng.integers(0, 8, n))
    noise = rng.standard_normal((n, c, s, s), dtype=np.float32) * np.float32(NOISE_STD)
    keep = rng.random((n, c)) >= CHANNEL_DROP
    empty = np.flatnonzero(~keep.any(axis=1))
    keep[empty, rng.integers(0, c, len(empty))] = True
    side = max(1, round(s * CUTOUT_FRACTION))
    corner = rng.integers(0, s - side + 1, (n, 2))
    cut = np.ones((n, 1, s, s), dtype=np.float32)
    for i in np.flatnonzero(rng.random(n) < 0.5):
        cut[i, :, corner[i, 0]:corner[i, 0] + side, corner[i, 1]:corner[i, 1] + side] = 0
    factor = torch.from_numpy(keep[:, :, None, None].astype(np.float32) * cut).to(xb.device)
    return (out + torch.from_numpy(noise).to(xb.device)) * factor

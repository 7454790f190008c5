"""Sample sets: crops of cells written to disk, splits, normalisation, and a torch Dataset."""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import torch

from oremap.errors import DroppedDataWarning, InputDataError
from oremap.evidence.stack import LazyStack
from oremap.grid import Grid
from oremap.io import atomic_path, read_json, save_figure, write_json, write_vector
from oremap.labels import Label
from oremap.progress import progress as progress_bar
from oremap.samples.cells import (
    _check_cells,
    _check_stack,
    cell_coverage,
    check_cells_on_stack,
    plot_cells,
)
from oremap.samples.crops import (
    CropSpec,
    cell_block,
    cell_crop_offsets,
    check_crop_spec,
    cut_crops,
    fit_robust_scaling,
    read_window,
)
from oremap.samples.split import (
    SplitName,
    check_split_options,
    split_blocks,
    split_cells,
    split_random,
    split_validation,
)
from oremap.stages import stage_missing

__all__ = [
    "NORMALISATION",
    "SAMPLE_FILES",
    "CropDataset",
    "SampleSet",
    "build_samples",
    "counts_table",
    "load_sample_set",
]

#: Files :func:`build_samples` writes in ``out_dir``.
SAMPLE_FILES: tuple[str, ...] = ("X.npy", "meta.npz", "manifest.json", "normalisation.json",
                                 "cells.gpkg", "cells.png")

#: How crops are normalised (also written to normalisation.json and the manifest).
NORMALISATION = (
    "per layer robust scaling (x - median) / IQR, IQR = 75th - 25th percentile (1 where it is "
    "0), fitted on the valid pixels of each fold's training cells only; applied on the fly, "
    "X.npy keeps raw values (after any log transform applied upstream)"
)

_CLASS_NAMES = {Label.POSITIVE: "positive", Label.NEGATIVE: "negative",
                Label.UNKNOWN: "unknown"}


@dataclass
class SampleSet:
    """Crops of all usable cells, their labels, folds and normalisation.

    Attributes
    ----------
    X : (n, C, S, S) float32 array
        Raw (not normalised) crops; a read-only memmap of ``X.npy`` when loaded from disk.
    y : (n,) int64 array
        Label of each crop's cell (:class:`Label`: 1, 0, -1).
    cell_id : (n,) int64 array
        ``id`` of each crop's cell.
    origin : (n, 2) int64 array
        (row, col) of each crop's top-left pixel on the grid.
    centre : (n,) bool array
        True for the one centred crop of each usable cell (used for prediction).
    test_fold : (n,) int64 array
        For labelled crops, the fold whose test set holds the crop; -1 if never test
        (training-only crops of a single split, and all unknown crops).
    n_folds : int
        1 for a single train/test split, else K.
    layer_names : list of C str
    norm_center, norm_scale : (n_folds, C) float64 arrays
        Per-fold, per-layer median and IQR (see :data:`NORMALISATION`).
    split : str
        ``"cell"``, ``"block"`` or ``"random"``.
    manifest : dict
        Contents of ``manifest.json``.
    path : Path or None
        Folder the set was written to.
    validation : (n_folds, n) bool array or None
        Inner validation: True where a crop is held out of fold k's training side (see
        :func:`~oremap.samples.split.split_validation`); None without inner validation.
    """

    X: np.ndarray
    y: np.ndarray
    cell_id: np.ndarray
    origin: np.ndarray
    centre: np.ndarray
    test_fold: np.ndarray
    n_folds: int
    layer_names: list[str]
    norm_center: np.ndarray
    norm_scale: np.ndarray
    split: str
    manifest: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    validation: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.y)

    @property
    def has_validation(self) -> bool:
        """Whether the set carries an inner validation split."""
        return self.validation is not None

    def fit_indices(self, fold: int = 0) -> np.ndarray:
        """Training crops of ``fold`` the members are fitted on: the training side less the
        inner validation set (all of it without inner validation)."""
        idx = self.train_indices(fold)
        if self.validation is None:
            return idx
        return idx[~self.validation[fold][idx]]

    def validation_indices(self, fold: int = 0) -> np.ndarray:
        """Crops of ``fold``'s inner validation set (empty without inner validation)."""
        self._check_fold(fold)
        if self.validation is None:
            return np.zeros(0, dtype=np.int64)
        return np.flatnonzero(self.validation[fold])

    def _check_fold(self, fold: int) -> None:
        if not 0 <= fold < self.n_folds:
            raise InputDataError(
                f"fold {fold!r} does not exist: this sample set has {self.n_folds} fold(s), "
                f"numbered 0 to {self.n_folds - 1}."
            )

    def train_indices(self, fold: int = 0) -> np.ndarray:
        """Indices of the labelled crops used for training in ``fold``, ascending, int64."""
        self._check_fold(fold)
        return np.flatnonzero((self.y != Label.UNKNOWN) & (self.test_fold != fold))

    def test_indices(self, fold: int = 0) -> np.ndarray:
        """Indices of the crops in the test set of ``fold``, ascending, int64."""
        self._check_fold(fold)
        return np.flatnonzero(self.test_fold == fold)

    def centre_indices(self) -> np.ndarray:
        """Indices of the centred crops, one per usable cell, in cell order, int64."""
        return np.flatnonzero(self.centre)

    def normalised(self, indices: Sequence[int] | np.ndarray, fold: int = 0) -> np.ndarray:
        """Crops ``indices`` normalised with ``fold``'s scaling: (k, C, S, S) float32.

        Reads only those crops from the memmap (in ascending order, returned in the given
        order).
        """
        self._check_fold(fold)
        idx = np.asarray(indices, dtype=np.int64)
        order = np.argsort(idx, kind="stable")
        raw = np.empty((len(idx), *self.X.shape[1:]), dtype=np.float32)
        raw[order] = self.X[idx[order]]
        return self.normalise(raw, fold)

    def normalise(self, raw: np.ndarray, fold: int = 0) -> np.ndarray:
        """Crops ``raw`` ((k, C, S, S) or (C, S, S), e.g. cut afresh from the evidence stack)
        scaled with ``fold``'s robust centre and scale: float32, the networks' input.

        The one place where fold normalisation is computed.
        """
        center, scale = self.fold_scaling(fold)
        return ((np.asarray(raw, dtype=np.float32) - center) / scale).astype(np.float32)

    def fold_scaling(self, fold: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """``(centre, scale)`` of ``fold`` as float32 arrays of shape (C, 1, 1)."""
        self._check_fold(fold)
        return (self.norm_center[fold].astype(np.float32)[:, None, None],
                self.norm_scale[fold].astype(np.float32)[:, None, None])


class CropDataset(torch.utils.data.Dataset):
    """Normalised crops of a :class:`SampleSet` for a torch ``DataLoader``.

    Parameters
    ----------
    sample_set : SampleSet
    indices : (k,) int array or None
        Crops to serve (e.g. ``sample_set.train_indices(fold)``); None for all.
    fold : int
        Whose normalisation to apply.

    Items are ``(x, y)``: x a (C, S, S) float32 tensor ``(raw - median) / IQR``, y the int
    label. Each item reads one crop from the memmap; the array is never copied whole, and a
    pickled dataset (DataLoader workers) reopens ``X.npy`` instead of carrying the data.
    """

    def __init__(self, sample_set: SampleSet, indices: Sequence[int] | np.ndarray | None = None,
                 fold: int = 0) -> None:
        sample_set._check_fold(fold)
        n = len(sample_set)
        self.indices = (np.arange(n, dtype=np.int64) if indices is None
                        else np.asarray(indices, dtype=np.int64))
        if self.indices.size and (self.indices.min() < 0 or self.indices.max() >= n):
            raise InputDataError(
                f"crop indices must lie in [0, {n}), got values from {self.indices.min()} to "
                f"{self.indices.max()}; take them from train_indices() or test_indices()."
            )
        self.fold = fold
        self.labels = np.asarray(sample_set.y)[self.indices]
        self.center, self.scale = sample_set.fold_scaling(fold)
        self.X = sample_set.X
        filename = getattr(sample_set.X, "filename", None)
        self._x_path = Path(filename) if filename else None

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        raw = np.asarray(self.X[self.indices[i]], dtype=np.float32)
        return torch.from_numpy((raw - self.center) / self.scale), int(self.labels[i])

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        if self._x_path is not None:
            state["X"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if self.X is None:
            self.X = np.load(self._x_path, mmap_mode="r")


# ------------------------------------------------------------------------------------ build


def build_samples(
    stack: np.ndarray | LazyStack,
    layer_names: Sequence[str],
    grid: Grid,
    cells: gpd.GeoDataFrame,
    *,
    crops: CropSpec | None = None,
    split: SplitName = "cell",
    test_fraction: float = 0.2,
    block_size: int = 4,
    folds: int = 1,
    validation: float = 0.0,
    seed: int = 0,
    out_dir: Path,
    progress: bool = True,
) -> SampleSet:
    """Cut crops from the usable cells, split them, fit the normalisation, write everything.

    Parameters
    ----------
    stack : (C, H, W) float array or LazyStack
        Evidence layers on ``grid``, NaN for nodata (any log transform already applied). A
        :class:`~oremap.evidence.LazyStack` is read cell by cell in raster order, so the stack
        never needs to fit in memory; the results equal those of the in-memory array.
    layer_names : sequence of C str
    grid : Grid
        The grid of ``stack`` and ``cells``.
    cells : GeoDataFrame
        From :func:`~oremap.samples.cells.label_cells` (needs ``label``), normally after
        :func:`~oremap.samples.cells.cell_coverage` (``usable``, ``drop_reason``); without a
        ``usable`` column the paper's rule (any nodata drops the cell) is applied here.
    crops : CropSpec
        Window size and per-class lattices (default: the paper's). Each usable cell gives the
        windows of :func:`~oremap.samples.crops.cell_crop_offsets`; a cell smaller than the
        window gives one centred window reaching into its neighbours, and is dropped (with a
        reason) if that window leaves the grid or touches nodata. Inside normal cells, NaNs
        left by a nodata tolerance are filled with the cell's per-layer median.
    split : {"cell", "block", "random"}
        ``cell``: by cell, stratified by label. ``block``: by spatial blocks of
        ``block_size x block_size`` cells. ``random``: crops at random (the paper; warns that
        accuracy will be optimistic).
    test_fraction : float
        Test share for a single split (``folds == 1``), in (0, 1).
    block_size : int
        Block side in cells for ``split="block"``.
    folds : int
        1 for a single split, K > 1 for K-fold cross-validation (one normalisation per fold).
    validation : float
        Share of each fold's training side held out as inner validation (by the split's own
        unit; :func:`~oremap.samples.split.split_validation`), in [0, 0.5]; 0 for none.
    seed : int
        Seed of the split.
    out_dir : Path
        Receives :data:`SAMPLE_FILES`, each written atomically (temporary name, then rename).
    progress : bool
        Show a progress bar while cutting crops.

    Returns
    -------
    SampleSet
        Loaded back from ``out_dir`` (X as a read-only memmap).

    Raises
    ------
    InputDataError
        On a stack/grid shape or layer-name mismatch, impossible crop or split options, cells
        without labels, or no usable positive or negative cell.
    UnknownNameError
        If ``split`` is unknown.
    """
    spec = CropSpec() if crops is None else crops
    names = _check_inputs(stack, layer_names, grid, cells, spec)
    check_split_options(split, test_fraction=test_fraction, folds=folds, block_size=block_size)
    if "usable" not in cells.columns:
        cells = cell_coverage(stack, cells, names)
    cells = cells.reset_index(drop=True).copy()
    plan = _plan_crops(stack, cells, spec)
    n_folds = folds
    if split == "random":
        crop_fold = split_random(plan["y"], test_fraction=test_fraction, folds=folds, seed=seed)
        cells["test_fold"] = -1
    else:
        labels = np.where(cells["usable"].to_numpy(bool), cells["label"].to_numpy(),
                          int(Label.UNKNOWN))
        if split == "cell":
            cell_fold = split_cells(labels, test_fraction=test_fraction, folds=folds, seed=seed)
        else:
            cell_fold = split_blocks(labels, cells["row"].to_numpy(), cells["col"].to_numpy(),
                                     block_size=block_size, test_fraction=test_fraction,
                                     folds=folds, seed=seed)
        cells["test_fold"] = cell_fold
        crop_fold = cell_fold[plan["cell_pos"]]
    val = None
    if validation > 0:
        if split == "random":
            val = split_validation(plan["y"], crop_fold, n_folds, split=split,
                                   fraction=validation, seed=seed)
        else:
            cell_val = split_validation(labels, cell_fold, n_folds, split=split,
                                        fraction=validation, rows=cells["row"].to_numpy(),
                                        cols=cells["col"].to_numpy(), block_size=block_size,
                                        seed=seed)
            val = cell_val[:, plan["cell_pos"]]
            cells["validation_folds"] = [
                " ".join(str(k) for k in np.flatnonzero(cell_val[:, i]))
                for i in range(len(cells))]
    out_dir = Path(out_dir)
    _write_crops(out_dir / "X.npy", stack, cells, plan, spec.size, progress)
    center, scale = _fit_folds(stack, cells, plan, crop_fold, n_folds)
    arrays = {"y": plan["y"], "cell_id": cells["id"].to_numpy(np.int64)[plan["cell_pos"]],
              "origin": plan["origin"], "centre": plan["centre"], "test_fold": crop_fold,
              "n_folds": np.int64(n_folds), "layer_names": np.array(names, dtype=str),
              "norm_center": center, "norm_scale": scale, "split": np.array(split)}
    if val is not None:
        arrays["validation"] = val
    with atomic_path(out_dir / "meta.npz") as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, **arrays)
    write_json(out_dir / "normalisation.json", _normalisation_doc(names, center, scale))
    counts = _counts(plan["y"], arrays["cell_id"], crop_fold, n_folds)
    write_json(out_dir / "manifest.json", _manifest(
        cells, plan, counts, spec, names, split=split, test_fraction=test_fraction,
        block_size=block_size, folds=folds, seed=seed, validation=validation,
        validation_counts=_validation_counts(plan["y"], arrays["cell_id"], val)))
    write_vector(out_dir / "cells.gpkg", cells, layer="cells")
    title = f"Cells and labels ({split} split, {len(plan['y'])} crops)"
    save_figure(plot_cells(cells, title=title), out_dir / "cells.png")
    return load_sample_set(out_dir)


def _check_inputs(stack: np.ndarray | LazyStack, layer_names: Sequence[str], grid: Grid,
                  cells: gpd.GeoDataFrame, spec: CropSpec) -> list[str]:
    names = _check_stack(stack, layer_names)
    if stack.shape[1:] != grid.shape:
        raise InputDataError(
            f"the stack has {stack.shape[1]} x {stack.shape[2]} pixels but the grid has "
            f"{grid.height} x {grid.width} (rows x cols); build the stack on this grid."
        )
    check_crop_spec(spec, grid.shape)
    _check_cells(cells)
    if "label" not in cells.columns:
        raise InputDataError(
            "the cells have no `label` column; expected cells labelled by label_cells(). "
            "Run label_cells() before build_samples()."
        )
    bad = ~np.isin(cells["label"].to_numpy(), [int(v) for v in Label])
    if bad.any():
        raise InputDataError(
            f"{int(bad.sum())} cells have labels outside {{1, 0, -1}} (e.g. "
            f"{cells.loc[bad, 'label'].iloc[0]!r}); expected values of Label from label_cells()."
        )
    check_cells_on_stack(cells, grid.shape)
    return names


def _check_classes(cells: gpd.GeoDataFrame) -> None:
    usable = cells["usable"].to_numpy(bool)
    labels = cells["label"].to_numpy()
    for label in (Label.POSITIVE, Label.NEGATIVE):
        n_all = int((labels == label).sum())
        if not (usable & (labels == label)).any():
            name = _CLASS_NAMES[label]
            reasons = Counter(cells.loc[(labels == label) & ~usable, "drop_reason"])
            raise InputDataError(
                f"no usable {name} cells: {n_all} {name} cell(s) were labelled and all were "
                f"dropped ({dict(reasons)}); expected at least one. Fix: raise the nodata "
                "tolerance, use larger cells or smaller crops, or add labelled data."
            )


def _plan_crops(stack: np.ndarray | LazyStack, cells: gpd.GeoDataFrame,
                spec: CropSpec) -> dict[str, Any]:
    """Crop origins of every usable cell; drops small cells whose window is unusable.

    Updates ``cells`` in place (``usable``, ``drop_reason``, ``n_crops``); raises if a class
    has no usable cell left.
    """
    size = spec.size
    usable = cells["usable"].to_numpy(bool).copy()
    reasons = cells["drop_reason"].astype(str).to_numpy().copy() if (
        "drop_reason" in cells.columns) else np.full(len(cells), "", dtype=object)
    r0, c0 = cells["px_row0"].to_numpy(), cells["px_col0"].to_numpy()
    h, w = cells["px_rows"].to_numpy(), cells["px_cols"].to_numpy()
    labels = cells["label"].to_numpy()
    small = (h < size) | (w < size)
    parts: list[tuple[int, np.ndarray, np.ndarray]] = []
    newly = Counter()
    for i in np.flatnonzero(usable):
        offsets, centre = cell_crop_offsets(int(h[i]), int(w[i]), int(labels[i]), spec)
        origin = offsets + np.array([r0[i], c0[i]])
        if small[i]:
            _, why = read_window(stack, int(origin[0, 0]), int(origin[0, 1]), size)
            if why:
                usable[i], reasons[i] = False, why
                newly[why] += 1
                continue
        parts.append((i, origin, centre))
    if newly:
        warnings.warn(
            f"dropped {sum(newly.values())} cells smaller than the {size}-pixel crop window: "
            f"{dict(newly)}", DroppedDataWarning, stacklevel=3)
    cells["usable"] = usable
    cells["drop_reason"] = np.asarray(reasons, dtype=object).astype(str)
    _check_classes(cells)
    cell_pos = np.concatenate([np.full(len(o), i, np.int64) for i, o, _ in parts])
    cells["n_crops"] = np.bincount(cell_pos, minlength=len(cells))
    return {"cell_pos": cell_pos,
            "origin": np.concatenate([o for _, o, _ in parts]).astype(np.int64),
            "centre": np.concatenate([c for _, _, c in parts]),
            "y": labels[cell_pos].astype(np.int64),
            "small": small, "n_small_used": int((small & usable).sum())}


def _write_crops(path: Path, stack: np.ndarray | LazyStack, cells: gpd.GeoDataFrame,
                 plan: dict[str, Any], size: int, progress: bool) -> None:
    cell_pos, origin = plan["cell_pos"], plan["origin"]
    shape = (len(cell_pos), stack.shape[0], size, size)
    starts = np.searchsorted(cell_pos, np.unique(cell_pos))
    stops = np.append(starts[1:], len(cell_pos))
    order = _raster_order(cells, cell_pos[starts])
    starts, stops = starts[order], stops[order]
    with atomic_path(path) as tmp:
        X = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=shape)
        with progress_bar(len(starts), "crops", "cell", disable=not progress) as bar:
            for start, stop in zip(starts, stops, strict=True):
                bar.update()
                i = cell_pos[start]
                if plan["small"][i]:
                    X[start] = read_window(stack, int(origin[start, 0]),
                                           int(origin[start, 1]), size)[0]
                    continue
                r0, c0 = int(cells.at[i, "px_row0"]), int(cells.at[i, "px_col0"])
                block = cell_block(stack, r0, c0, int(cells.at[i, "px_rows"]),
                                   int(cells.at[i, "px_cols"]))
                X[start:stop] = cut_crops(block, origin[start:stop] - [r0, c0], size)
        X.flush()
        del X


def _fit_folds(stack: np.ndarray | LazyStack, cells: gpd.GeoDataFrame, plan: dict[str, Any],
               crop_fold: np.ndarray, n_folds: int) -> tuple[np.ndarray, np.ndarray]:
    """Robust scaling per fold, on the raw pixels of the cells with training crops."""
    center = np.empty((n_folds, stack.shape[0]))
    scale = np.empty((n_folds, stack.shape[0]))
    labelled = plan["y"] != Label.UNKNOWN
    for fold in range(n_folds):
        train_cells = np.unique(plan["cell_pos"][labelled & (crop_fold != fold)])
        boxes = cells.loc[train_cells, ["px_row0", "px_col0", "px_rows", "px_cols"]].to_numpy()
        blocks: list[np.ndarray] = [np.empty(0)] * len(boxes)
        for k in _raster_order(cells, train_cells):  # read in raster order, keep cell order
            r, c, h, w = boxes[k]
            blocks[k] = stack[:, r:r + h, c:c + w]
        center[fold], scale[fold] = fit_robust_scaling(blocks)
    return center, scale


def _raster_order(cells: gpd.GeoDataFrame, positions: np.ndarray) -> np.ndarray:
    """Indices into ``positions`` (rows of ``cells``) sorting them top to bottom, left to right.

    Reading cells in this order reads each strip of a :class:`LazyStack` once.
    """
    rows = cells["px_row0"].to_numpy()[positions]
    cols = cells["px_col0"].to_numpy()[positions]
    return np.lexsort((cols, rows))


def _normalisation_doc(names: list[str], center: np.ndarray, scale: np.ndarray) -> dict:
    return {"method": "robust", "description": NORMALISATION, "layer_names": names,
            "folds": [{"fold": f, "center": dict(zip(names, center[f].tolist(), strict=True)),
                       "scale": dict(zip(names, scale[f].tolist(), strict=True))}
                      for f in range(len(center))]}


def _manifest(cells: gpd.GeoDataFrame, plan: dict[str, Any], counts: pd.DataFrame,
              spec: CropSpec, names: list[str], **options: Any) -> dict[str, Any]:
    usable = cells["usable"].to_numpy(bool)
    labels = cells["label"].to_numpy()
    by_label = {_CLASS_NAMES[k]: {"usable": int(((labels == k) & usable).sum()),
                                  "dropped": int(((labels == k) & ~usable).sum())}
                for k in _CLASS_NAMES}
    dropped = cells.loc[~usable]
    by_layer = Counter(layer for v in dropped.get("nodata_layers", pd.Series(dtype=str))
                       for layer in str(v).split(",") if layer)
    return {
        **options, "n_crops": len(plan["y"]), "crop_spec": spec.to_dict(),
        "layer_names": names, "normalisation": NORMALISATION,
        "nodata_fill": "NaNs inside usable cells (nodata tolerance > 0) are filled with the "
                       "cell's median of that layer; windows of cells smaller than the crop "
                       "must be complete",
        "centre_crop": "each usable cell has one centre=True crop: the lattice window at the "
                       "cell centre if there is one, else an extra centred window",
        "cells": {"total": len(cells), "usable": int(usable.sum()), "by_label": by_label,
                  "smaller_than_crop": int(plan["n_small_used"])},
        "dropped_cells": {"total": int((~usable).sum()),
                          "by_reason": dict(Counter(dropped["drop_reason"].astype(str))),
                          "by_layer": dict(by_layer)},
        "counts": {str(k): {str(c): int(v) for c, v in row.items()}
                   for k, row in counts.to_dict(orient="index").items()},
    }


def _validation_counts(y: np.ndarray, cell_id: np.ndarray,
                       val: np.ndarray | None) -> list[dict[str, int]]:
    """Per fold, the inner validation set's crops and cells by class."""
    if val is None:
        return []
    out = []
    for mask in val:
        row = {}
        for label in (Label.POSITIVE, Label.NEGATIVE):
            m = mask & (y == label)
            name = _CLASS_NAMES[label]
            row[f"{name}_crops"] = int(m.sum())
            row[f"{name}_cells"] = len(np.unique(cell_id[m]))
        out.append(row)
    return out


# ------------------------------------------------------------------------------------ load


def load_sample_set(out_dir: Path) -> SampleSet:
    """Open a sample set written by :func:`build_samples`; X is a read-only memmap.

    Raises
    ------
    StageNotReadyError
        If a file of :data:`SAMPLE_FILES` (X.npy, meta.npz, manifest.json) is missing.
    InputDataError
        If X.npy and meta.npz disagree on the number of crops.
    """
    out_dir = Path(out_dir)
    missing = [f for f in ("X.npy", "meta.npz", "manifest.json") if not (out_dir / f).exists()]
    if missing:
        raise stage_missing(
            "samples", f"no sample set in {out_dir}: {missing} missing", out_dir.parent)
    X = np.load(out_dir / "X.npy", mmap_mode="r")
    with np.load(out_dir / "meta.npz", allow_pickle=False) as meta:
        arrays = {k: meta[k] for k in meta.files}
    if len(X) != len(arrays["y"]):
        raise InputDataError(
            f"{out_dir}: X.npy holds {len(X)} crops but meta.npz describes {len(arrays['y'])}; "
            "the files come from different runs. Rerun the samples stage."
        )
    return SampleSet(
        X=X, y=arrays["y"], cell_id=arrays["cell_id"], origin=arrays["origin"],
        centre=arrays["centre"], test_fold=arrays["test_fold"],
        n_folds=int(arrays["n_folds"]), layer_names=[str(n) for n in arrays["layer_names"]],
        norm_center=arrays["norm_center"], norm_scale=arrays["norm_scale"],
        split=str(arrays["split"]), manifest=read_json(out_dir / "manifest.json"),
        path=out_dir, validation=arrays.get("validation"),
    )


def counts_table(sample_set: SampleSet) -> pd.DataFrame:
    """Crop and cell counts per class (rows) and split side / fold (columns).

    Rows are ``positive``, ``negative``, ``unknown``, ``total``. Columns are ``train crops``,
    ``train cells``, ``test crops``, ``test cells`` (prefixed ``fold k`` when there are
    several folds), then ``all crops`` and ``all cells``. A cell counts on a side if any of its
    crops is there (under ``split="random"`` a cell can count on both).
    """
    return _counts(sample_set.y, sample_set.cell_id, sample_set.test_fold, sample_set.n_folds)


def _counts(y: np.ndarray, cell_id: np.ndarray, test_fold: np.ndarray,
            n_folds: int) -> pd.DataFrame:
    labelled = y != Label.UNKNOWN
    sides: dict[str, np.ndarray] = {}
    for fold in range(n_folds):
        prefix = f"fold {fold} " if n_folds > 1 else ""
        sides[f"{prefix}train"] = labelled & (test_fold != fold)
        sides[f"{prefix}test"] = test_fold == fold
    sides["all"] = np.ones(len(y), dtype=bool)
    rows = {}
    for label, name in _CLASS_NAMES.items():
        row = {}
        for side, mask in sides.items():
            m = mask & (y == label)
            row[f"{side} crops"] = int(m.sum())
            row[f"{side} cells"] = len(np.unique(cell_id[m]))
        rows[name] = row
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.loc["total"] = table.sum(axis=0)
    return table.astype(np.int64)

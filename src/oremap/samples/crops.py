"""Crops: square windows cut from cells (data augmentation) and robust per-layer scaling."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from oremap.errors import InputDataError
from oremap.evidence.stack import LazyStack
from oremap.labels import Label

__all__ = [
    "CropParams",
    "CropSpec",
    "cell_block",
    "cell_crop_offsets",
    "centre_offset",
    "check_crop_spec",
    "cut_crops",
    "fit_robust_scaling",
    "lattice_offsets",
    "read_window",
]


class CropParams(NamedTuple):
    """Crop lattice of one class (He et al. 2024 call them N, a, b).

    Attributes
    ----------
    n : int
        Maximum number of windows per cell, >= 1.
    a : int
        Step between windows along x (columns), pixels, >= 1.
    b : int
        Step between windows along y (rows), pixels, >= 1.
    """

    n: int
    a: int
    b: int


@dataclass(frozen=True)
class CropSpec:
    """Window size and per-class lattices; defaults are the paper's.

    Attributes
    ----------
    size : int
        Side of the square windows, pixels (paper: 32).
    positive : CropParams or (n, a, b)
        Lattice for positive cells (paper: N=50, a=12, b=24).
    negative : CropParams or (n, a, b)
        Lattice for negative cells (paper: N=10, a=32, b=64).

    Unknown cells always give one centred window. Plain tuples are converted to
    :class:`CropParams`. Raises :class:`InputDataError` for sizes or steps < 1.
    """

    size: int = 32
    positive: CropParams = CropParams(50, 12, 24)
    negative: CropParams = CropParams(10, 32, 64)

    def __post_init__(self) -> None:
        _check_whole(self.size, "crops.size", "(paper: 32)")
        for name in ("positive", "negative"):
            value = getattr(self, name)
            if not isinstance(value, (tuple, list)) or len(value) != 3:
                raise InputDataError(
                    f"crops.{name} must be (n, a, b): windows per cell, x step, y step in "
                    f"pixels; got {value!r}. Example: (50, 12, 24)."
                )
            params = CropParams(*value)
            for field, v in zip(params._fields, params, strict=True):
                _check_whole(v, f"crops.{name}.{field}", "")
            object.__setattr__(self, name, params)

    def params(self, label: int) -> CropParams | None:
        """The lattice for ``label``; None for unknown cells (one centred window)."""
        if label == Label.POSITIVE:
            return self.positive
        if label == Label.NEGATIVE:
            return self.negative
        return None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description."""
        return {"size": self.size, "positive": self.positive._asdict(),
                "negative": self.negative._asdict()}


def _check_whole(value: object, name: str, hint: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InputDataError(
            f"{name} must be a whole number of pixels >= 1, got {value!r}; fix it {hint}".rstrip()
            + "."
        )


def check_crop_spec(spec: CropSpec, grid_shape: tuple[int, int]) -> None:
    """Raise :class:`InputDataError` if a ``spec.size`` window cannot fit in the grid.

    Parameters
    ----------
    spec : CropSpec
    grid_shape : (rows, cols)
        Grid shape in pixels.
    """
    if not isinstance(spec, CropSpec):
        raise InputDataError(f"crops must be a CropSpec, got {type(spec).__name__}.")
    if spec.size > min(grid_shape):
        raise InputDataError(
            f"crop windows of {spec.size} x {spec.size} pixels are larger than the whole grid "
            f"({grid_shape[0]} x {grid_shape[1]} pixels); use crops.size ([samples] crop_size) "
            f"<= {min(grid_shape)} "
            "or a finer pixel size."
        )


def centre_offset(px_rows: int, px_cols: int, size: int) -> tuple[int, int]:
    """Offset (row, col) in pixels of the centred window, from the cell's top-left corner.

    Negative when the cell is smaller than the window (the window then takes context from the
    neighbouring cells). Odd leftovers put the extra pixel after the window (below / right).
    """
    return (px_rows - size) // 2, (px_cols - size) // 2


def lattice_offsets(px_rows: int, px_cols: int, size: int, params: CropParams) -> np.ndarray:
    """Offsets of the lattice windows inside a cell, in raster order, at most ``params.n``.

    Windows move by ``params.a`` pixels along x and ``params.b`` along y and stay inside the
    cell; the lattice as a whole is centred in the cell (the pixels left over by the steps are
    split between both sides, the odd one after). The first ``n`` windows in raster order
    (along x first, then down) are kept.

    Returns
    -------
    (k, 2) int64 array
        (row, col) offsets from the cell's top-left pixel; k = 0 if the cell is smaller than
        the window.
    """
    if px_rows < size or px_cols < size:
        return np.empty((0, 2), dtype=np.int64)
    n_x = (px_cols - size) // params.a + 1
    n_y = (px_rows - size) // params.b + 1
    start_x = (px_cols - size - (n_x - 1) * params.a) // 2
    start_y = (px_rows - size - (n_y - 1) * params.b) // 2
    rows, cols = np.meshgrid(start_y + params.b * np.arange(n_y),
                             start_x + params.a * np.arange(n_x), indexing="ij")
    return np.column_stack([rows.ravel(), cols.ravel()])[: params.n].astype(np.int64)


def cell_crop_offsets(px_rows: int, px_cols: int, label: int,
                      spec: CropSpec) -> tuple[np.ndarray, np.ndarray]:
    """Window offsets of one cell and which one is its centred window.

    * Unknown cells: the centred window only.
    * Labelled cells: the lattice of their class (:func:`lattice_offsets`). If the centred
      window is one of them it is flagged; otherwise it is appended as an extra window, so a
      labelled cell has up to ``n + 1`` windows and always exactly one flagged centred window.
    * A cell smaller than the window (along either axis): the centred window only, whatever
      its class; it reaches into the neighbouring cells.

    Returns
    -------
    offsets : (k, 2) int64 array
        (row, col) offsets from the cell's top-left pixel, unique.
    centre : (k,) bool array
        True for exactly one window.
    """
    centre = np.array([centre_offset(px_rows, px_cols, spec.size)], dtype=np.int64)
    params = spec.params(label)
    if params is None:
        return centre, np.ones(1, dtype=bool)
    lattice = lattice_offsets(px_rows, px_cols, spec.size, params)
    is_centre = (lattice == centre).all(axis=1)
    if is_centre.any():
        return lattice, is_centre
    flags = np.zeros(len(lattice) + 1, dtype=bool)
    flags[-1] = True
    return np.concatenate([lattice, centre]), flags


def cell_block(stack: np.ndarray | LazyStack, row0: int, col0: int, px_rows: int,
               px_cols: int) -> np.ndarray:
    """The cell's pixels as float32, NaNs filled per layer with the median of the cell.

    Parameters
    ----------
    stack : (C, H, W) array or LazyStack
    row0, col0, px_rows, px_cols : int
        The cell's top-left pixel and size in pixels.

    Returns
    -------
    (C, px_rows, px_cols) float32 array (a copy). A layer without any valid pixel stays NaN
    (such cells are not usable, see :func:`oremap.samples.cells.cell_coverage`).
    """
    block = np.array(stack[:, row0:row0 + px_rows, col0:col0 + px_cols], dtype=np.float32)
    bad = ~np.isfinite(block)
    if bad.any():
        for layer in np.flatnonzero(bad.any(axis=(1, 2))):
            valid = block[layer][~bad[layer]]
            block[layer][bad[layer]] = np.median(valid) if valid.size else np.nan
    return block


def cut_crops(block: np.ndarray, offsets: np.ndarray, size: int) -> np.ndarray:
    """Windows of ``block`` at ``offsets``: (C, h, w) -> (k, C, size, size) float32."""
    if len(offsets) == 0:
        return np.empty((0, block.shape[0], size, size), dtype=np.float32)
    views = np.lib.stride_tricks.sliding_window_view(block, (size, size), axis=(1, 2))
    return np.ascontiguousarray(views[:, offsets[:, 0], offsets[:, 1]].swapaxes(0, 1),
                                dtype=np.float32)


def read_window(stack: np.ndarray | LazyStack, row: int, col: int,
                size: int) -> tuple[np.ndarray | None, str]:
    """A window anywhere on the grid, for cells smaller than the window.

    Returns
    -------
    window : (C, size, size) float32 array, or None if unusable
    reason : str
        ``""``, ``"crop window leaves the grid"`` or ``"crop window touches nodata"``.
    """
    _, height, width = stack.shape
    if row < 0 or col < 0 or row + size > height or col + size > width:
        return None, "crop window leaves the grid"
    window = np.array(stack[:, row:row + size, col:col + size], dtype=np.float32)
    if not np.isfinite(window).all():
        return None, "crop window touches nodata"
    return window, ""


def fit_robust_scaling(blocks: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per-layer robust scaling: ``(x - median) / IQR``, fitted on the valid pixels of blocks.

    Parameters
    ----------
    blocks : sequence of (C, h, w) arrays
        Pixels to fit on (oremap passes the training cells only); NaNs are ignored.

    Returns
    -------
    center : (C,) float64 array
        Median of each layer.
    scale : (C,) float64 array
        Interquartile range (75th minus 25th percentile, linear interpolation) of each layer;
        1.0 where it is 0, so constant layers are only shifted.

    Raises
    ------
    InputDataError
        If no block is given or a layer has no valid pixel in any block.
    """
    if len(blocks) == 0:
        raise InputDataError("cannot fit the normalisation: no training cell was given.")
    n_layers = blocks[0].shape[0]
    center, scale = np.empty(n_layers), np.empty(n_layers)
    for layer in range(n_layers):  # one layer at a time: memory of one layer's pixels
        flat = np.concatenate([np.asarray(b[layer], dtype=np.float32).reshape(-1)
                               for b in blocks])
        values = flat[np.isfinite(flat)].astype(np.float64)
        del flat
        if values.size == 0:
            raise InputDataError(
                f"cannot fit the normalisation: layer {layer} has no valid pixel in the "
                f"{len(blocks)} training cells; expected usable cells (see cell_coverage)."
            )
        q25, q50, q75 = np.percentile(values, [25.0, 50.0, 75.0])
        center[layer] = q50
        scale[layer] = q75 - q25 if q75 - q25 > 0 else 1.0
    return center, scale

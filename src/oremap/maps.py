"""Prospectivity maps: cell and sliding-window rasters, model uncertainty, map figures."""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import geopandas as gpd
import matplotlib
import numpy as np
import pandas as pd
from matplotlib import patheffects
from matplotlib.axes import Axes
from matplotlib.colors import Colormap, ListedColormap
from matplotlib.figure import Figure
from matplotlib.image import AxesImage
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar
from numpy.lib.stride_tricks import sliding_window_view
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)

from oremap import io
from oremap.errors import DroppedDataWarning, InputDataError
from oremap.evidence.stack import LazyStack
from oremap.grid import Grid
from oremap.targets import label_targets_on_axes, to_grid_crs

__all__ = [
    "PROSPECTIVITY_CMAP",
    "cell_grid",
    "cells_to_raster",
    "write_probability_map",
    "sliding_window_map",
    "uncertainty",
    "prospectivity_cmap",
    "srgb_to_lab",
    "lab_to_srgb",
    "plot_prospectivity",
    "plot_panels",
    "plot_uncertainty",
    "CellMaps",
    "write_cell_maps",
    "member_continuous_maps",
    "member_window_predictor",
    "window_tile",
    "window_tiles",
    "write_continuous_maps",
]

log = logging.getLogger("oremap.maps")

PredictFn = Callable[[np.ndarray], np.ndarray]

# ---------------------------------------------------------------------------------------------
# cell rasters
# ---------------------------------------------------------------------------------------------


def cell_grid(grid: Grid, cell_cols: int, cell_rows: int, *,
              cell_size_px: int | tuple[int, int] | None = None) -> Grid:
    """The grid whose pixels are the cells: one pixel per cell, same CRS and nodata.

    Parameters
    ----------
    grid : Grid
        The evidence grid the cells were cut from.
    cell_cols, cell_rows : int
        Number of cell columns and rows, >= 1.
    cell_size_px : int or (int, int) or None
        Cell width and height in evidence pixels. ``None`` (default): the cells tile the whole
        extent of ``grid`` evenly, so a cell is ``grid width / cell_cols`` wide. When given, the
        cells start at the upper-left corner of ``grid`` and may leave a strip of pixels on the
        right and bottom uncovered (incomplete edge cells dropped by the samples stage).

    Returns
    -------
    Grid
        ``cell_rows`` x ``cell_cols`` pixels; pixel (r, c) is cell (r, c), its centre the cell
        centre.

    Raises
    ------
    InputDataError
        If a count or size is < 1, or the cells given by ``cell_size_px`` overflow the grid.
    """
    if cell_cols < 1 or cell_rows < 1:
        raise InputDataError(
            f"cell_cols and cell_rows must be >= 1; got {cell_cols} x {cell_rows}. "
            "Pass the number of cell columns and rows of the samples stage."
        )
    xmin, _, xmax, ymax = grid.bounds
    if cell_size_px is None:
        dx = (xmax - xmin) / cell_cols
        dy = (ymax - grid.bounds[1]) / cell_rows
    else:
        cw, ch = ((cell_size_px, cell_size_px) if isinstance(cell_size_px, int)
                  else cell_size_px)
        if cw < 1 or ch < 1 or cw * cell_cols > grid.width or ch * cell_rows > grid.height:
            raise InputDataError(
                f"{cell_cols} x {cell_rows} cells of {cw} x {ch} px do not fit in the "
                f"{grid.width} x {grid.height} px grid; check cell_size_px and the cell counts."
            )
        dx, dy = cw * grid.pixel_size[0], ch * grid.pixel_size[1]
    bounds = (xmin, ymax - cell_rows * dy, xmin + cell_cols * dx, ymax)
    return Grid(grid.crs, bounds, (dx, dy), grid.nodata)


def cells_to_raster(rows: np.ndarray, cols: np.ndarray, values: np.ndarray,
                    cell_grid: Grid) -> np.ndarray:
    """Scatter per-cell values into a (cell_rows, cell_cols) raster; NaN where no value.

    Parameters
    ----------
    rows, cols : (n,) int arrays
        Cell row and column of each value, 0-based, row 0 at the top (north).
    values : (n,) float array
        One value per cell (e.g. P(ore)); cells not listed (dropped cells) stay NaN.
    cell_grid : Grid
        The grid from :func:`cell_grid`.

    Returns
    -------
    (cell_rows, cell_cols) float64 array

    Raises
    ------
    InputDataError
        If the lengths differ, indices are not integers, fall outside the grid, or repeat.
    """
    r, c = np.asarray(rows), np.asarray(cols)
    v = np.asarray(values, dtype=np.float64)
    if not (r.ndim == c.ndim == v.ndim == 1 and len(r) == len(c) == len(v)):
        raise InputDataError(
            f"rows, cols and values must be 1-D of one length; got shapes {r.shape}, {c.shape}, "
            f"{v.shape}. Pass one entry per cell."
        )
    if len(r) and not (np.issubdtype(r.dtype, np.integer) and np.issubdtype(c.dtype, np.integer)):
        raise InputDataError(f"rows and cols must be integer cell indices; got dtypes "
                             f"{r.dtype} and {c.dtype}.")
    out = np.full(cell_grid.shape, np.nan)
    h, w = cell_grid.shape
    outside = (r < 0) | (r >= h) | (c < 0) | (c >= w)
    if outside.any():
        raise InputDataError(
            f"{int(outside.sum())} cell indices fall outside the {h} x {w} cell grid (e.g. row "
            f"{int(r[outside][0])}, col {int(c[outside][0])}); the cells and the grid disagree."
        )
    flat = r.astype(np.int64) * w + c.astype(np.int64)
    if len(np.unique(flat)) != len(flat):
        raise InputDataError(f"{len(flat) - len(np.unique(flat))} cells are listed more than "
                             "once; give each cell one value (average folds first).")
    out.flat[flat] = v
    return out


def write_probability_map(path: str | os.PathLike, array: np.ndarray, grid: Grid, *,
                          band_name: str = "P(ore)", tags: Mapping[str, str] | None = None,
                          style: str = "probability") -> Path:
    """Write a (rows, cols) map as a Cloud-Optimized GeoTIFF with ``grid``'s CRS and
    transform, and its QGIS style beside it (``<name>.qml``, see :mod:`oremap.qgis`).

    NaN pixels are written as ``grid.nodata``. ``band_name`` is the band description GIS
    software shows (say what the values are: "P(ore) lenet", "ore vote share ..."), ``tags``
    dataset metadata (quantity, model or rule, threshold). ``style``: ``probability`` (also
    vote shares), ``std`` or ``entropy``. Returns the path.

    Raises
    ------
    InputDataError
        If ``array`` is not 2-D of shape ``grid.shape``.
    """
    arr = np.asarray(array)
    if arr.ndim != 2:
        raise InputDataError(f"probability map must be 2-D (rows, cols); got shape {arr.shape}.")
    from oremap.qgis import write_style

    out = io.write_raster(path, arr, grid, band_names=[band_name],
                          tags={k: str(v) for k, v in (tags or {}).items()}, cog=True)
    write_style(out, style)
    return out


def describe_map(name: str, *, continuous: bool = False) -> tuple[str, dict[str, str]]:
    """Band description and tags of the map of member or rule ``name``.

    Voting rules map the (weighted) share of ore votes, not a probability; the band says so.
    """
    from oremap.names import member_kind

    try:
        kind = member_kind(name)
    except KeyError:  # a map of something oremap does not register (Python API)
        kind = "member"
    voting = kind == "rule" and name.endswith("_voting")
    quantity = "ore vote share" if voting else "P(ore)"
    what = f"{quantity} {name} ({kind}{', sliding window' if continuous else ''})"
    return what, {"quantity": quantity, "kind": kind, "name": name,
                  "support": "sliding window" if continuous else "cell"}


# ---------------------------------------------------------------------------------------------
# sliding-window map
# ---------------------------------------------------------------------------------------------


def sliding_window_map(predict_fn: PredictFn, stack: np.ndarray | LazyStack, grid: Grid, *,
                       size: int = 32, stride: int = 8, batch: int = 256,
                       strip_rows: int | None = None, rows: tuple[int, int] | None = None,
                       progress: bool = True) -> tuple[np.ndarray, Grid]:
    """Map P(ore) by sliding a ``size`` px window at ``stride`` px over the evidence stack.

    Window (i, j) has its upper-left pixel at row ``i * stride``, column ``j * stride`` of the
    stack, for every window that fits wholly inside it. Its prediction becomes output pixel
    (i, j), a ``stride`` x ``stride`` px block centred on the window centre. The output grid
    thus has pixel size ``stride * grid.pixel_size`` and its upper-left corner at
    ``(xmin + (size - stride) / 2 * dx, ymax - (size - stride) / 2 * dy)``, so window centres
    are output pixel centres; a margin of ``(size - stride) / 2`` px (plus the remainder of
    ``(W - size) / stride``) along the edges has no value because no window is centred there.

    The stack is read in horizontal strips (``strip_rows`` output rows plus a halo of
    ``size - stride`` px), so memory is bounded by one strip even for a
    :class:`~oremap.evidence.LazyStack` larger than memory. Batches are the same as for the
    whole array (valid windows in raster order, ``batch`` at a time, across strips), so the
    result does not depend on ``strip_rows``.

    Parameters
    ----------
    predict_fn : callable
        Takes raw crops, a (k, C, size, size) float32 array with k <= ``batch``, and returns
        (k,) probabilities of ore (NumPy array or anything ``np.asarray`` accepts, e.g. a CPU
        tensor).
    stack : (C, H, W) float32 array or LazyStack
        Co-registered evidence layers on ``grid``; NaN marks nodata.
    grid : Grid
        Grid of the stack.
    size, stride : int
        Window side and step, in pixels, >= 1.
    batch : int
        Windows per ``predict_fn`` call, >= 1; memory use is ``batch * C * size**2`` floats.
    strip_rows : int or None
        Output rows (rows of windows) per strip, >= 1; None picks about 64 MiB of stack per
        strip.
    rows : (start, stop) or None
        Only output rows ``start`` to ``stop - 1`` (a tile of the map: the block of those rows
        is returned, on its own grid); batches start afresh at ``start``, so a map assembled
        from tiles does not depend on which process computed each (see
        :func:`window_tiles`). None: every row.
    progress : bool
        Show a rich progress bar.

    Returns
    -------
    probability : (n_rows, n_cols) float64 array
        NaN for windows touching a nodata pixel (counted in a ``DroppedDataWarning``).
    out_grid : Grid
        Grid of ``probability``, same CRS and nodata as ``grid``.

    Raises
    ------
    InputDataError
        If the stack is not (C, H, W) on ``grid``, a size is < 1, the window does not fit, or
        ``predict_fn`` returns the wrong number of values.
    """
    prob, out_grid, dropped = _sliding_window(predict_fn, stack, grid, size=size,
                                              stride=stride, batch=batch,
                                              strip_rows=strip_rows, rows=rows,
                                              progress=progress)
    if dropped:
        warnings.warn(f"sliding_window_map: {dropped} of {prob.size} windows touch nodata "
                      "pixels and are NaN in the map", DroppedDataWarning, stacklevel=2)
    return prob, out_grid


def window_tiles(grid: Grid, *, size: int, stride: int, block: int) -> list[tuple[int, int]]:
    """The tiles of a sliding-window map: ``(start, stop)`` output rows, ``block // stride``
    rows each (at least one), so that a tile reads about ``block`` rows of the stack."""
    n_rows = (grid.height - size) // stride + 1
    step = max(1, block // stride)
    return [(i, min(n_rows, i + step)) for i in range(0, max(n_rows, 0), step)]


def _sliding_window(predict_fn: PredictFn, stack: np.ndarray | LazyStack, grid: Grid, *,
                    size: int, stride: int, batch: int, strip_rows: int | None,
                    rows: tuple[int, int] | None, progress: bool
                    ) -> tuple[np.ndarray, Grid, int]:
    """:func:`sliding_window_map`, and the number of windows dropped for nodata (not
    warned)."""
    if not isinstance(stack, LazyStack):
        stack = np.asarray(stack)
    _check_window_args(stack, grid, size, stride, batch)
    if strip_rows is not None and (isinstance(strip_rows, bool) or strip_rows < 1):
        raise InputDataError(f"strip_rows must be >= 1 rows of windows, got {strip_rows!r}.")
    n_all = (grid.height - size) // stride + 1
    n_cols = (grid.width - size) // stride + 1
    first, stop = (0, n_all) if rows is None else (int(rows[0]), int(rows[1]))
    if not 0 <= first < stop <= n_all:
        raise InputDataError(f"rows must be (start, stop) with 0 <= start < stop <= {n_all} "
                             f"(the map's rows of windows); got {rows!r}.")
    n_rows = stop - first
    whole = _window_grid(grid, size, stride, n_all, n_cols)
    dx, dy = whole.pixel_size
    top = whole.bounds[3] - first * dy
    out_grid = Grid(whole.crs, (whole.bounds[0], top - n_rows * dy, whole.bounds[2], top),
                    whole.pixel_size, whole.nodata)
    if strip_rows is None:
        row_bytes = max(1, 4 * stack.shape[0] * grid.width * stride)
        strip_rows = max(1, _STRIP_BYTES // row_bytes)
    prob = np.full((n_rows, n_cols), np.nan)
    pending: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (crops, rows, cols)
    n_pending = n_valid = 0
    columns = [TextColumn("sliding-window map"), BarColumn(), MofNCompleteColumn(),
               TimeRemainingColumn()]
    with Progress(*columns, disable=not progress, transient=True) as bar:
        task = bar.add_task("windows", total=n_rows * n_cols)
        for i0 in range(first, stop, strip_rows):
            i1 = min(stop, i0 + strip_rows)
            strip = stack[:, i0 * stride:(i1 - 1) * stride + size, :]
            ok = _complete_windows(np.isfinite(strip).all(axis=0), size, stride, i1 - i0,
                                   n_cols)
            rr, cc = np.nonzero(ok)
            n_valid += len(rr)
            bar.advance(task, (i1 - i0) * n_cols - len(rr))
            views = sliding_window_view(strip, (size, size), axis=(1, 2))[:, ::stride, ::stride]
            start = 0
            while start < len(rr):
                take = min(batch - n_pending, len(rr) - start)
                r, c = rr[start:start + take], cc[start:start + take]
                crops = np.ascontiguousarray(np.moveaxis(views[:, r, c], 0, 1),
                                             dtype=np.float32)
                pending.append((crops, r + i0 - first, c))
                n_pending += take
                start += take
                if n_pending == batch:
                    _predict_batch(predict_fn, pending, prob)
                    bar.advance(task, n_pending)
                    pending, n_pending = [], 0
            del strip, views
        if pending:
            _predict_batch(predict_fn, pending, prob)
            bar.advance(task, n_pending)
    return prob, out_grid, n_rows * n_cols - n_valid


#: Stack bytes per strip of :func:`sliding_window_map` when ``strip_rows`` is None.
_STRIP_BYTES = 64 * 1024**2


def _predict_batch(predict_fn: PredictFn,
                   pending: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
                   prob: np.ndarray) -> None:
    """Predict the pending crops as one batch and write them into ``prob``."""
    crops = pending[0][0] if len(pending) == 1 else np.concatenate([p[0] for p in pending])
    r = np.concatenate([p[1] for p in pending])
    c = np.concatenate([p[2] for p in pending])
    p = np.asarray(predict_fn(crops), dtype=np.float64).reshape(-1)
    if p.shape != (len(r),):
        raise InputDataError(
            f"predict_fn returned {p.size} values for {len(r)} crops; it must return "
            "one probability per crop, shape (k,)."
        )
    prob[r, c] = p


def _check_window_args(stack: np.ndarray, grid: Grid, size: int, stride: int,
                       batch: int) -> None:
    if stack.ndim != 3 or stack.shape[1:] != grid.shape:
        raise InputDataError(
            f"stack must be (C, H, W) with (H, W) = grid shape {grid.shape}; got {stack.shape}."
        )
    if size < 1 or stride < 1 or batch < 1:
        raise InputDataError(f"size, stride and batch must be >= 1; got {size}, {stride}, "
                             f"{batch}.")
    if size > grid.height or size > grid.width:
        raise InputDataError(f"window of {size} px does not fit in the {grid.height} x "
                             f"{grid.width} px stack; use a smaller size.")


def _window_grid(grid: Grid, size: int, stride: int, n_rows: int, n_cols: int) -> Grid:
    dx, dy = grid.pixel_size
    margin = (size - stride) / 2.0
    xmin = grid.bounds[0] + margin * dx
    ymax = grid.bounds[3] - margin * dy
    return Grid(grid.crs, (xmin, ymax - n_rows * stride * dy, xmin + n_cols * stride * dx, ymax),
                (stride * dx, stride * dy), grid.nodata)


def _complete_windows(valid: np.ndarray, size: int, stride: int, n_rows: int,
                      n_cols: int) -> np.ndarray:
    """(n_rows, n_cols) bool: window has no invalid pixel (summed-area table, O(H W))."""
    sat = np.zeros((valid.shape[0] + 1, valid.shape[1] + 1), dtype=np.int64)
    sat[1:, 1:] = np.cumsum(np.cumsum(~valid, axis=0), axis=1)
    r0 = np.arange(n_rows)[:, None] * stride
    c0 = np.arange(n_cols)[None, :] * stride
    bad = sat[r0 + size, c0 + size] - sat[r0, c0 + size] - sat[r0 + size, c0] + sat[r0, c0]
    return bad == 0


# ---------------------------------------------------------------------------------------------
# uncertainty
# ---------------------------------------------------------------------------------------------


def uncertainty(probs: np.ndarray, *, threshold: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Disagreement between models: std of P(ore) and entropy of the ore/barren vote.

    Parameters
    ----------
    probs : (n_models, n_cells) array
        P(ore) of each model for each cell (cells may be the pixels of a raster, flattened).
    threshold : float
        A model votes ore for a cell where its P(ore) >= ``threshold`` (as in
        :func:`oremap.evaluate.classification_report`).

    Returns
    -------
    std : (n_cells,) float64 array
        Sample standard deviation (``ddof=1``) of the models' probabilities when
        ``n_models > 1``; 0 for a single model.
    vote_entropy : (n_cells,) float64 array
        ``-s log2 s - (1 - s) log2 (1 - s)`` with ``s`` the share of ore votes, in [0, 1]
        bits: 0 when all models agree, 1 when they split evenly.

    Both are NaN for a cell where any model's probability is NaN (dropped cell).

    Raises
    ------
    InputDataError
        If ``probs`` is not 2-D with at least one model, or ``threshold`` is outside [0, 1].
    """
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] < 1:
        raise InputDataError(f"probs must be (n_models, n_cells) with n_models >= 1; got shape "
                             f"{p.shape}. Stack the models' probabilities with np.stack.")
    if not 0.0 <= threshold <= 1.0:
        raise InputDataError(f"threshold must lie in [0, 1]; got {threshold}.")
    bad = ~np.isfinite(p).all(axis=0)
    std = p.std(axis=0, ddof=1) if p.shape[0] > 1 else np.zeros(p.shape[1])
    share = (p >= threshold).mean(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = -(share * np.log2(share) + (1 - share) * np.log2(1 - share))
    entropy = np.where((share == 0) | (share == 1), 0.0, terms)
    std[bad] = np.nan
    entropy[bad] = np.nan
    return std, entropy


# ---------------------------------------------------------------------------------------------
# colour map
# ---------------------------------------------------------------------------------------------

_WHITE_D65 = np.array([0.95047, 1.0, 1.08883])
_XYZ_TO_RGB = np.array([[3.2404542, -1.5371385, -0.4985314],
                        [-0.9692660, 1.8760108, 0.0415560],
                        [0.0556434, -0.2040259, 1.0572252]])
_RGB_TO_XYZ = np.linalg.inv(_XYZ_TO_RGB)
_DELTA = 6.0 / 29.0

#: CIELAB control points (L*, a*, b*) of the prospectivity colour map: dark blue, teal,
#: green, ochre, orange-red. Lightness rises strictly from 30 to 61.
_CONTROL_LAB = np.array([(30.0, 25.0, -55.0), (41.0, -22.0, -18.0), (51.0, -48.0, 32.0),
                         (57.0, 18.0, 60.0), (61.0, 60.0, 58.0)])


def lab_to_srgb(lab: np.ndarray) -> np.ndarray:
    """CIELAB (D65) to sRGB, (n, 3) -> (n, 3) in [0, 1]; out-of-gamut values are NOT clipped."""
    lab = np.atleast_2d(np.asarray(lab, dtype=np.float64))
    fy = (lab[:, 0] + 16.0) / 116.0
    f = np.stack([fy + lab[:, 1] / 500.0, fy, fy - lab[:, 2] / 200.0], axis=1)
    xyz = np.where(f > _DELTA, f**3, 3 * _DELTA**2 * (f - 4.0 / 29.0)) * _WHITE_D65
    lin = xyz @ _XYZ_TO_RGB.T
    mag = np.abs(lin)
    enc = np.where(mag <= 0.0031308, 12.92 * mag, 1.055 * mag ** (1 / 2.4) - 0.055)
    return np.sign(lin) * enc


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB in [0, 1] to CIELAB (D65), (n, 3) -> (n, 3)."""
    c = np.atleast_2d(np.asarray(rgb, dtype=np.float64))
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = lin @ _RGB_TO_XYZ.T / _WHITE_D65
    f = np.where(xyz > _DELTA**3, np.cbrt(xyz), xyz / (3 * _DELTA**2) + 4.0 / 29.0)
    return np.stack([116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])],
                    axis=1)


def _into_gamut(lab: np.ndarray) -> np.ndarray:
    """Shrink each colour's chroma (keeping L* and hue) until it lies inside sRGB."""
    lo, hi = np.zeros(len(lab)), np.ones(len(lab))
    for _ in range(30):  # bisection on the chroma scale
        mid = (lo + hi) / 2
        rgb = lab_to_srgb(np.column_stack([lab[:, 0], lab[:, 1:] * mid[:, None]]))
        inside = ((rgb >= 0) & (rgb <= 1)).all(axis=1)
        lo, hi = np.where(inside, mid, lo), np.where(inside, hi, mid)
    rgb = lab_to_srgb(lab)
    scale = np.where(((rgb >= 0) & (rgb <= 1)).all(axis=1), 1.0, lo)
    return np.column_stack([lab[:, 0], lab[:, 1:] * scale[:, None]])


def prospectivity_cmap(n: int = 256) -> ListedColormap:
    """Blue (low) - green (medium) - red (high) colour map with monotone lightness.

    He et al. (2024, Figs. 14-16) map low potential blue, medium green and high red, like the
    rainbow/"jet"/"turbo" maps, whose lightness rises and falls and so invents bands and hides
    gradients. This map keeps their hue order but is built in CIELAB: the path runs through
    dark blue, teal, green, ochre and orange-red with lightness L* rising strictly from 30 to
    61, so the map reads correctly in greyscale and the highest values are also the lightest;
    out-of-gamut colours have their chroma reduced at constant L* and hue; the path is then
    resampled so that consecutive colours are equally far apart in CIELAB (constant perceptual
    speed, no flat or jumpy stretches). Red-green colour-blind readers still see the ordering
    through lightness. ``RdYlBu_r`` was rejected because its lightness peaks at the middle
    (yellow), which makes medium values pop out, and it has no green.
    """
    s = np.linspace(0.0, 1.0, 2048)
    t = np.linspace(0.0, 1.0, len(_CONTROL_LAB))
    lab = _into_gamut(np.column_stack([np.interp(s, t, _CONTROL_LAB[:, k]) for k in range(3)]))
    rgb = np.clip(lab_to_srgb(lab), 0.0, 1.0)
    lab = srgb_to_lab(rgb)
    arc = np.r_[0.0, np.cumsum(np.linalg.norm(np.diff(lab, axis=0), axis=1))]
    u = np.linspace(0.0, arc[-1], n)
    even = np.column_stack([np.interp(u, arc, lab[:, k]) for k in range(3)])
    cmap = ListedColormap(np.clip(lab_to_srgb(even), 0.0, 1.0), name="oremap_prospectivity")
    return cmap.with_extremes(bad=(0.85, 0.85, 0.85, 1.0))


PROSPECTIVITY_CMAP: ListedColormap = prospectivity_cmap()


# ---------------------------------------------------------------------------------------------
# map figures
# ---------------------------------------------------------------------------------------------

_UNIT_ABBREV = {"metre": "m", "meter": "m", "kilometre": "km", "degree": "°", "foot": "ft",
                "US survey foot": "ftUS"}


def _axis_labels(grid: Grid) -> tuple[str, str]:
    """("Easting (m)", "Northing (m)") or the CRS's own axis names and units."""
    x_label, y_label = "x", "y"
    for axis in grid.crs.axis_info:
        unit = _UNIT_ABBREV.get(axis.unit_name, axis.unit_name)
        label = f"{axis.name} ({unit})"
        if axis.direction.lower() in ("east", "west"):
            x_label = label
        elif axis.direction.lower() in ("north", "south"):
            y_label = label
    return x_label, y_label


def _nice_length(span: float) -> float:
    """A 1, 2 or 5 x 10^k length close to a fifth of ``span``."""
    target = span / 5.0
    k = np.floor(np.log10(target))
    for m in (5.0, 2.0, 1.0):
        if m * 10**k <= target:
            return float(m * 10**k)
    return float(10**k)


def _add_scale_bar(ax: Axes, grid: Grid) -> None:
    """Scale bar in map units (projected CRSs only: a degree is no fixed length)."""
    if not grid.crs.is_projected:
        return
    unit = grid.crs.axis_info[0].unit_name
    length = _nice_length(grid.bounds[2] - grid.bounds[0])
    if unit in ("metre", "meter") and length >= 1000:
        label = f"{length / 1000:g} km"
    else:
        label = f"{length:g} {_UNIT_ABBREV.get(unit, unit)}"
    bar = AnchoredSizeBar(ax.transData, length, label, loc="lower left", pad=0.4,
                          borderpad=0.5, sep=3, frameon=True, size_vertical=0,
                          fontproperties={"size": 8})
    bar.patch.set_alpha(0.8)
    ax.add_artist(bar)


def _add_north_arrow(ax: Axes) -> None:
    """Grid-north arrow (the grid is north-up) in the upper-right corner."""
    text = ax.annotate("N", xy=(0.95, 0.97), xytext=(0, -32), xycoords="axes fraction",
                       textcoords="offset points", ha="center", va="center", fontsize=10,
                       fontweight="bold", gid=_NORTH_GID,
                       arrowprops={"facecolor": "black", "edgecolor": "white", "width": 3,
                                   "headwidth": 9, "headlength": 8})
    text.set_path_effects([patheffects.withStroke(linewidth=2.5, foreground="white")])


_NORTH_GID = "oremap-north-arrow"
#: Offsets (in label heights) tried, in order, for a label that would cover something.
_LABEL_OFFSETS = [(0, 0), (0, 1.4), (0, -1.4), (1.6, 0), (-1.6, 0), (1.5, 1.3), (-1.5, 1.3),
                  (1.5, -1.3), (-1.5, -1.3), (0, 2.6), (0, -2.6), (2.9, 0), (-2.9, 0),
                  (2.6, 2.4), (-2.6, 2.4), (2.6, -2.4), (-2.6, -2.4), (0, 3.8), (0, -3.8)]


def place_labels(fig: Figure) -> int:
    """Move target labels so that none covers another label, the north arrow or the scale
    bar (a leader line joins a moved label to its target); returns how many still overlap.

    Runs after the layout is fixed; candidate positions are tried in :data:`_LABEL_OFFSETS`
    order, the best-ranked labels first.
    """
    from matplotlib.offsetbox import AnchoredOffsetbox

    from oremap.targets import TARGET_LABEL_GID

    fig.draw_without_rendering()
    renderer = fig._get_renderer()  # noqa: SLF001 - the layout's renderer, for text extents
    left = 0
    for ax in fig.axes:
        labels = [t for t in ax.texts if t.get_gid() == TARGET_LABEL_GID]
        if not labels:
            continue
        frame = ax.get_window_extent(renderer)
        taken = [t.get_window_extent(renderer).expanded(1.15, 1.3)
                 for t in ax.texts if t.get_gid() == _NORTH_GID]
        taken += [a.get_window_extent(renderer) for a in ax.artists
                  if isinstance(a, AnchoredOffsetbox)]
        for label in labels:
            height = label.get_fontsize() * 1.5
            best = None
            for dx, dy in _LABEL_OFFSETS:
                label.set_position((dx * height, dy * height))
                box = _text_box(label, renderer)
                inside = (box.x0 >= frame.x0 and box.x1 <= frame.x1 and box.y0 >= frame.y0
                          and box.y1 <= frame.y1)
                if inside and not any(box.overlaps(t) for t in taken):
                    best = box
                    break
            if best is None:
                label.set_position((0, 0))
                best = _text_box(label, renderer)
                left += 1
            taken.append(best)
    return left


def _text_box(label: Any, renderer: Any) -> Any:
    """Window extent of an annotation's text and its box, without its leader line."""
    from matplotlib.text import Text

    label.update_positions(renderer)
    return Text.get_window_extent(label, renderer).expanded(1.3, 1.4)


def _check_map(array: np.ndarray, grid: Grid, what: str) -> np.ndarray:
    arr = np.asarray(array, dtype=np.float64)
    if arr.shape != grid.shape:
        raise InputDataError(f"{what} has shape {arr.shape} but the grid is {grid.shape}; "
                             "pass the map's own grid (e.g. from cell_grid).")
    return arr


def _draw_map(ax: Axes, arr: np.ndarray, grid: Grid, cmap: Colormap, vmin: float,
              vmax: float, title: str, orebodies: gpd.GeoDataFrame | None,
              cells: gpd.GeoDataFrame | None,
              targets: gpd.GeoDataFrame | None) -> tuple[AxesImage, list]:
    """Draw one map panel; return the image and legend handles for what was overlaid."""
    xmin, ymin, xmax, ymax = grid.bounds
    image = ax.imshow(arr, cmap=cmap, vmin=vmin, vmax=vmax, extent=(xmin, xmax, ymin, ymax),
                      origin="upper", interpolation="nearest")
    handles: list = []
    if np.isnan(arr).any():
        handles.append(Patch(facecolor=cmap.get_bad(), edgecolor="0.5", label="no data"))
    if cells is not None and len(cells):
        to_grid_crs(cells, grid, "cells").boundary.plot(ax=ax, color="0.25", linewidth=0.3)
        handles.append(Line2D([], [], color="0.25", linewidth=0.6, label="cells"))
    if targets is not None and len(targets):
        label_targets_on_axes(ax, to_grid_crs(targets, grid, "targets"))
        handles.append(Line2D([], [], color="black", linewidth=1.2, linestyle="--",
                              label="target area"))
    if orebodies is not None and len(orebodies):
        handles.extend(_draw_orebodies(ax, to_grid_crs(orebodies, grid, "orebodies")))
    ax.set_xlim(xmin, xmax)
    ax.set_ylim(ymin, ymax)
    ax.set_aspect("equal")
    ax.ticklabel_format(useOffset=False, style="plain")
    ax.tick_params(labelsize=7)
    x_label, y_label = _axis_labels(grid)
    ax.set_xlabel(x_label, fontsize=8)
    ax.set_ylabel(y_label, fontsize=8)
    ax.set_title(title, fontsize=10)
    _add_scale_bar(ax, grid)
    _add_north_arrow(ax)
    return image, handles


_OVERLAY_COLOURS = ("0.1", "#6a3d9a", "#b15928", "#1f78b4", "#e31a1c", "#33a02c")


def _draw_overlays(ax: Axes, grid: Grid, overlays: Mapping[str, gpd.GeoDataFrame]) -> list:
    """Input geology over the map; one legend handle per layer."""
    handles: list = []
    for (name, gdf), colour in zip(overlays.items(), _OVERLAY_COLOURS * 10, strict=False):
        if gdf is None or not len(gdf):
            continue
        gdf = to_grid_crs(gdf, grid, name)
        kinds = set(gdf.geom_type)
        if kinds <= {"Point", "MultiPoint"}:
            gdf.plot(ax=ax, marker="o", color="white", edgecolor=colour, markersize=14,
                     linewidth=0.8, zorder=4)
            handles.append(Line2D([], [], marker="o", color=colour, markerfacecolor="white",
                                  linestyle="none", label=name))
        else:
            lines = gdf.boundary if kinds <= {"Polygon", "MultiPolygon"} else gdf
            lines.plot(ax=ax, color=colour, linewidth=0.5, alpha=0.8, zorder=3)
            handles.append(Line2D([], [], color=colour, linewidth=0.8, label=name))
    return handles


def _draw_orebodies(ax: Axes, orebodies: gpd.GeoDataFrame) -> list:
    kinds = orebodies.geom_type
    points = orebodies[kinds.isin(["Point", "MultiPoint"])]
    others = orebodies[~kinds.isin(["Point", "MultiPoint"])]
    if len(points):
        points.plot(ax=ax, marker="*", color="white", edgecolor="black", markersize=90,
                    linewidth=0.8, zorder=5)
    if len(others):
        others.boundary.plot(ax=ax, color="black", linewidth=1.2, zorder=5)
        others.boundary.plot(ax=ax, color="white", linewidth=0.5, zorder=6)
    handles = []  # legend symbols as drawn: stars for points, white-on-black outlines else
    if len(points):
        handles.append(Line2D([], [], marker="*", color="black", markerfacecolor="white",
                              markersize=10, linestyle="none",
                              label="known orebody" if not len(others) else
                              "known orebody (point)"))
    if len(others):
        handles.append(Line2D([], [], color="black", linewidth=2.4,
                              path_effects=[patheffects.Stroke(linewidth=2.4,
                                                               foreground="black"),
                                            patheffects.Stroke(linewidth=1.0,
                                                               foreground="white")],
                              label="known orebody" if not len(points) else
                              "known orebody (outline)"))
    return handles


def _map_figure(arrays: Mapping[str, np.ndarray], grid: Grid, path: str | os.PathLike, *,
                title: str, orebodies: gpd.GeoDataFrame | None, cells: gpd.GeoDataFrame | None,
                targets: gpd.GeoDataFrame | None, vmin: float, vmax: float, legend_label: str,
                cmap: Colormap, ncols: int, panel: float = 4.6,
                overlays: Mapping[str, gpd.GeoDataFrame] | None = None) -> Path:
    names = list(arrays)
    ncols = max(1, min(ncols, len(names)))
    nrows = -(-len(names) // ncols)
    aspect = min(max(grid.height / grid.width, 0.3), 2.0)  # keep figures printable
    fig = Figure(figsize=(panel * ncols + 1.2, max(3.0, panel * aspect) * nrows + 0.8),
                 layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax, name in zip(axes.flat, names, strict=False):
        arr = _check_map(arrays[name], grid, f"map {name!r}")
        panel_title = name if len(names) > 1 else title
        image, handles = _draw_map(ax, arr, grid, cmap, vmin, vmax, panel_title, orebodies,
                                   cells, targets)
        handles += _draw_overlays(ax, grid, overlays or {})
    for ax in list(axes.flat)[len(names):]:
        ax.set_visible(False)
    bar = fig.colorbar(image, ax=list(axes.flat), shrink=0.8)
    bar.set_label(legend_label)
    if len(names) > 1:
        fig.suptitle(title)
    _add_legend(fig, handles)
    if targets is not None and len(targets):
        place_labels(fig)
    return io.save_figure(fig, path)


def _add_legend(fig: Figure, handles: list) -> None:
    if handles:
        fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=8,
                   frameon=False)


def plot_prospectivity(array: np.ndarray, grid: Grid, path: str | os.PathLike, *, title: str,
                       orebodies: gpd.GeoDataFrame | None = None,
                       cells: gpd.GeoDataFrame | None = None,
                       targets: gpd.GeoDataFrame | None = None, vmin: float = 0.0,
                       vmax: float = 1.0, legend_label: str = "P(ore)",
                       cmap: Colormap | str | None = None,
                       overlays: Mapping[str, gpd.GeoDataFrame] | None = None) -> Path:
    """Draw a prospectivity map (low blue, medium green, high red) and save it, 1,200 px wide.

    Parameters
    ----------
    array : (rows, cols) array on ``grid``
        P(ore) or another score; NaN pixels are drawn light grey ("no data").
    grid : Grid
        Grid of ``array`` (e.g. from :func:`cell_grid` or :func:`sliding_window_map`).
    path : path
        Output image (PNG by extension), written atomically.
    title : str
    orebodies : GeoDataFrame or None
        Known orebodies: points as white stars, polygons as outlines.
    cells : GeoDataFrame or None
        Cell polygons drawn as a thin grey grid.
    targets : GeoDataFrame or None
        Target areas from :func:`oremap.targets.target_areas`: dashed outlines labelled with
        their ``rank`` (I, II, ...).
    vmin, vmax : float
        Colour scale limits.
    legend_label : str
        Colour bar label.
    cmap : Colormap, name or None
        Default :data:`PROSPECTIVITY_CMAP` (see :func:`prospectivity_cmap` for why).
    overlays : mapping of name -> GeoDataFrame, or None
        Input geology drawn over the map (faults and shear zones as thin dark lines, polygons
        as outlines, points such as drill holes as small circles), each named in the legend.

    The figure has a colour bar, a legend of the overlays, a scale bar (projected CRSs), a
    grid-north arrow and map coordinates with the CRS's axis names and units; target labels
    never cover each other, the arrow or the scale bar. Vector layers in another CRS are
    reprojected to the grid's CRS.

    Raises
    ------
    InputDataError
        If ``array`` does not match ``grid``.
    CRSMismatchError
        If an overlay has no CRS.
    """
    return _map_figure({title: array}, grid, path, title=title, orebodies=orebodies,
                       cells=cells, targets=targets, vmin=vmin, vmax=vmax,
                       legend_label=legend_label, cmap=_cmap(cmap), ncols=1, panel=8.8,
                       overlays=overlays)


def plot_panels(arrays: Mapping[str, np.ndarray], grid: Grid, path: str | os.PathLike, *,
                title: str = "Prospectivity by model", orebodies: gpd.GeoDataFrame | None = None,
                cells: gpd.GeoDataFrame | None = None, targets: gpd.GeoDataFrame | None = None,
                vmin: float = 0.0, vmax: float = 1.0, legend_label: str = "P(ore)",
                cmap: Colormap | str | None = None, ncols: int = 3) -> Path:
    """One map panel per entry of ``arrays`` (model name -> (rows, cols) map) in one figure.

    Panels share the colour scale and colour bar; other arguments as for
    :func:`plot_prospectivity`; ``ncols`` panels per row.

    Raises
    ------
    InputDataError
        If ``arrays`` is empty or a map does not match ``grid``.
    """
    if not arrays:
        raise InputDataError("plot_panels needs at least one map; got an empty mapping.")
    return _map_figure(dict(arrays), grid, path, title=title, orebodies=orebodies, cells=cells,
                       targets=targets, vmin=vmin, vmax=vmax, legend_label=legend_label,
                       cmap=_cmap(cmap), ncols=ncols)


def plot_uncertainty(std: np.ndarray, entropy: np.ndarray, grid: Grid,
                     path: str | os.PathLike, *, title: str = "Model disagreement",
                     orebodies: gpd.GeoDataFrame | None = None,
                     cells: gpd.GeoDataFrame | None = None,
                     targets: gpd.GeoDataFrame | None = None) -> Path:
    """Two panels: std of P(ore) across models and vote entropy (bits), both (rows, cols).

    Both use matplotlib's perceptually uniform sequential "magma" (dark = agreement); the std
    scale runs from 0 to its largest value (at least 0.05), the entropy scale from 0 to 1 bit.

    Raises
    ------
    InputDataError
        If either array does not match ``grid``.
    """
    s = _check_map(std, grid, "std")
    e = _check_map(entropy, grid, "entropy")
    cmap = matplotlib.colormaps["magma"].with_extremes(bad=(0.85, 0.85, 0.85, 1.0))
    s_max = max(float(np.nanmax(s)) if np.isfinite(s).any() else 0.0, 0.05)
    aspect = min(max(grid.height / grid.width, 0.3), 2.0)  # keep figures printable
    fig = Figure(figsize=(11.0, max(3.0, 4.6 * aspect) + 0.8), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, arr, name, top, label in ((axes[0], s, "Std of P(ore)", s_max, "std"),
                                      (axes[1], e, "Vote entropy", 1.0, "entropy (bits)")):
        image, handles = _draw_map(ax, arr, grid, cmap, 0.0, top, name, orebodies, cells,
                                   targets)
        fig.colorbar(image, ax=ax, shrink=0.8).set_label(label)
    fig.suptitle(title)
    _add_legend(fig, handles)
    return io.save_figure(fig, path)


def _cmap(cmap: Colormap | str | None) -> Colormap:
    if cmap is None:
        return PROSPECTIVITY_CMAP
    if isinstance(cmap, str):
        return matplotlib.colormaps.get_cmap(cmap)  # ValueError for unknown names, as before
    return cmap


# ---------------------------------------------------------------------------------------------
# the maps stage: cell maps of members and rules, continuous maps
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CellMaps:
    """Cell-level rasters of every member and rule, and the members' disagreement."""

    grid: Grid
    rasters: dict[str, np.ndarray]
    std: np.ndarray
    entropy: np.ndarray


def write_cell_maps(table: pd.DataFrame, cells: gpd.GeoDataFrame, grid: Grid,
                    members: Sequence[str], rules: Sequence[str], out: Path, *,
                    threshold: float, orebodies: gpd.GeoDataFrame | None = None,
                    run_tags: Mapping[str, str] | None = None) -> CellMaps:
    """Write ``prob_<member|rule>.tif``, ``uncertainty_{std,entropy}.tif`` and their figures.

    ``run_tags`` (e.g. the run's name and oremap's version) are added to every map's tags.

    ``table`` has one row per usable cell with ``row``, ``col``, ``p_<member>`` and
    ``ens_<rule>`` columns (``ensemble/ensemble.csv``); ``cells`` are all cells of the study
    area (their count fixes the cell grid).
    """
    n_rows, n_cols = int(cells["row"].max()) + 1, int(cells["col"].max()) + 1
    cgrid = cell_grid(grid, n_cols, n_rows)
    r, c = table["row"].to_numpy(), table["col"].to_numpy()
    rasters = {m: cells_to_raster(r, c, table[f"p_{m}"].to_numpy(), cgrid) for m in members}
    rasters.update({x: cells_to_raster(r, c, table[f"ens_{x}"].to_numpy(), cgrid) for x in rules})
    for name, arr in rasters.items():
        band, tags = describe_map(name)
        write_probability_map(out / f"prob_{name}.tif", arr, cgrid, band_name=band,
                              tags={**tags, "threshold": threshold, **(run_tags or {})})
    usable = cells.loc[cells["usable"].astype(bool)]
    plot_panels({m: rasters[m] for m in members}, cgrid, out / "maps_models.png",
                title="Members: P(ore) of each network and baseline (cell maps)",
                orebodies=orebodies, cells=usable)
    plot_panels({x: rasters[x] for x in rules}, cgrid, out / "maps_rules.png",
                title="Ensemble rules: P(ore), or ore vote share for the voting rules "
                      "(cell maps)", legend_label="P(ore) or vote share",
                orebodies=orebodies, cells=usable)
    probs = np.vstack([table[f"p_{m}"].to_numpy() for m in members])
    std, entropy = uncertainty(probs, threshold=threshold)
    std_r, ent_r = cells_to_raster(r, c, std, cgrid), cells_to_raster(r, c, entropy, cgrid)
    members_tag = {"members": ",".join(members), **(run_tags or {})}
    write_probability_map(out / "uncertainty_std.tif", std_r, cgrid,
                          band_name="std of P(ore) across members",
                          tags={"quantity": "probability std", **members_tag}, style="std")
    write_probability_map(out / "uncertainty_entropy.tif", ent_r, cgrid,
                          band_name="vote entropy (bits) across members",
                          tags={"quantity": "vote entropy", "units": "bits",
                                "threshold": threshold, **members_tag}, style="entropy")
    plot_uncertainty(std_r, ent_r, cgrid, out / "uncertainty.png", orebodies=orebodies,
                     cells=usable)
    return CellMaps(cgrid, rasters, std_r, ent_r)


def member_continuous_maps(members: Sequence[str], stack: np.ndarray | LazyStack | None,
                           grid: Grid,
                           sample_set: Any, train_dir: Path, *, size: int, stride: int,
                           block: int = 2048, progress: bool = True, tasks: Any = None
                           ) -> dict[str, tuple[np.ndarray, Grid]]:
    """Sliding-window P(ore) maps of every member: the mean over its fold models.

    Each fold's model sees windows normalised with that fold's scaling. Each (member, fold)
    map is computed tile by tile (:func:`window_tiles` of ``block`` stack rows); the tiles
    run side by side (:func:`oremap.compute.thread_map`) on an array. ``tasks``: a function
    mapping the (member, fold, tile) units to their ``(block of the map, windows dropped)``
    (each a Dask task, see :func:`oremap.pipeline.run_maps`; ``stack`` is then not read and
    may be None). The tiles are assembled and the folds summed in the same order either way,
    so the maps are the same. Windows touching nodata are counted in one
    ``DroppedDataWarning``.
    """
    from tqdm.auto import tqdm

    from oremap.compute import thread_map
    from oremap.names import member_cost

    tiles = window_tiles(grid, size=size, stride=stride, block=block)
    units = [(name, fold, tile) for name in members for fold in range(sample_set.n_folds)
             for tile in tiles]
    if tasks is not None:
        done = dict(zip(units, tasks(units)))
    else:
        # side by side on an array; a LazyStack reads through one cache: one after the other
        workers = 1 if isinstance(stack, LazyStack) else None
        loaded = _Members(sample_set, train_dir)
        with tqdm(total=len(units), desc="sliding-window maps", unit="tile",
                  disable=not progress) as bar:
            def one(unit: tuple[str, int, tuple[int, int]]) -> tuple[np.ndarray, int]:
                name, fold, tile = unit
                out = window_tile(loaded.predict(name, fold), stack, grid, size=size,
                                  stride=stride, rows=tile)
                bar.update()
                return out

            done = dict(zip(units, thread_map(one, units, workers=workers,
                                              costs=[member_cost(u[0]) for u in units])))
    n_rows = (grid.height - size) // stride + 1
    n_cols = (grid.width - size) // stride + 1
    out_grid = _window_grid(grid, size, stride, n_rows, n_cols)
    out: dict[str, tuple[np.ndarray, Grid]] = {}
    for name in members:
        acc = None
        for fold in range(sample_set.n_folds):
            arr = np.concatenate([done[(name, fold, tile)][0] for tile in tiles])
            acc = arr if acc is None else acc + arr
        out[name] = (acc / sample_set.n_folds, out_grid)
    if members:
        dropped = sum(done[(members[0], 0, tile)][1] for tile in tiles)
        if dropped:
            warnings.warn(f"sliding-window maps: {dropped} of {n_rows * n_cols} windows touch "
                          "nodata pixels and are NaN in every map", DroppedDataWarning,
                          stacklevel=2)
    return out


class _Members:
    """The fold models of a sample set, each loaded once (thread-safe), as functions of raw
    crops normalised with their fold's scaling."""

    def __init__(self, sample_set: Any, train_dir: Path):
        import threading

        self.ss, self.train_dir = sample_set, Path(train_dir)
        self.fns: dict[tuple[str, int], PredictFn] = {}
        self.lock = threading.Lock()

    def predict(self, name: str, fold: int) -> PredictFn:
        with self.lock:
            if (name, fold) not in self.fns:
                self.fns[(name, fold)] = member_window_predictor(name, fold, self.ss,
                                                                 self.train_dir)
            return self.fns[(name, fold)]


def member_window_predictor(name: str, fold: int, sample_set: Any,
                            train_dir: Path) -> PredictFn:
    """P(ore) of raw crops from one member's fold model, normalised with that fold's
    scaling."""
    from oremap.members import load_member

    fn = load_member(name, Path(train_dir) / f"fold{fold}")

    def predict(x: np.ndarray) -> np.ndarray:
        return fn(sample_set.normalise(x, fold))

    return predict


def window_tile(predict: PredictFn, stack: np.ndarray | LazyStack, grid: Grid, *, size: int,
                stride: int, rows: tuple[int, int]) -> tuple[np.ndarray, int]:
    """One tile (rows of windows ``rows``) of a sliding-window map, and the number of its
    windows that touch nodata."""
    prob, _, dropped = _sliding_window(predict, stack, grid, size=size, stride=stride,
                                       batch=256, strip_rows=None, rows=rows, progress=False)
    return prob, dropped


def write_continuous_maps(maps: Mapping[str, tuple[np.ndarray, Grid]],
                          ensemble_members: Sequence[str], weights: np.ndarray,
                          out: Path) -> tuple[np.ndarray, Grid, np.ndarray | None]:
    """Write ``prob_<member>_continuous.tif`` and the weighted ensemble map.

    Returns the ensemble map, its grid and the members' std (None for a single member).
    """
    for name, (arr, g2) in maps.items():
        band, tags = describe_map(name, continuous=True)
        write_probability_map(out / f"prob_{name}_continuous.tif", arr, g2, band_name=band,
                              tags=tags)
    stacked = np.stack([maps[m][0] for m in ensemble_members])
    ens = np.tensordot(weights, stacked, axes=1)
    g2 = maps[ensemble_members[0]][1]
    write_probability_map(out / "prob_ensemble_continuous.tif", ens, g2,
                          band_name="P(ore) weighted average of the members (sliding window)",
                          tags={"quantity": "P(ore)", "kind": "rule",
                                "name": "weighted_average", "support": "sliding window",
                                "members": ",".join(ensemble_members)})
    std = np.std(stacked, axis=0, ddof=1) if len(ensemble_members) > 1 else None
    return ens, g2, std

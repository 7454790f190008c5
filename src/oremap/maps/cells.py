"""Cell maps: the cell grid, per-cell rasters, the members' disagreement, the cell maps stage."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd

from oremap.errors import InputDataError
from oremap.grid import Grid
from oremap.maps.figures import plot_panels, plot_uncertainty
from oremap.maps.raster import describe_map, write_probability_map

__all__ = [
    "CellMaps",
    "cell_grid",
    "cell_table",
    "cells_to_raster",
    "uncertainty",
    "write_cell_maps",
]


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


def cell_table(cells: gpd.GeoDataFrame, table: pd.DataFrame) -> gpd.GeoDataFrame:
    """The cells (id, row, col, label, usable, geometry) with every probability column of
    ``table`` (``p_``, ``oof_``, ``ens_``, ``pred_``) and the test fold, one row per cell."""
    probs = [c for c in table.columns if c.startswith(("p_", "oof_", "ens_", "pred_"))]
    return cells[["id", "row", "col", "label", "usable", "geometry"]].merge(
        table[["cell_id", "test_fold", *probs]].rename(columns={"cell_id": "id"}),
        on="id", how="left")

"""Cell maps: the cell grid, per-cell rasters, the members' disagreement, the cell maps stage."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
from scipy.stats import rankdata

from oremap.errors import InputDataError
from oremap.grid import Grid
from oremap.maps.figures import plot_panels, plot_uncertainty
from oremap.maps.qgis import write_style
from oremap.maps.raster import describe_map, write_probability_map

__all__ = [
    "CellMaps",
    "RANK_UNCERTAINTY_MAX",
    "area_percentiles",
    "cell_grid",
    "cell_table",
    "cells_to_raster",
    "rank_uncertainty",
    "seed_rank_uncertainty",
    "write_seed_uncertainty",
    "uncertainty",
    "write_cell_maps",
]

log = logging.getLogger("oremap.maps")

#: Upper bound of :func:`rank_uncertainty` and :func:`seed_rank_uncertainty` (percentile
#: points): the population std of values in [0, 100] never exceeds 50.
RANK_UNCERTAINTY_MAX = 50.0


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


def area_percentiles(values: np.ndarray) -> np.ndarray:
    """Area percentile of every cell in its own map: the share (in %) of the map's finite
    cells that lie strictly below it, tied cells taking the mean of their ranks.

    With ``n`` finite cells, a cell of (average, 1-based) rank ``r`` gets
    ``100 * (r - 1) / n``: the same as :func:`oremap.maps.colour.area_percentile` where there
    are no ties, in [0, 100). Any strictly increasing transform of the map (a calibration
    offset or scale) leaves the percentiles unchanged. NaN cells stay NaN.
    """
    v = np.asarray(values, dtype=np.float64)
    out = np.full(v.shape, np.nan)
    ok = np.isfinite(v)
    n = int(ok.sum())
    if n:
        out[ok] = 100.0 * (rankdata(v[ok], method="average") - 1.0) / n
    return out


def _member_percentiles(probs: np.ndarray, what: str) -> np.ndarray:
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim < 2 or p.shape[0] < 1:
        raise InputDataError(f"{what} must be (n_members, cells...) with n_members >= 1; got "
                             f"shape {p.shape}. Stack the members' maps with np.stack.")
    return np.stack([area_percentiles(m) for m in p])


def rank_uncertainty(probs: np.ndarray) -> np.ndarray:
    """Disagreement of the members on ranks: per cell, the std across members of the cell's
    area percentile in each member's own map (:func:`area_percentiles`).

    Unlike the std of P(ore), it is immune to calibration offsets between members: a member
    that ranks the cells alike but with higher probabilities adds nothing.

    Parameters
    ----------
    probs : (n_members, ...) array
        Each member's map (a raster, or cells flattened); each member's percentiles are taken
        over its own finite cells.

    Returns
    -------
    (...) float64 array
        Population std (``ddof=0``) of the percentiles, in percentile points, in
        [0, :data:`RANK_UNCERTAINTY_MAX`] (50: half the members put the cell at the bottom,
        half at the top); 0 for a single member; NaN where any member is NaN.

    Raises
    ------
    InputDataError
        If ``probs`` has fewer than 2 dimensions or no member.
    """
    return _member_percentiles(probs, "probs").std(axis=0)


def seed_rank_uncertainty(probs: np.ndarray) -> np.ndarray:
    """Instability of the ranks under retraining: per cell, the mean over members of the std
    across seeds of the cell's area percentile in that (member, seed) map.

    Parameters
    ----------
    probs : (n_members, n_seeds, ...) array
        P(ore) of each member retrained with each seed; percentiles are taken per
        (member, seed) map over its own finite cells.

    Returns
    -------
    (...) float64 array
        Mean over members of the population std (``ddof=0``) across seeds, in percentile
        points, in [0, :data:`RANK_UNCERTAINTY_MAX`]; NaN where any map is NaN.

    Raises
    ------
    InputDataError
        If ``probs`` is not (n_members >= 1, n_seeds >= 2, ...).
    """
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim < 3 or p.shape[0] < 1 or p.shape[1] < 2:
        raise InputDataError(f"probs must be (n_members, n_seeds >= 2, cells...); got shape "
                             f"{p.shape}. Give each member's maps from at least two seeds.")
    return np.stack([_member_percentiles(m, "probs").std(axis=0) for m in p]).mean(axis=0)


@dataclass(frozen=True)
class CellMaps:
    """Cell-level rasters of every member and rule, and the members' disagreement:
    ``uncertainty`` (:func:`rank_uncertainty`, percentile points), ``entropy`` (vote entropy,
    bits) and ``seed_uncertainty`` (:func:`seed_rank_uncertainty`; None without seed maps)."""

    grid: Grid
    rasters: dict[str, np.ndarray]
    uncertainty: np.ndarray
    entropy: np.ndarray
    seed_uncertainty: np.ndarray | None = None


def _seed_stack(seed_probabilities: Sequence[pd.DataFrame], table: pd.DataFrame,
                members: Sequence[str]) -> tuple[list[str], np.ndarray] | None:
    """(members in every seed table, (n_members, n_seeds, n_cells) P(ore) on ``table``'s cells),
    or None when fewer than 2 seed tables or no common member."""
    if len(seed_probabilities) < 2:
        if seed_probabilities:
            log.warning("maps: one seed table only; uncertainty_seed.tif needs >= 2, skipped")
        return None
    common = [m for m in members if all(f"p_{m}" in s.columns for s in seed_probabilities)]
    if not common:
        log.warning("maps: no member has P(ore) in every seed table; uncertainty_seed.tif "
                    "skipped")
        return None
    keys = pd.MultiIndex.from_frame(table[["row", "col"]])
    stack = np.stack([
        np.stack([s.set_index(["row", "col"])[f"p_{m}"].reindex(keys).to_numpy(np.float64)
                  for s in seed_probabilities])
        for m in common])
    return common, stack


def write_cell_maps(table: pd.DataFrame, cells: gpd.GeoDataFrame, grid: Grid,
                    members: Sequence[str], rules: Sequence[str], out: Path, *,
                    threshold: float, orebodies: gpd.GeoDataFrame | None = None,
                    run_tags: Mapping[str, str] | None = None,
                    seed_probabilities: Sequence[pd.DataFrame] | None = None) -> CellMaps:
    """Write ``prob_<member|rule>.tif``, ``uncertainty_{rank,entropy}.tif`` (and
    ``uncertainty_seed.tif`` with seed maps) and their figures.

    ``run_tags`` (e.g. the run's name and oremap's version) are added to every map's tags.

    ``table`` has one row per usable cell with ``row``, ``col``, ``p_<member>`` and
    ``ens_<rule>`` columns (``ensemble/ensemble.csv``); ``cells`` are all cells of the study
    area (their count fixes the cell grid).

    ``uncertainty_rank.tif`` is :func:`rank_uncertainty` of the members' cell maps: the std
    across members of each cell's area percentile in the member's own map (percentile points,
    0-50), which calibration offsets between members do not inflate. ``seed_probabilities``:
    the per-seed prediction tables of the stability stage (``stability/seed*/predictions.csv``,
    with ``row``, ``col`` and ``p_<member>``); with two or more, ``uncertainty_seed.tif`` is
    :func:`seed_rank_uncertainty` over the members present in all of them, on ``table``'s cells.
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
    _, entropy = uncertainty(probs, threshold=threshold)
    rank_r = cells_to_raster(r, c, rank_uncertainty(probs), cgrid)
    ent_r = cells_to_raster(r, c, entropy, cgrid)
    members_tag = {"members": ",".join(members), **(run_tags or {})}
    _write_rank_map(out / "uncertainty_rank.tif", rank_r, cgrid,
                    "std across members of the area percentile (percentile points)",
                    {"quantity": "rank uncertainty", **members_tag})
    write_probability_map(out / "uncertainty_entropy.tif", ent_r, cgrid,
                          band_name="vote entropy (bits) across members",
                          tags={"quantity": "vote entropy", "units": "bits",
                                "threshold": threshold, **members_tag}, style="entropy")
    plot_uncertainty(rank_r, ent_r, cgrid, out / "uncertainty.png", orebodies=orebodies,
                     cells=usable, first=("Rank disagreement of the members",
                                          "std of the area percentile (points)"),
                     first_max=50.0)  # the range of its QGIS style
    seed_r = write_seed_uncertainty(seed_probabilities or [], table, cells, grid, members,
                                    out / "uncertainty_seed.tif", run_tags=run_tags)
    return CellMaps(cgrid, rasters, rank_r, ent_r, seed_r)


def write_seed_uncertainty(seed_probabilities: Sequence[pd.DataFrame], table: pd.DataFrame,
                           cells: gpd.GeoDataFrame, grid: Grid, members: Sequence[str],
                           path: Path, *, run_tags: Mapping[str, str] | None = None
                           ) -> np.ndarray | None:
    """Write the seed rank uncertainty ``path`` (:func:`seed_rank_uncertainty` of the
    per-seed prediction tables, on ``table``'s cells of the cell grid of ``cells``) and return
    it; None (nothing written) with fewer than two seed tables."""
    seeds = _seed_stack(seed_probabilities, table, members)
    if seeds is None:
        return None
    n_rows, n_cols = int(cells["row"].max()) + 1, int(cells["col"].max()) + 1
    cgrid = cell_grid(grid, n_cols, n_rows)
    seed_members, stack = seeds
    r, c = table["row"].to_numpy(), table["col"].to_numpy()
    seed_r = cells_to_raster(r, c, seed_rank_uncertainty(stack), cgrid)
    _write_rank_map(path, seed_r, cgrid,
                    "mean over members of the std across seeds of the area percentile "
                    "(percentile points)",
                    {"quantity": "seed rank uncertainty", "seeds": len(seed_probabilities),
                     **(run_tags or {}), "members": ",".join(seed_members)})
    return seed_r


def _write_rank_map(path: Path, arr: np.ndarray, grid: Grid, band: str,
                    tags: Mapping[str, object]) -> None:
    write_probability_map(path, arr, grid, band_name=band,
                          tags={"units": "percentile points", **tags}, style="std")
    write_style(path, "std", vmin=0.0, vmax=RANK_UNCERTAINTY_MAX)  # percentile points, 0-50


def cell_table(cells: gpd.GeoDataFrame, table: pd.DataFrame) -> gpd.GeoDataFrame:
    """The cells (id, row, col, label, usable, geometry) with every probability column of
    ``table`` (``p_``, ``oof_``, ``ens_``, ``pred_``) and the test fold, one row per cell."""
    probs = [c for c in table.columns if c.startswith(("p_", "oof_", "ens_", "pred_"))]
    return cells[["id", "row", "col", "label", "usable", "geometry"]].merge(
        table[["cell_id", "test_fold", *probs]].rename(columns={"cell_id": "id"}),
        on="id", how="left")

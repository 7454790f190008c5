"""Cells of the study area: geometry on pixel edges, labels from orebodies and barren records."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import geopandas as gpd
import numpy as np
import shapely
from pyproj import CRS
from shapely.geometry.base import BaseGeometry

from oremap.errors import CRSMismatchError, DroppedDataWarning, InputDataError, UnknownNameError
from oremap.evidence.stack import LazyStack, is_stack
from oremap.grid import Grid
from oremap.labels import Label

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "CELL_COLUMNS",
    "InsufficientNegativesWarning",
    "Label",
    "cell_coverage",
    "check_cells_on_stack",
    "label_cells",
    "restrict_to_area",
    "make_cells",
    "plot_cells",
]

log = logging.getLogger("oremap.samples")

#: Columns of the table :func:`make_cells` returns (besides ``geometry``).
CELL_COLUMNS: tuple[str, ...] = (
    "id", "row", "col", "x0", "y0", "x1", "y1", "px_row0", "px_col0", "px_rows", "px_cols",
)

#: Snapping tolerance, in cell widths, for points on cell borders (float round-off).
_EDGE_TOL = 1e-7


class InsufficientNegativesWarning(UserWarning):
    """Strategy ``distance`` found fewer candidate cells than ``ratio`` asks for; took them all."""


# ------------------------------------------------------------------------------------ geometry


def make_cells(grid: Grid, *, cols: int | None = None, rows: int | None = None,
               cell_size: float | tuple[float, float] | None = None) -> gpd.GeoDataFrame:
    """Cut the grid into rectangular cells whose edges fall on pixel edges.

    Parameters
    ----------
    grid : Grid
        The study-area grid.
    cols, rows : int
        Number of cells along x and y (give both), or
    cell_size : float or (width, height)
        Cell width and height in map units; must be whole numbers of pixels and tile the grid.

    Returns
    -------
    GeoDataFrame, one row per cell in raster order (row 0 is the northern row)
        ``id`` (= row * n_cols + col), ``row``, ``col``, ``x0, y0, x1, y1`` (xmin, ymin, xmax,
        ymax in map units), ``px_row0, px_col0`` (pixel offset of the cell's top-left corner),
        ``px_rows, px_cols`` (cell height and width in pixels), ``geometry`` (box), in the
        grid's CRS.

    Raises
    ------
    InputDataError
        If both or neither of (cols, rows) and cell_size are given, or if the cells would not
        fall on pixel edges or not tile the grid (the message suggests counts or pixel sizes).
    """
    px_rows, px_cols = _cell_pixels(grid, cols=cols, rows=rows, cell_size=cell_size)
    n_rows, n_cols = grid.height // px_rows, grid.width // px_cols
    row, col = np.divmod(np.arange(n_rows * n_cols, dtype=np.int64), n_cols)
    dx, dy = grid.pixel_size
    xmin, ymax = grid.bounds[0], grid.bounds[3]
    px_row0, px_col0 = row * px_rows, col * px_cols
    x0, x1 = xmin + px_col0 * dx, xmin + (px_col0 + px_cols) * dx
    y1, y0 = ymax - px_row0 * dy, ymax - (px_row0 + px_rows) * dy
    data = {"id": row * n_cols + col, "row": row, "col": col, "x0": x0, "y0": y0, "x1": x1,
            "y1": y1, "px_row0": px_row0, "px_col0": px_col0,
            "px_rows": np.full(row.size, px_rows, np.int64),
            "px_cols": np.full(row.size, px_cols, np.int64)}
    return gpd.GeoDataFrame(data, geometry=shapely.box(x0, y0, x1, y1), crs=grid.crs)


def _cell_pixels(grid: Grid, *, cols: int | None, rows: int | None,
                 cell_size: float | tuple[float, float] | None) -> tuple[int, int]:
    """(px_rows, px_cols) of one cell, checked to fall on pixel edges and tile the grid."""
    by_count = cols is not None or rows is not None
    if by_count == (cell_size is not None) or (by_count and (cols is None or rows is None)):
        raise InputDataError(
            f"cells: expected either both `cols` and `rows`, or `cell_size`; got cols={cols!r}, "
            f"rows={rows!r}, cell_size={cell_size!r}. Give one of the two forms."
        )
    dx, dy = grid.pixel_size
    if by_count:
        return (_count_pixels(grid.height, rows, dy, "rows", "y"),
                _count_pixels(grid.width, cols, dx, "cols", "x"))
    if isinstance(cell_size, (int, float)):
        cell_size = (float(cell_size), float(cell_size))
    if len(cell_size) != 2:
        raise InputDataError(
            f"cells: cell_size must be one number or (width, height) in map units, got "
            f"{cell_size!r}."
        )
    width, height = (float(v) for v in cell_size)
    return (_size_pixels(grid.height, height, dy, "height", "y"),
            _size_pixels(grid.width, width, dx, "width", "x"))


def _whole(value: float) -> int | None:
    """``value`` as an int if it is a whole number (to float round-off), else None."""
    near = round(value)
    return int(near) if abs(value - near) <= 1e-6 * max(1.0, abs(value)) else None


def _near_divisors(n: int, target: float, k: int = 3) -> list[int]:
    """The ``k`` divisors of ``n`` closest to ``target``, ascending."""
    divisors = [d for d in range(1, n + 1) if n % d == 0]
    return sorted(sorted(divisors, key=lambda d: (abs(d - target), d))[:k])


def _count_pixels(n_px: int, n_cells: object, px: float, name: str, axis: str) -> int:
    if isinstance(n_cells, bool) or not isinstance(n_cells, (int, np.integer)) or n_cells < 1:
        raise InputDataError(f"cells: `{name}` must be a whole number >= 1, got {n_cells!r}.")
    if n_px % n_cells == 0:
        return n_px // int(n_cells)
    cell_len = n_px * px / n_cells
    suggest_px = cell_len / max(1, round(cell_len / px))
    raise InputDataError(
        f"cells: {n_cells} {name} do not fall on pixel edges: the grid is {n_px} pixels of "
        f"{px:g} along {axis}, so a cell would be {n_px / n_cells:g} pixels ({cell_len:g} map "
        f"units); expected a whole number of pixels per cell. Fix: use {name} "
        f"(config: [grid] cell_{name}) = one of "
        f"{_near_divisors(n_px, n_cells)}, or a pixel size that divides {cell_len:g} "
        f"(e.g. {suggest_px:g})."
    )


def _size_pixels(n_px: int, length: float, px: float, name: str, axis: str) -> int:
    if not length > 0:
        raise InputDataError(f"cells: cell {name} must be > 0 map units, got {length:g}.")
    k = _whole(length / px)
    if k is None or k < 1:
        k_near = max(1, round(length / px))
        raise InputDataError(
            f"cells: a cell {name} of {length:g} map units is {length / px:g} pixels of {px:g}; "
            f"cell edges must fall on pixel edges. Fix: use a cell {name} that is a multiple of "
            f"the pixel size (e.g. {k_near * px:g}), or a pixel size that divides {length:g} "
            f"(e.g. {length / k_near:g})."
        )
    if n_px % k:
        options = ", ".join(f"{d * px:g}" for d in _near_divisors(n_px, k))
        raise InputDataError(
            f"cells: the grid is {n_px} pixels along {axis}, not a whole number of cells of {k} "
            f"pixels ({length:g} map units). Fix: use a cell {name} that divides the extent "
            f"{n_px * px:g} (e.g. {options}), or give `cols`/`rows` instead."
        )
    return k


def _check_cells(cells: gpd.GeoDataFrame, what: str = "cells") -> None:
    missing = [c for c in CELL_COLUMNS if c not in cells.columns]
    if missing:
        raise InputDataError(
            f"{what}: the cell table lacks column(s) {missing}; expected the table made by "
            "make_cells(). Build the cells with make_cells()."
        )


# ------------------------------------------------------------------------------------ labels


def label_cells(
    cells: gpd.GeoDataFrame,
    *,
    orebodies: gpd.GeoDataFrame | None,
    barren: gpd.GeoDataFrame | None = None,
    strategy: Literal["verified", "distance", "all", "pu_bagging"] = "verified",
    orebody_buffer: float = 0.0,
    min_distance: float | None = None,
    ratio: float | None = None,
    seed: int = 0,
    orebody_source: str = "orebodies",
    barren_source: str = "barren records",
    orebody_id: str | None = None,
    barren_id: str | None = None,
) -> gpd.GeoDataFrame:
    """Label cells positive (orebody), negative (barren or far from ore) or unknown.

    Rules (tested in ``tests/test_cells.py``):

    * A polygon or line feature marks a cell only if it meets the cell's **interior**
      (DE-9IM ``T********``): a feature touching a cell only along its border or at a corner
      does not count.
    * A point feature (with ``orebody_buffer == 0`` for orebodies) marks exactly one cell, by
      a half-open rule: the cell with ``xmin <= x < xmax`` and ``ymin < y <= ymax``; so a point
      on a vertical border goes to the eastern cell and one on a horizontal border to the
      southern cell. A point on the outer edge of the grid belongs to the edge cell.
    * With ``orebody_buffer > 0`` every orebody is buffered first (points become discs) and the
      interior rule applies.
    * Positive: the cell holds at least one orebody. Positive wins over barren records.
    * ``strategy="verified"`` (the paper's): negative if the cell holds a barren record (drill
      hole, trench, ...) and no orebody.
    * ``strategy="distance"``: negatives are a seeded random choice among cells that are not
      positive, whose distance to the nearest (buffered) orebody is ``>= min_distance``, and
      which are usable (if the table has a ``usable`` column from :func:`cell_coverage`);
      ``round(ratio * n_positive)`` of them (at least 1), positives counted among usable cells.
      If there are fewer candidates, all are taken with an :class:`InsufficientNegativesWarning`.
      With ``ratio=None`` every candidate is a negative: no draw, so the labels do not change
      with the seed (measured on the copper example: the draw was the largest source of
      seed-to-seed spread of the maps).
      ``min_distance`` and ``ratio`` are ignored by ``verified``.
    * ``strategy="all"`` (presence/background, the usual protocol of the MPM literature): every
      usable cell that is not positive is a negative.
    * ``strategy="pu_bagging"``: labelled as ``"all"`` (the non-positive cells are unlabelled
      and scored as background); training then draws bags of them
      (positive-unlabelled bagging, see :mod:`oremap.baselines` and :mod:`oremap.train`).
    * Everything else is unknown.

    Parameters
    ----------
    cells : GeoDataFrame
        From :func:`make_cells` (possibly with the columns of :func:`cell_coverage`).
    orebodies, barren : GeoDataFrame or None
        Known orebodies and barren records; any geometry type. Reprojected to the cells' CRS
        (logged) when their CRS differs.
    strategy : {"verified", "distance", "all", "pu_bagging"}
        How negatives are chosen.
    orebody_buffer : float
        Buffer distance around orebodies, map units, >= 0.
    min_distance : float
        For ``distance``: minimum distance of a negative cell from any orebody, map units.
    ratio : float or None
        For ``distance``: number of negatives per positive cell, > 0; None takes every
        candidate.
    seed : int
        Seed of the random choice of ``distance``.
    orebody_source, barren_source : str
        Names of the inputs used in messages (e.g. the file path).
    orebody_id, barren_id : str or None
        Column naming each feature in ``reason``; default a column called ``id`` or ``name``
        (any case) if there is one, else the row index.

    Returns
    -------
    GeoDataFrame
        A copy of ``cells`` with ``label`` (int64, values of :class:`Label`) and ``reason``
        (str, e.g. ``"orebody ob-3"``, ``"barren drillhole DH-12"``,
        ``"distance >= 5 km from positives"``, ``""`` for unknown).

    Raises
    ------
    InputDataError
        If no cell is positive, no cell is negative, or the options are invalid.
    CRSMismatchError
        If an input has no CRS while the cells have one.
    UnknownNameError
        If ``strategy`` is not one of the two above.
    """
    _check_cells(cells)
    if not orebody_buffer >= 0:
        raise InputDataError(f"orebody_buffer must be >= 0 map units, got {orebody_buffer!r}.")
    labels = np.full(len(cells), int(Label.UNKNOWN), dtype=np.int64)
    reasons = np.full(len(cells), "", dtype=object)
    if orebodies is None or len(orebodies) == 0:
        raise InputDataError(
            f"no cell intersects any orebody in {orebody_source}: it has no features. "
            "Expected at least one known orebody; check the file and layer."
        )
    ore = _in_crs(orebodies, cells, orebody_source)
    ore_geoms = ore.geometry.values
    if orebody_buffer > 0:
        ore_geoms = shapely.buffer(ore_geoms, orebody_buffer)
    ore_ids = _feature_ids(ore, orebody_id, orebody_source)
    for pos, feats in _cell_hits(cells, ore_geoms, orebody_source).items():
        labels[pos] = Label.POSITIVE
        reasons[pos] = "orebody " + _join_ids(ore_ids[feats])
    if not (labels == Label.POSITIVE).any():
        raise InputDataError(
            f"no cell intersects any orebody in {orebody_source}: its {len(ore)} features lie "
            f"outside the {len(cells)} cells (bounds "
            f"{[round(float(v), 3) for v in cells.total_bounds]})"
            ". Check the CRS and extent of the orebodies or the grid bounds."
        )
    match strategy:
        case "verified":
            _label_verified(cells, barren, labels, reasons, barren_source, barren_id)
        case "distance":
            _label_by_distance(cells, ore_geoms, labels, reasons, min_distance, ratio, seed)
        case "all" | "pu_bagging":
            _label_all(cells, labels, reasons)
        case _:
            raise UnknownNameError(
                f"unknown negative strategy {strategy!r}; choose from ['all', 'distance', "
                "'pu_bagging', 'verified']."
            )
    out = cells.copy()
    out["label"] = labels
    out["reason"] = reasons.astype(str)
    return out


def _label_verified(cells: gpd.GeoDataFrame, barren: gpd.GeoDataFrame | None,
                    labels: np.ndarray, reasons: np.ndarray, source: str,
                    id_column: str | None) -> None:
    if barren is None or len(barren) == 0:
        raise InputDataError(
            f"no negative cells: strategy 'verified' needs barren records (drill holes, "
            f"trenches), got none in {source}. Give barren records or use strategy 'distance' "
            "with min_distance and ratio."
        )
    bar = _in_crs(barren, cells, source)
    ids = _feature_ids(bar, id_column, source)
    kinds = np.array([_barren_kind(t) for t in shapely.get_type_id(bar.geometry.values)])
    for pos, feats in _cell_hits(cells, bar.geometry.values, source).items():
        if labels[pos] == Label.POSITIVE:
            continue
        labels[pos] = Label.NEGATIVE
        parts = [f"{kind} {_join_ids(ids[feats][kinds[feats] == kind])}"
                 for kind in dict.fromkeys(kinds[feats])]
        reasons[pos] = "barren " + "; ".join(parts)
    if not (labels == Label.NEGATIVE).any():
        raise InputDataError(
            f"no negative cells: none of the {len(bar)} barren records in {source} falls in a "
            "cell free of orebodies. Expected barren records away from ore; check their CRS and "
            "extent, or use strategy 'distance'."
        )


def _label_all(cells: gpd.GeoDataFrame, labels: np.ndarray, reasons: np.ndarray) -> None:
    usable = (cells["usable"].to_numpy(bool) if "usable" in cells.columns
              else np.ones(len(cells), bool))
    chosen = usable & (labels != Label.POSITIVE)
    if not chosen.any():
        raise InputDataError("no negative cells: strategy 'all' takes every usable cell without "
                             "an orebody, and every usable cell holds one.")
    labels[chosen] = Label.NEGATIVE
    reasons[chosen] = "background (no known orebody)"


def restrict_to_area(cells: gpd.GeoDataFrame, area: BaseGeometry, *, rule: str = "centre",
                     source: str = "area") -> gpd.GeoDataFrame:
    """Mark cells outside a study area unusable (``usable`` False, ``drop_reason`` set).

    ``rule="centre"``: a cell is in the area when its centre lies in it (on the boundary
    counts); ``rule="intersects"``: when it meets the area at all. Returns a copy with the
    column ``in_area``; the count of cells dropped is logged.
    """
    if rule not in ("centre", "intersects"):
        raise UnknownNameError(f"unknown area rule {rule!r}; choose from ['centre', 'intersects']")
    if area is None or area.is_empty:
        raise InputDataError(f"{source}: the study area is empty; check the file and filter.")
    geoms = cells.geometry.values
    inside = (shapely.intersects(area, shapely.centroid(geoms)) if rule == "centre"
              else shapely.intersects(area, geoms))
    if not inside.any():
        raise InputDataError(f"{source}: no cell lies in the study area (rule {rule!r}); check "
                             "its CRS and extent.")
    out = cells.copy()
    out["in_area"] = inside
    if "usable" not in out.columns:
        out["usable"] = True
    if "drop_reason" not in out.columns:
        out["drop_reason"] = ""
    drop = out["usable"].to_numpy(bool) & ~inside
    out.loc[drop, "usable"] = False
    out.loc[drop, "drop_reason"] = f"outside the study area ({rule})"
    logging.getLogger("oremap").info("%s: %d of %d cells lie outside the study area (rule %r) "
                                     "and are not used", source, int((~inside).sum()), len(out),
                                     rule)
    return out


def _label_by_distance(cells: gpd.GeoDataFrame, ore_geoms: np.ndarray, labels: np.ndarray,
                       reasons: np.ndarray, min_distance: float | None, ratio: float | None,
                       seed: int) -> None:
    if min_distance is None or not min_distance >= 0:
        raise InputDataError(
            f"strategy 'distance' needs min_distance >= 0 map units, got {min_distance!r}; "
            "set it (e.g. 5000 for 5 km)."
        )
    if ratio is not None and not ratio > 0:
        raise InputDataError(
            f"strategy 'distance' needs ratio > 0 (negatives per positive cell), got {ratio!r}; "
            "set it (e.g. 1.0), or leave it out to take every cell far enough from ore."
        )
    usable = (cells["usable"].to_numpy(bool) if "usable" in cells.columns
              else np.ones(len(cells), bool))
    ore_union = shapely.union_all(ore_geoms)
    dist = shapely.distance(cells.geometry.values, ore_union)
    candidates = np.flatnonzero(usable & (labels != Label.POSITIVE) & (dist >= min_distance))
    n_pos = int(((labels == Label.POSITIVE) & usable).sum())
    n_want = len(candidates) if ratio is None else max(1, round(ratio * n_pos))
    if len(candidates) == 0:
        raise InputDataError(
            f"no negative cells: no usable cell lies >= {min_distance:g} map units from every "
            f"orebody (nearest cell is {float(dist[labels != Label.POSITIVE].max(initial=0)):g} "
            "away at most). Lower min_distance."
        )
    if ratio is None:  # every candidate: no draw, so the labels do not depend on the seed
        chosen = candidates
    elif len(candidates) < n_want:
        warnings.warn(
            f"strategy 'distance': asked for {n_want} negative cells ({ratio:g} x {n_pos} "
            f"positives) but only {len(candidates)} usable cells lie >= {min_distance:g} map "
            "units from every orebody; took them all.",
            InsufficientNegativesWarning, stacklevel=3,
        )
        chosen = candidates
    else:
        rng = np.random.default_rng(seed)
        chosen = np.sort(rng.choice(candidates, size=n_want, replace=False))
    labels[chosen] = Label.NEGATIVE
    reasons[chosen] = f"distance >= {_format_distance(min_distance, cells.crs)} from positives"


def _format_distance(d: float, crs: CRS | None) -> str:
    unit = crs.axis_info[0].unit_name if crs is not None and crs.axis_info else ""
    if unit in ("metre", "meter"):
        return f"{d / 1000:g} km" if d >= 1000 else f"{d:g} m"
    return f"{d:g} map units"


def _in_crs(gdf: gpd.GeoDataFrame, cells: gpd.GeoDataFrame, source: str) -> gpd.GeoDataFrame:
    """``gdf`` in the cells' CRS; empty geometries removed."""
    if cells.crs is not None:
        if gdf.crs is None:
            raise CRSMismatchError(
                f"{source} has no CRS while the cells are in {cells.crs.to_string()}; assign "
                "its CRS (set `crs` in the config or gdf.set_crs)."
            )
        if not CRS(gdf.crs).equals(cells.crs):
            log.info("%s: reprojecting from %s to the cells' CRS %s", source,
                     gdf.crs.to_string(), cells.crs.to_string())
            gdf = gdf.to_crs(cells.crs)
    keep = ~(gdf.geometry.isna() | gdf.geometry.is_empty)
    return gdf.loc[keep.to_numpy()]


def _feature_ids(gdf: gpd.GeoDataFrame, column: str | None, source: str) -> np.ndarray:
    if column is None:
        column = next((c for c in gdf.columns if str(c).lower() in ("id", "name")), None)
    elif column not in gdf.columns:
        raise InputDataError(
            f"{source} has no column {column!r} to name its features; it has "
            f"{[c for c in gdf.columns if c != gdf.geometry.name]}. Fix the id column name."
        )
    values = gdf.index if column is None else gdf[column]
    return np.array([str(v) for v in values], dtype=object)


def _join_ids(ids: Sequence[str], limit: int = 3) -> str:
    ids = list(dict.fromkeys(ids))
    more = f" (+{len(ids) - limit} more)" if len(ids) > limit else ""
    return ", ".join(ids[:limit]) + more


def _barren_kind(type_id: int) -> str:
    return {0: "drillhole", 4: "drillhole", 1: "trench", 2: "trench", 5: "trench"}.get(
        int(type_id), "area")


def _cell_hits(cells: gpd.GeoDataFrame, geoms: np.ndarray, source: str) -> dict[int, np.ndarray]:
    """Map cell position -> indices of the features that mark it (rules of label_cells)."""
    parts, owner = shapely.get_parts(geoms, return_index=True)
    keep = ~shapely.is_empty(parts)
    parts, owner = parts[keep], owner[keep]
    is_point = shapely.get_type_id(parts) == 0
    pairs = [np.empty((0, 2), np.int64)]
    if is_point.any():
        xy = shapely.get_coordinates(parts[is_point])
        pos = _point_cells(cells, xy[:, 0], xy[:, 1])
        inside = pos >= 0
        pairs.append(np.column_stack([owner[is_point][inside], pos[inside]]))
    if (~is_point).any():
        other, other_owner = parts[~is_point], owner[~is_point]
        part_i, cell_i = cells.sindex.query(other, predicate="intersects")
        interior = shapely.relate_pattern(other[part_i], cells.geometry.values[cell_i],
                                          "T********")
        pairs.append(np.column_stack([other_owner[part_i[interior]], cell_i[interior]]))
    hits = np.unique(np.concatenate(pairs), axis=0)
    missed = len(geoms) - len(np.unique(hits[:, 0]))
    if missed:
        warnings.warn(f"{source}: {missed} of {len(geoms)} features lie outside every cell (or "
                      "only touch cell borders) and label no cell", DroppedDataWarning,
                      stacklevel=4)
    out: dict[int, np.ndarray] = {}
    for cell in np.unique(hits[:, 1]):
        out[int(cell)] = hits[hits[:, 1] == cell, 0]
    return out


def _point_cells(cells: gpd.GeoDataFrame, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Position in ``cells`` of the cell holding each point by the half-open rule, -1 if none."""
    xmin, ymax = float(cells["x0"].min()), float(cells["y1"].max())
    width = float(cells["x1"].iloc[0] - cells["x0"].iloc[0])
    height = float(cells["y1"].iloc[0] - cells["y0"].iloc[0])
    n_rows, n_cols = int(cells["row"].max()) + 1, int(cells["col"].max()) + 1

    def index(v: np.ndarray, n: int) -> np.ndarray:
        near = np.round(v)
        v = np.where(np.abs(v - near) < _EDGE_TOL * np.maximum(1.0, np.abs(v)), near, v)
        i = np.floor(v).astype(np.int64)
        return np.where(v == n, n - 1, i)  # the outer (east/south) edge: the edge cell

    col = index((x - xmin) / width, n_cols)
    row = index((ymax - y) / height, n_rows)
    lookup = np.full((n_rows, n_cols), -1, dtype=np.int64)
    lookup[cells["row"].to_numpy(), cells["col"].to_numpy()] = np.arange(len(cells))
    ok = (row >= 0) & (row < n_rows) & (col >= 0) & (col < n_cols)
    out = np.full(len(x), -1, dtype=np.int64)
    out[ok] = lookup[row[ok], col[ok]]
    return out


# ------------------------------------------------------------------------------------ coverage


def cell_coverage(stack: np.ndarray | LazyStack, cells: gpd.GeoDataFrame,
                  layer_names: Sequence[str], *, tolerance: float = 0.0) -> gpd.GeoDataFrame:
    """Flag cells with nodata; by default (the paper's rule) any NaN pixel drops a cell.

    A cell is usable when, in every layer, the fraction of its pixels that are NaN (or
    infinite) is ``<= tolerance`` and at least one pixel is valid. With ``tolerance > 0`` the
    NaNs left inside usable cells are later filled, per layer, with the median of the cell's
    valid pixels of that layer (see :func:`oremap.samples.crops.cell_block`).

    Parameters
    ----------
    stack : (C, H, W) float array or LazyStack
        Evidence layers on the grid of ``cells``, NaN for nodata; a
        :class:`~oremap.evidence.LazyStack` is read cell by cell in raster order.
    cells : GeoDataFrame
        From :func:`make_cells`.
    layer_names : sequence of C str
        Names used in ``drop_reason``.
    tolerance : float
        Fraction of nodata pixels allowed per layer in a usable cell, in [0, 1).

    Returns
    -------
    GeoDataFrame
        A copy of ``cells`` with ``coverage`` (fraction of valid values over all layers and
        pixels, in [0, 1]), ``usable`` (bool), ``nodata_layers`` (comma-separated names of the
        layers that made the cell unusable) and ``drop_reason`` (``"nodata in Au,As"`` or
        ``""``). Dropped cells are counted in a :class:`DroppedDataWarning`.

    Raises
    ------
    InputDataError
        If the stack is not 3-D, the layer names do not match it, cells extend beyond it, or
        ``tolerance`` is outside [0, 1).
    """
    _check_cells(cells)
    names = _check_stack(stack, layer_names)
    if not 0 <= tolerance < 1:
        raise InputDataError(
            f"nodata tolerance must be a fraction in [0, 1), got {tolerance!r}; 0 is the paper's "
            "rule (any nodata pixel drops the cell)."
        )
    check_cells_on_stack(cells, stack.shape[1:])
    r0, c0 = cells["px_row0"].to_numpy(), cells["px_col0"].to_numpy()
    h, w = cells["px_rows"].to_numpy(), cells["px_cols"].to_numpy()
    nodata = np.empty((len(cells), len(names)), dtype=np.float64)
    for i in np.lexsort((c0, r0)):  # raster order: each strip of a LazyStack is read once
        block = stack[:, r0[i]:r0[i] + h[i], c0[i]:c0[i] + w[i]]
        nodata[i] = (~np.isfinite(block)).reshape(len(names), -1).mean(axis=1)
    bad = (nodata > tolerance) | (nodata >= 1.0)
    usable = ~bad.any(axis=1)
    layers = np.array([",".join(np.asarray(names)[row]) for row in bad], dtype=object)
    out = cells.copy()
    out["coverage"] = 1.0 - nodata.mean(axis=1) if len(names) else 1.0
    out["usable"] = usable
    out["nodata_layers"] = layers.astype(str)
    out["drop_reason"] = np.where(usable, "", "nodata in " + layers.astype(str))
    if (~usable).any():
        per_layer = {n: int(k) for n, k in zip(names, bad.sum(axis=0), strict=True) if k}
        warnings.warn(
            f"dropped {int((~usable).sum())} of {len(cells)} cells with nodata (more than "
            f"{tolerance:g} of their pixels in a layer); cells per layer: {per_layer}",
            DroppedDataWarning, stacklevel=2,
        )
    return out


def check_cells_on_stack(cells: gpd.GeoDataFrame, shape: tuple[int, int]) -> None:
    """Raise :class:`InputDataError` if a cell's pixels extend beyond a (rows, cols) raster."""
    _check_cells(cells)
    r0, c0 = cells["px_row0"].to_numpy(), cells["px_col0"].to_numpy()
    h, w = cells["px_rows"].to_numpy(), cells["px_cols"].to_numpy()
    if len(cells) and ((r0 + h).max() > shape[0] or (c0 + w).max() > shape[1]
                       or min(r0.min(), c0.min()) < 0):
        raise InputDataError(
            f"cells extend beyond the stack of shape {tuple(shape)} (rows, cols); expected "
            "cells made by make_cells() on the stack's grid."
        )


def _check_stack(stack: np.ndarray | LazyStack, layer_names: Sequence[str]) -> list[str]:
    if not is_stack(stack) or stack.ndim != 3:
        raise InputDataError(
            f"the evidence stack must be a (C, H, W) array, got "
            f"{getattr(stack, 'shape', type(stack).__name__)}; stack the layers on axis 0."
        )
    names = [str(n) for n in layer_names]
    if len(names) != stack.shape[0]:
        raise InputDataError(
            f"the stack has {stack.shape[0]} layers but {len(names)} layer names were given "
            f"({names[:5]}); give one name per layer, in stack order."
        )
    return names


# ------------------------------------------------------------------------------------ figure


_LABEL_STYLE = {Label.POSITIVE: ("#d7301f", "positive (ore)"),
                Label.NEGATIVE: ("#2b8cbe", "negative (barren)"),
                Label.UNKNOWN: ("#f7f7f7", "unknown")}


def plot_cells(cells: gpd.GeoDataFrame, *, title: str = "Cells") -> Figure:
    """Draw the cells in map coordinates, coloured by label; dropped cells hatched grey.

    Uses the columns ``label`` (else all unknown), ``usable`` (else all usable) and
    ``test_fold`` (when present and any is 0, cells in the test set of fold 0 get a thick black
    outline). Returns the figure; save it with :func:`oremap.io.save_figure`.
    """
    from matplotlib.collections import PatchCollection
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch, Rectangle

    _check_cells(cells)
    n = len(cells)
    labels = cells["label"].to_numpy() if "label" in cells.columns else np.full(n, -1)
    usable = cells["usable"].to_numpy(bool) if "usable" in cells.columns else np.ones(n, bool)
    x0, y0 = cells["x0"].to_numpy(), cells["y0"].to_numpy()
    w, h = (cells["x1"] - cells["x0"]).to_numpy(), (cells["y1"] - cells["y0"]).to_numpy()
    rects = [Rectangle((x0[i], y0[i]), w[i], h[i]) for i in range(n)]
    colours = np.array([_LABEL_STYLE[Label(int(v))][0] for v in labels])
    span = (x0.min(), y0.min(), (x0 + w).max(), (y0 + h).max()) if n else (0, 0, 1, 1)
    aspect = (span[3] - span[1]) / max(span[2] - span[0], 1e-12)
    fig = Figure(figsize=(9, max(2.5, min(9, 9 * aspect + 1))))
    ax = fig.subplots()
    ax.add_collection(PatchCollection([r for r, u in zip(rects, usable, strict=True) if u],
                                      facecolors=colours[usable], edgecolors="#999999",
                                      linewidths=0.3))
    ax.add_collection(PatchCollection([r for r, u in zip(rects, usable, strict=True) if not u],
                                      facecolors="#bdbdbd", edgecolors=colours[~usable],
                                      hatch="///", linewidths=0.6))
    handles = [Patch(facecolor=c, edgecolor="#999999", label=f"{lab} "
                     f"({int(((labels == k) & usable).sum())})")
               for k, (c, lab) in _LABEL_STYLE.items()]
    handles.append(Patch(facecolor="#bdbdbd", hatch="///",
                         label=f"dropped ({int((~usable).sum())})"))
    if "test_fold" in cells.columns and (cells["test_fold"].to_numpy() == 0).any():
        test = cells["test_fold"].to_numpy() == 0
        ax.add_collection(PatchCollection([r for r, t in zip(rects, test, strict=True) if t],
                                          facecolors="none", edgecolors="black", linewidths=1.2))
        handles.append(Patch(facecolor="none", edgecolor="black", label="test (fold 0)"))
    ax.set_xlim(span[0], span[2])
    ax.set_ylim(span[1], span[3])
    ax.set_aspect("equal")
    unit = _unit_label(cells.crs)
    ax.set_xlabel(f"Easting{unit}")
    ax.set_ylabel(f"Northing{unit}")
    ax.set_title(title)
    ax.ticklabel_format(useOffset=False, style="plain")
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    return fig


def _unit_label(crs: CRS | None) -> str:
    if crs is None or not crs.axis_info:
        return ""
    unit = crs.axis_info[0].unit_name
    return " (m)" if unit in ("metre", "meter") else f" ({unit})"

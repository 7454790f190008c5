"""Target areas: connected high-probability zones as ranked polygons (I, II, III, ...)."""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any, Literal

import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio.features
import shapely
from pyproj import CRS
from scipy import ndimage
from shapely.geometry import shape

from oremap import io
from oremap.errors import (
    CRSMismatchError,
    DroppedDataWarning,
    InputDataError,
    UnknownNameError,
)
from oremap.grid import Grid

__all__ = [
    "TARGET_COLUMNS",
    "SCORES",
    "NoTargetsWarning",
    "target_areas",
    "write_targets",
    "label_targets_on_axes",
    "to_roman",
    "to_grid_crs",
]

log = logging.getLogger("oremap.targets")

Score = Literal["area_weighted_mean", "mean", "max", "area"]
SCORES: tuple[str, ...] = ("area_weighted_mean", "mean", "max", "area")

#: Columns of :func:`target_areas` (besides ``geometry``), in order.
TARGET_COLUMNS: tuple[str, ...] = (
    "rank", "rank_number", "score", "n_pixels", "area", "area_share", "expected_area",
    "mean_prob", "max_prob", "mean_uncertainty", "n_orebodies", "orebodies",
)


class NoTargetsWarning(UserWarning):
    """No pixel passed the target threshold; the target table is empty."""


def to_roman(n: int) -> str:
    """Roman numeral of a positive integer: 1 -> "I", 14 -> "XIV".

    Raises
    ------
    InputDataError
        If ``n`` < 1.
    """
    if n < 1:
        raise InputDataError(f"roman numerals exist for integers >= 1; got {n}.")
    out = []
    for value, numeral in ((1000, "M"), (900, "CM"), (500, "D"), (400, "CD"), (100, "C"),
                           (90, "XC"), (50, "L"), (40, "XL"), (10, "X"), (9, "IX"), (5, "V"),
                           (4, "IV"), (1, "I")):
        count, n = divmod(n, value)
        out.append(numeral * count)
    return "".join(out)


def to_grid_crs(gdf: gpd.GeoDataFrame, grid: Grid, what: str) -> gpd.GeoDataFrame:
    """Return ``gdf`` in the grid's CRS, reprojecting (logged) when it differs.

    Raises
    ------
    CRSMismatchError
        If ``gdf`` has no CRS.
    """
    if gdf.crs is None:
        raise CRSMismatchError(f"{what} has no CRS; set one with gdf.set_crs(...) (the grid is "
                               f"{grid.crs.to_string()}).")
    if not CRS(gdf.crs).equals(grid.crs):
        log.info("%s: reprojecting from %s to the grid CRS %s", what, gdf.crs.to_string(),
                 grid.crs.to_string())
        return gdf.to_crs(grid.crs)
    return gdf


def _empty(grid: Grid) -> gpd.GeoDataFrame:
    data: dict[str, Any] = {c: pd.Series(dtype="float64") for c in TARGET_COLUMNS}
    data["rank"] = pd.Series(dtype="object")
    data["orebodies"] = pd.Series(dtype="object")
    for c in ("rank_number", "n_pixels", "n_orebodies"):
        data[c] = pd.Series(dtype="int64")
    return gpd.GeoDataFrame(data, geometry=gpd.GeoSeries([], crs=grid.crs), crs=grid.crs)


def _threshold_of(p: np.ndarray, threshold: float | None, top_fraction: float | None) -> float:
    if (threshold is None) == (top_fraction is None):
        raise InputDataError(
            f"give exactly one of threshold and top_fraction; got threshold={threshold}, "
            f"top_fraction={top_fraction}. To use top_fraction pass threshold=None."
        )
    if threshold is not None:
        if not 0.0 <= threshold <= 1.0:
            raise InputDataError(f"threshold must lie in [0, 1]; got {threshold}.")
        return float(threshold)
    if not 0.0 < top_fraction <= 1.0:
        raise InputDataError(f"top_fraction must lie in (0, 1]; got {top_fraction}.")
    valid = p[np.isfinite(p)]
    return float(np.quantile(valid, 1.0 - top_fraction)) if valid.size else np.inf


def _check_inputs(p: np.ndarray, grid: Grid, unc: np.ndarray | None, min_pixels: int,
                  connectivity: int, score: str) -> None:
    if p.shape != grid.shape:
        raise InputDataError(f"prob has shape {p.shape} but the grid is {grid.shape}; pass the "
                             "probability map's own grid.")
    if unc is not None and unc.shape != grid.shape:
        raise InputDataError(f"uncertainty has shape {unc.shape} but prob has {p.shape}; both "
                             "must lie on the same grid.")
    if min_pixels < 1:
        raise InputDataError(f"min_pixels must be >= 1; got {min_pixels}.")
    if connectivity not in (4, 8):
        raise InputDataError(f"connectivity must be 4 or 8 (neighbouring pixels); got "
                             f"{connectivity}.")
    if score not in SCORES:
        raise UnknownNameError(f"unknown target score {score!r}; choose from {list(SCORES)}.")


def _labels(mask: np.ndarray, connectivity: int, min_pixels: int) -> tuple[np.ndarray, int]:
    structure = np.ones((3, 3), bool) if connectivity == 8 else ndimage.generate_binary_structure(
        2, 1)
    labels, n = ndimage.label(mask, structure=structure)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    small = np.nonzero(sizes[1:] < min_pixels)[0] + 1
    if small.size:
        warnings.warn(f"target_areas: dropped {small.size} areas smaller than {min_pixels} "
                      f"pixels ({int(sizes[small].sum())} pixels in all)", DroppedDataWarning,
                      stacklevel=3)
        labels[np.isin(labels, small)] = 0
        labels, n = ndimage.label(labels > 0, structure=structure)
    return labels, n


def _polygons(labels: np.ndarray, grid: Grid) -> dict[int, Any]:
    """Exact pixel outlines per label, dissolved (a diagonal touch gives a MultiPolygon)."""
    parts: dict[int, list] = {}
    for geom, value in rasterio.features.shapes(labels.astype(np.int32), mask=labels > 0,
                                                connectivity=4, transform=grid.transform):
        parts.setdefault(int(value), []).append(shape(geom))
    return {k: shapely.union_all(v) for k, v in parts.items()}


def _score(table: pd.DataFrame, score: str) -> np.ndarray:
    match score:
        case "area_weighted_mean":
            return table["area_share"].to_numpy() * table["mean_prob"].to_numpy()
        case "mean":
            return table["mean_prob"].to_numpy()
        case "max":
            return table["max_prob"].to_numpy()
        case "area":
            return table["area"].to_numpy()
        case _:
            raise UnknownNameError(f"unknown target score {score!r}; choose from {list(SCORES)}.")


def target_areas(prob: np.ndarray, grid: Grid, *, threshold: float | None = 0.5,
                 top_fraction: float | None = None, uncertainty: np.ndarray | None = None,
                 orebodies: gpd.GeoDataFrame | None = None, min_pixels: int = 1,
                 connectivity: int = 8, score: Score = "area_weighted_mean",
                 name_column: str | None = None) -> gpd.GeoDataFrame:
    """Ranked target areas: connected zones of pixels with high P(ore), as polygons.

    Pixels with ``prob >= threshold`` (or, with ``top_fraction = f``, with ``prob`` >= the
    ``1 - f`` quantile of the valid pixels, so about a fraction ``f`` of the valid area; ties
    at the quantile may add a little more) are grouped into connected areas
    (:func:`scipy.ndimage.label`); each area becomes the dissolved union of its exact pixel
    outlines and is ranked I, II, III, ... by decreasing ``score``:

    * ``"area_weighted_mean"`` (default): ``mean_prob * area_share`` where ``area_share`` is
      the area's share of the total target area; equal to ``sum(p_i a_i) / sum_all(a)``, the
      area's part of the expected ore-bearing target area. It favours large, strongly
      prospective areas over single bright pixels.
    * ``"mean"``: mean P(ore); ``"max"``: largest P(ore); ``"area"``: area.

    Ties are broken by max, then mean probability, then position (row-major first pixel).

    Parameters
    ----------
    prob : (rows, cols) array on ``grid``
        P(ore); NaN pixels are never part of a target.
    grid : Grid
        Grid of ``prob``; the polygons are in its CRS and map units.
    threshold, top_fraction : float or None
        Exactly one must be given (pass ``threshold=None`` with ``top_fraction``).
    uncertainty : (rows, cols) array or None
        e.g. the std from :func:`oremap.maps.uncertainty`; its mean per area is reported.
    orebodies : GeoDataFrame or None
        Known orebodies (reprojected to the grid CRS when needed); those intersecting an area
        are counted and named in it.
    min_pixels : int
        Areas with fewer pixels are dropped (counted in a ``DroppedDataWarning``).
    connectivity : {4, 8}
        Pixel neighbourhood joining pixels into one area.
    score : str
        Ranking score, see above.
    name_column : str or None
        Orebody name column; default ``"name"`` when present, else the row index.

    Returns
    -------
    GeoDataFrame
        One row per area, best first, columns :data:`TARGET_COLUMNS` + geometry: ``rank``
        (roman), ``rank_number`` (1, 2, ...), ``score``, ``n_pixels``, ``area`` (squared map
        units), ``area_share``, ``expected_area`` (``mean_prob * area``), ``mean_prob``,
        ``max_prob``, ``mean_uncertainty`` (NaN without ``uncertainty``), ``n_orebodies``,
        ``orebodies`` ("; "-joined names). Empty, with these columns and a
        :class:`NoTargetsWarning`, when no pixel passes the threshold.

    Raises
    ------
    InputDataError
        On both or neither of threshold/top_fraction, values out of range, or shape mismatch.
    UnknownNameError
        On an unknown ``score``.
    """
    p = np.asarray(prob, dtype=np.float64)
    unc = None if uncertainty is None else np.asarray(uncertainty, dtype=np.float64)
    _check_inputs(p, grid, unc, min_pixels, connectivity, score)
    cut = _threshold_of(p, threshold, top_fraction)
    mask = np.isfinite(p) & (p >= cut)
    labels, n = _labels(mask, connectivity, min_pixels)
    if n == 0:
        warnings.warn(f"target_areas: no pixel has P(ore) >= {cut:.4g}; no target areas",
                      NoTargetsWarning, stacklevel=2)
        return _empty(grid)
    index = np.arange(1, n + 1)
    n_pixels = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    area = n_pixels * grid.pixel_area
    table = pd.DataFrame({
        "label": index,
        "n_pixels": n_pixels.astype(np.int64),
        "area": area,
        "area_share": area / area.sum(),
        "mean_prob": ndimage.mean(p, labels, index),
        "max_prob": ndimage.maximum(p, labels, index),
        "mean_uncertainty": (np.full(n, np.nan) if unc is None
                             else ndimage.mean(unc, labels, index)),
    })
    table["expected_area"] = table["mean_prob"] * table["area"]
    table["score"] = _score(table, score)
    order = np.lexsort((table["label"], -table["mean_prob"], -table["max_prob"], -table["score"]))
    table = table.iloc[order].reset_index(drop=True)
    table["rank_number"] = np.arange(1, n + 1, dtype=np.int64)
    table["rank"] = [to_roman(k) for k in table["rank_number"]]
    polygons = _polygons(labels, grid)
    gdf = gpd.GeoDataFrame(table, geometry=[polygons[k] for k in table["label"]], crs=grid.crs)
    gdf["n_orebodies"], gdf["orebodies"] = _orebodies_inside(gdf, orebodies, grid, name_column)
    return gdf[[*TARGET_COLUMNS, "geometry"]]


def _orebodies_inside(gdf: gpd.GeoDataFrame, orebodies: gpd.GeoDataFrame | None, grid: Grid,
                      name_column: str | None) -> tuple[list[int], list[str]]:
    if orebodies is None or len(orebodies) == 0:
        return [0] * len(gdf), [""] * len(gdf)
    ore = to_grid_crs(orebodies, grid, "orebodies")
    column = name_column or ("name" if "name" in ore.columns else None)
    if column is not None and column not in ore.columns:
        raise InputDataError(f"orebodies have no column {column!r}; they have "
                             f"{[c for c in ore.columns if c != ore.geometry.name]}.")
    names = (ore[column] if column else pd.Series(ore.index, index=ore.index)).astype(str)
    counts, joined = [], []
    for geom in gdf.geometry:
        hit = ore.geometry.intersects(geom).to_numpy()
        counts.append(int(hit.sum()))
        joined.append("; ".join(names[hit]))
    return counts, joined


def write_targets(gdf: gpd.GeoDataFrame, path_gpkg: str | os.PathLike,
                  path_csv: str | os.PathLike) -> tuple[Path, Path]:
    """Write target areas as a GeoPackage (polygons) and a CSV table, both atomically.

    The CSV has every column but the geometry, plus the centroid (``x_centroid``,
    ``y_centroid``) and bounds (``xmin``, ``ymin``, ``xmax``, ``ymax``) in map units.
    Returns (gpkg path, csv path).
    """
    table = pd.DataFrame(gdf.drop(columns=gdf.geometry.name))
    if len(gdf):
        centroid = gdf.geometry.centroid
        table["x_centroid"], table["y_centroid"] = centroid.x.to_numpy(), centroid.y.to_numpy()
        bounds = gdf.geometry.bounds
        for name, c in (("xmin", "minx"), ("ymin", "miny"), ("xmax", "maxx"), ("ymax", "maxy")):
            table[name] = bounds[c].to_numpy()
    else:
        for name in ("x_centroid", "y_centroid", "xmin", "ymin", "xmax", "ymax"):
            table[name] = pd.Series(dtype="float64")
    return (io.write_vector(path_gpkg, gdf, layer="targets"), io.write_csv(path_csv, table))


#: ``gid`` of the target labels drawn by :func:`label_targets_on_axes`.
TARGET_LABEL_GID = "oremap-target-label"


def label_targets_on_axes(ax: Any, gdf: gpd.GeoDataFrame, *, outline: bool = True,
                          fontsize: float = 9.0, max_labels: int | None = 20) -> None:
    """Draw target areas on matplotlib axes: dashed outlines and their ``rank`` labels.

    Labels sit at each polygon's representative point (always inside it), bold, on a white
    rounded box; only the best ``max_labels`` areas (by ``rank_number`` when present) are
    labelled, to keep the map legible (``None``: all). ``gdf`` must be in the axes' map
    coordinates.
    """
    if len(gdf) == 0:
        return
    if outline:
        gdf.boundary.plot(ax=ax, color="black", linewidth=1.2, linestyle="--", zorder=4)
    if "rank_number" in gdf.columns:
        gdf = gdf.sort_values("rank_number")
    if max_labels is not None:
        gdf = gdf.head(max_labels)
    for rank, point in zip(gdf["rank"], gdf.geometry.representative_point(), strict=True):
        # placed at the point; oremap.maps moves labels that would cover another label, the
        # north arrow or the scale bar, with a leader line back to the point
        ax.annotate(str(rank), xy=(point.x, point.y), xytext=(0, 0), textcoords="offset points",
                    ha="center", va="center", fontsize=fontsize, fontweight="bold", zorder=7,
                    gid=TARGET_LABEL_GID,
                    bbox={"boxstyle": "round,pad=0.2", "facecolor": "white", "alpha": 0.85,
                          "edgecolor": "black", "linewidth": 0.6},
                    arrowprops={"arrowstyle": "-", "color": "black", "linewidth": 0.7,
                                "shrinkA": 0, "shrinkB": 0})

"""Target areas: connected high-probability zones as ranked polygons (I, II, III, ...)."""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio.features
import shapely
from pyproj import CRS
from scipy import ndimage
from shapely.geometry import shape

from oremap import io
from oremap.errors import CRSMismatchError, DroppedDataWarning, InputDataError
from oremap.grid import Grid
from oremap.maps.colour import area_percentile

__all__ = [
    "RANK_RULE",
    "TARGET_COLUMNS",
    "NoTargetsWarning",
    "target_areas",
    "write_targets",
    "label_targets_on_axes",
    "to_roman",
    "to_grid_crs",
]

log = logging.getLogger("oremap.targets")

#: Columns of :func:`target_areas` (besides ``geometry``), in order.
TARGET_COLUMNS: tuple[str, ...] = (
    "rank", "label", "centroid_x", "centroid_y", "area_ha", "area_pct_of_study_area",
    "mean_prob", "max_prob", "mean_pct", "max_pct", "new_area_ha", "new_mean_pct",
    "known_area_ha", "known_mean_pct", "n_orebodies", "mean_uncertainty", "n_pixels",
    "orebodies",
)

#: How :func:`target_areas` ranks the targets, in words (for reports).
RANK_RULE = (
    "Targets with new ground (ground farther than the known-ground distance from every known "
    "orebody) come first, ranked by the area percentile of the study area that the mean "
    "P(ore) of their new ground reaches; targets lying wholly on known ground follow, ranked "
    "by the area percentile of their mean P(ore). Ties are broken by the area percentile of "
    "the maximum P(ore) (higher first), then by lower mean uncertainty, then by larger area."
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
    for c in ("label", "orebodies"):
        data[c] = pd.Series(dtype="object")
    for c in ("rank", "n_pixels", "n_orebodies"):
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
                  connectivity: int, known_distance: float) -> None:
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
    if not (np.isfinite(known_distance) and known_distance >= 0):
        raise InputDataError(f"known_distance must be a finite distance >= 0 in map units; got "
                             f"{known_distance}.")


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


def _orebody_geometries(orebodies: gpd.GeoDataFrame | None, grid: Grid,
                        name_column: str | None) -> tuple[np.ndarray, np.ndarray]:
    """The orebodies' non-empty geometries in the grid CRS and their names (as str)."""
    if orebodies is None or len(orebodies) == 0:
        return np.array([], dtype=object), np.array([], dtype=object)
    ore = to_grid_crs(orebodies, grid, "orebodies")
    column = name_column or ("name" if "name" in ore.columns else None)
    if column is not None and column not in ore.columns:
        raise InputDataError(f"orebodies have no column {column!r}; they have "
                             f"{[c for c in ore.columns if c != ore.geometry.name]}.")
    names = (ore[column] if column else pd.Series(ore.index, index=ore.index)).astype(str)
    geoms = ore.geometry.to_numpy()
    keep = ~(shapely.is_missing(geoms) | shapely.is_empty(geoms))
    return geoms[keep], names.to_numpy()[keep]


def _known_ground(mask: np.ndarray, geoms: np.ndarray, grid: Grid, distance: float) -> np.ndarray:
    """Pixels of ``mask`` whose centre lies within ``distance`` of an orebody (boundary in).

    Candidates are the pixels touched by the orebodies buffered a little beyond ``distance``
    (a raster pass, cheap on any map); only their centres are tested exactly.
    """
    known = np.zeros(mask.shape, bool)
    if geoms.size == 0 or not mask.any():
        return known
    pad = 1.01 * distance + 1e-6 * min(grid.pixel_size)
    touched = rasterio.features.rasterize(
        ((g, 1) for g in shapely.buffer(geoms, pad)), out_shape=grid.shape,
        transform=grid.transform, all_touched=True, fill=0, dtype=np.uint8).astype(bool)
    rows, cols = np.nonzero(touched & mask)
    if rows.size:
        x, y = rasterio.transform.xy(grid.transform, rows, cols, offset="center")
        near = shapely.dwithin(shapely.points(x, y), shapely.union_all(geoms), distance)
        known[rows[near], cols[near]] = True
    return known


def _hectares_per_unit2(grid: Grid) -> float:
    """Hectares per squared map unit; NaN (logged) for a geographic CRS."""
    info = grid.crs.axis_info
    if grid.crs.is_geographic or not info or not info[0].unit_conversion_factor:
        log.warning("target areas: the grid CRS %s is not projected; area_ha is NaN",
                    grid.crs.to_string())
        return float("nan")
    return float(info[0].unit_conversion_factor) ** 2 / 1e4


def _part_means(values: np.ndarray, labels: np.ndarray, part: np.ndarray,
                n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per label 1..n: pixel count of ``part`` and the mean of the finite ``values`` there
    (NaN where none), kept within the part's range so that the mean of equal values is that
    value exactly (a rounding error would move its area percentile past the tied pixels)."""
    lab = labels[part]
    count = np.bincount(lab, minlength=n + 1)[1:]
    v = values[part]
    ok = np.isfinite(v)
    lab, v = lab[ok], v[ok]
    total = np.bincount(lab, weights=v, minlength=n + 1)[1:]
    finite = np.bincount(lab, minlength=n + 1)[1:]
    lo, hi = np.full(n + 1, np.inf), np.full(n + 1, -np.inf)
    np.minimum.at(lo, lab, v)
    np.maximum.at(hi, lab, v)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(finite > 0, total / finite, np.nan)
    return count, np.clip(mean, lo[1:], hi[1:])


def target_areas(prob: np.ndarray, grid: Grid, *, threshold: float | None = 0.5,
                 top_fraction: float | None = None, uncertainty: np.ndarray | None = None,
                 orebodies: gpd.GeoDataFrame | None = None, min_pixels: int = 1,
                 connectivity: int = 8, known_distance: float | None = None,
                 name_column: str | None = None) -> gpd.GeoDataFrame:
    """Ranked target areas: connected zones of pixels with high P(ore), as polygons, each split
    into known ground and new ground.

    Pixels with ``prob >= threshold`` (or, with ``top_fraction = f``, with ``prob`` >= the
    ``1 - f`` quantile of the valid pixels, so about a fraction ``f`` of the valid area; ties
    at the quantile may add a little more) are grouped into connected areas
    (:func:`scipy.ndimage.label`); each area becomes the dissolved union of its exact pixel
    outlines.

    **Known and new ground.** A target pixel is *known ground* when its centre lies within
    ``known_distance`` (map units, boundary included) of a known orebody, i.e. inside the
    orebodies' buffer; the target's other pixels are its *new ground*. ``known_distance``
    defaults (``None``) to the larger of the grid's pixel width and height, one cell of the
    map: a target pixel holding or next to an orebody is known ground.

    **Percentiles.** ``mean_pct`` is the area percentile of the study area (the finite
    pixels of ``prob``) that the target's mean P(ore) reaches, i.e. the share in % of the
    study area with lower P(ore) (:func:`oremap.maps.colour.area_percentile`); likewise
    ``max_pct`` for its largest P(ore), ``new_mean_pct`` and ``known_mean_pct`` for the mean
    P(ore) of its new and known ground.

    **Ranking** (:data:`RANK_RULE`): targets with new ground first, by decreasing
    ``new_mean_pct``; then targets wholly on known ground, by decreasing ``mean_pct``. Ties
    are broken by higher ``max_pct``, then lower ``mean_uncertainty`` (NaN last), then larger
    area, then position (row-major first pixel). Ranks are 1, 2, ... with labels I, II, ...

    Parameters
    ----------
    prob : (rows, cols) array on ``grid``
        P(ore); NaN pixels are outside the study area and never part of a target.
    grid : Grid
        Grid of ``prob``; the polygons and centroids are in its CRS and map units.
    threshold, top_fraction : float or None
        Exactly one must be given (pass ``threshold=None`` with ``top_fraction``).
    uncertainty : (rows, cols) array or None
        e.g. the rank uncertainty from :func:`oremap.maps.rank_uncertainty`; its mean (over
        its finite pixels) per target is reported and breaks ranking ties.
    orebodies : GeoDataFrame or None
        Known orebodies (reprojected to the grid CRS when needed): they make known ground;
        those that make a target's known ground (within ``known_distance`` of one of its
        pixel centres) are counted and named in it, so ``n_orebodies > 0`` exactly when
        ``known_area_ha > 0``.
    min_pixels : int
        Areas with fewer pixels are dropped (counted in a ``DroppedDataWarning``).
    connectivity : {4, 8}
        Pixel neighbourhood joining pixels into one area.
    known_distance : float or None
        Distance (map units, >= 0) from a known orebody within which ground is known; None:
        the larger of the grid's pixel width and height.
    name_column : str or None
        Orebody name column; default ``"name"`` when present, else the row index.

    Returns
    -------
    GeoDataFrame
        One row per area, best first, columns :data:`TARGET_COLUMNS` + geometry: ``rank``
        (1, 2, ...), ``label`` (I, II, ...), ``centroid_x``, ``centroid_y`` (the polygon's
        centroid in the grid CRS), ``area_ha`` (hectares; NaN for a geographic CRS),
        ``area_pct_of_study_area`` (% of the finite pixels of ``prob``), ``mean_prob``,
        ``max_prob``, ``mean_pct``, ``max_pct``, ``new_area_ha``, ``new_mean_pct``,
        ``known_area_ha``, ``known_mean_pct`` (NaN where that part is empty),
        ``n_orebodies``, ``mean_uncertainty`` (NaN without ``uncertainty``), ``n_pixels``,
        ``orebodies`` ("; "-joined names). Empty, with these columns and a
        :class:`NoTargetsWarning`, when no pixel passes the threshold.

    Raises
    ------
    InputDataError
        On both or neither of threshold/top_fraction, values out of range, or shape mismatch.
    """
    p = np.asarray(prob, dtype=np.float64)
    unc = None if uncertainty is None else np.asarray(uncertainty, dtype=np.float64)
    distance = float(max(grid.pixel_size) if known_distance is None else known_distance)
    _check_inputs(p, grid, unc, min_pixels, connectivity, distance)
    cut = _threshold_of(p, threshold, top_fraction)
    mask = np.isfinite(p) & (p >= cut)
    labels, n = _labels(mask, connectivity, min_pixels)
    if n == 0:
        warnings.warn(f"target_areas: no pixel has P(ore) >= {cut:.4g}; no target areas",
                      NoTargetsWarning, stacklevel=2)
        return _empty(grid)
    index = np.arange(1, n + 1)
    inside = labels > 0
    geoms, names = _orebody_geometries(orebodies, grid, name_column)
    known = _known_ground(inside, geoms, grid, distance)
    n_pixels, mean_prob = _part_means(p, labels, inside, n)
    n_new, new_mean = _part_means(p, labels, inside & ~known, n)
    n_known, known_mean = _part_means(p, labels, known, n)
    max_prob = np.asarray(ndimage.maximum(p, labels, index), dtype=np.float64)
    pct = area_percentile(np.concatenate([mean_prob, max_prob, new_mean, known_mean]), of=p)
    mean_pct, max_pct, new_pct, known_pct = np.split(pct, 4)
    ha = grid.pixel_area * _hectares_per_unit2(grid)
    table = pd.DataFrame({
        "id": index,
        "area_ha": n_pixels * ha,
        "area_pct_of_study_area": 100.0 * n_pixels / int(np.isfinite(p).sum()),
        "mean_prob": mean_prob,
        "max_prob": max_prob,
        "mean_pct": mean_pct,
        "max_pct": max_pct,
        "new_area_ha": n_new * ha,
        "new_mean_pct": new_pct,
        "known_area_ha": n_known * ha,
        "known_mean_pct": known_pct,
        "mean_uncertainty": (np.full(n, np.nan) if unc is None
                             else _part_means(unc, labels, inside, n)[1]),
        "n_pixels": n_pixels.astype(np.int64),
    })
    has_new = n_new > 0
    order = np.lexsort((
        table["id"], -n_pixels, np.nan_to_num(table["mean_uncertainty"], nan=np.inf),
        -max_pct, -np.where(has_new, new_pct, mean_pct), ~has_new))
    table = table.iloc[order].reset_index(drop=True)
    table["rank"] = np.arange(1, n + 1, dtype=np.int64)
    table["label"] = [to_roman(k) for k in table["rank"]]
    outlines = _polygons(labels, grid)
    polygons = [outlines[k] for k in table["id"]]
    centroids = shapely.centroid(np.asarray(polygons, dtype=object))
    table["centroid_x"] = shapely.get_x(centroids).astype(np.float64)
    table["centroid_y"] = shapely.get_y(centroids).astype(np.float64)
    table["n_orebodies"], table["orebodies"] = _orebodies_near(
        table["id"].to_numpy(), labels, known, grid, geoms, names, distance)
    gdf = gpd.GeoDataFrame(table, geometry=polygons, crs=grid.crs)
    return gdf[[*TARGET_COLUMNS, "geometry"]]


def _orebodies_near(ids: np.ndarray, labels: np.ndarray, known: np.ndarray, grid: Grid,
                    geoms: np.ndarray, names: np.ndarray,
                    distance: float) -> tuple[list[int], list[str]]:
    """Per target: the orebodies that make its known ground (within ``distance`` of one of
    its known pixels' centres): how many, and their names."""
    counts, joined = [], []
    rows, cols = np.nonzero(known)
    xs, ys = rasterio.transform.xy(grid.transform, rows, cols, offset="center")
    xs, ys, owner = np.asarray(xs, float), np.asarray(ys, float), labels[rows, cols]
    for k in ids:
        here = owner == k
        if not here.any():
            counts.append(0)
            joined.append("")
            continue
        hit = shapely.dwithin(geoms, shapely.multipoints(shapely.points(xs[here], ys[here])),
                              distance)
        counts.append(int(hit.sum()))
        joined.append("; ".join(names[hit]))
    return counts, joined


def write_targets(gdf: gpd.GeoDataFrame, path_gpkg: str | os.PathLike,
                  path_csv: str | os.PathLike) -> tuple[Path, Path]:
    """Write target areas as a GeoPackage (polygons) and a CSV table, both atomically.

    The CSV has every column but the geometry (the centroid is ``centroid_x``,
    ``centroid_y``), plus the bounds (``xmin``, ``ymin``, ``xmax``, ``ymax``) in map units.
    Returns (gpkg path, csv path).
    """
    table = pd.DataFrame(gdf.drop(columns=gdf.geometry.name))
    if len(gdf):
        bounds = gdf.geometry.bounds
        for name, c in (("xmin", "minx"), ("ymin", "miny"), ("xmax", "maxx"), ("ymax", "maxy")):
            table[name] = bounds[c].to_numpy()
    else:
        for name in ("xmin", "ymin", "xmax", "ymax"):
            table[name] = pd.Series(dtype="float64")
    return (io.write_vector(path_gpkg, gdf, layer="targets"), io.write_csv(path_csv, table))


#: ``gid`` of the target labels drawn by :func:`label_targets_on_axes`.
TARGET_LABEL_GID = "oremap-target-label"


def label_targets_on_axes(ax: Any, gdf: gpd.GeoDataFrame, *, outline: bool = True,
                          fontsize: float = 9.0, max_labels: int | None = 20) -> None:
    """Draw target areas on matplotlib axes: dashed outlines and their ``rank`` labels.

    Labels sit at each polygon's representative point (always inside it), bold, on a white
    rounded box; only the best ``max_labels`` areas (by ``rank`` when labelled) are
    labelled, to keep the map legible (``None``: all). ``gdf`` must be in the axes' map
    coordinates. The text is the ``label`` column (I, II, ...), or ``rank`` without one.
    """
    if len(gdf) == 0:
        return
    if outline:
        gdf.boundary.plot(ax=ax, color="black", linewidth=1.2, linestyle="--", zorder=4)
    text = "label" if "label" in gdf.columns else "rank"
    if "rank" in gdf.columns:
        gdf = gdf.sort_values("rank")
    if max_labels is not None:
        gdf = gdf.head(max_labels)
    for rank, point in zip(gdf[text], gdf.geometry.representative_point(), strict=True):
        # placed at the point; oremap.maps moves labels that would cover another label, the
        # north arrow or the scale bar, with a leader line back to the point
        ax.annotate(str(rank), xy=(point.x, point.y), xytext=(0, 0), textcoords="offset points",
                    ha="center", va="center", fontsize=fontsize, fontweight="bold", zorder=7,
                    gid=TARGET_LABEL_GID,
                    bbox={"boxstyle": "round,pad=0.2", "facecolor": "white", "alpha": 0.85,
                          "edgecolor": "black", "linewidth": 0.6},
                    arrowprops={"arrowstyle": "-", "color": "black", "linewidth": 0.7,
                                "shrinkA": 0, "shrinkB": 0})

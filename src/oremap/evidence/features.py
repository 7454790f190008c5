"""Geological evidence from mapped features: distance, density and buffer density rasters.

All measures are in the map units of the grid's CRS and are computed window by window; a
window's result equals the same pixels of the whole-grid result (up to FFT round-off for the
two density measures), because each window reads features from a halo of
``ceil(radius / pixel)`` pixels around it, including features outside the grid.

Exact pixel quantities used here:

- *line length per pixel*: every segment is cut at the pixel edges it crosses (parametric
  clipping), so each piece lies in one pixel; the per-pixel lengths sum to the true length.
- *polygon area per pixel*: exact area of the (dissolved) polygons inside each pixel, from
  the same pieces of the polygon rings by signed-area accumulation along rows (Green's theorem,
  as in anti-aliased polygon rasterisers).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import shapely
from rasterio.windows import Window
from scipy import ndimage, signal
from shapely.geometry.base import BaseGeometry

from oremap.errors import DroppedDataWarning, InputDataError, UnknownNameError
from oremap.grid import Grid
from oremap.io import drop_zero_length_lines

__all__ = [
    "MEASURES",
    "FeatureSet",
    "buffer_density_map",
    "centres_inside",
    "check_radius",
    "density_map",
    "distance_map",
    "drop_zero_length_lines",
    "kernel",
    "line_length_raster",
    "measure_map",
    "measure_units",
    "polygon_area_raster",
    "prepare_features",
    "rasterise_features",
]

log = logging.getLogger("oremap.evidence")

Measure = Literal["distance", "density", "buffer_density"]
MEASURES: tuple[str, ...] = ("distance", "density", "buffer_density")

_TILE = 32  # pixels per side of the tiles of the exact distance search
_PAIR_PIXELS = 1 << 21  # (tile, segment) x pixel evaluations held at once by distance_map


@dataclass(frozen=True, eq=False)
class FeatureSet:
    """Mapped features prepared for rasterising, in the grid's CRS.

    Attributes
    ----------
    source : str
        Names the file and config key, used in messages.
    kind : {"lines", "polygons", "mixed", "points"}
        What the features are; the density measures need "lines" or "polygons".
    segments : (s, 4) float64 array
        x0, y0, x1, y1 of every line segment, polygon ring edge and (degenerate) point.
    polygons : shapely geometry or None
        The dissolved polygons (exteriors counter-clockwise), or None.
    ring_segments : (r, 4) float64 array
        Edges of the rings of ``polygons``, oriented, for exact area rasterising.
    tree : shapely.STRtree
        Index of ``segments`` for the nearest-feature search.
    n_used, n_dropped, n_repaired : int
        Input geometries kept, dropped (missing, empty or zero-length lines) and repaired
        with ``make_valid``.
    """

    source: str
    kind: str
    segments: np.ndarray
    polygons: BaseGeometry | None
    ring_segments: np.ndarray
    tree: shapely.STRtree
    n_used: int = 0
    n_dropped: int = 0
    n_repaired: int = 0

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(xmin, ymin, xmax, ymax) of all features, map units."""
        s = self.segments
        return (float(min(s[:, 0].min(), s[:, 2].min())), float(min(s[:, 1].min(),
                s[:, 3].min())), float(max(s[:, 0].max(), s[:, 2].max())),
                float(max(s[:, 1].max(), s[:, 3].max())))

    @property
    def total_length(self) -> float:
        """Total length of the line features, map units (0 for polygons and points)."""
        if self.kind != "lines":
            return 0.0
        s = self.segments
        return float(np.hypot(s[:, 2] - s[:, 0], s[:, 3] - s[:, 1]).sum())


def prepare_features(geometries: Sequence[BaseGeometry] | FeatureSet, *,
                     source: str = "geometries") -> FeatureSet:
    """Check, repair and index features for the measures of this module.

    Missing and empty geometries are dropped, then zero-length lines (all vertices at one
    point, common in digitised fault maps; see :func:`drop_zero_length_lines`), then invalid
    geometries are repaired with ``make_valid`` (each step counted in a
    :class:`DroppedDataWarning`); collections are split into their parts. Polygons are
    dissolved, so overlapping polygons count their shared area once.

    Parameters
    ----------
    geometries : sequence of shapely geometries, or a FeatureSet (returned unchanged)
        Points, lines and/or polygons in the grid's CRS.
    source : str
        Names the file and config key, used in messages.

    Returns
    -------
    FeatureSet

    Raises
    ------
    InputDataError
        If an item is not a shapely geometry or no usable geometry remains.
    """
    if isinstance(geometries, FeatureSet):
        return geometries
    geoms = list(geometries)
    bad = [i for i, g in enumerate(geoms) if g is not None and not isinstance(g, BaseGeometry)]
    if bad:
        raise InputDataError(
            f"{source}: item {bad[0]} is a {type(geoms[bad[0]]).__name__}, not a shapely "
            "geometry; read the layer with oremap.io.read_vector.")
    arr = np.array(geoms, dtype=object)
    usable = np.array([g is not None for g in geoms], dtype=bool)
    if usable.any():
        usable[usable] = ~shapely.is_empty(arr[usable])
    if (~usable).sum():
        warnings.warn(f"{source}: dropped {int((~usable).sum())} missing or empty geometries",
                      DroppedDataWarning, stacklevel=2)
    arr = arr[usable]
    if len(arr) == 0:
        raise InputDataError(f"{source}: no usable geometry (all {len(geoms)} are missing or "
                             "empty); check the file and layer name.")
    arr, _, n_zero = drop_zero_length_lines(arr)
    if n_zero:
        warnings.warn(f"{source}: dropped {n_zero} zero-length line(s) (all vertices at one "
                      "point)", DroppedDataWarning, stacklevel=2)
    if len(arr) == 0:
        others = len(geoms) - int(usable.sum())
        raise InputDataError(
            f"{source}: no usable geometry ({int(usable.sum())} zero-length lines, every "
            "vertex at one point" + (f", and {others} missing or empty" if others else "")
            + "); check the file and layer name.")
    invalid = ~shapely.is_valid(arr)
    if invalid.any():
        warnings.warn(f"{source}: repaired {int(invalid.sum())} invalid geometries with "
                      "make_valid", DroppedDataWarning, stacklevel=2)
        arr[invalid] = shapely.make_valid(arr[invalid])
    fs = _index(_explode(arr), source)
    return dataclasses.replace(fs, n_used=len(arr), n_dropped=len(geoms) - len(arr),
                               n_repaired=int(invalid.sum()))


def _explode(arr: np.ndarray) -> np.ndarray:
    """Single-part, non-empty geometries from any mix of multi-parts and collections."""
    parts = shapely.get_parts(arr)
    while True:
        types = shapely.get_type_id(parts)
        nested = (types >= 4) & (types <= 7)
        if not nested.any():
            break
        parts = np.concatenate([parts[~nested], shapely.get_parts(parts[nested])])
    return parts[~shapely.is_empty(parts)]


def _index(parts: np.ndarray, source: str) -> FeatureSet:
    types = shapely.get_type_id(parts)
    points, lines, polys = parts[types == 0], parts[(types == 1) | (types == 2)], parts[
        types == 3]
    kinds = [k for k, a in (("points", points), ("lines", lines), ("polygons", polys)) if len(a)]
    kind = kinds[0] if len(kinds) == 1 else "mixed"
    dissolved = None
    ring_segs = np.empty((0, 4))
    if len(polys):
        dissolved = shapely.orient_polygons(shapely.union_all(polys), exterior_cw=False)
        ring_segs = _segments(shapely.get_rings(_explode(np.array([dissolved]))))
    segs = [_segments(lines), ring_segs]
    if len(points):
        xy = shapely.get_coordinates(points)
        segs.append(np.column_stack([xy, xy]))
    segments = np.concatenate(segs)
    tree = shapely.STRtree(_segment_geoms(segments))
    log.debug("%s: %d segments (%s)", source, len(segments), kind)
    return FeatureSet(source, kind, segments, dissolved, ring_segs, tree)


def _segments(lines: np.ndarray) -> np.ndarray:
    """(s, 4) consecutive-vertex segments of line strings / rings."""
    if len(lines) == 0:
        return np.empty((0, 4))
    coords, owner = shapely.get_coordinates(lines, return_index=True)
    same = owner[1:] == owner[:-1]
    return np.column_stack([coords[:-1][same], coords[1:][same]])


def _segment_geoms(seg: np.ndarray) -> np.ndarray:
    degenerate = (seg[:, 0] == seg[:, 2]) & (seg[:, 1] == seg[:, 3])
    out = np.empty(len(seg), dtype=object)
    out[~degenerate] = shapely.linestrings(seg[~degenerate].reshape(-1, 2, 2))
    out[degenerate] = shapely.points(seg[degenerate, :2])
    return out


# --------------------------------------------------------------------------- masks


def centres_inside(geometry: BaseGeometry, grid: Grid, window: Window | None = None
                   ) -> np.ndarray:
    """Pixels of ``window`` whose centre lies in ``geometry`` or on its boundary.

    Exact scan-line test: each row's line of centres is intersected with the geometry and
    the columns whose centre falls in the resulting intervals are set.

    Parameters
    ----------
    geometry : shapely geometry
        Usually a (multi)polygon, in the grid's CRS.
    grid, window : Grid, rasterio Window or None
        The pixels tested; default the whole grid.

    Returns
    -------
    (h, w) bool array
    """
    r0, c0, h, w = _window(grid, window)
    out = np.zeros((h, w), dtype=bool)
    if geometry is None or geometry.is_empty:
        return out
    dx, dy = grid.pixel_size
    x_lo, x_hi = grid.bounds[0] + c0 * dx - dx, grid.bounds[0] + (c0 + w) * dx + dx
    ys = grid.row_centres(r0, h)
    gx0, gy0, gx1, gy1 = geometry.bounds
    rows = np.flatnonzero((ys >= gy0) & (ys <= gy1))
    if len(rows) == 0 or gx1 < x_lo or gx0 > x_hi:
        return out
    lines = shapely.linestrings(np.stack([np.column_stack([np.full(len(rows), x_lo), ys[rows]]),
                                          np.column_stack([np.full(len(rows), x_hi),
                                                           ys[rows]])], axis=1))
    shapely.prepare(geometry)
    cut = shapely.intersection(lines, geometry)
    parts, idx = shapely.get_parts(cut, return_index=True)
    filled = ~shapely.is_empty(parts)
    parts, idx = parts[filled], idx[filled]
    if len(parts) == 0:
        return out
    b = shapely.bounds(parts)
    start = np.ceil((b[:, 0] - grid.bounds[0]) / dx - 0.5).astype(np.int64) - c0
    stop = np.floor((b[:, 2] - grid.bounds[0]) / dx - 0.5).astype(np.int64) - c0 + 1
    start, stop = np.clip(start, 0, w), np.clip(stop, 0, w)
    ok = stop > start
    diff = np.zeros((h, w + 1), dtype=np.int64)
    np.add.at(diff, (rows[idx[ok]], start[ok]), 1)
    np.add.at(diff, (rows[idx[ok]], stop[ok]), -1)
    return np.cumsum(diff, axis=1)[:, :w] > 0


def _window(grid: Grid, window: Window | None) -> tuple[int, int, int, int]:
    if window is None:
        return 0, 0, grid.height, grid.width
    return int(window.row_off), int(window.col_off), int(window.height), int(window.width)


# --------------------------------------------------------------------------- distance


def distance_map(features: Sequence[BaseGeometry] | FeatureSet, grid: Grid, *,
                 window: Window | None = None) -> np.ndarray:
    """Exact Euclidean distance from each pixel centre to the nearest feature.

    ``D(p) = min_f dist(p, f)`` over all features ``f``: line features and the boundaries of
    polygons (and points), with ``D = 0`` at centres inside or on a polygon. The search is
    exact: for each tile of 32 x 32 pixels with centre ``c`` and half-diagonal ``h``, only the
    segments ``s`` with ``dist(c, s) <= D(c) + 2h`` can be nearest to a pixel of the tile; the
    point-to-segment distances to those are evaluated for every pixel.

    Parameters
    ----------
    features : sequence of shapely geometries or FeatureSet
        In the grid's CRS.
    grid : Grid
        Target grid.
    window : rasterio Window or None
        Part of the grid to compute; default the whole grid.

    Returns
    -------
    (h, w) float64 array
        Distances in map units, >= 0.
    """
    fs = prepare_features(features)
    r0, c0, h, w = _window(grid, window)
    dx, dy = grid.pixel_size
    nty, ntx = -(-h // _TILE), -(-w // _TILE)
    ty, tx = np.meshgrid(np.arange(nty), np.arange(ntx), indexing="ij")
    xc = grid.bounds[0] + (c0 + tx.ravel() * _TILE + _TILE / 2) * dx
    yc = grid.bounds[3] - (r0 + ty.ravel() * _TILE + _TILE / 2) * dy
    centres = shapely.points(xc, yc)
    half = 0.5 * math.hypot(_TILE * dx, _TILE * dy)
    (which, _), dist = fs.tree.query_nearest(centres, return_distance=True, all_matches=False)
    dmin = np.empty(len(centres))
    dmin[which] = dist
    reach = (dmin + 2 * half) * (1 + 1e-9) + 1e-9 * half
    tile_of, seg = fs.tree.query(centres, predicate="dwithin", distance=reach)
    order = np.lexsort((seg, tile_of))
    tile_of, seg = tile_of[order], seg[order]
    d2 = _tile_distances(fs.segments, seg, tile_of, xc, yc, dx, dy, len(centres))
    full = d2.reshape(nty, ntx, _TILE, _TILE).transpose(0, 2, 1, 3).reshape(
        nty * _TILE, ntx * _TILE)[:h, :w]
    out = np.sqrt(full)
    if fs.polygons is not None:
        out[centres_inside(fs.polygons, grid, Window(c0, r0, w, h))] = 0.0
    return out


def _tile_distances(segments: np.ndarray, seg: np.ndarray, tile_of: np.ndarray,
                    xc: np.ndarray, yc: np.ndarray, dx: float, dy: float,
                    n_tiles: int) -> np.ndarray:
    """Min squared distance per tile pixel over the (tile, segment) pairs; (n_tiles, T*T).

    ``tile_of`` must be sorted. The pairs are taken by their rank within their tile (every
    tile's first candidate, then every tile's second, ...), so each pass updates each tile at
    most once with a plain elementwise minimum. The pixel offsets ``q`` from a segment's
    start are terms of the pixel's row or column alone, broadcast over the tile; the squared
    distance is ``|q - u v|^2`` with ``u`` the clamped projection on the segment ``v``
    (no cancellation: exact to round-off whatever the coordinates).
    """
    off = (np.arange(_TILE) + 0.5 - _TILE / 2)
    px, py = off * dx, -off * dy  # pixel offsets from the tile centre: columns, rows
    out = np.full((n_tiles, _TILE, _TILE), np.inf)
    starts = np.flatnonzero(np.r_[True, tile_of[1:] != tile_of[:-1]]) if len(seg) else \
        np.zeros(0, np.intp)
    rank = np.arange(len(seg)) - np.repeat(starts, np.diff(np.r_[starts, len(seg)]))
    by_rank = np.argsort(rank, kind="stable")
    bounds = np.searchsorted(rank[by_rank], np.arange(int(rank.max(initial=-1)) + 2))
    chunk = max(1, _PAIR_PIXELS // (_TILE * _TILE))
    for r in range(len(bounds) - 1):
        for lo in range(bounds[r], bounds[r + 1], chunk):
            pick = by_rank[lo:min(lo + chunk, bounds[r + 1])]
            t, sg = tile_of[pick], segments[seg[pick]]
            vx, vy = sg[:, 2] - sg[:, 0], sg[:, 3] - sg[:, 1]
            len2 = vx * vx + vy * vy
            inv = np.where(len2 > 0, 1.0 / np.where(len2 > 0, len2, 1.0), 0.0)
            qx = px[None, :] - (sg[:, 0] - xc[t])[:, None]  # (pairs, columns)
            qy = py[None, :] - (sg[:, 1] - yc[t])[:, None]  # (pairs, rows)
            dot = np.add((qy * vy[:, None])[:, :, None], (qx * vx[:, None])[:, None, :])
            u = np.multiply(dot, inv[:, None, None])
            np.clip(u, 0.0, 1.0, out=u)
            # the offset from the nearest point of the segment, without cancellation
            ex = np.multiply(u, -vx[:, None, None], out=dot)
            ex += qx[:, None, :]
            d2 = np.square(ex, out=ex)
            ey = np.multiply(u, -vy[:, None, None], out=u)
            ey += qy[:, :, None]
            d2 += np.square(ey, out=ey)
            out[t] = np.minimum(out[t], d2, out=d2)
    return out.reshape(n_tiles, _TILE * _TILE)


# --------------------------------------------------------------------------- rasterising


def _to_pixels(seg: np.ndarray, grid: Grid) -> np.ndarray:
    """Segments in fractional (col, row) pixel coordinates: u right, v down."""
    dx, dy = grid.pixel_size
    u = (seg[:, [0, 2]] - grid.bounds[0]) / dx
    v = (grid.bounds[3] - seg[:, [1, 3]]) / dy
    return np.column_stack([u[:, 0], v[:, 0], u[:, 1], v[:, 1]])


def _pieces(px: np.ndarray, r_lo: int, r_hi: int, c_lo: int, c_hi: int, keep_left: bool
            ) -> tuple[np.ndarray, ...]:
    """Cut segments (pixel coords) at pixel edges inside rows [r_lo, r_hi), cols < c_hi.

    Columns < ``c_lo`` are dropped, or kept unsplit (``keep_left``) for the area accumulation.
    Returns ``(seg, ta, tb, row, col)``: the segment index, the piece's parameter range in
    [0, 1] and the pixel holding it (``col < c_lo`` marks a kept left piece).
    """
    u0, v0, u1, v1 = px.T
    du, dv = u1 - u0, v1 - v0
    tlo, thi = np.zeros(len(px)), np.ones(len(px))
    tlo, thi = _clip_axis(v0, dv, r_lo, r_hi, tlo, thi)
    tlo, thi = _clip_axis(u0, du, -np.inf if keep_left else c_lo, c_hi, tlo, thi)
    live = np.flatnonzero(thi > tlo)
    u0, v0, du, dv, tlo, thi = u0[live], v0[live], du[live], dv[live], tlo[live], thi[live]
    seg_ids, ts = [live, live], [tlo, thi]
    for a0, da, lo, hi in ((u0, du, c_lo, c_hi), (v0, dv, r_lo, r_hi)):
        ea, eb = a0 + tlo * da, a0 + thi * da
        k0 = np.maximum(np.floor(np.minimum(ea, eb)) + 1, lo)
        k1 = np.minimum(np.ceil(np.maximum(ea, eb)) - 1, hi - 1)
        n = np.maximum(k1 - k0 + 1, 0).astype(np.int64)
        which = np.repeat(np.arange(len(live)), n)
        k = k0[which] + (np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n))
        seg_ids.append(live[which])
        ts.append((k - a0[which]) / da[which])
    seg_all, t_all = np.concatenate(seg_ids), np.concatenate(ts)
    order = np.lexsort((t_all, seg_all))
    seg_all, t_all = seg_all[order], t_all[order]
    same = (seg_all[1:] == seg_all[:-1]) & (t_all[1:] > t_all[:-1])
    seg, ta, tb = seg_all[:-1][same], t_all[:-1][same], t_all[1:][same]
    tm = 0.5 * (ta + tb)
    row = np.floor(px[seg, 1] + tm * (px[seg, 3] - px[seg, 1])).astype(np.int64)
    col = np.floor(px[seg, 0] + tm * (px[seg, 2] - px[seg, 0])).astype(np.int64)
    keep = (row >= r_lo) & (row < r_hi) & (col < c_hi) & (keep_left | (col >= c_lo))
    return seg[keep], ta[keep], tb[keep], row[keep], col[keep]


def _clip_axis(a0: np.ndarray, da: np.ndarray, lo: float, hi: float, tlo: np.ndarray,
               thi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Liang-Barsky: restrict t so that lo <= a0 + t da <= hi."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t1, t2 = (lo - a0) / da, (hi - a0) / da
    flat = da == 0
    inside = (a0 >= lo) & (a0 <= hi)
    enter = np.where(flat, np.where(inside, -np.inf, np.inf), np.minimum(t1, t2))
    leave = np.where(flat, np.where(inside, np.inf, -np.inf), np.maximum(t1, t2))
    return np.maximum(tlo, enter), np.minimum(thi, leave)


def line_length_raster(segments: np.ndarray, grid: Grid, r0: int, c0: int, h: int,
                       w: int) -> np.ndarray:
    """Exact length (map units) of ``segments`` (s, 4) inside each pixel of a block.

    The block is rows ``r0 .. r0 + h - 1`` and columns ``c0 .. c0 + w - 1`` of ``grid``'s
    pixel lattice; offsets may be negative or run past the grid (halo). Returns (h, w).
    """
    out = np.zeros(h * w)
    if len(segments):
        dx, dy = grid.pixel_size
        seg, ta, tb, row, col = _pieces(_to_pixels(segments, grid), r0, r0 + h, c0, c0 + w,
                                        keep_left=False)
        length = np.hypot(segments[:, 2] - segments[:, 0], segments[:, 3] - segments[:, 1])
        out += np.bincount((row - r0) * w + (col - c0), weights=(tb - ta) * length[seg],
                           minlength=h * w)
    return out.reshape(h, w)


def polygon_area_raster(ring_segments: np.ndarray, grid: Grid, r0: int, c0: int, h: int,
                        w: int) -> np.ndarray:
    """Exact area (squared map units) of the polygons with these oriented rings per pixel.

    Signed-area accumulation: a ring piece in pixel (r, c) spanning ``dv`` rows at mean column
    ``u`` adds ``dv * (c + 1 - u)`` to (r, c) and ``dv * (u - c)`` to (r, c + 1); the running
    sum along each row is then the covered fraction of each pixel. Pieces left of the block
    add their whole ``dv`` to its first column. Rings must not overlap (dissolved polygons).
    """
    if len(ring_segments) == 0:
        return np.zeros((h, w))
    px = _to_pixels(ring_segments, grid)
    seg, ta, tb, row, col = _pieces(px, r0, r0 + h, c0, c0 + w, keep_left=True)
    dv = (tb - ta) * (px[seg, 3] - px[seg, 1])
    um = px[seg, 0] + 0.5 * (ta + tb) * (px[seg, 2] - px[seg, 0])
    left = col < c0
    acc = np.zeros((h, w + 1))
    flat = acc.reshape(-1)
    base = (row - r0) * (w + 1)
    inner = ~left
    np.add.at(flat, base[left], dv[left])
    np.add.at(flat, base[inner] + col[inner] - c0, dv[inner] * (col[inner] + 1 - um[inner]))
    np.add.at(flat, base[inner] + col[inner] - c0 + 1, dv[inner] * (um[inner] - col[inner]))
    cover = np.clip(np.abs(np.cumsum(acc, axis=1)[:, :w]), 0.0, 1.0)
    # the running sums leave round-off (~1e-16) in empty or full pixels: snap it, so that the
    # result does not depend on where a window starts
    cover[cover < 1e-12] = 0.0
    cover[cover > 1.0 - 1e-12] = 1.0
    return cover * grid.pixel_area


def rasterise_features(features: Sequence[BaseGeometry] | FeatureSet, grid: Grid, *,
                       window: Window | None = None, halo: tuple[int, int] = (0, 0)
                       ) -> np.ndarray:
    """Feature amount per pixel: line length (map units) or polygon area (squared units).

    Parameters
    ----------
    features : sequence of shapely geometries or FeatureSet
        Lines or polygons (not both) in the grid's CRS.
    grid, window : Grid, rasterio Window or None
        The pixels; default the whole grid.
    halo : (rows, cols)
        Extra pixels on every side of the window (may lie outside the grid).

    Returns
    -------
    (h + 2 * rows, w + 2 * cols) float64 array

    Raises
    ------
    InputDataError
        If the features mix lines and polygons, or are points.
    """
    fs = prepare_features(features)
    _require_amount(fs, "rasterise_features")
    r0, c0, h, w = _window(grid, window)
    hr, hc = halo
    args = (grid, r0 - hr, c0 - hc, h + 2 * hr, w + 2 * hc)
    if fs.kind == "lines":
        return line_length_raster(fs.segments, *args)
    return polygon_area_raster(fs.ring_segments, *args)


def _require_amount(fs: FeatureSet, what: str) -> None:
    if fs.kind not in ("lines", "polygons"):
        raise InputDataError(
            f"{fs.source}: {what} needs only lines or only polygons, got {fs.kind} features; "
            "split the layer into a line layer and a polygon layer, or use measure 'distance'.")


# --------------------------------------------------------------------------- densities


def kernel(radius: float, pixel_size: tuple[float, float], shape: str) -> np.ndarray:
    """Kernel on pixel offsets (rows, cols) within ``ceil(radius / pixel)`` of the centre.

    ``shape`` "cone": ``K(d) = max(0, 1 - d / radius)``; "disk": ``K(d) = 1 if d <= radius``,
    with ``d`` the distance between pixel centres in map units.
    """
    dx, dy = pixel_size
    hy, hx = _halo(radius, pixel_size)
    d = np.hypot(np.arange(-hy, hy + 1)[:, None] * dy, np.arange(-hx, hx + 1)[None, :] * dx)
    match shape:
        case "cone":
            return np.maximum(0.0, 1.0 - d / radius)
        case "disk":
            return (d <= radius).astype(np.float64)
        case _:
            raise UnknownNameError(f"unknown kernel {shape!r}; choose 'cone' or 'disk'")


def _halo(radius: float, pixel_size: tuple[float, float]) -> tuple[int, int]:
    return math.ceil(radius / pixel_size[1]), math.ceil(radius / pixel_size[0])


def check_radius(radius: float | None, grid: Grid, source: str) -> float:
    """The density radius as a float; raises InputDataError if missing or below a pixel."""
    if radius is None:
        raise InputDataError(f"{source}: the density measures need a radius in map units; "
                             "set `radius` (e.g. 5 pixels or more).")
    pixel = max(grid.pixel_size)
    if not np.isfinite(radius) or radius < pixel:
        raise InputDataError(
            f"{source}: radius {radius:g} is smaller than a pixel ({pixel:g} map units); the "
            "kernel would hold one pixel. Give a radius of several pixels, in map units.")
    return float(radius)


def _convolved(fs: FeatureSet, grid: Grid, window: Window | None, radius: float,
               shape: str) -> np.ndarray:
    """Feature amount per pixel convolved with ``kernel(radius)``, exact zeros off support."""
    halo = _halo(radius, grid.pixel_size)
    amount = rasterise_features(fs, grid, window=window, halo=halo)
    k = kernel(radius, grid.pixel_size, shape)
    if not amount.any():
        return np.zeros((amount.shape[0] - 2 * halo[0], amount.shape[1] - 2 * halo[1]))
    out = signal.fftconvolve(amount, k, mode="valid")
    # Where no feature pixel lies within the kernel's reach the value is exactly 0; the FFT
    # leaves round-off there, so zero it using the exact distance to the nearest feature pixel.
    near = ndimage.distance_transform_edt(amount == 0, sampling=grid.pixel_size[::-1])
    near = near[halo[0]:near.shape[0] - halo[0], halo[1]:near.shape[1] - halo[1]]
    reach = radius * (1 + 1e-9)
    out[(near > reach) if shape == "disk" else (near >= radius * (1 - 1e-12))] = 0.0
    return np.maximum(out, 0.0)


def density_map(features: Sequence[BaseGeometry] | FeatureSet, grid: Grid, *, radius: float,
                window: Window | None = None) -> np.ndarray:
    """Feature length (lines) or area (polygons) per unit area within ``radius``.

    ``rho(p) = sum_{q : |p - q| <= R} a(q) / (n_R * A_pix)`` where ``a(q)`` is the exact
    feature length or area in pixel ``q``, ``n_R`` the number of pixels whose centres lie
    within ``R`` of a centre (the discrete disk, area ``n_R * A_pix ~ pi R^2``), computed by FFT
    convolution with that disk. Units: 1 / map unit for lines, a fraction for polygons.

    Parameters
    ----------
    features : sequence of shapely geometries or FeatureSet
        Lines or polygons in the grid's CRS.
    grid : Grid
        Target grid.
    radius : float
        R in map units, at least one pixel.
    window : rasterio Window or None
        Part of the grid to compute; default the whole grid.

    Returns
    -------
    (h, w) float64 array
    """
    fs = prepare_features(features)
    _require_amount(fs, "density")
    radius = check_radius(radius, grid, fs.source)
    n_r = kernel(radius, grid.pixel_size, "disk").sum()
    return _convolved(fs, grid, window, radius, "disk") / (n_r * grid.pixel_area)


def buffer_density_map(features: Sequence[BaseGeometry] | FeatureSet, grid: Grid, *,
                       radius: float, window: Window | None = None) -> np.ndarray:
    """Feature amount weighted by a cone of radius ``R`` around each pixel.

    ``B(p) = sum_q a(q) * max(0, 1 - |p - q| / R)``, with ``a(q)`` the exact line length
    (map units) or polygon area (squared map units) in pixel ``q`` and ``|p - q|`` the
    distance between pixel centres, computed by FFT convolution of ``a`` with the cone.
    A straight line through ``p`` gives about ``R`` (its length within ``R``, weighted).

    Parameters
    ----------
    features : sequence of shapely geometries or FeatureSet
        Lines or polygons in the grid's CRS.
    grid : Grid
        Target grid.
    radius : float
        R in map units, at least one pixel.
    window : rasterio Window or None
        Part of the grid to compute; default the whole grid.

    Returns
    -------
    (h, w) float64 array
        Map units (lines) or squared map units (polygons).
    """
    fs = prepare_features(features)
    _require_amount(fs, "buffer_density")
    radius = check_radius(radius, grid, fs.source)
    return _convolved(fs, grid, window, radius, "cone")


def measure_map(features: Sequence[BaseGeometry] | FeatureSet, grid: Grid, measure: str, *,
                radius: float | None = None, window: Window | None = None) -> np.ndarray:
    """Dispatch to :func:`distance_map`, :func:`density_map` or :func:`buffer_density_map`."""
    match measure:
        case "distance":
            return distance_map(features, grid, window=window)
        case "density":
            return density_map(features, grid, radius=radius, window=window)
        case "buffer_density":
            return buffer_density_map(features, grid, radius=radius, window=window)
        case _:
            raise UnknownNameError(f"unknown geology measure {measure!r}; choose from "
                                   f"{list(MEASURES)}")


def measure_units(fs: FeatureSet, measure: str, unit: str = "map unit") -> str:
    """Units of ``measure`` for these features, for titles and the manifest."""
    if measure == "distance":
        return unit
    if measure == "density":
        return f"{unit} per {unit}²" if fs.kind == "lines" else "area fraction"
    return unit if fs.kind == "lines" else f"{unit}²"

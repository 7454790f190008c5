"""Raster evidence: any grid GDAL reads (geophysics, remote sensing) warped onto the evidence grid.

A raster layer is read tile by tile and warped onto the grid's CRS and pixels with
``rasterio.warp.reproject`` (GDAL's warper), so a national grid of many GB clipped to a district
is never loaded whole: each tile of :data:`TILE` x :data:`TILE` evidence pixels reads only the
source blocks under it (GDAL's block cache and warp memory are capped, see :func:`gdal_env`).
The tiles form a fixed lattice anchored at the grid's upper-left corner, so a pixel's value
depends only on its tile, never on the window size of the caller (``[grid] block``) nor on
whether Dask computed it.

Derived layers are computed from the warped layer on the grid: the horizontal gradient
magnitude (:func:`gradient_magnitude`) and the local standard deviation over a disk
(:func:`local_std`, "texture"). Categorical grids become one fraction layer per class
(:func:`class_fraction_tile`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.crs import CRS as RioCRS
from rasterio.enums import Resampling
from rasterio.warp import reproject, transform_bounds
from rasterio.windows import Window
from scipy import ndimage

from oremap.errors import InputDataError
from oremap.grid import Grid, window_transform

__all__ = [
    "DERIVED",
    "RESAMPLINGS",
    "TILE",
    "RasterInfo",
    "RasterLayerSpec",
    "PreparedRaster",
    "class_label",
    "disk_footprint",
    "gdal_env",
    "gradient_magnitude",
    "inspect_raster",
    "local_std",
    "prepare_raster",
    "raster_classes",
    "raster_problems",
    "raster_window",
]

log = logging.getLogger("oremap.evidence")

#: Resampling names accepted by ``[[raster]] resampling``.
RESAMPLINGS = ("auto", "average", "bilinear", "cubic", "nearest", "mode")
#: Derived layers accepted by ``[[raster]] derive``.
DERIVED = ("gradient", "texture")
#: Side of the tiles (evidence pixels) each warped by one GDAL call.
TILE = 256
#: GDAL's block cache and warp memory while oremap reads rasters (bytes).
GDAL_CACHE_BYTES = 256 * 1024**2
WARP_MEM_MB = 128
#: Largest source window (pixels) read at once for a categorical tile.
MAX_CATEGORICAL_READ_PX = 64 * 1024**2
#: Pixels sampled on a regular lattice to estimate the clip percentile and the checks.
LATTICE_PX = 1_000_000
CHECK_PX = 512


@dataclass(frozen=True, eq=False)
class RasterLayerSpec:
    """One evidence layer taken from a raster file.

    Attributes
    ----------
    name : str
        Layer name; also the file name of the evidence GeoTIFF.
    path : Path
        Any raster GDAL reads (GeoTIFF, COG, VRT, ...).
    source : str
        Names the file, band and config key, e.g. "mag.tif band 1 ([[raster]] 'mag')".
    band : int
        1-based band number.
    crs : str or None
        CRS of a file that carries none; must agree with the file's where it has one.
    nodata : float or None
        Nodata value of the file's pixels, overriding the file's own.
    resampling : {"auto", "average", "bilinear", "cubic", "nearest", "mode"}
        "auto": average where the file's pixels are finer than the evidence pixel, bilinear
        where they are coarser (categorical: average, giving class fractions, where finer,
        nearest where coarser).
    log10 : bool
        The layer holds log10 of the warped values (every value must then be > 0).
    clip_percentile : float or None
        Warped values above this percentile of the layer (before log10) are set to it.
    units : str or None
        Units of the values; default from the file's band metadata.
    category : float or None
        Categorical grid: this layer is the fraction of each pixel covered by this class.
    derive : {"gradient", "texture"} or None
        This layer is derived from the warped layer: horizontal gradient magnitude, or local
        standard deviation within ``radius``.
    radius : float or None
        Radius of "texture", map units.
    """

    name: str
    path: Path
    source: str
    band: int = 1
    crs: str | None = None
    nodata: float | None = None
    resampling: str = "auto"
    log10: bool = False
    clip_percentile: float | None = None
    units: str | None = None
    category: float | None = None
    derive: str | None = None
    radius: float | None = None

    def parameters(self) -> dict[str, Any]:
        """Everything but the file that determines the layer's values (JSON-ready)."""
        return {"band": self.band, "crs": self.crs, "nodata": self.nodata,
                "resampling": self.resampling, "log10": self.log10,
                "clip_percentile": self.clip_percentile, "category": self.category,
                "derive": self.derive, "radius": self.radius}


@dataclass(frozen=True)
class RasterInfo:
    """What :func:`inspect_raster` learns from a raster's header (nothing is read)."""

    crs: str  # WKT
    count: int
    nodata: float | None
    units: str | None
    pixel_in_grid: float  # mean pixel side of the file in the grid's map units
    bounds_in_grid: tuple[float, float, float, float]
    dtype: str


@dataclass(frozen=True)
class PreparedRaster:
    """A raster layer ready to compute windows (picklable: Dask workers receive it)."""

    path: str
    source: str  # names the file, band and [[raster]] entry in messages
    band: int
    crs: str
    nodata: float | None
    resampling: str  # resolved: never "auto"
    log10: bool
    clip: float | None  # absolute clip value (from the percentile), before log10
    units: str
    category: float | None
    derive: str | None
    radius: float | None
    pixel_in_grid: float


# --------------------------------------------------------------------------- GDAL


@contextmanager
def gdal_env() -> Iterator[None]:
    """GDAL settings while oremap warps rasters: a bounded block cache (256 MiB)."""
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BYTES // 1024**2,
                      GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR"):
        yield


@contextmanager
def _open(path: Path | str, what: str) -> Iterator[Any]:
    path = Path(path)
    if not path.exists():
        raise InputDataError(f"{what}: {path} does not exist; fix `path` in the config")
    if path.is_dir():
        raise InputDataError(f"{what}: {path} is a folder; give the path of the raster file")
    try:
        src = rasterio.open(path)
    except Exception as exc:  # rasterio raises RasterioIOError with GDAL's text
        text = " ".join(str(exc).split())[:200]
        raise InputDataError(f"{what}: {path} is not a raster GDAL can read ({text}); give a "
                             "GeoTIFF, COG, VRT or another GDAL raster") from None
    try:
        yield src
    finally:
        src.close()


def _units_of(src: Any, band: int) -> str | None:
    units = src.units[band - 1] if band <= src.count else None
    if units:
        return str(units)
    tags = {k.lower(): v for k, v in src.tags(band).items()}
    for key in ("units", "unit", "unittype"):
        if tags.get(key):
            return str(tags[key])
    return None


def inspect_raster(path: Path | str, grid: Grid, *, band: int = 1, crs: str | None = None,
                   what: str = "[[raster]]") -> RasterInfo:
    """Open a raster's header and check it against the grid.

    Raises
    ------
    InputDataError
        Unreadable file, no CRS in the file or the config (or one that contradicts the
        file's), a band out of range, no overlap with the grid.
    """
    with gdal_env(), _open(path, what) as src:
        if src.crs is None and crs is None:
            raise InputDataError(f"{what}: {path} has no CRS; set `crs = \"EPSG:...\"` in its "
                                 "[[raster]] table or assign one to the file (gdal_edit.py "
                                 "-a_srs)")
        src_crs = RioCRS.from_user_input(crs) if src.crs is None else src.crs
        if src.crs is not None and crs is not None and RioCRS.from_user_input(crs) != src.crs:
            raise InputDataError(
                f"{what}: {path} carries CRS {src.crs.to_string()!r} but the config says "
                f"crs = {crs!r}; `crs` is only for a file without one: remove it")
        if not 1 <= band <= src.count:
            raise InputDataError(f"{what}: band {band} is out of range; {path} has "
                                 f"{src.count} band(s) (1 to {src.count}). Fix `band`/`bands`")
        if src.transform.is_identity:
            raise InputDataError(f"{what}: {path} has no georeferencing (no geotransform); "
                                 "georeference it (gdal_translate -a_ullr / gdalwarp)")
        try:
            b = transform_bounds(src_crs, _rio_crs(grid), *src.bounds, densify_pts=21)
        except Exception as exc:
            raise InputDataError(f"{what}: the bounds of {path} cannot be transformed from "
                                 f"{src_crs.to_string()} to the grid's CRS ({exc}); check the "
                                 "CRS") from None
        if not all(math.isfinite(v) for v in b):
            raise InputDataError(f"{what}: the bounds of {path} do not transform into the "
                                 "grid's CRS; check the CRS of the file and of the grid")
        gx0, gy0, gx1, gy1 = grid.bounds
        if b[0] >= gx1 or b[2] <= gx0 or b[1] >= gy1 or b[3] <= gy0:
            raise InputDataError(
                f"{what}: {path} (bounds {[round(v, 3) for v in b]} in the grid's CRS) does not "
                f"overlap the grid (bounds {list(grid.bounds)}); check the CRS of the file and "
                "of the grid, and [grid] bounds")
        pixel = math.sqrt(abs((b[2] - b[0]) * (b[3] - b[1])) / (src.width * src.height))
        return RasterInfo(crs=src_crs.to_wkt(), count=src.count, nodata=src.nodata,
                          units=_units_of(src, band), pixel_in_grid=pixel,
                          bounds_in_grid=tuple(b), dtype=str(src.dtypes[band - 1]))


def resolve_resampling(resampling: str, pixel_in_grid: float, grid: Grid, *,
                       categorical: bool = False) -> str:
    """``auto`` made concrete: average where the file is finer than the evidence pixel,
    bilinear (categorical: nearest) where coarser."""
    if resampling != "auto":
        return resampling
    finer = pixel_in_grid < math.sqrt(grid.pixel_area) * (1 - 1e-9)
    return "average" if finer else ("nearest" if categorical else "bilinear")


def class_label(value: float) -> str:
    """A class value as it appears in a layer name: 3.0 -> "3", 2.5 -> "2.5"."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}".replace("-", "m")


# --------------------------------------------------------------------------- tiles


def _tiles(grid: Grid, window: Window) -> Iterator[tuple[int, int, int, int]]:
    """``(row0, col0, height, width)`` of every lattice tile overlapping ``window``."""
    r0, c0 = int(window.row_off), int(window.col_off)
    r1, c1 = r0 + int(window.height), c0 + int(window.width)
    for tr in range(r0 // TILE * TILE, r1, TILE):
        for tc in range(c0 // TILE * TILE, c1, TILE):
            yield tr, tc, min(TILE, grid.height - tr), min(TILE, grid.width - tc)


def _warp_tile(p: PreparedRaster, src: Any, grid: Grid, tr: int, tc: int, h: int,
               w: int) -> np.ndarray:
    """The file's band warped onto one lattice tile (float32, NaN for nodata)."""
    tile = Window(tc, tr, w, h)
    if p.category is not None:
        return class_fraction_tile(p, src, grid, tile)
    dst_transform = window_transform(tile, grid.transform)
    out = np.full((h, w), np.nan, dtype=np.float32)
    src_nodata = p.nodata if p.nodata is not None else (
        np.nan if np.dtype(src.dtypes[p.band - 1]).kind == "f" else None)
    reproject(rasterio.band(src, p.band), out, src_crs=RioCRS.from_wkt(p.crs),
              src_nodata=src_nodata, dst_transform=dst_transform, dst_crs=_rio_crs(grid),
              dst_nodata=np.nan, resampling=Resampling[p.resampling], init_dest_nodata=True,
              warp_mem_limit=WARP_MEM_MB)
    return out


def class_fraction_tile(p: PreparedRaster, src: Any, grid: Grid, tile: Window) -> np.ndarray:
    """The share of each pixel of ``tile`` covered by class ``p.category`` (0 to 1, NaN
    where the file has no data): the class indicator warped with ``average``; with
    ``nearest`` or ``mode`` the class map is warped and the indicator taken after (0 or 1)."""
    dst_transform = window_transform(tile, grid.transform)
    h, w = int(tile.height), int(tile.width)
    out = np.full((h, w), np.nan, dtype=np.float32)
    x0, y1 = dst_transform.c, dst_transform.f
    x1, y0 = x0 + w * dst_transform.a, y1 + h * dst_transform.e
    src_crs = RioCRS.from_wkt(p.crs)
    b = transform_bounds(_rio_crs(grid), src_crs, x0, y0, x1, y1, densify_pts=21)
    win = src.window(*b).round_offsets(op="floor").round_lengths(op="ceil")
    margin = 2
    win = Window(win.col_off - margin, win.row_off - margin, win.width + 2 * margin,
                 win.height + 2 * margin)
    try:
        win = win.intersection(Window(0, 0, src.width, src.height))
    except Exception:  # rasterio raises WindowError when they do not intersect
        return out
    if win.width * win.height > MAX_CATEGORICAL_READ_PX:
        raise InputDataError(
            f"{p.source}: one tile of the grid covers {win.width} x "
            f"{win.height} pixels of the file, more than oremap reads at once; resample the "
            "file nearer to the evidence pixel first (gdalwarp -r mode)")
    data = src.read(p.band, window=win, masked=True)
    classes = data.astype(np.float64).filled(np.nan)
    if p.nodata is not None:
        classes[classes == p.nodata] = np.nan
    if p.resampling == "average":
        arr = np.where(np.isnan(classes), np.nan, classes == p.category).astype(np.float32)
    else:
        arr = classes.astype(np.float32)
    reproject(arr, out, src_transform=window_transform(win, src.transform), src_crs=src_crs,
              src_nodata=np.nan, dst_transform=dst_transform, dst_crs=_rio_crs(grid),
              dst_nodata=np.nan, resampling=Resampling[p.resampling], init_dest_nodata=True)
    if p.resampling != "average":
        out = np.where(np.isnan(out), np.nan, out == np.float32(p.category)).astype(np.float32)
    return out


def _warped(p: PreparedRaster, grid: Grid, window: Window) -> np.ndarray:
    """The warped layer (clip and log10 applied) on ``window``, assembled from lattice tiles."""
    r0, c0 = int(window.row_off), int(window.col_off)
    h, w = int(window.height), int(window.width)
    out = np.empty((h, w), dtype=np.float32)
    with gdal_env(), rasterio.open(p.path) as src:
        for tr, tc, th, tw in _tiles(grid, window):
            tile = _warp_tile(p, src, grid, tr, tc, th, tw)
            rs, cs = max(r0, tr), max(c0, tc)
            re, ce = min(r0 + h, tr + th), min(c0 + w, tc + tw)
            out[rs - r0:re - r0, cs - c0:ce - c0] = tile[rs - tr:re - tr, cs - tc:ce - tc]
    return _transform_values(p, out)


def _transform_values(p: PreparedRaster, values: np.ndarray) -> np.ndarray:
    if p.clip is not None:
        values = np.minimum(values, np.float32(p.clip))  # NaN stays NaN
    if p.log10:
        bad = np.isfinite(values) & (values <= 0)
        if bad.any():
            raise InputDataError(
                f"{p.source}: log10 needs values > 0, but {int(bad.sum())} warped pixels are "
                f"<= 0 (min {float(values[bad].min()):g}); set log10 = false for this raster, "
                "or give `nodata` for its empty value")
        with np.errstate(invalid="ignore", divide="ignore"):
            values = np.log10(values)
    return values.astype(np.float32)


def raster_window(p: PreparedRaster, grid: Grid, window: Window) -> np.ndarray:
    """The values of one raster layer on ``window`` of ``grid`` (float32, NaN for nodata).

    A derived layer reads the warped layer on ``window`` grown by the derivation's reach
    (1 pixel for the gradient, the radius for texture; never beyond the grid) and cuts the
    window out of the result, so windows join without seams: the layer equals the
    derivation applied to the whole warped layer.
    """
    if p.derive is None:
        return _warped(p, grid, window)
    dx, dy = grid.pixel_size
    if p.derive == "gradient":
        hx = hy = 1
    else:
        hx, hy = int(p.radius // dx), int(p.radius // dy)
    r0, c0 = int(window.row_off), int(window.col_off)
    r1, c1 = r0 + int(window.height), c0 + int(window.width)
    R0, C0 = max(0, r0 - hy), max(0, c0 - hx)
    R1, C1 = min(grid.height, r1 + hy), min(grid.width, c1 + hx)
    base = _warped(p, grid, Window(C0, R0, C1 - C0, R1 - R0))
    if p.derive == "gradient":
        full = gradient_magnitude(base, dx, dy)
    else:
        full = local_std(base, disk_footprint(p.radius, dx, dy))
    return full[r0 - R0:r1 - R0, c0 - C0:c1 - C0].astype(np.float32)


# --------------------------------------------------------------------------- derived layers


def gradient_magnitude(values: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """Horizontal gradient magnitude ``sqrt((dz/dx)^2 + (dz/dy)^2)`` of a gridded layer.

    Each derivative is the central difference where both neighbours along its axis hold a
    value, the one-sided difference where only one does (at the array's edges and beside
    nodata), and NaN where neither does; a pixel without a value stays NaN. On an array
    without NaN this is ``numpy.gradient`` (first-order edges).

    Parameters
    ----------
    values : (h, w) array
        The layer, NaN for nodata; rows run from north to south.
    dx, dy : float
        Pixel width and height, map units (> 0).

    Returns
    -------
    (h, w) float64 array
        Units of the layer per map unit.
    """
    v = np.asarray(values, dtype=np.float64)
    gx = _axis_derivative(v, dx, axis=1)
    gy = _axis_derivative(v, dy, axis=0)
    return np.where(np.isfinite(v), np.hypot(gx, gy), np.nan)


def _axis_derivative(v: np.ndarray, step: float, axis: int) -> np.ndarray:
    pad = [(0, 0), (0, 0)]
    pad[axis] = (1, 1)
    p = np.pad(v, pad, constant_values=np.nan)
    n = v.shape[axis]
    before = np.take(p, range(0, n), axis=axis)
    after = np.take(p, range(2, n + 2), axis=axis)
    fb, fa = np.isfinite(before), np.isfinite(after)
    with np.errstate(invalid="ignore"):
        central = (after - before) / (2 * step)
        forward = (after - v) / step
        backward = (v - before) / step
    return np.where(fb & fa, central, np.where(fa, forward, np.where(fb, backward, np.nan)))


def disk_footprint(radius: float, dx: float, dy: float) -> np.ndarray:
    """Pixels whose centres lie within ``radius`` (map units) of the centre pixel's centre.

    Returns
    -------
    (2 * ry + 1, 2 * rx + 1) bool array, ``rx = floor(radius / dx)``, ``ry = floor(radius / dy)``
    """
    rx, ry = int(radius // dx), int(radius // dy)
    jj, ii = np.meshgrid(np.arange(-rx, rx + 1) * dx, np.arange(-ry, ry + 1) * dy)
    return (ii**2 + jj**2) <= radius**2 * (1 + 1e-12)


def local_std(values: np.ndarray, footprint: np.ndarray) -> np.ndarray:
    """Local standard deviation ("texture") of a layer within a footprint.

    The population standard deviation (ddof 0) of the pixels with a value inside the
    footprint centred on each pixel; pixels beyond the array's edges and nodata pixels are
    left out; a pixel without a value stays NaN. Equals
    ``scipy.ndimage.generic_filter(values, np.nanstd, footprint=footprint, mode="constant",
    cval=np.nan)`` where the centre holds a value.

    Parameters
    ----------
    values : (h, w) array
        The layer, NaN for nodata.
    footprint : (kh, kw) bool array
        Odd sides; see :func:`disk_footprint`.

    Returns
    -------
    (h, w) float64 array
        Units of the layer.
    """
    v = np.asarray(values, dtype=np.float64)
    valid = np.isfinite(v)
    if not valid.any():
        return np.full(v.shape, np.nan)
    shift = float(np.median(v[valid]))  # centring keeps E[x^2] - E[x]^2 accurate
    z = np.where(valid, v - shift, 0.0)
    k = np.asarray(footprint, dtype=np.float64)

    def total(a: np.ndarray) -> np.ndarray:
        return ndimage.correlate(a, k, mode="constant", cval=0.0)

    n = total(valid.astype(np.float64))
    s1, s2 = total(z), total(z * z)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = s1 / n
        var = np.maximum(s2 / n - mean * mean, 0.0)
    return np.where(valid, np.sqrt(var), np.nan)


# --------------------------------------------------------------------------- preparation


def _lattice_windows(grid: Grid) -> tuple[int, Iterator[Window]]:
    step = max(1, math.ceil(math.sqrt(grid.width * grid.height / LATTICE_PX)))
    return step, (Window(c, r, min(TILE, grid.width - c), min(TILE, grid.height - r))
                  for r in range(0, grid.height, TILE) for c in range(0, grid.width, TILE))


def _clip_value(p: PreparedRaster, grid: Grid, percentile: float, what: str) -> float:
    """The ``percentile`` of the warped layer, on a regular lattice of at most about
    :data:`LATTICE_PX` pixels (every pixel of a grid up to that size)."""
    step, windows = _lattice_windows(grid)
    raw = replace(p, log10=False, clip=None, derive=None)
    samples = []
    for w in windows:
        vals = _warped(raw, grid, w)
        r0, c0 = int(w.row_off), int(w.col_off)
        sub = vals[(-r0) % step::step, (-c0) % step::step]
        samples.append(sub[np.isfinite(sub)])
    allv = np.concatenate(samples) if samples else np.empty(0)
    if allv.size == 0:
        raise InputDataError(f"{what}: the raster has no data on the grid; check its extent, "
                             "`nodata` and CRS")
    return float(np.percentile(allv, percentile))


def prepare_raster(spec: RasterLayerSpec, grid: Grid) -> PreparedRaster:
    """Check a raster layer against the grid and fix what its windows need.

    Raises
    ------
    InputDataError
        As :func:`inspect_raster`; a bad ``resampling``, ``derive`` or texture radius.
    """
    what = spec.source
    if spec.resampling not in RESAMPLINGS:
        raise InputDataError(f"{what}: unknown resampling {spec.resampling!r}; choose from "
                             f"{list(RESAMPLINGS)}")
    if spec.derive is not None and spec.derive not in DERIVED:
        raise InputDataError(f"{what}: unknown derived layer {spec.derive!r}; choose from "
                             f"{list(DERIVED)}")
    if spec.derive == "texture":
        dx, dy = grid.pixel_size
        if spec.radius is None or not spec.radius >= max(dx, dy):
            raise InputDataError(
                f"{what}: texture needs texture_radius >= one pixel ({max(dx, dy):g} map "
                f"units), got {spec.radius}; set texture_radius in map units of the grid")
    info = inspect_raster(spec.path, grid, band=spec.band, crs=spec.crs, what=what)
    categorical = spec.category is not None
    if categorical and spec.resampling in ("bilinear", "cubic"):
        raise InputDataError(f"{what}: a categorical grid takes resampling average (class "
                             "fractions), nearest or mode, not interpolation")
    resampling = resolve_resampling(spec.resampling, info.pixel_in_grid, grid,
                                    categorical=categorical)
    units = spec.units or info.units or "raster units"
    if categorical:
        units = "fraction of pixel"
    elif spec.log10:
        units = f"log10({units})"
    p = PreparedRaster(path=str(spec.path), source=spec.source, band=spec.band, crs=info.crs,
                       nodata=spec.nodata if spec.nodata is not None else info.nodata,
                       resampling=resampling, log10=spec.log10, clip=None, units=units,
                       category=spec.category, derive=spec.derive, radius=spec.radius,
                       pixel_in_grid=info.pixel_in_grid)
    if spec.clip_percentile is not None and not categorical:
        p = replace(p, clip=_clip_value(p, grid, spec.clip_percentile, what))
    if spec.derive == "gradient":
        p = replace(p, units=f"{p.units} per {grid.unit_name}")
    return p


def _rio_crs(grid: Grid) -> RioCRS:
    return RioCRS.from_wkt(grid.crs.to_wkt())


def raster_classes(path: Path | str, grid: Grid, *, band: int = 1, crs: str | None = None,
                   nodata: float | None = None, max_classes: int = 20,
                   what: str = "[[raster]]") -> list[float]:
    """The class values of a categorical raster inside the grid's footprint, sorted.

    Reads the file's window under the grid block by block (never whole).

    Raises
    ------
    InputDataError
        More than ``max_classes`` classes (a continuous grid given as categorical?), no data
        under the grid, or the problems of :func:`inspect_raster`.
    """
    info = inspect_raster(path, grid, band=band, crs=crs, what=what)
    nod = nodata if nodata is not None else info.nodata
    found: set[float] = set()
    with gdal_env(), rasterio.open(path) as src:
        b = transform_bounds(_rio_crs(grid), RioCRS.from_wkt(info.crs), *grid.bounds,
                             densify_pts=21)
        win = src.window(*b).round_offsets(op="floor").round_lengths(op="ceil")
        win = win.intersection(Window(0, 0, src.width, src.height))
        r0, c0 = int(win.row_off), int(win.col_off)
        for r in range(r0, r0 + int(win.height), 1024):
            for c in range(c0, c0 + int(win.width), 1024):
                part = Window(c, r, min(1024, c0 + int(win.width) - c),
                              min(1024, r0 + int(win.height) - r))
                data = src.read(band, window=part, masked=True).compressed()
                vals = np.unique(data.astype(np.float64))
                vals = vals[np.isfinite(vals)]
                if nod is not None:
                    vals = vals[vals != nod]
                found.update(float(v) for v in vals)
                if len(found) > max_classes:
                    raise InputDataError(
                        f"{what}: {path} band {band} holds more than max_classes = "
                        f"{max_classes} classes inside the grid (a continuous grid given as "
                        "categorical?); set categorical = false, or raise max_classes")
    if not found:
        raise InputDataError(f"{what}: {path} band {band} has no data inside the grid; check "
                             "its extent, `nodata` and CRS")
    return sorted(found)


# --------------------------------------------------------------------------- checks


def raster_problems(path: Path | str, grid: Grid, *, bands: Sequence[int] = (1,),
                    crs: str | None = None, nodata: float | None = None,
                    log10: bool = False, categorical: bool = False, max_classes: int = 20,
                    what: str = "[[raster]]") -> list[str]:
    """Every problem of one ``[[raster]]`` entry found by opening it (one line each).

    Opens the header; then warps the grid at a coarse resolution (at most
    :data:`CHECK_PX` pixels a side, nearest neighbour) to refuse a raster that holds only
    nodata inside the grid or, with ``log10``, values <= 0; a categorical grid's classes
    are counted.
    """
    problems: list[str] = []
    for band in bands:
        try:
            info = inspect_raster(path, grid, band=band, crs=crs, what=what)
        except InputDataError as exc:
            problems.append(str(exc))
            if "out of range" not in str(exc):
                return problems
            continue
        coarse = _coarse_grid(grid)
        sample = np.full(coarse.shape, np.nan, dtype=np.float32)
        nod = nodata if nodata is not None else info.nodata
        try:
            with gdal_env(), rasterio.open(path) as src:
                reproject(rasterio.band(src, band), sample, src_crs=RioCRS.from_wkt(info.crs),
                          src_nodata=nod if nod is not None else (
                              np.nan if np.dtype(info.dtype).kind == "f" else None),
                          dst_transform=coarse.transform, dst_crs=_rio_crs(grid),
                          dst_nodata=np.nan, resampling=Resampling.nearest, init_dest_nodata=True)
        except Exception as exc:
            text = " ".join(str(exc).split())[:200]
            problems.append(f"{what}: {path} band {band} cannot be read ({text}); check the "
                            "file with gdalinfo")
            continue
        finite = np.isfinite(sample)
        if not finite.any():
            problems.append(
                f"{what}: {path} band {band} is nodata everywhere inside the grid (nodata = "
                f"{nod}); check `nodata`, the file's extent and its CRS")
        elif log10 and not categorical and (sample[finite] <= 0).any():
            problems.append(
                f"{what}: log10 needs values > 0, but {path} band {band} holds values down to "
                f"{float(sample[finite].min()):g} inside the grid; set log10 = false or give "
                "`nodata` for its empty value")
        if categorical:
            try:
                raster_classes(path, grid, band=band, crs=crs, nodata=nodata,
                               max_classes=max_classes, what=what)
            except InputDataError as exc:
                problems.append(str(exc))
    return problems


def _coarse_grid(grid: Grid) -> Grid:
    step = max(1, math.ceil(max(grid.width, grid.height) / CHECK_PX))
    dx, dy = grid.pixel_size
    x0, y0, x1, y1 = grid.bounds
    cols, rows = math.ceil(grid.width / step), math.ceil(grid.height / step)
    return Grid(grid.crs, (x0, y1 - rows * step * dy, x0 + cols * step * dx, y1),
                (step * dx, step * dy), grid.nodata)

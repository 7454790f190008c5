"""All file reading and writing: atomic outputs, GeoTIFF, vector layers, CSV tables, JSON."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import uuid
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio
import shapely
from pyproj import CRS
from rasterio.windows import Window
from shapely.geometry.base import BaseGeometry

from oremap.errors import CRSMismatchError, DroppedDataWarning, InputDataError
from oremap.grid import Grid, parse_crs, window_transform

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "FORMULA_PREFIXES",
    "GPKG_VERSION",
    "PathLike",
    "TMP_TAG",
    "atomic_path",
    "clean_geometries",
    "drop_zero_length_lines",
    "file_digest",
    "is_temporary",
    "raster_profile",
    "raster_writer",
    "read_json",
    "read_points_csv",
    "read_raster",
    "read_table",
    "read_vector",
    "remove_temporary_files",
    "save_figure",
    "temporary_sibling",
    "write_csv",
    "write_json",
    "write_raster",
    "write_text",
    "write_vector",
]

log = logging.getLogger("oremap.io")

PathLike = str | os.PathLike


#: Marks the temporary files of :func:`atomic_path` (``.<stem>.<pid>-<token>.tmp<suffix>``).
TMP_TAG = ".tmp"


def temporary_sibling(path: PathLike) -> Path:
    """A hidden temporary name beside ``path``, unique to this process and call.

    Two processes writing the same output never share a temporary file, so neither can
    rename the other's half-written file into place. The suffix is kept (drivers infer the
    format from it).
    """
    path = Path(path)
    token = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    return path.with_name(f".{path.stem}.{token}{TMP_TAG}{path.suffix}")


#: ``.<stem>.<pid>-<token>.tmp<suffix>`` (this version), ``.<stem>.tmp<suffix>`` and
#: ``<name>.tmp`` (earlier versions).
_TEMPORARY = re.compile(r"^\..+?(\.\d+-[0-9a-f]{8})?\.tmp(\.[^.]+)?$|^.+\.tmp$")


def is_temporary(path: PathLike) -> bool:
    """Whether ``path`` is a temporary file left by :func:`atomic_path` (or an older oremap)."""
    return _TEMPORARY.match(Path(path).name) is not None


def remove_temporary_files(folder: PathLike) -> int:
    """Delete temporary files left under ``folder`` by an interrupted write; returns the count.

    Call only while holding the run folder's lock: then no other process is writing there.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    count = 0
    for f in folder.rglob("*"):
        if f.is_file() and is_temporary(f):
            f.unlink(missing_ok=True)
            count += 1
    if count:
        log.info("removed %d temporary file(s) left in %s by an interrupted run", count, folder)
    return count


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temporary sibling path; rename it onto ``path`` only if the block succeeds.

    An interrupted or failed write never leaves a truncated file under the final name, and the
    temporary name is unique per process (see :func:`temporary_sibling`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def file_digest(path: PathLike, *, chunk: int = 1 << 22) -> dict[str, Any]:
    """``{"bytes": size, "sha256": hex}`` of a file, read in chunks (any size)."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
            size += len(block)
    return {"bytes": size, "sha256": h.hexdigest()}


def write_json(path: PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, default=_json_default) + "\n")
    return Path(path)


def read_json(path: PathLike) -> Any:
    """Read a JSON file written by :func:`write_json`."""
    return json.loads(Path(path).read_text())


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")


def write_text(path: PathLike, text: str) -> Path:
    """Write text atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


#: Leading characters that make a spreadsheet treat a cell as a formula (OWASP, CSV injection).
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def write_csv(path: PathLike, df: pd.DataFrame, *, index: bool = False) -> Path:
    """Write a table as CSV, atomically, safe to open in a spreadsheet.

    Text cells, column labels and (with ``index``) index labels that start with one of
    :data:`FORMULA_PREFIXES` (``= + - @``, tab, carriage return) get a leading ``'`` so that a
    spreadsheet shows them as text instead of running them as formulas. Numbers, negative ones
    included, are written unchanged; ``df`` itself is not modified.
    """
    safe = _spreadsheet_safe(df)
    with atomic_path(path) as tmp:
        safe.to_csv(tmp, index=index)
    return Path(path)


def _escape_formula(value: Any) -> Any:
    """``value`` with a leading ``'`` if it is a string a spreadsheet would read as a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def _is_text(dtype: Any) -> bool:
    return (pd.api.types.is_object_dtype(dtype)
            or isinstance(dtype, (pd.StringDtype, pd.CategoricalDtype)))


def _escape_labels(labels: pd.Index) -> pd.Index:
    if isinstance(labels, pd.MultiIndex):
        out = labels.set_levels([_escape_labels(level) for level in labels.levels])
    elif _is_text(labels.dtype):
        out = labels.map(_escape_formula)
    else:
        out = labels
    return out.set_names([_escape_formula(n) for n in labels.names])


def _spreadsheet_safe(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``df`` whose text cells and labels are escaped with :func:`_escape_formula`."""
    out = df.copy()
    for i, dtype in enumerate(out.dtypes):
        if _is_text(dtype):
            out.isetitem(i, out.iloc[:, i].astype(object).map(_escape_formula))
    out.columns = _escape_labels(out.columns)
    out.index = _escape_labels(out.index)
    return out


def save_figure(fig: Figure, path: PathLike, *, dpi: int = 120, fmt: str | None = None,
                bbox_inches: str | None = "tight") -> Path:
    """Save a matplotlib figure atomically (temporary sibling file, then rename).

    The one figure writer of the package. Figures are drawn with
    :class:`matplotlib.figure.Figure`, which needs no backend and no closing; a figure made
    with ``plt.subplots`` (a user's) is released from matplotlib's figure manager, as
    ``plt.close`` would, even when the save fails.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        The figure.
    path : path-like
        Output file; parent folders are created.
    dpi : int
        Resolution of raster formats.
    fmt : str or None
        Image format; ``None``: from the suffix of ``path`` (``"png"`` without one).
    bbox_inches : str or None
        ``"tight"`` crops the figure to its artists; ``None`` keeps the figure size.

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=dpi, bbox_inches=bbox_inches,
                        format=fmt or path.suffix.lstrip(".") or "png")
    finally:
        from matplotlib._pylab_helpers import Gcf

        Gcf.destroy_fig(fig)  # plt.close(fig); a no-op for a plain Figure
    return path


# --------------------------------------------------------------------------- rasters


def raster_profile(grid: Grid, *, count: int = 1, dtype: str = "float32") -> dict[str, Any]:
    """GeoTIFF creation options for ``grid``: tiled, DEFLATE-compressed, nodata set.

    ``bigtiff`` is ``"YES"`` when the uncompressed data (width x height x count x item size)
    exceed 2 GiB, so files over 4 GiB can be written, else ``"IF_SAFER"``.
    """
    profile: dict[str, Any] = dict(
        driver="GTiff", width=grid.width, height=grid.height, count=count, dtype=dtype,
        crs=grid.crs.to_wkt(), transform=grid.transform, nodata=grid.nodata,
        compress="deflate", predictor=3 if dtype.startswith("float") else 2,
    )
    if grid.width >= 16 and grid.height >= 16:
        block = 256 if min(grid.width, grid.height) >= 256 else 16
        profile.update(tiled=True, blockxsize=block, blockysize=block)
    # classic TIFF stops at 4 GiB and the compressed size is unknown in advance: above 2 GiB
    # uncompressed ask for BigTIFF outright (margin for poor compression), else let GDAL decide
    nbytes = grid.width * grid.height * count * np.dtype(dtype).itemsize
    profile["bigtiff"] = "YES" if nbytes > 2 * 1024**3 else "IF_SAFER"
    return profile


def write_raster(path: PathLike, array: np.ndarray, grid: Grid, *,
                 band_names: Sequence[str] | None = None,
                 tags: dict[str, str] | None = None, cog: bool = False,
                 units: Sequence[str] | None = None) -> Path:
    """Write a (rows, cols) or (bands, rows, cols) array on ``grid`` as a GeoTIFF, atomically.

    NaN values are written as the grid's nodata value. ``band_names`` become the band
    descriptions (what GIS software shows as the band's name), ``tags`` dataset metadata.
    ``units``: one unit per band (e.g. ``"nT"``), written as the band's GDAL unit type
    (rasterio's ``src.units``) and as its band tag ``units``.
    ``cog``: a Cloud-Optimized GeoTIFF (GDAL's COG driver: 256 px tiles, DEFLATE, overviews
    averaged down to one tile), which GIS software and web map servers open at any zoom
    without reading the whole file.
    """
    arr = np.asarray(array, dtype=np.float32)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.shape[1:] != grid.shape:
        raise InputDataError(
            f"cannot write {path}: array shape {arr.shape[1:]} differs from grid shape {grid.shape}"
        )
    arr = np.where(np.isfinite(arr), arr, np.float32(grid.nodata))
    with atomic_path(path) as tmp:
        if cog:
            from rasterio.io import MemoryFile
            from rasterio.shutil import copy as gdal_copy

            profile = {k: v for k, v in raster_profile(grid, count=arr.shape[0]).items()
                       if k in ("driver", "dtype", "count", "width", "height", "crs",
                                "transform", "nodata")}
            with MemoryFile() as mem, mem.open(**profile) as src:
                _fill(src, arr, band_names, tags, units)
                gdal_copy(src, tmp, driver="COG", COMPRESS="DEFLATE", PREDICTOR="YES",
                          BLOCKSIZE=256, OVERVIEWS="AUTO", RESAMPLING="AVERAGE",
                          BIGTIFF="IF_SAFER")
        else:
            with rasterio.open(tmp, "w", **raster_profile(grid, count=arr.shape[0])) as dst:
                _fill(dst, arr, band_names, tags, units)
    return Path(path)


def _fill(dst: Any, arr: np.ndarray, band_names: Sequence[str] | None,
          tags: dict[str, str] | None, units: Sequence[str] | None = None) -> None:
    dst.write(arr)
    for i, name in enumerate(band_names or [], start=1):
        dst.set_band_description(i, name)
    for i, unit in enumerate(units or [], start=1):
        dst.set_band_unit(i, unit)
        dst.update_tags(i, units=unit)
    if tags:
        dst.update_tags(**tags)


@contextlib.contextmanager
def raster_writer(path: PathLike, grid: Grid, *, count: int = 1,
                  band_names: Sequence[str] | None = None) -> Iterator[Any]:
    """Open a GeoTIFF for window-by-window writing; renamed into place only when complete.

    Yields a rasterio dataset; write with ``dst.write(block, window=window)``.
    """
    with atomic_path(path) as tmp:
        with rasterio.open(tmp, "w", **raster_profile(grid, count=count)) as dst:
            for i, name in enumerate(band_names or [], start=1):
                dst.set_band_description(i, name)
            yield dst


def read_raster(path: PathLike, *, window: Window | None = None,
                band: int | None = None) -> tuple[np.ndarray, Grid]:
    """Read a GeoTIFF as float array with NaN for nodata, and its grid.

    Returns ``(array, grid)`` where array is (rows, cols) if ``band`` is given or the file has
    one band, else (bands, rows, cols).
    """
    path = Path(path)
    if not path.exists():
        raise InputDataError(f"raster {path} does not exist")
    with rasterio.open(path) as src:
        if src.crs is None:
            raise CRSMismatchError(f"raster {path} has no CRS; assign one (gdal_edit.py -a_srs)")
        data = src.read(band, window=window, masked=True) if band else src.read(
            window=window, masked=True)
        arr = data.astype(np.float64).filled(np.nan)
        if arr.ndim == 3 and arr.shape[0] == 1:
            arr = arr[0]
        t = window_transform(window, src.transform) if window is not None else src.transform
        h, w = arr.shape[-2:]
        bounds = (t.c, t.f + h * t.e, t.c + w * t.a, t.f)
        grid = Grid(CRS.from_wkt(src.crs.to_wkt()), bounds, (t.a, -t.e),
                    src.nodata if src.nodata is not None else np.nan)
    return arr, grid


# --------------------------------------------------------------------------- vectors


def read_vector(path: PathLike, *, layer: str | None = None, crs: str | None = None,
                target_crs: CRS | None = None, what: str = "layer",
                allow_empty: bool = False) -> gpd.GeoDataFrame:
    """Read a vector layer (GeoPackage, Shapefile, GeoJSON) into ``target_crs``.

    Parameters
    ----------
    path, layer : file and layer name (layer optional for single-layer files)
    crs : CRS to assume when the file has none (from the config); ignored if the file has one
    target_crs : reproject to this CRS (logged) when different
    what : the config key this file came from, named in error messages

    Invalid geometries are repaired with ``make_valid`` (counted in a warning); empty geometries
    are dropped (counted in a warning).
    """
    import pyogrio

    path = Path(path)
    where = f"{what} ({path}{':' + layer if layer else ''})"
    if not path.exists():
        raise InputDataError(f"{what}: file {path} does not exist; check the path in the config")
    try:
        names = [row[0] for row in pyogrio.list_layers(path)]
    except Exception as exc:
        if path.is_dir():
            raise InputDataError(
                f"{what}: {path} is a folder that GDAL cannot open as a vector dataset; give "
                "the path of the vector file (GeoPackage, Shapefile, GeoJSON) in the config."
            ) from None
        raise InputDataError(
            f"{what}: {path} is not a vector file GDAL can read ({exc}); give the path of a "
            "GeoPackage, Shapefile or GeoJSON file in the config."
        ) from None
    if layer is not None:
        if layer not in names:
            raise InputDataError(
                f"{what}: {path} has no layer {layer!r}; it has {names}. Fix `layer` in the config."
            )
    try:
        gdf = gpd.read_file(path, layer=layer, engine="pyogrio")
    except Exception as exc:
        raise InputDataError(f"{where}: cannot be read as a vector layer ({exc})") from None
    gdf = _checked_crs(gdf, crs, target_crs, where)
    return clean_geometries(gdf, where=where, allow_empty=allow_empty)


def _checked_crs(gdf: gpd.GeoDataFrame, crs: str | None, target_crs: CRS | None,
                 where: str) -> gpd.GeoDataFrame:
    if gdf.crs is None:
        if crs is None:
            raise CRSMismatchError(
                f"{where} has no CRS; set `crs = \"EPSG:...\"` for it in the config or assign one "
                "to the file (ogr2ogr -a_srs)."
            )
        gdf = gdf.set_crs(parse_crs(crs, what=where))
    if target_crs is not None and not CRS(gdf.crs).equals(target_crs):
        log.info("%s: reprojecting from %s to the grid CRS %s", where, gdf.crs.to_string(),
                 target_crs.to_string())
        source_crs = gdf.crs
        gdf = gdf.to_crs(target_crs)
        bounds = gdf.total_bounds if len(gdf) else np.zeros(4)
        if not np.isfinite(bounds).all():
            raise CRSMismatchError(
                f"{where}: reprojecting from its CRS {source_crs.to_string()} to the grid CRS "
                f"{target_crs.to_string()} gives non-finite coordinates, so the CRS the data "
                "declare does not match their coordinates (e.g. metres labelled as degrees). "
                "Fix the file's CRS, or set `crs` for this input in the config to the CRS its "
                "coordinates are really in."
            )
    return gdf


def drop_zero_length_lines(geometries: Sequence[BaseGeometry | None] | np.ndarray
                           ) -> tuple[np.ndarray, np.ndarray, int]:
    """Remove zero-length lines: line strings whose vertices all lie at one point.

    Such lines are invalid, and ``make_valid`` would turn them into points (so a line layer
    would become a mix of lines and points). A LineString or LinearRing of length 0 is
    removed; a MultiLineString loses its zero-length parts and keeps the others (it is
    removed when all its parts have length 0). Other geometries, and None, are kept as given.

    Parameters
    ----------
    geometries : sequence or (n,) object array of shapely geometries or None

    Returns
    -------
    kept : (k,) object array
        The kept geometries, in order (multi-lines without their zero-length parts).
    keep : (n,) bool array
        Which of the given geometries were kept.
    n_dropped : int
        Number of zero-length lines removed, counting each removed part of a multi-line.
    """
    arr = np.empty(len(geometries), dtype=object)
    arr[:] = list(geometries)
    keep = np.ones(len(arr), dtype=bool)
    types = shapely.get_type_id(arr)
    single = np.flatnonzero((types == 1) | (types == 2))
    zero = single[shapely.length(arr[single]) == 0]
    keep[zero] = False
    n_dropped = len(zero)
    multi = np.flatnonzero(types == 5)
    if len(multi):
        parts, owner = shapely.get_parts(arr[multi], return_index=True)
        short = shapely.length(parts) == 0
        n_dropped += int(short.sum())
        for j in np.unique(owner[short]):
            rest = parts[(owner == j) & ~short]
            if len(rest):
                arr[multi[j]] = shapely.multilinestrings(rest)
            else:
                keep[multi[j]] = False
    return arr[keep], keep, n_dropped


def clean_geometries(gdf: gpd.GeoDataFrame, *, where: str,
                     allow_empty: bool = False) -> gpd.GeoDataFrame:
    """Drop missing/empty geometries and zero-length lines, repair invalid ones, with counts.

    Zero-length lines (all vertices at one point) are removed before the repair, which would
    turn them into points (see :func:`oremap.evidence.features.drop_zero_length_lines`); a
    multi-line keeps its parts of positive length. Each step is counted in a
    :class:`DroppedDataWarning`.
    """
    missing = gdf.geometry.isna() | gdf.geometry.is_empty
    if missing.any():
        warnings.warn(f"{where}: dropped {int(missing.sum())} empty or missing geometries",
                      DroppedDataWarning, stacklevel=3)
        gdf = gdf.loc[~missing].copy()
    kept, keep, n_zero = drop_zero_length_lines(gdf.geometry.values)
    if n_zero:
        warnings.warn(f"{where}: dropped {n_zero} zero-length line(s) (all vertices at one "
                      "point)", DroppedDataWarning, stacklevel=3)
        gdf = gdf.loc[keep].copy()
        gdf[gdf.geometry.name] = gpd.GeoSeries(kept, index=gdf.index, crs=gdf.crs)
        if len(gdf) == 0 and not allow_empty:
            raise InputDataError(f"{where} has no usable features: all are zero-length lines "
                                 "(every vertex at one point); check the file and layer name")
    invalid = ~gdf.geometry.is_valid
    if invalid.any():
        warnings.warn(f"{where}: repaired {int(invalid.sum())} invalid geometries with make_valid",
                      DroppedDataWarning, stacklevel=3)
        gdf = gdf.copy()
        gdf.loc[invalid, "geometry"] = shapely.make_valid(gdf.geometry[invalid].values)
    if len(gdf) == 0 and not allow_empty:
        raise InputDataError(f"{where} has no usable features; check the file and layer name")
    return gdf


def read_points_csv(path: PathLike, *, x: str, y: str, crs: str | None,
                    columns: Sequence[str] = (), target_crs: CRS | None = None,
                    what: str = "points") -> gpd.GeoDataFrame:
    """Read a CSV of point records with coordinate columns ``x``, ``y`` into a GeoDataFrame.

    ``columns`` must exist; they are returned as read (the caller counts and drops non-numeric
    entries). A CSV carries no CRS, so ``crs`` is required.
    """
    path = Path(path)
    if not path.exists():
        raise InputDataError(f"{what}: file {path} does not exist; check the path in the config")
    if crs is None:
        raise CRSMismatchError(
            f"{what}: {path} is a CSV and carries no CRS; set `crs = \"EPSG:...\"` in the config."
        )
    try:
        df = pd.read_csv(path)
    except Exception as exc:
        raise InputDataError(f"{what}: cannot read {path} as CSV ({exc})") from None
    missing = [c for c in (x, y, *columns) if c not in df.columns]
    if missing:
        raise InputDataError(
            f"{what}: {path} lacks column(s) {missing}; it has {list(df.columns)}. "
            "Rename the columns or fix the names in the config."
        )
    for c in (x, y):
        df[c] = pd.to_numeric(df[c], errors="coerce")
    bad_xy = ~(np.isfinite(df[x].to_numpy(dtype=float)) & np.isfinite(df[y].to_numpy(dtype=float)))
    if bad_xy.all():
        raise InputDataError(f"{what}: {path} has no row with numeric {x!r} and {y!r}")
    if bad_xy.any():
        warnings.warn(f"{what}: {path}: dropped {int(bad_xy.sum())} rows without finite "
                      f"numeric coordinates in {x!r}, {y!r}", DroppedDataWarning, stacklevel=2)
        df = df.loc[~bad_xy]
    gdf = gpd.GeoDataFrame(df, geometry=gpd.points_from_xy(df[x], df[y]),
                           crs=parse_crs(crs, what=f"{what} crs"))
    return _checked_crs(gdf, None, target_crs, f"{what} ({path})")


def read_table(path: PathLike, *, what: str = "table") -> pd.DataFrame:
    """Read a CSV table written by oremap."""
    path = Path(path)
    if not path.exists():
        raise InputDataError(f"{what}: {path} does not exist")
    return pd.read_csv(path)


#: GeoPackage version written: 1.2, which every GDAL since 2.2 (QGIS 3, ArcGIS Pro) reads
#: without a warning (GDAL 3.10 would write 1.4, which GDAL 3.6 warns about).
GPKG_VERSION = "1.2"


def write_vector(path: PathLike, gdf: gpd.GeoDataFrame, *, layer: str | None = None) -> Path:
    """Write a GeoDataFrame as a GeoPackage (or by extension), atomically, replacing the file."""
    path = Path(path)
    options = {"VERSION": GPKG_VERSION} if path.suffix.lower() == ".gpkg" else {}
    with atomic_path(path) as tmp:
        gdf.to_file(tmp, layer=layer or path.stem, engine="pyogrio", dataset_options=options)
    return path

"""Cheap checks of a configuration's inputs before any work, and a size estimate of the run.

:func:`check_inputs` opens every input file the way the stages will, but reads only headers
and layer metadata (no geometry, only the coordinate columns of the assays, a coarse sample of
each raster), so it takes a fraction of a second even for large inputs. ``oremap config
check`` runs it after :func:`oremap.config.load_config`, and ``oremap run`` before any work.

Each problem is one line that names the config key(s), the file and the fix; a cause shared by
several keys (one missing file read by four layers, one file without a CRS) is one line naming
them all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyproj import CRS, Transformer

from oremap.config import FLOAT32_BYTES, Config, RasterConfig, VectorSource
from oremap.device import choose_device
from oremap.errors import ConfigError, InputDataError
from oremap.evidence.raster import raster_classes, raster_problems
from oremap.evidence.stack import DEFAULT_MAX_BYTES
from oremap.grid import Grid
from oremap.inputs import make_grid

__all__ = ["check_inputs", "format_preflight", "grid_problems", "n_evidence_layers",
           "preflight", "require_inputs"]

#: Rows per strip of the evidence stack read lazily, and strips cached (see ``LazyStack``).
_STRIP_ROWS, _CACHE_STRIPS = 256, 3

#: Config keys named in one line before "and N more" when several keys share one cause.
_MAX_KEYS = 3

Bounds = tuple[float, float, float, float]


def check_inputs(config: Config) -> list[str]:
    """Every problem with the grid, the input files and the device that can be found without
    computing, one line per cause.

    Checks that ``[grid] crs`` fits the units of ``bounds`` and ``pixel_size``
    (:func:`grid_problems`); that each input file (geochem CSV and extent, every geology layer
    and extent, every raster (header, CRS, band, overlap with the grid, data inside it on a
    coarse sample, the classes of a categorical grid), ``[labels] orebodies``, every
    ``[[labels.barren]]``, ``[samples] area``, ``truth``) exists, is a file and is readable;
    that vector files can be listed by GDAL and hold the named ``layer``, that the layer has
    the columns its ``where`` filter uses and a CRS (or the config gives ``crs``), and that
    label sources hold at least one feature; that the geochem CSV has the ``x``, ``y`` and
    element columns; that every vector input and the assays overlap the grid (after
    reprojection to the grid's CRS; a geology layer with a density measure may lie within its
    ``radius`` of it) (when no input does, one line says so for ``[grid] bounds``); that
    ``truth`` opens as a raster with a CRS; and that ``[train] device`` is available.

    Parameters
    ----------
    config : Config
        A validated configuration (paths already absolute).

    Returns
    -------
    list of str
        One message per cause, each naming the config key(s), the file and the fix; empty
        when everything can be opened.
    """
    found = _Found()
    wrong_grid = grid_problems(config)
    for line in wrong_grid:
        found.add("", line)
    grid = make_grid(config)
    # with a grid in the wrong units every overlap would fail: that is one cause, said above
    spots: list[_Footprint] | None = None if wrong_grid else []
    g = config.geochem
    if g is not None:
        _check_csv(config, found, spots, grid)
        if g.extent is not None:
            _check_vector(found, g.extent, "[geochem] extent", spots, grid, kind="extent")
    for i, layer in enumerate(config.geology, start=1):
        what = f"[[geology]] #{i} {layer.name!r}"
        reach = (layer.radius or 0.0) if layer.measure != "distance" else 0.0
        _check_vector(found, layer, what, spots, grid, reach=reach)
        if layer.extent is not None:
            _check_vector(found, layer.extent, f"{what} extent", spots, grid, kind="extent")
    rasters = _check_raster_files(config, found, spots, grid)
    _check_vector(found, config.labels.orebodies, "[labels] orebodies", spots, grid,
                  need_features=True)
    for i, src in enumerate(config.labels.barren, start=1):
        _check_vector(found, src, f"[[labels.barren]] #{i}", spots, grid, need_features=True)
    if config.samples.area is not None:
        _check_vector(found, config.samples.area, "[samples] area", spots, grid, kind="extent")
    if spots is not None:
        missed = _check_overlap(found, spots, config, grid)
        for i in rasters:
            if i not in missed:
                _raster_problems(found, config.raster[i - 1], i, grid)
    if config.truth is not None:
        _check_raster(found, config.truth, "truth")
    for line in _check_device(config.train.device):
        found.add("", line)
    return found.lines()


def grid_problems(config: Config) -> list[str]:
    """``[grid] crs`` against the units of ``bounds`` and ``pixel_size`` (no file is opened).

    A geographic CRS (degrees) with bounds outside longitude -180..180 / latitude -90..90 or
    pixels over 1 degree, or a CRS in metres with bounds that all lie within +-180 and
    pixels under 0.01 (degrees, by the look of them), is one line naming the keys and the fix.
    """
    g = config.grid
    crs = CRS.from_user_input(g.crs)
    dx, dy = g.pixel_xy()
    b = [float(v) for v in g.bounds]
    if crs.is_geographic:
        if b[0] < -180 or b[2] > 180 or b[1] < -90 or b[3] > 90:
            return [f"[grid] crs = {g.crs!r} is geographic (degrees), but [grid] bounds {b} lie "
                    "outside longitude -180..180 / latitude -90..90: they look like metres of "
                    "a projected CRS. Set [grid] crs to the CRS the bounds are in (e.g. the UTM "
                    "zone of your data, such as \"EPSG:32649\"), or give bounds and pixel_size "
                    "in degrees"]
        if max(dx, dy) > 1:
            return [f"[grid] pixel_size = {g.pixel_size} is in degrees of the geographic [grid] "
                    f"crs = {g.crs!r}: more than 1 degree (over 100 km) a pixel looks like "
                    "metres. Set [grid] crs to a projected CRS in metres (e.g. a UTM zone) with "
                    "bounds in metres, or give pixel_size in degrees (0.0005 is about 50 m)"]
        return []
    unit = crs.axis_info[0].unit_name if crs.axis_info else ""
    if unit in ("metre", "meter") and all(abs(v) <= 180 for v in b) and max(dx, dy) < 0.01:
        return [f"[grid] bounds {b} and pixel_size = {g.pixel_size} look like degrees of "
                f"longitude and latitude, but [grid] crs = {g.crs!r} is in metres (the grid "
                f"would be {b[2] - b[0]:g} m x {b[3] - b[1]:g} m). Give [grid] bounds and "
                "pixel_size in metres of that CRS, or set [grid] crs to the CRS they are in "
                "(e.g. \"EPSG:4326\")"]
    return []


# --------------------------------------------------------------------------- one line a cause


class _Found:
    """Problems in the order found; one cause (the text after the keys) is one line."""

    def __init__(self) -> None:
        self._causes: dict[str, list[str]] = {}

    def add(self, what: str, rest: str) -> None:
        """``what`` (config key) + ``rest`` is the message; equal ``rest`` merge their keys."""
        whats = self._causes.setdefault(rest, [])
        if what not in whats:
            whats.append(what)

    def lines(self) -> list[str]:
        out = []
        for rest, whats in self._causes.items():
            keys = ", ".join(whats[:_MAX_KEYS])
            if len(whats) > _MAX_KEYS:
                keys += f" and {len(whats) - _MAX_KEYS} more"
            out.append(keys + rest)
        return out


# --------------------------------------------------------------------------- overlap


@dataclass(frozen=True)
class _Footprint:
    """Where one input lies in the grid's CRS, and how near the grid it must come."""

    what: str
    source: str  # the file (and layer)
    bounds: Bounds  # in the grid's CRS
    reach: float = 0.0  # the grid grown by this still counts (a density radius, a buffer)
    kind: str = "features"  # features | extent | samples | raster
    raster: int | None = None  # 1-based index of the [[raster]] entry

    def meets(self, grid: Bounds) -> bool:
        b, r = self.bounds, self.reach
        return b[0] <= grid[2] + r and b[2] >= grid[0] - r and b[1] <= grid[3] + r \
            and b[3] >= grid[1] - r

    def problem(self, grid: Bounds) -> str:
        """The message after the config key (the stages' wording)."""
        b, gb = _rounded(self.bounds), list(grid)
        fix = "check the CRS of the file and of the grid, and [grid] bounds"
        if self.kind == "features":
            return (f": {self.source}: no feature lies within the grid (feature bounds {b} in "
                    f"the grid's CRS, grid bounds {gb}); {fix}")
        if self.kind == "samples":
            return (f": {self.source}: the area covered by the samples (bounds {b} in the grid's "
                    f"CRS) does not overlap the grid (bounds {gb}); {fix} (the CSV's CRS is "
                    "[geochem] crs)")
        return (f": {self.source}: the extent (bounds {b} in the grid's CRS) does not overlap "
                f"the grid (bounds {gb}); {fix}")


def _check_overlap(found: _Found, spots: list[_Footprint], config: Config,
                   grid: Grid) -> set[int]:
    """Add the inputs that miss the grid; the ``[[raster]]`` entries already said (by index).

    When no input meets the grid the cause is the grid: one line for ``[grid] bounds``.
    """
    gb = grid.bounds
    sources = list(dict.fromkeys(s.source for s in spots))
    if len(sources) >= 2 and not any(s.meets(gb) for s in spots):
        found.add("", _grid_misses_everything(spots, sources, config, grid))
        return {s.raster for s in spots if s.raster is not None}
    for s in spots:
        if s.raster is None and not s.meets(gb):
            found.add(s.what, s.problem(gb))
    return set()


def _grid_misses_everything(spots: list[_Footprint], sources: list[str], config: Config,
                            grid: Grid) -> str:
    lo_x, lo_y = min(s.bounds[0] for s in spots), min(s.bounds[1] for s in spots)
    hi_x, hi_y = max(s.bounds[2] for s in spots), max(s.bounds[3] for s in spots)
    dx, dy = grid.pixel_size
    snapped = [math.floor(lo_x / dx) * dx, math.floor(lo_y / dy) * dy,
               math.ceil(hi_x / dx) * dx, math.ceil(hi_y / dy) * dy]
    names = ", ".join(Path(s).name for s in sources[:_MAX_KEYS])
    if len(sources) > _MAX_KEYS:
        names += f" and {len(sources) - _MAX_KEYS} more"
    return (f"[grid] bounds {list(grid.bounds)} overlap none of the {len(sources)} inputs "
            f"({names}), which lie within {_rounded((lo_x, lo_y, hi_x, hi_y))} in the grid's "
            f"CRS ({config.grid.crs}); set [grid] bounds to your study area inside that extent "
            f"(e.g. bounds = {_rounded(tuple(snapped))}), or fix [grid] crs if the bounds are in "
            "another CRS")


def _rounded(b: tuple[float, ...]) -> list[float]:
    return [round(float(v), 3) for v in b]


def _in_grid_crs(bounds: Any, crs: Any, grid: Grid) -> Bounds | None:
    """``bounds`` (in ``crs``) transformed to the grid's CRS; None when that cannot be done
    (the stage reports it)."""
    try:
        b = [float(v) for v in bounds]
        src = CRS.from_user_input(crs)
        if src != grid.crs:
            b = list(Transformer.from_crs(src, grid.crs, always_xy=True)
                     .transform_bounds(*b, densify_pts=21))
    except Exception:  # no bounds, an unknown CRS, a failed transform: not this check's job
        return None
    if len(b) != 4 or not all(math.isfinite(v) for v in b):
        return None
    return (b[0], b[1], b[2], b[3])


# --------------------------------------------------------------------------- files


def _check_raster_files(config: Config, found: _Found, spots: list[_Footprint] | None,
                        grid: Grid) -> list[int]:
    """The ``[[raster]]`` files that exist (1-based indices); their footprints into ``spots``.

    Their other problems (CRS, bands, overlap, data inside the grid, classes) are added by
    :func:`_raster_problems` once the overlap of every input is known.
    """
    exists = []
    for i, r in enumerate(config.raster, start=1):
        problem = _file_problem(Path(r.path))
        if problem:
            found.add(f"[[raster]] #{i} {r.name!r}", problem)
            continue
        exists.append(i)
        if spots is not None:
            bounds = _raster_bounds(r, grid)
            if bounds is not None:
                spots.append(_Footprint(f"[[raster]] #{i} {r.name!r}", str(r.path), bounds,
                                        kind="raster", raster=i))
    return exists


def _raster_bounds(r: RasterConfig, grid: Grid) -> Bounds | None:
    import rasterio

    try:
        with rasterio.open(r.path) as src:
            crs = src.crs.to_wkt() if src.crs is not None else r.crs
            if crs is None or src.transform.is_identity:
                return None
            bounds = tuple(src.bounds)
    except Exception:  # raster_problems says why
        return None
    return _in_grid_crs(bounds, crs, grid)


def _raster_problems(found: _Found, r: RasterConfig, i: int, grid: Grid) -> None:
    """Problems of one ``[[raster]]``: its CRS, bands, overlap with the grid, data inside the
    grid (on a coarse sample), classes of a categorical grid."""
    what = f"[[raster]] #{i} {r.name!r}"
    for line in raster_problems(r.path, grid, bands=r.band_list(), crs=r.crs, nodata=r.nodata,
                                log10=r.log10, categorical=r.categorical,
                                max_classes=r.max_classes, what=what):
        found.add("", line)


def n_evidence_layers(config: Config) -> int:
    """Evidence layers the configuration makes (a categorical raster's classes are counted
    from the file; one that cannot be read counts as none)."""
    n = len(config.geology) + (len(config.geochem.elements) if config.geochem else 0)
    for r in config.raster:
        if not r.categorical:
            n += len(r.layer_names())
            continue

        for band in r.band_list():
            try:
                n += len(raster_classes(r.path, make_grid(config), band=band, crs=r.crs,
                                        nodata=r.nodata, max_classes=r.max_classes))
            except InputDataError:
                pass
    return n


def _file_problem(path: Path, *, folder_ok: bool = False) -> str | None:
    """Why ``path`` cannot be opened as an input file (the message after the key), or None."""
    if not path.exists():
        return f": {path} does not exist; fix `path` in the config or create the file"
    if path.is_dir():
        if folder_ok:
            return None
        return f": {path} is a folder, not a file; give the path of the file inside it"
    try:
        with open(path, "rb") as f:
            f.read(1)
    except OSError as exc:
        return (f": {path} cannot be read ({exc.strerror or exc}); fix its permissions "
                "(chmod u+r) or copy it somewhere readable")
    return None


def _check_vector(found: _Found, src: VectorSource, what: str, spots: list[_Footprint] | None,
                  grid: Grid, *, need_features: bool = False, reach: float = 0.0,
                  kind: str = "features") -> None:
    """Problems of one vector source: file, layer, ``where`` columns, CRS, feature count; its
    footprint into ``spots`` when it has none."""
    import pyogrio

    path = Path(src.path)
    # a folder may be a dataset (a FileGDB, a folder of Shapefiles): GDAL decides below
    problem = _file_problem(path, folder_ok=True)
    if problem:
        found.add(what, problem)
        return
    try:
        names = [str(row[0]) for row in pyogrio.list_layers(path)]
    except Exception as exc:
        if path.is_dir():
            found.add(what, f": {path} is a folder that GDAL cannot open as a vector dataset; "
                      "give the path of the vector file (GeoPackage, Shapefile, GeoJSON)")
        else:
            found.add(what, f": {path} is not a vector file GDAL can read ({_short(exc)}); "
                      "give the path of a GeoPackage, Shapefile or GeoJSON file")
        return
    if src.layer is not None and src.layer not in names:
        found.add(what, f": {path} has no layer {src.layer!r}; it has {names}. Fix `layer` in "
                  "the config")
        return
    if src.layer is None and len(names) > 1:
        found.add(what, f": {path} holds {len(names)} layers {names}; name the one to use "
                  "with `layer` in the config")
        return
    label = f"{path}{':' + src.layer if src.layer else ''}"
    try:
        info = pyogrio.read_info(path, layer=src.layer, force_total_bounds=True)
    except Exception as exc:
        found.add(what, f" ({label}): cannot read the layer's description ({_short(exc)}); "
                  "check the file with ogrinfo")
        return
    bad = False
    columns = [str(c) for c in info.get("fields", [])]
    missing = [c for c in (src.where or {}) if c not in columns]
    if missing:
        found.add(what, f" ({label}): `where` filters on column(s) {missing}, which the layer "
                  f"lacks; it has {columns}. Fix `where` in the config")
        bad = True
    crs = info.get("crs") or src.crs
    if crs is None:  # one cause per file, however many of its layers the config reads
        found.add(what, f": {path} has no CRS; set `crs = \"EPSG:...\"` for it in the config "
                  "or assign one to the file (ogr2ogr -a_srs)")
        bad = True
    if need_features and info.get("features", -1) == 0:
        found.add(what, f" ({label}) has no features; label sources need at least one. Check "
                  "the file and the layer name")
        bad = True
    if spots is not None and not bad:
        bounds = _in_grid_crs(info.get("total_bounds"), crs, grid)
        if bounds is not None:
            spots.append(_Footprint(what, label, bounds, reach, kind))


def _check_csv(config: Config, found: _Found, spots: list[_Footprint] | None,
               grid: Grid) -> None:
    """Problems of the ``[geochem]`` CSV: file, header, coordinate and element columns, CRS;
    the samples' footprint into ``spots``."""
    import pandas as pd

    g = config.geochem
    assert g is not None
    path = Path(g.path)
    problem = _file_problem(path)
    if problem:
        found.add("[geochem] path", problem)
        return
    try:
        head = pd.read_csv(path, nrows=5)
    except Exception as exc:
        found.add("[geochem] path", f": cannot read {path} as CSV ({_short(exc)}); give a "
                  "comma-separated text file with a header row")
        return
    missing = [c for c in [g.x, g.y, *g.elements] if c not in head.columns]
    if missing:
        found.add("[geochem]", f": {path} lacks column(s) {missing}; it has "
                  f"{[str(c) for c in head.columns]}. Rename the columns or fix the names in the "
                  "config (`x`, `y`, `elements`)")
    if g.crs is None:
        found.add("[geochem] crs", f": {path} is a CSV and carries no CRS; set "
                  "`crs = \"EPSG:...\"` in [geochem]")
    if spots is None or g.crs is None or g.x in missing or g.y in missing \
            or g.extent is not None:  # with an extent, the extent must meet the grid
        return
    try:
        xy = pd.read_csv(path, usecols=[g.x, g.y]).apply(pd.to_numeric, errors="coerce")
    except Exception:  # the stage says why
        return
    xy = xy[xy.notna().all(axis=1)]
    if xy.empty:
        return
    bounds = _in_grid_crs((xy[g.x].min(), xy[g.y].min(), xy[g.x].max(), xy[g.y].max()), g.crs,
                          grid)
    if bounds is not None:
        spots.append(_Footprint("[geochem] path", str(path), bounds, g.coverage_buffer,
                                "samples"))


def _check_raster(found: _Found, path: Path, what: str) -> None:
    """Problems of a raster input: file, GDAL can open it, it has a CRS."""
    import rasterio

    path = Path(path)
    problem = _file_problem(path)
    if problem:
        found.add(what, problem)
        return
    try:
        with rasterio.open(path) as src:
            has_crs = src.crs is not None
    except Exception as exc:
        found.add(what, f": {path} is not a raster GDAL can read ({_short(exc)}); give a "
                  "GeoTIFF or remove `truth` from the config")
        return
    if not has_crs:
        found.add(what, f": raster {path} has no CRS; assign one (gdal_edit.py -a_srs)")


def _check_device(device: str) -> list[str]:
    """Problems of ``[train] device``: CUDA / MPS requested but not available here."""
    if device in ("auto", "cpu"):
        return []

    try:
        choose_device(device)
    except ConfigError as exc:
        return [f"[train] device: {exc}"]
    return []


def _short(exc: BaseException, limit: int = 200) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


# --------------------------------------------------------------------------- size estimate


def require_inputs(config: Config) -> None:
    """Raise InputDataError listing every problem :func:`check_inputs` finds (before any work)."""

    problems = check_inputs(config)
    if problems:
        raise InputDataError(
            f"{len(problems)} problem(s) with the inputs, found before any work (`oremap config "
            "check` lists the same):\n  - " + "\n  - ".join(problems))


def preflight(config: Config) -> dict[str, Any]:
    """The size of the run's evidence: grid, layers, disk and memory, without computing.

    Parameters
    ----------
    config : Config

    Returns
    -------
    dict
        ``rows``, ``cols``, ``pixels`` (per layer), ``layers`` (evidence layers: geology
        layers, geochem elements and raster layers), ``disk_bytes`` (the float32 layer GeoTIFFs,
        uncompressed: an upper bound, DEFLATE usually writes much less), ``memory_bytes``
        (the evidence stack as later stages hold it: whole when it is at most 2 GiB, else the
        cache of the stack read in strips) and ``stack_in_memory`` (bool).
    """

    rows, cols = config.grid.pixels()
    layers = n_evidence_layers(config)
    stack = rows * cols * layers * FLOAT32_BYTES
    in_memory = stack <= DEFAULT_MAX_BYTES
    memory = stack if in_memory else min(rows, _STRIP_ROWS * _CACHE_STRIPS) * cols * layers \
        * FLOAT32_BYTES
    return dict(rows=rows, cols=cols, pixels=rows * cols, layers=layers, disk_bytes=stack,
                memory_bytes=memory, stack_in_memory=in_memory)


def format_preflight(d: dict[str, Any]) -> str:
    """One readable line of :func:`preflight`'s result."""
    how = "whole" if d["stack_in_memory"] else "read in strips"
    return (f"grid {d['rows']:,} rows x {d['cols']:,} cols = {d['pixels']:,} pixels per layer; "
            f"{d['layers']} evidence layers; disk <= {_size(d['disk_bytes'])} (float32, "
            f"uncompressed); evidence stack in memory ~ {_size(d['memory_bytes'])} ({how})")


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:,.1f} TiB"

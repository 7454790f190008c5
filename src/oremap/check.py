"""Cheap checks of a configuration's inputs before any work, and a size estimate of the run.

:func:`check_inputs` opens every input file the way the stages will, but reads only headers
and layer metadata (no geometry, no assay rows beyond the first few, a coarse sample of each
raster), so it takes a fraction of a second even for large inputs. ``oremap config check``
runs it after :func:`oremap.config.load_config`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from oremap.config import FLOAT32_BYTES, Config, VectorSource
from oremap.device import choose_device
from oremap.errors import ConfigError, InputDataError
from oremap.evidence.raster import raster_classes, raster_problems
from oremap.evidence.stack import DEFAULT_MAX_BYTES
from oremap.inputs import make_grid

__all__ = ["check_inputs", "format_preflight", "n_evidence_layers", "preflight", "require_inputs"]

#: Rows per strip of the evidence stack read lazily, and strips cached (see ``LazyStack``).
_STRIP_ROWS, _CACHE_STRIPS = 256, 3


def check_inputs(config: Config) -> list[str]:
    """Every problem with the input files and the device that can be found without computing.

    Checks that each input file (geochem CSV and extent, every geology layer and extent, every
    raster (header, CRS, band, overlap with the grid, data inside it on a coarse sample, the
    classes of a categorical grid),
    ``[labels] orebodies``, every ``[[labels.barren]]``, ``truth``) exists, is a file and is
    readable; that vector files can be listed by GDAL and hold the named ``layer``, that the
    layer has the columns its ``where`` filter uses and a CRS (or the config gives ``crs``),
    and that label sources hold at least one feature; that the geochem CSV has the ``x``, ``y``
    and element columns (header and first rows only); that ``truth`` opens as a raster with a
    CRS; and that ``[train] device`` is available.

    Parameters
    ----------
    config : Config
        A validated configuration (paths already absolute).

    Returns
    -------
    list of str
        One message per problem, each naming the config key, the file and the fix; empty when
        everything can be opened.
    """
    problems: list[str] = []
    g = config.geochem
    if g is not None:
        problems += _check_csv(config)
        if g.extent is not None:
            problems += _check_vector(g.extent, "[geochem] extent")
    for i, layer in enumerate(config.geology, start=1):
        what = f"[[geology]] #{i} {layer.name!r}"
        problems += _check_vector(layer, what)
        if layer.extent is not None:
            problems += _check_vector(layer.extent, f"{what} extent")
    problems += _check_rasters(config)
    problems += _check_vector(config.labels.orebodies, "[labels] orebodies", need_features=True)
    for i, src in enumerate(config.labels.barren, start=1):
        problems += _check_vector(src, f"[[labels.barren]] #{i}", need_features=True)
    if config.samples.area is not None:
        problems += _check_vector(config.samples.area, "[samples] area")
    if config.truth is not None:
        problems += _check_raster(config.truth, "truth")
    problems += _check_device(config.train.device)
    return problems


def _check_rasters(config: Config) -> list[str]:
    """Problems of every ``[[raster]]``: the file, its CRS, bands, overlap with the grid, data
    inside the grid (on a coarse sample), classes of a categorical grid."""
    if not config.raster:
        return []

    grid = make_grid(config)
    problems: list[str] = []
    for i, r in enumerate(config.raster, start=1):
        what = f"[[raster]] #{i} {r.name!r}"
        problem = _file_problem(Path(r.path), what)
        if problem:
            problems.append(problem)
            continue
        problems += raster_problems(r.path, grid, bands=r.band_list(), crs=r.crs,
                                    nodata=r.nodata, log10=r.log10, categorical=r.categorical,
                                    max_classes=r.max_classes, what=what)
    return problems


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


def _file_problem(path: Path, what: str, *, folder_ok: bool = False) -> str | None:
    """Why ``path`` cannot be opened as an input file, or None."""
    if not path.exists():
        return f"{what}: {path} does not exist; fix `path` in the config or create the file"
    if path.is_dir():
        if folder_ok:
            return None
        return f"{what}: {path} is a folder, not a file; give the path of the file inside it"
    try:
        with open(path, "rb") as f:
            f.read(1)
    except OSError as exc:
        return (f"{what}: {path} cannot be read ({exc.strerror or exc}); fix its permissions "
                "(chmod u+r) or copy it somewhere readable")
    return None


def _check_vector(src: VectorSource, what: str, *, need_features: bool = False) -> list[str]:
    """Problems of one vector source: file, layer, ``where`` columns, CRS, feature count."""
    import pyogrio

    path = Path(src.path)
    # a folder may be a dataset (a FileGDB, a folder of Shapefiles): GDAL decides below
    problem = _file_problem(path, what, folder_ok=True)
    if problem:
        return [problem]
    try:
        names = [str(row[0]) for row in pyogrio.list_layers(path)]
    except Exception as exc:
        if path.is_dir():
            return [f"{what}: {path} is a folder that GDAL cannot open as a vector dataset; give "
                    "the path of the vector file (GeoPackage, Shapefile, GeoJSON)"]
        return [f"{what}: {path} is not a vector file GDAL can read ({_short(exc)}); give the "
                "path of a GeoPackage, Shapefile or GeoJSON file"]
    if src.layer is not None and src.layer not in names:
        return [f"{what}: {path} has no layer {src.layer!r}; it has {names}. Fix `layer` in the "
                "config"]
    if src.layer is None and len(names) > 1:
        return [f"{what}: {path} holds {len(names)} layers {names}; name the one to use with "
                "`layer` in the config"]
    where = f"{what} ({path}{':' + src.layer if src.layer else ''})"
    try:
        info = pyogrio.read_info(path, layer=src.layer)
    except Exception as exc:
        return [f"{where}: cannot read the layer's description ({_short(exc)}); check the file "
                "with ogrinfo"]
    problems = []
    columns = [str(c) for c in info.get("fields", [])]
    missing = [c for c in (src.where or {}) if c not in columns]
    if missing:
        problems.append(f"{where}: `where` filters on column(s) {missing}, which the layer "
                        f"lacks; it has {columns}. Fix `where` in the config")
    if info.get("crs") is None and src.crs is None:
        problems.append(f"{where} has no CRS; set `crs = \"EPSG:...\"` for it in the config or "
                        "assign one to the file (ogr2ogr -a_srs)")
    if need_features and info.get("features", -1) == 0:
        problems.append(f"{where} has no features; label sources need at least one. Check the "
                        "file and the layer name")
    return problems


def _check_csv(config: Config) -> list[str]:
    """Problems of the ``[geochem]`` CSV: file, header, coordinate and element columns, CRS."""
    import pandas as pd

    g = config.geochem
    assert g is not None
    what = "[geochem] path"
    path = Path(g.path)
    problem = _file_problem(path, what)
    if problem:
        return [problem]
    problems = []
    try:
        head = pd.read_csv(path, nrows=5)
    except Exception as exc:
        return [f"{what}: cannot read {path} as CSV ({_short(exc)}); give a comma-separated "
                "text file with a header row"]
    wanted = [g.x, g.y, *g.elements]
    missing = [c for c in wanted if c not in head.columns]
    if missing:
        problems.append(f"[geochem]: {path} lacks column(s) {missing}; it has "
                        f"{[str(c) for c in head.columns]}. Rename the columns or fix the names "
                        "in the config (`x`, `y`, `elements`)")
    if g.crs is None:
        problems.append(f"[geochem] crs: {path} is a CSV and carries no CRS; set "
                        "`crs = \"EPSG:...\"` in [geochem]")
    return problems


def _check_raster(path: Path, what: str) -> list[str]:
    """Problems of a raster input: file, GDAL can open it, it has a CRS."""
    import rasterio

    path = Path(path)
    problem = _file_problem(path, what)
    if problem:
        return [problem]
    try:
        with rasterio.open(path) as src:
            has_crs = src.crs is not None
    except Exception as exc:
        return [f"{what}: {path} is not a raster GDAL can read ({_short(exc)}); give a "
                "GeoTIFF or remove `truth` from the config"]
    if not has_crs:
        return [f"{what}: raster {path} has no CRS; assign one (gdal_edit.py -a_srs)"]
    return []


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

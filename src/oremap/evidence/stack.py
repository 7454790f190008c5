"""Co-registered evidence layers: specs, coverage masks, windowed GeoTIFFs and the stack."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import shapely
from pyproj import CRS
from rasterio.windows import Window
from shapely.geometry import box
from shapely.geometry.base import BaseGeometry

from oremap import io
from oremap.errors import InputDataError, StageNotReadyError
from oremap.evidence.features import (
    MEASURES,
    FeatureSet,
    centres_inside,
    check_radius,
    measure_map,
    measure_units,
    prepare_features,
)
from oremap.evidence.idw import (
    IdwInterpolator,
    PreparedSamples,
    check_idw_parameters,
    interpolate_window,
    parse_censored,
    prepare_samples,
)
from oremap.evidence.raster import (
    PreparedRaster,
    RasterLayerSpec,
    prepare_raster,
    raster_window,
)
from oremap.grid import Grid

log = logging.getLogger("oremap.evidence")

MANIFEST = "stack.json"
#: Bump when a change of the algorithms changes layer values, so resumed runs recompute.
ALGORITHM_VERSION = 1
#: Previews are decimated to at most this many pixels along the longer side.
PREVIEW_MAX_PX = 2000
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


@dataclass(frozen=True, eq=False)
class GeochemLayerSpec:
    """One geochemical element interpolated by IDW.

    Attributes
    ----------
    name : str
        Layer name, e.g. "Au"; also the file name of the GeoTIFF.
    xy : (n, 2) array
        Sample locations in the grid's CRS (reprojected by the caller), map units.
    values : (n,) array
        Assays; NaN and non-numeric entries are dropped and counted; censored entries
        (``<x``, ``>x``) are handled as ``censored`` says.
    source : str
        Names the file, column and config key, e.g.
        "soil_samples.csv column 'Au' ([[geochem]] elements)".
    power, neighbours, radius
        IDW parameters (see :func:`oremap.evidence.idw`).
    log10 : bool
        Interpolate log10 of the assays (all must be > 0).
    clip_percentile : float or None
        Clip assays above this percentile, e.g. 99.5.
    coverage_buffer : float
        Buffer of the samples' convex hull, in map units, that makes the coverage.
    extent : shapely geometry or None
        Explicit coverage polygon; overrides the hull.
    censored : {"half", "limit", "drop"}
        Substitute for a below-detection assay ``<x``: ``x / 2``, ``x``, or drop the sample
        (see :func:`oremap.evidence.idw.parse_censored`).
    """

    name: str
    xy: np.ndarray
    values: np.ndarray
    source: str
    power: float = 2.0
    neighbours: int | None = 12
    radius: float | None = None
    log10: bool = False
    clip_percentile: float | None = None
    coverage_buffer: float = 0.0
    extent: BaseGeometry | None = None
    censored: str = "half"


@dataclass(frozen=True, eq=False)
class GeologyLayerSpec:
    """One geological layer: a distance or density measure of mapped features.

    Attributes
    ----------
    name : str
        Layer name, e.g. "faults"; also the file name of the GeoTIFF.
    geometries : sequence of shapely geometries
        Lines and/or polygons in the grid's CRS.
    source : str
        Names the file and config key.
    measure : {"distance", "density", "buffer_density"}
        See :mod:`oremap.evidence.features`.
    radius : float or None
        Kernel radius in map units; required for "density" and "buffer_density".
    extent : shapely geometry or None
        Mapped extent (coverage); None means the whole grid.
    """

    name: str
    geometries: Sequence[BaseGeometry]
    source: str
    measure: Literal["distance", "density", "buffer_density"] = "buffer_density"
    radius: float | None = None
    extent: BaseGeometry | None = None


Spec = GeochemLayerSpec | GeologyLayerSpec | RasterLayerSpec

#: What a raster layer's ``measure`` says it holds.
RASTER_MEASURES = {None: "resampled", "gradient": "gradient", "texture": "texture"}


@dataclass(frozen=True)
class LayerRecord:
    """What ``stack.json`` records about one layer (paths relative to the evidence folder).

    ``n_used`` / ``n_dropped`` count samples (geochemistry; ``n_duplicates`` merged into
    others) or input geometries (geology). ``min``, ``max``, ``mean`` are over the pixels with
    data; ``coverage_fraction`` is the share of pixels inside coverage, ``valid_fraction``
    the share with a value (less where an IDW radius leaves covered pixels without samples).
    """

    name: str
    kind: str
    measure: str
    units: str
    path: str
    preview: str | None
    source: str
    parameters: dict[str, Any]
    spec_hash: str
    min: float | None
    max: float | None
    mean: float | None
    coverage_fraction: float
    valid_fraction: float
    n_used: int
    n_dropped: int
    n_duplicates: int = 0
    seconds: float = 0.0
    bytes: int | None = None
    sha256: str | None = None

    def intact(self, out_dir: Path) -> bool:
        """Whether the layer's GeoTIFF is still the file that was written (size and SHA-256)."""
        path = Path(out_dir) / self.path
        if self.sha256 is None or not path.is_file() or path.stat().st_size != self.bytes:
            return False
        return io.file_digest(path)["sha256"] == self.sha256

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LayerRecord:
        """Inverse of ``dataclasses.asdict``."""
        return cls(**d)


@dataclass(frozen=True)
class EvidenceManifest:
    """The evidence stack on disk: grid, layers in order, and whether all were written."""

    out_dir: Path
    grid: Grid
    layers: tuple[LayerRecord, ...]
    complete: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        """Layer names in stack order."""
        return [r.name for r in self.layers]

    def layer(self, name: str) -> LayerRecord:
        """The record of layer ``name``."""
        for r in self.layers:
            if r.name == name:
                return r
        raise InputDataError(f"no evidence layer {name!r}; the stack has {self.names}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form written to ``stack.json``."""
        return {"format": "oremap-evidence", "algorithm_version": ALGORITHM_VERSION,
                "complete": self.complete, "grid": grid_to_dict(self.grid),
                "names": self.names, "layers": [asdict(r) for r in self.layers], **self.extra}

    @classmethod
    def read(cls, evidence_dir: Path) -> EvidenceManifest:
        """Read ``evidence_dir/stack.json``; StageNotReadyError if it is absent."""
        evidence_dir = Path(evidence_dir)
        path = evidence_dir / MANIFEST
        if not path.exists():
            raise StageNotReadyError.missing("evidence", f"{path} does not exist",
                                             evidence_dir.parent)
        d = io.read_json(path)
        try:
            return cls(evidence_dir, grid_from_dict(d["grid"]),
                       tuple(LayerRecord.from_dict(r) for r in d["layers"]),
                       bool(d.get("complete", False)))
        except (KeyError, TypeError) as exc:
            raise InputDataError(f"{path} is not an oremap evidence manifest ({exc}); "
                                 "delete it and rebuild the evidence.") from None


def grid_to_dict(grid: Grid) -> dict[str, Any]:
    """A Grid as JSON-ready values (CRS as WKT)."""
    return {"crs": grid.crs.to_wkt(), "bounds": list(grid.bounds),
            "pixel_size": list(grid.pixel_size), "nodata": grid.nodata,
            "width": grid.width, "height": grid.height}


def grid_from_dict(d: dict[str, Any]) -> Grid:
    """Inverse of :func:`grid_to_dict`."""
    return Grid(CRS.from_wkt(d["crs"]), tuple(d["bounds"]), tuple(d["pixel_size"]),
                d["nodata"])


# --------------------------------------------------------------------------- specs from tables


def geochem_specs(table: pd.DataFrame, elements: Sequence[str], *, file: str,
                  key: str = "[[geochem]] elements", x: str = "x", y: str = "y",
                  **options: Any) -> list[GeochemLayerSpec]:
    """One :class:`GeochemLayerSpec` per element column of a sample table.

    Parameters
    ----------
    table : DataFrame or GeoDataFrame
        Samples in the grid's CRS; coordinates from columns ``x``, ``y`` or, for a
        GeoDataFrame of points, its geometry.
    elements : sequence of str
        Column names, one layer each.
    file, key : str
        The file and config key, named in every message.
    **options
        Further GeochemLayerSpec fields (power, neighbours, log10, ...), shared by all.

    Raises
    ------
    InputDataError
        If an element or coordinate column is missing.
    """
    import geopandas as gpd

    missing = [c for c in elements if c not in table.columns]
    xy = None
    if isinstance(table, gpd.GeoDataFrame):
        xy = shapely.get_coordinates(table.geometry.values)
        if len(xy) != len(table):
            raise InputDataError(f"{file} ({key}): the samples must be single points, one "
                                 "per row.")
    else:
        missing += [c for c in (x, y) if c not in table.columns]
        if not missing:
            xy = table[[x, y]].to_numpy(dtype=np.float64)
    if missing:
        raise InputDataError(
            f"{file} ({key}): missing column(s) {missing}; the table has "
            f"{list(map(str, table.columns))}. Fix the names in the config.")
    return [GeochemLayerSpec(name=str(e), xy=xy, values=table[e].to_numpy(),
                             source=f"{file} column {e!r} ({key})", **options)
            for e in elements]


# --------------------------------------------------------------------------- masks


def coverage_mask(geometry: BaseGeometry | None, grid: Grid, window: Window | None = None
                  ) -> np.ndarray:
    """Pixels of ``window`` (default the whole grid) whose centres lie inside ``geometry``.

    Centres on the boundary count as inside; ``geometry`` None covers every pixel.

    Returns
    -------
    (h, w) bool array
    """
    if geometry is None:
        h, w = (grid.height, grid.width) if window is None else (int(window.height),
                                                                  int(window.width))
        return np.ones((h, w), dtype=bool)
    return centres_inside(geometry, grid, window)


def _extent(geometry: BaseGeometry | None, source: str, grid: Grid) -> BaseGeometry | None:
    if geometry is None:
        return None
    if not isinstance(geometry, BaseGeometry) or geometry.is_empty:
        raise InputDataError(f"{source}: the extent is empty or not a shapely geometry; give a "
                             "polygon in the grid's CRS or leave it unset.")
    if not geometry.is_valid:
        log.warning("%s: extent polygon is invalid; repaired with make_valid", source)
        geometry = shapely.make_valid(geometry)
    if geometry.area <= 0:
        raise InputDataError(f"{source}: the extent has no area ({geometry.geom_type}); give a "
                             "polygon.")
    _check_overlap(geometry, grid, source, "extent")
    return geometry


def _check_overlap(geometry: BaseGeometry, grid: Grid, source: str, what: str) -> None:
    if not geometry.intersects(box(*grid.bounds)):
        gb = [round(b, 6) for b in geometry.bounds]
        raise InputDataError(
            f"{source}: the {what} (bounds {gb}) does not overlap the grid (bounds "
            f"{list(grid.bounds)}); check the CRS of the file and of the grid.")


# --------------------------------------------------------------------------- preparation


@dataclass(eq=False)
class _Prepared:
    spec: Spec
    kind: str
    measure: str
    coverage: BaseGeometry | None
    samples: PreparedSamples | None = None
    features: FeatureSet | None = None
    radius: float | None = None
    raster: PreparedRaster | None = None


def _prepare(spec: Spec, grid: Grid) -> _Prepared:
    if isinstance(spec, GeochemLayerSpec):
        s = prepare_samples(spec.xy, spec.values, source=spec.source, log10=spec.log10,
                            clip_percentile=spec.clip_percentile, censored=spec.censored)
        check_idw_parameters(spec.power, spec.neighbours, spec.radius, what=spec.source)
        if spec.extent is not None:
            cov = _extent(spec.extent, spec.source, grid)
        else:
            if not (np.isfinite(spec.coverage_buffer) and spec.coverage_buffer >= 0):
                raise InputDataError(f"{spec.source}: coverage_buffer must be >= 0 map units, "
                                     f"got {spec.coverage_buffer}")
            cov = shapely.MultiPoint(s.xy).convex_hull.buffer(spec.coverage_buffer)
            _check_overlap(cov, grid, spec.source, "area covered by the samples")
        return _Prepared(spec, "geochem", "idw", cov, samples=s)
    if isinstance(spec, GeologyLayerSpec):
        if spec.measure not in MEASURES:
            raise InputDataError(f"{spec.source}: unknown measure {spec.measure!r}; choose "
                                 f"from {list(MEASURES)}")
        fs = prepare_features(spec.geometries, source=spec.source)
        radius = None
        reach = box(*grid.bounds)
        if spec.measure != "distance":
            radius = check_radius(spec.radius, grid, spec.source)
            reach = reach.buffer(radius)
            if fs.kind not in ("lines", "polygons"):
                raise InputDataError(
                    f"{spec.source}: measure {spec.measure!r} needs only lines or only "
                    f"polygons, got {fs.kind} features; split the layer or use 'distance'.")
        if len(fs.tree.query(reach)) == 0:
            raise InputDataError(
                f"{spec.source}: no feature lies within the grid (feature bounds "
                f"{[round(b, 6) for b in fs.bounds]}, grid bounds {list(grid.bounds)}); check "
                "the CRS of the file and of the grid.")
        cov = _extent(spec.extent, spec.source, grid)
        return _Prepared(spec, "geology", spec.measure, cov, features=fs, radius=radius)
    if isinstance(spec, RasterLayerSpec):
        r = prepare_raster(spec, grid)
        measure = "class_fraction" if spec.category is not None else RASTER_MEASURES[
            spec.derive]
        return _Prepared(spec, "raster", measure, None, raster=r)
    raise InputDataError(f"evidence spec of type {type(spec).__name__} is not a "
                         "GeochemLayerSpec, GeologyLayerSpec or RasterLayerSpec")


def _check_names(specs: Sequence[Spec]) -> None:
    problems, seen = [], set()
    for s in specs:
        name = getattr(s, "name", None)
        if not isinstance(name, str) or not _NAME.match(name):
            problems.append(f"layer name {name!r} ({getattr(s, 'source', '?')}) must start with "
                            "a letter or digit and use only letters, digits, '_', '-', '.'")
        elif name in seen:
            problems.append(f"layer name {name!r} is used twice ({s.source}); names must be "
                            "unique")
        seen.add(name)
    if not specs:
        problems.append("no evidence layers were given")
    if problems:
        raise InputDataError("evidence layers: " + "; ".join(problems))


def spec_hash(spec: Spec, grid: Grid) -> str:
    """SHA-256 of everything that determines a layer's values (not its ``source`` label)."""
    h = hashlib.sha256()
    h.update(json.dumps(grid_to_dict(grid), sort_keys=True).encode())
    h.update(f"v{ALGORITHM_VERSION}|{type(spec).__name__}|{spec.name}".encode())
    h.update(json.dumps(_parameters(spec), sort_keys=True, default=str).encode())
    if isinstance(spec, GeochemLayerSpec):
        h.update(np.ascontiguousarray(spec.xy, dtype=np.float64).tobytes())
        vals = parse_censored(np.asarray(spec.values), spec.censored, source=spec.source,
                              warn=False)
        h.update(np.ascontiguousarray(vals, dtype=np.float64).tobytes())
    elif isinstance(spec, RasterLayerSpec):
        h.update(_raster_file_digest(spec).encode())
    else:
        for g in spec.geometries:
            h.update(b"-" if g is None else shapely.to_wkb(g))
    if getattr(spec, "extent", None) is not None:
        h.update(shapely.to_wkb(spec.extent))
    return h.hexdigest()


def _raster_file_digest(spec: RasterLayerSpec) -> str:
    """SHA-256 of a raster file (hashed once per process while it is unchanged); a VRT's
    own text only: the files it points to are the user's to keep unchanged."""
    from oremap.contract import digest

    try:
        return str(digest(spec.path)["sha256"])
    except OSError:
        return "unreadable"  # preparing the layer reports the file clearly


def _parameters(spec: Spec) -> dict[str, Any]:
    if isinstance(spec, GeochemLayerSpec):
        return {"power": spec.power, "neighbours": spec.neighbours, "radius": spec.radius,
                "log10": spec.log10, "clip_percentile": spec.clip_percentile,
                "coverage_buffer": spec.coverage_buffer, "extent": spec.extent is not None,
                "censored": spec.censored}
    if isinstance(spec, RasterLayerSpec):
        return spec.parameters()
    return {"measure": spec.measure, "radius": spec.radius, "extent": spec.extent is not None}


# --------------------------------------------------------------------------- building


def build_evidence(specs: Sequence[Spec], grid: Grid, out_dir: Path, *, block: int = 2048,
                   previews: bool = True, progress: bool = True, resume: bool = True,
                   workers: int = 1, client: Any = None) -> EvidenceManifest:
    """Compute every evidence layer on ``grid`` window by window and write the stack.

    Writes ``out_dir/layers/<name>.tif`` (float32, nodata = ``grid.nodata`` outside coverage,
    tiled, DEFLATE), ``out_dir/previews/<name>.png`` and ``out_dir/stack.json`` (layer order,
    kinds, measures, parameters, per-layer min/max/mean, coverage fraction, sample counts and
    spec hashes). ``stack.json`` is rewritten after each layer with ``complete: false`` until
    the last one is done.

    Parameters
    ----------
    specs : sequence of GeochemLayerSpec / GeologyLayerSpec
        Layers in stack order; names must be unique.
    grid : Grid
        The common grid; all coordinates are in its CRS.
    out_dir : Path
        Evidence folder.
    block : int
        Window size in pixels; memory grows with ``block**2`` (plus the density halo).
    previews : bool
        Write PNG previews (decimated to at most 2,000 px on the long side).
    progress : bool
        Show a rich progress bar over layers and windows.
    resume : bool
        Keep layers whose GeoTIFF exists and whose spec hash matches ``stack.json``.
    workers : int
        Threads for IDW (-1: every core the process may use); results do not depend on it.
    client : distributed.Client or None
        Compute every (layer, window) as a Dask task on this cluster (``[compute]``); the
        layers are written here, bitwise the same as without it.

    Returns
    -------
    EvidenceManifest

    Raises
    ------
    InputDataError
        Duplicate or unsafe names, unusable samples or geometries, layers that do not
        overlap the grid, radii below a pixel (all problems of all specs in one message).
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    out_dir = Path(out_dir)
    _check_names(specs)
    prepared, problems = [], []
    for spec in specs:
        try:
            prepared.append(_prepare(spec, grid))
        except InputDataError as exc:
            problems.append(str(exc))
    if problems:
        raise InputDataError("evidence layers: " + " | ".join(problems))
    hashes = [spec_hash(s, grid) for s in specs]
    previous = _previous_records(out_dir, grid) if resume else {}
    done: dict[str, LayerRecord] = {}
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    with Progress(*columns, disable=not progress, transient=False) as bar:
        layers_task = bar.add_task("evidence layers", total=len(specs))
        windows_task = bar.add_task("windows", total=grid.n_windows(block))
        todo: list[tuple[_Prepared, str]] = []
        for p, digest in zip(prepared, hashes, strict=True):
            name = p.spec.name
            old = previous.get(name)
            if old is not None and old.spec_hash == digest and old.intact(out_dir):
                log.info("evidence layer %s: unchanged, kept %s", name, old.path)
                done[name] = old
                bar.advance(layers_task)
                continue
            if old is not None and old.spec_hash == digest:
                log.warning("evidence layer %s: %s was changed or damaged after it was "
                            "written (size or checksum differ); recomputing it", name, old.path)
            todo.append((p, digest))

        def next_layer(name: str) -> None:
            bar.reset(windows_task, total=grid.n_windows(block), description=name)

        def tick() -> None:
            bar.advance(windows_task)

        def finished() -> None:  # a layer written: recorded at once, for a later resume
            bar.advance(layers_task)
            _write_manifest(out_dir, grid, specs, done, previous, hashes)

        if client is None:
            for p, digest in todo:
                next_layer(p.spec.name)
                done[p.spec.name] = _build_layer(p, digest, grid, out_dir, block, previews,
                                                 workers, tick)
                finished()
        else:  # one Dask task per (layer, window); the layers are written here
            _build_layers_on(client, todo, grid, out_dir, block, previews, done, finished,
                             next_layer, tick)
    manifest = _write_manifest(out_dir, grid, specs, done, previous, hashes)
    _remove_unlisted(out_dir, manifest, previous)
    log.info("evidence stack: %d layers written to %s", len(specs), out_dir)
    return manifest


def _build_layers_on(client: Any, todo: Sequence[tuple[_Prepared, str]], grid: Grid,
                     out_dir: Path, block: int, previews: bool, done: dict[str, LayerRecord],
                     advance: Any, next_layer: Any, tick: Any) -> None:
    """Build the layers ``todo`` with one Dask task per (layer, window)
    (:func:`window_task`); this process writes each layer's GeoTIFF from its windows in
    order, exactly as locally. The windows of the next layer are submitted while the current
    one is written; the first error cancels the rest and is raised unchanged."""
    import uuid

    tag = uuid.uuid4().hex[:8]
    windows = list(grid.windows(block))

    def submit(p: _Prepared, digest: str) -> list[Any]:
        return [client.submit(window_task, p.spec, digest, grid, w,
                              key=f"oremap-evidence-{tag}-{p.spec.name}-{i}", pure=False)
                for i, w in enumerate(windows)]

    pending = [submit(*todo[0])] if todo else []
    try:
        for k, (p, digest) in enumerate(todo):
            if k + 1 < len(todo):
                pending.append(submit(*todo[k + 1]))
            futures = pending.pop(0)

            def computed(i: int, futures: list[Any] = futures) -> tuple[np.ndarray, np.ndarray]:
                result = futures[i].result()
                futures[i] = None  # release the window's memory on the cluster
                return result

            next_layer(p.spec.name)
            done[p.spec.name] = _build_layer(p, digest, grid, out_dir, block, previews, 1,
                                             tick, computed=computed)
            advance()
    except BaseException:
        client.cancel([f for fs in pending for f in fs if f is not None])
        raise


#: Prepared layers of this worker process, by spec hash (a task per window reads its layer's
#: inputs once per worker, not once per window).
_PREPARED: dict[str, tuple[_Prepared, IdwInterpolator | None]] = {}


def window_task(spec: Spec, digest: str, grid: Grid,
                window: Window) -> tuple[np.ndarray, np.ndarray]:
    """The values and coverage mask of one (layer, window), as a Dask task: the layer is
    prepared once per worker process (cached by its :func:`spec_hash` ``digest``, which
    covers its data), and IDW runs in the worker's threads (the values do not depend on
    them)."""
    try:
        from distributed import get_worker

        threads = max(1, int(get_worker().state.nthreads))
    except (ImportError, ValueError, AttributeError):
        threads = 1
    from oremap.compute import set_threads

    set_threads(threads)
    if digest not in _PREPARED:
        if len(_PREPARED) >= 4:
            _PREPARED.pop(next(iter(_PREPARED)))
        p = _prepare(spec, grid)
        _PREPARED[digest] = (p, _interpolator(p, threads))
    p, interp = _PREPARED[digest]
    return _window_values(p, interp, grid, window)


def _remove_unlisted(out_dir: Path, manifest: EvidenceManifest,
                     previous: dict[str, LayerRecord]) -> None:
    """Delete the files of layers that the previous stack listed and this one does not.

    Only files an earlier ``stack.json`` names are removed (oremap wrote them), so a layer
    dropped from the configuration (As -> Cu) leaves no stale GeoTIFF behind.
    """
    keep = {r.path for r in manifest.layers} | {r.preview for r in manifest.layers if r.preview}
    for rec in previous.values():
        for rel in (rec.path, rec.preview):
            if rel and rel not in keep and (out_dir / rel).is_file():
                log.info("evidence: removed %s (layer no longer configured)", rel)
                (out_dir / rel).unlink()


def _previous_records(out_dir: Path, grid: Grid) -> dict[str, LayerRecord]:
    if not (out_dir / MANIFEST).exists():
        return {}
    try:
        old = EvidenceManifest.read(out_dir)
    except InputDataError as exc:
        log.warning("ignoring previous manifest: %s", exc)
        return {}
    return {r.name: r for r in old.layers}


def _write_manifest(out_dir: Path, grid: Grid, specs: Sequence[Spec],
                    done: dict[str, LayerRecord], previous: dict[str, LayerRecord],
                    hashes: list[str]) -> EvidenceManifest:
    """Records in spec order: new ones, else still-valid previous ones (for a later resume)."""
    records = []
    for spec, digest in zip(specs, hashes, strict=True):
        rec = done.get(spec.name) or previous.get(spec.name)
        if rec is not None and rec.spec_hash == digest:
            records.append(rec)
    complete = len(done) == len(specs)
    manifest = EvidenceManifest(out_dir, grid, tuple(records), complete)
    io.write_json(out_dir / MANIFEST, manifest.to_dict())
    return manifest


def _interpolator(p: _Prepared, workers: int) -> IdwInterpolator | None:
    if p.samples is None:
        return None
    spec = p.spec
    return IdwInterpolator(p.samples.xy, p.samples.values, power=spec.power,
                           neighbours=spec.neighbours, radius=spec.radius, workers=workers)


def _window_values(p: _Prepared, interp: IdwInterpolator | None, grid: Grid,
                   window: Window) -> tuple[np.ndarray, np.ndarray]:
    """A layer's values on one window (NaN outside its coverage) and its coverage mask."""
    if p.raster is not None:
        values = raster_window(p.raster, grid, window)
        return values, np.isfinite(values)
    mask = coverage_mask(p.coverage, grid, window)
    if interp is not None:
        values = interpolate_window(interp, grid, window, mask)
    elif mask.any():
        values = measure_map(p.features, grid, p.measure, radius=p.radius, window=window)
        values[~mask] = np.nan
    else:
        values = np.full(mask.shape, np.nan)
    return values, mask


def _build_layer(p: _Prepared, digest: str, grid: Grid, out_dir: Path, block: int,
                 previews: bool, workers: int, tick: Any,
                 computed: Any = None) -> LayerRecord:
    """Write one layer window by window; ``computed(i)``, if given, returns the values and
    mask of the i-th window of ``grid.windows(block)`` (computed elsewhere: Dask tasks)."""
    t0 = time.perf_counter()
    spec = p.spec
    rel = f"layers/{spec.name}.tif"
    stats = _Stats(grid, PREVIEW_MAX_PX)
    interp = _interpolator(p, workers) if computed is None else None
    with io.raster_writer(out_dir / rel, grid, band_names=[spec.name]) as dst:
        for i, window in enumerate(grid.windows(block)):
            values, mask = (_window_values(p, interp, grid, window) if computed is None
                            else computed(i))
            stats.add(values, mask, window)
            out = np.where(np.isfinite(values), values, grid.nodata).astype(np.float32)
            dst.write(out, 1, window=window)
            tick()
        if stats.covered == 0:
            raise InputDataError(
                f"{spec.source}: layer {spec.name!r} covers no pixel centre of the grid; check "
                "the extent / coverage_buffer and the CRS.")
        dst.update_tags(layer=spec.name, kind=p.kind, measure=p.measure, source=spec.source,
                        units=_units(p, grid))
    preview = None
    if previews:
        preview = f"previews/{spec.name}.png"
        _save_preview(out_dir / preview, stats.preview, grid, spec.name, p, stats.step)
    parameters = _parameters(spec)
    if p.raster is not None:  # what was resolved from the file, for the report
        parameters = {**parameters, "file": str(spec.path), "resampling_used": p.raster.resampling,
                      "file_pixel_in_grid_units": round(p.raster.pixel_in_grid, 6),
                      "clip_value": p.raster.clip,
                      "file_sha256": _raster_file_digest(spec)}
    n_used = (len(p.samples.xy) if p.samples else p.features.n_used if p.features
              else stats.valid)
    rec = LayerRecord(
        name=spec.name, kind=p.kind, measure=p.measure, units=_units(p, grid), path=rel,
        preview=preview, source=spec.source, parameters=parameters, spec_hash=digest,
        min=stats.min, max=stats.max, mean=stats.mean,
        coverage_fraction=stats.covered / (grid.width * grid.height),
        valid_fraction=stats.valid / (grid.width * grid.height),
        n_used=n_used,
        n_dropped=p.samples.n_dropped if p.samples else p.features.n_dropped if p.features
        else 0,
        n_duplicates=p.samples.n_duplicates if p.samples else 0,
        seconds=round(time.perf_counter() - t0, 3), **io.file_digest(out_dir / rel))
    log.info("evidence layer %s (%s %s): %.1f s, coverage %.1f%%, range %s .. %s", spec.name,
             p.kind, p.measure, rec.seconds, 100 * rec.coverage_fraction, rec.min, rec.max)
    return rec


def _units(p: _Prepared, grid: Grid) -> str:
    if p.samples is not None:
        return "log10(assay units)" if p.spec.log10 else "assay units"
    if p.raster is not None:
        return p.raster.units
    return measure_units(p.features, p.measure, _axis_unit(grid))


def _axis_unit(grid: Grid) -> str:
    info = grid.crs.axis_info
    return info[0].unit_name if info and info[0].unit_name else "map unit"


class _Stats:
    """Running min/max/mean/coverage and a decimated preview, filled window by window."""

    def __init__(self, grid: Grid, max_px: int) -> None:
        self.step = max(1, math.ceil(max(grid.height, grid.width) / max_px))
        self.preview = np.full((-(-grid.height // self.step), -(-grid.width // self.step)),
                               np.nan, dtype=np.float32)
        self.covered = self.valid = 0
        self.total = 0.0
        self.lo, self.hi = math.inf, -math.inf

    def add(self, values: np.ndarray, mask: np.ndarray, window: Window) -> None:
        self.covered += int(mask.sum())
        finite = np.isfinite(values)
        n = int(finite.sum())
        if n:
            v = values[finite]
            self.valid += n
            self.total += float(v.sum())
            self.lo, self.hi = min(self.lo, float(v.min())), max(self.hi, float(v.max()))
        s, r0, c0 = self.step, int(window.row_off), int(window.col_off)
        sub = values[(-r0) % s::s, (-c0) % s::s]
        pr, pc = -(-r0 // s), -(-c0 // s)
        self.preview[pr:pr + sub.shape[0], pc:pc + sub.shape[1]] = sub

    @property
    def min(self) -> float | None:
        return self.lo if self.valid else None

    @property
    def max(self) -> float | None:
        return self.hi if self.valid else None

    @property
    def mean(self) -> float | None:
        return self.total / self.valid if self.valid else None


def _save_preview(path: Path, array: np.ndarray, grid: Grid, name: str, p: _Prepared,
                  step: int) -> None:
    import matplotlib
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    unit = _axis_unit(grid)
    what = {"idw": "IDW concentration", "distance": "distance to features",
            "density": "feature density", "buffer_density": "buffer density",
            "resampled": f"raster, {p.raster.resampling if p.raster else ''} resampling",
            "gradient": "horizontal gradient magnitude", "texture": "local standard deviation",
            "class_fraction": "class fraction"}[p.measure]
    fig = Figure(figsize=(7, 7 * min(2.0, max(0.3, grid.height / grid.width))))
    ax = fig.subplots()
    xmin, ymin, xmax, ymax = grid.bounds
    ramp = {"geochem": "Spectral_r", "raster": "viridis"}.get(p.kind, "magma_r")
    cmap = matplotlib.colormaps[ramp].with_extremes(bad="white")
    im = ax.imshow(np.ma.masked_invalid(array), extent=(xmin, xmax, ymin, ymax), cmap=cmap,
                   origin="upper", interpolation="nearest")
    fig.colorbar(im, ax=ax, shrink=0.8, label=_units(p, grid))
    ax.set_title(f"{name}: {what}" + (f" (1:{step} preview)" if step > 1 else ""))
    ax.set_xlabel(f"easting ({unit})")
    ax.set_ylabel(f"northing ({unit})")
    ax.ticklabel_format(useOffset=False, style="plain")
    ax.xaxis.set_major_locator(MaxNLocator(5))
    ax.tick_params(axis="x", labelrotation=30)
    io.save_figure(fig, path)


# --------------------------------------------------------------------------- loading


def load_stack(evidence_dir: Path, *, window: Window | None = None
               ) -> tuple[np.ndarray, list[str], Grid]:
    """Read the evidence layers as one array.

    Parameters
    ----------
    evidence_dir : Path
        Folder written by :func:`build_evidence`.
    window : rasterio Window or None
        Part of the grid to read; default the whole grid (mind the memory: 4 bytes per
        pixel and layer).

    Returns
    -------
    stack : (C, H, W) float32 array
        NaN where a layer has no data.
    names : list of str
        Layer names, in channel order.
    grid : Grid
        The grid of the returned pixels.

    Raises
    ------
    StageNotReadyError
        If ``stack.json`` or a layer file is missing or the stack is incomplete.
    InputDataError
        If a layer's grid differs from the manifest's.
    """
    manifest = _complete_manifest(evidence_dir)
    grid = manifest.grid if window is None else manifest.grid.subgrid(window)
    return _read_layers(Path(evidence_dir), manifest, window, grid), manifest.names, grid


def _complete_manifest(evidence_dir: Path) -> EvidenceManifest:
    """The manifest of a finished stack; StageNotReadyError if it is absent or incomplete."""
    manifest = EvidenceManifest.read(Path(evidence_dir))
    if not manifest.complete:
        raise StageNotReadyError.missing(
            "evidence", f"{Path(evidence_dir) / MANIFEST} is incomplete (an earlier build "
            "stopped; running the stage again resumes it)", Path(evidence_dir).parent)
    return manifest


def _read_layers(evidence_dir: Path, manifest: EvidenceManifest, window: Window | None,
                 grid: Grid, layers: Sequence[int] | None = None) -> np.ndarray:
    """Layers ``layers`` (default all) of ``window`` as a (len(layers), h, w) float32 array."""
    records = manifest.layers if layers is None else [manifest.layers[i] for i in layers]
    out = np.empty((len(records), grid.height, grid.width), dtype=np.float32)
    for i, rec in enumerate(records):
        path = evidence_dir / rec.path
        if not path.exists():
            raise StageNotReadyError.missing(
                "evidence", f"evidence layer {rec.name!r}: {path} is missing", evidence_dir.parent)
        arr, g = io.read_raster(path, window=window)
        if arr.shape != grid.shape or not np.allclose(g.bounds, grid.bounds, rtol=0,
                                                      atol=1e-6 * max(grid.pixel_size)):
            raise InputDataError(
                f"evidence layer {rec.name!r}: {path} has shape {arr.shape} and bounds "
                f"{list(g.bounds)}, the stack's grid {grid.shape} and {list(grid.bounds)}; "
                "rebuild the evidence.")
        out[i] = arr
    return out


# --------------------------------------------------------------------------- lazy loading

#: Stacks up to this size (bytes, float32) are read whole by :func:`load_stack_auto`.
DEFAULT_MAX_BYTES = 2 * 1024**3


class LazyStack:
    """The evidence stack read on demand: ``stack[:, r0:r1, c0:c1]`` reads only that window.

    Behaves like the (C, H, W) float32 array of :func:`load_stack` for basic slicing (NaN
    for nodata, same values) without holding it in memory. Reads go through a small LRU cache
    of horizontal strips of ``strip_rows`` rows (all columns, all layers), so windows read in
    raster order (cells, crops) read each strip once; a request spanning more strips than the
    cache holds is read directly. The layer files are opened for each read only, so there is
    nothing to leak; :meth:`close` (or leaving a ``with`` block) empties the cache.

    Parameters
    ----------
    evidence_dir : Path
        Folder written by :func:`build_evidence`.
    strip_rows : int
        Rows per cached strip, >= 1 (256 matches the GeoTIFF tiles of oremap's layers).
    cache_strips : int
        Strips kept, >= 1. Memory: ``cache_strips * strip_rows * W * C * 4`` bytes, e.g.
        3 x 256 rows x 24,240 px x 14 layers = 1.0 GiB.

    Attributes
    ----------
    shape : (C, H, W) tuple of int
    ndim : int
        3.
    dtype : numpy dtype
        float32.
    layer_names : list of C str
    grid : Grid
    strip_reads, direct_reads : int
        Strips read from disk so far, and requests read directly (bypassing the cache).

    Raises
    ------
    StageNotReadyError
        If ``stack.json`` is missing or the stack incomplete (a missing layer file is
        reported when it is read).
    InputDataError
        If ``strip_rows`` or ``cache_strips`` is < 1.
    """

    ndim = 3
    dtype = np.dtype(np.float32)

    def __init__(self, evidence_dir: Path, *, strip_rows: int = 256,
                 cache_strips: int = 3) -> None:
        for name, value in (("strip_rows", strip_rows), ("cache_strips", cache_strips)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise InputDataError(f"LazyStack: {name} must be a whole number >= 1, got "
                                     f"{value!r}.")
        self.evidence_dir = Path(evidence_dir)
        self._manifest = _complete_manifest(self.evidence_dir)
        self.grid: Grid = self._manifest.grid
        self.layer_names: list[str] = self._manifest.names
        self.shape = (len(self.layer_names), self.grid.height, self.grid.width)
        self.strip_rows, self.cache_strips = int(strip_rows), int(cache_strips)
        self.strip_reads = self.direct_reads = 0
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return (f"LazyStack({str(self.evidence_dir)!r}, shape={self.shape}, "
                f"strip_rows={self.strip_rows}, cache_strips={self.cache_strips})")

    def __enter__(self) -> LazyStack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Drop the cached strips (the stack stays usable; later reads refill the cache)."""
        self._cache.clear()

    @property
    def nbytes(self) -> int:
        """Size of the whole stack as float32, bytes (what :func:`load_stack` would hold)."""
        return 4 * math.prod(self.shape)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        raise TypeError(
            f"a LazyStack ({self.nbytes / 1024**3:.2f} GiB) is not turned into an array "
            "implicitly; read windows with stack[:, r0:r1, c0:c1], or use load_stack() for "
            "the whole array.")

    def __getitem__(self, key: Any) -> np.ndarray:
        """``stack[layers, rows, cols]`` with int or step-1 slices; a new float32 array."""
        layers, rows, cols = self._parse_key(key)
        r0, r1 = rows
        c0, c1 = cols
        n_layers = len(range(self.shape[0])[layers]) if isinstance(layers, slice) else None
        if r1 <= r0 or c1 <= c0:
            shape = (max(r1 - r0, 0), max(c1 - c0, 0))
            return np.empty(shape if n_layers is None else (n_layers, *shape), np.float32)
        k0, k1 = r0 // self.strip_rows, (r1 - 1) // self.strip_rows
        if k1 - k0 + 1 > self.cache_strips:
            window = Window(c0, r0, c1 - c0, r1 - r0)
            index = range(self.shape[0])[layers]
            self.direct_reads += 1
            out = _read_layers(self.evidence_dir, self._manifest, window,
                               self.grid.subgrid(window),
                               list(index) if n_layers is not None else [index])
            return out if n_layers is not None else out[0]
        parts = []
        for k in range(k0, k1 + 1):
            s0 = k * self.strip_rows
            strip = self._strip(k)
            parts.append(strip[layers, max(r0, s0) - s0:min(r1, s0 + strip.shape[1]) - s0,
                               c0:c1])
        axis = 0 if n_layers is None else 1
        return np.array(parts[0]) if len(parts) == 1 else np.concatenate(parts, axis=axis)

    def _parse_key(self, key: Any) -> tuple[int | slice, tuple[int, int], tuple[int, int]]:
        if not isinstance(key, tuple):
            key = (key,)
        if len(key) > 3:
            raise IndexError(f"LazyStack is 3-D (C, H, W); got {len(key)} indices.")
        key = key + (slice(None),) * (3 - len(key))
        layers = key[0]
        if isinstance(layers, (int, np.integer)) and not isinstance(layers, bool):
            if not -self.shape[0] <= layers < self.shape[0]:
                raise IndexError(f"layer {layers} is out of range for {self.shape[0]} layers.")
            layers = int(layers) % self.shape[0]
        elif not isinstance(layers, slice):
            raise IndexError(
                f"LazyStack supports an int or a slice for the layer axis, got {layers!r}.")
        spans = []
        for axis, k in ((1, key[1]), (2, key[2])):
            if not isinstance(k, slice) or k.step not in (None, 1):
                raise IndexError(
                    f"LazyStack supports only step-1 slices along rows and columns, got {k!r}; "
                    "read a window, then index the array.")
            start, stop, _ = k.indices(self.shape[axis])
            spans.append((start, stop))
        return layers, spans[0], spans[1]

    def _strip(self, k: int) -> np.ndarray:
        """Strip ``k`` (rows k*strip_rows onwards, all layers and columns), from the cache."""
        if k in self._cache:
            self._cache.move_to_end(k)
            return self._cache[k]
        r0 = k * self.strip_rows
        window = Window(0, r0, self.shape[2], min(self.strip_rows, self.shape[1] - r0))
        strip = _read_layers(self.evidence_dir, self._manifest, window,
                             self.grid.subgrid(window))
        self.strip_reads += 1
        self._cache[k] = strip
        while len(self._cache) > self.cache_strips:
            self._cache.popitem(last=False)
        return strip


def open_stack(evidence_dir: Path, *, strip_rows: int = 256, cache_strips: int = 3
               ) -> LazyStack:
    """Open the evidence stack for windowed reading (see :class:`LazyStack`)."""
    return LazyStack(evidence_dir, strip_rows=strip_rows, cache_strips=cache_strips)


def load_stack_auto(evidence_dir: Path, *, max_bytes: int = DEFAULT_MAX_BYTES,
                    strip_rows: int = 256, cache_strips: int = 3
                    ) -> tuple[np.ndarray | LazyStack, list[str], Grid]:
    """The evidence stack in memory if it is small, else a :class:`LazyStack`.

    Parameters
    ----------
    evidence_dir : Path
        Folder written by :func:`build_evidence`.
    max_bytes : int
        Largest stack (``C * H * W * 4`` bytes) read whole; default 2 GiB.
    strip_rows, cache_strips : int
        Cache of the :class:`LazyStack` when the stack is larger.

    Returns
    -------
    stack : (C, H, W) float32 array or LazyStack
    names : list of str
    grid : Grid

    Raises
    ------
    StageNotReadyError, InputDataError
        As :func:`load_stack`.
    """
    manifest = _complete_manifest(evidence_dir)
    nbytes = 4 * len(manifest.layers) * manifest.grid.height * manifest.grid.width
    if nbytes <= max_bytes:
        return load_stack(evidence_dir)
    lazy = LazyStack(evidence_dir, strip_rows=strip_rows, cache_strips=cache_strips)
    log.info("evidence stack of %.2f GiB exceeds %.2f GiB: read in strips of %d rows",
             nbytes / 1024**3, max_bytes / 1024**3, strip_rows)
    return lazy, lazy.layer_names, lazy.grid


def is_stack(obj: object) -> bool:
    """True for what the stages accept as an evidence stack: an ndarray or a LazyStack."""
    return isinstance(obj, (np.ndarray, LazyStack))

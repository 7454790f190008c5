"""Building the evidence stack: layers window by window (or as Dask tasks), previews, resume."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rasterio.windows import Window

from oremap import io
from oremap.compute import set_threads
from oremap.errors import InputDataError
from oremap.evidence.features import measure_units
from oremap.evidence.idw import IdwInterpolator
from oremap.evidence.manifest import MANIFEST, EvidenceManifest, LayerRecord
from oremap.evidence.prepare import _interpolator, _prepare, _Prepared, _window_values
from oremap.evidence.specs import Spec, _check_names, _parameters, _raster_file_digest, spec_hash
from oremap.grid import Grid
from oremap.progress import progress as progress_bar

__all__ = ["PREVIEW_MAX_PX", "build_evidence", "window_task"]

log = logging.getLogger("oremap.evidence")

#: Previews are decimated to at most this many pixels along the longer side.
PREVIEW_MAX_PX = 2000


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
        Show progress bars over layers and windows (:func:`oremap.progress.progress`).
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
    out_dir = Path(out_dir)
    _check_names(specs)
    prepared, problems = [], []
    for spec in specs:
        try:
            prepared.append(_prepare(spec, grid))
        except InputDataError as exc:
            problems.append(str(exc))
    if problems:
        unique = list(dict.fromkeys(problems))  # one line per cause, however many layers
        raise InputDataError("evidence layers, " + f"{len(unique)} problem(s):\n  - "
                             + "\n  - ".join(unique))
    hashes = [spec_hash(s, grid) for s in specs]
    previous = _previous_records(out_dir, grid) if resume else {}
    done: dict[str, LayerRecord] = {}
    # the layers (one line in a log), and under them the windows of the current layer
    with progress_bar(len(specs), "evidence layers", "layer", disable=not progress) as layers, \
            progress_bar(grid.n_windows(block), "windows", "window", disable=not progress,
                         transient=True) as windows:
        todo: list[tuple[_Prepared, str]] = []
        for p, digest in zip(prepared, hashes, strict=True):
            name = p.spec.name
            old = previous.get(name)
            if old is not None and old.spec_hash == digest and old.intact(out_dir):
                log.info("evidence layer %s: unchanged, kept %s", name, old.path)
                done[name] = old
                layers.update()
                continue
            if old is not None and old.spec_hash == digest:
                log.warning("evidence layer %s: %s was changed or damaged after it was "
                            "written (size or checksum differ); recomputing it", name, old.path)
            todo.append((p, digest))

        def next_layer(name: str) -> None:
            windows.reset(grid.n_windows(block), name)

        def tick() -> None:
            windows.update()

        def finished() -> None:  # a layer written: recorded at once, for a later resume
            layers.update()
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
    return measure_units(p.features, p.measure, grid.unit_name)


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

    unit = grid.unit_name
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

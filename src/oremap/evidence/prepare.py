"""One evidence layer prepared: coverage masks and extents, checked inputs, window values."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import shapely
from rasterio.windows import Window
from shapely.geometry import box
from shapely.geometry.base import BaseGeometry

from oremap.errors import InputDataError
from oremap.evidence.features import (
    MEASURES,
    FeatureSet,
    centres_inside,
    check_radius,
    measure_map,
    prepare_features,
)
from oremap.evidence.idw import (
    IdwInterpolator,
    PreparedSamples,
    check_idw_parameters,
    interpolate_window,
    prepare_samples,
)
from oremap.evidence.raster import (
    PreparedRaster,
    RasterLayerSpec,
    prepare_raster,
    raster_window,
)
from oremap.evidence.specs import RASTER_MEASURES, GeochemLayerSpec, GeologyLayerSpec, Spec
from oremap.grid import Grid

__all__ = ["coverage_mask"]

log = logging.getLogger("oremap.evidence")


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

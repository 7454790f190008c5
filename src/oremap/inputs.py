"""Configured inputs: the grid, vector sources, evidence layer specs and labelled cells.

The only place where ``[grid]``, ``[geochem]``, ``[[geology]]``, ``[[raster]]`` and ``[labels]``
become data (read into the grid's CRS); the stages take what these functions return.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import geopandas as gpd
import numpy as np
import pandas as pd
from shapely.geometry.base import BaseGeometry

from oremap import io
from oremap.config import Config, VectorSource
from oremap.errors import InputDataError
from oremap.evidence import GeochemLayerSpec, GeologyLayerSpec, RasterLayerSpec, raster_classes
from oremap.evidence.raster import class_label
from oremap.grid import Grid

if TYPE_CHECKING:
    from oremap.evidence import LazyStack

__all__ = [
    "context_stack",
    "crop_spec",
    "evidence_specs",
    "extent_of",
    "label_study_cells",
    "make_grid",
    "map_overlays",
    "raster_specs",
    "read_source",
]


def make_grid(config: Config) -> Grid:
    """The evidence grid described by ``[grid]``."""
    g = config.grid
    return Grid.from_bounds(g.crs, g.bounds, g.pixel_size)


def read_source(src: VectorSource, grid: Grid, *, what: str,
                allow_empty: bool = False) -> gpd.GeoDataFrame:
    """Read one configured vector source into the grid's CRS, applying its ``where`` filter."""
    gdf = io.read_vector(src.path, layer=src.layer, crs=src.crs, target_crs=grid.crs, what=what,
                         allow_empty=True)
    for column, value in (src.where or {}).items():
        if column not in gdf.columns:
            raise InputDataError(
                f"{what} ({src.path}): `where` filters on column {column!r}, which the layer "
                f"lacks; it has {[c for c in gdf.columns if c != 'geometry']}."
            )
        keep = gdf[column].isin(value) if isinstance(value, list) else gdf[column] == value
        gdf = gdf.loc[keep]
    if len(gdf) == 0 and not allow_empty:
        raise InputDataError(f"{what} ({src.path}{':' + src.layer if src.layer else ''}) has no "
                             "features (after its `where` filter); check the file and filter.")
    return gdf


def extent_of(src: VectorSource | None, grid: Grid, what: str) -> BaseGeometry | None:
    if src is None:
        return None
    return read_source(src, grid, what=what).geometry.union_all()


def crop_spec(config: Config) -> Any:
    """The crop lattices of ``[samples]``."""
    from oremap.samples import CropSpec  # torch: off the light import path

    s = config.samples
    return CropSpec(size=s.crop_size, positive=(s.positive.n, s.positive.a, s.positive.b),
                    negative=(s.negative.n, s.negative.a, s.negative.b))


def label_study_cells(config: Config, grid: Grid, stack: np.ndarray | LazyStack,
                      layer_names: Sequence[str]) -> gpd.GeoDataFrame:
    """Cells of the study area with labels, reasons and coverage.

    Cells with too much nodata, or outside ``[samples] area``, are unusable: never labelled
    negative, never cropped.
    """
    from oremap.samples import (  # torch: off the light import path
        cell_coverage,
        label_cells,
        make_cells,
        restrict_to_area,
    )

    g, lab = config.grid, config.labels
    cells = make_cells(grid, cols=g.cell_cols, rows=g.cell_rows, cell_size=g.cell_size)
    orebodies = read_source(lab.orebodies, grid, what="[labels.orebodies]")
    barren = None
    if lab.barren:
        parts = [read_source(src, grid, what=f"[[labels.barren]] #{i + 1}", allow_empty=True)
                 for i, src in enumerate(lab.barren)]
        parts = [p[["geometry"]].assign(source=Path(src.path).name + (f":{src.layer}"
                                                                       if src.layer else ""))
                 for p, src in zip(parts, lab.barren)]
        barren = gpd.GeoDataFrame(pd.concat(parts, ignore_index=True), crs=grid.crs)
    cells = cell_coverage(stack, cells, list(layer_names),
                          tolerance=config.samples.nodata_tolerance)
    area = config.samples.area
    if area is not None:
        what = "[samples] area"
        cells = restrict_to_area(cells, extent_of(area, grid, what), rule=area.rule,
                                 source=f"{what} ({area.path})")
    return label_cells(cells, orebodies=orebodies, barren=barren, strategy=lab.negatives,
                       orebody_buffer=lab.orebody_buffer, min_distance=lab.min_distance,
                       ratio=lab.ratio, seed=config.seed,
                       orebody_source=f"{lab.orebodies.path} ([labels.orebodies])",
                       barren_source="[[labels.barren]] sources")


def evidence_specs(config: Config, grid: Grid) -> list[Any]:
    """One layer spec per configured element and geology layer, inputs read into grid CRS."""

    specs: list[Any] = []
    if config.geochem is not None:
        g = config.geochem
        pts = io.read_points_csv(g.path, x=g.x, y=g.y, crs=g.crs, columns=g.elements,
                                 target_crs=grid.crs, what="[geochem]")
        xy = np.column_stack([pts.geometry.x.to_numpy(), pts.geometry.y.to_numpy()])
        extent = extent_of(g.extent, grid, "[geochem.extent]")
        for element in g.elements:
            specs.append(GeochemLayerSpec(
                name=element, xy=xy, values=pts[element].to_numpy(),
                source=f"{g.path} column {element!r} ([geochem] elements)", power=g.power,
                neighbours=g.n_neighbours(), radius=g.radius, log10=g.log_for(element),
                clip_percentile=g.clip_percentile, coverage_buffer=g.coverage_buffer,
                extent=extent, censored=g.censored))
    for i, layer in enumerate(config.geology):
        what = f"[[geology]] #{i + 1} {layer.name!r}"
        gdf = read_source(layer, grid, what=what)
        specs.append(GeologyLayerSpec(
            name=layer.name, geometries=list(gdf.geometry), source=f"{layer.path} ({what})",
            measure=layer.measure, radius=layer.radius,
            extent=extent_of(layer.extent, grid, f"{what} extent")))
    specs += raster_specs(config, grid)
    return specs


def raster_specs(config: Config, grid: Grid) -> list[Any]:
    """The layer specs of every ``[[raster]]`` entry: one per band (per class when
    categorical), then each band's derived layers."""

    specs: list[Any] = []
    for i, r in enumerate(config.raster):
        what = f"[[raster]] #{i + 1} {r.name!r}"
        common = dict(path=r.path, crs=r.crs, nodata=r.nodata, resampling=r.resampling,
                      units=r.units)
        for band in r.band_list():
            base = r.base_name(band)
            source = f"{r.path} band {band} ({what})"
            if r.categorical:
                classes = raster_classes(r.path, grid, band=band, crs=r.crs, nodata=r.nodata,
                                         max_classes=r.max_classes, what=what)
                specs += [RasterLayerSpec(name=f"{base}_{class_label(c)}", band=band,
                                          source=f"{source}, class {class_label(c)}",
                                          category=c, **common) for c in classes]
                continue
            transform = dict(log10=r.log10, clip_percentile=r.clip_percentile)
            specs.append(RasterLayerSpec(name=base, band=band, source=source, **transform,
                                         **common))
            for d in r.derive:
                specs.append(RasterLayerSpec(
                    name=f"{base}_{d}", band=band, source=f"{source}, {d}", derive=d,
                    radius=r.texture_radius if d == "texture" else None, **transform,
                    **common))
    return specs


def context_stack(config: Config, stack: np.ndarray | LazyStack, names: Sequence[str],
                  grid: Grid) -> tuple[np.ndarray | LazyStack, list[str]]:
    """The stack the members see: with ``[samples] context = k > 0``, each evidence layer is
    followed by its neighbourhood mean (``<layer>@ctx<k>``) over the (2k + 1) x (2k + 1)-cell
    square centred on each pixel (nodata ignored), so that every crop carries, besides its own
    pixels, the evidence of k cells around them. ``context = 0``: the stack as it is.

    The smoothed layers are computed in memory (a :class:`LazyStack` is read whole).
    """
    from scipy.ndimage import uniform_filter

    from oremap.samples.cells import _cell_pixels  # torch: samples/__init__ imports it


    k = config.samples.context
    if k == 0:
        return stack, list(names)
    g = config.grid
    px_rows, px_cols = _cell_pixels(grid, cols=g.cell_cols, rows=g.cell_rows,
                                    cell_size=g.cell_size)
    size = ((2 * k + 1) * px_rows, (2 * k + 1) * px_cols)
    arr = np.asarray(stack, dtype=np.float32)
    out = np.empty((2 * arr.shape[0], *arr.shape[1:]), dtype=np.float32)
    for i, layer in enumerate(arr):
        valid = np.isfinite(layer)
        total = uniform_filter(np.where(valid, layer, 0.0).astype(np.float64), size=size,
                               mode="constant", cval=0.0)
        count = uniform_filter(valid.astype(np.float64), size=size, mode="constant", cval=0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            smooth = np.where(count > 1e-9, total / np.maximum(count, 1e-12), np.nan)
        out[2 * i], out[2 * i + 1] = layer, smooth.astype(np.float32)
    labels = [n for name in names for n in (name, f"{name}@ctx{k}")]
    return out, labels


def map_overlays(config: Config, grid: Grid) -> dict[str, gpd.GeoDataFrame]:
    """The geology sources (each once, however many layers it feeds) and the barren records,
    in the grid's CRS, to draw over the ensemble map."""
    overlays = {}
    for g in config.geology:  # each source once, however many layers it feeds
        name = g.layer or Path(g.path).stem
        if name not in overlays:
            overlays[name] = read_source(g, grid, what=f"[[geology]] {g.name!r}",
                                         allow_empty=True)
    for i, src in enumerate(config.labels.barren):
        overlays[f"barren records {i + 1}" if len(config.labels.barren) > 1
                 else "barren records"] = read_source(
            src, grid, what=f"[[labels.barren]] #{i + 1}", allow_empty=True)
    return overlays

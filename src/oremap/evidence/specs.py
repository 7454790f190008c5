"""Evidence layer specs: geochemistry and geology specs, layer names and spec hashes."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
import shapely
from shapely.geometry.base import BaseGeometry

from oremap.contract import digest
from oremap.errors import InputDataError
from oremap.evidence.idw import parse_censored
from oremap.evidence.manifest import ALGORITHM_VERSION, grid_to_dict
from oremap.evidence.raster import RasterLayerSpec
from oremap.grid import Grid

__all__ = [
    "RASTER_MEASURES",
    "GeochemLayerSpec",
    "GeologyLayerSpec",
    "Spec",
    "geochem_specs",
    "spec_hash",
]

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

"""Probability maps as Cloud-Optimized GeoTIFFs with their QGIS style, and their band names."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from oremap import io
from oremap.errors import InputDataError
from oremap.grid import Grid
from oremap.maps.qgis_style import write_style
from oremap.names import member_kind

__all__ = ["describe_map", "write_probability_map"]


def write_probability_map(path: str | os.PathLike, array: np.ndarray, grid: Grid, *,
                          band_name: str = "P(ore)", tags: Mapping[str, str] | None = None,
                          style: str = "probability") -> Path:
    """Write a (rows, cols) map as a Cloud-Optimized GeoTIFF with ``grid``'s CRS and
    transform, and its QGIS style beside it (``<name>.qml``, see
    :func:`oremap.maps.qgis_style.write_style`).

    NaN pixels are written as ``grid.nodata``. ``band_name`` is the band description GIS
    software shows (say what the values are: "P(ore) lenet", "ore vote share ..."), ``tags``
    dataset metadata (quantity, model or rule, threshold). ``style``: ``probability`` (also
    vote shares; the ramp spans the map's own finite min..max), ``std`` (0-0.5), ``entropy``
    (0-1) or ``rank`` (the std of the area percentile, 0-50 percentile points). Returns the
    path.

    Raises
    ------
    InputDataError
        If ``array`` is not 2-D of shape ``grid.shape``.
    """
    arr = np.asarray(array)
    if arr.ndim != 2:
        raise InputDataError(f"probability map must be 2-D (rows, cols); got shape {arr.shape}.")
    out = io.write_raster(path, arr, grid, band_names=[band_name],
                          tags={k: str(v) for k, v in (tags or {}).items()}, cog=True)
    write_style(out, style)
    return out


def describe_map(name: str, *, continuous: bool = False) -> tuple[str, dict[str, str]]:
    """Band description and tags of the map of member or rule ``name``.

    Voting rules map the (weighted) share of ore votes, not a probability; the band says so.
    """
    try:
        kind = member_kind(name)
    except KeyError:  # a map of something oremap does not register (Python API)
        kind = "member"
    voting = kind == "rule" and name.endswith("_voting")
    quantity = "ore vote share" if voting else "P(ore)"
    what = f"{quantity} {name} ({kind}{', sliding window' if continuous else ''})"
    return what, {"quantity": quantity, "kind": kind, "name": name,
                  "support": "sliding window" if continuous else "cell"}

"""The file layout of a demo folder, and writing one atomically (or reusing a complete one)."""

from __future__ import annotations

import logging
import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np

from oremap.demo.area import (
    DEMO_BOUNDS,
    DEMO_CELL_COLS,
    DEMO_CELL_ROWS,
    DEMO_CELL_SIZE_M,
    DEMO_CRS,
    DEMO_FERTILITY_PIXEL_M,
    DEMO_VERSION,
    demo_grid,
)
from oremap.demo.generate import _build, _Demo
from oremap.demo.geophysics import magnetics_grid, radiometrics_grid
from oremap.demo.readme import _readme
from oremap.errors import ConfigError, InputDataError
from oremap.io import atomic_path, read_json, write_csv, write_json, write_raster, write_text

__all__ = ["DemoFiles", "write_demo"]


@dataclass(frozen=True)
class DemoFiles:
    """Paths of a written demo study area.

    Attributes
    ----------
    root : Path
        The demo folder.
    soil_samples : Path
        ``soil_samples.csv``: ``sample_id, x, y`` and one column per element of
        :data:`ELEMENTS` (units in the README).
    geology : Path
        ``geology.gpkg`` with layers ``shear_zones``, ``faults``, ``alteration_zones``,
        ``quartz_sandstone`` and ``geology_extent``.
    orebodies : Path
        ``orebodies.gpkg``, layer ``orebodies`` (polygons, column ``name``).
    drilling : Path
        ``drilling.gpkg``, layers ``drillholes`` (points) and ``trenches`` (lines), both with a
        column ``result`` in {"barren", "mineralised"}.
    fertility : Path
        ``fertility.tif``: the hidden fertility field in [0, 1] on a 1 m grid (ground truth).
    magnetics : Path
        ``magnetics.tif``: synthetic total magnetic intensity anomaly (nT) on a 2 m grid of its
        own (:func:`magnetics_grid`), nodata over the blank corner.
    radiometrics_k : Path
        ``radiometrics_k.tif``: synthetic gamma-ray potassium (%) on a 4 m grid of its own
        (:func:`radiometrics_grid`), nodata in a strip beyond the north-east edge.
    readme : Path
        ``README.md``: what is synthetic, units, how it was generated, the seed.
    """

    root: Path
    soil_samples: Path
    geology: Path
    orebodies: Path
    drilling: Path
    fertility: Path
    magnetics: Path
    radiometrics_k: Path
    readme: Path

    @classmethod
    def at(cls, root: Path) -> DemoFiles:
        """The file layout of a demo folder ``root`` (nothing is read or checked)."""
        root = Path(root)
        return cls(root=root, soil_samples=root / "soil_samples.csv",
                   geology=root / "geology.gpkg", orebodies=root / "orebodies.gpkg",
                   drilling=root / "drilling.gpkg", fertility=root / "fertility.tif",
                   magnetics=root / "magnetics.tif", radiometrics_k=root / "radiometrics_k.tif",
                   readme=root / "README.md")

    @property
    def marker(self) -> Path:
        """``demo.json``: seed, generator version and label counts; written last."""
        return self.root / "demo.json"

    def paths(self) -> list[Path]:
        """All data files, README included (the marker excluded)."""
        return [self.soil_samples, self.geology, self.orebodies, self.drilling, self.fertility,
                self.magnetics, self.radiometrics_k, self.readme]


def write_demo(out_dir: Path, *, seed: int = 0, overwrite: bool = False) -> DemoFiles:
    """Generate the demo study area for ``seed`` and write it into ``out_dir``.

    Everything is written into a temporary sibling folder that is renamed into place only when
    complete, so ``out_dir`` never holds half a demo. If ``out_dir`` already holds a complete
    demo of this seed and generator version it is returned as is; a demo of this seed written
    by an older generator version is regenerated.

    Parameters
    ----------
    out_dir : Path
        Folder to create (its parent is created if needed).
    seed : int
        Seed of ``numpy.random.default_rng``, >= 0; the same seed gives the same files.
    overwrite : bool
        Replace an existing demo of another seed or of a newer generator version. A folder that
        is not empty and holds no ``demo.json`` is never replaced.

    Returns
    -------
    DemoFiles

    Raises
    ------
    ConfigError
        If ``seed`` is not a non-negative integer.
    InputDataError
        If ``out_dir`` is a file, a non-empty folder that is not an oremap demo, or a demo of
        another seed or a newer generator version while ``overwrite`` is False.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"demo seed must be an integer >= 0, got {seed!r}; pass e.g. seed=0.")
    seed = int(seed)
    out_dir = Path(out_dir)
    files = DemoFiles.at(out_dir)
    if _reusable(files, seed, overwrite):
        return files
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = _fresh_sibling(out_dir, "tmp")
    try:
        _write_all(_build(seed), DemoFiles.at(tmp))
        _move_into_place(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return files


# --------------------------------------------------------------------------- folder handling


def _reusable(files: DemoFiles, seed: int, overwrite: bool) -> bool:
    """True if ``files.root`` holds a complete demo of ``seed``; raise if it must stay as is."""
    root = files.root
    if not root.exists():
        return False
    if not root.is_dir():
        raise InputDataError(f"demo folder {root} is a file; give a folder path that does not "
                             "exist yet (or an empty folder).")
    if not any(root.iterdir()):
        return False
    if not files.marker.is_file():
        raise InputDataError(f"demo folder {root} is not empty and holds no demo.json, so it is "
                             "not an oremap demo; refusing to replace it. Choose a new or empty "
                             "folder.")
    try:
        marker = read_json(files.marker)
        found = (marker.get("seed"), marker.get("version"))
    except (ValueError, AttributeError):
        found = ("unreadable", "unreadable")
    complete = all(p.is_file() for p in files.paths())
    if found == (seed, DEMO_VERSION) and complete:
        return not overwrite
    if overwrite:
        return False
    version = found[1]
    if found[0] == seed and type(version) is int and version < DEMO_VERSION:
        logging.getLogger("oremap").info(  # an older generator's demo: regenerate it
            "demo folder %s was written by demo generator version %d; regenerating it with "
            "version %d", root, version, DEMO_VERSION)
        return False
    raise InputDataError(
        f"demo folder {root} holds a demo with seed {found[0]} and version {found[1]} "
        f"({'complete' if complete else 'incomplete'}), expected seed {seed} and version "
        f"{DEMO_VERSION}; pass overwrite=True to replace it, or choose another folder."
    )


def _fresh_sibling(path: Path, kind: str) -> Path:
    """Create a new hidden, uniquely named folder beside ``path`` (usual permissions)."""
    while True:
        candidate = path.with_name(f".{path.name}.{secrets.token_hex(4)}.{kind}")
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue


def _move_into_place(tmp: Path, out_dir: Path) -> None:
    """Rename the finished folder ``tmp`` onto ``out_dir``, replacing what is there."""
    if not out_dir.exists():
        os.replace(tmp, out_dir)
        return
    old = _fresh_sibling(out_dir, "old")
    old.rmdir()
    os.replace(out_dir, old)
    os.replace(tmp, out_dir)
    shutil.rmtree(old)


def _write_layers(path: Path, layers: dict[str, gpd.GeoDataFrame]) -> Path:
    """Write several layers into one GeoPackage (no spatial index: the layers are tiny)."""
    with atomic_path(path) as tmp:
        for name, gdf in layers.items():
            gdf.to_file(tmp, layer=name, engine="pyogrio", layer_options={"SPATIAL_INDEX": "NO"})
    return path


def _write_all(demo: _Demo, files: DemoFiles) -> None:
    write_csv(files.soil_samples, demo.samples)
    _write_layers(files.geology, demo.geology)
    _write_layers(files.orebodies, {"orebodies": demo.orebodies})
    _write_layers(files.drilling, {"drillholes": demo.drillholes, "trenches": demo.trenches})
    write_raster(files.fertility, demo.fertility, demo_grid(DEMO_FERTILITY_PIXEL_M),
                 band_names=["fertility"])
    write_raster(files.magnetics, demo.magnetics, magnetics_grid(), band_names=["magnetics"],
                 units=["nT"], tags={"quantity": "total magnetic intensity anomaly (synthetic)"})
    write_raster(files.radiometrics_k, demo.radiometrics_k, radiometrics_grid(),
                 band_names=["K"], units=["%"],
                 tags={"quantity": "gamma-ray potassium concentration (synthetic)"})
    write_text(files.readme, _readme(demo))
    write_json(files.marker, {
        "generator": "oremap.demo", "version": DEMO_VERSION, "seed": demo.seed,
        "crs": DEMO_CRS, "bounds": list(DEMO_BOUNDS),
        "cells": {"cols": DEMO_CELL_COLS, "rows": DEMO_CELL_ROWS,
                  "size_m": list(DEMO_CELL_SIZE_M)},
        "counts": demo.counts,
        "files": {p.name: p.stat().st_size for p in files.paths()},
    })

"""The embedded synthetic study area: a seeded, Bawangou-like orogenic-gold demo written as files.

The demo imitates the Bawangou gold area of He et al. (2024, Sci. Rep. 14): orogenic gold in
metamorphic rocks, controlled by ENE ductile shear zones and their secondary faults. A hidden,
smooth mineralisation "fertility" field in [0, 1] drives everything else: soil geochemistry,
alteration zones, where the orebodies lie, and in part two airborne geophysical grids
(magnetics and gamma-ray potassium, each at a pixel size and origin of its own). The generator
writes ordinary files (CSV, GeoPackage, GeoTIFF) so that the demo goes through the same readers
as user data.

Coordinates inside the generator are local metres: ``u`` east and ``v`` north of the lower-left
corner of :data:`DEMO_BOUNDS`, and ``(s, t)``, the along-strike and across-strike axes of the
shear-zone system (``s`` toward ENE, ``t`` toward NNW).
"""

from __future__ import annotations

import logging
import math
import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio.features
import shapely
from scipy import ndimage

from oremap.errors import ConfigError, InputDataError
from oremap.grid import Grid
from oremap.io import atomic_path, read_json, write_csv, write_json, write_raster, write_text

DEMO_CRS = "EPSG:32649"
DEMO_BOUNDS = (392000.0, 3720000.0, 392800.0, 3720368.0)
DEMO_CELL_COLS = 40
DEMO_CELL_ROWS = 16
DEMO_CELL_SIZE_M = (20.0, 23.0)
DEMO_PIXEL_SIZE = 0.5
DEMO_FERTILITY_PIXEL_M = 1.0
DEMO_MAGNETICS_PIXEL_M = 2.0
DEMO_RADIOMETRICS_PIXEL_M = 4.0
DEMO_GEOPHYSICS_NODATA = -99999.0
DEMO_VERSION = 2
ELEMENTS = ("Au", "Ag", "As", "Cu", "Pb", "Zn", "Hg", "Sb", "W", "Mo")

# Blank lower-left corner: the triangle (0, 0), (CORNER_U, 0), (0, CORNER_V) in local metres.
_CORNER_U = 240.0
_CORNER_V = 230.0
_WIDTH = DEMO_BOUNDS[2] - DEMO_BOUNDS[0]
_HEIGHT = DEMO_BOUNDS[3] - DEMO_BOUNDS[1]
_CENTRE = (_WIDTH / 2, _HEIGHT / 2)
_TARGET_NEGATIVES = 330
# The airborne surveys' own grids: origins off the evidence pixel lattice (by half an evidence
# pixel and a fraction of their own pixel) and a margin of a few pixels beyond DEMO_BOUNDS.
_MAGNETICS_BOUNDS = (DEMO_BOUNDS[0] - 6.75, DEMO_BOUNDS[1] - 5.25, DEMO_BOUNDS[2] + 5.25,
                     DEMO_BOUNDS[3] + 6.75)
_RADIOMETRICS_BOUNDS = (DEMO_BOUNDS[0] - 13.25, DEMO_BOUNDS[1] - 9.75, DEMO_BOUNDS[2] + 10.75,
                        DEMO_BOUNDS[3] + 10.25)


@dataclass(frozen=True)
class _Assay:
    unit: str
    detection_limit: float
    background: float  # median of the log-normal background, in ``unit``
    log_sd: float  # standard deviation of ln(value) about the background
    gain: float  # ln-units added per unit of fertility
    decimals: int
    role: str


_ASSAYS: dict[str, _Assay] = {
    "Au": _Assay("ppb", 0.5, 0.9, 0.5, 5.5, 2, "strong pathfinder"),
    "Ag": _Assay("ppm", 0.02, 0.06, 0.5, 1.4, 3, "moderate pathfinder"),
    "As": _Assay("ppm", 1.0, 9.0, 0.4, 3.8, 1, "strong pathfinder"),
    "Cu": _Assay("ppm", 1.0, 22.0, 0.35, 0.4, 1, "weak"),
    "Pb": _Assay("ppm", 2.0, 20.0, 0.35, 0.5, 1, "weak"),
    "Zn": _Assay("ppm", 5.0, 60.0, 0.3, 0.1, 1, "noise"),
    "Hg": _Assay("ppb", 5.0, 18.0, 0.4, 3.4, 1, "strong pathfinder"),
    "Sb": _Assay("ppm", 0.05, 0.6, 0.4, 3.6, 3, "strong pathfinder"),
    "W": _Assay("ppm", 0.5, 1.5, 0.45, 0.6, 2, "weak"),
    "Mo": _Assay("ppm", 0.2, 0.5, 0.45, 0.0, 2, "noise"),
}


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


def demo_bounds() -> tuple[float, float, float, float]:
    """Bounds of the demo study area, ``(xmin, ymin, xmax, ymax)`` in metres of EPSG:32649."""
    return DEMO_BOUNDS


def demo_grid(pixel_size: float = DEMO_PIXEL_SIZE) -> Grid:
    """The demo's raster grid over :data:`DEMO_BOUNDS` with square pixels of ``pixel_size`` m."""
    return Grid.from_bounds(DEMO_CRS, DEMO_BOUNDS, pixel_size)


def magnetics_grid() -> Grid:
    """The grid of ``magnetics.tif``: 2 m pixels, its own origin, a margin beyond the bounds."""
    return Grid.from_bounds(DEMO_CRS, _MAGNETICS_BOUNDS, DEMO_MAGNETICS_PIXEL_M,
                            nodata=DEMO_GEOPHYSICS_NODATA)


def radiometrics_grid() -> Grid:
    """The grid of ``radiometrics_k.tif``: 4 m pixels, its own origin, a margin beyond."""
    return Grid.from_bounds(DEMO_CRS, _RADIOMETRICS_BOUNDS, DEMO_RADIOMETRICS_PIXEL_M,
                            nodata=DEMO_GEOPHYSICS_NODATA)


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


# --------------------------------------------------------------------------- geometry helpers


@dataclass(frozen=True)
class _Frame:
    """Rotation between local (u, v) and strike-aligned (s, t) coordinates."""

    strike_deg: float  # angle of the strike from east, counter-clockwise

    def to_st(self, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        c, s = math.cos(math.radians(self.strike_deg)), math.sin(math.radians(self.strike_deg))
        du, dv = np.asarray(u) - _CENTRE[0], np.asarray(v) - _CENTRE[1]
        return du * c + dv * s, -du * s + dv * c

    def to_uv(self, s: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        c, n = math.cos(math.radians(self.strike_deg)), math.sin(math.radians(self.strike_deg))
        s, t = np.asarray(s), np.asarray(t)
        return _CENTRE[0] + s * c - t * n, _CENTRE[1] + s * n + t * c


@dataclass(frozen=True)
class _Curve:
    """A structure trace ``t = offset + slope * s + amp * sin(2 pi s / wavelength + phase)``."""

    offset: float
    slope: float
    amp: float
    wavelength: float
    phase: float
    s0: float
    s1: float

    def t(self, s: np.ndarray) -> np.ndarray:
        s = np.asarray(s, dtype=float)
        return (self.offset + self.slope * s
                + self.amp * np.sin(2 * np.pi * s / self.wavelength + self.phase))

    def distance(self, s: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Approximate distance (m) of points to the trace; exact at the two ends."""
        sc = np.clip(s, self.s0, self.s1)
        return np.hypot(s - sc, t - self.t(sc))

    def line(self, frame: _Frame, step: float = 10.0) -> shapely.LineString:
        s = np.linspace(self.s0, self.s1, max(2, int((self.s1 - self.s0) / step) + 1))
        return shapely.LineString(np.column_stack(frame.to_uv(s, self.t(s))))

    def lens(self, frame: _Frame, s0: float, s1: float, width: float, *, shift: float = 0.0,
             taper: float = 0.6, n: int = 24) -> shapely.Polygon:
        """A lens-shaped polygon along the trace between ``s0`` and ``s1``, ``width`` m wide."""
        s = np.linspace(s0, s1, n)
        half = 0.5 * width * np.sin(np.pi * np.linspace(0, 1, n)) ** taper
        t = self.t(s) + shift
        left = np.column_stack(frame.to_uv(s, t + half))
        right = np.column_stack(frame.to_uv(s, t - half))[::-1]
        return shapely.Polygon(np.vstack([left, right[1:-1]]))

    def band(self, frame: _Frame, width: float, step: float = 10.0) -> shapely.Polygon:
        """A band of constant ``width`` m along the whole trace."""
        s = np.linspace(self.s0, self.s1, max(2, int((self.s1 - self.s0) / step) + 1))
        t = self.t(s)
        left = np.column_stack(frame.to_uv(s, t + width / 2))
        right = np.column_stack(frame.to_uv(s, t - width / 2))[::-1]
        return shapely.Polygon(np.vstack([left, right]))


def _extent_local() -> shapely.Polygon:
    """The mapped area: the study rectangle without the blank lower-left corner (local m)."""
    return shapely.Polygon([(_CORNER_U, 0), (_WIDTH, 0), (_WIDTH, _HEIGHT), (0, _HEIGHT),
                            (0, _CORNER_V)])


def _corner_distance(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Signed distance (m) from the corner's diagonal edge, > 0 on the mapped side."""
    norm = math.hypot(1 / _CORNER_U, 1 / _CORNER_V)
    return (np.asarray(u) / _CORNER_U + np.asarray(v) / _CORNER_V - 1) / norm


def _cell_boxes() -> np.ndarray:
    """Cells as shapely boxes in local metres, row-major from the top-left, shape (rows*cols,)."""
    dx, dy = DEMO_CELL_SIZE_M
    col, row = np.meshgrid(np.arange(DEMO_CELL_COLS), np.arange(DEMO_CELL_ROWS))
    u0 = col.ravel() * dx
    v1 = _HEIGHT - row.ravel() * dy
    return shapely.box(u0, v1 - dy, u0 + dx, v1)


def _to_map(geoms: list | np.ndarray) -> np.ndarray:
    """Shift local geometries to map coordinates of EPSG:32649."""
    moved = shapely.transform(np.asarray(geoms, dtype=object),
                              lambda xy: xy + np.asarray(DEMO_BOUNDS[:2]))
    return shapely.make_valid(moved)


def _gdf(records: list[dict], geoms: list) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(pd.DataFrame(records), geometry=list(_to_map(geoms)), crs=DEMO_CRS)


# --------------------------------------------------------------------------- the generator


@dataclass
class _Demo:
    seed: int
    samples: pd.DataFrame
    geology: dict[str, gpd.GeoDataFrame]
    orebodies: gpd.GeoDataFrame
    drillholes: gpd.GeoDataFrame
    trenches: gpd.GeoDataFrame
    fertility: np.ndarray
    counts: dict[str, int]
    magnetics: np.ndarray  # on magnetics_grid(), NaN in the survey gap
    radiometrics_k: np.ndarray  # on radiometrics_grid(), NaN in the survey gap


@dataclass
class _Structures:
    frame: _Frame
    main: _Curve
    second: _Curve
    secondary: dict[str, _Curve]
    cross: list[shapely.LineString]
    main_shoots: np.ndarray  # (k, 2): along-strike centre s, spread sigma (m)
    known: np.ndarray  # (k,) bool: the shoot holds a discovered orebody
    fault_shoot: tuple[str, float, float]  # secondary fault name, s, sigma
    noise: np.ndarray  # (rows, cols) smooth N(0, 1) field on a 10 m lattice
    sandstone: list  # metamorphic quartz-sandstone lenses (polygons)


def _build(seed: int) -> _Demo:
    rng = np.random.default_rng(seed)
    st = _structures(rng)
    grid = demo_grid(DEMO_FERTILITY_PIXEL_M)
    xy = grid.centres() - np.asarray(DEMO_BOUNDS[:2])
    fert = np.round(_fertility(st, xy[:, 0], xy[:, 1]).reshape(grid.shape), 2)
    orebodies, ore_records = _orebodies(st, rng)
    boxes = _cell_boxes()
    usable = shapely.contains(_extent_local(), boxes)
    positive = np.zeros(len(boxes), dtype=bool)
    for ob in orebodies:
        positive |= shapely.intersects(boxes, ob)
    holes, hole_rec, trenches, trench_rec = _drilling(st, rng, orebodies, boxes, usable,
                                                      positive, fert)
    negative = _negative_cells(boxes, orebodies, holes, hole_rec, trenches, trench_rec)
    counts = {"cells": len(boxes), "dropped": int((~usable).sum()),
              "positive": int((positive & usable).sum()),
              "negative": int((negative & usable).sum())}
    counts["unknown"] = counts["cells"] - counts["dropped"] - counts["positive"] - counts[
        "negative"]
    samples, geology = _soil_samples(st, rng), _geology(st, rng, fert)
    # the geophysics draws from a generator of its own, so the files above do not depend on it
    geo_rng = np.random.default_rng([seed, 7])
    magnetics = _magnetics(st, geo_rng)
    radiometrics_k = _radiometrics_k(st, geo_rng)
    return _Demo(
        seed=seed, samples=samples, geology=geology,
        orebodies=_gdf(ore_records, orebodies),
        drillholes=_gdf(hole_rec, holes), trenches=_gdf(trench_rec, trenches),
        fertility=fert, counts=counts, magnetics=magnetics, radiometrics_k=radiometrics_k,
    )


def _structures(rng: np.random.Generator) -> _Structures:
    """Draw the shear zones, faults and ore shoots (all in local metres)."""
    frame = _Frame(strike_deg=18.0 + rng.uniform(-2.0, 2.0))
    main = _Curve(rng.uniform(-8, 8), 0.0, rng.uniform(4, 7), rng.uniform(260, 360),
                  rng.uniform(0, 2 * np.pi), -480, 480)
    second = _Curve(-150 + rng.uniform(-10, 10), rng.uniform(-0.03, 0.03), rng.uniform(3, 6),
                    rng.uniform(200, 300), rng.uniform(0, 2 * np.pi), -480, 480)
    f1_off = main.offset + rng.uniform(28, 38)
    f2_off = main.offset - rng.uniform(26, 34)
    s_splay = rng.uniform(-260, -220)
    secondary = {
        "F1": _Curve(f1_off, 0.0, rng.uniform(2, 4), 240, rng.uniform(0, 2 * np.pi),
                     rng.uniform(-170, -130), rng.uniform(170, 230)),
        "F2": _Curve(f2_off, 0.0, rng.uniform(2, 4), 260, rng.uniform(0, 2 * np.pi),
                     rng.uniform(-30, 10), rng.uniform(400, 460)),
        "F3": _Curve(main.t(s_splay) - 0.16 * s_splay, 0.16, 0.0, 100, 0.0, s_splay,
                     s_splay + rng.uniform(170, 210)),
    }
    cross = []
    for u0 in (170.0, 470.0, 690.0):
        az = math.radians(-20 + rng.uniform(-6, 6))
        u_c = u0 + rng.uniform(-25, 25)
        d = np.array([math.sin(az), math.cos(az)]) * 260
        cross.append(shapely.LineString([(u_c - d[0], _CENTRE[1] - d[1]),
                                         (u_c + d[0], _CENTRE[1] + d[1])]))
    # five ore shoots along the main shear zone, one per 132 m bin of its mapped length
    edges = np.linspace(-235, 425, 6)
    centres = 0.5 * (edges[:-1] + edges[1:]) + rng.uniform(-18, 18, 5)
    shoots = np.column_stack([centres, rng.uniform(34, 46, 5)])
    known = np.zeros(5, dtype=bool)
    known[rng.choice(5, size=3, replace=False)] = True
    f2 = secondary["F2"]
    fault_shoot = ("F2", rng.uniform(f2.s0 + 120, f2.s1 - 60), rng.uniform(28, 36))
    coarse = rng.standard_normal((int(_HEIGHT // 10) + 3, int(_WIDTH // 10) + 3))
    noise = ndimage.gaussian_filter(coarse, 1.8, mode="reflect")
    noise /= noise.std()
    return _Structures(frame, main, second, secondary, cross, shoots, known, fault_shoot, noise,
                       _sandstone(frame, main, rng))


def _fertility(st: _Structures, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """The hidden fertility in [0, 1] at local points ``(u, v)`` (m), shape of ``u``."""
    s, t = st.frame.to_st(u, v)
    shoot = np.zeros_like(s)
    for centre, sigma in st.main_shoots:
        shoot = np.maximum(shoot, np.exp(-(((s - centre) / sigma) ** 2)))
    main = (0.18 + 0.82 * shoot) * np.exp(-((st.main.distance(s, t) / 19.0) ** 2))
    name, centre, sigma = st.fault_shoot
    fault_mod = 0.15 + 0.85 * np.exp(-(((s - centre) / sigma) ** 2))
    fault = fault_mod * np.exp(-((st.secondary[name].distance(s, t) / 9.0) ** 2))
    others = sum(0.3 * np.exp(-((c.distance(s, t) / 8.0) ** 2))
                 for key, c in st.secondary.items() if key != name)
    second = 0.25 * np.exp(-((st.second.distance(s, t) / 14.0) ** 2))
    noise = ndimage.map_coordinates(st.noise, [np.asarray(v) / 10.0 + 1, np.asarray(u) / 10.0
                                               + 1], order=1, mode="nearest")
    raw = 0.07 + main + 0.9 * fault + others + second + 0.06 * noise
    return np.clip(raw, 0.0, 1.0)


def _orebodies(st: _Structures, rng: np.random.Generator) -> tuple[list, list[dict]]:
    """Three lenses on the main shear zone's known shoots and one on a secondary fault."""
    geoms, records = [], []
    for centre, _ in st.main_shoots[st.known]:
        length = rng.uniform(85, 115)
        geoms.append(st.main.lens(st.frame, centre - length / 2, centre + length / 2,
                                  rng.uniform(5, 9), shift=rng.uniform(-5, 5)))
        records.append({"host_structure": "main shear zone (SZ1)"})
    name, centre, _ = st.fault_shoot
    length = rng.uniform(70, 90)
    geoms.append(st.secondary[name].lens(st.frame, centre - length / 2, centre + length / 2,
                                         rng.uniform(4, 7)))
    records.append({"host_structure": f"secondary fault {name}"})
    order = np.argsort([g.centroid.x for g in geoms])
    geoms = [geoms[i] for i in order]
    records = [{"name": f"OB{k + 1}", **records[i], "area_m2": round(geoms[k].area, 1)}
               for k, i in enumerate(order)]
    return geoms, records


def _drilling(st: _Structures, rng: np.random.Generator, orebodies: list, boxes: np.ndarray,
              usable: np.ndarray, positive: np.ndarray, fert: np.ndarray
              ) -> tuple[list, list[dict], list, list[dict]]:
    """Trenches, holes through the orebodies, near misses, then a barren hole pattern."""
    ore = shapely.union_all(orebodies)
    trenches = _trenches(st, rng, orebodies)
    holes = _ore_holes(st, rng, orebodies)
    negative = _negative_cells(boxes, orebodies, holes, None, trenches, None) & usable
    cell_fert = fert.reshape(DEMO_CELL_ROWS, 23, DEMO_CELL_COLS, 20).mean(axis=(1, 3)).ravel()
    free = np.flatnonzero(usable & ~positive & ~negative)
    want = min(len(free), _TARGET_NEGATIVES + int(rng.integers(-12, 13)) - int(negative.sum()))
    weights = np.clip(1.0 - 1.6 * cell_fert[free], 0.02, None) ** 2
    chosen = np.sort(rng.choice(free, size=max(want, 0), replace=False, p=weights / weights.sum()))
    dx, dy = DEMO_CELL_SIZE_M
    for cell in chosen:
        u0, v0 = np.asarray(boxes[cell].bounds[:2])
        for _ in range(1 + int(rng.random() < 0.3)):
            holes.append(shapely.Point(u0 + rng.uniform(2, dx - 2), v0 + rng.uniform(2, dy - 2)))
    hole_rec = [{"hole_id": f"ZK{k + 1:03d}",
                 "result": "mineralised" if ore.intersects(h) else "barren",
                 "depth_m": round(float(rng.uniform(40, 220)), 1)} for k, h in enumerate(holes)]
    trench_rec = [{"trench_id": f"TC{k + 1:02d}",
                   "result": "mineralised" if ore.intersects(tr) else "barren",
                   "length_m": round(tr.length, 1)} for k, tr in enumerate(trenches)]
    return holes, hole_rec, trenches, trench_rec


def _ore_holes(st: _Structures, rng: np.random.Generator, orebodies: list) -> list:
    """Two or three holes well inside each orebody, then one near miss beside each."""
    holes = []
    for ob in orebodies:
        inner = ob.buffer(-1.0)
        if inner.is_empty:
            inner = ob
        u0, v0, u1, v1 = inner.bounds
        want, found = int(rng.integers(2, 4)), 0
        for _ in range(1000):
            p = shapely.Point(rng.uniform(u0, u1), rng.uniform(v0, v1))
            if inner.contains(p):
                holes.append(p)
                found += 1
            if found == want:
                break
    ore = shapely.union_all(orebodies)
    normal = np.array(st.frame.to_uv(0.0, 1.0)) - np.asarray(_CENTRE)
    for ob in orebodies:
        c = np.asarray(ob.centroid.coords[0])
        p = shapely.Point(c + normal * rng.choice([-1, 1]) * rng.uniform(9, 14))
        if ore.distance(p) > 2.0:
            holes.append(p)
    return holes


def _trenches(st: _Structures, rng: np.random.Generator, orebodies: list) -> list:
    """Cross-strike trenches: two over orebodies, others over barren stretches of structures."""
    frame = st.frame
    sites = [tuple(float(a) for a in frame.to_st(*np.asarray(orebodies[k].centroid.coords[0])))
             for k in rng.choice(len(orebodies), size=2, replace=False)]
    shoots = st.main_shoots[:, 0]
    for _ in range(40):
        if len(sites) >= 5:
            break
        s = rng.uniform(-200, 400)
        if np.min(np.abs(shoots - s)) > 55:
            sites.append((s, float(st.main.t(s))))
    for s in (rng.uniform(-40, 120), rng.uniform(200, 380)):
        sites.append((s, float(st.second.t(s))))
    lines = []
    for s, t0 in sites:
        half = rng.uniform(15, 25)
        lines.append(shapely.LineString(np.column_stack(
            frame.to_uv(np.array([s, s + rng.uniform(-3, 3)]), np.array([t0 - half, t0 + half])))))
    lines = [shapely.intersection(ln, _extent_local()) for ln in lines]
    return [ln for ln in lines if isinstance(ln, shapely.LineString) and ln.length > 10.0]


def _negative_cells(boxes: np.ndarray, orebodies: list, holes: list, hole_rec: list | None,
                    trenches: list, trench_rec: list | None) -> np.ndarray:
    """Cells hit by a barren hole or trench and by no orebody (result None: decide by geometry)."""
    ore = shapely.union_all(orebodies)
    hit = np.zeros(len(boxes), dtype=bool)
    for items, recs in ((holes, hole_rec), (trenches, trench_rec)):
        for k, g in enumerate(items):
            barren = (recs[k]["result"] == "barren") if recs is not None else not ore.intersects(g)
            if barren:
                hit |= shapely.intersects(boxes, g)
    return hit & ~shapely.intersects(boxes, ore)


def _soil_samples(st: _Structures, rng: np.random.Generator) -> pd.DataFrame:
    """Soil samples on a jittered ~20 m grid outside the blank corner, with assays."""
    cols, rows = 41, 19
    u = np.repeat(np.linspace(0, _WIDTH, cols)[None, :], rows, axis=0)
    v = np.repeat(np.linspace(0, _HEIGHT, rows)[:, None], cols, axis=1)
    ju, jv = rng.uniform(-4, 4, u.shape), rng.uniform(-4, 4, v.shape)
    ju[:, [0, -1]] = 0.0  # samples on the west and east edges stay on them
    jv[[0, -1], :] = 0.0
    u, v = (u + ju).ravel(), (v + jv).ravel()
    keep = _corner_distance(u, v) > 3.0
    u, v = u[keep], v[keep]
    # a sampling line along the edge of the blank corner, its two ends on the edge itself
    n_edge = 16
    tau = np.linspace(0, 1, n_edge + 1)
    tau[1:-1] += rng.uniform(-0.01, 0.01, n_edge - 1)
    inward = np.array([1 / _CORNER_U, 1 / _CORNER_V]) / math.hypot(1 / _CORNER_U, 1 / _CORNER_V)
    offset = np.where((tau > 0) & (tau < 1), 1.5, 0.0)
    eu = _CORNER_U * tau + offset * inward[0]
    ev = _CORNER_V * (1 - tau) + offset * inward[1]
    u, v = np.concatenate([u, eu]), np.concatenate([v, ev])
    order = np.lexsort((u, -v))
    u, v = u[order], v[order]
    fert = _fertility(st, u, v)
    in_qs = shapely.contains_xy(shapely.union_all(st.sandstone), u, v)
    table = {"sample_id": [f"S{k + 1:04d}" for k in range(len(u))],
             "x": np.round(u + DEMO_BOUNDS[0], 2), "y": np.round(v + DEMO_BOUNDS[1], 2)}
    for name in ELEMENTS:
        a = _ASSAYS[name]
        litho = np.where(in_qs, -0.3, 0.0) if name in ("Cu", "Pb", "Zn", "W") else 0.0
        ln = (math.log(a.background) + a.gain * fert + litho
              + a.log_sd * rng.standard_normal(len(u)))
        value = np.round(np.exp(ln), a.decimals)
        table[name] = np.where(value < a.detection_limit, a.detection_limit / 2, value)
    return pd.DataFrame(table)


def _sandstone(frame: _Frame, main: _Curve, rng: np.random.Generator) -> list:
    """Three ENE metamorphic quartz-sandstone lenses beside the main shear zone (local m)."""
    draws = rng.uniform(0, 1, 8)
    a = _Curve(main.offset + 60 + 15 * draws[0], 0.02, 5, 300, 6 * draws[1], -470, 60)
    b = _Curve(main.offset - 95 + 10 * draws[2], -0.01, 4, 260, 6 * draws[3], -120, 470)
    c = _Curve(main.offset + 110 + 10 * draws[4], 0.0, 6, 320, 6 * draws[5], 120, 470)
    return [a.lens(frame, a.s0, a.s1, 38 + 10 * draws[6], taper=0.3, n=40),
            b.lens(frame, b.s0, b.s1, 30 + 10 * draws[7], taper=0.3, n=40),
            c.lens(frame, c.s0, c.s1, 26, taper=0.3, n=30)]


def _geology(st: _Structures, rng: np.random.Generator, fert: np.ndarray
             ) -> dict[str, gpd.GeoDataFrame]:
    """The geological map layers, clipped to the mapped extent."""
    extent = _extent_local()
    frame = st.frame
    clip = shapely.intersection
    shear = [clip(st.main.band(frame, rng.uniform(36, 44)), extent),
             clip(st.second.band(frame, rng.uniform(24, 30)), extent)]
    faults = [clip(c.line(frame), extent) for c in st.secondary.values()]
    faults += [clip(ln, extent) for ln in st.cross]
    fault_rec = [{"name": n, "kind": "secondary fault, parallel to SZ1"} for n in st.secondary]
    fault_rec += [{"name": f"C{k + 1}", "kind": "brittle cross fault (NNW)"}
                  for k in range(len(st.cross))]
    sand = [clip(p, extent) for p in st.sandstone]
    alteration = _alteration_local(fert, extent)
    return {
        "shear_zones": _gdf([{"name": "SZ1", "kind": "ductile shear zone", "role": "main"},
                             {"name": "SZ2", "kind": "ductile shear zone", "role": "subsidiary"}],
                            shear),
        "faults": _gdf(fault_rec, faults),
        "alteration_zones": _gdf(
            [{"name": f"A{k + 1}", "assemblage": "silicification-sericite-pyrite"}
             for k in range(len(alteration))], alteration),
        "quartz_sandstone": _gdf([{"name": f"QS{k + 1}", "unit": "metamorphic quartz sandstone"}
                                  for k in range(len(sand))], sand),
        "geology_extent": _gdf([{"name": "mapped area"}], [extent]),
    }


# --------------------------------------------------------------------------- geophysics


def _survey_points(grid: Grid, step: float = 1.0) -> tuple[np.ndarray, np.ndarray, int]:
    """Local (u, v) of a ``step`` m sub-grid of ``grid`` (row-major from the top), and the
    number of sub-pixels along each side of one pixel."""
    k = int(round(grid.pixel_size[0] / step))
    xmin, _, _, ymax = grid.bounds
    u = xmin - DEMO_BOUNDS[0] + (np.arange(grid.width * k) + 0.5) * step
    v = ymax - DEMO_BOUNDS[1] - (np.arange(grid.height * k) + 0.5) * step
    uu, vv = np.meshgrid(u, v)
    return uu, vv, k


def _block_mean(fine: np.ndarray, k: int) -> np.ndarray:
    rows, cols = fine.shape
    return fine.reshape(rows // k, k, cols // k, k).mean(axis=(1, 3))


def _line_distance(u: np.ndarray, v: np.ndarray, p0: np.ndarray, p1: np.ndarray) -> np.ndarray:
    """Distance (m) of points to the segment p0-p1."""
    d = p1 - p0
    w = np.clip(((u - p0[0]) * d[0] + (v - p0[1]) * d[1]) / (d @ d), 0.0, 1.0)
    return np.hypot(u - p0[0] - w * d[0], v - p0[1] - w * d[1])


def _smooth_field(rng: np.random.Generator, u: np.ndarray, v: np.ndarray, spacing: float,
                  sigma: float) -> np.ndarray:
    """A smooth N(0, 1) field at local points, from white noise on a ``spacing`` m lattice."""
    shape = (int(_HEIGHT // spacing) + 12, int(_WIDTH // spacing) + 12)
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="reflect")
    field /= field.std()
    return ndimage.map_coordinates(field, [v / spacing + 6, u / spacing + 6], order=1,
                                   mode="nearest")


def _magnetics(st: _Structures, rng: np.random.Generator) -> np.ndarray:
    """Total magnetic intensity anomaly (nT) on :func:`magnetics_grid`.

    A regional gradient and undulation, four intrusive stocks (induced: a high with a weaker
    low on its north side; two of them kept away from the main shear zone), two magnetic
    dykes (one intruded along a cross fault, one NW-trending), non-magnetic quartz
    sandstone, and magnetite destroyed by the alteration around the fertile structures
    (strongest in SZ1's halo); smoothed for the sensor height, averaged over the 2 m
    pixels, plus noise and a slight line-to-line levelling error.
    """
    grid = magnetics_grid()
    u, v, k = _survey_points(grid)
    s, t = st.frame.to_st(u, v)
    fert = _fertility(st, u, v)
    az = rng.uniform(0, 2 * np.pi)
    field = (rng.uniform(-0.04, 0.04) * (u - _CENTRE[0]) + rng.uniform(-0.05, 0.05)
             * (v - _CENTRE[1]) + 15.0 * np.sin(2 * np.pi * (u * math.cos(az) + v * math.sin(az))
                                                  / rng.uniform(700, 1000) + rng.uniform(0, 6)))
    for k_stock in range(4):
        for _ in range(200):
            cu, cv = rng.uniform(40, _WIDTH - 40), rng.uniform(30, _HEIGHT - 30)
            cs, ct = st.frame.to_st(cu, cv)
            if k_stock >= 2 or st.main.distance(cs, ct) > 80.0:
                break
        amp, sigma = rng.uniform(70, 150), rng.uniform(18, 34)
        field += amp * (np.exp(-((u - cu) ** 2 + (v - cv) ** 2) / (2 * sigma**2))
                        - 0.35 * np.exp(-((u - cu) ** 2 + (v - cv - 1.3 * sigma) ** 2)
                                        / (2 * sigma**2)))
    cross = np.asarray(st.cross[int(rng.integers(len(st.cross)))].coords)
    field += rng.uniform(30, 50) * np.exp(-((_line_distance(u, v, cross[0], cross[-1])
                                             / rng.uniform(3, 5)) ** 2))
    dyke_az = math.radians(rng.uniform(-60, -40))
    centre = np.array([rng.uniform(150, 650), rng.uniform(100, 270)])
    half = np.array([math.sin(dyke_az), math.cos(dyke_az)]) * 600
    field += rng.uniform(25, 40) * np.exp(-((_line_distance(u, v, centre - half, centre + half)
                                             / rng.uniform(2.5, 4)) ** 2))
    sand = shapely.contains_xy(shapely.union_all(st.sandstone), u, v)
    field -= 12.0 * ndimage.gaussian_filter(sand.astype(float), 3.0)
    halo = 0.55 + 0.45 * np.exp(-((st.main.distance(s, t) / 40.0) ** 2))
    field -= rng.uniform(55, 70) * halo * ndimage.gaussian_filter(fert, 6.0, mode="nearest")
    field = _block_mean(ndimage.gaussian_filter(field, 2.0, mode="nearest"), k)
    field += 2.0 * rng.standard_normal(field.shape) + 1.0 * rng.standard_normal(
        (field.shape[0], 1))
    field = np.round(field, 1)
    # survey gap: the flight lines stop short of the blank corner (nothing the cells use)
    pu, pv = _block_mean(u, k), _block_mean(v, k)
    return np.where(_corner_distance(pu, pv) < -10.0, np.nan, field)


def _radiometrics_k(st: _Structures, rng: np.random.Generator) -> np.ndarray:
    """Gamma-ray potassium (%) on :func:`radiometrics_grid`.

    A metamorphic background with smooth lithological variation, K-poor quartz sandstone, and
    potassium added by the sericite of the alteration around fertile ground, all blurred by the
    detector's footprint and averaged over the 4 m pixels, plus counting noise.
    """
    grid = radiometrics_grid()
    u, v, k = _survey_points(grid)
    fert = _fertility(st, u, v)
    sand = shapely.contains_xy(shapely.union_all(st.sandstone), u, v)
    litho = _smooth_field(rng, u, v, 10.0, 3.0)
    value = (rng.uniform(1.9, 2.3) + 0.3 * litho
             - 1.2 * ndimage.gaussian_filter(sand.astype(float), 3.0)
             + rng.uniform(1.1, 1.4) * ndimage.gaussian_filter(fert, 6.0, mode="nearest"))
    value = _block_mean(ndimage.gaussian_filter(value, 5.0, mode="nearest"), k)
    value += rng.normal(0.0, 0.12, value.shape)
    value = np.round(np.clip(value, 0.05, None), 2)
    # survey gap: the last line in the north-east, outside the bounds, was not flown
    pu, pv = _block_mean(u, k), _block_mean(v, k)
    return np.where((pv > _HEIGHT + 2.0) & (pu > 0.6 * _WIDTH), np.nan, value)


def _alteration_local(fert: np.ndarray, extent: shapely.Polygon) -> list:
    """Mapped alteration: where the 2 m mean fertility exceeds 0.42, smoothed, >= 300 m2."""
    rows, cols = fert.shape
    coarse = fert.reshape(rows // 2, 2, cols // 2, 2).mean(axis=(1, 3))
    mask = (coarse > 0.42).astype(np.uint8)
    transform = rasterio.Affine(2.0, 0.0, 0.0, 0.0, -2.0, _HEIGHT)
    polys = [shapely.geometry.shape(g) for g, val in rasterio.features.shapes(
        mask, mask=mask.astype(bool), transform=transform) if val == 1]
    polys = [shapely.intersection(p.simplify(2.5), extent) for p in polys]
    polys = [p for p in polys if p.area >= 300.0]
    return sorted(polys, key=lambda p: (p.centroid.x, p.centroid.y))


def _readme(demo: _Demo) -> str:
    units = [f"| {n} | {a.unit} | {a.detection_limit:g} | {a.detection_limit / 2:g} | {a.role} |"
             for n, a in _ASSAYS.items()]
    c = demo.counts
    mag, rad = magnetics_grid(), radiometrics_grid()
    text = f"""\
# oremap demo study area (synthetic)

Everything in this folder is **synthetic**, generated by `oremap.demo.write_demo` (generator
version {DEMO_VERSION}, seed {demo.seed}). It imitates the Bawangou gold area of He et al.
(2024, Sci. Rep. 14): orogenic gold controlled by ENE ductile shear zones in metamorphic rocks.
No value here is a real measurement.

- CRS: {DEMO_CRS} (WGS 84 / UTM zone 49N), metres.
- Bounds (xmin, ymin, xmax, ymax): {list(DEMO_BOUNDS)}, i.e. 800 m x 368 m.
- Cells: {DEMO_CELL_COLS} x {DEMO_CELL_ROWS} cells of 20 m (E-W) x 23 m (N-S); suggested pixel
  size {DEMO_PIXEL_SIZE} m (cells of 40 x 46 pixels).
- The lower-left corner (the triangle with vertices at the SW corner, 240 m east of it and
  230 m north of it) is blank: no soil samples, and the geological map's extent (`geology.gpkg`,
  layer `geology_extent`) excludes it.

## How it was generated

A hidden, smooth mineralisation *fertility* field in [0, 1] is built from the distance to the
main ENE shear zone SZ1 (strongest, modulated along strike by five ore shoots), to its
parallel secondary faults F1-F3 (F2 hosts an ore shoot), to the weaker shear zone SZ2, plus
smooth noise. Three shoots of SZ1 and the shoot of F2 hold the four orebodies; the two other
SZ1 shoots are blind (undiscovered) and lie mostly in unlabelled cells. Alteration zones are
where the fertility, averaged over 2 m, exceeds 0.42. Soil assays are log-normal backgrounds
whose logarithm rises with the fertility at the sample (Cu, Pb, Zn and W are also lower over
quartz sandstone). Drill holes and trenches through an orebody are `mineralised`, all others
`barren`; most barren holes were placed one or two per cell, inside a seeded choice of cells
away from the orebodies that avoids fertile ground. Cross faults C1-C3 are late and barren.

Two airborne geophysical grids, synthetic too, come from the same hidden geology, each on a
grid of its own (coarser than the suggested pixel, its origin off the pixel lattice, a few
pixels beyond the bounds). The **magnetics** are a regional gradient, four intrusive stocks (a
high with a weaker low on its north side; two of them well away from the main shear zone), a
magnetic dyke along one cross fault and another trending NW, a small low over the
non-magnetic quartz sandstone, and magnetite destroyed by the alteration around fertile
ground (a low that scales with the fertility, strongest in the halo of SZ1), smoothed for the
sensor height, plus noise. The **potassium** is a metamorphic background with smooth
lithological variation, much lower over quartz sandstone, raised by the sericite of the
alteration around fertile ground, blurred by the detector's footprint, plus counting noise.
Each follows the fertility only in part: the magnetics fall as the fertility rises, the
potassium rises with it.

## Files

- `soil_samples.csv`: sample_id, x, y (m) and the assays below; {len(demo.samples)} samples
  on a jittered ~20 m grid. Values below the detection limit (DL) are reported as half the DL
  (substitution, as laboratories do).
- `geology.gpkg`: layers shear_zones (polygons), faults (lines), alteration_zones (polygons),
  quartz_sandstone (polygons), geology_extent (one polygon).
- `orebodies.gpkg`: layer orebodies (polygons, column `name`).
- `drilling.gpkg`: layers drillholes (points) and trenches (lines), column `result` in
  {{"barren", "mineralised"}}.
- `fertility.tif`: the hidden fertility (ground truth), float32 in [0, 1] rounded to 0.01, on
  a 1 m grid over the full bounds (800 x 368 pixels; each cell is exactly 20 x 23 pixels). It
  is defined in the blank corner too.
- `magnetics.tif`: total magnetic intensity anomaly in nT (the band's unit and its tag
  `units`), float32 rounded to 0.1 nT, on a {DEMO_MAGNETICS_PIXEL_M:g} m grid of \
{mag.width} x {mag.height} pixels with bounds
  {list(_MAGNETICS_BOUNDS)}. Nodata ({DEMO_GEOPHYSICS_NODATA:g}): a survey
  gap over the blank corner, more than 10 m inside its edge.
- `radiometrics_k.tif`: gamma-ray potassium in % (the band's unit and its tag `units`),
  float32 rounded to 0.01 %, on a {DEMO_RADIOMETRICS_PIXEL_M:g} m grid of \
{rad.width} x {rad.height} pixels with bounds
  {list(_RADIOMETRICS_BOUNDS)}. Nodata ({DEMO_GEOPHYSICS_NODATA:g}): a survey
  gap, the strip north of the bounds over their eastern 40 %.
- `demo.json`: seed, version and the label counts below; written last.

| element | unit | DL | reported below DL | role |
|---|---|---|---|---|
{chr(10).join(units)}

## Cell labels (cells as 20 m x 23 m boxes from the bounds)

- dropped (not fully inside the mapped extent): {c['dropped']}
- positive (intersect an orebody): {c['positive']}
- negative (intersect a barren hole or trench and no orebody): {c['negative']}
- unknown (the rest): {c['unknown']}
"""
    return text


# --------------------------------------------------------------------------- configuration

EXAMPLE_CONFIG = '''\
# oremap configuration: the embedded demo study area (a synthetic analogue of the Bawangou
# gold area of He et al. 2024). Every distance is in map units of [grid] crs (metres here).
# Relative paths are relative to this file's folder: saved as DIR/my.toml, this file reads
# the data that `oremap demo --out DIR` writes into DIR/data.
name = "oremap demo"
seed = {seed}                        # one seed drives splits, crops, training and sampling
truth = "{data}/fertility.tif"      # demo only: hidden fertility, to score unknown cells

[grid]
crs = "EPSG:32649"                  # UTM 49N; inputs in other CRSs are reprojected to it
bounds = [{xmin}, {ymin}, {xmax}, {ymax}]   # xmin, ymin, xmax, ymax
pixel_size = 0.5                    # evidence raster pixel (m): a 20 m x 23 m cell = 40 x 46 px
cell_cols = 40                      # cells across (or: cell_size = [20.0, 23.0])
cell_rows = 16                      # cells down
block = 2048                        # window (px) for out-of-core evidence computation

[geochem]                           # point assays, one IDW layer per element
path = "{data}/soil_samples.csv"
x = "x"
y = "y"
crs = "EPSG:32649"                  # a CSV has no CRS of its own: required
elements = ["Au", "Ag", "As", "Cu", "Pb", "Zn", "Hg", "Sb", "W", "Mo"]
power = 2.0                         # IDW distance exponent
neighbours = 12                     # nearest samples used, or "all"
log10 = true                        # log10 before interpolation (or a list of elements)
clip_percentile = 99.5              # clip extreme assays at this percentile
coverage_buffer = 15.0              # coverage = convex hull of the samples buffered by this

[[geology]]                         # one evidence layer per geological feature class
name = "shear_zones"
path = "{data}/geology.gpkg"
layer = "shear_zones"
measure = "buffer_density"          # distance | density | buffer_density (cone kernel)
radius = 40.0                       # influence radius R
extent = {{ path = "{data}/geology.gpkg", layer = "geology_extent" }}  # mapped area

[[geology]]
name = "faults"
path = "{data}/geology.gpkg"
layer = "faults"
measure = "buffer_density"
radius = 30.0
extent = {{ path = "{data}/geology.gpkg", layer = "geology_extent" }}

[[geology]]
name = "alteration_zones"
path = "{data}/geology.gpkg"
layer = "alteration_zones"
measure = "buffer_density"
radius = 30.0
extent = {{ path = "{data}/geology.gpkg", layer = "geology_extent" }}

[[geology]]
name = "quartz_sandstone"
path = "{data}/geology.gpkg"
layer = "quartz_sandstone"
measure = "distance"                # exact distance to the nearest zone (0 inside)
extent = {{ path = "{data}/geology.gpkg", layer = "geology_extent" }}

[[raster]]                          # airborne geophysics: any raster GDAL reads
name = "magnetics"
path = "{data}/magnetics.tif"
resampling = "auto"                 # average where finer than the pixel, bilinear where coarser
derive = ["gradient"]               # + magnetics_gradient: horizontal gradient magnitude

[[raster]]
name = "potassium"                  # gamma-ray K (%)
path = "{data}/radiometrics_k.tif"

[labels]
orebodies = {{ path = "{data}/orebodies.gpkg", layer = "orebodies" }}  # positives
orebody_buffer = 0.0
negatives = "verified"              # verified (barren holes/trenches) | distance

[[labels.barren]]                   # drilling that proved ground barren
path = "{data}/drilling.gpkg"
layer = "drillholes"
where = {{ result = "barren" }}

[[labels.barren]]
path = "{data}/drilling.gpkg"
layer = "trenches"
where = {{ result = "barren" }}

[samples]
crop_size = {crop}                  # window side in pixels
positive = {{ n = {pn}, a = {pa}, b = {pb} }}   # <= n windows a cell, steps a (x), b (y) px
negative = {{ n = {nn}, a = {na}, b = {nb} }}
nodata_tolerance = 0.0              # share of nodata pixels a cell may hold (paper: 0)
split = "cell"                      # cell | block | random (the paper's, optimistic)
test_fraction = 0.2
validation = 0.2                    # inner validation: epoch choice, weights, stacking (0: off)
compare_random = {compare}          # also run the paper's random split, side by side

[train]
models = {models}
baselines = ["logistic", "random_forest", "woe"]
profile = "fast"                    # paper (published widths) | fast (for CPUs)
epochs = {epochs}
batch_size = 16
lr = 1e-4                           # cosine annealing from lr ...
lr_min = 1e-5                       # ... down to lr_min
workers = 0                         # data-loading workers (capped at the cores available)
jobs = {jobs}                            # members trained side by side in processes (1: here)
imbalance = "weighted_loss"         # weighted_loss | balanced_sampler | none
device = "auto"                     # auto: CUDA, then Apple MPS, then CPU

[predict]
threshold = 0.5

[ensemble]
rules = ["simple_average", "weighted_average", "majority_voting", "plurality_voting",
         "weighted_voting", "stacking", "top_k", "selected"]  # the paper's five, 3 learned
weight_metric = "accuracy"          # accuracy | f1 | auc
top_k = 3                           # top_k: mean of the 3 members best on inner validation
stability_seeds = {seeds}                 # retrain with this many seeds to measure stability

[maps]
stride = {stride}                   # sliding-window stride (px) of the continuous maps
target_top_fraction = 0.1           # targets: top 10 % of the area (or target_threshold)
target_rule = "weighted_average"
'''


DEMO_MODELS = ["lenet", "alexnet", "vgg16", "vgg8", "resnet50", "mobilenet_v2", "vit"]


def example_config_text(data_dir: str = "data", *, quick: bool = False,
                        seed: int = 0) -> str:
    """The commented demo configuration; ``oremap config example`` prints it."""
    xmin, ymin, xmax, ymax = DEMO_BOUNDS
    crops = dict(crop=32, pn=6, pa=4, pb=7, nn=1, na=8, nb=7) if quick else \
        dict(crop=32, pn=40, pa=2, pb=2, nn=6, na=8, nb=7)
    return EXAMPLE_CONFIG.format(
        seed=seed, xmin=xmin, ymin=ymin, xmax=xmax, ymax=ymax, data=data_dir,
        models="[" + ", ".join(f'"{m}"' for m in DEMO_MODELS) + "]",
        epochs=2 if quick else 15, stride=16 if quick else 8, seeds=0 if quick else 3,
        compare="false" if quick else "true", jobs=1 if quick else 2, **crops)


def run_demo(out: Path, *, quick: bool = False, seed: int = 0, overwrite: bool = False,
             progress: bool = True) -> Path:
    """Write the demo study area into ``out/data`` and run every stage into ``out/run``."""
    from oremap.config import load_config
    from oremap.pipeline import run
    from oremap.runinfo import RunDir

    out = Path(out)
    rd = RunDir(out / ("run_quick" if quick else "run"))
    rd.claim()
    with rd.locked():  # one demo at a time in ``out``: its data are written before the run
        files = write_demo(out / "data", seed=seed)
        cfg_path = out / ("demo_quick.toml" if quick else "demo.toml")
        write_text(cfg_path, example_config_text("data", quick=quick, seed=seed))
        config = load_config(cfg_path)
        logging.getLogger("oremap").info("demo data in %s, configuration %s", files.root,
                                         cfg_path)
        return run(config, rd.root, progress=progress, overwrite=overwrite)

"""The demo's synthetic airborne grids: magnetics and gamma-ray potassium, and their generation."""

from __future__ import annotations

import math

import numpy as np
import shapely
from scipy import ndimage

from oremap.demo.area import (
    _CENTRE,
    _HEIGHT,
    _WIDTH,
    DEMO_BOUNDS,
    DEMO_CRS,
    DEMO_GEOPHYSICS_NODATA,
    DEMO_MAGNETICS_PIXEL_M,
    DEMO_RADIOMETRICS_PIXEL_M,
)
from oremap.demo.structures import _corner_distance, _fertility, _Structures
from oremap.grid import Grid

__all__ = ["magnetics_grid", "radiometrics_grid"]

# The airborne surveys' own grids: origins off the evidence pixel lattice (by half an evidence
# pixel and a fraction of their own pixel) and a margin of a few pixels beyond DEMO_BOUNDS.
_MAGNETICS_BOUNDS = (DEMO_BOUNDS[0] - 6.75, DEMO_BOUNDS[1] - 5.25, DEMO_BOUNDS[2] + 5.25,
                     DEMO_BOUNDS[3] + 6.75)
_RADIOMETRICS_BOUNDS = (DEMO_BOUNDS[0] - 13.25, DEMO_BOUNDS[1] - 9.75, DEMO_BOUNDS[2] + 10.75,
                        DEMO_BOUNDS[3] + 10.25)


def magnetics_grid() -> Grid:
    """The grid of ``magnetics.tif``: 2 m pixels, its own origin, a margin beyond the bounds."""
    return Grid.from_bounds(DEMO_CRS, _MAGNETICS_BOUNDS, DEMO_MAGNETICS_PIXEL_M,
                            nodata=DEMO_GEOPHYSICS_NODATA)


def radiometrics_grid() -> Grid:
    """The grid of ``radiometrics_k.tif``: 4 m pixels, its own origin, a margin beyond."""
    return Grid.from_bounds(DEMO_CRS, _RADIOMETRICS_BOUNDS, DEMO_RADIOMETRICS_PIXEL_M,
                            nodata=DEMO_GEOPHYSICS_NODATA)


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

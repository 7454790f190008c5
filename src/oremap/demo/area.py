"""The demo study area's fixed facts: CRS, bounds, cells, pixel sizes, elements and assays."""

from __future__ import annotations

from dataclasses import dataclass

from oremap.grid import Grid

__all__ = [
    "DEMO_BOUNDS",
    "DEMO_CELL_COLS",
    "DEMO_CELL_ROWS",
    "DEMO_CELL_SIZE_M",
    "DEMO_CRS",
    "DEMO_FERTILITY_PIXEL_M",
    "DEMO_GEOPHYSICS_NODATA",
    "DEMO_MAGNETICS_PIXEL_M",
    "DEMO_PIXEL_SIZE",
    "DEMO_RADIOMETRICS_PIXEL_M",
    "DEMO_VERSION",
    "ELEMENTS",
    "demo_bounds",
    "demo_grid",
]

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


def demo_bounds() -> tuple[float, float, float, float]:
    """Bounds of the demo study area, ``(xmin, ymin, xmax, ymax)`` in metres of EPSG:32649."""
    return DEMO_BOUNDS


def demo_grid(pixel_size: float = DEMO_PIXEL_SIZE) -> Grid:
    """The demo's raster grid over :data:`DEMO_BOUNDS` with square pixels of ``pixel_size`` m."""
    return Grid.from_bounds(DEMO_CRS, DEMO_BOUNDS, pixel_size)

"""The common raster grid: CRS, bounds, pixel size, transform, windows."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from affine import Affine
from pyproj import CRS
from rasterio.windows import Window

from oremap.errors import ConfigError, CRSMismatchError

__all__ = ["DEFAULT_NODATA", "Grid", "parse_crs", "window_transform"]

DEFAULT_NODATA = -9999.0


def window_transform(window: Window, transform: Affine) -> Affine:
    """The transform of ``window`` of a raster on ``transform``: bit for bit
    :func:`rasterio.windows.transform` (and a dataset's ``window_transform``), without
    affine's ``*`` operator, which warns (PendingDeprecationWarning) since affine 3."""
    x, y = transform @ (window.col_off or 0.0, window.row_off or 0.0)
    return Affine.translation(x - transform.c, y - transform.f) @ transform


def parse_crs(value: str | int | CRS, *, what: str = "crs") -> CRS:
    """Parse a CRS given as "EPSG:32649", an EPSG integer, WKT or a pyproj CRS."""
    if isinstance(value, CRS):
        return value
    try:
        return CRS.from_user_input(value)
    except Exception as exc:  # pyproj raises CRSError with a long message
        raise CRSMismatchError(
            f"{what}: cannot understand CRS {value!r} ({exc}); give an EPSG code such as "
            "'EPSG:32649' or WKT."
        ) from None


@dataclass(frozen=True)
class Grid:
    """A north-up raster grid.

    Attributes
    ----------
    crs : pyproj.CRS
        Coordinate reference system; all distances are in its map units.
    bounds : (xmin, ymin, xmax, ymax)
        Outer edges of the grid, in map units.
    pixel_size : (dx, dy)
        Pixel width and height in map units, both > 0.
    nodata : float
        Value written for pixels outside coverage.
    """

    crs: CRS
    bounds: tuple[float, float, float, float]
    pixel_size: tuple[float, float]
    nodata: float = DEFAULT_NODATA

    def __post_init__(self) -> None:
        xmin, ymin, xmax, ymax = self.bounds
        dx, dy = self.pixel_size
        if not (dx > 0 and dy > 0):
            raise ConfigError(f"grid pixel size must be > 0, got {self.pixel_size}")
        if not (xmax > xmin and ymax > ymin):
            raise ConfigError(
                f"grid bounds must be [xmin, ymin, xmax, ymax] with xmax > xmin and ymax > ymin, "
                f"got {list(self.bounds)}"
            )
        for span, step, axis in ((xmax - xmin, dx, "x"), (ymax - ymin, dy, "y")):
            n = span / step
            if abs(n - round(n)) > 1e-6 * max(1.0, n):
                raise ConfigError(
                    f"grid extent along {axis} ({span:g}) is not a whole number of pixels of "
                    f"{step:g}; adjust bounds or pixel_size so that the ratio is an integer."
                )

    @classmethod
    def from_bounds(
        cls,
        crs: str | int | CRS,
        bounds: tuple[float, float, float, float],
        pixel_size: float | tuple[float, float],
        nodata: float = DEFAULT_NODATA,
    ) -> Grid:
        """Build a grid; ``pixel_size`` may be one number (square pixels) or (dx, dy)."""
        if isinstance(pixel_size, (int, float)):
            pixel_size = (float(pixel_size), float(pixel_size))
        return cls(parse_crs(crs), tuple(float(b) for b in bounds), tuple(pixel_size), nodata)

    @property
    def width(self) -> int:
        """Number of pixel columns."""
        return int(round((self.bounds[2] - self.bounds[0]) / self.pixel_size[0]))

    @property
    def height(self) -> int:
        """Number of pixel rows."""
        return int(round((self.bounds[3] - self.bounds[1]) / self.pixel_size[1]))

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, cols)."""
        return self.height, self.width

    @property
    def transform(self) -> Affine:
        """Affine transform from (col, row) to map (x, y) of the pixel's upper-left corner."""
        return Affine(self.pixel_size[0], 0.0, self.bounds[0], 0.0, -self.pixel_size[1],
                      self.bounds[3])

    @property
    def pixel_area(self) -> float:
        """Area of one pixel in squared map units."""
        return self.pixel_size[0] * self.pixel_size[1]

    def column_centres(self, col_off: int = 0, width: int | None = None) -> np.ndarray:
        """x of pixel centres for columns ``col_off .. col_off + width - 1``, shape (width,)."""
        width = self.width - col_off if width is None else width
        return self.bounds[0] + (np.arange(col_off, col_off + width) + 0.5) * self.pixel_size[0]

    def row_centres(self, row_off: int = 0, height: int | None = None) -> np.ndarray:
        """y of pixel centres for rows ``row_off .. row_off + height - 1``, shape (height,)."""
        height = self.height - row_off if height is None else height
        return self.bounds[3] - (np.arange(row_off, row_off + height) + 0.5) * self.pixel_size[1]

    def centres(self, window: Window | None = None) -> np.ndarray:
        """Pixel centres of ``window`` (default: whole grid) as an (h * w, 2) array, row-major."""
        if window is None:
            window = Window(0, 0, self.width, self.height)
        xs = self.column_centres(int(window.col_off), int(window.width))
        ys = self.row_centres(int(window.row_off), int(window.height))
        gx, gy = np.meshgrid(xs, ys)
        return np.column_stack([gx.ravel(), gy.ravel()])

    def rowcol(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Integer (row, col) of the pixels holding map points; may fall outside the grid."""
        col = np.floor((np.asarray(x) - self.bounds[0]) / self.pixel_size[0]).astype(np.int64)
        row = np.floor((self.bounds[3] - np.asarray(y)) / self.pixel_size[1]).astype(np.int64)
        return row, col

    def subgrid(self, window: Window) -> Grid:
        """The grid covering ``window`` (pixel offsets and sizes)."""
        c0, r0 = int(window.col_off), int(window.row_off)
        w, h = int(window.width), int(window.height)
        dx, dy = self.pixel_size
        xmin = self.bounds[0] + c0 * dx
        ymax = self.bounds[3] - r0 * dy
        return Grid(self.crs, (xmin, ymax - h * dy, xmin + w * dx, ymax), self.pixel_size,
                    self.nodata)

    def windows(self, block: int = 1024) -> Iterator[Window]:
        """Tile the grid into windows of at most ``block`` x ``block`` pixels, row-major."""
        if block < 1:
            raise ConfigError(f"block size must be >= 1 pixel, got {block}")
        for r0 in range(0, self.height, block):
            for c0 in range(0, self.width, block):
                yield Window(c0, r0, min(block, self.width - c0), min(block, self.height - r0))

    def n_windows(self, block: int = 1024) -> int:
        """Number of windows :meth:`windows` yields."""
        return math.ceil(self.height / block) * math.ceil(self.width / block)

    @property
    def unit_name(self) -> str:
        """Name of the map unit along the first axis of the CRS ("metre"), or "map unit"."""
        info = self.crs.axis_info
        return info[0].unit_name if info and info[0].unit_name else "map unit"

    def describe(self) -> str:
        """One line for logs and reports."""
        epsg = self.crs.to_epsg()
        crs = f"EPSG:{epsg}" if epsg else self.crs.name
        return (f"{self.width} x {self.height} pixels of {self.pixel_size[0]:g} x "
                f"{self.pixel_size[1]:g} map units, bounds {list(self.bounds)}, CRS {crs}")

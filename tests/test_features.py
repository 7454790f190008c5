"""Tests of oremap.evidence.features: exact distance, rasterising, density measures."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import shapely
from rasterio.windows import Window
from shapely.geometry import LineString, Point, Polygon, box

from oremap.errors import DroppedDataWarning, InputDataError, UnknownNameError
from oremap.evidence.features import (
    buffer_density_map,
    centres_inside,
    density_map,
    distance_map,
    kernel,
    measure_map,
    measure_units,
    prepare_features,
    rasterise_features,
)
from oremap.grid import Grid

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
COPPER = DATA / "copper_queensland"
LOCAL_KM = ('ENGCRS["Copper Queensland local grid",EDATUM["unknown local datum"],'
            'CS[Cartesian,2],AXIS["easting (X)",east,LENGTHUNIT["kilometre",1000]],'
            'AXIS["northing (Y)",north,LENGTHUNIT["kilometre",1000]]]')


@pytest.fixture
def grid() -> Grid:
    """40 x 40 pixels of 10 m."""
    return Grid.from_bounds("EPSG:32633", (500000, 4000000, 500400, 4000400), 10)


def _random_lines(rng, grid, n=6):
    x0, y0, x1, y1 = grid.bounds
    pad = 60
    return [LineString(rng.uniform([x0 - pad, y0 - pad], [x1 + pad, y1 + pad], (4, 2)))
            for _ in range(n)]


def _polygons(grid):
    x0, y0 = grid.bounds[:2]
    ring = Polygon([(x0 + 100, y0 + 100), (x0 + 300, y0 + 80), (x0 + 250, y0 + 250),
                    (x0 + 120, y0 + 200)]).difference(Point(x0 + 200, y0 + 160).buffer(25))
    return [ring, Point(x0, y0).buffer(60), Point(x0 + 330, y0 + 330).buffer(70),
            Point(x0 + 360, y0 + 330).buffer(40)]  # the last two overlap


def _cell_boxes(grid, r0, c0, h, w):
    dx, dy = grid.pixel_size
    rows, cols = np.mgrid[r0:r0 + h, c0:c0 + w]
    xmin = grid.bounds[0] + cols * dx
    ymax = grid.bounds[3] - rows * dy
    return shapely.box(xmin, ymax - dy, xmin + dx, ymax)


def test_straight_fault_distance_by_hand(grid):
    y_fault = grid.bounds[1] + 123.0
    fault = LineString([(grid.bounds[0] - 1000, y_fault), (grid.bounds[2] + 1000, y_fault)])
    d = distance_map([fault], grid)
    expected = np.abs(grid.row_centres() - y_fault)[:, None] * np.ones((1, 40))
    np.testing.assert_allclose(d, expected, rtol=0, atol=1e-9)


def test_distance_matches_shapely_at_random_points(grid):
    rng = np.random.default_rng(7)
    feats = _random_lines(rng, grid) + _polygons(grid)
    d = distance_map(feats, grid)
    union = shapely.union_all(feats)
    c = grid.centres()
    ref = shapely.distance(union, shapely.points(c)).reshape(grid.shape)
    half_diag = 0.5 * math.hypot(*grid.pixel_size)
    assert np.abs(d - ref).max() < 1e-9 < half_diag
    assert (d == 0).sum() > 50  # inside polygons
    # a random window, and random points as the centres of a 1 x 1 m grid around them
    win = Window(5, 9, 23, 17)
    np.testing.assert_allclose(distance_map(feats, grid, window=win), ref[9:26, 5:28],
                               atol=1e-9, rtol=0)
    pts = rng.uniform(grid.bounds[:2], grid.bounds[2:], (25, 2))
    for x, y in pts:
        g1 = Grid.from_bounds(grid.crs, (x - 0.5, y - 0.5, x + 0.5, y + 0.5), 1.0)
        assert distance_map(feats, g1)[0, 0] == pytest.approx(union.distance(Point(x, y)),
                                                              abs=1e-9)


@pytest.mark.skipif(not COPPER.is_dir(), reason=f"reference data {COPPER} absent")
def test_distance_matches_spatstat_distmap():
    lines = pd.read_csv(COPPER / "lineaments.csv")
    feats = [LineString([(a, b), (c, d)]) for a, b, c, d in
             lines[["x0", "y0", "x1", "y1"]].to_numpy()]
    # spatstat: centres x = -0.335 + 0.5 + (0..70), y = 0.19 + 0.5 + (0..158), 1 km pixels
    grid = Grid.from_bounds(LOCAL_KM, (-0.335, 0.19, 70.665, 159.19), 1.0)
    assert grid.shape == (159, 71)
    d = distance_map(feats, grid)
    oracle = pd.read_csv(COPPER / "oracle_distmap_lineaments_1km.csv")
    row = np.rint((grid.bounds[3] - oracle["y"].to_numpy()) / 1.0 - 0.5).astype(int)
    col = np.rint((oracle["x"].to_numpy() - grid.bounds[0]) / 1.0 - 0.5).astype(int)
    np.testing.assert_allclose(grid.column_centres()[col], oracle["x"], atol=1e-9)
    err = np.abs(d[row, col] - oracle["dist"].to_numpy())
    assert len(oracle) == 71 * 159
    assert err.max() < 1e-9 < 0.5 * math.hypot(1.0, 1.0)


def test_line_length_per_pixel_is_exact(grid):
    rng = np.random.default_rng(11)
    lines = _random_lines(rng, grid, n=5)
    amount = rasterise_features(lines, grid, window=Window(3, 2, 20, 25), halo=(4, 6))
    boxes = _cell_boxes(grid, 2 - 4, 3 - 6, 25 + 8, 20 + 12)
    ref = sum(shapely.length(shapely.intersection(line, boxes)) for line in lines)
    np.testing.assert_allclose(amount, ref, atol=1e-9, rtol=0)
    # whole lines inside a big enough halo: totals equal the true length
    big = rasterise_features(lines, grid, halo=(20, 20))
    assert big.sum() == pytest.approx(sum(line.length for line in lines), rel=1e-12)
    # a line along a pixel edge is counted once, in the pixel to its right
    x0, y0 = grid.bounds[:2]
    edge = LineString([(x0 + 50, y0 + 30), (x0 + 50, y0 + 395)])
    amount = rasterise_features([edge], grid)
    assert amount[:, 5].sum() == pytest.approx(365.0, rel=1e-12)
    assert amount.sum() == pytest.approx(365.0, rel=1e-12)


def test_polygon_area_per_pixel_is_exact(grid):
    polys = _polygons(grid)
    amount = rasterise_features(polys, grid, window=Window(5, 4, 30, 31), halo=(3, 8))
    boxes = _cell_boxes(grid, 4 - 3, 5 - 8, 31 + 6, 30 + 16)
    ref = shapely.area(shapely.intersection(shapely.union_all(polys), boxes))
    np.testing.assert_allclose(amount, ref, atol=1e-9, rtol=0)
    assert amount.max() == pytest.approx(grid.pixel_area)


def _direct(amount, grid, radius, shape):
    """Direct double sum of amount(q) * K(|p - q|) over the halo'd block, for every p."""
    dx, dy = grid.pixel_size
    hy, hx = math.ceil(radius / dy), math.ceil(radius / dx)
    h, w = amount.shape[0] - 2 * hy, amount.shape[1] - 2 * hx
    out = np.zeros((h, w))
    rows, cols = np.nonzero(amount)
    for r in range(h):
        for c in range(w):
            d = np.hypot((rows - (r + hy)) * dy, (cols - (c + hx)) * dx)
            k = np.maximum(0, 1 - d / radius) if shape == "cone" else (d <= radius) * 1.0
            out[r, c] = (amount[rows, cols] * k).sum()
    return out


def test_buffer_density_equals_direct_summation(grid):
    rng = np.random.default_rng(5)
    lines = _random_lines(rng, grid, n=4)
    radius = 45.0
    window = Window(6, 4, 18, 15)
    got = buffer_density_map(lines, grid, radius=radius, window=window)
    hy = hx = math.ceil(radius / 10)
    boxes = _cell_boxes(grid, 4 - hy, 6 - hx, 15 + 2 * hy, 18 + 2 * hx)
    amount = sum(shapely.length(shapely.intersection(line, boxes)) for line in lines)
    np.testing.assert_allclose(got, _direct(amount, grid, radius, "cone"), rtol=1e-9,
                               atol=1e-9)
    # polygons: area weighted by the cone
    polys = _polygons(grid)
    got = buffer_density_map(polys, grid, radius=radius, window=window)
    amount = shapely.area(shapely.intersection(shapely.union_all(polys), boxes))
    np.testing.assert_allclose(got, _direct(amount, grid, radius, "cone"), rtol=1e-9,
                               atol=1e-6)


def test_density_of_a_straight_line(grid):
    x0, y0, x1, y1 = grid.bounds
    line = LineString([(x0 - 500, y0 + 200), (x1 + 500, y0 + 200)])
    radius = 60.0
    got = density_map([line], grid, radius=radius)
    n_r = kernel(radius, grid.pixel_size, "disk").sum()
    # pixel rows holding the line: length 10 per pixel; within R there are as many such
    # pixels as disk pixels in the row of the line
    disk = kernel(radius, grid.pixel_size, "disk")
    d_rows = np.rint((grid.row_centres() - (y0 + 195)) / 10).astype(int)  # line in row y0+195
    expected = np.array([disk[6 + d].sum() if abs(d) <= 6 else 0 for d in d_rows]) * 10
    expected = expected / (n_r * grid.pixel_area)
    np.testing.assert_allclose(got, expected[:, None] * np.ones((1, 40)), rtol=1e-9,
                               atol=1e-12)
    # ~ 2 sqrt(R^2 - d^2) / (pi R^2) of the continuous definition, at the line
    assert got[20, 20] == pytest.approx(2 * radius / (math.pi * radius**2), rel=0.1)
    assert (got[:5] == 0).all()  # exactly 0 far from the line despite the FFT


@pytest.mark.parametrize("measure", ["distance", "density", "buffer_density"])
def test_windows_equal_whole_grid(grid, measure):
    rng = np.random.default_rng(2)
    feats = _random_lines(rng, grid, n=5)
    whole = measure_map(feats, grid, measure, radius=37.0)
    fs = prepare_features(feats)
    tiled = np.full(grid.shape, np.nan)
    for w in grid.windows(7):
        tiled[w.row_off:w.row_off + w.height, w.col_off:w.col_off + w.width] = measure_map(
            fs, grid, measure, radius=37.0, window=w)
    np.testing.assert_allclose(tiled, whole, rtol=1e-10, atol=1e-10 * whole.max())
    np.testing.assert_array_equal(tiled == 0, whole == 0)


def test_centres_inside_matches_shapely_including_boundary(grid):
    x0, y0 = grid.bounds[:2]
    # edges through pixel centres (x0 + 105, y0 + 105 are centres)
    poly = Polygon([(x0 + 105, y0 + 105), (x0 + 305, y0 + 105), (x0 + 305, y0 + 255),
                    (x0 + 205, y0 + 355)]).difference(box(x0 + 150, y0 + 150, x0 + 200,
                                                          y0 + 200))
    c = grid.centres()
    ref = shapely.intersects_xy(poly, c[:, 0], c[:, 1]).reshape(grid.shape)
    got = centres_inside(poly, grid)
    np.testing.assert_array_equal(got, ref)
    np.testing.assert_array_equal(centres_inside(poly, grid, Window(3, 5, 30, 20)),
                                  ref[5:25, 3:33])
    assert not centres_inside(Point(0, 0).buffer(1), grid).any()


def test_prepare_features_repairs_and_reports(grid):
    x0, y0 = grid.bounds[:2]
    bowtie = Polygon([(x0, y0), (x0 + 100, y0 + 100), (x0 + 100, y0), (x0, y0 + 100)])
    with pytest.warns(DroppedDataWarning) as record:
        fs = prepare_features([bowtie, None, LineString(), Polygon(
            [(x0, y0), (x0 + 5, y0), (x0, y0 + 5)])], source="geo.gpkg ([[geology]] #1)")
    messages = " ".join(str(w.message) for w in record)
    assert "dropped 2 missing or empty" in messages and "repaired 1 invalid" in messages
    assert "geo.gpkg" in messages
    assert fs.kind == "polygons"
    assert (fs.n_used, fs.n_dropped, fs.n_repaired) == (2, 2, 1)
    assert fs.polygons.area == pytest.approx(2 * 2500 + 6.25, rel=1e-9)  # dissolved
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert prepare_features([Point(1, 2)]).kind == "points"
        assert prepare_features([LineString([(0, 0), (1, 1)]), Point(3, 3)]).kind == "mixed"
        fs = prepare_features([shapely.GeometryCollection([LineString([(0, 0), (1, 1)])])])
        assert fs.kind == "lines" and fs.total_length == pytest.approx(math.sqrt(2))
    assert prepare_features(fs) is fs
    with pytest.raises(InputDataError, match="not a shapely geometry"):
        prepare_features([LineString([(0, 0), (1, 1)]), "LINESTRING (0 0, 1 1)"], source="f")
    with pytest.raises(InputDataError, match="no usable geometry"), pytest.warns(
            DroppedDataWarning):
        prepare_features([None, Polygon()], source="f")


def test_density_errors(grid):
    x0, y0 = grid.bounds[:2]
    line = LineString([(x0, y0), (x0 + 100, y0 + 100)])
    poly = Point(x0 + 200, y0 + 200).buffer(30)
    with pytest.raises(InputDataError, match="only lines or only polygons"):
        buffer_density_map([line, poly], grid, radius=50)
    with pytest.raises(InputDataError, match="only lines or only polygons, got points"):
        density_map([Point(x0, y0)], grid, radius=50)
    with pytest.raises(InputDataError, match="smaller than a pixel"):
        density_map([line], grid, radius=5)
    with pytest.raises(InputDataError, match="need a radius"):
        measure_map([line], grid, "density")
    with pytest.raises(UnknownNameError, match="unknown geology measure"):
        measure_map([line], grid, "kde", radius=50)
    with pytest.raises(UnknownNameError, match="unknown kernel"):
        kernel(50, grid.pixel_size, "gauss")
    # distance accepts any mix
    assert distance_map([line, poly, Point(x0 + 390, y0 + 390)], grid).min() == 0


def test_units_and_kernels():
    lines = prepare_features([LineString([(0, 0), (1, 1)])])
    polys = prepare_features([box(0, 0, 1, 1)])
    assert measure_units(lines, "density", "metre") == "metre per metre²"
    assert measure_units(polys, "density") == "area fraction"
    assert measure_units(polys, "buffer_density", "metre") == "metre²"
    assert measure_units(lines, "distance", "kilometre") == "kilometre"
    cone = kernel(25.0, (10.0, 10.0), "cone")
    assert cone.shape == (7, 7) and cone[3, 3] == 1.0 and cone[3, 0] == 0.0
    assert cone[3, 1] == pytest.approx(1 - 20 / 25)
    assert kernel(25.0, (10.0, 10.0), "disk").sum() == 21  # centres within 2.5 px

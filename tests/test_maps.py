"""Tests of oremap.maps: cell rasters, sliding-window maps, uncertainty, colour map, figures."""

from __future__ import annotations

import math

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
from affine import Affine
from shapely.geometry import LineString, Point, box

from oremap import io, maps
from oremap.errors import DroppedDataWarning, InputDataError
from oremap.grid import Grid
from oremap.maps.colour import area_percentile
from oremap.maps.targets import target_areas

X0, Y_TOP = 1000.0, 2000.0


@pytest.fixture
def grid() -> Grid:
    """24 x 20 px of 10 m; upper-left corner (1000, 2000)."""
    return Grid.from_bounds("EPSG:32633", (X0, Y_TOP - 200.0, X0 + 240.0, Y_TOP), 10.0)


@pytest.fixture
def stack(grid: Grid) -> np.ndarray:
    """Channel 0 = 100 * row + col, channel 1 = 1."""
    rows, cols = np.mgrid[0:grid.height, 0:grid.width]
    return np.stack([100.0 * rows + cols, np.ones(grid.shape)]).astype(np.float32)


def channel0_mean(crops: np.ndarray) -> np.ndarray:
    return crops[:, 0].mean(axis=(1, 2))


# ------------------------------------------------------------------------------- cell rasters


def test_cell_grid_tiles_the_extent(grid: Grid) -> None:
    cg = maps.cell_grid(grid, 6, 4)
    assert cg.shape == (4, 6)
    assert cg.pixel_size == pytest.approx((40.0, 50.0))
    assert cg.bounds == pytest.approx(grid.bounds)
    assert cg.transform == Affine(40.0, 0.0, X0, 0.0, -50.0, Y_TOP)
    assert cg.crs == grid.crs


def test_cell_grid_with_cell_size_leaves_edge_strip(grid: Grid) -> None:
    cg = maps.cell_grid(grid, 3, 2, cell_size_px=7)  # 21 x 14 of 24 x 20 px covered
    assert cg.shape == (2, 3)
    assert cg.bounds == pytest.approx((X0, Y_TOP - 140.0, X0 + 210.0, Y_TOP))
    assert maps.cell_grid(grid, 2, 2, cell_size_px=(12, 10)).pixel_size == (120.0, 100.0)


def test_cell_grid_rejects_bad_counts(grid: Grid) -> None:
    with pytest.raises(InputDataError, match="must be >= 1"):
        maps.cell_grid(grid, 0, 3)
    with pytest.raises(InputDataError, match="do not fit"):
        maps.cell_grid(grid, 4, 2, cell_size_px=7)


def test_cells_to_raster_scatters_values_and_leaves_nan(grid: Grid) -> None:
    cg = maps.cell_grid(grid, 3, 2)
    out = maps.cells_to_raster(np.array([0, 1, 1]), np.array([2, 0, 1]),
                               np.array([0.25, 0.5, 0.75]), cg)
    expected = np.array([[np.nan, np.nan, 0.25], [0.5, 0.75, np.nan]])
    np.testing.assert_array_equal(out, expected)


def test_cells_to_raster_errors(grid: Grid) -> None:
    cg = maps.cell_grid(grid, 3, 2)
    with pytest.raises(InputDataError, match="one length"):
        maps.cells_to_raster(np.array([0, 1]), np.array([0]), np.array([0.1, 0.2]), cg)
    with pytest.raises(InputDataError, match="integer"):
        maps.cells_to_raster(np.array([0.0]), np.array([1.0]), np.array([0.1]), cg)
    with pytest.raises(InputDataError, match="outside the 2 x 3"):
        maps.cells_to_raster(np.array([2]), np.array([0]), np.array([0.1]), cg)
    with pytest.raises(InputDataError, match="more than once"):
        maps.cells_to_raster(np.array([1, 1]), np.array([0, 0]), np.array([0.1, 0.2]), cg)


def test_write_probability_map_round_trip(tmp_path, grid: Grid) -> None:
    cg = maps.cell_grid(grid, 3, 2)
    arr = np.array([[0.1, np.nan, 0.3], [0.4, 0.5, 0.6]])
    path = maps.write_probability_map(tmp_path / "p.tif", arr, cg)
    back, back_grid = io.read_raster(path)
    np.testing.assert_allclose(back, arr, atol=1e-6)
    assert back_grid.transform == cg.transform
    assert back_grid.crs.equals(cg.crs)
    with pytest.raises(InputDataError, match="2-D"):
        maps.write_probability_map(tmp_path / "q.tif", arr.ravel(), cg)


# ------------------------------------------------------------------------ sliding-window map


def test_sliding_window_values_and_geotransform(grid: Grid, stack: np.ndarray) -> None:
    calls = []

    def predict(crops: np.ndarray) -> np.ndarray:
        calls.append(crops.shape)
        assert crops.dtype == np.float32
        return channel0_mean(crops)

    prob, out = maps.sliding_window_map(predict, stack, grid, size=4, stride=2, batch=7,
                                        progress=False)
    assert prob.shape == out.shape == (9, 11)  # (20 - 4) // 2 + 1, (24 - 4) // 2 + 1
    i, j = np.mgrid[0:9, 0:11]
    np.testing.assert_allclose(prob, 100.0 * (2 * i + 1.5) + 2 * j + 1.5, rtol=1e-6)
    # pixel size 2 px = 20 m; margin (4 - 2) / 2 = 1 px = 10 m
    assert out.transform == Affine(20.0, 0.0, X0 + 10.0, 0.0, -20.0, Y_TOP - 10.0)
    # output pixel (i, j) centre == centre of window (i, j)
    assert out.column_centres()[3] == X0 + (2 * 3 + 2) * 10.0
    assert out.row_centres()[5] == Y_TOP - (2 * 5 + 2) * 10.0
    assert all(s[0] <= 7 and s[1:] == (2, 4, 4) for s in calls)
    assert sum(c[0] for c in calls) == 99 and len(calls) == math.ceil(99 / 7)


def test_sliding_window_odd_margin(grid: Grid, stack: np.ndarray) -> None:
    prob, out = maps.sliding_window_map(channel0_mean, stack, grid, size=5, stride=2,
                                        progress=False)
    assert out.bounds[0] == X0 + 15.0 and out.bounds[3] == Y_TOP - 15.0
    assert prob[0, 0] == pytest.approx(100.0 * 2 + 2)  # centre pixel (2, 2) of a 5 x 5 window


def test_sliding_window_nodata_windows_are_nan(grid: Grid, stack: np.ndarray) -> None:
    stack = stack.copy()
    stack[1, 5, 7] = np.nan  # inside windows i in {1, 2}, j in {2, 3}
    with pytest.warns(DroppedDataWarning, match="4 of 99 windows"):
        prob, _ = maps.sliding_window_map(channel0_mean, stack, grid, size=4, stride=2,
                                          batch=5, progress=True)
    nan = np.argwhere(np.isnan(prob))
    assert sorted(map(tuple, nan)) == [(1, 2), (1, 3), (2, 2), (2, 3)]


def test_sliding_window_tiles_assemble_the_whole_map(grid: Grid, stack: np.ndarray) -> None:
    whole, out = maps.sliding_window_map(channel0_mean, stack, grid, size=4, stride=2,
                                         progress=False)
    tiles = maps.window_tiles(grid, size=4, stride=2, block=8)
    assert tiles == [(0, 4), (4, 8), (8, 9)]  # 9 rows of windows, 8 px = 4 rows a tile
    parts = [maps.sliding_window_map(channel0_mean, stack, grid, size=4, stride=2, rows=t,
                                     progress=False) for t in tiles]
    np.testing.assert_array_equal(np.concatenate([p for p, _ in parts]), whole)
    for (start, stop), (part, g) in zip(tiles, parts, strict=True):
        assert g.shape == part.shape == (stop - start, out.width)
        assert g.transform == out.transform * Affine.translation(0, start)  # rows of the map
    with pytest.raises(InputDataError, match=r"0 <= start < stop <= 9"):
        maps.sliding_window_map(channel0_mean, stack, grid, size=4, stride=2, rows=(3, 10),
                                progress=False)


def test_sliding_window_errors(grid: Grid, stack: np.ndarray) -> None:
    with pytest.raises(InputDataError, match=r"\(C, H, W\)"):
        maps.sliding_window_map(channel0_mean, stack[0], grid, progress=False)
    with pytest.raises(InputDataError, match="does not fit"):
        maps.sliding_window_map(channel0_mean, stack, grid, size=21, progress=False)
    with pytest.raises(InputDataError, match=">= 1"):
        maps.sliding_window_map(channel0_mean, stack, grid, size=4, stride=0, progress=False)
    with pytest.raises(InputDataError, match="one probability per crop"):
        maps.sliding_window_map(lambda c: np.zeros(1), stack, grid, size=4, stride=4,
                                progress=False)


# ------------------------------------------------------------------------------- uncertainty


def test_uncertainty_by_hand() -> None:
    probs = np.array([[0.2, 0.9, 0.6, np.nan],
                      [0.4, 0.9, 0.4, 0.5],
                      [0.6, 0.9, 0.2, 0.5]])
    std, ent = maps.uncertainty(probs)
    h13 = -(1 / 3 * math.log2(1 / 3) + 2 / 3 * math.log2(2 / 3))
    np.testing.assert_allclose(std[:3], [0.2, 0.0, 0.2], atol=1e-12)  # ddof = 1
    np.testing.assert_allclose(ent[:3], [h13, 0.0, h13], atol=1e-12)
    assert np.isnan(std[3]) and np.isnan(ent[3])
    _, even = maps.uncertainty(np.array([[0.7], [0.3]]))
    assert even[0] == pytest.approx(1.0)
    _, strict = maps.uncertainty(np.array([[0.7], [0.3]]), threshold=0.8)
    assert strict[0] == 0.0


def test_uncertainty_single_model_is_zero() -> None:
    std, ent = maps.uncertainty(np.array([[0.1, 0.9]]))
    np.testing.assert_array_equal(std, [0.0, 0.0])
    np.testing.assert_array_equal(ent, [0.0, 0.0])


def test_uncertainty_errors() -> None:
    with pytest.raises(InputDataError, match="n_models, n_cells"):
        maps.uncertainty(np.array([0.1, 0.2]))
    with pytest.raises(InputDataError, match=r"\[0, 1\]"):
        maps.uncertainty(np.array([[0.1]]), threshold=1.5)


# The hand case of the rank uncertainty: 3 members x 4 cells. Percentile = 100 (r - 1) / 4
# with r the (mean, for ties) rank: m1 -> 0, 25, 50, 75; m2 -> 75, 50, 25, 0; m3 (0.5 tied
# at ranks 2 and 3 -> 2.5) -> 37.5, 37.5, 75, 0. Population variances per cell:
# (37.5^2 * 2) / 3 = 937.5, (12.5^2 * 2) / 3, (25^2 * 2) / 3, (50^2 + 2 * 25^2) / 3 = 1250.
RANK_MEMBERS = np.array([[0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1], [0.5, 0.5, 0.9, 0.1]])
RANK_STD = np.sqrt([937.5, 312.5 / 3, 1250 / 3, 1250.0])


def test_area_percentiles_by_hand_and_like_colour_area_percentile() -> None:
    np.testing.assert_allclose(maps.cells.area_percentiles(RANK_MEMBERS[2]),
                               [37.5, 37.5, 75.0, 0.0])
    v = np.array([[0.3, np.nan, 0.1], [0.7, 0.2, 0.9]])
    pct = maps.cells.area_percentiles(v)
    np.testing.assert_allclose(pct, [[40, np.nan, 0], [60, 20, 80]])
    np.testing.assert_allclose(pct[np.isfinite(v)], area_percentile(v[np.isfinite(v)], of=v))


def test_rank_uncertainty_by_hand() -> None:
    np.testing.assert_allclose(maps.rank_uncertainty(RANK_MEMBERS), RANK_STD)
    # a raster: the trailing shape is kept; NaN in one member -> NaN there only
    grid_like = RANK_MEMBERS.reshape(3, 2, 2).copy()
    np.testing.assert_allclose(maps.rank_uncertainty(grid_like), RANK_STD.reshape(2, 2))
    grid_like[1, 0, 0] = np.nan
    out = maps.rank_uncertainty(grid_like)
    assert np.isnan(out[0, 0]) and np.isfinite(out).sum() == 3
    assert (maps.rank_uncertainty(RANK_MEMBERS[:1]) == 0).all()
    with pytest.raises(InputDataError, match="n_members"):
        maps.rank_uncertainty(np.array([0.1, 0.2]))


def test_calibration_offset_adds_no_rank_uncertainty() -> None:
    m = RANK_MEMBERS[0]
    offset = np.stack([m, m + 0.3, 0.5 * m])  # same ranking, other calibration
    np.testing.assert_array_equal(maps.rank_uncertainty(offset), 0.0)
    std, _ = maps.uncertainty(offset)
    assert (std > 0.1).all()  # the std of P(ore) counts the offset as disagreement
    np.testing.assert_allclose(maps.rank_uncertainty(np.vstack([RANK_MEMBERS, m + 0.3])),
                               maps.rank_uncertainty(np.vstack([RANK_MEMBERS, m])))


def test_rank_uncertainty_stays_within_0_and_50() -> None:
    rng = np.random.default_rng(0)
    out = maps.rank_uncertainty(rng.random((7, 500)))
    assert out.min() >= 0 and out.max() <= maps.cells.RANK_UNCERTAINTY_MAX
    half = maps.rank_uncertainty(np.array([[0.1, 0.9], [0.9, 0.1]]))  # 0/50 vs 50/0
    np.testing.assert_allclose(half, [25.0, 25.0])


def test_seed_rank_uncertainty_by_hand() -> None:
    # member 1: seed 2 swaps cells 0 and 1 -> percentiles 0/25 and 25/0, std 12.5;
    # member 2 is stable: the mean over members halves it
    a = np.array([[0.1, 0.2, 0.3, 0.4], [0.2, 0.1, 0.3, 0.4]])
    b = np.array([[0.5, 0.6, 0.7, 0.8], [0.8, 0.9, 1.0, 1.1]])
    np.testing.assert_allclose(maps.seed_rank_uncertainty(a[None]), [12.5, 12.5, 0, 0])
    np.testing.assert_allclose(maps.seed_rank_uncertainty(np.stack([a, b])),
                               [6.25, 6.25, 0, 0])
    with pytest.raises(InputDataError, match="n_seeds >= 2"):
        maps.seed_rank_uncertainty(a[None, :1])


def test_write_cell_maps_writes_rank_and_seed_uncertainty(tmp_path) -> None:
    g = Grid.from_bounds("EPSG:32649", (0.0, 0.0, 4.0, 4.0), 1.0)
    cells = gpd.GeoDataFrame({"id": [0, 1, 2, 3], "row": [0, 0, 1, 1], "col": [0, 1, 0, 1],
                              "usable": [True] * 4},
                             geometry=[box(0, 2, 2, 4), box(2, 2, 4, 4), box(0, 0, 2, 2),
                                       box(2, 0, 4, 2)], crs="EPSG:32649")
    table = pd.DataFrame({"cell_id": [0, 1, 2, 3], "row": [0, 0, 1, 1], "col": [0, 1, 0, 1],
                          **{f"p_{m}": RANK_MEMBERS[k] for k, m in enumerate("abc")},
                          "ens_simple_average": RANK_MEMBERS.mean(axis=0)})
    seeds = [table[["row", "col", "p_a", "p_b"]].assign(p_a=[0.1, 0.2, 0.3, 0.4]),
             table[["row", "col", "p_a", "p_b"]].assign(p_a=[0.2, 0.1, 0.3, 0.4]).iloc[::-1]]
    cm = maps.write_cell_maps(table, cells, g, list("abc"), ["simple_average"], tmp_path,
                              threshold=0.5, seed_probabilities=seeds)
    np.testing.assert_allclose(cm.uncertainty, RANK_STD.reshape(2, 2))
    with rasterio.open(tmp_path / "uncertainty_rank.tif") as src:
        np.testing.assert_allclose(src.read(1), RANK_STD.reshape(2, 2), rtol=1e-6)
        assert src.dtypes[0] == "float32" and src.nodata == g.nodata
        assert src.tags()["quantity"] == "rank uncertainty"
    assert 'maximumValue="50.0"' in (tmp_path / "uncertainty_rank.qml").read_text()
    # seeds: a swaps cells 0 and 1 (std 12.5), b is the same in both -> mean 6.25
    np.testing.assert_allclose(cm.seed_uncertainty, [[6.25, 6.25], [0.0, 0.0]])
    with rasterio.open(tmp_path / "uncertainty_seed.tif") as src:
        np.testing.assert_allclose(src.read(1), [[6.25, 6.25], [0.0, 0.0]])
        assert src.tags()["members"] == "a,b" and src.tags()["seeds"] == "2"
    assert not (tmp_path / "uncertainty_std.tif").exists()
    (tmp_path / "again").mkdir()
    no_seeds = maps.write_cell_maps(table, cells, g, list("abc"), ["simple_average"],
                                    tmp_path / "again", threshold=0.5)
    assert no_seeds.seed_uncertainty is None
    assert not (tmp_path / "again" / "uncertainty_seed.tif").exists()
    assert (tmp_path / "again" / "uncertainty_entropy.tif").is_file()


# ------------------------------------------------------------------------------- colour map


def test_lab_conversions_known_values() -> None:
    np.testing.assert_allclose(maps.srgb_to_lab([1.0, 1.0, 1.0])[0], [100.0, 0.0, 0.0],
                               atol=0.01)
    np.testing.assert_allclose(maps.srgb_to_lab([1.0, 0.0, 0.0])[0], [53.24, 80.09, 67.20],
                               atol=0.05)
    rgb = np.array([[0.2, 0.5, 0.7], [0.9, 0.1, 0.3]])
    np.testing.assert_allclose(maps.lab_to_srgb(maps.srgb_to_lab(rgb)), rgb, atol=1e-9)


def test_prospectivity_cmap_is_ordered_and_even() -> None:
    colours = np.asarray(maps.PROSPECTIVITY_CMAP.colors)
    lab = maps.srgb_to_lab(colours)
    assert np.all(np.diff(lab[:, 0]) > 0)  # lightness strictly increasing
    steps = np.linalg.norm(np.diff(lab, axis=0), axis=1)
    assert steps.std() / steps.mean() < 0.05  # constant perceptual speed
    low, mid, high = colours[0], colours[len(colours) // 2], colours[-1]
    assert low.argmax() == 2 and mid.argmax() == 1 and high.argmax() == 0  # blue, green, red


# ------------------------------------------------------------------------------- figures


def _overlays(grid: Grid, prob: np.ndarray):
    ore = gpd.GeoDataFrame({"name": ["A", "B"]},
                           geometry=[Point(X0 + 55.0, Y_TOP - 55.0),
                                     box(X0 + 150.0, Y_TOP - 160, X0 + 170.0, Y_TOP - 140)],
                           crs=grid.crs)
    cg = maps.cell_grid(grid, 4, 2)
    cells = gpd.GeoDataFrame(geometry=[
        box(X0 + c * 60.0, Y_TOP - (r + 1) * 100.0, X0 + (c + 1) * 60.0, Y_TOP - r * 100.0)
        for r in range(cg.height) for c in range(cg.width)], crs=grid.crs)
    targets = target_areas(prob, grid, threshold=0.5)
    return ore, cells, targets


@pytest.fixture
def prob(grid: Grid) -> np.ndarray:
    p = np.full(grid.shape, 0.1)
    p[3:8, 3:8] = 0.9
    p[12:18, 12:20] = 0.6
    p[0, 0] = np.nan
    return p


def test_plot_prospectivity_draws_everything(tmp_path, grid, prob, monkeypatch) -> None:
    ore, cells, targets = _overlays(grid, prob)
    captured = {}
    real_save = io.save_figure

    def capture(fig, path, **kw):
        captured["fig"] = fig
        texts = [t.get_text() for ax in fig.axes for t in ax.texts]
        captured["texts"] = texts
        captured["labels"] = (fig.axes[0].get_xlabel(), fig.axes[0].get_ylabel())
        captured["legend"] = [t.get_text() for t in fig.legends[0].get_texts()]
        captured["artists"] = [type(a).__name__ for a in fig.axes[0].artists]
        return real_save(fig, path, **kw)

    monkeypatch.setattr(io, "save_figure", capture)
    path = maps.plot_prospectivity(prob, grid, tmp_path / "map.png", title="Ensemble",
                                   orebodies=ore, cells=cells, targets=targets)
    assert path.read_bytes()[:4] == b"\x89PNG"
    assert {"I", "II", "N"} <= set(captured["texts"])
    assert captured["labels"] == ("Easting (m)", "Northing (m)")
    # one point and one polygon orebody: a legend symbol for each, as drawn
    assert captured["legend"] == ["no data", "cells", "target area", "known orebody (point)",
                                  "known orebody (outline)"]
    assert "AnchoredSizeBar" in captured["artists"]
    assert captured["fig"].axes[1].get_ylabel() == "P(ore)"  # the colour bar


def test_plot_panels_and_uncertainty(tmp_path, grid, prob) -> None:
    ore, cells, targets = _overlays(grid, prob)
    panels = maps.plot_panels({"cnn": prob, "vit": 1 - prob, "rf": prob / 2}, grid,
                              tmp_path / "panels.png", orebodies=ore, targets=targets, ncols=2)
    assert panels.stat().st_size > 1000
    std, ent = maps.uncertainty(np.stack([prob, 1 - prob]).reshape(2, -1))
    unc = maps.plot_uncertainty(std.reshape(grid.shape), ent.reshape(grid.shape), grid,
                                tmp_path / "unc.png", orebodies=ore, cells=cells)
    assert unc.read_bytes()[:4] == b"\x89PNG"


def test_plot_errors(tmp_path, grid, prob) -> None:
    with pytest.raises(InputDataError, match="at least one map"):
        maps.plot_panels({}, grid, tmp_path / "x.png")
    with pytest.raises(InputDataError, match="grid is"):
        maps.plot_prospectivity(prob[:5], grid, tmp_path / "x.png", title="t")
    assert not (tmp_path / "x.png").exists()


def test_axis_labels_and_scale_length() -> None:
    geo = Grid.from_bounds("EPSG:4326", (10.0, 40.0, 11.0, 41.0), 0.5)
    assert maps._axis_labels(geo) == ("Geodetic longitude (°)", "Geodetic latitude (°)")
    assert maps._nice_length(10_000.0) == 2000.0
    assert maps._nice_length(240.0) == 20.0
    assert maps._nice_length(3.0) == 0.5


def test_target_labels_never_cover_each_other_the_arrow_or_the_scale_bar(
        tmp_path, grid, monkeypatch) -> None:
    from matplotlib.offsetbox import AnchoredOffsetbox
    from matplotlib.text import Text

    from oremap.maps.targets import TARGET_LABEL_GID

    p = np.full(grid.shape, 0.1)
    p[0:2, -3:] = 0.9  # under the north arrow (upper right)
    p[0:2, -6:-4] = 0.9  # a neighbour
    p[-2:, 0:3] = 0.9  # on the scale bar (lower left)
    p[-2:, 4:6] = 0.9
    targets = target_areas(p, grid, threshold=0.5)
    assert len(targets) == 4
    seen = {}
    real_save = io.save_figure

    def capture(fig, path, **kw):
        renderer = fig._get_renderer()
        ax = fig.axes[0]
        seen["labels"] = [Text.get_window_extent(t, renderer) for t in ax.texts
                          if t.get_gid() == TARGET_LABEL_GID]  # the text, not its leader
        seen["others"] = [t.get_window_extent(renderer) for t in ax.texts
                          if t.get_gid() != TARGET_LABEL_GID]
        seen["others"] += [a.get_window_extent(renderer) for a in ax.artists
                           if isinstance(a, AnchoredOffsetbox)]
        return real_save(fig, path, **kw)

    monkeypatch.setattr(io, "save_figure", capture)
    maps.plot_prospectivity(p, grid, tmp_path / "m.png", title="t", targets=targets)
    labels, others = seen["labels"], seen["others"]
    assert len(labels) == 4 and len(others) >= 2
    for i, a in enumerate(labels):
        assert not any(a.overlaps(b) for b in labels[i + 1:])
        assert not any(a.overlaps(o) for o in others)


def test_barren_records_and_geology_are_never_drawn_red(grid) -> None:
    """Red means ore on the map: barren records are grey crosses whatever their position
    among the overlays, and no geology overlay takes red or orange."""
    import matplotlib
    from matplotlib.colors import to_rgb

    from oremap.maps.figures import _draw_overlays

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    line = gpd.GeoDataFrame(geometry=[LineString([(X0, Y_TOP - 10), (X0 + 100, Y_TOP - 50)])],
                            crs=grid.crs)
    holes = gpd.GeoDataFrame(geometry=[Point(X0 + 20, Y_TOP - 20)], crs=grid.crs)
    overlays = {f"unit {k}": line for k in range(7)} | {"barren records": holes}
    fig, ax = plt.subplots()
    handles = _draw_overlays(ax, grid, overlays)
    plt.close(fig)
    assert handles[0].get_label() == "barren record" and handles[0].get_marker() == "x"
    for h in handles:
        r, g, b = to_rgb(h.get_color())
        assert not (r > 0.6 and g < 0.5 and b < 0.4), h.get_label()  # nothing red/orange


def test_uncertainty_figure_uses_the_qgis_ramp_and_range(tmp_path, grid, monkeypatch) -> None:
    from matplotlib.colors import to_hex

    from oremap.maps import figures

    seen = []
    real = figures._draw_map

    def spy(ax, arr, g, cmap, vmin, vmax, *args, **kw):
        seen.append((cmap, vmin, vmax))
        return real(ax, arr, g, cmap, vmin, vmax, *args, **kw)

    monkeypatch.setattr(figures, "_draw_map", spy)
    rank = np.full(grid.shape, 10.0)
    figures.plot_uncertainty(rank, np.zeros(grid.shape), grid, tmp_path / "u.png",
                             first_max=50.0)
    stops = maps.ramp("uncertainty")
    cmap, vmin, vmax = seen[0]
    assert (vmin, vmax) == (0.0, 50.0)  # the QGIS style's range of uncertainty_rank
    assert to_hex(cmap(0.0)) == stops[0][1] and to_hex(cmap(1.0)) == stops[-1][1]

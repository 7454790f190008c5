"""Tests of oremap.targets: connected target areas, ranking, polygons, orebodies, output."""

from __future__ import annotations

import warnings

import geopandas as gpd
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from shapely.geometry import Point  # noqa: E402

from oremap.errors import (  # noqa: E402
    CRSMismatchError,
    DroppedDataWarning,
    InputDataError,
    UnknownNameError,
)
from oremap.grid import Grid  # noqa: E402
from oremap.maps import targets  # noqa: E402

X0, Y0 = 500_000.0, 4_000_000.0
Y_TOP = Y0 + 1000.0


@pytest.fixture
def grid() -> Grid:
    """20 x 10 px of 100 m."""
    return Grid.from_bounds("EPSG:32649", (X0, Y0, X0 + 2000.0, Y_TOP), 100.0)


@pytest.fixture
def prob(grid: Grid) -> np.ndarray:
    """Blob A: rows 1-2, cols 1-3, p = 0.9 (6 px); blob B: rows 6-8, cols 10-14, p = 0.7 with
    one pixel 0.8 (15 px); background 0.1."""
    p = np.full(grid.shape, 0.1)
    p[1:3, 1:4] = 0.9
    p[6:9, 10:15] = 0.7
    p[7, 12] = 0.8
    return p


MEAN_B = (14 * 0.7 + 0.8) / 15


def test_two_blobs_counts_ranks_and_stats(grid, prob) -> None:
    gdf = targets.target_areas(prob, grid)
    assert list(gdf.columns) == [*targets.TARGET_COLUMNS, "geometry"]
    assert gdf.crs.equals(grid.crs)
    assert list(gdf["rank"]) == ["I", "II"] and list(gdf["rank_number"]) == [1, 2]
    b, a = gdf.iloc[0], gdf.iloc[1]  # B ranks first: 15/21 * 0.707 > 6/21 * 0.9
    assert (b["n_pixels"], a["n_pixels"]) == (15, 6)
    assert (b["area"], a["area"]) == (150_000.0, 60_000.0)
    assert b["area_share"] == pytest.approx(15 / 21)
    assert b["mean_prob"] == pytest.approx(MEAN_B) and b["max_prob"] == pytest.approx(0.8)
    assert a["mean_prob"] == pytest.approx(0.9) and a["max_prob"] == pytest.approx(0.9)
    assert b["score"] == pytest.approx(MEAN_B * 15 / 21)
    assert a["score"] == pytest.approx(0.9 * 6 / 21)
    assert b["expected_area"] == pytest.approx(MEAN_B * 150_000.0)
    assert np.isnan(b["mean_uncertainty"]) and b["n_orebodies"] == 0
    assert gdf.geometry.iloc[0].bounds == pytest.approx((X0 + 1000, Y_TOP - 900, X0 + 1500,
                                                         Y_TOP - 600))
    assert gdf.geometry.iloc[1].bounds == pytest.approx((X0 + 100, Y_TOP - 300, X0 + 400,
                                                         Y_TOP - 100))
    np.testing.assert_allclose(gdf.area, gdf["area"])  # exact pixel outlines
    assert gdf.is_valid.all()


@pytest.mark.parametrize(("score", "first"), [("mean", 6), ("max", 6), ("area", 15),
                                              ("area_weighted_mean", 15)])
def test_scores_change_the_order(grid, prob, score, first) -> None:
    gdf = targets.target_areas(prob, grid, score=score)
    assert gdf["n_pixels"].iloc[0] == first
    assert gdf["score"].is_monotonic_decreasing


def test_top_fraction_selects_the_brightest_area(grid, prob) -> None:
    # 200 px: 6 at 0.9, 1 at 0.8 -> the 0.97 quantile lies between 0.8 and 0.9
    gdf = targets.target_areas(prob, grid, threshold=None, top_fraction=0.03)
    assert len(gdf) == 1 and gdf["n_pixels"].iloc[0] == 6
    both = targets.target_areas(prob, grid, threshold=None, top_fraction=21 / 200)
    assert sorted(both["n_pixels"]) == [6, 15]


def test_min_pixels_drops_small_areas_with_warning(grid, prob) -> None:
    assert sorted(targets.target_areas(prob, grid, threshold=0.75)["n_pixels"]) == [1, 6]
    with pytest.warns(DroppedDataWarning, match="dropped 1 areas smaller than 2 pixels"):
        gdf = targets.target_areas(prob, grid, threshold=0.75, min_pixels=2)
    assert list(gdf["n_pixels"]) == [6]


def test_connectivity_and_nan(grid) -> None:
    p = np.zeros(grid.shape)
    p[2, 2] = p[3, 3] = 0.9  # diagonal neighbours
    p[5, 5] = np.nan
    eight = targets.target_areas(p, grid, connectivity=8)
    four = targets.target_areas(p, grid, connectivity=4)
    assert len(eight) == 1 and eight.geometry.iloc[0].geom_type == "MultiPolygon"
    assert len(four) == 2


def test_uncertainty_and_orebodies(grid, prob) -> None:
    ore = gpd.GeoDataFrame(
        {"name": ["Alpha", "Beta", "Gamma"]},
        geometry=[Point(X0 + 1250, Y_TOP - 750), Point(X0 + 1450, Y_TOP - 650),
                  Point(X0 + 50, Y0 + 50)], crs=grid.crs)
    gdf = targets.target_areas(prob, grid, uncertainty=prob / 10, orebodies=ore)
    assert list(gdf["n_orebodies"]) == [2, 0]
    assert gdf["orebodies"].iloc[0] == "Alpha; Beta"
    assert gdf["mean_uncertainty"].iloc[1] == pytest.approx(0.09)
    # another CRS is reprojected; a custom name column is used
    ore_geo = ore.rename(columns={"name": "deposit"}).to_crs("EPSG:4326")
    again = targets.target_areas(prob, grid, orebodies=ore_geo, name_column="deposit")
    assert list(again["n_orebodies"]) == [2, 0]
    unnamed = targets.target_areas(prob, grid, orebodies=ore.drop(columns="name"))
    assert unnamed["orebodies"].iloc[0] == "0; 1"


def test_nothing_above_threshold_gives_empty_frame(tmp_path, grid) -> None:
    with pytest.warns(targets.NoTargetsWarning, match="no target areas"):
        gdf = targets.target_areas(np.full(grid.shape, 0.2), grid)
    assert len(gdf) == 0
    assert list(gdf.columns) == [*targets.TARGET_COLUMNS, "geometry"]
    assert gdf.crs.equals(grid.crs)
    _, csv = targets.write_targets(gdf, tmp_path / "t.gpkg", tmp_path / "t.csv")
    assert "x_centroid" in pd.read_csv(csv).columns


def test_write_targets_round_trip(tmp_path, grid, prob) -> None:
    gdf = targets.target_areas(prob, grid)
    gpkg, csv = targets.write_targets(gdf, tmp_path / "t.gpkg", tmp_path / "t.csv")
    back = gpd.read_file(gpkg)
    assert list(back["rank"]) == ["I", "II"] and back.crs.equals(grid.crs)
    table = pd.read_csv(csv)
    assert "geometry" not in table.columns
    assert table.loc[0, "xmin"] == X0 + 1000 and table.loc[0, "ymax"] == Y_TOP - 600
    assert table.loc[1, "x_centroid"] == pytest.approx(X0 + 250)


def test_label_targets_on_axes(grid, prob) -> None:
    gdf = targets.target_areas(prob, grid)
    fig, ax = plt.subplots()
    targets.label_targets_on_axes(ax, gdf)
    assert [t.get_text() for t in ax.texts] == ["I", "II"]
    assert ax.texts[0].xy == pytest.approx((X0 + 1250, Y_TOP - 750))
    targets.label_targets_on_axes(ax, gdf.iloc[::-1], outline=False, max_labels=1)
    assert ax.texts[-1].get_text() == "I" and len(ax.texts) == 3
    plt.close(fig)


def test_to_roman() -> None:
    assert [targets.to_roman(n) for n in (1, 2, 4, 9, 14, 40, 1994)] == [
        "I", "II", "IV", "IX", "XIV", "XL", "MCMXCIV"]
    with pytest.raises(InputDataError, match=">= 1"):
        targets.to_roman(0)


def test_errors(grid, prob) -> None:
    with pytest.raises(InputDataError, match="exactly one"):
        targets.target_areas(prob, grid, top_fraction=0.1)
    with pytest.raises(InputDataError, match="exactly one"):
        targets.target_areas(prob, grid, threshold=None)
    with pytest.raises(InputDataError, match=r"threshold must lie in \[0, 1\]"):
        targets.target_areas(prob, grid, threshold=1.5)
    with pytest.raises(InputDataError, match=r"top_fraction must lie in \(0, 1\]"):
        targets.target_areas(prob, grid, threshold=None, top_fraction=0.0)
    with pytest.raises(InputDataError, match="prob has shape"):
        targets.target_areas(prob[:5], grid)
    with pytest.raises(InputDataError, match="uncertainty has shape"):
        targets.target_areas(prob, grid, uncertainty=prob[:5])
    with pytest.raises(InputDataError, match="min_pixels"):
        targets.target_areas(prob, grid, min_pixels=0)
    with pytest.raises(InputDataError, match="connectivity"):
        targets.target_areas(prob, grid, connectivity=6)
    with pytest.raises(UnknownNameError, match="unknown target score"):
        targets.target_areas(prob, grid, score="median")
    with pytest.raises(UnknownNameError, match="unknown target score"):
        targets._score(pd.DataFrame(), "median")
    ore = gpd.GeoDataFrame({"name": ["A"]}, geometry=[Point(X0, Y0)], crs=grid.crs)
    with pytest.raises(InputDataError, match="no column 'deposit'"):
        targets.target_areas(prob, grid, orebodies=ore, name_column="deposit")
    with pytest.raises(CRSMismatchError, match="has no CRS"):
        targets.target_areas(prob, grid, orebodies=ore.set_crs(None, allow_override=True))


def test_all_nan_top_fraction_is_empty(grid) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", DroppedDataWarning)
        with pytest.warns(targets.NoTargetsWarning):
            gdf = targets.target_areas(np.full(grid.shape, np.nan), grid, threshold=None,
                                       top_fraction=0.1)
    assert len(gdf) == 0

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
from shapely.geometry import Point, box  # noqa: E402

from oremap.errors import (  # noqa: E402
    CRSMismatchError,
    DroppedDataWarning,
    InputDataError,
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


# Percentiles of the fixture on its 200 finite pixels (179 at 0.1, 14 at 0.7, 1 at 0.8, 6 at
# 0.9): A's mean and max 0.9 have 194 pixels below -> 97.0 %; B's mean 0.7067 and max 0.8 have
# 193 below -> 96.5 %; a mean of 0.7 has 179 below -> 89.5 %.


def test_two_blobs_counts_ranks_and_stats(grid, prob) -> None:
    gdf = targets.target_areas(prob, grid)
    assert list(gdf.columns) == [*targets.TARGET_COLUMNS, "geometry"]
    assert gdf.crs.equals(grid.crs)
    assert list(gdf["rank"]) == [1, 2] and list(gdf["label"]) == ["I", "II"]
    a, b = gdf.iloc[0], gdf.iloc[1]  # A (6 px, 97.0 %) ranks above B (15 px, 96.5 %)
    assert (a["n_pixels"], b["n_pixels"]) == (6, 15)
    assert (a["area_ha"], b["area_ha"]) == (6.0, 15.0)  # 100 m pixels: 1 ha each
    assert (a["area_pct_of_study_area"], b["area_pct_of_study_area"]) == (3.0, 7.5)
    assert (a["centroid_x"], a["centroid_y"]) == pytest.approx((X0 + 250, Y_TOP - 200))
    assert (b["centroid_x"], b["centroid_y"]) == pytest.approx((X0 + 1250, Y_TOP - 750))
    assert isinstance(a["centroid_x"], float)
    assert b["mean_prob"] == pytest.approx(MEAN_B) and b["max_prob"] == pytest.approx(0.8)
    assert a["mean_prob"] == pytest.approx(0.9) and a["max_prob"] == pytest.approx(0.9)
    assert (a["mean_pct"], a["max_pct"]) == (97.0, 97.0)
    assert (b["mean_pct"], b["max_pct"]) == (96.5, 96.5)
    # no orebodies: all new ground
    assert (a["new_area_ha"], a["new_mean_pct"], a["known_area_ha"]) == (6.0, 97.0, 0.0)
    assert np.isnan(a["known_mean_pct"]) and b["new_mean_pct"] == 96.5
    assert np.isnan(b["mean_uncertainty"]) and b["n_orebodies"] == 0
    assert gdf.geometry.iloc[1].bounds == pytest.approx((X0 + 1000, Y_TOP - 900, X0 + 1500,
                                                         Y_TOP - 600))
    assert gdf.geometry.iloc[0].bounds == pytest.approx((X0 + 100, Y_TOP - 300, X0 + 400,
                                                         Y_TOP - 100))
    np.testing.assert_allclose(gdf.area / 1e4, gdf["area_ha"])  # exact pixel outlines
    assert gdf.is_valid.all()
    assert "new ground" in targets.RANK_RULE


def test_area_percentage_counts_only_the_finite_study_area(grid, prob) -> None:
    p = prob.copy()
    p[:, 16:] = np.nan  # 40 pixels outside the study area, none in a target: 160 remain
    gdf = targets.target_areas(p, grid)
    assert list(gdf["area_pct_of_study_area"]) == [6 / 160 * 100, 15 / 160 * 100]
    # percentiles against the 160 finite pixels: 139 at 0.1, 14 at 0.7, 0.8, 6 at 0.9
    assert gdf["mean_pct"].iloc[0] == pytest.approx(154 / 160 * 100)


def test_known_and_new_ground_split_by_hand(grid, prob) -> None:
    # one orebody at the centre of B's pixel (row 7, col 12)
    ore = gpd.GeoDataFrame({"name": ["Alpha"]}, geometry=[Point(X0 + 1250, Y_TOP - 750)],
                           crs=grid.crs)
    gdf = targets.target_areas(prob, grid, orebodies=ore, known_distance=150.0)
    b = gdf.set_index("n_pixels").loc[15]
    # centres within 150 m: the pixel, its 4 neighbours (100 m), 4 diagonals (141 m) = 9 px
    assert (b["known_area_ha"], b["new_area_ha"]) == (9.0, 6.0)
    assert b["known_area_ha"] + b["new_area_ha"] == b["area_ha"]
    # known: 8 x 0.7 + 0.8 -> mean 0.711, 193 pixels below; new: 6 x 0.7, 179 below
    assert (b["known_mean_pct"], b["new_mean_pct"]) == (96.5, 89.5)
    assert b["n_orebodies"] == 1 and b["orebodies"] == "Alpha"
    # default distance: one pixel (100 m, boundary included) -> the pixel and 4 neighbours
    default = targets.target_areas(prob, grid, orebodies=ore).set_index("n_pixels").loc[15]
    assert (default["known_area_ha"], default["new_area_ha"]) == (5.0, 10.0)
    # distance 0: only the pixel whose centre is the orebody
    zero = targets.target_areas(prob, grid, orebodies=ore, known_distance=0.0)
    assert zero.set_index("n_pixels").loc[15, "known_area_ha"] == 1.0
    # 90 m beside A's edge but 140 m from its nearest pixel centre: no known ground, not counted
    near = gpd.GeoDataFrame({"name": ["Edge"]}, geometry=[Point(X0 + 490, Y_TOP - 150)],
                            crs=grid.crs)
    a = targets.target_areas(prob, grid, orebodies=near).set_index("n_pixels").loc[6]
    assert (a["known_area_ha"], a["n_orebodies"], a["orebodies"]) == (0.0, 0, "")
    a = targets.target_areas(prob, grid, orebodies=near, known_distance=140.0)  # 1 centre
    assert a.set_index("n_pixels").loc[6, ["known_area_ha", "n_orebodies"]].tolist() == [1, 1]


def test_targets_without_new_ground_rank_last(grid, prob) -> None:
    # a polygon orebody over A: A (higher P(ore)) is all known ground and drops below B
    ore = gpd.GeoDataFrame(geometry=[box(X0 + 100, Y_TOP - 300, X0 + 400, Y_TOP - 100)],
                           crs=grid.crs)
    gdf = targets.target_areas(prob, grid, orebodies=ore, known_distance=0.0)
    assert list(gdf["n_pixels"]) == [15, 6] and list(gdf["label"]) == ["I", "II"]
    a = gdf.iloc[1]
    assert (a["new_area_ha"], a["known_area_ha"], a["known_mean_pct"]) == (0.0, 6.0, 97.0)
    assert np.isnan(a["new_mean_pct"]) and a["n_orebodies"] == 1
    assert gdf["n_orebodies"].iloc[0] == 0


def test_ties_broken_by_uncertainty_then_size(grid) -> None:
    p = np.full(grid.shape, 0.1)
    p[1, 1:3] = 0.9  # 2 px, first in row-major order
    p[5, 5:9] = 0.9  # 4 px
    unc = np.zeros(grid.shape)
    same = targets.target_areas(p, grid, uncertainty=unc)
    assert list(same["n_pixels"]) == [4, 2]  # equal percentiles and uncertainty: larger first
    unc[5, 5:9] = 10.0
    gdf = targets.target_areas(p, grid, uncertainty=unc)
    assert list(gdf["n_pixels"]) == [2, 4]  # lower uncertainty first
    assert list(gdf["mean_uncertainty"]) == [0.0, 10.0]


def test_area_ha_is_nan_on_a_geographic_grid() -> None:
    g = Grid.from_bounds("EPSG:4326", (20.0, 60.0, 21.0, 61.0), 0.1)
    p = np.zeros(g.shape)
    p[2:4, 2:4] = 0.9
    gdf = targets.target_areas(p, g)
    assert np.isnan(gdf["area_ha"].iloc[0]) and gdf["area_pct_of_study_area"].iloc[0] == 4.0


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
    assert list(gdf["n_pixels"]) == [6, 15] and list(gdf["n_orebodies"]) == [0, 2]
    assert gdf["orebodies"].iloc[1] == "Alpha; Beta" and gdf["orebodies"].iloc[0] == ""
    assert gdf["mean_uncertainty"].iloc[0] == pytest.approx(0.09)
    assert gdf["mean_uncertainty"].iloc[1] == pytest.approx(MEAN_B / 10)
    # another CRS is reprojected; a custom name column is used
    ore_geo = ore.rename(columns={"name": "deposit"}).to_crs("EPSG:4326")
    again = targets.target_areas(prob, grid, orebodies=ore_geo, name_column="deposit")
    assert list(again["n_orebodies"]) == [0, 2]
    unnamed = targets.target_areas(prob, grid, orebodies=ore.drop(columns="name"))
    assert unnamed["orebodies"].iloc[1] == "0; 1"


def test_nothing_above_threshold_gives_empty_frame(tmp_path, grid) -> None:
    with pytest.warns(targets.NoTargetsWarning, match="no target areas"):
        gdf = targets.target_areas(np.full(grid.shape, 0.2), grid)
    assert len(gdf) == 0
    assert list(gdf.columns) == [*targets.TARGET_COLUMNS, "geometry"]
    assert gdf.crs.equals(grid.crs)
    _, csv = targets.write_targets(gdf, tmp_path / "t.gpkg", tmp_path / "t.csv")
    assert {"centroid_x", "new_area_ha", "xmin"} <= set(pd.read_csv(csv).columns)


def test_write_targets_round_trip(tmp_path, grid, prob) -> None:
    gdf = targets.target_areas(prob, grid)
    gpkg, csv = targets.write_targets(gdf, tmp_path / "t.gpkg", tmp_path / "t.csv")
    back = gpd.read_file(gpkg)
    assert list(back["label"]) == ["I", "II"] and list(back["rank"]) == [1, 2]
    assert back.crs.equals(grid.crs)
    assert list(back["centroid_y"]) == pytest.approx([Y_TOP - 200, Y_TOP - 750])
    table = pd.read_csv(csv)
    assert "geometry" not in table.columns
    assert table.loc[1, "xmin"] == X0 + 1000 and table.loc[1, "ymax"] == Y_TOP - 600
    assert table.loc[0, "centroid_x"] == pytest.approx(X0 + 250)
    assert list(table.columns[:len(targets.TARGET_COLUMNS)]) == list(targets.TARGET_COLUMNS)


def test_label_targets_on_axes(grid, prob) -> None:
    gdf = targets.target_areas(prob, grid)
    fig, ax = plt.subplots()
    targets.label_targets_on_axes(ax, gdf)
    assert [t.get_text() for t in ax.texts] == ["I", "II"]
    assert ax.texts[1].xy == pytest.approx((X0 + 1250, Y_TOP - 750))
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
    with pytest.raises(InputDataError, match="known_distance"):
        targets.target_areas(prob, grid, known_distance=-1.0)
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

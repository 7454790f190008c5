"""Tests of oremap.samples.cells: cell geometry, labelling rules, nodata coverage, figure."""

from __future__ import annotations

import warnings

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from shapely.geometry import LineString, Point, box

from oremap.errors import CRSMismatchError, DroppedDataWarning, InputDataError, UnknownNameError
from oremap.grid import Grid
from oremap.samples.cells import (
    CELL_COLUMNS,
    InsufficientNegativesWarning,
    Label,
    cell_coverage,
    label_cells,
    make_cells,
    plot_cells,
)

CRS = "EPSG:32649"
X0, Y0 = 500000.0, 3000000.0


@pytest.fixture(scope="module")
def demo_grid() -> Grid:
    """The demo's grid: 800 m x 368 m at 0.5 m, i.e. 40 x 16 cells of 20 m x 23 m."""
    return Grid.from_bounds(CRS, (X0, Y0, X0 + 800.0, Y0 + 368.0), 0.5)


@pytest.fixture(scope="module")
def hand_cells() -> gpd.GeoDataFrame:
    """4 x 3 cells of 10 m on a 1 m grid: ids 0-3 (top row), 4-7, 8-11 (bottom row)."""
    return make_cells(Grid.from_bounds(CRS, (X0, Y0, X0 + 40, Y0 + 30), 1.0), cols=4, rows=3)


def gdf(ids: list[str], geoms: list, crs: str | None = CRS) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame({"id": ids}, geometry=geoms, crs=crs)


def p(x: float, y: float) -> Point:
    """A point in hand-case local coordinates (metres from the grid's lower-left corner)."""
    return Point(X0 + x, Y0 + y)


def b(x0: float, y0: float, x1: float, y1: float):
    return box(X0 + x0, Y0 + y0, X0 + x1, Y0 + y1)


# ------------------------------------------------------------------------------------ geometry


def test_demo_grid_cells(demo_grid):
    cells = make_cells(demo_grid, cols=40, rows=16)
    assert len(cells) == 640
    assert list(cells.columns) == [*CELL_COLUMNS, "geometry"]
    assert (cells["px_rows"] == 46).all() and (cells["px_cols"] == 40).all()
    assert cells["id"].tolist() == list(range(640))
    np.testing.assert_allclose(cells.geometry.area, 20.0 * 23.0)
    cell = cells.set_index("id").loc[2 * 40 + 3]
    assert (cell.row, cell.col, cell.px_row0, cell.px_col0) == (2, 3, 92, 120)
    assert (cell.x0, cell.x1) == (X0 + 60.0, X0 + 80.0)
    assert (cell.y0, cell.y1) == (Y0 + 368.0 - 69.0, Y0 + 368.0 - 46.0)
    assert tuple(cells.total_bounds) == demo_grid.bounds
    assert shapely.union_all(cells.geometry.values).area == pytest.approx(800.0 * 368.0)
    assert cells.crs.equals(demo_grid.crs)
    by_size = make_cells(demo_grid, cell_size=(20.0, 23.0))
    pd.testing.assert_frame_equal(pd.DataFrame(by_size.drop(columns="geometry")),
                                  pd.DataFrame(cells.drop(columns="geometry")))


def test_square_cell_size(demo_grid):
    cells = make_cells(demo_grid, cell_size=16.0)
    assert len(cells) == 50 * 23
    assert (cells["px_rows"] == 32).all() and (cells["px_cols"] == 32).all()


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"cols": 30, "rows": 16}, r"do not fall on pixel edges.*one of \[20, 25, 32\]"),
    ({"cols": 40, "rows": 15}, "do not fall on pixel edges"),
    ({"cell_size": 20.25}, "cell edges must fall on pixel edges"),
    ({"cell_size": (30.0, 23.0)}, "not a whole number of cells"),
    ({"cell_size": -5.0}, "must be > 0"),
    ({"cell_size": (1.0, 2.0, 3.0)}, r"one number or \(width, height\)"),
    ({"cols": 40, "rows": 16, "cell_size": 20.0}, "either both"),
    ({}, "either both"),
    ({"cols": 40}, "either both"),
    ({"cols": 0, "rows": 16}, "whole number >= 1"),
    ({"cols": 2.5, "rows": 16}, "whole number >= 1"),
])
def test_make_cells_errors(demo_grid, kwargs, match):
    with pytest.raises(InputDataError, match=match):
        make_cells(demo_grid, **kwargs)


# ------------------------------------------------------------------------------------ labels


@pytest.mark.filterwarnings("ignore::oremap.errors.DroppedDataWarning")
def test_label_rules_hand_case(hand_cells):
    ore = gdf(["ob-1", "ob-2", "ob-3", "ob-4", "ob-5", "ob-6", "ob-7"], [
        b(12, 22, 18, 28),                 # inside cell 1
        b(30, 10, 35, 15),                 # inside 7; edge of 6 and 11; corner of 10
        p(10, 5),                          # on the border of cells 8 | 9 -> 9 (east)
        p(5, 20),                          # on the border of cells 0 / 4 -> 4 (south)
        p(40, 25),                         # on the outer east edge -> edge cell 3
        p(0, 30),                          # outer north-west corner -> 0
        LineString([(X0 + 20, Y0 + 10), (X0 + 20, Y0 + 20)]),  # along the 5 | 6 border
    ])
    barren = gdf(["DH-1", "DH-2", "T-1", "DH-3"], [
        p(15, 25),                         # in cell 1, which holds ob-1: positive wins
        p(25, 5),                          # cell 10
        LineString([(X0 + 21, Y0 + 12), (X0 + 29, Y0 + 18)]),  # crosses cell 6
        p(35, 5),                          # cell 11
    ])
    out = label_cells(hand_cells, orebodies=ore, barren=barren)
    P, N, U = Label.POSITIVE, Label.NEGATIVE, Label.UNKNOWN
    assert out["label"].tolist() == [P, P, U, P, P, U, N, P, U, P, N, N]
    reasons = dict(zip(out["id"], out["reason"], strict=True))
    assert reasons[0] == "orebody ob-6"
    assert reasons[1] == "orebody ob-1"
    assert reasons[3] == "orebody ob-5"
    assert reasons[4] == "orebody ob-4"
    assert reasons[7] == "orebody ob-2"
    assert reasons[9] == "orebody ob-3"
    assert reasons[6] == "barren trench T-1"
    assert reasons[10] == "barren drillhole DH-2"
    assert reasons[2] == reasons[5] == reasons[8] == ""
    assert out["label"].dtype == np.int64
    assert "label" not in hand_cells.columns  # input untouched


def test_border_only_features_warn(hand_cells):
    ore = gdf(["in", "edge"], [p(5, 5), LineString([(X0 + 20, Y0 + 10), (X0 + 20, Y0 + 20)])])
    with pytest.warns(DroppedDataWarning, match="1 of 2 features"):
        out = label_cells(hand_cells, orebodies=ore, barren=gdf(["d"], [p(35, 25)]))
    assert out.loc[out["label"] == Label.POSITIVE, "id"].tolist() == [8]


def test_multiple_features_and_buffer(hand_cells):
    ore = gdf(["a", "b"], [p(15, 15), p(16, 16)])
    barren = gdf(["d"], [p(35, 25)])
    out = label_cells(hand_cells, orebodies=ore, barren=barren)
    assert out.loc[5, "reason"] == "orebody a, b"
    buffered = label_cells(hand_cells, orebodies=ore.iloc[:1], barren=barren, orebody_buffer=6.0)
    # a disc of radius 6 m around (15, 15) reaches cells 1, 4, 6, 9 but no diagonal neighbour
    assert sorted(buffered.loc[buffered["label"] == Label.POSITIVE, "id"]) == [1, 4, 5, 6, 9]


def test_id_column_and_index_names(hand_cells):
    ore = gpd.GeoDataFrame({"code": ["X7"]}, geometry=[p(5, 5)], crs=CRS)
    barren = gpd.GeoDataFrame({"hole": ["H1"]}, geometry=[p(35, 5)], crs=CRS, index=[42])
    out = label_cells(hand_cells, orebodies=ore, barren=barren, orebody_id="code")
    assert out.loc[8, "reason"] == "orebody X7"
    assert out.loc[11, "reason"] == "barren drillhole 42"
    with pytest.raises(InputDataError, match="has no column 'nope'"):
        label_cells(hand_cells, orebodies=ore, barren=barren, barren_id="nope")


def test_reprojected_inputs(hand_cells):
    ore = gdf(["ob"], [b(12, 22, 18, 28)]).to_crs("EPSG:4326")
    barren = gdf(["d"], [b(31, 1, 39, 9)]).to_crs("EPSG:32650")
    out = label_cells(hand_cells, orebodies=ore, barren=barren)
    assert out["label"].tolist().count(Label.POSITIVE) == 1 and out.loc[1, "label"] == 1
    assert out.loc[11, "label"] == Label.NEGATIVE and out.loc[11, "reason"] == "barren area d"


def test_label_errors(hand_cells):
    barren = gdf(["d"], [p(35, 5)])
    with pytest.raises(CRSMismatchError, match="has no CRS"):
        label_cells(hand_cells, orebodies=gdf(["o"], [p(5, 5)], crs=None), barren=barren)
    with pytest.raises(InputDataError, match="no cell intersects any orebody in ore.gpkg"):
        label_cells(hand_cells, orebodies=None, barren=barren, orebody_source="ore.gpkg")
    far = gdf(["o"], [p(500, 500)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DroppedDataWarning)
        with pytest.raises(InputDataError, match="no cell intersects any orebody in ore.gpkg"):
            label_cells(hand_cells, orebodies=far, barren=barren, orebody_source="ore.gpkg")
    ore = gdf(["o"], [p(5, 5)])
    with pytest.raises(InputDataError, match="no negative cells: strategy 'verified' needs"):
        label_cells(hand_cells, orebodies=ore, barren=None)
    with pytest.raises(InputDataError, match="no negative cells: none of the 1 barren"):
        label_cells(hand_cells, orebodies=ore, barren=gdf(["d"], [p(6, 6)]))
    with pytest.raises(InputDataError, match="orebody_buffer must be >= 0"):
        label_cells(hand_cells, orebodies=ore, barren=barren, orebody_buffer=-1.0)
    with pytest.raises(UnknownNameError, match="unknown negative strategy 'nearest'"):
        label_cells(hand_cells, orebodies=ore, barren=barren, strategy="nearest")
    with pytest.raises(InputDataError, match="lacks column"):
        label_cells(hand_cells.drop(columns="px_rows"), orebodies=ore, barren=barren)


# ------------------------------------------------------------------------------------ distance


@pytest.fixture(scope="module")
def km_cells() -> gpd.GeoDataFrame:
    """10 x 10 cells of 1 km on a 100 m grid."""
    grid = Grid.from_bounds(CRS, (X0, Y0, X0 + 10_000, Y0 + 10_000), 100.0)
    return make_cells(grid, cols=10, rows=10)


def test_distance_strategy(km_cells):
    ore = gdf(["a", "b"], [Point(X0 + 1500, Y0 + 8500), Point(X0 + 2500, Y0 + 7500)])
    kwargs = dict(orebodies=ore, strategy="distance", min_distance=3000.0, ratio=2.0)
    out = label_cells(km_cells, **kwargs, seed=0)
    neg = out["label"] == Label.NEGATIVE
    assert int((out["label"] == Label.POSITIVE).sum()) == 2
    assert int(neg.sum()) == 4  # ratio 2 x 2 positives
    dist = out.geometry[neg].distance(shapely.union_all(ore.geometry.values))
    assert (dist >= 3000.0).all()
    assert set(out.loc[neg, "reason"]) == {"distance >= 3 km from positives"}
    again = label_cells(km_cells, **kwargs, seed=0)
    other = label_cells(km_cells, **kwargs, seed=1)
    assert again["label"].tolist() == out["label"].tolist()
    assert other["label"].tolist() != out["label"].tolist()
    # usable=False cells are never chosen
    masked = km_cells.copy()
    masked["usable"] = True
    masked.loc[out.index[neg], "usable"] = False
    chosen = label_cells(masked, **kwargs, seed=0)
    assert not (chosen.loc[out.index[neg], "label"] == Label.NEGATIVE).any()
    assert int((chosen["label"] == Label.NEGATIVE).sum()) == 4


def test_distance_without_ratio_takes_every_candidate(km_cells):
    ore = gdf(["a", "b"], [Point(X0 + 1500, Y0 + 8500), Point(X0 + 2500, Y0 + 7500)])
    out = label_cells(km_cells, orebodies=ore, strategy="distance", min_distance=3000.0,
                      ratio=None, seed=0)
    dist = km_cells.geometry.distance(shapely.union_all(ore.geometry.values)).to_numpy()
    far = (dist >= 3000.0) & (out["label"] != Label.POSITIVE).to_numpy()
    neg = (out["label"] == Label.NEGATIVE).to_numpy()
    assert neg.sum() == far.sum() > 4  # every cell >= 3 km, far more than a ratio draw
    assert np.array_equal(neg, far)
    other = label_cells(km_cells, orebodies=ore, strategy="distance", min_distance=3000.0,
                        ratio=None, seed=7)
    assert other["label"].tolist() == out["label"].tolist()  # no draw: seed-independent


def test_distance_too_few_candidates(km_cells):
    ore = gdf(["a"], [Point(X0 + 5000, Y0 + 5000)])  # grid centre, a corner of 4 cells
    # only the 4 corner cells lie >= 5.5 km from it (4 km along x and y: 5.66 km)
    with pytest.warns(InsufficientNegativesWarning, match="only 4 usable cells"):
        out = label_cells(km_cells, orebodies=ore, strategy="distance", min_distance=5500.0,
                          ratio=10.0)
    assert out.loc[out["label"] == Label.POSITIVE, "id"].tolist() == [55]
    assert sorted(out.loc[out["label"] == Label.NEGATIVE, "id"]) == [0, 9, 90, 99]
    with pytest.raises(InputDataError, match="no usable cell lies >= 20000"):
        label_cells(km_cells, orebodies=ore, strategy="distance", min_distance=20000.0,
                    ratio=1.0)
    with pytest.raises(InputDataError, match="needs min_distance"):
        label_cells(km_cells, orebodies=ore, strategy="distance", ratio=1.0)
    with pytest.raises(InputDataError, match="needs ratio"):
        label_cells(km_cells, orebodies=ore, strategy="distance", min_distance=1.0, ratio=0.0)


# ------------------------------------------------------------------------------------ coverage


def test_cell_coverage(hand_cells):
    stack = np.ones((2, 30, 40), dtype=np.float32)
    stack[1, 15, 15] = np.nan                  # 1 % of cell 5 in layer B
    stack[0, 0:10, 20:25] = np.nan             # 50 % of cell 2 in layer A
    stack[0, 25, 5] = np.inf                   # 1 % of cell 8 in layer A
    with pytest.warns(DroppedDataWarning, match=r"dropped 3 of 12 cells.*'A': 2, 'B': 1"):
        out = cell_coverage(stack, hand_cells, ["A", "B"])
    assert out.loc[~out["usable"], "id"].tolist() == [2, 5, 8]
    assert out.loc[5, "drop_reason"] == "nodata in B"
    assert out.loc[2, "drop_reason"] == "nodata in A"
    assert out.loc[0, "drop_reason"] == ""
    assert out.loc[5, "coverage"] == pytest.approx(1 - 0.01 / 2)
    assert out.loc[2, "coverage"] == pytest.approx(0.75)
    assert out.loc[0, "coverage"] == 1.0
    with pytest.warns(DroppedDataWarning, match="dropped 1 of 12"):
        tolerant = cell_coverage(stack, hand_cells, ["A", "B"], tolerance=0.02)
    assert tolerant.loc[~tolerant["usable"], "id"].tolist() == [2]
    stack[:, 10:20, 0:10] = np.nan
    with pytest.warns(DroppedDataWarning, match="dropped 2 of 12"):
        both = cell_coverage(stack, hand_cells, ["A", "B"], tolerance=0.02)
    assert both.loc[4, "drop_reason"] == "nodata in A,B"
    assert both.loc[4, "nodata_layers"] == "A,B"


def test_cell_coverage_errors(hand_cells):
    stack = np.ones((2, 30, 40), dtype=np.float32)
    with pytest.raises(InputDataError, match="2 layers but 3 layer names"):
        cell_coverage(stack, hand_cells, ["A", "B", "C"])
    with pytest.raises(InputDataError, match="tolerance must be a fraction"):
        cell_coverage(stack, hand_cells, ["A", "B"], tolerance=1.0)
    with pytest.raises(InputDataError, match=r"must be a \(C, H, W\) array"):
        cell_coverage(stack[0], hand_cells, ["A"])
    with pytest.raises(InputDataError, match="extend beyond the stack"):
        cell_coverage(stack[:, :20], hand_cells, ["A", "B"])


def test_plot_cells(hand_cells):
    cells = hand_cells.copy()
    cells["label"] = [1, 0, -1, -1] * 3
    cells["usable"] = [True] * 11 + [False]
    cells["test_fold"] = [0] + [-1] * 11
    fig = plot_cells(cells, title="hand")
    ax = fig.axes[0]
    assert ax.get_xlim() == (X0, X0 + 40) and ax.get_ylim() == (Y0, Y0 + 30)
    assert ax.get_xlabel() == "Easting (m)" and ax.get_title() == "hand"
    assert len(ax.collections) == 3  # usable, dropped, test outlines
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["positive (ore) (3)", "negative (barren) (3)", "unknown (5)",
                      "dropped (1)", "test (fold 0)"]


# ------------------------------------------------------------------------ all negatives, area


def test_all_strategy_makes_every_other_usable_cell_negative(hand_cells):
    cells = hand_cells.assign(usable=[True] * 11 + [False])
    out = label_cells(cells, orebodies=gdf(["ob1"], [p(5, 25)]), strategy="all")
    assert out.loc[0, "label"] == Label.POSITIVE
    assert (out.loc[1:10, "label"] == Label.NEGATIVE).all()
    assert out.loc[11, "label"] == Label.UNKNOWN  # unusable: never a negative
    assert set(out.loc[1:10, "reason"]) == {"background (no known orebody)"}
    with pytest.raises(InputDataError, match="strategy 'all'"):
        label_cells(hand_cells.assign(usable=[True] + [False] * 11),
                    orebodies=gdf(["ob1"], [p(5, 25)]), strategy="all")
    pu = label_cells(cells, orebodies=gdf(["ob1"], [p(5, 25)]), strategy="pu_bagging")
    assert pu["label"].tolist() == out["label"].tolist()  # unlabelled cells scored as background


def test_restrict_to_area_centre_and_intersects(hand_cells):
    from oremap.samples import restrict_to_area

    area = b(0, 0, 22, 30)  # two western columns, and the third up to x = 22 (< centre 25)
    centre = restrict_to_area(hand_cells, area, rule="centre")
    assert centre["in_area"].tolist() == [True, True, False, False] * 3
    assert not centre.loc[2, "usable"] and centre.loc[2, "drop_reason"] == (
        "outside the study area (centre)")
    touch = restrict_to_area(hand_cells, area, rule="intersects")
    assert touch["in_area"].tolist() == [True, True, True, False] * 3
    labelled = label_cells(centre, orebodies=gdf(["ob1"], [p(5, 25)]), strategy="all")
    assert (labelled["label"] == Label.NEGATIVE).sum() == 5  # 6 cells in the area, 1 positive
    with pytest.raises(InputDataError, match="no cell lies in the study area"):
        restrict_to_area(hand_cells, b(100, 100, 110, 110))
    with pytest.raises(UnknownNameError):
        restrict_to_area(hand_cells, area, rule="inside")

"""Tests of the embedded synthetic demo study area (oremap.demo)."""

from __future__ import annotations

import time

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import pytest
import rasterio
import shapely
from pyproj import CRS
from scipy.stats import spearmanr

from oremap.demo import (
    DEMO_BOUNDS,
    DEMO_CELL_COLS,
    DEMO_CELL_ROWS,
    DEMO_CRS,
    DEMO_PIXEL_SIZE,
    ELEMENTS,
    DemoFiles,
    demo_bounds,
    write_demo,
)
from oremap.errors import ConfigError, InputDataError
from oremap.io import read_json, write_json

XMIN, YMIN, XMAX, YMAX = DEMO_BOUNDS
LAYERS = {
    "geology": ["shear_zones", "faults", "alteration_zones", "quartz_sandstone",
                "geology_extent"],
    "orebodies": ["orebodies"],
    "drilling": ["drillholes", "trenches"],
}


@pytest.fixture(scope="module")
def demos(tmp_path_factory) -> dict[str, DemoFiles]:
    root = tmp_path_factory.mktemp("demo")
    start = time.perf_counter()
    out = {"a": write_demo(root / "a", seed=0)}
    elapsed = time.perf_counter() - start
    out["b"] = write_demo(root / "b", seed=0)
    out["c"] = write_demo(root / "c", seed=1)
    out["elapsed"] = elapsed
    return out


def _cells() -> np.ndarray:
    """The 640 cells as shapely boxes in map coordinates, row-major from the top-left."""
    dx = (XMAX - XMIN) / DEMO_CELL_COLS
    dy = (YMAX - YMIN) / DEMO_CELL_ROWS
    col, row = np.meshgrid(np.arange(DEMO_CELL_COLS), np.arange(DEMO_CELL_ROWS))
    x0 = XMIN + col.ravel() * dx
    y1 = YMAX - row.ravel() * dy
    return shapely.box(x0, y1 - dy, x0 + dx, y1)


def _labels(files: DemoFiles) -> dict[str, np.ndarray]:
    """Cell masks computed from the written files with shapely only."""
    cells = _cells()
    ore = shapely.union_all(gpd.read_file(files.orebodies, layer="orebodies").geometry.values)
    holes = gpd.read_file(files.drilling, layer="drillholes")
    trenches = gpd.read_file(files.drilling, layer="trenches")
    barren = [*holes.geometry[holes["result"] == "barren"],
              *trenches.geometry[trenches["result"] == "barren"]]
    extent = gpd.read_file(files.geology, layer="geology_extent").geometry.iloc[0]
    soil = pd.read_csv(files.soil_samples)
    hull = shapely.MultiPoint(soil[["x", "y"]].to_numpy()).convex_hull
    covered = shapely.intersection(extent, hull).buffer(0.01)
    usable = shapely.covers(covered, cells)
    positive = shapely.intersects(cells, ore) & usable
    negative = shapely.intersects(cells, shapely.union_all(barren)) & ~positive & usable
    return {"usable": usable, "positive": positive, "negative": negative,
            "unknown": usable & ~positive & ~negative}


def _cell_fertility(files: DemoFiles) -> np.ndarray:
    with rasterio.open(files.fertility) as src:
        fert = src.read(1)
    return fert.reshape(DEMO_CELL_ROWS, 23, DEMO_CELL_COLS, 20).mean(axis=(1, 3)).ravel()


def _corner() -> shapely.Polygon:
    return shapely.Polygon([(XMIN, YMIN), (XMIN + 240, YMIN), (XMIN, YMIN + 230)])


def test_constants_describe_the_grid():
    assert demo_bounds() == DEMO_BOUNDS == (392000.0, 3720000.0, 392800.0, 3720368.0)
    assert DEMO_CRS == "EPSG:32649"
    assert (XMAX - XMIN) / DEMO_CELL_COLS == 20.0
    assert (YMAX - YMIN) / DEMO_CELL_ROWS == 23.0
    assert 20.0 / DEMO_PIXEL_SIZE == 40 and 23.0 / DEMO_PIXEL_SIZE == 46
    assert ELEMENTS == ("Au", "Ag", "As", "Cu", "Pb", "Zn", "Hg", "Sb", "W", "Mo")


def test_files_are_written_small_and_fast(demos):
    files = demos["a"]
    sizes = {p.name: p.stat().st_size for p in files.paths()}
    assert set(sizes) == {"soil_samples.csv", "geology.gpkg", "orebodies.gpkg", "drilling.gpkg",
                          "fertility.tif", "README.md"}
    assert sum(sizes.values()) < 800_000
    marker = read_json(files.root / "demo.json")
    assert marker["seed"] == 0 and marker["version"] >= 1 and marker["crs"] == DEMO_CRS
    readme = files.readme.read_text()
    assert "synthetic" in readme and "seed 0" in readme and "| Au | ppb | 0.5 | 0.25 |" in readme
    leftovers = [p.name for p in files.root.parent.iterdir() if p.name.startswith(".")]
    assert leftovers == []
    assert demos["elapsed"] < 10.0  # about 0.3 s on a quiet machine


def test_same_seed_gives_identical_files(demos):
    a, b = demos["a"], demos["b"]
    assert a.soil_samples.read_bytes() == b.soil_samples.read_bytes()
    for key, layers in LAYERS.items():
        for layer in layers:
            ga = gpd.read_file(getattr(a, key), layer=layer)
            gb = gpd.read_file(getattr(b, key), layer=layer)
            assert list(ga.geometry.to_wkb()) == list(gb.geometry.to_wkb()), layer
            pd.testing.assert_frame_equal(ga.drop(columns="geometry"),
                                          gb.drop(columns="geometry"))
    with rasterio.open(a.fertility) as fa, rasterio.open(b.fertility) as fb:
        np.testing.assert_array_equal(fa.read(1), fb.read(1))


def test_another_seed_gives_other_files(demos):
    a, c = demos["a"], demos["c"]
    assert a.soil_samples.read_bytes() != c.soil_samples.read_bytes()
    oa = gpd.read_file(a.orebodies, layer="orebodies").geometry
    oc = gpd.read_file(c.orebodies, layer="orebodies").geometry
    assert not shapely.equals(shapely.union_all(oa.values), shapely.union_all(oc.values))
    with rasterio.open(a.fertility) as fa, rasterio.open(c.fertility) as fc:
        assert np.abs(fa.read(1) - fc.read(1)).max() > 0.3


def test_every_layer_and_the_raster_carry_the_crs(demos):
    files = demos["a"]
    for key, layers in LAYERS.items():
        path = getattr(files, key)
        assert sorted(pyogrio.list_layers(path)[:, 0]) == sorted(layers)
        for layer in layers:
            gdf = gpd.read_file(path, layer=layer)
            assert len(gdf) > 0, layer
            assert CRS(gdf.crs).to_epsg() == 32649, layer
    with rasterio.open(files.fertility) as src:
        assert src.crs.to_epsg() == 32649
        assert src.transform == rasterio.Affine(1.0, 0.0, XMIN, 0.0, -1.0, YMAX)
        assert (src.height, src.width) == (368, 800)
        fert = src.read(1, masked=True)
    assert not fert.mask.any()
    assert fert.min() >= 0.0 and fert.max() <= 1.0
    assert fert.min() < 0.1 and fert.max() > 0.9


@pytest.mark.parametrize("key", ["a", "c"])
def test_label_proportions_match_the_paper(demos, key):
    files = demos[key]
    lab = _labels(files)
    counts = {k: int(v.sum()) for k, v in lab.items()}
    dropped = len(lab["usable"]) - counts["usable"]
    assert 50 <= dropped <= 90
    assert 24 <= counts["positive"] <= 40
    assert 290 <= counts["negative"] <= 370
    assert 150 <= counts["unknown"] <= 250
    recorded = read_json(files.root / "demo.json")["counts"]
    assert recorded == {"cells": 640, "dropped": dropped, "positive": counts["positive"],
                        "negative": counts["negative"], "unknown": counts["unknown"]}


def test_unknown_cells_hold_fertile_ground(demos):
    files = demos["a"]
    lab, fert = _labels(files), _cell_fertility(files)
    assert (fert[lab["unknown"]] >= 0.4).sum() >= 10
    assert fert[lab["positive"]].mean() > 0.4
    assert fert[lab["negative"]].mean() < 0.15
    assert fert[lab["positive"]].mean() > fert[lab["unknown"]].mean() > fert[
        lab["negative"]].mean()


def test_drilling_results_follow_the_orebodies(demos):
    files = demos["a"]
    ore = shapely.union_all(gpd.read_file(files.orebodies, layer="orebodies").geometry.values)
    obs = gpd.read_file(files.orebodies, layer="orebodies")
    assert 3 <= len(obs) <= 5 and obs["name"].is_unique
    assert (obs.geometry.area > 150).all()
    for layer in ("drillholes", "trenches"):
        gdf = gpd.read_file(files.drilling, layer=layer)
        assert set(gdf["result"]) == {"barren", "mineralised"}, layer
        through = shapely.intersects(gdf.geometry.values, ore)
        np.testing.assert_array_equal(gdf["result"] == "mineralised", through)
    holes = gpd.read_file(files.drilling, layer="drillholes")
    assert (holes["result"] == "mineralised").sum() >= 8
    points = np.asarray(holes.geometry.values, dtype=object)
    hits = shapely.intersects(_cells()[None, :], points[:, None]).sum(axis=1)
    np.testing.assert_array_equal(hits, 1)  # every hole lies inside one cell, off the borders


def test_soil_samples_columns_and_values(demos):
    soil = pd.read_csv(demos["a"].soil_samples)
    assert list(soil.columns) == ["sample_id", "x", "y", *ELEMENTS]
    assert soil["sample_id"].is_unique
    assays = soil[list(ELEMENTS)].to_numpy()
    assert np.isfinite(assays).all() and (assays > 0).all()
    assert 600 <= len(soil) <= 800
    au = soil["Au"]
    assert au.min() == 0.25 and not ((au > 0.25) & (au < 0.5)).any()  # < DL 0.5 ppb -> DL / 2
    assert 1 <= (au == 0.25).sum() <= 0.2 * len(soil)
    xy = soil[["x", "y"]].to_numpy()
    d = np.hypot(*(xy[:, None, :] - xy[None, :, :]).transpose(2, 0, 1))
    np.fill_diagonal(d, np.inf)
    assert 14.0 <= np.median(d.min(axis=1)) <= 22.0


def test_pathfinders_follow_fertility(demos):
    files = demos["a"]
    soil = pd.read_csv(files.soil_samples)
    with rasterio.open(files.fertility) as src:
        fert = np.array([v[0] for v in src.sample(soil[["x", "y"]].to_numpy())])
    rho = {e: spearmanr(soil[e], fert).statistic for e in ELEMENTS}
    assert rho["Au"] > 0.5
    for e in ("As", "Sb", "Hg"):
        assert rho[e] > 0.45, e
    for e in ("Mo", "Zn"):
        assert abs(rho[e]) < 0.3, e


def test_blank_corner_has_no_data(demos):
    files = demos["a"]
    corner = _corner()
    soil = pd.read_csv(files.soil_samples)
    points = shapely.points(soil[["x", "y"]].to_numpy())
    assert not shapely.contains(corner, points).any()
    extent = gpd.read_file(files.geology, layer="geology_extent").geometry.iloc[0]
    assert extent.area == pytest.approx(800 * 368 - 240 * 230 / 2)
    assert shapely.covers(extent.buffer(1e-6), points).all()
    for key, layers in LAYERS.items():
        for layer in layers:
            geoms = gpd.read_file(getattr(files, key), layer=layer).geometry.values
            assert not shapely.intersects(geoms, corner.buffer(-0.01)).any(), layer


def test_existing_demo_is_reused(demos):
    files = demos["b"]
    before = {p.name: p.stat().st_mtime_ns for p in files.root.iterdir()}
    again = write_demo(files.root, seed=0)
    assert again == files
    assert {p.name: p.stat().st_mtime_ns for p in files.root.iterdir()} == before


def test_overwrite_replaces_a_demo_of_another_seed(tmp_path):
    out = tmp_path / "demo"
    write_demo(out, seed=3)
    with pytest.raises(InputDataError, match="seed 3 and version"):
        write_demo(out, seed=4)
    write_demo(out, seed=4, overwrite=True)
    assert read_json(out / "demo.json")["seed"] == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo"]


def test_incomplete_or_broken_demo_needs_overwrite(tmp_path):
    out = tmp_path / "demo"
    files = write_demo(out, seed=2)
    files.fertility.unlink()
    with pytest.raises(InputDataError, match="incomplete"):
        write_demo(out, seed=2)
    write_demo(out, seed=2, overwrite=True)
    assert files.fertility.is_file()
    (out / "demo.json").write_text("{not json")
    with pytest.raises(InputDataError, match="seed unreadable"):
        write_demo(out, seed=2)
    write_json(out / "demo.json", {"seed": 2, "version": 1})
    assert write_demo(out, seed=2).fertility.is_file()


def test_empty_folder_is_filled(tmp_path):
    out = tmp_path / "empty"
    out.mkdir()
    files = write_demo(out, seed=0)
    assert all(p.is_file() for p in files.paths())


def test_refuses_folders_that_are_not_demos(tmp_path):
    other = tmp_path / "work"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    for overwrite in (False, True):
        with pytest.raises(InputDataError, match="not an oremap demo"):
            write_demo(other, seed=0, overwrite=overwrite)
    assert (other / "notes.txt").read_text() == "mine"
    afile = tmp_path / "file.txt"
    afile.write_text("x")
    with pytest.raises(InputDataError, match="is a file"):
        write_demo(afile, seed=0)


@pytest.mark.parametrize("seed", [-1, 1.5, True, "0"])
def test_bad_seed_is_rejected(tmp_path, seed):
    with pytest.raises(ConfigError, match="seed must be an integer >= 0"):
        write_demo(tmp_path / "demo", seed=seed)
    assert not (tmp_path / "demo").exists()

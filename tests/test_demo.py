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
from rasterio.warp import Resampling, reproject
from scipy.stats import spearmanr

from oremap import demo as demo_module
from oremap.demo import (
    DEMO_BOUNDS,
    DEMO_CELL_COLS,
    DEMO_CELL_ROWS,
    DEMO_CRS,
    DEMO_PIXEL_SIZE,
    DEMO_VERSION,
    ELEMENTS,
    DemoFiles,
    demo_bounds,
    demo_grid,
    example_config_text,
    write_demo,
)
from oremap.errors import ConfigError, InputDataError
from oremap.io import read_json, write_csv, write_json

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

XMIN, YMIN, XMAX, YMAX = DEMO_BOUNDS
LAYERS = {
    "geology": ["shear_zones", "faults", "alteration_zones", "quartz_sandstone",
                "geology_extent"],
    "orebodies": ["orebodies"],
    "drilling": ["drillholes", "trenches"],
}
# the airborne grids: file attribute, pixel size (m), unit, band name
GEOPHYSICS = {"magnetics": (2.0, "nT", "magnetics"), "radiometrics_k": (4.0, "%", "K")}


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
                          "fertility.tif", "magnetics.tif", "radiometrics_k.tif", "README.md"}
    assert sum(sizes.values()) < 1_000_000
    marker = read_json(files.root / "demo.json")
    assert marker["seed"] == 0 and marker["version"] == DEMO_VERSION >= 2
    assert marker["crs"] == DEMO_CRS and set(marker["files"]) == set(sizes)
    readme = files.readme.read_text()
    assert "synthetic" in readme and "seed 0" in readme and "| Au | ppb | 0.5 | 0.25 |" in readme
    assert "`magnetics.tif`: total magnetic intensity anomaly in nT" in readme
    assert "`radiometrics_k.tif`: gamma-ray potassium in %" in readme
    leftovers = [p.name for p in files.root.parent.iterdir() if p.name.startswith(".")]
    assert leftovers == []
    assert demos["elapsed"] < 10.0  # about 1 s on a quiet machine


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
    for key in ("fertility", *GEOPHYSICS):
        with rasterio.open(getattr(a, key)) as fa, rasterio.open(getattr(b, key)) as fb:
            np.testing.assert_array_equal(fa.read(1), fb.read(1))


def test_another_seed_gives_other_files(demos):
    a, c = demos["a"], demos["c"]
    assert a.soil_samples.read_bytes() != c.soil_samples.read_bytes()
    oa = gpd.read_file(a.orebodies, layer="orebodies").geometry
    oc = gpd.read_file(c.orebodies, layer="orebodies").geometry
    assert not shapely.equals(shapely.union_all(oa.values), shapely.union_all(oc.values))
    with rasterio.open(a.fertility) as fa, rasterio.open(c.fertility) as fc:
        assert np.abs(fa.read(1) - fc.read(1)).max() > 0.3
    with rasterio.open(a.magnetics) as fa, rasterio.open(c.magnetics) as fc:
        assert np.nanmax(np.abs(fa.read(1, masked=True) - fc.read(1, masked=True))) > 20.0


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
    write_json(out / "demo.json", {"seed": 2, "version": DEMO_VERSION})
    assert write_demo(out, seed=2).fertility.is_file()


def test_demo_of_an_older_generator_is_regenerated(tmp_path):
    out = tmp_path / "demo"
    files = write_demo(out, seed=2)
    files.magnetics.unlink()  # a demo of generator version 1 had no geophysics
    marker = read_json(files.marker)
    write_json(files.marker, {**marker, "version": 1})
    assert write_demo(out, seed=2) == files
    assert files.magnetics.is_file() and read_json(files.marker)["version"] == DEMO_VERSION
    write_json(files.marker, {**marker, "seed": 3, "version": 1})
    with pytest.raises(InputDataError, match="seed 3 and version 1"):
        write_demo(out, seed=2)  # another seed still needs overwrite
    write_json(files.marker, {**marker, "version": DEMO_VERSION + 1})
    with pytest.raises(InputDataError, match=f"version {DEMO_VERSION + 1}"):
        write_demo(out, seed=2)  # so does a newer generator's demo


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


# --------------------------------------------------------------------------- airborne geophysics


def _pixel_edges(src) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """x0, x1 of the columns and y0, y1 of the rows of an open raster."""
    t = src.transform
    x0 = t.c + np.arange(src.width) * t.a
    y1 = t.f + np.arange(src.height) * t.e
    return x0, x0 + t.a, y1 + t.e, y1


def _fertility_on(src, fertility_path) -> np.ndarray:
    """The hidden fertility averaged over the pixels of ``src``; NaN unless inside the bounds."""
    fert = np.full((src.height, src.width), np.nan)
    with rasterio.open(fertility_path) as f:
        reproject(rasterio.band(f, 1), fert, src_transform=f.transform, src_crs=f.crs,
                  dst_transform=src.transform, dst_crs=src.crs, dst_nodata=np.nan,
                  resampling=Resampling.average)
    x0, x1, y0, y1 = _pixel_edges(src)
    inside = ((y0 >= YMIN) & (y1 <= YMAX))[:, None] & ((x0 >= XMIN) & (x1 <= XMAX))[None, :]
    return np.where(inside, fert, np.nan)


@pytest.mark.parametrize("key", list(GEOPHYSICS))
def test_geophysics_grids_have_pixels_of_their_own(demos, key):
    size, unit, band = GEOPHYSICS[key]
    with rasterio.open(getattr(demos["a"], key)) as src:
        assert src.crs.to_epsg() == 32649
        assert src.res == (size, size) and src.dtypes == ("float32",)
        assert src.units == (unit,) and src.tags(1)["units"] == unit
        assert src.descriptions == (band,) and src.nodata == -99999.0
        b = src.bounds
        values = src.read(1, masked=True)
    assert size > DEMO_PIXEL_SIZE
    for margin in (XMIN - b.left, YMIN - b.bottom, b.right - XMAX, b.top - YMAX):
        assert size < margin < 4 * size  # a few pixels beyond the bounds on every side
    for offset in (b.left - XMIN, b.top - YMAX):  # origin off both pixel lattices
        for step in (DEMO_PIXEL_SIZE, size):
            assert abs(offset / step - round(offset / step)) > 0.1
    assert values.count() > 0.85 * values.size and np.isfinite(values.compressed()).all()


def test_geophysics_values_are_plausible(demos):
    files = demos["a"]
    with rasterio.open(files.magnetics) as src:
        mag = src.read(1, masked=True).compressed()
    with rasterio.open(files.radiometrics_k) as src:
        k = src.read(1, masked=True).compressed()
    assert -300 < mag.min() < -20 and 50 < mag.max() < 400  # nT: lows and intrusive highs
    assert 0.0 < k.min() and 1.0 < np.median(k) < 3.5 and k.max() < 6.0  # % K


def test_geophysics_survey_gaps_miss_the_usable_cells(demos):
    files = demos["a"]
    with rasterio.open(files.magnetics) as src:
        mag = src.read(1, masked=True)
        x0, x1, y0, y1 = _pixel_edges(src)
    rows, cols = np.nonzero(mag.mask)
    assert 1000 < len(rows) < 0.1 * mag.size
    gap = shapely.box(x0[cols], y0[rows], x1[cols], y1[rows])
    extent = gpd.read_file(files.geology, layer="geology_extent").geometry.iloc[0]
    assert not shapely.intersects(extent.buffer(5.0), gap).any()  # over the blank corner
    assert shapely.intersects(_corner(), gap).any()
    with rasterio.open(files.radiometrics_k) as src:
        k = src.read(1, masked=True)
        _, _, y0, _ = _pixel_edges(src)
    rows, _ = np.nonzero(k.mask)
    assert len(rows) > 0 and (y0[rows] > YMAX).all()  # a strip beyond the north edge
    # resampled bilinearly onto the evidence grid, no usable cell holds a nodata pixel
    grid = demo_grid()
    usable = shapely.covers(extent.buffer(1e-6), _cells())
    for path, reaches in ((files.magnetics, True), (files.radiometrics_k, False)):
        out = np.full(grid.shape, np.nan, dtype=np.float32)
        with rasterio.open(path) as src:
            reproject(rasterio.band(src, 1), out, src_transform=src.transform,
                      src_crs=src.crs, src_nodata=src.nodata, dst_transform=grid.transform,
                      dst_crs=src.crs, dst_nodata=np.nan, resampling=Resampling.bilinear)
        missing = np.isnan(out).reshape(DEMO_CELL_ROWS, 46, DEMO_CELL_COLS, 40).any(axis=(1, 3))
        assert not (missing.ravel() & usable).any(), path.name
        assert missing.any() == reaches, path.name


@pytest.mark.parametrize("key", ["a", "c"])
def test_geophysics_follow_the_fertility_in_part(demos, key):
    files = demos[key]
    r = {}
    for name in GEOPHYSICS:
        with rasterio.open(getattr(files, name)) as src:
            data = src.read(1, masked=True).astype(float).filled(np.nan)
            fert = _fertility_on(src, files.fertility)
        ok = np.isfinite(data) & np.isfinite(fert)
        assert ok.sum() > 0.8 * data.size, name
        r[name] = np.corrcoef(data[ok], fert[ok])[0, 1]
    assert -0.75 < r["magnetics"] < -0.25  # magnetite destroyed by the alteration
    assert 0.25 < r["radiometrics_k"] < 0.75  # potassium added by its sericite


def test_geophysics_leave_the_other_files_as_they_were(demos, monkeypatch, tmp_path):
    """The geophysics draw from a generator of their own: without them the rest is the same."""
    files = demos["a"]
    monkeypatch.setattr("oremap.demo.generate._magnetics", lambda st, rng: None)
    monkeypatch.setattr("oremap.demo.generate._radiometrics_k", lambda st, rng: None)
    built = demo_module._build(0)
    write_csv(tmp_path / "soil.csv", built.samples)
    assert (tmp_path / "soil.csv").read_bytes() == files.soil_samples.read_bytes()
    with rasterio.open(files.fertility) as src:
        np.testing.assert_array_equal(src.read(1), built.fertility.astype(np.float32))
    for layer, gdf in built.geology.items():
        written = gpd.read_file(files.geology, layer=layer)
        assert list(written.geometry.to_wkb()) == list(gdf.geometry.to_wkb()), layer
    for path, layer, gdf in ((files.orebodies, "orebodies", built.orebodies),
                             (files.drilling, "drillholes", built.drillholes),
                             (files.drilling, "trenches", built.trenches)):
        written = gpd.read_file(path, layer=layer)
        assert list(written.geometry.to_wkb()) == list(gdf.geometry.to_wkb()), layer
    # seed 0's label counts, as before the geophysics (and as README.md quotes them)
    assert read_json(files.marker)["counts"] == built.counts == {
        "cells": 640, "dropped": 70, "positive": 27, "negative": 342, "unknown": 201}


def test_example_config_reads_the_geophysics(demos):
    d = tomllib.loads(example_config_text("data"))
    rasters = {r["name"]: r for r in d["raster"]}
    assert list(rasters) == ["magnetics", "potassium"]
    assert rasters["magnetics"] == {"name": "magnetics", "path": "data/magnetics.tif",
                                    "resampling": "auto", "derive": ["gradient"]}
    assert rasters["potassium"] == {"name": "potassium", "path": "data/radiometrics_k.tif"}
    files = demos["a"]
    assert rasters["magnetics"]["path"].split("/")[-1] == files.magnetics.name
    assert rasters["potassium"]["path"].split("/")[-1] == files.radiometrics_k.name
    # 10 elements + 4 geology layers + magnetics, magnetics_gradient and potassium
    derived = sum(len(r.get("derive", [])) for r in d["raster"])
    assert len(d["geochem"]["elements"]) + len(d["geology"]) + len(d["raster"]) + derived == 17


def test_geophysics_become_evidence_layers(demos, tmp_path):
    """The example configuration's [[raster]] layers, warped onto the demo grid."""
    from rasterio.windows import Window

    from oremap.config import load_config
    from oremap.evidence.raster import prepare_raster, raster_window
    from oremap.inputs import raster_specs

    files = demos["a"]
    path = tmp_path / "demo.toml"
    path.write_text(example_config_text(str(files.root), quick=True))
    grid = demo_grid()
    specs = raster_specs(load_config(path), grid)
    assert [s.name for s in specs] == ["magnetics", "magnetics_gradient", "potassium"]
    extent = gpd.read_file(files.geology, layer="geology_extent").geometry.iloc[0]
    usable = shapely.covers(extent.buffer(1e-6), _cells())
    with rasterio.open(files.fertility) as src:
        fert = np.repeat(np.repeat(src.read(1), 2, axis=0), 2, axis=1)  # 1 m -> 0.5 m pixels
    layers = {}
    for spec in specs:
        prepared = prepare_raster(spec, grid)
        assert prepared.resampling == "bilinear"  # "auto": coarser than the evidence pixel
        layers[spec.name] = (raster_window(prepared, grid, Window(0, 0, grid.width,
                                                                  grid.height)), prepared.units)
    units = {k: u for k, (_, u) in layers.items()}  # from the files' band metadata
    assert units["magnetics"] == "nT" and units["potassium"] == "%"
    assert units["magnetics_gradient"].startswith("nT per ")
    for name, (values, _) in layers.items():
        missing = np.isnan(values).reshape(DEMO_CELL_ROWS, 46, DEMO_CELL_COLS, 40).any(
            axis=(1, 3)).ravel()
        assert not (missing & usable).any(), name  # the survey gaps cost no usable cell
        assert missing.any() == name.startswith("magnetics"), name
    r = {name: np.corrcoef(v[np.isfinite(v)], fert[np.isfinite(v)])[0, 1]
         for name, (v, _) in layers.items()}
    assert r["magnetics"] < -0.25 and r["potassium"] > 0.25

"""Tests of oremap.evidence.stack: building, writing, resuming and loading the layer stack."""

from __future__ import annotations

import importlib
import json

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
from rasterio.windows import Window
from shapely.geometry import LineString, MultiPoint, Point, Polygon, box

from oremap import io
from oremap.errors import DroppedDataWarning, InputDataError, StageNotReadyError
from oremap.evidence import (
    EvidenceManifest,
    GeochemLayerSpec,
    GeologyLayerSpec,
    buffer_density_map,
    build_evidence,
    coverage_mask,
    distance_map,
    geochem_specs,
    idw,
    load_stack,
)
from oremap.grid import Grid

build_module = importlib.import_module("oremap.evidence.build")


@pytest.fixture
def grid() -> Grid:
    """40 x 40 pixels of 25 m."""
    return Grid.from_bounds("EPSG:32650", (400000, 3000000, 401000, 3001000), 25)


def _specs(grid: Grid) -> list:
    rng = np.random.default_rng(0)
    x0, y0, x1, y1 = grid.bounds
    xy = rng.uniform([x0 + 150, y0 + 100], [x1 - 100, y1 - 200], (60, 2))
    au = rng.lognormal(size=60)
    au[[3, 7]] = np.nan
    faults = [LineString([(x0 - 100, y0 + 200), (x1 + 100, y0 + 700)]),
              LineString([(x0 + 300, y0 - 50), (x0 + 500, y1 + 50)])]
    intrusion = [Point(x0 + 700, y0 + 300).buffer(180)]
    return [
        GeochemLayerSpec("Au", xy, au, "soil.csv column 'Au' ([geochem] elements)",
                         log10=True, coverage_buffer=50.0),
        GeochemLayerSpec("Cu", xy, au * 3, "soil.csv column 'Cu' ([geochem] elements)",
                         neighbours=None, power=1.0, clip_percentile=95,
                         extent=box(x0, y0, x0 + 600, y1)),
        GeologyLayerSpec("faults", faults, "faults.gpkg ([[geology]] #1)", radius=110.0),
        GeologyLayerSpec("fault_distance", faults, "faults.gpkg ([[geology]] #2)",
                         measure="distance", extent=box(x0, y0, x1 - 300, y1 - 100)),
        GeologyLayerSpec("intrusions", intrusion, "intrusions.gpkg ([[geology]] #3)",
                         measure="density", radius=80.0),
    ]


def _build(specs, grid, out, **kwargs):
    kwargs.setdefault("progress", False)
    with pytest.warns(DroppedDataWarning, match="dropped 2 of 60"):
        return build_evidence(specs, grid, out, **kwargs)


def test_build_writes_layers_previews_and_manifest(grid, tmp_path):
    specs = _specs(grid)
    m = _build(specs, grid, tmp_path, block=2048)
    assert m.complete and m.names == ["Au", "Cu", "faults", "fault_distance", "intrusions"]
    for rec in m.layers:
        with rasterio.open(tmp_path / rec.path) as src:
            assert src.dtypes[0] == "float32" and src.nodata == grid.nodata
            assert src.crs.to_epsg() == 32650 and src.transform == grid.transform
            assert src.profile["tiled"] and src.compression.name == "deflate"
            assert src.descriptions[0] == rec.name
            assert src.tags()["measure"] == rec.measure
        assert (tmp_path / rec.preview).stat().st_size > 5000
    doc = json.loads((tmp_path / "stack.json").read_text())
    assert doc["complete"] and doc["names"] == m.names
    au = doc["layers"][0]
    assert (au["kind"], au["measure"], au["n_used"], au["n_dropped"]) == ("geochem", "idw",
                                                                        58, 2)
    assert au["parameters"]["log10"] is True and au["units"] == "log10(assay units)"
    assert doc["layers"][2]["units"] == "metre" and doc["layers"][4]["units"] == "area fraction"
    assert (doc["layers"][2]["n_used"], doc["layers"][2]["n_dropped"]) == (2, 0)
    assert all(0 < r["coverage_fraction"] <= 1 for r in doc["layers"])
    assert doc["layers"][2]["coverage_fraction"] == 1.0

    stack, names, g = load_stack(tmp_path)
    assert stack.shape == (5, 40, 40) and stack.dtype == np.float32 and names == m.names
    assert g.bounds == grid.bounds
    # values equal the stage functions, NaN outside coverage
    s0 = specs[0]
    keep = np.isfinite(s0.values)
    hull = MultiPoint(s0.xy[keep]).convex_hull.buffer(50.0)
    mask = coverage_mask(hull, grid)
    expected = idw(s0.xy[keep], np.log10(s0.values[keep]), grid.centres(), neighbours=12)
    expected = np.where(mask.ravel(), expected, np.nan).reshape(grid.shape)
    np.testing.assert_allclose(stack[0], expected, rtol=1e-6)
    assert np.isnan(stack[0]).sum() == (~mask).sum() > 0
    assert np.isnan(stack[1][:, 24:]).all() and np.isfinite(stack[1][:, :24]).all()
    np.testing.assert_allclose(stack[2], buffer_density_map(specs[2].geometries, grid,
                                                            radius=110.0), rtol=1e-6,
                               atol=1e-4)
    dist = distance_map(specs[3].geometries, grid)
    np.testing.assert_allclose(stack[3][4:, :28], dist[4:, :28], rtol=1e-6)
    assert np.isnan(stack[3][:4]).all() and np.isnan(stack[3][:, 28:]).all()
    rec = m.layer("faults")
    assert rec.min == pytest.approx(float(np.nanmin(stack[2])), rel=1e-6)
    assert rec.mean == pytest.approx(float(np.nanmean(stack[2].astype(np.float64))), rel=1e-5)
    # a window of the stack
    part, _, pg = load_stack(tmp_path, window=Window(10, 5, 8, 6))
    np.testing.assert_array_equal(part, stack[:, 5:11, 10:18])
    assert pg.shape == (6, 8) and pg.bounds[0] == grid.bounds[0] + 10 * 25


def test_windowed_equals_in_memory(grid, tmp_path):
    specs = _specs(grid)
    _build(specs, grid, tmp_path / "whole", block=4096)
    _build(specs, grid, tmp_path / "tiled", block=7)  # 36 windows, with density halos
    whole, _, _ = load_stack(tmp_path / "whole")
    tiled, _, _ = load_stack(tmp_path / "tiled")
    np.testing.assert_array_equal(np.isnan(whole), np.isnan(tiled))
    # IDW and distance are computed per pixel: identical; the FFT densities differ by round-off
    np.testing.assert_array_equal(whole[[0, 1, 3]], tiled[[0, 1, 3]])
    scale = np.nanmax(np.abs(whole), axis=(1, 2))[:, None, None]
    assert np.nanmax(np.abs(whole - tiled) / scale) < 1e-6
    np.testing.assert_array_equal(whole == 0, tiled == 0)


def test_resume_keeps_unchanged_layers(grid, tmp_path, monkeypatch):
    specs = _specs(grid)
    first = _build(specs, grid, tmp_path)
    calls = []
    real = build_module._build_layer
    monkeypatch.setattr(build_module, "_build_layer",
                        lambda p, *a, **k: calls.append(p.spec.name) or real(p, *a, **k))
    again = _build(specs, grid, tmp_path)
    assert calls == [] and [r.spec_hash for r in again.layers] == [r.spec_hash for r in
                                                                    first.layers]
    specs[2] = GeologyLayerSpec("faults", specs[2].geometries, specs[2].source, radius=150.0)
    (tmp_path / "layers" / "Cu.tif").unlink()
    _build(specs, grid, tmp_path)
    assert calls == ["Cu", "faults"]
    assert EvidenceManifest.read(tmp_path).layer("faults").parameters["radius"] == 150.0
    _build(specs, grid, tmp_path, resume=False)
    assert len(calls) == 2 + 5


def test_interrupted_build_is_incomplete_then_resumes(grid, tmp_path, monkeypatch):
    specs = _specs(grid)
    real = build_module._build_layer

    def failing(p, *a, **k):
        if p.spec.name == "faults":
            raise KeyboardInterrupt
        return real(p, *a, **k)

    monkeypatch.setattr(build_module, "_build_layer", failing)
    with pytest.raises(KeyboardInterrupt), pytest.warns(DroppedDataWarning):
        build_evidence(specs, grid, tmp_path, progress=False)
    doc = json.loads((tmp_path / "stack.json").read_text())
    assert not doc["complete"] and doc["names"] == ["Au", "Cu"]
    assert not (tmp_path / "layers" / "faults.tif").exists()
    with pytest.raises(StageNotReadyError, match="incomplete"):
        load_stack(tmp_path)
    calls = []
    monkeypatch.setattr(build_module, "_build_layer",
                        lambda p, *a, **k: calls.append(p.spec.name) or real(p, *a, **k))
    assert _build(specs, grid, tmp_path).complete
    assert calls == ["faults", "fault_distance", "intrusions"]


def test_load_stack_errors(grid, tmp_path):
    with pytest.raises(StageNotReadyError, match="run `oremap evidence "):
        load_stack(tmp_path)
    specs = _specs(grid)[2:4]
    build_evidence(specs, grid, tmp_path, progress=False, previews=False)
    assert not (tmp_path / "previews").exists()
    io.write_raster(tmp_path / "layers" / "faults.tif", np.zeros((4, 4)),
                    Grid.from_bounds(grid.crs, (0, 0, 4, 4), 1))
    with pytest.raises(InputDataError, match="rebuild the evidence"):
        load_stack(tmp_path)
    (tmp_path / "layers" / "faults.tif").unlink()
    with pytest.raises(StageNotReadyError, match="is missing"):
        load_stack(tmp_path)
    with pytest.raises(InputDataError, match="no evidence layer 'Zn'"):
        EvidenceManifest.read(tmp_path).layer("Zn")
    (tmp_path / "stack.json").write_text('{"layers": []}')
    with pytest.raises(InputDataError, match="not an oremap evidence manifest"):
        load_stack(tmp_path)


def test_decimated_preview(grid, tmp_path, monkeypatch):
    monkeypatch.setattr(build_module, "PREVIEW_MAX_PX", 12)  # step 4 on 40 x 40
    stats = build_module._Stats(grid, 12)
    values = np.arange(1600.0).reshape(40, 40)
    for w in grid.windows(7):
        sl = (slice(w.row_off, w.row_off + w.height), slice(w.col_off, w.col_off + w.width))
        stats.add(values[sl], np.ones((w.height, w.width), bool), w)
    assert stats.step == 4
    np.testing.assert_array_equal(stats.preview, values[::4, ::4])
    assert (stats.min, stats.max, stats.mean) == (0.0, 1599.0, 799.5)
    m = build_evidence(_specs(grid)[2:3], grid, tmp_path, progress=False, block=9)
    assert (tmp_path / m.layers[0].preview).exists()


def test_coverage_mask(grid):
    assert coverage_mask(None, grid).all() and coverage_mask(None, grid).shape == (40, 40)
    assert coverage_mask(None, grid, Window(0, 0, 3, 5)).shape == (5, 3)
    half = box(grid.bounds[0], grid.bounds[1], grid.bounds[0] + 500, grid.bounds[3])
    m = coverage_mask(half, grid)
    assert m[:, :20].all() and not m[:, 20:].any()


def test_geochem_specs_from_tables():
    df = pd.DataFrame({"x": [0.0, 1.0], "y": [2.0, 3.0], "Au": [1.0, 2.0], "Cu": [3, 4]})
    specs = geochem_specs(df, ["Au", "Cu"], file="soil.csv", log10=True)
    assert [s.name for s in specs] == ["Au", "Cu"] and specs[1].log10
    assert specs[0].source == "soil.csv column 'Au' ([[geochem]] elements)"
    np.testing.assert_array_equal(specs[0].xy, [[0, 2], [1, 3]])
    gdf = gpd.GeoDataFrame(df[["Au"]], geometry=gpd.points_from_xy(df.x + 5, df.y))
    np.testing.assert_array_equal(geochem_specs(gdf, ["Au"], file="s.gpkg")[0].xy,
                                  [[5, 2], [6, 3]])
    with pytest.raises(InputDataError, match=r"missing column\(s\) \['Zn', 'y'\]"):
        geochem_specs(df.drop(columns="y"), ["Au", "Zn"], file="soil.csv")
    multi = gpd.GeoDataFrame({"Au": [1.0]}, geometry=[MultiPoint([(0, 0), (1, 1)])])
    with pytest.raises(InputDataError, match="single points"):
        geochem_specs(multi, ["Au"], file="s.gpkg")


def test_bad_specs_are_reported_together(grid, tmp_path):
    x0, y0, x1, y1 = grid.bounds
    far = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    xy = np.array([[x0 + 100, y0 + 100], [x0 + 900, y0 + 100], [x0 + 500, y0 + 900]])
    line = LineString([(x0, y0), (x1, y1)])
    bad = [
        GeochemLayerSpec("Au", far, np.ones(3), "a.csv column 'Au'"),
        GeochemLayerSpec("Cu", xy, np.full(3, np.nan), "a.csv column 'Cu'"),
        GeochemLayerSpec("Zn", xy, np.ones(3), "a.csv column 'Zn'", coverage_buffer=-1),
        GeochemLayerSpec("Pb", xy, np.ones(3), "a.csv column 'Pb'", neighbours=0),
        GeochemLayerSpec("Ni", xy, np.ones(3), "a.csv column 'Ni'", extent=LineString(
            [(x0, y0), (x1, y1)])),
        GeochemLayerSpec("Co", xy, np.ones(3), "a.csv column 'Co'", extent=box(0, 0, 1, 1)),
        GeologyLayerSpec("f1", [LineString([(0, 0), (1, 1)])], "f1.gpkg", radius=100.0),
        GeologyLayerSpec("f2", [line], "f2.gpkg", radius=10.0),
        GeologyLayerSpec("f3", [line, Point(x0, y0).buffer(50)], "f3.gpkg", radius=100.0),
        GeologyLayerSpec("f4", [line], "f4.gpkg", measure="kde", radius=100.0),
        GeologyLayerSpec("f5", [line], "f5.gpkg", radius=None),
        GeologyLayerSpec("f6", [line], "f6.gpkg", measure="distance", extent=Point(0, 0)),
        GeologyLayerSpec("f7", [line], "f7.gpkg", measure="distance", extent=Polygon()),
    ]
    with pytest.raises(InputDataError) as err:
        build_evidence(bad, grid, tmp_path, progress=False)
    msg = str(err.value)
    for expected in [
        "a.csv column 'Au': the area covered by the samples (bounds", "does not overlap the grid",
        "none of the 3 assays", "coverage_buffer must be >= 0", "neighbours must be an integer",
        "a.csv column 'Ni': the extent has no area", "a.csv column 'Co': the extent",
        "f1.gpkg: no feature lies within the grid", "f2.gpkg: radius 10 is smaller than a pixel",
        "f3.gpkg: measure 'buffer_density' needs only lines or only polygons",
        "f4.gpkg: unknown measure 'kde'", "f5.gpkg: the density measures need a radius",
        "f6.gpkg: the extent has no area", "f7.gpkg: the extent is empty or not",
    ]:
        assert expected in msg
    assert not (tmp_path / "stack.json").exists()


def test_names_and_types(grid, tmp_path):
    x0, y0, x1, y1 = grid.bounds
    line = LineString([(x0, y0), (x1, y1)])
    twice = [GeologyLayerSpec("f", [line], "a.gpkg", radius=100.0),
             GeologyLayerSpec("f", [line], "b.gpkg", radius=100.0)]
    with pytest.raises(InputDataError, match="'f' is used twice"):
        build_evidence(twice, grid, tmp_path, progress=False)
    with pytest.raises(InputDataError, match="must start with a letter or digit"):
        build_evidence([GeologyLayerSpec("../f", [line], "a.gpkg", radius=100.0)], grid,
                       tmp_path, progress=False)
    with pytest.raises(InputDataError, match="no evidence layers"):
        build_evidence([], grid, tmp_path, progress=False)

    class Other:
        name = "x"
        source = "?"

    with pytest.raises(InputDataError, match="is not a GeochemLayerSpec"):
        build_evidence([Other()], grid, tmp_path, progress=False)


def test_layer_without_pixel_centres_is_an_error(grid, tmp_path):
    x0, y0 = grid.bounds[:2]
    sliver = box(x0 + 1, y0 + 1, x0 + 5, y0 + 5)  # inside the grid, holds no pixel centre
    line = LineString([(x0, y0), (x0 + 500, y0 + 500)])
    spec = GeologyLayerSpec("f", [line], "f.gpkg", measure="distance", extent=sliver)
    with pytest.raises(InputDataError, match="covers no pixel centre"):
        build_evidence([spec], grid, tmp_path, progress=False)
    assert not (tmp_path / "layers" / "f.tif").exists()


def test_progress_bar_runs(grid, tmp_path, capsys):
    spec = GeologyLayerSpec("f", [LineString([grid.bounds[:2], grid.bounds[2:]])], "f.gpkg",
                            radius=60.0)
    m = build_evidence([spec], grid, tmp_path, block=16, progress=True, previews=False)
    assert m.layers[0].coverage_fraction == 1.0
    # a straight line through p gives about R: its length within R, cone-weighted
    assert m.layers[0].max == pytest.approx(60.0, rel=0.15)
    # on stderr (the logging console), one line in a log: no frames
    err = capsys.readouterr().err
    assert "evidence layers: 1/1 layer in " in err and "\r" not in err

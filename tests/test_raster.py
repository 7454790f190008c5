"""Raster evidence layers: warping equal to GDAL's, placement across CRSs, derived layers,
categorical fractions, checks of bad rasters and recomputation when a raster changes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import shapely
from pyproj import Transformer
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.transform import from_origin
from rasterio.warp import reproject
from scipy import ndimage

from oremap import contract, pipeline
from oremap.config import config_from_dict, dump_toml
from oremap.errors import InputDataError
from oremap.evidence import (
    RasterLayerSpec,
    build_evidence,
    gradient_magnitude,
    load_stack,
    local_std,
    raster_classes,
)
from oremap.evidence.raster import TILE, disk_footprint
from oremap.grid import Grid

OREMAP = Path(sys.executable).parent / "oremap"
CRS_GRID = "EPSG:3067"


def write_tif(path: Path, data: np.ndarray, *, crs: str | None = CRS_GRID,
              origin: tuple[float, float] = (400_003.0, 7_500_007.0), pixel: float = 10.0,
              nodata: float | None = -99999.0, units: str | None = None,
              dtype: str = "float32") -> Path:
    data = np.asarray(data)
    if data.ndim == 2:
        data = data[None]
    profile = dict(driver="GTiff", width=data.shape[2], height=data.shape[1],
                   count=data.shape[0], dtype=dtype, transform=from_origin(*origin, pixel, pixel),
                   nodata=nodata, tiled=True, blockxsize=256, blockysize=256)
    if crs is not None:
        profile["crs"] = crs
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data.astype(dtype))
        if units:
            dst.units = (units,) * data.shape[0]
    return path


def grid_of(shape: tuple[int, int] = (270, 300), pixel: float = 30.0,
            origin: tuple[float, float] = (400_500.0, 7_499_600.0)) -> Grid:
    rows, cols = shape
    x0, y1 = origin
    return Grid.from_bounds(CRS_GRID, (x0, y1 - rows * pixel, x0 + cols * pixel, y1), pixel)


def build(specs: list[RasterLayerSpec], grid: Grid, out: Path, **kw: Any) -> np.ndarray:
    build_evidence(specs, grid, out, progress=False, previews=False, resume=False, **kw)
    return load_stack(out)[0]


@pytest.fixture(scope="module")
def noise(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(0)
    data = rng.normal(100.0, 30.0, size=(900, 1000)).astype(np.float32)
    data[300:340, 400:460] = -99999.0  # a survey gap
    return write_tif(tmp_path_factory.mktemp("r") / "noise.tif", data, units="nT")


# --------------------------------------------------------------------------- warping


def gdal_reference(path: Path, grid: Grid, resampling: Resampling) -> np.ndarray:
    out = np.full(grid.shape, np.nan, dtype=np.float32)
    with rasterio.open(path) as src:
        reproject(rasterio.band(src, 1), out, dst_transform=grid.transform,
                  dst_crs=CRS.from_wkt(grid.crs.to_wkt()), resampling=resampling,
                  dst_nodata=np.nan)
    return out


def test_average_resampling_equals_gdal(noise: Path, tmp_path: Path) -> None:
    grid = grid_of((200, 230))  # one tile: one GDAL call, as the reference
    assert max(grid.shape) <= TILE
    got = build([RasterLayerSpec("mag", noise, "t")], grid, tmp_path / "ev")[0]
    ref = gdal_reference(noise, grid, Resampling.average)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    np.testing.assert_allclose(got, ref, rtol=1e-6, equal_nan=True)
    # the survey gap is nodata in the file: pixels entirely inside it have no value
    assert np.isnan(got).sum() > 0
    # by hand, on a grid aligned with the file's pixels: the mean of each 3 x 3 block
    aligned = grid_of((20, 20), 30.0, origin=(400_003.0 + 100, 7_500_007.0 - 50))
    got = build([RasterLayerSpec("mag", noise, "t")], aligned, tmp_path / "aligned")[0]
    with rasterio.open(noise) as src:
        file = src.read(1, window=((5, 65), (10, 70))).astype(np.float64)
    want = file.reshape(20, 3, 20, 3).mean(axis=(1, 3))
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_average_over_many_tiles_equals_gdal_in_the_same_crs(noise: Path, tmp_path: Path) -> None:
    grid = grid_of((270, 300))  # four tiles
    got = build([RasterLayerSpec("mag", noise, "t")], grid, tmp_path / "ev")[0]
    ref = gdal_reference(noise, grid, Resampling.average)
    np.testing.assert_allclose(got, ref, rtol=1e-6, equal_nan=True)


def test_auto_takes_average_when_finer_and_bilinear_when_coarser(noise: Path,
                                                                  tmp_path: Path) -> None:
    fine = build_evidence([RasterLayerSpec("a", noise, "t")], grid_of((40, 40), 30.0),
                          tmp_path / "fine", progress=False, previews=False)
    coarse = build_evidence([RasterLayerSpec("a", noise, "t")], grid_of((40, 40), 5.0),
                            tmp_path / "coarse", progress=False, previews=False)
    assert fine.layers[0].parameters["resampling_used"] == "average"
    assert coarse.layers[0].parameters["resampling_used"] == "bilinear"
    assert fine.layers[0].units == "nT" and fine.layers[0].kind == "raster"


def test_layer_does_not_depend_on_the_window_size(noise: Path, tmp_path: Path) -> None:
    grid = grid_of((270, 300))
    specs = [RasterLayerSpec("mag", noise, "t"),
             RasterLayerSpec("mag_gradient", noise, "t", derive="gradient"),
             RasterLayerSpec("mag_texture", noise, "t", derive="texture", radius=95.0)]
    small = build(specs, grid, tmp_path / "a", block=48)
    large = build(specs, grid, tmp_path / "b", block=2048)
    assert np.array_equal(small, large, equal_nan=True)


def test_raster_in_another_crs_lands_where_its_reprojected_corners_say(tmp_path: Path) -> None:
    # a hot square in a UTM zone 34 file, read onto an EPSG:3067 (TM35FIN) grid
    data = np.zeros((400, 400), dtype=np.float32)
    data[150:250, 120:220] = 1000.0
    utm34 = "EPSG:32634"
    path = write_tif(tmp_path / "utm34.tif", data, crs=utm34, origin=(650_000.0, 7_520_000.0),
                     pixel=50.0, nodata=None)
    x0, y1 = 650_000.0 + 120 * 50, 7_520_000.0 - 150 * 50
    square = shapely.box(x0, y1 - 100 * 50, x0 + 100 * 50, y1)
    to_grid = Transformer.from_crs(utm34, CRS_GRID, always_xy=True)
    landed = shapely.transform(square.segmentize(100.0),
                               lambda xy: np.column_stack(to_grid.transform(xy[:, 0], xy[:, 1])))
    b = landed.bounds
    grid = Grid.from_bounds(CRS_GRID, (round(b[0], -3) - 3000, round(b[1], -3) - 3000,
                                       round(b[0], -3) + 9000, round(b[1], -3) + 9000), 100.0)
    layer = build([RasterLayerSpec("hot", path, "t", resampling="average")], grid,
                  tmp_path / "ev")[0]
    centres = shapely.points(grid.centres()).reshape(grid.shape)
    inside = shapely.contains(landed.buffer(-150), centres)
    outside = ~shapely.intersects(landed.buffer(150), centres)
    assert inside.sum() > 100 and outside.sum() > 100
    np.testing.assert_allclose(layer[inside], 1000.0, rtol=1e-5)
    np.testing.assert_allclose(layer[outside & np.isfinite(layer)], 0.0, atol=1e-3)
    # its centre of mass is the reprojected square's centroid, within half a pixel
    w = np.where(np.isfinite(layer), layer, 0.0)
    xy = grid.centres().reshape(*grid.shape, 2)
    cx = (w * xy[..., 0]).sum() / w.sum()
    cy = (w * xy[..., 1]).sum() / w.sum()
    assert abs(cx - landed.centroid.x) < 50 and abs(cy - landed.centroid.y) < 50


def test_file_without_crs_takes_the_configured_one(tmp_path: Path) -> None:
    data = np.arange(100 * 100, dtype=np.float32).reshape(100, 100)
    path = write_tif(tmp_path / "nocrs.tif", data, crs=None, nodata=None)
    grid = grid_of((20, 20), 30.0, origin=(400_303.0, 7_499_707.0))
    with pytest.raises(InputDataError, match="has no CRS"):
        build([RasterLayerSpec("a", path, "t")], grid, tmp_path / "a")
    got = build([RasterLayerSpec("a", path, "t", crs=CRS_GRID)], grid, tmp_path / "b")[0]
    assert np.isfinite(got).all()


def test_log10_and_clip_percentile(noise: Path, tmp_path: Path) -> None:
    grid = grid_of((100, 100))
    plain = build([RasterLayerSpec("a", noise, "t")], grid, tmp_path / "a")[0]
    clipped = build([RasterLayerSpec("a", noise, "t", clip_percentile=90.0)], grid,
                    tmp_path / "b")[0]
    p90 = np.nanpercentile(plain, 90.0)  # the grid is under LATTICE_PX: every pixel counts
    np.testing.assert_allclose(clipped, np.minimum(plain, p90), rtol=1e-6, equal_nan=True)
    logged = build([RasterLayerSpec("a", noise, "t", log10=True)], grid, tmp_path / "c")[0]
    np.testing.assert_allclose(logged, np.log10(plain), rtol=1e-5, equal_nan=True)
    negative = write_tif(tmp_path / "neg.tif", np.full((900, 1000), -1.0, np.float32))
    with pytest.raises(InputDataError, match="^neg.tif band 1: log10 needs values > 0"):
        build([RasterLayerSpec("a", negative, "neg.tif band 1", log10=True)], grid,
              tmp_path / "d")


# --------------------------------------------------------------------------- derived layers


def test_gradient_equals_numpy_gradient_without_nodata() -> None:
    rng = np.random.default_rng(1)
    z = rng.normal(size=(17, 23))
    gy, gx = np.gradient(z, 2.0, 3.0)  # rows spaced dy = 2, columns dx = 3
    np.testing.assert_allclose(gradient_magnitude(z, 3.0, 2.0), np.hypot(gx, gy), rtol=1e-12)


def test_gradient_beside_nodata_is_one_sided_by_hand() -> None:
    z = np.array([[1.0, 2.0, 4.0],
                  [3.0, np.nan, 9.0],
                  [5.0, 6.0, np.nan]])
    g = gradient_magnitude(z, 1.0, 1.0)
    # (0, 0): x forward 2 - 1 = 1 (left is the edge); y forward 3 - 1 = 2 (above is the edge)
    assert g[0, 0] == pytest.approx(np.hypot(1.0, 2.0))
    # (0, 2): x backward 4 - 2 = 2 (right is the edge); y forward 9 - 4 = 5
    assert g[0, 2] == pytest.approx(np.hypot(2.0, 5.0))
    # (2, 0): x forward 6 - 5 = 1; y backward 5 - 3 = 2 (below is the edge)
    assert g[2, 0] == pytest.approx(np.hypot(1.0, 2.0))
    # (1, 2): y backward 9 - 4 = 5, but x has no neighbour (nodata left, edge right)
    assert np.isnan(g[1, 2])
    # (0, 1): y has no neighbour with a value (edge above, nodata below)
    assert np.isnan(g[0, 1])
    # (1, 0): x has no neighbour with a value (edge left, nodata right)
    assert np.isnan(g[1, 0])
    # (2, 1): y has none (nodata above, edge below)
    assert np.isnan(g[2, 1])
    assert np.isnan(g[1, 1]) and np.isnan(g[2, 2])


def test_local_std_equals_scipy_generic_filter() -> None:
    rng = np.random.default_rng(2)
    z = rng.normal(1000.0, 5.0, size=(30, 26))
    z[4:7, 10:13] = np.nan
    z[0, 0] = np.nan
    fp = disk_footprint(2.5, 1.0, 1.0)
    assert fp.shape == (5, 5) and fp.sum() == 21  # centres within 2.5 px: corners left out
    ref = ndimage.generic_filter(z, np.nanstd, footprint=fp, mode="constant", cval=np.nan)
    ref[np.isnan(z)] = np.nan
    np.testing.assert_allclose(local_std(z, fp), ref, rtol=1e-9, atol=1e-9, equal_nan=True)


def test_derived_layers_equal_the_derivation_of_the_whole_layer(noise: Path,
                                                                 tmp_path: Path) -> None:
    grid = grid_of((270, 300))
    base, grad, tex = build(
        [RasterLayerSpec("m", noise, "t"),
         RasterLayerSpec("m_gradient", noise, "t", derive="gradient"),
         RasterLayerSpec("m_texture", noise, "t", derive="texture", radius=100.0)],
        grid, tmp_path / "ev", block=64)
    np.testing.assert_allclose(grad, gradient_magnitude(base, 30.0, 30.0), rtol=1e-5,
                               equal_nan=True)
    np.testing.assert_allclose(tex, local_std(base, disk_footprint(100.0, 30.0, 30.0)),
                               rtol=1e-5, atol=1e-4, equal_nan=True)


# --------------------------------------------------------------------------- categorical


def test_categorical_grid_gives_class_fractions(tmp_path: Path) -> None:
    classes = np.zeros((90, 90), dtype=np.int16)
    classes[:, 45:] = 2
    classes[30:60, 30:60] = 7
    classes[0:3, 0:3] = -1  # nodata
    path = write_tif(tmp_path / "litho.tif", classes, dtype="int16", nodata=-1,
                     origin=(400_000.0, 7_500_000.0))
    grid = Grid.from_bounds(CRS_GRID, (400_000.0, 7_499_100.0, 400_900.0, 7_500_000.0), 30.0)
    found = raster_classes(path, grid)
    assert found == [0.0, 2.0, 7.0]
    specs = [RasterLayerSpec(f"litho_{int(c)}", path, "t", category=c) for c in found]
    frac = build(specs, grid, tmp_path / "ev")
    # by hand: the shares of 3 x 3 file pixels of each class
    for k, c in enumerate(found):
        want = (classes == c).reshape(30, 3, 30, 3).mean(axis=(1, 3))
        mask = ~(classes == -1).reshape(30, 3, 30, 3).all(axis=(1, 3))
        np.testing.assert_allclose(frac[k][mask], want[mask], atol=1e-6)
    assert np.isnan(frac[0][0, 0])
    np.testing.assert_allclose(np.nansum(frac, axis=0)[1:, 1:], 1.0, atol=1e-6)
    with pytest.raises(InputDataError, match="more than max_classes = 2"):
        raster_classes(path, grid, max_classes=2)


# --------------------------------------------------------------------------- configuration


def _cli(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(OREMAP), *(str(a) for a in args)], capture_output=True,
                          text=True, timeout=300)


@pytest.fixture()
def study(tmp_path: Path, noise: Path) -> dict[str, Any]:
    """A small configuration with one raster over a 270 x 300 px grid of 30 m."""
    import geopandas as gpd

    xy = [(401_650 + 900 * i, 7_492_450 + 800 * (i % 7)) for i in range(9)]
    ore = gpd.GeoDataFrame(geometry=[shapely.Point(x, y) for x, y in xy], crs=CRS_GRID)
    ore_path = tmp_path / "ore.gpkg"
    ore.to_file(ore_path)
    cfg: dict[str, Any] = {
        "grid": {"crs": CRS_GRID, "bounds": [400_500.0, 7_491_500.0, 409_500.0, 7_499_600.0],
                 "pixel_size": 30.0, "cell_cols": 30, "cell_rows": 27},
        "raster": [{"name": "mag", "path": str(noise), "derive": ["gradient"]}],
        "labels": {"orebodies": {"path": str(ore_path)}, "negatives": "all"},
        "samples": {"crop_size": 8, "positive": {"n": 1, "a": 8, "b": 8},
                    "negative": {"n": 1, "a": 8, "b": 8}, "validation": 0.0},
        "train": {"models": [], "baselines": ["logistic"]},
    }
    return cfg


def _write_config(cfg: dict[str, Any], folder: Path) -> Path:
    path = folder / "study.toml"
    path.write_text(dump_toml(cfg))
    return path


def test_valid_raster_config_checks(study: dict[str, Any], tmp_path: Path) -> None:
    res = _cli("config", "check", _write_config(study, tmp_path))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "2 evidence layers" in res.stdout


@pytest.mark.parametrize("case, message", [
    ("no_crs", "has no CRS; set `crs"),
    ("no_overlap", "does not overlap the grid"),
    ("all_nodata", "nodata everywhere inside the grid"),
    ("band", "band 3 is out of range"),
    ("classes", "more than max_classes = 3"),
    ("unreadable", "is not a raster GDAL can read"),
])
def test_bad_raster_fails_config_check_and_run_in_one_line(
        case: str, message: str, study: dict[str, Any], tmp_path: Path) -> None:
    entry = study["raster"][0]
    rng = np.random.default_rng(3)
    if case == "no_crs":
        entry["path"] = str(write_tif(tmp_path / "x.tif", rng.normal(size=(900, 1000)),
                                      crs=None))
    elif case == "no_overlap":
        entry["path"] = str(write_tif(tmp_path / "x.tif", rng.normal(size=(90, 100)),
                                      origin=(600_000.0, 7_000_000.0)))
    elif case == "all_nodata":
        entry["path"] = str(write_tif(tmp_path / "x.tif", np.full((900, 1000), -99999.0)))
    elif case == "band":
        entry["band"] = 3
    elif case == "classes":
        entry.update(path=str(write_tif(tmp_path / "x.tif",
                                        rng.integers(0, 9, size=(900, 1000)), dtype="int16",
                                        nodata=-1)),
                     categorical=True, max_classes=3, derive=[])
    elif case == "unreadable":
        (tmp_path / "x.tif").write_text("not a raster")
        entry["path"] = str(tmp_path / "x.tif")
    config = _write_config(study, tmp_path)
    res = _cli("config", "check", config)
    assert res.returncode == 2, res.stdout + res.stderr
    lines = [ln for ln in (res.stdout + res.stderr).splitlines() if ln.strip().startswith("- ")]
    assert len(lines) == 1, res.stdout
    assert message in lines[0] and "[[raster]] #1 'mag'" in lines[0], lines[0]
    assert "Traceback" not in res.stderr
    out = tmp_path / "run"
    res = _cli("run", config, "--out", out)
    assert res.returncode == 2 and message in res.stdout + res.stderr
    assert not out.exists()  # nothing written


def test_raster_config_errors() -> None:
    base = {"grid": {"crs": CRS_GRID, "bounds": [0, 0, 960, 960], "pixel_size": 30.0,
                     "cell_cols": 4, "cell_rows": 4},
            "labels": {"orebodies": {"path": "o.gpkg"}, "negatives": "all"},
            "samples": {"crop_size": 8}}
    with pytest.raises(Exception, match="texture_radius"):
        config_from_dict({**base, "raster": [{"name": "a", "path": "a.tif",
                                              "derive": ["texture"]}]})
    with pytest.raises(Exception, match="band or bands"):
        config_from_dict({**base, "raster": [{"name": "a", "path": "a.tif", "band": 1,
                                              "bands": [1, 2]}]})
    with pytest.raises(Exception, match="must be unique"):
        config_from_dict({**base, "raster": [{"name": "a", "path": "a.tif"},
                                             {"name": "a", "path": "b.tif"}]})
    cfg = config_from_dict({**base, "raster": [{"name": "a", "path": "a.tif", "bands": [1, 3],
                                                "derive": ["gradient"]}]})
    assert cfg.raster[0].layer_names() == ["a_b1", "a_b1_gradient", "a_b3", "a_b3_gradient"]


def test_changed_raster_recomputes_evidence_and_what_follows(study: dict[str, Any],
                                                             tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    path = write_tif(tmp_path / "mag.tif", rng.normal(size=(900, 1000)))
    study["raster"][0]["path"] = str(path)
    config = config_from_dict(study)
    run = tmp_path / "run"
    pipeline.run(config, run, stages=("evidence", "samples"), progress=False)
    before = load_stack(run / "evidence")[0]
    assert contract.status(run, "evidence", config).current
    write_tif(path, rng.normal(size=(900, 1000)))  # same name, new values
    st = contract.status(run, "evidence", config)
    assert not st.current and any("changed" in r for r in st.reasons)
    pipeline.run(config, run, stages=("evidence", "samples"), progress=False)
    after = load_stack(run / "evidence")[0]
    assert not np.allclose(before, after, equal_nan=True)
    assert contract.status(run, "samples", config).current
    stack = contract.read_manifest(run, "samples")
    assert stack is not None and stack["status"] == "complete"
    # the report lists each raster layer with its file, band, units and resampling
    html = pipeline.run_report(config, run, progress=False).read_text()
    assert "Raster evidence (2 layers)" in html and "mag.tif" in html
    assert "gradient magnitude" in html and "average" in html

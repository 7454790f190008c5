"""Tests of input handling: zero-length lines, censored assays, spreadsheet-safe CSV output."""

from __future__ import annotations

import warnings

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError
from shapely.geometry import LineString, MultiLineString

from oremap import io
from oremap.config import GeochemConfig
from oremap.errors import DroppedDataWarning, InputDataError
from oremap.evidence import GeochemLayerSpec, build_evidence, load_stack, prepare_samples
from oremap.evidence.features import (
    buffer_density_map,
    density_map,
    drop_zero_length_lines,
    prepare_features,
)
from oremap.evidence.idw import parse_censored
from oremap.evidence.specs import spec_hash
from oremap.grid import Grid

X0, Y0 = 500000.0, 4000000.0


@pytest.fixture
def grid() -> Grid:
    """40 x 40 pixels of 10 m."""
    return Grid.from_bounds("EPSG:32633", (X0, Y0, X0 + 400, Y0 + 400), 10)


# --------------------------------------------------------------------------- zero-length lines

GOOD_A = LineString([(X0 + 20, Y0 + 30), (X0 + 380, Y0 + 250)])
GOOD_B = LineString([(X0 + 200, Y0 - 20), (X0 + 150, Y0 + 420), (X0 + 300, Y0 + 390)])
ZERO = LineString([(X0 + 100, Y0 + 100), (X0 + 100, Y0 + 100)])
ZERO_PART = LineString([(X0 + 50, Y0 + 350), (X0 + 50, Y0 + 350), (X0 + 50, Y0 + 350)])


def test_read_vector_drops_zero_length_lines_before_make_valid(grid, tmp_path):
    path = tmp_path / "faults.gpkg"
    gpd.GeoDataFrame({"name": ["a", "zero", "b"]},
                     geometry=[GOOD_A, ZERO, MultiLineString([GOOD_B, ZERO_PART])],
                     crs=grid.crs).to_file(path, engine="pyogrio")
    with pytest.warns(DroppedDataWarning, match=r"dropped 2 zero-length line\(s\)") as record:
        gdf = io.read_vector(path, target_crs=grid.crs, what="[[geology]] #1 'faults'")
    message = next(str(w.message) for w in record if "zero-length" in str(w.message))
    assert "faults.gpkg" in message and "[[geology]] #1 'faults'" in message
    assert not any("make_valid" in str(w.message) for w in record)  # nothing left to repair
    assert list(gdf["name"]) == ["a", "b"]
    assert gdf.crs == grid.crs
    assert gdf.geometry.length.to_numpy() == pytest.approx([GOOD_A.length, GOOD_B.length])
    assert set(gdf.geom_type) <= {"LineString", "MultiLineString"}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = buffer_density_map(list(gdf.geometry), grid, radius=60.0)
        ref = buffer_density_map([GOOD_A, GOOD_B], grid, radius=60.0)
    assert ref.max() > 50.0  # a line through a pixel gives about R
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-9)


def test_prepare_features_drops_zero_length_lines(grid):
    geoms = [GOOD_A, ZERO, MultiLineString([GOOD_B, ZERO_PART]), None]
    with pytest.warns(DroppedDataWarning) as record:
        fs = prepare_features(geoms, source="faults.gpkg ([[geology]] #1)")
    messages = [str(w.message) for w in record]
    assert "faults.gpkg ([[geology]] #1): dropped 2 zero-length line(s) (all vertices at one " \
           "point)" in messages
    assert not any("make_valid" in m for m in messages)
    assert fs.kind == "lines"
    assert (fs.n_used, fs.n_dropped, fs.n_repaired) == (2, 2, 0)
    assert fs.total_length == pytest.approx(GOOD_A.length + GOOD_B.length, rel=1e-12)
    with pytest.warns(DroppedDataWarning, match="zero-length"):
        got = density_map(geoms[:3], grid, radius=50.0)
    np.testing.assert_allclose(got, density_map([GOOD_A, GOOD_B], grid, radius=50.0),
                               rtol=0, atol=1e-12)


def test_drop_zero_length_lines_keeps_other_geometries():
    repeated = LineString([(0, 0), (0, 0), (3, 4)])  # a repeated vertex but length 5
    poly = GOOD_A.buffer(1.0)
    kept, keep, n = drop_zero_length_lines(
        [repeated, ZERO, poly, MultiLineString([ZERO, ZERO_PART]), None])
    assert n == 3
    np.testing.assert_array_equal(keep, [True, False, True, False, True])
    assert kept[0].equals(repeated) and kept[1].equals(poly) and kept[2] is None


def test_only_zero_length_lines_is_a_clear_input_error(grid, tmp_path):
    with pytest.warns(DroppedDataWarning, match=r"dropped 3 zero-length"), \
            pytest.raises(InputDataError, match="zero-length lines"):
        prepare_features([ZERO, MultiLineString([ZERO_PART, ZERO])], source="dykes.gpkg")
    path = tmp_path / "dykes.gpkg"
    gpd.GeoDataFrame(geometry=[ZERO, ZERO_PART], crs=grid.crs).to_file(path, engine="pyogrio")
    with pytest.warns(DroppedDataWarning, match=r"dropped 2 zero-length"), \
            pytest.raises(InputDataError, match=r"dykes\.gpkg.*all are zero-length lines"):
        io.read_vector(path, target_crs=grid.crs, what="[[geology]] #2 'dykes'")


# --------------------------------------------------------------------------- censored assays

MIXED = np.array([1.5, "2.5", "<0.5", "< 0.4", ">100", "abc", None, "<0,5", " <1e-1 ", -3],
                 dtype=object)


@pytest.mark.parametrize(("mode", "expected", "done"), [
    ("half", [1.5, 2.5, 0.25, 0.2, 100.0, np.nan, np.nan, np.nan, 0.05, -3.0],
     "replaced by half the detection limit"),
    ("limit", [1.5, 2.5, 0.5, 0.4, 100.0, np.nan, np.nan, np.nan, 0.1, -3.0],
     "replaced by the detection limit"),
    ("drop", [1.5, 2.5, np.nan, np.nan, 100.0, np.nan, np.nan, np.nan, np.nan, -3.0],
     "dropped"),
])
def test_parse_censored_modes(mode, expected, done):
    with pytest.warns(DroppedDataWarning) as record:
        got = parse_censored(MIXED, mode, source="soil.csv column 'Au'")
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, expected)
    assert len(record) == 1
    message = str(record[0].message)
    assert message.startswith("soil.csv column 'Au': 3 below-detection assay(s) '<x' " + done)
    assert "1 over-range assay(s) '>x' kept at x" in message


def test_parse_censored_numbers_pass_through_and_bad_mode():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(
            parse_censored(np.array([1.0, -2.0, np.nan]), "half", source="s"), [1.0, -2.0, np.nan])
        np.testing.assert_array_equal(
            parse_censored(np.array(["1.0", "7"]), "drop", source="s"), [1.0, 7.0])
    with pytest.raises(InputDataError, match=r"censored must be one of \['half', 'limit', "
                                             r"'drop'\], got 'zero'"):
        parse_censored(MIXED, "zero", source="s")


def test_prepare_samples_substitutes_censored_assays():
    xy = np.array([[0, 0], [1, 0], [2, 0], [3, 0]], dtype=float)
    values = np.array(["10", "<0.5", "abc", "100"], dtype=object)
    with pytest.warns(DroppedDataWarning) as record:
        s = prepare_samples(xy, values, source="a.csv column 'Au'")
    np.testing.assert_array_equal(s.values, [10.0, 0.25, 100.0])
    assert (s.n_input, s.n_dropped) == (4, 1)
    assert any("1 below-detection assay(s) '<x' replaced by half" in str(w.message)
               for w in record)
    with pytest.warns(DroppedDataWarning) as record:
        s = prepare_samples(xy, values, source="a.csv column 'Au'", censored="drop", log10=True)
    np.testing.assert_allclose(s.values, [1.0, 2.0])
    assert s.n_dropped == 2
    assert any("dropped 2 of 4 samples with missing or non-finite assays (2 non-numeric, 1 of "
               "them below detection)" in str(w.message) for w in record)


def test_censored_idw_layer_equals_half_limit_given_numerically(grid, tmp_path):
    rng = np.random.default_rng(3)
    xy = rng.uniform([X0 + 20, Y0 + 20], [X0 + 380, Y0 + 380], (12, 2))
    numeric = rng.lognormal(size=12)
    given = numeric.astype(object)
    given[[2, 9]] = ["<0.5", "< 0.8"]
    numeric[[2, 9]] = [0.25, 0.4]

    def layer(values, out, **kwargs):
        spec = GeochemLayerSpec("Au", xy, values, "soil.csv column 'Au'", neighbours=None,
                                log10=True, coverage_buffer=30.0, **kwargs)
        build_evidence([spec], grid, out, previews=False, progress=False)
        return load_stack(out)[0][0]

    with pytest.warns(DroppedDataWarning, match=r"2 below-detection assay\(s\)"):
        censored = layer(given, tmp_path / "censored")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        reference = layer(numeric, tmp_path / "numeric")
    assert np.isfinite(reference).sum() > 100
    np.testing.assert_array_equal(censored, reference)
    limit = numeric.copy()
    limit[[2, 9]] = [0.5, 0.8]
    with pytest.warns(DroppedDataWarning, match="replaced by the detection limit"):
        got = layer(given, tmp_path / "limit", censored="limit")
    np.testing.assert_array_equal(got, layer(limit, tmp_path / "limit_numeric"))
    assert not np.array_equal(got, reference, equal_nan=True)


def test_spec_hash_uses_parsed_censored_values_and_mode(grid):
    xy = np.array([[X0 + 10, Y0 + 10], [X0 + 200, Y0 + 300]])

    def digest(values, **kwargs):
        spec = GeochemLayerSpec("Au", xy, np.array(values, dtype=object), "s", **kwargs)
        return spec_hash(spec, grid)

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # hashing reports nothing
        half = digest(["<0.5", 2.0])
        assert half == digest([0.25, 2.0])
        assert half != digest(["<0.7", 2.0])
        assert half != digest(["<0.5", 2.0], censored="limit")
        assert digest(["<0.5", 2.0], censored="limit") == digest([0.5, 2.0], censored="limit")
        assert digest(["<0.5", 2.0], censored="drop") != digest([0.5, 2.0], censored="drop")


def test_geochem_config_censored_key(tmp_path):
    base = {"path": tmp_path / "soil.csv", "elements": ["Au"]}
    assert GeochemConfig(**base).censored == "half"
    assert GeochemConfig(**base, censored="drop").censored == "drop"
    with pytest.raises(ValidationError, match="censored"):
        GeochemConfig(**base, censored="zero")


# --------------------------------------------------------------------------- CSV injection


def test_write_csv_escapes_formula_cells(tmp_path):
    df = pd.DataFrame({
        "name": ['=HYPERLINK("http://evil.example","click")', "+1", "-x", "@SUM(A1:A9)",
                 "normal", "\tcmd"],
        "value": [-1.5, 2.0, -3.0, 0.0, 4.25, -0.5],
        "mixed": [-2, "=1+1", None, "ok", 3.5, "-"],
        "kind": pd.Categorical(["-a", "b", "-a", "b", "b", "b"]),
        "label": pd.array(["@x", "y", None, "z", "=z", "w"], dtype="string"),
    })
    before = df.copy()
    io.write_csv(tmp_path / "t.csv", df)
    pd.testing.assert_frame_equal(df, before)  # the caller's frame is unchanged
    back = pd.read_csv(tmp_path / "t.csv")
    assert list(back["name"]) == ["'=HYPERLINK(\"http://evil.example\",\"click\")", "'+1",
                                  "'-x", "'@SUM(A1:A9)", "normal", "'\tcmd"]
    assert back["value"].dtype == np.float64
    assert list(back["value"]) == [-1.5, 2.0, -3.0, 0.0, 4.25, -0.5]
    assert list(back["mixed"].iloc[[0, 1, 3, 4, 5]]) == ["-2", "'=1+1", "ok", "3.5", "'-"]
    assert pd.isna(back["mixed"].iloc[2])
    assert list(back["kind"]) == ["'-a", "b", "'-a", "b", "b", "b"]
    assert list(back["label"].iloc[[0, 1, 3, 4, 5]]) == ["'@x", "y", "z", "'=z", "w"]
    raw = (tmp_path / "t.csv").read_text()
    assert "\n=" not in raw and ",=" not in raw and ",-1.5" in raw


def test_write_csv_escapes_labels(tmp_path):
    df = pd.DataFrame({"=cmd|' /C calc'!A0": [1.0, -2.0], "auc": [0.5, 0.75]},
                      index=pd.Index(["-model", "cnn"], name="@name"))
    io.write_csv(tmp_path / "t.csv", df, index=True)
    back = pd.read_csv(tmp_path / "t.csv", index_col=0)
    assert list(back.columns) == ["'=cmd|' /C calc'!A0", "auc"]
    assert list(back.index) == ["'-model", "cnn"] and back.index.name == "'@name"
    assert list(back["'=cmd|' /C calc'!A0"]) == [1.0, -2.0]
    assert list(df.columns) == ["=cmd|' /C calc'!A0", "auc"]
    assert list(df.index) == ["-model", "cnn"]

"""Bad input through the real entry points: clear errors (exit 2), counted warnings, no debris.

Every case starts from the embedded demo (valid data, valid quick configuration on a coarser
1 m grid) and breaks one thing. The CLI is driven with typer's ``CliRunner`` (``result.output``
holds stdout and stderr, where the rich console prints errors and log records); a few cases
call :func:`oremap.pipeline.run_evidence` directly to check warnings with ``pytest.warns``.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
import shapely
from typer.testing import CliRunner, Result

from oremap.cli import app
from oremap.config import dump_toml, load_config
from oremap.demo import example_config_text, write_demo
from oremap.errors import ConfigError, DroppedDataWarning, InputDataError
from oremap.pipeline import run_evidence
from oremap.runinfo import MARKER

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

RUNNER = CliRunner()
GRID_EPSG = 32649
#: The demo grid at 1 m pixels: 368 rows x 800 columns; 40 x 16 cells of 20 x 23 pixels.
GRID_SHAPE = (368, 800)
N_SOIL = 713

Edit = Callable[[dict[str, Any]], None]


# --------------------------------------------------------------------------- helpers


def _base_config(data: Path) -> dict[str, Any]:
    """The quick demo configuration on a 1 m grid, 2 elements, 2 geology layers, 16 px crops."""
    d = tomllib.loads(example_config_text(str(data), quick=True))
    d.pop("truth")
    d["grid"]["pixel_size"] = 1.0
    d["geochem"]["elements"] = ["Au", "As"]
    d["geology"] = d["geology"][:2]  # shear_zones, faults
    d["samples"].update(crop_size=16, positive={"n": 4, "a": 2, "b": 3},
                        negative={"n": 1, "a": 4, "b": 7})
    d["train"].update(models=["lenet"], baselines=[], epochs=1)
    return d


@dataclass(frozen=True)
class Study:
    """Demo data, plus a run folder holding the evidence and samples of the base config."""

    data: Path
    run: Path

    def config(self, path: Path, edit: Edit | None = None) -> Path:
        """Write the base configuration, changed by ``edit``, to ``path``."""
        d = _base_config(self.data)
        if edit is not None:
            edit(d)
        path.write_text(dump_toml(d))
        return path

    def run_with_evidence(self, root: Path) -> Path:
        """A fresh run folder holding a copy of the base evidence only."""
        run = root / "run"
        run.mkdir(parents=True)
        shutil.copy2(self.run / MARKER, run / MARKER)  # a copy of an oremap run folder
        shutil.copytree(self.run / "evidence", run / "evidence")
        return run

    def soil(self) -> pd.DataFrame:
        return pd.read_csv(self.data / "soil_samples.csv")

    def layer(self, file: str, layer: str) -> gpd.GeoDataFrame:
        return gpd.read_file(self.data / file, layer=layer, engine="pyogrio")


def _invoke(*args: object) -> Result:
    return RUNNER.invoke(app, [str(a) for a in args])


def _invoke_warned(*args: object) -> tuple[Result, str]:
    """Invoke the CLI; also return its output plus every warning it raised, as text.

    The CLI routes warnings to its log (``logging.captureWarnings``), but that hook is set only
    once per process and pytest resets ``warnings.showwarning`` per test; so a warning lands
    either in the output or in this record, and the text holds both.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = _invoke(*args)
    return result, result.output + "\n".join(f"{w.category.__name__}: {w.message}"
                                              for w in caught)


def _squash(text: str) -> str:
    """Text without any whitespace: rich wraps log records, this makes matching robust."""
    return re.sub(r"\s+", "", text)


def _error_text(result: Result) -> str:
    """The message printed after the last ``error:`` of the CLI."""
    _, sep, message = result.output.rpartition("error: ")
    assert sep, f"no 'error:' in the output:\n{result.output}"
    return message.strip()


def _tmp_leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if ".tmp" in p.name]


def _assert_fails(result: Result, root: Path, *fragments: str) -> str:
    """Exit code 2, no traceback, every fragment in the error message, no ``*.tmp*`` files."""
    assert result.exit_code == 2, (result.exit_code, repr(result.exception), result.output)
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    message = _error_text(result)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in error message:\n{message}"
    assert _tmp_leftovers(root) == []
    return message


def _assert_ok(result: Result) -> None:
    assert result.exit_code == 0, (repr(result.exception), result.output)


def _write_layer(gdf: gpd.GeoDataFrame, path: Path, layer: str) -> Path:
    with warnings.catch_warnings():  # pyogrio warns when a layer has no CRS (on purpose here)
        warnings.simplefilter("ignore", UserWarning)
        gdf.to_file(path, layer=layer, engine="pyogrio")
    return path


def _read_band(path: Path) -> tuple[np.ndarray, int | None]:
    with rasterio.open(path) as src:
        return src.read(1), src.crs.to_epsg()


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Study:
    root = tmp_path_factory.mktemp("bad_input")
    data = write_demo(root / "data", seed=0).root
    st = Study(data=data, run=root / "base_run")
    cfg = st.config(root / "base.toml")
    _assert_ok(_invoke("evidence", st.run, "--config", cfg))
    _assert_ok(_invoke("samples", st.run))
    return st


def _no_geochem(d: dict[str, Any]) -> None:
    d.pop("geochem")


def _faults_only(d: dict[str, Any]) -> None:
    d.pop("geochem")
    d["geology"] = d["geology"][1:]


# --------------------------------------------------------------------------- 1-2 soil CSV


def test_soil_csv_missing_element_column_names_file_and_column(study: Study,
                                                               tmp_path: Path) -> None:
    csv = tmp_path / "soil_no_as.csv"
    study.soil().drop(columns="As").to_csv(csv, index=False)

    def edit(d: dict[str, Any]) -> None:
        d["geochem"]["path"] = str(csv)

    run = tmp_path / "run"
    result = _invoke("run", study.config(tmp_path / "c.toml", edit), "--out", run)
    _assert_fails(result, tmp_path, "[geochem]", str(csv), "lacks column(s) ['As']",
                  "fix the names in the config")
    assert not (run / "evidence").exists()


def _soil_with_bad_au(study: Study, path: Path) -> Path:
    df = study.soil()
    df["Au"] = df["Au"].astype(object)
    df.loc[0:4, "Au"] = "n.d."     # 5 non-numeric entries
    df.loc[5:7, "Au"] = np.nan     # 3 empty cells
    df.to_csv(path, index=False)
    return path


def test_non_numeric_and_nan_assays_are_dropped_with_a_counted_warning(
        study: Study, tmp_path: Path) -> None:
    csv = _soil_with_bad_au(study, tmp_path / "soil_bad_au.csv")

    def edit(d: dict[str, Any]) -> None:
        d["geochem"].update(path=str(csv), elements=["Au"])
        d["geology"] = []

    run = tmp_path / "run"
    result, text = _invoke_warned("evidence", run, "--config",
                                  study.config(tmp_path / "c.toml", edit))
    _assert_ok(result)
    assert _squash(f"column 'Au' ([geochem] elements): dropped 8 of {N_SOIL} samples with "
                   "missing or non-finite assays") in _squash(text)
    rec = json.loads((run / "evidence" / "stack.json").read_text())["layers"][0]
    assert (rec["name"], rec["n_used"], rec["n_dropped"]) == ("Au", N_SOIL - 8, 8)


def test_non_numeric_assays_are_counted_as_such(study: Study, tmp_path: Path) -> None:
    csv = _soil_with_bad_au(study, tmp_path / "soil_bad_au.csv")

    def edit(d: dict[str, Any]) -> None:
        d["geochem"].update(path=str(csv), elements=["Au"])
        d["geology"] = []

    config = load_config(study.config(tmp_path / "c.toml", edit))
    with pytest.warns(DroppedDataWarning, match=r"dropped 8 of 713 samples .*\(5 non-numeric\)"):
        run_evidence(config, tmp_path / "run", progress=False)


def test_all_nan_element_names_the_column(study: Study, tmp_path: Path) -> None:
    csv = tmp_path / "soil_as_nan.csv"
    df = study.soil()
    df["As"] = np.nan
    df.to_csv(csv, index=False)

    def edit(d: dict[str, Any]) -> None:
        d["geochem"]["path"] = str(csv)
        d["geology"] = []

    run = tmp_path / "run"
    result = _invoke("run", study.config(tmp_path / "c.toml", edit), "--out", run)
    _assert_fails(result, tmp_path, f"{csv} column 'As' ([geochem] elements)",
                  f"none of the {N_SOIL} assays is a finite number")
    assert not (run / "evidence" / "layers" / "Au.tif").exists()
    assert not (run / "evidence" / "stack.json").exists()


# --------------------------------------------------------------------------- 3-5 CRS, layers


def test_layer_without_crs_needs_crs_in_config(study: Study, tmp_path: Path) -> None:
    faults = study.layer("geology.gpkg", "faults")
    no_crs = gpd.GeoDataFrame(faults.drop(columns="geometry"), geometry=list(faults.geometry))
    assert no_crs.crs is None
    gpkg = _write_layer(no_crs, tmp_path / "faults_nocrs.gpkg", "faults")

    def edit(d: dict[str, Any]) -> None:
        _faults_only(d)
        d["geology"][0]["path"] = str(gpkg)

    run = tmp_path / "run"
    result = _invoke("run", study.config(tmp_path / "c.toml", edit), "--out", run)
    _assert_fails(result, tmp_path, "[[geology]] #1 'faults'", str(gpkg), "has no CRS",
                  'set `crs = "EPSG:..."`')
    assert not (run / "evidence").exists()

    def with_crs(d: dict[str, Any]) -> None:
        edit(d)
        d["geology"][0]["crs"] = f"EPSG:{GRID_EPSG}"

    run2 = tmp_path / "run2"
    _assert_ok(_invoke("evidence", run2, "--config", study.config(tmp_path / "c2.toml",
                                                                   with_crs)))
    got, epsg = _read_band(run2 / "evidence" / "layers" / "faults.tif")
    want, _ = _read_band(study.run / "evidence" / "layers" / "faults.tif")
    assert epsg == GRID_EPSG
    np.testing.assert_array_equal(got, want)


def test_inputs_in_another_crs_are_reprojected_to_the_grid(study: Study,
                                                           tmp_path: Path) -> None:
    wgs = "EPSG:4326"
    faults = _write_layer(study.layer("geology.gpkg", "faults").to_crs(wgs),
                          tmp_path / "faults_wgs84.gpkg", "faults")
    ore = _write_layer(study.layer("orebodies.gpkg", "orebodies").to_crs(wgs),
                       tmp_path / "orebodies_wgs84.gpkg", "orebodies")
    drilling = tmp_path / "drilling_wgs84.gpkg"
    for layer in ("drillholes", "trenches"):
        _write_layer(study.layer("drilling.gpkg", layer).to_crs(wgs), drilling, layer)

    def edit(d: dict[str, Any]) -> None:
        d["geology"][1]["path"] = str(faults)
        d["labels"]["orebodies"]["path"] = str(ore)
        for b in d["labels"]["barren"]:
            b["path"] = str(drilling)

    run = tmp_path / "run"
    result = _invoke("evidence", run, "--config", study.config(tmp_path / "c.toml", edit))
    _assert_ok(result)
    assert _squash(f"reprojecting from EPSG:4326 to the grid CRS EPSG:{GRID_EPSG}") in \
        _squash(result.output)
    for name in ("Au", "As", "shear_zones", "faults"):
        got, epsg = _read_band(run / "evidence" / "layers" / f"{name}.tif")
        want, _ = _read_band(study.run / "evidence" / "layers" / f"{name}.tif")
        assert epsg == GRID_EPSG and got.shape == GRID_SHAPE
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-3)  # round trip through WGS 84
    _assert_ok(_invoke("samples", run))
    cells = gpd.read_file(run / "samples" / "cells.gpkg")
    base = gpd.read_file(study.run / "samples" / "cells.gpkg")
    assert cells.crs.to_epsg() == GRID_EPSG
    np.testing.assert_array_equal(cells["label"].to_numpy(), base["label"].to_numpy())
    assert (cells["label"] == 1).sum() > 0 and (cells["label"] == 0).sum() > 0


def test_layer_with_wrong_declared_crs_is_a_clear_error(study: Study, tmp_path: Path) -> None:
    faults = study.layer("geology.gpkg", "faults").set_crs("EPSG:4326", allow_override=True)
    gpkg = _write_layer(faults, tmp_path / "faults_mislabelled.gpkg", "faults")

    def edit(d: dict[str, Any]) -> None:
        _faults_only(d)
        d["geology"][0]["path"] = str(gpkg)

    result = _invoke("run", study.config(tmp_path / "c.toml", edit), "--out", tmp_path / "run")
    _assert_fails(result, tmp_path, str(gpkg), "EPSG:4326", "crs")


def test_soil_csv_with_wrong_crs_is_a_clear_error(study: Study, tmp_path: Path) -> None:
    def edit(d: dict[str, Any]) -> None:
        d["geochem"]["crs"] = "EPSG:4326"
        d["geology"] = []

    result = _invoke("run", study.config(tmp_path / "c.toml", edit), "--out", tmp_path / "run")
    _assert_fails(result, tmp_path, "soil_samples.csv", "EPSG:4326", "crs")


def test_wrong_layer_name_lists_the_available_layers(study: Study, tmp_path: Path) -> None:
    def edit(d: dict[str, Any]) -> None:
        d["geology"][1]["layer"] = "fault"

    run = tmp_path / "run"
    result = _invoke("run", study.config(tmp_path / "c.toml", edit), "--out", run)
    _assert_fails(result, tmp_path, "[[geology]] #2 'faults'", str(study.data / "geology.gpkg"),
                  "has no layer 'fault'", "'shear_zones', 'faults', 'alteration_zones'",
                  "Fix `layer` in the config")
    assert not (run / "evidence").exists()


# --------------------------------------------------------------------------- 6 labels


def test_empty_orebody_layer_names_the_source(study: Study, tmp_path: Path) -> None:
    gpkg = _write_layer(study.layer("orebodies.gpkg", "orebodies").iloc[:0],
                        tmp_path / "orebodies_empty.gpkg", "orebodies")

    def edit(d: dict[str, Any]) -> None:
        d["labels"]["orebodies"]["path"] = str(gpkg)

    run = study.run_with_evidence(tmp_path)
    result = _invoke("samples", run, "--config", study.config(tmp_path / "c.toml", edit))
    _assert_fails(result, tmp_path, "[labels.orebodies]", f"{gpkg}:orebodies", "has no features")
    assert not (run / "samples" / "manifest.json").exists()


def _far_orebodies(study: Study, tmp_path: Path) -> tuple[Path, Path]:
    ore = study.layer("orebodies.gpkg", "orebodies")
    gpkg = _write_layer(ore.set_geometry(ore.geometry.translate(10_000.0, 0.0)),
                        tmp_path / "orebodies_far.gpkg", "orebodies")

    def edit(d: dict[str, Any]) -> None:
        d["labels"]["orebodies"]["path"] = str(gpkg)

    return gpkg, study.config(tmp_path / "c.toml", edit)


def test_orebodies_outside_the_grid_give_no_positive_cells(study: Study,
                                                            tmp_path: Path) -> None:
    gpkg, cfg = _far_orebodies(study, tmp_path)
    run = study.run_with_evidence(tmp_path)
    result, text = _invoke_warned("samples", run, "--config", cfg)
    _assert_fails(result, tmp_path, f"no cell intersects any orebody in {gpkg}",
                  "[labels.orebodies]", "its 4 features lie outside the 640 cells",
                  "Check the CRS and extent")
    assert _squash("4 of 4 features lie outside every cell") in _squash(text)
    assert not (run / "samples" / "manifest.json").exists()


def test_error_messages_show_plain_numbers(study: Study, tmp_path: Path) -> None:
    _, cfg = _far_orebodies(study, tmp_path)
    result = _invoke("samples", study.run_with_evidence(tmp_path), "--config", cfg)
    message = _assert_fails(result, tmp_path, "no cell intersects any orebody")
    assert "np.float64" not in message


def test_barren_filter_leaving_nothing_gives_no_negative_cells(study: Study,
                                                               tmp_path: Path) -> None:
    def edit(d: dict[str, Any]) -> None:
        for b in d["labels"]["barren"]:
            b["where"] = {"result": "barren-typo"}

    run = study.run_with_evidence(tmp_path)
    result = _invoke("samples", run, "--config", study.config(tmp_path / "c.toml", edit))
    _assert_fails(result, tmp_path, "no negative cells", "[[labels.barren]]",
                  "use strategy 'distance'")
    assert not (run / "samples" / "manifest.json").exists()


# --------------------------------------------------------------------------- 7 sizes


def test_crop_larger_than_the_grid_is_a_clear_error(study: Study, tmp_path: Path) -> None:
    def edit(d: dict[str, Any]) -> None:
        d["samples"]["crop_size"] = 400

    run = study.run_with_evidence(tmp_path)
    result = _invoke("samples", run, "--config", study.config(tmp_path / "c.toml", edit))
    _assert_fails(result, tmp_path, "[samples] crop_size = 400 pixels is larger than the grid "
                  "(368 x 800 pixels)", "<= 368")
    assert not (run / "samples" / "manifest.json").exists()
    info = run / "run.json"
    assert not info.exists() or "samples" not in json.loads(info.read_text())["stages"]


def _crop_400(d: dict[str, Any]) -> None:
    d["samples"]["crop_size"] = 400


def _cell_cols_30(d: dict[str, Any]) -> None:
    d["grid"]["cell_cols"] = 30  # 800 px / 30 = 26.7 px: not on pixel edges


@pytest.mark.parametrize("edit", [_crop_400, _cell_cols_30], ids=["crop_size", "cell_cols"])
def test_impossible_sizes_fail_before_any_work(study: Study, tmp_path: Path,
                                               edit: Edit) -> None:
    def cheap(d: dict[str, Any]) -> None:
        _faults_only(d)
        edit(d)

    cfg = study.config(tmp_path / "c.toml", cheap)
    run = tmp_path / "run"
    result = _invoke("run", cfg, "--out", run)
    _assert_fails(result, tmp_path)
    assert not (run / "evidence" / "stack.json").exists(), "evidence was computed first"


@pytest.mark.parametrize(("edit", "key"), [(_crop_400, "crop_size"),
                                           (_cell_cols_30, "cell_cols")],
                         ids=["crop_size", "cell_cols"])
def test_size_errors_name_the_config_key(study: Study, tmp_path: Path, edit: Edit,
                                         key: str) -> None:
    run = study.run_with_evidence(tmp_path)
    result = _invoke("samples", run, "--config", study.config(tmp_path / "c.toml", edit))
    _assert_fails(result, tmp_path, key)


def test_lattice_step_zero_is_a_config_error_before_any_work(study: Study,
                                                             tmp_path: Path) -> None:
    def edit(d: dict[str, Any]) -> None:
        d["samples"]["positive"]["a"] = 0
        d["samples"]["negative"]["b"] = 0

    cfg = study.config(tmp_path / "c.toml", edit)
    run = tmp_path / "run"
    result = _invoke("run", cfg, "--out", run)
    _assert_fails(result, tmp_path, str(cfg), "2 problem(s)",
                  "[samples.positive.a] Input should be greater than or equal to 1 (got 0)",
                  "[samples.negative.b] Input should be greater than or equal to 1 (got 0)")
    assert not run.exists()
    _assert_fails(_invoke("config", "check", cfg), tmp_path, "[samples.positive.a]")
    with pytest.raises(ConfigError, match=r"\[samples\.negative\.b\]"):
        load_config(cfg)


# --------------------------------------------------------------------------- 8-9 geometry


def _far_faults(study: Study, tmp_path: Path) -> tuple[Path, Edit]:
    faults = study.layer("geology.gpkg", "faults")
    gpkg = _write_layer(faults.set_geometry(faults.geometry.translate(100_000.0, 0.0)),
                        tmp_path / "faults_far.gpkg", "faults")

    def edit(d: dict[str, Any]) -> None:
        d["geology"][1]["path"] = str(gpkg)

    return gpkg, edit


def _far_soil(study: Study, tmp_path: Path) -> tuple[Path, Edit]:
    csv = tmp_path / "soil_far.csv"
    df = study.soil()
    df["x"] += 50_000.0
    df.to_csv(csv, index=False)

    def edit(d: dict[str, Any]) -> None:
        d["geochem"]["path"] = str(csv)

    return csv, edit


@pytest.mark.parametrize(("make", "expect"), [
    (_far_faults, ["[[geology]] #2 'faults'", "no feature lies within the grid",
                   "grid bounds [392000.0, 3720000.0, 392800.0, 3720368.0]"]),
    (_far_soil, ["1 problem(s)", "[geochem] path:",  # one line, not one per element
                 "the area covered by the samples", "does not overlap the grid",
                 "(bounds [392000.0, 3720000.0, 392800.0, 3720368.0])"]),
], ids=["geology", "soil"])
def test_layer_off_the_grid_is_a_clear_error(study: Study, tmp_path: Path,
                                             make: Callable[..., tuple[Path, Edit]],
                                             expect: list[str]) -> None:
    path, edit = make(study, tmp_path)
    run = tmp_path / "run"
    result = _invoke("run", study.config(tmp_path / "c.toml", edit), "--out", run)
    _assert_fails(result, tmp_path, str(path), *expect,
                  "check the CRS of the file and of the grid")
    assert not (run / "evidence" / "stack.json").exists()


def test_radius_below_a_pixel_names_every_layer(study: Study, tmp_path: Path) -> None:
    def edit(d: dict[str, Any]) -> None:
        d["geology"][0]["radius"] = 0.25
        d["geology"][1]["radius"] = 0.5

    run = tmp_path / "run"
    result = _invoke("run", study.config(tmp_path / "c.toml", edit), "--out", run)
    gpkg = study.data / "geology.gpkg"
    _assert_fails(result, tmp_path,
                  f"{gpkg} ([[geology]] #1 'shear_zones'): radius 0.25 is smaller than a pixel "
                  "(1 map units)",
                  f"{gpkg} ([[geology]] #2 'faults'): radius 0.5 is smaller than a pixel",
                  "Give a radius of several pixels")
    assert not (run / "evidence" / "stack.json").exists()


# --------------------------------------------------------------------------- 10 duplicates


def test_duplicate_sample_locations_are_averaged_with_a_warning(study: Study,
                                                                tmp_path: Path) -> None:
    x, y = 392_100.5, 3_720_100.5  # a pixel centre: row 267, column 100 of the 1 m grid
    csv = tmp_path / "soil_dup.csv"
    df = study.soil()
    df.loc[[0, 1], ["x", "y"]] = [x, y]
    df.loc[[0, 1], "Au"] = [10.0, 1000.0]
    df.to_csv(csv, index=False)

    def edit(d: dict[str, Any]) -> None:
        d["geochem"].update(path=str(csv), elements=["Au"])
        d["geochem"].pop("clip_percentile")
        d["geology"] = []

    config = load_config(study.config(tmp_path / "c.toml", edit))
    run = tmp_path / "run"
    with pytest.warns(DroppedDataWarning, match=r"soil_dup\.csv column 'Au' .*: 1 samples lie "
                      r"at the same location as another and were merged \(values averaged\), "
                      r"1 locations affected"):
        run_evidence(config, run, progress=False)
    au, _ = _read_band(run / "evidence" / "layers" / "Au.tif")
    assert au[267, 100] == pytest.approx(2.0, abs=1e-6)  # mean of log10(10) and log10(1000)
    rec = json.loads((run / "evidence" / "stack.json").read_text())["layers"][0]
    assert (rec["n_duplicates"], rec["n_used"], rec["n_dropped"]) == (1, N_SOIL - 1, 0)


# --------------------------------------------------------------------------- 11 debris


def test_failure_mid_stage_leaves_no_half_written_output(study: Study, tmp_path: Path) -> None:
    tiny = gpd.GeoDataFrame({"name": ["tiny"]}, crs=f"EPSG:{GRID_EPSG}", geometry=[
        shapely.box(392_100.1, 3_720_100.1, 392_100.2, 3_720_100.2)])  # holds no pixel centre
    extent = _write_layer(tiny, tmp_path / "tiny_extent.gpkg", "tiny")

    def bad(d: dict[str, Any]) -> None:
        _no_geochem(d)
        d["geology"][1]["extent"] = {"path": str(extent), "layer": "tiny"}

    run = tmp_path / "run"
    result = _invoke("run", study.config(tmp_path / "bad.toml", bad), "--out", run)
    _assert_fails(result, tmp_path, "[[geology]] #2 'faults'",
                  "layer 'faults' covers no pixel centre of the grid")
    layers = run / "evidence" / "layers"
    assert sorted(p.name for p in layers.iterdir()) == ["shear_zones.tif"]
    manifest = json.loads((run / "evidence" / "stack.json").read_text())
    assert manifest["complete"] is False and manifest["names"] == ["shear_zones"]
    assert "evidence" not in json.loads((run / "run.json").read_text())["stages"]
    _assert_fails(_invoke("samples", run), tmp_path,
                  "stage 'samples' needs the outputs of stage 'evidence'; stage 'evidence' did "
                  "not finish",
                  f"`oremap evidence {run}` first")
    # fixing the input resumes: the finished layer is kept, the stack completes
    result = _invoke("evidence", run, "--config", study.config(tmp_path / "ok.toml", _no_geochem))
    _assert_ok(result)
    assert _squash("evidence layer shear_zones: unchanged, kept") in _squash(result.output)
    assert json.loads((run / "evidence" / "stack.json").read_text())["complete"] is True
    assert _tmp_leftovers(tmp_path) == []


# --------------------------------------------------------------------------- 12 stage order


@pytest.mark.parametrize(("stage", "missing"), [
    ("train", "samples"), ("evaluate", "samples"), ("predict", "samples"),
    ("ensemble", "evaluate"), ("maps", "ensemble"), ("stability", "samples"),
])
def test_stage_without_its_prerequisite_names_the_missing_stage(
        study: Study, tmp_path: Path, stage: str, missing: str) -> None:
    run = study.run_with_evidence(tmp_path)
    shutil.copy(study.run / "config.toml", run / "config.toml")
    result = _invoke(stage, run)
    # names the stage it needs and the first one missing in the chain, with its command
    _assert_fails(result, tmp_path, f"stage {stage!r} needs the outputs of stage", repr(missing),
                  "stage 'samples' has not been run", f"`oremap samples {run}` first")
    assert not (run / stage).exists()


def test_samples_without_evidence_names_the_evidence_stage(study: Study,
                                                           tmp_path: Path) -> None:
    run = tmp_path / "run"
    result = _invoke("samples", run, "--config", study.config(tmp_path / "c.toml"))
    _assert_fails(result, tmp_path, "stage 'samples' needs the outputs of stage 'evidence'",
                  str(run / "evidence" / "stage.json"), "oremap evidence")
    assert not (run / "samples").exists()


def test_missing_stage_message_gives_a_runnable_command(study: Study, tmp_path: Path) -> None:
    run = study.run_with_evidence(tmp_path)
    shutil.copy(study.run / "config.toml", run / "config.toml")
    _assert_fails(_invoke("train", run), tmp_path, f"oremap samples {run}")


def test_report_of_a_partial_run_marks_missing_stages(study: Study, tmp_path: Path) -> None:
    run = study.run_with_evidence(tmp_path)
    shutil.copy(study.run / "config.toml", run / "config.toml")
    _assert_ok(_invoke("report", run))
    html = (run / "report" / "report.html").read_text()
    for stage in ("samples", "train", "evaluate", "ensemble", "maps"):
        assert f"Stage “{stage}” has not been run" in html


def test_pipeline_functions_raise_oremap_errors(study: Study, tmp_path: Path) -> None:
    """The Python API raises the same errors the CLI prints (no exit, no traceback noise)."""
    def edit(d: dict[str, Any]) -> None:
        d["geology"][1]["layer"] = "fault"

    config = load_config(study.config(tmp_path / "c.toml", edit))
    with pytest.raises(InputDataError, match=r"has no layer 'fault'; it has \['shear_zones'"):
        run_evidence(config, tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "evidence").exists()

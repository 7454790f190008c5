"""Configuration hardening and ``oremap config check``: bad values and inputs fail early, clearly.

Config cases start from the example configuration (no data needed: loading does not open
inputs); input checks start from the embedded demo data written once per module. CLI cases run
the installed ``oremap`` console script and expect exit code 2 with no traceback.
"""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pytest
import tomli_w

from oremap.config import Config, config_from_dict, dump_toml, load_config, to_toml, tomllib
from oremap.demo import example_config_text, write_demo
from oremap.errors import ConfigError, InputDataError
from oremap.grid import Grid
from oremap.io import raster_profile, read_vector, write_raster

OREMAP = Path(sys.executable).parent / "oremap"


# --------------------------------------------------------------------------- helpers


def _example() -> dict[str, Any]:
    """The example configuration as a dict (relative paths; nothing is opened on load)."""
    return tomllib.loads(example_config_text("data"))


def _cli(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(OREMAP), *(str(a) for a in args)], capture_output=True,
                          text=True, timeout=300)


def _assert_cli_fails(result: subprocess.CompletedProcess[str], *fragments: str) -> str:
    """Exit code 2, no traceback, every fragment in stderr (whitespace-insensitive)."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    flat = "".join(result.stderr.split())
    for fragment in fragments:
        assert "".join(fragment.split()) in flat, f"{fragment!r} not in:\n{result.stderr}"
    return result.stderr


def _write_layer(gdf: gpd.GeoDataFrame, path: Path, layer: str) -> Path:
    with warnings.catch_warnings():  # pyogrio warns when a layer has no CRS (on purpose here)
        warnings.simplefilter("ignore", UserWarning)
        gdf.to_file(path, layer=layer, engine="pyogrio")
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo study area's input files."""
    return write_demo(tmp_path_factory.mktemp("check") / "data", seed=0).root


def _base(data: Path) -> dict[str, Any]:
    """The quick demo configuration on a 1 m grid (368 x 800 px), all inputs present."""
    d = tomllib.loads(example_config_text(str(data), quick=True))
    d["grid"]["pixel_size"] = 1.0
    d["samples"]["crop_size"] = 16
    return d


def _config(d: dict[str, Any]) -> Config:
    return config_from_dict(d, source="test.toml")


# --------------------------------------------------------------------------- A1 finite numbers


@pytest.mark.parametrize(("table", "key", "value", "loc"), [
    ("grid", "bounds", [392000.0, 3720000.0, float("inf"), 3720368.0], "[grid.bounds.2]"),
    ("grid", "bounds", [float("-inf"), 3720000.0, 392800.0, 3720368.0], "[grid.bounds.0]"),
    ("grid", "pixel_size", float("nan"), "[grid.pixel_size]"),
    ("grid", "pixel_size", [0.5, float("nan")], "[grid.pixel_size.1]"),
    ("geochem", "power", float("inf"), "[geochem.power]"),
    ("train", "lr", float("nan"), "[train.lr]"),
])
def test_non_finite_numbers_are_config_errors_naming_the_key(table: str, key: str, value: Any,
                                                             loc: str) -> None:
    d = _example()
    d[table][key] = value
    with pytest.raises(ConfigError, match="1 problem") as info:
        _config(d)
    assert f"{loc} must be a finite number (inf and nan are not allowed)" in str(info.value)


def test_inf_bounds_fail_config_check_without_traceback(tmp_path: Path) -> None:
    text = example_config_text("data").replace(
        "bounds = [392000.0, 3720000.0, 392800.0, 3720368.0]",
        "bounds = [392000.0, 3720000.0, inf, 3720368.0]")
    path = tmp_path / "c.toml"
    path.write_text(text)
    _assert_cli_fails(_cli("config", "check", path), str(path), "[grid.bounds.2]",
                      "finite number")


# --------------------------------------------------------------------------- A2-A4 values


def test_lr_min_above_lr_names_both_keys() -> None:
    d = _example()
    d["train"].update(lr=1e-4, lr_min=1e-3)
    with pytest.raises(ConfigError, match=r"\[train\].*lr_min = 0.001 is larger than lr = "
                                          r"0.0001.*\[train\] lr_min <= \[train\] lr"):
        _config(d)
    d["train"].update(lr_min=1e-4)  # equal is fine (constant rate)
    assert _config(d).train.lr_min == 1e-4


def test_no_models_and_no_baselines_is_a_config_error() -> None:
    d = _example()
    d["train"].update(models=[], baselines=[])
    with pytest.raises(ConfigError, match=r"nothing to train: \[train\] models and \[train\] "
                                          r"baselines are both empty.*lenet.*logistic"):
        _config(d)
    d["train"].update(baselines=["woe"])
    assert _config(d).members() == ["woe"]


@pytest.mark.parametrize("char", ["\n", "\t", "\x00", "\x7f"])
@pytest.mark.parametrize("where", ["name", "geology", "elements"])
def test_control_characters_in_names_are_config_errors(char: str, where: str) -> None:
    d = _example()
    if where == "name":
        d["name"], loc = f"my{char}run", "[name]"
    elif where == "geology":
        d["geology"][1]["name"], loc = f"fau{char}lts", "[geology.1.name]"
    else:
        d["geochem"]["elements"][2], loc = f"A{char}s", "[geochem.elements.2]"
    with pytest.raises(ConfigError, match="control characters") as info:
        _config(d)
    assert loc in str(info.value) and repr(char) in str(info.value)


def test_newline_in_name_fails_load_and_config_check(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(example_config_text("data").replace('name = "oremap demo"',
                                                        'name = "oremap\\ndemo"'))
    with pytest.raises(ConfigError, match=r"\[name\] Value error, must not contain control"):
        load_config(path)
    _assert_cli_fails(_cli("config", "check", path), "[name]", "control characters")


# --------------------------------------------------------------------------- A5 TOML writer


def test_stored_config_round_trips_awkward_strings(tmp_path: Path) -> None:
    d = _example()
    d["name"] = 'Ba "wan" gou \\ C:\\runs\\n1 — 巴旺沟 ü ∑ \'q\' #not a comment'
    d["labels"]["barren"][0]["where"] = {"result": "barren\nconfirmed", "hole": "a\"b\\c"}
    d["geochem"]["x"] = "east\u2028ing"
    cfg = config_from_dict(d, base_dir=tmp_path)
    text = to_toml(cfg)
    again = config_from_dict(tomllib.loads(text))
    assert again == cfg
    assert again.name == d["name"]
    assert text == tomli_w.dumps(cfg.model_dump(mode="json", exclude_none=True))
    plain = {"a": "x\ny\x01", "t": {"b": [1.5, 2]}, "arr": [{"k": "v"}, {"k": "w"}]}
    assert tomllib.loads(dump_toml(plain)) == plain


def test_tomli_w_is_a_declared_dependency() -> None:
    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert "tomli-w>=1.0" in pyproject["project"]["dependencies"]


# --------------------------------------------------------------------------- A6 CRS strings


@pytest.mark.parametrize(("edit", "loc"), [
    (lambda d: d["grid"].update(crs="EPSG:999999"), "[grid.crs]"),
    (lambda d: d["geochem"].update(crs="UTM 49N"), "[geochem.crs]"),
    (lambda d: d["labels"]["orebodies"].update(crs="not a crs"), "[labels.orebodies.crs]"),
    (lambda d: d["labels"]["barren"][1].update(crs="EPSG:abc"), "[labels.barren.1.crs]"),
    (lambda d: d["geology"][0].update(crs="+proj=nowhere"), "[geology.0.crs]"),
    (lambda d: d["geology"][2]["extent"].update(crs="EPSG:"), "[geology.2.extent.crs]"),
])
def test_unparseable_crs_is_a_config_error_naming_the_key(edit: Any, loc: str) -> None:
    d = _example()
    edit(d)
    with pytest.raises(ConfigError, match="cannot understand CRS") as info:
        _config(d)
    assert loc in str(info.value) and "EPSG:32649" in str(info.value)
    ok = _example()  # other forms pyproj understands stay valid
    ok["geochem"]["crs"] = "+proj=utm +zone=49 +datum=WGS84 +units=m +no_defs"
    ok["labels"]["orebodies"]["crs"] = "EPSG:4326"
    assert _config(ok).labels.orebodies.crs == "EPSG:4326"


# --------------------------------------------------------------------------- A7 grid size


def test_huge_grid_is_a_config_error_with_sizes_and_the_key_to_raise() -> None:
    d = _example()
    d["grid"]["pixel_size"] = 0.0005
    with pytest.raises(ConfigError) as info:
        _config(d)
    msg = str(info.value)
    for fragment in ("[grid]", "736,000 rows x 1,600,000 cols = 1,177,600,000,000 pixels per "
                     "layer", "4,386.9 GiB per float32 layer", "[grid] max_pixels = 500,000,000",
                     "pixel_size = 0.0005 may be a typo"):
        assert fragment in msg, msg
    d["grid"]["max_pixels"] = 2_000_000_000_000
    assert _config(d).grid.pixels() == (736_000, 1_600_000)


def test_max_pixels_is_configurable_and_checked() -> None:
    d = _example()  # 736 x 1600 = 1,177,600 pixels
    d["grid"]["max_pixels"] = 1_177_600
    assert _config(d).grid.max_pixels == 1_177_600
    d["grid"]["max_pixels"] = 1_177_599
    with pytest.raises(ConfigError, match="more than \\[grid\\] max_pixels = 1,177,599"):
        _config(d)
    d["grid"]["max_pixels"] = 0
    with pytest.raises(ConfigError, match=r"\[grid.max_pixels\]"):
        _config(d)


def test_overflowing_grid_is_a_config_error() -> None:
    d = _example()
    d["grid"].update(bounds=[-1e308, 0.0, 1e308, 100.0], pixel_size=1e-300)
    with pytest.raises(ConfigError, match="not a finite number of pixels"):
        _config(d)


def test_pixel_size_typo_fails_config_check_fast(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(example_config_text("data").replace("pixel_size = 0.5 ",
                                                        "pixel_size = 0.0005 "))
    _assert_cli_fails(_cli("config", "check", path), "pixels per layer", "[grid] max_pixels")


# --------------------------------------------------------------------------- A8 config file


def test_config_path_that_is_a_folder(tmp_path: Path) -> None:
    folder = tmp_path / "conf.toml"
    folder.mkdir()
    with pytest.raises(ConfigError, match="is a folder") as info:
        load_config(folder)
    assert str(folder) in str(info.value)
    _assert_cli_fails(_cli("config", "check", folder), str(folder), "is a folder")


def test_config_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_bytes(b'name = "caf\xe9"\n\x89PNG\r\n\x1a\n\x00\xff')
    with pytest.raises(ConfigError, match="is not UTF-8 text") as info:
        load_config(path)
    assert str(path) in str(info.value)
    _assert_cli_fails(_cli("config", "check", path), str(path), "not UTF-8 text")


def test_config_file_with_utf8_bom_loads(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_bytes(b"\xef\xbb\xbf" + example_config_text("data").encode())
    assert load_config(path).name == "oremap demo"


def test_unreadable_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "c.toml"
    path.write_text(example_config_text("data"))

    def denied(self: Path) -> bytes:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", denied)
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: denied(self))
    with pytest.raises(ConfigError, match="permission denied") as info:
        load_config(path)
    assert str(path) in str(info.value) and "chmod" in str(info.value)


# --------------------------------------------------------------------------- B check_inputs


def test_check_inputs_of_valid_demo_config_is_empty(data: Path) -> None:
    from oremap.check import check_inputs

    assert check_inputs(_config(_base(data))) == []


def test_check_inputs_lists_every_problem_with_key_file_and_fix(data: Path,
                                                                tmp_path: Path) -> None:
    from oremap.check import check_inputs

    text = tmp_path / "notes.txt"
    text.write_text("not a vector file\n")
    folder = tmp_path / "folder.csv"
    folder.mkdir()
    soil = tmp_path / "soil.csv"
    soil.write_text((data / "soil_samples.csv").read_text().replace(",As,", ",Arsenic,", 1))
    empty = _write_layer(gpd.read_file(data / "orebodies.gpkg", layer="orebodies").iloc[:0],
                         tmp_path / "none.gpkg", "orebodies")
    drill = gpd.read_file(data / "drilling.gpkg", layer="trenches")
    no_crs = _write_layer(gpd.GeoDataFrame(drill.drop(columns="geometry"),
                                           geometry=list(drill.geometry)),
                          tmp_path / "trenches_nocrs.gpkg", "trenches")
    d = _base(data)
    d["geochem"]["path"] = str(soil)
    d["geochem"]["extent"] = {"path": str(tmp_path / "missing.gpkg")}
    d["geology"][0]["path"] = str(text)
    d["geology"][1]["layer"] = "fault"
    d["geology"][2]["extent"]["path"] = str(folder)
    d["labels"]["orebodies"] = {"path": str(empty), "layer": "orebodies"}
    d["labels"]["barren"][0]["where"] = {"outcome": "barren"}
    d["labels"]["barren"][1]["path"] = str(no_crs)
    d["truth"] = str(text)
    problems = check_inputs(_config(d))

    expected = [
        ("[geochem]:", str(soil), "lacks column(s) ['As']",
         "fix the names in the config (`x`, `y`, `elements`)"),
        ("[geochem] extent:", str(tmp_path / "missing.gpkg"), "does not exist", "fix `path`"),
        ("[[geology]] #1 'shear_zones':", str(text), "not a vector file GDAL can read",
         "give the path of a GeoPackage"),
        ("[[geology]] #2 'faults':", "has no layer 'fault'", "'faults'", "Fix `layer`"),
        ("[[geology]] #3 'alteration_zones' extent:", str(folder), "folder that GDAL cannot "
         "open", "give the path of the vector file"),
        ("[labels] orebodies", str(empty), "has no features", "at least one"),
        ("[[labels.barren]] #1", "drilling.gpkg:drillholes", "['outcome']", "'result'",
         "Fix `where`"),
        ("[[labels.barren]] #2", str(no_crs), "has no CRS", "set `crs"),
        ("truth:", str(text), "not a raster", "remove `truth`"),
    ]
    assert len(problems) == len(expected), "\n".join(problems)
    for problem, fragments in zip(problems, expected):
        for fragment in fragments:
            assert fragment in problem, f"{fragment!r} not in {problem!r}"

    d["labels"]["barren"][1]["crs"] = "EPSG:32649"  # a CRS in the config is enough
    assert not any("#2" in p and "CRS" in p for p in check_inputs(_config(d)))


@pytest.mark.parametrize("key", ["geochem", "truth"])
def test_check_inputs_rejects_folders_as_files(data: Path, tmp_path: Path, key: str) -> None:
    from oremap.check import check_inputs

    folder = tmp_path / "inputs.dir"
    folder.mkdir()
    d = _base(data)
    if key == "geochem":
        d["geochem"]["path"] = str(folder)
    else:
        d["truth"] = str(folder)
    (problem,) = check_inputs(_config(d))
    assert str(folder) in problem and "is a folder, not a file" in problem
    assert problem.startswith("[geochem] path:" if key == "geochem" else "truth:")


def test_check_inputs_multi_layer_file_needs_layer(data: Path) -> None:
    from oremap.check import check_inputs

    d = _base(data)
    del d["labels"]["barren"][0]["layer"]
    (problem,) = check_inputs(_config(d))
    assert problem.startswith("[[labels.barren]] #1") and "holds 2 layers" in problem
    assert "`layer`" in problem


@pytest.mark.parametrize("device", ["cuda", "cuda:1", "mps"])
def test_check_inputs_unavailable_device(data: Path, device: str,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from oremap.check import check_inputs

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    d = _base(data)
    d["train"]["device"] = device
    (problem,) = check_inputs(_config(d))
    assert problem.startswith("[train] device:") and repr(device) in problem
    assert "use 'auto' or 'cpu'" in problem
    d["train"]["device"] = "cpu"
    assert check_inputs(_config(d)) == []


def test_preflight_sizes(data: Path) -> None:
    from oremap.check import format_preflight, preflight

    d = _base(data)
    rasters = sum(1 + len(r.get("derive", [])) for r in d["raster"])  # magnetics (+ gradient), K
    n_layers = len(d["geology"]) + len(d["geochem"]["elements"]) + rasters
    assert rasters == 3
    info = preflight(_config(d))
    assert info == dict(rows=368, cols=800, pixels=294_400, layers=n_layers,
                        disk_bytes=294_400 * n_layers * 4,
                        memory_bytes=294_400 * n_layers * 4, stack_in_memory=True)
    line = format_preflight(info)
    assert "\n" not in line
    assert f"368 rows x 800 cols = 294,400 pixels per layer; {n_layers} evidence layers" in line
    assert "float32" in line

    d["grid"].update(pixel_size=0.01, max_pixels=3_000_000_000)  # 36,800 x 80,000 px
    big = preflight(_config(d))
    assert big["pixels"] == 2_944_000_000 and big["disk_bytes"] == 2_944_000_000 * n_layers * 4
    assert not big["stack_in_memory"] and big["memory_bytes"] < big["disk_bytes"]
    assert "GiB" in format_preflight(big)


def test_config_check_cli_lists_every_input_problem(data: Path, tmp_path: Path) -> None:
    d = _base(data)
    d["geochem"]["path"] = str(tmp_path / "soil_missing.csv")
    d["labels"]["barren"][1]["layer"] = "trench"
    path = tmp_path / "c.toml"
    path.write_text(dump_toml(d))
    stderr = _assert_cli_fails(_cli("config", "check", path), "2 problem(s) with the inputs",
                               "[geochem] path:", "soil_missing.csv", "does not exist",
                               "[[labels.barren]] #2:", "has no layer 'trench'")
    assert "pixels per layer" not in stderr


def test_config_check_cli_prints_preflight_on_success(data: Path, tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(dump_toml(_base(data)))
    result = _cli("config", "check", path)
    assert result.returncode == 0, result.stderr
    assert "valid (10 models/baselines, 17 evidence layers)" in result.stdout
    assert "grid 368 rows x 800 cols = 294,400 pixels per layer; 17 evidence layers" in \
        result.stdout


# --------------------------------------------------------------------------- B2 grid units, overlap


def _small_grid(d: dict[str, Any], crs: str, bounds: list[float], pixel: float) -> Config:
    d["grid"].update(crs=crs, bounds=bounds, pixel_size=pixel, cell_cols=4, cell_rows=2)
    d["samples"]["crop_size"] = 8
    return _config(d)


def test_grid_problems_of_crs_units_against_bounds_and_pixel_size() -> None:
    from oremap.check import grid_problems

    assert grid_problems(_config(_example())) == []
    # degrees in a CRS in metres: a 0.2 m x 0.1 m grid near the origin of UTM 49N
    (line,) = grid_problems(_small_grid(_example(), "EPSG:32649",
                                        [113.0, 33.0, 113.2, 33.1], 0.005))
    assert line.startswith("[grid] bounds [113.0, 33.0, 113.2, 33.1] and pixel_size = 0.005 "
                           "look like degrees")
    assert "[grid] crs = 'EPSG:32649' is in metres" in line and "EPSG:4326" in line
    # the same numbers in a geographic CRS are fine
    assert grid_problems(_small_grid(_example(), "EPSG:4326",
                                     [113.0, 33.0, 113.2, 33.1], 0.005)) == []
    # metres in a geographic CRS: bounds beyond +-180 / +-90, or pixels over 1 degree
    (line,) = grid_problems(_config(_example() | {"grid": {**_example()["grid"],
                                                           "crs": "EPSG:4326"}}))
    assert "[grid] crs = 'EPSG:4326' is geographic (degrees), but [grid] bounds [392000.0, " \
           "3720000.0, 392800.0, 3720368.0] lie outside longitude -180..180" in line
    (line,) = grid_problems(_small_grid(_example(), "EPSG:4326", [100.0, 20.0, 140.0, 40.0],
                                        2.0))
    assert line.startswith("[grid] pixel_size = 2.0 is in degrees of the geographic [grid] crs "
                           "= 'EPSG:4326'")


def test_check_inputs_names_the_one_input_off_the_grid(data: Path, tmp_path: Path) -> None:
    from oremap.check import check_inputs

    ore = gpd.read_file(data / "orebodies.gpkg", layer="orebodies")
    far = tmp_path / "ore_far.gpkg"
    ore.set_geometry(ore.translate(xoff=50_000.0)).to_file(far, layer="orebodies")
    d = _base(data)
    d["labels"]["orebodies"]["path"] = str(far)
    (problem,) = check_inputs(_config(d))
    lo = round(float(ore.total_bounds[0]) + 50_000.0, 3)
    assert problem.startswith(f"[labels] orebodies: {far}:orebodies: no feature lies within "
                              f"the grid (feature bounds [{lo}, ")
    assert "grid bounds [392000.0, 3720000.0, 392800.0, 3720368.0]); check the CRS of the " \
           "file and of the grid, and [grid] bounds" in problem
    # the same orebodies in another CRS are reprojected first: they meet the grid
    wgs = tmp_path / "ore_wgs84.gpkg"
    ore.to_crs("EPSG:4326").to_file(wgs, layer="orebodies")
    d["labels"]["orebodies"]["path"] = str(wgs)
    assert check_inputs(_config(d)) == []


@pytest.mark.parametrize(("gap", "ok"), [(20.0, True), (50.0, False)])
def test_density_layer_may_lie_within_its_radius_of_the_grid(data: Path, tmp_path: Path,
                                                             gap: float, ok: bool) -> None:
    from shapely.geometry import LineString

    from oremap.check import check_inputs

    x = 392_800.0 + gap  # east of the grid; faults have radius 30
    path = _write_layer(gpd.GeoDataFrame(geometry=[LineString([(x, 3720100.0),
                                                               (x + 10, 3720200.0)])],
                                         crs="EPSG:32649"), tmp_path / "f.gpkg", "faults")
    d = _base(data)
    d["geology"][1].update(path=str(path), layer="faults")
    problems = check_inputs(_config(d))
    assert problems == [] if ok else len(problems) == 1 and problems[0].startswith(
        f"[[geology]] #2 'faults': {path}:faults: no feature lies within the grid")


def test_one_missing_file_or_crs_is_one_line_for_every_key_reading_it(data: Path,
                                                                       tmp_path: Path) -> None:
    from oremap.check import check_inputs

    gone = tmp_path / "geology_moved.gpkg"
    d = _base(data)
    for layer in d["geology"]:
        layer["path"] = layer["extent"]["path"] = str(gone)
    (problem,) = check_inputs(_config(d))
    assert problem == (f"[[geology]] #1 'shear_zones', [[geology]] #1 'shear_zones' extent, "
                       f"[[geology]] #2 'faults' and 5 more: {gone} does not exist; fix `path` "
                       "in the config or create the file")

    no_crs = tmp_path / "geology_nocrs.gpkg"
    for name in ("shear_zones", "faults"):
        gdf = gpd.read_file(data / "geology.gpkg", layer=name)
        _write_layer(gpd.GeoDataFrame(gdf.drop(columns="geometry"), geometry=list(gdf.geometry)),
                     no_crs, name)
    d = _base(data)
    d["geology"][0]["path"] = d["geology"][1]["path"] = str(no_crs)
    (problem,) = check_inputs(_config(d))
    assert problem.startswith(f"[[geology]] #1 'shear_zones', [[geology]] #2 'faults': {no_crs} "
                              "has no CRS; set `crs")
    d["geology"][0]["crs"] = d["geology"][1]["crs"] = "EPSG:32649"
    assert check_inputs(_config(d)) == []


def test_grid_off_every_input_is_one_line_for_grid_bounds(data: Path, tmp_path: Path) -> None:
    from oremap.check import check_inputs

    d = _base(data)
    d["grid"]["bounds"] = [492000.0, 3720000.0, 492800.0, 3720368.0]  # 100 km east
    (problem,) = check_inputs(_config(d))  # not one per input, rasters included
    assert problem.startswith("[grid] bounds [492000.0, 3720000.0, 492800.0, 3720368.0] overlap "
                              "none of the 11 inputs (soil_samples.csv, "
                              "geology.gpkg:shear_zones, geology.gpkg:geology_extent and 8 more)")
    assert "in the grid's CRS (EPSG:32649); set [grid] bounds" in problem
    d["grid"]["crs"] = "EPSG:4326"  # a grid in the wrong units: that line only
    (problem,) = check_inputs(_config(d))
    assert problem.startswith("[grid] crs = 'EPSG:4326' is geographic (degrees)")


def test_config_check_and_run_stop_on_a_grid_off_the_data(data: Path, tmp_path: Path) -> None:
    d = _base(data)
    d["grid"]["bounds"] = [492000.0, 3720000.0, 492800.0, 3720368.0]
    path = tmp_path / "c.toml"
    path.write_text(dump_toml(d))
    stderr = _assert_cli_fails(_cli("config", "check", path), "1 problem(s)",
                               "overlap none of the 11 inputs")
    assert len(stderr) < 1_000  # was a 3,000-character line from the evidence stage
    out = tmp_path / "run"
    stderr = _assert_cli_fails(_cli("run", path, "--out", out), "1 problem(s)",
                               "overlap none of the 11 inputs")
    assert stderr.count("\n  - ") == 1 and "column 'Au'" not in stderr
    assert not out.exists()


def test_config_check_skip_inputs_still_checks_grid_units(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(example_config_text("data").replace('crs = "EPSG:32649"                  #',
                                                        'crs = "EPSG:4326"  #', 1))
    _assert_cli_fails(_cli("config", "check", "--skip-inputs", path), "[grid] crs = 'EPSG:4326' "
                      "is geographic")


# --------------------------------------------------------------------------- C io


def test_raster_profile_uses_bigtiff_for_large_grids(tmp_path: Path) -> None:
    big = Grid.from_bounds("EPSG:32649", (0.0, 0.0, 40_000.0, 40_000.0), 1.0)  # 6.0 GiB
    assert raster_profile(big)["bigtiff"] == "YES"
    mid = Grid.from_bounds("EPSG:32649", (0.0, 0.0, 20_000.0, 20_000.0), 1.0)  # 1.5 GiB
    assert raster_profile(mid)["bigtiff"] == "IF_SAFER"
    assert raster_profile(mid, count=2)["bigtiff"] == "YES"
    assert raster_profile(mid, dtype="uint8", count=5)["bigtiff"] == "IF_SAFER"
    small = Grid.from_bounds("EPSG:32649", (0.0, 0.0, 40.0, 20.0), 1.0)
    assert raster_profile(small)["bigtiff"] == "IF_SAFER"
    out = write_raster(tmp_path / "small.tif", np.ones(small.shape), small)  # GDAL accepts it
    assert out.stat().st_size > 0


@pytest.mark.parametrize("kind", ["folder", "text"])
def test_read_vector_of_a_non_vector_path_names_key_and_file(tmp_path: Path, kind: str) -> None:
    if kind == "folder":
        path = tmp_path / "faults.gpkg"
        path.mkdir()
        fragment = "is a folder that GDAL cannot open"
    else:
        path = tmp_path / "faults.txt"
        path.write_text("a text file, not a vector dataset\n")
        fragment = "is not a vector file GDAL can read"
    with pytest.raises(InputDataError, match=fragment) as info:
        read_vector(path, layer="faults", what="[[geology]] #2 'faults'")
    assert str(info.value).startswith("[[geology]] #2 'faults': ")
    assert str(path) in str(info.value)


def test_non_vector_geology_file_fails_the_evidence_stage_cleanly(data: Path,
                                                                  tmp_path: Path) -> None:
    bad = tmp_path / "geology.dat"
    bad.write_bytes(b"\x00\x01\x02 not a vector dataset")
    d = _base(data)
    d.pop("geochem")
    d["geology"] = d["geology"][:1]
    d["geology"][0]["path"] = str(bad)
    path = tmp_path / "c.toml"
    path.write_text(dump_toml(d))
    _assert_cli_fails(_cli("evidence", tmp_path / "run", "--config", path),
                      "[[geology]] #1 'shear_zones'", str(bad), "not a vector file")

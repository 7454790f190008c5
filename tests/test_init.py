"""``oremap init`` and the README's "Your own data" commands, run as written.

The template's placeholder files are made here as a small synthetic study area (no demo data):
assays at random points, two geology layers, orebodies and barren drillholes, all in the
template's CRS and bounds.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from shapely.geometry import LineString, Point, box
from typer.testing import CliRunner

from oremap.cli import app
from oremap.config import load_config, tomllib
from oremap.template import TEMPLATE_NAME, TEMPLATE_PATHS, template_text

runner = CliRunner()
README = Path(__file__).resolve().parents[1] / "README.md"
CRS = "EPSG:32649"
X0, Y0 = 500_000.0, 7_000_000.0  # the template's [grid] bounds start here, 20 km a side
BOUNDS_LINE = "bounds = [500000.0, 7000000.0, 520000.0, 7020000.0]"


def write_study_data(folder: Path) -> None:
    """The template's four placeholder files, inside its grid, in its CRS."""
    rng = np.random.default_rng(0)
    data = folder / "data"
    data.mkdir(parents=True, exist_ok=True)
    n = 150
    pd.DataFrame({"x": X0 + rng.uniform(0, 20_000, n), "y": Y0 + rng.uniform(0, 20_000, n),
                  "Au": rng.lognormal(1, 1, n), "As": rng.lognormal(2, 1, n),
                  "Cu": rng.lognormal(3, 1, n)}).to_csv(data / "assays.csv", index=False)
    faults = [LineString([(X0 + 2_000 + 4_000 * i, Y0), (X0 + 6_000 + 4_000 * i, Y0 + 20_000)])
              for i in range(3)]
    gpd.GeoDataFrame({"kind": ["fault"] * 3}, geometry=faults, crs=CRS).to_file(
        data / "geology.gpkg", layer="faults")
    intrusions = [Point(X0 + 5_000, Y0 + 5_000).buffer(1_500),
                  Point(X0 + 15_000, Y0 + 14_000).buffer(2_000)]
    gpd.GeoDataFrame({"kind": ["granite"] * 2}, geometry=intrusions, crs=CRS).to_file(
        data / "geology.gpkg", layer="intrusions")
    ore = [box(X0 + 4_100 + 2_000 * i, Y0 + 8_100, X0 + 4_900 + 2_000 * i, Y0 + 8_900)
           for i in range(3)]
    gpd.GeoDataFrame({"name": ["a", "b", "c"]}, geometry=ore, crs=CRS).to_file(
        data / "orebodies.gpkg", layer="orebodies")
    holes = [Point(X0 + 500 + 1_000 * i, Y0 + 16_500) for i in range(12)]
    gpd.GeoDataFrame({"result": ["barren", "mineralised"] * 6}, geometry=holes,
                     crs=CRS).to_file(data / "drilling.gpkg", layer="drillholes")


def problem_lines(output: str) -> list[str]:
    """The ``  - ...`` lines of a failed ``config check`` or ``run``."""
    return [line.strip()[2:] for line in output.splitlines() if line.startswith("  - ")]


# --------------------------------------------------------------------------- oremap init


def test_init_writes_a_template_without_demo_keys(tmp_path: Path) -> None:
    folder = tmp_path / "area"
    result = runner.invoke(app, ["init", str(folder)])
    assert result.exit_code == 0, result.output
    path = folder / TEMPLATE_NAME
    assert path.read_text() == template_text()
    assert f"oremap config check {path}" in result.output
    data = tomllib.loads(path.read_text())
    assert "truth" not in data and "demo" not in path.read_text().lower()
    assert data["grid"]["crs"] == CRS and data["geochem"]["path"] == "data/assays.csv"
    named = [data["geochem"]["path"], *(g["path"] for g in data["geology"]),
             data["labels"]["orebodies"]["path"], data["labels"]["barren"][0]["path"]]
    assert sorted(set(named)) == sorted(TEMPLATE_PATHS)
    assert "raster" not in data  # optional: commented out
    assert "# [[raster]]" in path.read_text()
    cfg = load_config(path)  # loads without any data (inputs are opened by config check)
    assert cfg.geochem is not None and cfg.geochem.path == folder.resolve() / "data/assays.csv"
    assert cfg.grid.pixels() == (800, 800)


def test_init_refuses_to_overwrite_unless_forced(tmp_path: Path) -> None:
    path = tmp_path / TEMPLATE_NAME
    path.write_text("# my edits\n")
    result = runner.invoke(app, ["init", str(tmp_path)])
    assert result.exit_code == 2
    assert "exists; oremap init does not overwrite it" in result.output
    assert "--force" in result.output
    assert path.read_text() == "# my edits\n"
    forced = runner.invoke(app, ["init", str(tmp_path), "--force"])
    assert forced.exit_code == 0, forced.output
    assert path.read_text() == template_text()


def test_init_into_a_file_is_a_clear_error(tmp_path: Path) -> None:
    file = tmp_path / "notes.txt"
    file.write_text("x")
    result = runner.invoke(app, ["init", str(file)])
    assert result.exit_code == 2
    assert "is a file, not a folder" in result.output


def test_template_fails_check_only_for_its_missing_files_then_validates(tmp_path: Path) -> None:
    runner.invoke(app, ["init", str(tmp_path)])
    path = tmp_path / TEMPLATE_NAME
    result = runner.invoke(app, ["config", "check", str(path)])
    assert result.exit_code == 2
    lines = problem_lines(result.output)
    assert len(lines) == len(TEMPLATE_PATHS) == 4, result.output
    for line, rel in zip(lines, TEMPLATE_PATHS):
        assert f"{tmp_path / rel} does not exist" in line, line
    # data/geology.gpkg is read by both geology layers: one line naming both
    assert lines[1].startswith("[[geology]] #1 'faults', [[geology]] #2 'intrusions': ")

    write_study_data(tmp_path)
    result = runner.invoke(app, ["config", "check", str(path)])
    assert result.exit_code == 0, result.output
    assert "valid (7 models/baselines, 5 evidence layers)" in result.output
    assert "800 rows x 800 cols = 640,000 pixels per layer" in result.output


@pytest.mark.parametrize(("edit", "fragments"), [
    (lambda t: t.replace(BOUNDS_LINE, "bounds = [600000.0, 7000000.0, 620000.0, 7020000.0]"),
     ["[grid] bounds [600000.0, 7000000.0, 620000.0, 7020000.0] overlap none of the 5 inputs",
      "which lie within [500", "in the grid's CRS (EPSG:32649)", "set [grid] bounds"]),
    (lambda t: t.replace(f'crs = "{CRS}"', 'crs = "EPSG:4326"', 1),
     ["[grid] crs = 'EPSG:4326' is geographic (degrees), but [grid] bounds [500000.0, "
      "7000000.0, 520000.0, 7020000.0] lie outside longitude -180..180", "Set [grid] crs"]),
], ids=["100 km away", "degrees CRS, metre bounds"])
def test_bad_grid_is_one_line_at_check_and_run(tmp_path: Path, edit: Callable[[str], str],
                                               fragments: list[str]) -> None:
    write_study_data(tmp_path)
    path = tmp_path / "bad.toml"
    path.write_text(edit(template_text()))
    result = runner.invoke(app, ["config", "check", str(path)])
    assert result.exit_code == 2
    (line,) = problem_lines(result.output)
    for fragment in fragments:
        assert fragment in line, line
    out = tmp_path / "run"
    ran = runner.invoke(app, ["run", str(path), "--out", str(out)])
    assert ran.exit_code == 2
    assert problem_lines(ran.output) == [line]  # the same line, once
    assert len(ran.output) < 1_000
    assert not out.exists()  # stopped before writing anything


# --------------------------------------------------------------------------- README


def readme_commands() -> list[list[str]]:
    """The commands of the README's "Your own data" block (comments dropped)."""
    section = README.read_text().split("## Your own data", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block, "no bash block in the README's 'Your own data' section"
    return [shlex.split(line, comments=True) for line in block.group(1).splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def test_readme_own_data_commands_work_as_written(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    commands = readme_commands()
    assert [c[0] for c in commands] == [".venv/bin/oremap"] * 3
    init, check, run = (c[1:] for c in commands)
    assert init[0] == "init" and check[:2] == ["config", "check"] and run[0] == "run"
    folder = init[1]
    config = f"{folder}/{TEMPLATE_NAME}"
    assert check[2:] == [config] and run[1] == config and "--out" in run
    monkeypatch.chdir(tmp_path)  # an empty folder

    assert runner.invoke(app, init).exit_code == 0
    result = runner.invoke(app, check)  # before the user's files are in place
    assert result.exit_code == 2
    assert len(problem_lines(result.output)) == 4
    assert all("does not exist" in line for line in problem_lines(result.output))
    ran = runner.invoke(app, run)  # stops on the same lines, writes nothing
    assert ran.exit_code == 2 and len(problem_lines(ran.output)) == 4
    assert not Path(run[run.index("--out") + 1]).exists()

    write_study_data(tmp_path / folder)  # "copy your files to the paths it names"
    result = runner.invoke(app, check)
    assert result.exit_code == 0, result.output
    assert "valid" in result.output

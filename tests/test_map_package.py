"""The map package: Cloud-Optimized GeoTIFFs with band names and tags, QGIS styles beside
them, and a QGIS project that QGIS itself opens (when Debian's python3-qgis is installed)."""

from __future__ import annotations

import shutil
import subprocess
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import rasterio

from oremap import pipeline
from oremap.config import load_config

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "copper_queensland"


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfg = load_config(EXAMPLE / "copper.toml", overrides={
        "grid.pixel_size": 0.3125, "samples.crop_size": 16,
        "samples.positive": {"n": 1, "a": 1, "b": 1},
        "samples.negative": {"n": 1, "a": 1, "b": 1}, "samples.block_size": 2,
        "train.models": ["lenet"], "train.baselines": ["logistic"], "train.epochs": 2,
        "train.profile": "fast", "maps.stride": 16})
    out = tmp_path_factory.mktemp("package") / "run"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipeline.run(cfg, out, progress=False)
    return out


def test_every_map_is_a_valid_cog_that_says_what_it_holds(run: Path) -> None:
    from rio_cogeo.cogeo import cog_validate

    tifs = sorted((run / "maps").glob("*.tif"))
    assert len(tifs) >= 12
    for tif in tifs:
        valid, errors, _ = cog_validate(tif)
        assert valid, (tif, errors)
        with rasterio.open(tif) as src:
            assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
            assert src.descriptions[0] and src.tags()["quantity"] in (
                "P(ore)", "ore vote share", "probability std", "vote entropy")
            assert src.crs is not None
    with rasterio.open(run / "maps" / "uncertainty_entropy.tif") as src:
        assert src.tags()["units"] == "bits" and src.tags()["run"] == "copper_queensland"
    with rasterio.open(run / "maps" / "prob_lenet.tif") as src:
        tags = src.tags()
        assert tags["name"] == "lenet" and tags["kind"] == "network"
        assert float(tags["threshold"]) == 0.5 and tags["run"] == "copper_queensland"
    with rasterio.open(run / "maps" / "prob_weighted_voting.tif") as src:
        assert src.descriptions[0].startswith("ore vote share weighted_voting (rule")


def test_styles_beside_every_map_and_for_every_evidence_layer(run: Path) -> None:
    for tif in (run / "maps").glob("*.tif"):
        qml = ET.parse(tif.with_suffix(".qml")).getroot()
        renderer = qml.find("pipe/rasterrenderer")
        assert renderer.get("type") == "singlebandpseudocolor"
        items = renderer.findall("rastershader/colorrampshader/item")
        assert len(items) >= 9
        values = [float(i.get("value")) for i in items]
        assert values == sorted(values)
        if tif.stem.startswith("prob_"):
            assert (values[0], values[-1]) == (0.0, 1.0)
    evidence = sorted((run / "evidence" / "layers").glob("*.tif"))
    styles = sorted((run / "maps" / "styles").glob("evidence_*.qml"))
    assert [s.stem for s in styles] == [f"evidence_{t.stem}" for t in evidence]


def test_project_references_existing_files_by_relative_paths(run: Path) -> None:
    project = run / "maps" / "oremap.qgs"
    root = ET.parse(project).getroot()
    assert root.tag == "qgis" and root.find("properties/Paths/Absolute").text == "false"
    layers = root.findall("projectlayers/maplayer")
    tree = root.findall(".//layer-tree-layer")
    assert {m.find("id").text for m in layers} == {t.get("id") for t in tree}
    for m in layers:
        source = m.find("datasource").text
        assert not Path(source).is_absolute(), source
        assert (project.parent / source.split("|")[0]).is_file(), source
    groups = [g.get("name") for g in root.findall("layer-tree-group/layer-tree-group")]
    assert groups == ["Targets and deposits", "Prospectivity", "Uncertainty",
                      "Every model and rule", "Cells", "Evidence"]
    names = [t.get("name") for t in tree]
    assert names[:2] == ["target areas", "known orebodies"]
    assert any(n.startswith("recommended: ") for n in names)
    # the folder moves as a whole: a copy elsewhere still resolves every path but inputs'
    moved = run.parent / "moved"
    shutil.copytree(run, moved)
    copy = ET.parse(moved / "maps" / "oremap.qgs").getroot()
    inside = [m.find("datasource").text for m in copy.findall("projectlayers/maplayer")
              if not m.find("datasource").text.startswith("../../")]
    assert all((moved / "maps" / s.split("|")[0]).is_file() for s in inside)


_QGIS_CHECK = """
import sys
from qgis.core import QgsApplication, QgsProject
app = QgsApplication([], False)
app.initQgis()
project = QgsProject.instance()
ok = project.read(sys.argv[1])
layers = list(project.mapLayers().values())
bad = [l.name() for l in layers if not l.isValid()]
styled = [l.name() for l in layers if l.type() == 1
          and type(l.renderer()).__name__ == "QgsSingleBandPseudoColorRenderer"]
print(ok, len(layers), len(styled), "|".join(bad))
app.exitQgis()
"""


def _qgis_python() -> str | None:
    python = shutil.which("python3", path="/usr/bin")
    if python is None:
        return None
    probe = subprocess.run([python, "-c", "import qgis.core"], capture_output=True, timeout=60,
                           check=False)
    return python if probe.returncode == 0 else None


def test_qgis_itself_opens_the_project_with_every_layer_valid(run: Path, tmp_path: Path) -> None:
    python = _qgis_python()
    if python is None:
        pytest.skip("Debian's python3-qgis is not installed (.ci/run installs it)")
    script = tmp_path / "check.py"
    script.write_text(_QGIS_CHECK)
    done = subprocess.run([python, str(script), str(run / "maps" / "oremap.qgs")],
                          capture_output=True, text=True, timeout=300, check=False,
                          env={"QT_QPA_PLATFORM": "offscreen", "HOME": str(tmp_path),
                               "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-2000:]
    ok, n, styled, bad = (done.stdout.strip().splitlines()[-1] + " ").split(" ", 3)
    rasters = len(list((run / "maps").glob("*.tif"))) + len(
        list((run / "evidence" / "layers").glob("*.tif")))
    assert ok == "True" and bad.strip() == ""
    assert int(n) == rasters + 3  # + targets, orebodies, cells
    assert int(styled) == rasters


def test_tables_for_gis_carry_coordinates_curve_points_and_every_probability(run: Path) -> None:
    import geopandas as gpd
    import numpy as np
    import pandas as pd

    pred = pd.read_csv(run / "predict" / "predictions.csv")
    cells = gpd.read_file(run / "samples" / "cells.gpkg").set_index("id")
    centre = cells.loc[pred["cell_id"]].geometry.centroid
    np.testing.assert_allclose(pred["x"], centre.x.to_numpy())
    np.testing.assert_allclose(pred["y"], centre.y.to_numpy())
    points = pd.read_csv(run / "maps" / "success_rate_points.csv")
    assert set(points["curve"]) == {"success", "prediction"}
    for (_, _), curve in points.groupby(["name", "curve"]):
        assert curve["area_fraction"].is_monotonic_increasing
        assert curve["captured_fraction"].iloc[0] == 0 and curve["captured_fraction"].iloc[-1] == 1
    rates = pd.read_csv(run / "maps" / "success_rate.csv").set_index("name")
    assert rates["success_captured_at_10pct_area"].between(0, 1).all()
    per_cell = gpd.read_file(run / "maps" / "cells.gpkg")
    assert len(per_cell) == len(cells) and per_cell.crs == cells.crs
    table = pd.read_csv(run / "ensemble" / "ensemble.csv")
    for col in ("p_lenet", "p_logistic", "ens_stacking", "ens_weighted_average"):
        merged = per_cell.set_index("id").loc[table["cell_id"], col].to_numpy()
        np.testing.assert_allclose(merged, table[col].to_numpy())
    assert per_cell.loc[~per_cell["usable"].astype(bool), "p_lenet"].isna().all()


def test_geopackages_are_version_1_2_for_older_gdal(run: Path) -> None:
    import sqlite3

    for gpkg in (run / "maps" / "targets.gpkg", run / "maps" / "cells.gpkg",
                 run / "samples" / "cells.gpkg"):
        con = sqlite3.connect(gpkg)
        try:
            assert con.execute("PRAGMA application_id").fetchone()[0] == 0x47504B47  # "GPKG"
            assert con.execute("PRAGMA user_version").fetchone()[0] == 10200
        finally:
            con.close()


def test_report_of_a_cross_validated_run_fits_the_screen(run: Path) -> None:
    from oremap.browser import chromium, probe

    if chromium() is None:
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    facts = probe(run / "report" / "report.html")
    assert facts["too_wide"] == [] and facts["broken_images"] == []
    assert facts["answer_top"] < facts["viewport"][1]
    html = (run / "report" / "report.html").read_text()
    assert "t interval over 4 folds" in html  # block CV: the interval is over folds
    assert "\u00b1" in html  # fold tables as mean +- std

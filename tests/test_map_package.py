"""The map package: Cloud-Optimized GeoTIFFs with band names and tags, QGIS styles beside
them, and a QGIS project that QGIS itself opens (when Debian's python3-qgis is installed)."""

from __future__ import annotations

import json
import shutil
import subprocess
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pandas as pd
import pytest
import rasterio
from pyproj import CRS

from oremap import pipeline
from oremap.config import load_config
from oremap.maps.colour import AREA_CLASS_COLOURS, AREA_REST_COLOUR, area_percentile_breaks
from oremap.maps.qgis import recommended_name, write_map_package

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
                "P(ore)", "ore vote share", "probability std", "vote entropy",
                "rank uncertainty", "seed rank uncertainty")
            assert src.crs is not None
    with rasterio.open(run / "maps" / "uncertainty_entropy.tif") as src:
        assert src.tags()["units"] == "bits" and src.tags()["run"] == "copper_queensland"
    with rasterio.open(run / "maps" / "prob_lenet.tif") as src:
        tags = src.tags()
        assert tags["name"] == "lenet" and tags["kind"] == "network"
        assert float(tags["threshold"]) == 0.5 and tags["run"] == "copper_queensland"
    with rasterio.open(run / "maps" / "prob_weighted_voting.tif") as src:
        assert src.descriptions[0].startswith("ore vote share weighted_voting (rule")


def _finite(tif: Path) -> np.ndarray:
    with rasterio.open(tif) as src:
        values = src.read(1, masked=True).compressed()
    return values[np.isfinite(values)]


def test_styles_beside_every_map_and_for_every_evidence_layer(run: Path) -> None:
    for tif in (run / "maps").glob("*.tif"):
        qml = ET.parse(tif.with_suffix(".qml")).getroot()
        renderer = qml.find("pipe/rasterrenderer")
        assert renderer.get("type") == "singlebandpseudocolor"
        items = renderer.findall("rastershader/colorrampshader/item")
        assert len(items) >= 9
        values = [float(i.get("value")) for i in items]
        assert values == sorted(values)
        if tif.stem.startswith("prob_"):  # stretched to the map's own finite range
            finite = _finite(tif)
            assert (values[0], values[-1]) == (float(finite.min()), float(finite.max()))
            assert items[0].get("label").endswith("(this map's min)")
            assert items[-1].get("label").endswith("(this map's max)")
        elif tif.stem == "uncertainty_entropy":
            assert (values[0], values[-1]) == (0.0, 1.0)
        elif tif.stem == "uncertainty_rank":
            assert (values[0], values[-1]) == (0.0, 50.0)
    evidence = sorted((run / "evidence" / "layers").glob("*.tif"))
    styles = sorted((run / "maps" / "styles").glob("evidence_*.qml"))
    assert [s.stem for s in styles] == [f"evidence_{t.stem}" for t in evidence]


def _file_of(source: str) -> str:
    """The file a layer source names: OGR ``path|layername=..``, or a delimited-text URL."""
    if source.startswith("file:"):
        return unquote(source.removeprefix("file:").split("?")[0])
    return source.split("|")[0]


def test_project_references_existing_files_by_relative_paths(run: Path) -> None:
    project = run / "maps" / "oremap.qgs"
    root = ET.parse(project).getroot()
    assert root.tag == "qgis" and root.find("properties/Paths/Absolute").text == "false"
    assert root.find("properties/SpatialRefSys/ProjectionsEnabled").text == "1"
    layers = root.findall("projectlayers/maplayer")
    tree = root.findall(".//layer-tree-layer")
    ids = [m.find("id").text for m in layers]
    assert sorted(ids) == sorted(t.get("id") for t in tree) and len(set(ids)) == len(ids)
    assert all(len(i) > 10 for i in ids)  # QGIS re-ids shorter ones on reading
    for m in layers:
        source = m.find("datasource").text
        assert not Path(_file_of(source)).is_absolute(), source
        assert (project.parent / _file_of(source)).is_file(), source
    groups = [g.get("name") for g in root.findall("layer-tree-group/layer-tree-group")]
    assert groups == ["Targets and deposits", "Prospectivity", "Uncertainty", "Geology",
                      "Every model and rule", "Cells", "Evidence"]
    names = [t.get("name") for t in tree]
    assert names[:2] == ["target areas", "known orebodies"]
    assert any(n.startswith("recommended: ") for n in names)
    assert names.count("lineaments") == 1  # three evidence layers, one input layer
    # the folder moves as a whole: a copy elsewhere still resolves every path but inputs'
    moved = run.parent / "moved"
    shutil.copytree(run, moved)
    copy = ET.parse(moved / "maps" / "oremap.qgs").getroot()
    inside = [m.find("datasource").text for m in copy.findall("projectlayers/maplayer")
              if not m.find("datasource").text.startswith("../../")]
    assert all((moved / "maps" / _file_of(s)).is_file() for s in inside)


_QGIS_CHECK = """
import json, sys
from qgis.core import QgsApplication, QgsProject
app = QgsApplication([], False)
app.initQgis()
project = QgsProject.instance()
ok = project.read(sys.argv[1])
probes = json.loads(sys.argv[2])
crs = project.crs()
rasters = [l for l in project.mapLayers().values() if l.type() == 1]
out = {"ok": ok, "crs_valid": crs.isValid(), "crs_authid": crs.authid(),
       "crs_name": crs.description(), "crs_of_rasters": all(l.crs() == crs for l in rasters),
       "nodes": [], "layers": {}}
for node in project.layerTreeRoot().findLayers():
    out["nodes"].append({"id": node.layerId(), "name": node.name(),
                         "bound": node.layer() is not None, "visible": node.isVisible()})
for layer in project.mapLayers().values():
    info = {"valid": layer.isValid(), "raster": layer.type() == 1,
            "provider": layer.providerType(), "same_crs": layer.crs() == crs,
            "renderer": type(layer.renderer()).__name__ if layer.renderer() else None}
    if layer.type() == 0:
        info["features"] = layer.featureCount()
        info["labels"] = layer.labelsEnabled() and layer.labeling() is not None
        info["label_field"] = layer.labeling().settings().fieldName if info["labels"] else None
    elif info["renderer"] == "QgsSingleBandPseudoColorRenderer":
        shader = layer.renderer().shader().rasterShaderFunction()
        info["ramp"] = {"type": int(shader.colorRampType()), "min": shader.minimumValue(),
                        "max": shader.maximumValue(),
                        "items": [[i.value, i.color.name(), i.label]
                                  for i in shader.colorRampItemList()]}
        shade = []
        for v in probes.get(layer.name(), []):
            hit = shader.shade(v)
            shade.append("#%02x%02x%02x" % tuple(hit[1:4]) if hit[0] else None)
        info["shade"] = shade
    out["layers"][layer.name()] = info
print(json.dumps(out))
app.exitQgis()
"""


def _qgis_python() -> str | None:
    python = shutil.which("python3", path="/usr/bin")
    if python is None:
        return None
    probe = subprocess.run([python, "-c", "import qgis.core"], capture_output=True, timeout=60,
                           check=False)
    return python if probe.returncode == 0 else None


def _read_with_qgis(project: Path, tmp_path: Path,
                    probes: dict[str, list[float]] | None = None) -> dict:
    """What QGIS itself reads from ``project`` (Debian's python3-qgis, in a subprocess)."""
    python = _qgis_python()
    if python is None:
        pytest.skip("Debian's python3-qgis is not installed (.ci/run installs it)")
    script = tmp_path / "check.py"
    script.write_text(_QGIS_CHECK)
    done = subprocess.run([python, str(script), str(project), json.dumps(probes or {})],
                          capture_output=True, text=True, timeout=300, check=False,
                          env={"QT_QPA_PLATFORM": "offscreen", "HOME": str(tmp_path),
                               "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _area_class_colour(value: float, breaks: list[float]) -> str:
    """The colour the report gives ``value``: the highest class whose break it reaches."""
    for b, colour in zip(breaks, AREA_CLASS_COLOURS, strict=True):
        if value >= b:
            return colour
    return AREA_REST_COLOUR


def test_qgis_itself_opens_the_project_as_intended(run: Path, tmp_path: Path) -> None:
    best = recommended_name(run)
    assert best is not None
    recommended = f"recommended: {best}"
    values = _finite(run / "maps" / f"prob_{best}.tif")
    breaks = area_percentile_breaks(values)
    below = [float(np.nextafter(values.dtype.type(b), values.dtype.type(-np.inf)))
             for b in breaks]
    probes = [*breaks, *below, float(values.min()), float(values.max())]
    with rasterio.open(run / "maps" / f"prob_{best}.tif") as src:
        grid_wkt = src.crs.to_wkt()
    got = _read_with_qgis(run / "maps" / "oremap.qgs", tmp_path, {recommended: probes})
    # the project's CRS: valid, the grid's, the one QGIS reads from every GeoTIFF
    assert got["ok"] and got["crs_valid"] and got["crs_of_rasters"]
    grid_crs = CRS.from_wkt(grid_wkt)
    auth = grid_crs.to_authority(min_confidence=90)
    assert got["crs_authid"] == (f"{auth[0]}:{auth[1]}" if auth else "")
    assert got["crs_name"] == grid_crs.name
    layers = got["layers"]
    assert [n["name"] for n in got["nodes"] if not n["bound"]] == []
    assert sorted(n["id"] for n in got["nodes"]) == sorted(
        m.find("id").text for m in ET.parse(run / "maps" / "oremap.qgs").getroot()
        .findall("projectlayers/maplayer"))  # QGIS kept every id
    assert [name for name, info in layers.items() if not info["valid"]] == []
    visible = {n["name"] for n in got["nodes"] if n["visible"]}
    assert visible == {"target areas", "known orebodies", recommended}  # no barren records here
    rasters = [*(run / "maps").glob("*.tif"), *(run / "evidence" / "layers").glob("*.tif")]
    styled = [n for n, i in layers.items() if i["renderer"] == "QgsSingleBandPseudoColorRenderer"]
    assert len(styled) == len(rasters)
    assert layers["lineaments"]["features"] > 0 and not layers["lineaments"]["raster"]
    # the targets are labelled with their label (roman numeral) or rank
    import pyogrio

    columns = list(pyogrio.read_info(run / "maps" / "targets.gpkg", layer="targets")["fields"])
    assert layers["target areas"]["labels"]
    assert layers["target areas"]["label_field"] == ("label" if "label" in columns else "rank")
    # the recommended map in area-percentile classes at the breaks of the report
    ramp = layers[recommended]["ramp"]
    assert ramp["type"] == 1  # QgsColorRampShader.Discrete
    assert [i[1] for i in ramp["items"]] == [AREA_REST_COLOUR, *AREA_CLASS_COLOURS[::-1]]
    assert [i[0] for i in ramp["items"]] == [*below[::-1], float("inf")]
    assert [i[2].split(" (")[0] for i in ramp["items"]] == [
        "rest of area", "top 20 % of area", "top 10 % of area", "top 5 % of area"]
    assert layers[recommended]["shade"] == [_area_class_colour(v, breaks) for v in probes]
    assert layers[recommended]["shade"][0] == AREA_CLASS_COLOURS[0]  # at the top-5 % break
    # another probability map: a ramp over its own finite min..max, not 0-1
    other = next(n for n in ("lenet", "logistic") if n != best)
    finite = _finite(run / "maps" / f"prob_{other}.tif")
    ramp = layers[other]["ramp"]
    assert ramp["type"] == 0  # interpolated
    assert (ramp["min"], ramp["max"]) == (float(finite.min()), float(finite.max()))
    assert (ramp["items"][0][0], ramp["items"][-1][0]) == (ramp["min"], ramp["max"])
    assert ramp["items"][-1][2].endswith("(this map's max)")
    assert (ramp["min"], ramp["max"]) != (0.0, 1.0)


def test_qgis_reads_assays_and_filtered_label_layers(run: Path, tmp_path: Path) -> None:
    """Assays (a CSV: delimited text, relative URL), geology, and barren records filtered by
    their ``where``, in a small run folder of one map."""
    import geopandas as gpd
    from shapely.geometry import Point

    from oremap.config import GeochemConfig, VectorSource

    cfg = load_config(EXAMPLE / "copper.toml")
    with rasterio.open(run / "maps" / "prob_lenet.tif") as src:
        grid_wkt = src.crs.to_wkt()
        (x0, y0, x1, y1) = src.bounds
    data = tmp_path / "inputs"
    data.mkdir()
    xs = np.linspace(x0 + 1, x1 - 1, 7)
    pd.DataFrame({"east": xs, "north": np.linspace(y0 + 1, y1 - 1, 7), "Cu": np.arange(7.0)}
                 ).to_csv(data / "assays.csv", index=False)
    holes = gpd.GeoDataFrame({"result": ["barren", "ore", "barren", "it's"]},
                             geometry=[Point(x, y0 + 5) for x in xs[:4]], crs=grid_wkt)
    holes.to_file(data / "holes.gpkg", layer="holes", engine="pyogrio")
    cfg = cfg.model_copy(update={
        "geochem": GeochemConfig(path=data / "assays.csv", x="east", y="north", crs=grid_wkt,
                                 elements=["Cu"]),
        "labels": cfg.labels.model_copy(update={"barren": [
            VectorSource(path=data / "holes.gpkg", layer="holes", where={"result": "barren"}),
            VectorSource(path=data / "holes.gpkg", layer="holes",
                         where={"result": ["ore", "it's"]})]})})
    small = tmp_path / "run"
    (small / "maps").mkdir(parents=True)
    shutil.copy(run / "maps" / "prob_lenet.tif", small / "maps" / "prob_lenet.tif")
    project = write_map_package(small, cfg, grid_wkt)
    got = _read_with_qgis(project, tmp_path)
    layers = got["layers"]
    assert got["crs_valid"] and got["crs_of_rasters"]
    assert [n["name"] for n in got["nodes"] if not n["bound"]] == []
    assert layers["assays"]["valid"] and layers["assays"]["provider"] == "delimitedtext"
    assert layers["assays"]["features"] == 7 and layers["assays"]["same_crs"]
    assert layers["barren records 1"]["features"] == 2
    assert layers["barren records 2"]["features"] == 2
    assert layers["lineaments"]["valid"]
    visible = {n["name"] for n in got["nodes"] if n["visible"]}
    assert visible == {"known orebodies", "barren records 1", "barren records 2"}


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

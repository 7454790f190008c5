"""Tests of oremap.report: the self-contained HTML report of a run directory."""

from __future__ import annotations

import base64
import io as pyio
import json
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from oremap import report  # noqa: E402
from oremap.errors import InputDataError  # noqa: E402

PNGS = [
    "evidence/previews/cu_idw.png", "evidence/previews/fault_distance.png",
    "samples/cells.png", "train/loss_curves.png",
    "evaluate/confusion_matrices.png", "evaluate/confusion_matrices_random.png",
    "evaluate/roc.png", "evaluate/pr.png", "evaluate/calibration.png",
    "evaluate/importance.png", "evaluate/folds/fold0_roc.png",
    "maps/maps_models.png", "maps/map_ensemble.png", "maps/uncertainty.png",
    "maps/success_rate.png", "maps/prediction_rate.png", "ensemble/weights.png",
    "maps/maps_rules.png", "samples_random/cells.png", "train_random/loss_curves.png",
]
CONFIG = '[grid]\ncell_size_m = 100.0\ncrs = "EPSG:32649"\nname = "<b>&</b>"\n'


@pytest.fixture(scope="module")
def png_bytes() -> dict[str, bytes]:
    """A small distinct PNG per name (its label drawn in it)."""
    out = {}
    for i, name in enumerate(PNGS):
        fig = plt.figure(figsize=(0.6, 0.4), dpi=20)
        fig.text(0.1, 0.4, str(i))
        buf = pyio.BytesIO()
        fig.savefig(buf, format="png")
        plt.close(fig)
        out[name] = buf.getvalue()
    return out


def _csv(path: Path, df: pd.DataFrame) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, index=False)


def _json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def make_run(root: Path, png_bytes: dict[str, bytes]) -> Path:
    """A complete fake run directory."""
    for name, data in png_bytes.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    (root / "config.toml").write_text(CONFIG)
    _json(root / "run.json", {
        "name": "demo-study", "versions": {"oremap": "0.1.0", "torch": "2.13.0"}, "seed": 7,
        "device": "cpu",
        "started": "2025-01-01T10:00:00", "finished": "2025-01-01T10:05:00",
        "stages": {"evidence": {"seconds": 1.5}, "train": {"seconds": 100.25}}})
    _json(root / "evidence/stack.json", {
        "layers": [{"name": "cu_idw", "kind": "geochemistry", "measure": "idw",
                    "path": "evidence/cu_idw.tif", "preview": "previews/cu_idw.png",
                    "min": 0.0, "max": 812.5, "mean": 40.123456, "coverage": 0.98},
                   {"name": "fault_distance", "kind": "fault", "measure": "distance",
                    "path": "evidence/fault_distance.tif",
                    "preview": "previews/fault_distance.png", "min": 0.0, "max": 1500.0,
                    "mean": 600.0, "coverage": 1.0}],
        "grid": {"crs": "EPSG:32649", "width": 40, "height": 30}})
    _json(root / "samples/manifest.json", {
        "labels": {"ore": 12, "barren": 40, "unknown": 300},
        "splits": {"train": {"ore": 8, "barren": 30}, "test": {"ore": 4, "barren": 10}},
        "dropped_cells": {"nodata": 3, "edge": 2}, "crops": 4160})
    pd.DataFrame({"ore": [12, 3], "barren": [40, 9]}, index=["train", "test"]).to_csv(
        root / "samples/counts.csv")
    _csv(root / "train/summary.csv", pd.DataFrame({
        "model": ["cnn", "vit"], "fold": [0, 0], "epochs": [30, 30], "best_epoch": [21, 17],
        "seconds": [12.5, 30.25], "samples_per_s": [800.0, 350.0], "params": [1200, 90000]}))
    _csv(root / "evaluate/table1.csv", pd.DataFrame({
        "model": ["cnn", "vit"], "accuracy": [0.123456, 0.9], "roc_auc": [0.8, 0.85]}))
    _csv(root / "evaluate/table1_random.csv", pd.DataFrame({
        "model": ["cnn", "vit"], "accuracy": [0.97, 0.98], "roc_auc": [0.99, 0.99]}))
    _csv(root / "evaluate/importance.csv", pd.DataFrame({
        "layer": ["cu_idw", "fault_distance"], "drop": [0.1, 0.02]}))
    _csv(root / "ensemble/table1_ensemble.csv", pd.DataFrame({
        "rule": ["mean", "vote"], "accuracy": [0.91, 0.9]}))
    _json(root / "ensemble/weights.json", {"cnn": 0.4, "vit": 0.6})
    _csv(root / "ensemble/table2.csv", pd.DataFrame({"rule": ["mean"], "f1": [0.5]}))
    _csv(root / "ensemble/stability.csv", pd.DataFrame({"rule": ["mean"], "std": [0.01]}))
    _csv(root / "ensemble/comparison.csv", pd.DataFrame({
        "name": ["mean", "cnn"], "roc_auc_mean": [0.9, 0.8], "roc_auc_std": [0.02, 0.03]}))
    (root / "ensemble/comparison.md").write_text("Winner: mean rule (ROC AUC 0.900).\n")
    _csv(root / "maps/targets.csv", pd.DataFrame({
        "rank": ["I", "II"], "n_pixels": [15, 6], "mean_prob": [0.71, 0.9],
        "orebodies": ["<script>alert(1)</script>", ""]}))
    _csv(root / "maps/success_rate.csv", pd.DataFrame({"name": ["mean"], "auc": [0.88]}))
    _csv(root / "maps/hidden_truth.csv", pd.DataFrame({"name": ["mean"], "auc": [0.77]}))
    return root


def _section(page: str, anchor: str) -> str:
    m = re.search(rf'<section id="{anchor}">(.*?)</section>', page, re.S)
    assert m, f"section {anchor} missing"
    return m.group(1)


def test_full_run_report(tmp_path, png_bytes) -> None:
    run = make_run(tmp_path / "run", png_bytes)
    path = report.build_report(run)
    assert path == run / "report" / "report.html"
    page = path.read_text()
    anchors = re.findall(r'<section id="([^"]+)">', page)
    assert anchors == [a for a, _ in report.SECTION_TITLES]
    for anchor, title in report.SECTION_TITLES:  # table of contents
        assert f'<a href="#{anchor}">{title}</a>' in page
    # every image embedded, each exactly once
    assert page.count("data:image/png;base64,") == len(list(run.rglob("*.png"))) == len(PNGS)
    for name, data in png_bytes.items():
        assert page.count(base64.b64encode(data).decode()) == 1, name
    assert "http" not in page and "<script" not in page and "<link" not in page
    assert "has not been run" not in page and "did not write" not in page
    # escaping and number format
    assert "name = &quot;&lt;b&gt;&amp;&lt;/b&gt;&quot;" in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.replace("<wbr>", "")
    assert "0.123" in page and "0.123456" not in page
    # placement
    assert "cu_idw (geochemistry, idw)" in _section(page, "evidence")
    evaluation = _section(page, "evaluation")
    assert 'class="row"' in evaluation and "random split protocol" in evaluation
    assert "Winner: mean rule" in _section(page, "ensembles")
    assert ">I<" in _section(page, "targets")
    assert "0.770" in _section(page, "hidden-truth")
    timings = _section(page, "timings")
    assert "101.750" in timings and "torch" in timings and "2.13.0" in timings
    data = _section(page, "data-summary")
    assert "unknown" in data and "812.500" in data and "nodata" in data
    assert "previews/" not in data  # layer paths are not shown in the layer table
    assert "Unnamed" not in data and "<td class=\"text\">test</td><td>3</td>" in data
    assert "<title>oremap report: demo-study</title>" in page
    assert "Random split protocol" in _section(page, "training")


def test_empty_run_gives_notes(tmp_path) -> None:
    run = tmp_path / "empty"
    run.mkdir()
    page = report.build_report(run, out_path=tmp_path / "out" / "r.html").read_text()
    for anchor, stage in (("data-summary", "samples"), ("evidence", "evidence"),
                          ("training", "train"), ("evaluation", "evaluate"),
                          ("ensembles", "ensemble"), ("maps", "maps"), ("targets", "maps"),
                          ("success-rate", "maps")):
        assert f"Stage \u201c{stage}\u201d has not been run" in _section(page, anchor)
    assert "No config.toml" in _section(page, "configuration")
    assert "No hidden truth" in _section(page, "hidden-truth")
    assert "run.json not found" in _section(page, "timings")
    assert "data:image" not in page


def test_partial_run_and_broken_files(tmp_path, png_bytes) -> None:
    run = make_run(tmp_path / "run", png_bytes)
    (run / "maps/targets.csv").unlink()
    (run / "maps/map_ensemble.png").unlink()
    (run / "samples/manifest.json").write_text("{not json")
    (run / "train/summary.csv").write_bytes(b"\xff\xfe\x00bad")
    (run / "evaluate/roc.png").write_text("not a png")
    page = report.build_report(run).read_text()
    assert "ran but did not write maps/targets.csv" in _section(page, "targets")
    assert "ran but did not write maps/map_ensemble.png" in _section(page, "maps")
    assert "samples/manifest.json could not be read as JSON" in page
    assert "train/summary.csv could not be read" in page
    assert "roc.png is not a PNG image" in page


def test_render_html_blocks_and_errors(tmp_path) -> None:
    df = pd.DataFrame({"x": [1.23456, float("nan")], "n": [3, 4], "s": ["a<b", None]})
    sections = [report.Section("One & two", "one", [
        report.Paragraph("<i>x</i>"), report.Paragraph("<em>ok</em>", trusted_html=True),
        report.Table(df, "T", max_rows=1), report.Missing("train"),
        report.Note("careful"), report.Image(tmp_path / "absent.png", "gone")])]
    page = report.render_html("Title <1>", sections, subtitle="sub")
    assert "<title>Title &lt;1&gt;</title>" in page and "One &amp; two" in page
    assert "<p>&lt;i&gt;x&lt;/i&gt;</p>" in page and "<em>ok</em>" in page
    assert "1.235" in page and "First 1 of 2 rows shown" in page and "a&lt;b" in page
    assert "Stage \u201ctrain\u201d has not been run." in page
    assert "could not be read" in page
    with pytest.raises(InputDataError, match="anchor 'a b'"):
        report.render_html("t", [report.Section("x", "a b", [])])
    with pytest.raises(InputDataError, match="must be unique"):
        report.render_html("t", [report.Section("x", "a", []), report.Section("y", "a", [])])
    with pytest.raises(InputDataError, match="cannot render report block of type str"):
        report.render_html("t", [report.Section("x", "a", ["text"])])


def test_build_report_needs_a_directory(tmp_path) -> None:
    with pytest.raises(InputDataError, match="does not exist"):
        report.build_report(tmp_path / "nope")


# ---------------------------------------------------------------------------------------------
# a short page: number format, readable text, folding, small images
# ---------------------------------------------------------------------------------------------

from oremap import report_html  # noqa: E402


def test_whole_number_columns_render_without_decimals() -> None:
    cells = report_html.format_column([136.0, 2.0, float("nan"), 15424.0])
    assert [t for t, _ in cells] == ["136", "2", "\u2013", "15,424"]
    assert [t for t, _ in report_html.format_column([1, 2.5])] == ["1.000", "2.500"]
    page = report.render_html("t", [report.Section("s", "s", [report.Table(pd.DataFrame({
        "n_cells": [136.0, 12.0], "auc": [0.9, 1.0], "area_ha": [12345.0, float("nan")]}))])])
    assert "136.000" not in page and "<td>136</td>" in page and "<td>12,345</td>" in page
    assert "<td>0.900</td>" in page and "<td>1.000</td>" in page


def test_coordinates_render_without_thousands_separators() -> None:
    page = report.render_html("t", [report.Section("s", "s", [report.Table(pd.DataFrame({
        "target": ["I"], "x": [392302.0], "y": [3720147.0], "area (ha)": [12345.0]}))])])
    assert "<td>392302</td>" in page and "<td>3720147</td>" in page
    assert "392,302" not in page and "<td>12,345</td>" in page


def test_lists_and_json_read_as_text_not_python() -> None:
    cells = report_html.format_column([["Au", "Hg"], "['a', 'b']", ("x",), "[not a list"])
    assert [t for t, _ in cells] == ["Au, Hg", "a, b", "x", "[not a list"]
    blocks = report._json_blocks({"n_cells": 5, "splits": {"train": {"ore": 8}},
                                  "layers": ["Au", "Hg"], "grid": {"crs": "EPSG:1"}})
    page = report.render_html("t", [report.Section("s", "s", blocks)])
    text = re.sub(r"<[^>]+>", " ", page.split("<main>")[1])
    assert "n cells" in text and "splits \u203a train \u203a ore" in text and "Au, Hg" in text
    for raw in ("{", "}", "[", "]", "'", "&quot;", "n_cells"):
        assert raw not in text, raw


def test_headers_wrap_at_spaces_only() -> None:
    page = report.render_html("t", [report.Section("s", "s", [report.Table(pd.DataFrame({
        "prediction_rate_auc_mean": [0.5], "name": ["/a/very/long/path/to/some/file.tif"]}))])])
    assert "<th class=\"text\">prediction rate auc mean</th>" in page
    css = page.split("<style>")[1].split("</style>")[0]
    assert "break-all" not in css
    th_rules = [r for r in css.replace("\n", "").split("}") if r.split("{")[0].strip() == "th"]
    assert th_rules and all("anywhere" not in r for r in th_rules)
    assert "word-break:normal" in th_rules[0]
    assert "/<wbr>" in page  # long tokens in cells may wrap; short words do not
    assert "<wbr>" not in page.split("<thead>")[1].split("</thead>")[0]


def test_details_columns_and_decision_map_class(tmp_path, png_bytes) -> None:
    img = tmp_path / "m.png"
    img.write_bytes(png_bytes["maps/map_ensemble.png"])
    page = report.render_html("t", [report.Section("s", "s", [
        report.Columns([report.Image(img, "map", css_class="decision-map"),
                        report.Warning_("careful")],
                       [report.Table(pd.DataFrame({"target": ["I"], "x": [1.0]}))]),
        report.Details("All of it", [report.Paragraph("folded")])])])
    assert '<div class="cols"><div><figure class="decision-map"><img' in page
    assert page.index("decision-map") < page.index('class="warn"') < page.index("<table")
    assert "<details><summary>All of it</summary><p>folded</p></details>" in page


def test_large_images_are_scaled_down_and_lighter() -> None:
    import numpy as np

    fig = plt.figure(figsize=(20, 8), dpi=100)
    ax = fig.subplots()
    ax.imshow(np.random.default_rng(0).random((80, 200)), cmap="viridis")
    buf = pyio.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    data = buf.getvalue()
    small = report_html.optimise_png(data, width=600)
    from PIL import Image as PILImage

    with PILImage.open(pyio.BytesIO(small)) as im:
        assert im.width == 600 and im.height == 240
    assert len(small) < len(data)
    assert report_html.optimise_png(b"not a png") == b"not a png"


def test_featured_curves_are_the_recommended_and_a_few_others() -> None:
    from oremap.report_figures import FEATURED, featured_names

    comp = pd.DataFrame({"kind": ["network", "network", "baseline", "rule", "rule", "rule"],
                         "cell_roc_auc_mean": [0.9, 0.8, 0.85, 0.7, 0.95, 0.6]},
                        index=["a", "b", "logistic", "simple_average", "stacking", "vote"])
    names = featured_names(comp, "vote")
    assert names == ["vote", "a", "logistic", "simple_average", "stacking"]
    assert len(names) <= 1 + FEATURED


def test_importance_chart_aggregates_members(tmp_path) -> None:
    from oremap.evaluate.figures import plot_importance_summary

    rows = [{"layer": f"L{i}" + ("@ctx" if j else ""), "member": m, "auc_drop_mean": 0.01 * i}
            for i in range(30) for m in ("a", "b") for j in (0, 1)]
    out = plot_importance_summary(pd.DataFrame(rows), tmp_path / "imp.png", top=12)
    from PIL import Image as PILImage

    with PILImage.open(out) as im:  # one compact chart: 12 bars, not 30 layers x 2 members
        assert im.height < 500 and im.width < 700
    with pytest.raises(InputDataError, match="needs a non-empty table"):
        plot_importance_summary(pd.DataFrame({"layer": []}), tmp_path / "x.png")


def test_decision_map_classes_and_figure(tmp_path) -> None:
    import geopandas as gpd
    import numpy as np
    from shapely.geometry import Point, box

    from oremap.grid import Grid
    from oremap.maps.figures import area_classes, plot_decision_map

    grid = Grid.from_bounds("EPSG:32649", (0.0, 0.0, 2000.0, 1000.0), 10.0)
    prob = np.tile(np.linspace(0, 1, grid.width), (grid.height, 1))
    prob[0, 0] = np.nan
    classes, breaks = area_classes(prob)
    finite = np.isfinite(prob)
    for k, share in enumerate((5, 10, 20)):
        assert abs(100 * (classes[finite] <= k).mean() - share) < 1.5
    assert breaks[0] >= breaks[1] >= breaks[2] and np.isnan(classes[0, 0])
    targets = gpd.GeoDataFrame({"label": ["I"]}, geometry=[box(1800, 200, 1990, 800)],
                               crs="EPSG:32649")
    ore = gpd.GeoDataFrame(geometry=[Point(1900, 500)], crs="EPSG:32649")
    barren = [gpd.GeoDataFrame(geometry=[Point(300, 300), Point(500, 700)], crs="EPSG:32649")]
    out = plot_decision_map(prob, grid, tmp_path / "decision_map.png", targets=targets,
                            orebodies=ore, barren=barren, title="Recommended: x")
    from PIL import Image as PILImage

    with PILImage.open(out) as im:
        assert im.width <= 720 and im.height <= 460
        rgb = np.asarray(im.convert("RGB")).reshape(-1, 3).astype(int)
    top = np.array([int("b2182b"[i:i + 2], 16) for i in (0, 2, 4)])
    assert (np.abs(rgb - top).sum(axis=1) < 10).mean() > 0.01  # the top 5 % class is drawn
    assert out.stat().st_size < 150_000


def test_weight_blocks_show_each_folds_effective_weights_and_the_fallback() -> None:
    from oremap.report import Paragraph, Table, weight_blocks

    fold = {"weights": {"lenet": 0.5, "woe": 0.5}, "shrinkage": 0.0,
            "fitted_on": {"ore_cells": 14, "barren_cells": 136}}
    blocks = weight_blocks({"source": "out_of_fold", "metric": "auc", **fold,
                            "folds": [fold, dict(fold, shrinkage=0.6)]})
    text = " ".join(b.text for b in blocks if isinstance(b, Paragraph))
    assert "whole training side (cross-fitted" in text
    assert "could not be told apart" in text and "simple average" in text
    table = next(b for b in blocks if isinstance(b, Table)).df
    assert list(table["parameters"]) == ["fold 0", "fold 1", "final map"]
    assert list(table["shrinkage"]) == [0.0, 0.6, 0.0]
    assert list(table["ore cells"]) == [14, 14, 14]
    blocks = weight_blocks({"source": "validation", "metric": "accuracy",
                            "weights": {"lenet": 1.0}, "shrinkage": 0.5})
    text = " ".join(b.text for b in blocks if isinstance(b, Paragraph))
    assert "inner validation cells" in text and "50% of the way" in text
    assert "toward the members' accuracy" in text

"""The whole demo pipeline, end to end, and the run directory contract."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
from typer.testing import CliRunner

from oremap.cli import app
from oremap.demo import DEMO_BOUNDS

runner = CliRunner()


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    result = runner.invoke(app, ["demo", "--quick", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert f"report: {out / 'run_quick' / 'report' / 'report.html'}" in result.output
    return out / "run_quick"


def test_run_directory_contract(demo_run: Path) -> None:
    assert (demo_run / "config.toml").read_text().startswith('name = "oremap demo"')
    info = json.loads((demo_run / "run.json").read_text())
    assert set(info["versions"]) >= {"oremap", "torch", "numpy", "rasterio"}
    assert info["seed"] == 0 and info["device"] == "cpu"
    assert info["started"] <= info["finished"]
    for stage in ("evidence", "samples", "train", "evaluate", "predict", "ensemble", "maps",
                  "report"):
        assert info["stages"][stage]["seconds"] > 0
        assert (demo_run / stage).is_dir()
    leftovers = [p for p in demo_run.rglob("*") if ".tmp" in p.name]
    assert leftovers == []


def test_demo_outputs_carry_crs_and_cover_every_member(demo_run: Path) -> None:
    with rasterio.open(demo_run / "evidence" / "layers" / "Au.tif") as src:
        assert src.crs.to_epsg() == 32649
        assert src.bounds == pytest.approx(DEMO_BOUNDS)
        assert (src.width, src.height) == (1600, 736)
    with rasterio.open(demo_run / "maps" / "prob_weighted_average.tif") as src:
        assert src.crs.to_epsg() == 32649 and (src.width, src.height) == (40, 16)
        assert src.transform.a == pytest.approx(20.0) and src.transform.e == pytest.approx(-23.0)
    table = pd.read_csv(demo_run / "predict" / "predictions.csv")
    members = ["lenet", "alexnet", "vgg16", "vgg8", "resnet50", "mobilenet_v2", "vit",
               "logistic", "random_forest", "woe"]
    for m in members:
        p = table[f"p_{m}"].to_numpy()
        assert np.isfinite(p).all() and ((p >= 0) & (p <= 1)).all()
    counts = table["label"].value_counts()
    assert 20 <= counts[1] <= 40 and 280 <= counts[0] <= 380 and 150 <= counts[-1] <= 260
    t1 = pd.read_csv(demo_run / "evaluate" / "table1.csv", index_col=0)
    assert list(t1.index) == members
    assert ((t1["accuracy"] >= 0) & (t1["accuracy"] <= 1)).all()
    t2 = pd.read_csv(demo_run / "ensemble" / "table2.csv", index_col=0)
    assert len(t2) == len(members) + 8


def test_report_has_every_section(demo_run: Path) -> None:
    html = (demo_run / "report" / "report.html").read_text()
    for title in ("Configuration", "Data summary", "Evidence layers", "Training", "Evaluation",
                  "Ensembles", "Maps", "Target areas", "Success-rate", "Hidden truth",
                  "Timings"):
        assert title in html
    assert html.count("data:image/png;base64,") >= 10
    assert "http://" not in html.replace("http://www.w3.org", "")


def test_rerun_one_stage_from_the_run_folder(demo_run: Path) -> None:
    before = (demo_run / "ensemble" / "table2.csv").read_text()
    result = runner.invoke(app, ["ensemble", str(demo_run)])
    assert result.exit_code == 0, result.output
    assert (demo_run / "ensemble" / "table2.csv").read_text() == before


def test_comparison_names_a_winner(demo_run: Path) -> None:
    comparison = pd.read_csv(demo_run / "ensemble" / "comparison.csv", index_col=0)
    assert set(comparison["kind"]) == {"network", "baseline", "rule"}
    assert comparison["roc_auc_mean"].between(0, 1).all()
    assert comparison["success_rate_auc"].between(0.5, 1).all()
    text = (demo_run / "ensemble" / "comparison.md").read_text()
    best = comparison["roc_auc_mean"].idxmax()
    assert f"**{best}**" in text
    assert comparison["cell_roc_auc_mean"].between(0, 1).all()
    assert f"**{comparison['cell_roc_auc_mean'].idxmax()}**" in text.split("\n- By")[1]


def test_stability_across_seeds(demo_run: Path) -> None:
    result = runner.invoke(app, ["stability", str(demo_run), "--seeds", "2"])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(demo_run / "stability" / "seed_stability.csv", index_col="name")
    assert len(table) == 10 + 8
    assert table["mean_flip_rate"].between(0, 1).all()
    assert (table["mean_prob_std_sample"] >= 0).all() and (table["total_std_sample"] >= 0).all()
    # retraining changed the networks' weights, so at least one network's map moved
    assert table.loc[["lenet", "alexnet", "vgg8"], "mean_prob_std_sample"].max() > 0
    with rasterio.open(demo_run / "stability" / "uncertainty_seed.tif") as src:
        seed = src.read(1, masked=True)
        assert src.tags()["seeds"] == "2" and src.tags()["units"] == "percentile points"
    assert 0 <= seed.min() and seed.max() <= 50 and seed.max() > 0  # the networks moved
    report = runner.invoke(app, ["report", str(demo_run)])
    assert report.exit_code == 0, report.output
    html = (demo_run / "report" / "report.html").read_text().replace("<wbr>", "")
    assert "mean flip rate" in html  # headers are shown with spaces


def test_stability_scores_cells_as_the_run_does(demo_run: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """With [predict] tta, the seeds' cells are scored from the same evidence stack (with
    test-time augmentation) as the run's predictions, not from the stored crops."""
    from oremap import pipeline
    from oremap.config import load_config
    from oremap.evidence import load_stack
    from oremap.runinfo import RunDir

    config = load_config(demo_run / "config.toml")
    assert pipeline.prediction_stack(config, RunDir(demo_run)) is None
    tta = config.model_copy(update={"predict": config.predict.model_copy(update={"tta": True})})
    stack = pipeline.prediction_stack(tta, RunDir(demo_run))
    np.testing.assert_array_equal(stack, load_stack(demo_run / "evidence")[0])
    seen = []
    table = pd.read_csv(demo_run / "predict" / "predictions.csv")
    monkeypatch.setattr(pipeline, "train_members", lambda *a, **k: None)
    monkeypatch.setattr(pipeline, "predict_cells",
                        lambda *a, stack=None, **k: seen.append(stack) or table)
    run = tmp_path / "run"
    shutil.copytree(demo_run, run)
    pipeline.run_stability.__wrapped__(tta, run, seeds=2, progress=False)
    assert len(seen) == 2 and all(np.array_equal(s, stack, equal_nan=True) for s in seen)


def test_every_geotiff_carries_the_grid_crs_and_a_north_up_transform(demo_run: Path) -> None:
    tifs = sorted(demo_run.rglob("*.tif"))
    assert len(tifs) >= 14 + 10 + 5 + 2
    for path in tifs:
        with rasterio.open(path) as src:
            assert src.crs.to_epsg() == 32649, path
            t = src.transform
            assert t.b == 0 and t.d == 0 and t.a > 0 and t.e < 0, path
            left, bottom, right, top = src.bounds
            # every layer lies within the study area (continuous maps are inset by half a crop)
            assert DEMO_BOUNDS[0] <= left < right <= DEMO_BOUNDS[2] + 1e-6, path
            assert DEMO_BOUNDS[1] - 1e-6 <= bottom < top <= DEMO_BOUNDS[3] + 1e-6, path
            assert src.nodata is not None, path


def test_inner_validation_drives_epochs_weights_and_learned_rules(demo_run: Path) -> None:
    import torch

    from oremap.ensemble import read_params
    from oremap.samples import load_sample_set

    ss = load_sample_set(demo_run / "samples")
    assert ss.has_validation
    meta = torch.load(demo_run / "train" / "fold0" / "lenet" / "best.pt",
                      weights_only=False)["meta"]
    assert meta["monitor"] == "validation"
    assert meta["n_train"] == len(ss.fit_indices(0))
    assert meta["n_test"] == len(ss.validation_indices(0))
    probs = np.load(demo_run / "evaluate" / "validation_probs.npz")
    np.testing.assert_array_equal(probs["fold0_indices"], ss.validation_indices(0))
    stored = json.loads((demo_run / "ensemble" / "weights.json").read_text())
    assert stored["source"] == "validation" and len(stored["top_k"]) == 3
    members = list(stored["weights"])
    params = read_params(demo_run / "ensemble" / "weights.json", members)
    assert params.final.learned and params.final.weights.sum() == pytest.approx(1.0)
    table = pd.read_csv(demo_run / "ensemble" / "ensemble.csv")
    for rule in ("stacking", "top_k"):
        assert table[f"ens_{rule}"].between(0, 1).all()
    top = [m for m in members if m in stored["top_k"]]
    # the averaging rules combine the members calibrated on the inner validation cells
    assert {c["method"] for c in stored["calibration"].values()} == {"platt"}
    calibrated = {m: c.apply(table[f"p_{m}"].to_numpy())
                  for m, c in zip(members, params.final.calibrators)}
    np.testing.assert_allclose(table["ens_top_k"], np.mean([calibrated[m] for m in top], axis=0))
    np.testing.assert_allclose(table["ens_simple_average"],
                               np.mean(list(calibrated.values()), axis=0))
    votes = np.sum([table[f"p_{m}"] >= 0.5 for m in members], axis=0)
    np.testing.assert_allclose(table["ens_majority_voting"], votes / len(members))
    comparison = pd.read_csv(demo_run / "ensemble" / "comparison.csv", index_col=0)
    assert {"stacking", "top_k"} <= set(comparison.index)
    assert comparison.loc["stacking", "kind"] == "rule"


def test_report_in_a_real_browser_answers_first_and_fits_the_screen(demo_run: Path) -> None:
    from oremap.browser import chromium, probe

    if chromium() is None:
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    facts = probe(demo_run / "report" / "report.html", width=1280, height=720)
    assert facts["images"] >= 10 and facts["broken_images"] == []
    assert facts["scroll_width"] <= facts["viewport"][0] and facts["too_wide"] == []
    assert not facts["markdown_table_text"]
    # the decision on the first screen of a 1280 x 720 window: the recommended map's name,
    # its decision map (whole), the target table and the first warning
    first_screen = 720
    for key in ("answer_top", "decision_map_bottom", "targets_top", "warning_top"):
        assert facts[key] is not None and facts[key] < first_screen, (key, facts)
    assert facts["decision_map_top"] < facts["decision_map_bottom"]
    # half the length and size of the old report (30,000 px, 5.9 MB)
    assert facts["page_height"] < 15_000, facts["sections"]
    assert facts["html_bytes"] < 2_500_000


def test_report_summary_recommends_one_map_robust_to_ties(demo_run: Path) -> None:
    from oremap.recommend import choose, recommend

    rec = recommend(demo_run)
    comparison = pd.read_csv(demo_run / "ensemble" / "comparison.csv", index_col=0)
    best = comparison["cell_roc_auc_mean"]
    top = best[best >= best.max() - 1e-12]
    assert rec.choice == choose(demo_run)  # the maps stage's record is what choose says now
    if len(top) > 1:  # a tie at the top never names one member of it
        assert rec.name == "weighted_average" and rec.choice.because_of_tie
        assert f"{len(rec.choice.tied) + 1} of {len(comparison)} maps tie" in rec.reason
    assert "bootstrap over" in rec.score.how  # the quick demo has one split
    assert "1.000 to 1.000" not in rec.reason
    html = (demo_run / "report" / "report.html").read_text()
    assert html.index("Recommended map") < html.index('id="data-summary"')
    assert html.index('id="configuration"') > html.index('id="timings"')
    assert "|:---" not in html
    assert len(rec.targets) > 0
    assert set(rec.targets["ground"]) <= {"new", "known", "new and known"}
    known = rec.targets["ground"] != "new"
    assert (rec.targets.loc[known, "known deposits"] > 0).all()
    assert (rec.targets.loc[~known, "known deposits"] == 0).all()
    assert {"x", "y", "area (ha)", "% of study area", "drivers"} <= set(rec.targets.columns)


def test_summary_targets_drivers_qgis_and_docs_name_one_map(demo_run: Path) -> None:
    """The recommended map is the one the targets are drawn on, whose drivers are shown, the
    visible map in QGIS and the ensemble the docs name."""
    import re
    import xml.etree.ElementTree as ET

    from oremap.recommend import recommend

    rec = recommend(demo_run)
    name = rec.name
    record = json.loads((demo_run / "maps" / "recommendation.json").read_text())
    assert record["name"] == name
    info = json.loads((demo_run / "run.json").read_text())
    assert f"maps/prob_{name}.tif" in info["stages"]["maps"]["target_map"]
    with rasterio.open(demo_run / "maps" / f"prob_{name}.tif") as src:
        prob = src.read(1, masked=True)
    targets = pd.read_csv(demo_run / "maps" / "targets.csv")
    assert np.isclose(targets["max_prob"].max(), float(prob.max()), atol=1e-6)
    importance = pd.read_csv(demo_run / "evaluate" / "importance.csv")
    own = importance.loc[importance["member"] == name, "layer"].str.split("@").str[0]
    layers = set(own) if len(own) else set(importance["layer"].str.split("@").str[0])
    for drivers in rec.targets["drivers"]:
        for d in filter(None, drivers.split(", ")):
            assert d.split(" ")[0] in layers
    project = ET.parse(demo_run / "maps" / "oremap.qgs").getroot()
    visible = {n.get("name") for n in project.iter("layer-tree-layer")
               if n.get("checked") == "Qt::Checked"}
    rasters = [v for v in visible if v.startswith("recommended")]
    assert rasters == [f"recommended: {name}"]
    docs = (Path(__file__).parents[1] / "docs" / "validity.md").read_text()
    named = re.search(r"recommended ensemble \(`(\w+)`\)", docs)
    assert named is not None and named.group(1) == name

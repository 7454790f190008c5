"""Direct tests of the helpers the stages call (moved out of the pipeline): members' held-out
probabilities, ensemble weights and tables, seed stability, rate curves, hidden truth, cell
maps, continuous ensemble maps, and the shared "run stage X first" message."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
from shapely.geometry import box

from oremap import ensemble as en
from oremap import evaluate as ev
from oremap import io, maps
from oremap.errors import InputDataError
from oremap.grid import Grid
from oremap.members import FoldProbabilities, TestProbabilities
from oremap.names import member_kind
from oremap.stages import stage_missing


def _probs() -> TestProbabilities:
    f0 = FoldProbabilities(np.array([0, 1, 2, 3]), np.array([0, 0, 1, 1]),
                           {"lenet": np.array([0.1, 0.6, 0.7, 0.9]),
                            "logistic": np.array([0.2, 0.3, 0.4, 0.8])})
    f1 = FoldProbabilities(np.array([4, 5, 6]), np.array([1, 0, 1]),
                           {"lenet": np.array([0.8, 0.2, 0.3]),
                            "logistic": np.array([0.6, 0.1, 0.9])})
    return TestProbabilities([f0, f1])


def test_test_probabilities_round_trip_pool_and_table1(tmp_path: Path) -> None:
    crops = _probs()
    crops.save(tmp_path / "p.npz")
    back = TestProbabilities.load(tmp_path / "p.npz", ["lenet", "logistic"])
    assert len(back) == 2
    for a, b in zip(crops.folds, back.folds):
        np.testing.assert_array_equal(a.indices, b.indices)
        np.testing.assert_array_equal(a.stacked(["logistic", "lenet"]),
                                      b.stacked(["logistic", "lenet"]))
    y, p = back.pooled("lenet")
    np.testing.assert_array_equal(y, [0, 0, 1, 1, 1, 0, 1])
    np.testing.assert_allclose(p, [0.1, 0.6, 0.7, 0.9, 0.8, 0.2, 0.3])
    summary, per_fold = back.table1(["lenet", "logistic"], threshold=0.5)
    assert per_fold is not None and sorted(set(per_fold["fold"])) == [0, 1]
    # lenet: fold 0 accuracy 3/4, fold 1 accuracy 2/3 -> mean 17/24
    assert summary.loc["lenet", "accuracy_mean"] == pytest.approx((0.75 + 2 / 3) / 2)
    one, none = TestProbabilities(crops.folds[:1]).table1(["lenet"], threshold=0.5)
    assert none is None and one.loc["lenet", "accuracy"] == pytest.approx(0.75)


def test_weights_from_table1_and_weights_json(tmp_path: Path) -> None:
    t1 = pd.DataFrame({"accuracy": [0.9, 0.6], "macro_f1": [0.5, 0.5]},
                      index=["lenet", "logistic"])
    w = en.weights_from_table1(t1, ["lenet", "logistic"], "accuracy")
    np.testing.assert_allclose(w, [0.6, 0.4])  # proportional to accuracy
    folds = t1.rename(columns={"accuracy": "accuracy_mean"})
    np.testing.assert_allclose(en.weights_from_table1(folds, ["lenet", "logistic"], "accuracy"),
                               w)
    rp = en.RuleParams(weights=w)
    en.write_params(tmp_path / "w.json", ["lenet", "logistic"],
                    en.EnsembleParams(final=rp, folds=[rp]), "accuracy")
    np.testing.assert_allclose(en.read_weights(tmp_path / "w.json", ["logistic", "lenet"]),
                               [0.4, 0.6])
    with pytest.raises(InputDataError, match="no weight for \\['vit'\\]"):
        en.read_weights(tmp_path / "w.json", ["vit"])


def test_combine_columns_equals_combine_on_the_stacked_columns() -> None:
    table = pd.DataFrame({"p_a": [0.1, 0.9, 0.6], "p_b": [0.3, 0.7, 0.2]})
    w = np.array([0.25, 0.75])
    out = en.combine_columns(table, ["a", "b"], ["weighted_average", "majority_voting"], w,
                             threshold=0.5)
    ref = en.combine("weighted_average", np.array([[0.1, 0.9, 0.6], [0.3, 0.7, 0.2]]),
                     weights=w, threshold=0.5)
    np.testing.assert_allclose(out["weighted_average"].probability, ref.probability)
    np.testing.assert_allclose(out["weighted_average"].probability, [0.25, 0.75, 0.3])
    assert list(out["majority_voting"].prediction) == [0, 1, en.UNDECIDED]


def test_seed_stability_table_is_zero_for_identical_seeds_and_positive_otherwise() -> None:
    base = pd.DataFrame({"p_lenet": [0.2, 0.8, 0.6], "p_logistic": [0.1, 0.7, 0.4],
                         "label": [0, 1, -1]})
    members, rules, w = ["lenet", "logistic"], ["simple_average"], np.array([0.5, 0.5])
    same = en.seed_stability_table([base, base.copy()], members, rules, w, threshold=0.5)
    assert list(same["name"]) == ["lenet", "logistic", "simple_average"]
    assert list(same["kind"]) == ["network", "baseline", "rule"]
    assert (same["mean_prob_std_sample"] == 0).all() and (same["mean_flip_rate"] == 0).all()
    moved = base.assign(p_lenet=[0.2, 0.8, 0.4])  # cell 3 crosses the threshold
    diff = en.seed_stability_table([base, moved], members, rules, w,
                                   threshold=0.5).set_index("name")
    assert diff.loc["lenet", "mean_flip_rate"] == pytest.approx(1 / 3)
    assert diff.loc["lenet", "mean_prob_std_sample"] == pytest.approx(
        np.std([0.6, 0.4], ddof=1) / 3)
    assert diff.loc["logistic", "mean_prob_std_sample"] == 0


def test_member_kind_is_one_vocabulary() -> None:
    assert [member_kind(n) for n in ("vit", "woe", "weighted_voting")] == [
        "network", "baseline", "rule"]
    with pytest.raises(KeyError):
        member_kind("kriging")


def _cell_table() -> pd.DataFrame:
    return pd.DataFrame({
        "cell_id": [0, 1, 2, 3], "row": [0, 0, 1, 1], "col": [0, 1, 0, 1],
        "label": [1, 0, -1, 1], "test_fold": [0, 0, -1, 0],
        "p_lenet": [0.9, 0.2, 0.5, 0.7], "oof_lenet": [0.8, 0.3, np.nan, 0.4],
        "ens_simple_average": [0.8, 0.1, 0.4, 0.6]})


def test_write_rate_curves_success_and_prediction_rate(tmp_path: Path) -> None:
    df = ev.write_rate_curves(_cell_table(), ["lenet"], ["simple_average"], tmp_path)
    df = df.set_index("name")
    # success rate of lenet: positives ranked 1st and 2nd of 4 cells -> AUC 0.75
    assert df.loc["lenet", "success_rate_auc"] == pytest.approx(
        ev.success_rate_curve(np.array([0.9, 0.2, 0.5, 0.7]),
                              np.array([1, 0, 0, 1], bool)).auc)
    # prediction rate uses the held-out score where there is one
    assert df.loc["lenet", "prediction_rate_auc"] == pytest.approx(
        ev.success_rate_curve(np.array([0.8, 0.3, 0.5, 0.4]),
                              np.array([1, 0, 0, 1], bool)).auc)
    assert np.isnan(df.loc["simple_average", "prediction_rate_auc"])
    assert (tmp_path / "success_rate.png").is_file()
    assert (tmp_path / "prediction_rate.png").is_file()


def _grid() -> Grid:
    return Grid.from_bounds("EPSG:32649", (0.0, 0.0, 4.0, 4.0), 1.0)


def _cells() -> gpd.GeoDataFrame:
    geoms = [box(0, 2, 2, 4), box(2, 2, 4, 4), box(0, 0, 2, 2), box(2, 0, 4, 2)]
    return gpd.GeoDataFrame({"id": [0, 1, 2, 3], "row": [0, 0, 1, 1], "col": [0, 1, 0, 1],
                             "usable": [True, True, True, True]}, geometry=geoms,
                            crs="EPSG:32649")


def test_hidden_truth_scores_rank_unknown_cells(tmp_path: Path) -> None:
    truth = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [5, 5, 2, 2], [5, 5, 2, 2]], float)
    io.write_raster(tmp_path / "truth.tif", truth, _grid())
    table = _cell_table().assign(label=[-1, -1, -1, -1])
    out = ev.hidden_truth_scores(tmp_path / "truth.tif", table, _cells(), ["lenet"],
                                 ["simple_average"]).set_index("name")
    assert out.loc["lenet", "kind"] == "network" and out.loc["lenet", "unknown_cells"] == 4
    # truth per cell 0, 1, 5, 2 -> above median: cells 2 and 3; lenet scores 0.5, 0.7 for them
    # against 0.9, 0.2 for the others: pairs (0.5>0.9 no, 0.5>0.2 yes, 0.7>0.9 no, 0.7>0.2 yes)
    assert out.loc["lenet", "auc"] == pytest.approx(0.5)


def test_write_cell_maps_puts_each_cell_value_on_its_cell(tmp_path: Path) -> None:
    cm = maps.write_cell_maps(_cell_table(), _cells(), _grid(), ["lenet"], ["simple_average"],
                              tmp_path, threshold=0.5)
    np.testing.assert_allclose(cm.rasters["lenet"], [[0.9, 0.2], [0.5, 0.7]])
    with rasterio.open(tmp_path / "prob_simple_average.tif") as src:
        np.testing.assert_allclose(src.read(1), [[0.8, 0.1], [0.4, 0.6]], rtol=1e-6)
        assert src.crs.to_epsg() == 32649
        assert src.descriptions == ("P(ore) simple_average (rule)",)
        assert src.tags()["threshold"] == "0.5" and src.tags()["quantity"] == "P(ore)"
    with rasterio.open(tmp_path / "uncertainty_entropy.tif") as src:
        assert src.descriptions == ("vote entropy (bits) across members",)
        assert src.tags()["units"] == "bits"
    assert maps.describe_map("weighted_voting")[0] == "ore vote share weighted_voting (rule)"
    assert maps.describe_map("vgg8", continuous=True)[0] == (
        "P(ore) vgg8 (network, sliding window)")
    assert cm.uncertainty.shape == (2, 2)
    for name in ("maps_models.png", "maps_rules.png", "uncertainty.png",
                 "uncertainty_rank.tif", "uncertainty_entropy.tif"):
        assert (tmp_path / name).is_file()


def test_write_continuous_maps_weights_the_members(tmp_path: Path) -> None:
    g = _grid()
    a, b = np.full(g.shape, 0.2), np.full(g.shape, 0.6)
    ens, g2 = maps.write_continuous_maps({"a": (a, g), "b": (b, g)}, ["a", "b"],
                                         np.array([0.75, 0.25]), tmp_path)
    np.testing.assert_allclose(ens, 0.3)
    assert g2 is g and (tmp_path / "prob_ensemble_continuous.tif").is_file()
    with rasterio.open(tmp_path / "prob_ensemble_continuous.tif") as src:
        np.testing.assert_allclose(src.read(1), 0.3, rtol=1e-6)


def test_stage_not_ready_message_names_the_command() -> None:
    exc = stage_missing("train", "model 'vit' has not been trained", Path("RUN"))
    assert str(exc) == ("model 'vit' has not been trained; run `oremap train RUN` first (or "
                        "`oremap run CONFIG --out RUN` for every stage).")
    assert "`oremap samples RUN_DIR`" in str(stage_missing("samples", "x"))
    with pytest.raises(KeyError):
        stage_missing("training", "x")


def test_held_out_cell_auc_scores_each_fold_with_the_model_that_did_not_see_it() -> None:
    table = pd.DataFrame({
        "label": [1, 0, 0, 1, 0, 0, -1], "test_fold": [0, 0, 0, 1, 1, 1, -1],
        "oof_lenet": [0.9, 0.2, 0.95, 0.7, 0.1, 0.2, np.nan],
        "oof_logistic": [0.6, 0.5, 0.1, 0.4, 0.3, 0.2, np.nan]})
    out = en.held_out_cell_auc(table, ["lenet", "logistic"], ["simple_average"],
                               np.array([0.5, 0.5]), threshold=0.5)
    assert out["lenet"] == [pytest.approx(0.5), pytest.approx(1.0)]
    assert out["logistic"] == [pytest.approx(1.0), pytest.approx(1.0)]
    # simple average fold 0: 0.75 (ore) vs 0.35 and 0.525 -> 1.0
    assert out["simple_average"] == [pytest.approx(1.0), pytest.approx(1.0)]


def test_comparison_names_the_winner_with_its_fold_interval() -> None:
    df = pd.DataFrame({
        "kind": ["network", "rule"],
        "cell_roc_auc_mean": [0.80, 0.85], "cell_roc_auc_std": [0.05, 0.05],
        "cell_roc_auc_folds": ["0.75 0.80 0.85", "0.80 0.85 0.90"],
        "roc_auc_mean": [0.8, 0.85], "roc_auc_std": [0.05, 0.05],
        "roc_auc_folds": ["0.75 0.80 0.85", "0.80 0.85 0.90"],
        "prediction_rate_auc_mean": [0.7, 0.72], "prediction_rate_auc_std": [0.1, 0.1],
        "prediction_rate_auc_folds": ["0.6 0.7 0.8", "0.62 0.72 0.82"],
        "success_rate_auc": [0.9, 0.91]}, index=pd.Index(["lenet", "stacking"], name="name"))
    text = en.comparison_markdown(df, 3)
    # mean 0.85, sd 0.05, t(0.975, 2) = 4.303: 0.85 +- 0.124 (clipped at 1)
    assert "**stacking** (rule) wins with 0.850 (95 % interval over folds 0.726 to 0.974)" \
        in text

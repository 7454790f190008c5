"""Tests of oremap.evaluate: metrics against scikit-learn, tables, curves and figures."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from oremap.errors import DroppedDataWarning, InputDataError
from oremap.evaluate import (
    TABLE1_COLUMNS,
    Label,
    average_precision,
    calibration_bins,
    classification_report,
    confusion,
    permutation_importance,
    plot_calibration,
    plot_confusion_matrices,
    plot_confusion_matrix,
    plot_importance,
    plot_pr_curves,
    plot_roc_curves,
    plot_success_rate_curves,
    pr_curve,
    ranking_auc,
    roc_auc,
    roc_curve,
    success_rate_curve,
    summarise_folds,
    table1,
    table_to_markdown,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _random_case(seed: int, n: int = 200) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    # rounded so that many scores tie, and correlated with y so metrics are not trivial
    p = np.clip(np.round(0.3 * y + 0.7 * rng.random(n), 1), 0.0, 1.0)
    return y, p


def test_label_values() -> None:
    assert (Label.POSITIVE, Label.NEGATIVE, Label.UNKNOWN) == (1, 0, -1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_confusion_matches_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y, pred = rng.integers(0, 2, 50), rng.integers(0, 2, 50)
    np.testing.assert_array_equal(confusion(y, pred), skm.confusion_matrix(y, pred, labels=[0, 1]))


def test_confusion_layout() -> None:
    # true: 0 0 0 1 1 ; pred: 0 1 1 0 1 -> TN=1, FP=2, FN=1, TP=1
    np.testing.assert_array_equal(confusion([0, 0, 0, 1, 1], [0, 1, 1, 0, 1]), [[1, 2], [1, 1]])


@pytest.mark.parametrize(("seed", "threshold"), [(0, 0.5), (1, 0.5), (2, 0.3), (3, 0.7)])
def test_classification_report_matches_sklearn(seed: int, threshold: float) -> None:
    y, p = _random_case(seed)
    rep = classification_report(y, p, threshold=threshold)
    pred = (p >= threshold).astype(int)
    prec, rec, f1, support = skm.precision_recall_fscore_support(
        y, pred, labels=[0, 1], zero_division=0
    )
    for i, name in enumerate(("barren", "ore")):
        assert rep[f"precision_{name}"] == pytest.approx(prec[i])
        assert rep[f"recall_{name}"] == pytest.approx(rec[i])
        assert rep[f"f1_{name}"] == pytest.approx(f1[i])
    assert rep["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert rep["macro_precision"] == pytest.approx(
        skm.precision_score(y, pred, average="macro", zero_division=0)
    )
    assert rep["macro_recall"] == pytest.approx(skm.recall_score(y, pred, average="macro"))
    assert rep["macro_f1"] == pytest.approx(skm.f1_score(y, pred, average="macro"))
    assert rep["roc_auc"] == pytest.approx(skm.roc_auc_score(y, p))
    assert rep["pr_auc"] == pytest.approx(skm.average_precision_score(y, p))
    assert (rep["n_barren"], rep["n_ore"]) == (support[0], support[1])


def test_curves_match_sklearn() -> None:
    y, p = _random_case(5)
    fpr, tpr = roc_curve(y, p)
    sk_fpr, sk_tpr, _ = skm.roc_curve(y, p, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr)
    np.testing.assert_allclose(tpr, sk_tpr)
    recall, precision = pr_curve(y, p)
    sk_prec, sk_rec, _ = skm.precision_recall_curve(y, p)
    # sklearn lists thresholds ascending and appends (recall 0, precision 1)
    np.testing.assert_allclose(recall, sk_rec[:-1][::-1])
    np.testing.assert_allclose(precision, sk_prec[:-1][::-1])


def test_report_zero_division_and_single_class() -> None:
    # nothing predicted ore: precision_ore undefined -> 0.0; recall_ore 0/2 = 0
    rep = classification_report([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4])
    assert rep["precision_ore"] == 0.0 and rep["recall_ore"] == 0.0 and rep["f1_ore"] == 0.0
    assert rep["precision_barren"] == pytest.approx(0.5)
    assert rep["roc_auc"] == pytest.approx(1.0)
    one_class = classification_report([1, 1, 1], [0.9, 0.2, 0.6])
    assert math.isnan(one_class["roc_auc"]) and math.isnan(one_class["pr_auc"])
    assert one_class["recall_ore"] == pytest.approx(2 / 3)
    assert one_class["precision_barren"] == 0.0  # one barren prediction, no barren truth
    assert math.isnan(roc_auc([0, 0], [0.1, 0.2]))
    assert math.isnan(average_precision([0, 0], [0.1, 0.2]))


def test_report_rejects_bad_input() -> None:
    with pytest.raises(InputDataError, match="unknown"):
        classification_report([1, 0, -1], [0.5, 0.5, 0.5])
    with pytest.raises(InputDataError, match=r"probabilities in \[0, 1\]"):
        classification_report([1, 0], [1.5, 0.2])
    with pytest.raises(InputDataError, match="non-finite"):
        classification_report([1, 0], [np.nan, 0.2])
    with pytest.raises(InputDataError, match="shape"):
        classification_report([1, 0], [0.5, 0.2, 0.1])
    with pytest.raises(InputDataError, match="threshold"):
        classification_report([1, 0], [0.5, 0.2], threshold=1.5)
    with pytest.raises(InputDataError, match="1-D"):
        classification_report(np.zeros((2, 2), dtype=int), [0.5, 0.2])
    with pytest.raises(InputDataError, match="same cells"):
        confusion([1, 0], [1, 0, 1])
    with pytest.raises(InputDataError, match="non-finite"):
        roc_auc([1, 0], [np.inf, 0.2])
    with pytest.raises(InputDataError, match="both classes"):
        roc_curve([1, 1], [0.3, 0.2])
    with pytest.raises(InputDataError, match="at least one ore"):
        pr_curve([0, 0], [0.3, 0.2])


def test_table1_layout_and_values() -> None:
    results = {"cnn": _random_case(0), "vit": _random_case(1)}
    df = table1(results)
    assert list(df.columns) == list(TABLE1_COLUMNS)
    assert list(df.index) == ["cnn", "vit"] and df.index.name == "model"
    y, p = results["vit"]
    assert df.loc["vit", "roc_auc"] == pytest.approx(skm.roc_auc_score(y, p))
    with pytest.raises(InputDataError, match="no results"):
        table1({})


def test_table_to_markdown() -> None:
    df = pd.DataFrame({"acc": [0.91234, np.nan], "name": ["a|b", "c"], "n": [3, 4]},
                      index=pd.Index(["m1", "m2"], name="model"))
    assert table_to_markdown(df, floatfmt=".2f").splitlines() == [
        "| model | acc | name | n |",
        "|:---|---:|:---|---:|",
        "| m1 | 0.91 | a\\|b | 3 |",
        "| m2 | nan | c | 4 |",
    ]
    plain = pd.DataFrame({"x": [1.0]})
    assert table_to_markdown(plain) == "| x |\n|---:|\n| 1.000 |"
    multi = pd.DataFrame({"v": [1.5]}, index=pd.MultiIndex.from_tuples([("g", "c")],
                                                                        names=["group", "count"]))
    assert table_to_markdown(multi, ".1f").splitlines()[2] == "| g | c | 1.5 |"


def test_summarise_folds_by_hand() -> None:
    idx = pd.Index(["a", "b"], name="model")
    f1 = pd.DataFrame({"accuracy": [0.6, 0.8], "roc_auc": [0.7, np.nan]}, index=idx)
    f2 = pd.DataFrame({"accuracy": [0.8, 0.9], "roc_auc": [0.9, 0.5]}, index=idx)
    f3 = pd.DataFrame({"accuracy": [0.7, 1.0], "roc_auc": [0.8, 0.7]}, index=idx)
    with pytest.warns(DroppedDataWarning, match="skipped 1 NaN"):
        out = summarise_folds([f1, f2, f3])
    assert list(out.columns) == ["accuracy_mean", "accuracy_std", "roc_auc_mean", "roc_auc_std",
                                 "n_folds"]
    # model a accuracy: 0.6, 0.8, 0.7 -> mean 0.7, deviations -0.1, 0.1, 0 -> var 0.02/2 = 0.01
    assert out.loc["a", "accuracy_mean"] == pytest.approx(0.7)
    assert out.loc["a", "accuracy_std"] == pytest.approx(0.1)
    # model b roc_auc: NaN skipped; 0.5, 0.7 -> mean 0.6, var (0.01 + 0.01) / 1 -> std 0.1414
    assert out.loc["b", "roc_auc_mean"] == pytest.approx(0.6)
    assert out.loc["b", "roc_auc_std"] == pytest.approx(math.sqrt(0.02))
    assert out.loc["a", "n_folds"] == 3
    single = summarise_folds([f2])
    assert math.isnan(single.loc["a", "accuracy_std"])
    with pytest.raises(InputDataError, match="no tables"):
        summarise_folds([])
    with pytest.raises(InputDataError, match="same function"):
        summarise_folds([f2, f2[["accuracy"]]])


def test_calibration_bins_by_hand() -> None:
    y = [0, 1, 1, 0, 1]
    p = [0.1, 0.2, 0.7, 0.9, 1.0]
    cal = calibration_bins(y, p, bins=2)  # bins [0, .5), [.5, 1]
    np.testing.assert_allclose(cal["mean_predicted"], [0.15, (0.7 + 0.9 + 1.0) / 3])
    np.testing.assert_allclose(cal["observed_frequency"], [0.5, 2 / 3])
    np.testing.assert_array_equal(cal["count"], [2, 3])
    empty = calibration_bins([1], [0.95], bins=4)
    assert empty["count"].tolist() == [0, 0, 0, 1] and np.isnan(empty["mean_predicted"][0])
    with pytest.raises(InputDataError, match="bins"):
        calibration_bins(y, p, bins=0)


# ---------------------------------------------------------------------------------------------
# success-rate curve, ranking AUC
# ---------------------------------------------------------------------------------------------


def test_success_rate_perfect_and_worst_ranking() -> None:
    n, k = 20, 4  # positives cover p = k / n = 0.2 of the area
    scores = np.arange(n, 0, -1, dtype=float)  # distinct, descending
    pos = np.zeros(n, dtype=bool)
    pos[:k] = True  # best-scored cells are the deposits
    # curve: (i/n, i/k) up to (p, 1), then flat at 1 -> area p/2 + (1 - p) = 1 - p/2 = 0.9
    perfect = success_rate_curve(scores, pos)
    assert perfect.auc == pytest.approx(1 - 0.2 / 2)
    assert perfect.area_fraction[0] == 0 and perfect.captured_fraction[0] == 0
    assert perfect.area_fraction[-1] == 1 and perfect.captured_fraction[-1] == 1
    assert perfect.captured_at(0.2) == pytest.approx(1.0)
    worst = success_rate_curve(-scores, pos)  # deposits ranked last -> area p/2 = 0.1
    assert worst.auc == pytest.approx(0.2 / 2)


def test_success_rate_ties_by_hand_and_order_free() -> None:
    scores = np.array([4.0, 3.0, 3.0, 2.0, 1.0])
    labels = np.array([1, 0, 1, -1, 0])  # label array: only 1 counts as positive
    c = success_rate_curve(scores, labels)
    # groups {4}, {3,3}, {2}, {1}: points (0,0) (.2,.5) (.6,1) (.8,1) (1,1)
    np.testing.assert_allclose(c.area_fraction, [0, 0.2, 0.6, 0.8, 1.0])
    np.testing.assert_allclose(c.captured_fraction, [0, 0.5, 1, 1, 1])
    # trapezoids: .2*.25 + .4*.75 + .4*1 = .05 + .3 + .4
    assert c.auc == pytest.approx(0.75)
    assert c.thresholds[0] == np.inf and c.thresholds[2] == 3.0
    perm = np.array([2, 4, 0, 1, 3])
    c2 = success_rate_curve(scores[perm], labels[perm])
    np.testing.assert_allclose(c2.captured_fraction, c.captured_fraction)
    assert c2.auc == c.auc
    flat = success_rate_curve(np.ones(7), np.array([1, 0, 0, 1, 0, 0, 0], dtype=bool))
    assert flat.auc == pytest.approx(0.5)  # all tied: one straight step along the diagonal


def test_success_rate_with_areas_and_nan() -> None:
    # cell areas 3, 1 (positive, score 2), 0 + 1 ... : x jumps by area share
    c = success_rate_curve([2.0, 1.0], [True, False], area=[1.0, 3.0])
    np.testing.assert_allclose(c.area_fraction, [0, 0.25, 1.0])
    assert c.auc == pytest.approx(0.25 * 0.5 + 0.75 * 1.0)
    with pytest.warns(DroppedDataWarning, match="dropped 1 of 3"):
        d = success_rate_curve([2.0, np.nan, 1.0], [True, True, False])
    np.testing.assert_allclose(d.area_fraction, [0, 0.5, 1.0])


def test_success_rate_errors() -> None:
    with pytest.raises(InputDataError, match="at least one known positive"):
        success_rate_curve([1.0, 2.0], [0, 0])
    with pytest.raises(InputDataError, match="one value per cell"):
        success_rate_curve([1.0, 2.0], [1])
    with pytest.raises(InputDataError, match=r"labels in \{-1, 0, 1\}"):
        success_rate_curve([1.0, 2.0], [1, 5])
    with pytest.raises(InputDataError, match="area has 1 cells"):
        success_rate_curve([1.0, 2.0], [1, 0], area=[1.0])
    with pytest.raises(InputDataError, match=">= 0"):
        success_rate_curve([1.0, 2.0], [1, 0], area=[1.0, -1.0])
    with pytest.raises(InputDataError, match="total area"):
        success_rate_curve([1.0, 2.0], [1, 0], area=[0.0, 0.0])


def test_ranking_auc() -> None:
    rng = np.random.default_rng(3)
    fert = rng.random(101)
    assert ranking_auc(2 * fert + 1, fert) == pytest.approx(1.0)
    assert ranking_auc(-fert, fert) == pytest.approx(0.0)
    # continuous truth: positives strictly above the median (50 of 101 cells)
    s = rng.random(101)
    expected = skm.roc_auc_score(fert > np.median(fert), s)
    assert ranking_auc(s, fert) == pytest.approx(expected)
    y = rng.integers(0, 2, 101)
    assert ranking_auc(s, y) == pytest.approx(skm.roc_auc_score(y, s))
    assert ranking_auc(s, y.astype(bool)) == pytest.approx(skm.roc_auc_score(y, s))
    assert math.isnan(ranking_auc(s[:3], np.full(3, 2.0)))  # constant truth -> one class
    with pytest.warns(DroppedDataWarning, match="dropped 1 of 3"):
        assert ranking_auc([0.1, 0.9, np.nan], [0.0, 5.0, 3.0]) == pytest.approx(1.0)
    with pytest.raises(InputDataError, match="quantile"):
        ranking_auc(s, fert, quantile=1.0)
    with pytest.raises(InputDataError, match="one value per cell"):
        ranking_auc(s, fert[:5])


# ---------------------------------------------------------------------------------------------
# permutation importance
# ---------------------------------------------------------------------------------------------


def _importance_case() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    n = 120
    y = rng.integers(0, 2, n)
    X = rng.normal(size=(n, 3, 2, 2))
    X[:, 0] += 2.0 * y[:, None, None]  # only layer 0 carries signal
    return X, y


def _predict(X: np.ndarray) -> np.ndarray:
    signal = X[:, 0].reshape(len(X), -1).mean(axis=1)  # crops (n, C, H, W) or features (n, C)
    return 1.0 / (1.0 + np.exp(-(signal - 1.0)))


def test_permutation_importance() -> None:
    X, y = _importance_case()
    X_before = X.copy()
    df = permutation_importance(_predict, X, y, layer_names=["au", "cu", "fault"], n_repeats=4)
    assert list(df.index) == ["au", "cu", "fault"] and df.index.name == "layer"
    assert df.loc["au", "auc_drop_mean"] > 0.3
    assert df.loc["cu", "auc_drop_mean"] == 0.0 and df.loc["fault", "auc_drop_std"] == 0.0
    assert df["baseline_auc"].iloc[0] == pytest.approx(skm.roc_auc_score(y, _predict(X)))
    np.testing.assert_array_equal(X, X_before)  # input untouched
    again = permutation_importance(_predict, X, y, layer_names=["au", "cu", "fault"],
                                   n_repeats=4)
    pd.testing.assert_frame_equal(df, again)  # same seed, same result
    one = permutation_importance(_predict, X[:, :, 0, 0], y, layer_names=["a", "b", "c"],
                                 n_repeats=1)
    assert np.isnan(one["auc_drop_std"]).all()


def test_permutation_importance_errors() -> None:
    X, y = _importance_case()
    with pytest.raises(InputDataError, match="3 layer names|C = 2"):
        permutation_importance(_predict, X, y, layer_names=["a", "b"])
    with pytest.raises(InputDataError, match="samples"):
        permutation_importance(_predict, X, y[:-1], layer_names=["a", "b", "c"])
    with pytest.raises(InputDataError, match="both classes"):
        permutation_importance(_predict, X, np.ones_like(y), layer_names=["a", "b", "c"])
    with pytest.raises(InputDataError, match="n_repeats"):
        permutation_importance(_predict, X, y, layer_names=["a", "b", "c"], n_repeats=0)
    with pytest.raises(InputDataError, match="predict_fn output"):
        permutation_importance(lambda d: np.ones(3), X, y, layer_names=["a", "b", "c"])


# ---------------------------------------------------------------------------------------------
# figures
# ---------------------------------------------------------------------------------------------


def _is_png(path) -> bool:
    data = path.read_bytes()
    return len(data) > 1000 and data[:8] == PNG_MAGIC


def test_plots_write_pngs(tmp_path) -> None:
    results = {"cnn": _random_case(0), "vit": _random_case(1)}
    cm = confusion(*(results["cnn"][0], (results["cnn"][1] >= 0.5).astype(int)))
    written = [
        plot_confusion_matrix(cm, tmp_path / "cm.png", title="cnn"),
        plot_confusion_matrices({"a": cm, "b": cm, "c": cm, "d": cm}, tmp_path / "sub" / "g.png",
                                ncols=3),
        plot_roc_curves(results, tmp_path / "roc.png"),
        plot_pr_curves(results, tmp_path / "pr.png"),
        plot_calibration(results, tmp_path / "cal.png", bins=5),
        plot_success_rate_curves(
            {name: success_rate_curve(p, y) for name, (y, p) in results.items()},
            tmp_path / "src.png",
        ),
    ]
    X, y = _importance_case()
    imp = permutation_importance(_predict, X, y, layer_names=["au", "cu", "fault"], n_repeats=2)
    written.append(plot_importance({"m1": imp, "m2": imp.iloc[:2]}, tmp_path / "imp.png"))
    for path in written:
        assert _is_png(path), path
    assert not list(tmp_path.rglob("*.tmp"))


def test_plot_errors(tmp_path) -> None:
    with pytest.raises(InputDataError, match="2x2"):
        plot_confusion_matrix(np.ones((3, 3)), tmp_path / "x.png", title="bad")
    with pytest.raises(InputDataError, match="2x2"):
        plot_confusion_matrices({"bad": np.ones(4)}, tmp_path / "x.png")
    with pytest.raises(InputDataError, match=">= 1 matrix"):
        plot_confusion_matrices({}, tmp_path / "x.png")
    with pytest.raises(InputDataError, match="no models"):
        plot_importance({}, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()

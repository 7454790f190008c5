"""Tests for oremap.baselines: logistic, random forest and weights of evidence on crops."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from oremap.baselines import (
    BASELINES,
    WOE_COLUMNS,
    Baseline,
    WeightsOfEvidence,
    WoeBaseline,
    crop_features,
    feature_names,
    fit_baseline,
    is_baseline,
    woe_contrast,
)
from oremap.errors import ConfigError, InputDataError, UnknownNameError

S = 8  # crop side used in tests (the API takes any S; oremap uses 32)


def separable(n: int, seed: int, *, c: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Crops (n, c, S, S): layer 0 is ~2 higher for ore, the other layers are noise."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(np.int64)
    X = rng.normal(0.0, 0.5, size=(n, c, S, S)).astype(np.float32)
    X[:, 0] += 2.0 * y[:, None, None]
    return X, y


def binary_crops(a: int, b: int, c: int, d: int, *, present: float = 1.0) -> tuple:
    """One-layer constant crops with N(B∩D)=a, N(B∩~D)=b, N(~B∩D)=c, N(~B∩~D)=d.

    Pattern B is ``value == present``; the other samples hold ``1 - present``.
    """
    values = np.array([present] * (a + b) + [1.0 - present] * (c + d))
    y = np.array([1] * a + [0] * b + [1] * c + [0] * d)
    X = np.broadcast_to(values[:, None, None, None], (values.size, 1, 4, 4)).copy()
    return X, y


def hand_woe(a: float, b: float, c: float, d: float) -> dict[str, float]:
    """Bonham-Carter's formulas written out for one 2x2 table of counts."""
    p_b_d = a / (a + c)  # P(B | D)
    p_b_notd = b / (b + d)  # P(B | ~D)
    w_plus = math.log(p_b_d / p_b_notd)
    w_minus = math.log((1.0 - p_b_d) / (1.0 - p_b_notd))
    contrast = w_plus - w_minus
    s_c = math.sqrt(1.0 / a + 1.0 / b + 1.0 / c + 1.0 / d)
    return {"W+": w_plus, "W-": w_minus, "C": contrast, "s(C)": s_c,
            "studentised_C": contrast / s_c}


# ---------------------------------------------------------------------------------------------
# names and features
# ---------------------------------------------------------------------------------------------


def test_is_baseline() -> None:
    assert BASELINES == ("logistic", "random_forest", "woe")
    assert all(is_baseline(n) for n in BASELINES)
    assert not is_baseline("resnet50")


def test_crop_features_values_and_names() -> None:
    X = np.arange(2 * 2 * 2 * 2, dtype=np.float32).reshape(2, 2, 2, 2)  # crop pixels 0..3 etc.
    F = crop_features(X, stats=("mean", "std", "min", "max"))
    assert F.shape == (2, 8) and F.dtype == np.float64
    np.testing.assert_allclose(F[0], [1.5, 5.5, math.sqrt(1.25), math.sqrt(1.25), 0, 4, 3, 7])
    np.testing.assert_allclose(F[1, :2], [9.5, 13.5])
    assert feature_names(["cu", "dist"], ("mean", "std")) == [
        "cu_mean", "dist_mean", "cu_std", "dist_std"]
    np.testing.assert_array_equal(crop_features(X), F[:, :2])


def test_crop_features_per_cell_values_are_one_pixel_crops() -> None:
    values = np.array([[1.0, 2.0], [3.0, -4.0]])
    F = crop_features(values, stats=("mean", "std"))
    np.testing.assert_array_equal(F, [[1.0, 2.0, 0.0, 0.0], [3.0, -4.0, 0.0, 0.0]])


def test_crop_features_chunked_equals_direct() -> None:
    X, _ = separable(1100, 0)  # more than one chunk of 512
    direct = X.astype(np.float64).reshape(1100, 3, -1)
    F = crop_features(X, stats=("mean", "std"))
    np.testing.assert_allclose(F, np.hstack([direct.mean(2), direct.std(2)]), rtol=1e-12)


def test_stats_errors() -> None:
    X, _ = separable(4, 0)
    with pytest.raises(UnknownNameError, match="unknown crop statistic.*choose from"):
        crop_features(X, stats=("median",))
    with pytest.raises(ConfigError, match="stats is empty"):
        crop_features(X, stats=())
    with pytest.raises(ConfigError, match="repeats a statistic"):
        feature_names(["a"], ("mean", "mean"))


def test_crop_shape_and_value_errors() -> None:
    with pytest.raises(InputDataError, match=r"expected crops \(n, C, S, S\)"):
        crop_features(np.zeros((3, 2, 4)))
    with pytest.raises(InputDataError, match="at least one sample"):
        crop_features(np.zeros((0, 2, 4, 4)))
    with pytest.raises(InputDataError, match="real numeric"):
        crop_features(np.full((2, 1, 2, 2), "a"))
    X = np.zeros((3, 2, 4, 4))
    X[1, 1, 0, 0] = np.nan
    X[2, 1, 3, 3] = np.inf
    with pytest.raises(InputDataError, match=r"2 non-finite values .*\{1: 2\}"):
        crop_features(X)


# ---------------------------------------------------------------------------------------------
# logistic and random forest
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["logistic", "random_forest"])
def test_sklearn_baselines_learn_separating_layer(name: str) -> None:
    X, y = separable(400, 1)
    b = fit_baseline(name, X[:250], y[:250], layer_names=["sig", "n1", "n2"], seed=3)
    p = b.predict_proba(X[250:])
    assert p.shape == (150,) and p.dtype == np.float64
    assert np.all((p >= 0) & (p <= 1))
    assert roc_auc_score(y[250:], p) > 0.95
    assert isinstance(b, Baseline) and not isinstance(b, WoeBaseline)
    assert (b.name, b.n_train, b.n_ore) == (name, 250, int(y[:250].sum()))
    assert b.feature_names == ["sig_mean", "n1_mean", "n2_mean"]


def test_logistic_defaults_and_options() -> None:
    X, y = separable(120, 2)
    b = fit_baseline("logistic", X, y, layer_names=["a", "b", "c"], seed=5, C=0.25)
    model = b.estimator.named_steps["model"]
    assert (model.C, model.class_weight, model.random_state) == (0.25, "balanced", 5)
    assert "scale" in b.estimator.named_steps


def test_random_forest_defaults_seed_and_std_features() -> None:
    X, y = separable(200, 3)
    names = ["a", "b", "c"]
    b1 = fit_baseline("random_forest", X, y, layer_names=names, stats=("mean", "std"), seed=7,
                      n_estimators=60)
    b2 = fit_baseline("random_forest", X, y, layer_names=names, stats=("mean", "std"), seed=7,
                      n_estimators=60)
    b3 = fit_baseline("random_forest", X, y, layer_names=names, stats=("mean", "std"), seed=8,
                      n_estimators=60)
    rf = b1.estimator
    assert (rf.n_estimators, rf.class_weight, rf.random_state, rf.n_features_in_) == (
        60, "balanced", 7, 6)
    np.testing.assert_array_equal(b1.predict_proba(X), b2.predict_proba(X))
    assert not np.array_equal(b1.predict_proba(X), b3.predict_proba(X))
    default = fit_baseline("random_forest", X[:60], y[:60], layer_names=names).estimator
    assert (default.n_estimators, default.min_samples_leaf, default.n_jobs) == (500, 2, 1)


def test_bool_labels_accepted() -> None:
    X, y = separable(80, 4)
    a = fit_baseline("logistic", X, y.astype(bool), layer_names=["a", "b", "c"])
    b = fit_baseline("logistic", X, y, layer_names=["a", "b", "c"])
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))


# ---------------------------------------------------------------------------------------------
# weights of evidence
# ---------------------------------------------------------------------------------------------


def test_woe_contrast_matches_hand_arithmetic() -> None:
    # a=N(B∩D)=30, b=N(B∩~D)=20, c=N(~B∩D)=10, d=N(~B∩~D)=140:
    # W+ = ln((30/40)/(20/160)) = ln 6, W- = ln((10/40)/(140/160)) = ln(2/7), C = ln 21.
    w = woe_contrast(30, 20, 10, 140)
    assert float(w["W+"]) == pytest.approx(math.log(6), abs=1e-12)
    assert float(w["W-"]) == pytest.approx(math.log(2 / 7), abs=1e-12)
    assert float(w["C"]) == pytest.approx(math.log(21), abs=1e-12)
    s_c = math.sqrt(1 / 30 + 1 / 20 + 1 / 10 + 1 / 140)
    assert float(w["s(C)"]) == pytest.approx(s_c, abs=1e-12)
    assert float(w["studentised_C"]) == pytest.approx(math.log(21) / s_c, abs=1e-12)
    assert not bool(w["haldane"])


def test_woe_table_binary_layer_known_counts() -> None:
    a, b, c, d = 30, 20, 10, 140
    X, y = binary_crops(a, b, c, d)
    model = fit_baseline("woe", X, y, layer_names=["fault_buffer"])
    table = model.woe_table()
    assert list(table.columns) == list(WOE_COLUMNS)
    row = table.iloc[0]
    assert (row["layer"], row["direction"], row["cutoff"]) == ("fault_buffer_mean", "high", 0.0)
    assert (row["n_B_D"], row["n_B_notD"], row["n_notB_D"], row["n_notB_notD"]) == (a, b, c, d)
    expected = hand_woe(a, b, c, d)
    for key, value in expected.items():
        assert row[key] == pytest.approx(value, abs=1e-12), key
    assert bool(row["used"]) and not bool(row["haldane"])
    # posterior = sigmoid(logit(prior) + W+ or W-), prior = 40 / 200
    prior_logit = math.log(0.2 / 0.8)
    p = model.predict_proba(np.stack([X[0], X[-1]]))  # one crop in B, one in ~B
    want = [1 / (1 + math.exp(-(prior_logit + expected[k]))) for k in ("W+", "W-")]
    np.testing.assert_allclose(p, want, rtol=1e-12)


def test_woe_zero_count_uses_haldane_correction() -> None:
    a, b, c, d = 25, 0, 15, 160  # no barren sample shows the pattern
    X, y = binary_crops(a, b, c, d)
    row = fit_baseline("woe", X, y, layer_names=["alteration"]).woe_table().iloc[0]
    expected = hand_woe(a + 0.5, b + 0.5, c + 0.5, d + 0.5)
    assert bool(row["haldane"]) and row["n_B_notD"] == 0
    for key, value in expected.items():
        assert np.isfinite(row[key])
        assert row[key] == pytest.approx(value, abs=1e-12), key


def test_woe_binary_low_is_favourable() -> None:
    # ore where the layer is 0 (e.g. "outside a barren unit"): B = x <= 0
    a, b, c, d = 30, 20, 10, 140
    X, y = binary_crops(a, b, c, d, present=0.0)
    row = fit_baseline("woe", X, y, layer_names=["unit"]).woe_table().iloc[0]
    assert (row["direction"], row["cutoff"]) == ("low", 0.0)
    assert row["W+"] == pytest.approx(math.log(6), abs=1e-12)
    assert row["C"] == pytest.approx(math.log(21), abs=1e-12)


def test_woe_distance_layer_detects_low_direction_and_best_cutoff() -> None:
    rng = np.random.default_rng(0)
    y = (rng.random(300) < 0.25).astype(np.int64)
    dist = np.where(y == 1, rng.uniform(0, 600, 300), rng.uniform(200, 3000, 300)).round()
    X = dist[:, None]  # per-cell values, one layer
    model = fit_baseline("woe", X, y, layer_names=["dist_fault_m"], n_cutoffs=1000)
    row = model.woe_table().iloc[0]
    assert row["direction"] == "low" and row["W+"] > 0 > row["W-"]
    # brute force: every distinct value below the maximum, both directions, hand formulas
    best = (-np.inf, None, None)
    for t in np.unique(dist)[:-1]:
        for direction, in_b in (("high", dist > t), ("low", dist <= t)):
            counts = [np.sum(in_b & (y == 1)), np.sum(in_b & (y == 0)),
                      np.sum(~in_b & (y == 1)), np.sum(~in_b & (y == 0))]
            if min(counts) == 0:
                counts = [k + 0.5 for k in counts]
            studc = hand_woe(*counts)["studentised_C"]
            if studc > best[0]:
                best = (studc, direction, t)
    assert row["studentised_C"] == pytest.approx(best[0], abs=1e-12)
    assert (row["direction"], row["cutoff"]) == (best[1], best[2])
    p = model.predict_proba(np.array([[50.0], [2500.0]]))
    assert p[0] > p[1]


def test_woe_leaves_out_weak_layers_and_keeps_best_if_none_pass() -> None:
    Xs, y = binary_crops(30, 20, 10, 140)  # strong layer, studentised C ~ 6.9
    n = y.size
    weak = np.zeros(n)
    weak[np.flatnonzero(y == 1)[:20]] = 1.0  # 20 of 40 ore, 80 of 160 barren: C = 0
    weak[np.flatnonzero(y == 0)[:80]] = 1.0
    X = np.concatenate([Xs, np.broadcast_to(weak[:, None, None, None], Xs.shape)], axis=1)
    m = fit_baseline("woe", X, y, layer_names=["strong", "weak"])
    table = m.woe_table()
    assert table["used"].tolist() == [True, False]
    assert table["studentised_C"].iloc[0] > 1.5 > table["studentised_C"].iloc[1]
    strong_only = fit_baseline("woe", Xs, y, layer_names=["strong"])
    np.testing.assert_allclose(m.predict_proba(X), strong_only.predict_proba(Xs), rtol=1e-12)
    # nothing passes a threshold of 100: the best layer alone is kept
    m100 = fit_baseline("woe", X, y, layer_names=["strong", "weak"],
                        min_studentised_contrast=100.0)
    assert m100.woe_table()["used"].tolist() == [True, False]


def test_woe_constant_layer_is_unused() -> None:
    X, y = binary_crops(30, 20, 10, 140)
    X = np.concatenate([X, np.full_like(X, 7.0)], axis=1)
    table = fit_baseline("woe", X, y, layer_names=["b", "flat"]).woe_table()
    assert table["direction"].tolist() == ["high", "none"]
    assert table["used"].tolist() == [True, False]
    assert np.isnan(table["cutoff"].iloc[1])


def test_woe_errors() -> None:
    X, y = binary_crops(3, 3, 3, 3)
    with pytest.raises(InputDataError, match="every feature .* is constant"):
        fit_baseline("woe", np.ones_like(X), y, layer_names=["flat"])
    with pytest.raises(ConfigError, match="n_cutoffs is 0"):
        fit_baseline("woe", X, y, layer_names=["a"], n_cutoffs=0)
    with pytest.raises(InputDataError, match="2 feature names for 1 features"):
        WeightsOfEvidence().fit(np.zeros((4, 1)) + np.arange(4)[:, None], [0, 1, 0, 1], ["a", "b"])
    with pytest.raises(InputDataError, match=r"expected a finite \(n, p\) feature matrix"):
        WeightsOfEvidence().fit(np.array([[0.0], [np.nan]]), [0, 1])
    with pytest.raises(InputDataError, match="only class 1"):
        WeightsOfEvidence().fit(np.arange(4.0)[:, None], [1, 1, 1, 1])
    w = WeightsOfEvidence().fit(np.arange(4.0)[:, None], [0, 1, 0, 1])
    assert w.table()["layer"].tolist() == ["x0"]
    with pytest.raises(InputDataError, match=r"expected \(n, 1\) features as in fit"):
        w.decision_function(np.zeros((2, 3)))
    np.testing.assert_array_equal(w.predict(np.arange(4.0)[:, None]).shape, (4,))
    logistic = fit_baseline("logistic", X, y, layer_names=["a"])
    assert not hasattr(logistic, "woe_table")


# ---------------------------------------------------------------------------------------------
# save / load, determinism, input errors
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", BASELINES)
def test_save_load_round_trip(name: str, tmp_path) -> None:
    X, y = separable(150, 5)
    b = fit_baseline(name, X, y, layer_names=["a", "b", "c"], stats=("mean", "std"), seed=2,
                     **({"n_estimators": 40} if name == "random_forest" else {}))
    path = tmp_path / f"{name}.pkl"
    b.save(path)
    b.save(path)  # overwriting is atomic and allowed
    assert [p.name for p in tmp_path.iterdir()] == [f"{name}.pkl"]  # no *.tmp left
    loaded = Baseline.load(path)
    assert type(loaded) is type(b) and loaded.name == name
    assert loaded.layer_names == ("a", "b", "c") and loaded.stats == ("mean", "std")
    assert loaded.crop_shape == (3, S, S)
    np.testing.assert_array_equal(loaded.predict_proba(X), b.predict_proba(X))
    if name == "woe":
        assert loaded.woe_table().equals(b.woe_table())


@pytest.mark.parametrize("name", BASELINES)
def test_deterministic_under_seed(name: str) -> None:
    X, y = separable(150, 6)
    opts = {"n_estimators": 40} if name == "random_forest" else {}
    p1 = fit_baseline(name, X, y, layer_names=["a", "b", "c"], seed=11, **opts).predict_proba(X)
    p2 = fit_baseline(name, X, y, layer_names=["a", "b", "c"], seed=11, **opts).predict_proba(X)
    np.testing.assert_array_equal(p1, p2)


def test_load_errors(tmp_path) -> None:
    with pytest.raises(InputDataError, match="does not exist"):
        Baseline.load(tmp_path / "missing.pkl")
    junk = tmp_path / "junk.pkl"
    junk.write_bytes(b"not a pickle")
    with pytest.raises(InputDataError, match="not a readable oremap baseline"):
        Baseline.load(junk)
    other = tmp_path / "other.pkl"
    other.write_bytes(pickle.dumps({"weights": [1, 2]}))
    with pytest.raises(InputDataError, match="does not hold an oremap baseline"):
        Baseline.load(other)


def test_fit_errors() -> None:
    X, y = separable(40, 7)
    names = ["a", "b", "c"]
    with pytest.raises(UnknownNameError, match=r"unknown baseline 'svm'.*'logistic'"):
        fit_baseline("svm", X, y, layer_names=names)
    with pytest.raises(InputDataError, match="only class 0"):
        fit_baseline("logistic", X, np.zeros(40, dtype=int), layer_names=names)
    with pytest.raises(InputDataError, match=r"one label per crop, shape \(40,\)"):
        fit_baseline("woe", X, y[:30], layer_names=names)
    with pytest.raises(InputDataError, match="2 layer_names for 3 layers"):
        fit_baseline("logistic", X, y, layer_names=["a", "b"])
    with pytest.raises(InputDataError, match="repeat a name"):
        fit_baseline("logistic", X, y, layer_names=["a", "a", "c"])
    with pytest.raises(InputDataError, match=r"expected 1 \(ore\) and 0 \(barren\)"):
        fit_baseline("random_forest", X, np.where(y == 1, 1, -1), layer_names=names)
    with pytest.raises(ConfigError, match=r"unknown option\(s\) \['n_trees'\]"):
        fit_baseline("random_forest", X, y, layer_names=names, n_trees=10)
    with pytest.raises(ConfigError, match="unknown option.*random_state"):
        fit_baseline("logistic", X, y, layer_names=names, random_state=1)


def test_predict_shape_mismatch() -> None:
    X, y = separable(60, 8)
    b = fit_baseline("logistic", X, y, layer_names=["a", "b", "c"])
    with pytest.raises(InputDataError, match=r"trained on \(3, 8, 8\)"):
        b.predict_proba(X[:, :2])
    with pytest.raises(InputDataError, match=r"crops of shape \(3, 16, 16\)"):
        b.predict_proba(np.zeros((2, 3, 16, 16)))
    assert "n_train=60" in repr(b)


def test_pu_bagging_draws_whole_cells_and_scores_out_of_bag() -> None:

    rng = np.random.default_rng(0)
    n_cells, per_cell = 200, 3
    groups = np.repeat(np.arange(n_cells), per_cell)
    ore_cell = rng.random(n_cells) < 0.1
    y = np.repeat(ore_cell, per_cell).astype(int)
    X = (rng.standard_normal((len(y), 2, 4, 4)) + 1.5 * y[:, None, None, None]).astype(
        np.float32)
    b = fit_baseline("logistic", X, y, layer_names=["a", "b"], seed=3, pu_bags=7,
                     pu_ratio=2.0, groups=groups)
    assert b.is_pu and len(b.estimator.estimators_) == 7
    n_pos = int(ore_cell.sum())
    for drawn in b.estimator.bag_groups_:
        assert len(drawn) <= 2 * n_pos and not ore_cell[drawn].any()  # unlabelled cells only
    bags = b.estimator.bag_proba(b.features(X))
    np.testing.assert_allclose(b.predict_proba(X), bags.mean(axis=0))
    oob = b.predict_proba_oob(X, groups)
    for i in np.flatnonzero(y == 0)[:60]:
        out = [t for t, g in enumerate(b.estimator.bag_groups_) if groups[i] not in g]
        want = bags[out, i].mean() if out else bags[:, i].mean()
        assert oob[i] == pytest.approx(want)
    # new cells (no bag drew them) get every bag; the ranking still separates ore
    assert roc_auc_score(y, b.predict_proba(X)) > 0.85
    again = fit_baseline("logistic", X, y, layer_names=["a", "b"], seed=3, pu_bags=7,
                         pu_ratio=2.0, groups=groups)
    np.testing.assert_array_equal(again.predict_proba(X), b.predict_proba(X))
    plain = fit_baseline("logistic", X, y, layer_names=["a", "b"], seed=3)
    assert not plain.is_pu
    np.testing.assert_array_equal(plain.predict_proba_oob(X, groups), plain.predict_proba(X))

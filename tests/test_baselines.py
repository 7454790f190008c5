"""Tests for oremap.baselines and oremap.woe: logistic, random forest and weights of evidence
(on unit cells) on crops."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pandas as pd
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
from oremap.woe import unit_cells

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
            "Stud(C)": contrast / s_c}


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
    assert float(w["s(W+)"]) == pytest.approx(math.sqrt(1 / 30 + 1 / 20), abs=1e-12)
    assert float(w["s(W-)"]) == pytest.approx(math.sqrt(1 / 10 + 1 / 140), abs=1e-12)
    s_c = math.sqrt(1 / 30 + 1 / 20 + 1 / 10 + 1 / 140)
    assert float(w["s(C)"]) == pytest.approx(s_c, abs=1e-12)
    assert float(w["Stud(C)"]) == pytest.approx(math.log(21) / s_c, abs=1e-12)
    # one-sided normal confidence that C > 0: Phi(Stud(C))
    phi = 0.5 * (1 + math.erf(math.log(21) / s_c / math.sqrt(2)))
    assert float(w["confidence"]) == pytest.approx(phi, abs=1e-12)
    assert float(woe_contrast(10, 10, 10, 10)["confidence"]) == pytest.approx(0.5, abs=1e-12)
    assert not bool(w["haldane"])


def test_woe_table_binary_layer_known_counts() -> None:
    a, b, c, d = 30, 20, 10, 140
    X, y = binary_crops(a, b, c, d)
    model = fit_baseline("woe", X, y, layer_names=["fault_buffer"])
    table = model.woe_table()
    assert list(table.columns) == list(WOE_COLUMNS)
    row = table.iloc[0]
    assert (row["layer"], row["direction"], row["cutoff"]) == ("fault_buffer_mean", "high", 0.0)
    assert row["pattern"] == "x > 0"
    assert (row["deposit_cells_in"], row["cells_in"], row["deposit_cells_out"],
            row["cells_out"]) == (a, a + b, c, c + d)
    expected = hand_woe(a, b, c, d)
    for key, value in expected.items():
        assert row[key] == pytest.approx(value, abs=1e-12), key
    assert bool(row["used"]) and not bool(row["haldane"])
    # posterior = sigmoid(logit(prior) + W+ or W-), prior = 40 / 200
    prior_logit = math.log(0.2 / 0.8)
    p = model.predict_proba(np.stack([X[0], X[-1]]))  # one crop in B, one in ~B
    want = [1 / (1 + math.exp(-(prior_logit + expected[k]))) for k in ("W+", "W-")]
    np.testing.assert_allclose(p, want, rtol=1e-12)


def test_woe_counts_unit_cells_not_crops() -> None:
    """Hand-made example: 10 cells, 3 ore, with 1 to 4 overlapping crops each (25 crops).

    Layer 0 (e.g. alteration, 0/1): cells 0, 1 (ore) and 3, 4 (barren) show it; with one count
    per cell N(B∩D)=2, N(B∩~D)=2, N(~B∩D)=1, N(~B∩~D)=5, whatever the crops per cell.
    """
    cell_value = np.array([1, 1, 0, 1, 1, 0, 0, 0, 0, 0], dtype=float)
    cell_ore = np.array([1, 1, 1, 0, 0, 0, 0, 0, 0, 0])
    n_crops = np.array([4, 3, 4, 1, 2, 3, 1, 2, 4, 1])  # ore cells have more crops
    cells = np.repeat(np.arange(10), n_crops)
    first = np.r_[0, np.cumsum(n_crops)[:-1]]
    centre = np.zeros(cells.size, dtype=bool)
    centre[first] = True
    rng = np.random.default_rng(3)
    # crops of one cell differ a little (they overlap neighbours); the centred crop holds the
    # cell's own value
    values = cell_value[cells] + np.where(centre, 0.0, rng.uniform(-0.3, 0.3, cells.size))
    X = values[:, None, None, None] * np.ones((1, 1, 2, 2))
    y = cell_ore[cells]
    model = fit_baseline("woe", X, y, layer_names=["alteration"], groups=cells, centre=centre,
                         n_cutoffs=1000)
    row = model.woe_table().iloc[0]
    a, b, c, d = 2, 2, 1, 5
    # Bonham-Carter (1994) by hand: P(B|D) = 2/3, P(B|~D) = 2/7
    w_plus, w_minus = math.log((2 / 3) / (2 / 7)), math.log((1 / 3) / (5 / 7))
    s_c = math.sqrt(1 / a + 1 / b + 1 / c + 1 / d)
    assert (row["direction"], row["cutoff"]) == ("high", 0.0)
    assert row["W+"] == pytest.approx(w_plus, abs=1e-12)
    assert row["W-"] == pytest.approx(w_minus, abs=1e-12)
    assert row["C"] == pytest.approx(w_plus - w_minus, abs=1e-12)
    assert row["s(W+)"] == pytest.approx(math.sqrt(1 / a + 1 / b), abs=1e-12)
    assert row["s(W-)"] == pytest.approx(math.sqrt(1 / c + 1 / d), abs=1e-12)
    assert row["s(C)"] == pytest.approx(s_c, abs=1e-12)
    assert row["Stud(C)"] == pytest.approx((w_plus - w_minus) / s_c, abs=1e-12)
    assert (row["deposit_cells_in"], row["cells_in"], row["deposit_cells_out"],
            row["cells_out"]) == (a, a + b, c, c + d)
    assert row["cells_in"] + row["cells_out"] == 10 != cells.size  # unit cells, not crops
    assert row["deposit_cells_in"] + row["deposit_cells_out"] == 3
    assert (row["layer_min"], row["layer_max"]) == (0.0, 1.0)  # the cells' own values
    assert model.estimator.prior_ == pytest.approx(0.3)  # 3 ore cells of 10 (crops: 11 / 25)
    # predictions stay defined for every crop and cell: posterior from the weights
    p = model.predict_proba(X)
    logit = math.log(0.3 / 0.7) + np.where(values > 0.0, w_plus, w_minus)
    np.testing.assert_allclose(p, 1 / (1 + np.exp(-logit)), rtol=1e-12)
    # without cell ids every crop is its own unit: the counts then sum to the crops
    per_crop = fit_baseline("woe", X, y, layer_names=["alteration"]).woe_table().iloc[0]
    assert per_crop["cells_in"] + per_crop["cells_out"] == cells.size


def test_woe_duplicated_crop_does_not_change_weights() -> None:
    rng = np.random.default_rng(7)
    n_cells = 60
    cells = np.repeat(np.arange(n_cells), 3)
    ore = (np.arange(n_cells) % 4 == 0).astype(int)
    y = ore[cells]
    X = (rng.normal(size=(cells.size, 2, 3, 3)) + 1.2 * y[:, None, None, None]).astype(np.float32)
    centre = np.tile([False, True, False], n_cells)
    base = fit_baseline("woe", X, y, layer_names=["a", "b"], groups=cells, centre=centre)
    # repeat a centred crop and a side crop of an ore cell, and every crop of a barren cell
    extra = np.r_[1, 2, np.flatnonzero(cells == 5)]
    for with_centre in (centre, None):
        ref = fit_baseline("woe", X, y, layer_names=["a", "b"], groups=cells, centre=with_centre)
        dup = fit_baseline("woe", np.concatenate([X, X[extra]]), np.r_[y, y[extra]],
                           layer_names=["a", "b"], groups=np.r_[cells, cells[extra]],
                           centre=None if with_centre is None else np.r_[centre, centre[extra]])
        pd.testing.assert_frame_equal(dup.woe_table(), ref.woe_table())
        np.testing.assert_array_equal(dup.predict_proba(X), ref.predict_proba(X))
        assert ref.woe_table()["cells_in"].add(ref.woe_table()["cells_out"]).eq(n_cells).all()
    # the per-crop fit, by contrast, counts the repeated crops again
    plain = fit_baseline("woe", X, y, layer_names=["a", "b"]).woe_table()
    plain_dup = fit_baseline("woe", np.concatenate([X, X[extra]]), np.r_[y, y[extra]],
                             layer_names=["a", "b"]).woe_table()
    assert not plain.equals(plain_dup)
    assert base.woe_table().equals(
        fit_baseline("woe", X, y, layer_names=["a", "b"], groups=cells,
                     centre=centre).woe_table())


def test_unit_cells_centre_else_mean_of_distinct_crops() -> None:
    F = np.array([[1.0], [3.0], [3.0], [10.0], [20.0], [5.0]])
    y = np.array([1, 1, 1, 0, 0, 0])
    cells = np.array([7, 7, 7, 2, 2, 9])
    centre = np.array([False, False, False, False, True, False])
    values, labels, ids = unit_cells(F, y, cells, centre)
    np.testing.assert_array_equal(ids, [2, 7, 9])
    np.testing.assert_array_equal(labels, [0, 1, 0])
    # cell 2: its centred crop (20); cell 7: mean of distinct crops 1, 3 (= 2, not 7/3); 9: 5
    np.testing.assert_array_equal(values[:, 0], [20.0, 2.0, 5.0])
    with pytest.raises(InputDataError, match=r"cells \[7\] hold crops of both labels"):
        unit_cells(F, np.array([1, 0, 1, 0, 0, 0]), cells)
    with pytest.raises(InputDataError, match=r"one cell id per crop, \(6,\)"):
        unit_cells(F, y, cells[:4])


def test_woe_cutoffs_in_layer_units_and_inside_range() -> None:
    """Crops normalised as the pipeline does, (raw - median) / IQR in float32: the table gives
    cut-offs and ranges in the raw layers' units, each cut-off inside [min, max]."""
    rng = np.random.default_rng(11)
    n_cells = 150
    ore = (rng.random(n_cells) < 0.2).astype(int)
    dist = np.where(ore == 1, rng.uniform(0, 400, n_cells), rng.uniform(0, 3000, n_cells))
    dist[:10] = 0.0  # cells on a fault: distance 0, never negative
    assay = rng.lognormal(0.0, 1.0, n_cells) + 2.0 * ore
    raw_cells = np.stack([dist, assay, rng.uniform(-50, 50, n_cells)], axis=1)
    cells = np.repeat(np.arange(n_cells), 2)
    centre = np.tile([True, False], n_cells)
    raw = raw_cells[cells] * np.where(centre, 1.0, 1.05)[:, None]  # side crops differ
    X_raw = np.broadcast_to(raw[:, :, None, None], (*raw.shape, 2, 2)).astype(np.float32)
    center = np.median(raw, axis=0).astype(np.float32)
    scale = (np.percentile(raw, 75, axis=0) - np.percentile(raw, 25, axis=0)).astype(np.float32)
    X = ((X_raw - center[:, None, None]) / scale[:, None, None]).astype(np.float32)
    y = ore[cells]
    model = fit_baseline("woe", X, y, layer_names=["dist_fault_m", "au_ppb", "noise"],
                         groups=cells, centre=centre, normalisation=(center, scale))
    table = model.woe_table()
    np.testing.assert_allclose(table["layer_min"], raw_cells.min(axis=0), rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(table["layer_max"], raw_cells.max(axis=0), rtol=1e-5)
    assert table["layer_min"].iloc[0] == 0.0  # not -1e-6: a distance is never negative
    assert (table["cutoff"] >= table["layer_min"]).all()
    assert (table["cutoff"] <= table["layer_max"]).all()
    assert (table["cutoff"] >= 0).iloc[:2].all()
    dist_row = table.iloc[0]
    assert dist_row["direction"] == "low" and dist_row["pattern"].startswith("x <= ")
    # the cut-off is an observed cell value, in metres
    assert np.min(np.abs(raw_cells[:, 0] - dist_row["cutoff"])) < 1e-3 * dist_row["cutoff"]
    # the same model fitted without normalisation gives the same weights, cut-offs in z units
    z = fit_baseline("woe", X, y, layer_names=["dist_fault_m", "au_ppb", "noise"],
                     groups=cells, centre=centre).woe_table()
    pd.testing.assert_frame_equal(z.drop(columns=["cutoff", "layer_min", "layer_max",
                                                  "pattern"]),
                                  table.drop(columns=["cutoff", "layer_min", "layer_max",
                                                      "pattern"]))
    np.testing.assert_allclose(z["cutoff"] * scale + center, table["cutoff"], rtol=1e-9)
    with pytest.raises(InputDataError, match=r"expected \(3,\) each"):
        fit_baseline("woe", X, y, layer_names=["a", "b", "c"], normalisation=(center[:2], scale))


def test_woe_zero_count_uses_haldane_correction() -> None:
    a, b, c, d = 25, 0, 15, 160  # no barren sample shows the pattern
    X, y = binary_crops(a, b, c, d)
    row = fit_baseline("woe", X, y, layer_names=["alteration"]).woe_table().iloc[0]
    expected = hand_woe(a + 0.5, b + 0.5, c + 0.5, d + 0.5)
    assert bool(row["haldane"]) and row["cells_in"] - row["deposit_cells_in"] == 0
    for key, value in expected.items():
        assert np.isfinite(row[key])
        assert row[key] == pytest.approx(value, abs=1e-12), key


def test_woe_binary_low_is_favourable() -> None:
    # ore where the layer is 0 (e.g. "outside a barren unit"): B = x <= 0
    a, b, c, d = 30, 20, 10, 140
    X, y = binary_crops(a, b, c, d, present=0.0)
    row = fit_baseline("woe", X, y, layer_names=["unit"]).woe_table().iloc[0]
    assert (row["direction"], row["cutoff"], row["pattern"]) == ("low", 0.0, "x <= 0")
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
            studc = hand_woe(*counts)["Stud(C)"]
            if studc > best[0]:
                best = (studc, direction, t)
    assert row["Stud(C)"] == pytest.approx(best[0], abs=1e-12)
    assert (row["direction"], row["cutoff"]) == (best[1], best[2])
    p = model.predict_proba(np.array([[50.0], [2500.0]]))
    assert p[0] > p[1]


def test_woe_quantile_cutoffs_are_observed_values() -> None:
    rng = np.random.default_rng(4)
    y = (rng.random(500) < 0.3).astype(np.int64)
    x = rng.exponential(100.0, 500) + 80.0 * y
    table = fit_baseline("woe", x[:, None], y, layer_names=["d"], n_cutoffs=7).woe_table()
    row = table.iloc[0]
    assert row["cutoff"] in set(x.tolist())  # inverted-CDF quantile: an observed value
    assert x.min() <= row["cutoff"] < x.max()
    assert (row["layer_min"], row["layer_max"]) == (x.min(), x.max())


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
    assert table["Stud(C)"].iloc[0] > 1.5 > table["Stud(C)"].iloc[1]
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
    assert np.isnan(table["cutoff"].iloc[1]) and table["pattern"].iloc[1] == ""
    assert table["cells_out"].iloc[1] == 200 and (table["layer_min"].iloc[1] == 7.0)


def test_woe_with_pu_bagging_counts_each_bag_cell_once() -> None:
    rng = np.random.default_rng(2)
    n_cells = 80
    cells = np.repeat(np.arange(n_cells), 2)
    ore = (np.arange(n_cells) < 12).astype(int)
    y = ore[cells]
    X = (rng.normal(size=(cells.size, 1, 2, 2)) + 2.0 * y[:, None, None, None]).astype(
        np.float32)
    centre = np.tile([True, False], n_cells)
    b = fit_baseline("woe", X, y, layer_names=["a"], pu_bags=3, groups=cells, centre=centre)
    for est, drawn in zip(b.estimator.estimators_, b.estimator.bag_groups_, strict=True):
        # the 12 ore cells and the distinct unlabelled cells drawn (with replacement)
        assert est.n_cells_ == 12 + len(drawn) and est.n_ore_cells_ == 12
    row = b.woe_table().iloc[0]
    assert row["cells_in"] + row["cells_out"] == b.estimator.estimators_[0].n_cells_


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

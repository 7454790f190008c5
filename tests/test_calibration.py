"""Calibration of members' P(ore) on their out-of-fold predictions (issue #23, item 3)."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest

from oremap.ensemble.calibration import (
    METHODS,
    Calibrator,
    calibrate_table,
    cross_fitted,
    expected_calibration_error,
    fit_calibrator,
    fit_isotonic,
    fit_platt,
    fit_temperature,
    reliability_table,
)
from oremap.errors import DroppedDataWarning, InputDataError, UnknownNameError
from oremap.evaluate.metrics import roc_auc
from oremap.recommend import calibration_error

GRID = np.linspace(0.0, 1.0, 401)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _logit(q: np.ndarray) -> np.ndarray:
    return np.log(q) - np.log1p(-q)


def _truth(n: int = 5000, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True P(ore) ``q`` (mostly low, as prospectivity) and two independent label draws."""
    rng = np.random.default_rng(seed)
    q = np.clip(rng.beta(1.0, 4.0, n), 1e-4, 1 - 1e-4)
    return q, (rng.uniform(size=n) < q).astype(int), (rng.uniform(size=n) < q).astype(int)


def _monotone(cal: Calibrator) -> None:
    out = cal.apply(GRID)
    assert np.all(np.diff(out) >= 0)
    assert out.min() >= 0.0 and out.max() <= 1.0


def _table(n: int = 3000, folds: int = 5, seed: int = 1) -> pd.DataFrame:
    """An ensemble table: overconfident held-out scores ``oof_cnn`` (inflated, q ** 0.3), a map
    ``p_cnn`` and fold maps ``p_cnn_f<k>``; 10 % unknown cells, 5 % never held out."""
    rng = np.random.default_rng(seed)
    q = np.clip(rng.beta(1.0, 4.0, n), 1e-3, 1 - 1e-3)
    label = (rng.uniform(size=n) < q).astype(int)
    label[rng.uniform(size=n) < 0.1] = -1
    fold = rng.integers(0, folds, n)
    fold[rng.uniform(size=n) < 0.05] = -1
    oof = q ** 0.3
    oof[fold == -1] = np.nan
    t = pd.DataFrame({"label": label, "test_fold": fold, "oof_cnn": oof,
                      "p_cnn": np.clip(q * 1.05, 0, 1) ** 0.3, "x": np.arange(n)})
    for k in range(folds):
        t[f"p_cnn_f{k}"] = np.clip(q + rng.normal(0, 0.01, n), 0, 1) ** 0.3
    t.loc[3, "p_cnn"] = np.nan
    return t


@pytest.mark.parametrize("fit", [fit_platt, fit_isotonic])
def test_platt_and_isotonic_recover_an_inflated_member(fit) -> None:
    q, y_fit, y_test = _truth()
    p = q ** 0.3  # inflated: a reported 0.7 is ore about 30 % of the time
    assert expected_calibration_error(y_test, p) > 0.25
    cal = fit(y_fit, p)
    assert expected_calibration_error(y_test, cal.apply(p)) < 0.05
    _monotone(cal)


def test_temperature_recovers_an_overconfident_member() -> None:
    q, y_fit, y_test = _truth()
    p = _sigmoid(2.5 * _logit(q))  # overconfident by a temperature of 2.5
    assert expected_calibration_error(y_test, p) > 0.08
    cal = fit_temperature(y_fit, p)
    assert cal.params["t"] == pytest.approx(2.5, abs=0.25)
    assert expected_calibration_error(y_test, cal.apply(p)) < 0.05
    _monotone(cal)
    platt = fit_platt(y_fit, p)  # the same map, in Platt's two parameters
    assert platt.params["a"] == pytest.approx(0.4, abs=0.05)
    assert expected_calibration_error(y_test, platt.apply(p)) < 0.05


def test_temperature_leaves_a_calibrated_member_nearly_unchanged() -> None:
    q, y_fit, _ = _truth(seed=3)
    cal = fit_temperature(y_fit, q)
    assert cal.params["t"] == pytest.approx(1.0, abs=0.1)
    assert np.abs(cal.apply(q) - q).max() < 0.03


def test_temperature_cannot_shift_the_base_rate() -> None:
    """0.5 is a fixed point of temperature scaling (documented: Platt fixes a shift)."""
    q, y_fit, _ = _truth()
    cal = fit_temperature(y_fit, q ** 0.3)
    assert cal.apply(np.array([0.5]))[0] == pytest.approx(0.5)


@pytest.mark.parametrize("method", METHODS)
def test_nan_stays_nan_and_json_round_trips(method: str) -> None:
    q, y, _ = _truth(n=800)
    cal = fit_calibrator(y, q ** 0.3, method)
    p = np.array([np.nan, 0.0, 0.2, 0.7, 1.0, np.nan])
    out = cal.apply(p)
    assert np.isnan(out[[0, 5]]).all() and np.isfinite(out[1:5]).all()
    assert ((out[1:5] >= 0) & (out[1:5] <= 1)).all()
    text = cal.to_json()
    assert json.loads(text)["method"] == method
    back = Calibrator.from_json(text)
    assert back == cal
    np.testing.assert_array_equal(back.apply(p), out)


def test_identity_and_unknown_methods() -> None:
    p = np.array([0.1, np.nan, 0.9])
    np.testing.assert_array_equal(Calibrator("identity").apply(p), p)
    with pytest.raises(UnknownNameError):
        Calibrator("beta")
    with pytest.raises(UnknownNameError):
        fit_calibrator([0, 1], [0.2, 0.8], "beta")
    with pytest.raises(UnknownNameError):
        cross_fitted(_table(n=200), "cnn", "beta")


def test_fitting_needs_both_classes_and_probabilities() -> None:
    with pytest.raises(InputDataError, match="ore and barren"):
        fit_platt([0, 0, 0], [0.1, 0.2, 0.3])
    with pytest.raises(InputDataError, match=r"\[0, 1\]"):
        fit_temperature([0, 1], [0.1, 1.3])
    with pytest.raises(InputDataError, match="0 \\(barren\\) or 1"):
        fit_isotonic([0, 1, -1], [0.1, 0.5, 0.3])
    # NaN scores are ignored when fitting
    a = fit_platt([0, 1, 0, 1, 1], [0.1, 0.8, 0.3, 0.6, np.nan])
    b = fit_platt([0, 1, 0, 1], [0.1, 0.8, 0.3, 0.6])
    assert a == b


@pytest.mark.parametrize("method", METHODS)
def test_cross_fitting_never_uses_a_cells_own_label(method: str) -> None:
    t = _table()
    before = cross_fitted(t, "cnn", method)
    flipped = t.copy()
    in0 = (flipped["test_fold"] == 0) & flipped["label"].isin([0, 1])
    flipped.loc[in0, "label"] = 1 - flipped.loc[in0, "label"]
    after = cross_fitted(flipped, "cnn", method)
    f0 = t["test_fold"].to_numpy() == 0
    np.testing.assert_array_equal(after[f0], before[f0])
    # the other folds' calibrators were fitted on fold 0's labels: they do change
    rest = t["test_fold"].to_numpy() > 0
    assert np.abs(after[rest] - before[rest]).max() > 0.01
    never = t["test_fold"].to_numpy() == -1
    assert np.isnan(before[never]).all() and np.isfinite(before[~never]).all()


def test_cross_fitted_scores_are_calibrated_on_held_out_cells() -> None:
    t = _table(n=5000)
    cal = cross_fitted(t, "cnn", "platt")
    known = t["label"].isin([0, 1]).to_numpy() & np.isfinite(cal)
    y = t["label"].to_numpy()[known]
    assert expected_calibration_error(y, t["oof_cnn"].to_numpy()[known]) > 0.25
    assert expected_calibration_error(y, cal[known]) < 0.05


@pytest.mark.parametrize("method", ["platt", "temperature"])
def test_parametric_calibration_keeps_each_folds_ranking(method: str) -> None:
    t = _table()
    cal = cross_fitted(t, "cnn", method)
    for k in range(5):
        rows = (t["test_fold"] == k).to_numpy() & t["label"].isin([0, 1]).to_numpy()
        y = t["label"].to_numpy()[rows]
        raw = roc_auc(y, t["oof_cnn"].to_numpy()[rows])
        assert 0.6 < raw < 0.95
        assert roc_auc(y, cal[rows]) == pytest.approx(raw, abs=1e-12)


def test_a_fold_without_enough_labels_elsewhere_keeps_raw_scores() -> None:
    t = _table(n=600)
    # every deposit lies in fold 0: fold 0's calibrator would see no ore
    t.loc[(t["label"] == 1) & (t["test_fold"] != 0), "label"] = 0
    with pytest.warns(DroppedDataWarning, match=r"test fold\(s\) 0 keep their raw"):
        out = cross_fitted(t, "cnn", "platt")
    f0 = (t["test_fold"] == 0).to_numpy()
    np.testing.assert_array_equal(out[f0], t["oof_cnn"].to_numpy()[f0])
    assert np.abs(out[~f0 & (t["test_fold"] > 0).to_numpy()]
                  - t["oof_cnn"].to_numpy()[~f0 & (t["test_fold"] > 0).to_numpy()]).max() > 0.1


def test_calibrate_table_maps_every_member_column() -> None:
    t = _table()
    orig = t.copy()
    out, cals = calibrate_table(t, ["cnn"], "platt")
    pd.testing.assert_frame_equal(t, orig)  # the input is left alone
    known = t["label"].isin([0, 1]) & t["oof_cnn"].notna() & (t["test_fold"] >= 0)
    final = fit_platt(t.loc[known, "label"], t.loc[known, "oof_cnn"])
    assert cals == {"cnn": final}
    np.testing.assert_array_equal(out["oof_cnn"], cross_fitted(t, "cnn", "platt"))
    for c in ["p_cnn"] + [f"p_cnn_f{k}" for k in range(5)]:
        np.testing.assert_allclose(out[c], final.apply(t[c].to_numpy()), equal_nan=True)
        assert not np.allclose(out[c].dropna(), t[c].dropna())
    assert np.isnan(out.loc[3, "p_cnn"])
    pd.testing.assert_frame_equal(out[["label", "test_fold", "x"]],
                                  t[["label", "test_fold", "x"]])


def test_calibrate_table_leaves_a_member_without_labels_uncalibrated() -> None:
    t = _table(n=300)
    t["label"] = np.where(t["label"] == 1, 0, t["label"])
    with pytest.warns(DroppedDataWarning) as caught:
        out, cals = calibrate_table(t, ["cnn"], "isotonic")
    messages = [str(w.message) for w in caught]
    assert any("left uncalibrated" in m for m in messages)
    assert any("test fold(s) 0, 1, 2, 3, 4 keep their raw" in m for m in messages)
    assert cals["cnn"].method == "identity"
    np.testing.assert_array_equal(out["p_cnn"], t["p_cnn"])
    with pytest.raises(InputDataError, match="oof_rf"):
        calibrate_table(t, ["rf"], "platt")


def test_ece_matches_the_recommendation_and_reliability_table() -> None:
    t = _table(n=1000)
    known = t["label"].isin([0, 1])
    ece = expected_calibration_error(t.loc[known, "label"], t.loc[known, "oof_cnn"])
    assert ece == pytest.approx(calibration_error(t, "cnn"), abs=1e-12)
    rel = reliability_table(t.loc[known, "label"], t.loc[known, "oof_cnn"], bins=5)
    assert list(rel.columns) == ["bin_lo", "bin_hi", "mean_predicted", "observed_frequency",
                                 "count", "gap"]
    assert rel["count"].sum() == int((known & t["oof_cnn"].notna()).sum())
    # by hand: two bins, 0.2 predicted with 1 of 4 ore, 0.9 predicted with 1 of 1
    y = np.array([0, 0, 0, 1, 1])
    p = np.array([0.2, 0.2, 0.2, 0.2, 0.9])
    assert expected_calibration_error(y, p) == pytest.approx((4 * 0.05 + 1 * 0.1) / 5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(expected_calibration_error([1], [np.nan]))

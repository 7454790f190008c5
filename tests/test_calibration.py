"""Calibration of members' P(ore) on their out-of-fold predictions (issue #23, item 3)."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest

from oremap.ensemble import (
    RuleParams,
    calibration_table,
    combine,
    fit_out_of_fold,
    held_out_scores,
    member_calibrators,
    read_params,
    separation,
    shrunk_weights,
    write_params,
)
from oremap.ensemble.calibration import (
    METHODS,
    Calibrator,
    expected_calibration_error,
    fit_calibrator,
    fit_isotonic,
    fit_platt,
    fit_temperature,
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
    """A cell table of two members: ``lenet``, overconfident (inflated, q ** 0.3), and
    ``random_forest``, noisier but calibrated; 10 % unknown cells, 5 % never held out."""
    rng = np.random.default_rng(seed)
    q = np.clip(rng.beta(1.0, 4.0, n), 1e-3, 1 - 1e-3)
    label = (rng.uniform(size=n) < q).astype(int)
    label[rng.uniform(size=n) < 0.1] = -1
    fold = rng.integers(0, folds, n)
    fold[rng.uniform(size=n) < 0.05] = -1
    cnn = q ** 0.3
    rf = np.clip(q + rng.normal(0, 0.15, n), 0, 1)
    t = pd.DataFrame({"label": label, "test_fold": fold, "x": np.arange(n)})
    for name, v in (("lenet", cnn), ("random_forest", rf)):
        t[f"p_{name}"] = v
        t[f"oof_{name}"] = np.where(fold == -1, np.nan, v)
    return t


MEMBERS = ["lenet", "random_forest"]
RULES = ["simple_average", "weighted_average", "majority_voting", "stacking"]


def _fit(t: pd.DataFrame, method: str | None = "platt"):
    return fit_out_of_fold(t, MEMBERS, {m: method for m in MEMBERS}, metric="auc", k=1,
                           threshold=0.5, seed=0)


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
        _fit(_table(n=200), "beta")


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




@pytest.mark.parametrize("method", ["platt", "isotonic", "temperature"])
def test_out_of_fold_fitting_never_uses_a_folds_own_labels(method: str) -> None:
    t = _table()
    before = _fit(t, method)
    flipped = t.copy()
    in0 = (flipped["test_fold"] == 0) & flipped["label"].isin([0, 1])
    flipped.loc[in0, "label"] = 1 - flipped.loc[in0, "label"]
    after = _fit(flipped, method)
    assert after.fold(0).calibrators == before.fold(0).calibrators
    np.testing.assert_array_equal(after.fold(0).weights, before.fold(0).weights)
    assert after.fold(0).coef.tolist() == before.fold(0).coef.tolist()
    # the other folds' parameters were fitted on fold 0's labels: they change
    assert after.fold(1).calibrators != before.fold(1).calibrators
    s0 = held_out_scores(t, MEMBERS, RULES, before, threshold=0.5)
    s1 = held_out_scores(flipped, MEMBERS, RULES, after, threshold=0.5)
    n0 = int(((t["test_fold"] == 0) & t["label"].isin([0, 1])
              & t["oof_lenet"].notna()).sum())  # fold 0 comes first
    for name in [*MEMBERS, *RULES]:
        np.testing.assert_array_equal(s0[name][1][:n0], s1[name][1][:n0])


def test_held_out_members_and_averages_are_calibrated() -> None:
    t = _table(n=5000)
    params = _fit(t)
    df = calibration_table(t, MEMBERS, RULES, params, threshold=0.5)
    assert df.loc["lenet", "calibration"] == "platt"
    assert df.loc["lenet", "ece_raw"] > 0.25 and df.loc["lenet", "ece"] < 0.05
    for rule in ("simple_average", "weighted_average"):
        assert df.loc[rule, "calibration"] == "calibrated members"
        assert df.loc[rule, "ece_raw"] > 0.1 and df.loc[rule, "ece"] < 0.05
    assert df.loc["majority_voting", "calibration"] == "none"
    assert df.loc["majority_voting", "ece"] == df.loc["majority_voting", "ece_raw"]
    assert df["ore_share"].nunique() == 1
    assert abs(df.loc["weighted_average", "mean_p"] - df.loc["lenet", "ore_share"]) < 0.02
    known = t["label"].isin([0, 1]) & (t["test_fold"] >= 0)
    assert (df["cells"] == int(known.sum())).all()


@pytest.mark.parametrize("method", ["platt", "temperature"])
def test_parametric_calibration_keeps_each_folds_ranking(method: str) -> None:
    t = _table()
    params = _fit(t, method)
    raw = held_out_scores(t, MEMBERS, [], params, threshold=0.5, calibrated=False)
    cal = held_out_scores(t, MEMBERS, [], params, threshold=0.5)
    y = raw["lenet"][0]
    assert 0.6 < roc_auc(y, raw["lenet"][1]) < 0.95
    folds = np.sort(t.loc[t["label"].isin([0, 1]) & t["oof_lenet"].notna(), "test_fold"])
    for k in range(5):
        here = folds == k
        assert roc_auc(y[here], cal["lenet"][1][here]) == pytest.approx(
            roc_auc(y[here], raw["lenet"][1][here]), abs=1e-12)


def test_calibrators_apply_to_the_averaging_rules_only() -> None:
    probs = np.array([[0.9, 0.6, 0.2], [0.7, 0.4, 0.1]])
    halve = Calibrator("platt", {"a": 1.0, "b": -np.log(4.0)})
    params = RuleParams(weights=np.array([0.5, 0.5]), calibrators=(halve, halve))
    plain = RuleParams(weights=np.array([0.5, 0.5]))
    avg = combine("simple_average", probs, params=params)
    np.testing.assert_allclose(avg.probability, halve.apply(probs).mean(axis=0))
    vote = combine("majority_voting", probs, params=params)
    assert vote.prediction.tolist() == combine("majority_voting", probs,
                                               params=plain).prediction.tolist()
    short = RuleParams(weights=np.array([0.5, 0.5]), calibrators=(halve,))
    with pytest.raises(InputDataError, match="1 calibrators for 2 members"):
        combine("simple_average", probs, params=short)


def test_weights_shrink_to_equal_when_members_cannot_be_told_apart() -> None:
    rng = np.random.default_rng(3)
    y = (rng.uniform(size=60) < 0.2).astype(int)
    twins = np.vstack([np.clip(0.3 * y + rng.uniform(0, 0.7, 60), 0, 1) for _ in range(3)])
    sep = separation(y, twins, seed=0)
    w, _ = shrunk_weights(y, twins, metric="auc", threshold=0.5, seed=0)
    assert sep.shrinkage < 0.5
    assert np.abs(w - 1 / 3).max() < 0.1
    # one strong member among noise: the weights follow the skill
    y = (rng.uniform(size=2000) < 0.2).astype(int)
    mixed = np.vstack([np.clip(0.5 * y + rng.uniform(0, 0.5, 2000), 0, 1),
                       rng.uniform(size=2000), rng.uniform(size=2000)])
    sep = separation(y, mixed, seed=0)
    w, _ = shrunk_weights(y, mixed, metric="auc", threshold=0.5, seed=0)
    assert sep.shrinkage > 0.9 and sep.noise < sep.spread
    assert w[0] > 0.9 and w.sum() == pytest.approx(1.0)
    assert separation(y, mixed[:1], seed=0).shrinkage == 0.0


def test_too_few_labels_to_calibrate_or_cross_fit() -> None:
    y = np.array([0, 0, 0, 1, 0])
    probs = np.array([[0.1, 0.2, 0.3, 0.9, 0.4]])
    with pytest.warns(DroppedDataWarning, match="too few to calibrate"):
        cals = member_calibrators(y, probs, ["platt"])
    assert cals == (Calibrator("identity"),)
    t = _table(n=600)
    # every deposit lies in fold 0: fold 0's training side holds no ore
    t.loc[(t["label"] == 1) & (t["test_fold"] != 0), "label"] = 0
    with pytest.raises(InputDataError, match='training side of test fold 0 holds 0 ore.*'
                       'fit_on = "validation"'):
        _fit(t)
    with pytest.raises(InputDataError, match=r"predict/predictions.csv.*oof_gbm.*rerun"):
        fit_out_of_fold(t, ["gbm"], {"gbm": "platt"}, metric="auc", k=1, threshold=0.5,
                        seed=0)


def test_params_with_calibrators_round_trip_through_weights_json(tmp_path) -> None:
    params = _fit(_table(n=1500), "isotonic")
    path = tmp_path / "weights.json"
    write_params(path, MEMBERS, params, "auc")
    stored = json.loads(path.read_text())
    assert stored["source"] == "out_of_fold"
    assert stored["calibration"]["lenet"]["method"] == "isotonic"
    assert 0.0 <= stored["shrinkage"] <= 1.0
    assert stored["fitted_on"]["ore_cells"] > 0
    back = read_params(path, MEMBERS)
    assert back.final.calibrators == params.final.calibrators
    assert back.fold(2).shrinkage == params.fold(2).shrinkage
    assert back.fold(2).fitted_on == params.fold(2).fitted_on
    probs = np.vstack([np.linspace(0, 1, 11)] * 2)
    for rule in ("weighted_average", "stacking"):
        np.testing.assert_allclose(combine(rule, probs, params=back.final).probability,
                                   combine(rule, probs, params=params.final).probability)


def test_ece_matches_the_recommendation() -> None:
    t = _table(n=1000)
    known = t["label"].isin([0, 1])
    ece = expected_calibration_error(t.loc[known, "label"], t.loc[known, "oof_lenet"])
    assert ece == pytest.approx(calibration_error(t, "lenet"), abs=1e-12)
    # by hand: two bins, 0.2 predicted with 1 of 4 ore, 0.9 predicted with 1 of 1
    y = np.array([0, 0, 0, 1, 1])
    p = np.array([0.2, 0.2, 0.2, 0.2, 0.9])
    assert expected_calibration_error(y, p) == pytest.approx((4 * 0.05 + 1 * 0.1) / 5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(expected_calibration_error([1], [np.nan]))


def test_the_papers_protocol_keeps_table1_weights_and_no_calibration(tmp_path) -> None:
    """One random split without inner validation (He et al.): weights from Table 1, no
    learned rules, no calibrators; the five rules combine the members as trained."""
    from oremap.config import load_config
    from oremap.demo import example_config_text
    from oremap.ensemble import run_rule_params
    from oremap.names import PAPER_RULES
    from oremap.runinfo import RunDir

    path = tmp_path / "c.toml"
    path.write_text(example_config_text("data"))
    cfg = load_config(path, overrides={"samples.validation": 0.0, "samples.split": "random",
                                       "samples.folds": 1,
                                       "ensemble.rules": list(PAPER_RULES)})
    assert cfg.ensemble.calibration == "platt"  # the default, which this protocol cannot use
    members = cfg.members()
    (tmp_path / "run" / "evaluate").mkdir(parents=True)
    table1 = pd.DataFrame({"accuracy": np.linspace(0.6, 0.9, len(members))}, index=members)
    table1.to_csv(tmp_path / "run" / "evaluate" / "table1.csv")
    params = run_rule_params(cfg, RunDir(tmp_path / "run"), members)
    assert params.final.calibrators is None and not params.final.learned
    np.testing.assert_allclose(params.final.weights, table1["accuracy"] / table1["accuracy"].sum())
    probs = np.random.default_rng(0).uniform(size=(len(members), 50))
    np.testing.assert_allclose(combine("simple_average", probs, params=params.final).probability,
                               probs.mean(axis=0))

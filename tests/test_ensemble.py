"""Tests of oremap.ensemble: the five rules on hand-made tables, weights, stability stats."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from oremap.ensemble import (
    COUNT_COLUMNS,
    UNDECIDED,
    combine,
    dispersion,
    fit_rule_params,
    list_rules,
    metric_weights,
    prediction_counts,
    register,
    seed_variability,
    seed_variability_table,
    stability_table,
    table2,
)
from oremap.errors import DroppedDataWarning, InputDataError, UnknownNameError

U = UNDECIDED

# 4 models (rows) x 6 cells (columns), threshold 0.5
PROBS = np.array(
    [
        # all ore, all barren, 2-2 tie (mean .45), 2-2 tie (mean .6), all at .5, 3-1 ore
        [0.9, 0.1, 0.9, 0.9, 0.5, 0.6],
        [0.8, 0.2, 0.6, 0.8, 0.5, 0.6],
        [0.7, 0.3, 0.2, 0.4, 0.5, 0.6],
        [0.6, 0.4, 0.1, 0.3, 0.5, 0.0],
    ]
)


def test_list_rules_and_registry() -> None:
    assert list_rules() == [
        "simple_average", "weighted_average", "majority_voting", "plurality_voting",
        "weighted_voting", "stacking", "top_k", "selected",
    ]
    with pytest.raises(ValueError, match="registered twice"):
        register("simple_average")(lambda probs, *, weights, threshold: (probs[0], probs[0]))
    with pytest.raises(UnknownNameError, match="choose from"):
        combine("median", PROBS)


def test_simple_average() -> None:
    r = combine("simple_average", PROBS)
    # means: .75, .25, .45, .6, .5, .45 ; .5 >= .5 -> ore
    np.testing.assert_allclose(r.probability, [0.75, 0.25, 0.45, 0.6, 0.5, 0.45])
    np.testing.assert_array_equal(r.prediction, [1, 0, 0, 1, 1, 0])
    assert r.rule == "simple_average"


def test_weighted_average() -> None:
    r = combine("weighted_average", PROBS, weights=[3, 1, 0, 0])  # -> .75, .25, 0, 0
    np.testing.assert_allclose(r.weights, [0.75, 0.25, 0, 0])
    # cell 0: .75*.9 + .25*.8 = .875 ; cell 1: .075 + .05 = .125 ; cell 2: .675 + .15 = .825
    # cell 3: .875 ; cell 4: .5 ; cell 5: .45 + .15 = .6
    np.testing.assert_allclose(r.probability, [0.875, 0.125, 0.825, 0.875, 0.5, 0.6])
    np.testing.assert_array_equal(r.prediction, [1, 0, 1, 1, 1, 1])
    equal = combine("weighted_average", PROBS)  # no weights = simple average
    np.testing.assert_allclose(equal.probability, combine("simple_average", PROBS).probability)


def test_majority_voting_with_refusal() -> None:
    r = combine("majority_voting", PROBS)
    # ore votes: 4, 0, 2, 2, 4, 3 out of 4 -> 2-2 splits are refused
    np.testing.assert_allclose(r.probability, [1, 0, 0.5, 0.5, 1, 0.75])
    np.testing.assert_array_equal(r.prediction, [1, 0, U, U, 1, 1])
    odd = combine("majority_voting", PROBS[:3])  # 3 models: never undecided
    np.testing.assert_array_equal(odd.prediction, [1, 0, 1, 1, 1, 1])


def test_plurality_voting_tie_break() -> None:
    r = combine("plurality_voting", PROBS)
    # ties broken by mean p: cell 2 mean .45 -> barren, cell 3 mean .6 -> ore
    np.testing.assert_array_equal(r.prediction, [1, 0, 0, 1, 1, 1])
    np.testing.assert_allclose(r.probability, [1, 0, 0.5, 0.5, 1, 0.75])
    # exact tie with mean exactly at the threshold -> ore (>=)
    tie = combine("plurality_voting", np.array([[0.7], [0.3]]))
    np.testing.assert_array_equal(tie.prediction, [1])


def test_weighted_voting() -> None:
    equal = combine("weighted_voting", PROBS)
    # equal weights: ore-vote weight 1, 0, .5, .5, 1, .75 ; exactly half -> barren
    np.testing.assert_allclose(equal.probability, [1, 0, 0.5, 0.5, 1, 0.75])
    np.testing.assert_array_equal(equal.prediction, [1, 0, 0, 0, 1, 1])
    w = combine("weighted_voting", PROBS, weights=[2, 1, 1, 0])  # .5, .25, .25, 0
    # cell 2: models 0, 1 vote ore -> .75 > .5 ; cell 5: models 0-2 -> 1.0
    np.testing.assert_allclose(w.probability, [1, 0, 0.75, 0.75, 1, 1])
    np.testing.assert_array_equal(w.prediction, [1, 0, 1, 1, 1, 1])
    # weights .1 .2 .3 .4; ore votes from models 0 and 3: .1 + .4 = .5 exactly half -> barren
    half = combine("weighted_voting", np.array([[0.9], [0.1], [0.1], [0.9]]),
                   weights=[0.1, 0.2, 0.3, 0.4])
    assert half.prediction.tolist() == [0]
    assert half.probability[0] == pytest.approx(0.5)


@pytest.mark.parametrize("rule", list_rules())
def test_every_rule_output_contract(rule: str) -> None:
    rng = np.random.default_rng(1)
    probs = rng.random((5, 30))
    y = (probs[0] + 0.3 * rng.random(30) > 0.6).astype(int)
    params = fit_rule_params(y, probs, metric="auc", k=2)
    r = combine(rule, probs, weights=rng.random(5), threshold=0.4, params=params)
    assert r.probability.shape == (30,) and r.prediction.shape == (30,)
    assert np.all((r.probability >= 0) & (r.probability <= 1))
    assert set(np.unique(r.prediction)) <= {1, 0, U}
    assert r.weights.sum() == pytest.approx(1.0)
    assert U not in r.prediction  # 5 models: no refusal possible


def test_combine_rejects_bad_input() -> None:
    with pytest.raises(InputDataError, match="n_models, n_cells"):
        combine("simple_average", PROBS[0])
    with pytest.raises(InputDataError, match="out-of-range"):
        combine("simple_average", PROBS + 0.5)
    with pytest.raises(InputDataError, match="non-finite"):
        combine("simple_average", np.array([[np.nan, 0.2]]))
    with pytest.raises(InputDataError, match="one per model"):
        combine("weighted_average", PROBS, weights=[1, 1])
    with pytest.raises(InputDataError, match="non-negative"):
        combine("weighted_average", PROBS, weights=[1, 1, -1, 1])
    with pytest.raises(InputDataError, match="sum to 0"):
        combine("weighted_voting", PROBS, weights=[0, 0, 0, 0])
    with pytest.raises(InputDataError, match="threshold"):
        combine("simple_average", PROBS, threshold=-0.1)


def test_metric_weights() -> None:
    w = metric_weights({"a": 0.8, "b": 0.6, "c": 0.6})
    assert w == pytest.approx({"a": 0.4, "b": 0.3, "c": 0.3})  # 0.8 / 2.0 etc.
    assert sum(w.values()) == pytest.approx(1.0)
    with pytest.warns(DroppedDataWarning, match=r"weight 0 to 1 model.*'b'"):
        w2 = metric_weights({"a": 0.9, "b": float("nan"), "c": 0.3})
    assert w2 == pytest.approx({"a": 0.75, "b": 0.0, "c": 0.25})
    with pytest.raises(InputDataError, match="all metric values are 0"):
        metric_weights({"a": 0.0, "b": 0.0})
    with pytest.raises(InputDataError, match=">= 0"):
        metric_weights({"a": -0.1, "b": 0.5})
    with pytest.raises(InputDataError, match="no models"):
        metric_weights({})
    r = combine("weighted_average", PROBS, weights=list(metric_weights(
        {"m0": 1.0, "m1": 1.0, "m2": 1.0, "m3": 1.0}).values()))
    np.testing.assert_allclose(r.probability, combine("simple_average", PROBS).probability)


# ---------------------------------------------------------------------------------------------
# stability statistics
# ---------------------------------------------------------------------------------------------

LABELS = np.array([1, 1, 0, 0, -1, -1, -1, 0])


def test_prediction_counts_and_table2() -> None:
    pred = np.array([1, 0, 1, U, 1, 1, 0, 0])
    # ore predicted at cells 0 (known ore), 2 (negative), 4, 5 (unknown); undecided is not ore
    assert prediction_counts(pred, LABELS) == {
        "total": 4, "known_positive": 1, "unknown": 2, "negative": 1,
    }
    grid = prediction_counts(pred.reshape(2, 4), LABELS.reshape(2, 4))  # any shape
    assert grid["total"] == 4
    t = table2({"m1": pred, "m2": np.ones(8, dtype=int)}, LABELS)
    assert list(t.columns) == list(COUNT_COLUMNS) and t.index.name == "model"
    assert t.loc["m2"].tolist() == [8, 2, 3, 3]
    with pytest.raises(InputDataError, match="shape"):
        prediction_counts(pred[:3], LABELS)
    with pytest.raises(InputDataError, match="prediction must hold only"):
        prediction_counts(np.full(8, 7), LABELS)
    with pytest.raises(InputDataError, match="labels must hold only"):
        prediction_counts(pred, np.full(8, 2))
    with pytest.raises(InputDataError, match="no predictions"):
        table2({}, LABELS)


def test_dispersion_by_hand() -> None:
    d = dispersion([2, 4, 4, 4, 5, 5, 7, 9])
    # mean 40/8 = 5; deviations -3 -1 -1 -1 0 0 2 4; squares sum 9+1+1+1+0+0+4+16 = 32
    # sample var 32/7; mean |dev| = (3+1+1+1+0+0+2+4)/8 = 12/8
    assert d["n"] == 8 and d["mean"] == 5.0
    assert d["std_sample"] == pytest.approx(math.sqrt(32 / 7))
    assert d["mean_abs_dev"] == pytest.approx(1.5)
    assert d["coef_variation"] == pytest.approx(math.sqrt(32 / 7) / 5)
    one = dispersion([3.0])
    assert math.isnan(one["std_sample"]) and one["mean_abs_dev"] == 0.0
    zero_mean = dispersion([-1.0, 1.0])  # std sqrt(2/1); mean 0 -> CV undefined
    assert zero_mean["std_sample"] == pytest.approx(math.sqrt(2)) and math.isnan(
        zero_mean["coef_variation"])
    with pytest.raises(InputDataError, match="non-empty 1-D"):
        dispersion([])
    with pytest.raises(InputDataError, match="finite"):
        dispersion([1.0, np.nan])


def test_stability_table_by_hand() -> None:
    models = pd.DataFrame({c: v for c, v in zip(COUNT_COLUMNS, ([10, 20, 30], [2, 2, 2],
                                                                 [6, 15, 24], [2, 3, 4]),
                                                 strict=True)})
    rules = pd.DataFrame({c: v for c, v in zip(COUNT_COLUMNS, ([18, 22], [2, 2], [14, 18],
                                                                [2, 2]), strict=True)})
    st = stability_table(models, rules)
    assert st.index.names == ["group", "count"]
    assert list(st.columns) == ["n", "mean", "std_sample", "mean_abs_dev", "coef_variation"]
    # models total: 10 20 30 -> mean 20, sample var (100+0+100)/2 = 100, std 10, MAD 20/3
    assert st.loc[("models", "total"), "std_sample"] == pytest.approx(10.0)
    assert st.loc[("models", "total"), "mean_abs_dev"] == pytest.approx(20 / 3)
    assert st.loc[("models", "total"), "coef_variation"] == pytest.approx(0.5)
    # rules total: 18 22 -> mean 20, var (4+4)/1 = 8, MAD 2, CV sqrt(8)/20
    assert st.loc[("rules", "total"), "std_sample"] == pytest.approx(math.sqrt(8))
    assert st.loc[("rules", "total"), "mean_abs_dev"] == pytest.approx(2.0)
    assert st.loc[("rules", "known_positive"), "std_sample"] == 0.0
    with pytest.raises(InputDataError, match="build both with table2"):
        stability_table(models, rules[["total"]])
    with pytest.raises(InputDataError, match="rules table is empty"):
        stability_table(models, rules.iloc[:0])


def test_seed_variability_by_hand() -> None:
    p = np.array([[0.9, 0.2, 0.6], [0.8, 0.3, 0.4], [0.7, 0.1, 0.6]])  # 3 seeds x 3 cells
    s = seed_variability(p)
    # classes per seed: [1 0 1], [1 0 0], [1 0 1]
    # cell 2: 2 ore + 1 barren -> of 3 seed pairs, 2 disagree
    np.testing.assert_allclose(s["cell_flip_rate"], [0, 0, 2 / 3])
    assert s["mean_flip_rate"] == pytest.approx(2 / 9)
    # cell 0: .9 .8 .7 -> std 0.1 ; cell 1: .2 .3 .1 -> 0.1
    # cell 2: .6 .4 .6 -> mean 1.6/3, deviations 1/15, -2/15, 1/15 -> var (6/225)/2 = .04/3
    np.testing.assert_allclose(s["cell_prob_std_sample"], [0.1, 0.1, math.sqrt(0.04 / 3)])
    assert s["mean_prob_std_sample"] == pytest.approx((0.2 + math.sqrt(0.04 / 3)) / 3)
    # ore counts 2, 1, 2: mean 5/3, squared deviations 1/9 + 4/9 + 1/9 = 6/9, var 3/9
    assert s["ore_counts"].tolist() == [2, 1, 2]
    assert s["ore_count_std_sample"] == pytest.approx(math.sqrt(1 / 3))
    assert (s["ore_count_min"], s["ore_count_max"], s["n_seeds"]) == (1, 2, 3)
    # with explicit classes: an ore <-> undecided change is a flip
    pred = np.array([[1, 0, U], [1, 0, U], [1, U, U]])
    sp = seed_variability(p, predictions=pred)
    np.testing.assert_allclose(sp["cell_flip_rate"], [0, 2 / 3, 0])
    with pytest.raises(InputDataError, match=">= 2 seeds"):
        seed_variability(p[:1])
    with pytest.raises(InputDataError, match="predictions has shape"):
        seed_variability(p, predictions=pred[:2])


def test_ensemble_is_more_stable_across_seeds() -> None:
    rng = np.random.default_rng(0)
    base = rng.random(400)
    # 6 seeds x 4 models, each retrained model = base + independent noise
    noisy = np.clip(base + rng.normal(0, 0.15, size=(6, 4, 400)), 0, 1)
    single = noisy[:, 0]
    avg = np.stack([combine("simple_average", noisy[s]).probability for s in range(6)])
    votes = [combine("majority_voting", noisy[s]) for s in range(6)]
    table = seed_variability_table({
        "model_0": single,
        "simple_average": avg,
        "majority_voting": (np.stack([v.probability for v in votes]),
                            np.stack([v.prediction for v in votes])),
    })
    assert list(table.index) == ["model_0", "simple_average", "majority_voting"]
    assert table.loc["simple_average", "mean_prob_std_sample"] < 0.7 * table.loc[
        "model_0", "mean_prob_std_sample"]
    assert table.loc["simple_average", "mean_flip_rate"] < table.loc["model_0", "mean_flip_rate"]
    with pytest.raises(InputDataError, match="no entries"):
        seed_variability_table({})


def test_learned_rules_need_validation_params() -> None:
    for rule in ("stacking", "top_k"):
        with pytest.raises(InputDataError,
                           match="learns from held-out cells.*validation > 0.*folds > 1"):
            combine(rule, PROBS)


def test_top_k_averages_the_members_best_on_validation() -> None:
    rng = np.random.default_rng(3)
    y = np.repeat([0, 1], 50)
    good = np.clip(0.3 + 0.4 * y + 0.1 * rng.standard_normal(100), 0, 1)
    fair = np.clip(0.4 + 0.2 * y + 0.2 * rng.standard_normal(100), 0, 1)
    noise = rng.random((2, 100))
    probs = np.vstack([noise[0], good, noise[1], fair])
    params = fit_rule_params(y, probs, metric="auc", k=2)
    assert params.top.tolist() == [False, True, False, True]
    r = combine("top_k", probs, params=params)
    np.testing.assert_allclose(r.probability, (good + fair) / 2)
    # weights follow the metric on the validation cells: the informative members weigh most
    assert params.weights[1] > params.weights[0] and params.weights[1] > params.weights[2]


def test_stacking_learns_to_ignore_a_useless_member_and_beats_the_average() -> None:
    from oremap.evaluate import roc_auc

    rng = np.random.default_rng(4)
    n = 400
    y = (rng.random(n) < 0.3).astype(int)
    signal = 1 / (1 + np.exp(-(2.5 * (y - 0.5) + rng.standard_normal(n))))
    noise = rng.random((3, n))
    probs = np.vstack([signal, noise])
    fit, test = slice(0, 200), slice(200, n)
    params = fit_rule_params(y[fit], probs[:, fit], metric="auc", k=1)
    assert params.source == "validation" and params.learned
    assert abs(params.coef[0]) > 5 * np.abs(params.coef[1:]).max()
    st = combine("stacking", probs[:, test], params=params).probability
    avg = combine("simple_average", probs[:, test]).probability
    assert roc_auc(y[test], st) > roc_auc(y[test], avg) + 0.05
    # calibrated to the balanced classes: a clear ore cell scores high, a clear barren one low
    assert st[y[test] == 1].mean() > 0.5 > st[y[test] == 0].mean()


def test_fit_rule_params_needs_both_classes() -> None:
    with pytest.raises(InputDataError, match="one class"):
        fit_rule_params(np.zeros(6, int), PROBS, metric="auc", k=2)


def test_rule_params_round_trip_and_final_mean(tmp_path) -> None:
    from oremap.ensemble import EnsembleParams, mean_rule_params, read_params, write_params

    rng = np.random.default_rng(5)
    members = ["lenet", "vgg8", "logistic"]
    folds = []
    for _ in range(3):
        y = np.repeat([0, 1], 20)
        probs = np.clip(0.5 * y + 0.5 * rng.random((3, 40)), 0, 1)
        folds.append(fit_rule_params(y, probs, metric="accuracy", k=2))
    final = mean_rule_params(folds, k=2)
    np.testing.assert_allclose(final.coef, np.mean([f.coef for f in folds], axis=0))
    assert final.weights.sum() == pytest.approx(1.0) and final.top.sum() == 2
    write_params(tmp_path / "w.json", members, EnsembleParams(final=final, folds=folds),
                 "accuracy")
    back = read_params(tmp_path / "w.json", members)
    np.testing.assert_allclose(back.final.coef, final.coef)
    assert back.final.top.tolist() == final.top.tolist()
    assert back.fold(1).intercept == pytest.approx(folds[1].intercept)
    # reading members in another order follows the names
    other = read_params(tmp_path / "w.json", members[::-1])
    np.testing.assert_allclose(other.final.weights, final.weights[::-1])


def test_stacking_never_trusts_a_reversed_member_and_selected_applies_its_choice() -> None:
    rng = np.random.default_rng(6)
    n = 300
    y = (rng.random(n) < 0.3).astype(int)
    good = 1 / (1 + np.exp(-(2.0 * (y - 0.5) + rng.standard_normal(n))))
    reversed_ = 1 - 1 / (1 + np.exp(-(1.0 * (y - 0.5) + rng.standard_normal(n))))
    probs = np.vstack([good, reversed_, rng.random(n)])
    params = fit_rule_params(y, probs, metric="auc", k=1)
    assert (params.coef >= 0).all() and params.coef[1] == 0 and params.coef[0] > 0
    assert set(params.scores) == {"simple_average", "weighted_average", "top_k", "stacking"}
    # the average is dragged down by the reversed member: a better rule is selected
    assert params.choice in ("top_k", "stacking")
    assert params.scores[params.choice] == max(params.scores.values())
    chosen = combine(params.choice, probs, params=params)
    np.testing.assert_allclose(combine("selected", probs, params=params).probability,
                               chosen.probability)

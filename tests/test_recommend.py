"""Intervals of the recommended map's score."""

from __future__ import annotations

import numpy as np
import pytest

from oremap.recommend import bootstrap_interval, fold_interval


def test_fold_interval_is_the_t_interval_of_the_mean() -> None:
    low, high = fold_interval([0.8, 0.9, 0.85, 0.95, 0.75])
    # mean 0.85, sd 0.0791, t(0.975, 4) = 2.776: half width 0.0982
    assert low == pytest.approx(0.85 - 0.0982, abs=1e-3)
    assert high == pytest.approx(0.85 + 0.0982, abs=1e-3)
    assert fold_interval([0.9, 0.99, 0.999]) [1] == 1.0  # clipped
    assert np.isnan(fold_interval([0.9])[0])


def test_bootstrap_interval_covers_the_auc_and_narrows_with_more_cells() -> None:
    from oremap.evaluate import roc_auc

    rng = np.random.default_rng(0)
    widths = []
    for n in (40, 400):
        y = (rng.random(n) < 0.3).astype(int)
        s = y + rng.standard_normal(n)
        low, high = bootstrap_interval(y, s, seed=1)
        assert low < roc_auc(y, s) < high
        widths.append(high - low)
    assert widths[1] < widths[0] / 2


def test_calibration_error_is_zero_when_p_matches_the_observed_share() -> None:
    import pandas as pd

    from oremap.recommend import calibration_error

    # 10 cells at 0.25 with 1 in 4 deposits... in blocks: perfectly calibrated bins
    p = np.repeat([0.25, 0.75], 8)
    y = np.r_[np.tile([1, 0, 0, 0], 2), np.tile([1, 1, 1, 0], 2)]
    table = pd.DataFrame({"label": y, "oof_net": p})
    assert calibration_error(table, "net") == pytest.approx(0.0)
    inflated = table.assign(oof_net=np.where(p < 0.5, 0.75, 0.95))  # class-weighted look
    assert calibration_error(inflated, "net") == pytest.approx((0.5 + 0.2) / 2)
    assert np.isnan(calibration_error(table, "missing"))


def _comparison(tmp_path, rows: dict[str, tuple[str, list[float]]], *, table=None,
                validation_positives: list[int] | None = None):
    """A run folder with ensemble/comparison.csv (per-fold cell ROC AUC), ensemble.csv and,
    optionally, the samples manifest's inner-validation counts."""
    import json

    import pandas as pd

    (tmp_path / "ensemble").mkdir(exist_ok=True)
    (tmp_path / "samples").mkdir(exist_ok=True)
    comp = pd.DataFrame({
        "name": list(rows),
        "kind": [k for k, _ in rows.values()],
        "cell_roc_auc_mean": [float(np.mean(f)) for _, f in rows.values()],
        "cell_roc_auc_std": [float(np.std(f, ddof=1)) if len(f) > 1 else np.nan
                             for _, f in rows.values()],
        "cell_roc_auc_folds": [" ".join(f"{x:.3f}" for x in f) for _, f in rows.values()],
        "roc_auc_mean": [float(np.mean(f)) for _, f in rows.values()],
        "roc_auc_folds": [" ".join(f"{x:.3f}" for x in f) for _, f in rows.values()],
        "prediction_rate_auc_mean": 0.8, "prediction_rate_auc_folds": "",
    })
    comp.to_csv(tmp_path / "ensemble" / "comparison.csv", index=False)
    if table is None:
        table = pd.DataFrame({"label": [0, 1], "test_fold": [0, 0], "row": [0, 0],
                              "col": [0, 1]})
    table.to_csv(tmp_path / "ensemble" / "ensemble.csv", index=False)
    if validation_positives is not None:
        counts = [{"positive_cells": n} for n in validation_positives]
        (tmp_path / "samples" / "manifest.json").write_text(
            json.dumps({"validation_counts": counts}))
    return tmp_path


def test_paired_fold_difference_is_the_t_interval_of_the_differences() -> None:
    from oremap.evaluate.intervals import paired_fold_difference

    mean, low, high = paired_fold_difference([0.9, 0.8, 0.85], [0.8, 0.75, 0.8])
    d = np.array([0.1, 0.05, 0.05])  # mean 0.0667, sd 0.0289, t(0.975, 2) = 4.303
    half = 4.303 * d.std(ddof=1) / np.sqrt(3)
    assert mean == pytest.approx(d.mean())
    assert (low, high) == pytest.approx((d.mean() - half, d.mean() + half), abs=1e-3)
    assert paired_fold_difference([1.0, 1.0], [1.0, 1.0]) == (0.0, 0.0, 0.0)
    assert np.isnan(paired_fold_difference([0.9, float("nan")], [0.8, 0.7])[1])


def test_a_map_better_on_every_fold_is_recommended_alone(tmp_path) -> None:
    from oremap.recommend import choose

    run = _comparison(tmp_path, {
        "lenet": ("network", [0.70, 0.72, 0.68, 0.71, 0.69]),
        "random_forest": ("baseline", [0.90, 0.93, 0.89, 0.92, 0.90]),
        "weighted_average": ("rule", [0.80, 0.83, 0.78, 0.82, 0.80]),
    })
    c = choose(run)
    assert (c.name, c.best, c.tied, c.paired) == ("random_forest", "random_forest", (), "folds")
    assert not c.because_of_tie


def test_a_tie_recommends_the_stated_default_rule_never_the_first_name(tmp_path) -> None:
    from oremap.recommend import choose, read_choice, recommended_name, write_choice

    perfect = [1.0, 1.0, 1.0]
    run = _comparison(tmp_path, {
        "lenet": ("network", perfect), "vit": ("network", perfect),
        "simple_average": ("rule", perfect), "weighted_average": ("rule", perfect),
        "majority_voting": ("rule", [0.9, 0.8, 0.85]),
    })
    c = choose(run)
    assert c.best == "lenet" and c.name == "weighted_average"
    assert set(c.tied) == {"vit", "simple_average", "weighted_average"}
    assert "majority_voting" not in c.tied  # worse on every fold: told apart
    # another default among the tied is taken; one outside them yields the best tied rule
    assert choose(run, default="simple_average").name == "simple_average"
    assert choose(run, default="majority_voting").name == "simple_average"
    write_choice(run, c)
    assert read_choice(run) == c and recommended_name(run) == "weighted_average"


def test_single_split_ties_are_found_by_a_paired_bootstrap_over_cells(tmp_path) -> None:
    import pandas as pd

    from oremap.recommend import choose

    rng = np.random.default_rng(0)
    y = (rng.random(300) < 0.2).astype(int)
    strong = y + 0.3 * rng.standard_normal(300)
    table = pd.DataFrame({"label": y, "test_fold": 0, "row": 0, "col": np.arange(300),
                          "oof_good": strong, "oof_twin": strong + 1e-3 * rng.standard_normal(300),
                          "oof_poor": rng.random(300)})
    from oremap.evaluate import roc_auc

    run = _comparison(tmp_path, {n: (k, [roc_auc(y, table[f"oof_{n}"].to_numpy())])
                                 for n, k in [("good", "network"), ("twin", "baseline"),
                                              ("poor", "network")]}, table=table)
    c = choose(run)
    assert c.paired == "cells"
    assert c.best in {"good", "twin"} and c.tied == tuple({"good", "twin"} - {c.best})
    assert c.name == c.best  # no rule among the tied: the best stands, said tied


def test_a_degenerate_interval_is_not_printed_as_certainty() -> None:
    from oremap.recommend import Score

    s = Score(1.0, 1.0, 1.0, "bootstrap over 73 held-out cells")
    assert s.degenerate and "1.000 to 1.000" not in s.text() and "no interval" in s.text()
    assert not Score(0.8, 0.7, 0.9, "t").degenerate


def test_recommendation_warns_when_inner_validation_is_thin_and_names_the_tie(tmp_path) -> None:
    from oremap.recommend import recommend

    perfect = [1.0, 1.0, 1.0]
    run = _comparison(tmp_path, {"lenet": ("network", perfect),
                                 "weighted_average": ("rule", perfect)},
                      validation_positives=[4, 6, 5])
    rec = recommend(run)
    assert rec.name == "weighted_average"
    assert "2 of 2 maps tie" in rec.reason and "stated default" in rec.reason
    assert any("inner validation split holds only 4 positive cells" in w for w in rec.warnings)
    assert list(rec.ranking["tied with the best"]) == [True, True]


def test_vectorised_bootstrap_aucs_equal_roc_auc_of_each_resample() -> None:
    from oremap.evaluate import roc_auc
    from oremap.evaluate.intervals import _resample_counts, weighted_aucs

    rng = np.random.default_rng(1)
    y = (rng.random(120) < 0.25).astype(int)
    s = np.round(y + rng.standard_normal(120), 1)  # ties count one half
    counts = np.concatenate(list(_resample_counts(120, seed=0, draws=20)))
    aucs = weighted_aucs(y, s, counts)
    for b in range(20):
        idx = np.repeat(np.arange(120), counts[b].astype(int))
        assert aucs[b] == pytest.approx(roc_auc(y[idx], s[idx]), abs=1e-12)
    one_class = np.zeros((1, 120))
    one_class[0, np.flatnonzero(y == 0)[:5]] = 1
    assert np.isnan(weighted_aucs(y, s, one_class)[0])


def test_recommendation_says_when_weights_are_equal_and_how_calibrated_it_is(tmp_path) -> None:
    import json

    import pandas as pd

    from oremap.recommend import recommend

    perfect = [1.0, 1.0, 1.0]
    run = _comparison(tmp_path, {"lenet": ("network", perfect),
                                 "weighted_average": ("rule", perfect)})
    (run / "ensemble" / "weights.json").write_text(json.dumps(
        {"source": "out_of_fold", "weights": {"lenet": 1.0}, "shrinkage": 0.0}))
    pd.DataFrame({"name": ["weighted_average"], "calibration": ["calibrated members"],
                  "ece_raw": [0.21], "ece": [0.04], "mean_p": [0.093],
                  "ore_share": [0.091]}).to_csv(run / "ensemble" / "calibration.csv",
                                                index=False)
    reason = recommend(run).reason
    assert "cannot be told apart" in reason and "is the simple average" in reason
    assert "expected calibration error 0.040 (0.210 uncalibrated)" in reason
    assert "9.1% of the cells hold ore" in reason and "0.3 means about 30 %" in reason
    # shrunk but not to zero, and a calibration still too far off to read as a chance
    (run / "ensemble" / "weights.json").write_text(json.dumps(
        {"weights": {"lenet": 1.0}, "shrinkage": 0.4}))
    pd.DataFrame({"name": ["weighted_average"], "calibration": ["calibrated members"],
                  "ece_raw": [0.3], "ece": [0.18], "mean_p": [0.2],
                  "ore_share": [0.09]}).to_csv(run / "ensemble" / "calibration.csv",
                                               index=False)
    reason = recommend(run).reason
    assert "cannot be told apart" not in reason and "rank by it" in reason

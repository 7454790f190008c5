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

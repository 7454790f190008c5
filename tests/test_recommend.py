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

"""[samples] context: neighbourhood-mean channels beside each evidence layer."""

from __future__ import annotations

import numpy as np
import pytest

from oremap.config import config_from_dict, tomllib
from oremap.demo import example_config_text
from oremap.grid import Grid
from oremap.inputs import context_stack


def _config(context: int):
    base = tomllib.loads(example_config_text("data"))
    base["grid"].update(bounds=[0.0, 0.0, 24.0, 18.0], pixel_size=1.0, cell_cols=8,
                        cell_rows=6)
    base["samples"]["crop_size"] = 4
    base["samples"]["context"] = context
    return config_from_dict(base)


def test_context_channels_are_nodata_aware_means_over_the_neighbouring_cells() -> None:
    config = _config(1)
    grid = Grid.from_bounds(config.grid.crs, config.grid.bounds, 1.0)
    rng = np.random.default_rng(0)
    stack = rng.random((2, 18, 24)).astype(np.float32)
    stack[1, 4:7, 5:9] = np.nan
    out, names = context_stack(config, stack, ["Au", "faults"], grid)
    assert names == ["Au", "Au@ctx1", "faults", "faults@ctx1"]
    np.testing.assert_array_equal(out[0], stack[0])
    np.testing.assert_array_equal(out[2], stack[1])
    # cells are 3 x 3 px: context 1 is the 9 x 9 px window centred on each pixel, clipped
    for layer, ctx in ((0, 1), (1, 3)):
        for r, c in ((0, 0), (5, 6), (9, 12), (17, 23)):
            window = stack[layer, max(r - 4, 0):r + 5, max(c - 4, 0):c + 5]
            assert out[ctx, r, c] == pytest.approx(np.nanmean(window), rel=1e-5)
    assert np.isfinite(out[3]).all()


def test_no_context_returns_the_stack_itself() -> None:
    config = _config(0)
    grid = Grid.from_bounds(config.grid.crs, config.grid.bounds, 1.0)
    stack = np.zeros((1, 18, 24), np.float32)
    out, names = context_stack(config, stack, ["Au"], grid)
    assert out is stack and names == ["Au"]

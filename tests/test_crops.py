"""Tests of oremap.samples.crops: crop lattices, centred crops, extraction, robust scaling."""

from __future__ import annotations

import numpy as np
import pytest

from oremap.errors import InputDataError
from oremap.samples.cells import Label
from oremap.samples.crops import (
    CropParams,
    CropSpec,
    cell_block,
    cell_crop_offsets,
    centre_offset,
    check_crop_spec,
    cut_crops,
    fit_robust_scaling,
    lattice_offsets,
    read_window,
)


def test_crop_spec_defaults_are_the_papers():
    spec = CropSpec()
    assert spec.size == 32
    assert spec.positive == CropParams(n=50, a=12, b=24)
    assert spec.negative == CropParams(n=10, a=32, b=64)
    assert spec.params(Label.POSITIVE) is spec.positive
    assert spec.params(Label.NEGATIVE) is spec.negative
    assert spec.params(Label.UNKNOWN) is None
    custom = CropSpec(size=8, positive=(3, 2, 1), negative=[1, 4, 4])
    assert isinstance(custom.positive, CropParams) and custom.positive.b == 1
    assert custom.to_dict() == {"size": 8, "positive": {"n": 3, "a": 2, "b": 1},
                                "negative": {"n": 1, "a": 4, "b": 4}}


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"size": 0}, r"crops.size must be a whole number of pixels >= 1, got 0; fix it \(paper"),
    ({"size": 2.5}, "crops.size must be a whole number"),
    ({"positive": (0, 12, 24)}, "crops.positive.n must be"),
    ({"positive": (50, 0, 24)}, "crops.positive.a must be"),
    ({"negative": (10, 32, -1)}, "crops.negative.b must be"),
    ({"negative": (10, 32)}, r"crops.negative must be \(n, a, b\)"),
])
def test_crop_spec_errors(kwargs, match):
    with pytest.raises(InputDataError, match=match):
        CropSpec(**kwargs)


def test_window_larger_than_grid():
    with pytest.raises(InputDataError, match="larger than the whole grid"):
        check_crop_spec(CropSpec(size=32), (31, 400))
    with pytest.raises(InputDataError, match="must be a CropSpec"):
        check_crop_spec((32, 50), (100, 100))
    check_crop_spec(CropSpec(size=32), (32, 32))


def test_lattice_by_hand():
    # cell 80 rows x 100 cols, window 32, a = 12, b = 24:
    # x: (100 - 32) // 12 + 1 = 6 windows using 32 + 60 = 92 px, 8 left -> start at 4
    # y: (80 - 32) // 24 + 1 = 3 windows using 32 + 48 = 80 px, none left -> start at 0
    offsets = lattice_offsets(80, 100, 32, CropParams(50, 12, 24))
    expected = [(r, c) for r in (0, 24, 48) for c in (4, 16, 28, 40, 52, 64)]
    assert offsets.tolist() == [list(o) for o in expected]
    first5 = lattice_offsets(80, 100, 32, CropParams(5, 12, 24))
    assert first5.tolist() == [list(o) for o in expected[:5]]  # raster order, x first
    assert lattice_offsets(20, 100, 32, CropParams(50, 12, 24)).shape == (0, 2)


def test_centre_crop_flagged_or_added():
    spec = CropSpec()
    assert centre_offset(80, 100, 32) == (24, 34)
    offsets, centre = cell_crop_offsets(80, 100, Label.POSITIVE, spec)
    assert len(offsets) == 18 + 1  # (24, 34) is not on the lattice: added
    assert offsets[-1].tolist() == [24, 34] and centre.tolist() == [False] * 18 + [True]
    # negatives: x (100 - 32) // 32 + 1 = 3 windows, 4 px left -> cols 2, 34, 66; y: one
    # window centred at row 24 -> the middle window is the centred one: flagged, not added
    offsets, centre = cell_crop_offsets(80, 100, Label.NEGATIVE, spec)
    assert offsets.tolist() == [[24, 2], [24, 34], [24, 66]]
    assert centre.tolist() == [False, True, False]
    offsets, centre = cell_crop_offsets(80, 100, Label.UNKNOWN, spec)
    assert offsets.tolist() == [[24, 34]] and centre.tolist() == [True]
    # the demo's 46 x 40 px cells: one window, the centred one, for every class
    for label in Label:
        offsets, centre = cell_crop_offsets(46, 40, label, spec)
        assert offsets.tolist() == [[7, 4]] and centre.tolist() == [True]


def test_small_cell_gets_one_centred_window_with_context():
    offsets, centre = cell_crop_offsets(20, 40, Label.POSITIVE, CropSpec())
    assert offsets.tolist() == [[-6, 4]] and centre.tolist() == [True]
    offsets, _ = cell_crop_offsets(31, 31, Label.NEGATIVE, CropSpec())
    assert offsets.tolist() == [[-1, -1]]


@pytest.mark.parametrize("shape", [(32, 32), (46, 40), (80, 100), (127, 64), (200, 33)])
@pytest.mark.parametrize("params", [(50, 12, 24), (10, 32, 64), (7, 1, 1), (3, 100, 5)])
def test_crops_inside_cell_and_unique(shape, params):
    rows, cols = shape
    spec = CropSpec(size=32, positive=params, negative=params)
    for label in (Label.POSITIVE, Label.NEGATIVE):
        offsets, centre = cell_crop_offsets(rows, cols, label, spec)
        assert (offsets >= 0).all()
        assert (offsets[:, 0] + 32 <= rows).all() and (offsets[:, 1] + 32 <= cols).all()
        assert len(np.unique(offsets, axis=0)) == len(offsets)
        assert centre.sum() == 1
        assert offsets[centre][0].tolist() == list(centre_offset(rows, cols, 32))
        assert len(offsets) <= params[0] + 1


def test_cut_crops_and_cell_block():
    rng = np.random.default_rng(0)
    stack = rng.normal(size=(3, 40, 50))
    block = cell_block(stack, 5, 7, 30, 40)
    assert block.dtype == np.float32 and block.shape == (3, 30, 40)
    offsets = np.array([[0, 0], [2, 9], [14, 24]])
    crops = cut_crops(block, offsets, 16)
    assert crops.shape == (3, 3, 16, 16) and crops.dtype == np.float32
    for k, (r, c) in enumerate(offsets):
        np.testing.assert_array_equal(crops[k], stack[:, 5 + r:5 + r + 16, 7 + c:7 + c + 16]
                                      .astype(np.float32))
    assert cut_crops(block, np.empty((0, 2), np.int64), 16).shape == (0, 3, 16, 16)


def test_cell_block_fills_nan_with_cell_median():
    stack = np.arange(2 * 4 * 4, dtype=np.float64).reshape(2, 4, 4)
    stack[0, 1, 1] = np.nan
    stack[0, 3, 3] = 1000.0  # outside the cell: must not enter the median
    block = cell_block(stack, 0, 0, 3, 3)
    valid = stack[0, :3, :3][np.isfinite(stack[0, :3, :3])]
    assert block[0, 1, 1] == np.float32(np.median(valid))
    np.testing.assert_array_equal(block[1], stack[1, :3, :3])
    stack[1, :3, :3] = np.nan
    assert np.isnan(cell_block(stack, 0, 0, 3, 3)[1]).all()


def test_read_window():
    stack = np.ones((2, 20, 20))
    stack[1, 15, 15] = np.nan
    window, why = read_window(stack, 2, 3, 8)
    assert why == "" and window.shape == (2, 8, 8) and window.dtype == np.float32
    assert read_window(stack, -1, 3, 8) == (None, "crop window leaves the grid")
    assert read_window(stack, 2, 13, 8) == (None, "crop window leaves the grid")
    assert read_window(stack, 10, 10, 8) == (None, "crop window touches nodata")


def test_fit_robust_scaling():
    layer0 = np.arange(1.0, 102.0)             # median 51, IQR 76 - 26 = 50
    layer1 = np.full(101, 7.0)                 # IQR 0 -> scale 1
    a = np.stack([layer0[:50], layer1[:50]]).reshape(2, 5, 10)
    b = np.stack([layer0[50:], layer1[50:]]).reshape(2, 51, 1)
    b = np.concatenate([b, np.full((2, 1, 1), np.nan)], axis=1)  # NaNs are ignored
    center, scale = fit_robust_scaling([a, b])
    np.testing.assert_allclose(center, [51.0, 7.0])
    np.testing.assert_allclose(scale, [50.0, 1.0])
    with pytest.raises(InputDataError, match="no training cell"):
        fit_robust_scaling([])
    with pytest.raises(InputDataError, match="layer 1 has no valid pixel"):
        fit_robust_scaling([np.stack([layer0[:4], np.full(4, np.nan)]).reshape(2, 2, 2)])

"""Tests of oremap.samples.split: cell, block and random splits, alone and through build_samples."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest

from oremap.errors import InputDataError, OptimisticSplitWarning, UnknownNameError
from oremap.grid import Grid
from oremap.samples import CropSpec, Label, build_samples, make_cells
from oremap.samples.split import (
    check_split_options,
    split_blocks,
    split_cells,
    split_random,
    split_validation,
)

P, N, U = int(Label.POSITIVE), int(Label.NEGATIVE), int(Label.UNKNOWN)


def grid_labels(seed: int = 0, n: int = 12) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels of an n x n cell grid (~15 % positive, ~25 % negative) and their rows, cols."""
    rng = np.random.default_rng(seed)
    labels = rng.choice([P, N, U], size=n * n, p=[0.15, 0.25, 0.6])
    rows, cols = np.divmod(np.arange(n * n), n)
    return labels, rows, cols


def test_cell_split_stratified_and_seeded():
    labels = np.array([P] * 10 + [N] * 20 + [U] * 30)
    fold = split_cells(labels, test_fraction=0.2, seed=3)
    assert fold.dtype == np.int64 and set(np.unique(fold)) == {-1, 0}
    assert (fold[labels == U] == -1).all()
    assert int((fold[labels == P] == 0).sum()) == 2
    assert int((fold[labels == N] == 0).sum()) == 4
    np.testing.assert_array_equal(split_cells(labels, seed=3), fold)
    assert not np.array_equal(split_cells(labels, seed=4), fold)


def test_cell_kfold():
    labels = np.array([P] * 10 + [N] * 20 + [U] * 5)
    fold = split_cells(labels, folds=3, seed=0)
    assert (fold[labels == U] == -1).all()
    for label, n in ((P, 10), (N, 20)):
        counts = np.bincount(fold[labels == label], minlength=3)
        assert counts.sum() == n and counts.max() - counts.min() <= 1


def test_block_split_keeps_blocks_together_and_balances():
    labels, rows, cols = grid_labels()
    for folds in (1, 4):
        fold = split_blocks(labels, rows, cols, block_size=3, folds=folds, seed=1)
        block = (rows // 3) * 4 + cols // 3
        labelled = labels != U
        for b in np.unique(block):
            assert len(np.unique(fold[(block == b) & labelled])) <= 1
        assert (fold[~labelled] == -1).all()
    n_pos = int((labels == P).sum())
    per_fold = np.bincount(fold[labels == P], minlength=4)
    assert per_fold.sum() == n_pos and per_fold.max() - per_fold.min() <= 3
    single = split_blocks(labels, rows, cols, block_size=3, test_fraction=0.2, seed=1)
    share = (single[labels == P] == 0).mean()
    assert 0.1 <= share <= 0.3
    np.testing.assert_array_equal(split_blocks(labels, rows, cols, block_size=3, seed=1), single)


def test_random_split_warns():
    labels = np.array([P] * 50 + [N] * 50 + [U] * 10)
    with pytest.warns(OptimisticSplitWarning, match="optimistic"):
        fold = split_random(labels, test_fraction=0.2, seed=0)
    assert int((fold[labels == P] == 0).sum()) == 10 and (fold[labels == U] == -1).all()


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"split": "spatial"}, UnknownNameError, "unknown split 'spatial'"),
    ({"test_fraction": 0.0}, InputDataError, r"test_fraction must be in \(0, 1\)"),
    ({"folds": 0}, InputDataError, "folds must be a whole number >= 1"),
    ({"block_size": 1.5}, InputDataError, "block_size must be a whole number >= 1"),
])
def test_split_option_errors(kwargs, error, match):
    options = {"split": "cell", "test_fraction": 0.2, "folds": 1, "block_size": 4, **kwargs}
    with pytest.raises(error, match=match):
        check_split_options(options.pop("split"), **options)


def test_impossible_splits_raise():
    with pytest.raises(InputDataError, match="split 'cell': fold 0 has no positive cells in "
                                             "its test set"):
        split_cells(np.array([P, N, N, N, U]))
    with pytest.raises(InputDataError, match="fold 3 has no positive cells"):
        split_cells(np.array([P] * 3 + [N] * 10), folds=4)
    labels, rows, cols = grid_labels()
    labels[labels == P] = N
    labels[[0, 1, 12, 13]] = P  # all positives in one 2 x 2 block
    with pytest.raises(InputDataError, match="split 'block': fold 0 has no positive cells in "
                                             "its (test|training) set.*smaller block_size"):
        split_blocks(labels, rows, cols, block_size=2)
    with pytest.warns(OptimisticSplitWarning), pytest.raises(
            InputDataError, match="split 'random': fold 0 has no positive crops in its training"):
        split_random(np.array([P, N, N, N]), folds=2)


# ------------------------------------------------------------------------------------ via build


def build_setup() -> tuple[np.ndarray, Grid, gpd.GeoDataFrame]:
    """12 x 8 cells of 16 x 16 px, random labels, 2 layers."""
    grid = Grid.from_bounds("EPSG:32649", (0.0, 0.0, 192.0, 128.0), 1.0)
    cells = make_cells(grid, cols=12, rows=8)
    labels = np.random.default_rng(5).choice([P, N, U], size=len(cells), p=[0.2, 0.3, 0.5])
    cells["label"] = labels
    stack = np.random.default_rng(6).normal(size=(2, 128, 192)).astype(np.float32)
    return stack, grid, cells


SPEC = CropSpec(size=8, positive=(9, 4, 4), negative=(4, 8, 8))


@pytest.mark.parametrize(("split", "folds"), [("cell", 1), ("cell", 3), ("block", 1),
                                              ("block", 4)])
def test_no_cell_or_block_on_both_sides(tmp_path, split, folds):
    stack, grid, cells = build_setup()
    ss = build_samples(stack, ["a", "b"], grid, cells, crops=SPEC, split=split, folds=folds,
                       block_size=3, seed=2, out_dir=tmp_path, progress=False)
    assert ss.n_folds == folds and ss.split == split
    by_id = cells.set_index("id")
    block = (by_id.loc[ss.cell_id, "row"].to_numpy() // 3) * 4 + (
        by_id.loc[ss.cell_id, "col"].to_numpy() // 3)
    labelled = ss.y != U
    for fold in range(folds):
        train, test = ss.train_indices(fold), ss.test_indices(fold)
        assert len(train) and len(test)
        assert not set(ss.cell_id[train]) & set(ss.cell_id[test])
        assert (ss.y[test] != U).all() and (ss.y[train] != U).all()
        assert len(train) + len(test) == labelled.sum()
        if split == "block":
            assert not set(block[train]) & set(block[test])
    for cid in np.unique(ss.cell_id):
        assert len(np.unique(ss.test_fold[ss.cell_id == cid])) == 1


def test_random_split_through_build(tmp_path):
    stack, grid, cells = build_setup()
    with pytest.warns(OptimisticSplitWarning):
        ss = build_samples(stack, ["a", "b"], grid, cells, crops=SPEC, split="random",
                           out_dir=tmp_path, progress=False)
    labelled = ss.y != U
    share = (ss.test_fold[labelled] == 0).mean()
    assert abs(share - 0.2) < 0.01
    shared = set(ss.cell_id[ss.train_indices()]) & set(ss.cell_id[ss.test_indices()])
    assert shared  # the paper's protocol mixes crops of one cell: hence the warning


@pytest.mark.parametrize(("split", "folds"), [("cell", 1), ("block", 1), ("block", 4)])
def test_inner_validation_comes_from_the_training_side_only(tmp_path, split, folds):
    stack, grid, cells = build_setup()
    ss = build_samples(stack, ["a", "b"], grid, cells, crops=SPEC, split=split, folds=folds,
                       block_size=3, validation=0.25, seed=2, out_dir=tmp_path,
                       progress=False)
    assert ss.has_validation and ss.validation.shape == (folds, len(ss.y))
    by_id = cells.set_index("id")
    block = (by_id.loc[ss.cell_id, "row"].to_numpy() // 3) * 4 + (
        by_id.loc[ss.cell_id, "col"].to_numpy() // 3)
    for fold in range(folds):
        train, test = ss.train_indices(fold), ss.test_indices(fold)
        fit, val = ss.fit_indices(fold), ss.validation_indices(fold)
        # a partition of the training side; the test fold is never touched
        assert sorted([*fit, *val]) == train.tolist()
        assert not set(val) & set(test) and not set(fit) & set(val)
        assert set(ss.y[val]) == {P, N} and set(ss.y[fit]) == {P, N}
        assert not set(ss.cell_id[fit]) & set(ss.cell_id[val])
        if split == "block":
            assert not set(block[fit]) & set(block[val])
        assert 0.1 < len(np.unique(ss.cell_id[val])) / len(np.unique(ss.cell_id[train])) < 0.45
    manifest = ss.manifest
    assert manifest["validation"] == 0.25 and len(manifest["validation_counts"]) == folds
    again = build_samples(stack, ["a", "b"], grid, cells, crops=SPEC, split=split, folds=folds,
                          block_size=3, validation=0.25, seed=2, out_dir=tmp_path / "again",
                          progress=False)
    np.testing.assert_array_equal(again.validation, ss.validation)  # seeded


def test_no_inner_validation_keeps_the_whole_training_side(tmp_path):
    stack, grid, cells = build_setup()
    ss = build_samples(stack, ["a", "b"], grid, cells, crops=SPEC, split="cell",
                       seed=2, out_dir=tmp_path, progress=False)
    assert not ss.has_validation
    np.testing.assert_array_equal(ss.fit_indices(0), ss.train_indices(0))
    assert len(ss.validation_indices(0)) == 0


def test_inner_validation_without_both_classes_says_how_to_fix():
    labels = np.array([P, P, N, N, N, N, N, N])
    fold = np.array([0, -1, 0, -1, -1, -1, -1, -1])
    with pytest.raises(InputDataError, match=r"inner validation of fold 0.*\[samples\] "
                       r"validation"):
        split_validation(labels, fold, 1, split="cell", fraction=0.2)

"""Tests of oremap.samples.dataset: build_samples, storage round trip, normalisation, Dataset."""

from __future__ import annotations

import pickle

import geopandas as gpd
import numpy as np
import pytest
import torch

from oremap.errors import (
    DroppedDataWarning,
    InputDataError,
    StageNotReadyError,
    UnknownNameError,
)
from oremap.grid import Grid
from oremap.samples import (
    SAMPLE_FILES,
    CropDataset,
    CropSpec,
    Label,
    build_samples,
    cell_coverage,
    counts_table,
    load_sample_set,
    make_cells,
)

NAMES = ["Au", "As", "fault_dist"]
POSITIVE = [0, 5, 10, 19, 27, 30, 36, 45]
NEGATIVE = [2, 7, 12, 14, 17, 22, 25, 33, 38, 40, 43, 47]
# cells of 24 rows x 20 cols, windows of 16:
#   positive (n=50, a=4, b=4): x 2 windows (0, 4), y 3 windows (0, 4, 8) = 6, centre (4, 2) is
#   not among them -> 7 crops; negative (n=2, a=8, b=8): x one window at col 2, y rows 0, 8,
#   n = 2 -> 2, centre (4, 2) added -> 3 crops; unknown: 1 centred crop.
SPEC = CropSpec(size=16, positive=(50, 4, 4), negative=(2, 8, 8))
N_POS, N_NEG, N_UNK = 7, 3, 1


def setup_data(seed: int = 0) -> tuple[np.ndarray, Grid, gpd.GeoDataFrame]:
    """8 x 6 cells of 20 x 24 px (10 m pixels), 3 layers, 8 positive and 12 negative cells."""
    grid = Grid.from_bounds("EPSG:32649", (500000.0, 3000000.0, 501600.0, 3001440.0), 10.0)
    cells = make_cells(grid, cols=8, rows=6)
    rng = np.random.default_rng(seed)
    stack = np.stack([rng.normal(size=grid.shape), rng.lognormal(size=grid.shape),
                      100 + 10 * rng.normal(size=grid.shape)]).astype(np.float32)
    labels = np.full(len(cells), int(Label.UNKNOWN))
    labels[POSITIVE], labels[NEGATIVE] = Label.POSITIVE, Label.NEGATIVE
    cells["label"] = labels
    cells["reason"] = ""
    return stack, grid, cells


def cell_pixels(stack: np.ndarray, cells: gpd.GeoDataFrame, ids: np.ndarray) -> list:
    rows = cells.set_index("id").loc[ids]
    return [stack[:, r:r + h, c:c + w] for r, c, h, w in
            rows[["px_row0", "px_col0", "px_rows", "px_cols"]].to_numpy()]


def manual_scaling(blocks: list) -> tuple[np.ndarray, np.ndarray]:
    flat = np.concatenate([b.reshape(b.shape[0], -1) for b in blocks], axis=1).astype(float)
    q25, q50, q75 = np.percentile(flat, [25, 50, 75], axis=1)
    return q50, q75 - q25


def test_build_counts_crops_and_files(tmp_path):
    stack, grid, cells = setup_data()
    ss = build_samples(stack, NAMES, grid, cells, crops=SPEC, out_dir=tmp_path, progress=False)
    for name in SAMPLE_FILES:
        assert (tmp_path / name).is_file()
    assert not list(tmp_path.glob(".*tmp*"))
    n = 8 * N_POS + 12 * N_NEG + 28 * N_UNK
    assert len(ss) == n == 120 and ss.X.shape == (n, 3, 16, 16) and ss.X.dtype == np.float32
    assert isinstance(ss.X, np.memmap)
    ids, per_cell = np.unique(ss.cell_id, return_counts=True)
    expected = {**{i: N_POS for i in POSITIVE}, **{i: N_NEG for i in NEGATIVE}}
    assert dict(zip(ids.tolist(), per_cell.tolist(), strict=True)) == {
        i: expected.get(i, N_UNK) for i in range(48)}
    by_id = cells.set_index("id")
    for cid in ids:
        mine = ss.cell_id == cid
        cell = by_id.loc[cid]
        org = ss.origin[mine]
        assert (org[:, 0] >= cell.px_row0).all() and (org[:, 1] >= cell.px_col0).all()
        assert (org[:, 0] + 16 <= cell.px_row0 + cell.px_rows).all()
        assert (org[:, 1] + 16 <= cell.px_col0 + cell.px_cols).all()
        assert len(np.unique(org, axis=0)) == len(org)
        assert ss.centre[mine].sum() == 1
        assert org[ss.centre[mine]][0].tolist() == [cell.px_row0 + 4, cell.px_col0 + 2]
        assert (ss.y[mine] == cell.label).all()
    for i in range(0, n, 7):
        r, c = ss.origin[i]
        np.testing.assert_array_equal(ss.X[i], stack[:, r:r + 16, c:c + 16])
    table = counts_table(ss)
    assert table.loc["positive", "all crops"] == 56 and table.loc["positive", "all cells"] == 8
    assert table.loc["negative", "test cells"] == 2  # round(0.2 * 12) = 2
    assert table.loc["positive", "test cells"] == 2  # round(0.2 * 8) = 2
    assert table.loc["positive", "train cells"] == 6
    assert table.loc["positive", "test crops"] == 2 * N_POS
    assert table.loc["unknown", "train crops"] == table.loc["unknown", "test crops"] == 0
    assert table.loc["total", "all crops"] == 120
    assert ss.manifest["counts"] == {k: {c: int(v) for c, v in row.items()}
                                     for k, row in table.to_dict(orient="index").items()}
    assert ss.manifest["crop_spec"] == SPEC.to_dict()
    assert ss.manifest["cells"]["by_label"]["positive"] == {"usable": 8, "dropped": 0}
    assert ss.manifest["layer_names"] == NAMES and ss.manifest["seed"] == 0
    written = gpd.read_file(tmp_path / "cells.gpkg")
    assert {"id", "row", "col", "label", "reason", "coverage", "usable", "test_fold",
            "n_crops"} <= set(written.columns)
    assert written["n_crops"].sum() == 120


def test_round_trip(tmp_path):
    stack, grid, cells = setup_data()
    built = build_samples(stack, NAMES, grid, cells, crops=SPEC, split="block", block_size=2,
                          folds=3, seed=4, out_dir=tmp_path, progress=False)
    loaded = load_sample_set(tmp_path)
    for name in ("X", "y", "cell_id", "origin", "centre", "test_fold", "norm_center",
                 "norm_scale"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(built, name))
    assert loaded.n_folds == 3 and loaded.split == "block" and loaded.layer_names == NAMES
    assert loaded.manifest == built.manifest and loaded.path == tmp_path
    assert loaded.y.dtype == np.int64 and loaded.centre.dtype == bool
    assert loaded.norm_center.shape == (3, 3)
    assert counts_table(loaded).equals(counts_table(built))


def test_normalisation_uses_training_cells_only(tmp_path):
    stack, grid, cells = setup_data()
    ss = build_samples(stack, NAMES, grid, cells, crops=SPEC, out_dir=tmp_path / "a",
                       progress=False)
    train_cells = np.unique(ss.cell_id[ss.train_indices()])
    assert set(train_cells) <= set(POSITIVE + NEGATIVE)
    center, scale = manual_scaling(cell_pixels(stack, cells, train_cells))
    np.testing.assert_allclose(ss.norm_center[0], center, rtol=1e-6)
    np.testing.assert_allclose(ss.norm_scale[0], scale, rtol=1e-6)
    # wildly different values in the test and unknown cells change nothing
    changed = stack.copy()
    others = cells.loc[~cells["id"].isin(train_cells), "id"].to_numpy()
    for block in cell_pixels(changed, cells, others):
        block *= 1000.0
        block += 1e6
    ss2 = build_samples(changed, NAMES, grid, cells, crops=SPEC, out_dir=tmp_path / "b",
                        progress=False)
    np.testing.assert_array_equal(ss2.test_fold, ss.test_fold)
    np.testing.assert_array_equal(ss2.norm_center, ss.norm_center)
    np.testing.assert_array_equal(ss2.norm_scale, ss.norm_scale)
    test = ss.test_indices()
    assert np.abs(ss2.X[test] - ss.X[test]).min() > 1e5


def test_one_normalisation_per_fold(tmp_path):
    stack, grid, cells = setup_data()
    ss = build_samples(stack, NAMES, grid, cells, crops=SPEC, folds=4, out_dir=tmp_path,
                       progress=False)
    assert ss.n_folds == 4 and ss.norm_center.shape == (4, 3)
    labelled = ss.y != Label.UNKNOWN
    assert set(np.unique(ss.test_fold[labelled])) == {0, 1, 2, 3}
    assert (ss.test_fold[~labelled] == -1).all()
    for fold in range(4):
        train_cells = np.unique(ss.cell_id[ss.train_indices(fold)])
        center, scale = manual_scaling(cell_pixels(stack, cells, train_cells))
        np.testing.assert_allclose(ss.norm_center[fold], center, rtol=1e-6)
        np.testing.assert_allclose(ss.norm_scale[fold], scale, rtol=1e-6)
    assert not np.allclose(ss.norm_center[0], ss.norm_center[1])


def test_normalised_and_dataset_equal_manual(tmp_path):
    stack, grid, cells = setup_data()
    ss = build_samples(stack, NAMES, grid, cells, crops=SPEC, folds=2, out_dir=tmp_path,
                       progress=False)
    idx = ss.test_indices(1)[::-1]
    c = ss.norm_center[1][:, None, None]
    s = ss.norm_scale[1][:, None, None]
    manual = ((np.asarray(ss.X[idx], dtype=np.float64) - c) / s)
    got = ss.normalised(idx, fold=1)
    assert got.dtype == np.float32 and got.shape == (len(idx), 3, 16, 16)
    np.testing.assert_allclose(got, manual, rtol=1e-5, atol=1e-5)
    ds = CropDataset(ss, idx, fold=1)
    assert len(ds) == len(idx)
    x, y = ds[2]
    assert x.dtype == torch.float32 and x.shape == (3, 16, 16)
    np.testing.assert_allclose(x.numpy(), manual[2], rtol=1e-5, atol=1e-5)
    assert y == ss.y[idx[2]]
    xb, yb = next(iter(torch.utils.data.DataLoader(ds, batch_size=5)))
    assert xb.shape == (5, 3, 16, 16) and yb.dtype == torch.int64
    np.testing.assert_allclose(xb.numpy(), manual[:5], rtol=1e-5, atol=1e-5)
    # pickling (DataLoader workers) reopens X.npy instead of copying the crops
    blob = pickle.dumps(ds)
    assert len(blob) < ss.X.nbytes / 4
    np.testing.assert_array_equal(pickle.loads(blob)[2][0].numpy(), x.numpy())
    assert len(CropDataset(ss)) == len(ss)


def test_small_cells_take_context_or_are_dropped(tmp_path):
    # 10 x 8 cells of 12 x 12 px; 16-px windows reach 2 px into the neighbours
    grid = Grid.from_bounds("EPSG:32649", (0.0, 0.0, 120.0, 96.0), 1.0)
    cells = make_cells(grid, cols=10, rows=8)
    stack = np.random.default_rng(1).normal(size=(2, 96, 120)).astype(np.float32)
    stack[1, 48, 48] = np.nan  # in cell 44 = (4, 4), inside the windows of cells 33, 34, 43, 44
    cells = cell_coverage(stack, cells, ["a", "b"], tolerance=0.01)
    labels = np.full(len(cells), -1)
    labels[[11, 12, 23, 34, 44]] = Label.POSITIVE     # 34, 44: their windows hold the NaN
    labels[[15, 16, 27, 0, 33]] = Label.NEGATIVE      # 0: corner, window leaves the grid
    cells["label"] = labels
    with pytest.warns(DroppedDataWarning, match=r"dropped \d+ cells smaller than the 16-pixel"):
        ss = build_samples(stack, ["a", "b"], grid, cells, crops=CropSpec(size=16),
                           out_dir=tmp_path, progress=False)
    written = gpd.read_file(tmp_path / "cells.gpkg").set_index("id")
    assert written.loc[0, "drop_reason"] == "crop window leaves the grid"
    assert written.loc[44, "drop_reason"] == "crop window touches nodata"
    for cid in (33, 34, 43):
        assert written.loc[cid, "drop_reason"] == "crop window touches nodata"
    assert not written.loc[[0, 33, 34, 43, 44], "usable"].any()
    edge = written[(written["row"].isin([0, 7])) | (written["col"].isin([0, 9]))]
    assert (edge["drop_reason"] == "crop window leaves the grid").all()
    assert ss.manifest["dropped_cells"]["by_reason"]["crop window leaves the grid"] == 32
    assert ss.manifest["cells"]["smaller_than_crop"] == len(np.unique(ss.cell_id))
    _, per_cell = np.unique(ss.cell_id, return_counts=True)
    assert (per_cell == 1).all() and ss.centre.all()
    k = int(np.flatnonzero(ss.cell_id == 12)[0])
    assert ss.origin[k].tolist() == [12 - 2, 24 - 2]
    np.testing.assert_array_equal(ss.X[k], stack[:, 10:26, 22:38])


def test_tolerance_fills_nan_with_cell_median(tmp_path):
    stack, grid, cells = setup_data()
    stack[0, 3, 3] = np.nan  # cell 0 (positive), 1 of 480 pixels
    with pytest.warns(DroppedDataWarning):
        strict = cell_coverage(stack, cells, NAMES)
    assert not strict.loc[0, "usable"]
    kept = cell_coverage(stack, cells, NAMES, tolerance=0.01)
    ss = build_samples(stack, NAMES, grid, kept, crops=SPEC, out_dir=tmp_path, progress=False)
    mine = np.flatnonzero(ss.cell_id == 0)
    assert np.isfinite(ss.X[mine]).all()
    median = np.float32(np.nanmedian(stack[0, :24, :20]))
    covering = [i for i in mine if ss.origin[i, 0] <= 3 < ss.origin[i, 0] + 16
                and ss.origin[i, 1] <= 3 < ss.origin[i, 1] + 16]
    assert covering
    for i in covering:
        assert ss.X[i, 0, 3 - ss.origin[i, 0], 3 - ss.origin[i, 1]] == median


@pytest.mark.parametrize("label", [Label.POSITIVE, Label.NEGATIVE])
def test_no_usable_class_raises(tmp_path, label):
    stack, grid, cells = setup_data()
    for block in cell_pixels(stack, cells, cells.loc[cells["label"] == label, "id"].to_numpy()):
        block[0, 0, 0] = np.nan
    name = label.name.lower()
    with pytest.warns(DroppedDataWarning), pytest.raises(
            InputDataError, match=f"no usable {name} cells: .* all were dropped"):
        build_samples(stack, NAMES, grid, cells, crops=SPEC, out_dir=tmp_path, progress=False)


def test_build_errors(tmp_path):
    stack, grid, cells = setup_data()
    kw = dict(crops=SPEC, out_dir=tmp_path, progress=False)
    with pytest.raises(InputDataError, match="but the grid has 144 x 160"):
        build_samples(stack[:, :100], NAMES, grid, cells, **kw)
    with pytest.raises(InputDataError, match="3 layers but 2 layer names"):
        build_samples(stack, NAMES[:2], grid, cells, **kw)
    with pytest.raises(InputDataError, match="larger than the whole grid"):
        build_samples(stack, NAMES, grid, cells, crops=CropSpec(size=145), out_dir=tmp_path)
    with pytest.raises(InputDataError, match="no `label` column"):
        build_samples(stack, NAMES, grid, cells.drop(columns="label"), **kw)
    odd = cells.copy()
    odd.loc[3, "label"] = 2
    with pytest.raises(InputDataError, match=r"1 cells have labels outside \{1, 0, -1\}"):
        build_samples(stack, NAMES, grid, odd, **kw)
    with pytest.raises(UnknownNameError, match="unknown split 'spatial'"):
        build_samples(stack, NAMES, grid, cells, split="spatial", **kw)
    with pytest.raises(InputDataError, match="test_fraction must be in"):
        build_samples(stack, NAMES, grid, cells, test_fraction=1.0, **kw)
    assert not any(tmp_path.iterdir())  # nothing written before the checks


def test_sample_set_errors(tmp_path):
    with pytest.raises(StageNotReadyError, match=r"no sample set in .*'X.npy'"):
        load_sample_set(tmp_path)
    stack, grid, cells = setup_data()
    ss = build_samples(stack, NAMES, grid, cells, crops=SPEC, out_dir=tmp_path, progress=False)
    with pytest.raises(InputDataError, match="fold 1 does not exist: .* 1 fold"):
        ss.train_indices(1)
    with pytest.raises(InputDataError, match="fold -1 does not exist"):
        ss.test_indices(-1)
    with pytest.raises(InputDataError, match=r"crop indices must lie in \[0, 120\)"):
        CropDataset(ss, [0, 120])
    np.save(tmp_path / "X.npy", np.zeros((3, 3, 16, 16), np.float32))
    with pytest.raises(InputDataError, match="X.npy holds 3 crops but meta.npz describes 120"):
        load_sample_set(tmp_path)

"""Tests of the out-of-core evidence stack: LazyStack, load_stack_auto, and the stages on it."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from shapely.geometry import LineString, Point

from oremap import maps
from oremap.errors import DroppedDataWarning, InputDataError, StageNotReadyError
from oremap.evidence import (
    GeochemLayerSpec,
    GeologyLayerSpec,
    LazyStack,
    build_evidence,
    load_stack,
    load_stack_auto,
    open_stack,
)
from oremap.grid import Grid
from oremap.predict import tta_probabilities
from oremap.samples import CropSpec, Label, build_samples, cell_coverage, make_cells

# (strip_rows, cache_strips): cells of 20 rows span up to 4 strips of 7 rows (cached); with
# one cached strip of 5 rows every cell is a direct read; strips of 64 rows cross cells.
CACHES = [(7, 4), (5, 1), (64, 2)]


@pytest.fixture(scope="module")
def evidence(tmp_path_factory):
    """120 x 160 px of 10 m, 4 layers; Au and Cu have nodata outside the samples' hull."""
    grid = Grid.from_bounds("EPSG:32650", (400000, 3000000, 401600, 3001200), 10)
    rng = np.random.default_rng(3)
    x0, y0, x1, y1 = grid.bounds
    xy = rng.uniform([x0 + 100, y0 + 50], [x1 - 60, y1 - 120], (80, 2))
    au = rng.lognormal(size=80)
    faults = [LineString([(x0 - 50, y0 + 200), (x1 + 50, y0 + 900)])]
    specs = [
        GeochemLayerSpec("Au", xy, au, "test Au", log10=True, coverage_buffer=30.0),
        GeochemLayerSpec("Cu", xy, au * 2 + 1, "test Cu", neighbours=8, coverage_buffer=0.0),
        GeologyLayerSpec("fault_distance", faults, "test faults", measure="distance"),
        GeologyLayerSpec("intrusion", [Point(x0 + 900, y0 + 500).buffer(200)], "test intr",
                         measure="density", radius=60.0),
    ]
    out = tmp_path_factory.mktemp("evidence")
    build_evidence(specs, grid, out, previews=False, progress=False, block=50)
    return out


@pytest.fixture(scope="module")
def loaded(evidence):
    return load_stack(evidence)


def _labelled_cells(grid: Grid, stack: np.ndarray, names: list[str], *, tolerance: float):
    cells = make_cells(grid, cols=8, rows=6)  # 20 x 20 px
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DroppedDataWarning)
        cells = cell_coverage(stack, cells, names, tolerance=tolerance)
    rng = np.random.default_rng(1)
    labels = rng.choice([int(Label.POSITIVE), int(Label.NEGATIVE), int(Label.UNKNOWN)],
                        size=len(cells), p=[0.25, 0.35, 0.4])
    cells["label"] = labels
    usable = cells["usable"].to_numpy()
    assert ((labels == Label.POSITIVE) & usable).sum() >= 3
    assert ((labels == Label.NEGATIVE) & usable).sum() >= 3
    return cells


# ----------------------------------------------------------------------------------- slicing


@pytest.mark.parametrize(("strip_rows", "cache_strips"), CACHES)
def test_lazy_slices_equal_load_stack(evidence, loaded, strip_rows, cache_strips):
    full, names, grid = loaded
    assert np.isnan(full).any() and np.isfinite(full).any()
    lazy = open_stack(evidence, strip_rows=strip_rows, cache_strips=cache_strips)
    assert lazy.shape == full.shape and lazy.ndim == 3 and lazy.dtype == np.float32
    assert lazy.layer_names == names and lazy.grid == grid and len(lazy) == 4
    rng = np.random.default_rng(0)
    keys = [np.s_[:, 0:5, 0:7], np.s_[:, 115:, 150:], np.s_[:, :, :], np.s_[1:3, 10:30, 40:41],
            np.s_[2, 60:80, :], np.s_[-1, -5:, -9:-2], np.s_[:, 100:500, -3:],
            np.s_[:, -3:29, 0:10], np.s_[:, 50:50, 0:10], np.s_[0], np.s_[:, 7:14]]
    for _ in range(40):
        r0, c0 = rng.integers(0, 120), rng.integers(0, 160)
        keys.append(np.s_[:, r0:r0 + rng.integers(1, 40), c0:c0 + rng.integers(1, 40)])
    for key in keys:
        got = lazy[key]
        want = full[key]
        assert got.dtype == np.float32 and got.shape == want.shape, key
        np.testing.assert_array_equal(got, want)


def test_lazy_reads_each_strip_once_in_raster_order(evidence, loaded):
    full = loaded[0]
    with open_stack(evidence, strip_rows=16, cache_strips=2) as lazy:
        for r in range(0, 120, 20):
            for c in range(0, 160, 20):
                np.testing.assert_array_equal(lazy[:, r:r + 20, c:c + 20],
                                              full[:, r:r + 20, c:c + 20])
        assert lazy.strip_reads == 8  # ceil(120 / 16)
        assert len(lazy._cache) == 2
    assert len(lazy._cache) == 0  # closed: cache emptied
    np.testing.assert_array_equal(lazy[:, 0:3, 0:3], full[:, 0:3, 0:3])  # still usable


def test_lazy_errors(evidence, tmp_path):
    lazy = open_stack(evidence)
    with pytest.raises(InputDataError, match="strip_rows must be a whole number"):
        open_stack(evidence, strip_rows=0)
    with pytest.raises(InputDataError, match="cache_strips must be a whole number"):
        LazyStack(evidence, cache_strips=1.5)
    with pytest.raises(IndexError, match="step-1 slices"):
        lazy[:, ::2, :]
    with pytest.raises(IndexError, match="step-1 slices"):
        lazy[:, 3, :]
    with pytest.raises(IndexError, match="3-D"):
        lazy[:, 1:2, 1:2, 0]
    with pytest.raises(IndexError, match="out of range"):
        lazy[4]
    with pytest.raises(IndexError, match="int or a slice"):
        lazy[[0, 1]]
    with pytest.raises(TypeError, match="not turned into an array"):
        np.asarray(lazy)
    with pytest.raises(StageNotReadyError, match="run `oremap evidence "):
        open_stack(tmp_path)
    doc = json.loads((evidence / "stack.json").read_text())
    (tmp_path / "stack.json").write_text(json.dumps({**doc, "complete": False}))
    with pytest.raises(StageNotReadyError, match="incomplete"):
        load_stack_auto(tmp_path, max_bytes=0)
    (tmp_path / "stack.json").write_text(json.dumps(doc))
    broken = open_stack(tmp_path)  # layer files absent: reported when read
    with pytest.raises(StageNotReadyError, match="is missing"):
        broken[:, 0:2, 0:2]


def test_load_stack_auto_switches_at_max_bytes(evidence, loaded):
    full = loaded[0]
    stack, names, grid = load_stack_auto(evidence, max_bytes=full.nbytes)
    assert isinstance(stack, np.ndarray)
    np.testing.assert_array_equal(stack, full)
    lazy, names2, grid2 = load_stack_auto(evidence, max_bytes=full.nbytes - 1, strip_rows=9,
                                          cache_strips=2)
    assert isinstance(lazy, LazyStack) and lazy.nbytes == full.nbytes
    assert (lazy.strip_rows, lazy.cache_strips) == (9, 2)
    assert names2 == names and grid2 == grid
    assert isinstance(load_stack_auto(evidence)[0], np.ndarray)  # default 2 GiB


# ----------------------------------------------------------------------------------- samples


def _files(path):
    with np.load(path / "meta.npz") as meta:
        arrays = {k: meta[k] for k in meta.files}
    return ((path / "X.npy").read_bytes(), arrays,
            json.loads((path / "normalisation.json").read_text()),
            json.loads((path / "manifest.json").read_text()))


@pytest.mark.parametrize(("strip_rows", "cache_strips"), CACHES)
def test_build_samples_lazy_equals_in_memory(evidence, loaded, tmp_path, strip_rows,
                                            cache_strips):
    full, names, grid = loaded
    cells = _labelled_cells(grid, full, names, tolerance=0.3)
    lazy = open_stack(evidence, strip_rows=strip_rows, cache_strips=cache_strips)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DroppedDataWarning)
        lazy_cov = cell_coverage(lazy, cells.drop(columns=["usable"]), names, tolerance=0.3)
    assert lazy_cov["coverage"].tolist() == cells["coverage"].tolist()
    assert lazy_cov["drop_reason"].tolist() == cells["drop_reason"].tolist()
    spec = CropSpec(size=8, positive=(50, 4, 4), negative=(5, 8, 8))
    for name, stack in (("mem", full), ("lazy", lazy)):
        build_samples(stack, names, grid, cells, crops=spec, folds=2, seed=4,
                      out_dir=tmp_path / name, progress=False)
    x_mem, meta_mem, norm_mem, man_mem = _files(tmp_path / "mem")
    x_lazy, meta_lazy, norm_lazy, man_lazy = _files(tmp_path / "lazy")
    assert x_lazy == x_mem and len(x_mem) > 100_000
    assert meta_lazy.keys() == meta_mem.keys()
    for key, value in meta_mem.items():
        np.testing.assert_array_equal(meta_lazy[key], value, err_msg=key)
    assert norm_lazy == norm_mem and man_lazy == man_mem
    assert lazy.strip_reads + lazy.direct_reads > 0
    assert (lazy.direct_reads > 0) == (cache_strips == 1)  # 20-row cells span <= 4 strips


def test_build_samples_small_cells_lazy_equals_in_memory(evidence, loaded, tmp_path):
    """Windows of 24 px on cells of 20 px reach into the neighbours (read_window)."""
    full, names, grid = loaded
    cells = _labelled_cells(grid, full, names, tolerance=0.0)
    spec = CropSpec(size=24)
    lazy = open_stack(evidence, strip_rows=11, cache_strips=3)
    for name, stack in (("mem", full), ("lazy", lazy)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", DroppedDataWarning)
            build_samples(stack, names, grid, cells, crops=spec, out_dir=tmp_path / name,
                          progress=False)
        assert any("smaller than the 24-pixel crop window" in str(w.message) for w in caught)
    x_mem, meta_mem, _, man_mem = _files(tmp_path / "mem")
    x_lazy, meta_lazy, _, man_lazy = _files(tmp_path / "lazy")
    assert x_lazy == x_mem and man_lazy == man_mem
    assert man_mem["cells"]["smaller_than_crop"] > 0
    np.testing.assert_array_equal(meta_lazy["origin"], meta_mem["origin"])


def test_tta_lazy_equals_in_memory(evidence, loaded, tmp_path):
    full, names, grid = loaded
    cells = _labelled_cells(grid, full, names, tolerance=0.3)
    spec = CropSpec(size=8, positive=(6, 4, 4), negative=(2, 8, 8))
    ss = build_samples(full, names, grid, cells, crops=spec, out_dir=tmp_path, progress=False)
    usable = cells.loc[cells["usable"]].reset_index(drop=True)

    def fn(x: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-x.mean(axis=(1, 2, 3))))

    want = tta_probabilities(fn, full, usable, ss, 0, spec, chunk=5)
    got = tta_probabilities(fn, open_stack(evidence, strip_rows=6, cache_strips=4), usable,
                             ss, 0, spec, chunk=5)
    assert np.isfinite(want).all() and len(want) == len(usable)
    np.testing.assert_array_equal(got, want)


# ----------------------------------------------------------------------------------- maps


def _recording(calls: list):
    def predict(crops: np.ndarray) -> np.ndarray:
        calls.append(crops.copy())
        return np.nanmean(crops[:, 0], axis=(1, 2)) + 0.001 * crops[:, 3].sum(axis=(1, 2))
    return predict


@pytest.mark.parametrize(("strip_rows", "batch"), [(1, 7), (3, 64), (None, 256), (500, 13)])
def test_sliding_window_lazy_and_strips_equal_whole(evidence, loaded, strip_rows, batch):
    full, _, grid = loaded
    ref_calls: list = []
    with pytest.warns(DroppedDataWarning, match="windows touch nodata"):
        ref, ref_grid = maps.sliding_window_map(_recording(ref_calls), full, grid, size=9,
                                                stride=4, batch=batch, strip_rows=10**6,
                                                progress=False)
    assert np.isnan(ref).any() and np.isfinite(ref).sum() > 100
    for stack in (full, open_stack(evidence, strip_rows=5, cache_strips=2)):
        calls: list = []
        with pytest.warns(DroppedDataWarning, match="windows touch nodata"):
            prob, out_grid = maps.sliding_window_map(_recording(calls), stack, grid, size=9,
                                                     stride=4, batch=batch,
                                                     strip_rows=strip_rows, progress=False)
        np.testing.assert_array_equal(prob, ref)
        assert out_grid == ref_grid
        assert len(calls) == len(ref_calls)  # same batches, in the same order
        for got, want in zip(calls, ref_calls, strict=True):
            np.testing.assert_array_equal(got, want)


def test_sliding_window_strip_rows_error(loaded):
    full, _, grid = loaded
    with pytest.raises(InputDataError, match="strip_rows must be >= 1"):
        maps.sliding_window_map(np.zeros_like, full, grid, size=8, strip_rows=0,
                                progress=False)

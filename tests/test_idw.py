"""Tests of oremap.evidence.idw against gstat's idw and a brute-force reference."""

from __future__ import annotations

import importlib
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rasterio.windows import Window

from oremap.errors import DroppedDataWarning, InputDataError
from oremap.evidence.idw import IdwInterpolator, idw, idw_map, prepare_samples
from oremap.grid import Grid

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"reference data {DATA} absent")


def _oracle_files() -> list[Path]:
    return sorted(DATA.glob("*/oracle_idw_*.csv")) if DATA.is_dir() else []


def _oracle_case(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict, np.ndarray]:
    """Samples, values, targets, idw kwargs and expected values for one gstat oracle file."""
    m = re.fullmatch(r"oracle_idw_(logzinc|cu)_idp(\d+)(?:_nmax(\d+))?(?:_(grid|validation))?"
                     r"\.csv", path.name)
    if m is None:
        raise AssertionError(f"unknown oracle file {path.name}: add its R call to this test")
    oracle = pd.read_csv(path)
    kwargs = {"power": float(m.group(2))}
    if m.group(3):
        kwargs["neighbours"] = int(m.group(3))
    if m.group(1) == "logzinc":  # gstat::idw(log(zinc) ~ 1, meuse, meuse.grid, idp, nmax)
        s = pd.read_csv(path.parent / "meuse.csv")
        xy, z = s[["x", "y"]].to_numpy(), np.log(s["zinc"].to_numpy())
        targets = oracle[["x", "y"]].to_numpy()
    else:  # gstat::idw(Cu ~ 1, jura.pred, jura.grid / jura.val, idp = 2) on Xloc, Yloc (km)
        s = pd.read_csv(path.parent / "jura_pred.csv")
        xy, z = s[["Xloc", "Yloc"]].to_numpy(), s["Cu"].to_numpy()
        targets = oracle[["Xloc", "Yloc"]].to_numpy()
    return xy, z, targets, kwargs, oracle["var1.pred"].to_numpy()


@needs_data
def test_every_oracle_file_is_covered():
    names = {p.name for p in _oracle_files()}
    assert {"oracle_idw_logzinc_idp1.csv", "oracle_idw_logzinc_idp2.csv",
            "oracle_idw_logzinc_idp2_nmax12.csv", "oracle_idw_cu_idp2_grid.csv",
            "oracle_idw_cu_idp2_validation.csv"} <= names


@needs_data
@pytest.mark.parametrize("path", _oracle_files(), ids=lambda p: p.name)
def test_matches_gstat(path):
    xy, z, targets, kwargs, expected = _oracle_case(path)
    got = idw(xy, z, targets, **kwargs)
    rel = np.abs(got - expected) / np.abs(expected)
    assert rel.max() < 1e-9
    # also in small blocks of targets: the result must not depend on the blocking
    np.testing.assert_allclose(idw(xy, z, targets, block_size=37, **kwargs), got, rtol=1e-14)


def _brute(xy, z, t, power=2.0, neighbours=None, radius=None):
    d2 = ((t[:, None, :] - xy[None]) ** 2).sum(-1)
    out = np.full(len(t), np.nan)
    for i in range(len(t)):
        sel = np.argsort(d2[i], kind="stable")
        if neighbours is not None:
            sel = sel[:neighbours]
        if radius is not None:
            sel = sel[d2[i, sel] <= radius**2]
        if len(sel) == 0:
            continue
        if d2[i, sel].min() == 0:
            out[i] = z[sel[np.argmin(d2[i, sel])]]
            continue
        w = d2[i, sel] ** (-power / 2)
        out[i] = (w * z[sel]).sum() / w.sum()
    return out


@pytest.mark.parametrize("kwargs", [
    {}, {"power": 1.0}, {"power": 3.5}, {"power": 0.0}, {"neighbours": 5},
    {"neighbours": 1}, {"radius": 12.0}, {"radius": 12.0, "neighbours": 4},
    {"radius": 9.0, "power": 0.0},
])
def test_matches_brute_force(kwargs):
    rng = np.random.default_rng(3)
    xy = rng.uniform(0, 100, (120, 2))
    z = rng.normal(size=120)
    t = rng.uniform(-20, 120, (600, 2))
    t[:4] = xy[:4]  # targets on samples take the sample's value
    got = idw(xy, z, t, **kwargs)
    expected = _brute(xy, z, t, **kwargs)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(got[:4], z[:4])
    if "radius" in kwargs:
        assert np.isnan(got).sum() > 0  # targets far outside get no sample


def test_radius_is_inclusive_and_blocks_are_bounded():
    xy = np.array([[0.0, 0.0], [3.0, 4.0]])
    z = np.array([1.0, 3.0])
    t = np.array([[0.0, 5.0], [0.0, 5.0 + 1e-9], [10.0, 10.0]])
    got = idw(xy, z, t, radius=5.0)  # (0, 5) is at exactly 5 from (0, 0): included
    w = np.array([1 / 25, 1 / 10])
    assert got[0] == pytest.approx((w * z).sum() / w.sum(), rel=1e-14)
    assert got[1] == 3.0  # only (3, 4) within 5
    assert np.isnan(got[2])
    # radius-only search in sub-blocks of a few pairs gives the same as one block
    rng = np.random.default_rng(0)
    xy, z, t = rng.uniform(0, 10, (50, 2)), rng.normal(size=50), rng.uniform(0, 10, (200, 2))
    m = importlib.import_module("oremap.evidence.idw")  # the package exports a function idw
    ref = idw(xy, z, t, radius=3.0)
    old = m._KNN_PAIRS
    try:
        m._KNN_PAIRS = 10
        np.testing.assert_allclose(idw(xy, z, t, radius=3.0), ref, rtol=1e-14)
    finally:
        m._KNN_PAIRS = old


def test_neighbours_beyond_n_means_all_and_large_powers_are_finite():
    rng = np.random.default_rng(1)
    xy = rng.uniform(4e5, 4.1e5, (30, 2))
    z = rng.normal(size=30)
    t = rng.uniform(4e5, 4.1e5, (100, 2))
    np.testing.assert_allclose(idw(xy, z, t, neighbours=30), idw(xy, z, t), rtol=1e-13)
    np.testing.assert_allclose(idw(xy, z, t, neighbours=1000), idw(xy, z, t), rtol=1e-13)
    # 1/d^200 under- or overflows float64 unless the weights are rescaled
    got = idw(xy, z, t, power=200.0)
    d2 = ((t[:, None] - xy[None]) ** 2).sum(-1)
    w = np.exp(-100.0 * np.log(d2 / d2.min(axis=1, keepdims=True)))
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, (w * z).sum(1) / w.sum(1), rtol=1e-10)


def test_idw_map_on_grid_cell_centres():
    grid = Grid.from_bounds("EPSG:32633", (0, 0, 400, 400), 10)  # 40 x 40
    xy = grid.centres()[[5, 170, 900, 1555]]  # samples on pixel centres
    z = np.array([1.0, 2.0, 3.0, 4.0])
    full = idw_map(xy, z, grid, neighbours=3)
    assert full.shape == (40, 40)
    assert full.ravel()[[5, 170, 900, 1555]].tolist() == [1.0, 2.0, 3.0, 4.0]
    np.testing.assert_allclose(full.ravel(), idw(xy, z, grid.centres(), neighbours=3))
    window = Window(7, 3, 11, 13)
    mask = np.zeros((13, 11), dtype=bool)
    mask[2:5, 1:9] = True
    part = idw_map(xy, z, grid, window=window, mask=mask, neighbours=3)
    assert np.isnan(part[~mask]).all()
    np.testing.assert_allclose(part[mask], full[3:16, 7:18][mask])
    with pytest.raises(InputDataError, match="mask shape"):
        idw_map(xy, z, grid, window=window, mask=np.ones((2, 2), dtype=bool))


def test_prepare_samples_drops_clips_logs_and_merges():
    xy = np.array([[0, 0], [1, 0], [2, 0], [3, 0], [1, 0], [5, 0]], dtype=float)
    values = np.array(["10", "abc", "100", None, "1000", "<0.5"], dtype=object)
    with pytest.warns(DroppedDataWarning, match=r"dropped 3 of 6 .*2 non-numeric"):
        s = prepare_samples(xy, values, source="a.csv column 'Au'", censored="drop")
    assert (s.n_input, s.n_dropped, s.n_duplicates) == (6, 3, 0)
    np.testing.assert_array_equal(s.values, [10.0, 100.0, 1000.0])
    vals = np.array([1.0, 10.0, 100.0, 1000.0, 10.0])
    xy = np.array([[0, 0], [1, 0], [2, 0], [3, 0], [0, 0]], dtype=float)
    with pytest.warns(DroppedDataWarning, match="1 samples lie at the same location"):
        s = prepare_samples(xy, vals, source="x", log10=True, clip_percentile=80)
    assert s.clip_value == pytest.approx(np.percentile(vals, 80))
    assert s.n_duplicates == 1 and len(s.xy) == 4
    got = dict(zip(map(tuple, s.xy), s.values, strict=True))
    assert got[(0.0, 0.0)] == pytest.approx(0.5)  # mean of log10 1 and log10 10
    assert got[(3.0, 0.0)] == pytest.approx(np.log10(s.clip_value))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clean = prepare_samples(xy[:4], vals[:4], source="x")
    assert clean.n_dropped == 0 and clean.clip_value is None


def test_prepare_samples_errors():
    xy = np.zeros((3, 2))
    with pytest.raises(InputDataError, match="none of the 3 assays"):
        prepare_samples(xy, np.array([np.nan, np.nan, np.nan]), source="s.csv")
    with pytest.raises(InputDataError, match="half the detection limit"):
        prepare_samples(np.eye(3, 2) + [[0, 0], [0, 0], [5, 5]], np.array([1.0, 0.0, 2.0]),
                        source="s.csv", log10=True)
    with pytest.raises(InputDataError, match=r"clip_percentile must be in \(0, 100\]"):
        prepare_samples(np.arange(6.0).reshape(3, 2), np.ones(3), source="s", clip_percentile=0)
    with pytest.raises(InputDataError, match="same table rows"):
        prepare_samples(xy, np.ones(2), source="s")
    with pytest.raises(InputDataError, match=r"\(n, 2\) array"):
        prepare_samples(np.zeros((3, 3)), np.ones(3), source="s")
    with pytest.raises(InputDataError, match="missing or infinite coordinates"):
        prepare_samples(np.array([[0.0, np.nan], [1, 1], [2, 2]]), np.ones(3), source="s")


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"power": -1.0}, "power must be"), ({"power": float("nan")}, "power must be"),
    ({"neighbours": 0}, "neighbours must be"), ({"neighbours": 2.5}, "neighbours must be"),
    ({"radius": 0.0}, "radius must be"), ({"radius": -3.0}, "radius must be"),
])
def test_bad_parameters(kwargs, match):
    with pytest.raises(InputDataError, match=match):
        idw(np.zeros((2, 2)) + [[0, 0], [1, 1]], np.ones(2), np.zeros((1, 2)), **kwargs)


def test_bad_arrays():
    xy = np.array([[0.0, 0.0], [1.0, 1.0]])
    with pytest.raises(InputDataError, match="same assay-table rows"):
        idw(xy, np.ones(3), xy)
    with pytest.raises(InputDataError, match="no samples"):
        IdwInterpolator(np.zeros((0, 2)), np.zeros(0))
    with pytest.raises(InputDataError, match="NaN or infinity"):
        idw(xy, np.array([1.0, np.nan]), xy)
    with pytest.raises(InputDataError, match="targets"):
        idw(xy, np.ones(2), np.array([[np.inf, 0.0]]))


@pytest.mark.parametrize("mode", [dict(), dict(neighbours=12), dict(radius=150.0),
                                  dict(neighbours=8, radius=150.0)])
def test_threads_give_bitwise_the_same_result(mode: dict) -> None:
    rng = np.random.default_rng(3)
    xy = rng.uniform(0, 1000, (300, 2))
    z = rng.lognormal(size=300)
    targets = rng.uniform(-50, 1050, (20_003, 2))
    one = idw(xy, z, targets, workers=1, **mode)
    blocks = idw(xy, z, targets, workers=1, block_size=1_000, **mode)
    for workers in (2, 3, -1):
        np.testing.assert_array_equal(idw(xy, z, targets, workers=workers, **mode), one)
        # 21 blocks in threads, each as computed alone
        np.testing.assert_array_equal(
            idw(xy, z, targets, workers=workers, block_size=1_000, **mode), blocks)

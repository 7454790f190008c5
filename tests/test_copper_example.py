"""The real-data example (Queensland copper): its config validates, its evidence stage runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from oremap import pipeline
from oremap.config import load_config
from oremap.evidence import load_stack
from oremap.runinfo import RunDir

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "copper_queensland"
ORACLE = EXAMPLE / "data" / "oracle_distmap_lineaments_1km.csv"


def test_config_validates_with_bundled_data() -> None:
    cfg = load_config(EXAMPLE / "copper.toml")
    assert cfg.labels.negatives == "distance" and cfg.samples.split == "block"
    assert cfg.samples.folds == 4
    for layer in cfg.geology:
        assert layer.path.exists(), layer.path
    assert cfg.labels.orebodies.path.exists()
    assert [g.measure for g in cfg.geology] == ["distance", "density", "buffer_density"]


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_evidence_and_samples_on_a_coarse_grid(tmp_path: Path) -> None:
    cfg = load_config(EXAMPLE / "copper.toml", overrides={
        "grid.pixel_size": 1.0, "grid.cell_cols": 15, "grid.cell_rows": 32,
        "samples.crop_size": 5, "samples.positive": {"n": 1, "a": 1, "b": 1},
        "samples.negative": {"n": 1, "a": 1, "b": 1}})
    run = tmp_path / "run"
    RunDir(run).start(cfg)
    pipeline.run_evidence(cfg, run, progress=False)
    stack, names, grid = load_stack(run / "evidence")
    assert names == ["lineament_distance", "lineament_density", "lineament_buffer_density"]
    assert stack.shape == (3, 160, 75)
    assert grid.crs.axis_info[0].unit_name == "kilometre"
    # distance layer against spatstat's exact distance map (1 km grid, offset by 0.165 km):
    # our 1 km pixel centres lie within half a pixel diagonal of the oracle's centres.
    oracle = pd.read_csv(ORACLE) if ORACLE.exists() else None
    if oracle is not None:
        rows, cols = grid.rowcol(oracle["x"].to_numpy(), oracle["y"].to_numpy())
        inside = (rows >= 0) & (rows < 160) & (cols >= 0) & (cols < 75)
        ours = stack[0, rows[inside], cols[inside]]
        ok = np.isfinite(ours)
        diff = np.abs(ours[ok] - oracle["dist"].to_numpy()[inside][ok])
        assert ok.sum() > 9000
        assert diff.max() <= np.sqrt(2) / 2 + 1e-9
    pipeline.run_samples(cfg, run, progress=False)
    manifest = pd.read_json(run / "samples" / "manifest.json", typ="series")
    assert manifest is not None
    cells = pipeline.gpd.read_file(run / "samples" / "cells.gpkg")
    positives = int((cells["label"] == 1).sum())
    negatives = int((cells["label"] == 0).sum())
    assert 30 <= positives <= 67
    # no ratio: every usable cell >= 5 km from every deposit, none nearer
    ore = pipeline.gpd.read_file(cfg.labels.orebodies.path, layer=cfg.labels.orebodies.layer)
    dist = cells.geometry.distance(ore.geometry.union_all()).to_numpy()
    far = (dist >= 5.0) & (cells["label"] != 1).to_numpy() & cells["usable"].to_numpy(bool)
    assert negatives == int(far.sum()) > 1.5 * positives
    assert (dist[(cells["label"] == 0).to_numpy()] >= 5.0).all()


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_pu_bagging_and_context_end_to_end_on_a_coarse_grid(tmp_path: Path) -> None:
    import pickle

    import torch

    cfg = load_config(EXAMPLE / "copper.toml", overrides={
        "grid.pixel_size": 0.3125, "samples.crop_size": 16,
        "samples.positive": {"n": 1, "a": 1, "b": 1},
        "samples.negative": {"n": 1, "a": 1, "b": 1}, "samples.block_size": 2,
        "labels.negatives": "pu_bagging", "labels.ratio": 2.0, "labels.bags": 4,
        "train.models": ["lenet"], "train.baselines": ["logistic"], "train.epochs": 2,
        "train.profile": "fast", "maps.continuous": True, "maps.stride": 16,
        "samples.context": 1})
    run = tmp_path / "run"
    pipeline.run(cfg, run, progress=False)
    with open(run / "train" / "fold0" / "logistic" / "model.pkl", "rb") as fh:
        model = pickle.load(fh)["baseline"]
    assert model.is_pu and len(model.estimator.estimators_) == 4
    assert model.layer_names == ("lineament_distance", "lineament_distance@ctx1",
                                 "lineament_density", "lineament_density@ctx1",
                                 "lineament_buffer_density", "lineament_buffer_density@ctx1")
    assert (run / "maps" / "prob_lenet.tif").is_file()  # sliding windows over the context stack
    meta = torch.load(run / "train" / "fold0" / "lenet" / "last.pt", weights_only=False)["meta"]
    assert meta["settings"]["imbalance"] == "pu_bagging"
    assert meta["settings"]["pu_ratio"] == 2.0
    table = pd.read_csv(run / "ensemble" / "ensemble.csv")
    assert set(table["label"]) == {0, 1}  # presence / background
    assert table[["p_lenet", "p_logistic", "ens_stacking"]].notna().all().all()
    comparison = pd.read_csv(run / "ensemble" / "comparison.csv", index_col=0)
    assert comparison["cell_roc_auc_mean"].between(0, 1).all()
    # four folds: parameters and calibrators fitted out of fold, fold by fold (issue #23)
    weights = json.loads((run / "ensemble" / "weights.json").read_text())
    assert weights["source"] == "out_of_fold" and len(weights["folds"]) == 4
    assert {f["calibration"]["lenet"]["method"] for f in weights["folds"]} == {"platt"}
    assert all(0 <= f["shrinkage"] <= 1 for f in [weights, *weights["folds"]])
    n_ore = int((table["label"] == 1).sum())
    assert weights["fitted_on"]["ore_cells"] == n_ore  # every deposit cell is held out once
    assert all(f["fitted_on"]["ore_cells"] < n_ore for f in weights["folds"])
    cal = pd.read_csv(run / "ensemble" / "calibration.csv", index_col=0)
    assert cal.loc["weighted_average", "calibration"] == "calibrated members"
    assert cal.loc["majority_voting", "ece"] == cal.loc["majority_voting", "ece_raw"]
    assert (run / "ensemble" / "reliability.png").is_file()

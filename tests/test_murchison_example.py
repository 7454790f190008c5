"""The Murchison gold example: its config validates with the bundled data, presence/background
negatives and the greenstone study area work on a coarse grid."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import pytest

from oremap import pipeline
from oremap.check import check_inputs
from oremap.config import load_config
from oremap.contract import file
from oremap.samples import load_sample_set

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "murchison_gold"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "murchison"

#: 10 km cells of 4 x 4 px (2.5 km pixels): the example's grid, coarse enough for a test.
COARSE = {"grid.pixel_size": 2500.0, "grid.bounds": [350000.0, 6695000.0, 690000.0, 7105000.0],
          "grid.cell_cols": 34, "grid.cell_rows": 41, "samples.crop_size": 4,
          "samples.positive": {"n": 1, "a": 4, "b": 4},
          "samples.negative": {"n": 1, "a": 4, "b": 4}}


def test_config_validates_and_every_input_opens() -> None:
    cfg = load_config(EXAMPLE / "murchison.toml")
    assert cfg.labels.negatives == "all" and cfg.samples.split == "block"
    assert (cfg.samples.block_size, cfg.samples.folds) == (4, 5)
    assert check_inputs(cfg) == []


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data/murchison not present")
def test_bundled_layers_equal_the_shared_data() -> None:
    for name in ("gold_deposits", "faults", "greenstone", "study_window"):
        mine = gpd.read_file(EXAMPLE / "data" / "murchison.gpkg", layer=name)
        shared = gpd.read_file(SHARED / f"{name}.gpkg")
        assert mine.crs == shared.crs
        assert mine.drop(columns="geometry").equals(shared.drop(columns="geometry"))
        assert all(a.equals_exact(b, 0) for a, b in zip(mine.geometry, shared.geometry))
        assert len(mine) == len(shared) > 0


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_all_negatives_and_greenstone_area_on_a_coarse_grid(tmp_path: Path) -> None:
    cfg = load_config(EXAMPLE / "murchison.toml", overrides=COARSE)
    pipeline.run_evidence(cfg, tmp_path / "run", progress=False)
    pipeline.run_samples(cfg, tmp_path / "run", progress=False)
    ss = load_sample_set(tmp_path / "run" / "samples")
    n_all = len(ss.y)
    assert (ss.y == 1).sum() > 100 and (ss.y == 0).sum() > 5 * (ss.y == 1).sum()
    assert (ss.y == -1).sum() == 0  # presence/background: no unknown cells
    area = {"path": str(EXAMPLE / "data" / "murchison.gpkg"), "layer": "greenstone",
            "rule": "intersects"}
    green = load_config(EXAMPLE / "murchison.toml", overrides={**COARSE, "samples.area": area})
    pipeline.run_samples(green, tmp_path / "run", progress=False)  # recomputed: area changed
    gs = load_sample_set(tmp_path / "run" / "samples")
    assert 0 < len(gs.y) < n_all and (gs.y == 1).sum() > 0.7 * (ss.y == 1).sum()
    assert (tmp_path / "run" / file("samples", "cells")).is_file()

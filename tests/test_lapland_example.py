"""The Central Lapland IOCG example (GTK data, not in the repository): its configurations
validate and every input opens when ``data`` beside them links to ../shared/data/lapland_iocg,
as its README tells users to do; evidence and samples run on a coarse grid."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import oremap.config
from oremap import pipeline
from oremap.check import check_inputs
from oremap.config import load_config
from oremap.samples import load_sample_set

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "lapland_iocg"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "lapland_iocg"

needs_data = pytest.mark.skipif(not SHARED.is_dir(),
                                reason="../shared/data/lapland_iocg not present")
needs_raster = pytest.mark.skipif(
    not hasattr(oremap.config.Config, "model_fields")
    or "raster" not in oremap.config.Config.model_fields,
    reason="[[raster]] is not in this version's configuration")

#: 2 km cells of 4 x 4 px (500 m pixels): the example's grid, coarse enough for a test.
COARSE = {"grid.pixel_size": 500.0, "samples.crop_size": 4,
          "samples.positive": {"n": 1, "a": 4, "b": 4},
          "samples.negative": {"n": 1, "a": 4, "b": 4}}


def _linked(tmp_path: Path, name: str) -> Path:
    """The example's config in a folder whose ``data`` links to the shared data."""
    shutil.copy(EXAMPLE / name, tmp_path / name)
    (tmp_path / "data").symlink_to(SHARED, target_is_directory=True)
    return tmp_path / name


@needs_data
def test_config_validates_and_every_input_opens(tmp_path: Path) -> None:
    cfg = load_config(_linked(tmp_path, "lapland.toml"))
    assert cfg.grid.crs == "EPSG:3067" and cfg.grid.pixels() == (1344, 1120)
    assert cfg.labels.negatives == "distance" and cfg.samples.split == "block"
    assert (cfg.samples.block_size, cfg.samples.folds) == (4, 5)
    assert cfg.geochem is not None and len(cfg.geochem.elements) == 10
    assert [g.name for g in cfg.geology] == ["fault_distance", "fault_density",
                                             "mafic_volcanics"]
    assert check_inputs(cfg) == []


@needs_data
@needs_raster
def test_geophysics_config_validates_and_every_input_opens(tmp_path: Path) -> None:
    cfg = load_config(_linked(tmp_path, "lapland_geophysics.toml"))
    assert [r.name for r in cfg.raster] == [
        "mag", "em_inphase", "em_quadrature", "em_resistivity", "em_ratio", "rad_k", "rad_th",
        "rad_u", "rad_total"]
    (tmp_path / "plain").mkdir()
    plain = load_config(_linked(tmp_path / "plain", "lapland.toml"))
    assert cfg.geochem == plain.geochem and cfg.geology == plain.geology
    assert cfg.labels == plain.labels and cfg.samples == plain.samples
    assert check_inputs(cfg) == []


@needs_data
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_evidence_and_samples_on_a_coarse_grid(tmp_path: Path) -> None:
    cfg = load_config(_linked(tmp_path, "lapland.toml"), overrides=COARSE)
    run = tmp_path / "run"
    pipeline.run_evidence(cfg, run, progress=False)
    pipeline.run_samples(cfg, run, progress=False)
    ss = load_sample_set(run / "samples")
    # the 17 deposits inside the study area lie in 17 distinct 2 km cells
    assert (ss.y == 1).sum() == 17
    assert (ss.y == 0).sum() == 170  # ratio = 10
    assert 1000 < len(ss.y) < 1200  # usable cells of the 1,470 (about 1,135 at 62.5 m)

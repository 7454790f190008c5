"""Python warnings on the command line: library warnings only with -v, oremap's own always; and
no affine deprecation warnings from oremap's raster code."""

from __future__ import annotations

import logging
import uuid
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio.windows
from affine import Affine
from rasterio.windows import Window
from typer.testing import CliRunner

from oremap import pipeline
from oremap.cli import app
from oremap.errors import DroppedDataWarning
from oremap.grid import Grid, window_transform

runner = CliRunner()


@pytest.fixture(autouse=True)
def _fresh_capture():
    """``logging.captureWarnings`` installs itself once per process: undo it around each test,
    as a fresh ``oremap`` process starts without it."""
    logging.captureWarnings(False)
    yield
    logging.captureWarnings(False)


def _stage_warning(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> tuple[str, str]:
    """Make every stage raise a library warning and an oremap warning, with fresh texts (each
    is said once per process)."""
    tag = uuid.uuid4().hex[:8]
    library = f"Use `@` matmul instead of `*` mul operator {tag}"
    ours = f"dropped 3 of 9 cells {tag}"

    def run_stage(name: str, run_dir: Path, config: Path | None, **kwargs: object) -> Path:
        warnings.warn(library, PendingDeprecationWarning, stacklevel=1)
        warnings.warn(ours, DroppedDataWarning, stacklevel=1)
        return tmp_path / "report.html"

    monkeypatch.setattr(pipeline, "run_stage", run_stage)
    return library, ours


def test_library_warnings_hidden_by_default(monkeypatch, tmp_path) -> None:
    library, ours = _stage_warning(monkeypatch, tmp_path)
    result = runner.invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "report: " in result.output
    assert "PendingDeprecationWarning" not in result.output and library not in result.output
    # oremap's own warnings are messages to the user: always shown, on one line
    assert "DroppedDataWarning: " + ours in " ".join(result.output.split())


def test_library_warnings_shown_with_verbose(monkeypatch, tmp_path) -> None:
    library, ours = _stage_warning(monkeypatch, tmp_path)
    result = runner.invoke(app, ["-v", "report", str(tmp_path)])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "DEBUG PendingDeprecationWarning: " + library in text
    assert "WARNING DroppedDataWarning: " + ours in text


@pytest.mark.parametrize("window", [Window(0, 0, 5, 5), Window(7, 3, 4, 2),
                                    Window(1024, 2048, 512, 512)])
@pytest.mark.parametrize("transform", [
    Affine(0.5, 0.0, 392000.0, 0.0, -0.5, 3720368.0),
    Affine(30.0, 0.0, 123456.789, 0.0, -30.0, 7654321.123),
    Affine(0.1, 0.02, -3.3, 0.01, -0.1, 51.7),
])
def test_window_transform_is_rasterios_without_the_warning(window, transform) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        expected = rasterio.windows.transform(window, transform)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = window_transform(window, transform)
    assert tuple(got) == tuple(expected)  # bit for bit


def test_raster_evidence_warps_without_warnings(tmp_path) -> None:
    """A raster layer warped onto the grid (the evidence stage) warns nothing."""
    from oremap.evidence.raster import RasterLayerSpec, prepare_raster, raster_window
    from oremap.io import write_raster

    grid = Grid.from_bounds("EPSG:32649", (392000.0, 3720000.0, 392064.0, 3720048.0), 1.0)
    src_grid = Grid.from_bounds("EPSG:32649", (391990.0, 3719990.0, 392080.0, 3720060.0), 2.0)
    values = np.arange(src_grid.height * src_grid.width, dtype=np.float32).reshape(
        src_grid.shape)
    path = tmp_path / "mag.tif"
    write_raster(path, values, src_grid)
    spec = RasterLayerSpec(name="mag", path=path, source="mag.tif band 1")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = raster_window(prepare_raster(spec, grid), grid,
                            Window(3, 5, grid.width - 3, grid.height - 5))
    assert out.shape == (grid.height - 5, grid.width - 3) and np.isfinite(out).all()

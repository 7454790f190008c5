"""The embedded synthetic study area: a seeded, Bawangou-like orogenic-gold demo written as files.

The demo imitates the Bawangou gold area of He et al. (2024, Sci. Rep. 14): orogenic gold in
metamorphic rocks, controlled by ENE ductile shear zones and their secondary faults. A hidden,
smooth mineralisation "fertility" field in [0, 1] drives everything else: soil geochemistry,
alteration zones, where the orebodies lie, and in part two airborne geophysical grids
(magnetics and gamma-ray potassium, each at a pixel size and origin of its own). The generator
writes ordinary files (CSV, GeoPackage, GeoTIFF) so that the demo goes through the same readers
as user data.

Coordinates inside the generator are local metres: ``u`` east and ``v`` north of the lower-left
corner of :data:`DEMO_BOUNDS`, and ``(s, t)``, the along-strike and across-strike axes of the
shear-zone system (``s`` toward ENE, ``t`` toward NNW).
"""

from __future__ import annotations

import logging
from pathlib import Path

from oremap.config import load_config
from oremap.demo.area import (
    DEMO_BOUNDS,
    DEMO_CELL_COLS,
    DEMO_CELL_ROWS,
    DEMO_CELL_SIZE_M,
    DEMO_CRS,
    DEMO_FERTILITY_PIXEL_M,
    DEMO_GEOPHYSICS_NODATA,
    DEMO_MAGNETICS_PIXEL_M,
    DEMO_PIXEL_SIZE,
    DEMO_RADIOMETRICS_PIXEL_M,
    DEMO_VERSION,
    ELEMENTS,
    demo_bounds,
    demo_grid,
)
from oremap.demo.config import DEMO_MODELS, EXAMPLE_CONFIG, example_config_text
from oremap.demo.files import DemoFiles, write_demo
from oremap.demo.generate import _build as _build
from oremap.demo.geophysics import magnetics_grid, radiometrics_grid
from oremap.io import write_text
from oremap.pipeline import run
from oremap.runinfo import RunDir

__all__ = [
    "DEMO_BOUNDS",
    "DEMO_CELL_COLS",
    "DEMO_CELL_ROWS",
    "DEMO_CELL_SIZE_M",
    "DEMO_CRS",
    "DEMO_FERTILITY_PIXEL_M",
    "DEMO_GEOPHYSICS_NODATA",
    "DEMO_MAGNETICS_PIXEL_M",
    "DEMO_MODELS",
    "DEMO_PIXEL_SIZE",
    "DEMO_RADIOMETRICS_PIXEL_M",
    "DEMO_VERSION",
    "ELEMENTS",
    "EXAMPLE_CONFIG",
    "DemoFiles",
    "demo_bounds",
    "demo_grid",
    "example_config_text",
    "magnetics_grid",
    "radiometrics_grid",
    "run_demo",
    "write_demo",
]


def run_demo(out: Path, *, quick: bool = False, seed: int = 0, overwrite: bool = False,
             progress: bool = True) -> Path:
    """Write the demo study area into ``out/data`` and run every stage into ``out/run``."""

    out = Path(out)
    rd = RunDir(out / ("run_quick" if quick else "run"))
    rd.claim()
    with rd.locked():  # one demo at a time in ``out``: its data are written before the run
        files = write_demo(out / "data", seed=seed)
        cfg_path = out / ("demo_quick.toml" if quick else "demo.toml")
        write_text(cfg_path, example_config_text("data", quick=quick, seed=seed))
        config = load_config(cfg_path)
        logging.getLogger("oremap").info("demo data in %s, configuration %s", files.root,
                                         cfg_path)
        return run(config, rd.root, progress=progress, overwrite=overwrite)

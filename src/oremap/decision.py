"""The decision of a run, drawn once: the recommended map (:func:`oremap.recommend.choose`),
the targets on it, and the two figures that show them (the decision map of the report's first
screen and the overview map). The report and the QGIS project read the same choice from
``maps/recommendation.json``, so all of them name one map."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd

from oremap import maps
from oremap.config import Config
from oremap.contract import file as F
from oremap.grid import Grid
from oremap.inputs import map_overlays
from oremap.maps import targets
from oremap.recommend import choose, write_choice

__all__ = ["draw_decision"]


def draw_decision(config: Config, run_dir: Path, cm: maps.CellMaps, cells: gpd.GeoDataFrame,
                  grid: Grid, orebodies: gpd.GeoDataFrame | None) -> tuple[str, gpd.GeoDataFrame]:
    """Choose the recommended map, record it, draw the targets on its cell map and write
    ``maps/targets.*``, ``maps/decision_map.png`` and ``maps/map_ensemble.png``.

    Returns the recommended name and the targets.
    """
    rules = config.ensemble.rules
    choice = choose(run_dir, default=config.maps.target_rule)
    best = choice.name if choice else config.maps.target_rule
    best = best if best in cm.rasters else rules[0]
    if choice:
        write_choice(run_dir, choice)
    tg = targets.target_areas(cm.rasters[best], cm.grid,
                              threshold=config.maps.target_threshold,
                              top_fraction=config.maps.target_top_fraction,
                              uncertainty=cm.uncertainty, orebodies=orebodies,
                              known_distance=config.maps.known_ground_distance)
    targets.write_targets(tg, run_dir / F("maps", "targets"), run_dir / F("maps", "targets_csv"))
    overlays = map_overlays(config, grid)
    maps.plot_prospectivity(cm.rasters[best], cm.grid, run_dir / "maps" / "map_ensemble.png",
                            title=f"Recommended map ({best}) and target areas",
                            orebodies=orebodies, targets=tg,
                            cells=cells.loc[cells["usable"].astype(bool)], overlays=overlays)
    maps.plot_decision_map(cm.rasters[best], cm.grid, run_dir / F("maps", "decision_map"),
                           targets=tg, orebodies=orebodies,
                           barren=[v for k, v in overlays.items() if k.startswith("barren")],
                           title=f"Recommended map: {best}")
    return best, tg

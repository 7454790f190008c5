"""Maps stage: cell and sliding-window rasters, the colour ramp, figures, targets, QGIS."""

from oremap.maps.cells import (
    CellMaps,
    cell_grid,
    cell_table,
    cells_to_raster,
    rank_uncertainty,
    seed_rank_uncertainty,
    uncertainty,
    write_cell_maps,
    write_seed_uncertainty,
)
from oremap.maps.colour import (
    PROSPECTIVITY_CMAP,
    lab_to_srgb,
    prospectivity_cmap,
    ramp,
    srgb_to_lab,
)
from oremap.maps.figures import _axis_labels as _axis_labels
from oremap.maps.figures import _nice_length as _nice_length
from oremap.maps.figures import (
    place_labels,
    plot_decision_map,
    plot_panels,
    plot_prospectivity,
    plot_uncertainty,
)
from oremap.maps.qgis import write_map_package, write_style
from oremap.maps.raster import describe_map, write_probability_map
from oremap.maps.targets import (
    RANK_RULE,
    TARGET_COLUMNS,
    TARGET_LABEL_GID,
    NoTargetsWarning,
    label_targets_on_axes,
    target_areas,
    to_grid_crs,
    to_roman,
    write_targets,
)
from oremap.maps.window import (
    PredictFn,
    continuous_maps,
    member_continuous_maps,
    member_window_predictor,
    sliding_window_map,
    window_map_task,
    window_tile,
    window_tiles,
    write_continuous_maps,
)

__all__ = [
    "CellMaps",
    "NoTargetsWarning",
    "PROSPECTIVITY_CMAP",
    "PredictFn",
    "RANK_RULE",
    "TARGET_COLUMNS",
    "TARGET_LABEL_GID",
    "cell_grid",
    "cell_table",
    "cells_to_raster",
    "continuous_maps",
    "describe_map",
    "lab_to_srgb",
    "label_targets_on_axes",
    "member_continuous_maps",
    "member_window_predictor",
    "place_labels",
    "plot_panels",
    "plot_decision_map",
    "plot_prospectivity",
    "plot_uncertainty",
    "prospectivity_cmap",
    "ramp",
    "rank_uncertainty",
    "seed_rank_uncertainty",
    "sliding_window_map",
    "srgb_to_lab",
    "target_areas",
    "to_grid_crs",
    "to_roman",
    "uncertainty",
    "window_map_task",
    "window_tile",
    "window_tiles",
    "write_cell_maps",
    "write_seed_uncertainty",
    "write_continuous_maps",
    "write_map_package",
    "write_probability_map",
    "write_style",
    "write_targets",
]

"""Samples stage: cells, labels, crops, splits and the torch dataset."""

from oremap.samples.cells import (
    CELL_COLUMNS,
    InsufficientNegativesWarning,
    Label,
    cell_coverage,
    label_cells,
    make_cells,
    plot_cells,
    restrict_to_area,
)
from oremap.samples.crops import CropParams, CropSpec, fit_robust_scaling
from oremap.samples.dataset import (
    NORMALISATION,
    SAMPLE_FILES,
    CropDataset,
    SampleSet,
    build_samples,
    counts_table,
    load_sample_set,
)
from oremap.samples.split import SPLITS, split_blocks, split_cells, split_random

__all__ = [
    "CELL_COLUMNS",
    "NORMALISATION",
    "SAMPLE_FILES",
    "SPLITS",
    "CropDataset",
    "CropParams",
    "CropSpec",
    "InsufficientNegativesWarning",
    "Label",
    "SampleSet",
    "build_samples",
    "cell_coverage",
    "counts_table",
    "fit_robust_scaling",
    "label_cells",
    "restrict_to_area",
    "load_sample_set",
    "make_cells",
    "plot_cells",
    "split_blocks",
    "split_cells",
    "split_random",
]

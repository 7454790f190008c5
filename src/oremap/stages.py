"""The stage table: every stage, what it needs, the configuration keys it reads, its folders.

A leaf module (it imports only :mod:`oremap.errors`), so the command line and the error
messages can name stages without importing the run-folder machinery of
:mod:`oremap.contract`, which re-exports every name here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from oremap.errors import StageNotReadyError

__all__ = ["MAIN", "NO_EFFECT", "ORDER", "RUN_FILES", "STAGES", "Stage", "ancestors",
           "descendants", "file", "stage_missing"]


@dataclass(frozen=True)
class Stage:
    """One row of the contract.

    Attributes
    ----------
    name : the stage (and CLI command) name
    needs : stages whose outputs it reads; they must be complete and current
    config : dotted configuration keys it reads (a table name covers the whole table)
    folders : folders it owns under the run folder; the first holds its ``stage.json``
    files : named outputs, paths relative to the run folder
    optional : stages read when present (the report reads the seed stability)
    resumable : its own work survives an interruption (evidence layers, training checkpoints)
    always : recomputed by every ``oremap run`` (the report, which carries the run's timings)
    """

    name: str
    summary: str
    needs: tuple[str, ...]
    config: tuple[str, ...]
    folders: tuple[str, ...]
    files: Mapping[str, str] = field(default_factory=dict)
    optional: tuple[str, ...] = ()
    resumable: bool = False
    always: bool = False

    @property
    def folder(self) -> str:
        return self.folders[0]

    def path(self, root: Path, key: str) -> Path:
        """Path of the named output ``key`` in run folder ``root``."""
        return Path(root) / self.files[key]


_TRAIN_KEYS = ("seed", "train.models", "train.baselines", "train.profile", "train.epochs",
               "train.batch_size", "train.lr", "train.lr_min", "train.beta1",
               "train.weight_decay", "train.imbalance", "train.augment", "train.patience",
               "train.pretrain", "train.pretrain_epochs", "labels.negatives", "labels.ratio",
               "labels.bags")

STAGES: dict[str, Stage] = {s.name: s for s in (
    Stage("evidence", "evidence layers (IDW geochemistry, geological densities, rasters)",
          needs=(), config=("grid.crs", "grid.bounds", "grid.pixel_size", "geochem", "geology",
                                "raster"),
          folders=("evidence",), resumable=True,
          files={"stack": "evidence/stack.json", "layers": "evidence/layers",
                 "previews": "evidence/previews"}),
    Stage("samples", "cells, labels, crops and splits",
          needs=("evidence",),
          config=("seed", "grid.cell_cols", "grid.cell_rows", "grid.cell_size", "labels",
                  "samples"),
          folders=("samples", "samples_random"),
          files={"manifest": "samples/manifest.json", "cells": "samples/cells.gpkg",
                 "counts": "samples/counts.csv", "random": "samples_random",
                 "random_manifest": "samples_random/manifest.json"}),
    Stage("train", "networks and baselines, every fold",
          needs=("samples",), config=_TRAIN_KEYS, folders=("train", "train_random"),
          resumable=True,
          files={"summary": "train/summary.csv", "loss_curves": "train/loss_curves.png",
                 "random": "train_random", "random_summary": "train_random/summary.csv"}),
    Stage("evaluate", "Table 1, confusion matrices, curves and importance on the test split",
          needs=("samples", "train"),
          config=("seed", "predict.threshold", "maps.permutation_repeats",
                  "samples.validation"),
          folders=("evaluate",),
          files={"table1": "evaluate/table1.csv", "table1_md": "evaluate/table1.md",
                 "table1_folds": "evaluate/table1_folds.csv",
                 "table1_random": "evaluate/table1_random.csv",
                 "test_probs": "evaluate/test_probs.npz",
                 "validation_probs": "evaluate/validation_probs.npz",
                 "importance": "evaluate/importance.csv", "woe": "evaluate/woe_table.csv"}),
    Stage("predict", "P(ore) of every usable cell from every model",
          needs=("evidence", "samples", "train"), config=("predict", "samples.context"),
          folders=("predict",),
          files={"predictions": "predict/predictions.csv"}),
    Stage("ensemble", "the ensemble rules, Table 2 and stability statistics",
          needs=("samples", "evaluate", "predict"),
          config=("seed", "predict.threshold", "ensemble.rules", "ensemble.members",
                  "ensemble.weight_metric", "ensemble.top_k", "samples.validation",
                  "ensemble.fit_on", "ensemble.calibration", "ensemble.baseline_calibration"),
          folders=("ensemble",),
          files={"table": "ensemble/ensemble.csv", "weights": "ensemble/weights.json",
                 "table1": "ensemble/table1_ensemble.csv", "table2": "ensemble/table2.csv",
                 "stability": "ensemble/stability.csv", "comparison": "ensemble/comparison.csv",
                 "comparison_md": "ensemble/comparison.md",
                 "calibration": "ensemble/calibration.csv",
                 "reliability": "ensemble/reliability.png"}),
    Stage("stability", "retraining with K seeds: how much predictions vary",
          needs=("samples", "ensemble"),
          config=(*_TRAIN_KEYS, "predict.threshold", "ensemble.rules", "ensemble.members",
                  "ensemble.weight_metric", "ensemble.top_k", "ensemble.stability_seeds"),
          folders=("stability",), resumable=True,
          files={"seed_stability": "stability/seed_stability.csv",
               "seed_uncertainty": "stability/uncertainty_seed.tif"}),
    Stage("maps", "prospectivity and uncertainty maps, target areas, success-rate curves",
          needs=("evidence", "samples", "train", "evaluate", "ensemble"),
          config=("predict.threshold", "maps", "truth", "samples.context"), folders=("maps",),
          files={"targets": "maps/targets.gpkg", "targets_csv": "maps/targets.csv",
                 "success_rate": "maps/success_rate.csv",
                 "qgis_project": "maps/oremap.qgs", "styles": "maps/styles",
                 "rate_points": "maps/success_rate_points.csv", "cells": "maps/cells.gpkg",
                 "hidden_truth": "maps/hidden_truth.csv",
                 "recommendation": "maps/recommendation.json",
                 "decision_map": "maps/decision_map.png"}),
    Stage("report", "the self-contained HTML report of whatever stages have run",
          needs=(), optional=("evidence", "samples", "train", "evaluate", "predict", "ensemble",
                              "stability", "maps"),
          config=(), folders=("report",), always=True,
          files={"html": "report/report.html"}),
)}

#: Stages in the order ``oremap run`` runs them (stability only when configured).
ORDER: tuple[str, ...] = tuple(STAGES)
#: The stages of every run.
MAIN: tuple[str, ...] = tuple(s for s in ORDER if s != "stability")
#: Keys that change neither values nor meaning of any result (names, resources, limits).
NO_EFFECT: tuple[str, ...] = ("name", "grid.block", "grid.max_pixels", "train.jobs",
                              "train.workers", "train.device", "compute")
#: Files of the run folder itself.
RUN_FILES = {"config": "config.toml", "info": "run.json"}


def file(stage: str, key: str) -> str:
    """Relative path of output ``key`` of ``stage`` (a KeyError names a typo at once)."""
    return STAGES[stage].files[key]


def ancestors(stage: str) -> list[str]:
    """Every stage ``stage`` depends on, directly or not, in run order."""
    seen: set[str] = set()
    todo = list(STAGES[stage].needs)
    while todo:
        s = todo.pop()
        if s not in seen:
            seen.add(s)
            todo.extend(STAGES[s].needs)
    return [s for s in ORDER if s in seen]


def descendants(stage: str) -> list[str]:
    """Every stage that depends on ``stage``, in run order."""
    return [s for s in ORDER if stage in ancestors(s)]


def stage_missing(stage: str, problem: str, run_dir: object = None) -> StageNotReadyError:
    """``problem``, then the command that makes the outputs of ``stage``.

    The one wording of "run stage X first": ``stage`` is checked against the stage table
    (:data:`STAGES`), and the command names the run folder when known.
    """
    if stage not in STAGES:
        raise KeyError(f"unknown stage {stage!r}")
    where = str(run_dir) if run_dir is not None else "RUN_DIR"
    return StageNotReadyError(f"{problem}; run `oremap {stage} {where}` first (or `oremap run "
                              f"CONFIG --out {where}` for every stage).")

"""Stage 5a: P(ore) of every usable cell from every member (optionally with test-time
augmentation over the crop lattice)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd

from oremap.compute import set_threads, thread_map, worker_cached
from oremap.config import Config
from oremap.evidence import LazyStack, load_stack_auto
from oremap.grid import Grid
from oremap.inputs import context_stack, crop_spec
from oremap.members import PredictFn, cell_scorer, load_member
from oremap.names import member_cost
from oremap.progress import progress as progress_bar
from oremap.runinfo import RunDir, stage_folder
from oremap.samples import load_sample_set
from oremap.samples.crops import cell_block, centre_offset, cut_crops, lattice_offsets

__all__ = [
    "CellIndex",
    "cell_index",
    "map_inputs",
    "predict_cells",
    "predict_member_task",
    "prediction_stack",
    "score_member",
    "tta_probabilities",
]


def predict_cells(config: Config, samples_dir: Path, train_dir: Path, *,
                  stack: np.ndarray | LazyStack | None = None,
                  progress: bool = False, tasks: Any = None) -> pd.DataFrame:
    """P(ore) of every usable cell from every member (with its centre ``x``, ``y`` in the
    grid's CRS).

    ``p_<member>``: labelled cells take the mean over their training/test crops, unknown cells
    their centre crop, averaged over the fold models. With ``[predict] tta = true`` every cell
    (whatever its label) takes the mean over the positive-class lattice of crops cut afresh
    from the evidence ``stack`` (test-time augmentation), so all cells are scored alike.
    ``oof_<member>``: for labelled cells in a test fold, the probability from the model that did
    not see them (NaN otherwise); used for honest curves. A PU-bagging baseline scores the
    cells of its training side out of bag (``[labels] negatives = "pu_bagging"``).

    The (member, fold) scorings run side by side (:func:`oremap.compute.thread_map`), or,
    with ``tasks`` (a function mapping the (member, fold) pairs to what :func:`score_member`
    returns for each: Dask tasks, see :func:`oremap.pipeline.run_predict`), elsewhere; the
    table is assembled in the same order either way.
    """
    cix = cell_index(samples_dir)
    ss, usable, ids, idx, rows = cix.ss, cix.usable, cix.ids, cix.idx, cix.rows
    centre = usable.geometry.centroid
    table = pd.DataFrame({"cell_id": ids, "row": usable["row"].to_numpy(),
                          "col": usable["col"].to_numpy(), "x": centre.x.to_numpy(),
                          "y": centre.y.to_numpy(), "label": usable["label"].to_numpy()})
    fold_of = np.full(len(ids), -1)
    test_any = ss.test_fold[idx] >= 0
    fold_of[rows[test_any]] = ss.test_fold[idx][test_any]
    table["test_fold"] = fold_of
    pairs = [(m, fold) for m in config.members() for fold in range(ss.n_folds)]
    if tasks is not None:
        scored = dict(zip(pairs, tasks(pairs)))
    else:
        with progress_bar(len(pairs), "predict", "member", disable=not progress) as bar:

            def score(pair: tuple[str, int]) -> tuple[np.ndarray, np.ndarray]:
                out = score_member(config, cix, train_dir, pair[0], pair[1], stack)
                bar.update()
                return out

            # side by side; a LazyStack reads through one cache: then one after the other
            scored = dict(zip(pairs, thread_map(
                score, pairs, costs=[member_cost(m) for m, _ in pairs],
                workers=1 if isinstance(stack, LazyStack) else None)))
    for m in config.members():
        total = np.zeros(len(ids))
        oof = np.full(len(ids), np.nan)
        for fold in range(ss.n_folds):
            p, p_fold = scored[(m, fold)]
            total += p_fold
            if ss.n_folds > 1:
                table[f"p_{m}_f{fold}"] = p_fold
            in_test = ss.test_fold[idx] == fold
            if in_test.any():
                s = np.bincount(rows[in_test], weights=p[in_test], minlength=len(ids))
                n = np.bincount(rows[in_test], minlength=len(ids))
                oof = np.where(n > 0, s / np.maximum(n, 1), oof)
        table[f"p_{m}"] = total / ss.n_folds
        table[f"oof_{m}"] = oof
    return table


@dataclass(frozen=True)
class CellIndex:
    """The usable cells of a sample set (by id) and the crops that score them: ``idx``, the
    labelled crops and the unknown cells' centre crops; ``rows``, each one's cell (row of
    ``usable``); ``counts``, crops per cell."""

    ss: Any
    usable: gpd.GeoDataFrame
    ids: np.ndarray
    idx: np.ndarray
    rows: np.ndarray
    counts: np.ndarray


def cell_index(samples_dir: Path) -> CellIndex:
    """The :class:`CellIndex` of the sample set in ``samples_dir``."""
    from oremap.samples import load_sample_set  # torch: off the light import path

    ss = load_sample_set(samples_dir)
    cells = gpd.read_file(Path(samples_dir) / "cells.gpkg")
    usable = cells.loc[cells["usable"].astype(bool)].sort_values("id")
    ids = usable["id"].to_numpy()
    pos = {cid: i for i, cid in enumerate(ids)}
    idx = np.flatnonzero(((ss.y >= 0) | ss.centre) & np.isin(ss.cell_id, ids))
    rows = np.array([pos[c] for c in ss.cell_id[idx]], dtype=int)
    counts = np.bincount(rows, minlength=len(ids)).astype(float)
    return CellIndex(ss, usable, ids, idx, rows, counts)


def score_member(config: Config, cix: CellIndex, train_dir: Path, member: str, fold: int,
                 stack: np.ndarray | LazyStack | None) -> tuple[np.ndarray, np.ndarray]:
    """One fold model of one member: P(ore) of each crop of ``cix.idx``, and of each cell
    (the mean over its crops, or over the TTA lattice cut from ``stack`` when given)."""
    ss = cix.ss
    fn = load_member(member, Path(train_dir) / f"fold{fold}")
    p = cell_scorer(member, Path(train_dir) / f"fold{fold}", fn)(ss.normalised(cix.idx, fold),
                                                                 ss.cell_id[cix.idx])
    if stack is None:
        p_fold = np.bincount(cix.rows, weights=p, minlength=len(cix.ids)) / np.maximum(
            cix.counts, 1)
    else:
        p_fold = tta_probabilities(fn, stack, cix.usable, ss, fold, crop_spec(config))
    return p, p_fold


def tta_probabilities(fn: PredictFn, stack: np.ndarray | LazyStack, cells: gpd.GeoDataFrame,
                       ss: Any, fold: int, spec: Any, *, chunk: int = 64) -> np.ndarray:
    """Mean P(ore) over the positive-class crop lattice of each cell (one per cell, in order)."""

    out = np.empty(len(cells))
    geometry = cells[["px_row0", "px_col0", "px_rows", "px_cols"]].to_numpy(dtype=int)
    for start in range(0, len(cells), chunk):
        crops, owner = [], []
        for i, (r0, c0, h, w) in enumerate(geometry[start:start + chunk], start=start):
            offsets = lattice_offsets(h, w, spec.size, spec.positive)
            if len(offsets) == 0:  # cell smaller than the window: the centred window
                dr, dc = centre_offset(h, w, spec.size)
                block = cell_block(stack, r0 + dr, c0 + dc, spec.size, spec.size)
                offsets = np.zeros((1, 2), dtype=np.int64)
            else:
                block = cell_block(stack, r0, c0, h, w)
            crops.append(cut_crops(block, offsets, spec.size))
            owner.extend([i - start] * len(offsets))
        p = fn(ss.normalise(np.concatenate(crops), fold))
        n = min(chunk, len(cells) - start)
        out[start:start + n] = np.bincount(owner, weights=p, minlength=n) / np.bincount(
            owner, minlength=n)
    return out


def prediction_stack(config: Config, run: RunDir) -> Any:
    """The evidence stack (with its context layers) that cell predictions cut their
    test-time-augmentation crops from with ``[predict] tta``; None without."""
    if not config.predict.tta:
        return None

    stack, names, grid = load_stack_auto(stage_folder(run, "evidence"))
    return context_stack(config, stack, names, grid)[0]


def predict_member_task(config: Config, root: Path, member: str, fold: int,
                        threads: int) -> tuple[np.ndarray, np.ndarray]:
    """One (member, fold) of the cell predictions as a Dask task, read from the (shared) run
    folder ``root`` and computed exactly as locally (:func:`oremap.predict.score_member`),
    with ``threads`` torch threads."""

    set_threads(threads)
    run = RunDir(root)
    samples = stage_folder(run, "samples")
    cix = worker_cached("cell index", (str(root), (samples / "stage.json").read_text()),
                        lambda: cell_index(samples))
    stack = map_inputs(config, Path(root))[0] if config.predict.tta else None
    return score_member(config, cix, stage_folder(run, "train"), member, fold, stack)




def map_inputs(config: Config, root: Path) -> tuple[Any, Grid, Any]:
    """The evidence stack (with its context layers), its grid and the sample set of run
    folder ``root``, read once per worker for all its tasks (keyed by the records of the
    evidence and samples stages, which change whenever their outputs do)."""

    run = RunDir(root)
    evidence, samples = stage_folder(run, "evidence"), stage_folder(run, "samples")

    def build() -> tuple[Any, Grid, Any]:
        stack, names, sgrid = load_stack_auto(evidence)
        return context_stack(config, stack, names, sgrid)[0], sgrid, load_sample_set(samples)

    return worker_cached("map inputs", (str(root), (evidence / "stage.json").read_text(),
                                        (samples / "stage.json").read_text(),
                                        config.samples.context), build)

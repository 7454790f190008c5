"""The pipeline: the only place where the configuration meets the stages.

Each ``run_<stage>(config, run_dir)`` reads the previous stage's outputs from the run folder,
calls the stage's plain functions and writes its own folder. ``run(config, run_dir)`` runs
them all in order.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd

from oremap import contract, io
from oremap.compute import cluster
from oremap.config import Config
from oremap.contract import MAIN, STAGES
from oremap.demo import example_config_text, run_demo  # noqa: F401 (public API)
from oremap.errors import InputDataError, StageNotReadyError
from oremap.grid import Grid
from oremap.inputs import (
    context_stack,
    crop_spec,
    evidence_specs,
    label_study_cells,
    make_grid,
    read_source,
)
from oremap.members import (
    TestProbabilities,
    crop_probabilities,
    ensemble_members,
    held_out_probabilities,
    load_member,
    train_members,
)
from oremap.names import member_cost, member_kind
from oremap.predict import predict_cells
from oremap.runinfo import (
    RunDir,
    check_out_folder,
    load_run_config,
    stage,
    stage_folder,
    with_stability_seeds,
)

log = logging.getLogger("oremap")


# --------------------------------------------------------------------------- evidence


@stage("evidence")
def run_evidence(config: Config, run_dir: Path, *, progress: bool = True,
                 resume: bool = True, client: Any = None) -> Path:
    """Stage 1: IDW geochemistry and geological density layers -> ``evidence/``.

    With a Dask ``client`` (or ``[compute]`` asking for a cluster) each (layer, window) is a
    task.
    """
    from oremap.evidence import build_evidence

    run = RunDir(run_dir)
    grid = make_grid(config)
    log.info("grid: %s", grid.describe())
    specs = evidence_specs(config, grid)
    with run.timed("evidence") as extra, _client(config, client) as client:
        out = run.stage("evidence")
        # IDW in threads over every core the process may use (identical results)
        build_evidence(specs, grid, out, block=config.grid.block, progress=progress,
                       resume=resume, workers=-1, client=client)
        extra["layers"] = [s.name for s in specs]
    return out


# --------------------------------------------------------------------------- samples


@stage("samples")
def run_samples(config: Config, run_dir: Path, *, progress: bool = True) -> Path:
    """Stage 2: cells, labels, crops and splits -> ``samples/`` (and ``samples_random/``)."""
    from oremap.evidence import load_stack_auto
    from oremap.samples import build_samples, counts_table

    run = RunDir(run_dir)
    ev = stage_folder(run, "evidence")
    with run.timed("samples") as extra:
        stack, names, grid = load_stack_auto(ev)
        cells = label_study_cells(config, grid, stack, names)
        stack, names = context_stack(config, stack, names, grid)
        s = config.samples
        out = run.stage("samples")
        ss = build_samples(stack, names, grid, cells, crops=crop_spec(config), split=s.split,
                           test_fraction=s.test_fraction, block_size=s.block_size,
                           folds=s.folds, validation=s.validation, seed=config.seed,
                           out_dir=out, progress=progress)
        if s.compare_random and s.split != "random":
            build_samples(stack, names, grid, cells, crops=crop_spec(config), split="random",
                          test_fraction=s.test_fraction, block_size=s.block_size, folds=1,
                          seed=config.seed, out_dir=run.stage("samples_random"),
                          progress=progress)
        table = counts_table(ss)
        io.write_csv(run.root / contract.file("samples", "counts"), table, index=True)
        extra["crops"] = int(len(ss.y))
    return out


# --------------------------------------------------------------------------- train


@stage("train")
def run_train(config: Config, run_dir: Path, *, resume: bool = False, jobs: int | None = None,
              progress: bool = True, client: Any = None) -> Path:
    """Stage 3: train networks and baselines -> ``train/`` (and ``train_random/``).

    With a Dask ``client`` (see :mod:`oremap.compute`) each (fold, member) is a task; else
    the stage opens one itself when ``[compute]`` asks for a cluster.
    """
    run = RunDir(run_dir)
    samples = stage_folder(run, "samples")
    jobs = jobs or config.train.jobs
    with run.timed("train") as extra, _client(config, client) as client:
        out = run.stage("train")
        summary = train_members(config, samples, out, seed=config.seed, resume=resume,
                                jobs=jobs, progress=progress, client=client)
        if (run.root / contract.file("samples", "random_manifest")).exists():
            log.info("training again on the paper's random crop split, for comparison")
            train_members(config, run.root / contract.file("samples", "random"),
                          run.stage(contract.file("train", "random")),
                          seed=config.seed, resume=resume, jobs=jobs, progress=progress,
                          client=client)
        extra["members"] = sorted(set(summary["member"])) if len(summary) else []
    return out


def _client(config: Config, client: Any) -> Any:
    """``client`` as it is (owned by the caller), or a cluster of ``[compute]`` for the
    duration of one stage (None, and no Dask, for ``scheduler = "local"``)."""
    return contextlib.nullcontext(client) if client is not None else cluster(config.compute)


# --------------------------------------------------------------------------- evaluate


@stage("evaluate")
def run_evaluate(config: Config, run_dir: Path, *, progress: bool = True,
                 client: Any = None) -> Path:
    """Stage 4: Table 1, confusion matrices, ROC/PR/calibration, importance -> ``evaluate/``.

    With a Dask ``client`` (or ``[compute]`` asking for a cluster) the permutation
    importance of each (member, layer) is a task (:func:`importance_task`).
    """
    from oremap import evaluate as ev
    from oremap.samples import load_sample_set

    run = RunDir(run_dir)
    samples = stage_folder(run, "samples")
    train = stage_folder(run, "train")
    members = config.members()
    with run.timed("evaluate"):
        out = run.stage("evaluate")
        crops, validation, fold0 = held_out_probabilities(config, samples, train,
                                                          progress=progress)
        crops.save(run.root / contract.file("evaluate", "test_probs"))
        if validation is not None:
            validation.save(run.root / contract.file("evaluate", "validation_probs"))
        t1, per_fold = crops.table1(members, threshold=config.predict.threshold)
        io.write_csv(run.root / contract.file("evaluate", "table1"), t1, index=True)
        io.write_text(run.root / contract.file("evaluate", "table1_md"), ev.table_to_markdown(t1))
        if per_fold is not None:
            io.write_csv(run.root / contract.file("evaluate", "table1_folds"), per_fold,
                         index=True)
        thr = config.predict.threshold
        ev.write_held_out_figures({m: crops.pooled(m) for m in members}, out, threshold=thr)
        ss = load_sample_set(samples)
        f0 = crops.folds[0]
        if "woe" in members:  # weights of evidence of fold 0, for the report
            from oremap.baselines import Baseline

            woe = Baseline.load(train / "fold0" / "woe" / "model.pkl")
            if hasattr(woe, "woe_table"):
                io.write_csv(run.root / contract.file("evaluate", "woe"), woe.woe_table())
        with _client(config, client) as client:
            tables = None if client is None else _importance_on(client, config, run.root, f0,
                                                                ss.layer_names, progress)
            ev.write_importance(fold0, ss.normalised(f0.indices, 0), f0.y, ss.layer_names,
                                out, n_repeats=config.maps.permutation_repeats,
                                seed=config.seed, tables=tables)
        if (run.root / contract.file("train", "random_summary")).exists():
            rnd = crop_probabilities(config, run.root / contract.file("samples", "random"),
                                     run.root / contract.file("train", "random"))
            io.write_csv(run.root / contract.file("evaluate", "table1_random"),
                         rnd.table1(members, threshold=thr)[0], index=True)
            ev.write_held_out_figures({m: rnd.pooled(m) for m in members}, out, threshold=thr,
                                      suffix="_random", curves=False)
    return out


def _importance_on(client: Any, config: Config, root: Path, f0: Any,
                   layer_names: Sequence[str], progress: bool) -> dict[str, pd.DataFrame]:
    """The permutation importance tables of every member, one Dask task per (member,
    layer), with the permutations and baseline scores of the local computation (so the
    same figures)."""
    from oremap import evaluate as ev
    from oremap.compute import run_tasks

    t = np.asarray(f0.y).astype(int)
    repeats = config.maps.permutation_repeats
    perms = ev.importance_permutations(len(t), len(layer_names), repeats, config.seed)
    members = config.members()
    baseline = {m: ev.roc_auc(t, np.asarray(f0.probs[m], dtype=np.float64)) for m in members}
    pairs = [(m, c) for m in members for c in range(len(layer_names))]
    tag = uuid.uuid4().hex[:8]
    drops = run_tasks(client, importance_task,
                      [(config, root, m, c, perms[c], baseline[m],
                        config.compute.threads_per_worker) for m, c in pairs],
                      keys=[f"oremap-importance-{tag}-{m}-{c}" for m, c in pairs],
                      desc="permutation importance (Dask)", progress=progress)
    by = dict(zip(pairs, drops))
    return {m: ev.importance_table(np.stack([by[(m, c)] for c in range(len(layer_names))]),
                                   baseline[m], layer_names) for m in members}


def importance_task(config: Config, root: Path, member: str, layer: int, perms: np.ndarray,
                    baseline: float, threads: int) -> np.ndarray:
    """Drops in ROC AUC of ``member`` (fold 0) when evidence layer ``layer`` of its held-out
    crops is shuffled by each of ``perms``: one Dask task, read from the run folder."""
    from oremap import evaluate as ev
    from oremap.compute import set_threads
    from oremap.samples import load_sample_set

    set_threads(threads)
    run = RunDir(root)
    ss = load_sample_set(stage_folder(run, "samples"))
    te = ss.test_indices(0)
    fn = load_member(member, stage_folder(run, "train") / "fold0")
    return ev.layer_drops(fn, ss.normalised(te, 0), np.asarray(ss.y[te]).astype(int), layer,
                          perms, baseline)


# --------------------------------------------------------------------------- predict


@stage("predict")
def run_predict(config: Config, run_dir: Path, *, progress: bool = True,
                client: Any = None) -> Path:
    """Stage 5a: probabilities of every usable cell -> ``predict/predictions.csv``.

    With a Dask ``client`` (or ``[compute]`` asking for a cluster) each (member, fold) is a
    task (:func:`predict_member_task`)."""
    run = RunDir(run_dir)
    samples = stage_folder(run, "samples")
    train = stage_folder(run, "train")
    with run.timed("predict") as extra, _client(config, client) as client:
        out = run.stage("predict")
        stack, tasks = None, None
        if client is not None:
            from oremap.compute import run_tasks

            def tasks(pairs: Sequence[tuple[str, int]]) -> list[Any]:
                tag = uuid.uuid4().hex[:8]
                return run_tasks(client, predict_member_task,
                                 [(config, run.root, m, fold, config.compute.threads_per_worker)
                                  for m, fold in pairs],
                                 keys=[f"oremap-predict-{tag}-{m}-fold{fold}"
                                       for m, fold in pairs],
                                 desc="predict (Dask)", progress=progress,
                                 costs=[member_cost(m) for m, _ in pairs])
        else:
            stack = prediction_stack(config, run)
        table = predict_cells(config, samples, train, stack=stack, progress=progress,
                              tasks=tasks)
        io.write_csv(run.root / contract.file("predict", "predictions"), table)
        extra["cells"] = int(len(table))
    return out


def prediction_stack(config: Config, run: RunDir) -> Any:
    """The evidence stack (with its context layers) that cell predictions cut their
    test-time-augmentation crops from with ``[predict] tta``; None without."""
    if not config.predict.tta:
        return None
    from oremap.evidence import load_stack_auto

    stack, names, grid = load_stack_auto(stage_folder(run, "evidence"))
    return context_stack(config, stack, names, grid)[0]


def predict_member_task(config: Config, root: Path, member: str, fold: int,
                        threads: int) -> tuple[np.ndarray, np.ndarray]:
    """One (member, fold) of the cell predictions as a Dask task, read from the (shared) run
    folder ``root`` and computed exactly as locally (:func:`oremap.predict.score_member`),
    with ``threads`` torch threads."""
    from oremap.compute import set_threads, worker_cached
    from oremap.predict import cell_index, score_member

    set_threads(threads)
    run = RunDir(root)
    samples = stage_folder(run, "samples")
    cix = worker_cached("cell index", (str(root), (samples / "stage.json").read_text()),
                        lambda: cell_index(samples))
    stack = _map_inputs(config, Path(root))[0] if config.predict.tta else None
    return score_member(config, cix, stage_folder(run, "train"), member, fold, stack)


# --------------------------------------------------------------------------- ensemble


@stage("ensemble")
def run_ensemble(config: Config, run_dir: Path, *, progress: bool = True) -> Path:
    """Stage 5b: ensemble rules, their evaluation, Table 2 and stability -> ``ensemble/``."""
    from oremap import ensemble as en
    from oremap import evaluate as ev

    run = RunDir(run_dir)
    members, rules = ensemble_members(config), config.ensemble.rules
    thr = config.predict.threshold
    with run.timed("ensemble"):
        params = _rule_params(config, run, members)
        en.write_params(run.root / contract.file("ensemble", "weights"), members, params,
                        config.ensemble.weight_metric)
        crops = TestProbabilities.load(run.root / contract.file("evaluate", "test_probs"),
                                       members)
        rule_tables = [en.rule_table1(f.y, {r: en.combine(r, f.stacked(members),
                                                          params=params.fold(k), threshold=thr)
                                            for r in rules})
                       for k, f in enumerate(crops.folds)]
        t1e = rule_tables[0] if len(rule_tables) == 1 else ev.summarise_folds(rule_tables)
        io.write_csv(run.root / contract.file("ensemble", "table1"), t1e, index=True)
        table = pd.read_csv(run.root / contract.file("predict", "predictions"))
        results = en.combine_columns(table, members, rules, params.final, threshold=thr)
        for rule, res in results.items():
            table[f"ens_{rule}"] = res.probability
            table[f"pred_{rule}"] = res.prediction
        io.write_csv(run.root / contract.file("ensemble", "table"), table)
        labels = table["label"].to_numpy()
        t2m = en.table2({m: (table[f"p_{m}"].to_numpy() >= thr).astype(int) for m in members},
                        labels)
        t2r = en.table2({r: res.prediction for r, res in results.items()}, labels)
        t2 = pd.concat([t2.assign(kind=[member_kind(n) for n in t2.index]) for t2 in (t2m, t2r)])
        io.write_csv(run.root / contract.file("ensemble", "table2"), t2, index=True)
        io.write_csv(run.root / contract.file("ensemble", "stability"),
                     en.stability_table(t2m, t2r), index=True)
        comparison = en.compare_members(table, crops, params, members, rules, threshold=thr)
        io.write_csv(run.root / contract.file("ensemble", "comparison"), comparison, index=True)
        io.write_text(run.root / contract.file("ensemble", "comparison_md"),
                      en.comparison_markdown(comparison, len(crops)))
    return stage_folder(run, "ensemble")


def _rule_params(config: Config, run: RunDir, members: list[str]) -> Any:
    """What the rules learn, per fold and for the final map: from the inner validation cells
    when the run has them, else weights from Table 1 (the test split: optimistic)."""
    from oremap import ensemble as en
    from oremap.samples import load_sample_set

    metric, thr = config.ensemble.weight_metric, config.predict.threshold
    path = run.root / contract.file("evaluate", "validation_probs")
    if config.samples.validation > 0:
        cell_id = load_sample_set(stage_folder(run, "samples")).cell_id
        folds = []
        for f in TestProbabilities.load(path, members).folds:
            cells = f.by_cell(cell_id)
            folds.append(en.fit_rule_params(cells.y, cells.stacked(members), metric=metric,
                                            k=config.ensemble.top_k, threshold=thr,
                                            seed=config.seed))
        return en.EnsembleParams(final=en.mean_rule_params(folds, k=config.ensemble.top_k),
                                 folds=folds)
    t1 = pd.read_csv(run.root / contract.file("evaluate", "table1"), index_col=0)
    final = en.RuleParams(weights=en.weights_from_table1(t1, members, metric))
    return en.EnsembleParams(final=final, folds=[final])


# --------------------------------------------------------------------------- maps


@stage("maps")
def run_maps(config: Config, run_dir: Path, *, progress: bool = True,
             client: Any = None) -> Path:
    """Stage 6: probability maps, uncertainty, targets, success-rate curves -> ``maps/``.

    With a Dask ``client`` (or ``[compute]`` asking for a cluster) each (member, fold)
    sliding-window map is a task.
    """
    from oremap import evaluate as ev
    from oremap import maps, targets

    run = RunDir(run_dir)
    members, rules = config.members(), config.ensemble.rules
    with run.timed("maps") as extra:
        out = run.stage("maps")
        table = pd.read_csv(run.root / contract.file("ensemble", "table"))
        cells = gpd.read_file(run.root / contract.file("samples", "cells"))
        grid = make_grid(config)
        orebodies = read_source(config.labels.orebodies, grid, what="[labels.orebodies]")
        from oremap import __version__

        cm = maps.write_cell_maps(table, cells, grid, members, rules, out,
                                  run_tags={"run": config.name, "oremap": __version__},
                                  threshold=config.predict.threshold, orebodies=orebodies)
        rule = config.maps.target_rule if config.maps.target_rule in rules else rules[0]
        target = (cm.rasters[rule], cm.grid, cm.std)
        extra["target_map"] = f"the cell map of {rule} (maps/prob_{rule}.tif)"
        if config.maps.continuous and config.train.models:
            with _client(config, client) as client:
                target = _continuous_maps(config, run, out, progress=progress, client=client)
            extra["target_map"] = ("the sliding-window map of weighted_average "
                                   "(maps/prob_ensemble_continuous.tif)")
        tg = targets.target_areas(target[0], target[1], threshold=config.maps.target_threshold,
                                  top_fraction=config.maps.target_top_fraction,
                                  uncertainty=target[2], orebodies=orebodies)
        targets.write_targets(tg, run.root / contract.file("maps", "targets"),
                              run.root / contract.file("maps", "targets_csv"))
        overlays = {}
        for g in config.geology:  # each source once, however many layers it feeds
            name = g.layer or Path(g.path).stem
            if name not in overlays:
                overlays[name] = read_source(g, grid, what=f"[[geology]] {g.name!r}",
                                             allow_empty=True)
        for i, src in enumerate(config.labels.barren):
            overlays[f"barren records {i + 1}" if len(config.labels.barren) > 1
                     else "barren records"] = read_source(
                src, grid, what=f"[[labels.barren]] #{i + 1}", allow_empty=True)
        what = (f"rule {rule.replace('_', ' ')}" if "cell map" in extra["target_map"]
                else "weighted average, sliding window")
        maps.plot_prospectivity(target[0], target[1], out / "map_ensemble.png",
                                title=f"Ensemble prospectivity ({what}) and target areas",
                                orebodies=orebodies,
                                cells=cells.loc[cells["usable"].astype(bool)], targets=tg,
                                overlays=overlays)
        ev.write_rate_curves(table, members, rules, out)
        probs = [c for c in table.columns if c.startswith(("p_", "oof_", "ens_", "pred_"))]
        per_cell = cells[["id", "row", "col", "label", "usable", "geometry"]].merge(
            table[["cell_id", "test_fold", *probs]].rename(columns={"cell_id": "id"}),
            on="id", how="left")
        io.write_vector(run.root / contract.file("maps", "cells"), per_cell, layer="cells")
        if config.truth is not None:
            io.write_csv(run.root / contract.file("maps", "hidden_truth"),
                         ev.hidden_truth_scores(config.truth, table, cells, members, rules))
        extra["targets"] = int(len(tg))
        from oremap.qgis import write_map_package

        write_map_package(run.root, config, grid.crs.to_wkt())
    return out


def window_map_task(config: Config, root: Path, name: str, fold: int, tile: tuple[int, int],
                    threads: int) -> tuple[np.ndarray, int]:
    """One tile of one (member, fold) sliding-window map as a Dask task, read from the
    (shared) run folder ``root`` and computed exactly as locally, with ``threads`` torch
    threads: the block of the map and its windows dropped for nodata."""
    from oremap import maps
    from oremap.compute import set_threads

    set_threads(threads)
    stack, sgrid, ss = _map_inputs(config, Path(root))
    predict = maps.member_window_predictor(name, fold, ss, stage_folder(RunDir(root), "train"))
    return maps.window_tile(predict, stack, sgrid, size=config.samples.crop_size,
                            stride=config.maps.stride, rows=tuple(tile))


def _map_inputs(config: Config, root: Path) -> tuple[Any, Grid, Any]:
    """The evidence stack (with its context layers), its grid and the sample set of run
    folder ``root``, read once per worker for all its tasks (keyed by the records of the
    evidence and samples stages, which change whenever their outputs do)."""
    from oremap.compute import worker_cached
    from oremap.evidence import load_stack_auto
    from oremap.samples import load_sample_set

    run = RunDir(root)
    evidence, samples = stage_folder(run, "evidence"), stage_folder(run, "samples")

    def build() -> tuple[Any, Grid, Any]:
        stack, names, sgrid = load_stack_auto(evidence)
        return context_stack(config, stack, names, sgrid)[0], sgrid, load_sample_set(samples)

    return worker_cached("map inputs", (str(root), (evidence / "stage.json").read_text(),
                                        (samples / "stage.json").read_text(),
                                        config.samples.context), build)


def _continuous_maps(config: Config, run: RunDir, out: Path, *, progress: bool,
                     client: Any = None) -> tuple[np.ndarray, Grid, np.ndarray | None]:
    """Sliding-window maps of every member and their weighted ensemble (the target map);
    with a Dask ``client`` each (member, fold, tile) is a task (:func:`window_map_task`)."""
    from oremap import maps
    from oremap.evidence import EvidenceManifest, load_stack_auto
    from oremap.samples import load_sample_set

    tasks = None
    if client is None:
        stack, names, sgrid = load_stack_auto(stage_folder(run, "evidence"))
        stack = context_stack(config, stack, names, sgrid)[0]
    else:  # the tasks read the stack themselves; here only its grid is needed
        from oremap.compute import run_tasks

        stack, sgrid = None, EvidenceManifest.read(stage_folder(run, "evidence")).grid

        def tasks(units: Sequence[tuple[str, int, tuple[int, int]]]) -> list[Any]:
            tag = uuid.uuid4().hex[:8]
            return run_tasks(client, window_map_task,
                             [(config, run.root, name, fold, tile,
                               config.compute.threads_per_worker)
                              for name, fold, tile in units],
                             keys=[f"oremap-map-{tag}-{name}-fold{fold}-rows{tile[0]}"
                                   for name, fold, tile in units],
                             desc="sliding-window maps (Dask)", progress=progress,
                             costs=[member_cost(name) for name, _, _ in units])

    cont = maps.member_continuous_maps(
        config.members(), stack, sgrid, load_sample_set(stage_folder(run, "samples")),
        stage_folder(run, "train"), size=config.samples.crop_size, stride=config.maps.stride,
        block=config.grid.block, progress=progress, tasks=tasks)
    from oremap.ensemble import read_weights

    ens_members = ensemble_members(config)
    weights = read_weights(run.root / contract.file("ensemble", "weights"), ens_members)
    return maps.write_continuous_maps(cont, ens_members, weights, out)


# --------------------------------------------------------------------------- report


@stage("report")
def run_report(config: Config, run_dir: Path, *, progress: bool = True) -> Path:
    """Stage 7: one self-contained HTML report -> ``report/report.html``."""
    from oremap.report import build_report

    run = RunDir(run_dir)
    with run.timed("report"):
        path = build_report(run.root)
    run.finish()
    build_report(run.root)  # again, so the report carries its own timing and end time
    return path


# --------------------------------------------------------------------------- stability


@stage("stability")
def run_stability(config: Config, run_dir: Path, *, seeds: int | None = None,
                  progress: bool = True, client: Any = None) -> Path:
    """Retrain every member with ``seeds`` seeds; measure how predictions and counts vary.

    Seeds are ``config.seed + 1000 * k`` for k = 1..K (the split stays that of the run, only
    initialisation, batch order and dropout change). Per model and rule: the mean over cells of
    the sample std of P(ore) across seeds, the mean flip rate (share of seed pairs giving a cell
    different classes; voting rules count refusals as their own class), and the sample std of
    each Table 2 count across seeds. Written to ``stability/seed_stability.csv``. With Dask
    (``client`` or ``[compute]``) each seed's (fold, member) trainings are tasks.
    """
    from oremap import ensemble as en

    seeds = seeds or config.ensemble.stability_seeds
    if seeds < 2:
        raise InputDataError(f"stability needs at least 2 seeds to measure variation; got {seeds}")
    run = RunDir(run_dir)
    samples = stage_folder(run, "samples")
    members, rules = ensemble_members(config), config.ensemble.rules
    params = en.read_params(run.root / contract.file("ensemble", "weights"), members).final
    with run.timed("stability") as extra, _client(config, client) as client:
        base = run.stage("stability")
        stack = prediction_stack(config, run)  # the seeds' cells scored as the run's are
        tables = []
        for k in range(1, seeds + 1):
            seed = config.seed + 1000 * k
            tdir = base / f"seed{seed}"
            log.info("stability: retraining every member with seed %d (%d of %d)", seed, k,
                     seeds)
            train_members(config, samples, tdir, seed=seed, resume=True, progress=progress,
                          client=client, jobs=config.train.jobs)
            tables.append(predict_cells(config, samples, tdir, stack=stack))
            io.write_csv(tdir / "predictions.csv", tables[-1])
        df = en.seed_stability_table(tables, members, rules, params,
                                     threshold=config.predict.threshold)
        io.write_csv(run.root / contract.file("stability", "seed_stability"), df)
        extra["seeds"] = seeds
    return base


# --------------------------------------------------------------------------- all


STAGE_FUNCTIONS: dict[str, Callable[..., Path]] = {
    "evidence": run_evidence, "samples": run_samples, "train": run_train,
    "evaluate": run_evaluate, "predict": run_predict, "ensemble": run_ensemble,
    "stability": run_stability, "maps": run_maps, "report": run_report,
}
assert tuple(STAGE_FUNCTIONS) == contract.ORDER, "every stage of the contract has a function"


def run(config: Config, run_dir: Path, *, stages: Sequence[str] = MAIN,
        progress: bool = True, resume: bool = True, overwrite: bool = False,
        config_path: Path | None = None) -> Path:
    """Run ``stages`` in order on ``run_dir``; returns the report path (or the last output).

    A stage whose recorded inputs equal what it would consume now and whose outputs are intact
    is reused; any other is recomputed (training resumes from its checkpoints only on the same
    inputs, and only with ``resume``). ``stability`` runs after ``ensemble`` when
    ``[ensemble] stability_seeds >= 2``. ``overwrite`` first deletes what oremap wrote in the
    run folder (only a folder oremap made). ``config_path``, the file ``config`` came from, is
    checked not to lie in the run folder.
    """
    from oremap.check import format_preflight, preflight, require_inputs
    from oremap.train import choose_device

    run_dir = Path(run_dir)
    check_out_folder(config, run_dir, config_path)
    require_inputs(config)
    rd = RunDir(run_dir)
    rd.claim()
    with rd.locked():
        if overwrite:
            rd.clear()
        log.info("pre-flight: %s", format_preflight(preflight(config)))
        rd.start(config, device=str(choose_device(config.train.device)))
        plan = list(stages)
        if "ensemble" in plan and config.ensemble.stability_seeds >= 2:
            plan.insert(plan.index("ensemble") + 1, "stability")
        elif contract.read_manifest(rd.root, "stability") is not None:
            contract.clear(rd.root, "stability")  # no longer configured: stale
        with contextlib.ExitStack() as stack:
            last = _run_plan(config, rd, run_dir, plan, resume=resume, progress=progress,
                             cluster_of=lambda: stack.enter_context(cluster(config.compute)))
        rd.finish()
    return last


#: Stages whose work runs as Dask tasks when ``[compute]`` asks for a cluster.
DASK_STAGES = ("evidence", "train", "evaluate", "predict", "stability", "maps")


def _run_plan(config: Config, rd: RunDir, run_dir: Path, plan: Sequence[str], *,
              resume: bool, progress: bool, cluster_of: Callable[[], Any]) -> Path:
    """Run the stages of ``plan`` that are not current; the Dask cluster (``cluster_of``)
    is started only when a stage that uses it runs, and then serves the later ones."""
    last, client = run_dir, None
    for name in plan:
        st = contract.status(rd.root, name, config)
        if st.current and not STAGES[name].always and (resume or name != "train"):
            log.info("stage %s: up to date, reused", name)
            last = rd.root / STAGES[name].folder
            continue
        if contract.read_manifest(rd.root, name) is not None and not STAGES[name].always:
            log.info("stage %s: recomputing (%s)", name, st.describe())
        kwargs: dict[str, Any] = {"progress": progress}
        if name == "train":
            # same inputs: resume; other inputs: keep only the models whose checkpoints
            # match the new samples and settings exactly (each checkpoint checks them)
            kwargs["resume"] = resume and (True if st.same_inputs else "matching")
        if name in DASK_STAGES and config.compute.scheduler != "local":
            client = client if client is not None else cluster_of()
            kwargs["client"] = client
        last = STAGE_FUNCTIONS[name](config, run_dir, **kwargs)
    return last


def run_stage(name: str, run_dir: Path, config_path: Path | None = None,
              **kwargs: Any) -> Path:
    """Run one stage on a run folder, with its own config or with ``config_path``.

    A config given by path (or ``seeds`` for stability) replaces the run folder's
    ``config.toml`` only once the stage has succeeded, so the stored config always describes
    the outputs beside it.
    """
    from oremap.config import to_toml

    run_dir = Path(run_dir)
    if name not in STAGE_FUNCTIONS:
        raise StageNotReadyError(f"unknown stage {name!r}; stages: {list(STAGE_FUNCTIONS)}")
    rd = RunDir(run_dir)
    if not (run_dir / contract.RUN_FILES["config"]).is_file() and config_path is None:
        load_run_config(run_dir)  # raises the clear "no config.toml" error
    rd.claim()
    with rd.locked():
        config = load_run_config(run_dir, config_path)
        if config_path is not None:
            check_out_folder(config, run_dir, config_path)
        out = STAGE_FUNCTIONS[name](config, run_dir, **kwargs)
        if name == "stability" and kwargs.get("seeds"):
            config = with_stability_seeds(config, int(kwargs["seeds"]))
            config_path = config_path or run_dir / contract.RUN_FILES["config"]
        if config_path is not None:
            io.write_text(run_dir / contract.RUN_FILES["config"], to_toml(config))
    return out





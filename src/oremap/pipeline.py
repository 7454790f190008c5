"""The pipeline: the only place where the configuration meets the stages; it only wires.

Each ``run_<stage>(config, run_dir)`` reads the previous stage's outputs from the run folder,
calls the stage's plain functions and writes its own folder; ``run`` runs them in order.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import geopandas as gpd
import pandas as pd

from oremap import __version__, contract, io, maps
from oremap import ensemble as en
from oremap import evaluate as ev
from oremap.check import format_preflight, preflight, require_inputs
from oremap.compute import cluster, run_tasks, stage_client
from oremap.config import Config, to_toml
from oremap.contract import MAIN, STAGES
from oremap.decision import draw_decision
from oremap.device import choose_device
from oremap.errors import InputDataError, StageNotReadyError
from oremap.evidence import build_evidence, load_stack_auto
from oremap.inputs import (
    context_stack,
    crop_spec,
    evidence_specs,
    label_study_cells,
    make_grid,
    read_source,
)
from oremap.maps.qgis import write_map_package
from oremap.members import (
    TestProbabilities,
    ensemble_members,
    evaluate_random_split,
    held_out_probabilities,
    importance_tables,
    train_members,
    write_woe_table,
)
from oremap.names import member_cost, member_kind
from oremap.predict import predict_cells, predict_member_task, prediction_stack
from oremap.report import build_report, collect_sections, refresh_timings
from oremap.runinfo import (
    RunDir,
    check_out_folder,
    load_run_config,
    stage,
    stage_folder,
    with_stability_seeds,
)
from oremap.samples import build_samples, counts_table, load_sample_set

__all__ = ["DASK_STAGES", "STAGE_FUNCTIONS", "run", "run_ensemble", "run_evaluate",
           "run_evidence", "run_maps", "run_predict", "run_report", "run_samples",
           "run_stability", "run_stage", "run_train"]

log = logging.getLogger("oremap")


@stage("evidence")
def run_evidence(config: Config, run_dir: Path, *, progress: bool = True,
                 resume: bool = True, client: Any = None) -> Path:
    """Stage 1: IDW geochemistry, geological densities and rasters -> ``evidence/``; with
    a Dask ``client`` (or ``[compute]`` asking for a cluster) each (layer, window) is a task.
    """
    run = RunDir(run_dir)
    grid = make_grid(config)
    log.info("grid: %s", grid.describe())
    specs = evidence_specs(config, grid)
    with run.timed("evidence") as extra, stage_client(client, config.compute) as client:
        out = run.stage("evidence")
        # IDW in threads over every core the process may use (identical results)
        build_evidence(specs, grid, out, block=config.grid.block, progress=progress,
                       resume=resume, workers=-1, client=client)
        extra["layers"] = [s.name for s in specs]
    return out


@stage("samples")
def run_samples(config: Config, run_dir: Path, *, progress: bool = True) -> Path:
    """Stage 2: cells, labels, crops and splits -> ``samples/`` (and ``samples_random/``)."""
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
    with run.timed("train") as extra, stage_client(client, config.compute) as client:
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


@stage("evaluate")
def run_evaluate(config: Config, run_dir: Path, *, progress: bool = True,
                 client: Any = None) -> Path:
    """Stage 4: Table 1, confusion matrices, ROC/PR/calibration, importance -> ``evaluate/``.

    With a Dask ``client`` (or ``[compute]`` asking for a cluster) the permutation
    importance of each (member, layer) is a task (:func:`oremap.members.importance_task`).
    """
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
            write_woe_table(train, run.root / contract.file("evaluate", "woe"))
        with stage_client(client, config.compute) as client:
            tables = None if client is None else importance_tables(client, config, run.root,
                                                                 f0, ss.layer_names, progress)
            ev.write_importance(fold0, ss.normalised(f0.indices, 0), f0.y, ss.layer_names,
                                out, n_repeats=config.maps.permutation_repeats,
                                seed=config.seed, tables=tables)
        if (run.root / contract.file("train", "random_summary")).exists():
            evaluate_random_split(config, run.root, out)
    return out


@stage("predict")
def run_predict(config: Config, run_dir: Path, *, progress: bool = True,
                client: Any = None) -> Path:
    """Stage 5a: probabilities of every usable cell -> ``predict/predictions.csv``.

    With a Dask ``client`` (or ``[compute]`` asking for a cluster) each (member, fold) is a
    task (:func:`oremap.predict.predict_member_task`)."""
    run = RunDir(run_dir)
    samples = stage_folder(run, "samples")
    train = stage_folder(run, "train")
    with run.timed("predict") as extra, stage_client(client, config.compute) as client:
        out = run.stage("predict")
        stack, tasks = None, None
        if client is not None:
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


@stage("ensemble")
def run_ensemble(config: Config, run_dir: Path, *, progress: bool = True) -> Path:
    """Stage 5b: ensemble rules, their evaluation, Table 2 and stability -> ``ensemble/``."""
    run = RunDir(run_dir)
    members, rules = ensemble_members(config), config.ensemble.rules
    thr = config.predict.threshold
    with run.timed("ensemble"):
        params = en.run_rule_params(config, run, members)
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
        en.write_calibration(run.root, table, members, rules, params, threshold=thr)
    return stage_folder(run, "ensemble")


@stage("maps")
def run_maps(config: Config, run_dir: Path, *, progress: bool = True,
             client: Any = None) -> Path:
    """Stage 6: probability maps, uncertainty, targets, success-rate curves -> ``maps/``.

    With a Dask ``client`` (or ``[compute]`` asking for a cluster) each (member, fold)
    sliding-window map is a task.
    """
    run = RunDir(run_dir)
    members, rules = config.members(), config.ensemble.rules
    with run.timed("maps") as extra:
        out = run.stage("maps")
        table = pd.read_csv(run.root / contract.file("ensemble", "table"))
        cells = gpd.read_file(run.root / contract.file("samples", "cells"))
        grid = make_grid(config)
        orebodies = read_source(config.labels.orebodies, grid, what="[labels.orebodies]")
        cm = maps.write_cell_maps(table, cells, grid, members, rules, out,
                                  run_tags={"run": config.name, "oremap": __version__},
                                  threshold=config.predict.threshold, orebodies=orebodies)
        if config.maps.continuous and config.train.models:
            with stage_client(client, config.compute) as client:
                maps.continuous_maps(config, run, out, progress=progress, client=client)
        best, tg = draw_decision(config, run.root, cm, cells, grid, orebodies)
        extra["target_map"] = f"the recommended map, {best} (maps/prob_{best}.tif)"
        ev.write_rate_curves(table, members, rules, out)
        io.write_vector(run.root / contract.file("maps", "cells"), maps.cell_table(cells, table),
                        layer="cells")
        if config.truth is not None:
            io.write_csv(run.root / contract.file("maps", "hidden_truth"),
                         ev.hidden_truth_scores(config.truth, table, cells, members, rules))
        extra["targets"] = int(len(tg))
        write_map_package(run.root, config, grid.crs.to_wkt())
    return out


@stage("report")
def run_report(config: Config, run_dir: Path, *, progress: bool = True) -> Path:
    """Stage 7: one self-contained HTML report -> ``report/report.html``."""
    run = RunDir(run_dir)
    with run.timed("report"):
        sections = collect_sections(run.root)
        path = build_report(run.root, sections=sections)
    run.finish()  # then again, so the report carries its own timing and end time
    build_report(run.root, sections=refresh_timings(run.root, sections))
    return path


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
    seeds = seeds or config.ensemble.stability_seeds
    if seeds < 2:
        raise InputDataError(f"stability needs at least 2 seeds to measure variation; got {seeds}")
    run = RunDir(run_dir)
    samples = stage_folder(run, "samples")
    members, rules = ensemble_members(config), config.ensemble.rules
    params = en.read_params(run.root / contract.file("ensemble", "weights"), members).final
    with run.timed("stability") as extra, stage_client(client, config.compute) as client:
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
        maps.write_seed_uncertainty(
            tables, pd.read_csv(run.root / contract.file("predict", "predictions")),
            gpd.read_file(run.root / contract.file("samples", "cells")), make_grid(config),
            members, run.root / contract.file("stability", "seed_uncertainty"),
            run_tags={"run": config.name, "oremap": __version__})
        extra["seeds"] = seeds
    return base


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

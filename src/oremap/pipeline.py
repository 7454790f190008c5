"""The pipeline: the only place where the configuration meets the stages.

Each ``run_<stage>(config, run_dir)`` reads the previous stage's outputs from the run folder,
calls the stage's plain functions and writes its own folder. ``run(config, run_dir)`` runs
them all in order.
"""

from __future__ import annotations

import functools
import logging
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import geopandas as gpd
import numpy as np
import pandas as pd
from shapely.geometry.base import BaseGeometry

from oremap import contract, io
from oremap.config import Config, VectorSource
from oremap.contract import MAIN, STAGES
from oremap.errors import ConfigError, InputDataError, StageNotReadyError
from oremap.grid import Grid
from oremap.runinfo import RunDir, check_out_folder

if TYPE_CHECKING:
    from oremap.evidence import LazyStack

log = logging.getLogger("oremap")

PredictFn = Callable[[np.ndarray], np.ndarray]


# --------------------------------------------------------------------------- the stage contract


def _folder(run: RunDir, stage: str) -> Path:
    """The (first) folder of ``stage`` in the run folder."""
    return run.root / STAGES[stage].folder


def stage(name: str) -> Callable[[Callable[..., Path]], Callable[..., Path]]:
    """Make ``run_<name>`` keep the stage contract of :mod:`oremap.contract`.

    The wrapped function runs only in a folder oremap owns, under the run folder's lock, after
    checking that every stage it depends on is complete, intact and current for this
    configuration (else a StageNotReadyError names what changed and the command that
    recomputes it). It starts from an empty stage folder, except to resume (evidence layers
    always, whose reuse checks spec hash and checksum; training with ``resume=True``, only on
    the same inputs), and records its inputs and its outputs' checksums in ``stage.json``.
    """
    def decorate(fn: Callable[..., Path]) -> Callable[..., Path]:
        @functools.wraps(fn)
        def wrapper(config: Config, run_dir: Path, **kwargs: Any) -> Path:
            rd = RunDir(run_dir)
            rd.claim()
            with rd.locked():
                return _execute(name, fn, config, rd, kwargs)

        wrapper.stage_name = name  # type: ignore[attr-defined]
        return wrapper

    return decorate


def _execute(name: str, fn: Callable[..., Path], config: Config, rd: RunDir,
             kwargs: dict[str, Any]) -> Path:
    spec = STAGES[name]
    if name == "stability" and kwargs.get("seeds"):
        config = with_stability_seeds(config, int(kwargs["seeds"]))
    inputs = contract.require_current(rd.root, name, config)
    previous = contract.read_manifest(rd.root, name)
    same = previous is not None and previous.get("fingerprint") == inputs.fingerprint
    if name == "evidence":
        keep = True
    elif name == "train" and kwargs.get("resume"):
        if previous is not None and not same and kwargs["resume"] is True:
            what = "; ".join(contract.changes(previous.get("inputs", {}), inputs))
            raise ConfigError(
                f"cannot resume training in {rd.root}: it was started on other inputs ({what}). "
                f"Run `oremap train {rd.root}` without --resume to train afresh.")
        keep = True
    else:
        keep = spec.resumable and same
    if not keep:
        contract.clear(rd.root, name)
    for folder in spec.folders:
        io.remove_temporary_files(rd.root / folder)
    contract.begin(rd.root, name, inputs)
    try:
        out = fn(config, rd.root, **kwargs)
    except BaseException:
        _drop_if_empty(rd.root, name)
        raise
    layers = None
    if name == "evidence":
        layers = io.read_json(rd.root / contract.file("evidence", "stack"))["names"]
    contract.finish(rd.root, name, inputs, layers=layers)
    return out


def _drop_if_empty(root: Path, name: str) -> None:
    """After a failed stage, remove its folders if they hold nothing but the manifest.

    A stage that failed before writing anything (bad input) leaves no trace; one that had
    finished part of its work (evidence layers, training checkpoints) keeps it to resume.
    """
    if not contract.output_files(root, name):
        contract.clear(root, name)


def with_stability_seeds(config: Config, seeds: int) -> Config:
    """``config`` with ``[ensemble] stability_seeds = seeds``."""
    return config.model_copy(update={
        "ensemble": config.ensemble.model_copy(update={"stability_seeds": seeds})})


# --------------------------------------------------------------------------- inputs


def make_grid(config: Config) -> Grid:
    """The evidence grid described by ``[grid]``."""
    g = config.grid
    return Grid.from_bounds(g.crs, g.bounds, g.pixel_size)


def read_source(src: VectorSource, grid: Grid, *, what: str,
                allow_empty: bool = False) -> gpd.GeoDataFrame:
    """Read one configured vector source into the grid's CRS, applying its ``where`` filter."""
    gdf = io.read_vector(src.path, layer=src.layer, crs=src.crs, target_crs=grid.crs, what=what,
                         allow_empty=True)
    for column, value in (src.where or {}).items():
        if column not in gdf.columns:
            raise InputDataError(
                f"{what} ({src.path}): `where` filters on column {column!r}, which the layer "
                f"lacks; it has {[c for c in gdf.columns if c != 'geometry']}."
            )
        keep = gdf[column].isin(value) if isinstance(value, list) else gdf[column] == value
        gdf = gdf.loc[keep]
    if len(gdf) == 0 and not allow_empty:
        raise InputDataError(f"{what} ({src.path}{':' + src.layer if src.layer else ''}) has no "
                             "features (after its `where` filter); check the file and filter.")
    return gdf


def _extent(src: VectorSource | None, grid: Grid, what: str) -> BaseGeometry | None:
    if src is None:
        return None
    return read_source(src, grid, what=what).geometry.union_all()


# --------------------------------------------------------------------------- evidence


@stage("evidence")
def run_evidence(config: Config, run_dir: Path, *, progress: bool = True,
                 resume: bool = True) -> Path:
    """Stage 1: IDW geochemistry and geological density layers -> ``evidence/``."""
    from oremap.evidence import GeochemLayerSpec, GeologyLayerSpec, build_evidence

    run = RunDir(run_dir)
    grid = make_grid(config)
    log.info("grid: %s", grid.describe())
    specs: list[Any] = []
    if config.geochem is not None:
        g = config.geochem
        pts = io.read_points_csv(g.path, x=g.x, y=g.y, crs=g.crs, columns=g.elements,
                                 target_crs=grid.crs, what="[geochem]")
        xy = np.column_stack([pts.geometry.x.to_numpy(), pts.geometry.y.to_numpy()])
        extent = _extent(g.extent, grid, "[geochem.extent]")
        for element in g.elements:
            specs.append(GeochemLayerSpec(
                name=element, xy=xy, values=pts[element].to_numpy(),
                source=f"{g.path} column {element!r} ([geochem] elements)", power=g.power,
                neighbours=g.n_neighbours(), radius=g.radius, log10=g.log_for(element),
                clip_percentile=g.clip_percentile, coverage_buffer=g.coverage_buffer,
                extent=extent, censored=g.censored))
    for i, layer in enumerate(config.geology):
        what = f"[[geology]] #{i + 1} {layer.name!r}"
        gdf = read_source(layer, grid, what=what)
        specs.append(GeologyLayerSpec(
            name=layer.name, geometries=list(gdf.geometry), source=f"{layer.path} ({what})",
            measure=layer.measure, radius=layer.radius,
            extent=_extent(layer.extent, grid, f"{what} extent")))
    with run.timed("evidence") as extra:
        out = run.stage("evidence")
        build_evidence(specs, grid, out, block=config.grid.block, progress=progress,
                       resume=resume)
        extra["layers"] = [s.name for s in specs]
    return out


# --------------------------------------------------------------------------- samples


def _crop_spec(config: Config) -> Any:
    from oremap.samples import CropSpec

    s = config.samples
    return CropSpec(size=s.crop_size, positive=(s.positive.n, s.positive.a, s.positive.b),
                    negative=(s.negative.n, s.negative.a, s.negative.b))


def label_study_cells(config: Config, grid: Grid, stack: np.ndarray | LazyStack,
                      layer_names: Sequence[str]) -> gpd.GeoDataFrame:
    """Cells of the study area with labels, reasons and coverage."""
    from oremap.samples import cell_coverage, label_cells, make_cells

    g, lab = config.grid, config.labels
    cells = make_cells(grid, cols=g.cell_cols, rows=g.cell_rows, cell_size=g.cell_size)
    orebodies = read_source(lab.orebodies, grid, what="[labels.orebodies]")
    barren = None
    if lab.barren:
        parts = [read_source(src, grid, what=f"[[labels.barren]] #{i + 1}", allow_empty=True)
                 for i, src in enumerate(lab.barren)]
        parts = [p[["geometry"]].assign(source=Path(src.path).name + (f":{src.layer}"
                                                                       if src.layer else ""))
                 for p, src in zip(parts, lab.barren)]
        barren = gpd.GeoDataFrame(pd.concat(parts, ignore_index=True), crs=grid.crs)
    cells = cell_coverage(stack, cells, list(layer_names),
                          tolerance=config.samples.nodata_tolerance)
    return label_cells(cells, orebodies=orebodies, barren=barren, strategy=lab.negatives,
                       orebody_buffer=lab.orebody_buffer, min_distance=lab.min_distance,
                       ratio=lab.ratio, seed=config.seed,
                       orebody_source=f"{lab.orebodies.path} ([labels.orebodies])",
                       barren_source="[[labels.barren]] sources")


@stage("samples")
def run_samples(config: Config, run_dir: Path, *, progress: bool = True) -> Path:
    """Stage 2: cells, labels, crops and splits -> ``samples/`` (and ``samples_random/``)."""
    from oremap.evidence import load_stack_auto
    from oremap.samples import build_samples, counts_table

    run = RunDir(run_dir)
    ev = _folder(run, "evidence")
    with run.timed("samples") as extra:
        stack, names, grid = load_stack_auto(ev)
        cells = label_study_cells(config, grid, stack, names)
        s = config.samples
        out = run.stage("samples")
        ss = build_samples(stack, names, grid, cells, crops=_crop_spec(config), split=s.split,
                           test_fraction=s.test_fraction, block_size=s.block_size,
                           folds=s.folds, seed=config.seed, out_dir=out, progress=progress)
        if s.compare_random and s.split != "random":
            build_samples(stack, names, grid, cells, crops=_crop_spec(config), split="random",
                          test_fraction=s.test_fraction, block_size=s.block_size, folds=1,
                          seed=config.seed, out_dir=run.stage("samples_random"),
                          progress=progress)
        table = counts_table(ss)
        io.write_csv(run.root / contract.file("samples", "counts"), table, index=True)
        extra["crops"] = int(len(ss.y))
    return out


# --------------------------------------------------------------------------- train


def _train_settings(config: Config, *, epochs: int | None = None) -> Any:
    from oremap.train import TrainSettings

    t = config.train
    return TrainSettings(epochs=epochs or t.epochs, batch_size=t.batch_size, lr=t.lr,
                         lr_min=t.lr_min, beta1=t.beta1, weight_decay=t.weight_decay,
                         workers=t.workers, imbalance=t.imbalance, device=t.device,
                         profile=t.profile)


def train_members(config: Config, samples_dir: Path, train_dir: Path, *, seed: int,
                  resume: bool | str = False, jobs: int = 1,
                  progress: bool = True) -> pd.DataFrame:
    """Train every network and baseline on every fold of a sample set; returns a summary.

    ``resume`` is passed to :func:`oremap.train.train_model`. Folders of members no longer
    configured are removed, so the stage's outputs are exactly its members.
    """
    from oremap.baselines import fit_baseline
    from oremap.samples import load_sample_set
    from oremap.train import plot_loss_curves, train_models

    ss = load_sample_set(samples_dir)
    settings = _train_settings(config)
    rows, histories = [], {}
    for fold in range(ss.n_folds):
        fold_dir = train_dir / f"fold{fold}"
        tr, te = ss.train_indices(fold), ss.test_indices(fold)
        x_tr, y_tr = ss.normalised(tr, fold), ss.y[tr]
        x_te, y_te = ss.normalised(te, fold), ss.y[te]
        log.info("fold %d: %d training crops, %d test crops", fold, len(tr), len(te))
        if config.train.models:
            results = train_models(config.train.models, x_tr, y_tr, x_te, y_te,
                                   out_dir=fold_dir, settings=settings, seed=seed,
                                   resume=resume, jobs=jobs, progress=progress)
            for name, res in results.items():
                if fold == 0:
                    histories[name] = res.history
                rows.append(dict(member=name, kind="network", fold=fold,
                                 epochs=len(res.history), best_epoch=res.best_epoch,
                                 seconds=round(res.seconds, 2),
                                 samples_per_s=round(res.samples_per_second, 1),
                                 device=str(res.device)))
        for name in config.train.baselines:
            t0 = time.perf_counter()
            model = fit_baseline(name, x_tr, y_tr, layer_names=ss.layer_names, seed=seed)
            model.save(fold_dir / name / "model.pkl")
            rows.append(dict(member=name, kind="baseline", fold=fold, epochs=0, best_epoch=0,
                             seconds=round(time.perf_counter() - t0, 2), samples_per_s=np.nan,
                             device="cpu"))
    _remove_unconfigured(train_dir, config.members())
    if histories:
        plot_loss_curves(histories, train_dir / Path(contract.file("train", "loss_curves")).name)
    summary = pd.DataFrame(rows)
    io.write_csv(train_dir / Path(contract.file("train", "summary")).name, summary)
    return summary


def _remove_unconfigured(train_dir: Path, members: Sequence[str]) -> None:
    for fold_dir in sorted(train_dir.glob("fold*")):
        for d in fold_dir.iterdir():
            owned = (d / "last.pt").is_file() or (d / "model.pkl").is_file()
            if d.is_dir() and owned and d.name not in members:
                log.info("train: removed %s (member no longer configured)", d)
                shutil.rmtree(d)


@stage("train")
def run_train(config: Config, run_dir: Path, *, resume: bool = False, jobs: int | None = None,
              progress: bool = True) -> Path:
    """Stage 3: train networks and baselines -> ``train/`` (and ``train_random/``)."""
    run = RunDir(run_dir)
    samples = _folder(run, "samples")
    jobs = jobs or config.train.jobs
    with run.timed("train") as extra:
        out = run.stage("train")
        summary = train_members(config, samples, out, seed=config.seed, resume=resume,
                                jobs=jobs, progress=progress)
        if (run.root / contract.file("samples", "random_manifest")).exists():
            log.info("training again on the paper's random crop split, for comparison")
            train_members(config, run.root / contract.file("samples", "random"),
                          run.stage(contract.file("train", "random")),
                          seed=config.seed, resume=resume, jobs=jobs, progress=progress)
        extra["members"] = sorted(set(summary["member"])) if len(summary) else []
    return out


def load_member(name: str, fold_dir: Path, *, device: str = "cpu") -> PredictFn:
    """A function mapping normalised crops (n, C, S, S) to P(ore) for one trained member."""
    from oremap.baselines import Baseline, is_baseline

    if is_baseline(name):
        path = fold_dir / name / "model.pkl"
        if not path.exists():
            raise StageNotReadyError(f"baseline {name!r} has not been trained ({path} missing)")
        return Baseline.load(path).predict_proba
    from oremap.train import load_trained, predict_proba

    model_dir = fold_dir / name
    if not (model_dir / "last.pt").exists():
        raise StageNotReadyError(f"model {name!r} has not been trained ({model_dir} missing); "
                                 "run `oremap train CONFIG`")
    # The last epoch, not the "best" one: best.pt is chosen by the loss on the test split, and
    # choosing a model on the data that then scores it would make every figure optimistic.
    model = load_trained(model_dir, which="last", device=device)
    return lambda x: predict_proba(model, x, device=device)


# --------------------------------------------------------------------------- evaluate


def crop_probabilities(config: Config, samples_dir: Path, train_dir: Path) -> dict[str, Any]:
    """P(ore) of every test crop, per fold and member: the basis of every test-split figure."""
    from oremap.samples import load_sample_set

    ss = load_sample_set(samples_dir)
    out: dict[str, Any] = {"folds": []}
    for fold in range(ss.n_folds):
        te = ss.test_indices(fold)
        x_te = ss.normalised(te, fold)
        probs = {m: load_member(m, train_dir / f"fold{fold}")(x_te) for m in config.members()}
        out["folds"].append({"indices": te, "y": ss.y[te], "probs": probs})
    return out


def _evaluation_tables(config: Config, crops: dict[str, Any],
                       members: Sequence[str]) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    from oremap.evaluate import summarise_folds, table1

    thr = config.predict.threshold
    tables = []
    for f in crops["folds"]:
        tables.append(table1({m: (f["y"], f["probs"][m]) for m in members}, threshold=thr))
    if len(tables) == 1:
        return tables[0], None
    per_fold = pd.concat([t.assign(fold=i) for i, t in enumerate(tables)])
    return summarise_folds(tables), per_fold


def _pooled(crops: dict[str, Any], member: str) -> tuple[np.ndarray, np.ndarray]:
    y = np.concatenate([f["y"] for f in crops["folds"]])
    p = np.concatenate([f["probs"][member] for f in crops["folds"]])
    return y, p


@stage("evaluate")
def run_evaluate(config: Config, run_dir: Path, *, progress: bool = True) -> Path:
    """Stage 4: Table 1, confusion matrices, ROC/PR/calibration, importance -> ``evaluate/``."""
    from oremap import evaluate as ev
    from oremap.samples import load_sample_set

    run = RunDir(run_dir)
    samples = _folder(run, "samples")
    train = _folder(run, "train")
    members = config.members()
    with run.timed("evaluate"):
        out = run.stage("evaluate")
        crops = crop_probabilities(config, samples, train)
        np.savez_compressed(run.root / contract.file("evaluate", "test_probs"),
                            **_flatten_crops(crops))
        t1, per_fold = _evaluation_tables(config, crops, members)
        io.write_csv(run.root / contract.file("evaluate", "table1"), t1, index=True)
        io.write_text(out / "table1.md", ev.table_to_markdown(t1))
        if per_fold is not None:
            io.write_csv(out / "table1_folds.csv", per_fold, index=True)
        pooled = {m: _pooled(crops, m) for m in members}
        cms = {m: ev.confusion(y, (p >= config.predict.threshold).astype(int))
               for m, (y, p) in pooled.items()}
        ev.plot_confusion_matrices(cms, out / "confusion_matrices.png")
        ev.plot_roc_curves(pooled, out / "roc.png")
        ev.plot_pr_curves(pooled, out / "pr.png")
        ev.plot_calibration(pooled, out / "calibration.png")
        ss = load_sample_set(samples)
        f0 = crops["folds"][0]
        x0 = ss.normalised(f0["indices"], 0)
        imp = {}
        for m in members:
            fn = load_member(m, train / "fold0")
            imp[m] = ev.permutation_importance(fn, x0, f0["y"], layer_names=ss.layer_names,
                                               n_repeats=config.maps.permutation_repeats,
                                               seed=config.seed)
        importance = pd.concat([df.reset_index().assign(member=m) for m, df in imp.items()],
                               ignore_index=True)
        io.write_csv(out / "importance.csv", importance)
        ev.plot_importance(imp, out / "importance.png")
        if (run.root / contract.file("train", "random_summary")).exists():
            rnd = crop_probabilities(config, run.root / contract.file("samples", "random"),
                                     run.root / contract.file("train", "random"))
            t_rnd, _ = _evaluation_tables(config, rnd, members)
            io.write_csv(out / "table1_random.csv", t_rnd, index=True)
            cms_rnd = {}
            for m in members:
                y, p = _pooled(rnd, m)
                cms_rnd[m] = ev.confusion(y, (p >= config.predict.threshold).astype(int))
            ev.plot_confusion_matrices(cms_rnd, out / "confusion_matrices_random.png")
    return out


def _flatten_crops(crops: dict[str, Any]) -> dict[str, np.ndarray]:
    flat: dict[str, np.ndarray] = {}
    for i, f in enumerate(crops["folds"]):
        flat[f"fold{i}_indices"] = f["indices"]
        flat[f"fold{i}_y"] = f["y"]
        for m, p in f["probs"].items():
            flat[f"fold{i}_p_{m}"] = p
    return flat


def load_crop_probabilities(evaluate_dir: Path, members: Sequence[str]) -> dict[str, Any]:
    """Read back ``evaluate/test_probs.npz``."""
    data = np.load(evaluate_dir / Path(contract.file("evaluate", "test_probs")).name)
    folds, i = [], 0
    while f"fold{i}_y" in data:
        folds.append({"indices": data[f"fold{i}_indices"], "y": data[f"fold{i}_y"],
                      "probs": {m: data[f"fold{i}_p_{m}"] for m in members}})
        i += 1
    return {"folds": folds}


# --------------------------------------------------------------------------- predict


def predict_cells(config: Config, samples_dir: Path, train_dir: Path, *,
                  stack: np.ndarray | LazyStack | None = None) -> pd.DataFrame:
    """P(ore) of every usable cell from every member.

    ``p_<member>``: labelled cells take the mean over their training/test crops, unknown cells
    their centre crop, averaged over the fold models. With ``[predict] tta = true`` every cell
    (whatever its label) takes the mean over the positive-class lattice of crops cut afresh
    from the evidence ``stack`` (test-time augmentation), so all cells are scored alike.
    ``oof_<member>``: for labelled cells in a test fold, the probability from the model that did
    not see them (NaN otherwise); used for honest curves.
    """
    from oremap.samples import load_sample_set

    ss = load_sample_set(samples_dir)
    cells = gpd.read_file(samples_dir / "cells.gpkg")
    usable = cells.loc[cells["usable"].astype(bool)].sort_values("id")
    ids = usable["id"].to_numpy()
    pos = {cid: i for i, cid in enumerate(ids)}
    use = ((ss.y >= 0) | ss.centre) & np.isin(ss.cell_id, ids)
    idx = np.flatnonzero(use)
    rows = np.array([pos[c] for c in ss.cell_id[idx]])
    table = pd.DataFrame({"cell_id": ids, "row": usable["row"].to_numpy(),
                          "col": usable["col"].to_numpy(), "label": usable["label"].to_numpy()})
    fold_of = np.full(len(ids), -1)
    test_any = ss.test_fold[idx] >= 0
    fold_of[rows[test_any]] = ss.test_fold[idx][test_any]
    table["test_fold"] = fold_of
    counts = np.bincount(rows, minlength=len(ids)).astype(float)
    for m in config.members():
        total = np.zeros(len(ids))
        oof = np.full(len(ids), np.nan)
        for fold in range(ss.n_folds):
            fn = load_member(m, train_dir / f"fold{fold}")
            p = fn(ss.normalised(idx, fold))
            if stack is None:
                p_fold = np.bincount(rows, weights=p, minlength=len(ids)) / np.maximum(counts, 1)
            else:
                p_fold = _tta_probabilities(fn, stack, usable, ss, fold, _crop_spec(config))
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


def _tta_probabilities(fn: PredictFn, stack: np.ndarray | LazyStack, cells: gpd.GeoDataFrame,
                       ss: Any, fold: int, spec: Any, *, chunk: int = 64) -> np.ndarray:
    """Mean P(ore) over the positive-class crop lattice of each cell (one per cell, in order)."""
    from oremap.samples.crops import cell_block, centre_offset, cut_crops, lattice_offsets

    center = ss.norm_center[fold][None, :, None, None]
    scale = ss.norm_scale[fold][None, :, None, None]
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
        x = (np.concatenate(crops) - center) / scale
        p = fn(x.astype(np.float32))
        n = min(chunk, len(cells) - start)
        out[start:start + n] = np.bincount(owner, weights=p, minlength=n) / np.bincount(
            owner, minlength=n)
    return out


@stage("predict")
def run_predict(config: Config, run_dir: Path, *, progress: bool = True) -> Path:
    """Stage 5a: probabilities of every usable cell -> ``predict/predictions.csv``."""
    run = RunDir(run_dir)
    samples = _folder(run, "samples")
    train = _folder(run, "train")
    with run.timed("predict") as extra:
        out = run.stage("predict")
        stack = None
        if config.predict.tta:
            from oremap.evidence import load_stack_auto

            stack = load_stack_auto(_folder(run, "evidence"))[0]
        table = predict_cells(config, samples, train, stack=stack)
        io.write_csv(run.root / contract.file("predict", "predictions"), table)
        extra["cells"] = int(len(table))
    return out


# --------------------------------------------------------------------------- ensemble


def ensemble_weights(config: Config, table1: pd.DataFrame, members: Sequence[str]) -> np.ndarray:
    """Weights of the members, proportional to the chosen validation metric."""
    from oremap.ensemble import metric_weights

    column = {"accuracy": "accuracy", "f1": "macro_f1", "auc": "roc_auc"}[
        config.ensemble.weight_metric]
    if column not in table1.columns:
        column = f"{column}_mean"
    w = metric_weights({m: float(table1.loc[m, column]) for m in members})
    return np.array([w[m] for m in members])


def ensemble_members(config: Config) -> list[str]:
    members = config.ensemble.members or config.members()
    unknown = sorted(set(members) - set(config.members()))
    if unknown:
        raise InputDataError(f"[ensemble] members {unknown} are not trained in [train]; "
                             f"trained: {config.members()}")
    return list(members)


def combine_table(config: Config, table: pd.DataFrame, weights: np.ndarray,
                  members: Sequence[str], *, prefix: str = "p_") -> dict[str, Any]:
    """Every configured rule applied to the ``prefix<member>`` columns of a cell table."""
    from oremap.ensemble import combine

    probs = np.vstack([table[f"{prefix}{m}"].to_numpy() for m in members])
    return {rule: combine(rule, probs, weights=weights, threshold=config.predict.threshold)
            for rule in config.ensemble.rules}


def rule_table1(y: np.ndarray, results: dict[str, Any]) -> pd.DataFrame:
    """Table 1 of ensemble rules, classifying by each rule's own decision.

    Precision, recall, F1 and accuracy are computed on the crops the rule decided; the share of
    undecided crops (majority-voting refusals) is the column ``undecided``. The AUCs rank all
    crops by the rule's probability (the vote share for voting rules).
    """
    from oremap.ensemble import UNDECIDED
    from oremap.evaluate import classification_report, roc_auc

    rows = {}
    for rule, res in results.items():
        decided = res.prediction != UNDECIDED
        row = classification_report(y[decided], res.prediction[decided].astype(float),
                                    threshold=0.5)
        full = classification_report(y, res.probability, threshold=0.5)
        row["roc_auc"], row["pr_auc"] = roc_auc(y, res.probability), full["pr_auc"]
        row["undecided"] = float(1.0 - decided.mean())
        rows[rule] = row
    df = pd.DataFrame.from_dict(rows, orient="index").drop(columns=["threshold"])
    df.index.name = "model"
    return df


@stage("ensemble")
def run_ensemble(config: Config, run_dir: Path, *, progress: bool = True) -> Path:
    """Stage 5b: ensemble rules, their evaluation, Table 2 and stability -> ``ensemble/``."""
    from oremap import ensemble as en
    from oremap import evaluate as ev

    run = RunDir(run_dir)
    evd = _folder(run, "evaluate")
    members = ensemble_members(config)
    thr = config.predict.threshold
    with run.timed("ensemble"):
        out = run.stage("ensemble")
        t1 = pd.read_csv(run.root / contract.file("evaluate", "table1"), index_col=0)
        weights = ensemble_weights(config, t1, members)
        io.write_json(out / "weights.json", {"metric": config.ensemble.weight_metric,
                                             "weights": dict(zip(members, weights.tolist()))})
        crops = load_crop_probabilities(evd, members)
        rule_tables = []
        for f in crops["folds"]:
            probs = np.vstack([f["probs"][m] for m in members])
            res = {r: en.combine(r, probs, weights=weights, threshold=thr)
                   for r in config.ensemble.rules}
            rule_tables.append(rule_table1(f["y"], res))
        t1e = rule_tables[0] if len(rule_tables) == 1 else ev.summarise_folds(rule_tables)
        io.write_csv(out / "table1_ensemble.csv", t1e, index=True)
        table = pd.read_csv(run.root / contract.file("predict", "predictions"))
        results = combine_table(config, table, weights, members)
        for rule, res in results.items():
            table[f"ens_{rule}"] = res.probability
            table[f"pred_{rule}"] = res.prediction
        io.write_csv(run.root / contract.file("ensemble", "table"), table)
        labels = table["label"].to_numpy()
        model_preds = {m: (table[f"p_{m}"].to_numpy() >= thr).astype(int) for m in members}
        rule_preds = {r: res.prediction for r, res in results.items()}
        t2m, t2r = en.table2(model_preds, labels), en.table2(rule_preds, labels)
        t2 = pd.concat([t2m.assign(kind="model"), t2r.assign(kind="rule")])
        io.write_csv(out / "table2.csv", t2, index=True)
        io.write_csv(out / "stability.csv", en.stability_table(t2m, t2r), index=True)
        comparison = compare_members(config, table, crops, weights, members)
        io.write_csv(out / "comparison.csv", comparison, index=True)
        io.write_text(out / "comparison.md", comparison_markdown(comparison, len(crops["folds"])))
    return out


def compare_members(config: Config, table: pd.DataFrame, crops: dict[str, Any],
                    weights: np.ndarray, members: Sequence[str]) -> pd.DataFrame:
    """Every member and rule by ROC AUC and prediction-rate AUC, per fold, mean and spread.

    ROC AUC: held-out crops of each fold. Prediction-rate AUC: all usable cells ranked by the
    fold's model (or rule), counting only the fold's held-out positive cells. Success-rate AUC:
    the final map (mean over folds) against every known positive cell (optimistic: those cells
    were trained on).
    """
    from oremap.ensemble import combine
    from oremap.evaluate import roc_auc, success_rate_curve

    thr, n_folds = config.predict.threshold, len(crops["folds"])
    labels, test_fold = table["label"].to_numpy(), table["test_fold"].to_numpy()
    rules = list(config.ensemble.rules)
    roc = {n: [] for n in [*members, *rules]}
    pra = {n: [] for n in [*members, *rules]}
    for k, f in enumerate(crops["folds"]):
        probs = np.vstack([f["probs"][m] for m in members])
        for m, p in zip(members, probs):
            roc[m].append(roc_auc(f["y"], p))
        for r in rules:
            roc[r].append(roc_auc(f["y"], combine(r, probs, weights=weights,
                                                  threshold=thr).probability))
        suffix = f"_f{k}" if n_folds > 1 else ""
        cell_probs = np.vstack([table[f"p_{m}{suffix}"].to_numpy() for m in members])
        held = (labels == 1) & (test_fold == k)
        scores = dict(zip(members, cell_probs))
        scores.update({r: combine(r, cell_probs, weights=weights, threshold=thr).probability
                       for r in rules})
        for name, sc in scores.items():
            pra[name].append(success_rate_curve(sc, held).auc if held.any() else np.nan)
    rows = {}
    for name in [*members, *rules]:
        from oremap.baselines import is_baseline

        kind = "rule" if name in rules else ("baseline" if is_baseline(name) else "network")
        col = f"p_{name}" if name in members else f"ens_{name}"
        row = {"kind": kind}
        for label, values in (("roc_auc", roc[name]), ("prediction_rate_auc", pra[name])):
            v = np.asarray(values, dtype=float)
            row[f"{label}_mean"] = float(np.nanmean(v)) if np.isfinite(v).any() else np.nan
            row[f"{label}_std"] = float(np.nanstd(v, ddof=1)) if np.isfinite(v).sum() > 1 \
                else np.nan
            row[f"{label}_folds"] = " ".join(f"{x:.3f}" for x in v)
        row["success_rate_auc"] = success_rate_curve(table[col].to_numpy(), labels == 1).auc
        rows[name] = row
    df = pd.DataFrame.from_dict(rows, orient="index")
    df.index.name = "name"
    return df


def comparison_markdown(df: pd.DataFrame, n_folds: int) -> str:
    """The comparison table as Markdown, with a plain statement of which method wins."""
    lines = ["| name | kind | ROC AUC mean | ROC AUC std | prediction-rate AUC mean | "
             "prediction-rate AUC std | success-rate AUC |", "|:---|:---|---:|---:|---:|---:|---:|"]
    for name, r in df.iterrows():
        lines.append(f"| {name} | {r['kind']} | {r['roc_auc_mean']:.3f} | {r['roc_auc_std']:.3f} "
                     f"| {r['prediction_rate_auc_mean']:.3f} | "
                     f"{r['prediction_rate_auc_std']:.3f} | {r['success_rate_auc']:.3f} |")
    text = "\n".join(lines) + "\n\n"
    scope = f"mean over {n_folds} folds" if n_folds > 1 else "single split"
    for metric, what in (("roc_auc_mean", "ROC AUC on held-out crops"),
                         ("prediction_rate_auc_mean", "prediction-rate AUC (held-out positive "
                                                      "cells)")):
        if not df[metric].notna().any():
            continue
        best = df[metric].idxmax()
        per_kind = ", ".join(
            f"best {kind}: {df.loc[df['kind'] == kind, metric].idxmax()} "
            f"({df.loc[df['kind'] == kind, metric].max():.3f})"
            for kind in ("network", "baseline", "rule") if (df["kind"] == kind).any()
            and df.loc[df["kind"] == kind, metric].notna().any())
        text += (f"- By {what}, {scope}: **{best}** ({df.loc[best, 'kind']}) wins with "
                 f"{df.loc[best, metric]:.3f}; {per_kind}.\n")
    return text


# --------------------------------------------------------------------------- maps


@stage("maps")
def run_maps(config: Config, run_dir: Path, *, progress: bool = True) -> Path:
    """Stage 6: probability maps, uncertainty, targets, success-rate curves -> ``maps/``."""
    from oremap import evaluate as ev
    from oremap import maps, targets
    from oremap.evidence import load_stack_auto
    from oremap.samples import load_sample_set

    run = RunDir(run_dir)
    samples = _folder(run, "samples")
    members = config.members()
    thr = config.predict.threshold
    with run.timed("maps") as extra:
        out = run.stage("maps")
        table = pd.read_csv(run.root / contract.file("ensemble", "table"))
        cells = gpd.read_file(run.root / contract.file("samples", "cells"))
        grid = make_grid(config)
        n_rows, n_cols = int(cells["row"].max()) + 1, int(cells["col"].max()) + 1
        cgrid = maps.cell_grid(grid, n_cols, n_rows)
        r, c = table["row"].to_numpy(), table["col"].to_numpy()
        rasters: dict[str, np.ndarray] = {}
        for name in members:
            rasters[name] = maps.cells_to_raster(r, c, table[f"p_{name}"].to_numpy(), cgrid)
        for rule in config.ensemble.rules:
            rasters[rule] = maps.cells_to_raster(r, c, table[f"ens_{rule}"].to_numpy(), cgrid)
        for name, arr in rasters.items():
            maps.write_probability_map(out / f"prob_{name}.tif", arr, cgrid)
        orebodies = read_source(config.labels.orebodies, grid, what="[labels.orebodies]")
        usable_cells = cells.loc[cells["usable"].astype(bool)]
        maps.plot_panels({m: rasters[m] for m in members}, cgrid, out / "maps_models.png",
                         orebodies=orebodies, cells=usable_cells)
        maps.plot_panels({r_: rasters[r_] for r_ in config.ensemble.rules}, cgrid,
                         out / "maps_rules.png", orebodies=orebodies, cells=usable_cells)
        probs = np.vstack([table[f"p_{m}"].to_numpy() for m in members])
        std, entropy = maps.uncertainty(probs, threshold=thr)
        std_r = maps.cells_to_raster(r, c, std, cgrid)
        ent_r = maps.cells_to_raster(r, c, entropy, cgrid)
        maps.write_probability_map(out / "uncertainty_std.tif", std_r, cgrid)
        maps.write_probability_map(out / "uncertainty_entropy.tif", ent_r, cgrid)
        maps.plot_uncertainty(std_r, ent_r, cgrid, out / "uncertainty.png",
                              orebodies=orebodies, cells=usable_cells)
        rule = config.maps.target_rule if config.maps.target_rule in rasters else \
            config.ensemble.rules[0]
        target_map, target_grid, target_unc = rasters[rule], cgrid, std_r
        if config.maps.continuous and config.train.models:
            stack, _, sgrid = load_stack_auto(_folder(run, "evidence"))
            ss = load_sample_set(samples)
            cont = continuous_maps(config, stack, sgrid, ss, _folder(run, "train"), members,
                                   progress=progress)
            ens_members = ensemble_members(config)
            t1 = pd.read_csv(run.root / contract.file("evaluate", "table1"), index_col=0)
            weights = ensemble_weights(config, t1, ens_members)
            for name, (arr, g2) in cont.items():
                maps.write_probability_map(out / f"prob_{name}_continuous.tif", arr, g2)
            stacked = np.stack([cont[m][0] for m in ens_members])
            ens_cont = np.tensordot(weights, stacked, axes=1)
            cgrid2 = cont[members[0]][1]
            maps.write_probability_map(out / "prob_ensemble_continuous.tif", ens_cont, cgrid2)
            target_map, target_grid = ens_cont, cgrid2
            target_unc = np.std(stacked, axis=0, ddof=1) if len(ens_members) > 1 else None
        tg = targets.target_areas(target_map, target_grid,
                                  threshold=config.maps.target_threshold,
                                  top_fraction=config.maps.target_top_fraction,
                                  uncertainty=target_unc, orebodies=orebodies)
        targets.write_targets(tg, run.root / contract.file("maps", "targets"),
                              run.root / contract.file("maps", "targets_csv"))
        maps.plot_prospectivity(target_map, target_grid, out / "map_ensemble.png",
                                title=f"Ensemble prospectivity ({rule.replace('_', ' ')})",
                                orebodies=orebodies, cells=usable_cells, targets=tg)
        curves, pcurves, rows = {}, {}, []
        labels = table["label"].to_numpy()
        for name in [*members, *config.ensemble.rules]:
            col = f"p_{name}" if name in members else f"ens_{name}"
            curve = ev.success_rate_curve(table[col].to_numpy(), labels == 1)
            curves[name] = curve
            rows.append(dict(name=name, success_rate_auc=curve.auc))
        held = (table["test_fold"].to_numpy() >= 0) & (labels == 1)
        if held.any() and (labels[~held] != 1).any():
            for i, name in enumerate(members):
                score = table[f"p_{name}"].to_numpy().copy()
                oof = table[f"oof_{name}"].to_numpy()
                score = np.where(np.isfinite(oof), oof, score)
                pcurves[name] = ev.success_rate_curve(score, held)
                rows[i]["prediction_rate_auc"] = pcurves[name].auc
        io.write_csv(out / "success_rate.csv", pd.DataFrame(rows))
        ev.plot_success_rate_curves(curves, out / "success_rate.png",
                                    title="Success-rate curves (known positive cells)")
        if pcurves:
            ev.plot_success_rate_curves(pcurves, out / "prediction_rate.png",
                                        title="Prediction-rate curves (held-out positive cells)")
        if config.truth is not None:
            io.write_csv(out / "hidden_truth.csv",
                         hidden_truth_scores(config, table, cells, grid, members))
        extra["targets"] = int(len(tg))
    return out


def continuous_maps(config: Config, stack: np.ndarray | LazyStack, grid: Grid, ss: Any,
                    train_dir: Path, members: Sequence[str], *,
                    progress: bool = True) -> dict[str, tuple[np.ndarray, Grid]]:
    """Sliding-window probability maps of every member (mean over fold models)."""
    from oremap import maps

    out: dict[str, tuple[np.ndarray, Grid]] = {}
    for name in members:
        acc, g2 = None, None
        for fold in range(ss.n_folds):
            fn = load_member(name, train_dir / f"fold{fold}")
            center, scale = ss.norm_center[fold], ss.norm_scale[fold]

            def predict(x: np.ndarray, fn: PredictFn = fn, center=center, scale=scale):
                z = (x - center[None, :, None, None]) / scale[None, :, None, None]
                return fn(z.astype(np.float32))

            arr, g2 = maps.sliding_window_map(predict, stack, grid,
                                              size=config.samples.crop_size,
                                              stride=config.maps.stride, progress=progress)
            acc = arr if acc is None else acc + arr
        out[name] = (acc / ss.n_folds, g2)
    return out


def hidden_truth_scores(config: Config, table: pd.DataFrame, cells: gpd.GeoDataFrame,
                        grid: Grid, members: Sequence[str]) -> pd.DataFrame:
    """How well unknown cells are ranked against a hidden truth raster (the demo's fertility)."""
    from rasterio.features import geometry_mask

    from oremap.evaluate import ranking_auc

    truth, tgrid = io.read_raster(config.truth)
    by_id = cells.set_index("id")
    unknown = table["label"].to_numpy() == -1
    values = []
    for cid in table.loc[unknown, "cell_id"]:
        geom = by_id.loc[cid, "geometry"]
        mask = ~geometry_mask([geom], out_shape=tgrid.shape, transform=tgrid.transform)
        values.append(float(np.nanmean(truth[mask])) if mask.any() else np.nan)
    truth_v = np.array(values)
    ok = np.isfinite(truth_v)
    rows = []
    for name in [*members, *config.ensemble.rules]:
        col = f"p_{name}" if name in members else f"ens_{name}"
        score = table.loc[unknown, col].to_numpy()[ok]
        rows.append(dict(name=name, kind="model" if name in members else "rule",
                         unknown_cells=int(ok.sum()), auc=ranking_auc(score, truth_v[ok])))
    return pd.DataFrame(rows)


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
                  progress: bool = True) -> Path:
    """Retrain every member with ``seeds`` seeds; measure how predictions and counts vary.

    Seeds are ``config.seed + 1000 * k`` for k = 1..K (the split stays that of the run, only
    initialisation, batch order and dropout change). Per model and rule: the mean over cells of
    the sample std of P(ore) across seeds, the mean flip rate (share of seed pairs giving a cell
    different classes; voting rules count refusals as their own class), and the sample std of
    each Table 2 count across seeds. Written to ``ensemble/seed_stability.csv``.
    """
    from oremap import ensemble as en

    seeds = seeds or config.ensemble.stability_seeds
    if seeds < 2:
        raise InputDataError(f"stability needs at least 2 seeds to measure variation; got {seeds}")
    run = RunDir(run_dir)
    samples = _folder(run, "samples")
    t1 = pd.read_csv(run.root / contract.file("evaluate", "table1"), index_col=0)
    members = ensemble_members(config)
    weights = ensemble_weights(config, t1, members)
    thr = config.predict.threshold
    with run.timed("stability") as extra:
        base = run.stage("stability")
        probs: dict[str, list[np.ndarray]] = {}
        classes: dict[str, list[np.ndarray]] = {}
        for k in range(1, seeds + 1):
            seed = config.seed + 1000 * k
            tdir = base / f"seed{seed}"
            log.info("stability: retraining every member with seed %d (%d of %d)", seed, k,
                     seeds)
            train_members(config, samples, tdir, seed=seed, resume=True, progress=progress)
            table = predict_cells(config, samples, tdir)
            io.write_csv(tdir / "predictions.csv", table)
            for m in members:
                probs.setdefault(m, []).append(table[f"p_{m}"].to_numpy())
                classes.setdefault(m, []).append((probs[m][-1] >= thr).astype(int))
            for rule, res in combine_table(config, table, weights, members).items():
                probs.setdefault(rule, []).append(res.probability)
                classes.setdefault(rule, []).append(res.prediction)
        labels = table["label"].to_numpy()
        rows = []
        for name in probs:
            v = en.seed_variability(np.vstack(probs[name]), threshold=thr,
                                    predictions=np.vstack(classes[name]))
            counts = pd.DataFrame([en.prediction_counts(c, labels) for c in classes[name]])
            row = dict(name=name, kind="model" if name in members else "rule", seeds=seeds,
                       mean_prob_std_sample=v["mean_prob_std_sample"],
                       mean_flip_rate=v["mean_flip_rate"])
            for col in counts.columns:
                row[f"{col}_mean"] = float(counts[col].mean())
                row[f"{col}_std_sample"] = float(counts[col].std(ddof=1))
            rows.append(row)
        df = pd.DataFrame(rows)
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
    from oremap.check import check_inputs, format_preflight, preflight
    from oremap.train import choose_device

    run_dir = Path(run_dir)
    check_out_folder(config, run_dir, config_path)
    problems = check_inputs(config)
    if problems:
        raise InputDataError(
            f"{len(problems)} problem(s) with the inputs, found before any work (`oremap config "
            "check` lists the same):\n  - " + "\n  - ".join(problems))
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
        last = run_dir
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
            last = STAGE_FUNCTIONS[name](config, run_dir, **kwargs)
        rd.finish()
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


def load_run_config(run_dir: Path, config_path: Path | None = None) -> Config:
    """The configuration of a run folder, or the one in ``config_path``."""
    from oremap.config import load_config

    run_dir = Path(run_dir)
    if config_path is not None:
        return load_config(config_path)
    path = run_dir / "config.toml"
    if not path.exists():
        raise StageNotReadyError(
            f"{run_dir} holds no config.toml; start with `oremap run CONFIG --out {run_dir}` or "
            "pass --config CONFIG.")
    return load_config(path)


# --------------------------------------------------------------------------- demo

EXAMPLE_CONFIG = '''\
# oremap configuration: the embedded demo study area (a synthetic analogue of the Bawangou
# gold area of He et al. 2024). Every distance is in map units of [grid] crs (metres here).
# Relative paths are relative to this file's folder.
name = "oremap demo"
seed = {seed}                        # one seed drives splits, crops, training and sampling
truth = "{data}/fertility.tif"      # demo only: hidden fertility, to score unknown cells

[grid]
crs = "EPSG:32649"                  # UTM 49N; inputs in other CRSs are reprojected to it
bounds = [{xmin}, {ymin}, {xmax}, {ymax}]   # xmin, ymin, xmax, ymax
pixel_size = 0.5                    # evidence raster pixel (m): a 20 m x 23 m cell = 40 x 46 px
cell_cols = 40                      # cells across (or: cell_size = [20.0, 23.0])
cell_rows = 16                      # cells down
block = 2048                        # window (px) for out-of-core evidence computation

[geochem]                           # point assays, one IDW layer per element
path = "{data}/soil_samples.csv"
x = "x"
y = "y"
crs = "EPSG:32649"                  # a CSV has no CRS of its own: required
elements = ["Au", "Ag", "As", "Cu", "Pb", "Zn", "Hg", "Sb", "W", "Mo"]
power = 2.0                         # IDW distance exponent
neighbours = 12                     # nearest samples used, or "all"
log10 = true                        # log10 before interpolation (or a list of elements)
clip_percentile = 99.5              # clip extreme assays at this percentile
coverage_buffer = 15.0              # coverage = convex hull of the samples buffered by this

[[geology]]                         # one evidence layer per geological feature class
name = "shear_zones"
path = "{data}/geology.gpkg"
layer = "shear_zones"
measure = "buffer_density"          # distance | density | buffer_density (cone kernel)
radius = 40.0                       # influence radius R
extent = {{ path = "{data}/geology.gpkg", layer = "geology_extent" }}  # mapped area

[[geology]]
name = "faults"
path = "{data}/geology.gpkg"
layer = "faults"
measure = "buffer_density"
radius = 30.0
extent = {{ path = "{data}/geology.gpkg", layer = "geology_extent" }}

[[geology]]
name = "alteration_zones"
path = "{data}/geology.gpkg"
layer = "alteration_zones"
measure = "buffer_density"
radius = 30.0
extent = {{ path = "{data}/geology.gpkg", layer = "geology_extent" }}

[[geology]]
name = "quartz_sandstone"
path = "{data}/geology.gpkg"
layer = "quartz_sandstone"
measure = "distance"                # exact distance to the nearest zone (0 inside)
extent = {{ path = "{data}/geology.gpkg", layer = "geology_extent" }}

[labels]
orebodies = {{ path = "{data}/orebodies.gpkg", layer = "orebodies" }}  # positives
orebody_buffer = 0.0
negatives = "verified"              # verified (barren holes/trenches) | distance

[[labels.barren]]                   # drilling that proved ground barren
path = "{data}/drilling.gpkg"
layer = "drillholes"
where = {{ result = "barren" }}

[[labels.barren]]
path = "{data}/drilling.gpkg"
layer = "trenches"
where = {{ result = "barren" }}

[samples]
crop_size = {crop}                  # window side in pixels
positive = {{ n = {pn}, a = {pa}, b = {pb} }}   # <= n windows a cell, steps a (x), b (y) px
negative = {{ n = {nn}, a = {na}, b = {nb} }}
nodata_tolerance = 0.0              # share of nodata pixels a cell may hold (paper: 0)
split = "cell"                      # cell | block | random (the paper's, optimistic)
test_fraction = 0.2
compare_random = {compare}          # also run the paper's random split, side by side

[train]
models = {models}
baselines = ["logistic", "random_forest", "woe"]
profile = "fast"                    # paper (published widths) | fast (for CPUs)
epochs = {epochs}
batch_size = 16
lr = 1e-4                           # cosine annealing from lr ...
lr_min = 1e-5                       # ... down to lr_min
workers = 0                         # data-loading workers (capped at the cores available)
imbalance = "weighted_loss"         # weighted_loss | balanced_sampler | none
device = "auto"                     # auto: CUDA, then Apple MPS, then CPU

[predict]
threshold = 0.5

[ensemble]
rules = ["simple_average", "weighted_average", "majority_voting", "plurality_voting",
         "weighted_voting"]
weight_metric = "accuracy"          # accuracy | f1 | auc
stability_seeds = {seeds}                 # retrain with this many seeds to measure stability

[maps]
stride = {stride}                   # sliding-window stride (px) of the continuous maps
target_top_fraction = 0.1           # targets: top 10 % of the area (or target_threshold)
target_rule = "weighted_average"
'''

DEMO_MODELS = ["lenet", "alexnet", "vgg16", "vgg8", "resnet50", "mobilenet_v2", "vit"]


def example_config_text(data_dir: str = "demo_data", *, quick: bool = False,
                        seed: int = 0) -> str:
    """The commented demo configuration; ``oremap config example`` prints it."""
    from oremap.demo import DEMO_BOUNDS

    xmin, ymin, xmax, ymax = DEMO_BOUNDS
    crops = dict(crop=32, pn=6, pa=4, pb=7, nn=1, na=8, nb=7) if quick else \
        dict(crop=32, pn=40, pa=2, pb=2, nn=6, na=8, nb=7)
    return EXAMPLE_CONFIG.format(
        seed=seed, xmin=xmin, ymin=ymin, xmax=xmax, ymax=ymax, data=data_dir,
        models="[" + ", ".join(f'"{m}"' for m in DEMO_MODELS) + "]",
        epochs=2 if quick else 15, stride=16 if quick else 8, seeds=0 if quick else 3,
        compare="false" if quick else "true", **crops)


def run_demo(out: Path, *, quick: bool = False, seed: int = 0, overwrite: bool = False,
             progress: bool = True) -> Path:
    """Write the demo study area into ``out/data`` and run every stage into ``out/run``."""
    from oremap.config import load_config
    from oremap.demo import write_demo

    out = Path(out)
    files = write_demo(out / "data", seed=seed)
    cfg_path = out / ("demo_quick.toml" if quick else "demo.toml")
    io.write_text(cfg_path, example_config_text("data", quick=quick, seed=seed))
    config = load_config(cfg_path)
    log.info("demo data in %s, configuration %s", files.root, cfg_path)
    return run(config, out / ("run_quick" if quick else "run"), progress=progress,
               overwrite=overwrite)

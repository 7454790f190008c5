"""The members of an ensemble (networks and baselines): train them per fold, load them, and
their P(ore) on each fold's held-out crops.
"""

from __future__ import annotations

import logging
import logging.handlers
import shutil
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from oremap import contract, io
from oremap import evaluate as ev
from oremap.baselines import Baseline, fit_baseline, is_baseline
from oremap.compute import run_tasks, set_threads, thread_map, worker_cached
from oremap.config import Config
from oremap.errors import InputDataError
from oremap.limits import available_cores
from oremap.names import member_cost
from oremap.progress import progress as progress_bar
from oremap.runinfo import RunDir, stage_folder
from oremap.stages import stage_missing

__all__ = [
    "FoldProbabilities",
    "PredictFn",
    "TestProbabilities",
    "cell_scorer",
    "crop_probabilities",
    "ensemble_members",
    "evaluate_random_split",
    "held_out_probabilities",
    "importance_tables",
    "importance_task",
    "load_member",
    "train_member_task",
    "train_members",
    "train_settings",
    "write_woe_table",
]

log = logging.getLogger("oremap")

#: A trained member: normalised crops (n, C, S, S) -> P(ore) (n,).
PredictFn = Callable[[np.ndarray], np.ndarray]




def train_settings(config: Config, *, epochs: int | None = None) -> Any:
    """The :class:`oremap.train.TrainSettings` of ``[train]``."""
    from oremap.train import TrainSettings  # torch: off the light import path

    t = config.train
    pu = config.labels.negatives == "pu_bagging"
    return TrainSettings(epochs=epochs or t.epochs, batch_size=t.batch_size, lr=t.lr,
                         lr_min=t.lr_min, beta1=t.beta1, weight_decay=t.weight_decay,
                         workers=t.workers, imbalance="pu_bagging" if pu else t.imbalance,
                         device=t.device, profile=t.profile, augment=t.augment,
                         patience=t.patience, pu_ratio=_pu_ratio(config))


def _pu_ratio(config: Config) -> float:
    """Unlabelled cells per positive in a PU bag (``[labels] ratio``, default 1)."""
    return float(config.labels.ratio) if config.labels.ratio is not None else 1.0


def train_members(config: Config, samples_dir: Path, train_dir: Path, *, seed: int,
                  resume: bool | str = False, jobs: int = 1, progress: bool = True,
                  client: Any = None) -> pd.DataFrame:
    """Train every network and baseline on every fold of a sample set; returns a summary.

    ``resume`` is passed to :func:`oremap.train.train_model`. Folders of members no longer
    configured are removed, so the stage's outputs are exactly its members. With a Dask
    ``client`` (``[compute]``), each (fold, member) is one task (:func:`train_member_task`)
    with ``[compute] threads_per_worker`` torch threads; ``jobs`` is then not used. Else,
    with ``jobs > 1``, the same tasks run in ``jobs`` local processes of ``cores // jobs``
    torch threads each (the weights then equal a Dask run's with as many threads per
    worker); with ``jobs = 1``, in this process, one after the other.

    With ``[train] pretrain`` (masked or contrastive), every network's trunk is first
    pretrained here, once per network and train folder, on the centred crop of every usable
    cell without labels (:func:`_pretrain_networks`; reused while its inputs are unchanged), and
    every fold's training of it, local or a task, starts from that file.
    """
    from oremap.samples import load_sample_set  # torch: off the light import path
    from oremap.train import (  # torch: off the light import path
        PRETRAIN_DIR,
        plot_loss_curves,
        train_models,
    )

    ss = load_sample_set(samples_dir)
    pretrained = _pretrain_networks(config, ss, Path(train_dir), seed=seed, progress=progress)
    rows, histories = [], {}
    pairs = [(fold, name) for fold in range(ss.n_folds) for name in config.members()]
    calls = [(config, Path(samples_dir), Path(train_dir), fold, name, seed, resume)
             for fold, name in pairs]
    done = None
    if client is not None:

        tag = uuid.uuid4().hex[:8]  # keys unique to this call on a long-lived cluster
        done = run_tasks(
            client, train_member_task,
            [(*call, config.compute.threads_per_worker) for call in calls],
            keys=[f"oremap-train-{tag}-fold{fold}-{name}" for fold, name in pairs],
            desc="train (Dask)", progress=progress, costs=_fold_major_costs(pairs, ss.n_folds))
    elif jobs > 1 and len(pairs) > 1:
        done = _train_in_processes(calls, jobs, progress,
                                   costs=_fold_major_costs(pairs, ss.n_folds))
    if done is not None:
        for (fold, name), (row, history) in zip(pairs, done):
            rows.append(row)
            if fold == 0 and history is not None:
                histories[name] = history
    else:
        settings = train_settings(config)
        for fold in range(ss.n_folds):
            fold_dir = train_dir / f"fold{fold}"
            x_tr, y_tr, x_te, y_te, tr, monitor = _fold_arrays(ss, fold)
            if config.train.models:
                results = train_models(config.train.models, x_tr, y_tr, x_te, y_te,
                                       out_dir=fold_dir, settings=settings, seed=seed,
                                       resume=resume, progress=progress, monitor=monitor,
                                       pretrained=pretrained)
                for name, res in results.items():
                    if fold == 0:
                        histories[name] = res.history
                    rows.append(_network_row(name, fold, res))
            for name in config.train.baselines:
                rows.append(_fit_baseline_member(config, ss, fold, name, x_tr, y_tr, tr,
                                                 fold_dir, seed))
    _remove_unconfigured(train_dir, config.members())
    _remove_unused_pretraining(config, Path(train_dir) / PRETRAIN_DIR)
    if histories:
        plot_loss_curves(histories, train_dir / Path(contract.file("train", "loss_curves")).name)
    summary = pd.DataFrame(rows)
    io.write_csv(train_dir / Path(contract.file("train", "summary")).name, summary)
    return summary


def _pretrain_networks(config: Config, ss: Any, train_dir: Path, *, seed: int,
                       progress: bool) -> dict[str, Path]:
    """Pretrain every network of ``[train] models`` (or reuse its file): ``{name: file}``,
    empty with ``[train] pretrain = "none"``.

    The crops are the centred crop of every usable cell, one per cell whatever its label (the
    sample set's other crops are the labelled cells' lattices, whose number depends on the
    label), at most :data:`oremap.train.pretrain.MAX_PRETRAIN_CROPS` (a seeded subsample),
    normalised with :func:`oremap.train.area_scaling` (the per-layer median over folds of the
    folds' centres and scales); no label is read. See docs/pretraining.md.
    """
    if config.train.pretrain == "none" or not config.train.models:
        return {}
    from oremap.train import (  # torch: off the light import path
        area_scaling,
        pretrain_model,
        pretrain_path,
        pretraining_indices,
    )

    center, scale = area_scaling(ss.norm_center, ss.norm_scale)
    indices = pretraining_indices(ss.centre, seed)
    settings = train_settings(config)
    files = {}
    for name in config.train.models:
        files[name] = pretrain_model(
            name, ss.X, center=center, scale=scale, method=config.train.pretrain,
            epochs=config.train.pretrain_epochs, out_path=pretrain_path(train_dir, name),
            settings=settings, seed=seed, indices=indices, progress=progress).path
    return files


def _pretrained_file(config: Config, train_dir: Path, name: str) -> Path | None:
    """The pretraining file a network's fold training starts from (written by
    :func:`_pretrain_networks` before any task runs); None without pretraining."""
    if config.train.pretrain == "none":
        return None
    from oremap.train import pretrain_path  # torch: off the light import path

    return pretrain_path(train_dir, name)


def _remove_unused_pretraining(config: Config, folder: Path) -> None:
    """Pretraining files in ``folder`` of networks no longer configured, or all of them once
    ``[train] pretrain = "none"``: the stage's outputs are exactly what it used."""
    if not folder.is_dir():
        return
    keep = set(config.train.models) if config.train.pretrain != "none" else set()
    for f in sorted(folder.iterdir()):
        if f.is_file() and f.suffix in (".pt", ".csv") and f.stem not in keep:
            log.info("train: removed %s (pretraining no longer configured)", f)
            f.unlink()
    if not any(folder.iterdir()):
        folder.rmdir()


def _train_in_processes(calls: list[tuple[Any, ...]], jobs: int, progress: bool, *,
                        costs: Sequence[float]
                        ) -> list[tuple[dict[str, Any], pd.DataFrame | None]]:
    """:func:`train_member_task` of every call in ``jobs`` spawned processes of
    ``cores // jobs`` torch threads each (at least 1), the largest ``costs`` first; results
    in the order of ``calls``. The first error (bad input) is raised here unchanged and the
    tasks not yet started are dropped."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    threads = max(1, available_cores() // jobs)
    order = sorted(range(len(calls)), key=lambda i: -costs[i])
    context = multiprocessing.get_context("spawn")
    records = context.Queue()  # the workers' log records, logged here as if local
    listener = logging.handlers.QueueListener(records, _Relog())
    listener.start()
    pool = ProcessPoolExecutor(max_workers=min(jobs, len(calls)), mp_context=context,
                               initializer=_log_to_queue,
                               initargs=(records, logging.getLogger("oremap").getEffectiveLevel()))
    try:
        futures = {i: pool.submit(train_member_task, *calls[i], threads) for i in order}
        with progress_bar(len(calls), f"train ({jobs} processes)", "member",
                          disable=not progress) as bar:
            for future in as_completed(futures.values()):
                future.result()  # raises the task's error
                bar.update()
        return [futures[i].result() for i in range(len(calls))]
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        listener.stop()


def _fold_major_costs(pairs: Sequence[tuple[int, str]], n_folds: int) -> list[float]:
    """Costs that order (fold, member) tasks fold by fold, the costliest members of a fold
    first: a worker then trains the members of one fold in a row (normalising its crops
    once, see :func:`_worker_fold_arrays`), and no worker is left alone with the largest at
    the end."""
    top = 1.0 + max(member_cost(name) for _, name in pairs)
    return [(n_folds - fold) * top + member_cost(name) for fold, name in pairs]


class _Relog(logging.Handler):
    """Logs a record from a worker process through this process's logger of its name."""

    def emit(self, record: logging.LogRecord) -> None:
        logger = logging.getLogger(record.name)
        if logger.isEnabledFor(record.levelno):
            logger.handle(record)


def _log_to_queue(records: Any, level: int) -> None:
    """A training worker's ``oremap`` log records go to ``records`` (from ``level`` up)."""
    logger = logging.getLogger("oremap")
    logger.handlers = [logging.handlers.QueueHandler(records)]
    logger.setLevel(level)
    logger.propagate = False


def train_member_task(config: Config, samples_dir: Path, train_dir: Path, fold: int, name: str,
                      seed: int, resume: bool | str, threads: int
                      ) -> tuple[dict[str, Any], pd.DataFrame | None]:
    """One (fold, member) of :func:`train_members`, as a Dask task: the summary row, and
    the loss history of a network (None for a baseline).

    Reads the sample set from the (shared) run folder and writes the member's checkpoints
    or model file atomically, exactly as the local loop does, with ``threads`` torch and
    BLAS threads. Run again after a lost worker, it gives the same result (a network
    restarts, or resumes bit for bit with ``resume``). A network starts from the pretraining
    file that :func:`train_members` wrote into the train folder before dispatching the tasks
    (with ``[train] pretrain``).
    """
    from oremap.samples import load_sample_set  # torch: off the light import path
    from oremap.train import train_model  # torch: off the light import path

    set_threads(threads)
    ss = load_sample_set(samples_dir)
    fold_dir = Path(train_dir) / f"fold{fold}"
    x_tr, y_tr, x_te, y_te, tr, monitor = _worker_fold_arrays(ss, Path(samples_dir), fold)
    if name in config.train.models:
        res = train_model(name, x_tr, y_tr, x_te, y_te, out_dir=fold_dir,
                          settings=train_settings(config), seed=seed, resume=resume,
                          progress=False, monitor=monitor,
                          pretrained=_pretrained_file(config, Path(train_dir), name))
        return _network_row(name, fold, res), res.history
    return _fit_baseline_member(config, ss, fold, name, x_tr, y_tr, tr, fold_dir, seed), None


def _worker_fold_arrays(ss: Any, samples_dir: Path, fold: int) -> tuple[Any, ...]:
    """:func:`_fold_arrays`, kept (read-only) for a worker's next task of the same fold and
    sample set (keyed by the samples stage's record, which changes whenever it does): the
    members of a fold that one worker trains normalise its crops once, not once each."""

    record = samples_dir / "stage.json"
    if not record.is_file():  # not a pipeline's sample set: nothing to key a cache on
        return _fold_arrays(ss, fold)

    def build() -> tuple[Any, ...]:
        arrays = _fold_arrays(ss, fold)
        for a in arrays:
            if isinstance(a, np.ndarray):
                a.flags.writeable = False
        return arrays

    return worker_cached("fold arrays", (str(samples_dir.resolve()), record.read_text(), fold),
                         build)


def _fold_arrays(ss: Any, fold: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                              np.ndarray, str]:
    """Training crops and labels of ``fold``, the crops monitored after every epoch and
    their labels, the training indices, and what is monitored."""
    tr = ss.fit_indices(fold)
    # Held-out crops monitored after every epoch: the inner validation set when there is one
    # (its best epoch is then the member used), else the test split (shown in the loss
    # curves only: the last epoch is used, never one chosen on the test split).
    te = ss.validation_indices(fold) if ss.has_validation else ss.test_indices(fold)
    log.info("fold %d: %d training crops, %d %s crops", fold, len(tr), len(te),
             "validation" if ss.has_validation else "test")
    return (ss.normalised(tr, fold), ss.y[tr], ss.normalised(te, fold), ss.y[te], tr,
            "validation" if ss.has_validation else "test")


def _network_row(name: str, fold: int, res: Any) -> dict[str, Any]:
    return dict(member=name, kind="network", fold=fold, epochs=len(res.history),
                best_epoch=res.best_epoch, seconds=round(res.seconds, 2),
                samples_per_s=round(res.samples_per_second, 1), device=str(res.device))


def _fit_baseline_member(config: Config, ss: Any, fold: int, name: str, x_tr: np.ndarray,
                         y_tr: np.ndarray, tr: np.ndarray, fold_dir: Path,
                         seed: int) -> dict[str, Any]:

    t0 = time.perf_counter()
    pu = config.labels.negatives == "pu_bagging"
    # woe counts unit cells (groups, their centred crops) and prints cut-offs in layer units
    woe = {"centre": ss.centre[tr], "normalisation": (
        ss.norm_center[fold].astype(np.float32), ss.norm_scale[fold].astype(np.float32))
    } if name == "woe" else {}
    model = fit_baseline(name, x_tr, y_tr, layer_names=ss.layer_names, seed=seed,
                         pu_bags=config.labels.bags if pu else 0, pu_ratio=_pu_ratio(config),
                         groups=ss.cell_id[tr], **woe)
    model.save(fold_dir / name / "model.pkl")
    return dict(member=name, kind="baseline", fold=fold, epochs=0, best_epoch=0,
                seconds=round(time.perf_counter() - t0, 2), samples_per_s=np.nan,
                device="cpu")


def _remove_unconfigured(train_dir: Path, members: Sequence[str]) -> None:
    for fold_dir in sorted(train_dir.glob("fold*")):
        for d in fold_dir.iterdir():
            owned = (d / "last.pt").is_file() or (d / "model.pkl").is_file()
            if d.is_dir() and owned and d.name not in members:
                log.info("train: removed %s (member no longer configured)", d)
                shutil.rmtree(d)


def load_member(name: str, fold_dir: Path, *, device: str = "cpu") -> PredictFn:
    """A function mapping normalised crops (n, C, S, S) to P(ore) for one trained member."""

    if is_baseline(name):
        path = fold_dir / name / "model.pkl"
        if not path.exists():
            raise stage_missing(
                "train", f"baseline {name!r} has not been trained ({path} missing)",
                fold_dir.parent.parent)
        return Baseline.load(path).predict_proba
    from oremap.train import load_trained, predict_proba  # torch: off the light import path

    model_dir = fold_dir / name
    if not (model_dir / "last.pt").exists():
        raise stage_missing(
            "train", f"model {name!r} has not been trained ({model_dir / 'last.pt'} missing)",
            fold_dir.parent.parent)
    # With inner validation, the epoch with the lowest validation loss (best.pt). Without, the
    # last epoch: best.pt is then chosen by the loss on the test split, and choosing a model on
    # the data that then scores it would make every figure optimistic.
    # best.pt holds the small model alone (last.pt adds the optimiser): read it first, and the
    # last epoch only when best.pt was not chosen on inner validation.
    model = None
    if (model_dir / "best.pt").is_file():
        model = load_trained(model_dir, which="best", device=device)
        if model.oremap_meta.get("monitor") != "validation":
            model = None
    if model is None:
        model = load_trained(model_dir, which="last", device=device)
    tta = model.oremap_meta["settings"].get("augment", "none") == "dihedral"
    return lambda x: predict_proba(model, x, device=device, tta=tta)


def cell_scorer(name: str, fold_dir: Path,
                fn: PredictFn) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """``fn`` (the member loaded by :func:`load_member`), taking also each crop's cell id: a
    PU-bagging baseline then scores the cells of its training area out of bag (by the bags
    that did not draw them)."""

    if is_baseline(name):
        model = Baseline.load(fold_dir / name / "model.pkl")
        if model.is_pu:
            return model.predict_proba_oob
    return lambda x, cells: fn(x)


def ensemble_members(config: Config) -> list[str]:
    """The members the ensemble rules combine: ``[ensemble] members``, default every member."""
    members = config.ensemble.members or config.members()
    unknown = sorted(set(members) - set(config.members()))
    if unknown:
        raise InputDataError(f"[ensemble] members {unknown} are not trained in [train]; "
                             f"trained: {config.members()}")
    return list(members)


def held_out_probabilities(config: Config, samples_dir: Path, train_dir: Path, *,
                           progress: bool = False
                           ) -> tuple[TestProbabilities, TestProbabilities | None,
                                      dict[str, PredictFn]]:
    """P(ore) of every test crop and inner validation crop (None without inner validation),
    per fold and member, loading each member once; and fold 0's members (for importance).
    The members of a fold run side by side (:func:`oremap.compute.thread_map`)."""
    from oremap.samples import load_sample_set  # torch: off the light import path

    ss = load_sample_set(samples_dir)
    members = config.members()
    test, val, fold0 = [], [], {}
    with progress_bar(ss.n_folds * len(members), "held-out crops", "member",
                      disable=not progress) as bar:
        for fold in range(ss.n_folds):
            te, va = ss.test_indices(fold), ss.validation_indices(fold)
            x_te, x_va = ss.normalised(te, fold), ss.normalised(va, fold)

            def score(m: str, fold: int = fold, x_te: np.ndarray = x_te,
                      x_va: np.ndarray = x_va) -> tuple[PredictFn, np.ndarray, np.ndarray]:
                fn = load_member(m, train_dir / f"fold{fold}")
                p_te = fn(x_te)
                p_va = fn(x_va) if ss.has_validation else np.empty(0)
                bar.update()
                return fn, p_te, p_va

            done = dict(zip(members, thread_map(score, members,
                                                costs=[member_cost(m) for m in members])))
            p_te = {m: done[m][1] for m in members}
            p_va = {m: done[m][2] for m in members} if ss.has_validation else {}
            if fold == 0:
                fold0 = {m: done[m][0] for m in members}
            test.append(FoldProbabilities(indices=te, y=ss.y[te], probs=p_te))
            val.append(FoldProbabilities(indices=va, y=ss.y[va], probs=p_va))
    return (TestProbabilities(test), TestProbabilities(val) if ss.has_validation else None,
            fold0)


def crop_probabilities(config: Config, samples_dir: Path, train_dir: Path
                       ) -> TestProbabilities:
    """P(ore) of every test crop, per fold and member (the test figures of a sample set
    without inner validation, such as the paper's random split)."""
    return held_out_probabilities(config, samples_dir, train_dir)[0]


@dataclass(frozen=True)
class FoldProbabilities:
    """One fold's held-out crops: their indices, labels and P(ore) of every member."""

    indices: np.ndarray
    y: np.ndarray
    probs: Mapping[str, np.ndarray]

    def stacked(self, members: Sequence[str]) -> np.ndarray:
        """(members, crops) probabilities, in the order of ``members``."""
        return np.vstack([self.probs[m] for m in members])

    def by_cell(self, cell_id: np.ndarray) -> FoldProbabilities:
        """The same, one row per cell (``cell_id`` of every crop of the sample set): a cell's
        P(ore) is the mean over its crops; ``indices`` become the cell ids."""
        cells, inverse = np.unique(cell_id[self.indices], return_inverse=True)
        n = np.bincount(inverse, minlength=len(cells))
        mean = {m: np.bincount(inverse, weights=p, minlength=len(cells)) / n
                for m, p in self.probs.items()}
        y = np.zeros(len(cells), dtype=self.y.dtype)
        y[inverse] = self.y
        return FoldProbabilities(indices=cells, y=y, probs=mean)


@dataclass(frozen=True)
class TestProbabilities:
    """Held-out crop probabilities of every fold (``evaluate/test_probs.npz``)."""

    folds: list[FoldProbabilities]

    def __len__(self) -> int:
        return len(self.folds)

    def pooled(self, member: str) -> tuple[np.ndarray, np.ndarray]:
        """Labels and P(ore) of ``member`` over the held-out crops of all folds."""
        return (np.concatenate([f.y for f in self.folds]),
                np.concatenate([f.probs[member] for f in self.folds]))

    def table1(self, members: Sequence[str], *, threshold: float
               ) -> tuple[pd.DataFrame, pd.DataFrame | None]:
        """Table 1 of ``members`` (mean and std over folds), and per fold (None: one fold)."""
        from oremap.evaluate import summarise_folds, table1  # matplotlib: off the light import path

        tables = [table1({m: (f.y, f.probs[m]) for m in members}, threshold=threshold)
                  for f in self.folds]
        if len(tables) == 1:
            return tables[0], None
        per_fold = pd.concat([t.assign(fold=i) for i, t in enumerate(tables)])
        return summarise_folds(tables), per_fold

    def save(self, path: Path) -> None:
        """Write as a compressed ``.npz`` (atomically)."""
        flat: dict[str, np.ndarray] = {}
        for i, f in enumerate(self.folds):
            flat[f"fold{i}_indices"] = f.indices
            flat[f"fold{i}_y"] = f.y
            for m, p in f.probs.items():
                flat[f"fold{i}_p_{m}"] = p
        with io.atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez_compressed(fh, **flat)

    @classmethod
    def load(cls, path: Path, members: Sequence[str]) -> TestProbabilities:
        """Read back what :meth:`save` wrote, for ``members``."""
        data = np.load(path)
        folds, i = [], 0
        while f"fold{i}_y" in data:
            folds.append(FoldProbabilities(
                indices=data[f"fold{i}_indices"], y=data[f"fold{i}_y"],
                probs={m: data[f"fold{i}_p_{m}"] for m in members}))
            i += 1
        return cls(folds)


def importance_tables(client: Any, config: Config, root: Path, f0: Any,
                   layer_names: Sequence[str], progress: bool) -> dict[str, pd.DataFrame]:
    """The permutation importance tables of every member (fold 0), one Dask task per
    (member, layer) (:func:`importance_task`), with the permutations and baseline scores of
    the local computation (so the same figures)."""

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

    set_threads(threads)
    run = RunDir(root)
    from oremap.samples import load_sample_set  # torch: off the light import path

    ss = load_sample_set(stage_folder(run, "samples"))
    te = ss.test_indices(0)
    fn = load_member(member, stage_folder(run, "train") / "fold0")
    return ev.layer_drops(fn, ss.normalised(te, 0), np.asarray(ss.y[te]).astype(int), layer,
                          perms, baseline)


def write_woe_table(train: Path, path: Path) -> None:
    """The weights-of-evidence table of fold 0's WoE baseline (``train/fold0/woe``), for the
    report: per layer the cut-off in the layer's units, W+, s(W+), W-, s(W-), C, s(C),
    Stud(C) and its confidence, and unit-cell counts (columns :data:`oremap.woe.WOE_COLUMNS`)."""
    woe = Baseline.load(train / "fold0" / "woe" / "model.pkl")
    if hasattr(woe, "woe_table"):
        io.write_csv(path, woe.woe_table())


def evaluate_random_split(config: Config, root: Path, out: Path) -> None:
    """The paper's random crop split, side by side: its Table 1 (``table1_random.csv``) and
    held-out figures (``*_random.png``) from the members trained on it."""
    members, thr = config.members(), config.predict.threshold
    rnd = crop_probabilities(config, root / contract.file("samples", "random"),
                             root / contract.file("train", "random"))
    io.write_csv(root / contract.file("evaluate", "table1_random"),
                 rnd.table1(members, threshold=thr)[0], index=True)
    ev.write_held_out_figures({m: rnd.pooled(m) for m in members}, out, threshold=thr,
                              suffix="_random", curves=False)

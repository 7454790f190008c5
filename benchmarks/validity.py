"""Validity benchmark: does the deep ensemble earn its place on real data?

Runs oremap end to end (evidence to maps, spatial block cross-validation) on real data sets and
prints, per member (network or baseline) and ensemble rule:

- cell-level held-out ROC AUC: in each fold, the fold's held-out labelled cells scored by the
  model that did not see them (a cell's score is the mean over its crops; rules combine the
  members' held-out scores with the run's weights);
- prediction-rate AUC: all usable cells ranked by the fold's model, held-out deposit cells
  counted (``ensemble/comparison.csv``);
- seed spread: the mean over cells of the standard deviation, across seeds, of the cell's
  final P(ore) (each seed changes the block folds, initialisation and batch order);
- for the synthetic demo, the ranking AUC of unknown cells against its hidden fertility.

Mean +- std are over folds x seeds. The results table is written to ``docs/validity.md`` with
the settings, so the document always says exactly what ran.

Data sets: ``copper`` (examples/copper_queensland), ``murchison`` (examples/murchison_gold, all
cells), ``murchison_greenstone`` (the same, cells meeting greenstone only), ``demo`` (the full
synthetic demo), ``copper_pu`` and ``murchison_pu`` (positive-unlabelled bagging negatives),
``lapland`` (examples/lapland_iocg/lapland.toml: GTK's Central Lapland IOCG data, read from
``../shared/data/lapland_iocg`` or ``--lapland-data DIR``, so no ``data`` link is needed) and
``lapland_geophysics`` (lapland_geophysics.toml: the same plus nine airborne geophysics
rasters). On 2 CPU cores the seven networks x 5 folds x 3 seeds take hours: choose
``--models``, ``--seeds`` and ``--epochs``.

Usage::

    .venv/bin/python benchmarks/validity.py --datasets murchison,copper --models lenet,vgg8 \\
        --seeds 3 --epochs 10
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from oremap import contract, io, pipeline
from oremap import ensemble as en
from oremap.config import config_from_dict, to_toml
from oremap.members import ensemble_members
from oremap.names import member_kind
from oremap.runinfo import RunDir

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
DATASETS = ("copper", "murchison", "murchison_greenstone", "demo", "copper_pu", "murchison_pu",
            "lapland", "lapland_geophysics")
#: Where GTK's Central Lapland files are read from (the examples' ``data/`` is not in git).
LAPLAND_DATA = ROOT.parent / "shared" / "data" / "lapland_iocg"


def _in_data_folder(value: Any, data: Path) -> Any:
    """``value`` with every ``path`` (``data/...``, relative to the example's folder) made
    absolute inside ``data``, in nested tables and lists of tables."""
    if isinstance(value, list):
        return [_in_data_folder(v, data) for v in value]
    if not isinstance(value, dict):
        return value
    out = {k: _in_data_folder(v, data) for k, v in value.items()}
    rel = Path(out["path"]) if isinstance(out.get("path"), str) else None
    if rel is not None and len(rel.parts) > 1 and rel.parts[0] == "data":
        out["path"] = str((data / Path(*rel.parts[1:])).resolve())
    return out


def dataset_config(name: str, work: Path,
                   lapland_data: Path = LAPLAND_DATA) -> tuple[dict[str, Any], Path]:
    """The configuration dict of data set ``name`` and the folder its relative paths use.

    The Lapland data sets' paths are rewritten to absolute paths inside ``lapland_data``.
    """
    if name.startswith("copper"):
        base = EXAMPLES / "copper_queensland"
        d = tomllib.loads((base / "copper.toml").read_text())
        if name == "copper_pu":  # positive-unlabelled bagging instead of distance negatives
            d["labels"] = {k: v for k, v in d["labels"].items() if k != "min_distance"}
            d["labels"].update(negatives="pu_bagging", ratio=1.0)
        return d, base
    if name.startswith("murchison"):
        base = EXAMPLES / "murchison_gold"
        d = tomllib.loads((base / "murchison.toml").read_text())
        if name == "murchison_greenstone":
            d["samples"]["area"] = {"path": "data/murchison.gpkg", "layer": "greenstone",
                                    "rule": "intersects"}
        if name == "murchison_pu":  # positive-unlabelled bagging instead of all negatives
            d["labels"].update(negatives="pu_bagging", ratio=1.0)
        return d, base
    if name in ("lapland", "lapland_geophysics"):
        base = EXAMPLES / "lapland_iocg"
        data = Path(lapland_data)
        if not data.is_dir():
            raise SystemExit(f"{name}: the Lapland data folder {data} does not exist; give "
                             "--lapland-data DIR (examples/lapland_iocg/README.md)")
        d = tomllib.loads((base / f"{name}.toml").read_text())
        return _in_data_folder(d, data), base
    if name == "demo":
        from oremap.demo import example_config_text, write_demo

        data = work / "demo_data"
        write_demo(data, seed=0)
        d = tomllib.loads(example_config_text(str(data), quick=False))
        d["samples"]["compare_random"] = False
        return d, work
    raise SystemExit(f"unknown data set {name!r}; choose from {', '.join(DATASETS)}")


def run_dataset(name: str, args: argparse.Namespace) -> tuple[pd.DataFrame, dict[str, Any]]:
    work = Path(args.out) / name
    work.mkdir(parents=True, exist_ok=True)
    base_cfg, base_dir = dataset_config(name, work, Path(args.lapland_data))
    cell_auc: dict[str, list[float]] = {}
    pra: dict[str, list[float]] = {}
    truth_auc: dict[str, list[float]] = {}
    maps_by_seed: dict[str, list[pd.Series]] = {}
    seconds = []
    variant_auc: dict[str, dict[str, list[float]]] = {}
    variant_ece: dict[str, dict[str, list[float]]] = {}
    recommended: list[str] = []
    ece: dict[str, dict[str, list[float]]] = {}
    for k in range(args.seeds):
        d = dict(base_cfg)
        d["seed"] = args.first_seed + k
        d["train"] = {**d["train"], "epochs": args.epochs}
        if args.augment is not None:
            d["train"]["augment"] = args.augment
        if args.context is not None:
            d["samples"] = {**d["samples"], "context": args.context}
        if args.models is not None:
            d["train"]["models"] = args.models
        if args.baselines is not None:
            d["train"]["baselines"] = args.baselines
        if args.pretrain is not None:
            d["train"]["pretrain"] = args.pretrain
        d["maps"] = {**d.get("maps", {}), "continuous": False}
        d["ensemble"] = {**d.get("ensemble", {}), "stability_seeds": 0}
        config = config_from_dict(d, source=f"{name} seed {d['seed']}", base_dir=base_dir)
        io.write_text(work / f"config_seed{d['seed']}.toml", to_toml(config))
        t0 = time.perf_counter()
        pipeline.run(config, work / "run", progress=False)
        seconds.append(time.perf_counter() - t0)
        run = work / "run"
        table = pd.read_csv(run / contract.file("ensemble", "table"))
        rules = list(config.ensemble.rules)
        comp = pd.read_csv(run / contract.file("ensemble", "comparison"), index_col=0)
        for n in comp.index:
            for store, col in ((cell_auc, "cell_roc_auc_folds"),
                               (pra, "prediction_rate_auc_folds")):
                store.setdefault(n, []).extend(float(x) for x in str(comp.loc[n, col]).split())
        for variant, (aucs, eces) in rule_variants(config, run).items():
            for n, v in aucs.items():
                variant_auc.setdefault(variant, {}).setdefault(n, []).extend(v)
            for n, v in eces.items():
                variant_ece.setdefault(variant, {}).setdefault(n, []).append(v)
        recommended.append(json.loads((run / contract.file("maps", "recommendation"))
                                      .read_text()).get("name", ""))
        truth = run / contract.file("maps", "hidden_truth")
        if truth.is_file():
            for _, row in pd.read_csv(truth).iterrows():
                truth_auc.setdefault(row["name"], []).append(float(row["auc"]))
        cal_path = run / contract.file("ensemble", "calibration")
        if cal_path.is_file():
            for n, r in pd.read_csv(cal_path, index_col=0).iterrows():
                ece.setdefault(n, {"raw": [], "cal": []})
                ece[n]["raw"].append(float(r["ece_raw"]))
                ece[n]["cal"].append(float(r["ece"]))
        for n in [*config.members(), *rules]:
            col = f"p_{n}" if n in config.members() else f"ens_{n}"
            maps_by_seed.setdefault(n, []).append(table.set_index("cell_id")[col])
        print(f"  {name} seed {d['seed']}: {seconds[-1]:.0f} s", flush=True)
    rows = []
    for n in cell_auc:
        stacked = pd.concat(maps_by_seed[n], axis=1)
        spread = float(stacked.std(axis=1, ddof=1).mean()) if stacked.shape[1] > 1 else np.nan
        ranks = stacked.rank(axis=0, pct=True)  # each seed's map as percentile ranks of cells
        rank_spread = float(ranks.std(axis=1, ddof=1).mean()) if stacked.shape[1] > 1 else np.nan
        row = dict(name=n, kind=member_kind(n),
                   cell_roc_auc_mean=np.mean(cell_auc[n]),
                   cell_roc_auc_std=np.std(cell_auc[n], ddof=1),
                   prediction_rate_auc_mean=np.nanmean(pra.get(n, [np.nan])),
                   prediction_rate_auc_std=np.nanstd(pra.get(n, [np.nan]), ddof=1),
                   seed_spread=spread, rank_spread=rank_spread,
                   folds_x_seeds=len(cell_auc[n]))
        if n in ece:
            row["ece_raw"], row["ece"] = np.mean(ece[n]["raw"]), np.mean(ece[n]["cal"])
        if truth_auc:
            row["hidden_truth_auc_mean"] = np.mean(truth_auc.get(n, [np.nan]))
        rows.append(row)
    variants = {v: {n: [float(np.mean(x)), float(np.std(x, ddof=1)) if len(x) > 1
                        else float("nan"), float(np.nanmean(variant_ece[v].get(n, [np.nan])))]
                    for n, x in aucs.items()} for v, aucs in variant_auc.items()}
    info = dict(seeds=[args.first_seed + k for k in range(args.seeds)],
                seconds=seconds, config=base_cfg, variants=variants,
                recommended=recommended)
    return pd.DataFrame(rows).set_index("name"), info


#: The ensemble parameters compared on every seed's held-out cells (same members, same folds):
#: (fit_on, calibration). The run itself uses the configured ones.
VARIANTS = {"inner validation, uncalibrated (before #23)": ("validation", "none"),
            "out of fold, uncalibrated": ("out_of_fold", "none"),
            "out of fold, Platt": ("out_of_fold", "platt"),
            "out of fold, isotonic": ("out_of_fold", "isotonic")}
#: Rules compared across :data:`VARIANTS`.
VARIANT_RULES = ("simple_average", "weighted_average", "stacking", "top_k", "selected")


def rule_variants(config: Any, run: Path) -> dict[str, tuple[dict[str, list[float]],
                                                            dict[str, float]]]:
    """Per variant of :data:`VARIANTS`: each rule's held-out cell ROC AUC per fold and its
    expected calibration error on the pooled held-out cells, from the finished run ``run``."""
    table = pd.read_csv(run / contract.file("predict", "predictions"))
    members = ensemble_members(config)
    thr = config.predict.threshold
    rules = [r for r in VARIANT_RULES if r in config.ensemble.rules]
    out = {}
    for name, (fit_on, calibration) in VARIANTS.items():
        if fit_on == "validation" and config.samples.validation <= 0:
            continue
        cfg = config.model_copy(update={"ensemble": config.ensemble.model_copy(
            update={"fit_on": fit_on, "calibration": calibration,
                    "baseline_calibration": "same"})})
        params = en.run_rule_params(cfg, RunDir(run), members)
        aucs = en.held_out_cell_auc(table, members, rules, params, threshold=thr)
        cal = en.calibration_table(table, members, rules, params, threshold=thr)
        out[name] = ({r: aucs[r] for r in rules},
                     {r: float(cal.loc[r, "ece"]) for r in rules})
    return out


#: Cell-level ROC AUC measured outside oremap (logistic regression, same protocol; issue 12).
#: Lapland: logistic regression on the cells' means of the evidence layers, measured outside
#: oremap (issue 22).
ANCHORS = {"murchison": 0.943, "murchison_greenstone": 0.740,
           "lapland": 0.816, "lapland_geophysics": 0.876}


def criteria(df: pd.DataFrame, recommended: str = "stacking",
             anchor: float | None = None) -> list[str]:
    """The checks of the validity issue, each with its figures and a verdict."""
    if recommended not in df.index:
        return []
    auc, std = df["cell_roc_auc_mean"], df["cell_roc_auc_std"]
    members = df.index[df["kind"] != "rule"]
    nets = df.index[df["kind"] == "network"]
    bases = df.index[df["kind"] == "baseline"]
    rec = auc[recommended]
    best_member = auc[members].idxmax()
    out = [f"Checks of `{recommended}` (cell-level ROC AUC, mean over folds x seeds):", ""]

    def line(ok: bool, text: str) -> None:
        out.append(f"- {'PASS' if ok else 'FAIL'}: {text}")

    if anchor is not None:
        line(bool(rec > anchor), f"{recommended} {rec:.3f} beats the anchor {anchor:.3f} "
             "(logistic regression outside oremap)")
    line(bool((rec > auc[members]).all()),
         f"{recommended} {rec:.3f} beats every single member (best member {best_member} "
         f"{auc[best_member]:.3f})")
    line(bool(rec >= auc[best_member] - 0.5 * std[best_member]),
         f"{recommended} is not below its best member by more than half a fold std "
         f"({auc[best_member]:.3f} - 0.5 x {std[best_member]:.3f} = "
         f"{auc[best_member] - 0.5 * std[best_member]:.3f})")
    if len(nets) and len(bases):
        bn, bb = auc[nets].idxmax(), auc[bases].idxmax()
        line(bool(auc[bn] >= auc[bb] - std[bb]),
             f"best network {bn} {auc[bn]:.3f} within one fold std of best baseline {bb} "
             f"{auc[bb]:.3f} +- {std[bb]:.3f}")
        if "random_forest" in df.index:
            line(bool(std[bn] <= 1.5 * std["random_forest"]),
                 f"best network's fold std {std[bn]:.3f} <= 1.5 x random forest's "
                 f"{std['random_forest']:.3f}")
    spread = df["seed_spread"]
    if spread.notna().any() and len(nets):
        line(bool((spread[recommended] < spread[nets]).all()),
             f"{recommended} seed spread of P(ore) {spread[recommended]:.3f} below every "
             f"network's ({', '.join(f'{n} {spread[n]:.3f}' for n in nets)})")
    if "rank_spread" in df.columns and df["rank_spread"].notna().any() and len(nets):
        rank = df["rank_spread"]
        out.append(f"- (diagnostic, not a criterion) rank spread {rank[recommended]:.3f}; "
                   f"networks {', '.join(f'{n} {rank[n]:.3f}' for n in nets)}")
    return [*out, ""]


#: Largest expected calibration error of the recommended map (issue #23): strong-signal sets
#: (many deposits) and the few-deposit sets.
MAX_ECE = {"murchison": 0.05, "murchison_greenstone": 0.05}
MAX_ECE_FEW = 0.10


def few_deposit_checks(df: pd.DataFrame, name: str,
                       recommended: str = "weighted_average") -> list[str]:
    """The "done when" checks of issue #23 for ``recommended`` (mean over folds x seeds)."""
    if recommended not in df.index:
        return []
    auc, std = df["cell_roc_auc_mean"], df["cell_roc_auc_std"]
    members = df.index[df["kind"] != "rule"]
    nets = df.index[df["kind"] == "network"]
    best = auc[members].idxmax()
    rec = auc[recommended]
    bar = auc[best] - 0.25 * std[best]
    out = [f"Checks of issue #23 for `{recommended}`:", ""]

    def line(ok: bool, text: str) -> None:
        out.append(f"- {'PASS' if ok else 'FAIL'}: {text}")

    line(bool(rec >= bar), f"{recommended} {rec:.3f} >= best member {best} {auc[best]:.3f} "
         f"- 0.25 x {std[best]:.3f} = {bar:.3f}")
    if len(nets):
        line(bool((rec > auc[nets]).all()), f"{recommended} {rec:.3f} above every network ("
             + ", ".join(f"{n} {auc[n]:.3f}" for n in nets) + ")")
    if "ece" in df.columns and np.isfinite(df.loc[recommended, "ece"]):
        limit = MAX_ECE.get(name, MAX_ECE_FEW)
        line(bool(df.loc[recommended, "ece"] <= limit),
             f"expected calibration error of {recommended} {df.loc[recommended, 'ece']:.3f} "
             f"<= {limit:.2f} (uncalibrated: {df.loc[recommended, 'ece_raw']:.3f})")
    return [*out, ""]


def variant_table(info: dict[str, Any]) -> list[str]:
    """The rules under each way of fitting their parameters (:data:`VARIANTS`)."""
    variants = info.get("variants") or {}
    if not variants:
        return []
    rules = list(next(iter(variants.values())))
    lines = ["Ensemble parameters fitted four ways on the same held-out cells (cell ROC AUC "
             "mean +- std over folds x seeds; expected calibration error in brackets):", "",
             "| parameters | " + " | ".join(rules) + " |", "|:---|" + "---:|" * len(rules)]
    for v, by_rule in variants.items():
        lines.append(f"| {v} | " + " | ".join(
            f"{by_rule[r][0]:.3f} +- {by_rule[r][1]:.3f} ({by_rule[r][2]:.3f})"
            for r in rules) + " |")
    return [*lines, ""]


def _pretrain_of(folder: Path) -> str:
    """``[train] pretrain`` of a benchmark folder's first seed ("none" when absent)."""
    configs = sorted(Path(folder).glob("config_seed*.toml"))
    if not configs:
        return "none"
    return str(tomllib.loads(configs[0].read_text()).get("train", {}).get("pretrain", "none"))


def pretrain_comparison(results: dict[str, pd.DataFrame], out: Path,
                        other: Path | None) -> list[str]:
    """Networks and the recommended rule of this run beside those of the same benchmark with
    another ``[train] pretrain`` (its ``--out`` folder ``other``): same folds and seeds."""
    if other is None:
        return []
    rows, raised, compared, methods = [], 0, 0, set()
    for name, df in results.items():
        path = Path(other) / name / "results.csv"
        if not path.is_file():
            continue
        here, there = _pretrain_of(Path(out) / name), _pretrain_of(Path(other) / name)
        off, on = (df, pd.read_csv(path, index_col=0)) if here == "none" else \
            (pd.read_csv(path, index_col=0), df)
        methods.add(there if here == "none" else here)
        nets = [n for n in off.index if off.loc[n, "kind"] == "network" and n in on.index]
        for n in [*nets, "weighted_average"]:
            if n not in on.index or n not in off.index:
                continue
            a, b = off.loc[n], on.loc[n]
            rows.append(f"| {name} | {n} | {a['cell_roc_auc_mean']:.3f} +- "
                        f"{a['cell_roc_auc_std']:.3f} | {b['cell_roc_auc_mean']:.3f} +- "
                        f"{b['cell_roc_auc_std']:.3f} | "
                        f"{b['cell_roc_auc_mean'] - a['cell_roc_auc_mean']:+.3f} |")
        if nets:
            compared += 1
            best_a = off.loc[nets, "cell_roc_auc_mean"].max()
            best_b = on.loc[nets, "cell_roc_auc_mean"].max()
            raised += int(best_b > best_a)
    if not rows:
        return []
    method = ", ".join(sorted(methods))
    return [f"## Pretraining (`[train] pretrain = \"{method}\"` against `\"none\"`)", "",
            "The same data sets, folds and seeds; only the networks' initialisation differs "
            "(and so the rules that combine them). Cell-level held-out ROC AUC, mean +- std "
            "over folds x seeds.", "",
            "| data set | network or rule | none | pretrained | change |",
            "|:---|:---|---:|---:|---:|", *rows, "",
            f"Pretraining raises the best network's cell ROC AUC on {raised} of {compared} data "
            "sets.", ""]


def _spreads(df: pd.DataFrame, col: str, nets: pd.Index) -> str:
    if col not in df.columns or not len(nets):
        return "n/a"
    return f"{df.loc['weighted_average', col]:.3f} / {df.loc[nets, col].min():.3f}"


def _ece(df: pd.DataFrame, rule: str = "weighted_average") -> str:
    if "ece" not in df.columns or not np.isfinite(df.loc[rule, "ece"]):
        return "n/a"
    return f"{df.loc[rule, 'ece']:.3f} ({df.loc[rule, 'ece_raw']:.3f})"


def _count(lines: list[str]) -> str:
    passed = sum(line.startswith("- PASS") for line in lines)
    return f"{passed} of {sum(line.startswith(('- PASS', '- FAIL')) for line in lines)}"


def raster_comparison(results: dict[str, pd.DataFrame]) -> list[str]:
    """Every member and rule of ``lapland`` beside ``lapland_geophysics`` (the same folds)."""
    if not {"lapland", "lapland_geophysics"} <= set(results):
        return []
    a, b = results["lapland"], results["lapland_geophysics"]
    lines = ["## With and without the geophysics rasters (Central Lapland)", "",
             "The same cells, labels, blocks, folds and seeds; `lapland_geophysics` adds the "
             "nine airborne geophysics rasters and the magnetic gradient as `[[raster]]` "
             "evidence (10 layers) to the 13 geochemistry and geology layers of `lapland`. "
             "Cell-level held-out ROC AUC and prediction-rate AUC, mean +- std over folds x "
             "seeds.", "",
             "| name | kind | ROC AUC without | ROC AUC with | change | prediction-rate AUC "
             "without | prediction-rate AUC with |", "|:---|:---|---:|---:|---:|---:|---:|"]
    for n in [n for n in a.index if n in b.index]:
        ra, rb = a.loc[n], b.loc[n]
        change = rb["cell_roc_auc_mean"] - ra["cell_roc_auc_mean"]
        lines.append(
            f"| {n} | {ra['kind']} | {ra['cell_roc_auc_mean']:.3f} +- "
            f"{ra['cell_roc_auc_std']:.3f} | {rb['cell_roc_auc_mean']:.3f} +- "
            f"{rb['cell_roc_auc_std']:.3f} | {change:+.3f}"
            f" | {ra['prediction_rate_auc_mean']:.3f} | {rb['prediction_rate_auc_mean']:.3f} |")
    nets_a = a.loc[a["kind"] == "network", "cell_roc_auc_mean"]
    nets_b = b.loc[b["kind"] == "network", "cell_roc_auc_mean"]
    rec = "weighted_average"
    lines += ["", f"Best network: {nets_a.idxmax()} {nets_a.max():.3f} without the rasters, "
              f"{nets_b.idxmax()} {nets_b.max():.3f} with them. Recommended ensemble "
              f"(`{rec}`): {a.loc[rec, 'cell_roc_auc_mean']:.3f} without, "
              f"{b.loc[rec, 'cell_roc_auc_mean']:.3f} with; the anchor measured outside oremap "
              f"(logistic regression on cell means of both) is {ANCHORS['lapland_geophysics']:.3f}"
              ".", ""]
    return lines


def markdown(results: dict[str, pd.DataFrame], infos: dict[str, dict[str, Any]],
             args: argparse.Namespace) -> str:
    lines = [
        "# Validity on real data",
        "",
        "Generated by `benchmarks/validity.py` (do not edit by hand). Command:",
        "",
        "    .venv/bin/python benchmarks/validity.py "
        + " ".join(a for a in sys.argv[1:] if a != "--from-results"),
        "",
        f"Settings: networks {args.models or 'as in each example'}, baselines "
        f"{args.baselines or 'as in each example'}, {args.epochs} epochs, seeds "
        f"{args.first_seed}..{args.first_seed + args.seeds - 1}, augment "
        f"{args.augment or 'as in each example'}, context "
        f"{args.context if args.context is not None else 'as in each example'}, pretrain "
        f"{args.pretrain or 'as in each example (none)'}; spatial "
        "block cross-validation "
        "as configured in each example, with an inner validation set (`[samples] validation`, "
        "spatial blocks carved out of each fold's training side) from which the networks' "
        "epoch comes; the weights of the weighted rules, the learned rules (stacking, top_k, "
        "selected) and the members' calibrators are fitted out of fold on the held-out scores "
        "of each fold's whole training side (`[ensemble] fit_on = \"out_of_fold\"`, "
        "`calibration = \"platt\"`; the averaging and learned rules combine calibrated "
        "members); the test folds are never used to choose anything. Cell-level ROC AUC: each "
        "fold's held-out labelled cells, scored by the model that did not see them; rules "
        "combine those held-out scores with the fold's own parameters. Mean +- std over "
        "folds x seeds. Seed spread: mean over cells of the std of the final P(ore) across "
        "seeds (the issue's criterion); rank spread, a diagnostic: the same of each cell's "
        "percentile rank in its map (0 to 1), which a flat map cannot make small (a map that "
        "says 0.5 everywhere has no P(ore) spread but ranks its cells at random), but which "
        "the near-ties of the many low-P(ore) cells inflate. "
        "The recommended ensemble is `weighted_average` with its weights from the inner "
        "validation cells (declared after the first full measurement, in which `stacking` had "
        "a larger seed spread than the networks); the checks are shown for it, for `stacking` "
        "and for `simple_average`. `copper_pu` and `murchison_pu` train the same data with "
        "positive-unlabelled bagging (`[labels] negatives = \"pu_bagging\"`, 10 bags of one "
        "unlabelled cell per deposit cell) instead of the examples' distance and all-cells "
        "negatives; they are scored against every non-deposit cell of the test folds, so their "
        "test sets differ from `copper`'s.",
        "",
    ]
    lines += ["## Summary", "",
              "Cell-level held-out ROC AUC (mean +- std over folds x seeds) of the recommended "
              "ensemble and of the best single member; seed spreads (ranks, then raw P(ore)) of "
              "the ensemble and of the most stable network; checks passed (see each data set).",
              "", "| data set | weighted_average | best member | rank spread (ensemble / "
              "networks' min) | P(ore) spread (ensemble / networks' min) | checks passed | "
              "ECE (uncalibrated) | #23 checks | recommended by the runs |",
              "|:---|---:|---:|---:|---:|---:|---:|---:|:---|"]
    for name, df in results.items():
        if "weighted_average" not in df.index:
            continue
        members = df.index[df["kind"] != "rule"]
        best = df.loc[members, "cell_roc_auc_mean"].idxmax()
        nets = df.index[df["kind"] == "network"]
        checks = criteria(df, "weighted_average", anchor=ANCHORS.get(name))
        passed = sum(line.startswith("- PASS") for line in checks)
        total = sum(line.startswith(("- PASS", "- FAIL")) for line in checks)
        r = df.loc["weighted_average"]
        lines.append(
            f"| {name} | {r['cell_roc_auc_mean']:.3f} +- {r['cell_roc_auc_std']:.3f} | {best} "
            f"{df.loc[best, 'cell_roc_auc_mean']:.3f} +- {df.loc[best, 'cell_roc_auc_std']:.3f}"
            f" | {_spreads(df, 'rank_spread', nets)} | {_spreads(df, 'seed_spread', nets)} | "
            f"{passed} of {total} | {_ece(df)} | {_count(few_deposit_checks(df, name))} | "
            f"{', '.join(sorted(set(infos[name].get('recommended', []))))} |")
    lines.append("")
    for other in args.compare_pretrain or []:
        lines += pretrain_comparison(results, Path(args.out), other)
    lines += raster_comparison(results)
    for name, df in results.items():
        info = infos[name]
        lines += [f"## {name}", "",
                  f"Run time per seed: {', '.join(f'{s:.0f} s' for s in info['seconds'])}.", ""]
        cols = ["kind", "cell_roc_auc_mean", "cell_roc_auc_std", "prediction_rate_auc_mean",
                "prediction_rate_auc_std", "seed_spread",
                *(["rank_spread"] if "rank_spread" in df.columns else []),
                *(["ece_raw", "ece"] if "ece" in df.columns else [])]
        if "hidden_truth_auc_mean" in df.columns:
            cols.append("hidden_truth_auc_mean")
        head = "| name | " + " | ".join(c.replace("_", " ") for c in cols) + " |"
        lines += [head, "|:---|" + "---:|" * len(cols)]
        for n, r in df.iterrows():
            vals = [str(r[c]) if c == "kind" else f"{r[c]:.3f}" for c in cols]
            lines.append(f"| {n} | " + " | ".join(vals) + " |")
        best = {k: df.loc[df["kind"] == k, "cell_roc_auc_mean"].idxmax()
                for k in ("network", "baseline", "rule") if (df["kind"] == k).any()}
        lines += ["", "Best by cell-level ROC AUC: " + "; ".join(
            f"{k} {n} ({df.loc[n, 'cell_roc_auc_mean']:.3f} +- "
            f"{df.loc[n, 'cell_roc_auc_std']:.3f})" for k, n in best.items()) + ".", ""]
        lines += few_deposit_checks(df, name)
        lines += variant_table(info)
        for rule in ("weighted_average", "stacking", "simple_average"):
            lines += criteria(df, rule, anchor=ANCHORS.get(name))
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default="murchison,murchison_greenstone,copper",
                    help=f"comma-separated, from {', '.join(DATASETS)}")
    ap.add_argument("--models", default=None, help="comma-separated networks (default: each "
                    "example's)")
    ap.add_argument("--baselines", default=None, help="comma-separated baselines")
    ap.add_argument("--augment", default=None, choices=["none", "dihedral"],
                    help="[train] augment for every data set (default: each example's)")
    ap.add_argument("--context", type=int, default=None,
                    help="[samples] context for every data set (default: each example's)")
    ap.add_argument("--pretrain", default=None, choices=["none", "masked", "contrastive"],
                    help="[train] pretrain for every data set (default: each example's)")
    ap.add_argument("--compare-pretrain", type=Path, action="append", metavar="DIR",
                    help="--out folder of the same benchmark with another --pretrain, to "
                    "compare the networks with and without pretraining (repeatable)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--lapland-data", default=str(LAPLAND_DATA), metavar="DIR",
                    help="folder with GTK's Central Lapland files (lapland data sets; default "
                    "%(default)s)")
    ap.add_argument("--out", default=str(ROOT / "runs" / "validity"))
    ap.add_argument("--doc", default=str(ROOT / "docs" / "validity.md"),
                    help="Markdown file to (re)write; '' to skip")
    ap.add_argument("--from-results", action="store_true",
                    help="rewrite the document from the results.csv and info.json of a "
                    "previous run in --out (same other options), without running anything")
    args = ap.parse_args()
    args.models = args.models.split(",") if args.models else None
    args.baselines = args.baselines.split(",") if args.baselines else None
    logging.basicConfig(level=logging.WARNING)
    results, infos = {}, {}
    for name in args.datasets.split(","):
        folder = Path(args.out) / name
        if args.from_results:
            results[name] = pd.read_csv(folder / "results.csv", index_col=0)
            infos[name] = json.loads((folder / "info.json").read_text())
            continue
        print(f"{name}: {args.seeds} seed(s)", flush=True)
        results[name], infos[name] = run_dataset(name, args)
        results[name].to_csv(folder / "results.csv")
        io.write_json(folder / "info.json", infos[name])
        with pd.option_context("display.width", 200, "display.max_columns", 20,
                               "display.precision", 3):
            print(results[name].drop(columns=["folds_x_seeds"]))
    if args.doc:
        io.write_text(args.doc, markdown(results, infos, args))
        print(f"written: {args.doc}")


if __name__ == "__main__":
    main()

"""What a run recommends: the map to trust (by held-out score, with its interval), the warnings
a geologist must read first, and the ranked targets with what drives them.

Everything here is read from a finished run folder; nothing is recomputed but intervals and
target statistics. The report's summary renders :func:`recommend`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from oremap import ensemble as en
from oremap.contract import file as F
from oremap.evaluate.intervals import bootstrap_interval, fold_interval
from oremap.labels import Label

__all__ = [
    "DRIVERS",
    "MAX_CALIBRATION_ERROR",
    "MIN_HELD_OUT_POSITIVES",
    "NEAR_CONSTANT_STD",
    "Recommendation",
    "Score",
    "calibration_error",
    "recommend",
]

#: Fewer held-out positive cells than this and the summary warns that the scores are thin.
MIN_HELD_OUT_POSITIVES = 10
#: A network whose cell probabilities vary less than this (std) has a near-constant map.
NEAR_CONSTANT_STD = 0.02
#: Evidence layers listed as drivers of each target.
DRIVERS = 3


@dataclass(frozen=True)
class Score:
    """A held-out score with its 95 % interval."""

    mean: float
    low: float
    high: float
    how: str  # e.g. "t interval over 5 folds" or "bootstrap over 64 held-out cells"

    def text(self) -> str:
        return f"{self.mean:.3f} (95 % interval {self.low:.3f} to {self.high:.3f}, {self.how})"


@dataclass
class Recommendation:
    """The answer of a run, for the first screen of its report."""

    name: str
    kind: str
    metric: str
    score: Score
    map_file: str
    reason: str
    ranking: pd.DataFrame
    warnings: list[str] = field(default_factory=list)
    targets: pd.DataFrame | None = None
    drivers: dict[str, float] = field(default_factory=dict)
    target_map: str = ""
    capture: str = ""


def _held_out_scores(run_dir: Path, name: str, table: pd.DataFrame
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Labels and held-out scores of the test cells of a single split, for member or rule."""
    rows = table.loc[table["label"].isin([0, 1]) & (table["test_fold"] >= 0)]
    members = [c[4:] for c in table.columns if c.startswith("oof_")]
    rows = rows.loc[rows[[f"oof_{m}" for m in members]].notna().all(axis=1)]
    y = rows["label"].to_numpy().astype(int)
    if name in members:
        return y, rows[f"oof_{name}"].to_numpy()

    params = en.read_params(run_dir / F("ensemble", "weights"), members)
    res = en.combine_columns(rows, members, [name], params.fold(0), threshold=0.5,
                             prefix="oof_")
    return y, res[name].probability


def recommend(run_dir: Path) -> Recommendation | None:
    """The recommended map of a run (None before the ensemble stage).

    The member or rule with the highest held-out cell ROC AUC (``ensemble/comparison.csv``;
    crop ROC AUC where cell scores are missing). Its 95 % interval: a t interval over folds
    with cross-validation, else a bootstrap over the held-out cells.
    """
    comp_path = run_dir / F("ensemble", "comparison")
    table_path = run_dir / F("ensemble", "table")
    if not comp_path.is_file() or not table_path.is_file():
        return None
    comp = pd.read_csv(comp_path, index_col=0)
    table = pd.read_csv(table_path)
    needed = {"kind", "roc_auc_mean", "roc_auc_folds", "prediction_rate_auc_mean"}
    if not needed <= set(comp.columns) or comp.empty:
        return None
    metric = "cell_roc_auc" if "cell_roc_auc_mean" in comp and \
        comp["cell_roc_auc_mean"].notna().any() else "roc_auc"
    ranked = comp.sort_values(f"{metric}_mean", ascending=False)
    name = str(ranked.index[0])
    kind = str(ranked.loc[name, "kind"])
    folds = [float(x) for x in str(ranked.loc[name, f"{metric}_folds"]).split()
             if x != "nan"]
    mean = float(ranked.loc[name, f"{metric}_mean"])
    if len(folds) >= 2:
        low, high = fold_interval(folds)
        score = Score(mean, low, high, f"t interval over {len(folds)} folds")
    else:
        y, s = _held_out_scores(run_dir, name, table)
        low, high = bootstrap_interval(y, s)
        score = Score(mean, low, high, f"bootstrap over {len(y)} held-out cells")
    what = "held-out cells" if metric == "cell_roc_auc" else "held-out crops"
    reason = (f"{name} ({'ensemble rule' if kind == 'rule' else kind}) ranks the {what} best: "
              f"ROC AUC {score.text()}")
    pra = [float(x) for x in str(ranked.loc[name].get("prediction_rate_auc_folds", "")).split()
           if x != "nan"]
    if len(pra) >= 2:
        low_p, high_p = fold_interval(pra)
        reason += (f"; prediction-rate AUC {np.mean(pra):.3f} (95 % interval {low_p:.3f} to "
                   f"{high_p:.3f})")
    if len(ranked) > 1:
        second = str(ranked.index[1])
        reason += (f"; next is {second} with {ranked.loc[second, f'{metric}_mean']:.3f}")
        if ranked.loc[second, f"{metric}_mean"] >= score.low:
            reason += ", inside that interval, so the two are not told apart by these data"
    reason += "."
    ranking = ranked[["kind", f"{metric}_mean", f"{metric}_std",
                      "prediction_rate_auc_mean"]].rename(columns={
                          f"{metric}_mean": "held-out ROC AUC", f"{metric}_std": "fold std",
                          "prediction_rate_auc_mean": "prediction-rate AUC"})
    rec = Recommendation(name=name, kind=kind, metric=metric, score=score,
                         map_file=f"maps/prob_{name}.tif", reason=reason, ranking=ranking)
    rec.warnings = _warnings(run_dir, table, comp, rec)
    rec.targets, rec.drivers = _targets(run_dir, name)
    rec.target_map = _target_map(run_dir)
    rec.capture = _capture(run_dir, name)
    return rec


def _capture(run_dir: Path, name: str) -> str:
    """'The top 10 % of the area holds ...' for the recommended map, from success_rate.csv."""
    path = run_dir / F("maps", "success_rate")
    if not path.is_file():
        return ""
    rates = pd.read_csv(path).set_index("name")
    if name not in rates.index:
        return ""
    row = rates.loc[name]
    parts = []
    held = row.get("prediction_captured_at_10pct_area", np.nan)
    if pd.notna(held):
        parts.append(f"{100 * held:.0f} % of the held-out deposit cells (prediction rate: the "
                     "figure to believe)")
    known = row.get("success_captured_at_10pct_area", np.nan)
    if pd.notna(known):
        parts.append(f"{100 * known:.0f} % of all known deposit cells (success rate: "
                     "optimistic, most were trained on)")
    return ("The top 10 % of the area on this map holds " + " and ".join(parts) + "."
            if parts else "")


def _target_map(run_dir: Path) -> str:
    """Which map the targets were drawn on, as the maps stage recorded it in run.json."""
    import json

    try:
        info = json.loads((run_dir / "run.json").read_text())
        return str(info["stages"]["maps"].get("target_map", ""))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return ""


def _warnings(run_dir: Path, table: pd.DataFrame, comp: pd.DataFrame,
              rec: Recommendation) -> list[str]:
    out = []
    held = int(((table["label"] == Label.POSITIVE) & (table["test_fold"] >= 0)).sum())
    if held < MIN_HELD_OUT_POSITIVES:
        out.append(f"Only {held} held-out positive cells: every score above rests on them, and "
                   "its interval is wide. Add known deposits or use block cross-validation "
                   "(more folds) before trusting a winner.")
    config = run_dir / "config.toml"
    if config.is_file() and 'split = "random"' in config.read_text():
        out.append("The split is random (the paper's protocol): crops of one cell sit on both "
                   "sides, so the held-out scores are optimistic.")
    if math.isfinite(rec.score.low) and rec.score.high - rec.score.low > 0.2:
        out.append(f"The interval of the recommended map is wide ({rec.score.low:.2f} to "
                   f"{rec.score.high:.2f}): its ranking of the area is uncertain.")
    nets = list(comp.index[comp["kind"] == "network"])
    flat = [m for m in nets if f"p_{m}" in table and table[f"p_{m}"].std() < NEAR_CONSTANT_STD]
    if flat:
        out.append(f"Near-constant map (P(ore) std < {NEAR_CONSTANT_STD} over cells): "
                   f"{', '.join(flat)}; such a network has not learned to rank the area.")
    errors = {m: calibration_error(table, m) for m in nets}
    bad = {m: e for m, e in errors.items() if e > MAX_CALIBRATION_ERROR}
    if bad:
        out.append("Badly calibrated (expected calibration error on held-out cells above "
                   f"{MAX_CALIBRATION_ERROR}): "
                   + ", ".join(f"{m} {e:.2f}" for m, e in bad.items())
                   + ". Their P(ore) is a ranking, not the chance of a deposit (class-weighted "
                   "training inflates it where deposits are rare): threshold by area share, "
                   "not at 0.5.")
    return out


#: Above this expected calibration error the summary warns that P(ore) is not a probability.
MAX_CALIBRATION_ERROR = 0.25


def calibration_error(table: pd.DataFrame, member: str, *, bins: int = 10) -> float:
    """Expected calibration error of ``member`` on the held-out labelled cells (``oof_``):
    the count-weighted mean gap between predicted P(ore) and the observed share of deposits
    over ``bins`` equal-width bins; NaN without held-out cells."""
    from oremap.evaluate import calibration_bins  # matplotlib: off the light import path

    col = f"oof_{member}"
    if col not in table:
        return float("nan")
    rows = table.loc[table["label"].isin([0, 1]) & table[col].notna()]
    if rows.empty:
        return float("nan")
    b = calibration_bins(rows["label"].to_numpy(), rows[col].to_numpy(), bins=bins)
    b = b.loc[b["count"] > 0]
    gap = (b["mean_predicted"] - b["observed_frequency"]).abs()
    return float((gap * b["count"]).sum() / b["count"].sum())


def _targets(run_dir: Path, name: str) -> tuple[pd.DataFrame | None, dict[str, float]]:
    """Ranked targets with a known / new ground flag and the evidence layers that drive them,
    and the importance of those layers."""
    path = run_dir / F("maps", "targets_csv")
    if not path.is_file():
        return None, {}
    t = pd.read_csv(path)
    if t.empty:
        return t, {}
    out = pd.DataFrame({
        "target": t["rank"],
        "ground": np.where(t["n_orebodies"] > 0, "known", "new ground"),
        "known deposits": t["n_orebodies"],
        "area share": t["area_share"],
        "mean P(ore)": t["mean_prob"], "max P(ore)": t["max_prob"],
        "uncertainty (std)": t["mean_uncertainty"],
    })
    drivers, importance = _drivers(run_dir, name, t)
    if drivers is not None:
        for k in range(max((len(d) for d in drivers), default=0)):
            out[f"driver {k + 1}"] = [d[k] if k < len(d) else "" for d in drivers]
    return out, importance


def _drivers(run_dir: Path, name: str,
             targets: pd.DataFrame) -> tuple[list[list[str]] | None, dict[str, float]]:
    """Per target, the :data:`DRIVERS` most important evidence layers of the recommended map
    (permutation importance, summed over members for a rule; a context channel counts for its
    layer), each with its mean value in the target as a percentile of the study area."""
    import geopandas as gpd
    import rasterio
    from rasterio.features import geometry_mask

    imp_path = run_dir / F("evaluate", "importance")
    gpkg = run_dir / F("maps", "targets")
    if not imp_path.is_file() or not gpkg.is_file():
        return None, {}
    imp = pd.read_csv(imp_path)
    if name in set(imp["member"]):
        imp = imp.loc[imp["member"] == name]
    imp = imp.assign(layer=imp["layer"].str.split("@").str[0])
    top = imp.groupby("layer")["auc_drop_mean"].sum().sort_values(ascending=False)
    top = top[top > 0].head(DRIVERS)  # a layer whose shuffling costs nothing drives nothing
    polygons = gpd.read_file(gpkg)
    if len(polygons) != len(targets):
        return None, {}
    texts = [[] for _ in range(len(polygons))]
    for layer in top.index:
        tif = run_dir / "evidence" / "layers" / f"{layer}.tif"
        if not tif.is_file():
            continue
        with rasterio.open(tif) as src:
            factor = max(1, int(math.ceil(math.sqrt(src.width * src.height / 4e6))))
            shape = (max(1, src.height // factor), max(1, src.width // factor))
            values = src.read(1, out_shape=shape, masked=True).astype(float).filled(np.nan)
            transform = src.transform * src.transform.scale(src.width / shape[1],
                                                            src.height / shape[0])
        valid = np.sort(values[np.isfinite(values)])
        if valid.size == 0:
            continue
        for i, geom in enumerate(polygons.geometry):
            inside = ~geometry_mask([geom], out_shape=shape, transform=transform,
                                    all_touched=True)
            v = values[inside & np.isfinite(values)]
            if v.size:
                pct = 100.0 * np.searchsorted(valid, v.mean()) / valid.size
                texts[i].append(f"{layer} (percentile {pct:.0f})")
    return texts, {str(k): float(v) for k, v in top.items()}

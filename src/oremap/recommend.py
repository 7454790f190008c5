"""What a run recommends: the map to trust (by held-out score, with its interval), the warnings
a geologist must read first, and the ranked targets with what drives them.

Everything here is read from a finished run folder; nothing is recomputed but intervals and
target statistics. The report's summary renders :func:`recommend`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from oremap import ensemble as en
from oremap import io
from oremap.contract import file as F
from oremap.evaluate.intervals import (
    bootstrap_interval,
    fold_interval,
    paired_bootstrap_difference,
    paired_fold_difference,
)
from oremap.evaluate.metrics import expected_calibration_error
from oremap.labels import Label
from oremap.names import CALIBRATED_RULES

__all__ = [
    "DEFAULT_RULE",
    "DRIVERS",
    "DRIVER_CANDIDATES",
    "MAX_CALIBRATION_ERROR",
    "MIN_HELD_OUT_POSITIVES",
    "NEAR_CONSTANT_STD",
    "Choice",
    "Recommendation",
    "Score",
    "CALIBRATED_ECE",
    "calibration_error",
    "choose",
    "read_choice",
    "recommend",
    "recommended_name",
    "write_choice",
]

#: Fewer held-out positive cells than this and the summary warns that the scores are thin.
MIN_HELD_OUT_POSITIVES = 10
#: A network whose cell probabilities vary less than this (std) has a near-constant map.
NEAR_CONSTANT_STD = 0.02
#: Evidence layers listed as drivers of each target.
DRIVERS = 3
#: The ensemble rule recommended when maps tie (the default of ``[maps] target_rule``).
DEFAULT_RULE = "weighted_average"


@dataclass(frozen=True)
class Score:
    """A held-out score with its 95 % interval."""

    mean: float
    low: float
    high: float
    how: str  # e.g. "t interval over 5 folds" or "bootstrap over 64 held-out cells"

    @property
    def degenerate(self) -> bool:
        """True when the interval has no width (every fold or resample scored the same):
        that is too few held-out cells, not certainty."""
        return not (math.isfinite(self.low) and math.isfinite(self.high)) \
            or self.high - self.low < 1e-9

    def text(self) -> str:
        if self.degenerate:
            return (f"{self.mean:.3f} (no interval: every resample scores the same, "
                    f"{self.how}; too few held-out cells to measure its uncertainty)")
        return f"{self.mean:.3f} (95 % interval {self.low:.3f} to {self.high:.3f}, {self.how})"


@dataclass(frozen=True)
class Choice:
    """Which map a run recommends and why: the best by held-out score, unless paired
    comparisons cannot tell it from others; then the stated default ensemble rule."""

    name: str
    kind: str
    metric: str
    best: str
    tied: tuple[str, ...]
    default: str
    paired: str  # "folds" (t interval of paired fold differences) or "cells" (bootstrap)
    validation_positives: int | None = None

    @property
    def because_of_tie(self) -> bool:
        return bool(self.tied) and self.name != self.best

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "kind": self.kind, "metric": self.metric,
                "best": self.best, "tied": list(self.tied), "default": self.default,
                "paired": self.paired, "validation_positives": self.validation_positives}


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
    choice: Choice | None = None


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


def _folds(row: pd.Series, metric: str) -> list[float]:
    return [float(x) for x in str(row.get(f"{metric}_folds", "")).split()]


def _metric(comp: pd.DataFrame) -> str:
    return "cell_roc_auc" if "cell_roc_auc_mean" in comp and \
        comp["cell_roc_auc_mean"].notna().any() else "roc_auc"


def _validation_positives(run_dir: Path) -> int | None:
    """The fewest positive cells any fold's inner validation split holds (None without one)."""
    try:
        manifest = json.loads((run_dir / F("samples", "manifest")).read_text())
        counts = manifest.get("validation_counts") or []
        return min(int(c["positive_cells"]) for c in counts) if counts else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def choose(run_dir: Path, default: str = DEFAULT_RULE) -> Choice | None:
    """The map a run recommends (None before the ensemble stage).

    The member or rule with the highest held-out cell ROC AUC (``ensemble/comparison.csv``;
    crop ROC AUC where cell scores are missing) is compared with every other on the same
    held-out data: a 95 % t interval of the paired per-fold differences with cross-validation,
    else a paired bootstrap over the held-out cells. Those whose difference from the best is
    not above zero are tied with it. With no tie the best is recommended; with ties, the stated
    ``default`` ensemble rule (``[maps] target_rule``) when it is among the tied, else the
    best-scoring rule among them, else the best.
    """
    comp_path = run_dir / F("ensemble", "comparison")
    table_path = run_dir / F("ensemble", "table")
    if not comp_path.is_file() or not table_path.is_file():
        return None
    comp = pd.read_csv(comp_path, index_col=0)
    if comp.empty or "kind" not in comp or "roc_auc_mean" not in comp:
        return None
    metric = _metric(comp)
    ranked = comp.loc[comp[f"{metric}_mean"].notna()].sort_values(
        f"{metric}_mean", ascending=False, kind="stable")
    if ranked.empty:
        return None
    best = str(ranked.index[0])
    folds = {str(n): _folds(r, metric) for n, r in ranked.iterrows()}
    n_folds = sum(math.isfinite(x) for x in folds[best])
    tied: list[str] = []
    if n_folds >= 2:
        paired = "folds"
        for other in ranked.index[1:]:
            _, low, _ = paired_fold_difference(folds[best], folds[str(other)])
            if not math.isfinite(low) or low <= 0:
                tied.append(str(other))
    else:
        paired = "cells"
        table = pd.read_csv(table_path)
        y, s_best = _held_out_scores(run_dir, best, table)
        for other in ranked.index[1:]:
            _, s_other = _held_out_scores(run_dir, str(other), table)
            _, low, _ = paired_bootstrap_difference(y, s_best, s_other)
            if not math.isfinite(low) or low <= 0:
                tied.append(str(other))
    name = best
    if tied:
        rules = [n for n in [best, *tied] if ranked.loc[n, "kind"] == "rule"]
        name = default if default in [best, *tied] else (rules[0] if rules else best)
    return Choice(name=name, kind=str(ranked.loc[name, "kind"]), metric=metric, best=best,
                  tied=tuple(tied), default=default, paired=paired,
                  validation_positives=_validation_positives(run_dir))


def write_choice(run_dir: Path, choice: Choice) -> Path:
    """Write ``maps/recommendation.json``: the map the targets, the report and QGIS share."""
    return io.write_text(run_dir / F("maps", "recommendation"),
                         json.dumps(choice.to_json(), indent=2) + "\n")


def read_choice(run_dir: Path) -> Choice | None:
    """The choice the maps stage recorded (None before it ran)."""
    try:
        d = json.loads((run_dir / F("maps", "recommendation")).read_text())
        return Choice(name=str(d["name"]), kind=str(d["kind"]), metric=str(d["metric"]),
                      best=str(d["best"]), tied=tuple(d["tied"]), default=str(d["default"]),
                      paired=str(d["paired"]), validation_positives=d.get(
                          "validation_positives"))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def recommended_name(run_dir: Path) -> str | None:
    """The recommended member or rule of a run: the maps stage's record, else chosen now."""
    choice = read_choice(run_dir) or choose(run_dir)
    return choice.name if choice else None


def _score_of(run_dir: Path, comp: pd.DataFrame, name: str, metric: str) -> Score:
    folds = [x for x in _folds(comp.loc[name], metric) if math.isfinite(x)]
    mean = float(comp.loc[name, f"{metric}_mean"])
    if len(folds) >= 2:
        low, high = fold_interval(folds)
        return Score(mean, low, high, f"t interval over {len(folds)} folds")
    y, s = _held_out_scores(run_dir, name, pd.read_csv(run_dir / F("ensemble", "table")))
    low, high = bootstrap_interval(y, s)
    return Score(mean, low, high, f"bootstrap over {len(y)} held-out cells")


def _reason(choice: Choice, comp: pd.DataFrame, score: Score) -> str:
    what = "held-out cells" if choice.metric == "cell_roc_auc" else "held-out crops"
    over = ("the same folds (95 % t interval of the paired differences)"
            if choice.paired == "folds" else
            f"the same {what} (paired bootstrap)")
    kind = "ensemble rule" if choice.kind == "rule" else choice.kind
    best_score = float(comp.loc[choice.best, f"{choice.metric}_mean"])
    if not choice.tied:
        return (f"{choice.name} ({kind}) ranks the {what} best, ROC AUC {score.text()}, and "
                f"better than every other map in a paired comparison over {over}.")
    n = len(choice.tied) + 1
    text = (f"{n} of {len(comp)} maps tie with the best held-out ROC AUC "
            f"({choice.best}, {best_score:.3f}): a paired comparison over {over} cannot tell "
            "them apart, so no single member is singled out. ")
    if choice.name == choice.default:
        text += (f"oremap recommends its stated default, the ensemble rule {choice.name} "
                 "([maps] target_rule), which is among them")
    elif choice.name != choice.best:
        text += (f"The default {choice.default} is not among them; the best-scoring ensemble "
                 f"rule that is, {choice.name}, is recommended")
    else:
        text += f"No ensemble rule is among them; {choice.name} is recommended"
    return text + f": ROC AUC {score.text()}."


def _parameters_sentence(run_dir: Path, name: str) -> str:
    """What the reader should know of the recommended rule's weights and calibration: equal
    weights when the members could not be told apart, and its held-out calibration error."""
    text = ""
    try:
        weights = json.loads((run_dir / F("ensemble", "weights")).read_text())
    except (OSError, ValueError):
        weights = {}
    if name in ("weighted_average", "weighted_voting") and weights.get("shrinkage") == 0:
        text += (" The members cannot be told apart on the held-out cells the weights were "
                 f"fitted on, so its weights are equal: {name} is the "
                 f"{'simple average' if name == 'weighted_average' else 'plain vote'}.")
    path = run_dir / F("ensemble", "calibration")
    if name in CALIBRATED_RULES and path.is_file():
        cal = pd.read_csv(path, index_col=0)
        if name in cal.index and cal.loc[name, "calibration"] != "none" and \
                math.isfinite(float(cal.loc[name, "ece"])):
            r = cal.loc[name]
            text += (f" It combines calibrated members: on the held-out cells its P(ore) "
                     f"averages {r['mean_p']:.3f} where {r['ore_share']:.1%} of the cells hold "
                     f"ore, expected calibration error {r['ece']:.3f} ({r['ece_raw']:.3f} "
                     "uncalibrated)")
            text += (", so a P(ore) of 0.3 means about 30 % of such cells hold ore."
                     if float(r["ece"]) <= CALIBRATED_ECE else
                     ", still too far off to read P(ore) as a chance: rank by it.")
    return text


def recommend(run_dir: Path) -> Recommendation | None:
    """The recommended map of a run (None before the ensemble stage): the maps stage's
    :class:`Choice` (:func:`choose` when the maps stage has not run), its held-out score with a
    95 % interval (a t interval over folds with cross-validation, else a bootstrap over the
    held-out cells), the warnings to read first and the ranked targets with their drivers."""
    comp_path = run_dir / F("ensemble", "comparison")
    table_path = run_dir / F("ensemble", "table")
    if not comp_path.is_file() or not table_path.is_file():
        return None
    comp = pd.read_csv(comp_path, index_col=0)
    needed = {"kind", "roc_auc_mean", "roc_auc_folds", "prediction_rate_auc_mean"}
    if not needed <= set(comp.columns) or comp.empty:
        return None
    choice = read_choice(run_dir) or choose(run_dir)
    if choice is None or choice.name not in comp.index:
        return None
    table = pd.read_csv(table_path)
    metric, name = choice.metric, choice.name
    score = _score_of(run_dir, comp, name, metric)
    reason = _reason(choice, comp, score)
    pra = [x for x in _folds(comp.loc[name], "prediction_rate_auc") if math.isfinite(x)]
    if len(pra) >= 2:
        low_p, high_p = fold_interval(pra)
        reason += (f" Prediction-rate AUC {np.mean(pra):.3f} (95 % interval {low_p:.3f} to "
                   f"{high_p:.3f}).")
    reason += _parameters_sentence(run_dir, name)
    ranked = comp.sort_values(f"{metric}_mean", ascending=False, kind="stable")
    ranking = ranked[["kind", f"{metric}_mean", f"{metric}_std",
                      "prediction_rate_auc_mean"]].rename(columns={
                          f"{metric}_mean": "held-out ROC AUC", f"{metric}_std": "fold std",
                          "prediction_rate_auc_mean": "prediction-rate AUC"})
    ranking.insert(1, "tied with the best", [n == choice.best or n in choice.tied
                                             for n in ranking.index])
    rec = Recommendation(name=name, kind=choice.kind, metric=metric, score=score,
                         map_file=f"maps/prob_{name}.tif", reason=reason, ranking=ranking,
                         choice=choice)
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
        out.append(f"Only {held} held-out positive cells: every score above rests on them. "
                   "Add known deposits or use block cross-validation (more folds) before "
                   "trusting a winner.")
    val = rec.choice.validation_positives if rec.choice else None
    if val is not None and val < MIN_HELD_OUT_POSITIVES:
        out.append(f"The inner validation split holds only {val} positive cells (the fewest of "
                   "any fold): the epochs, ensemble weights and learned rules chosen on it rest "
                   "on them and are mostly noise.")
    config = run_dir / "config.toml"
    if config.is_file() and 'split = "random"' in config.read_text():
        out.append("The split is random (the paper's protocol): crops of one cell sit on both "
                   "sides, so the held-out scores are optimistic.")
    if not rec.score.degenerate and rec.score.high - rec.score.low > 0.2:
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


#: Up to this expected calibration error the summary reads a calibrated P(ore) as a chance.
CALIBRATED_ECE = 0.10
#: Above this expected calibration error the summary warns that P(ore) is not a probability.
MAX_CALIBRATION_ERROR = 0.25


def calibration_error(table: pd.DataFrame, member: str, *, bins: int = 10) -> float:
    """Expected calibration error of ``member`` on the held-out labelled cells (``oof_``):
    the count-weighted mean gap between predicted P(ore) and the observed share of deposits
    over ``bins`` equal-width bins; NaN without held-out cells."""
    col = f"oof_{member}"
    if col not in table:
        return float("nan")
    rows = table.loc[table["label"].isin([0, 1]) & table[col].notna()]
    if rows.empty:
        return float("nan")
    return expected_calibration_error(rows["label"].to_numpy(), rows[col].to_numpy(), bins=bins)


def _coordinate(v: float, geographic: bool) -> float:
    return round(float(v), 5 if geographic else 0)


def _targets(run_dir: Path, name: str) -> tuple[pd.DataFrame | None, dict[str, float]]:
    """The ranked targets for the first screen (label, centroid, area, scores, new and known
    ground, drivers), and the importance of the layers considered as drivers."""
    path = run_dir / F("maps", "targets_csv")
    if not path.is_file():
        return None, {}
    t = pd.read_csv(path)
    if t.empty:
        return t, {}
    geographic = bool(t.get("centroid_x", pd.Series([0.0])).abs().max() <= 180
                      and t.get("centroid_y", pd.Series([0.0])).abs().max() <= 90)
    new_ha = t["new_area_ha"] if "new_area_ha" in t else pd.Series(np.nan, index=t.index)
    known_ha = t["known_area_ha"] if "known_area_ha" in t else pd.Series(np.nan, index=t.index)
    ground = np.where(known_ha.fillna(0) <= 0, "new",
                      np.where(new_ha.fillna(0) <= 0, "known", "new and known"))
    out = pd.DataFrame({"target": t["label"] if "label" in t else t["rank"]})
    if "centroid_x" in t:
        out["x"] = [_coordinate(v, geographic) for v in t["centroid_x"]]
        out["y"] = [_coordinate(v, geographic) for v in t["centroid_y"]]
    if "area_ha" in t:
        out["area (ha)"] = t["area_ha"].round(2)
    if "area_pct_of_study_area" in t:
        out["% of study area"] = t["area_pct_of_study_area"].round(2)
    out["ground"] = ground
    if "new_area_ha" in t:
        out["new ground (ha)"] = new_ha.round(2)
    out["known deposits"] = t["n_orebodies"].astype(int)
    out["mean P(ore)"] = t["mean_prob"].round(3)
    out["max P(ore)"] = t["max_prob"].round(3)
    if "max_pct" in t:
        out["top % of area"] = (100.0 - t["max_pct"]).clip(lower=0).round(1)
    drivers, importance = _drivers(run_dir, name, t)
    if drivers is not None:
        out["drivers"] = [", ".join(d) for d in drivers]
    return out, importance


#: Layers considered as drivers: the most important ones of the recommended map.
DRIVER_CANDIDATES = 8


def _drivers(run_dir: Path, name: str,
             targets: pd.DataFrame) -> tuple[list[list[str]] | None, dict[str, float]]:
    """Per target, the :data:`DRIVERS` evidence layers that most set it apart: among the
    :data:`DRIVER_CANDIDATES` layers with the largest permutation importance for the
    recommended map (the mean over members for a rule; a layer's context channels add up),
    those whose mean in the target lies furthest from the study area's median, weighted by
    importance. Each reads "layer high (percentile 97)" or "layer low (percentile 3)", so two
    targets on different evidence get different drivers."""
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
    # a layer's context channels add up within a member; a rule averages its members
    per_member = imp.groupby(["member", "layer"])["auc_drop_mean"].sum()
    top = per_member.groupby("layer").mean().sort_values(ascending=False)
    top = top[top > 0].head(DRIVER_CANDIDATES)  # shuffling it costs nothing: drives nothing
    polygons = gpd.read_file(gpkg)
    if len(polygons) != len(targets):
        return None, {}
    scored: list[list[tuple[float, str]]] = [[] for _ in range(len(polygons))]
    for layer, weight in top.items():
        tif = run_dir / "evidence" / "layers" / f"{layer}.tif"
        if not tif.is_file():
            continue
        with rasterio.open(tif) as src:
            factor = max(1, int(math.ceil(math.sqrt(src.width * src.height / 4e6))))
            shape = (max(1, src.height // factor), max(1, src.width // factor))
            values = src.read(1, out_shape=shape, masked=True).astype(float).filled(np.nan)
            t, sx, sy = src.transform, src.width / shape[1], src.height / shape[0]
            transform = type(t)(t.a * sx, t.b * sy, t.c, t.d * sx, t.e * sy, t.f)
        valid = np.sort(values[np.isfinite(values)])
        if valid.size == 0:
            continue
        for i, geom in enumerate(polygons.geometry):
            inside = ~geometry_mask([geom], out_shape=shape, transform=transform,
                                    all_touched=True)
            v = values[inside & np.isfinite(values)]
            if v.size:
                pct = 100.0 * np.searchsorted(valid, v.mean()) / valid.size
                side = "high" if pct >= 50 else "low"
                scored[i].append((float(weight) * abs(pct - 50.0),
                                  f"{layer} {side} (percentile {pct:.0f})"))
    texts = [[t for _, t in sorted(s, key=lambda x: -x[0])[:DRIVERS]] for s in scored]
    return texts, {str(k): float(v) for k, v in top.items()}

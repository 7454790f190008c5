"""Stability statistics: spread of Table 2 counts across models and rules, and across seeds."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from oremap.ensemble.params import RuleParams, combine_columns
from oremap.ensemble.rules import _check_probs, _threshold_classes
from oremap.ensemble.tables import prediction_counts
from oremap.errors import InputDataError
from oremap.labels import Label
from oremap.names import member_kind

__all__ = [
    "dispersion",
    "stability_table",
    "seed_variability",
    "seed_variability_table",
    "seed_stability_table",
]


def dispersion(values: Sequence[float] | np.ndarray) -> dict[str, float]:
    """Spread of a set of values (e.g. one count across models).

    Parameters
    ----------
    values : (n,) float array
        Finite values, n >= 1.

    Returns
    -------
    dict
        ``n``; ``mean``; ``std_sample`` = sqrt(sum (x - mean)^2 / (n - 1)), NaN when n = 1;
        ``mean_abs_dev`` = mean |x - mean|; ``coef_variation`` = std_sample / mean, NaN when
        the mean is 0.

    Raises
    ------
    InputDataError
        If ``values`` is empty, not 1-D or not finite.
    """
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1 or x.size == 0 or not np.all(np.isfinite(x)):
        raise InputDataError(
            f"dispersion needs a non-empty 1-D array of finite values; got shape {x.shape}."
        )
    mean = float(x.mean())
    std = float(x.std(ddof=1)) if x.size > 1 else float("nan")
    return {
        "n": int(x.size),
        "mean": mean,
        "std_sample": std,
        "mean_abs_dev": float(np.mean(np.abs(x - mean))),
        "coef_variation": std / mean if mean != 0 else float("nan"),
    }


def stability_table(table2_models: pd.DataFrame, table2_rules: pd.DataFrame) -> pd.DataFrame:
    """Dispersion of each Table 2 count across the single models and across the rules.

    A smaller spread across rules than across models means the ensemble conclusions depend
    less on which model was chosen.

    Parameters
    ----------
    table2_models, table2_rules : DataFrame
        :func:`table2` outputs for the single models and for the ensemble rules.

    Returns
    -------
    DataFrame
        MultiIndex (``group`` in {"models", "rules"}, ``count`` in the table's columns);
        columns ``n``, ``mean``, ``std_sample``, ``mean_abs_dev``, ``coef_variation``.

    Raises
    ------
    InputDataError
        If the two tables have different columns or either is empty.
    """
    if list(table2_models.columns) != list(table2_rules.columns):
        raise InputDataError(
            f"table2_models has columns {list(table2_models.columns)} but table2_rules has "
            f"{list(table2_rules.columns)}; build both with table2()."
        )
    rows = {}
    for group, table in (("models", table2_models), ("rules", table2_rules)):
        if table.empty:
            raise InputDataError(f"the {group} table is empty; pass at least one row.")
        for column in table.columns:
            rows[(group, column)] = dispersion(table[column].to_numpy())
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index = pd.MultiIndex.from_tuples(out.index, names=["group", "count"])
    return out


def seed_variability(
    preds_by_seed: np.ndarray,
    *,
    threshold: float = 0.5,
    predictions: np.ndarray | None = None,
) -> dict[str, object]:
    """How much a model's (or rule's) map changes when it is retrained with other seeds.

    The class of a cell in one seed is ``prediction`` when ``predictions`` is given (use
    this for voting rules, so that :data:`UNDECIDED` is its own class), else
    ``P(ore) >= threshold``. The flip rate of a cell is the share of seed pairs that give
    it different classes: with ``k_c`` seeds in class ``c`` out of ``m``,
    ``(m(m-1)/2 - sum_c k_c(k_c-1)/2) / (m(m-1)/2)``.

    Parameters
    ----------
    preds_by_seed : (n_seeds, n_cells) float array
        P(ore) (or vote share) per seed and cell, in [0, 1]; n_seeds >= 2.
    threshold : float
        Decision threshold, used when ``predictions`` is None.
    predictions : (n_seeds, n_cells) int array or None
        Classes per seed and cell (1, 0 or UNDECIDED).

    Returns
    -------
    dict
        ``n_seeds``; ``cell_prob_std_sample`` (n_cells,) sample std (ddof=1) of the
        probability across seeds; ``cell_flip_rate`` (n_cells,); ``mean_prob_std_sample``
        and ``mean_flip_rate`` (their means over cells); ``ore_counts`` (n_seeds,) cells of
        class ore per seed; ``ore_count_std_sample``, ``ore_count_min``, ``ore_count_max``.

    Raises
    ------
    InputDataError
        If fewer than two seeds, bad shapes or values outside [0, 1].
    """
    p = _check_probs(preds_by_seed)
    if p.shape[0] < 2:
        raise InputDataError(
            f"seed_variability needs >= 2 seeds (rows); got {p.shape[0]}. "
            "Retrain with several seeds first."
        )
    if predictions is None:
        classes = _threshold_classes(p, threshold)
    else:
        classes = np.asarray(predictions)
        if classes.shape != p.shape:
            raise InputDataError(
                f"predictions has shape {classes.shape} but preds_by_seed has {p.shape}."
            )
    m = p.shape[0]
    pairs = m * (m - 1) / 2.0
    same = sum(
        (k * (k - 1) / 2.0)
        for k in (np.sum(classes == c, axis=0) for c in np.unique(classes))
    )
    flip = (pairs - same) / pairs
    cell_std = p.std(axis=0, ddof=1)
    ore_counts = np.sum(classes == Label.POSITIVE, axis=1).astype(np.int64)
    return {
        "n_seeds": m,
        "cell_prob_std_sample": cell_std,
        "cell_flip_rate": flip,
        "mean_prob_std_sample": float(cell_std.mean()),
        "mean_flip_rate": float(flip.mean()),
        "ore_counts": ore_counts,
        "ore_count_std_sample": float(ore_counts.std(ddof=1)),
        "ore_count_min": int(ore_counts.min()),
        "ore_count_max": int(ore_counts.max()),
    }


def seed_variability_table(
    preds_by_name: Mapping[str, np.ndarray | tuple[np.ndarray, np.ndarray]],
    *,
    threshold: float = 0.5,
) -> pd.DataFrame:
    """Scalar :func:`seed_variability` statistics of several models or rules, one row each.

    Parameters
    ----------
    preds_by_name : dict of str -> (n_seeds, n_cells) float array, or a pair of them
        Name -> P(ore) per seed and cell. For voting rules pass a tuple
        ``(probability, prediction)`` of (n_seeds, n_cells) arrays (see ``predictions`` in
        :func:`seed_variability`).
    threshold : float

    Returns
    -------
    DataFrame
        Index ``model``; columns ``n_seeds``, ``mean_prob_std_sample``, ``mean_flip_rate``,
        ``ore_count_std_sample``, ``ore_count_min``, ``ore_count_max``.

    Raises
    ------
    InputDataError
        If ``preds_by_name`` is empty or an entry is invalid.
    """
    if not preds_by_name:
        raise InputDataError("seed_variability_table got no entries; pass {name: array}.")
    keys = ("n_seeds", "mean_prob_std_sample", "mean_flip_rate", "ore_count_std_sample",
            "ore_count_min", "ore_count_max")
    rows = {}
    for name, value in preds_by_name.items():
        if isinstance(value, tuple):
            stats = seed_variability(value[0], threshold=threshold, predictions=value[1])
        else:
            stats = seed_variability(value, threshold=threshold)
        rows[name] = {k: stats[k] for k in keys}
    df = pd.DataFrame.from_dict(rows, orient="index")[list(keys)]
    df.index.name = "model"
    return df


def seed_stability_table(tables: Sequence[pd.DataFrame], members: Sequence[str],
                         rules: Sequence[str], params: RuleParams | np.ndarray, *,
                         threshold: float) -> pd.DataFrame:
    """How much members and rules vary across retraining seeds, one row per name.

    ``tables`` are the cell tables (``p_<member>`` columns, ``label``) of the same cells, one
    per seed. Per member and rule: the mean over cells of the sample std of P(ore) across
    seeds, the mean flip rate (voting rules count refusals as their own class), and the mean
    and sample std of each Table 2 count across seeds.
    """
    probs: dict[str, list[np.ndarray]] = {}
    classes: dict[str, list[np.ndarray]] = {}
    for table in tables:
        for m in members:
            probs.setdefault(m, []).append(table[f"p_{m}"].to_numpy())
            classes.setdefault(m, []).append((probs[m][-1] >= threshold).astype(int))
        for rule, res in combine_columns(table, members, rules, params,
                                         threshold=threshold).items():
            probs.setdefault(rule, []).append(res.probability)
            classes.setdefault(rule, []).append(res.prediction)
    labels = tables[-1]["label"].to_numpy()
    rows = []
    for name in probs:
        v = seed_variability(np.vstack(probs[name]), threshold=threshold,
                             predictions=np.vstack(classes[name]))
        counts = pd.DataFrame([prediction_counts(c, labels) for c in classes[name]])
        row = dict(name=name, kind=member_kind(name), seeds=len(tables),
                   mean_prob_std_sample=v["mean_prob_std_sample"],
                   mean_flip_rate=v["mean_flip_rate"])
        for col in counts.columns:
            row[f"{col}_mean"] = float(counts[col].mean())
            row[f"{col}_std_sample"] = float(counts[col].std(ddof=1))
        rows.append(row)
    return pd.DataFrame(rows)

"""Weights of evidence on unit cells (Bonham-Carter 1994), as ArcSDM reports them.

The classifier behind the ``woe`` baseline (:mod:`oremap.baselines`): each labelled training
cell counts once (a unit cell), whatever the number of crops cut from it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.special import ndtr
from sklearn.base import BaseEstimator, ClassifierMixin

from oremap.errors import ConfigError, InputDataError

__all__ = [
    "BINARISATION_RULE",
    "WOE_COLUMNS",
    "WeightsOfEvidence",
    "check_labels",
    "unit_cells",
    "woe_contrast",
]

#: Columns of :meth:`WeightsOfEvidence.table` (and :meth:`oremap.baselines.WoeBaseline.woe_table`).
WOE_COLUMNS: tuple[str, ...] = (
    "layer",
    "direction",
    "pattern",
    "cutoff",
    "layer_min",
    "layer_max",
    "W+",
    "s(W+)",
    "W-",
    "s(W-)",
    "C",
    "s(C)",
    "Stud(C)",
    "confidence",
    "used",
    "deposit_cells_in",
    "cells_in",
    "deposit_cells_out",
    "cells_out",
    "haldane",
)

#: How each layer is binarised (stated in the docs and the report).
BINARISATION_RULE = ("the observed cell value, in either direction, that maximises the "
                     "studentised contrast Stud(C) = C / s(C)")

_COUNTS = ("deposit_cells_in", "cells_in", "deposit_cells_out", "cells_out")


def check_labels(y: np.ndarray, n: int) -> np.ndarray:
    """``y`` as (n,) int64 labels in {0, 1} with both classes present.

    Raises
    ------
    InputDataError
        If ``y`` is not (n,), holds other values than 0/1 (or bool), or only one class.
    """
    y = np.asarray(y)
    if y.ndim != 1 or y.shape[0] != n:
        raise InputDataError(
            f"y has shape {y.shape} but X has {n} samples; give one label per crop, shape ({n},)."
        )
    if y.dtype == bool:
        y = y.astype(np.int64)
    values = np.unique(y)
    if not np.isin(values, (0, 1)).all():
        raise InputDataError(
            f"y holds values {values.tolist()}; expected 1 (ore) and 0 (barren). Drop unknown "
            "(-1) cells before fitting."
        )
    if values.size < 2:
        raise InputDataError(
            f"y holds only class {int(values[0])} ({n} samples); a baseline needs both ore (1) "
            "and barren (0) samples in the training set."
        )
    return y.astype(np.int64)


def woe_contrast(
    n_b_d: np.ndarray, n_b_notd: np.ndarray, n_notb_d: np.ndarray, n_notb_notd: np.ndarray
) -> dict[str, np.ndarray]:
    """Weights of evidence of binary patterns from their 2x2 unit-cell counts (Bonham-Carter
    1994, ch. 9).

    With B the pattern present and D a deposit (ore) cell:
    ``W+ = ln(P(B|D) / P(B|~D))``, ``s(W+) = sqrt(1/N(B∩D) + 1/N(B∩~D))``,
    ``W- = ln(P(~B|D) / P(~B|~D))``, ``s(W-) = sqrt(1/N(~B∩D) + 1/N(~B∩~D))``,
    ``C = W+ - W-``, ``s(C) = sqrt(s(W+)**2 + s(W-)**2)``, ``Stud(C) = C / s(C)`` and
    ``confidence = Phi(Stud(C))``, the one-sided normal confidence that ``C > 0`` (ArcSDM's
    confidence of the contrast; 1.645 -> 0.95). Conditional probabilities are count ratios,
    e.g. ``P(B|D) = N(B∩D) / (N(B∩D) + N(~B∩D))``.

    Zero counts (Haldane correction): where any of the four counts of a table is 0, 0.5 is added
    to all four counts of that table before computing everything, so the weights and their
    standard deviations stay finite (ArcSDM instead leaves such a class undefined). Each
    corrected zero adds 2 to ``s(C)**2``, so a perfectly separating cut-off (two zero cells) can
    score a lower studentised contrast than a nearly perfect one.

    Parameters
    ----------
    n_b_d, n_b_notd, n_notb_d, n_notb_notd : array_like of float, same shape
        Counts of unit cells N(B∩D), N(B∩~D), N(~B∩D), N(~B∩~D), each >= 0.

    Returns
    -------
    dict of arrays, each of the broadcast shape
        ``"W+"``, ``"s(W+)"``, ``"W-"``, ``"s(W-)"``, ``"C"``, ``"s(C)"``, ``"Stud(C)"``,
        ``"confidence"``, and ``"haldane"`` (bool, where the correction was applied).
    """
    counts = np.broadcast_arrays(
        *(np.asarray(c, dtype=np.float64) for c in (n_b_d, n_b_notd, n_notb_d, n_notb_notd))
    )
    a, b, c, d = (np.array(x, dtype=np.float64) for x in counts)
    haldane = (a == 0) | (b == 0) | (c == 0) | (d == 0)
    a, b, c, d = (np.where(haldane, x + 0.5, x) for x in (a, b, c, d))
    w_plus = np.log((a / (a + c)) / (b / (b + d)))
    w_minus = np.log((c / (a + c)) / (d / (b + d)))
    s_plus = np.sqrt(1.0 / a + 1.0 / b)
    s_minus = np.sqrt(1.0 / c + 1.0 / d)
    contrast = w_plus - w_minus
    s_c = np.sqrt(s_plus**2 + s_minus**2)
    stud = contrast / s_c
    return {
        "W+": w_plus,
        "s(W+)": s_plus,
        "W-": w_minus,
        "s(W-)": s_minus,
        "C": contrast,
        "s(C)": s_c,
        "Stud(C)": stud,
        "confidence": ndtr(stud),
        "haldane": haldane,
    }


def unit_cells(F: np.ndarray, y: np.ndarray, cells: np.ndarray,
               centre: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One row per cell from per-crop features: the cell's own value of each feature.

    A cell's value is its centred crop's (``centre`` True; the first one if repeated), the crop
    the maps score the cell by; a cell none of whose rows is centred (e.g. its centred crop is
    on the test side of a random crop split) takes the mean over its *distinct* rows. Repeated
    crops of a cell therefore never change its value.

    Parameters
    ----------
    F : (n, p) float array
    y : (n,) int array of {0, 1}
    cells : (n,) array
        Cell id of each row.
    centre : (n,) bool array or None
        True for a cell's centred crop; None: no row is centred.

    Returns
    -------
    features : (k, p) float64, labels : (k,) int64, ids : (k,) the cell ids, ascending

    Raises
    ------
    InputDataError
        If ``cells`` or ``centre`` is not (n,), or a cell's rows carry different labels.
    """
    F = np.asarray(F, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    n = F.shape[0]
    cells = np.asarray(cells)
    if cells.shape != (n,):
        raise InputDataError(f"cells has shape {cells.shape}; give one cell id per crop, ({n},).")
    ids, inv = np.unique(cells, return_inverse=True)
    k = ids.size
    lo, hi = np.full(k, 2, dtype=np.int64), np.full(k, -1, dtype=np.int64)
    np.minimum.at(lo, inv, y)
    np.maximum.at(hi, inv, y)
    if (lo != hi).any():
        bad = ids[lo != hi][:5].tolist()
        raise InputDataError(f"cells {bad} hold crops of both labels; a cell has one label.")
    rows = np.unique(np.column_stack([inv.astype(np.float64), F]), axis=0)  # distinct crops
    cell_of = rows[:, 0].astype(np.int64)
    sums = np.zeros((k, F.shape[1]))
    np.add.at(sums, cell_of, rows[:, 1:])
    values = sums / np.bincount(cell_of, minlength=k)[:, None]
    if centre is not None:
        centre = np.asarray(centre, dtype=bool)
        if centre.shape != (n,):
            raise InputDataError(f"centre has shape {centre.shape}; expected ({n},) flags.")
        pick = np.full(k, n, dtype=np.int64)
        np.minimum.at(pick, inv[centre], np.flatnonzero(centre))
        has = pick < n
        values[has] = F[pick[has]]
    return values, lo, ids


def _candidate_cutoffs(x: np.ndarray, n_cutoffs: int) -> np.ndarray:
    """Observed values t with both ``x > t`` and ``x <= t`` non-empty: every distinct value
    below the maximum when there are at most ``n_cutoffs + 1`` of them, else the observed
    values at ``n_cutoffs`` evenly spaced interior quantiles (inverted CDF)."""
    values = np.unique(x)
    if values.size > n_cutoffs + 1:
        levels = np.arange(1, n_cutoffs + 1) / (n_cutoffs + 1)
        values = np.unique(np.quantile(x, levels, method="inverted_cdf"))
    return values[values < x.max()]


def _best_cutoff(x: np.ndarray, y: np.ndarray, n_cutoffs: int) -> dict[str, object]:
    """Scan cut-offs in both directions; return the row maximising the studentised contrast."""
    cutoffs = _candidate_cutoffs(x, n_cutoffs)
    if cutoffs.size == 0:
        row: dict[str, object] = {"direction": "none", "cutoff": float("nan")}
        row.update({k: float("nan") for k in woe_contrast(1, 1, 1, 1) if k != "haldane"})
        row.update({"deposit_cells_in": 0, "cells_in": 0, "deposit_cells_out": int(y.sum()),
                    "cells_out": int(y.size), "haldane": False})
        return row
    xd, xn = np.sort(x[y == 1]), np.sort(x[y == 0])
    low_d = np.searchsorted(xd, cutoffs, side="right")  # N(x <= t, D)
    low_n = np.searchsorted(xn, cutoffs, side="right")
    high_d, high_n = xd.size - low_d, xn.size - low_n
    # "high": B = x > t (e.g. anomalous assay); "low": B = x <= t (e.g. near a fault).
    tables = {"high": (high_d, high_n, low_d, low_n), "low": (low_d, low_n, high_d, high_n)}
    best: dict[str, object] = {"Stud(C)": -np.inf}
    for direction, (a, b, c, d) in tables.items():
        w = woe_contrast(a, b, c, d)
        i = int(np.argmax(w["Stud(C)"]))
        if w["Stud(C)"][i] > best["Stud(C)"]:
            best = {"direction": direction, "cutoff": float(cutoffs[i])}
            best.update({k: float(v[i]) for k, v in w.items() if k != "haldane"})
            best.update({"deposit_cells_in": int(a[i]), "cells_in": int(a[i] + b[i]),
                         "deposit_cells_out": int(c[i]), "cells_out": int(c[i] + d[i]),
                         "haldane": bool(w["haldane"][i])})
    return best


def _in_units(x: np.ndarray, offset: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """``offset + scale * x``, with values within float32 rounding of 0 set to 0: features of
    float32 normalised crops map a layer's zeros (a distance at a fault) back to ~1e-6."""
    value = offset + scale * x
    tol = 8 * float(np.finfo(np.float32).eps) * (np.abs(offset) + np.abs(scale * x))
    return np.where(np.abs(value) <= tol, 0.0, value)


def _pattern(direction: str, cutoff: float) -> str:
    if direction == "high":
        return f"x > {cutoff:.6g}"
    if direction == "low":
        return f"x <= {cutoff:.6g}"
    return ""


class WeightsOfEvidence(ClassifierMixin, BaseEstimator):
    """Weights-of-evidence classifier on unit cells (Bonham-Carter 1994).

    Unit cells: with ``cells`` given to :meth:`fit`, the rows (crops) are first reduced to one
    per cell (:func:`unit_cells`: the cell's centred crop, else the mean of its distinct crops),
    so every labelled training cell counts once however many overlapping crops were cut from
    it; without ``cells`` each row is a unit cell. Ore cells are the deposits D, barren cells
    ~D; the counts of a table sum to the number of unit cells.

    Binarisation: each feature is split at the observed cell value, in either direction, that
    maximises the studentised contrast ``Stud(C) = C / s(C)`` (see :func:`woe_contrast`): "high
    is favourable" (pattern B = ``x > cutoff``) or "low is favourable" (B = ``x <= cutoff``,
    e.g. distance to faults). Candidates are every distinct cell value below the maximum when
    there are at most ``n_cutoffs + 1`` of them (so 0/1 layers split at 0), else the cell values
    at ``n_cutoffs`` evenly spaced interior quantiles, so a cut-off always lies inside the
    layer's observed range ``[layer_min, layer_max)``.

    Features whose best studentised contrast is below ``min_studentised_contrast`` are left out
    of the model (``used`` is False in :meth:`table`); if none passes, the single best one is
    kept. Constant features have no cut-off (direction "none") and are never used. The posterior
    is ``logit P(D | x) = logit(prior) + sum_j (W+_j if x_j in B_j else W-_j)`` with the prior
    the training proportion of ore cells; it is defined for any row, labelled or not. Labelled
    cells are a sample of the area, so the prior and probabilities reflect the ratio of ore to
    barren cells labelled. The model assumes conditional independence of the features, so
    probabilities are over-confident when layers are correlated (the ranking is what counts).
    Scanning many cut-offs favours chance contrasts on noisy layers (multiple testing): raise
    ``min_studentised_contrast`` (e.g. to 2 or 3) when there are many weak layers.

    Parameters
    ----------
    min_studentised_contrast : float
        Minimum ``C / s(C)`` for a feature to enter the model (1.5 ~ 93 % one-sided confidence).
    n_cutoffs : int
        Number of quantile cut-offs scanned per feature and direction, >= 1.
    """

    def __init__(self, min_studentised_contrast: float = 1.5, n_cutoffs: int = 50) -> None:
        self.min_studentised_contrast = min_studentised_contrast
        self.n_cutoffs = n_cutoffs

    def fit(self, F: np.ndarray, y: np.ndarray, feature_names: Sequence[str] | None = None,
            cells: np.ndarray | None = None, centre: np.ndarray | None = None,
            feature_offset: np.ndarray | None = None,
            feature_scale: np.ndarray | None = None) -> WeightsOfEvidence:
        """Choose cut-offs and weights from features ``F`` (n, p) and labels ``y`` (n,) in {0,1}.

        ``cells`` (n,) and ``centre`` (n,) reduce the rows to unit cells (see
        :func:`unit_cells`). ``feature_offset`` and ``feature_scale`` (p,) say how features
        were scaled from the layers' units, ``F = (value - offset) / scale`` (scale > 0): the
        table's ``cutoff``, ``layer_min`` and ``layer_max`` are printed as
        ``offset + scale * x``, in the layers' units (default offset 0, scale 1).

        Raises
        ------
        ConfigError
            If ``n_cutoffs`` < 1.
        InputDataError
            If ``F`` is not a finite 2-D array, ``y`` is not (n,) 0/1 labels of both classes,
            every feature is constant, ``feature_names`` does not have p names, the offsets or
            scales are not p finite values (scales > 0), or ``cells`` / ``centre`` are bad.
        """
        if int(self.n_cutoffs) < 1:
            raise ConfigError(f"woe n_cutoffs is {self.n_cutoffs}; it must be an integer >= 1.")
        F = np.asarray(F, dtype=np.float64)
        if F.ndim != 2 or not np.isfinite(F).all():
            raise InputDataError(
                f"F has shape {F.shape} (finite: {bool(np.isfinite(F).all())}); expected a "
                "finite (n, p) feature matrix, e.g. from crop_features."
            )
        y = check_labels(y, F.shape[0])
        p = F.shape[1]
        names = list(feature_names) if feature_names is not None else [f"x{j}" for j in range(p)]
        if len(names) != p:
            raise InputDataError(
                f"{len(names)} feature names for {p} features; give one name each."
            )
        offset = np.zeros(p) if feature_offset is None else np.asarray(feature_offset, float)
        scale = np.ones(p) if feature_scale is None else np.asarray(feature_scale, float)
        if (offset.shape != (p,) or scale.shape != (p,) or not np.isfinite(offset).all()
                or not (np.isfinite(scale) & (scale > 0)).all()):
            raise InputDataError(
                f"feature_offset {offset.shape} / feature_scale {scale.shape} must be ({p},) "
                "finite values, scales > 0."
            )
        if cells is not None:
            F, y, _ = unit_cells(F, y, cells, centre)
            y = check_labels(y, F.shape[0])
        rows = [{"layer": n, **_best_cutoff(F[:, j], y, int(self.n_cutoffs))}
                for j, n in enumerate(names)]
        table = pd.DataFrame(rows)
        studc = table["Stud(C)"].to_numpy()
        if np.isnan(studc).all():
            raise InputDataError(
                f"every feature {names} is constant over the training cells; weights of "
                "evidence needs at least one layer that varies."
            )
        used = studc >= float(self.min_studentised_contrast)  # NaN compares False
        if not used.any():
            used[int(np.nanargmax(studc))] = True
        table["used"] = used
        # the model's rule, in feature units
        self.cutoff_ = table["cutoff"].to_numpy(dtype=np.float64)
        self.high_ = (table["direction"] == "high").to_numpy()
        self.w_plus_ = table["W+"].to_numpy(dtype=np.float64)
        self.w_minus_ = table["W-"].to_numpy(dtype=np.float64)
        self.used_ = used.copy()
        # the table, in the layers' units
        table["cutoff"] = _in_units(self.cutoff_, offset, scale)
        table["layer_min"] = _in_units(F.min(axis=0), offset, scale)
        table["layer_max"] = _in_units(F.max(axis=0), offset, scale)
        table["pattern"] = [_pattern(d, c) for d, c in zip(table["direction"], table["cutoff"],
                                                           strict=True)]
        self.table_ = table[list(WOE_COLUMNS)]
        self.classes_ = np.array([0, 1])
        self.prior_ = float(np.mean(y))
        self.n_cells_ = int(y.size)
        self.n_ore_cells_ = int(y.sum())
        self.n_features_in_ = p
        return self

    def __setstate__(self, state: dict[str, object]) -> None:
        super().__setstate__(state)
        if "table_" in state and "cutoff_" not in state:  # pickled before unit cells
            t = state["table_"]
            self.cutoff_ = t["cutoff"].to_numpy(dtype=np.float64)
            self.high_ = (t["direction"] == "high").to_numpy()
            self.w_plus_ = t["W+"].to_numpy(dtype=np.float64)
            self.w_minus_ = t["W-"].to_numpy(dtype=np.float64)
            self.used_ = t["used"].to_numpy(dtype=bool)

    def decision_function(self, F: np.ndarray) -> np.ndarray:
        """Posterior logit of ore, (n,), from features ``F`` (n, p).

        Raises
        ------
        InputDataError
            If ``F`` does not have the p columns seen in :meth:`fit`.
        """
        F = np.asarray(F, dtype=np.float64)
        if F.ndim != 2 or F.shape[1] != self.n_features_in_:
            raise InputDataError(
                f"F has shape {F.shape}; expected (n, {self.n_features_in_}) features as in fit."
            )
        logit = np.full(F.shape[0], np.log(self.prior_ / (1.0 - self.prior_)))
        for j in np.flatnonzero(self.used_):
            in_b = F[:, j] > self.cutoff_[j] if self.high_[j] else F[:, j] <= self.cutoff_[j]
            logit += np.where(in_b, self.w_plus_[j], self.w_minus_[j])
        return logit

    def predict_proba(self, F: np.ndarray) -> np.ndarray:
        """Posterior probabilities, (n, 2): columns barren, ore."""
        p = 1.0 / (1.0 + np.exp(-self.decision_function(F)))
        return np.column_stack([1.0 - p, p])

    def predict(self, F: np.ndarray) -> np.ndarray:
        """Class 1 (ore) where the posterior probability is >= 0.5, else 0; (n,) int."""
        return (self.predict_proba(F)[:, 1] >= 0.5).astype(np.int64)

    def table(self) -> pd.DataFrame:
        """A copy of the fitted weights table, one row per feature, columns :data:`WOE_COLUMNS`.

        ``cutoff``, ``layer_min``, ``layer_max`` and ``pattern`` are in the layers' units;
        counts are unit cells before any Haldane correction (``haldane`` True: 0.5 was added to
        the four counts); ``deposit_cells_in + deposit_cells_out`` is the number of ore cells
        and ``cells_in + cells_out`` the number of unit cells.
        """
        return self.table_.copy()

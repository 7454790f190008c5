"""Classic MPM baselines (logistic regression, random forest, weights of evidence) on crops.

Weights of evidence itself (on unit cells) lives in :mod:`oremap.woe`; its names are
re-exported here.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from oremap.errors import ConfigError, InputDataError, UnknownNameError
from oremap.io import atomic_path
from oremap.names import BASELINES
from oremap.registry import Registry
from oremap.woe import WOE_COLUMNS, WeightsOfEvidence, woe_contrast
from oremap.woe import check_labels as _check_labels

__all__ = [
    "BASELINES",
    "PUBagging",
    "STATS",
    "WOE_COLUMNS",
    "Baseline",
    "WoeBaseline",
    "WeightsOfEvidence",
    "is_baseline",
    "list_baselines",
    "crop_features",
    "feature_names",
    "fit_baseline",
    "woe_contrast",
]

# BASELINES (imported above, declared in oremap.names): the names fit_baseline accepts,
# ("logistic", "random_forest", "woe"), dispatched in _make_estimator.

#: Per-layer summary statistics accepted by :func:`crop_features`.
STATS: tuple[str, ...] = ("mean", "std", "min", "max")

_FORMAT = "oremap.baseline"
_FORMAT_VERSION = 1
_CHUNK = 512  # crops per chunk when computing features

# Defaults of the two scikit-learn baselines; any constructor argument may be overridden.
_LOGISTIC_DEFAULTS: dict[str, object] = {"class_weight": "balanced", "max_iter": 2000}
_FOREST_DEFAULTS: dict[str, object] = {
    "n_estimators": 500,
    "class_weight": "balanced",
    "min_samples_leaf": 2,
    "max_features": "sqrt",
    "n_jobs": 1,
}
_WOE_OPTIONS: tuple[str, ...] = ("min_studentised_contrast", "n_cutoffs")
#: Per-row fit parameters that :class:`PUBagging` subsets to each bag's rows.
_ROW_PARAMS: tuple[str, ...] = ("cells", "centre")


def is_baseline(name: str) -> bool:
    """Return True if ``name`` is one of :data:`BASELINES` (so not a network)."""
    return name in BASELINES


def list_baselines() -> list[str]:
    """Names accepted by :func:`fit_baseline`: ``logistic``, ``random_forest``, ``woe``.

    The names of :data:`oremap.names.BASELINES` (also :data:`BASELINES` here), in that order
    (checked at import).
    """
    return list(_ESTIMATORS)


# ---------------------------------------------------------------------------------------------
# features
# ---------------------------------------------------------------------------------------------


def _check_stats(stats: Sequence[str]) -> tuple[str, ...]:
    if isinstance(stats, str):
        stats = (stats,)
    stats = tuple(stats)
    if not stats:
        raise ConfigError(f"stats is empty; name at least one of {list(STATS)}, e.g. ('mean',).")
    unknown = [s for s in stats if s not in STATS]
    if unknown:
        raise UnknownNameError(f"unknown crop statistic(s) {unknown}; choose from {list(STATS)}.")
    if len(set(stats)) != len(stats):
        raise ConfigError(f"stats {list(stats)} repeats a statistic; list each one once.")
    return stats


def _as_crops(X: np.ndarray) -> np.ndarray:
    """Return ``X`` as a real (n, C, H, W) array (dtype kept); (n, C) values become 1x1 crops."""
    X = np.asarray(X)
    if X.dtype.kind not in "biuf":
        raise InputDataError(f"X has dtype {X.dtype}; expected a real numeric array of crops.")
    if X.ndim == 2:
        X = X[:, :, None, None]
    if X.ndim != 4:
        raise InputDataError(
            f"X has shape {X.shape}; expected crops (n, C, S, S) or per-cell values (n, C). "
            "Pass the crop array produced by the samples stage."
        )
    if X.shape[0] == 0 or X.shape[1] == 0 or X.shape[2] * X.shape[3] == 0:
        raise InputDataError(
            f"X has shape {X.shape}; it needs at least one sample, one layer and one pixel."
        )
    if X.dtype.kind == "f":
        n_bad, crops_bad = 0, np.zeros(X.shape[1], dtype=np.int64)
        for start in range(0, X.shape[0], _CHUNK):
            bad = ~np.isfinite(X[start : start + _CHUNK])
            n_bad += int(bad.sum())
            crops_bad += bad.reshape(bad.shape[0], bad.shape[1], -1).any(axis=2).sum(axis=0)
        if n_bad:
            layers = {int(c): int(k) for c, k in enumerate(crops_bad) if k}
            raise InputDataError(
                f"X holds {n_bad} non-finite values (crops affected per layer index: {layers}); "
                "fill or mask nodata before building crops, or drop those crops."
            )
    return X


def crop_features(X: np.ndarray, *, stats: Sequence[str] = ("mean",)) -> np.ndarray:
    """Summarise each evidence layer of each crop by a few statistics.

    Parameters
    ----------
    X : (n, C, S, S) array, or (n, C) array
        Crops of ``C`` evidence layers, in the layers' own units. A 2-D array holds one value
        per cell and layer and is treated as 1x1 crops (mean = min = max = value, std = 0).
        Must be finite.
    stats : sequence of {"mean", "std", "min", "max"}
        Statistics over the crop's pixels, computed per layer.

    Returns
    -------
    (n, C * len(stats)) float64 array
        Statistic-major: columns ``[stat0 of layer 0..C-1, stat1 of layer 0..C-1, ...]``, named
        by :func:`feature_names`. ``std`` is the population standard deviation (ddof=0).

    Raises
    ------
    InputDataError
        If ``X`` is not 2-D or 4-D, is empty, or holds NaN or infinite values.
    UnknownNameError
        If a statistic is not one of :data:`STATS`.
    ConfigError
        If ``stats`` is empty or repeats a statistic.
    """
    stats = _check_stats(stats)
    X = _as_crops(X)
    funcs = {"mean": np.mean, "std": np.std, "min": np.min, "max": np.max}
    out = np.empty((X.shape[0], X.shape[1] * len(stats)), dtype=np.float64)
    for start in range(0, X.shape[0], _CHUNK):  # chunks keep float64 temporaries small
        chunk = X[start : start + _CHUNK]
        flat = chunk.reshape(chunk.shape[0], chunk.shape[1], -1).astype(np.float64)
        out[start : start + _CHUNK] = np.concatenate(
            [funcs[s](flat, axis=2) for s in stats], axis=1
        )
    return out


def feature_names(layer_names: Sequence[str], stats: Sequence[str] = ("mean",)) -> list[str]:
    """Names of the columns of :func:`crop_features`: ``"<layer>_<stat>"``, statistic-major.

    Raises
    ------
    UnknownNameError, ConfigError
        As :func:`crop_features` for bad ``stats``.
    """
    stats = _check_stats(stats)
    return [f"{layer}_{s}" for s in stats for layer in layer_names]


# ---------------------------------------------------------------------------------------------
# the Baseline wrapper: same train / predict / save / load shape as the networks
# ---------------------------------------------------------------------------------------------


class PUBagging(ClassifierMixin, BaseEstimator):
    """Positive-unlabelled bagging (Mordelet and Vert 2014).

    Each of ``n_bags`` copies of ``estimator`` is fitted on every positive sample against a
    bootstrap sample (with replacement) of ``ratio x n_positive_groups`` unlabelled *groups*
    (cells: all crops of a drawn cell go into the bag). :meth:`predict_proba` averages the
    bags; :meth:`predict_proba_oob` averages, for samples of a training group, only the bags
    that did not draw it (out of bag), so the unlabelled cells of the training area are scored
    by models that did not call them barren.

    Parameters
    ----------
    estimator : classifier
        Cloned for each bag.
    n_bags : int
    ratio : float
        Unlabelled groups per positive group in a bag.
    random_state : int
    """

    def __init__(self, estimator: object = None, n_bags: int = 10, ratio: float = 1.0,
                 random_state: int = 0) -> None:
        self.estimator = estimator
        self.n_bags = n_bags
        self.ratio = ratio
        self.random_state = random_state

    def fit(self, F: np.ndarray, y: np.ndarray, groups: np.ndarray | None = None,
            **fit_params: object) -> PUBagging:
        from sklearn.base import clone

        y = np.asarray(y).astype(np.int64)
        groups = np.arange(len(y)) if groups is None else np.asarray(groups)
        rng = np.random.default_rng(self.random_state)
        pos = np.flatnonzero(y == 1)
        unl_groups = np.unique(groups[y == 0])
        k = max(1, round(self.ratio * len(np.unique(groups[pos]))))
        order = np.argsort(groups, kind="stable")
        names, starts = np.unique(groups[order], return_index=True)
        rows_of = dict(zip(names.tolist(), np.split(order, starts[1:])))
        self.estimators_, self.bag_groups_ = [], []
        for _ in range(self.n_bags):
            drawn = rng.choice(unl_groups, size=k, replace=True)
            rows = np.concatenate([pos, *(rows_of[g] for g in drawn.tolist())])
            est = clone(self.estimator)
            est.fit(F[rows], y[rows], **{k: (np.asarray(v)[rows] if k in _ROW_PARAMS
                                             and v is not None else v)
                                         for k, v in fit_params.items()})
            self.estimators_.append(est)
            self.bag_groups_.append(np.unique(drawn))
        self.classes_ = np.array([0, 1])
        return self

    def bag_proba(self, F: np.ndarray) -> np.ndarray:
        """(n_bags, n) P(ore) of every bag."""
        return np.vstack([e.predict_proba(F)[:, list(e.classes_).index(1)]
                          for e in self.estimators_])

    def predict_proba(self, F: np.ndarray) -> np.ndarray:
        p = self.bag_proba(F).mean(axis=0)
        return np.column_stack([1 - p, p])

    def predict_proba_oob(self, F: np.ndarray, groups: np.ndarray) -> np.ndarray:
        """P(ore) (n,) averaged over the bags that did not draw each sample's group (all bags
        for a group no bag drew)."""
        bags = self.bag_proba(F)
        out_of_bag = np.vstack([~np.isin(groups, g) for g in self.bag_groups_])
        n = out_of_bag.sum(axis=0)
        oob = (bags * out_of_bag).sum(axis=0) / np.maximum(n, 1)
        return np.where(n > 0, oob, bags.mean(axis=0))

    def table(self) -> pd.DataFrame:
        """Weights of evidence of the first bag (``woe`` only)."""
        return self.estimators_[0].table()


class Baseline:
    """A fitted baseline that scores crops like a network: ``predict_proba(X) -> P(ore)``.

    Attributes
    ----------
    name : str
        One of :data:`BASELINES`.
    layer_names : tuple of str
        The ``C`` evidence layers, in channel order.
    stats : tuple of str
        Crop statistics used as features (see :func:`crop_features`).
    feature_names : list of str
        Names of the ``C * len(stats)`` features.
    crop_shape : tuple of int
        ``(C, H, W)`` of the training crops; prediction needs the same.
    seed : int
    options : dict
        The options passed to :func:`fit_baseline`.
    n_train, n_ore : int
        Training samples and ore samples among them.
    estimator : scikit-learn classifier
        Fitted on the features (a StandardScaler + LogisticRegression pipeline, a
        RandomForestClassifier, or a :class:`WeightsOfEvidence`).
    """

    def __init__(self, name: str, estimator: object, *, layer_names: Sequence[str],
                 stats: Sequence[str], crop_shape: tuple[int, int, int], seed: int,
                 options: dict[str, object], n_train: int, n_ore: int) -> None:
        self.name = name
        self.estimator = estimator
        self.layer_names = tuple(layer_names)
        self.stats = tuple(stats)
        self.feature_names = feature_names(self.layer_names, self.stats)
        self.crop_shape = tuple(int(s) for s in crop_shape)
        self.seed = seed
        self.options = dict(options)
        self.n_train = n_train
        self.n_ore = n_ore

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(name={self.name!r}, layers={len(self.layer_names)}, "
                f"stats={self.stats}, n_train={self.n_train}, n_ore={self.n_ore})")

    def features(self, X: np.ndarray) -> np.ndarray:
        """Features (n, p) of crops ``X`` (n, C, H, W), checked against the training shape.

        Raises
        ------
        InputDataError
            If the layers or crop size differ from training, or ``X`` is not finite.
        """
        crops = _as_crops(X)
        if tuple(crops.shape[1:]) != self.crop_shape:
            raise InputDataError(
                f"X has crops of shape {tuple(crops.shape[1:])} (C, H, W) but baseline "
                f"{self.name!r} was trained on {self.crop_shape} with layers "
                f"{list(self.layer_names)}; build crops from the same layers and crop size."
            )
        return crop_features(crops, stats=self.stats)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Probability of ore, (n,) float64 in [0, 1], for crops ``X`` (n, C, H, W).

        Raises
        ------
        InputDataError
            As :meth:`features`.
        """
        proba = self.estimator.predict_proba(self.features(X))
        return np.asarray(proba[:, list(self.estimator.classes_).index(1)], dtype=np.float64)

    @property
    def is_pu(self) -> bool:
        """Whether the estimator is a :class:`PUBagging` of bags."""
        return isinstance(self.estimator, PUBagging)

    def predict_proba_oob(self, X: np.ndarray, groups: np.ndarray) -> np.ndarray:
        """P(ore) of crops ``X`` of cells ``groups``; out of bag for PU bagging (see
        :meth:`PUBagging.predict_proba_oob`), else :meth:`predict_proba`."""
        if not self.is_pu:
            return self.predict_proba(X)
        return self.estimator.predict_proba_oob(self.features(X), np.asarray(groups))

    def save(self, path: str | Path) -> None:
        """Pickle to ``path`` atomically (write ``<path>.tmp``, then rename over ``path``)."""
        payload = {"format": _FORMAT, "version": _FORMAT_VERSION, "baseline": self}
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            pickle.dump(payload, fh, protocol=pickle.HIGHEST_PROTOCOL)

    @classmethod
    def load(cls, path: str | Path) -> Baseline:
        """Load a baseline written by :meth:`save`. Unpickles: load only files you trust.

        Raises
        ------
        InputDataError
            If ``path`` does not exist or does not hold an oremap baseline.
        """
        path = Path(path)
        if not path.is_file():
            raise InputDataError(f"baseline file {path} does not exist; fit and save it first.")
        with open(path, "rb") as fh:
            try:
                payload = pickle.load(fh)
            except (pickle.UnpicklingError, EOFError, AttributeError, ImportError) as err:
                raise InputDataError(
                    f"{path} is not a readable oremap baseline ({err}); refit and save it."
                ) from err
        if not (isinstance(payload, dict) and payload.get("format") == _FORMAT
                and isinstance(payload.get("baseline"), cls)):
            raise InputDataError(
                f"{path} does not hold an oremap baseline (format {_FORMAT!r}); "
                "pass a file written by Baseline.save."
            )
        return payload["baseline"]


class WoeBaseline(Baseline):
    """A weights-of-evidence :class:`Baseline`; adds :meth:`woe_table`."""

    def woe_table(self) -> pd.DataFrame:
        """Weights per feature: columns :data:`WOE_COLUMNS` (see :class:`WeightsOfEvidence`).

        One row per feature, ``layer`` holding its name (``"<layer>_<stat>"``); ``direction``
        is "high", "low" or "none" (constant feature) and ``pattern`` the binary pattern B
        (e.g. ``x > 12.5``). ``cutoff``, ``layer_min`` and ``layer_max`` are in the layer's own
        units when the baseline was fitted with ``normalisation`` (else in the features'
        units), the cutoff an observed cell value inside ``[layer_min, layer_max)``. Counts are
        unit cells of the training side (one per labelled cell, not per crop) before any
        Haldane correction; ``haldane`` says whether 0.5 was added to the four counts.
        """
        return self.estimator.table()


def _per_crop(values: np.ndarray | None, what: str, n: int) -> np.ndarray | None:
    if values is None:
        return None
    values = np.asarray(values)
    if values.shape != (n,):
        raise InputDataError(f"{what} has shape {values.shape}; give one value per crop, ({n},).")
    return values


def _feature_units(normalisation: tuple[np.ndarray, np.ndarray], n_layers: int,
                   stats: Sequence[str]) -> dict[str, np.ndarray]:
    """``feature_offset`` / ``feature_scale`` of :func:`crop_features` columns (statistic-major)
    from the layers' ``(center, scale)``: a mean, min or max maps back as ``center + scale * x``,
    a standard deviation as ``scale * x``."""
    center, scale = (np.asarray(a, dtype=np.float64).reshape(-1) for a in normalisation)
    if center.shape != (n_layers,) or scale.shape != (n_layers,):
        raise InputDataError(
            f"normalisation has center {center.shape} and scale {scale.shape}; expected "
            f"({n_layers},) each, one per layer."
        )
    return {"feature_offset": np.concatenate([center * (s != "std") for s in stats]),
            "feature_scale": np.tile(scale, len(stats))}


#: The estimator of each baseline: ``(seed, options) -> unfitted estimator``.
_ESTIMATORS: Registry[Callable[[int, dict[str, object]], object]] = Registry("baseline",
                                                                             BASELINES)


def _options(name: str, allowed: Iterable[str], base: dict[str, object],
             options: dict[str, object]) -> dict[str, object]:
    """``base`` updated by ``options``; ConfigError for an option the baseline does not take."""
    allowed = set(allowed)
    allowed.discard("random_state")
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ConfigError(
            f"unknown option(s) {unknown} for baseline {name!r}; choose from {sorted(allowed)} "
            "(the seed is set by seed=)."
        )
    return {**base, **options}


@_ESTIMATORS.register("logistic")
def _logistic(seed: int, options: dict[str, object]) -> object:
    params = _options("logistic", LogisticRegression().get_params(), _LOGISTIC_DEFAULTS,
                      options)
    model = LogisticRegression(random_state=seed, **params)
    return Pipeline([("scale", StandardScaler()), ("model", model)])


@_ESTIMATORS.register("random_forest")
def _random_forest(seed: int, options: dict[str, object]) -> object:
    params = _options("random_forest", RandomForestClassifier().get_params(), _FOREST_DEFAULTS,
                      options)
    return RandomForestClassifier(random_state=seed, **params)


@_ESTIMATORS.register("woe")
def _woe(seed: int, options: dict[str, object]) -> object:
    return WeightsOfEvidence(**_options("woe", _WOE_OPTIONS, {}, options))


_ESTIMATORS.check_declared(ordered=True)


def _make_estimator(name: str, seed: int, options: dict[str, object]) -> object:
    return _ESTIMATORS.lookup(name)(seed, options)


def fit_baseline(name: str, X_train: np.ndarray, y_train: np.ndarray, *,
                 layer_names: Sequence[str], stats: Sequence[str] = ("mean",), seed: int = 0,
                 pu_bags: int = 0, pu_ratio: float = 1.0, groups: np.ndarray | None = None,
                 centre: np.ndarray | None = None,
                 normalisation: tuple[np.ndarray, np.ndarray] | None = None,
                 **options: object) -> Baseline:
    """Fit a classic MPM baseline on per-crop evidence features.

    Parameters
    ----------
    name : {"logistic", "random_forest", "woe"}
        ``logistic``: StandardScaler + LogisticRegression (``class_weight="balanced"``).
        ``random_forest``: RandomForestClassifier (500 trees, ``class_weight="balanced"``,
        ``min_samples_leaf=2``, ``max_features="sqrt"``, ``n_jobs=1``).
        ``woe``: :class:`WeightsOfEvidence` (Bonham-Carter 1994).
    X_train : (n, C, S, S) array, or (n, C) array
        Training crops (or per-cell values), finite, in the layers' units.
    y_train : (n,) array of {0, 1} or bool
        1 = ore, 0 = barren; both classes must occur.
    layer_names : sequence of C str
        Unique names of the evidence layers, in channel order.
    stats : sequence of str
        Crop statistics used as features (:func:`crop_features`); default the mean per layer.
    seed : int
        Seeds the estimator (``random_state``); weights of evidence is deterministic anyway.
    pu_bags : int
        > 0: positive-unlabelled bagging (:class:`PUBagging`) with this many bags; the 0
        labels are then unlabelled samples, not verified barren ground.
    pu_ratio : float
        Unlabelled groups per positive group in a bag.
    groups : (n,) array or None
        Group (cell) of each sample: bags draw whole groups, and ``woe`` counts each group
        once (a unit cell, see :func:`oremap.woe.unit_cells`). None: each sample alone.
    centre : (n,) bool array or None
        ``woe`` only: True for a cell's centred crop, whose features are the cell's own values
        (else the mean of the cell's distinct crops).
    normalisation : ((C,), (C,)) arrays or None
        ``woe`` only: the per-layer ``(center, scale)`` the crops were normalised with,
        ``x = (raw - center) / scale``; the WoE table then gives cut-offs in the layers' units.
    **options
        Override the estimator's constructor arguments (scikit-learn names, e.g. ``C=0.1`` or
        ``n_estimators=200``), or for ``woe`` ``min_studentised_contrast`` (1.5) and
        ``n_cutoffs`` (50).

    Returns
    -------
    Baseline
        A :class:`WoeBaseline` for ``"woe"``.

    Raises
    ------
    UnknownNameError
        If ``name`` is not in :data:`BASELINES`, or a statistic is unknown.
    InputDataError
        If shapes disagree (X, y, layer_names, groups, centre, normalisation), names repeat,
        labels are not 0/1 or only one class occurs, a cell holds both labels (``woe``), or
        ``X`` is not finite.
    ConfigError
        If an option is not one the baseline takes.
    """
    if name not in BASELINES:
        raise UnknownNameError(f"unknown baseline {name!r}; choose from {list(BASELINES)}.")
    stats = _check_stats(stats)
    crops = _as_crops(X_train)
    layer_names = [str(s) for s in layer_names]
    if len(layer_names) != crops.shape[1]:
        raise InputDataError(
            f"{len(layer_names)} layer_names for {crops.shape[1]} layers in X_train (shape "
            f"{crops.shape}); give one name per channel, in channel order."
        )
    if len(set(layer_names)) != len(layer_names):
        raise InputDataError(f"layer_names {layer_names} repeat a name; names must be unique.")
    y = _check_labels(y_train, crops.shape[0])
    features = crop_features(crops, stats=stats)
    estimator = _make_estimator(name, int(seed), dict(options))
    if pu_bags > 0:
        estimator = PUBagging(estimator, n_bags=int(pu_bags), ratio=float(pu_ratio),
                              random_state=int(seed))
    fit_params: dict[str, object] = {}
    if name == "woe":
        fit_params.update(feature_names=feature_names(layer_names, stats),
                          cells=_per_crop(groups, "groups", y.size),
                          centre=_per_crop(centre, "centre", y.size))
        if normalisation is not None:
            fit_params.update(_feature_units(normalisation, len(layer_names), stats))
    if pu_bags > 0:
        estimator.fit(features, y, groups=groups, **fit_params)
    else:
        estimator.fit(features, y, **fit_params)
    cls = WoeBaseline if name == "woe" else Baseline
    return cls(name, estimator, layer_names=layer_names, stats=stats,
               crop_shape=crops.shape[1:], seed=int(seed), options=dict(options),
               n_train=int(y.size), n_ore=int(y.sum()))
